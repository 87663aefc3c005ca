// MonitorPage: composes the ui/charts/ classes, feeds them step by step and redraws them on a coalescing ~30 Hz timer (anchors §7.5, §7.8 habit 15).
#include "monitorpage.h"

#include "loadprogress.h"

#include "charts/learningratechart.h"
#include "charts/losschart.h"
#include "charts/memorychart.h"
#include "charts/pagingchart.h"
#include "charts/throughputchart.h"
#include "trainingsession.h"

#include <QCheckBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontDatabase>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QMenu>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QRegularExpressionValidator>
#include <QSaveFile>
#include <QTextStream>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

MonitorPage::MonitorPage(QWidget* parent) : QWidget(parent) {
    auto* outer = new QVBoxLayout(this);
    outer->addWidget(new QLabel(tr("<h2>Monitor</h2>"), this));

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
    m_start->setObjectName("startButton");
    m_pause->setObjectName("pauseButton");
    m_resume->setObjectName("resumeButton");
    m_stop->setObjectName("stopButton");
    for (QPushButton* b : {m_start, m_pause, m_resume, m_stop}) buttons->addWidget(b);
    buttons->addSpacing(16);
    buttons->addWidget(m_logScale);
    buttons->addStretch(1);
    buttons->addWidget(m_savePng);
    buttons->addWidget(m_saveCsv);
    outer->addLayout(buttons);

    m_runsFolder = new QLabel(this);
    m_runsFolder->setObjectName("runsFolder");
    m_runsFolder->setWordWrap(true);
    m_runsFolder->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_runsFolder->setToolTip(tr("Where new runs are written; change it on the Runs page"));
    outer->addWidget(m_runsFolder);
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
    m_progressLabel->setToolTip(
        tr("Latest step: epoch reached, loss, throughput and the estimated time to the last step"));
    progressRow->addWidget(m_progress, 1);
    progressRow->addWidget(m_progressLabel, 2);
    outer->addLayout(progressRow);
    m_loadProgress = new LoadProgress(this);
    outer->addWidget(m_loadProgress);
    connect(m_loadProgress, &LoadProgress::cancelRequested, this, [this] {
        if (m_session) m_session->stopAndSave(); // while loading: cancels the load, nothing is trained or saved
    });

    // ---- charts -----------------------------------------------------------------------------------------------
    auto* chartsArea = new QWidget(this);
    chartsArea->setObjectName("charts");
    auto* grid = new QGridLayout(chartsArea);
    grid->setContentsMargins(0, 0, 0, 0);
    grid->setSpacing(4);
    m_loss = new ::LossChart(&m_history, chartsArea);
    m_learningRate = new ::LearningRateChart(&m_history, chartsArea);
    auto* throughput = new ::ThroughputChart(&m_history, chartsArea);
    m_memory = new ::MemoryChart(&m_history, chartsArea);
    m_paging = new ::PagingChart(&m_history, chartsArea);
    m_charts = {m_loss, m_learningRate, throughput, m_memory, m_paging};
    for (int c = 0; c < ChartCount; ++c) m_charts[size_t(c)]->setPlotObjectName(QString("chart%1").arg(c));
    m_log = new QPlainTextEdit(chartsArea);
    m_log->setReadOnly(true);
    m_log->setMaximumBlockCount(20000);
    // lines wrap at the widget's edge: "step N/M loss" at the start of each line is never scrolled away
    m_log->setLineWrapMode(QPlainTextEdit::WidgetWidth);
    m_log->setWordWrapMode(QTextOption::WrapAtWordBoundaryOrAnywhere);
    m_log->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    m_log->setPlaceholderText(tr("Step log: one line per optimizer step, and the engine's messages"));
    m_log->setToolTip(tr("One line per optimizer step (loss, learning rate, gradient norm, throughput) and the "
                         "engine's messages (data warnings, evaluations, checkpoints)"));
    grid->addWidget(m_charts[LossChart], 0, 0);
    grid->addWidget(m_charts[LearningRateChart], 0, 1);
    grid->addWidget(m_charts[ThroughputChart], 0, 2);
    grid->addWidget(m_charts[MemoryChart], 1, 0);
    grid->addWidget(m_charts[PagingChart], 1, 1);
    grid->addWidget(m_log, 1, 2);
    for (int i = 0; i < 3; ++i) grid->setColumnStretch(i, 1);
    for (int i = 0; i < 2; ++i) grid->setRowStretch(i, 1);
    outer->addWidget(chartsArea, 1);

    // ---- series -----------------------------------------------------------------------------------------------
    m_series[TrainLoss] = m_loss->graph(::LossChart::Train);
    m_series[EvalLoss] = m_loss->graph(::LossChart::Eval);
    m_series[LearningRate] = m_learningRate->graph(0);
    m_series[TokensPerSecond] = throughput->graph(0);
    m_series[MemoryMeasured] = m_memory->graph(::MemoryChart::Measured);
    m_series[MemoryBudget] = m_memory->graph(::MemoryChart::Budget);
    m_series[MemoryCard] = m_memory->graph(::MemoryChart::Card);
    m_series[PagingHostToDevice] = m_paging->graph(::PagingChart::HostToDevice);
    m_series[PagingDeviceToHost] = m_paging->graph(::PagingChart::DeviceToHost);
    m_series[ResidentPages] = m_paging->graph(::PagingChart::ResidentPages);
    m_series[CheckpointsHostToDevice] = m_paging->graph(::PagingChart::CheckpointsToDevice);
    m_series[CheckpointsDeviceToHost] = m_paging->graph(::PagingChart::CheckpointsToHost);
    for (int c = 0; c < ChartCount; ++c) {
        connect(m_charts[size_t(c)], &MonitorChart::followRequested, this, &MonitorPage::markDirty);
        connect(m_charts[size_t(c)], &MonitorChart::contextMenuRequested, this,
                [this, c](const QPoint& p) { contextMenu(Chart(c), p); });
    }
    // the loss chart's replots are the ones counted (every chart is replotted in the same pass)
    connect(m_loss, &MonitorChart::replotted, this, [this] { ++m_replotCount; });

    // ---- behaviour --------------------------------------------------------------------------------------------
    m_replotTimer.setSingleShot(true);
    m_replotTimer.setInterval(1000 / maxReplotsPerSecond);
    connect(&m_replotTimer, &QTimer::timeout, this, &MonitorPage::replotNow);
    connect(m_start, &QPushButton::clicked, this, [this] {
        m_status->hide();
        emit startRequested();
    });
    connect(m_pause, &QPushButton::clicked, this, [this] {
        if (m_session) m_session->pause();
    });
    connect(m_resume, &QPushButton::clicked, this, [this] {
        if (m_session) m_session->resume();
    });
    connect(m_stop, &QPushButton::clicked, this, [this] {
        if (m_session) m_session->stopAndSave();
    });
    connect(m_logScale, &QCheckBox::toggled, this, &MonitorPage::setLogScale);
    auto* pngMenu = new QMenu(m_savePng);
    for (int c = 0; c < ChartCount; ++c)
        pngMenu->addAction(chartTitle(Chart(c)), this, [this, c] { saveChartInteractive(Chart(c)); });
    pngMenu->addSeparator();
    pngMenu->addAction(tr("All charts in one image"), this, [this] {
        const QString file = QFileDialog::getSaveFileName(this, tr("Save all charts"), "charts.png",
                                                          tr("PNG images (*.png)"));
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

QCustomPlot* MonitorPage::chart(Chart c) const { return m_charts[size_t(c)]->plot(); }
QList<QCPGraph*> MonitorPage::memoryCategoryGraphs() const { return m_memory->categoryGraphs(); }
QStringList MonitorPage::memoryCategories() const { return m_memory->categories(); }

void MonitorPage::setSession(TrainingSession* session) {
    if (m_session) disconnect(m_session, nullptr, this, nullptr);
    m_session = session;
    if (session) {
        connect(session, &TrainingSession::stateChanged, this, &MonitorPage::updateButtons);
        connect(session, &TrainingSession::loadProgress, m_loadProgress, &LoadProgress::setProgress);
        connect(session, &TrainingSession::started, m_loadProgress, &LoadProgress::finish);
        connect(session, &TrainingSession::finished, m_loadProgress, &LoadProgress::finish);
        connect(session, &TrainingSession::failed, m_loadProgress, &LoadProgress::finish);
        connect(session, &TrainingSession::started, this, &MonitorPage::beginRun);
        connect(session, &TrainingSession::stepStats, this, &MonitorPage::addStats);
        connect(session, &TrainingSession::microStep, this, &MonitorPage::addMicroStep);
        connect(session, &TrainingSession::logLine, this, &MonitorPage::addLogLine);
        connect(session, &TrainingSession::finished, this, &MonitorPage::showFinished);
        connect(session, &TrainingSession::failed, this, &MonitorPage::showFailed);
    }
    updateButtons();
}

QString MonitorPage::runName() const { return m_runName->text().trimmed(); }
void MonitorPage::setRunName(const QString& name) { m_runName->setText(name); }

void MonitorPage::setBudgetBytes(quint64 bytes) {
    if (bytes == m_memory->budgetBytes()) return;
    m_memory->setBudgetBytes(bytes);
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
        for (MonitorChart* c : m_charts) c->setFollow(true);
    }
    m_status->hide();
    m_ended = Ended::None;
    m_microDone = m_microTotal = 0;
    m_runLabel->setText(
        tr("Run %1 — %2").arg(QFileInfo(runDir).fileName().toHtmlEscaped(), QDir::toNativeSeparators(runDir)));
    updateProgress();
    markDirty();
}

void MonitorPage::addStats(const qls::step_stats& s) {
    m_microDone = 0;
    bool rebuild = false;
    if (!m_history.isEmpty() && s.step <= m_history.last().step) {
        // a resumed run trains again the steps after its checkpoint: the newer values replace the older ones
        while (!m_history.isEmpty() && m_history.last().step >= s.step) m_history.removeLast();
        rebuild = true;
    }
    m_history.push_back(s);
    m_totalSteps = std::max<qint64>(m_totalSteps, s.total_steps);
    if (m_memory->noteStep(s)) rebuild = true; // the memory unit grew
    if (rebuild) rebuildCharts();
    else
        for (MonitorChart* c : m_charts) c->append(s);

    m_pendingLog << stepLine(s);
    markDirty();
}

QString MonitorPage::stepLine(const qls::step_stats& s) {
    QString line = QString("step %1/%2  loss %3  lr %4  grad %5  %6 tok/s  %7 s")
                       .arg(s.step)
                       .arg(s.total_steps)
                       .arg(s.loss, 0, 'f', 4)
                       .arg(s.lr, 0, 'e', 2)
                       .arg(s.grad_norm, 0, 'f', 3)
                       .arg(s.tokens_per_s, 0, 'f', 0)
                       .arg(s.step_time_s, 0, 'f', 3);
    if (s.eval_loss) line += QString("  eval %1").arg(*s.eval_loss, 0, 'f', 4);
    return line;
}

void MonitorPage::addLogLine(const QString& line) {
    m_pendingLog << line;
    markDirty();
}

void MonitorPage::showFinished(const QString& status, const QString& checkpointDir) {
    const bool complete = !m_history.isEmpty() && m_history.last().step >= m_totalSteps && m_totalSteps > 0;
    m_ended = complete ? Ended::Completed : Ended::Stopped;
    QString text = tr("<b>Finished:</b> %1.").arg(status.toHtmlEscaped());
    if (!checkpointDir.isEmpty())
        text += tr(" Checkpoint: %1").arg(QDir::toNativeSeparators(checkpointDir).toHtmlEscaped());
    setStatus(text);
    m_pendingLog << tr("finished: %1").arg(status);
    updateTitles(); // the titles name the last step at once, not at the next redraw
    markDirty();
    updateButtons();
}

void MonitorPage::showFailed(const QString& rawMessage, const QString& hint) {
    m_ended = Ended::Failed;
    const QString message = m_words ? m_words(rawMessage) : rawMessage;
    // a run that never started (nothing chosen, a setting refused) is not "a run": the headline says so
    if (m_runDir.isEmpty() && m_history.isEmpty()) m_runLabel->setText(tr("The run could not start."));
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
    m_memory->noteHistory(history);
    rebuildCharts();
    // the step log as the live run wrote it
    for (const qls::step_stats& s : history) m_pendingLog << stepLine(s);
    if (history.isEmpty())
        setStatus(tr("<b>This run has no recorded steps</b> (its metrics.jsonl is empty or missing)."));
    else
        setStatus(
            tr("<b>Past run:</b> %1 steps recorded. Resume it, export it or try it in the Playground from the Runs page.")
                .arg(history.size()));
    markDirty();
}

// ---- charts ---------------------------------------------------------------------------------------------------

void MonitorPage::clearCharts() {
    for (MonitorChart* c : m_charts) c->clearData();
    m_memory->reset();
}

void MonitorPage::rebuildCharts() {
    for (MonitorChart* c : m_charts) c->clearData();
    for (const qls::step_stats& s : m_history)
        for (MonitorChart* c : m_charts) c->append(s);
}

bool MonitorPage::logScale() const { return m_logScale->isChecked(); }

void MonitorPage::setLogScale(bool on) {
    if (m_logScale->isChecked() != on) m_logScale->setChecked(on); // re-enters through toggled
    if (m_loss->logScale() == on) return;
    m_loss->setLogScale(on);
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
    for (MonitorChart* c : m_charts) ms += c->lastReplotMs();
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
    for (MonitorChart* c : m_charts) {
        c->fitToData();
        c->replot();
    }
}

void MonitorPage::updateTitles() {
    for (MonitorChart* c : m_charts) c->setTitle(m_history.isEmpty() ? c->idleTitle() : c->titleFor(m_history));
}

void MonitorPage::updateProgress() {
    const qls::step_stats* last = m_history.isEmpty() ? nullptr : &m_history.last();
    m_progress->setRange(0, int(std::max<qint64>(1, m_totalSteps)));
    m_progress->setValue(last ? int(std::min<qint64>(last->step, m_totalSteps)) : 0);
    using S = TrainingSession::State;
    const S state = m_session ? m_session->state() : S::Idle;
    if (!last) {
        QString text;
        if (m_totalSteps > 0 && state != S::Idle) {
            text = tr("%1 steps planned; waiting for the first step…").arg(m_totalSteps);
            // gradient accumulation: the micro-batches of the first step as they pass
            if (m_microTotal > 1 && m_microDone > 0)
                text = tr("%1 steps planned; step 1: micro-batch %2 of %3")
                           .arg(m_totalSteps)
                           .arg(m_microDone)
                           .arg(m_microTotal);
        } else if (m_ended == Ended::Stopped) text = tr("Stopped before the first step");
        else if (m_ended == Ended::Failed) text = tr("Failed before the first step");
        if (state == S::Paused) text = tr("Paused before the first step");
        m_progressLabel->setText(text);
        return;
    }
    // the ETA only while the run trains: a paused, stopped or failed run has none
    QString eta;
    if (state == S::Paused) eta = tr("Paused");
    else if (state == S::Stopping) eta = tr("Stopping…");
    else if (last->step >= m_totalSteps) eta = tr("done");
    else if (state == S::Idle)
        eta = m_ended == Ended::Failed ? tr("Failed") : m_ended == Ended::Stopped ? tr("Stopped") : tr("not running");
    else {
        eta = tr("ETA %1").arg(formatDuration(last->eta_s));
        if (m_microTotal > 1 && m_microDone > 0 && m_microDone < m_microTotal)
            eta += tr(" · next step: micro-batch %1 of %2").arg(m_microDone).arg(m_microTotal);
    }
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
    m_pause->setVisible(s != S::Paused);
    m_resume->setVisible(s == S::Paused);
    updateProgress();
    if (s == S::Stopping) m_progressLabel->setText(tr("stopping after the current step and saving a checkpoint…"));
    if (s == S::Starting) m_progressLabel->setText(tr("loading the model and the data…"));
}

void MonitorPage::setStatus(const QString& html) {
    m_status->setText(html);
    m_status->setVisible(!html.isEmpty());
}

// ---- reading values back --------------------------------------------------------------------------------------

QString MonitorPage::chartTitle(Chart c) const { return m_charts[c] ? m_charts[c]->title() : QString(); }
QString MonitorPage::progressText() const { return m_progressLabel->text(); }
int MonitorPage::progressValue() const { return m_progress->value(); }
int MonitorPage::progressMaximum() const { return m_progress->maximum(); }
QString MonitorPage::logText() const {
    return m_log->toPlainText() + (m_pendingLog.isEmpty() ? QString() : "\n" + m_pendingLog.join('\n'));
}
QString MonitorPage::runTitle() const { return m_runLabel->text(); }

QString MonitorPage::formatDuration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return tr("unknown");
    if (seconds < 1) return tr("< 1 s");
    const qint64 s = qint64(std::llround(seconds));
    if (s < 60) return tr("%1 s").arg(s);
    if (s < 3600) return tr("%1 min %2 s").arg(s / 60).arg(s % 60, 2, 10, QChar('0'));
    return tr("%1 h %2 min").arg(s / 3600).arg((s % 3600) / 60, 2, 10, QChar('0'));
}

// ---- export -----------------------------------------------------------------------------------------------------

void MonitorPage::contextMenu(Chart c, const QPoint& pos) { // pos: global
    QMenu menu(this);
    menu.addAction(tr("Save this chart as PNG…"), this, [this, c] { saveChartInteractive(c); });
    menu.addAction(tr("Export the data as CSV…"), this, &MonitorPage::exportCsvInteractive);
    menu.addSeparator();
    menu.addAction(tr("Fit to the data and follow the run"), this, [this, c] {
        m_charts[c]->setFollow(true);
        markDirty();
    });
    menu.exec(pos);
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
    const QString file = QFileDialog::getSaveFileName(this, tr("Export metrics"), "metrics.csv",
                                                      tr("CSV files (*.csv)"));
    if (file.isEmpty()) return;
    QString error;
    if (!exportCsv(file, &error)) setStatus(error.toHtmlEscaped());
}

bool MonitorPage::saveChartPng(Chart c, const QString& file, QString* error) const {
    if (m_charts[c]->savePng(file)) return true;
    if (error)
        *error = tr("Could not write the chart to %1: check that the folder exists and is writable, and that the "
                    "name ends in .png.")
                     .arg(QDir::toNativeSeparators(file));
    return false;
}

bool MonitorPage::exportCsv(const QString& file, QString* error) const {
    QSaveFile out(file);
    if (!out.open(QIODevice::WriteOnly | QIODevice::Text)) {
        if (error)
            *error = tr("Could not write %1: %2. Choose a folder you can write to.")
                         .arg(QDir::toNativeSeparators(file), out.errorString());
        return false;
    }
    QTextStream ts(&out);
    ts << "step,total_steps,epoch,loss,eval_loss,lr,grad_norm,tokens,tokens_total,tokens_per_s,step_time_s,eta_s,"
          "device_used_bytes,device_peak_bytes,device_total_bytes,paging_h2d_bytes,paging_d2h_bytes,"
          "resident_pages,total_pages,offload_h2d_bytes,offload_d2h_bytes";
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
           << ',' << s.total_pages << ',' << s.offload_h2d_bytes << ',' << s.offload_d2h_bytes;
        for (const QString& c : categories) {
            ts << ',';
            for (const auto& [name, bytes] : s.plan_bytes)
                if (QString::fromStdString(name) == c) ts << bytes;
        }
        ts << '\n';
    }
    ts.flush();
    if (!out.commit()) {
        if (error)
            *error = tr("Could not write %1: %2. Choose a folder you can write to.")
                         .arg(QDir::toNativeSeparators(file), out.errorString());
        return false;
    }
    return true;
}

