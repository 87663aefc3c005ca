// ExportPage: the form, the export job (engine calls on a QtConcurrent thread, progress by stage) and the result display.
#include "exportpage.h"

#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/peft.h"
#include "qls/train_config.h"

#include <QButtonGroup>
#include <QCheckBox>
#include <QDesktopServices>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPromise>
#include <QPushButton>
#include <QRadioButton>
#include <QUrl>
#include <QVBoxLayout>
#include <QtConcurrent>

#include <exception>
#include <new>
#include <string>

namespace {

// Everything the job needs, copied so that the page may change (or go away) while it runs.
struct ExportRequest {
    QString modelDir;
    QString checkpointDir;
    QString outputDir;
    ExportPage::Format format = ExportPage::Format::Peft;
    bool nf4 = true;
    bool doubleQuant = true;
};

QString runDirOf(const QString& checkpointDir) {
    const QFileInfo ck(QDir::cleanPath(checkpointDir));
    const QFileInfo parent(ck.absolutePath());
    return parent.fileName() == QLatin1String("checkpoints") ? parent.absolutePath() : QString();
}

ExportResult failure(const QString& message, const QString& hint) { return {false, {}, message, hint}; }

// Checks what the engine would otherwise report later (or less directly): missing folders and files.
ExportResult checkRequest(const ExportRequest& r) {
    const QString adapterHint =
        QObject::tr("choose a checkpoint folder of a run (runs/<name>/checkpoints/step-N), which holds "
                    "adapter_config.json and adapter_model.safetensors");
    if (r.checkpointDir.isEmpty()) return failure(QObject::tr("No checkpoint chosen."), adapterHint);
    if (!QFileInfo(r.checkpointDir).isDir())
        return failure(QObject::tr("%1: no such folder.").arg(r.checkpointDir), adapterHint);
    for (const char* name : {"adapter_config.json", "adapter_model.safetensors"}) {
        if (!QFileInfo::exists(r.checkpointDir + QLatin1Char('/') + QLatin1String(name)))
            return failure(QObject::tr("%1 is not a checkpoint: it holds no %2.").arg(r.checkpointDir, QLatin1String(name)),
                           adapterHint);
    }
    const QString modelHint = QObject::tr("choose the base model the run was trained on (a Hugging Face folder with "
                                          "config.json and model.safetensors)");
    if (r.modelDir.isEmpty()) return failure(QObject::tr("No base model chosen."), modelHint);
    if (!QFileInfo::exists(r.modelDir + QStringLiteral("/config.json")))
        return failure(QObject::tr("%1: no config.json, so this is not a model folder.").arg(r.modelDir), modelHint);
    if (r.outputDir.isEmpty())
        return failure(QObject::tr("No output folder chosen."), QObject::tr("enter or browse for a folder to write"));
    const QString out = QFileInfo(r.outputDir).absoluteFilePath();
    for (const QString& in : {r.checkpointDir, r.modelDir}) {
        if (QDir::cleanPath(out) == QDir::cleanPath(QFileInfo(in).absoluteFilePath()))
            return failure(QObject::tr("The output folder %1 is an input of the export.").arg(r.outputDir),
                           QObject::tr("choose a new folder, e.g. the run's exports/ folder"));
    }
    return {true, {}, {}, {}};
}

// Runs on a pool thread. Progress is by stage: the engine's calls report nothing finer.
void runExport(QPromise<ExportResult>& promise, const ExportRequest& r) {
    ExportResult checked = checkRequest(r);
    if (!checked.ok) {
        promise.addResult(checked);
        return;
    }
    const bool merged = r.format == ExportPage::Format::Merged;
    promise.setProgressRange(0, merged ? 4 : 3);
    try {
        const std::string model = r.modelDir.toStdString(), out = r.outputDir.toStdString();
        promise.setProgressValueAndText(0, QObject::tr("Reading the base model's config.json…"));
        const qls::hf_checkpoint base = qls::hf_checkpoint::open(model);
        promise.setProgressValueAndText(1, QObject::tr("Reading the adapter…"));
        const qls::lora_weights<float> lw = qls::load_peft(r.checkpointDir.toStdString(), base.config());
        if (!merged) {
            promise.setProgressValueAndText(2, QObject::tr("Writing adapter_config.json and adapter_model.safetensors…"));
            qls::export_peft(out, lw, base.config(), model);
        } else {
            promise.setProgressValueAndText(2, r.nf4 ? QObject::tr("Loading and quantizing the base weights (NF4)…")
                                                     : QObject::tr("Loading the base weights…"));
            qls::llama_load_options lo;
            lo.quantize_nf4 = r.nf4;
            lo.double_quant = r.doubleQuant;
            const qls::llama_model m = qls::llama_model::load(base, lo);
            promise.setProgressValueAndText(3, QObject::tr("Merging the adapter and writing the model…"));
            qls::export_merged(out, base, m, lw);
        }
        promise.setProgressValueAndText(merged ? 4 : 3, QObject::tr("Done."));
        promise.addResult(ExportResult{true, QFileInfo(r.outputDir).absoluteFilePath(), {}, {}});
    } catch (const qls::error& e) {
        promise.addResult(failure(QString::fromStdString(e.what()), QString::fromStdString(e.hint())));
    } catch (const std::bad_alloc&) {
        promise.addResult(failure(QObject::tr("Out of memory while exporting."),
                                  QObject::tr("close other programs, or export the PEFT adapter instead of a merged model")));
    } catch (const std::exception& e) {
        promise.addResult(failure(QString::fromUtf8(e.what()), QString()));
    }
}

} // namespace

