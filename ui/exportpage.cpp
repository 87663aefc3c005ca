// ExportPage: the form (format, checkpoint picker, GGUF quantization), the export job (qls::run_export on a
// QtConcurrent thread, progress by stage and by tensor) and the result display (files, sizes, run commands).
#include "exportpage.h"

#include "qls/error.h"
#include "qls/run_catalog.h"
#include "qls/run_export.h"

#include <QButtonGroup>
#include <QCheckBox>
#include <QComboBox>
#include <QDesktopServices>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPlainTextEdit>
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

ExportResult failure(const QString& message, const QString& hint) { return {false, {}, message, hint, {}, {}}; }

QString stageText(const qls::export_progress& p, bool nf4) {
    switch (p.stage) {
    case qls::export_stage::reading_config: return QObject::tr("Reading the base model's config.json…");
    case qls::export_stage::reading_adapter: return QObject::tr("Reading the adapter…");
    case qls::export_stage::writing_adapter: return QObject::tr("Writing the adapter…");
    case qls::export_stage::loading_base:
        return nf4 ? QObject::tr("Loading and quantizing the base weights (NF4)…")
                   : QObject::tr("Loading the base weights…");
    case qls::export_stage::merging:
        if (p.tensors_total > 0 && p.file_size > 0)
            return QObject::tr("Writing a %1 MB GGUF: tensor %2 of %3…")
                .arg(double(p.file_size) / 1e6, 0, 'f', 1)
                .arg(p.tensors_done)
                .arg(p.tensors_total);
        if (p.tensors_total > 0)
            return QObject::tr("Merging the adapter and writing the model: tensor %1 of %2…")
                .arg(p.tensors_done)
                .arg(p.tensors_total);
        return QObject::tr("Merging the adapter and writing the model…");
    case qls::export_stage::done: return QObject::tr("Done.");
    }
    return {};
}

