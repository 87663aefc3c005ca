// DatasetPage: dataset inputs, the analysis on a pool thread (engine reader, templates, tokenizer) and its preview, histogram and problems.
#include "datasetpage.h"

#include "qls/error.h"
#include "qls/train_config.h"

#include <QButtonGroup>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QLocale>
#include <QPushButton>
#include <QRadioButton>
#include <QSplitter>
#include <QTextCursor>
#include <QTextEdit>
#include <QTimer>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include <qcustomplot.h>

#include <algorithm>

namespace {

const char* k_errorStyle = "color:#b00020";

QStringList toQStringList(const std::vector<std::string>& v) {
    QStringList out;
    out.reserve(qsizetype(v.size()));
    for (const std::string& s : v) out << QString::fromStdString(s);
    return out;
}

// The analysis runs on a pool thread with copies only: the engine's use-case, tagged with the request it answers.
DatasetAnalysis analyze(const qls::dataset_analysis_request& rq, quint64 generation) {
    DatasetAnalysis r = DatasetAnalysis::fromEngine(qls::analyze_dataset(rq), generation);
    r.seqLen = rq.options.seq_len;
    return r;
}

QString formatLabel(qls::dataset_format f) {
    switch (f) {
    case qls::dataset_format::auto_detect: return QObject::tr("Auto-detect");
    case qls::dataset_format::alpaca: return QObject::tr("Alpaca (instruction, input, output)");
    case qls::dataset_format::chat_messages: return QObject::tr("Chat: OpenAI messages");
    case qls::dataset_format::chat_sharegpt: return QObject::tr("Chat: ShareGPT conversations");
    case qls::dataset_format::text_jsonl: return QObject::tr("Text JSONL ({\"text\": …})");
    case qls::dataset_format::plain_text: return QObject::tr("Plain text (one document per paragraph)");
    }
    return {};
}

QString templateLabel(qls::chat_template t) {
    switch (t) {
    case qls::chat_template::auto_select: return QObject::tr("Auto (from the format)");
    case qls::chat_template::alpaca: return QObject::tr("Alpaca prompt");
    case qls::chat_template::llama2_chat: return QObject::tr("Llama-2 chat ([INST] … [/INST])");
    case qls::chat_template::chatml: return QObject::tr("ChatML (<|im_start|> … <|im_end|>)");
    case qls::chat_template::raw: return QObject::tr("Raw text (no template)");
    case qls::chat_template::model: return QObject::tr("The model's own chat template (Jinja)");
    }
    return {};
}

QWidget* withError(QWidget* parent, QLayout* row, QLabel*& error) {
    auto* cell = new QWidget(parent);
    auto* v = new QVBoxLayout(cell);
    v->setContentsMargins(0, 0, 0, 0);
    v->setSpacing(2);
    v->addLayout(row);
    error = new QLabel(cell);
    error->setWordWrap(true);
    error->setTextInteractionFlags(Qt::TextSelectableByMouse);
    error->hide();
    v->addWidget(error);
    return cell;
}

} // namespace

