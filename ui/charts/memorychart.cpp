// MemoryChart: stacked plan categories (cumulative areas), measured/budget/card lines on a layer above, unit that grows.
#include "memorychart.h"

#include "plancolors.h"

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

#include <QHash>

#include <algorithm>
#include <cmath>

namespace {

// Short legend names for the memory plan's categories (machine names of qls::plan_category_name).
QString categoryLabel(const QString& machineName) {
    static const QHash<QString, QString> labels =
        {{"quantized_weights", "NF4 weights"}, {"frozen_weights", "frozen"},        {"lora_weights", "LoRA"},
         {"lora_grads", "LoRA grads"},         {"optimizer_resident", "optimizer"}, {"optimizer_paged", "optim. paged"},
         {"activations", "activations"},       {"logits_loss", "logits"},           {"workspace", "workspace"},
         {"cuda_context", "CUDA context"}};
    QString s = labels.value(machineName, machineName);
    s.replace('_', ' ');
    return s;
}

// The CUDA context is device memory the driver takes, outside our budget; a CPU run has none.
const char* const kContextCategory = "cuda_context";

uint64_t planTotal(const qls::step_stats& s, bool withContext = true) {
    uint64_t t = 0;
    for (const auto& [name, bytes] : s.plan_bytes)
        if (withContext || name != kContextCategory) t += bytes;
    return t;
}

// 1 = KiB, 2 = MiB, 3 = GiB: the unit that keeps the chart's numbers readable.
int unitPowerFor(uint64_t bytes) { return bytes >= (1ull << 30) ? 3 : bytes >= (1ull << 20) ? 2 : 1; }

} // namespace

MemoryChart::MemoryChart(const QVector<qls::step_stats>* history, QWidget* parent)
    : MonitorChart(tr("Memory"), history, parent) {
    addGraph(tr("measured"), palette().color(QPalette::Text));
    addGraph(tr("budget"), paletteColor(3))->setPen(QPen(paletteColor(3), 1.5, Qt::DashLine));
    addGraph(tr("card"), Qt::darkGray)->setPen(QPen(Qt::darkGray, 1.5, Qt::DotLine));
    // budget and card lines only appear in the legend once the run has them
    for (Series s : {Budget, Card}) graph(s)->removeFromLegend();
}

double MemoryChart::scale() const { return std::pow(1024.0, m_unitPower); }

QString MemoryChart::unit() const { return m_unitPower >= 3 ? "GiB" : m_unitPower == 2 ? "MiB" : "KiB"; }

bool MemoryChart::noteStep(const qls::step_stats& s) {
    const uint64_t peak = std::max({planTotal(s, s.device_total_bytes > 0), s.device_used_bytes, s.device_peak_bytes,
                                    s.device_total_bytes, uint64_t(m_budgetBytes)});
    bool grew = false;
    const int power = unitPowerFor(peak);
    if (power > m_unitPower) {
        m_unitPower = power;
        grew = true;
    }
    if (m_categories.isEmpty() && !s.plan_bytes.empty()) buildCategories(s);
    return grew;
}

void MemoryChart::noteHistory(const QVector<qls::step_stats>& history) {
    m_unitPower = 1;
    for (const qls::step_stats& s : history) {
        m_unitPower = std::max(m_unitPower,
                               unitPowerFor(std::max({planTotal(s, s.device_total_bytes > 0), s.device_used_bytes,
                                                      s.device_total_bytes, uint64_t(m_budgetBytes)})));
        if (m_categories.isEmpty() && !s.plan_bytes.empty()) buildCategories(s);
    }
}

void MemoryChart::reset() {
    clearData();
    for (QCPGraph* g : m_categoryGraphs) plot()->removeGraph(g);
    m_categoryGraphs.clear();
    m_categories.clear();
    m_unitPower = 1;
    for (Series s : {Budget, Card}) graph(s)->removeFromLegend();
}

void MemoryChart::buildCategories(const qls::step_stats& s) {
    QCustomPlot* p = plot();
    // Stacked in the plan's category order with the plan's colours, whatever order the step lists them in (a run read
    // back from metrics.jsonl lists them as its JSON object does): live and reloaded runs and the Plan page agree.
    std::vector<std::pair<int, std::string>> present; // (category index, machine name); unknown names last
    for (const auto& [name, bytes] : s.plan_bytes) {
        if (bytes == 0) continue;
        if (s.device_total_bytes == 0 && name == kContextCategory) continue; // a CPU run has no CUDA context
        const int index = planCategoryIndex(QString::fromStdString(name));
        present.emplace_back(index < 0 ? qls::plan_category_count : index, name);
    }
    std::stable_sort(present.begin(), present.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [index, name] : present) {
        QCPGraph* g = p->addGraph();
        QColor c = planCategoryColor(index);
        g->setName(categoryLabel(QString::fromStdString(name)));
        g->setPen(QPen(c.darker(120), 1));
        c.setAlpha(110);
        g->setBrush(c);
        g->setChannelFillGraph(m_categoryGraphs.isEmpty() ? nullptr : m_categoryGraphs.last());
        m_categoryGraphs << g;
        m_categories << QString::fromStdString(name);
    }
    // up to ten categories: the legend goes below the chart, three entries a row, instead of covering the stack
    if (p->legend->layout() == p->axisRect()->insetLayout() && p->axisRect()->insetLayout()->take(p->legend)) {
        p->axisRect()->insetLayout()->simplify();
        p->plotLayout()->addElement(p->plotLayout()->rowCount(), 0, p->legend);
        p->plotLayout()->setRowStretchFactor(p->plotLayout()->rowCount() - 1, 0.001);
        fitLegend();
        p->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst, false);
        p->legend->setFillOrder(QCPLayoutGrid::foRowsFirst, true);
        p->legend->setBorderPen(Qt::NoPen);
        p->legend->setMargins(QMargins(4, 0, 4, 2));
        p->legend->setIconSize(14, 8);
        p->legend->setColumnSpacing(6);
    }
    // the measured, budget and card lines stay on top of the stacked areas
    if (!p->layer("lines")) p->addLayer("lines", p->layer("main"), QCustomPlot::limAbove);
    for (Series sr : {Measured, Budget, Card}) graph(sr)->setLayer("lines");
}