// Runs on a pool thread: the engine's export use-case, its stages as the future's progress.
void runExport(QPromise<ExportResult>& promise, const qls::export_request& r) {
    try {
        qls::export_callbacks cb;
        // the bar counts stages in thousandths; the merging stage advances with every tensor written
        cb.on_stage = [&promise, nf4 = r.quantize_nf4](const qls::export_progress& p) {
            if (p.index == 0) promise.setProgressRange(0, p.count * 1000);
            int value = p.index * 1000;
            if (p.stage == qls::export_stage::merging && p.tensors_total > 0)
                value += int(999 * p.tensors_done / p.tensors_total);
            promise.setProgressValueAndText(value, stageText(p, nf4));
        };
        const qls::export_result res = qls::run_export(r, cb);
        ExportResult out{true, QString::fromStdString(res.output_dir), {}, {}, {}, {}};
        for (const qls::export_file& f : res.files)
            out.files << QString::fromStdString(f.path) + QLatin1Char('\t') + QString::number(f.bytes);
        for (const std::string& c : res.commands) out.commands << QString::fromStdString(c);
        promise.addResult(out);
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
                                "adapter for transformers + PEFT, a merged model with the adapter folded into the "
                                "base weights, or GGUF for llama.cpp, Ollama and LM Studio."),
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
    m_checkpoints = new QComboBox(this);
    m_checkpoints->setObjectName(QStringLiteral("exportCheckpointPicker"));
    m_checkpoints->setToolTip(tr("Every checkpoint the run kept, newest first: an earlier one may generalize better"));
    auto* ckRow = new QVBoxLayout;
    ckRow->addWidget(m_checkpoints);
    ckRow->addWidget(m_checkpoint);
    form->addRow(tr("Base model"), m_model);
    form->addRow(tr("Checkpoint"), ckRow);

    auto* formats = new QVBoxLayout;
    m_peft = new QRadioButton(tr("PEFT adapter (adapter_config.json + adapter_model.safetensors, a few MB)"), this);
    m_peft->setObjectName(QStringLiteral("exportPeft"));
    m_merged = new QRadioButton(tr("Merged model (a full Hugging Face model; the size of the base)"), this);
    m_merged->setObjectName(QStringLiteral("exportMerged"));
    m_ggufAdapter = new QRadioButton(tr("GGUF adapter (llama.cpp --lora, Ollama ADAPTER; a few MB)"), this);
    m_ggufAdapter->setObjectName(QStringLiteral("exportGgufAdapter"));
    m_gguf = new QRadioButton(tr("GGUF model (merged; llama.cpp, Ollama, LM Studio)"), this);
    m_gguf->setObjectName(QStringLiteral("exportGguf"));
    m_peft->setChecked(true);
    m_formatGroup = new QButtonGroup(this);
    m_formatGroup->addButton(m_peft);
    m_formatGroup->addButton(m_merged);
    m_formatGroup->addButton(m_ggufAdapter);
    m_formatGroup->addButton(m_gguf);
    m_quant = new QComboBox(this);
    m_quant->setObjectName(QStringLiteral("exportQuant"));
    m_quant->addItem(tr("F16 (lossless for f16 weights)"), QStringLiteral("f16"));
    m_quant->addItem(tr("BF16"), QStringLiteral("bf16"));
    m_quant->addItem(tr("Q8_0 (8-bit, about half of F16)"), QStringLiteral("q8_0"));
    m_quant->addItem(tr("Q4_0 (4-bit)"), QStringLiteral("q4_0"));
    m_quant->addItem(tr("Q4_K_M (4-bit K-quants, llama.cpp's usual choice)"), QStringLiteral("q4_k_m"));
    m_quant->setToolTip(tr("The GGUF model's weight types, as llama.cpp's llama-quantize assigns them"));
    m_dtype = new QComboBox(this);
    m_dtype->setObjectName(QStringLiteral("exportAdapterDtype"));
    m_dtype->addItem(tr("F32 (exact)"), QStringLiteral("f32"));
    m_dtype->addItem(tr("F16 (half the size)"), QStringLiteral("f16"));
    m_quant->setEnabled(false);
    m_dtype->setEnabled(false);
    m_nf4 = new QCheckBox(tr("Merge into the NF4-quantized base, as it was during training"), this);
    m_nf4->setObjectName(QStringLiteral("exportNf4"));
    m_nf4->setChecked(true);
    m_nf4->setToolTip(tr("QLoRA trains the adapter against the 4-bit base; merging into its dequantized weights "
                         "reproduces the trained model exactly. Off: merge into the original weights."));
    m_nf4->setEnabled(false);
    formats->addWidget(m_peft);
    formats->addWidget(m_merged);
    formats->addWidget(m_ggufAdapter);
    formats->addWidget(m_gguf);
    formats->addWidget(m_nf4);
    form->addRow(tr("Format"), formats);
    form->addRow(tr("GGUF quantization"), m_quant);
    form->addRow(tr("GGUF adapter type"), m_dtype);

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
    m_files = new QLabel(this);
    m_files->setObjectName(QStringLiteral("exportFiles"));
    m_files->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_files);
    m_commands = new QPlainTextEdit(this);
    m_commands->setObjectName(QStringLiteral("exportCommands"));
    m_commands->setReadOnly(true);
    m_commands->setPlaceholderText(tr("A GGUF export shows here the commands that run it in llama.cpp and Ollama."));
    m_commands->setMaximumHeight(140);
    layout->addWidget(m_commands);
    layout->addStretch(1);

    connect(m_formatGroup, &QButtonGroup::buttonToggled, this, [this](QAbstractButton*, bool checked) {
        if (!checked) return;
        setBusy(isRunning());
        updateDefaultOutput();
    });
    connect(m_checkpoints, &QComboBox::activated, this, [this](int index) {
        if (index >= 0) chooseCheckpoint(m_checkpoints->itemData(index).toString());
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
    m_checkpoints->clear();
    if (!runDir.empty()) {
        const qls::run_info run = qls::read_run(runDir);
        if (run.problem.empty()) nf4 = run.quantize_nf4;
        for (auto it = run.checkpoint_steps.rbegin(); it != run.checkpoint_steps.rend(); ++it) {
            const QString dir = QDir::cleanPath(QString::fromStdString(runDir) + QStringLiteral("/checkpoints/step-") +
                                                QString::number(*it));
            m_checkpoints->addItem(tr("step %1").arg(*it), dir);
        }
    }
    if (!m_checkpointDir.isEmpty() && m_checkpoints->findData(m_checkpointDir) < 0)
        m_checkpoints->addItem(QFileInfo(m_checkpointDir).fileName(), m_checkpointDir);
    m_checkpoints->setCurrentIndex(m_checkpoints->findData(m_checkpointDir));
    m_checkpoints->setEnabled(m_checkpoints->count() > 1 && !isRunning());
    m_nf4->setChecked(nf4);
    updateDefaultOutput();
    m_export->setEnabled(!isRunning() && !m_checkpointDir.isEmpty());
    m_status->setText(m_checkpointDir.isEmpty() ? tr("Choose a run's checkpoint to export.")
                                                : tr("Ready to export %1.").arg(QFileInfo(m_checkpointDir).fileName()));
}

ExportPage::Format ExportPage::format() const {
    if (m_merged->isChecked()) return Format::Merged;
    if (m_ggufAdapter->isChecked()) return Format::GgufAdapter;
    if (m_gguf->isChecked()) return Format::Gguf;
    return Format::Peft;
}

void ExportPage::setFormat(Format f) {
    switch (f) {
    case Format::Peft: m_peft->setChecked(true); break;
    case Format::Merged: m_merged->setChecked(true); break;
    case Format::GgufAdapter: m_ggufAdapter->setChecked(true); break;
    case Format::Gguf: m_gguf->setChecked(true); break;
    }
}

namespace {
qls::export_format engineFormat(ExportPage::Format f) {
    switch (f) {
    case ExportPage::Format::Peft: return qls::export_format::peft;
    case ExportPage::Format::Merged: return qls::export_format::merged;
    case ExportPage::Format::GgufAdapter: return qls::export_format::gguf_adapter;
    case ExportPage::Format::Gguf: return qls::export_format::gguf;
    }
    return qls::export_format::peft;
}
} // namespace

QStringList ExportPage::checkpointChoices() const {
    QStringList l;
    for (int i = 0; i < m_checkpoints->count(); ++i) l << m_checkpoints->itemData(i).toString();
    return l;
}

void ExportPage::chooseCheckpoint(const QString& checkpointDir) {
    const QString dir = QDir::cleanPath(checkpointDir);
    const int i = m_checkpoints->findData(dir);
    if (i < 0 || isRunning()) return;
    m_checkpoints->setCurrentIndex(i);
    if (dir == m_checkpointDir) return;
    m_checkpointDir = dir;
    m_checkpoint->setText(dir);
    m_resultPath.clear();
    m_resultFiles.clear();
    m_result->clear();
    m_files->clear();
    m_commands->clear();
    m_openFolder->setEnabled(false);
    updateDefaultOutput();
    m_status->setText(tr("Ready to export %1.").arg(QFileInfo(dir).fileName()));
}

QString ExportPage::ggufQuant() const { return m_quant->currentData().toString(); }

void ExportPage::setGgufQuant(const QString& quant) {
    const int i = m_quant->findData(quant.toLower());
    if (i >= 0) m_quant->setCurrentIndex(i);
}

QString ExportPage::adapterDtype() const { return m_dtype->currentData().toString(); }

void ExportPage::setAdapterDtype(const QString& dtype) {
    const int i = m_dtype->findData(dtype.toLower());
    if (i >= 0) m_dtype->setCurrentIndex(i);
}

QString ExportPage::commandsText() const { return m_commands->toPlainText(); }

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
    m_output->setText(QString::fromStdString(qls::default_export_dir(m_checkpointDir.toStdString(),
                                                                     engineFormat(format()))));
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
    m_ggufAdapter->setEnabled(!busy);
    m_gguf->setEnabled(!busy);
    m_nf4->setEnabled(!busy && (m_merged->isChecked() || m_gguf->isChecked()));
    m_quant->setEnabled(!busy && m_gguf->isChecked());
    m_dtype->setEnabled(!busy && m_ggufAdapter->isChecked());
    m_checkpoints->setEnabled(!busy && m_checkpoints->count() > 1);
    m_output->setEnabled(!busy);
    m_browse->setEnabled(!busy);
}

