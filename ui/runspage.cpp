// RunsPage: lists the runs the engine's run catalog finds (qls/run_catalog.h); actions leave as signals.
#include "runspage.h"

#include "charts/monitorchart.h"
#include "plotstyle.h"
#include "runlock.h"

#include "qls/error.h"
#include "qls/run_catalog.h"
#include "qls/train_config.h"

#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFileSystemWatcher>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QSplitter>
#include <QStandardPaths>
#include <QTreeWidget>
#include <QVBoxLayout>

#include <algorithm>

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

namespace {

enum Column {
    ColName,
    ColModified,
    ColSteps,
    ColLoss,
    ColEval,
    ColRank,
    ColLr,
    ColSeq,
    ColBatch,
    ColCheckpoint,
    ColModel,
    ColCount
};

} // namespace

RunSummary RunSummary::fromInfo(const qls::run_info& info) {
    RunSummary r;
    r.dir = QString::fromStdString(info.dir);
    r.name = QString::fromStdString(info.name);
    r.model = QString::fromStdString(info.model);
    r.trainFile = QString::fromStdString(info.train_file);
    r.modified = QDateTime::fromMSecsSinceEpoch(info.modified_ms);
    r.lastStep = info.last_step;
    r.totalSteps = info.total_steps;
    r.lastLoss = info.last_loss;
    r.lastEvalLoss = info.last_eval_loss;
    for (int64_t s : info.checkpoint_steps) r.checkpointSteps << qint64(s);
    r.latestCheckpoint = QString::fromStdString(info.latest_checkpoint);
    r.problem = QString::fromStdString(info.problem);
    if (r.problem.isEmpty()) {
        try {
            const qls::train_config c = qls::load_train_config(info.dir + "/config.json");
            r.rank = c.lora.rank;
            r.learningRate = c.learning_rate;
            r.seqLen = c.seq_len;
            r.rowsPerStep = c.micro_batch * c.grad_accum;
        } catch (const qls::error&) {
            // the catalog read the file; a config another version wrote leaves the columns empty
        }
    }
    r.locked = RunLock::isLocked(r.dir, &r.lockHolder);
    return r;
}

RunSummary RunSummary::read(const QString& dir) { return fromInfo(qls::read_run(dir.toStdString())); }

