// How a data-parallel run over N GPUs divides each step's micro-batches and the optimizer state (design: engine/DATA_PARALLEL.md).
#pragma once

#include "qls/tensor.h"

#include <string>
#include <utility>
#include <vector>

namespace qls {

// The step's `grad_accum` (G) micro-batches dealt to `ranks` (N) ranks: rank r runs the global micro-batch indices
// r, r + N, r + 2N, ... in that order, so the result is [N][G / N]. Every micro-batch keeps its global index (its
// dropout seed), so a micro-batch gets the same mask on whichever rank runs it.
// error{config} naming training.grad_accum and device.gpus, with the nearest multiples, unless G is a positive
// multiple of N; error{invalid_argument} when N < 1.
std::vector<std::vector<int>> deal_micro_batches(int grad_accum, int ranks);

// The layers [begin, end) whose optimizer state one rank owns.
struct layer_range {
    int begin = 0, end = 0;
    int size() const { return end - begin; }
    bool contains(int layer) const { return layer >= begin && layer < end; }
    bool operator==(const layer_range&) const = default;
};

// The owners of `layers` (L) layers' optimizer state among `ranks` (N) ranks: contiguous ranges in rank order whose
// sizes differ by at most one (the first L mod N ranks take one layer more), so every layer has exactly one owner and
// the states divide by N as evenly as whole layers allow. N > L leaves the last N - L ranks without a layer.
// error{invalid_argument} when L < 1 or N < 1.
std::vector<layer_range> layer_owners(int layers, int ranks);

// The rank that owns `layer` under layer_owners(layers, ranks).
int layer_owner(int layer, int layers, int ranks);

// The decoder layer a LoRA tensor's optimizer state belongs to, from its name ("….layers.<l>.…", as
// peft_tensor_name writes it, plus a state suffix); -1 for a name without one (the run's own state, such as
// "optimizer.step"). error{format} naming the tensor when "layers." is followed by no number and dot.
int state_tensor_layer(const std::string& name);

// Re-sharding a checkpoint's optimizer state, written on any number of GPUs (always the whole state: one tensor per
// LoRA tensor and state, and the run's own state such as "optimizer.step"), for `ranks` ranks: element r holds the
// tensors of the layers rank r owns, in the checkpoint's order, and every rank gets the tensors of no layer. Every
// layer's tensor goes to exactly one rank; error{format} naming a tensor of a layer >= layers.
std::vector<std::vector<std::pair<std::string, tensor>>>
shard_optimizer_state(const std::vector<std::pair<std::string, tensor>>& state, int layers, int ranks);

} // namespace qls
