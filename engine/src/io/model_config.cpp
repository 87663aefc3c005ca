// model_config: parses and validates a Hugging Face LLaMA/Mistral config.json; rotary inverse frequencies.
//
// Defaults follow transformers' LlamaConfig (models/llama/configuration_llama.py) and, for model_type
// "mistral", MistralConfig (models/mistral/configuration_mistral.py). RoPE: transformers
// modeling_rope_utils.py. A field that is present but null is treated like an absent one, as the HF
// config classes do for the optional fields (num_key_value_heads, head_dim, rope_scaling, ...).
#include "qls/model_config.h"

#include "qls/architecture.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/json_input.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <numbers>
#include <optional>

namespace qls {

namespace {

using json = nlohmann::json;

const char* const k_config_hint =
    "config.json must be the Hugging Face config of a LLaMA-family model; compare it with the config.json "
    "in the original model repository";

const char* type_word(const json& v) {
    switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number with a fraction";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unknown JSON value";
    }
}

// `64 (an integer)`, `"64" (a string)`; long or deep values are shortened (json_shown never recurses deeply).
std::string found(const json& v) { return json_shown(v) + " (" + type_word(v) + ")"; }

// Upper bounds on the dimensions a config.json may give. Far above every released model (Llama 3.1 405B:
// hidden 16384, intermediate 53248, 126 layers, 128 heads; vocabularies up to ~262k; contexts up to 10M), far
// below what would overflow the sizes derived from them (q_dim, parameter counts, byte sizes) in 64 bits.
constexpr int k_max_hidden_size = 1 << 17;
constexpr int k_max_intermediate_size = 1 << 20;
constexpr int k_max_layers = 1024;
constexpr int k_max_heads = 4096;
constexpr int k_max_head_dim = 4096;
constexpr int k_max_vocab = 1 << 23;
constexpr int k_max_positions = 1 << 26;
constexpr long long k_max_q_dim = 1 << 20;

// a * b in 64 bits, or a config error naming what was being computed when it would overflow.
long long checked_mul(long long a, long long b, const std::string& what) {
    long long r = 0;
    if (__builtin_mul_overflow(a, b, &r))
        throw error(error_code::config, "config.json: " + what + " overflows a 64-bit integer", k_config_hint);
    return r;
}
long long checked_add(long long a, long long b, const std::string& what) {
    long long r = 0;
    if (__builtin_add_overflow(a, b, &r))
        throw error(error_code::config, "config.json: " + what + " overflows a 64-bit integer", k_config_hint);
    return r;
}

// Reads typed fields of one JSON object (the config root, or its rope_scaling / rope_parameters
// object, whose fields are named "rope_scaling.factor" etc. in messages).
class field_reader {
public:
    field_reader(const json& obj, const std::string& source, std::string prefix)
        : obj_(obj), source_(source), prefix_(std::move(prefix)) {}

    std::string name(const std::string& key) const { return prefix_ + key; }

    [[noreturn]] void fail(error_code code, const std::string& key, const std::string& what,
                           const std::string& hint = k_config_hint) const {
        throw error(code, source_ + ": field '" + name(key) + "' " + what, hint);
    }

    // The value, or nullptr when the key is absent or null.
    const json* get(const std::string& key) const {
        auto it = obj_.find(key);
        if (it == obj_.end() || it->is_null()) return nullptr;
        return &*it;
    }
    bool present(const std::string& key) const { return get(key) != nullptr; }

    std::optional<int> integer(const std::string& key, bool required, int min_value, int max_value = INT_MAX) const {
        const json* v = get(key);
        std::string expect = min_value == 1 ? "a positive integer" : "an integer >= " + std::to_string(min_value);
        if (!v) {
            if (!required) return std::nullopt;
            auto it = obj_.find(key);
            if (it == obj_.end()) fail(error_code::config, key, "is missing (expected " + expect + ")");
            fail(error_code::config, key, "must be " + expect + ", found null");
        }
        if (!v->is_number_integer()) fail(error_code::config, key, "must be " + expect + ", found " + found(*v));
        bool too_big = v->is_number_unsigned() ? v->get<uint64_t>() > uint64_t(INT_MAX) : v->get<int64_t>() > INT_MAX;
        if (too_big) fail(error_code::config, key, "must be " + expect + " below 2^31, found " + json_shown(*v));
        int64_t x = v->get<int64_t>();
        if (x < min_value) fail(error_code::config, key, "must be " + expect + ", found " + json_shown(*v));
        if (x > max_value)
            fail(error_code::config, key,
                 "must be " + expect + " at most " + std::to_string(max_value) + ", found " + json_shown(*v) +
                     " (no real model is this large)");
        return int(x);
    }

