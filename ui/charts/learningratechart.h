// LearningRateChart — the Monitor's learning rate per step (warmup and schedule).
#pragma once

#include "monitorchart.h"

class LearningRateChart : public MonitorChart {
    Q_OBJECT
public:
    explicit LearningRateChart(const QVector<qls::step_stats>* history, QWidget* parent = nullptr);
    void append(const qls::step_stats& s) override;
    QString titleFor(const QVector<qls::step_stats>& history) const override;
    QString describe(const qls::step_stats& s) const override;
    QString idleTitle() const override { return tr("Learning rate"); }
};