DatasetPage::DatasetPage(QWidget* parent) : QWidget(parent) {
    const qls::train_config d;
    m_seqLen = d.seq_len;
    m_seed = d.seed;
    auto* layout = new QVBoxLayout(this);
    auto* title = new QLabel(tr("<h2>Dataset</h2>A JSON, JSONL or text file; its format and prompt template are "
                                "detected and can be overridden. Examples are rendered and tokenized exactly as "
                                "training will see them."),
                             this);
    title->setWordWrap(true);
    layout->addWidget(title);

    auto* form = new QFormLayout;
    form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
    layout->addLayout(form);

    // training file
    auto* fileRow = new QHBoxLayout;
    m_trainFile = new QLineEdit(this);
    m_trainFile->setPlaceholderText(tr("/path/to/train.jsonl"));
    m_trainFile->setToolTip(tr("The training data: Alpaca JSON/JSONL (instruction, input, output), chat JSONL (OpenAI "
                               "\"messages\" or ShareGPT \"conversations\"), JSONL with a \"text\" field, or plain "
                               "UTF-8 text with documents separated by blank lines.\n\nrun.json: data.train"));
    auto* browseTrain = new QPushButton(tr("Browse…"), this);
    browseTrain->setToolTip(tr("Choose the training file"));
    fileRow->addWidget(m_trainFile, 1);
    fileRow->addWidget(browseTrain);
    form->addRow(tr("Training file"), withError(this, fileRow, m_trainError));

    // format
    auto* formatRow = new QHBoxLayout;
    m_format = new QComboBox(this);
    for (qls::dataset_format f :
         {qls::dataset_format::auto_detect, qls::dataset_format::alpaca, qls::dataset_format::chat_messages,
          qls::dataset_format::chat_sharegpt, qls::dataset_format::text_jsonl, qls::dataset_format::plain_text})
        m_format->addItem(formatLabel(f), QString::fromLatin1(qls::dataset_format_name(f)));
    m_format->setToolTip(tr("How records are read. Auto-detect looks at the content: JSON objects are recognised by "
                            "their fields, anything else is plain text. Override it when detection guesses wrong."
                            "\n\nrun.json: data.format"));
    formatRow->addWidget(m_format);
    m_formatInfo = new QLabel(this);
    formatRow->addWidget(m_formatInfo, 1);
    form->addRow(tr("Format"), formatRow);

    // template
    auto* templateRow = new QHBoxLayout;
    m_template = new QComboBox(this);
    for (qls::chat_template t :
         {qls::chat_template::auto_select, qls::chat_template::alpaca, qls::chat_template::llama2_chat,
          qls::chat_template::chatml, qls::chat_template::raw, qls::chat_template::model})
        m_template->addItem(templateLabel(t), QString::fromLatin1(qls::chat_template_name(t)));
    m_template->setToolTip(tr("How a record becomes the model's text. Auto: Alpaca data uses the Alpaca prompt, chat "
                              "data the model's own chat template when it has one (else the Llama-2 chat format), "
                              "text data no template. Alpaca data also takes the chat templates; chat data takes "
                              "the model's template, Llama-2 or ChatML; text data takes raw only. With the model's "
                              "template the loss covers exactly the assistant turns.\n\nrun.json: data.template"));
    templateRow->addWidget(m_template);
    m_templateInfo = new QLabel(this);
    m_templateInfo->setWordWrap(true);
    templateRow->addWidget(m_templateInfo, 1);
    form->addRow(tr("Template"), templateRow);

    // loss and policy
    auto* optRow = new QHBoxLayout;
    m_trainOnPrompt = new QCheckBox(tr("Train on prompt tokens too"), this);
    m_trainOnPrompt->setChecked(d.train_on_prompt);
    m_trainOnPrompt->setToolTip(tr("Off (QLoRA's default): the loss is computed only on the responses and their "
                                   "end-of-text token, the prompt is context. On: every token is a training target."
                                   "\n\nrun.json: data.train_on_prompt"));
    m_skipMalformed = new QCheckBox(tr("Skip malformed records"), this);
    m_skipMalformed->setChecked(d.skip_malformed);
    m_skipMalformed->setToolTip(tr("On: a malformed record (bad JSON, a missing field, invalid UTF-8, a prompt longer "
                                   "than the sequence length …) is skipped and listed below with file:line. Off: the "
                                   "first one stops the run.\n\nrun.json: data.skip_malformed"));
    optRow->addWidget(m_trainOnPrompt);
    optRow->addWidget(m_skipMalformed);
    optRow->addStretch(1);
    form->addRow(tr("Records"), optRow);

    // validation
    auto* valRow = new QHBoxLayout;
    m_valNone = new QRadioButton(tr("None"), this);
    m_valNone->setToolTip(tr("Train on the whole file; no validation loss is computed"));
    m_valFile = new QRadioButton(tr("File"), this);
    m_valFile->setToolTip(tr("A separate validation file, rendered with the training file's template (its format is "
                             "detected on its own)"));
    m_validationFile = new QLineEdit(this);
    m_validationFile->setPlaceholderText(tr("/path/to/validation file"));
    m_validationFile->setToolTip(tr("The validation file: examples whose loss is measured, never trained on."
                                    "\n\nrun.json: data.validation"));
    auto* browseVal = new QPushButton(tr("Browse…"), this);
    browseVal->setToolTip(tr("Choose the validation file"));
    m_valFraction = new QRadioButton(tr("Fraction"), this);
    m_valFraction->setToolTip(tr("Hold out a seeded random fraction of the training file's examples for validation"));
    m_validationFraction = new QDoubleSpinBox(this);
    m_validationFraction->setRange(0.0, 0.99);
    m_validationFraction->setDecimals(3);
    m_validationFraction->setSingleStep(0.01);
    m_validationFraction->setValue(0.05);
    m_validationFraction->setToolTip(
        tr("Fraction of the training examples held out (chosen by the run's seed), at least "
           "one example; the training part must keep at least one. In [0, 1); 0.05 is "
           "typical.\n\nrun.json: data.validation_fraction"));
    auto* valGroup = new QButtonGroup(this);
    for (QRadioButton* b : {m_valNone, m_valFile, m_valFraction}) valGroup->addButton(b);
    m_valNone->setChecked(true);
    valRow->addWidget(m_valNone);
    valRow->addWidget(m_valFile);
    valRow->addWidget(m_validationFile, 1);
    valRow->addWidget(browseVal);
    valRow->addWidget(m_valFraction);
    valRow->addWidget(m_validationFraction);
    form->addRow(tr("Validation"), withError(this, valRow, m_validationInfo));

    m_status = new QLabel(this);
    m_status->setWordWrap(true);
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_status);

    // preview | histogram
    auto* split = new QSplitter(Qt::Horizontal, this);
    layout->addWidget(split, 1);
    auto* previewBox = new QWidget(split);
    auto* previewLayout = new QVBoxLayout(previewBox);
    previewLayout->setContentsMargins(0, 0, 0, 0);
    m_previewNote = new QLabel(previewBox);
    m_previewNote->setWordWrap(true);
    previewLayout->addWidget(m_previewNote);
    auto* previewSplit = new QSplitter(Qt::Horizontal, previewBox);
    m_examples = new QListWidget(previewSplit);
    m_examples->setToolTip(tr("Examples in file order (file:line, tokens, trained tokens)"));
    m_preview = new QTextEdit(previewSplit);
    m_preview->setReadOnly(true);
    m_preview->setToolTip(
        tr("The example as the model sees it, token by token. Highlighted (green): tokens the loss is "
           "computed on. Grey: prompt tokens, context only. Alternating shades mark token "
           "boundaries; ↵ is a newline token."));
    previewSplit->addWidget(m_examples);
    previewSplit->addWidget(m_preview);
    previewSplit->setStretchFactor(0, 1);
    previewSplit->setStretchFactor(1, 3);
    previewSplit->setSizes({250, 600});
    previewLayout->addWidget(previewSplit, 1);
    split->addWidget(previewBox);

    auto* right = new QWidget(split);
    auto* rightLayout = new QVBoxLayout(right);
    rightLayout->setContentsMargins(0, 0, 0, 0);
    m_histogram = new QCustomPlot(right);
    m_histogram->setMinimumSize(280, 200);
    m_histogram->setToolTip(
        tr("How many examples have each length in tokens (after truncation to the sequence length)"));
    m_bars = new QCPBars(m_histogram->xAxis, m_histogram->yAxis);
    m_bars->setBrush(QColor("#4e79a7"));
    m_bars->setPen(QPen(QColor("#35557a")));
    m_histogram->xAxis->setLabel(tr("tokens per example"));
    m_histogram->yAxis->setLabel(tr("examples"));
    auto counts = QSharedPointer<QCPAxisTickerFixed>::create(); // counts: whole-number ticks only
    counts->setTickStep(1.0);
    counts->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    m_histogram->yAxis->setTicker(counts);
    rightLayout->addWidget(m_histogram, 1);
    m_stats = new QLabel(right);
    m_stats->setWordWrap(true);
    m_stats->setTextInteractionFlags(Qt::TextSelectableByMouse);
    rightLayout->addWidget(m_stats);
    split->addWidget(right);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);

    auto* problemsLabel = new QLabel(tr("Skipped records"), this);
    layout->addWidget(problemsLabel);
    m_problems = new QListWidget(this);
    m_problems->setMaximumHeight(90);
    m_problems->setToolTip(
        tr("Every record that was skipped, as file:line: problem (the same text the run log shows)"));
    layout->addWidget(m_problems);

    m_debounce = new QTimer(this);
    m_debounce->setSingleShot(true);
    m_debounce->setInterval(250);
    connect(m_debounce, &QTimer::timeout, this, &DatasetPage::startAnalysis);
    m_watcher = new QFutureWatcher<DatasetAnalysis>(this);
    connect(m_watcher, &QFutureWatcher<DatasetAnalysis>::finished, this, &DatasetPage::onAnalysisDone);

    auto edited = [this] {
        if (m_loading) return;
        updateValidationControls();
        scheduleAnalysis();
        emit changed();
    };
    connect(m_trainFile, &QLineEdit::textChanged, this, edited);
    connect(m_validationFile, &QLineEdit::textChanged, this, edited);
    connect(m_format, &QComboBox::currentIndexChanged, this, edited);
    connect(m_template, &QComboBox::currentIndexChanged, this, edited);
    connect(m_trainOnPrompt, &QCheckBox::toggled, this, edited);
    connect(m_skipMalformed, &QCheckBox::toggled, this, edited);
    connect(valGroup, &QButtonGroup::buttonToggled, this, [edited](QAbstractButton*, bool on) {
        if (on) edited();
    });
    connect(m_validationFraction, &QDoubleSpinBox::valueChanged, this, edited);
    connect(browseTrain, &QPushButton::clicked, this, [this] { browse(m_trainFile, tr("Choose the training file")); });
    connect(browseVal, &QPushButton::clicked, this, [this] {
        browse(m_validationFile, tr("Choose the validation file"));
        if (!m_validationFile->text().isEmpty()) m_valFile->setChecked(true);
    });
    connect(m_examples, &QListWidget::currentRowChanged, this, &DatasetPage::showExample);
    updateValidationControls();
    showResult();
}