RunsPage::RunsPage(QWidget* parent) : QWidget(parent) {
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(new QLabel(tr("<h2>Runs</h2>"), this));
    auto* top = new QHBoxLayout;
    auto* label = new QLabel(tr("Runs folder:"), this);
    m_dir = new QLineEdit(this);
    m_dir->setToolTip(tr("The folder holding one directory per run (runs/<name>/ with config.json, metrics.jsonl and "
                         "checkpoints/); the Training page's runs folder"));
    label->setBuddy(m_dir);
    label->setToolTip(m_dir->toolTip());
    m_browse = new QPushButton(tr("Browse…"), this);
    m_browse->setToolTip(tr("Choose the runs folder"));
    m_refresh = new QPushButton(tr("Refresh"), this);
    m_refresh->setToolTip(tr("Read the runs folder again"));
    top->addWidget(label);
    top->addWidget(m_dir, 1);
    top->addWidget(m_browse);
    top->addWidget(m_refresh);
    layout->addLayout(top);

    m_list = new QTreeWidget(this);
    m_list->setRootIsDecorated(false);
    m_list->setAlternatingRowColors(true);
    m_list->setSortingEnabled(true);
    m_list->setHeaderLabels({tr("Run"), tr("Last change"), tr("Steps"), tr("Loss"), tr("Eval loss"), tr("Rank"),
                             tr("Learning rate"), tr("Seq len"), tr("Rows/step"), tr("Newest checkpoint"),
                             tr("Model")});
    m_list->setSelectionMode(QAbstractItemView::ExtendedSelection);
    m_list->headerItem()->setToolTip(ColRank, tr("LoRA rank r"));
    m_list->headerItem()->setToolTip(ColLr, tr("Peak learning rate"));
    m_list->headerItem()->setToolTip(ColSeq, tr("Sequence length (tokens per row)"));
    m_list->headerItem()->setToolTip(ColBatch, tr("Effective batch: micro-batch × accumulation"));
    m_list->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_list->header()->setStretchLastSection(true);
    m_list->setToolTip(tr("Past runs; double-click one to redraw its charts on the Monitor page; select several "
                          "(Ctrl or Shift) to compare their loss curves"));
    m_compare = new QCustomPlot(this);
    m_compare->setObjectName("compareChart");
    m_compare->setMinimumHeight(160);
    m_compare->xAxis->setLabel(tr("step"));
    m_compare->yAxis->setLabel(tr("training loss"));
    m_compare->legend->setVisible(true);
    m_compare->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    m_compare->setToolTip(tr("The training loss of the selected runs, one curve each"));
    themePlot(m_compare, palette());
    auto* split = new QSplitter(Qt::Vertical, this);
    split->addWidget(m_list);
    split->addWidget(m_compare);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    layout->addWidget(split, 1);

    m_details = new QLabel(this);
    m_details->setWordWrap(true);
    m_details->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_details->setToolTip(tr("The selected run's files"));
    layout->addWidget(m_details);

    auto* actions = new QHBoxLayout;
    m_open = new QPushButton(tr("Open in Monitor"), this);
    m_open->setToolTip(
        tr("Redraw this run's loss, learning rate, throughput, memory and paging charts from its metrics.jsonl"));
    m_resume = new QPushButton(tr("Resume"), this);
    m_resume->setToolTip(
        tr("Continue training this run from its newest checkpoint (same data order, optimizer state and step)"));
    m_export = new QPushButton(tr("Export…"), this);
    m_export->setToolTip(tr("Export the chosen checkpoint (PEFT adapter, merged model or GGUF)"));
    m_playground = new QPushButton(tr("Playground"), this);
    m_playground->setToolTip(tr("Generate text with the run's model and the chosen checkpoint's adapter"));
    m_delete = new QPushButton(tr("Delete…"), this);
    m_delete->setToolTip(tr("Delete the selected run's folder (config, metrics, checkpoints, exports) after asking"));
    auto* checkpointLabel = new QLabel(tr("Checkpoint:"), this);
    m_checkpoint = new QComboBox(this);
    m_checkpoint->setObjectName("checkpointChoice");
    m_checkpoint->setToolTip(tr("The checkpoint Export and Playground use; the newest by default"));
    m_checkpoint->setMinimumContentsLength(10);
    checkpointLabel->setBuddy(m_checkpoint);
    actions->addWidget(m_open);
    actions->addWidget(m_resume);
    actions->addSpacing(12);
    actions->addWidget(checkpointLabel);
    actions->addWidget(m_checkpoint);
    actions->addWidget(m_export);
    actions->addWidget(m_playground);
    actions->addSpacing(12);
    actions->addWidget(m_delete);
    actions->addStretch(1);
    layout->addLayout(actions);

    connect(m_browse, &QPushButton::clicked, this, &RunsPage::browse);
    connect(m_refresh, &QPushButton::clicked, this, &RunsPage::refresh);
    connect(m_dir, &QLineEdit::editingFinished, this, [this] { setRunsDirectory(m_dir->text()); });
    connect(m_list, &QTreeWidget::itemSelectionChanged, this, &RunsPage::updateSelection);
    connect(m_list, &QTreeWidget::itemDoubleClicked, this, [this] {
        if (current()) emit openRequested(current()->dir);
    });
    connect(m_open, &QPushButton::clicked, this, [this] {
        if (current()) emit openRequested(current()->dir);
    });
    connect(m_resume, &QPushButton::clicked, this, [this] {
        if (current()) emit resumeRequested(current()->dir);
    });
    connect(m_export, &QPushButton::clicked, this, [this] {
        if (const RunSummary* r = current()) emit exportRequested(r->dir, chosenCheckpoint());
    });
    connect(m_playground, &QPushButton::clicked, this, [this] {
        if (const RunSummary* r = current()) emit playgroundRequested(r->dir, chosenCheckpoint());
    });
    connect(m_delete, &QPushButton::clicked, this, [this] {
        QString why;
        if (!deleteSelected(&why) && !why.isEmpty()) m_details->setText(why.toHtmlEscaped());
    });
    // the list follows the folder: a run created, finished or deleted elsewhere shows without Refresh
    m_watcher = new QFileSystemWatcher(this);
    connect(m_watcher, &QFileSystemWatcher::directoryChanged, this, &RunsPage::refresh);

    QString dir = QSettings().value("runs/directory").toString().trimmed();
    if (dir.isEmpty()) dir = defaultRunsDirectory();
    m_dir->setText(QDir(dir).absolutePath());
    refresh();
}