    // A finite number (integer or float JSON); `positive` requires > 0.
    std::optional<double> number(const std::string& key, bool required, bool positive) const {
        const json* v = get(key);
        std::string expect = positive ? "a positive number" : "a number";
        if (!v) {
            if (!required) return std::nullopt;
            auto it = obj_.find(key);
            if (it == obj_.end()) fail(error_code::config, key, "is missing (expected " + expect + ")");
            fail(error_code::config, key, "must be " + expect + ", found null");
        }
        if (!v->is_number()) fail(error_code::config, key, "must be " + expect + ", found " + found(*v));
        double x = v->get<double>();
        if (!std::isfinite(x) || (positive && !(x > 0)))
            fail(error_code::config, key, "must be " + expect + ", found " + json_shown(*v));
        return x;
    }

    std::optional<bool> boolean(const std::string& key) const {
        const json* v = get(key);
        if (!v) return std::nullopt;
        if (!v->is_boolean()) fail(error_code::config, key, "must be true or false, found " + found(*v));
        return v->get<bool>();
    }

    std::optional<std::string> string(const std::string& key, bool required) const {
        const json* v = get(key);
        if (!v) {
            if (!required) return std::nullopt;
            fail(error_code::config, key, "is missing (expected a string)");
        }
        if (!v->is_string()) fail(error_code::config, key, "must be a string, found " + found(*v));
        return v->get<std::string>();
    }

private:
    const json& obj_;
    const std::string& source_;
    std::string prefix_;
};

// Fills cfg.rope.{type, factor, ...} from a rope_scaling (legacy) or rope_parameters (transformers v5)
// object. Required keys per type as transformers modeling_rope_utils.py (_validate_linear_scaling_rope_parameters,
// _validate_llama3_parameters); values HF only warns about but that would give inf/NaN frequencies are errors here.
void parse_rope_object(const json& obj, const std::string& source, const std::string& object_name, rope_config& rope) {
    field_reader r(obj, source, object_name + ".");
    // BC in transformers: "rope_type" was originally "type".
    std::string type_key = r.present("rope_type") || !r.present("type") ? "rope_type" : "type";
    std::string type = r.string(type_key, false).value_or("default");
    if (type == "default") {
        rope.type = "default";
        return;
    }
    if (type == "linear") {
        rope.type = "linear";
        rope.factor = *r.number("factor", true, true);
        return;
    }
    if (type == "llama3") {
        rope.type = "llama3";
        rope.factor = *r.number("factor", true, true);
        rope.low_freq_factor = *r.number("low_freq_factor", true, true);
        rope.high_freq_factor = *r.number("high_freq_factor", true, true);
        rope.original_max_position_embeddings = *r.integer("original_max_position_embeddings", true, 1);
        if (!(rope.high_freq_factor > rope.low_freq_factor))
            r.fail(error_code::config, "high_freq_factor",
                   "must be greater than low_freq_factor (" + std::to_string(rope.low_freq_factor) + "), found " +
                       std::to_string(rope.high_freq_factor));
        return;
    }
    r.fail(error_code::unsupported, type_key,
           "is \"" + type + "\"; supported rotary embedding types are \"default\", \"linear\" and \"llama3\"",
           "dynamic-NTK, YaRN and LongRoPE scaling are not implemented; choose a model without this rope scaling");
}

// layer_types (transformers v5: one "full_attention" | "sliding_attention" per layer) and the sliding window. Absent
// layer_types are derived as each family's config class does: Gemma3TextConfig every sliding_window_pattern-th layer
// (default 6) full, the rest sliding; Qwen2/Qwen3Config layers from max_window_layers on sliding when
// use_sliding_window. Mistral keeps its window as a cap on the context (below).
void read_layer_types(const field_reader& r, const json& root, const architecture& arch, model_config& cfg) {
    const int L = cfg.num_layers;
    const bool gemma = arch.family == "gemma3";
    const bool qwen = arch.family == "qwen2" || arch.family == "qwen3";
    if (!gemma && !qwen) return;
    // Qwen: the window exists only with use_sliding_window (Qwen2Config sets sliding_window None otherwise).
    bool window_on = gemma || r.boolean("use_sliding_window").value_or(false);
    std::optional<int> window = r.integer("sliding_window", false, 1);
    if (gemma && !root.contains("sliding_window")) window = 4096; // Gemma3TextConfig default
    if (!window_on) window.reset();
    std::vector<uint8_t> sliding(size_t(L), 0);
    if (const json* lt = r.get("layer_types")) {
        if (!lt->is_array())
            r.fail(error_code::config, "layer_types",
                   "must be a list of \"full_attention\" / \"sliding_attention\", found " + found(*lt));
        if (lt->size() != size_t(L))
            r.fail(error_code::config, "layer_types",
                   "lists " + std::to_string(lt->size()) + " layers but num_hidden_layers is " + std::to_string(L) +
                       "; it must give one entry per layer");
        for (size_t i = 0; i < lt->size(); ++i) {
            const json& e = (*lt)[i];
            if (!e.is_string() || (e != "full_attention" && e != "sliding_attention"))
                r.fail(error_code::config, "layer_types[" + std::to_string(i) + "]",
                       "must be \"full_attention\" or \"sliding_attention\", found " + found(e));
            sliding[i] = e == "sliding_attention" ? 1 : 0;
        }
    } else if (gemma) {
        const int pattern = r.integer("sliding_window_pattern", false, 1, k_max_layers).value_or(6);
        for (int i = 0; i < L; ++i) sliding[size_t(i)] = (i + 1) % pattern != 0 ? 1 : 0;
    } else if (window) {
        const int from = r.integer("max_window_layers", false, 0, k_max_layers).value_or(28);
        for (int i = from; i < L; ++i) sliding[size_t(i)] = 1;
    }
    const bool any = std::find(sliding.begin(), sliding.end(), uint8_t(1)) != sliding.end();
    if (any && gemma && !window)
        r.fail(error_code::config, "sliding_window",
               "is null, but layer_types marks sliding_attention layers; give the window size");
    if (!any || !window) return; // Qwen without use_sliding_window: sliding_attention layers attend fully, as in HF
    cfg.sliding_window = *window;
    cfg.sliding_layers = std::move(sliding);
}

// Gemma 3's two RoPEs. transformers v5 writes rope_parameters {"full_attention": {...}, "sliding_attention": {...}};
// older files give rope_theta (global, default 1e6), rope_local_base_freq (default 1e4) and rope_scaling (applies
// to the full-attention layers). Gemma3TextConfig.convert_rope_params_to_dict.
void read_local_rope(const field_reader& r, const std::string& source, model_config& cfg) {
    cfg.has_local_rope = true;
    cfg.rope = rope_config{};
    cfg.rope.theta = r.number("rope_theta", false, true).value_or(1'000'000.0);
    cfg.rope_local = rope_config{};
    cfg.rope_local.theta = r.number("rope_local_base_freq", false, true).value_or(10'000.0);
    if (const json* rp = r.get("rope_parameters")) {
        if (!rp->is_object()) r.fail(error_code::config, "rope_parameters", "must be an object, found " + found(*rp));
        for (auto it = rp->begin(); it != rp->end(); ++it) {
            if (it.key() != "full_attention" && it.key() != "sliding_attention")
                r.fail(error_code::config, "rope_parameters." + it.key(),
                       "is not a layer type; Gemma 3 gives \"full_attention\" and \"sliding_attention\" objects");
            if (it->is_null()) continue;
            if (!it->is_object())
                r.fail(error_code::config, "rope_parameters." + it.key(), "must be an object, found " + found(*it));
            rope_config& target = it.key() == "full_attention" ? cfg.rope : cfg.rope_local;
            field_reader rr(*it, source, "rope_parameters." + it.key() + ".");
            if (auto th = rr.number("rope_theta", false, true)) target.theta = *th;
            parse_rope_object(*it, source, "rope_parameters." + it.key(), target);
        }
    } else if (const json* rs = r.get("rope_scaling")) {
        if (!rs->is_object())
            r.fail(error_code::config, "rope_scaling", "must be an object or null, found " + found(*rs));
        parse_rope_object(*rs, source, "rope_scaling", cfg.rope);
    }
}

} // namespace

model_config parse_model_config(std::string_view json_text, const std::string& source) {
    const json root = parse_json_input(
        json_text, source, "the file is damaged or incomplete; download config.json again from the model repository");
    if (!root.is_object())
        throw error(error_code::format, source + ": expected a JSON object at the top level, found " + found(root),
                    k_config_hint);

    field_reader r(root, source, "");
    model_config cfg;

    // Architecture. AutoConfig also refuses a config.json without model_type.
    cfg.model_type = *r.string("model_type", true);
    const architecture* arch = find_architecture(cfg.model_type);
    if (!arch)
        r.fail(
            error_code::unsupported, "model_type",
            "is \"" + cfg.model_type + "\"; supported model types are " + supported_model_types() +
                " (LLaMA-architecture models)",
            "QLoRA Studio trains LLaMA-family checkpoints (Llama 1/2/3, TinyLlama, Mistral, ...); choose such a model");
    const bool mistral = cfg.model_type == "mistral";
    const bool qwen = arch->family == "qwen2" || arch->family == "qwen3";
    const bool gemma = arch->family == "gemma3";
    const std::string act_key = arch->hidden_act_key;
    const std::string want_act = arch->mlp == mlp_kind::swiglu ? "silu" : "gelu_pytorch_tanh";
    cfg.hidden_act = r.string(act_key, false).value_or(want_act);
    if (cfg.hidden_act != want_act)
        r.fail(error_code::unsupported, act_key,
               "is \"" + cfg.hidden_act + "\"; the " + arch->family + " family's MLP is " +
                   (arch->mlp == mlp_kind::swiglu ? "SwiGLU, which needs \"silu\""
                                                  : "GeGLU, which needs \"gelu_pytorch_tanh\""),
               "this checkpoint uses a different MLP activation; compare config.json with the original repository's");
    // Biases: Qwen2's q/k/v always carry them (Qwen2Attention bias=True); Qwen3 and Gemma 3 follow attention_bias
    // (q/k/v and o); LLaMA and Mistral checkpoints with biases are a different architecture.
    if (arch->projection_bias) {
        cfg.qkv_bias = true;
    } else if (qwen || gemma) {
        cfg.qkv_bias = cfg.o_bias = r.boolean("attention_bias").value_or(false);
    } else {
        for (const char* key : {"attention_bias", "mlp_bias"})
            if (r.boolean(key).value_or(false))
                r.fail(error_code::unsupported, key, "is true; projections with bias terms are not supported",
                       "LLaMA-family models have no biases in their linear layers; this is a different architecture");
    }
    if (gemma) {
        for (const char* key : {"final_logit_softcapping", "attn_logit_softcapping"})
            if (auto cap = r.number(key, false, true))
                r.fail(error_code::unsupported, key,
                       "is " + std::to_string(*cap) + "; logit soft-capping (Gemma 2) is not implemented",
                       "Gemma 3 checkpoints set it to null; this looks like a Gemma 2 config");
        if (r.boolean("use_bidirectional_attention").value_or(false))
            r.fail(error_code::unsupported, "use_bidirectional_attention",
                   "is true; only causal language models are supported", "choose a causal Gemma 3 checkpoint");
    }

    // Dimensions (required: LlamaConfig's own defaults describe a 7B model, never what a file means to say).
    cfg.hidden_size = *r.integer("hidden_size", true, 1, k_max_hidden_size);
    cfg.intermediate_size = *r.integer("intermediate_size", true, 1, k_max_intermediate_size);
    cfg.num_layers = *r.integer("num_hidden_layers", true, 1, k_max_layers);
    cfg.num_heads = *r.integer("num_attention_heads", true, 1, k_max_heads);
    cfg.vocab_size = *r.integer("vocab_size", true, 1, k_max_vocab);
    // LlamaConfig: num_key_value_heads None -> num_attention_heads. MistralConfig's argument default is 8
    // (only an explicit null falls back to num_attention_heads).
    if (auto kv = r.integer("num_key_value_heads", false, 1, k_max_heads)) cfg.num_kv_heads = *kv;
    else cfg.num_kv_heads = mistral && !root.contains("num_key_value_heads") ? 8 : cfg.num_heads;
    if (cfg.num_heads % cfg.num_kv_heads != 0)
        r.fail(error_code::config, "num_key_value_heads",
               "must divide num_attention_heads (" + std::to_string(cfg.num_heads) + "), found " +
                   std::to_string(cfg.num_kv_heads));
    if (auto hd = r.integer("head_dim", false, 1, k_max_head_dim)) {
        cfg.head_dim = *hd;
    } else if (arch->needs_head_dim) {
        r.fail(error_code::config, "head_dim",
               "is missing; the " + arch->family +
                   " family's head size is not hidden_size / num_attention_heads in general, so config.json must "
                   "give it");
    } else {
        if (cfg.hidden_size % cfg.num_heads != 0)
            r.fail(error_code::config, "num_attention_heads",
                   "must divide hidden_size (" + std::to_string(cfg.hidden_size) +
                       ") when head_dim is not given, found " + std::to_string(cfg.num_heads));
        cfg.head_dim = cfg.hidden_size / cfg.num_heads;
    }
    if (cfg.head_dim > k_max_head_dim)
        r.fail(error_code::config, "num_attention_heads",
               "gives head_dim " + std::to_string(cfg.head_dim) + ", more than " + std::to_string(k_max_head_dim));
    // The attention widths in 64 bits: num_attention_heads × head_dim must not wrap (a wrapped product could
    // pass the shape checks and then size an allocation).
    const long long q_dim = checked_mul(cfg.num_heads, cfg.head_dim, "num_attention_heads × head_dim");
    if (q_dim > k_max_q_dim)
        r.fail(error_code::config, r.present("head_dim") ? "head_dim" : "num_attention_heads",
               "gives num_attention_heads × head_dim = " + std::to_string(q_dim) + ", more than " +
                   std::to_string(k_max_q_dim) + " (no real model is this wide)");
    if (cfg.head_dim % 2 != 0)
        r.fail(error_code::config, r.present("head_dim") ? "head_dim" : "num_attention_heads",
               "gives head_dim " + std::to_string(cfg.head_dim) + ", which must be even for rotary embeddings");

    cfg.max_position_embeddings = r.integer("max_position_embeddings", false, 1, k_max_positions)
                                      .value_or(mistral ? 4096 * 32 : 2048);
    // Mistral's sliding-window attention (MistralConfig.sliding_window; null = none) equals ordinary causal
    // attention for sequences no longer than the window, so the usable context is capped at the window.
    if (auto window = r.integer("sliding_window", false, 1); window && !qwen && !gemma)
        cfg.max_position_embeddings = std::min(cfg.max_position_embeddings, *window);
    cfg.rms_norm_eps = r.number("rms_norm_eps", false, true).value_or(1e-6);
    // Gemma3TextConfig ties the head by default; the other families do not.
    cfg.tie_word_embeddings = r.boolean("tie_word_embeddings").value_or(gemma);
    if (gemma) {
        // Gemma3Attention: scaling = query_pre_attn_scalar**-0.5; Gemma3TextScaledWordEmbedding: hidden_size**0.5
        // as a float32 tensor.
        cfg.query_pre_attn_scalar = *r.number("query_pre_attn_scalar", true, true);
        cfg.embed_scale = double(float(std::sqrt(double(cfg.hidden_size))));
    }
    read_layer_types(r, root, *arch, cfg);

    // Special tokens: eos_token_id may be one id or a list (Llama 3.1 lists several).
    if (gemma) { // Gemma3TextConfig: bos 2, eos 1
        cfg.bos_token_id = 2;
        cfg.eos_token_ids = {1};
    }
    if (auto bos = r.integer("bos_token_id", false, 0)) cfg.bos_token_id = *bos;
    if (cfg.bos_token_id >= cfg.vocab_size)
        r.fail(error_code::config, "bos_token_id",
               "is " + std::to_string(cfg.bos_token_id) + ", outside the vocabulary (vocab_size " +
                   std::to_string(cfg.vocab_size) + ")");
    if (const json* eos = r.get("eos_token_id")) {
        std::vector<int> ids;
        auto bad = [&] {
            r.fail(error_code::config, "eos_token_id",
                   "must be a token id or a non-empty list of token ids, found " + found(*eos));
        };
        if (eos->is_array()) {
            if (eos->empty()) bad();
            for (const json& e : *eos) {
                if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > INT_MAX) bad();
                ids.push_back(int(e.get<int64_t>()));
            }
        } else {
            if (!eos->is_number_integer() || eos->get<int64_t>() < 0 || eos->get<int64_t>() > INT_MAX) bad();
            ids.push_back(int(eos->get<int64_t>()));
        }
        cfg.eos_token_ids = ids;
    }
    for (int id : cfg.eos_token_ids)
        if (id >= cfg.vocab_size)
            r.fail(error_code::config, "eos_token_id",
                   "contains " + std::to_string(id) + ", outside the vocabulary (vocab_size " +
                       std::to_string(cfg.vocab_size) + ")");

