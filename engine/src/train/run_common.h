// What the LoRA trainer (trainer.cpp) and full-parameter training (full_train.cpp) share: the run's paths, data,
// batches and step count, its folder and metrics.jsonl, evaluation, a step's telemetry and the divergence message.
#pragma once

#include "qls/dataset.h"
#include "qls/model_config.h"
#include "qls/model_source.h"
#include "qls/telemetry.h"
#include "qls/tokenizer.h"
#include "qls/train_config.h"
#include "qls/trainer.h" // defines: load_run_data

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace qls {

// N of a checkpoint folder named "step-N" (N: 1 to 19 decimal digits within int64's range); -1 for any other name.
int64_t checkpoint_step_of(const std::string& folder_name);

// cfg's model, train_file, validation_file and runs_dir made absolute and normal, so the config.json a run saves
// works from any working directory.
void make_run_paths_absolute(train_config& cfg);

// Refuses (qls::error config, naming training.seq_len) a sequence length beyond the model's context.
void check_seq_len_fits(const train_config& cfg, const model_config& mc);

// What a run says about its data before the first step, one line each: the training and validation data's warnings
// ("data: …", "validation data: …") and check_train_config_for_data's notes ("note: key: text (hint)"). Throws as
// that check does (qls::error config naming training.seq_len when the data is shorter than one sequence).
std::vector<std::string> run_data_log_lines(const train_config& cfg, const dataset_split& split);

// The training batches' options: B = micro_batch rows of T = seq_len tokens, packing as configured, shuffled with the
// run's seed, padding id 0.
batch_options run_batch_options(const train_config& cfg);

// The run's optimizer steps: training.max_steps when set, else epochs over per_epoch micro-batches in steps of
// grad_accum of them, rounded up (at least 1).
int64_t run_total_steps(const train_config& cfg, int64_t per_epoch);

// True after the step whose number `step` is a multiple of `every` (> 0), and after the last step.
inline bool step_is_due(int every, int64_t step, bool last) { return (every > 0 && step % every == 0) || last; }

// Creates run_dir/checkpoints, writes cfg as run_dir/config.json and an empty run_dir/metrics.jsonl.
void create_run_dir(const std::string& run_dir, const train_config& cfg);

// Appends one step_stats line to run_dir/metrics.jsonl.
void append_metrics_line(const std::string& run_dir, const step_stats& s);

// The mean loss per counted target over the validation examples, in file order, as batches of `bo` (shuffle off),
// at most eval_batches of them when that is > 0: sum(loss(b) * b.counted_targets) / sum(b.counted_targets) over the
// batches with counted targets. before_batch(i, n), when given, runs before batch i of n; false abandons the
// evaluation. nullopt: no examples, no counted target, or abandoned.
std::optional<double> evaluate_mean_loss(const std::vector<data_example>& examples, batch_options bo, int eval_batches,
                                         const std::function<bool(size_t i, size_t n)>& before_batch,
                                         const std::function<double(const batch& b)>& loss);

// A step's telemetry as every trainer reports it: step of total, the epoch reached (from the batcher's position),
// loss, lr, gradient norm, tokens this step and since the run began, the step's time, tokens/s and eta_s. Memory
// fields are the caller's.
step_stats step_progress_stats(const batcher& batches, int64_t step, int64_t total, double loss, double lr,
                               double grad_norm, int64_t tokens, int64_t tokens_total, double dt, double eta_s);

// The message of a run stopped because `what` ("the loss became NaN") at step `step` (1-based) with learning rate
// lr: nothing of that step applied, the last good checkpoint (when there is one) and what to change.
std::string divergence_text(const std::string& what, int64_t step, double lr, const std::string& last_checkpoint);

} // namespace qls
