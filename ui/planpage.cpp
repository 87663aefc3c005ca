// PlanPage: runs qls::plan_run on every input change and draws its categories as one stacked bar with budget and card lines.
#include "planpage.h"

#include "plancolors.h"
#include "plotstyle.h"

#include "qls/error.h"

#include <QHeaderView>
#include <QLabel>
#include <QPixmap>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>
#include <cmath>

#include <qcustomplot.h>

namespace {

// One colour per plan_category, as the Monitor's memory chart draws them.
const std::array<QColor, qls::plan_category_count> k_categoryColors = [] {
    std::array<QColor, qls::plan_category_count> c;
    for (int i = 0; i < qls::plan_category_count; ++i) c[size_t(i)] = planCategoryColor(i);
    return c;
}();

// Bytes in GiB, or in MiB below 1 GiB (a small model's rows are then not all "0.00 GiB").
QString gib(uint64_t bytes) {
    if (bytes < (1ull << 30)) return QStringLiteral("%1 MiB").arg(double(bytes) / double(1ull << 20), 0, 'f', 1);
    return QStringLiteral("%1 GiB").arg(qls::to_gib(bytes), 0, 'f', 2);
}

QString optimizerLabel(qls::optimizer_kind k) {
    switch (k) {
    case qls::optimizer_kind::paged_adamw_8bit: return QObject::tr("paged AdamW 8-bit");
    case qls::optimizer_kind::paged_adamw_32bit: return QObject::tr("paged AdamW 32-bit");
    case qls::optimizer_kind::adamw_8bit: return QObject::tr("AdamW 8-bit");
    case qls::optimizer_kind::adamw_32bit: return QObject::tr("AdamW 32-bit");
    }
    return {};
}

QString targetsLabel(const std::vector<qls::lora_target>& t) {
    return QString::fromStdString(qls::lora_targets_string(t)).replace(',', QStringLiteral(", "));
}

// A suggestion in the words of the Training page: what to change, and what the plan then predicts. The engine's
// own text (written for the CLI, with its flags) is kept for the one that names no setting.
QString describeSuggestion(const qls::plan_settings& now, const qls::plan_suggestion& sg) {
    const qls::plan_settings& to = sg.settings;
    if (sg.verdict == qls::plan_verdict::does_not_fit) return QString::fromStdString(sg.text);
    QStringList changes;
    if (to.gradient_checkpointing != now.gradient_checkpointing)
        changes << QObject::tr("turn Gradient checkpointing %1").arg(to.gradient_checkpointing ? "on" : "off");
    if (to.optimizer != now.optimizer) changes << QObject::tr("Optimizer %1").arg(optimizerLabel(to.optimizer));
    if (to.batch != now.batch) {
        QString c = QObject::tr("Micro-batch %1").arg(to.batch);
        if (now.batch % to.batch == 0)
            c += QObject::tr(" (multiply Accumulation by %1 to keep the effective batch)").arg(now.batch / to.batch);
        changes << c;
    }
    if (to.lora.rank != now.lora.rank) changes << QObject::tr("Rank %1").arg(to.lora.rank);
    if (to.lora.targets != now.lora.targets)
        changes << QObject::tr("Target modules %1").arg(targetsLabel(to.lora.targets));
    if (to.seq != now.seq) changes << QObject::tr("Sequence length %1").arg(to.seq);
    if (to.budget_bytes != now.budget_bytes)
        changes << QObject::tr("VRAM budget at least %1").arg(gib(to.budget_bytes));
    if (to.card_bytes != now.card_bytes) changes << QObject::tr("a card of at least %1").arg(gib(to.card_bytes));
    if (changes.isEmpty()) return QString::fromStdString(sg.text);
    QString out = changes.join(QStringLiteral(", ")) + QObject::tr(" → predicted %1").arg(gib(sg.peak_bytes));
    if (sg.verdict == qls::plan_verdict::fits_with_paging) out += QObject::tr(" (with paging)");
    return out;
}

} // namespace

