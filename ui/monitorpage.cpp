// MonitorPage: QCustomPlot charts fed step by step and redrawn on a coalescing ~30 Hz timer (anchors §7.5, §7.8 habit 15).
#include "monitorpage.h"

#include "trainingsession.h"

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

#include <QCheckBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QRegularExpressionValidator>
#include <QLocale>
#include <QMenu>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSaveFile>
#include <QSplitter>
#include <QTextStream>
#include <QToolTip>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace {

const QColor kPalette[] = {QColor(0x1f, 0x77, 0xb4), QColor(0xff, 0x7f, 0x0e), QColor(0x2c, 0xa0, 0x2c),
                           QColor(0xd6, 0x27, 0x28), QColor(0x94, 0x67, 0xbd), QColor(0x8c, 0x56, 0x4b),
                           QColor(0xe3, 0x77, 0xc2), QColor(0x7f, 0x7f, 0x7f), QColor(0xbc, 0xbd, 0x22),
                           QColor(0x17, 0xbe, 0xcf)};

// Short legend names for the memory plan's categories (machine names of qls::plan_category_name).
QString categoryLabel(const QString& machineName) {
    static const QHash<QString, QString> labels = {
        {"quantized_weights", "NF4 weights"}, {"frozen_weights", "frozen"},        {"lora_weights", "LoRA"},
        {"lora_grads", "LoRA grads"},         {"optimizer_resident", "optimizer"}, {"optimizer_paged", "optim. paged"},
        {"activations", "activations"},       {"logits_loss", "logits"},           {"workspace", "workspace"},
        {"cuda_context", "CUDA context"}};
    QString s = labels.value(machineName, machineName);
    s.replace('_', ' ');
    return s;
}

double megabytesPerSecond(uint64_t bytes, double seconds) { return seconds > 0 ? double(bytes) / seconds / 1e6 : 0.0; }

// The CUDA context is device memory the driver takes, outside our budget; a CPU run has none.
const char* const kContextCategory = "cuda_context";

uint64_t planTotal(const qls::step_stats& s, bool withContext = true) {
    uint64_t t = 0;
    for (const auto& [name, bytes] : s.plan_bytes)
        if (withContext || name != kContextCategory) t += bytes;
    return t;
}

// 1 = KiB, 2 = MiB, 3 = GiB: the unit that keeps the memory chart's numbers readable.
int unitPowerFor(uint64_t bytes) { return bytes >= (1ull << 30) ? 3 : bytes >= (1ull << 20) ? 2 : 1; }

} // namespace