DatasetPage::~DatasetPage() {
    // A running analysis works on copies only; its answer is dropped with the watcher.
    m_watcher->disconnect(this);
}

void DatasetPage::browse(QLineEdit* edit, const QString& title) {
    const QString start = edit->text().isEmpty() ? QDir::currentPath() : QFileInfo(edit->text()).absolutePath();
    const QString path = QFileDialog::getOpenFileName(this, title, start,
                                                      tr("Datasets (*.json *.jsonl *.txt);;All files (*)"));
    if (!path.isEmpty()) edit->setText(path);
}

void DatasetPage::updateValidationControls() {
    m_validationFile->setEnabled(m_valFile->isChecked());
    m_validationFraction->setEnabled(m_valFraction->isChecked());
}

// ---- config ------------------------------------------------------------------------------------------------------

void DatasetPage::applyTo(qls::train_config& c) const {
    c.train_file = m_trainFile->text().trimmed().toStdString();
    c.validation_file = m_valFile->isChecked() ? m_validationFile->text().trimmed().toStdString() : std::string();
    c.validation_fraction = m_valFraction->isChecked() ? m_validationFraction->value() : 0.0;
    c.dataset_format = m_format->currentData().toString().toStdString();
    c.prompt_template = m_template->currentData().toString().toStdString();
    c.train_on_prompt = m_trainOnPrompt->isChecked();
    c.skip_malformed = m_skipMalformed->isChecked();
}

