// LoRA adapters (Hu et al. 2021, https://arxiv.org/abs/2106.09685) on the LLaMA projections, as PEFT defines them:
// y = W x + scale · B (A dropout(x)), A (r, in) Kaiming-uniform, B (out, r) zero, scale = alpha/r or alpha/sqrt(r) (rsLoRA).
#pragma once

#include "qls/model_config.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qls {

// The seven linear layers of a LLaMA block, in PEFT's module names.
enum class lora_target : int { q = 0, k, v, o, gate, up, down };
constexpr int k_lora_target_count = 7;
const char* lora_target_name(lora_target t);                          // "q_proj", "k_proj", ..., "down_proj"
const char* lora_target_short_name(lora_target t);                    // "q", "k", ..., "down"
std::optional<lora_target> lora_target_from_name(std::string_view s); // accepts "q" or "q_proj"
std::vector<lora_target> all_lora_targets();
// "q,k,v,o,gate,up,down" (any subset, any order, each once; PEFT's q_proj ... names too) or "all";
// throws qls::error naming the valid values.
std::vector<lora_target> parse_lora_targets(std::string_view csv);
std::string lora_targets_string(const std::vector<lora_target>& targets); // "q,v"

struct lora_config {
    int rank = 64;           // r; QLoRA paper: 64
    float alpha = 16.0f;     // QLoRA paper: 16
    float dropout = 0.1f;    // QLoRA paper: 0.1 for 7B/13B, 0.05 for 33B/65B
    bool use_rslora = false; // scale alpha/sqrt(r) (Kalajdzievski 2023, https://arxiv.org/abs/2312.03732)
    std::vector<lora_target> targets = all_lora_targets();

    float scale() const;
    bool targets_has(lora_target t) const;
};

// Throws qls::error(config) naming the field: rank >= 1, alpha > 0, 0 <= dropout < 1, targets non-empty and unique.
void validate_lora(const lora_config& c);

// In/out features of a projection for a model: q (NH*HS, C), k/v (NKV*HS, C), o (C, NH*HS), gate/up (H, C), down (C, H).
std::pair<int, int> lora_in_out(const model_config& m, lora_target t);

template <class T> struct lora_adapter {
    int in = 0, out = 0, rank = 0;
    std::vector<T> a, b;   // A (r, in), B (out, r)
    std::vector<T> da, db; // gradients, same shapes; accumulated (+=) by backward
    bool enabled() const { return rank > 0; }
};

template <class T> struct lora_weights {
    lora_config config;
    std::vector<std::array<lora_adapter<T>, k_lora_target_count>> layers; // [L][target]

    lora_adapter<T>& at(int layer, lora_target t) { return layers[size_t(layer)][size_t(t)]; }
    const lora_adapter<T>& at(int layer, lora_target t) const { return layers[size_t(layer)][size_t(t)]; }
    void zero_grad();
    size_t parameter_count() const;
};

// A ~ U(-1/sqrt(in), 1/sqrt(in)) — PEFT's kaiming_uniform_(a=sqrt(5)): gain sqrt(2/(1+5)), bound gain·sqrt(3/in);
// B = 0. Deterministic in seed.
lora_weights<float> lora_init(const model_config& m, const lora_config& c, uint64_t seed);
lora_weights<double> lora_to_f64(const lora_weights<float>& w);

// Merged weight for export: w (out, in) += scale · B · A.
void lora_merge(float* w, const lora_adapter<float>& ad, float scale);

// Dropout keep-decision for element i of the input of adapter (layer, target) under a step's seed: a counter-based
// hash (splitmix64), so any backend reproduces the same mask without storing it. Keep when the uniform >= p.
bool lora_dropout_keep(uint64_t seed, int layer, lora_target t, uint64_t i, float p);

} // namespace qls