MonitorPage::MonitorPage(QWidget* parent) : QWidget(parent) {
    m_follow.fill(true);
    auto* outer = new QVBoxLayout(this);

    // ---- controls ---------------------------------------------------------------------------------------------
    auto* buttons = new QHBoxLayout;
    auto* nameLabel = new QLabel(tr("Run name:"), this);
    m_runName = new QLineEdit(this);
    m_runName->setPlaceholderText(tr("automatic"));
    m_runName->setMaximumWidth(220);
    m_runName->setToolTip(tr("The new run's directory under the runs folder (letters, digits, '-', '_', '.'); leave "
                             "empty for run-<date>-<time>. A name that already has checkpoints is refused: resume "
                             "that run from the Runs page instead"));
    m_runName->setValidator(new QRegularExpressionValidator(QRegularExpression("[A-Za-z0-9._-]{0,100}"), m_runName));
    nameLabel->setBuddy(m_runName);
    nameLabel->setToolTip(m_runName->toolTip());
    buttons->addWidget(nameLabel);
    buttons->addWidget(m_runName);
    m_start = new QPushButton(tr("Start"), this);
    m_start->setToolTip(tr("Start a new run with the model, dataset and settings chosen on the other pages"));
    m_pause = new QPushButton(tr("Pause"), this);
    m_pause->setToolTip(tr("Hold the run after the current step; nothing is lost, Resume goes on"));
    m_resume = new QPushButton(tr("Resume"), this);
    m_resume->setToolTip(tr("Continue a paused run"));
    m_stop = new QPushButton(tr("Stop and save"), this);
    m_stop->setToolTip(tr("End the run after the current step and save a checkpoint it can be resumed from"));
    m_logScale = new QCheckBox(tr("Log-scale loss"), this);
    m_logScale->setToolTip(tr("Draw the loss axis logarithmically (late, small improvements become visible)"));
    m_savePng = new QPushButton(tr("Save chart…"), this);
    m_savePng->setToolTip(tr("Save one chart, or all of them, as a PNG image"));
    m_saveCsv = new QPushButton(tr("Export CSV…"), this);
    m_saveCsv->setToolTip(tr("Save every step's numbers (loss, learning rate, throughput, memory, paging) as CSV"));
    for (QPushButton* b : {m_start, m_pause, m_resume, m_stop}) buttons->addWidget(b);
    buttons->addSpacing(16);
    buttons->addWidget(m_logScale);
    buttons->addStretch(1);
    buttons->addWidget(m_savePng);
    buttons->addWidget(m_saveCsv);
    outer->addLayout(buttons);

    m_runLabel = new QLabel(tr("No run yet: choose a model and a dataset, then press Start."), this);
    m_runLabel->setToolTip(tr("The run shown: its directory under the runs folder"));
    m_runLabel->setTextInteractionFlags(Qt::TextSelectableByMouse);
    outer->addWidget(m_runLabel);
    m_status = new QLabel(this);
    m_status->setWordWrap(true);
    m_status->setToolTip(tr("How the run ended, or what went wrong and what to do about it"));
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_status->hide();
    outer->addWidget(m_status);

    auto* progressRow = new QHBoxLayout;
    m_progress = new QProgressBar(this);
    m_progress->setRange(0, 1);
    m_progress->setValue(0);
    m_progress->setFormat(tr("%v / %m steps"));
    m_progress->setToolTip(tr("Optimizer steps completed out of the run's total"));
    m_progressLabel = new QLabel(this);
    m_progressLabel->setToolTip(tr("Latest step: epoch reached, loss, throughput and the estimated time to the last step"));
    progressRow->addWidget(m_progress, 1);
    progressRow->addWidget(m_progressLabel, 2);
    outer->addLayout(progressRow);

    // ---- charts -----------------------------------------------------------------------------------------------
    auto* chartsArea = new QWidget(this);
    chartsArea->setObjectName("charts");
    auto* grid = new QGridLayout(chartsArea);
    grid->setContentsMargins(0, 0, 0, 0);
    grid->setSpacing(4);
    makePlot(LossChart, tr("Loss"));
    makePlot(LearningRateChart, tr("Learning rate"));
    makePlot(ThroughputChart, tr("Throughput (tokens/s)"));
    makePlot(MemoryChart, tr("Memory"));
    makePlot(PagingChart, tr("Paging (MB/s)"));
    m_log = new QPlainTextEdit(chartsArea);
    m_log->setReadOnly(true);
    m_log->setMaximumBlockCount(20000);
    m_log->setLineWrapMode(QPlainTextEdit::NoWrap);
    m_log->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    m_log->setPlaceholderText(tr("Step log: one line per optimizer step, and the engine's messages"));
    m_log->setToolTip(tr("One line per optimizer step (loss, learning rate, gradient norm, throughput) and the "
                         "engine's messages (data warnings, evaluations, checkpoints)"));
    grid->addWidget(m_plots[LossChart], 0, 0);
    grid->addWidget(m_plots[LearningRateChart], 0, 1);
    grid->addWidget(m_plots[ThroughputChart], 0, 2);
    grid->addWidget(m_plots[MemoryChart], 1, 0);
    grid->addWidget(m_plots[PagingChart], 1, 1);
    grid->addWidget(m_log, 1, 2);
    for (int i = 0; i < 3; ++i) grid->setColumnStretch(i, 1);
    for (int i = 0; i < 2; ++i) grid->setRowStretch(i, 1);
    outer->addWidget(chartsArea, 1);

    // ---- series -----------------------------------------------------------------------------------------------
    m_series[TrainLoss] = addGraph(LossChart, tr("train"), kPalette[0]);
    m_series[EvalLoss] = addGraph(LossChart, tr("eval"), kPalette[1]);
    m_series[EvalLoss]->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 6));
    m_series[LearningRate] = addGraph(LearningRateChart, tr("learning rate"), kPalette[2]);
    m_series[TokensPerSecond] = addGraph(ThroughputChart, tr("tokens/s"), kPalette[4]);
    m_series[MemoryMeasured] = addGraph(MemoryChart, tr("measured"), Qt::black);
    m_series[MemoryBudget] = addGraph(MemoryChart, tr("budget"), kPalette[3]);
    m_series[MemoryBudget]->setPen(QPen(kPalette[3], 1.5, Qt::DashLine));
    m_series[MemoryCard] = addGraph(MemoryChart, tr("card"), Qt::darkGray);
    m_series[MemoryCard]->setPen(QPen(Qt::darkGray, 1.5, Qt::DotLine));
    m_series[PagingHostToDevice] = addGraph(PagingChart, tr("host→device"), kPalette[0]);
    m_series[PagingDeviceToHost] = addGraph(PagingChart, tr("device→host"), kPalette[1]);
    m_series[ResidentPages] = addGraph(PagingChart, tr("resident pages"), kPalette[2], true);
    m_series[ResidentPages]->setLineStyle(QCPGraph::lsStepLeft);
    m_plots[PagingChart]->yAxis2->setVisible(true);
    m_plots[PagingChart]->yAxis2->setLabel(tr("pages"));
    m_plots[PagingChart]->yAxis->setLabel(tr("MB/s"));
    m_plots[LossChart]->yAxis->setLabel(tr("loss"));
    m_plots[ThroughputChart]->yAxis->setLabel(tr("tokens/s"));
    m_plots[LearningRateChart]->yAxis->setNumberFormat("g");
    m_plots[LearningRateChart]->yAxis->setNumberPrecision(2);
    // budget and card lines only appear in the legend once the run has them
    for (Series s : {MemoryBudget, MemoryCard}) m_series[s]->removeFromLegend();
    for (int c = 0; c < ChartCount; ++c) {
        m_tracers[c] = new QCPItemTracer(m_plots[c]);
        m_tracers[c]->setStyle(QCPItemTracer::tsCrosshair);
        m_tracers[c]->setPen(QPen(QColor(0, 0, 0, 90), 1, Qt::DashLine));
        m_tracers[c]->setVisible(false);
    }
    // the loss chart's replots are the ones counted (every chart is replotted in the same pass)
    connect(m_plots[LossChart], &QCustomPlot::afterReplot, this, [this] { ++m_replotCount; });

    // ---- behaviour --------------------------------------------------------------------------------------------
    m_replotTimer.setSingleShot(true);
    m_replotTimer.setInterval(1000 / maxReplotsPerSecond);
    connect(&m_replotTimer, &QTimer::timeout, this, &MonitorPage::replotNow);
    connect(m_start, &QPushButton::clicked, this, [this] {
        m_status->hide();
        emit startRequested();
    });
    connect(m_pause, &QPushButton::clicked, this, [this] { if (m_session) m_session->pause(); });
    connect(m_resume, &QPushButton::clicked, this, [this] { if (m_session) m_session->resume(); });
    connect(m_stop, &QPushButton::clicked, this, [this] { if (m_session) m_session->stopAndSave(); });
    connect(m_logScale, &QCheckBox::toggled, this, &MonitorPage::setLogScale);
    auto* pngMenu = new QMenu(m_savePng);
    for (int c = 0; c < ChartCount; ++c)
        pngMenu->addAction(chartTitle(Chart(c)), this, [this, c] { saveChartInteractive(Chart(c)); });
    pngMenu->addSeparator();
    pngMenu->addAction(tr("All charts in one image"), this, [this] {
        const QString file = QFileDialog::getSaveFileName(this, tr("Save all charts"), "charts.png", tr("PNG images (*.png)"));
        if (file.isEmpty()) return;
        QWidget* area = findChild<QWidget*>("charts");
        if (!area->grab().save(file, "PNG"))
            setStatus(tr("<b>Could not write %1.</b> Choose a folder you can write to.").arg(file.toHtmlEscaped()));
    });
    m_savePng->setMenu(pngMenu);
    connect(m_saveCsv, &QPushButton::clicked, this, &MonitorPage::exportCsvInteractive);
    updateButtons();
    updateTitles();
}

