// LearningRateChart: one line, engineering number format.
#include "learningratechart.h"

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

LearningRateChart::LearningRateChart(const QVector<qls::step_stats>* history, QWidget* parent)
    : MonitorChart(tr("Learning rate"), history, parent) {
    addGraph(tr("learning rate"), paletteColor(2));
    plot()->yAxis->setNumberFormat("g");
    plot()->yAxis->setNumberPrecision(2);
}

void LearningRateChart::append(const qls::step_stats& s) { graph(0)->addData(double(s.step), s.lr); }

QString LearningRateChart::titleFor(const QVector<qls::step_stats>& history) const {
    return tr("Learning rate — %1").arg(history.last().lr, 0, 'g', 3);
}

QString LearningRateChart::describe(const qls::step_stats& s) const {
    return tr("<br>learning rate %1").arg(s.lr, 0, 'e', 3);
}
