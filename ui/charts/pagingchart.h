// PagingChart — the Monitor's paged optimizer-state traffic (MB/s each way) and the resident pages.
#pragma once

#include "monitorchart.h"

class PagingChart : public MonitorChart {
    Q_OBJECT
public:
    enum Series { HostToDevice, DeviceToHost, ResidentPages };
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
};