QCustomPlot* MonitorPage::makePlot(Chart c, const QString& title) {
    auto* plot = new QCustomPlot(this);
    plot->setObjectName(QString("chart%1").arg(int(c)));
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
    m_titles[c] = new QCPTextElement(plot, title, bold);
    plot->plotLayout()->addElement(0, 0, m_titles[c]);
    plot->setToolTip(tr("Hover for the values at a step; drag to pan, wheel to zoom, double-click to follow the run "
                        "again, right-click to save the chart or export the data"));
    plot->setContextMenuPolicy(Qt::CustomContextMenu);
    connect(plot, &QCustomPlot::mouseMove, this, [this, c](QMouseEvent* e) {
        if (e->buttons() & Qt::LeftButton) m_follow[c] = false;
        showTooltip(c, e->pos());
    });
    connect(plot, &QCustomPlot::mouseWheel, this, [this, c] { m_follow[c] = false; });
    connect(plot, &QCustomPlot::mouseDoubleClick, this, [this, c] {
        m_follow[c] = true;
        markDirty();
    });
    connect(plot, &QCustomPlot::customContextMenuRequested, this, [this, c](const QPoint& p) { contextMenu(c, p); });
    m_plots[c] = plot;
    return plot;
}

QCPGraph* MonitorPage::addGraph(Chart c, const QString& name, const QColor& color, bool rightAxis) {
    QCustomPlot* plot = m_plots[c];
    QCPGraph* g = plot->addGraph(plot->xAxis, rightAxis ? plot->yAxis2 : plot->yAxis);
    g->setName(name);
    g->setPen(QPen(color, 1.25));
    return g;
}

void MonitorPage::setSession(TrainingSession* session) {
    if (m_session) disconnect(m_session, nullptr, this, nullptr);
    m_session = session;
    if (session) {
        connect(session, &TrainingSession::stateChanged, this, &MonitorPage::updateButtons);
        connect(session, &TrainingSession::started, this, &MonitorPage::beginRun);
        connect(session, &TrainingSession::stepStats, this, &MonitorPage::addStats);
        connect(session, &TrainingSession::logLine, this, &MonitorPage::addLogLine);
        connect(session, &TrainingSession::finished, this, &MonitorPage::showFinished);
        connect(session, &TrainingSession::failed, this, &MonitorPage::showFailed);
    }
    updateButtons();
}

QString MonitorPage::runName() const { return m_runName->text().trimmed(); }
void MonitorPage::setRunName(const QString& name) { m_runName->setText(name); }

void MonitorPage::setBudgetBytes(quint64 bytes) {
    if (bytes == m_budgetBytes) return;
    m_budgetBytes = bytes;
    rebuildCharts();
    markDirty();
}

// ---- data in ------------------------------------------------------------------------------------------------