void DatasetPage::loadFrom(const qls::train_config& c) {
    m_loading = true;
    m_trainFile->setText(QString::fromStdString(c.train_file));
    m_validationFile->setText(QString::fromStdString(c.validation_file));
    if (!c.validation_file.empty()) m_valFile->setChecked(true);
    else if (c.validation_fraction > 0) m_valFraction->setChecked(true);
    else m_valNone->setChecked(true);
    if (c.validation_fraction > 0) m_validationFraction->setValue(c.validation_fraction);
    const int f = m_format->findData(QString::fromStdString(c.dataset_format));
    m_format->setCurrentIndex(f >= 0 ? f : 0);
    const int t = m_template->findData(QString::fromStdString(c.prompt_template));
    m_template->setCurrentIndex(t >= 0 ? t : 0);
    m_trainOnPrompt->setChecked(c.train_on_prompt);
    m_skipMalformed->setChecked(c.skip_malformed);
    m_seqLen = c.seq_len;
    m_seed = c.seed;
    m_loading = false;
    updateValidationControls();
    scheduleAnalysis();
    emit changed();
}

bool DatasetPage::validate(QString* reason) const {
    QString why;
    if (m_trainFile->text().trimmed().isEmpty())
        why = tr("Training file: is required — fix: choose a dataset file (JSON, JSONL or text)");
    else if (m_valFile->isChecked() && m_validationFile->text().trimmed().isEmpty())
        why = tr("Validation file: is empty — fix: choose a file, or pick None or Fraction");
    else if (isAnalyzing())
        ; // the shown result answers older inputs; the running analysis will tell
    else if (!m_result.trainError.isEmpty()) why = tr("Training file: %1").arg(m_result.trainError);
    else if (!m_result.templateError.isEmpty()) why = tr("Template: %1").arg(m_result.templateError);
    else if (!m_result.validationError.isEmpty()) why = tr("Validation: %1").arg(m_result.validationError);
    if (reason) *reason = why;
    return why.isEmpty();
}

