// ModelPage: a directory or .gguf chooser, a load button and a read-only description of the loaded model.
#include "modelpage.h"

#include "loadprogress.h"

#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QPushButton>
#include <QVBoxLayout>

ModelPage::ModelPage(QWidget* parent) : QWidget(parent) {
    auto* layout = new QVBoxLayout(this);
    auto* title = new QLabel(tr("<h2>Model</h2>Choose a Hugging Face model directory (config.json, *.safetensors, "
                                "tokenizer.json or tokenizer.model) or a GGUF file (*.gguf)."),
                             this);
    title->setWordWrap(true);
    layout->addWidget(title);

    auto* row = new QHBoxLayout;
    m_path = new QLineEdit(this);
    m_path->setPlaceholderText(tr("/path/to/model or /path/to/model.gguf"));
    m_path->setToolTip(tr("A model in Hugging Face layout (config.json, model.safetensors or shards with "
                          "model.safetensors.index.json, tokenizer.json or tokenizer.model), or a llama.cpp GGUF "
                          "file (*.gguf)"));
    auto* browse = new QPushButton(tr("Browse…"), this);
    browse->setToolTip(tr("Choose a Hugging Face model directory"));
    auto* browseGguf = new QPushButton(tr("Open GGUF…"), this);
    browseGguf->setToolTip(tr("Choose a GGUF model file (*.gguf)"));
    m_load = new QPushButton(tr("Load"), this);
    m_load->setToolTip(tr("Read the configuration, check every weight's shape and the tokenizer"));
    row->addWidget(m_path, 1);
    row->addWidget(browse);
    row->addWidget(browseGguf);
    row->addWidget(m_load);
    layout->addLayout(row);

    m_progress = new LoadProgress(this);
    layout->addWidget(m_progress);
    connect(m_progress, &LoadProgress::cancelRequested, this, [this] {
        m_status->setText(tr("Cancelling …"));
        emit cancelRequested();
    });

    m_status = new QLabel(this);
    m_status->setWordWrap(true);
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_status);

    m_details = new QWidget(this);
    m_form = new QFormLayout(m_details);
    layout->addWidget(m_details);
    layout->addStretch(1);
    m_details->hide();

    connect(browse, &QPushButton::clicked, this, &ModelPage::browse);
    connect(browseGguf, &QPushButton::clicked, this, &ModelPage::browseGguf);
    connect(m_load, &QPushButton::clicked, this, [this] {
        if (!m_path->text().trimmed().isEmpty()) emit loadRequested(m_path->text().trimmed());
    });
    connect(m_path, &QLineEdit::returnPressed, m_load, &QPushButton::click);
}

QString ModelPage::directory() const { return m_path->text().trimmed(); }
void ModelPage::setDirectory(const QString& dir) { m_path->setText(dir); }

QString ModelPage::field(const QString& label) const {
    for (int r = 0; r < m_form->rowCount(); ++r) {
        auto* key = qobject_cast<QLabel*>(m_form->itemAt(r, QFormLayout::LabelRole)
                                              ? m_form->itemAt(r, QFormLayout::LabelRole)->widget()
                                              : nullptr);
        auto* value = qobject_cast<QLabel*>(m_form->itemAt(r, QFormLayout::FieldRole)
                                                ? m_form->itemAt(r, QFormLayout::FieldRole)->widget()
                                                : nullptr);
        if (key && value && key->text() == label) return value->text();
    }
    return QString();
}

void ModelPage::browse() {
    QString dir = QFileDialog::getExistingDirectory(this, tr("Choose a model directory"), m_path->text());
    if (!dir.isEmpty()) {
        m_path->setText(dir);
        emit loadRequested(dir);
    }
}

void ModelPage::browseGguf() {
    const QFileInfo current(m_path->text().trimmed());
    const QString start = current.isFile() ? current.absolutePath() : m_path->text().trimmed();
    const QString file = QFileDialog::getOpenFileName(this, tr("Choose a GGUF model file"), start,
                                                      tr("GGUF models (*.gguf)"));
    if (!file.isEmpty()) {
        m_path->setText(file);
        emit loadRequested(file);
    }
}

void ModelPage::showLoading(const QString& dir) {
    m_load->setEnabled(false);
    m_status->setText(tr("Loading %1 …").arg(dir));
    m_details->hide();
    m_progress->start();
}

void ModelPage::showProgress(qint64 tensorsDone, qint64 tensorsTotal, double bytesDone, double bytesTotal,
                             double seconds) {
    m_progress->setProgress(tensorsDone, tensorsTotal, bytesDone, bytesTotal, seconds);
}

void ModelPage::showCancelled() {
    m_progress->finish();
    m_load->setEnabled(true);
    m_status->setText(tr("Loading was cancelled; nothing changed."));
}

void ModelPage::showModel(const ModelInfo& info) {
    m_load->setEnabled(true);
    m_progress->finish();
    m_status->setText(tr("<b>Loaded</b> %1").arg(info.dir.toHtmlEscaped()));
    while (m_form->rowCount() > 0) m_form->removeRow(0);
    QLocale loc;
    auto add = [this](const QString& k, const QString& v) {
        auto* l = new QLabel(v, m_details);
        l->setTextInteractionFlags(Qt::TextSelectableByMouse);
        m_form->addRow(k, l);
    };
    add(tr("Format"), info.format == QLatin1String("gguf")          ? tr("GGUF file")
                      : info.format == QLatin1String("safetensors") ? tr("Hugging Face directory (safetensors)")
                                                                    : info.format);
    add(tr("Family"), info.family);
    add(tr("Specifics"),
        info.specifics.isEmpty() ? tr("none: the LLaMA-2 layout") : info.specifics.join(QStringLiteral("; ")));
    add(tr("LoRA targets"), info.loraTargets.join(QStringLiteral(", ")));
    add(tr("Architecture"), info.architecture);
    add(tr("Parameters"), loc.toString(info.parameters));
    add(tr("Layers"), QString::number(info.layers));
    add(tr("Hidden size"), tr("%1 (MLP %2)").arg(info.hidden).arg(info.mlpHidden));
    add(tr("Attention heads"),
        tr("%1 query, %2 key/value, head size %3").arg(info.heads).arg(info.kvHeads).arg(info.headDim));
    add(tr("Vocabulary"), loc.toString(info.vocab));
    add(tr("Context"), tr("%1 positions, RoPE θ %2 (%3)").arg(info.context).arg(info.ropeTheta).arg(info.ropeType));
    add(tr("Embeddings"), info.tiedEmbeddings ? tr("tied to the output layer") : tr("separate output layer"));
    add(tr("Stored dtype"), info.dtype);
    add(tr("Tokenizer"), info.tokenizer);
    add(tr("Chat template"),
        info.chatTemplate.isEmpty() ? tr("none (text completion only)") : tr("from %1").arg(info.chatTemplate));
    m_details->show();
}

void ModelPage::showError(const QString& message, const QString& hint) {
    m_load->setEnabled(true);
    m_progress->finish();
    QString html = tr("<b style='color:#b00020'>Could not load the model.</b><br>%1").arg(message.toHtmlEscaped());
    if (!hint.isEmpty()) html += tr("<br><i>What to do:</i> %1").arg(hint.toHtmlEscaped());
    m_status->setText(html);
    while (m_form->rowCount() > 0) m_form->removeRow(0); // no stale description of an earlier model
    m_details->hide();
}