QString RunsPage::defaultRunsDirectory() {
    return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).absoluteFilePath("runs");
}

QString RunsPage::runsDirectory() const {
    const QString t = m_dir->text().trimmed();
    return t.isEmpty() ? QString() : QDir(t).absolutePath();
}

void RunsPage::setRunsDirectory(const QString& dir) {
    const QString absolute = dir.trimmed().isEmpty() ? QString() : QDir(dir.trimmed()).absolutePath();
    if (m_dir->text() != absolute) m_dir->setText(absolute);
    QSettings().setValue("runs/directory", absolute);
    refresh();
    emit runsDirectoryChanged(absolute);
}

void RunsPage::browse() {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Runs folder"), runsDirectory());
    if (!dir.isEmpty()) setRunsDirectory(dir);
}

void RunsPage::refresh() {
    const QString previous = selectedRun();
    m_runs.clear();
    m_list->clear();
    const QString root = runsDirectory();
    QDir dir(root);
    if (!m_watcher->directories().isEmpty()) m_watcher->removePaths(m_watcher->directories());
    if (!root.isEmpty() && dir.exists()) m_watcher->addPath(root);
    if (root.isEmpty() || !dir.exists()) {
        m_details->setText(root.isEmpty() ? tr("Choose the runs folder above (Browse…).")
                                          : tr("The runs folder %1 does not exist yet: it is created by the first run. "
                                               "Choose another folder with Browse… if your runs are elsewhere.")
                                                .arg(QDir::toNativeSeparators(QDir(root).absolutePath())));
        updateSelection();
        return;
    }
    m_list->setSortingEnabled(false);
    for (const qls::run_info& info : qls::list_runs(dir.absolutePath().toStdString())) {
        const RunSummary r = RunSummary::fromInfo(info);
        m_runs << r;
        auto* item = new QTreeWidgetItem(m_list);
        item->setData(ColName, Qt::UserRole, r.dir);
        item->setText(ColName, r.name);
        item->setText(ColModified, r.modified.toString("yyyy-MM-dd hh:mm"));
        item->setData(ColModified, Qt::UserRole + 1, r.modified);
        item->setText(ColSteps, r.totalSteps > 0 ? QString("%1 / %2").arg(r.lastStep).arg(r.totalSteps) : tr("none"));
        item->setText(ColLoss, r.lastLoss ? QString::number(*r.lastLoss, 'f', 4) : QString("—"));
        item->setText(ColEval, r.lastEvalLoss ? QString::number(*r.lastEvalLoss, 'f', 4) : QString("—"));
        item->setText(ColRank, r.rank > 0 ? QString::number(r.rank) : QString("—"));
        item->setText(ColLr, r.learningRate > 0 ? QString::number(r.learningRate, 'g', 3) : QString("—"));
        item->setText(ColSeq, r.seqLen > 0 ? QString::number(r.seqLen) : QString("—"));
        item->setText(ColBatch, r.rowsPerStep > 0 ? QString::number(r.rowsPerStep) : QString("—"));
        if (r.locked) {
            item->setText(ColSteps, item->text(ColSteps) + tr(" (training)"));
            item->setToolTip(ColSteps, tr("Being trained by %1").arg(r.lockHolder));
        }
        item->setText(ColCheckpoint,
                      r.checkpointSteps.isEmpty() ? tr("none") : QString("step-%1").arg(r.checkpointSteps.last()));
        item->setText(ColModel, QFileInfo(r.model).fileName());
        item->setToolTip(ColModel, r.model);
        item->setToolTip(ColName, r.problem.isEmpty() ? r.dir : r.problem);
        if (!r.problem.isEmpty()) item->setForeground(ColName, QColor(0xb0, 0x00, 0x20));
    }
    m_list->setSortingEnabled(true);
    m_list->sortByColumn(ColModified, Qt::DescendingOrder);
    m_details->setText(
        m_runs.isEmpty()
            ? tr("No runs in %1 yet. Start one on the Monitor page.").arg(QDir::toNativeSeparators(dir.absolutePath()))
            : tr("%n run(s) in %1. Select one for its files and actions.", nullptr, int(m_runs.size()))
                  .arg(QDir::toNativeSeparators(dir.absolutePath())));
    if (!previous.isEmpty()) selectRun(previous);
    updateSelection();
}

