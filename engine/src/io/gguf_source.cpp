// gguf_source — the model_source of a GGUF file: the config from the architecture's metadata keys, weights under
// their Hugging Face names and layout (dequantized tensor by tensor, q/k rows un-permuted), the tokenizer and chat
// template from the metadata.
//
// Metadata → config mapping: llama.cpp src/llama-model.cpp (LLM_KV_*) and transformers integrations/ggml.py
// (GGUF_CONFIG_MAPPING["llama"]). q/k permutation: convert_hf_to_gguf.py LlamaModel.permute, undone as transformers
// modeling_gguf_pytorch_utils.py does (reverse_permute_weights).
#include "qls/architecture.h"
#include "qls/error.h"
#include "qls/gguf.h"
#include "qls/model_source.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

namespace qls {

namespace {

using json = nlohmann::json;

const architecture* architecture_for_gguf(const std::string& gguf_arch) {
    for (const architecture& a : architectures())
        if (a.gguf_arch == gguf_arch) return &a;
    return nullptr;
}

std::string supported_gguf_architectures() {
    std::string s;
    for (const architecture& a : architectures()) s += (s.empty() ? "" : ", ") + a.gguf_arch;
    return s;
}

// general.file_type as llama.cpp names it (llama.h enum llama_ftype, LLAMA_FTYPE_MOSTLY_*), shown as the dtype.
std::string file_type_name(int64_t ft) {
    static const std::map<int64_t, const char*> names = {
        {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},    {8, "Q5_0"},
        {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"},
        {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"},   {32, "BF16"},
    };
    auto it = names.find(ft);
    return "GGUF " + (it == names.end() ? "file type " + std::to_string(ft) : std::string(it->second));
}

// Hugging Face config.json field ← GGUF key, for the config built from the metadata (and for messages).
struct config_key {
    const char* hf;
    std::string gguf;
};

// Llama 3.1+ GGUFs carry their "llama3" rope scaling as a tensor: rope_freqs.weight, HS/2 f32 factors that divide
// the rotary frequencies (convert_hf_to_gguf.py LlamaModel.generate_extra_tensors; llama.cpp ggml_rope_ext
// freq_factors). The converter computes them from rope_scaling {factor, low_freq_factor 1, high_freq_factor 4} and
// original_max_position_embeddings 8192 (its defaults, which every Llama 3.x release uses); the factors are checked
// against that formula with factor = their maximum, and cfg.rope becomes the llama3 scaling they encode.
void read_rope_freqs(const gguf_file& f, model_config& cfg) {
    const gguf_tensor_info* t = f.find_tensor("rope_freqs.weight");
    if (!t) return;
    const int64_t half = cfg.head_dim / 2;
    if (t->type != ggml_type::f32 || t->dims != std::vector<int64_t>{half})
        throw error(error_code::format,
                    f.path() + ": tensor 'rope_freqs.weight' must be " + std::to_string(half) +
                        " F32 values (head size / 2), found " + std::to_string(t->numel()) + " " +
                        ggml_traits(uint32_t(t->type)).name + " values",
                    "convert the model again with llama.cpp's convert_hf_to_gguf.py");
    std::vector<float> rf(static_cast<size_t>(half));
    f.dequantize(*t, rf.data());
    float factor = 0;
    for (float x : rf) {
        if (!std::isfinite(x) || !(x > 0))
            throw error(error_code::format,
                        f.path() + ": tensor 'rope_freqs.weight' holds " + std::to_string(x) +
                            "; rotary frequency factors must be positive",
                        "the file is damaged; download or convert the model again");
        factor = std::max(factor, x);
    }
    if (factor == 1.0f) return; // all ones: no scaling
    if (cfg.rope.type != "default")
        throw error(error_code::unsupported,
                    f.path() + ": the metadata gives rope scaling \"" + cfg.rope.type +
                        "\" and the file also has per-frequency factors (rope_freqs.weight)",
                    "convert the model again with llama.cpp's convert_hf_to_gguf.py");
    rope_config r = cfg.rope;
    r.type = "llama3";
    r.factor = factor;
    r.low_freq_factor = 1.0;
    r.high_freq_factor = 4.0;
    r.original_max_position_embeddings = 8192;
    const double low_wavelen = r.original_max_position_embeddings / r.low_freq_factor;
    const double high_wavelen = r.original_max_position_embeddings / r.high_freq_factor;
    for (int64_t i = 0; i < half; ++i) {
        // freqs = 1 / base^(arange(0, HS, 2) / HS) in float32, as the converter computes them
        const float freq = 1.0f / std::pow(float(r.theta), float(2 * i) / float(cfg.head_dim));
        const double wavelen = 2 * M_PI / double(freq);
        double want = 1.0;
        if (wavelen > low_wavelen) {
            want = factor;
        } else if (!(wavelen < high_wavelen)) {
            const double smooth = (r.original_max_position_embeddings / wavelen - r.low_freq_factor) /
                                  (r.high_freq_factor - r.low_freq_factor);
            want = 1 / ((1 - smooth) / factor + smooth);
        }
        if (std::fabs(double(rf[size_t(i)]) - want) > 1e-4 * want)
            throw error(error_code::unsupported,
                        f.path() + ": tensor 'rope_freqs.weight' does not follow Llama 3's rope scaling (factor " +
                            std::to_string(factor) +
                            ", low_freq_factor 1, high_freq_factor 4, original context 8192): element " +
                            std::to_string(i) + " is " + std::to_string(rf[size_t(i)]) + ", expected " +
                            std::to_string(want),
                        "use the model's Hugging Face checkpoint (config.json + safetensors), which gives "
                        "rope_scaling explicitly");
    }
    cfg.rope = r;
}

// The model_config of the metadata: the architecture's keys as a config.json object, checked by parse_model_config
// (the same limits and consistency checks as a Hugging Face config). Errors name the GGUF key.
model_config read_config(const gguf_file& f, const architecture& arch, const std::string& a) {
    const std::string& path = f.path();
    json j = json::object();
    j["model_type"] = arch.model_types.front();
    const std::vector<config_key> ints = {
        {"num_hidden_layers", a + ".block_count"},
        {"hidden_size", a + ".embedding_length"},
        {"intermediate_size", a + ".feed_forward_length"},
        {"num_attention_heads", a + ".attention.head_count"},
        {"num_key_value_heads", a + ".attention.head_count_kv"},
        {"head_dim", a + ".attention.key_length"},
        {"max_position_embeddings", a + ".context_length"},
    };
    for (const config_key& k : ints) {
        const bool required = std::string(k.hf) != "num_key_value_heads" && std::string(k.hf) != "head_dim";
        if (!required && !f.has(k.gguf)) continue;
        j[k.hf] = f.get_uint32(k.gguf); // "is missing (expected an unsigned integer (uint32))" when absent
    }
    if (f.has(a + ".attention.value_length") && f.has(a + ".attention.key_length") &&
        f.get_uint32(a + ".attention.value_length") != f.get_uint32(a + ".attention.key_length"))
        throw error(error_code::unsupported,
                    path + ": metadata keys '" + a + ".attention.key_length' (" +
                        std::to_string(f.get_uint32(a + ".attention.key_length")) + ") and '" + a +
                        ".attention.value_length' (" + std::to_string(f.get_uint32(a + ".attention.value_length")) +
                        ") differ; the " + arch.family + " layers need equal key and value head sizes",
                    "choose a model of a supported family");
    if (f.has(a + ".rope.freq_base")) j["rope_theta"] = f.get_float(a + ".rope.freq_base");
    j["rms_norm_eps"] = f.get_float(a + ".attention.layer_norm_rms_epsilon");
    // Vocabulary: the tokenizer's token list (what llama.cpp uses), else <arch>.vocab_size.
    if (f.has("tokenizer.ggml.tokens")) j["vocab_size"] = f.array_size("tokenizer.ggml.tokens");
    else j["vocab_size"] = f.get_uint32(a + ".vocab_size");
    j["tie_word_embeddings"] = f.find_tensor(arch.gguf_name(base_tensor::lm_head)) == nullptr;
    if (f.has("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = f.get_uint32("tokenizer.ggml.bos_token_id");
    if (f.has("tokenizer.ggml.eos_token_id")) j["eos_token_id"] = f.get_uint32("tokenizer.ggml.eos_token_id");
    // RoPE scaling (llama.cpp LLM_KV_ROPE_SCALING_TYPE "none" | "linear" | "yarn" | "longrope"; the older
    // <arch>.rope.scale_linear is the linear factor).
    const std::string st = a + ".rope.scaling.type";
    if (f.has(st)) {
        const std::string type = f.get_string(st);
        if (type == "linear") {
            j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", f.get_float(a + ".rope.scaling.factor")}};
        } else if (type != "none") {
            throw error(error_code::unsupported,
                        path + ": metadata key '" + st + "' is \"" + type +
                            "\"; supported rotary scaling types are \"none\" and \"linear\"",
                        "YaRN and LongRoPE scaling are not implemented; choose a model without this rope scaling");
        }
    } else if (f.has(a + ".rope.scale_linear") && f.get_float(a + ".rope.scale_linear") != 1.0) {
        j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", f.get_float(a + ".rope.scale_linear")}};
    }
    if (f.has(a + ".rope.dimension_count")) {
        const uint32_t rd = f.get_uint32(a + ".rope.dimension_count");
        const uint32_t heads = f.get_uint32(a + ".attention.head_count");
        const uint32_t hd = f.has(a + ".attention.key_length") ? f.get_uint32(a + ".attention.key_length")
                            : heads                            ? f.get_uint32(a + ".embedding_length") / heads
                                                               : 0;
        if (rd != hd)
            throw error(error_code::unsupported,
                        path + ": metadata key '" + a + ".rope.dimension_count' is " + std::to_string(rd) +
                            ", not the head size " + std::to_string(hd) +
                            "; partial rotary embeddings are not supported",
                        "choose a model of a supported family");
    }
    if (f.has("general.file_type")) j["torch_dtype"] = file_type_name(f.get_int("general.file_type"));
    if (arch.family == "gemma3") {
        // llama.cpp src/llama-model.cpp (LLM_ARCH_GEMMA3): the window from <arch>.attention.sliding_window, every
        // 6th layer global (set_swa_pattern(6), Gemma3TextConfig's default too), local RoPE base 10000 (also the
        // config default), attention scale 1/sqrt(head size) except the 27B (62 layers): 1/sqrt(C / NH).
        if (f.has(a + ".attention.sliding_window")) j["sliding_window"] = f.get_uint32(a + ".attention.sliding_window");
        const uint32_t layers = f.get_uint32(a + ".block_count");
        const uint32_t heads = f.get_uint32(a + ".attention.head_count");
        if (layers == 62 && heads > 0) j["query_pre_attn_scalar"] = f.get_uint32(a + ".embedding_length") / heads;
        else if (f.has(a + ".attention.key_length"))
            j["query_pre_attn_scalar"] = f.get_uint32(a + ".attention.key_length");
    }

    const std::string source = path + " (metadata)";
    try {
        model_config cfg = parse_model_config(j.dump(), source);
        read_rope_freqs(f, cfg);
        return cfg;
    } catch (const error& e) {
        if (std::string(e.what()).rfind(source, 0) != 0) throw; // not a config.json-field message
        // "<path> (metadata): field 'hidden_size' ..." → name the GGUF key too.
        std::string msg = e.what();
        std::map<std::string, std::string> names;
        for (const config_key& k : ints) names[k.hf] = k.gguf;
        names["rms_norm_eps"] = a + ".attention.layer_norm_rms_epsilon";
        names["rope_theta"] = a + ".rope.freq_base";
        names["vocab_size"] = "tokenizer.ggml.tokens";
        names["bos_token_id"] = "tokenizer.ggml.bos_token_id";
        names["eos_token_id"] = "tokenizer.ggml.eos_token_id";
        names["rope_scaling.factor"] = a + ".rope.scaling.factor";
        names["sliding_window"] = a + ".attention.sliding_window";
        for (const auto& [hf, g] : names) {
            const std::string needle = "field '" + hf + "'";
            if (auto p = msg.find(needle); p != std::string::npos) {
                msg.replace(p, needle.size(), "metadata key '" + g + "' (config field " + hf + ")");
                break;
            }
        }
        throw error(e.code(), msg,
                    "the file's metadata describes an impossible model; convert the model again with llama.cpp's "
                    "convert_hf_to_gguf.py");
    }
}

class gguf_source final : public model_source {
public:
    explicit gguf_source(gguf_file file) : f_(std::move(file)) {
        const std::string& path = f_.path();
        const std::string a = f_.get_string("general.architecture");
        arch_ = architecture_for_gguf(a);
        if (!arch_)
            throw error(error_code::unsupported,
                        path + ": GGUF architecture \"" + a +
                            "\" is not supported yet (supported: " + supported_gguf_architectures() + ")",
                        "choose a GGUF of a supported family, or the model's Hugging Face checkpoint");
        cfg_ = read_config(f_, *arch_, a);

        // GGUF name → Hugging Face name, for every tensor the family has.
        std::map<std::string, std::string> hf_of;
        for (base_tensor t : {base_tensor::embed, base_tensor::final_norm, base_tensor::lm_head})
            hf_of[arch_->gguf_name(t)] = arch_->hf_name(t);
        for (int l = 0; l < cfg_.num_layers; ++l) {
            for (base_tensor t : arch_->layer_tensors()) hf_of[arch_->gguf_name(t, l)] = arch_->hf_name(t, l);
            for (lora_target t : arch_->projections) {
                const std::string g = arch_->gguf_weight(l, t);
                hf_of[g] = arch_->hf_weight(l, t);
                hf_of[arch_->gguf_bias(l, t)] = arch_->hf_bias(l, t);
                if (arch_->gguf_permutes_qk && t == lora_target::q) heads_of_[g] = cfg_.num_heads;
                if (arch_->gguf_permutes_qk && t == lora_target::k) heads_of_[g] = cfg_.num_kv_heads;
            }
        }
        // Gemma's (1 + w) norms: convert_hf_to_gguf.py (Gemma3Model.modify_tensors) stores every "*norm.weight" as
        // w + 1 (llama.cpp multiplies by the stored value); the engine keeps Hugging Face's w.
        if (arch_->norm == norm_kind::rms_one_plus) {
            shifted_.insert(arch_->gguf_name(base_tensor::final_norm));
            for (int l = 0; l < cfg_.num_layers; ++l)
                for (base_tensor t : arch_->layer_tensors()) shifted_.insert(arch_->gguf_name(t, l));
        }
        for (const gguf_tensor_info& t : f_.tensors()) {
            auto it = hf_of.find(t.name);
            const std::string name = it == hf_of.end() ? t.name : it->second;
            shape_t shape(t.dims.rbegin(), t.dims.rend()); // ne0-fastest → row-major (out, in)
            weights_.push_back({name, shape, ggml_traits(uint32_t(t.type)).name, t.bytes});
            by_hf_[name] = &t;
        }
    }

    const std::string& path() const override { return f_.path(); }
    std::string format() const override { return "gguf"; }
    const model_config& config() const override { return cfg_; }
    const std::vector<weight_info>& weights() const override { return weights_; }
    bool has(const std::string& name) const override { return by_hf_.count(name) != 0; }

    void read_f32(const std::string& name, const shape_t& expected, float* out) const override {
        auto it = by_hf_.find(name);
        if (it == by_hf_.end())
            throw error(error_code::format,
                        f_.path() + ": no tensor for '" + name + "' (the file has " +
                            std::to_string(f_.tensors().size()) + " tensors)",
                        "the file does not hold every weight of this architecture; convert the model again");
        const gguf_tensor_info& t = *it->second;
        const shape_t shape(t.dims.rbegin(), t.dims.rend());
        if (shape != expected)
            throw error(error_code::shape_mismatch,
                        f_.path() + ": tensor '" + t.name + "' ('" + name + "') has shape " + shape_str(shape) +
                            " but the metadata's config needs " + shape_str(expected),
                        "the file's tensors do not match its own metadata; convert the model again");
        f_.dequantize(t, out);
        if (auto h = heads_of_.find(t.name); h != heads_of_.end()) unpermute_rows(out, shape, h->second, t.name);
        const int64_t n = t.numel();
        if (shifted_.count(t.name))
            for (int64_t i = 0; i < n; ++i) out[i] -= 1.0f;
        int64_t bad = 0;
        while (bad < n && std::isfinite(out[bad])) ++bad;
        if (bad < n)
            throw error(error_code::format,
                        f_.path() + ": tensor '" + t.name + "' holds a non-finite value (" + std::to_string(out[bad]) +
                            " at element " + std::to_string(bad) + ")",
                        "the file's weights are damaged; download or convert the model again");
    }

    tokenizer load_tokenizer(std::string* which) const override {
        const gguf_vocab v = read_gguf_vocab(f_);
        if (int64_t(v.tokens.size()) != cfg_.vocab_size)
            throw error(error_code::shape_mismatch,
                        f_.path() + ": the tokenizer has " + std::to_string(v.tokens.size()) +
                            " tokens but the model's vocabulary is " + std::to_string(cfg_.vocab_size),
                        "convert the model again");
        tokenizer tok = tokenizer::from_gguf(v);
        if (which)
            *which = "GGUF metadata tokenizer.ggml.* (" + tok.kind() + "; model \"" + v.model + "\"" +
                     (v.pre.empty() ? "" : ", pre-tokenizer \"" + v.pre + "\"") + ")";
        return tok;
    }

    std::optional<chat_template_text> chat_template() const override {
        if (!f_.has("tokenizer.chat_template")) return std::nullopt;
        return chat_template_text{f_.get_string("tokenizer.chat_template"), "GGUF metadata tokenizer.chat_template"};
    }

private:
    static std::string shape_str(const shape_t& s) {
        std::string r = "(";
        for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
        return r + ")";
    }

    // llama.cpp stores q/k rows of each head interleaved: GGUF row h·HS + 2i + j holds HF row h·HS + j·HS/2 + i
    // (i < HS/2, j < 2). Undone per head in place: w.reshape(n_head, HS/2, 2, in).swapaxes(1, 2) (SOURCE.md).
    void unpermute_rows(float* w, const shape_t& shape, int n_head, const std::string& gguf_name) const {
        const int64_t rows = shape[0], cols = shape.size() > 1 ? shape[1] : 1;
        if (n_head <= 0 || rows % (2 * int64_t(n_head)) != 0)
            throw error(error_code::shape_mismatch,
                        f_.path() + ": tensor '" + gguf_name + "' has " + std::to_string(rows) +
                            " rows, which do not split into " + std::to_string(n_head) + " heads of an even size",
                        "the file's tensors do not match its own metadata; convert the model again");
        const int64_t hs = rows / n_head, half = hs / 2;
        for (int64_t h = 0; h < n_head; ++h) {
            std::vector<float> tmp(size_t(hs * cols));
            float* head = w + h * hs * cols;
            std::memcpy(tmp.data(), head, tmp.size() * sizeof(float));
            for (int64_t i = 0; i < half; ++i)
                for (int64_t j = 0; j < 2; ++j)
                    std::memcpy(head + (j * half + i) * cols, tmp.data() + (2 * i + j) * cols,
                                size_t(cols) * sizeof(float));
        }
    }

    gguf_file f_;
    const architecture* arch_ = nullptr;
    model_config cfg_;
    std::vector<weight_info> weights_;
    std::map<std::string, const gguf_tensor_info*> by_hf_;
    std::map<std::string, int> heads_of_; // GGUF name of a q/k weight → the head count its rows are permuted by
    std::set<std::string> shifted_;       // GGUF names of norms stored as 1 + w (Gemma)
};

} // namespace

std::unique_ptr<model_source> open_gguf_source(const std::string& file) {
    return std::make_unique<gguf_source>(gguf_file::open(file));
}

} // namespace qls
