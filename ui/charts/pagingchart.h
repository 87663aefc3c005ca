// PagingChart — the Monitor's host↔device traffic (MB/s each way): paged optimizer states, offloaded checkpoints (dashed), and the resident pages.
#pragma once

#include "monitorchart.h"

class PagingChart : public MonitorChart {
    Q_OBJECT
public:
    enum Series { HostToDevice, DeviceToHost, ResidentPages, CheckpointsToDevice, CheckpointsToHost };
    explicit PagingChart(const QVector<qls::step_stats>* history, QWidget* parent = nullptr);
    void append(const qls::step_stats& s) override;
    void clearData() override;
    QString titleFor(const QVector<qls::step_stats>& history) const override;
    QString describe(const qls::step_stats& s) const override;
    QString idleTitle() const override { return tr("Paging (MB/s)"); }
    static double megabytesPerSecond(uint64_t bytes, double seconds) {
        return seconds > 0 ? double(bytes) / seconds / 1e6 : 0.0;
    }

protected:
    void fitExtra() override;

private:
    bool m_anyPaging = false;
    bool m_anyOffload = false; // some step copied checkpoints (memory_plan.h checkpoint_offload)
};
