// MonitorChart: the QCustomPlot set-up, hover, follow/zoom and fitting shared by the Monitor page's charts.
#include "monitorchart.h"

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

#include "plotstyle.h"

#include <QRegularExpression>
#include <QVBoxLayout>
#include <QWheelEvent>

#include <algorithm>
#include <cmath>
#include <iterator>

QColor MonitorChart::paletteColor(int i) {
    static const QColor palette[] = {QColor(0x1f, 0x77, 0xb4), QColor(0xff, 0x7f, 0x0e), QColor(0x2c, 0xa0, 0x2c),
                                     QColor(0xd6, 0x27, 0x28), QColor(0x94, 0x67, 0xbd), QColor(0x8c, 0x56, 0x4b),
                                     QColor(0xe3, 0x77, 0xc2), QColor(0x7f, 0x7f, 0x7f), QColor(0xbc, 0xbd, 0x22),
                                     QColor(0x17, 0xbe, 0xcf)};
    return palette[size_t(i) % std::size(palette)];
}

MonitorChart::MonitorChart(const QString& title, const QVector<qls::step_stats>* history, QWidget* parent)
    : QWidget(parent), m_history(history) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    m_plot = new QCustomPlot(this);
    layout->addWidget(m_plot);
    QCustomPlot* plot = m_plot;
    plot->setMinimumSize(260, 180);
    plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    // Long runs put thousands of points on a few hundred pixels: adaptive sampling (on by default) thins them, and
    // fast polylines skip the raster engine's costly stroke joins, so one replot stays a few milliseconds.
    plot->setPlottingHint(QCP::phFastPolylines, true);
    plot->axisRect()->setRangeDragAxes({plot->xAxis}, {plot->yAxis, plot->yAxis2});
    plot->axisRect()->setRangeZoomAxes({plot->xAxis}, {plot->yAxis, plot->yAxis2});
    plot->xAxis->setLabel(tr("step"));
    QFont small = font();
    small.setPointSizeF(std::max(7.0, small.pointSizeF() - 1));
    for (QCPAxis* a : {plot->xAxis, plot->yAxis, plot->yAxis2}) {
        a->setTickLabelFont(small);
        a->setLabelFont(small);
    }
    plot->legend->setVisible(true);
    plot->legend->setFont(small);
    plot->legend->setBrush(QColor(255, 255, 255, 200));
    plot->legend->setRowSpacing(-3);
    plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    plot->plotLayout()->insertRow(0);
    QFont bold = font();
    bold.setBold(true);
    m_title = new QCPTextElement(plot, title, bold);
    m_fullTitle = title;
    plot->plotLayout()->addElement(0, 0, m_title);
    // the help is the title's (hovering the data shows the read-out instead, which a tooltip would cover)
    m_title->setSelectable(false);
    setWhatsThis(tr("Hover for the values at a step; drag to pan, wheel to zoom both axes (Shift: x only, Ctrl: y "
                    "only), double-click to reset the view and follow the run again, right-click to save the chart or "
                    "export the data"));
    m_readout = new QCPItemText(plot);
    m_readout->setObjectName("readout");
    m_readout->position->setType(QCPItemPosition::ptAxisRectRatio);
    m_readout->position->setCoords(0.01, 0.02);
    m_readout->setPositionAlignment(Qt::AlignLeft | Qt::AlignTop);
    m_readout->setTextAlignment(Qt::AlignLeft);
    m_readout->setFont(small);
    m_readout->setPadding(QMargins(4, 2, 4, 2));
    m_readout->setBrush(palette().color(QPalette::Base));
    m_readout->setColor(palette().color(QPalette::Text));
    m_readout->setPen(QPen(QColor(0, 0, 0, 60)));
    m_readout->setClipToAxisRect(true);
    m_readout->setVisible(false);
    plot->installEventFilter(this);
    themePlot(plot, palette());
    plot->setContextMenuPolicy(Qt::CustomContextMenu);
    m_tracer = new QCPItemTracer(plot);
    m_tracer->setStyle(QCPItemTracer::tsCrosshair);
    m_tracer->setPen(QPen(QColor(0, 0, 0, 90), 1, Qt::DashLine));
    m_tracer->setVisible(false);
    connect(plot, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) {
        if (e->buttons() & Qt::LeftButton) m_follow = false;
        showTooltip(e->pos());
    });
    connect(plot, &QCustomPlot::mouseWheel, this, [this](QWheelEvent* e) {
        m_follow = false;
        // the wheel zooms both axes; Shift keeps y, Ctrl keeps x
        QCPAxisRect* r = m_plot->axisRect();
        if (e->modifiers() & Qt::ShiftModifier) r->setRangeZoom(Qt::Horizontal);
        else if (e->modifiers() & Qt::ControlModifier) r->setRangeZoom(Qt::Vertical);
        else r->setRangeZoom(Qt::Horizontal | Qt::Vertical);
    });
    connect(plot, &QCustomPlot::mouseDoubleClick, this, [this] {
        m_follow = true;
        emit followRequested();
    });
    connect(plot, &QCustomPlot::customContextMenuRequested, this,
            [this](const QPoint& p) { emit contextMenuRequested(m_plot->mapToGlobal(p)); });
    connect(plot, &QCustomPlot::afterReplot, this, &MonitorChart::replotted);
}

