// train_config — everything a training run is made of, read from and written to run.json (format in README.md).
#pragma once

#include "qls/lora.h"
#include "qls/optim.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qls {

enum class lr_schedule { constant, linear, cosine };
const char* lr_schedule_name(lr_schedule s);

struct train_config {
    std::string name = "run"; // the run's directory name under runs_dir
    std::string runs_dir = "runs";
    std::string model; // Hugging Face model directory
    // data
    std::string train_file;
    std::string validation_file; // optional; else validation_fraction of train_file
    double validation_fraction = 0.0;
    std::string dataset_format = "auto"; // auto | alpaca | messages | sharegpt | text | plain
    // auto | alpaca | llama2 | chatml | raw | model (auto: model for chat data when the model has a chat template)
    std::string prompt_template = "auto";
    bool train_on_prompt = false;
    bool packing = true;
    bool skip_malformed = true; // false: the first malformed line stops the run
    // model
    bool quantize_nf4 = true; // frozen base in NF4 (+ double quantization)
    bool double_quant = true;
    lora_config lora;
    // optimizer
    optimizer_kind optimizer = optimizer_kind::paged_adamw_8bit;
    float learning_rate = 2e-4f; // QLoRA paper, 7B/13B
    adamw_hparams adamw{0.9f, 0.999f, 1e-8f, 0.0f};
    float max_grad_norm = 0.3f; // QLoRA paper; 0 disables clipping
    lr_schedule schedule = lr_schedule::constant;
    int warmup_steps = -1;      // -1: use warmup_ratio
    double warmup_ratio = 0.03; // QLoRA paper
    // what trains: "lora" (adapters on a frozen, optionally NF4 base) or "full" (every weight, on the CPU, for small
    // models; full_train.h)
    std::string mode = "lora";
    // steps
    int seq_len = 512;
    int micro_batch = 1;
    int grad_accum = 16;   // QLoRA paper: 1 x 16
    int64_t max_steps = 0; // > 0 wins over epochs
    double epochs = 1.0;
    int eval_every = 0;         // steps; 0 = only at the end (when validation data exists)
    int eval_batches = 0;       // 0 = the whole validation set
    int checkpoint_every = 100; // steps; 0 = only at the end and on stop
    int keep_checkpoints = 3;
    bool gradient_checkpointing = true;
    uint64_t seed = 42;
    // device
    std::string backend = "auto"; // auto | cpu | cuda
    // auto | on | off: every layer's gradient checkpoint in pinned host memory (CUDA; memory_plan.h
    // checkpoint_offload): auto = only when the run does not fit the device otherwise
    std::string checkpoint_offload = "auto";
    int gpu = 0;                  // the CUDA device index (`qlora devices`)
    double budget_gib = 0.0;      // 0 = no budget of your own: 95% of the device's free memory (run_plan.h)
    uint64_t page_pool_bytes = 0; // paged optimizers: device pool for states; 0 = what the plan gives
    size_t page_size = 64 * 1024;

    int warmup_steps_for(int64_t total_steps) const;
};

// Parses run.json text; `source` names the file in messages; relative paths are resolved against base_dir.
// Every problem is a qls::error naming the field ("training.seq_len: must be at least 2, got 0").
train_config parse_train_config(const std::string& json_text, const std::string& source, const std::string& base_dir);
train_config load_train_config(const std::string& path);
std::string train_config_to_json(const train_config& c);
// Range checks shared by the parser and the studio's form (throws like the parser).
void validate_train_config(const train_config& c);

// ---- the settings against the model and the data (train_checks.cpp) ----------------------------------------------
struct model_config;

// Settings that are valid but probably not meant: the run starts; `qlora train` logs the note, the studio shows it
// beside the field. key is the run.json key ("lora.rank"), text says what happens, hint what to do instead.
struct config_note {
    std::string key, text, hint;
};

// The settings against the chosen model's config.json. Throws qls::error{config} naming the run.json key when
// training.seq_len is longer than the model's context (max_position_embeddings); notes when lora.rank is larger than
// the smaller dimension of a targeted projection (an adapter's B·A has at most that rank: the rest is memory only).
std::vector<config_note> check_train_config_for_model(const train_config& c, const model_config& m);

// What the settings make of the training data (examples, and tokens after truncation to training.seq_len, as the
// dataset's statistics count them): rows an epoch (packed: ceil(tokens / seq_len); else one example a row), rows a
// step (micro_batch × grad_accum), the run's optimizer steps (max_steps, or the trainer's count from epochs) and the
// epochs they cover.
struct train_data_fit {
    int64_t rows_per_epoch = 0;
    int64_t rows_per_step = 0;
    int64_t steps = 0;
    double epochs = 0;
    std::vector<config_note> notes; // steps over the data more than once, a step larger than the data, intervals
};
// Throws qls::error{config} naming training.seq_len when the whole training data is shorter than one sequence (or
// holds no example). The notes name the run.json key: "training.max_steps: 2000 steps = 26.67 epochs of your data",
// eval_every / checkpoint_every larger than the run's steps.
train_data_fit check_train_config_for_data(const train_config& c, int64_t examples, int64_t tokens);

// Learning rate of optimizer step `step` (0-based) of `total`, HF transformers semantics
// (get_constant_schedule_with_warmup, get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup).
double learning_rate_at(const train_config& c, int64_t step, int64_t total);

} // namespace qls