void DatasetPage::setModelDir(const QString& dir) {
    if (dir == m_modelDir) return;
    m_modelDir = dir;
    scheduleAnalysis();
}

void DatasetPage::setSeqLen(int seqLen) {
    if (seqLen == m_seqLen) return;
    m_seqLen = seqLen;
    scheduleAnalysis();
}

void DatasetPage::setSeed(quint64 seed) {
    if (seed == m_seed) return;
    m_seed = seed;
    if (m_valFraction->isChecked()) scheduleAnalysis();
}

// ---- analysis ----------------------------------------------------------------------------------------------------

bool DatasetPage::isAnalyzing() const { return m_debounce->isActive() || m_running; }

void DatasetPage::scheduleAnalysis() {
    ++m_generation; // whatever is running now answers an older question
    m_status->setText(tr("Reading…"));
    m_debounce->start();
}

void DatasetPage::startAnalysis() {
    if (m_running) {
        m_rerun = true; // one at a time: run again with the newest inputs when this one ends
        return;
    }
    m_rerun = false;
    qls::dataset_analysis_request rq;
    rq.train_file = m_trainFile->text().trimmed().toStdString();
    if (m_valFile->isChecked()) rq.validation_file = m_validationFile->text().trimmed().toStdString();
    rq.validation_fraction = m_valFraction->isChecked() ? m_validationFraction->value() : 0.0;
    rq.options.format = qls::parse_dataset_format(m_format->currentData().toString().toStdString());
    rq.options.tmpl = qls::parse_chat_template(m_template->currentData().toString().toStdString());
    rq.options.seq_len = m_seqLen;
    rq.options.train_on_prompt = m_trainOnPrompt->isChecked();
    rq.options.on_bad_record = m_skipMalformed->isChecked() ? qls::bad_record_policy::skip
                                                            : qls::bad_record_policy::fail;
    rq.seed = m_seed;
    rq.model_dir = m_modelDir.toStdString();
    rq.tok = m_tokenizer;
    rq.tokenizer_dir = m_tokenizerDir.toStdString();
    rq.preview_limit = previewLimit;
    if (m_seqLen < 2) {
        // load_dataset would refuse it; the Training page shows the field's message.
        m_result = DatasetAnalysis{};
        m_result.generation = m_generation;
        m_result.trainError = tr("the sequence length (Training page) is %1; it must be at least 2").arg(m_seqLen);
        showResult();
        emit analysisFinished();
        return;
    }
    m_running = true;
    m_watcher->setFuture(QtConcurrent::run(analyze, rq, m_generation));
}

void DatasetPage::onAnalysisDone() {
    m_running = false;
    DatasetAnalysis r = m_watcher->result();
    if (r.tokenizer) {
        m_tokenizer = r.tokenizer;
        m_tokenizerDir = r.tokenizerDir;
    }
    if (m_rerun) {
        startAnalysis();
        return;
    }
    if (r.generation != m_generation) return; // superseded; the newer request is pending in the debounce timer
    m_result = std::move(r);
    showResult();
    emit analysisFinished();
}

void DatasetPage::setFieldError(QLabel* label, const QString& text) {
    label->setStyleSheet(QString::fromLatin1(k_errorStyle));
    label->setText(text);
    label->setVisible(!text.isEmpty());
}

