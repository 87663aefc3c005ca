// PlaygroundPage — prompt in, streamed generation out, with the sampling settings beside it.
#pragma once

#include "modelinfo.h"

#include <QWidget>

class QDoubleSpinBox;
class QLabel;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;

class PlaygroundPage : public QWidget {
    Q_OBJECT
public:
    explicit PlaygroundPage(QWidget* parent = nullptr);
    GenerateRequest request() const;
    QString output() const;

public slots:
    void setModelReady(bool ready);
    void appendText(const QString& text);
    void showFinished(const QString& status);
    void showError(const QString& message, const QString& hint);

signals:
    void generateRequested(const GenerateRequest& request);
    void stopRequested();

private:
    QPlainTextEdit* m_prompt;
    QPlainTextEdit* m_output;
    QSpinBox* m_maxTokens;
    QDoubleSpinBox* m_temperature;
    QDoubleSpinBox* m_topP;
    QSpinBox* m_topK;
    QSpinBox* m_seed;
    QPushButton* m_generate;
    QPushButton* m_stop;
    QLabel* m_status;
    bool m_ready = false;
};