void MonitorPage::beginRun(qint64 totalSteps, const QString& runDir) {
    const bool sameRun = !runDir.isEmpty() && QFileInfo(runDir) == QFileInfo(m_runDir);
    m_totalSteps = totalSteps;
    if (!sameRun) {
        m_history.clear();
        m_runDir = runDir;
        m_log->clear();
        m_pendingLog.clear();
        clearCharts();
        m_follow.fill(true);
    }
    m_status->hide();
    m_runLabel->setText(tr("Run %1 — %2").arg(QFileInfo(runDir).fileName().toHtmlEscaped(), QDir::toNativeSeparators(runDir)));
    updateProgress();
    markDirty();
}

void MonitorPage::addStats(const qls::step_stats& s) {
    bool rebuild = false;
    if (!m_history.isEmpty() && s.step <= m_history.last().step) {
        // a resumed run trains again the steps after its checkpoint: the newer values replace the older ones
        while (!m_history.isEmpty() && m_history.last().step >= s.step) m_history.removeLast();
        rebuild = true;
    }
    m_history.push_back(s);
    m_totalSteps = std::max<qint64>(m_totalSteps, s.total_steps);
    uint64_t peak = std::max({planTotal(s, s.device_total_bytes > 0), s.device_used_bytes, s.device_peak_bytes, s.device_total_bytes, uint64_t(m_budgetBytes)});
    const int power = unitPowerFor(peak);
    if (power > m_memoryUnitPower) {
        m_memoryUnitPower = power;
        rebuild = true;
    }
    if (m_memoryCategories.isEmpty() && !s.plan_bytes.empty()) buildMemoryCategories(s);
    if (rebuild)
        rebuildCharts();
    else
        appendToCharts(s);

    QString line = QString("step %1/%2  loss %3  lr %4  grad %5  %6 tok/s  %7 s")
                       .arg(s.step)
                       .arg(s.total_steps)
                       .arg(s.loss, 0, 'f', 4)
                       .arg(s.lr, 0, 'e', 2)
                       .arg(s.grad_norm, 0, 'f', 3)
                       .arg(s.tokens_per_s, 0, 'f', 0)
                       .arg(s.step_time_s, 0, 'f', 3);
    if (s.eval_loss) line += QString("  eval %1").arg(*s.eval_loss, 0, 'f', 4);
    m_pendingLog << line;
    markDirty();
}

void MonitorPage::addLogLine(const QString& line) {
    m_pendingLog << line;
    markDirty();
}

void MonitorPage::showFinished(const QString& status, const QString& checkpointDir) {
    QString text = tr("<b>Finished:</b> %1.").arg(status.toHtmlEscaped());
    if (!checkpointDir.isEmpty())
        text += tr(" Checkpoint: %1").arg(QDir::toNativeSeparators(checkpointDir).toHtmlEscaped());
    setStatus(text);
    m_pendingLog << tr("finished: %1").arg(status);
    markDirty();
    updateButtons();
}

void MonitorPage::showFailed(const QString& message, const QString& hint) {
    QString text = tr("<b style='color:#b00020'>The run failed:</b> %1").arg(message.toHtmlEscaped());
    if (!hint.isEmpty()) text += tr("<br><b>What to do:</b> %1").arg(hint.toHtmlEscaped());
    setStatus(text);
    m_pendingLog << tr("failed: %1").arg(message);
    markDirty();
    updateButtons();
}

void MonitorPage::showRun(const QString& runDir, const QVector<qls::step_stats>& history) {
    m_runDir.clear();
    beginRun(history.isEmpty() ? 0 : history.last().total_steps, runDir);
    m_history = history;
    m_memoryUnitPower = 1;
    for (const qls::step_stats& s : history) {
        m_memoryUnitPower = std::max(m_memoryUnitPower,
                                     unitPowerFor(std::max({planTotal(s, s.device_total_bytes > 0), s.device_used_bytes, s.device_total_bytes, uint64_t(m_budgetBytes)})));
        if (m_memoryCategories.isEmpty() && !s.plan_bytes.empty()) buildMemoryCategories(s);
    }
    rebuildCharts();
    if (history.isEmpty())
        setStatus(tr("<b>This run has no recorded steps</b> (its metrics.jsonl is empty or missing)."));
    else
        setStatus(tr("<b>Past run:</b> %1 steps recorded. Resume it, export it or try it in the Playground from the Runs page.")
                      .arg(history.size()));
    markDirty();
}

// ---- charts ---------------------------------------------------------------------------------------------------

double MonitorPage::memoryScale() const { return std::pow(1024.0, m_memoryUnitPower); }

QString MonitorPage::memoryUnit() const { return m_memoryUnitPower >= 3 ? "GiB" : m_memoryUnitPower == 2 ? "MiB" : "KiB"; }

