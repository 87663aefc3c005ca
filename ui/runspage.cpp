// RunsPage: reads each run directory's config.json, the tail of metrics.jsonl and its checkpoints; actions leave as signals.
#include "runspage.h"

#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QTreeWidget>
#include <QVBoxLayout>

#include <algorithm>

namespace {

// The last complete lines of a file (reads at most its final 256 KiB).
QList<QByteArray> tailLines(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    const qint64 chunk = 256 * 1024;
    const bool partial = f.size() > chunk;
    if (partial) f.seek(f.size() - chunk);
    QList<QByteArray> lines = f.readAll().split('\n');
    if (partial && !lines.isEmpty()) lines.removeFirst(); // cut in the middle
    return lines;
}

enum Column { ColName, ColModified, ColSteps, ColLoss, ColEval, ColCheckpoint, ColModel, ColCount };

} // namespace

RunSummary RunSummary::read(const QString& dirPath) {
    RunSummary r;
    QDir dir(dirPath);
    r.dir = dir.absolutePath();
    r.name = dir.dirName();
    QFile cfg(dir.filePath("config.json"));
    if (!cfg.exists()) cfg.setFileName(dir.filePath("run.json"));
    if (!cfg.open(QIODevice::ReadOnly)) {
        r.problem = QObject::tr("%1: no config.json, so this is not a run directory").arg(QDir::toNativeSeparators(r.dir));
        return r;
    }
    QJsonParseError err;
    const QJsonDocument doc = QJsonDocument::fromJson(cfg.readAll(), &err);
    if (!doc.isObject()) {
        r.problem = QObject::tr("%1: not valid JSON (%2)").arg(QDir::toNativeSeparators(cfg.fileName()), err.errorString());
    } else {
        const QJsonObject o = doc.object();
        r.model = o.value("model").toString();
        r.trainFile = o.value("data").toObject().value("train").toString();
    }
    r.modified = QFileInfo(cfg.fileName()).lastModified();
    const QString metrics = dir.filePath("metrics.jsonl");
    if (QFileInfo::exists(metrics)) r.modified = std::max(r.modified, QFileInfo(metrics).lastModified());
    const QList<QByteArray> lines = tailLines(metrics);
    bool haveLast = false;
    for (auto it = lines.crbegin(); it != lines.crend(); ++it) {
        if (it->trimmed().isEmpty()) continue;
        const QJsonDocument line = QJsonDocument::fromJson(*it);
        if (!line.isObject()) continue; // a line cut short by a crash
        const QJsonObject o = line.object();
        if (!haveLast) {
            haveLast = true;
            r.lastStep = qint64(o.value("step").toDouble());
            r.totalSteps = qint64(o.value("total_steps").toDouble());
            if (o.contains("loss")) r.lastLoss = o.value("loss").toDouble();
        }
        if (o.contains("eval_loss")) {
            r.lastEvalLoss = o.value("eval_loss").toDouble();
            break;
        }
    }
    const QDir checkpoints(dir.filePath("checkpoints"));
    for (const QString& n : checkpoints.entryList(QDir::Dirs | QDir::NoDotAndDotDot)) {
        if (!n.startsWith("step-")) continue;
        bool ok = false;
        const qint64 step = n.mid(5).toLongLong(&ok);
        if (ok && step >= 0 && QFileInfo::exists(checkpoints.filePath(n + "/trainer_state.json"))) r.checkpointSteps << step;
    }
    std::sort(r.checkpointSteps.begin(), r.checkpointSteps.end());
    if (!r.checkpointSteps.isEmpty())
        r.latestCheckpoint = checkpoints.absoluteFilePath(QString("step-%1").arg(r.checkpointSteps.last()));
    return r;
}

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
    m_open->setToolTip(tr("Redraw this run's loss, learning rate, throughput, memory and paging charts from its metrics.jsonl"));
    m_resume = new QPushButton(tr("Resume"), this);
    m_resume->setToolTip(tr("Continue training this run from its newest checkpoint (same data order, optimizer state and step)"));
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
    connect(m_list, &QTreeWidget::itemDoubleClicked, this, [this] { if (current()) emit openRequested(current()->dir); });
    connect(m_open, &QPushButton::clicked, this, [this] { if (current()) emit openRequested(current()->dir); });
    connect(m_resume, &QPushButton::clicked, this, [this] { if (current()) emit resumeRequested(current()->dir); });
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
    for (const QFileInfo& fi : dir.entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name)) {
        if (!QFileInfo::exists(fi.absoluteFilePath() + "/config.json") && !QFileInfo::exists(fi.absoluteFilePath() + "/run.json"))
            continue; // not a run (exports, scratch folders)
        const RunSummary r = RunSummary::read(fi.absoluteFilePath());
        m_runs << r;
        auto* item = new QTreeWidgetItem(m_list);
        item->setData(ColName, Qt::UserRole, r.dir);
        item->setText(ColName, r.name);
        item->setText(ColModified, r.modified.toString("yyyy-MM-dd hh:mm"));
        item->setData(ColModified, Qt::UserRole + 1, r.modified);
        item->setText(ColSteps, r.totalSteps > 0 ? QString("%1 / %2").arg(r.lastStep).arg(r.totalSteps) : tr("none"));
        item->setText(ColLoss, r.lastLoss ? QString::number(*r.lastLoss, 'f', 4) : QString("—"));
        item->setText(ColEval, r.lastEvalLoss ? QString::number(*r.lastEvalLoss, 'f', 4) : QString("—"));
        item->setText(ColCheckpoint, r.checkpointSteps.isEmpty() ? tr("none") : QString("step-%1").arg(r.checkpointSteps.last()));
        item->setText(ColModel, QFileInfo(r.model).fileName());
        item->setToolTip(ColModel, r.model);
        item->setToolTip(ColName, r.problem.isEmpty() ? r.dir : r.problem);
        if (!r.problem.isEmpty()) item->setForeground(ColName, QColor(0xb0, 0x00, 0x20));
    }
    m_list->setSortingEnabled(true);
    m_list->sortByColumn(ColModified, Qt::DescendingOrder);
    if (m_runs.isEmpty())
        m_details->setText(tr("No runs in %1 yet. Start one on the Monitor page.").arg(QDir::toNativeSeparators(dir.absolutePath())));
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