    // transformers v5 writes "dtype", older versions "torch_dtype".
    if (auto dt = r.string("torch_dtype", false)) cfg.torch_dtype = *dt;
    else if (auto dt5 = r.string("dtype", false)) cfg.torch_dtype = *dt5;

    // RoPE: transformers v5 `rope_parameters` {"rope_theta", "rope_type", ...}; older files have a top-level
    // `rope_theta` plus an optional `rope_scaling` {"rope_type"|"type", "factor", ...}.
    cfg.rope = rope_config{};
    cfg.rope.theta = r.number("rope_theta", false, true).value_or(10000.0);
    if (arch->local_rope) {
        read_local_rope(r, source, cfg);
    } else if (const json* rp = r.get("rope_parameters")) {
        if (!rp->is_object()) r.fail(error_code::config, "rope_parameters", "must be an object, found " + found(*rp));
        for (auto it = rp->begin(); it != rp->end(); ++it)
            if (it->is_object())
                r.fail(error_code::unsupported, "rope_parameters." + it.key(),
                       "is an object: per-layer-type rotary parameters are not supported by LLaMA models",
                       k_config_hint);
        field_reader rr(*rp, source, "rope_parameters.");
        if (auto th = rr.number("rope_theta", false, true)) cfg.rope.theta = *th;
        parse_rope_object(*rp, source, "rope_parameters", cfg.rope);
    } else if (const json* rs = r.get("rope_scaling")) {
        if (!rs->is_object())
            r.fail(error_code::config, "rope_scaling", "must be an object or null, found " + found(*rs));
        parse_rope_object(*rs, source, "rope_scaling", cfg.rope);
    }
    (void)cfg.parameter_count(); // every derived size in checked 64-bit arithmetic: refuses what would overflow
    return cfg;
}

