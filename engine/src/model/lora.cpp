// LoRA configuration, initialisation, merge and the dropout mask shared by every backend.
#include "qls/lora.h"

#include "qls/architecture.h"

#include "qls/error.h"
#include "qls_kernels/dropout_hash.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace qls {

static constexpr const char* k_long_names[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};
static constexpr const char* k_short_names[] = {"q", "k", "v", "o", "gate", "up", "down"};

const char* lora_target_name(lora_target t) { return k_long_names[int(t)]; }
const char* lora_target_short_name(lora_target t) { return k_short_names[int(t)]; }

std::optional<lora_target> lora_target_from_name(std::string_view s) {
    for (int i = 0; i < k_lora_target_count; ++i)
        if (s == k_long_names[i] || s == k_short_names[i]) return lora_target(i);
    return std::nullopt;
}

std::vector<lora_target> all_lora_targets() {
    std::vector<lora_target> v;
    for (int i = 0; i < k_lora_target_count; ++i) v.push_back(lora_target(i));
    return v;
}

std::vector<lora_target> parse_lora_targets(std::string_view csv) {
    const std::string valid = "valid targets: a comma-separated subset of q,k,v,o,gate,up,down, each once, or all";
    if (csv == "all") return all_lora_targets();
    std::vector<lora_target> out;
    size_t pos = 0;
    while (true) {
        const size_t comma = csv.find(',', pos);
        const std::string_view tok = csv.substr(pos,
                                                comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        const std::optional<lora_target> t = lora_target_from_name(tok); // "q" or PEFT's "q_proj"
        if (!t)
            throw error(error_code::invalid_argument,
                        "targets: unknown LoRA target '" + std::string(tok) + "' in '" + std::string(csv) + "'", valid);
        if (std::find(out.begin(), out.end(), *t) != out.end())
            throw error(error_code::invalid_argument, "targets: '" + std::string(tok) + "' is listed twice", valid);
        out.push_back(*t);
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    return out;
}

std::string lora_targets_string(const std::vector<lora_target>& targets) {
    std::string s;
    for (lora_target t : targets) {
        if (!s.empty()) s += ",";
        s += lora_target_short_name(t);
    }
    return s;
}

float lora_config::scale() const { return use_rslora ? alpha / std::sqrt(float(rank)) : alpha / float(rank); }

bool lora_config::targets_has(lora_target t) const {
    return std::find(targets.begin(), targets.end(), t) != targets.end();
}

void validate_lora(const lora_config& c) {
    if (c.rank < 1)
        throw error(error_code::config, "LoRA rank must be at least 1 (got " + std::to_string(c.rank) + ")",
                    "the QLoRA paper uses rank 64; 8-64 is typical");
    if (!(c.alpha > 0) || !std::isfinite(c.alpha))
        throw error(error_code::config, "LoRA alpha must be a positive number (got " + std::to_string(c.alpha) + ")",
                    "the QLoRA paper uses alpha 16 with rank 64");
    if (!(c.dropout >= 0 && c.dropout < 1))
        throw error(error_code::config, "LoRA dropout must be in [0, 1) (got " + std::to_string(c.dropout) + ")",
                    "use 0.05-0.1, or 0 for none");
    if (c.targets.empty())
        throw error(error_code::config, "LoRA targets are empty",
                    "choose at least one of q, k, v, o, gate, up, down (the QLoRA paper uses all seven)");
    for (size_t i = 0; i < c.targets.size(); ++i)
        for (size_t j = i + 1; j < c.targets.size(); ++j)
            if (c.targets[i] == c.targets[j])
                throw error(error_code::config,
                            std::string("LoRA target '") + lora_target_short_name(c.targets[i]) + "' is listed twice",
                            "list each projection once");
}

std::pair<int, int> lora_in_out(const model_config& m, lora_target t) {
    const auto [out, in] = architecture_for(m).projection_shape(m, t);
    return {int(in), int(out)};
}

template <class T> void lora_weights<T>::zero_grad() {
    for (auto& layer : layers)
        for (auto& ad : layer) {
            std::fill(ad.da.begin(), ad.da.end(), T(0));
            std::fill(ad.db.begin(), ad.db.end(), T(0));
        }
}

template <class T> size_t lora_weights<T>::parameter_count() const {
    size_t n = 0;
    for (const auto& layer : layers)
        for (const auto& ad : layer) n += ad.a.size() + ad.b.size();
    return n;
}

template struct lora_weights<float>;
template struct lora_weights<double>;

using qls_kernels::splitmix64; // kernels/include/qls_kernels/dropout_hash.h

lora_weights<float> lora_init(const model_config& m, const lora_config& c, uint64_t seed) {
    validate_lora(c);
    lora_weights<float> w;
    w.config = c;
    w.layers.resize(size_t(m.num_layers));
    const auto& targets = all_lora_targets();
    const int per_layer = int(std::size(targets));
    // adapters are independent (one generator each, drawn in a fixed order), so they are drawn in parallel
#pragma omp parallel for schedule(dynamic) if (m.num_layers > 1)
    for (int lt = 0; lt < m.num_layers * per_layer; ++lt) {
        const int l = lt / per_layer;
        const lora_target t = targets[size_t(lt % per_layer)];
        // one generator per adapter: the same seed gives the same A for (layer, target) whatever the subset
        std::mt19937_64 rng(splitmix64(seed ^ splitmix64(uint64_t(l) << 8 | uint64_t(t))));
        auto [in, out] = lora_in_out(m, t);
        const float bound = 1.0f / std::sqrt(float(in));
        lora_adapter<float>& ad = w.at(l, t);
        if (!c.targets_has(t)) continue;
        ad.in = in;
        ad.out = out;
        ad.rank = c.rank;
        ad.a.resize(size_t(c.rank) * size_t(in));
        // uniform in [-bound, bound) from the top 24 bits (exactly representable in float)
        for (float& x : ad.a) x = (float(rng() >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * bound;
        ad.b.assign(size_t(out) * size_t(c.rank), 0.0f);
        ad.da.assign(ad.a.size(), 0.0f);
        ad.db.assign(ad.b.size(), 0.0f);
    }
    return w;
}

lora_weights<double> lora_to_f64(const lora_weights<float>& w) {
    lora_weights<double> d;
    d.config = w.config;
    d.layers.resize(w.layers.size());
    for (size_t l = 0; l < w.layers.size(); ++l)
        for (size_t t = 0; t < size_t(k_lora_target_count); ++t) {
            const auto& s = w.layers[l][t];
            auto& o = d.layers[l][t];
            o.in = s.in;
            o.out = s.out;
            o.rank = s.rank;
            o.a.assign(s.a.begin(), s.a.end());
            o.b.assign(s.b.begin(), s.b.end());
            o.da.assign(s.da.size(), 0.0);
            o.db.assign(s.db.size(), 0.0);
        }
    return d;
}

void lora_merge(float* w, const lora_adapter<float>& ad, float scale) {
    // w (out, in) += scale · B (out, r) · A (r, in), accumulated in double, each element's products added in the order
    // r = 0 .. rank-1. r is the middle loop, so the inner loop over i streams a row of A and vectorizes; rows are
    // independent, so the result does not depend on the thread count (a 7B's 224 projections: ~0.9 TFLOP).
    const int64_t in = ad.in, rank = ad.rank;
#pragma omp parallel if (int64_t(ad.out) * in * rank > (int64_t(1) << 22))
    {
        std::vector<double> s(static_cast<size_t>(in));
#pragma omp for schedule(static)
        for (int o = 0; o < ad.out; ++o) {
            std::fill(s.begin(), s.end(), 0.0);
            const float* b = ad.b.data() + size_t(o) * size_t(rank);
            for (int64_t r = 0; r < rank; ++r) {
                const double br = double(b[r]);
                const float* a = ad.a.data() + size_t(r) * size_t(in);
                for (int64_t i = 0; i < in; ++i) s[size_t(i)] += br * double(a[i]);
            }
            float* row = w + size_t(o) * size_t(in);
            for (int64_t i = 0; i < in; ++i) row[i] += float(scale * s[size_t(i)]);
        }
    }
}

bool lora_dropout_keep(uint64_t seed, int layer, lora_target t, uint64_t i, float p) {
    return qls_kernels::dropout_keep(seed, layer, int(t), i, p); // shared with the CUDA kernels
}

} // namespace qls
