// full_train — full-parameter training of small models on the CPU: every weight (embeddings, norms, projections, LM
// head) trained with AdamW, checkpoints written as ordinary Hugging Face model folders.
//
// A run (run.json with "training": {"mode": "full"}, or `qlora train --full`) lives in runs_dir/<name>/ like a LoRA
// run: config.json, metrics.jsonl (one step_stats line per step) and checkpoints/step-N/, but each checkpoint is a
// whole model — config.json (the base's, byte for byte), model.safetensors (float32, transformers' tensor names) and
// the base's tokenizer and generation files — that every command loads as a model (generate, info, train, plan).
// The step is the LoRA trainer's (trainer.h) with the base weights as the parameters:
//   for each of grad_accum micro-batches: llama_pass<float> forward + backward (weight grads +=)
//   grads /= grad_accum ; clip to max_grad_norm ; AdamW (optimizer.kind, lr from the schedule) ; grads = 0
// The lora and quantization sections of run.json do not apply. Runs are a pure function of run.json and the data:
// the CPU ops reduce in a fixed order whatever the thread count (backends/cpu/ops.cpp), so the same run writes the
// same bytes.
#pragma once

#include "qls/model_config.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

namespace qls {

// The largest model full training takes: its float32 weights, gradients and two AdamW states (16 bytes a
// parameter) and a CPU step time that stays practical. Larger models train with LoRA.
inline constexpr long long k_full_train_max_parameters = 20'000'000;

// Refuses (qls::error config, naming the field and the fix) what full training cannot do: a model above
// k_full_train_max_parameters, device.backend "cuda" (full training runs on the CPU only), a model that is not a
// Hugging Face folder (a .gguf file), an NF4 (bitsandbytes) base.
void check_full_training(const train_config& cfg, const model_config& mc);

struct full_train_options {
    const std::atomic<bool>* stop = nullptr; // set: the run stops after the current step and saves a checkpoint
};

struct full_train_result {
    train_outcome outcome = train_outcome::completed;
    int64_t steps = 0;               // optimizer steps completed
    std::string run_dir;             // runs_dir/<name>
    std::string checkpoint;          // the last checkpoint written (a model folder)
    double last_loss = 0;            // the last step's training loss
    std::optional<double> eval_loss; // the last evaluation
    std::string message;             // why the run diverged (empty otherwise)
};

// Runs a full-parameter training from cfg (cfg.mode must be "full"): loads the model in float32, the data as the LoRA
// trainer does, trains and checkpoints. Callbacks as trainer's (on_step after every step, on_log for events). Refuses
// a run folder that already has checkpoints.
full_train_result run_full_training(const train_config& cfg, const train_callbacks& cb = {},
                                    const full_train_options& opt = {});

// Writes m as a Hugging Face LLaMA folder in out_dir (created; published atomically): model.safetensors (float32,
// metadata {"format": "pt"}) plus config.json, tokenizer and generation files copied from source_dir where it has them.
void save_hf_model(const std::string& out_dir, const llama_model& m, const std::string& source_dir);

} // namespace qls
