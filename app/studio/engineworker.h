// EngineWorker — the engine on a worker thread for the studio: loads models and generates; values cross by queued signals.
#pragma once

#include "modelinfo.h"

#include <QObject>
#include <QString>

#include <atomic>
#include <memory>

namespace qls {
struct llama_model;
class tokenizer;
}

class EngineWorker : public QObject {
    Q_OBJECT
public:
    EngineWorker();
    ~EngineWorker() override;
    // Thread-safe: asks a running generation to stop after its current token.
    void requestStop() { m_stop = true; }

public slots:
    void loadModel(const QString& dir);
    void generate(const GenerateRequest& request);

signals:
    void modelLoaded(const ModelInfo& info);
    void modelFailed(const QString& message, const QString& hint);
    void textGenerated(const QString& text);
    void generationFinished(const QString& status);
    void generationFailed(const QString& message, const QString& hint);

private:
    std::unique_ptr<qls::llama_model> m_model;
    std::unique_ptr<qls::tokenizer> m_tokenizer;
    std::atomic<bool> m_stop{false};
};
