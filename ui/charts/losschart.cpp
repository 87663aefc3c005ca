// LossChart: train loss line, eval loss points, the log-scale switch.
#include "losschart.h"

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

LossChart::LossChart(const QVector<qls::step_stats>* history, QWidget* parent)
    : MonitorChart(tr("Loss"), history, parent) {
    addGraph(tr("train"), paletteColor(0));
    addGraph(tr("eval"), paletteColor(1))->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 6));
    plot()->yAxis->setLabel(tr("loss"));
}

void LossChart::append(const qls::step_stats& s) {
    graph(Train)->addData(double(s.step), s.loss);
    if (s.eval_loss) graph(Eval)->addData(double(s.step), *s.eval_loss);
}

QString LossChart::titleFor(const QVector<qls::step_stats>& history) const {
    QString loss = tr("Loss — %1").arg(history.last().loss, 0, 'f', 3);
    for (auto it = history.crbegin(); it != history.crend(); ++it)
        if (it->eval_loss) {
            loss += tr(" (eval %1 at step %2)").arg(*it->eval_loss, 0, 'f', 3).arg(it->step);
            break;
        }
    return loss;
}

QString LossChart::describe(const qls::step_stats& s) const {
    QString text = tr("<br>train loss %1").arg(s.loss, 0, 'f', 4);
    if (s.eval_loss) text += tr("<br>eval loss %1").arg(*s.eval_loss, 0, 'f', 4);
    return text + tr("<br>gradient norm %1").arg(s.grad_norm, 0, 'f', 3);
}

bool LossChart::logScale() const { return plot()->yAxis->scaleType() == QCPAxis::stLogarithmic; }

void LossChart::setLogScale(bool on) {
    QCPAxis* y = plot()->yAxis;
    if (logScale() == on) return;
    y->setScaleType(on ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
    if (on) y->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    else y->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    setFollow(true);
}
