// PlaygroundPage: sampling controls, a Generate/Stop pair and two streamed outputs; Generate runs the base side, then the
// adapter side. In chat mode each side keeps its own conversation and shows it as a transcript.
#include "playgroundpage.h"

#include "loadprogress.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QStackedWidget>
#include <QStandardItemModel>
#include <QVBoxLayout>

#include <algorithm>

namespace {

const char* const kAdapterTitle = QT_TRANSLATE_NOOP("PlaygroundPage", "Base + adapter");

} // namespace

PlaygroundPage::PlaygroundPage(QWidget* parent) : QWidget(parent) {
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(new QLabel(tr("<h2>Playground</h2>"), this));
    m_loadProgress = new LoadProgress(this);
    layout->addWidget(m_loadProgress);
    connect(m_loadProgress, &LoadProgress::cancelRequested, this, &PlaygroundPage::cancelLoadRequested);

    // ---- mode ------------------------------------------------------------------------------------------------------
    auto* modeRow = new QHBoxLayout;
    m_mode = new QComboBox(this);
    m_mode->setSizePolicy(QSizePolicy::Fixed,
                          QSizePolicy::Fixed); // its text's width, also when the system prompt is hidden
    m_mode->addItem(tr("Text completion"));
    m_mode->addItem(tr("Chat"));
    m_mode->setToolTip(tr("Text completion continues the prompt as written; Chat sends a conversation through the "
                          "model's own chat template and shows only the replies"));
    m_system = new QLineEdit(this);
    m_system->setPlaceholderText(tr("System prompt (optional; empty: the template's default, if it has one)"));
    m_system->setToolTip(tr("The system message that opens both conversations"));
    m_newChat = new QPushButton(tr("New chat"), this);
    m_newChat->setToolTip(tr("Forget both conversations and start again"));
    modeRow->addWidget(new QLabel(tr("Mode"), this));
    modeRow->addWidget(m_mode);
    modeRow->addWidget(m_system, 100);
    modeRow->addWidget(m_newChat);
    modeRow->addStretch(1); // the room left when the system prompt is hidden (text completion)
    layout->addLayout(modeRow);

    // ---- prompt and settings ---------------------------------------------------------------------------------------
    auto* top = new QHBoxLayout;
    m_prompt = new QPlainTextEdit(this);
    m_prompt->setPlaceholderText(tr("Prompt (empty: the model starts a new document)"));
    m_prompt->setToolTip(tr("The text both models continue; the same prompt goes to the base model and to the base "
                            "with the adapter"));
    m_prompt->setMaximumHeight(150); // about the settings' height: the outputs get the rest
    top->addWidget(m_prompt, 1);

    auto* form = new QFormLayout;
    m_maxTokens = new QSpinBox(this);
    m_maxTokens->setRange(1, 100000);
    m_maxTokens->setValue(200);
    m_maxTokens->setToolTip(tr("How many tokens to generate at most; generation also stops at the end-of-text token"));
    m_temperature = new QDoubleSpinBox(this);
    m_temperature->setRange(0.0, 5.0);
    m_temperature->setSingleStep(0.1);
    m_temperature->setValue(0.8);
    m_temperature->setToolTip(tr("0 picks the most likely token every time (greedy); higher values are more varied"));
    m_topP = new QDoubleSpinBox(this);
    m_topP->setRange(0.01, 1.0);
    m_topP->setSingleStep(0.05);
    m_topP->setValue(0.9);
    m_topP->setToolTip(tr(
        "Nucleus sampling: sample only from the most likely tokens whose probabilities add up to this; 1 turns it off"));
    m_topK = new QSpinBox(this);
    m_topK->setRange(0, 100000);
    m_topK->setToolTip(tr("Sample only from the K most likely tokens; 0 turns it off"));
    m_seed = new QSpinBox(this);
    m_seed->setRange(0, 2147483647);
    m_seed->setValue(1);
    m_seed->setToolTip(tr("The same seed, prompt and settings give the same text; both sides use this seed, so their "
                          "outputs differ only because of the adapter"));
    form->addRow(tr("Max new tokens"), m_maxTokens);
    form->addRow(tr("Temperature"), m_temperature);
    form->addRow(tr("Top-p"), m_topP);
    form->addRow(tr("Top-k"), m_topK);
    form->addRow(tr("Seed"), m_seed);
    top->addLayout(form);

    auto* buttons = new QVBoxLayout;
    m_generate = new QPushButton(tr("Generate"), this);
    m_generate->setObjectName("generateButton");
    m_generate->setToolTip(tr("Generate from the base model, then from the base with the adapter (when one is loaded), "
                              "with the same prompt, settings and seed"));
    m_stop = new QPushButton(tr("Stop"), this);
    m_stop->setToolTip(tr("Stop the generation in progress and skip the side that has not started"));
    m_stop->setEnabled(false);
    buttons->addWidget(m_generate);
    buttons->addWidget(m_stop);
    buttons->addStretch(1);
    top->addLayout(buttons);
    layout->addLayout(top);

    // ---- the two outputs ---------------------------------------------------------------------------------------------
    auto makePane = [this](Pane& p, const QString& title, const QString& tip) {
        p.box = new QGroupBox(title, this);
        p.box->setToolTip(tip);
        p.output = new QPlainTextEdit(p.box);
        p.output->setReadOnly(true);
        p.output->setToolTip(tip);
        p.status = new QLabel(p.box);
        p.status->setWordWrap(true);
        p.status->setToolTip(tr("Tokens generated, speed, and why the generation ended"));
    };
    makePane(m_base, tr("Base model"), tr("Text from the base model alone (the model loaded on the Model page)"));
    auto* baseLayout = new QVBoxLayout(m_base.box);
    baseLayout->addWidget(m_base.output, 1);
    baseLayout->addWidget(m_base.status);

    makePane(m_adapter, tr(kAdapterTitle),
             tr("Text from the base model with the run's adapter merged into its weights (NF4 base when the run "
                "trained that way)"));
    m_adapterHint = new QLabel(m_adapter.box);
    m_adapterHint->setWordWrap(true);
    m_adapterHint->setAlignment(Qt::AlignCenter);
    m_adapterHint->setTextFormat(Qt::RichText);
    m_adapterHint->setMargin(12);
    m_adapterHint->setToolTip(tr("How to put a fine-tuned adapter beside the base model"));
    m_adapterStack = new QStackedWidget(m_adapter.box);
    m_adapterStack->addWidget(m_adapterHint);
    m_adapterStack->addWidget(m_adapter.output);
    auto* adapterLayout = new QVBoxLayout(m_adapter.box);
    adapterLayout->addWidget(m_adapterStack, 1);
    adapterLayout->addWidget(m_adapter.status);

    auto* panes = new QHBoxLayout;
    panes->addWidget(m_base.box, 1);
    panes->addWidget(m_adapter.box, 1);
    layout->addLayout(panes, 1);

    m_status = new QLabel(this);
    m_status->setWordWrap(true);
    m_status->setToolTip(tr("What the Playground is doing, or what it needs first"));
    layout->addWidget(m_status);

    connect(m_generate, &QPushButton::clicked, this, &PlaygroundPage::generate);
    connect(m_stop, &QPushButton::clicked, this, [this] {
        m_skipRest = true;
        if (m_current == ModelSide::Base && m_hasAdapter) m_adapter.status->setText(tr("Skipped (stopped)."));
        m_stop->setEnabled(false);
        emit stopRequested();
    });
    connect(m_mode, &QComboBox::currentIndexChanged, this, [this] { updateMode(); });
    connect(m_newChat, &QPushButton::clicked, this, &PlaygroundPage::newChat);
    clearAdapter();
    setModelReady(false);
    setChatAvailable(false);
}

