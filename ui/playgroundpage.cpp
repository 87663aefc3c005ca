// PlaygroundPage: sampling controls, a Generate/Stop pair and the streamed output.
#include "playgroundpage.h"

#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

PlaygroundPage::PlaygroundPage(QWidget* parent) : QWidget(parent) {
    auto* layout = new QHBoxLayout(this);
    auto* left = new QVBoxLayout;
    left->addWidget(new QLabel(tr("<h2>Playground</h2>"), this));
    m_prompt = new QPlainTextEdit(this);
    m_prompt->setPlaceholderText(tr("Prompt (empty: the model starts a new document)"));
    m_prompt->setMaximumHeight(90);
    left->addWidget(m_prompt);
    m_output = new QPlainTextEdit(this);
    m_output->setReadOnly(true);
    left->addWidget(m_output, 1);
    m_status = new QLabel(this);
    left->addWidget(m_status);
    layout->addLayout(left, 3);

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
    m_topP->setToolTip(tr("Nucleus sampling: sample only from the most likely tokens whose probabilities add up to this; 1 turns it off"));
    m_topK = new QSpinBox(this);
    m_topK->setRange(0, 100000);
    m_topK->setToolTip(tr("Sample only from the K most likely tokens; 0 turns it off"));
    m_seed = new QSpinBox(this);
    m_seed->setRange(0, 2147483647);
    m_seed->setValue(1);
    m_seed->setToolTip(tr("The same seed, prompt and settings give the same text"));
    form->addRow(tr("Max new tokens"), m_maxTokens);
    form->addRow(tr("Temperature"), m_temperature);
    form->addRow(tr("Top-p"), m_topP);
    form->addRow(tr("Top-k"), m_topK);
    form->addRow(tr("Seed"), m_seed);
    m_generate = new QPushButton(tr("Generate"), this);
    m_stop = new QPushButton(tr("Stop"), this);
    m_stop->setEnabled(false);
    auto* right = new QVBoxLayout;
    right->addLayout(form);
    right->addWidget(m_generate);
    right->addWidget(m_stop);
    right->addStretch(1);
    layout->addLayout(right, 1);

    connect(m_generate, &QPushButton::clicked, this, [this] {
        m_output->clear();
        m_generate->setEnabled(false);
        m_stop->setEnabled(true);
        m_status->setText(tr("Generating…"));
        emit generateRequested(request());
    });
    connect(m_stop, &QPushButton::clicked, this, &PlaygroundPage::stopRequested);
    setModelReady(false);
}

GenerateRequest PlaygroundPage::request() const {
    GenerateRequest r;
    r.prompt = m_prompt->toPlainText();
    r.maxNewTokens = m_maxTokens->value();
    r.temperature = m_temperature->value();
    r.topP = m_topP->value();
    r.topK = m_topK->value();
    r.seed = quint64(m_seed->value());
    return r;
}

QString PlaygroundPage::output() const { return m_output->toPlainText(); }

void PlaygroundPage::setModelReady(bool ready) {
    m_ready = ready;
    m_generate->setEnabled(ready);
    if (!ready) m_status->setText(tr("Load a model on the Model page first."));
    else m_status->clear();
}

void PlaygroundPage::appendText(const QString& text) {
    m_output->moveCursor(QTextCursor::End);
    m_output->insertPlainText(text);
}

void PlaygroundPage::showFinished(const QString& status) {
    m_generate->setEnabled(m_ready);
    m_stop->setEnabled(false);
    m_status->setText(status);
}

void PlaygroundPage::showError(const QString& message, const QString& hint) {
    showFinished(hint.isEmpty() ? message : message + " — " + hint);
}