void ExportPage::startExport() {
    if (isRunning()) return;
    qls::export_request r;
    r.model_dir = m_modelDir.toStdString();
    r.checkpoint_dir = m_checkpointDir.toStdString();
    r.output_dir = outputDir().toStdString();
    r.format = engineFormat(format());
    r.quantize_nf4 = mergeIntoNf4();
    r.gguf_quant = ggufQuant().toStdString();
    r.gguf_merge = mergeIntoNf4() ? "nf4" : "original";
    r.adapter_dtype = adapterDtype().toStdString();
    if (const std::string run = qls::checkpoint_run_dir(r.checkpoint_dir); !run.empty())
        r.name = QFileInfo(QString::fromStdString(run)).fileName().toStdString();
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
    m_resultFiles.clear();
    m_result->clear();
    m_files->clear();
    m_commands->clear();
    m_openFolder->setEnabled(false);
    m_progress->setRange(0, qls::export_stage_count(r.format) * 1000);
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
    switch (format()) {
    case Format::Merged: m_status->setText(tr("<b>Exported</b> a merged model.")); break;
    case Format::Peft: m_status->setText(tr("<b>Exported</b> a PEFT adapter.")); break;
    case Format::GgufAdapter: m_status->setText(tr("<b>Exported</b> a GGUF adapter and its Ollama Modelfile.")); break;
    case Format::Gguf: m_status->setText(tr("<b>Exported</b> a GGUF model and its Ollama Modelfile.")); break;
    }
    m_result->setText(r.path);
    m_resultFiles = r.files;
    QStringList lines;
    for (const QString& f : r.files) {
        const QStringList parts = f.split(QLatin1Char('\t'));
        const double mb = parts.value(1).toDouble() / 1e6;
        lines << tr("%1 — %2 MB").arg(QFileInfo(parts.value(0)).fileName()).arg(mb, 0, 'f', mb < 10 ? 2 : 1);
    }
    m_files->setText(lines.join(QLatin1Char('\n')));
    m_commands->setPlainText(r.commands.join(QLatin1Char('\n')));
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