PlanPage::PlanPage(QWidget* parent) : QWidget(parent) {
    auto* layout = new QVBoxLayout(this);
    auto* title = new QLabel(tr("<h2>Plan</h2>What the run will allocate on the card, computed from the model's "
                                "dimensions and the Training page before anything is loaded."),
                             this);
    title->setWordWrap(true);
    layout->addWidget(title);
    m_summary = new QLabel(this);
    m_summary->setWordWrap(true);
    m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_summary);
    m_verdict = new QLabel(this);
    m_verdict->setTextFormat(Qt::RichText);
    m_verdict->setToolTip(
        tr("Fits: every tensor stays on the device within the limit. Fits with paging: paged optimizer "
           "states that do not fit move to pinned host memory (slower steps, same result). Fits with checkpoint "
           "offload: each layer's checkpoint waits in pinned host memory and comes back one layer ahead in the "
           "backward (copies beside the compute, same result). Does not fit: even the smallest footprint "
           "exceeds the limit."));
    layout->addWidget(m_verdict);
    m_explanation = new QLabel(this);
    m_explanation->setWordWrap(true);
    m_explanation->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_explanation);
    m_hostLabel = new QLabel(this);
    m_hostLabel->setObjectName("hostMemory");
    m_hostLabel->setWordWrap(true);
    m_hostLabel->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_hostLabel->setToolTip(
        tr("Host RAM the run needs at its peak (model as the backend holds it, load staging, pinned "
           "pages of the optimizer, runtime), against MemTotal and MemAvailable of /proc/meminfo"));
    layout->addWidget(m_hostLabel);
    m_estimate = new QLabel(this);
    m_estimate->setObjectName("timeEstimate");
    m_estimate->setWordWrap(true);
    m_estimate->setToolTip(tr("How long the whole run should take: the steps times the time one micro-batch took in "
                              "a short measured warm-up of this model and these settings on this machine"));
    layout->addWidget(m_estimate);
    m_suggestions = new QLabel(this);
    m_suggestions->setWordWrap(true);
    m_suggestions->setTextFormat(Qt::RichText);
    m_suggestions->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_suggestions);

    auto* split = new QSplitter(Qt::Vertical, this);
    layout->addWidget(split, 1);
    m_chart = new QCustomPlot(split);
    m_chart->setMinimumHeight(190);
    themePlot(m_chart, palette());
    m_chart->setToolTip(
        tr("Predicted device memory per category, stacked; the lines are the VRAM budget and the card's "
           "total memory"));
    // Horizontal bar: categories are stacked along the x (value) axis on one key of the y axis.
    m_chart->yAxis->setVisible(false);
    m_chart->yAxis->setRange(0.4, 1.6);
    m_chart->xAxis->setLabel(tr("GiB"));
    // the table below names every colour (its rows carry the swatches): no legend to clip at narrow widths
    m_chart->legend->setVisible(false);
    m_chart->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    m_chart->legend->setWrap(4);
    m_chart->legend->setBorderPen(Qt::NoPen);
    auto* legendRow = new QCPLayoutGrid;
    m_chart->plotLayout()->addElement(1, 0, legendRow);
    legendRow->addElement(0, 0, m_chart->legend);
    legendRow->setMargins(QMargins(5, 0, 5, 5));
    m_chart->plotLayout()->setRowStretchFactor(1, 0.001);
    for (int i = 0; i < qls::plan_category_count; ++i) {
        auto* bars = new QCPBars(m_chart->yAxis, m_chart->xAxis);
        bars->setName(QString::fromLatin1(qls::plan_category_label(qls::plan_category(i))));
        bars->setBrush(k_categoryColors[size_t(i)]);
        bars->setPen(QPen(k_categoryColors[size_t(i)].darker(130)));
        bars->setWidth(0.6);
        m_bars[size_t(i)] = bars;
    }
    // the CUDA context first (it is on the card before anything of the run), then the plan's categories in order
    QCPBars* below = m_bars[size_t(qls::plan_category::cuda_context)];
    for (int i = 0; i < qls::plan_category_count; ++i) {
        if (m_bars[size_t(i)] == below) continue;
        m_bars[size_t(i)]->moveAbove(below);
        below = m_bars[size_t(i)];
    }

    m_table = new QTableWidget(0, 3, split);
    m_table->setHorizontalHeaderLabels({tr("Category"), tr("GiB"), tr("Share of peak")});
    m_table->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
    m_table->verticalHeader()->hide();
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setSelectionMode(QAbstractItemView::NoSelection);
    m_table->setFocusPolicy(Qt::NoFocus);
    m_table->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 8);
    m_table->setToolTip(tr("The plan's categories: the device peak is their sum; the CUDA context is on the card but "
                           "outside the budget; paged states on the host are pinned host memory"));
    split->addWidget(m_chart);
    split->addWidget(m_table);
    split->setStretchFactor(0, 2);
    split->setStretchFactor(1, 3);
    showNoPlan(tr("Load a model on the Model page to see the memory plan."), false);
}