QString RunsPage::selectedRun() const {
    const RunSummary* r = current();
    return r ? r->dir : QString();
}

bool RunsPage::selectRun(const QString& runDir) {
    const QString want = QDir(runDir).absolutePath();
    for (int i = 0; i < m_list->topLevelItemCount(); ++i) {
        QTreeWidgetItem* item = m_list->topLevelItem(i);
        if (item->data(ColName, Qt::UserRole).toString() == want) {
            m_list->setCurrentItem(item);
            item->setSelected(true);
            return true;
        }
    }
    return false;
}

QString RunsPage::statusText() const { return m_details->text(); }

const RunSummary* RunsPage::current() const {
    const QList<QTreeWidgetItem*> sel = m_list->selectedItems();
    if (sel.isEmpty()) return nullptr;
    const QString dir = sel.first()->data(ColName, Qt::UserRole).toString();
    for (const RunSummary& r : m_runs)
        if (r.dir == dir) return &r;
    return nullptr;
}

void RunsPage::updateSelection() {
    const RunSummary* r = current();
    const bool usable = r && r->problem.isEmpty();
    const bool hasCheckpoint = usable && !r->latestCheckpoint.isEmpty();
    m_open->setEnabled(usable);
    m_resume->setEnabled(hasCheckpoint && !r->complete() && !r->locked);
    m_export->setEnabled(hasCheckpoint);
    m_playground->setEnabled(hasCheckpoint);
    m_delete->setEnabled(r && !r->locked);
    m_delete->setToolTip(r && r->locked ? tr("This run is being trained; stop it before deleting it")
                                        : tr("Delete the selected run's folder (config, metrics, checkpoints, exports) "
                                             "after asking"));
    {
        const QString keep = m_checkpoint->currentText();
        m_checkpoint->clear();
        if (usable)
            for (int i = int(r->checkpointSteps.size()) - 1; i >= 0; --i)
                m_checkpoint->addItem(
                    QStringLiteral("step-%1").arg(r->checkpointSteps[i]),
                    QDir(r->dir).absoluteFilePath(QStringLiteral("checkpoints/step-%1").arg(r->checkpointSteps[i])));
        const int again = m_checkpoint->findText(keep);
        if (again >= 0) m_checkpoint->setCurrentIndex(again);
        m_checkpoint->setEnabled(m_checkpoint->count() > 0);
    }
    updateComparison();
    m_resume->setToolTip(r && r->locked       ? tr("This run is being trained by %1").arg(r->lockHolder)
                         : r && r->complete() ? tr("This run is complete; there is nothing left to train")
                         : hasCheckpoint ? tr("Continue training this run from its newest checkpoint (same data order, "
                                              "optimizer state and step)")
                                         : tr("This run has no complete checkpoint to continue from"));
    if (!r) return;
    if (!r->problem.isEmpty()) {
        m_details->setText(r->problem);
        return;
    }
    m_details->setText(tr("<b>%1</b> — model %2, data %3<br>%4 of %5 steps; checkpoints: %6")
                           .arg(r->name.toHtmlEscaped(), QDir::toNativeSeparators(r->model).toHtmlEscaped(),
                                QDir::toNativeSeparators(r->trainFile).toHtmlEscaped())
                           .arg(r->lastStep)
                           .arg(r->totalSteps)
                           .arg(r->checkpointSteps.isEmpty() ? tr("none") : [r] {
                               QStringList s;
                               for (qint64 v : r->checkpointSteps) s << QString::number(v);
                               return s.join(", ");
                           }()));
}

