// trainer — a QLoRA fine-tuning run on the CUDA backend or the CPU reference: data, steps, evaluation, checkpoints, resume, telemetry.
//
// A run lives in runs_dir/<name>/:
//   config.json            the train_config it was started with (resume reads it back)
//   metrics.jsonl          one step_stats per line (step_stats_to_json)
//   checkpoints/step-N/    adapter_config.json + adapter_model.safetensors (a PEFT adapter), optimizer.safetensors,
//                          trainer_state.json; written into checkpoints/.tmp-step-N, fsynced, then renamed
//   exports/               what `qlora export` writes
// The step (TRAINING SECTION of llm.c's train_gpt2.c, in our terms):
//   for each of grad_accum micro-batches: batch → forward (dropout seeded by (seed, step, micro)) → backward
//   (adapter grads +=) ; grads /= grad_accum ; clip to max_grad_norm ; stop on NaN/Inf ; AdamW (paged or not)
#pragma once

#include "qls/dataset.h"
#include "qls/gpu_train.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/memory_plan.h"
#include "qls/optim.h"
#include "qls/telemetry.h"
#include "qls/tokenizer.h"
#include "qls/train_config.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace qls {

struct train_callbacks {
    std::function<void(const step_stats&)> on_step;     // after every optimizer step (and its evaluation, if any)
    std::function<void(const std::string&)> on_log;     // human-readable events: data warnings, checkpoints, eval
};

enum class train_outcome {
    completed,   // reached the last step; a final checkpoint was written
    stopped,     // a stop was requested; a checkpoint of the last completed step was written
    diverged,    // the loss or gradient became NaN/Inf; nothing was updated or saved for that step
};

class trainer {
public:
    // A new run: loads the model (NF4 when configured), tokenizer, data and validation split; plans memory
    // (refuses a plan that does not fit the budget, with the plan's suggestions); initialises LoRA and the
    // optimizer; creates the run directory and writes config.json. Refuses a run directory that already holds
    // checkpoints (hint: resume it or choose another name).
    // plan: the run's plan when the caller already made it with plan_run for this configuration (the studio's Plan
    // page); it is used as it is when plan_matches, so the run computes its plan once. Otherwise the trainer plans.
    static std::unique_ptr<trainer> create(const train_config& cfg, const train_callbacks& cb = {},
                                           const std::optional<memory_plan>& plan = std::nullopt);
    // Continues runs_dir/<name> from its newest complete checkpoint: same data order, optimizer state, step.
    static std::unique_ptr<trainer> resume(const std::string& run_dir, const train_callbacks& cb = {});
    ~trainer();

    // Trains until the last step, a stop request or divergence. May be called again after a stop or pause.
    train_outcome run(const train_callbacks& cb = {});

    // Thread-safe (and async-signal-safe: atomic stores only); honoured between steps.
    void request_stop() { stop_ = true; }
    void request_pause() { pause_ = true; }
    void request_continue();
    bool paused() const { return pause_; }

    // Writes checkpoints/step-<step>/ atomically and prunes to keep_checkpoints; returns its path.
    std::string save_checkpoint();
    // Test hook: called after each checkpoint file is written (with its path); throwing simulates a crash mid-write.
    std::function<void(const std::string&)> checkpoint_write_hook;

    int64_t step() const { return step_; }
    int64_t total_steps() const { return total_steps_; }
    const train_config& config() const { return cfg_; }
    const std::string& run_dir() const { return run_dir_; }
    const memory_plan& plan() const { return plan_; }
    const dataset_stats& train_stats() const { return train_.stats; }
    const dataset_stats& validation_stats() const { return val_.stats; }
    const std::vector<std::string>& data_warnings() const { return train_.warnings; }
    const llama_model& model() const { return model_; }
    const tokenizer& tok() const { return tok_; }
    const lora_weights<float>& adapters() const { return lora_; }
    // The CPU backend's optimizer (the CUDA backend keeps its states on the device: nullptr there).
    const optimizer& optim() const { return *optim_; }
    bool has_cpu_optimizer() const { return optim_ != nullptr; }
    // "cuda" when the steps run on the GPU (gpu_train.h), "cpu" on the reference backend.
    const std::string& backend() const { return backend_; }
    const std::string& divergence_message() const { return divergence_; }
    // Mean loss over the validation set (or eval_batches of it), dropout off; nullopt without validation data.
    std::optional<double> evaluate();

private:
    trainer() = default;
    void build(const train_callbacks& cb, const std::optional<memory_plan>& plan = std::nullopt);
    void log(const std::string& line) const;
    void append_metrics(const step_stats& s);

    train_config cfg_;
    std::string run_dir_;
    train_callbacks cb_;
    tokenizer tok_;
    llama_model model_;
    dataset train_, val_;
    memory_plan plan_;
    lora_weights<float> lora_;
    std::unique_ptr<optimizer> optim_;
    std::unique_ptr<batcher> batches_;
    std::unique_ptr<llama_pass<float>> pass_;      // CPU backend
    std::unique_ptr<gpu_trainer> gpu_;             // CUDA backend
    std::string backend_ = "cpu";
    void sync_lora_from_gpu();
    int64_t step_ = 0, total_steps_ = 0, tokens_total_ = 0;
    std::string divergence_;
    std::atomic<bool> stop_{false}, pause_{false};
    std::mutex pause_mutex_;
    std::condition_variable pause_cv_;
};

// Newest complete checkpoint directory of a run ("" when none); leftover .tmp-* directories are ignored.
std::string latest_checkpoint(const std::string& run_dir);
// Reads metrics.jsonl (damaged lines are skipped).
std::vector<step_stats> read_metrics(const std::string& run_dir);

} // namespace qls
