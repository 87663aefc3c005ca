// ThroughputChart: one line of tokens/s.
#include "throughputchart.h"

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

#include <QLocale>

ThroughputChart::ThroughputChart(const QVector<qls::step_stats>* history, QWidget* parent)
    : MonitorChart(tr("Throughput (tokens/s)"), history, parent) {
    addGraph(tr("tokens/s"), paletteColor(4));
    plot()->yAxis->setLabel(tr("tokens/s"));
}

void ThroughputChart::append(const qls::step_stats& s) { graph(0)->addData(double(s.step), s.tokens_per_s); }

QString ThroughputChart::titleFor(const QVector<qls::step_stats>& history) const {
    return tr("Throughput — %1 tokens/s").arg(QLocale().toString(history.last().tokens_per_s, 'f', 0));
}

QString ThroughputChart::describe(const qls::step_stats& s) const {
    return tr("<br>%1 tokens/s<br>%2 tokens in %3 s")
        .arg(QLocale().toString(s.tokens_per_s, 'f', 0))
        .arg(s.tokens)
        .arg(s.step_time_s, 0, 'f', 3);
}
