// RunsPage: lists the runs the engine's run catalog finds (qls/run_catalog.h); actions leave as signals.
#include "runspage.h"

#include "qls/run_catalog.h"

#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QTreeWidget>
#include <QVBoxLayout>

#include <algorithm>

namespace {

enum Column { ColName, ColModified, ColSteps, ColLoss, ColEval, ColCheckpoint, ColModel, ColCount };

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
    return r;
}

RunSummary RunSummary::read(const QString& dir) { return fromInfo(qls::read_run(dir.toStdString())); }

RunsPage::RunsPage(QWidget* parent) : QWidget(parent) {
    auto* layout = new QVBoxLayout(this);
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
    m_list->setHeaderLabels({tr("Run"), tr("Last change"), tr("Steps"), tr("Loss"), tr("Eval loss"),
                             tr("Newest checkpoint"), tr("Model")});
    m_list->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_list->header()->setStretchLastSection(true);
    m_list->setToolTip(tr("Past runs; double-click one to redraw its charts on the Monitor page"));
    layout->addWidget(m_list, 1);

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
    m_export->setToolTip(tr("Export the newest checkpoint as a PEFT adapter or a merged model"));
    m_playground = new QPushButton(tr("Playground"), this);
    m_playground->setToolTip(tr("Generate text with the run's model and its newest checkpoint"));
    for (QPushButton* b : {m_open, m_resume, m_export, m_playground}) actions->addWidget(b);
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
        if (const RunSummary* r = current()) emit exportRequested(r->dir, r->latestCheckpoint);
    });
    connect(m_playground, &QPushButton::clicked, this, [this] {
        if (const RunSummary* r = current()) emit playgroundRequested(r->dir, r->latestCheckpoint);
    });

    m_dir->setText(QSettings().value("runs/directory", "runs").toString());
    refresh();
}

QString RunsPage::runsDirectory() const { return m_dir->text().trimmed(); }

void RunsPage::setRunsDirectory(const QString& dir) {
    if (m_dir->text() != dir) m_dir->setText(dir);
    QSettings().setValue("runs/directory", dir.trimmed());
    refresh();
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
        item->setText(ColCheckpoint,
                      r.checkpointSteps.isEmpty() ? tr("none") : QString("step-%1").arg(r.checkpointSteps.last()));
        item->setText(ColModel, QFileInfo(r.model).fileName());
        item->setToolTip(ColModel, r.model);
        item->setToolTip(ColName, r.problem.isEmpty() ? r.dir : r.problem);
        if (!r.problem.isEmpty()) item->setForeground(ColName, QColor(0xb0, 0x00, 0x20));
    }
    m_list->setSortingEnabled(true);
    m_list->sortByColumn(ColModified, Qt::DescendingOrder);
    if (m_runs.isEmpty())
        m_details->setText(
            tr("No runs in %1 yet. Start one on the Monitor page.").arg(QDir::toNativeSeparators(dir.absolutePath())));
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
    m_resume->setEnabled(hasCheckpoint && !r->complete());
    m_export->setEnabled(hasCheckpoint);
    m_playground->setEnabled(hasCheckpoint);
    m_resume->setToolTip(r && r->complete() ? tr("This run is complete; there is nothing left to train")
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
