// The micro-batch deal and the optimizer-state ownership of a data-parallel run (data_parallel.h; engine/DATA_PARALLEL.md).
#include "qls/data_parallel.h"

#include "qls/error.h"

#include <cstdint>

namespace qls {

std::vector<std::vector<int>> deal_micro_batches(int grad_accum, int ranks) {
    if (ranks < 1)
        throw error(error_code::invalid_argument, "deal_micro_batches: " + std::to_string(ranks) + " ranks",
                    "a run has at least one GPU");
    if (grad_accum < 1 || grad_accum % ranks != 0) {
        // the nearest multiples of N around G, the lower one only when it is at least N
        const int lower = grad_accum / ranks * ranks, upper = lower + ranks;
        std::string fix = "set training.grad_accum to " + std::to_string(upper);
        if (lower >= ranks) fix = "set training.grad_accum to " + std::to_string(lower) + " or " + std::to_string(upper);
        throw error(error_code::config,
                    "training.grad_accum " + std::to_string(grad_accum) + " does not divide among the " +
                        std::to_string(ranks) + " GPUs of device.gpus: each GPU runs whole micro-batches, the same "
                        "number on every GPU",
                    fix + ", or use fewer GPUs in device.gpus (the global batch is micro_batch x grad_accum)");
    }
    std::vector<std::vector<int>> deal(static_cast<size_t>(ranks));
    for (auto& d : deal) d.reserve(size_t(grad_accum / ranks));
    for (int k = 0; k < grad_accum; ++k) deal[size_t(k % ranks)].push_back(k);
    return deal;
}

std::vector<layer_range> layer_owners(int layers, int ranks) {
    if (layers < 1 || ranks < 1)
        throw error(error_code::invalid_argument,
                    "layer_owners: " + std::to_string(layers) + " layers among " + std::to_string(ranks) + " ranks",
                    "a model has at least one layer and a run at least one GPU");
    std::vector<layer_range> owners(static_cast<size_t>(ranks));
    const int base = layers / ranks, extra = layers % ranks;
    int at = 0;
    for (int r = 0; r < ranks; ++r) {
        const int n = base + (r < extra ? 1 : 0);
        owners[size_t(r)] = {at, at + n};
        at += n;
    }
    return owners;
}

namespace {

// The rank whose range holds `layer` (ranges as layer_owners returns them); -1 when none does.
int owner_in(const std::vector<layer_range>& owners, int layer) {
    for (size_t r = 0; r < owners.size(); ++r)
        if (owners[r].contains(layer)) return int(r);
    return -1;
}

} // namespace

int layer_owner(int layer, int layers, int ranks) {
    const int r = owner_in(layer_owners(layers, ranks), layer); // layer_owners validates both counts
    if (r < 0)
        throw error(error_code::invalid_argument,
                    "layer_owner: layer " + std::to_string(layer) + " of a model with " + std::to_string(layers) +
                        " layers");
    return r;
}

int state_tensor_layer(const std::string& name) {
    static const std::string key = "layers.";
    const size_t at = name.find(key);
    auto fail = [&]() -> int {
        throw error(error_code::format,
                    "optimizer state tensor '" + name + "' names no decoder layer (\"layers.<n>.\")",
                    "the checkpoint's optimizer.safetensors is damaged or from another program; resume from "
                    "an earlier checkpoint");
    };
    if (at == std::string::npos) return -1;
    if (at > 0 && name[at - 1] != '.') return fail();
    size_t i = at + key.size();
    int64_t layer = 0;
    const size_t first = i;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9') {
        layer = layer * 10 + (name[i] - '0');
        if (layer > INT32_MAX) return fail();
        ++i;
    }
    if (i == first || i >= name.size() || name[i] != '.') return fail();
    return int(layer);
}

std::vector<std::vector<std::pair<std::string, tensor>>>
shard_optimizer_state(const std::vector<std::pair<std::string, tensor>>& state, int layers, int ranks) {
    const std::vector<layer_range> owners = layer_owners(layers, ranks); // validates both counts
    std::vector<std::vector<std::pair<std::string, tensor>>> shards(static_cast<size_t>(ranks));
    for (const auto& [name, t] : state) {
        const int l = state_tensor_layer(name);
        if (l < 0) { // the run's own state: every rank keeps a copy
            for (auto& shard : shards) shard.emplace_back(name, t);
            continue;
        }
        if (l >= layers)
            throw error(error_code::format,
                        "optimizer state tensor '" + name + "' belongs to layer " + std::to_string(l) +
                            ", but the model has " + std::to_string(layers) + " layers",
                        "resume with the model the run was trained on (run.json's model)");
        shards[size_t(owner_in(owners, l))].emplace_back(name, t);
    }
    return shards;
}

} // namespace qls