bool PlaygroundPage::isChatMode() const { return m_mode->currentIndex() == 1; }

QString PlaygroundPage::lastReply(ModelSide side) const {
    const QList<ChatTurn>& h = m_history[int(side)];
    return !h.isEmpty() && h.back().role == QLatin1String("assistant") ? h.back().content : QString();
}

void PlaygroundPage::setChatAvailable(bool available, const QString& origin) {
    m_chatAvailable = available;
    auto* model = qobject_cast<QStandardItemModel*>(m_mode->model());
    if (QStandardItem* chatItem = model ? model->item(1) : nullptr) {
        chatItem->setEnabled(available);
        chatItem->setToolTip(available ? tr("The model's chat template comes from %1").arg(origin)
                                       : tr("The model has no chat template"));
    }
    m_mode->setCurrentIndex(available ? 1 : 0); // a chat model is met in chat mode; a base model in text mode
    newChat();
    updateMode();
}

void PlaygroundPage::setChatMode(bool chat) { m_mode->setCurrentIndex(chat && m_chatAvailable ? 1 : 0); }
void PlaygroundPage::setSystemPrompt(const QString& text) { m_system->setText(text); }
void PlaygroundPage::setMessage(const QString& text) { m_prompt->setPlainText(text); }

void PlaygroundPage::newChat() {
    if (m_running) return;
    for (int i = 0; i < 2; ++i) {
        m_history[i].clear();
        m_reply[i].clear();
    }
    m_base.output->clear();
    m_adapter.output->clear();
    m_base.status->clear();
    m_adapter.status->clear();
}

