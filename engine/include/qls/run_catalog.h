// run_catalog — finding the runs under a runs folder and what each holds (config, checkpoints, metrics): the Runs page, the studio and `qlora export` read runs through it.
//
// A run directory is runs_dir/<name>/ holding config.json (trainer.h describes the layout). Reading one never
// throws: what makes a directory unusable goes to run_info::problem, in words naming the file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qls {

struct run_info {
    std::string dir; // absolute path of runs_dir/<name>
    std::string name;
    std::string config_file;  // config.json (run.json in older runs)
    std::string model;        // config.json "model"
    std::string train_file;   // config.json "data.train"
    bool quantize_nf4 = true; // config.json "quantization.nf4": the base was NF4 while it trained
    double budget_gib = 0;    // config.json "device.budget_gib"
    int64_t modified_ms = 0;  // newest of config.json and metrics.jsonl, ms since the Unix epoch
    int64_t last_step = 0;    // the last complete line of metrics.jsonl
    int64_t total_steps = 0;
    std::optional<double> last_loss;
    std::optional<double> last_eval_loss; // the newest evaluation in the file's last 256 KiB
    std::vector<int64_t>
        checkpoint_steps;          // complete checkpoints (checkpoints/step-N with trainer_state.json), ascending
    std::string latest_checkpoint; // its directory, "" when none
    std::string problem;           // why the directory is not a usable run, "" when it is

    bool complete() const { return total_steps > 0 && last_step >= total_steps; }
};

// One run directory, from its files.
run_info read_run(const std::string& run_dir);
// Every run under runs_dir (directories with a config.json or run.json), by name; none when it does not exist.
std::vector<run_info> list_runs(const std::string& runs_dir);
// The run a checkpoint belongs to (the folder above checkpoints/step-N), "" when it sits elsewhere.
std::string checkpoint_run_dir(const std::string& checkpoint_dir);
// A run's checkpoint chosen by the user: "" = the newest; else a directory, or a name under run_dir/checkpoints.
// Throws qls::error{io} naming the run when there is no checkpoint with an adapter.
std::string find_checkpoint(const std::string& run_dir, const std::string& choice = {});

} // namespace qls
