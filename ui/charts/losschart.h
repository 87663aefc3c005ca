// LossChart — the Monitor's training loss per step and the evaluation losses, optionally on a log scale.
#pragma once

#include "monitorchart.h"

class LossChart : public MonitorChart {
    Q_OBJECT
public:
    enum Series { Train, Eval };
    explicit LossChart(const QVector<qls::step_stats>* history, QWidget* parent = nullptr);
    void append(const qls::step_stats& s) override;
    QString titleFor(const QVector<qls::step_stats>& history) const override;
    QString describe(const qls::step_stats& s) const override;
    QString idleTitle() const override { return tr("Loss"); }
    bool logScale() const;
    void setLogScale(bool on); // follows the data again

protected:
    bool zeroBased() const override { return false; }
};