void PlaygroundPage::updateMode() {
    const bool chat = isChatMode();
    m_system->setVisible(chat);
    m_newChat->setVisible(chat);
    m_prompt->setPlaceholderText(chat ? tr("Your message") : tr("Prompt (empty: the model starts a new document)"));
    m_generate->setText(chat ? tr("Send") : tr("Generate"));
    m_base.output->clear();
    m_adapter.output->clear();
    if (chat) {
        showTranscript(ModelSide::Base);
        showTranscript(ModelSide::Adapter);
    }
}

void PlaygroundPage::showTranscript(ModelSide side) {
    QString text;
    for (const ChatTurn& t : m_history[int(side)]) {
        const QString who = t.role == QLatin1String("user")     ? tr("You")
                            : t.role == QLatin1String("system") ? tr("System")
                                                                : tr("Assistant");
        text += (text.isEmpty() ? QString() : QStringLiteral("\n\n")) + who + QStringLiteral(": ") + t.content;
    }
    pane(side).output->setPlainText(text);
}

GenerateRequest PlaygroundPage::request() const {
    GenerateRequest r;
    r.prompt = m_prompt->toPlainText();
    r.maxNewTokens = m_maxTokens->value();
    r.temperature = m_temperature->value();
    r.topP = m_topP->value();
    r.topK = m_topK->value();
    r.seed = quint64(m_seed->value());
    r.side = ModelSide::Base;
    r.chat = isChatMode();
    return r;
}

void PlaygroundPage::setSettings(const GenerateRequest& r) {
    m_prompt->setPlainText(r.prompt);
    m_maxTokens->setValue(r.maxNewTokens);
    m_temperature->setValue(r.temperature);
    m_topP->setValue(r.topP);
    m_topK->setValue(r.topK);
    m_seed->setValue(int(std::min<quint64>(r.seed, quint64(m_seed->maximum()))));
}

QString PlaygroundPage::output(ModelSide side) const { return pane(side).output->toPlainText(); }
QString PlaygroundPage::paneTitle(ModelSide side) const { return pane(side).box->title(); }
QString PlaygroundPage::paneStatus(ModelSide side) const { return pane(side).status->text(); }
QString PlaygroundPage::adapterHint() const {
    return m_adapterStack->currentIndex() == 0 ? m_adapterHint->text() : QString();
}

void PlaygroundPage::generate() {
    if (!m_ready || m_running) return;
    if (isChatMode()) {
        const QString message = m_prompt->toPlainText().trimmed();
        if (message.isEmpty()) {
            m_status->setText(tr("Write a message first."));
            return;
        }
        // the adapter side's conversation grows only while it has an adapter to answer (setAdapter starts a new chat)
        for (int i = 0; i < (m_hasAdapter ? 2 : 1); ++i) {
            if (m_history[i].isEmpty() && !m_system->text().trimmed().isEmpty())
                m_history[i].append({QStringLiteral("system"), m_system->text().trimmed()});
            m_history[i].append({QStringLiteral("user"), message});
            m_reply[i].clear();
        }
        m_prompt->clear();
        showTranscript(ModelSide::Base);
        showTranscript(ModelSide::Adapter);
        m_base.status->clear();
        m_adapter.status->clear();
        m_sequence = request();
        m_skipRest = false;
        m_running = true;
        m_status->clear();
        start(ModelSide::Base);
        return;
    }
    m_base.output->clear();
    m_adapter.output->clear();
    m_base.status->clear();
    m_adapter.status->clear();
    m_sequence = request();
    m_skipRest = false;
    m_running = true;
    m_status->clear();
    start(ModelSide::Base);
}

void PlaygroundPage::start(ModelSide side) {
    m_current = side;
    GenerateRequest r = m_sequence;
    r.side = side;
    if (r.chat) {
        r.messages = m_history[int(side)];
        m_reply[int(side)].clear();
        appendText(side, QStringLiteral("\n\n") + tr("Assistant") + QStringLiteral(": "));
        m_reply[int(side)].clear(); // the label is not part of the reply
    }
    pane(side).status->setText(tr("Generating…"));
    if (side == ModelSide::Base && m_hasAdapter) m_adapter.status->setText(tr("Waiting for the base model…"));
    updateButtons();
    emit generateRequested(r);
}