void MemoryChart::append(const qls::step_stats& s) {
    const double x = double(s.step);
    const double u = scale();
    double cumulative = 0;
    for (int i = 0; i < m_categories.size(); ++i) {
        const std::string name = m_categories[i].toStdString();
        for (const auto& [n, bytes] : s.plan_bytes)
            if (n == name) cumulative += double(bytes) / u;
        m_categoryGraphs[i]->addData(x, cumulative);
    }
    graph(Measured)->addData(x, double(s.device_used_bytes) / u);
    if (m_budgetBytes > 0) {
        graph(Budget)->addData(x, double(m_budgetBytes) / u);
        graph(Budget)->addToLegend();
    }
    if (s.device_total_bytes > 0) {
        m_anyCard = true;
        graph(Card)->addData(x, double(s.device_total_bytes) / u);
        graph(Card)->addToLegend();
    }
}

void MemoryChart::fitLegend() {
    QCustomPlot* p = plot();
    if (p->legend->layout() == p->axisRect()->insetLayout()) return; // still inside the chart (no categories yet)
    int widest = 0;
    const QFontMetrics fm(p->legend->font());
    for (int i = 0; i < p->legend->itemCount(); ++i)
        if (auto* item = qobject_cast<QCPPlottableLegendItem*>(p->legend->item(i)))
            widest = std::max(widest, fm.horizontalAdvance(item->plottable()->name()));
    const int perEntry = widest + p->legend->iconSize().width() + p->legend->iconTextPadding() + 12;
    const int columns = std::clamp(p->width() / std::max(1, perEntry), 1, 4);
    // filled row by row within a column: the wrap is the number of rows
    const int rows = std::max(1, (p->legend->itemCount() + columns - 1) / columns);
    if (p->legend->wrap() != rows) {
        p->legend->setWrap(rows);
        p->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst, false);
        p->legend->setFillOrder(QCPLayoutGrid::foRowsFirst, true);
        replot();
    }
}

void MemoryChart::fitExtra() {
    if (!follows()) return;
    double top = 0;
    bool found = false;
    QList<QCPGraph*> data = m_categoryGraphs;
    data << graph(Measured);
    for (QCPGraph* g : data) {
        bool ok = false;
        const QCPRange r = g->getValueRange(ok);
        if (ok) {
            top = std::max(top, r.upper);
            found = true;
        }
    }
    if (!found || top <= 0) return;
    for (Series s : {Budget, Card}) {
        bool ok = false;
        const QCPRange r = graph(s)->getValueRange(ok);
        if (ok && r.upper <= 1.5 * top) top = std::max(top, r.upper);
    }
    plot()->yAxis->setRange(0, top * 1.12);
}

void MemoryChart::clearData() {
    MonitorChart::clearData();
    for (QCPGraph* g : m_categoryGraphs) g->data()->clear();
    m_anyCard = false;
    if (m_budgetBytes == 0) graph(Budget)->removeFromLegend();
}

QString MemoryChart::titleFor(const QVector<qls::step_stats>& history) const {
    const qls::step_stats& last = history.last();
    if (!m_anyCard) return tr("Memory (%1) — CPU run: plan and engine bytes").arg(unit());
    const double u = scale();
    return tr("Memory (%1) — used %2 of plan %3")
        .arg(unit())
        .arg(double(last.device_used_bytes) / u, 0, 'f', 1)
        .arg(double(planTotal(last, m_anyCard)) / u, 0, 'f', 1);
}

QString MemoryChart::describe(const qls::step_stats& s) const {
    const double u = scale();
    QString text;
    for (const auto& [name, bytes] : s.plan_bytes)
        if (bytes > 0 && (s.device_total_bytes > 0 || name != kContextCategory))
            text += tr("<br>%1: %2 %3")
                        .arg(categoryLabel(QString::fromStdString(name)))
                        .arg(double(bytes) / u, 0, 'f', 2)
                        .arg(unit());
    text += tr("<br>measured %1 %3, peak %2 %3")
                .arg(double(s.device_used_bytes) / u, 0, 'f', 2)
                .arg(double(s.device_peak_bytes) / u, 0, 'f', 2)
                .arg(unit());
    if (m_budgetBytes > 0) text += tr("<br>budget %1 %2").arg(double(m_budgetBytes) / u, 0, 'f', 2).arg(unit());
    text += s.device_total_bytes > 0 ? tr("<br>card %1 %2").arg(double(s.device_total_bytes) / u, 0, 'f', 2).arg(unit())
                                     : tr("<br>CPU backend: no card");
    return text;
}