model_config load_model_config(const std::string& config_json_path) {
    return parse_model_config(read_file_text(config_json_path,
                                             "a Hugging Face model directory must contain config.json"),
                              config_json_path);
}

bool model_config::any_sliding() const {
    return sliding_window > 0 &&
           std::find(sliding_layers.begin(), sliding_layers.end(), uint8_t(1)) != sliding_layers.end();
}

double model_config::attention_scale() const {
    return 1.0 / std::sqrt(query_pre_attn_scalar > 0 ? query_pre_attn_scalar : double(head_dim));
}

long long model_config::parameter_count() const {
    // Checked: a config built in code (not through parse_model_config's bounds) cannot print a wrapped count.
    const std::string what = "the parameter count";
    auto mul = [&](long long a, long long b) { return checked_mul(a, b, what); };
    auto add = [&](long long a, long long b) { return checked_add(a, b, what); };
    const long long C = hidden_size, H = intermediate_size, V = vocab_size;
    const long long Q = mul(num_heads, head_dim), KV = mul(num_kv_heads, head_dim);
    long long per_layer = C;                        // input_layernorm
    per_layer = add(per_layer, mul(C, Q));          // q_proj
    per_layer = add(per_layer, mul(2, mul(C, KV))); // k_proj, v_proj
    per_layer = add(per_layer, mul(Q, C));          // o_proj
    per_layer = add(per_layer, C);                  // post_attention_layernorm
    per_layer = add(per_layer, mul(3, mul(C, H)));  // gate_proj, up_proj, down_proj
    if (qkv_bias) per_layer = add(per_layer, add(Q, mul(2, KV)));
    if (o_bias) per_layer = add(per_layer, C);
    if (mlp_bias) per_layer = add(per_layer, add(mul(2, H), C));
    if (const architecture* a = find_architecture(model_type)) {
        if (a->qk_norm) per_layer = add(per_layer, mul(2, head_dim));
        if (a->sandwich_norms) per_layer = add(per_layer, mul(2, C));
    }
    const long long embed = mul(V, C);
    return add(add(add(embed, mul(num_layers, per_layer)), C), tie_word_embeddings ? 0 : embed);
}