ExportPage::ExportPage(QWidget* parent) : QWidget(parent) {
    auto* layout = new QVBoxLayout(this);
    auto* title = new QLabel(tr("<h2>Export</h2>Write a checkpoint's adapter in a format other tools load: a PEFT "
                                "adapter for transformers + PEFT, or a merged model with the adapter folded into the "
                                "base weights."),
                             this);
    title->setWordWrap(true);
    layout->addWidget(title);

    auto* form = new QFormLayout;
    m_model = new QLabel(tr("(none)"), this);
    m_model->setObjectName(QStringLiteral("exportModel"));
    m_model->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_checkpoint = new QLabel(tr("(none)"), this);
    m_checkpoint->setObjectName(QStringLiteral("exportCheckpoint"));
    m_checkpoint->setTextInteractionFlags(Qt::TextSelectableByMouse);
    form->addRow(tr("Base model"), m_model);
    form->addRow(tr("Checkpoint"), m_checkpoint);

    auto* formats = new QVBoxLayout;
    m_peft = new QRadioButton(tr("PEFT adapter (adapter_config.json + adapter_model.safetensors, a few MB)"), this);
    m_peft->setObjectName(QStringLiteral("exportPeft"));
    m_merged = new QRadioButton(tr("Merged model (a full Hugging Face model; the size of the base)"), this);
    m_merged->setObjectName(QStringLiteral("exportMerged"));
    m_peft->setChecked(true);
    m_formatGroup = new QButtonGroup(this);
    m_formatGroup->addButton(m_peft);
    m_formatGroup->addButton(m_merged);
    m_nf4 = new QCheckBox(tr("Merge into the NF4-quantized base, as it was during training"), this);
    m_nf4->setObjectName(QStringLiteral("exportNf4"));
    m_nf4->setChecked(true);
    m_nf4->setToolTip(tr("QLoRA trains the adapter against the 4-bit base; merging into its dequantized weights "
                         "reproduces the trained model exactly. Off: merge into the original weights."));
    m_nf4->setEnabled(false);
    formats->addWidget(m_peft);
    formats->addWidget(m_merged);
    formats->addWidget(m_nf4);
    form->addRow(tr("Format"), formats);

    auto* outRow = new QHBoxLayout;
    m_output = new QLineEdit(this);
    m_output->setObjectName(QStringLiteral("exportOutput"));
    m_output->setPlaceholderText(tr("/path/to/export"));
    m_browse = new QPushButton(tr("Browse…"), this);
    outRow->addWidget(m_output, 1);
    outRow->addWidget(m_browse);
    form->addRow(tr("Output folder"), outRow);
    layout->addLayout(form);

    auto* actions = new QHBoxLayout;
    m_export = new QPushButton(tr("Export"), this);
    m_export->setObjectName(QStringLiteral("exportButton"));
    m_export->setEnabled(false);
    m_progress = new QProgressBar(this);
    m_progress->setObjectName(QStringLiteral("exportProgress"));
    m_progress->setRange(0, 1);
    m_progress->setValue(0);
    m_progress->setTextVisible(false);
    actions->addWidget(m_export);
    actions->addWidget(m_progress, 1);
    layout->addLayout(actions);

    m_status = new QLabel(tr("Choose a run's checkpoint to export."), this);
    m_status->setObjectName(QStringLiteral("exportStatus"));
    m_status->setWordWrap(true);
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_status);

    auto* resultRow = new QHBoxLayout;
    m_result = new QLabel(this);
    m_result->setObjectName(QStringLiteral("exportResult"));
    m_result->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_openFolder = new QPushButton(tr("Open folder"), this);
    m_openFolder->setObjectName(QStringLiteral("exportOpenFolder"));
    m_openFolder->setEnabled(false);
    resultRow->addWidget(m_result, 1);
    resultRow->addWidget(m_openFolder);
    layout->addLayout(resultRow);
    layout->addStretch(1);

    connect(m_formatGroup, &QButtonGroup::buttonToggled, this, [this](QAbstractButton*, bool checked) {
        if (!checked) return;
        m_nf4->setEnabled(m_merged->isChecked() && !isRunning());
        updateDefaultOutput();
    });
    connect(m_output, &QLineEdit::textEdited, this, [this] { m_outputEdited = true; });
    connect(m_browse, &QPushButton::clicked, this, &ExportPage::browseOutput);
    connect(m_export, &QPushButton::clicked, this, &ExportPage::startExport);
    connect(m_openFolder, &QPushButton::clicked, this, &ExportPage::openResultFolder);
    connect(&m_watcher, &QFutureWatcherBase::progressRangeChanged, m_progress, &QProgressBar::setRange);
    connect(&m_watcher, &QFutureWatcherBase::progressValueChanged, m_progress, &QProgressBar::setValue);
    connect(&m_watcher, &QFutureWatcherBase::progressTextChanged, m_status, &QLabel::setText);
    connect(&m_watcher, &QFutureWatcherBase::finished, this, &ExportPage::finish);
}