void MonitorPage::buildMemoryCategories(const qls::step_stats& s) {
    QCustomPlot* plot = m_plots[MemoryChart];
    int colour = 0;
    for (const auto& [name, bytes] : s.plan_bytes) {
        if (bytes == 0) continue;
        if (s.device_total_bytes == 0 && name == kContextCategory) continue; // a CPU run has no CUDA context
        QCPGraph* g = plot->addGraph();
        QColor c = kPalette[(colour++) % std::size(kPalette)];
        g->setName(categoryLabel(QString::fromStdString(name)));
        g->setPen(QPen(c.darker(120), 1));
        c.setAlpha(110);
        g->setBrush(c);
        g->setChannelFillGraph(m_memoryGraphs.isEmpty() ? nullptr : m_memoryGraphs.last());
        m_memoryGraphs << g;
        m_memoryCategories << QString::fromStdString(name);
    }
    // up to ten categories: the legend goes below the chart, three entries a row, instead of covering the stack
    if (plot->axisRect()->insetLayout()->take(plot->legend)) {
        plot->axisRect()->insetLayout()->simplify();
        plot->plotLayout()->addElement(plot->plotLayout()->rowCount(), 0, plot->legend);
        plot->plotLayout()->setRowStretchFactor(plot->plotLayout()->rowCount() - 1, 0.001);
        plot->legend->setWrap(3);
        plot->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst, false);
        plot->legend->setFillOrder(QCPLayoutGrid::foRowsFirst, true);
        plot->legend->setBorderPen(Qt::NoPen);
        plot->legend->setMargins(QMargins(4, 0, 4, 2));
    }
    // the measured, budget and card lines stay on top of the stacked areas
    if (!plot->layer("lines")) plot->addLayer("lines", plot->layer("main"), QCustomPlot::limAbove);
    for (Series sr : {MemoryMeasured, MemoryBudget, MemoryCard}) m_series[sr]->setLayer("lines");
}

void MonitorPage::appendToCharts(const qls::step_stats& s) {
    const double x = double(s.step);
    m_series[TrainLoss]->addData(x, s.loss);
    if (s.eval_loss) m_series[EvalLoss]->addData(x, *s.eval_loss);
    m_series[LearningRate]->addData(x, s.lr);
    m_series[TokensPerSecond]->addData(x, s.tokens_per_s);

    const double unit = memoryScale();
    double cumulative = 0;
    for (int i = 0; i < m_memoryCategories.size(); ++i) {
        const std::string name = m_memoryCategories[i].toStdString();
        for (const auto& [n, bytes] : s.plan_bytes)
            if (n == name) cumulative += double(bytes) / unit;
        m_memoryGraphs[i]->addData(x, cumulative);
    }
    m_series[MemoryMeasured]->addData(x, double(s.device_used_bytes) / unit);
    if (m_budgetBytes > 0) {
        m_series[MemoryBudget]->addData(x, double(m_budgetBytes) / unit);
        m_series[MemoryBudget]->addToLegend();
    }
    if (s.device_total_bytes > 0) {
        m_anyCard = true;
        m_series[MemoryCard]->addData(x, double(s.device_total_bytes) / unit);
        m_series[MemoryCard]->addToLegend();
    }

    if (s.total_pages > 0 || s.paging_h2d_bytes > 0 || s.paging_d2h_bytes > 0) m_anyPaging = true;
    m_series[PagingHostToDevice]->addData(x, megabytesPerSecond(s.paging_h2d_bytes, s.step_time_s));
    m_series[PagingDeviceToHost]->addData(x, megabytesPerSecond(s.paging_d2h_bytes, s.step_time_s));
    m_series[ResidentPages]->addData(x, double(s.resident_pages));
}

void MonitorPage::clearCharts() {
    for (QCPItemTracer* t : m_tracers) {
        t->setVisible(false);
        t->setGraph(nullptr);
    }
    for (QCPGraph* g : m_series) g->data()->clear();
    for (QCPGraph* g : m_memoryGraphs) m_plots[MemoryChart]->removeGraph(g);
    m_memoryGraphs.clear();
    m_memoryCategories.clear();
    m_memoryUnitPower = 1;
    m_anyPaging = false;
    m_anyCard = false;
    for (Series s : {MemoryBudget, MemoryCard}) m_series[s]->removeFromLegend();
}

void MonitorPage::rebuildCharts() {
    for (QCPGraph* g : m_series) g->data()->clear();
    for (QCPGraph* g : m_memoryGraphs) g->data()->clear();
    m_anyPaging = false;
    m_anyCard = false;
    if (m_budgetBytes == 0) m_series[MemoryBudget]->removeFromLegend();
    for (const qls::step_stats& s : m_history) appendToCharts(s);
}

bool MonitorPage::logScale() const { return m_logScale->isChecked(); }

