// step_stats — the per-step telemetry value the trainer emits (callback, metrics.jsonl) and the UI charts; plain values only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qls {

struct step_stats {
    int64_t step = 0; // optimizer steps completed (1-based after the first)
    int64_t total_steps = 0;
    double epoch = 0;         // fractional epoch reached
    double loss = 0;          // mean training loss over the step's micro-batches
    double lr = 0;            // learning rate used for this step
    double grad_norm = 0;     // global gradient norm before clipping
    int64_t tokens = 0;       // input tokens processed this step (padding excluded)
    int64_t tokens_total = 0; // since the run began
    double tokens_per_s = 0;
    double step_time_s = 0;
    double eta_s = 0; // estimated time to the last step
    // memory: predicted bytes per plan category (machine names of memory_plan) and measured use
    std::vector<std::pair<std::string, uint64_t>> plan_bytes;
    uint64_t device_used_bytes = 0; // measured: the backend's allocations (CUDA: cudaMemGetInfo / arena)
    uint64_t device_peak_bytes = 0;
    uint64_t device_total_bytes = 0; // the card (0 on the CPU backend)
    uint64_t arena_bytes = 0;        // CUDA: our one planned allocation (0 on the CPU backend)
    // paging of optimizer states
    uint64_t paging_h2d_bytes = 0; // this step
    uint64_t paging_d2h_bytes = 0; // this step
    uint64_t resident_pages = 0;
    uint64_t total_pages = 0;
    // offloaded gradient checkpoints (CUDA, when the plan offloads them): bytes this step
    uint64_t offload_h2d_bytes = 0;
    uint64_t offload_d2h_bytes = 0;
    std::optional<double> eval_loss; // when an evaluation ran after this step
};

// One line of metrics.jsonl (no newline) and back; parsing throws qls::error naming the field.
std::string step_stats_to_json(const step_stats& s);
step_stats step_stats_from_json(const std::string& line);

} // namespace qls