void DatasetPage::showResult() {
    const DatasetAnalysis& r = m_result;
    const QLocale loc;
    const bool haveFile = !m_trainFile->text().trimmed().isEmpty();

    setFieldError(m_trainError, r.trainError.isEmpty() ? QString() : tr("Training file: %1").arg(r.trainError));
    const bool autoFormat = m_format->currentIndex() == 0;
    m_formatInfo->setText(r.formatKnown ? (autoFormat ? tr("detected: <b>%1</b>") : tr("using: <b>%1</b>"))
                                              .arg(formatLabel(r.format).toHtmlEscaped())
                                        : QString());
    if (!r.templateError.isEmpty()) {
        m_templateInfo->setStyleSheet(QString::fromLatin1(k_errorStyle));
        m_templateInfo->setText(tr("Template: %1").arg(r.templateError).toHtmlEscaped());
    } else {
        m_templateInfo->setStyleSheet(QString());
        m_templateInfo->setText(r.templateKnown && m_template->currentIndex() == 0
                                    ? tr("using: <b>%1</b>").arg(templateLabel(r.tmpl).toHtmlEscaped())
                                    : QString());
    }
    if (!r.validationError.isEmpty()) {
        setFieldError(m_validationInfo, tr("Validation: %1").arg(r.validationError));
    } else if (r.formatKnown && (r.validationExamples > 0 || m_valNone->isChecked())) {
        m_validationInfo->setStyleSheet(QString());
        m_validationInfo->setText(
            m_valNone->isChecked()
                ? tr("All %1 examples train; no validation loss.").arg(loc.toString(qulonglong(r.trainExamples)))
                : tr("%1 training, %2 validation examples.")
                      .arg(loc.toString(qulonglong(r.trainExamples)), loc.toString(qulonglong(r.validationExamples))));
        m_validationInfo->setVisible(r.trainExamples > 0);
    } else {
        m_validationInfo->hide();
    }

    // status line
    QString status;
    if (!haveFile) status = tr("Choose a training file.");
    else if (!r.modelError.isEmpty())
        status = QStringLiteral("<span style='%1'>%2</span>")
                     .arg(k_errorStyle, tr("Model: %1").arg(r.modelError).toHtmlEscaped());
    else if (m_modelDir.isEmpty() && r.formatKnown && r.trainError.isEmpty())
        status = tr("%1 records read and checked. Load a model to tokenize them and preview the loss mask.")
                     .arg(loc.toString(qulonglong(r.records)));
    else if (r.tokenized)
        status = tr("%1 examples, %2 tokens, %3 trained (loss) tokens; read and tokenized in %4 s.")
                     .arg(loc.toString(qulonglong(r.stats.examples)), loc.toString(qulonglong(r.stats.tokens)),
                          loc.toString(qulonglong(r.stats.loss_tokens)))
                     .arg(double(r.elapsedMs) / 1000.0, 0, 'f', 2);
    m_status->setText(status);

    // preview
    m_examples->blockSignals(true);
    m_examples->clear();
    for (const auto& ex : r.preview) {
        size_t trained = 0;
        for (uint8_t m : ex.loss) trained += m != 0;
        const QString line = ex.source.section(QLatin1Char(':'), -1);
        auto* item = new QListWidgetItem(tr("line %1 · %2 tokens, %3 trained%4")
                                             .arg(line)
                                             .arg(ex.ids.size())
                                             .arg(trained)
                                             .arg(ex.truncated ? tr(", cut") : QString()),
                                         m_examples);
        item->setToolTip(ex.source);
    }
    m_examples->blockSignals(false);
    if (!r.preview.empty()) {
        m_previewNote->setText((r.stats.examples > r.preview.size()
                                    ? tr("Showing the first %1 of %2 examples (statistics cover all). ")
                                          .arg(r.preview.size())
                                          .arg(loc.toString(qulonglong(r.stats.examples)))
                                    : QString()) +
                               tr("<span style='background:%1'>&nbsp;Highlighted&nbsp;</span> tokens carry the loss; "
                                  "<span style='background:%2'>&nbsp;grey&nbsp;</span> ones are context.")
                                   .arg(lossColor(0).name(), promptColor(0).name()));
        m_examples->setCurrentRow(0);
        showExample(0);
    } else {
        m_previewNote->setText(haveFile && r.tokenized ? QString()
                                                       : tr("The preview appears once a model and a file are chosen."));
        m_preview->clear();
    }

    // histogram
    m_bars->data()->clear();
    const int w = r.stats.histogram_bin_width;
    if (r.tokenized && w > 0) {
        double top = 0;
        for (size_t i = 0; i < r.stats.histogram.size(); ++i) {
            const double v = double(r.stats.histogram[i]);
            m_bars->addData(double(i) * w + (w + 1) / 2.0, v);
            top = std::max(top, v);
        }
        m_bars->setWidth(w * 0.9);
        m_histogram->xAxis->setRange(0, double(w) * qls::k_length_histogram_bins);
        m_histogram->yAxis->setRange(0, std::max(1.0, top * 1.1));
        m_stats->setText(tr("Length: min %1, mean %2, max %3 tokens (sequence length %4) · %5 truncated · %6 skipped")
                             .arg(r.stats.min_length)
                             .arg(r.stats.mean_length, 0, 'f', 1)
                             .arg(r.stats.max_length)
                             .arg(m_seqLen)
                             .arg(r.stats.truncated)
                             .arg(r.stats.skipped));
    } else {
        m_histogram->xAxis->setRange(0, std::max(m_seqLen, 2));
        m_histogram->yAxis->setRange(0, 1);
        m_stats->clear();
    }
    m_histogram->replot();

    // problems
    m_problems->clear();
    for (const QString& w2 : r.warnings) m_problems->addItem(w2);
    for (const QString& w2 : r.validationWarnings) m_problems->addItem(tr("validation: %1").arg(w2));
    if (m_problems->count() == 0) m_problems->addItem(tr("none"));
}