void MonitorPage::setLogScale(bool on) {
    if (m_logScale->isChecked() != on) m_logScale->setChecked(on); // re-enters through toggled
    QCPAxis* y = m_plots[LossChart]->yAxis;
    const bool isLog = y->scaleType() == QCPAxis::stLogarithmic;
    if (isLog == on) return;
    y->setScaleType(on ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
    if (on)
        y->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    else
        y->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    m_follow[LossChart] = true;
    markDirty();
}

void MonitorPage::markDirty() {
    m_dirty = true;
    if (!m_replotTimer.isActive()) m_replotTimer.start();
}

void MonitorPage::adaptReplotInterval() {
    // Redrawing must not eat the GUI thread: when the charts' last replots took long (long runs, a slow machine),
    // the next one waits at least three times as long, so drawing stays under about a quarter of the thread.
    double ms = 0;
    for (QCustomPlot* p : m_plots) ms += p->replotTime(false);
    const int interval = std::clamp(int(std::ceil(3.0 * ms)), 1000 / maxReplotsPerSecond, 1000);
    m_replotTimer.setInterval(interval);
}

void MonitorPage::showEvent(QShowEvent* event) {
    QWidget::showEvent(event);
    markDirty();
}

void MonitorPage::replotNow() {
    if (!m_pendingLog.isEmpty()) {
        m_log->appendPlainText(m_pendingLog.join('\n'));
        m_pendingLog.clear();
    }
    updateProgress();
    updateTitles();
    if (!m_dirty || !isVisible()) return; // hidden: showEvent replots when the page comes back
    m_dirty = false;
    adaptReplotInterval();
    for (int c = 0; c < ChartCount; ++c) {
        QCustomPlot* plot = m_plots[c];
        if (m_follow[c] && !m_history.isEmpty()) {
            const double first = m_history.first().step, last = m_history.last().step;
            plot->xAxis->setRange(first == last ? first - 1 : first, std::max(last, first + 1));
            for (QCPAxis* y : {plot->yAxis, plot->yAxis2}) {
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
                } else if (c == LossChart) {
                    const double span = std::max({r.upper - r.lower, std::abs(r.upper) * 0.05, 1e-9});
                    y->setRange(r.lower - 0.08 * span, r.upper + 0.12 * span);
                } else {
                    // throughput, learning rate, bytes and pages start at zero
                    const double lower = std::min(0.0, r.lower);
                    const double span = std::max(r.upper - lower, 1e-12);
                    y->setRange(lower, r.upper > lower ? r.upper + 0.12 * span : 1.0);
                }
            }
        }
        if (c == PagingChart && m_follow[c] && !m_history.isEmpty()) {
            uint64_t pages = 0;
            for (const qls::step_stats& s : m_history) pages = std::max({pages, s.total_pages, s.resident_pages});
            plot->yAxis2->setRange(0, std::max<double>(1.0, double(pages) * 1.15));
        }
        plot->replot(QCustomPlot::rpQueuedReplot);
    }
}

void MonitorPage::updateTitles() {
    const qls::step_stats* last = m_history.isEmpty() ? nullptr : &m_history.last();
    auto set = [this](Chart c, const QString& t) { m_titles[c]->setText(t); };
    if (!last) {
        set(LossChart, tr("Loss"));
        set(LearningRateChart, tr("Learning rate"));
        set(ThroughputChart, tr("Throughput (tokens/s)"));
        set(MemoryChart, tr("Memory"));
        set(PagingChart, tr("Paging (MB/s)"));
        return;
    }
    QString loss = tr("Loss — %1").arg(last->loss, 0, 'f', 3);
    for (auto it = m_history.crbegin(); it != m_history.crend(); ++it)
        if (it->eval_loss) {
            loss += tr(" (eval %1 at step %2)").arg(*it->eval_loss, 0, 'f', 3).arg(it->step);
            break;
        }
    set(LossChart, loss);
    set(LearningRateChart, tr("Learning rate — %1").arg(last->lr, 0, 'g', 3));
    set(ThroughputChart, tr("Throughput — %1 tokens/s").arg(QLocale().toString(last->tokens_per_s, 'f', 0)));
    const double unit = memoryScale();
    QString mem = tr("Memory (%1) — used %2 of plan %3")
                      .arg(memoryUnit())
                      .arg(double(last->device_used_bytes) / unit, 0, 'f', 1)
                      .arg(double(planTotal(*last, m_anyCard)) / unit, 0, 'f', 1);
    if (!m_anyCard) mem = tr("Memory (%1) — CPU run: plan and engine bytes").arg(memoryUnit());
    set(MemoryChart, mem);
    if (!m_anyPaging)
        set(PagingChart, tr("Paging (MB/s) — no paged optimizer states"));
    else
        set(PagingChart, tr("Paging (MB/s) — %1 of %2 pages resident").arg(last->resident_pages).arg(last->total_pages));
}

void MonitorPage::updateProgress() {
    const qls::step_stats* last = m_history.isEmpty() ? nullptr : &m_history.last();
    m_progress->setRange(0, int(std::max<qint64>(1, m_totalSteps)));
    m_progress->setValue(last ? int(std::min<qint64>(last->step, m_totalSteps)) : 0);
    if (!last) {
        m_progressLabel->setText(m_totalSteps > 0 ? tr("%1 steps planned; waiting for the first step…").arg(m_totalSteps)
                                                  : QString());
        return;
    }
    QString eta = last->step >= m_totalSteps ? tr("done") : tr("ETA %1").arg(formatDuration(last->eta_s));
    m_progressLabel->setText(tr("step %1 of %2 · epoch %3 · loss %4 · %5 tokens/s · %6")
                                 .arg(last->step)
                                 .arg(m_totalSteps)
                                 .arg(last->epoch, 0, 'f', 2)
                                 .arg(last->loss, 0, 'f', 3)
                                 .arg(QLocale().toString(last->tokens_per_s, 'f', 0))
                                 .arg(eta));
}

