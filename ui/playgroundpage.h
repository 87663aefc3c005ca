// PlaygroundPage — one prompt or one chat, two streamed outputs side by side: the base model and the base with a run's
// adapter. Chat mode sends a multi-turn conversation through the model's own chat template.
#pragma once

#include "modelinfo.h"

#include <QWidget>

class QComboBox;
class QDoubleSpinBox;
class QLineEdit;
class QGroupBox;
class QLabel;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;
class QStackedWidget;
class LoadProgress;

class PlaygroundPage : public QWidget {
    Q_OBJECT
public:
    explicit PlaygroundPage(QWidget* parent = nullptr);
    // The settings as they stand, for the base side (the adapter side gets the same with side = Adapter).
    GenerateRequest request() const;
    // Puts a request's prompt and settings into the fields (its side is ignored).
    void setSettings(const GenerateRequest& request);
    QString output(ModelSide side = ModelSide::Base) const;
    QString paneTitle(ModelSide side) const;
    QString paneStatus(ModelSide side) const;
    // What the adapter pane says while it has no adapter (how to get one, or why loading failed).
    QString adapterHint() const;
    bool hasAdapter() const { return m_hasAdapter; }
    bool isChatMode() const;
    bool chatAvailable() const { return m_chatAvailable; }
    // Chat mode: the conversation a side has had so far (its own replies), and its newest reply.
    QList<ChatTurn> conversation(ModelSide side) const { return m_history[int(side)]; }
    QString lastReply(ModelSide side) const;
    bool isGenerating() const { return m_running; }

public slots:
    // The Generate button: the base side, then (when an adapter is loaded and Stop was not pressed) the adapter side
    // with exactly the same prompt, settings and seed.
    void generate();
    void setModelReady(bool ready);
    // Whether the loaded model has a chat template (`origin` says where it comes from); without one chat mode is off.
    void setChatAvailable(bool available, const QString& origin = QString());
    void setChatMode(bool chat);
    void setSystemPrompt(const QString& text);
    void setMessage(const QString& text);
    // Chat mode: forgets both conversations.
    void newChat();
    void showAdapterLoading(const QString& runName, const QString& checkpointName);
    void setAdapter(const QString& runName, const QString& checkpointName);
    void showAdapterError(const QString& message, const QString& hint);
    void clearAdapter();
    void appendText(ModelSide side, const QString& text);
    void showFinished(ModelSide side, const QString& status);
    void showError(ModelSide side, const QString& message, const QString& hint);

signals:
    void generateRequested(const GenerateRequest& request);
    void stopRequested();
    void cancelLoadRequested(); // Cancel on the load bar while a run's model loads

public:
    // The load bar shown while a run's base model loads for the adapter side (fed by the controller).
    LoadProgress* loadProgress() const { return m_loadProgress; }
    // The adapter load was cancelled: back to the state before it.
    void showAdapterCancelled();

private:
    struct Pane {
        QGroupBox* box = nullptr;
        QPlainTextEdit* output = nullptr;
        QLabel* status = nullptr;
    };
    Pane& pane(ModelSide side) { return side == ModelSide::Base ? m_base : m_adapter; }
    const Pane& pane(ModelSide side) const { return side == ModelSide::Base ? m_base : m_adapter; }
    void start(ModelSide side);
    void sideDone(ModelSide side);
    void showHint(const QString& html);
    void updateButtons();
    void updateMode();
    void showTranscript(ModelSide side);

    QComboBox* m_mode;
    QLineEdit* m_system;
    QPushButton* m_newChat;
    QPlainTextEdit* m_prompt;
    QSpinBox* m_maxTokens;
    QDoubleSpinBox* m_temperature;
    QDoubleSpinBox* m_topP;
    QSpinBox* m_topK;
    QSpinBox* m_seed;
    QPushButton* m_generate;
    QPushButton* m_stop;
    QLabel* m_status;
    Pane m_base;
    Pane m_adapter;
    QStackedWidget* m_adapterStack; // 0: the hint, 1: the output
    QLabel* m_adapterHint;
    LoadProgress* m_loadProgress;
    bool m_ready = false;
    bool m_hasAdapter = false;
    bool m_adapterLoading = false;
    bool m_running = false;  // a Generate sequence is in progress
    bool m_skipRest = false; // Stop was pressed: do not start the adapter side
    ModelSide m_current = ModelSide::Base;
    GenerateRequest m_sequence; // the settings of the sequence in progress
    bool m_chatAvailable = false;
    QList<ChatTurn> m_history[2]; // chat mode, by ModelSide: system?, user, assistant, user, ...
    QString m_reply[2];           // the reply being streamed, by ModelSide
};