void PlaygroundPage::sideDone(ModelSide side) {
    if (!m_running || side != m_current) return; // a result of a request this page did not start
    if (m_sequence.chat) {
        // a reply joins the conversation; a message that got none (an error, or Stop before any text) leaves it, so
        // that the history keeps alternating user and assistant turns
        QList<ChatTurn>& h = m_history[int(side)];
        if (!m_reply[int(side)].trimmed().isEmpty()) h.append({QStringLiteral("assistant"), m_reply[int(side)]});
        else if (!h.isEmpty() && h.back().role == QLatin1String("user")) h.removeLast();
        // the adapter side will not run: its copy of the message goes too
        const bool adapterRuns = side == ModelSide::Base && m_hasAdapter && !m_adapterLoading && !m_skipRest;
        QList<ChatTurn>& a = m_history[int(ModelSide::Adapter)];
        if (side == ModelSide::Base && !adapterRuns && !a.isEmpty() && a.back().role == QLatin1String("user")) {
            a.removeLast();
            if (m_hasAdapter) showTranscript(ModelSide::Adapter);
        }
    }
    if (side == ModelSide::Base && m_hasAdapter && !m_adapterLoading && !m_skipRest) {
        start(ModelSide::Adapter);
        return;
    }
    if (side == ModelSide::Base && m_hasAdapter && !m_skipRest) m_adapter.status->clear();
    m_running = false;
    updateButtons();
}

void PlaygroundPage::setModelReady(bool ready) {
    m_ready = ready;
    if (!ready) m_status->setText(tr("Load a model on the Model page first."));
    else m_status->clear();
    updateButtons();
}

void PlaygroundPage::showHint(const QString& html) {
    m_adapterHint->setText(html);
    m_adapterStack->setCurrentIndex(0);
}

void PlaygroundPage::clearAdapter() {
    m_hasAdapter = false;
    m_adapterLoading = false;
    m_adapter.box->setTitle(tr(kAdapterTitle));
    m_adapter.output->clear();
    m_adapter.status->clear();
    showHint(tr("<p><b>No adapter is loaded</b>, so only the base model generates.</p>"
                "<p>To compare a fine-tune with the base model, open a run's checkpoint from the <b>Runs</b> page "
                "(select the run, then <i>Playground</i>), or finish a training run: its newest checkpoint loads "
                "here by itself.</p>"));
    updateButtons();
}

void PlaygroundPage::showAdapterCancelled() {
    m_loadProgress->finish();
    clearAdapter();
}

void PlaygroundPage::showAdapterLoading(const QString& runName, const QString& checkpointName) {
    m_loadProgress->start();
    m_hasAdapter = false;
    m_adapterLoading = true;
    m_adapter.box->setTitle(tr("Base + adapter (%1/%2)").arg(runName, checkpointName));
    m_adapter.output->clear();
    m_adapter.status->clear();
    showHint(tr("<p>Loading the adapter of <b>%1/%2</b> …</p>")
                 .arg(runName.toHtmlEscaped(), checkpointName.toHtmlEscaped()));
    updateButtons();
}

void PlaygroundPage::setAdapter(const QString& runName, const QString& checkpointName) {
    m_loadProgress->finish();
    m_hasAdapter = true;
    if (isChatMode()) newChat(); // both sides compare from the same start
    m_adapterLoading = false;
    m_adapter.box->setTitle(tr("Base + adapter (%1/%2)").arg(runName, checkpointName));
    m_adapter.output->clear();
    m_adapter.status->clear();
    m_adapterStack->setCurrentIndex(1);
    updateButtons();
}

void PlaygroundPage::showAdapterError(const QString& message, const QString& hint) {
    m_loadProgress->finish();
    m_hasAdapter = false;
    m_adapterLoading = false;
    m_adapter.box->setTitle(tr(kAdapterTitle));
    showHint(tr("<p><b>The adapter could not be loaded:</b> %1</p>%2"
                "<p>Only the base model generates. Open another checkpoint from the <b>Runs</b> page, or finish a "
                "training run.</p>")
                 .arg(message.toHtmlEscaped(), hint.isEmpty() ? QString() : "<p>" + hint.toHtmlEscaped() + "</p>"));
    updateButtons();
}

void PlaygroundPage::appendText(ModelSide side, const QString& text) {
    m_reply[int(side)] += text;
    QPlainTextEdit* out = pane(side).output;
    out->moveCursor(QTextCursor::End);
    out->insertPlainText(text);
}

void PlaygroundPage::showFinished(ModelSide side, const QString& status) {
    pane(side).status->setText(status);
    sideDone(side);
}

void PlaygroundPage::showError(ModelSide side, const QString& message, const QString& hint) {
    pane(side).status->setText(hint.isEmpty() ? message : message + " — " + hint);
    sideDone(side);
}

void PlaygroundPage::updateButtons() {
    m_generate->setEnabled(m_ready && !m_running && !m_adapterLoading);
    m_stop->setEnabled(m_running && !m_skipRest);
}