ExportPage::~ExportPage() { m_watcher.waitForFinished(); }

void ExportPage::setCheckpoint(const QString& modelDir, const QString& checkpointDir) {
    m_modelDir = QDir::cleanPath(modelDir);
    m_checkpointDir = QDir::cleanPath(checkpointDir);
    m_model->setText(m_modelDir.isEmpty() ? tr("(none)") : m_modelDir);
    m_checkpoint->setText(m_checkpointDir.isEmpty() ? tr("(none)") : m_checkpointDir);
    m_outputEdited = false;
    m_resultPath.clear();
    m_result->clear();
    m_openFolder->setEnabled(false);
    m_progress->setRange(0, 1);
    m_progress->setValue(0);

    // The run's own config says whether its base was NF4 while the adapter trained.
    bool nf4 = true;
    const QString runDir = runDirOf(m_checkpointDir);
    const QString runConfig = runDir + QStringLiteral("/config.json");
    if (!runDir.isEmpty() && QFileInfo::exists(runConfig)) {
        try {
            nf4 = qls::load_train_config(runConfig.toStdString()).quantize_nf4;
        } catch (const std::exception&) {
            // an unreadable run config only loses this default; the export itself does not need it
        }
    }
    m_nf4->setChecked(nf4);
    updateDefaultOutput();
    m_export->setEnabled(!isRunning() && !m_checkpointDir.isEmpty());
    m_status->setText(m_checkpointDir.isEmpty() ? tr("Choose a run's checkpoint to export.")
                                                : tr("Ready to export %1.").arg(QFileInfo(m_checkpointDir).fileName()));
}