void MonitorPage::updateButtons() {
    using S = TrainingSession::State;
    const S s = m_session ? m_session->state() : S::Idle;
    m_start->setEnabled(s == S::Idle);
    m_runName->setEnabled(s == S::Idle);
    m_pause->setEnabled(m_session && (s == S::Running || s == S::Starting));
    m_resume->setEnabled(m_session && s == S::Paused);
    m_stop->setEnabled(m_session && (s == S::Running || s == S::Paused || s == S::Starting));
    if (s == S::Stopping) m_progressLabel->setText(tr("stopping after the current step and saving a checkpoint…"));
    if (s == S::Starting) m_progressLabel->setText(tr("loading the model and the data…"));
}

void MonitorPage::setStatus(const QString& html) {
    m_status->setText(html);
    m_status->setVisible(!html.isEmpty());
}

// ---- reading values back --------------------------------------------------------------------------------------

QString MonitorPage::chartTitle(Chart c) const { return m_titles[c] ? m_titles[c]->text() : QString(); }
QString MonitorPage::progressText() const { return m_progressLabel->text(); }
int MonitorPage::progressValue() const { return m_progress->value(); }
int MonitorPage::progressMaximum() const { return m_progress->maximum(); }
QString MonitorPage::logText() const { return m_log->toPlainText() + (m_pendingLog.isEmpty() ? QString() : "\n" + m_pendingLog.join('\n')); }
QString MonitorPage::runTitle() const { return m_runLabel->text(); }

const qls::step_stats* MonitorPage::statsAt(double step) const {
    if (m_history.isEmpty()) return nullptr;
    auto it = std::lower_bound(m_history.cbegin(), m_history.cend(), step,
                               [](const qls::step_stats& s, double x) { return double(s.step) < x; });
    if (it == m_history.cend()) return &m_history.last();
    if (it != m_history.cbegin() && std::abs(double((it - 1)->step) - step) < std::abs(double(it->step) - step)) --it;
    return &*it;
}

QString MonitorPage::formatDuration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return tr("unknown");
    if (seconds < 1) return tr("< 1 s");
    const qint64 s = qint64(std::llround(seconds));
    if (s < 60) return tr("%1 s").arg(s);
    if (s < 3600) return tr("%1 min %2 s").arg(s / 60).arg(s % 60, 2, 10, QChar('0'));
    return tr("%1 h %2 min").arg(s / 3600).arg((s % 3600) / 60, 2, 10, QChar('0'));
}

void MonitorPage::showTooltip(Chart c, const QPoint& pos) {
    QCustomPlot* plot = m_plots[c];
    const qls::step_stats* s = statsAt(plot->xAxis->pixelToCoord(pos.x()));
    if (!s || !plot->axisRect()->rect().contains(pos)) {
        m_tracers[c]->setVisible(false);
        m_tracers[c]->setGraph(nullptr);
        QToolTip::hideText();
        plot->replot(QCustomPlot::rpQueuedReplot);
        return;
    }
    static const Series traced[] = {TrainLoss, LearningRate, TokensPerSecond, MemoryMeasured, PagingHostToDevice};
    m_tracers[c]->setGraph(m_series[traced[c]]); // set on hover only: a tracer on an empty graph complains
    m_tracers[c]->setGraphKey(double(s->step));
    m_tracers[c]->setVisible(true);
    QString text = tr("<b>step %1</b> (epoch %2)").arg(s->step).arg(s->epoch, 0, 'f', 2);
    const double unit = memoryScale();
    switch (c) {
    case LossChart:
        text += tr("<br>train loss %1").arg(s->loss, 0, 'f', 4);
        if (s->eval_loss) text += tr("<br>eval loss %1").arg(*s->eval_loss, 0, 'f', 4);
        text += tr("<br>gradient norm %1").arg(s->grad_norm, 0, 'f', 3);
        break;
    case LearningRateChart:
        text += tr("<br>learning rate %1").arg(s->lr, 0, 'e', 3);
        break;
    case ThroughputChart:
        text += tr("<br>%1 tokens/s<br>%2 tokens in %3 s")
                    .arg(QLocale().toString(s->tokens_per_s, 'f', 0))
                    .arg(s->tokens)
                    .arg(s->step_time_s, 0, 'f', 3);
        break;
    case MemoryChart:
        for (const auto& [name, bytes] : s->plan_bytes)
            if (bytes > 0 && (s->device_total_bytes > 0 || name != kContextCategory))
                text += tr("<br>%1: %2 %3").arg(categoryLabel(QString::fromStdString(name))).arg(double(bytes) / unit, 0, 'f', 2).arg(memoryUnit());
        text += tr("<br>measured %1 %3, peak %2 %3")
                    .arg(double(s->device_used_bytes) / unit, 0, 'f', 2)
                    .arg(double(s->device_peak_bytes) / unit, 0, 'f', 2)
                    .arg(memoryUnit());
        if (m_budgetBytes > 0) text += tr("<br>budget %1 %2").arg(double(m_budgetBytes) / unit, 0, 'f', 2).arg(memoryUnit());
        text += s->device_total_bytes > 0 ? tr("<br>card %1 %2").arg(double(s->device_total_bytes) / unit, 0, 'f', 2).arg(memoryUnit())
                                          : tr("<br>CPU backend: no card");
        break;
    case PagingChart:
        text += tr("<br>host→device %1 MB/s (%2 bytes)<br>device→host %3 MB/s (%4 bytes)<br>resident pages %5 of %6")
                    .arg(megabytesPerSecond(s->paging_h2d_bytes, s->step_time_s), 0, 'f', 2)
                    .arg(s->paging_h2d_bytes)
                    .arg(megabytesPerSecond(s->paging_d2h_bytes, s->step_time_s), 0, 'f', 2)
                    .arg(s->paging_d2h_bytes)
                    .arg(s->resident_pages)
                    .arg(s->total_pages);
        break;
    case ChartCount:
        break;
    }
    QToolTip::showText(plot->mapToGlobal(pos), text, plot);
    plot->replot(QCustomPlot::rpQueuedReplot);
}