void PlanPage::setInput(const qls::train_config& config, const qls::model_config& model,
                        const qls::compute_device& device) {
    m_config = config;
    m_settingsError.clear();
    m_model = model;
    m_device = device;
    recompute();
}

void PlanPage::setTrainConfig(const qls::train_config& config) {
    m_config = config;
    m_settingsError.clear();
    recompute();
}

void PlanPage::setSettingsInvalid(const QString& reason) {
    m_settingsError = reason.isEmpty() ? tr("a setting on the Training page is refused") : reason;
    recompute();
}

void PlanPage::setTimeEstimate(double seconds, const QString& basis) {
    m_estimateShort.clear();
    if (basis.isEmpty()) {
        m_estimate->clear();
        return;
    }
    if (seconds <= 0) { // no measurement, and why
        m_estimate->setText(tr("<b>Time:</b> no estimate before Start (%1)").arg(basis.toHtmlEscaped()));
        return;
    }
    const qint64 s = qint64(std::llround(seconds));
    m_estimateShort = s < 90     ? tr("about %1 s").arg(std::max<qint64>(1, s))
                      : s < 5400 ? tr("about %1 min").arg((s + 30) / 60)
                                 : tr("about %1 h %2 min").arg(s / 3600).arg((s % 3600 + 30) / 60);
    m_estimate->setText(tr("<b>Time:</b> %1 (%2)").arg(m_estimateShort, basis.toHtmlEscaped()));
}

QString PlanPage::timeEstimateText() const { return m_estimate->text(); }

QString PlanPage::unit() const {
    return m_plan && m_plan->card_bytes_needed() >= (1ull << 30) ? QStringLiteral("GiB") : QStringLiteral("MiB");
}

void PlanPage::setModelConfig(const qls::model_config& model) {
    m_model = model;
    recompute();
}

void PlanPage::setDevice(const qls::compute_device& device) {
    const qls::compute_device& d = m_device;
    if (d.backend == device.backend && d.index == device.index && d.name == device.name &&
        d.total_bytes == device.total_bytes && d.free_bytes == device.free_bytes)
        return;
    m_device = device;
    recompute();
}

void PlanPage::setHostMemory(const qls::host_memory& host) {
    m_host = host;
    if (m_model) recompute();
}

void PlanPage::clearModel() {
    m_model.reset();
    recompute();
}

void PlanPage::recompute() {
    m_plan.reset();
    if (!m_model) {
        showNoPlan(tr("Load a model on the Model page to see the memory plan."), false);
        emit planChanged();
        return;
    }
    if (!m_settingsError.isEmpty()) {
        showNoPlan(tr("Settings invalid: %1").arg(m_settingsError), true);
        emit planChanged();
        return;
    }
    try {
        qls::plan_settings s = qls::plan_settings_for(m_config, m_device);
        if (m_host.total_bytes > 0) s.host = m_host;
        m_plan = qls::plan_run(*m_model, s);
    } catch (const qls::error& e) {
        QString msg = QString::fromStdString(e.what());
        if (!e.hint().empty()) msg += tr(" — fix: %1").arg(QString::fromStdString(e.hint()));
        showNoPlan(tr("No plan: %1").arg(msg), true);
        emit planChanged();
        return;
    }
    showPlan();
    emit planChanged();
}