QString MonitorChart::title() const { return m_fullTitle; }

void MonitorChart::setTitle(const QString& text) {
    m_fullTitle = text;
    fitTitle();
}

void MonitorChart::fitTitle() {
    // a title wider than the chart ends in "…" instead of being cut at both edges; the whole of it is the tooltip
    const QFontMetrics fm(m_title->font());
    const int room = std::max(40, m_plot->width() - 12);
    const QString shown = fm.elidedText(m_fullTitle, Qt::ElideRight, room);
    if (m_title->text() != shown) m_title->setText(shown);
    m_plot->setToolTip(shown == m_fullTitle ? QString() : m_fullTitle);
}

void MonitorChart::resizeEvent(QResizeEvent* event) {
    QWidget::resizeEvent(event);
    fitTitle();
    fitLegend();
}

QCPGraph* MonitorChart::addGraph(const QString& name, const QColor& color, bool rightAxis) {
    QCPGraph* g = m_plot->addGraph(m_plot->xAxis, rightAxis ? m_plot->yAxis2 : m_plot->yAxis);
    g->setName(name);
    g->setPen(QPen(color, 1.25));
    m_graphs << g;
    return g;
}

void MonitorChart::clearData() {
    m_tracer->setVisible(false);
    m_tracer->setGraph(nullptr);
    for (QCPGraph* g : m_graphs) g->data()->clear();
}

void MonitorChart::fitToData() {
    const QVector<qls::step_stats>& h = *m_history;
    if (!m_follow || h.isEmpty()) return;
    const double first = h.first().step, last = h.last().step;
    m_plot->xAxis->setRange(first == last ? first - 1 : first, std::max(last, first + 1));
    for (QCPAxis* y : {m_plot->yAxis, m_plot->yAxis2}) {
        const bool isLog = y->scaleType() == QCPAxis::stLogarithmic;
        bool any = false;
        QCPRange r;
        for (QCPAbstractPlottable* p : y->plottables()) {
            bool found = false;
            const QCPRange pr = p->getValueRange(found, isLog ? QCP::sdPositive : QCP::sdBoth);
            if (!found) continue;
            r = any ? QCPRange(std::min(r.lower, pr.lower), std::max(r.upper, pr.upper)) : pr;
            any = true;
        }
        if (!any) continue;
        if (isLog) {
            y->setRange(r.lower / 1.15, r.upper * 1.15);
        } else if (!zeroBased()) {
            const double span = std::max({r.upper - r.lower, std::abs(r.upper) * 0.05, 1e-9});
            y->setRange(r.lower - 0.08 * span, r.upper + 0.12 * span);
        } else {
            // throughput, learning rate, bytes and pages start at zero
            const double lower = std::min(0.0, r.lower);
            const double span = std::max(r.upper - lower, 1e-12);
            y->setRange(lower, r.upper > lower ? r.upper + 0.12 * span : 1.0);
        }
    }
    fitExtra();
}