// ---- export -----------------------------------------------------------------------------------------------------

void MonitorPage::contextMenu(Chart c, const QPoint& pos) {
    QMenu menu(this);
    menu.addAction(tr("Save this chart as PNG…"), this, [this, c] { saveChartInteractive(c); });
    menu.addAction(tr("Export the data as CSV…"), this, &MonitorPage::exportCsvInteractive);
    menu.addSeparator();
    menu.addAction(tr("Fit to the data and follow the run"), this, [this, c] {
        m_follow[c] = true;
        markDirty();
    });
    menu.exec(m_plots[c]->mapToGlobal(pos));
}

void MonitorPage::saveChartInteractive(Chart c) {
    static const char* names[] = {"loss", "learning-rate", "throughput", "memory", "paging"};
    const QString file = QFileDialog::getSaveFileName(this, tr("Save chart"), QString("%1.png").arg(names[c]),
                                                      tr("PNG images (*.png)"));
    if (file.isEmpty()) return;
    QString error;
    if (!saveChartPng(c, file, &error)) setStatus(error.toHtmlEscaped());
}

void MonitorPage::exportCsvInteractive() {
    const QString file = QFileDialog::getSaveFileName(this, tr("Export metrics"), "metrics.csv", tr("CSV files (*.csv)"));
    if (file.isEmpty()) return;
    QString error;
    if (!exportCsv(file, &error)) setStatus(error.toHtmlEscaped());
}

bool MonitorPage::saveChartPng(Chart c, const QString& file, QString* error) const {
    QCustomPlot* plot = m_plots[c];
    const int w = std::max(plot->width(), 800), h = std::max(plot->height(), 500);
    if (plot->savePng(file, w, h)) return true;
    if (error)
        *error = tr("Could not write the chart to %1: check that the folder exists and is writable, and that the "
                    "name ends in .png.")
                     .arg(QDir::toNativeSeparators(file));
    return false;
}

bool MonitorPage::exportCsv(const QString& file, QString* error) const {
    QSaveFile out(file);
    if (!out.open(QIODevice::WriteOnly | QIODevice::Text)) {
        if (error) *error = tr("Could not write %1: %2. Choose a folder you can write to.").arg(QDir::toNativeSeparators(file), out.errorString());
        return false;
    }
    QTextStream ts(&out);
    ts << "step,total_steps,epoch,loss,eval_loss,lr,grad_norm,tokens,tokens_total,tokens_per_s,step_time_s,eta_s,"
          "device_used_bytes,device_peak_bytes,device_total_bytes,paging_h2d_bytes,paging_d2h_bytes,"
          "resident_pages,total_pages";
    QStringList categories;
    for (const qls::step_stats& s : m_history)
        for (const auto& [name, bytes] : s.plan_bytes)
            if (!categories.contains(QString::fromStdString(name))) categories << QString::fromStdString(name);
    for (const QString& c : categories) ts << ",plan_" << c << "_bytes";
    ts << '\n';
    ts.setRealNumberPrecision(10);
    for (const qls::step_stats& s : m_history) {
        ts << s.step << ',' << s.total_steps << ',' << s.epoch << ',' << s.loss << ',';
        if (s.eval_loss) ts << *s.eval_loss;
        ts << ',' << s.lr << ',' << s.grad_norm << ',' << s.tokens << ',' << s.tokens_total << ',' << s.tokens_per_s
           << ',' << s.step_time_s << ',' << s.eta_s << ',' << s.device_used_bytes << ',' << s.device_peak_bytes << ','
           << s.device_total_bytes << ',' << s.paging_h2d_bytes << ',' << s.paging_d2h_bytes << ',' << s.resident_pages
           << ',' << s.total_pages;
        for (const QString& c : categories) {
            ts << ',';
            for (const auto& [name, bytes] : s.plan_bytes)
                if (QString::fromStdString(name) == c) ts << bytes;
        }
        ts << '\n';
    }
    ts.flush();
    if (!out.commit()) {
        if (error) *error = tr("Could not write %1: %2. Choose a folder you can write to.").arg(QDir::toNativeSeparators(file), out.errorString());
        return false;
    }
    return true;
}