void PlanPage::showNoPlan(const QString& why, bool error) {
    m_verdict->setText(error ? QStringLiteral("<span style='color:#b00020'>%1</span>").arg(why.toHtmlEscaped())
                             : why.toHtmlEscaped());
    m_verdict->setProperty("verdict", why);
    m_summary->clear();
    m_explanation->clear();
    m_hostLabel->clear();
    m_suggestions->clear();
    m_estimate->clear();
    for (QCPBars* b : m_bars) b->data()->clear();
    m_chart->clearItems();
    m_chart->replot();
    m_table->setRowCount(0);
}

void PlanPage::showPlan() {
    const qls::memory_plan& p = *m_plan;
    const qls::model_config& m = p.config;
    const double params = double(m.parameter_count());
    m_summary->setText(
        tr("Model: %1 %2 parameters, %3 layers, hidden %4 · run: %5 × %6 tokens, rank %7 on %8 (%9 trainable), %10, "
           "checkpointing %11")
            .arg(params >= 1e9 ? params / 1e9 : params / 1e6, 0, 'f', 2)
            .arg(params >= 1e9 ? "B" : "M")
            .arg(m.num_layers)
            .arg(m.hidden_size)
            .arg(p.settings.batch)
            .arg(p.settings.seq)
            .arg(p.settings.lora.rank)
            .arg(targetsLabel(p.settings.lora.targets))
            .arg(p.lora_parameters >= 1000000 ? QStringLiteral("%1 M").arg(double(p.lora_parameters) / 1e6, 0, 'f', 1)
                                              : QStringLiteral("%1 K").arg(double(p.lora_parameters) / 1e3, 0, 'f', 1))
            .arg(optimizerLabel(p.settings.optimizer))
            .arg(p.settings.gradient_checkpointing ? tr("on") : tr("off")));

    QString verdict, color;
    if (!p.host.fits) {
        verdict = tr("Does not fit the machine's memory");
        color = "#b00020";
    } else if (p.limit_bytes == 0 && p.settings.backend != "cuda" && p.host.checked) {
        verdict = tr("Fits the machine's memory");
        color = "#1b7f3b";
    } else if (p.limit_bytes == 0) {
        verdict = tr("Predicted %1 — no budget or card size known").arg(gib(p.card_bytes_needed()));
        color = "#555555";
    } else if (p.verdict == qls::plan_verdict::fits) {
        verdict = tr("Fits");
        color = "#1b7f3b";
    } else if (p.verdict == qls::plan_verdict::fits_with_paging) {
        const bool offloaded = p.checkpoints_offloaded(), paged = p.host_bytes() > p.offloaded_checkpoint_bytes();
        verdict = offloaded && paged ? tr("Fits with paging and checkpoint offload")
                  : offloaded        ? tr("Fits with checkpoint offload")
                                     : tr("Fits with paging");
        color = "#a15c00";
    } else {
        verdict = tr("Does not fit");
        color = "#b00020";
    }
    m_verdict->setText(QStringLiteral("<span style='font-size:15pt; font-weight:600; color:%1'>%2</span>")
                           .arg(color, verdict.toHtmlEscaped()));
    m_verdict->setProperty("verdict", verdict);
    // The engine's sentence starts with the verdict ("fits: ..."), which the headline already says.
    QString expl = QString::fromStdString(p.explanation);
    const QString prefix = QString::fromLatin1(qls::plan_verdict_name(p.verdict)).replace('_', ' ') +
                           QStringLiteral(": ");
    if (expl.startsWith(prefix)) expl = expl.mid(prefix.size());
    if (!expl.isEmpty()) expl[0] = expl[0].toUpper();
    m_explanation->setText(expl);
    {
        const qls::host_plan& h = p.host;
        QString html = tr("<b>Host memory (%1 backend):</b> needs %2")
                           .arg(QString::fromStdString(p.settings.backend).toUpper(), gib(h.peak_bytes));
        if (h.checked)
            html += tr(" of %1 available (%2 RAM) — <span style='color:%3'>%4</span>")
                        .arg(gib(h.machine.available_bytes ? h.machine.available_bytes : h.machine.total_bytes),
                             gib(h.machine.total_bytes), h.fits ? "#1b7f3b" : "#b00020",
                             h.fits ? tr("fits") : tr("does not fit"));
        html += "<br>";
        QStringList parts;
        for (const qls::host_item& i : h.items)
            parts << QStringLiteral("%1 %2").arg(QString::fromStdString(i.label).toHtmlEscaped(), gib(i.bytes));
        m_hostLabel->setText(html + parts.join(" · "));
    }
    if (!p.host.suggestions.empty()) {
        QString html = tr("<b>To fit the machine's memory:</b><ul style='margin-top:2px'>");
        for (const std::string& sg : p.host.suggestions)
            html += "<li>" + QString::fromStdString(sg).toHtmlEscaped() + "</li>";
        m_suggestions->setText(html + "</ul>");
    } else if (!p.suggestions.empty()) {
        QString html = tr("<b>To make it fit, change on the Training page:</b><ul style='margin-top:2px'>");
        for (const auto& sg : p.suggestions)
            html += "<li>" + describeSuggestion(p.settings, sg).toHtmlEscaped() + "</li>";
        m_suggestions->setText(html + "</ul>");
    } else {
        m_suggestions->clear();
    }

    // ---- the stacked bar and the limit lines ----
    // A CPU run has no CUDA context: its bar is zero. On a GPU the context is stacked first and the budget line drawn
    // after it (the budget is checked against the peak without the context), so the bar's end and the budget line
    // agree with the verdict.
    const bool cpu = p.settings.backend != "cuda";
    m_unitBytes = p.card_bytes_needed() >= (1ull << 30) ? double(1ull << 30) : double(1ull << 20);
    const double u = m_unitBytes;
    const QString unitName = u >= double(1ull << 30) ? tr("GiB") : tr("MiB");
    m_chart->xAxis->setLabel(unitName);
    m_table->horizontalHeaderItem(1)->setText(unitName);
    const size_t ctx = size_t(qls::plan_category::cuda_context);
    double top = 0; // the bar's length
    for (int i = 0; i < qls::plan_category_count; ++i) {
        const double v = cpu && size_t(i) == ctx ? 0.0 : double(p.category_bytes(qls::plan_category(i))) / u;
        m_bars[size_t(i)]->data()->clear();
        m_bars[size_t(i)]->addData(1.0, v);
        top += v;
    }
    const double context = m_bars[ctx]->data()->constBegin()->value;
    m_chart->clearItems();
    // The axis spans the bar and the budget; a card far beyond them (an 80 GiB card, a 7 GiB plan) would squash the
    // bar, so then its line is replaced by a label at the right edge.
    const double budget = p.settings.budget_bytes > 0 ? double(p.settings.budget_bytes) / u + context : 0.0,
                 card = double(p.settings.card_bytes) / u;
    double right = std::max(top, budget);
    if (card > 0 && card <= 2.5 * std::max(right, 1e-3)) right = std::max(right, card);
    right = std::max(right * 1.08, 1e-3);
    auto addLine = [this, right](double x, const QString& text, const QColor& c, Qt::PenStyle style, double y) {
        auto* label = new QCPItemText(m_chart);
        label->setColor(c);
        if (x > right) {
            label->position->setType(QCPItemPosition::ptAxisRectRatio);
            label->position->setCoords(1.0, 0.1);
            label->setPositionAlignment(Qt::AlignRight | Qt::AlignTop);
            label->setPadding(QMargins(0, 0, 4, 0));
            label->setText(text + QStringLiteral(" →"));
            return;
        }
        auto* line = new QCPItemStraightLine(m_chart);
        line->point1->setCoords(x, 0);
        line->point2->setCoords(x, 1);
        line->setPen(QPen(c, 2, style));
        label->position->setCoords(x, y);
        // the label goes on the side of the line with room for it
        const bool leftSide = x > 0.35 * right;
        label->setPositionAlignment((leftSide ? Qt::AlignRight : Qt::AlignLeft) | Qt::AlignVCenter);
        label->setPadding(leftSide ? QMargins(0, 0, 4, 0) : QMargins(4, 0, 0, 0));
        label->setText(text);
    };
    if (p.settings.budget_bytes > 0)
        addLine(budget, tr("budget %1").arg(gib(p.settings.budget_bytes)), QColor("#b00020"), Qt::DashLine, 1.45);
    if (p.settings.card_bytes > 0)
        addLine(card, tr("card %1").arg(gib(p.settings.card_bytes)), QColor("#333333"), Qt::SolidLine, 0.55);
    m_chart->xAxis->setRange(0, right);
    m_chart->replot();

    // ---- the table ----
    const uint64_t peak = p.peak_bytes();
    m_table->setRowCount(0);
    auto addRow = [this](const QString& name, uint64_t bytes, const QString& share, const QColor* swatch, bool bold) {
        const int r = m_table->rowCount();
        m_table->insertRow(r);
        auto* nameItem = new QTableWidgetItem(name);
        if (swatch) {
            QPixmap px(12, 12);
            px.fill(*swatch);
            nameItem->setIcon(QIcon(px));
        }
        auto* value = new QTableWidgetItem(QString::number(double(bytes) / m_unitBytes, 'f',
                                                           m_unitBytes >= double(1ull << 30) ? 3 : 2));
        value->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
        auto* shareItem = new QTableWidgetItem(share);
        shareItem->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
        for (QTableWidgetItem* it : {nameItem, value, shareItem}) {
            QFont f = it->font();
            f.setBold(bold);
            it->setFont(f);
        }
        m_table->setItem(r, 0, nameItem);
        m_table->setItem(r, 1, value);
        m_table->setItem(r, 2, shareItem);
    };
    for (int i = 0; i < qls::plan_category_count; ++i) {
        const auto c = qls::plan_category(i);
        if (c == qls::plan_category::cuda_context) continue;
        const uint64_t b = p.category_bytes(c);
        addRow(QString::fromLatin1(qls::plan_category_label(c)), b,
               peak ? QStringLiteral("%1 %").arg(100.0 * double(b) / double(peak), 0, 'f', 1) : QString(),
               &k_categoryColors[size_t(i)], false);
    }
    addRow(cpu ? tr("peak (the budget is checked against this)")
               : tr("device peak (the budget is checked against this)"),
           peak, QString(), nullptr, true);
    if (!cpu) {
        addRow(QString::fromLatin1(qls::plan_category_label(qls::plan_category::cuda_context)), p.context_bytes(),
               QString(), &k_categoryColors[size_t(qls::plan_category::cuda_context)], false);
        addRow(tr("the card must hold"), p.card_bytes_needed(), QString(), nullptr, true);
    }
    const uint64_t offloaded = p.offloaded_checkpoint_bytes();
    if (p.host_bytes() > offloaded)
        addRow(tr("paged optimizer states in pinned host memory"), p.host_bytes() - offloaded, QString(), nullptr,
               false);
    if (offloaded > 0)
        addRow(tr("layer checkpoints offloaded to pinned host memory"), offloaded, QString(), nullptr, false);
    m_table->resizeColumnsToContents();
    m_table->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
}

QString PlanPage::verdictText() const { return m_verdict->property("verdict").toString(); }

std::array<double, qls::plan_category_count> PlanPage::barValuesGiB() const {
    std::array<double, qls::plan_category_count> out{};
    for (int i = 0; i < qls::plan_category_count; ++i) {
        const QCPBars* b = m_bars[size_t(i)];
        out[size_t(i)] = b->data()->isEmpty() ? 0.0 : b->data()->constBegin()->value * m_unitBytes / double(1ull << 30);
    }
    return out;
}