std::vector<float> rope_inv_freq_local(const model_config& cfg) {
    if (!cfg.has_local_rope) return rope_inv_freq(cfg);
    model_config local = cfg;
    local.rope = cfg.rope_local;
    local.has_local_rope = false;
    return rope_inv_freq(local);
}

std::vector<float> rope_inv_freq(const model_config& cfg) {
    const int dim = cfg.head_dim;
    QLS_ASSERT(dim > 0 && dim % 2 == 0);
    // transformers _compute_default_rope_parameters:
    //   inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    // All float32 tensor arithmetic; the Python scalars (base, dim) take the tensor's dtype.
    const float base = float(cfg.rope.theta);
    std::vector<float> inv(size_t(dim / 2));
    for (int i = 0; i < dim / 2; ++i) {
        float exponent = float(2 * i) / float(dim);
        inv[size_t(i)] = 1.0f / std::pow(base, exponent);
    }
    const rope_config& rp = cfg.rope;
    if (rp.type == "default") return inv;
    if (rp.type == "linear") {
        // _compute_linear_scaling_rope_parameters: inv_freq /= factor
        const float factor = float(rp.factor);
        for (float& f : inv) f = f / factor;
        return inv;
    }
    if (rp.type == "llama3") {
        // _compute_llama3_parameters (transformers modeling_rope_utils.py), in float32 like the torch code:
        //   low_freq_wavelen = old_context_len / low_freq_factor
        //   high_freq_wavelen = old_context_len / high_freq_factor
        //   wavelen = 2 * math.pi / inv_freq
        //   inv_freq_llama = where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        //   smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        //   smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        //   is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        //   inv_freq_llama = where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
        const double old_context_len = double(rp.original_max_position_embeddings);
        const float low_freq_wavelen = float(old_context_len / rp.low_freq_factor);
        const float high_freq_wavelen = float(old_context_len / rp.high_freq_factor);
        const float factor = float(rp.factor);
        const float low = float(rp.low_freq_factor);
        const float span = float(rp.high_freq_factor - rp.low_freq_factor);
        const float two_pi = float(2.0 * std::numbers::pi);
        const float ctx = float(old_context_len);
        for (float& f : inv) {
            const float wavelen = two_pi / f;
            float scaled = wavelen > low_freq_wavelen ? f / factor : f;
            const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
            if (medium) {
                const float smooth = (ctx / wavelen - low) / span;
                const float a = (1.0f - smooth) * scaled / factor;
                const float b = smooth * scaled;
                scaled = a + b;
            }
            f = scaled;
        }
        return inv;
    }
    throw error(error_code::unsupported, "rotary embedding type \"" + rp.type + "\" is not supported",
                "supported rope types are \"default\", \"linear\" and \"llama3\"");
}

} // namespace qls
