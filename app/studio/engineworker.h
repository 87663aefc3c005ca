// EngineWorker — the engine on a worker thread for the studio: holds the base model and, while a run's adapter is loaded, a second model (on the CPU with the adapter merged, on a GPU with it kept apart); generates from either, on the GPU when there is one; values cross by queued signals.
#pragma once

#include "modelinfo.h"

#include <QObject>
#include <QString>

#include <atomic>
#include <memory>
#include <optional>
#include <utility>

#include "qls/llama.h" // defines: llama_model, llama_load_options

namespace qls {
struct train_config;
class tokenizer;
class decoder;
class model_source;
struct model_chat_template;
struct device_choice;
template <class T> struct lora_weights;
} // namespace qls

// A measured warm-up (EngineWorker::measureStep), in wall-clock seconds and in the process's CPU seconds (all
// threads; a busy machine stretches the first, hardly the second).
struct StepTiming {
    double micro = 0;  // one micro-batch: forward + backward (the median of three)
    double update = 0; // one optimizer update
    double eval = 0;   // one evaluation batch: forward only
    double setup = 0;  // what a run does before its first step: the model read (and NF4-quantized) from disk, the
                       // training and validation data read and tokenized
    double microCpu = 0, updateCpu = 0, evalCpu = 0, setupCpu = 0;
};

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
    // of one of its checkpoints merged into the projections (CPU), or kept apart and applied beside the NF4 weights
    // (GPU: merging into quantized weights would change them). Loads the run's base model as the base side too when it
    // is not the one loaded (modelLoaded). The previous adapter side is freed first.
    void loadRun(const QString& runDir, const QString& checkpointDir);
    // Frees the adapter side (adapterUnloaded).
    void unloadAdapter();
    // Generates from request.side's model on the device the engine chooses (the GPU when there is a usable one: an
    // NF4 decoder, built once per loaded model and kept); textGenerated/generationFinished/generationFailed carry that
    // side, and the status names the device.
    void generate(const GenerateRequest& request);
    // A short measured warm-up for the time estimate shown before Start: the run's training pass (CPU backend, the
    // run's micro-batch × sequence length, its LoRA settings) on the model at modelDir — the loaded one, or a small one
    // loaded just for this and dropped — once to warm up and then timed. The run's set-up is timed too: the model read
    // from disk with the run's NF4 settings, its training and validation data read and tokenized (a data file over
    // 16 MiB is not read here: its share is left out). stepMeasured carries the StepTiming; measureFailed says why
    // there is no measurement (too large to measure on the CPU in a moment, not enough memory, an unreadable model).
    // key is handed back as given.
    void measureStep(const QString& modelDir, const qls::train_config& config, quint64 key);

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
    void stepMeasured(quint64 key, const StepTiming& timing);
    void measureFailed(quint64 key, const QString& why);

private:
    bool loadBase(const QString& path); // a directory or a .gguf file; emits modelLoaded, loadCancelled or modelFailed
    bool onGpu();                       // the device choice, probed once
    qls::llama_model loadWithProgress(const qls::model_source& src, qls::llama_load_options opt);

    std::unique_ptr<qls::llama_model> m_base;
    std::unique_ptr<qls::llama_model> m_adapted;                   // only while an adapter is loaded
    std::unique_ptr<qls::lora_weights<float>> m_adapter;           // GPU only: the adapter, not merged into m_adapted
    std::unique_ptr<qls::device_choice> m_device;                  // probed at the first use
    std::unique_ptr<qls::decoder> m_baseDecoder, m_adaptedDecoder; // GPU decoders, built at the first generation
    std::unique_ptr<qls::tokenizer> m_tokenizer;
    std::shared_ptr<const qls::model_chat_template> m_chatTemplate; // the base model's; null when it has none
    QString m_baseDir;
    QString m_setupKey;                       // measureStep: the model, data and settings whose set-up was timed
    std::pair<double, double> m_setupSeconds; // and its wall-clock and CPU seconds
    std::atomic<bool> m_stop{false};
    std::atomic<bool> m_cancelLoad{false};
};
