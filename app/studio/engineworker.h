// EngineWorker — the engine on a worker thread for the studio: loads models (optionally with a run's adapter merged) and generates; values cross by queued signals.
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
    // The base model of a past run (as it trained: NF4 when the run quantized) with the PEFT adapter of one of its
    // checkpoints merged into the projections, for the Playground.
    void loadRun(const QString& runDir, const QString& checkpointDir);
    void generate(const GenerateRequest& request);

signals:
    void modelLoaded(const ModelInfo& info);
    void modelFailed(const QString& message, const QString& hint);
    void runLoaded(const QString& runDir, const QString& checkpointDir);
    void textGenerated(const QString& text);
    void generationFinished(const QString& status);
    void generationFailed(const QString& message, const QString& hint);

private:
    std::unique_ptr<qls::llama_model> m_model;
    std::unique_ptr<qls::tokenizer> m_tokenizer;
    std::atomic<bool> m_stop{false};
};
