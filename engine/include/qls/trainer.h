// trainer — a QLoRA fine-tuning run: data, steps, evaluation, checkpoints, resume, telemetry, over a train_backend.
//
// A run lives in runs_dir/<name>/:
//   config.json            the train_config it was started with (resume reads it back)
//   metrics.jsonl          one step_stats per line (step_stats_to_json)
//   checkpoints/step-N/    adapter_config.json + adapter_model.safetensors (a PEFT adapter), optimizer.safetensors,
//                          trainer_state.json; written into checkpoints/.tmp-step-N, fsynced, then renamed
//   exports/               what `qlora export` writes
// The step (TRAINING SECTION of llm.c's train_gpt2.c, in our terms; trainer.cpp reads it on one screen):
//   for each of grad_accum micro-batches: batch → backend.forward_backward (dropout seeded by (seed, step, micro),
//   adapter grads +=) ; stop on a NaN/Inf loss ; backend.optimizer_step (grads /= grad_accum, clip to
//   max_grad_norm, AdamW paged or not; stop on a NaN/Inf norm)
// Setup: model → device (choose_train_device) → the run's one plan (run_plan.h) → backend (train_backend.h).
#pragma once

#include "qls/dataset.h"
#include "qls/device.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/memory_plan.h"
#include "qls/model_source.h"
#include "qls/optim.h"
#include "qls/telemetry.h"
#include "qls/tokenizer.h"
#include "qls/train_backend.h"
#include "qls/train_config.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace qls {

// The run's training and validation examples: dataset.format, prompt_template (the model's own template from src
// when asked), seq_len, train_on_prompt, skip_malformed and the validation split (file, fraction, seed). Every run
// reads its data through this, and the studio's set-up timing does the same work.
dataset_split load_run_data(const train_config& cfg, const model_source& src, const tokenizer& tok);

struct train_callbacks {
    std::function<void(const step_stats&)> on_step; // after every optimizer step (and its evaluation, if any)
    std::function<void(const std::string&)> on_log; // human-readable events: data warnings, checkpoints, eval
    // The model load of create()/resume(): progress after every tensor, and a flag that cancels it (the call then
    // throws qls::error(error_code::cancelled)). test_delay_ms_per_tensor: load_control's test hook.
    std::function<void(const load_progress&)> on_load;
    const std::atomic<bool>* cancel_load = nullptr;
    int load_test_delay_ms = 0;
};

enum class train_outcome {
    completed, // reached the last step; a final checkpoint was written
    stopped,   // a stop was requested; a checkpoint of the last completed step was written
    diverged,  // the loss, the gradient or the updated adapters became NaN/Inf; nothing of that step was saved
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

    // Thread-safe (and async-signal-safe: atomic stores only). A stop is honoured between micro-batches and between
    // evaluation batches: a step stopped inside its gradient accumulation is abandoned (nothing applied; the data
    // position goes back to the step's start, so a resume repeats it exactly) and an evaluation stopped part-way is
    // skipped (no eval loss). Pause is honoured between steps.
    void request_stop() { stop_ = true; }
    void request_pause() { pause_ = true; }
    void request_continue();
    bool paused() const { return pause_; }

    // Writes checkpoints/step-<step>/ atomically and prunes to keep_checkpoints; returns its path. Refuses (qls::error
    // internal, naming the tensor and the step) adapters holding NaN/Inf, before anything is written.
    std::string save_checkpoint();
    // Test hook: called after each checkpoint file is written (with its path); throwing simulates a crash mid-write.
    std::function<void(const std::string&)> checkpoint_write_hook;
    // Test hook: called before each training micro-batch (evaluation false, index = micro-batch of step step()+1)
    // and each evaluation batch (evaluation true); a stop requested from it is seen right after it returns.
    std::function<void(bool evaluation, int index)> batch_hook;

    int64_t step() const { return step_; }
    int64_t total_steps() const { return total_steps_; }
    const train_config& config() const { return cfg_; }
    const std::string& run_dir() const { return run_dir_; }
    const memory_plan& plan() const { return plan_; }
    const dataset_stats& train_stats() const { return train_.stats; }
    const dataset_stats& validation_stats() const { return val_.stats; }
    const std::vector<std::string>& data_warnings() const { return train_.warnings; }
    // The model as loaded for the backend: on a backend that streams the weights into its own memory (CUDA) only
    // config and inv_freq, no weight (llama_load_options::sink).
    const llama_model& model() const { return model_; }
    const tokenizer& tok() const { return tok_; }
    // The adapters' current values (CUDA: copied from the device on each call).
    const lora_weights<float>& adapters() const { return backend_->adapters(); }
    // The CPU backend's optimizer (the CUDA backend keeps its states on the device: has_cpu_optimizer() false there).
    const optimizer& optim() const;
    bool has_cpu_optimizer() const { return backend_->host_optimizer() != nullptr; }
    // "cuda" when the steps run on the GPU, "cpu" on the reference backend.
    std::string backend() const { return backend_->kind(); }
    const compute_device& device() const { return device_; }
    const std::string& divergence_message() const { return divergence_; }
    // Mean loss over the validation set (or eval_batches of it), dropout off; nullopt without validation data.
    std::optional<double> evaluate();

private:
    trainer() = default;
    void build(const train_callbacks& cb, const std::optional<memory_plan>& plan = std::nullopt);
    void restore(const std::string& checkpoint_dir);
    train_backend_options backend_options() const;
    void discard_gradients();
    std::string first_nonfinite_adapter() const; // "" when every adapter value is finite
    void log(const std::string& line) const;
    void append_metrics(const step_stats& s);
    step_stats telemetry(double loss, double lr, double grad_norm, int64_t tokens, double dt, double eta_s,
                         const backend_memory& before) const;

    train_config cfg_;
    std::string run_dir_;
    train_callbacks cb_;
    tokenizer tok_;
    llama_model model_; // before backend_: the CPU backend computes with its weights
    dataset train_, val_;
    compute_device device_;
    memory_plan plan_;
    std::unique_ptr<train_backend> backend_;
    std::unique_ptr<batcher> batches_;
    int64_t step_ = 0, total_steps_ = 0, tokens_total_ = 0;
    std::string divergence_;
    bool stale_gradients_ = false; // a step was abandoned with gradients accumulated in the backend
    std::chrono::steady_clock::time_point built_at_{}; // when build() began: the run's time to its first step
    bool first_step_logged_ = false;
    std::atomic<bool> stop_{false}, pause_{false};
    std::mutex pause_mutex_;
    std::condition_variable pause_cv_;
};

// Newest complete checkpoint directory of a run ("" when none); leftover .tmp-* directories are ignored.
std::string latest_checkpoint(const std::string& run_dir);
// Reads metrics.jsonl (damaged lines are skipped).
std::vector<step_stats> read_metrics(const std::string& run_dir);

} // namespace qls