// ---- keyboard and state ------------------------------------------------------------------------------------------

void MonitorPage::triggerStart() {
    if (m_start->isEnabled()) m_start->click();
}

void MonitorPage::togglePause() {
    if (m_pause->isEnabled() && m_pause->isVisible()) m_pause->click();
    else if (m_resume->isEnabled()) m_resume->click();
}

void MonitorPage::triggerStop() {
    if (m_stop->isEnabled()) m_stop->click();
}

void MonitorPage::clearStaleStatus() {
    if (m_session && m_session->isActive()) return;
    if (m_ended != Ended::Failed) return;
    m_ended = Ended::None;
    setStatus(QString());
    if (m_runDir.isEmpty() && m_history.isEmpty())
        m_runLabel->setText(tr("No run yet: choose a model and a dataset, then press Start."));
    updateProgress();
}

void MonitorPage::setRunsFolder(const QString& dir) {
    m_runsFolderPath = dir;
    updateRunsFolderLine();
}

void MonitorPage::setNextRunEstimate(const QString& text) {
    m_nextRunEstimate = text;
    updateRunsFolderLine();
}

void MonitorPage::updateRunsFolderLine() {
    QString line = tr("Runs folder: %1 (change it on the Runs page)").arg(QDir::toNativeSeparators(m_runsFolderPath));
    if (!m_nextRunEstimate.isEmpty()) line += tr(" · the next run should take %1 (Plan page)").arg(m_nextRunEstimate);
    m_runsFolder->setText(line);
}

void MonitorPage::setMessageWords(std::function<QString(const QString&)> words) { m_words = std::move(words); }

QString MonitorPage::runsFolderText() const { return m_runsFolder->text(); }

QString MonitorPage::statusText() const { return m_status->isHidden() ? QString() : m_status->text(); }

void MonitorPage::addMicroStep(qint64 done, qint64 total) {
    m_microDone = done;
    m_microTotal = total;
    updateProgress();
}
