// EngineWorker — the engine on a worker thread for the studio: holds the base model and, while a run's adapter is loaded, a second copy with it merged; generates from either; values cross by queued signals.
#pragma once

#include "modelinfo.h"

#include <QObject>
#include <QString>

#include <atomic>
#include <memory>

#include "qls/llama.h" // defines: llama_model, llama_load_options

namespace qls {
class tokenizer;
}

class EngineWorker : public QObject {
    Q_OBJECT
public:
    EngineWorker();
    ~EngineWorker() override;
    // Thread-safe: asks the running generation to stop after its current token; a request queued but not yet started
    // stops at once. The flag stays up until resetStop().
    void requestStop() { m_stop = true; }
    // Thread-safe: call on the sending thread just before queueing a generate(), so that a Stop pressed after that
    // (even before the worker reaches the request) cancels it, and an older Stop does not.
    void resetStop() { m_stop = false; }

    bool hasAdapter() const { return m_adapted != nullptr; } // worker thread only

    // Thread-safe: cancels the model load in progress between two tensors (loadCancelled; the previous model stays).
    // resetCancelLoad: call on the sending thread just before queueing a load, as resetStop for generations.
    void requestCancelLoad() { m_cancelLoad = true; }
    void resetCancelLoad() { m_cancelLoad = false; }
    // Test hook: every later load sleeps this long after each tensor (a slowed loader for UI tests); 0 by default.
    static void setLoadDelayForTests(int msPerTensor);

public slots:
    // The base model (f32, as stored). Drops a loaded adapter (adapterUnloaded), which belonged to the old base.
    void loadModel(const QString& dir);
    // The adapter side: the base model of a past run (as it trained: NF4 when the run quantized) with the PEFT adapter
    // of one of its checkpoints merged into the projections. Loads the run's base model as the base side too when it
    // is not the one loaded (modelLoaded). The previous adapter side is freed first.
    void loadRun(const QString& runDir, const QString& checkpointDir);
    // Frees the adapter side (adapterUnloaded).
    void unloadAdapter();
    // Generates from request.side's model; textGenerated/generationFinished/generationFailed carry that side.
    void generate(const GenerateRequest& request);

signals:
    // After every tensor of a load (the base model, or the run's NF4 base for an adapter): tensors and bytes so far.
    void loadProgress(qint64 tensorsDone, qint64 tensorsTotal, double bytesDone, double bytesTotal, double seconds);
    // A load stopped by requestCancelLoad: nothing changed (the model loaded before, if any, is still there).
    void loadCancelled();
    void modelLoaded(const ModelInfo& info);
    void modelFailed(const QString& message, const QString& hint);
    void runLoaded(const QString& runDir, const QString& checkpointDir);
    void runFailed(const QString& message, const QString& hint);
    void adapterUnloaded();
    void textGenerated(ModelSide side, const QString& text);
    void generationFinished(ModelSide side, const QString& status);
    void generationFailed(ModelSide side, const QString& message, const QString& hint);

private:
    bool loadBase(const QString& dir); // emits modelLoaded, loadCancelled or modelFailed
    qls::llama_model loadWithProgress(const std::string& dir, qls::llama_load_options opt);

    std::unique_ptr<qls::llama_model> m_base;
    std::unique_ptr<qls::llama_model> m_adapted; // only while an adapter is loaded
    std::unique_ptr<qls::tokenizer> m_tokenizer;
    QString m_baseDir;
    std::atomic<bool> m_stop{false};
    std::atomic<bool> m_cancelLoad{false};
};