QStringList RunsPage::selectedRuns() const {
    QStringList out;
    for (QTreeWidgetItem* item : m_list->selectedItems()) out << item->data(ColName, Qt::UserRole).toString();
    return out;
}

bool RunsPage::selectRuns(const QStringList& runDirs) {
    m_list->clearSelection();
    bool all = true;
    for (const QString& d : runDirs) {
        const QString want = QDir(d).absolutePath();
        bool found = false;
        for (int i = 0; i < m_list->topLevelItemCount() && !found; ++i) {
            QTreeWidgetItem* item = m_list->topLevelItem(i);
            if (item->data(ColName, Qt::UserRole).toString() == want) {
                item->setSelected(true);
                found = true;
            }
        }
        all = all && found;
    }
    return all;
}

QString RunsPage::chosenCheckpoint() const { return m_checkpoint->currentData().toString(); }

bool RunsPage::chooseCheckpoint(qint64 step) {
    const int i = m_checkpoint->findText(QStringLiteral("step-%1").arg(step));
    if (i < 0) return false;
    m_checkpoint->setCurrentIndex(i);
    return true;
}

QStringList RunsPage::comparedRuns() const {
    QStringList out;
    for (int i = 0; i < m_compare->graphCount(); ++i) out << m_compare->graph(i)->name();
    return out;
}

void RunsPage::updateComparison() {
    m_compare->clearGraphs();
    int colour = 0;
    double lo = 0, hi = 0, last = 1;
    bool any = false;
    for (const QString& dir : selectedRuns()) {
        if (!m_metricsReader) break;
        const std::vector<qls::step_stats> metrics = m_metricsReader(dir);
        if (metrics.empty()) continue;
        QCPGraph* g = m_compare->addGraph();
        g->setName(QFileInfo(dir).fileName());
        g->setPen(QPen(MonitorChart::paletteColor(colour++), 1.5));
        for (const qls::step_stats& s : metrics) {
            g->addData(double(s.step), s.loss);
            lo = any ? std::min(lo, s.loss) : s.loss;
            hi = any ? std::max(hi, s.loss) : s.loss;
            last = std::max(last, double(s.step));
            any = true;
        }
    }
    if (any) {
        const double pad = std::max(1e-3, 0.08 * (hi - lo));
        m_compare->xAxis->setRange(0, last);
        m_compare->yAxis->setRange(lo - pad, hi + pad);
    }
    m_compare->replot(QCustomPlot::rpQueuedReplot);
}

bool RunsPage::deleteSelected(QString* why) {
    const RunSummary* r = current();
    if (!r) return false;
    if (RunLock::isLocked(r->dir)) {
        if (why) *why = tr("%1 is being trained; stop it before deleting it.").arg(r->name);
        return false;
    }
    const QString name = r->name, dir = r->dir;
    const bool yes = m_deleteQuestion
                         ? m_deleteQuestion(name)
                         : QMessageBox::question(this, tr("Delete run"),
                                                 tr("Delete the run %1 and everything in %2 (checkpoints, metrics, "
                                                    "exports)? This cannot be undone.")
                                                     .arg(name, QDir::toNativeSeparators(dir)),
                                                 QMessageBox::Yes | QMessageBox::Cancel,
                                                 QMessageBox::Cancel) == QMessageBox::Yes;
    if (!yes) return false;
    if (!QDir(dir).removeRecursively()) {
        if (why) *why = tr("Could not delete all of %1; check its permissions.").arg(QDir::toNativeSeparators(dir));
        refresh();
        return false;
    }
    refresh();
    return true;
}
