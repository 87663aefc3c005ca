// ThroughputChart — the Monitor's training tokens per second.
#pragma once

#include "monitorchart.h"

class ThroughputChart : public MonitorChart {
    Q_OBJECT
public:
    explicit ThroughputChart(const QVector<qls::step_stats>* history, QWidget* parent = nullptr);
    void append(const qls::step_stats& s) override;
    QString titleFor(const QVector<qls::step_stats>& history) const override;
    QString describe(const qls::step_stats& s) const override;
    QString idleTitle() const override { return tr("Throughput (tokens/s)"); }
};