void MonitorChart::replot() { m_plot->replot(QCustomPlot::rpQueuedReplot); }

void MonitorChart::setPlotObjectName(const QString& name) { m_plot->setObjectName(name); }

double MonitorChart::lastReplotMs() const { return m_plot->replotTime(false); }

bool MonitorChart::savePng(const QString& file) const {
    const int w = std::max(m_plot->width(), 800), h = std::max(m_plot->height(), 500);
    return m_plot->savePng(file, w, h);
}

const qls::step_stats* MonitorChart::statsAt(double step) const {
    const QVector<qls::step_stats>& h = *m_history;
    if (h.isEmpty()) return nullptr;
    auto it = std::lower_bound(h.cbegin(), h.cend(), step,
                               [](const qls::step_stats& s, double x) { return double(s.step) < x; });
    if (it == h.cend()) return &h.last();
    if (it != h.cbegin() && std::abs(double((it - 1)->step) - step) < std::abs(double(it->step) - step)) --it;
    return &*it;
}

void MonitorChart::changeEvent(QEvent* event) {
    QWidget::changeEvent(event);
    if (event->type() == QEvent::PaletteChange) {
        themePlot(m_plot, palette());
        m_readout->setBrush(palette().color(QPalette::Base));
        m_readout->setColor(palette().color(QPalette::Text));
        m_tracer->setPen(QPen(palette().color(QPalette::Text), 1, Qt::DashLine));
    }
}

bool MonitorChart::eventFilter(QObject* watched, QEvent* event) {
    if (watched == m_plot && event->type() == QEvent::Leave && m_readout->visible()) {
        m_readout->setVisible(false);
        m_tracer->setVisible(false);
        m_tracer->setGraph(nullptr);
        replot();
    }
    return QWidget::eventFilter(watched, event);
}

QString MonitorChart::hoverText() const { return m_readout->visible() ? m_readout->text() : QString(); }

void MonitorChart::resetView() {
    m_follow = true;
    emit followRequested();
}

void MonitorChart::showTooltip(const QPoint& pos) {
    const qls::step_stats* s = statsAt(m_plot->xAxis->pixelToCoord(pos.x()));
    if (!s || !m_plot->axisRect()->rect().contains(pos)) {
        m_tracer->setVisible(false);
        m_tracer->setGraph(nullptr);
        m_readout->setVisible(false);
        replot();
        return;
    }
    m_tracer->setGraph(tracedGraph()); // set on hover only: a tracer on an empty graph complains
    m_tracer->setGraphKey(double(s->step));
    m_tracer->setVisible(true);
    // a read-out drawn in the chart's corner: it stays while the mouse rests and never covers the point under it
    QString text = tr("step %1 (epoch %2)").arg(s->step).arg(s->epoch, 0, 'f', 2) + describe(*s);
    text.replace(QStringLiteral("<br>"), QStringLiteral("\n"));
    text.remove(QRegularExpression(QStringLiteral("<[^>]*>")));
    m_readout->setText(text);
    // the corner away from the mouse
    const bool mouseLeft = pos.x() < m_plot->axisRect()->center().x();
    m_readout->position->setCoords(mouseLeft ? 0.99 : 0.01, 0.02);
    m_readout->setPositionAlignment((mouseLeft ? Qt::AlignRight : Qt::AlignLeft) | Qt::AlignTop);
    m_readout->setVisible(true);
    replot();
}