void DatasetPage::showExample(int row) {
    m_preview->clear();
    if (row < 0 || size_t(row) >= m_result.preview.size()) return;
    const DatasetAnalysis::Example& ex = m_result.preview[size_t(row)];
    QTextCursor cur(m_preview->document());
    QTextCharFormat head;
    head.setForeground(QColor("#555555"));
    cur.insertText(tr("%1 — %2 tokens, %3%4\n\n")
                       .arg(ex.source)
                       .arg(ex.ids.size())
                       .arg(tr("%n trained", nullptr, int(std::count(ex.loss.begin(), ex.loss.end(), 1))))
                       .arg(ex.truncated ? tr(", truncated to the sequence length") : QString()),
                   head);
    int lossRun = 0, promptRun = 0;
    for (size_t i = 0; i < ex.ids.size(); ++i) {
        QTextCharFormat f;
        const bool loss = ex.loss[i] != 0;
        f.setProperty(TokenIndexProperty, int(i));
        f.setProperty(TokenLossProperty, loss);
        f.setBackground(loss ? lossColor(lossRun++ % 2) : promptColor(promptRun++ % 2));
        f.setForeground(loss ? QColor("#0b3d16") : QColor("#444444"));
        f.setToolTip(tr("token %1: id %2%3").arg(i).arg(ex.ids[i]).arg(loss ? tr(", trained") : tr(", context")));
        cur.insertText(ex.pieces.value(qsizetype(i)), f);
    }
    m_preview->moveCursor(QTextCursor::Start);
}

DatasetAnalysis DatasetAnalysis::fromEngine(const qls::dataset_analysis& a, quint64 generation) {
    DatasetAnalysis r;
    r.generation = generation;
    r.format = a.format;
    r.tmpl = a.tmpl;
    r.formatKnown = a.format_known;
    r.templateKnown = a.template_known;
    r.tokenized = a.tokenized;
    r.records = a.records;
    r.preview.reserve(a.preview.size());
    for (const qls::dataset_preview_example& e : a.preview) {
        Example x;
        x.source = QString::fromStdString(e.source);
        x.ids = e.ids;
        x.loss = e.loss;
        x.pieces = toQStringList(e.pieces);
        x.truncated = e.truncated;
        r.preview.push_back(std::move(x));
    }
    r.stats = a.stats;
    r.warnings = toQStringList(a.warnings);
    r.trainExamples = a.train_examples;
    r.validationExamples = a.validation_examples;
    r.validationWarnings = toQStringList(a.validation_warnings);
    r.trainError = QString::fromStdString(a.train_error);
    r.templateError = QString::fromStdString(a.template_error);
    r.validationError = QString::fromStdString(a.validation_error);
    r.modelError = QString::fromStdString(a.model_error);
    r.tokenizer = a.tok;
    r.tokenizerDir = QString::fromStdString(a.tokenizer_dir);
    r.elapsedMs = qint64(a.elapsed_ms);
    return r;
}

QTextDocument* DatasetPage::previewDocument() const { return m_preview->document(); }

QVector<QPair<double, double>> DatasetPage::histogramBars() const {
    QVector<QPair<double, double>> out;
    for (auto it = m_bars->data()->constBegin(); it != m_bars->data()->constEnd(); ++it)
        out.append({it->key, it->value});
    return out;
}

QColor DatasetPage::lossColor(int parity) { return parity ? QColor("#a8e0b4") : QColor("#c9efd2"); }
QColor DatasetPage::promptColor(int parity) { return parity ? QColor("#e1e1e1") : QColor("#efefef"); }
