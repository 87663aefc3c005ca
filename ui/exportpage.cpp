// ExportPage: the form, the export job (qls::run_export on a QtConcurrent thread, progress by stage) and the result display.
#include "exportpage.h"

#include "qls/error.h"
#include "qls/run_catalog.h"
#include "qls/run_export.h"

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
#include <QMessageBox>
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

ExportResult failure(const QString& message, const QString& hint) { return {false, {}, message, hint}; }

QString stageText(const qls::export_progress& p, bool nf4) {
    switch (p.stage) {
    case qls::export_stage::reading_config: return QObject::tr("Reading the base model's config.json…");
    case qls::export_stage::reading_adapter: return QObject::tr("Reading the adapter…");
    case qls::export_stage::writing_adapter:
        return QObject::tr("Writing adapter_config.json and adapter_model.safetensors…");
    case qls::export_stage::loading_base:
        return nf4 ? QObject::tr("Loading and quantizing the base weights (NF4)…")
                   : QObject::tr("Loading the base weights…");
    case qls::export_stage::merging: return QObject::tr("Merging the adapter and writing the model…");
    case qls::export_stage::done: return QObject::tr("Done.");
    }
    return {};
}

// Runs on a pool thread: the engine's export use-case, its stages as the future's progress.
void runExport(QPromise<ExportResult>& promise, const qls::export_request& r) {
    try {
        qls::export_callbacks cb;
        cb.on_stage = [&promise, nf4 = r.quantize_nf4](const qls::export_progress& p) {
            if (p.index == 0) promise.setProgressRange(0, p.count);
            promise.setProgressValueAndText(p.index, stageText(p, nf4));
        };
        const qls::export_result res = qls::run_export(r, cb);
        promise.addResult(ExportResult{true, QString::fromStdString(res.output_dir), {}, {}});
    } catch (const qls::error& e) {
        promise.addResult(failure(QString::fromStdString(e.what()), QString::fromStdString(e.hint())));
    } catch (const std::bad_alloc&) {
        promise.addResult(
            failure(QObject::tr("Out of memory while exporting."),
                    QObject::tr("close other programs, or export the PEFT adapter instead of a merged model")));
    } catch (const std::exception& e) {
        promise.addResult(failure(QString::fromUtf8(e.what()), QString()));
    }
}

bool askOverwrite(QWidget* parent, const QString& dir) {
    return QMessageBox::question(parent, QObject::tr("Replace the folder's contents?"),
                                 QObject::tr("The output folder %1 already holds files. Exporting replaces them and "
                                             "removes other model shards there.\n\nOverwrite it?")
                                     .arg(dir),
                                 QMessageBox::Yes | QMessageBox::No, QMessageBox::No) == QMessageBox::Yes;
}

} // namespace

ExportPage::ExportPage(QWidget* parent) : QWidget(parent), m_confirmOverwrite(askOverwrite) {
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

    // The run's own config says whether its base was NF4 while the adapter trained (an unreadable one only loses
    // this default; the export itself does not need it).
    bool nf4 = true;
    const std::string runDir = qls::checkpoint_run_dir(m_checkpointDir.toStdString());
    if (!runDir.empty()) {
        const qls::run_info run = qls::read_run(runDir);
        if (run.problem.empty()) nf4 = run.quantize_nf4;
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

void ExportPage::setOverwriteConfirmation(ConfirmOverwrite confirm) {
    m_confirmOverwrite = confirm ? std::move(confirm) : ConfirmOverwrite(askOverwrite);
}

// runs/<name>/exports/<peft|merged>-<step-N>, as `qlora export` writes by default; beside the checkpoint otherwise.
void ExportPage::updateDefaultOutput() {
    if (m_outputEdited || m_checkpointDir.isEmpty()) return;
    m_output->setText(QString::fromStdString(
        qls::default_export_dir(m_checkpointDir.toStdString(),
                                format() == Format::Merged ? qls::export_format::merged : qls::export_format::peft)));
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
    qls::export_request r;
    r.model_dir = m_modelDir.toStdString();
    r.checkpoint_dir = m_checkpointDir.toStdString();
    r.output_dir = outputDir().toStdString();
    r.format = format() == Format::Merged ? qls::export_format::merged : qls::export_format::peft;
    r.quantize_nf4 = mergeIntoNf4();
    // An existing, non-empty folder is overwritten only when the user says so. A request the engine refuses for
    // another reason (an input as output, no checkpoint) is not asked about: its error is shown instead.
    if (qls::export_would_overwrite(r.output_dir)) {
        bool otherwiseValid = true;
        try {
            qls::export_request forced = r;
            forced.overwrite = true;
            qls::check_export_request(forced);
        } catch (const qls::error&) {
            otherwiseValid = false;
        }
        if (otherwiseValid) {
            if (!m_confirmOverwrite(this, outputDir())) {
                m_status->setText(tr("Not exported: %1 already holds files. Choose another output folder, or "
                                     "confirm overwriting it.")
                                      .arg(outputDir().toHtmlEscaped()));
                return;
            }
            r.overwrite = true;
        }
    }
    m_resultPath.clear();
    m_result->clear();
    m_openFolder->setEnabled(false);
    m_progress->setRange(0, qls::export_stage_count(r.format));
    m_progress->setValue(0);
    m_status->setText(tr("Exporting…"));
    setBusy(true);
    emit exportStarted(outputDir());
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