ExportPage::Format ExportPage::format() const { return m_merged->isChecked() ? Format::Merged : Format::Peft; }

void ExportPage::setFormat(Format f) { (f == Format::Merged ? m_merged : m_peft)->setChecked(true); }

QString ExportPage::outputDir() const { return m_output->text().trimmed(); }

void ExportPage::setOutputDir(const QString& dir) {
    m_output->setText(dir);
    m_outputEdited = true;
}

bool ExportPage::mergeIntoNf4() const { return m_nf4->isChecked(); }

QString ExportPage::statusText() const { return m_status->text(); }

// runs/<name>/exports/<peft|merged>-<step-N>, as `qlora export` writes by default; beside the checkpoint otherwise.
void ExportPage::updateDefaultOutput() {
    if (m_outputEdited || m_checkpointDir.isEmpty()) return;
    const QString kind = format() == Format::Merged ? QStringLiteral("merged") : QStringLiteral("peft");
    const QString name = QFileInfo(m_checkpointDir).fileName();
    const QString runDir = runDirOf(m_checkpointDir);
    m_output->setText(runDir.isEmpty() ? QFileInfo(m_checkpointDir).absolutePath() + QLatin1Char('/') + name +
                                             QLatin1Char('-') + kind
                                       : runDir + QStringLiteral("/exports/") + kind + QLatin1Char('-') + name);
}

void ExportPage::browseOutput() {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Choose the output folder"), outputDir());
    if (!dir.isEmpty()) setOutputDir(dir);
}

void ExportPage::openResultFolder() {
    if (!m_resultPath.isEmpty()) QDesktopServices::openUrl(QUrl::fromLocalFile(m_resultPath));
}

void ExportPage::setBusy(bool busy) {
    m_export->setEnabled(!busy && !m_checkpointDir.isEmpty());
    m_peft->setEnabled(!busy);
    m_merged->setEnabled(!busy);
    m_nf4->setEnabled(!busy && m_merged->isChecked());
    m_output->setEnabled(!busy);
    m_browse->setEnabled(!busy);
}

void ExportPage::startExport() {
    if (isRunning()) return;
    ExportRequest r;
    r.modelDir = m_modelDir;
    r.checkpointDir = m_checkpointDir;
    r.outputDir = outputDir();
    r.format = format();
    r.nf4 = mergeIntoNf4();
    m_resultPath.clear();
    m_result->clear();
    m_openFolder->setEnabled(false);
    m_progress->setRange(0, r.format == Format::Merged ? 4 : 3);
    m_progress->setValue(0);
    m_status->setText(tr("Exporting…"));
    setBusy(true);
    emit exportStarted(r.outputDir);
    m_watcher.setFuture(QtConcurrent::run(runExport, r));
}

void ExportPage::finish() {
    setBusy(false);
    const QFuture<ExportResult> f = m_watcher.future();
    const ExportResult r = f.resultCount() > 0 ? f.result()
                                               : failure(tr("The export stopped without a result."), QString());
    if (!r.ok) {
        showFailure(r.message, r.hint);
        return;
    }
    m_progress->setValue(m_progress->maximum());
    m_resultPath = r.path;
    m_status->setText(format() == Format::Merged ? tr("<b>Exported</b> a merged model.")
                                                 : tr("<b>Exported</b> a PEFT adapter."));
    m_result->setText(r.path);
    m_openFolder->setEnabled(true);
    emit exportFinished(r.path);
}

void ExportPage::showFailure(const QString& message, const QString& hint) {
    m_progress->setRange(0, 1);
    m_progress->setValue(0);
    QString html = tr("<b style='color:#b00020'>Export failed.</b><br>%1").arg(message.toHtmlEscaped());
    if (!hint.isEmpty()) html += tr("<br><i>What to do:</i> %1").arg(hint.toHtmlEscaped());
    m_status->setText(html);
    emit exportFailed(message, hint);
}
