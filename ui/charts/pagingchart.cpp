// PagingChart: host↔device MB/s on the left axis, resident pages (a step line) on the right.
#include "pagingchart.h"

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

PagingChart::PagingChart(const QVector<qls::step_stats>* history, QWidget* parent)
    : MonitorChart(tr("Paging (MB/s)"), history, parent) {
    addGraph(tr("host→device"), paletteColor(0));
    addGraph(tr("device→host"), paletteColor(1));
    addGraph(tr("resident pages"), paletteColor(2), true)->setLineStyle(QCPGraph::lsStepLeft);
    // offloaded gradient checkpoints, dashed beside the optimizer's paging in the same colours
    for (int dir = 0; dir < 2; ++dir) {
        QCPGraph* g = addGraph(dir == 0 ? tr("checkpoints host→device") : tr("checkpoints device→host"),
                               paletteColor(dir));
        QPen pen = g->pen();
        pen.setStyle(Qt::DashLine);
        g->setPen(pen);
    }
    plot()->yAxis2->setVisible(true);
    plot()->yAxis2->setLabel(tr("pages"));
    plot()->yAxis->setLabel(tr("MB/s"));
}

void PagingChart::append(const qls::step_stats& s) {
    const double x = double(s.step);
    if (s.total_pages > 0 || s.paging_h2d_bytes > 0 || s.paging_d2h_bytes > 0) m_anyPaging = true;
    if (s.offload_h2d_bytes > 0 || s.offload_d2h_bytes > 0) m_anyOffload = true;
    graph(HostToDevice)->addData(x, megabytesPerSecond(s.paging_h2d_bytes, s.step_time_s));
    graph(DeviceToHost)->addData(x, megabytesPerSecond(s.paging_d2h_bytes, s.step_time_s));
    graph(ResidentPages)->addData(x, double(s.resident_pages));
    graph(CheckpointsToDevice)->addData(x, megabytesPerSecond(s.offload_h2d_bytes, s.step_time_s));
    graph(CheckpointsToHost)->addData(x, megabytesPerSecond(s.offload_d2h_bytes, s.step_time_s));
}

void PagingChart::clearData() {
    MonitorChart::clearData();
    m_anyPaging = false;
    m_anyOffload = false;
}

QString PagingChart::titleFor(const QVector<qls::step_stats>& history) const {
    const qls::step_stats& last = history.last();
    const QString offload = m_anyOffload ? tr(", checkpoints offloaded to host") : QString();
    if (!m_anyPaging) return tr("Paging (MB/s) — no paged optimizer states%1").arg(offload);
    return tr("Paging (MB/s) — %1 of %2 pages resident%3").arg(last.resident_pages).arg(last.total_pages).arg(offload);
}

QString PagingChart::describe(const qls::step_stats& s) const {
    QString text = tr("<br>host→device %1 MB/s (%2 bytes)<br>device→host %3 MB/s (%4 bytes)<br>resident pages %5 of %6")
                       .arg(megabytesPerSecond(s.paging_h2d_bytes, s.step_time_s), 0, 'f', 2)
                       .arg(s.paging_h2d_bytes)
                       .arg(megabytesPerSecond(s.paging_d2h_bytes, s.step_time_s), 0, 'f', 2)
                       .arg(s.paging_d2h_bytes)
                       .arg(s.resident_pages)
                       .arg(s.total_pages);
    if (s.offload_h2d_bytes > 0 || s.offload_d2h_bytes > 0)
        text += tr("<br>checkpoints host→device %1 MB/s (%2 bytes)<br>checkpoints device→host %3 MB/s (%4 bytes)")
                    .arg(megabytesPerSecond(s.offload_h2d_bytes, s.step_time_s), 0, 'f', 2)
                    .arg(s.offload_h2d_bytes)
                    .arg(megabytesPerSecond(s.offload_d2h_bytes, s.step_time_s), 0, 'f', 2)
                    .arg(s.offload_d2h_bytes);
    return text;
}

void PagingChart::fitExtra() {
    uint64_t pages = 0;
    for (const qls::step_stats& s : history()) pages = std::max({pages, s.total_pages, s.resident_pages});
    plot()->yAxis2->setRange(0, std::max<double>(1.0, double(pages) * 1.15));
}
