// PEFT LoRA adapter import: adapter_config.json validated field by field, module selection as PEFT decides it, and
// adapter_model.safetensors checked tensor by tensor against the model.
//
// Checked against PEFT 0.21.2 (with transformers 5.24.0, torch 2.15.0; tests/data/peft/make_peft_fixture.py):
//   - peft/config.py PeftConfigMixin.from_peft_type drops keys it does not know (forward compatibility), only
//     "peft_type" is required.
//   - peft/tuners/lora/config.py LoraConfig: defaults r = 8, lora_alpha = 8, lora_dropout = 0.0.
//   - peft/tuners/tuners_utils.py check_target_module_exists: a target_modules list entry matches a module key equal to
//     it or ending in "." + entry; a string is re.fullmatch'ed; layers_to_transform picks layer indices; exclude_modules
//     removes matches. The keys are the base model's module names, e.g. "model.layers.0.self_attn.q_proj".
//   - peft/utils/constants.py: default target_modules for llama ["q_proj", "v_proj"]; "all-linear" shorthand.
#include "qls/peft.h"

#include "io/peft_internal.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/json_input.h"
#include "qls/safetensors.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <nlohmann/json.hpp>
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <memory>
#include <regex>
#include <set>

namespace qls {

namespace fs = std::filesystem;
using namespace peft_detail;

namespace {

using json = nlohmann::json;

const char* const k_adapter_hint =
    "a PEFT LoRA adapter directory holds adapter_config.json and adapter_model.safetensors as "
    "PeftModel.save_pretrained writes them; save the adapter again from the tool that trained it";

// What the in/out features of a projection are called, for mismatch messages.
std::string in_feature_name(lora_target t) {
    if (t == lora_target::o) return "attention width (num_attention_heads x head_dim)";
    if (t == lora_target::down) return "intermediate size";
    return "hidden size";
}
std::string out_feature_name(lora_target t) {
    switch (t) {
    case lora_target::q: return "attention width (num_attention_heads x head_dim)";
    case lora_target::k:
    case lora_target::v: return "key/value width (num_key_value_heads x head_dim)";
    case lora_target::gate:
    case lora_target::up: return "intermediate size";
    default: return "hidden size";
    }
}

std::string type_word(const json& v) {
    switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "a list";
    case json::value_t::object: return "an object";
    default: return "a JSON value";
    }
}

std::string shown(const json& v) { return json_shown(v, 80) + " (" + type_word(v) + ")"; }

// A target_modules / exclude_modules string: PEFT re.fullmatch'es it against module names. The pattern is user
// text, so it runs on PCRE2 (no recursion on the C++ stack) with limits: its length, its parenthesis nesting, the
// match steps and the backtracking depth. A limit reached is a qls::error naming the file and the field.
class module_pattern {
public:
    static constexpr size_t max_length = 4096;
    static constexpr uint32_t parens_limit = 64;
    static constexpr uint32_t match_limit = 1'000'000;
    static constexpr uint32_t depth_limit = 10'000;
    static constexpr uint32_t heap_limit_kib = 64 * 1024;

    module_pattern(const std::string& pattern, const std::string& config_path, const std::string& field)
        : pattern_(pattern), where_(config_path + ": " + field) {
        const std::string hint = "write " + field + " as a list of module names, e.g. [\"q_proj\", \"v_proj\"]";
        if (pattern.size() > max_length)
            throw error(error_code::config,
                        where_ + " is a regular expression of " + std::to_string(pattern.size()) +
                            " characters, more than the " + std::to_string(max_length) + "-character limit",
                        hint);
        std::unique_ptr<pcre2_compile_context, decltype(&pcre2_compile_context_free)> cctx(
            pcre2_compile_context_create(nullptr), &pcre2_compile_context_free);
        if (!cctx) throw std::bad_alloc();
        pcre2_set_parens_nest_limit(cctx.get(), parens_limit);
        pcre2_set_max_pattern_length(cctx.get(), max_length);
        int code = 0;
        PCRE2_SIZE offset = 0;
        // Python's re.fullmatch: anchored at both ends; str patterns are Unicode.
        code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C, &code, &offset,
                              cctx.get());
        if (!code_)
            throw error(error_code::unsupported,
                        where_ + " is the regular expression \"" + shortened() +
                            "\", which this engine cannot parse (" + message(code) + " at offset " +
                            std::to_string(offset) + ")",
                        hint);
        mctx_ = pcre2_match_context_create(nullptr);
        data_ = pcre2_match_data_create_from_pattern(code_, nullptr);
        if (!mctx_ || !data_) {
            release();
            throw std::bad_alloc();
        }
        pcre2_set_match_limit(mctx_, match_limit);
        pcre2_set_depth_limit(mctx_, depth_limit);
        pcre2_set_heap_limit(mctx_, heap_limit_kib);
    }
    ~module_pattern() { release(); }
    module_pattern(const module_pattern&) = delete;
    module_pattern& operator=(const module_pattern&) = delete;

    bool full_match(const std::string& subject) const {
        const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0, data_,
                                   mctx_);
        if (rc >= 0) return true;
        if (rc == PCRE2_ERROR_NOMATCH) return false;
        const bool limit = rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT;
        throw error(error_code::config,
                    where_ + ": matching the regular expression \"" + shortened() + "\" against \"" + subject + "\" " +
                        (limit ? "hit the matching limit" : "failed") + " (" + message(rc) + ")",
                    "the pattern backtracks catastrophically (nested repetition such as (a+)+); write the field as a "
                    "list of module names, e.g. [\"q_proj\", \"v_proj\"], or as a simpler pattern");
    }

private:
    static std::string message(int code) {
        PCRE2_UCHAR buf[256];
        const int n = pcre2_get_error_message(code, buf, sizeof buf);
        return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<const char*>(buf));
    }
    std::string shortened() const { return pattern_.size() > 80 ? pattern_.substr(0, 77) + "..." : pattern_; }
    void release() {
        if (data_) pcre2_match_data_free(data_);
        if (mctx_) pcre2_match_context_free(mctx_);
        if (code_) pcre2_code_free(code_);
        data_ = nullptr;
        mctx_ = nullptr;
        code_ = nullptr;
    }

    std::string pattern_, where_;
    pcre2_code* code_ = nullptr;
    pcre2_match_context* mctx_ = nullptr;
    pcre2_match_data* data_ = nullptr;
};

// A field is "unset" when absent, null, false, or an empty string/list/object — PEFT's defaults for the optional
// features this engine does not implement.
bool is_unset(const json& cfg, const char* key) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return true;
    if (it->is_boolean()) return !it->get<bool>();
    if (it->is_string()) return it->get<std::string>().empty();
    if (it->is_array() || it->is_object()) return it->empty();
    return false;
}

struct lora_selection {
    std::vector<std::array<bool, k_lora_target_count>> on; // [L][target]
};

// Selected (layer, target) pairs as PEFT's check_target_module_exists decides them for this model's module keys.
lora_selection select_modules(const json& cfg, const model_config& m, const std::string& config_path) {
    const architecture& arch = architecture_for(m);
    const int L = m.num_layers;
    lora_selection sel;
    sel.on.assign(size_t(L), {});
    const std::string proj_list = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj";

    auto entry_matches = [](const std::string& key, const std::string& entry) {
        if (key == entry) return true;
        return key.size() > entry.size() + 1 && key.compare(key.size() - entry.size(), entry.size(), entry) == 0 &&
               key[key.size() - entry.size() - 1] == '.';
    };

    // target_modules
    json tm = cfg.contains("target_modules") ? cfg["target_modules"] : json(nullptr);
    const bool list_form = !tm.is_string();
    if (tm.is_null()) tm = json::array({"q_proj", "v_proj"}); // PEFT's default for llama (utils/constants.py)
    if (tm.is_string()) {
        const std::string s = tm.get<std::string>();
        std::string lower = s;
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char ch) { return char(std::tolower(ch)); });
        if (lower == "all-linear") {
            for (auto& row : sel.on) row.fill(true); // every nn.Linear except the output embedding (lm_head)
        } else {
            const module_pattern re(s, config_path, "target_modules");
            bool any = false;
            for (int l = 0; l < L; ++l)
                for (lora_target t : all_lora_targets())
                    if (re.full_match(module_key(arch, l, t))) sel.on[size_t(l)][size_t(t)] = any = true;
            if (!any)
                throw error(error_code::config,
                            config_path + ": target_modules \"" + s + "\" matches none of this model's projections",
                            "LoRA adapters are loaded for " + proj_list + " only");
        }
    } else if (tm.is_array()) {
        if (tm.empty())
            throw error(error_code::config, config_path + ": target_modules is empty",
                        "list the adapted projections, e.g. [\"q_proj\", \"v_proj\"]");
        for (const json& e : tm) {
            if (!e.is_string())
                throw error(error_code::config,
                            config_path + ": target_modules holds " + shown(e) + ", not a module name",
                            "target_modules must be a list of module names such as \"q_proj\"");
            const std::string entry = e.get<std::string>();
            bool any = false;
            for (int l = 0; l < L; ++l)
                for (lora_target t : all_lora_targets())
                    if (entry_matches(module_key(arch, l, t), entry)) sel.on[size_t(l)][size_t(t)] = any = true;
            if (!any)
                throw error(
                    error_code::unsupported,
                    config_path + ": target_modules lists \"" + entry +
                        "\", which is not one of the LLaMA projections this engine adapts (" + proj_list + ")",
                    "adapters on other modules (lm_head, embed_tokens, or another architecture's layers) cannot "
                    "be loaded; retrain with target_modules among those seven");
        }
    } else {
        throw error(error_code::config,
                    config_path + ": target_modules is " + shown(tm) + ", expected a list of module names",
                    "write target_modules as a list, e.g. [\"q_proj\", \"v_proj\"]");
    }

    // layers_to_transform (only applies to list-form target_modules, as in PEFT)
    if (!is_unset(cfg, "layers_to_transform")) {
        const json& lt = cfg["layers_to_transform"];
        if (!list_form)
            throw error(
                error_code::config,
                config_path +
                    ": layers_to_transform cannot be combined with a string target_modules (PEFT refuses it too)",
                "save the adapter again with PEFT");
        std::vector<json> idx = lt.is_array() ? std::vector<json>(lt.begin(), lt.end()) : std::vector<json>{lt};
        std::vector<bool> keep(size_t(L), false);
        for (const json& v : idx) {
            if (!v.is_number_integer())
                throw error(error_code::config,
                            config_path + ": layers_to_transform holds " + shown(v) + ", not a layer index",
                            "layers_to_transform must be an integer or a list of integers");
            const int64_t i = v.get<int64_t>();
            if (i < 0 || i >= L)
                throw error(error_code::shape_mismatch,
                            config_path + ": layers_to_transform names layer " + std::to_string(i) +
                                ", but this model has " + std::to_string(L) + " layers (0.." + std::to_string(L - 1) +
                                ")",
                            "the adapter was trained for a deeper model: load it on the base model named in "
                            "base_model_name_or_path");
            keep[size_t(i)] = true;
        }
        if (!is_unset(cfg, "layers_pattern")) {
            const json& lp = cfg["layers_pattern"];
            bool ok = (lp.is_string() && lp.get<std::string>() == "layers");
            if (lp.is_array())
                for (const json& p : lp) ok = ok || (p.is_string() && p.get<std::string>() == "layers");
            if (!ok)
                throw error(error_code::unsupported,
                            config_path + ": layers_pattern is " + shown(lp) +
                                "; LLaMA's decoder layers are \"layers\"",
                            "the adapter was made for another architecture");
        }
        for (int l = 0; l < L; ++l)
            if (!keep[size_t(l)]) sel.on[size_t(l)].fill(false);
    }

    // exclude_modules
    if (!is_unset(cfg, "exclude_modules")) {
        const json& ex = cfg["exclude_modules"];
        if (ex.is_string()) {
            const module_pattern re(ex.get<std::string>(), config_path, "exclude_modules");
            for (int l = 0; l < L; ++l)
                for (lora_target t : all_lora_targets())
                    if (re.full_match(module_key(arch, l, t))) sel.on[size_t(l)][size_t(t)] = false;
        } else if (ex.is_array()) {
            for (const json& e : ex) {
                if (!e.is_string())
                    throw error(error_code::config,
                                config_path + ": exclude_modules holds " + shown(e) + ", not a module name",
                                "exclude_modules must be a list of module names");
                for (int l = 0; l < L; ++l)
                    for (lora_target t : all_lora_targets())
                        if (entry_matches(module_key(arch, l, t), e.get<std::string>()))
                            sel.on[size_t(l)][size_t(t)] = false;
            }
        } else {
            throw error(error_code::config, config_path + ": exclude_modules is " + shown(ex),
                        "exclude_modules must be a list or a string");
        }
    }
    return sel;
}

double number_field(const json& cfg, const char* key, double dflt, const std::string& config_path) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return dflt;
    if (!it->is_number())
        throw error(error_code::config, config_path + ": " + key + " is " + shown(*it) + ", expected a number",
                    "adapter_config.json is damaged; save the adapter again with PEFT");
    return it->get<double>();
}

} // namespace

lora_weights<float> load_peft(const std::string& dir_in, const model_config& m) {
    const std::string dir = strip_slashes(dir_in);
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw error(error_code::io,
                    "adapter directory " + dir + (fs::exists(dir, ec) ? " is not a directory" : " does not exist"),
                    k_adapter_hint);
    const std::string config_path = path_join(dir, k_config_name);
    const std::string weights_path = path_join(dir, k_weights_name);
    if (!path_is_file(config_path))
        throw error(error_code::io, config_path + " not found: " + dir + " is not a PEFT adapter directory",
                    k_adapter_hint);

    const json cfg = parse_json_input(read_file_text(config_path, k_adapter_hint), config_path, k_adapter_hint);
    if (!cfg.is_object())
        throw error(error_code::format, config_path + ": expected a JSON object, found " + type_word(cfg),
                    k_adapter_hint);

    // peft_type / task_type
    if (!cfg.contains("peft_type") || cfg["peft_type"].is_null())
        throw error(error_code::config, config_path + ": field 'peft_type' is missing (PEFT requires it)",
                    "a LoRA adapter's adapter_config.json says \"peft_type\": \"LORA\"");
    if (!cfg["peft_type"].is_string() || cfg["peft_type"].get<std::string>() != "LORA")
        throw error(error_code::unsupported,
                    config_path + ": peft_type is " + shown(cfg["peft_type"]) +
                        "; only LoRA adapters (\"LORA\") can be loaded",
                    "this engine trains and loads LoRA adapters; other PEFT methods (AdaLoRA, IA3, prompt tuning, ...) "
                    "are not supported");
    if (!is_unset(cfg, "task_type") &&
        !(cfg["task_type"].is_string() && cfg["task_type"].get<std::string>() == "CAUSAL_LM"))
        throw error(error_code::unsupported,
                    config_path + ": task_type is " + shown(cfg["task_type"]) +
                        "; only causal language-model adapters "
                        "(\"CAUSAL_LM\") can be loaded",
                    "adapters for classification or sequence-to-sequence heads do not apply to a causal LLaMA");

    // Features that change what the adapter computes, which lora_weights cannot represent.
    struct refused {
        const char* key;
        const char* what;
    };
    static constexpr refused k_refused[] = {
        {"use_dora", "DoRA (weight-decomposed LoRA, an extra magnitude vector per module)"},
        {"lora_bias", "a bias on lora_B"},
        {"rank_pattern", "per-module ranks (rank_pattern)"},
        {"alpha_pattern", "per-module alphas (alpha_pattern)"},
        {"modules_to_save", "fully trained extra modules (modules_to_save)"},
        {"fan_in_fan_out", "transposed (Conv1D, GPT-2 style) weights"},
        {"layer_replication", "replicated layers (layer_replication)"},
        {"target_parameters", "adapters on raw parameters (target_parameters)"},
        {"trainable_token_indices", "trainable token embeddings (trainable_token_indices)"},
        {"use_qalora", "QA-LoRA pooling (use_qalora)"},
        {"alora_invocation_tokens", "activated LoRA (alora_invocation_tokens)"},
        {"monteclora_config", "MonteCLoRA sampling (monteclora_config)"},
        {"use_bdlora", "block-diagonal LoRA (use_bdlora)"},
        {"arrow_config", "Arrow routing (arrow_config)"},
        {"kasa_config", "KaSA (kasa_config, which truncates the base weights)"},
    };
    for (const refused& r : k_refused)
        if (!is_unset(cfg, r.key))
            throw error(
                error_code::unsupported,
                config_path + ": " + r.key + " is " + shown(cfg[r.key]) + "; " + r.what + " is not supported",
                "only plain LoRA adapters (A, B, r, lora_alpha, optional rsLoRA) can be loaded; retrain without it "
                "or merge the adapter into the base model with PEFT (merge_and_unload) and load that instead");
    if (cfg.contains("bias") && !cfg["bias"].is_null() &&
        !(cfg["bias"].is_string() && cfg["bias"].get<std::string>() == "none"))
        throw error(error_code::unsupported,
                    config_path + ": bias is " + shown(cfg["bias"]) +
                        "; only \"none\" (no trained biases) is supported",
                    "LLaMA projections have no biases; retrain with bias=\"none\"");
    // Initialisations that rewrite the base weights: the adapter then only works on that modified base model.
    if (cfg.contains("init_lora_weights") && cfg["init_lora_weights"].is_string()) {
        const std::string init = cfg["init_lora_weights"].get<std::string>();
        if (init != "gaussian" && init != "eva" && init != "orthogonal")
            throw error(error_code::unsupported,
                        config_path + ": init_lora_weights is \"" + init +
                            "\", which initialises by modifying the base weights; the adapter does not apply to the "
                            "original base model",
                        "convert the adapter with PEFT's save_pretrained(path_initial_model_for_weight_conversion=...) "
                        "or merge it (merge_and_unload) and load the merged model");
    }

    // r, lora_alpha, lora_dropout, use_rslora (PEFT defaults: 8, 8, 0.0, false)
    lora_config lc;
    {
        auto it = cfg.find("r");
        int64_t r = 8;
        if (it != cfg.end() && !it->is_null()) {
            if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > (1 << 20))
                throw error(error_code::config, config_path + ": r is " + shown(*it) + ", expected a positive integer",
                            "r is the LoRA rank; save the adapter again with PEFT");
            r = it->get<int64_t>();
        }
        lc.rank = int(r);
    }
    const double alpha = number_field(cfg, "lora_alpha", 8.0, config_path);
    if (!(alpha > 0) || !std::isfinite(alpha))
        throw error(error_code::config,
                    config_path + ": lora_alpha is " + shown(cfg["lora_alpha"]) + ", expected a positive number",
                    "lora_alpha sets the adapter scale alpha/r");
    lc.alpha = float(alpha);
    const double dropout = number_field(cfg, "lora_dropout", 0.0, config_path);
    if (!(dropout >= 0 && dropout < 1))
        throw error(error_code::config,
                    config_path + ": lora_dropout is " + shown(cfg["lora_dropout"]) + ", expected a value in [0, 1)",
                    "use 0.05-0.1, or 0 for none");
    lc.dropout = float(dropout);
    if (cfg.contains("use_rslora") && !cfg["use_rslora"].is_null()) {
        if (!cfg["use_rslora"].is_boolean())
            throw error(error_code::config,
                        config_path + ": use_rslora is " + shown(cfg["use_rslora"]) + ", expected true or false",
                        "adapter_config.json is damaged; save the adapter again with PEFT");
        lc.use_rslora = cfg["use_rslora"].get<bool>();
    }

    const lora_selection sel = select_modules(cfg, m, config_path);
    lc.targets.clear();
    for (lora_target t : all_lora_targets())
        for (int l = 0; l < m.num_layers; ++l)
            if (sel.on[size_t(l)][size_t(t)]) {
                lc.targets.push_back(t);
                break;
            }
    if (lc.targets.empty())
        throw error(error_code::config,
                    config_path + ": target_modules, layers_to_transform and exclude_modules select no module",
                    "the adapter adapts nothing; check adapter_config.json");
    validate_lora(lc);

    // The weights.
    if (!path_is_file(weights_path)) {
        if (path_is_file(path_join(dir, "adapter_model.bin")))
            throw error(error_code::unsupported,
                        weights_path + " not found; " + path_join(dir, "adapter_model.bin") +
                            " (PyTorch pickle) is not supported",
                        "convert it once in Python: PeftModel.from_pretrained(base, \"" + dir +
                            "\").save_pretrained(OUT_DIR, safe_serialization=True)");
        throw error(error_code::io, weights_path + " not found: the adapter's weights are missing", k_adapter_hint);
    }
    const safetensors_file f = safetensors_file::open(weights_path);

    const architecture& arch = architecture_for(m);
    std::set<std::string> expected;
    for (int l = 0; l < m.num_layers; ++l)
        for (lora_target t : all_lora_targets())
            if (sel.on[size_t(l)][size_t(t)]) {
                expected.insert(arch.peft_name(l, t, false));
                expected.insert(arch.peft_name(l, t, true));
            }
    // "<peft prefix><layer prefix><l>.<module path>.lora_A|B.weight" (architecture.h)
    auto escaped = [](const std::string& x) {
        return std::regex_replace(x, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)");
    };
    const std::regex k_lora_name("^" + escaped(arch.peft_prefix + arch.hf_layer_prefix) +
                                 R"((\d+)\.([A-Za-z0-9_.]+)\.lora_(A|B)\.weight$)");
    const std::string base_hint =
        cfg.contains("base_model_name_or_path") && cfg["base_model_name_or_path"].is_string()
            ? "load the adapter on the base model it was trained for (adapter_config.json names \"" +
                  cfg["base_model_name_or_path"].get<std::string>() + "\")"
            : std::string("load the adapter on the base model it was trained for");
    for (const safetensors_entry& e : f.entries()) {
        if (expected.count(e.name)) continue;
        std::smatch mt;
        if (std::regex_match(e.name, mt, k_lora_name)) {
            const long long layer = std::stoll(mt[1].str().substr(0, 12));
            bool known = false;
            for (lora_target t : arch.projections) known = known || mt[2].str() == arch.hf_projection[size_t(t)];
            if (known && layer >= m.num_layers)
                throw error(error_code::shape_mismatch,
                            weights_path + ": tensor '" + e.name + "' adapts layer " + std::to_string(layer) +
                                ", but this model has " + std::to_string(m.num_layers) +
                                " layers: the adapter was trained for a deeper model",
                            base_hint);
            if (known)
                throw error(error_code::format,
                            weights_path + ": tensor '" + e.name + "' adapts a module that " + config_path +
                                " does not select (target_modules / layers_to_transform / exclude_modules)",
                            "adapter_config.json and adapter_model.safetensors come from different saves; save the "
                            "adapter again with PEFT");
        }
        throw error(error_code::unsupported,
                    weights_path + ": unexpected tensor '" + e.name +
                        "': only lora_A/lora_B weights of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj and "
                        "down_proj are loaded",
                    "adapters with DoRA magnitudes, embedding or lm_head adapters, biases or extra saved modules are "
                    "not supported; merge such an adapter with PEFT (merge_and_unload) and load the merged model");
    }

    lora_weights<float> w;
    w.config = lc;
    w.layers.resize(size_t(m.num_layers));
    const int r = lc.rank;
    for (int l = 0; l < m.num_layers; ++l)
        for (lora_target t : all_lora_targets()) {
            if (!sel.on[size_t(l)][size_t(t)]) continue;
            auto [in, out] = lora_in_out(m, t);
            lora_adapter<float>& ad = w.at(l, t);
            for (bool is_b : {false, true}) {
                const std::string name = arch.peft_name(l, t, is_b);
                const safetensors_entry* e = f.find(name);
                if (!e)
                    throw error(
                        error_code::format,
                        weights_path + ": tensor '" + name + "' is missing, though " + config_path + " targets " +
                            lora_target_name(t) + " in layer " + std::to_string(l),
                        "the file is incomplete or belongs to another adapter; save the adapter again with PEFT");
                if (e->type != dtype::f32 && e->type != dtype::f16 && e->type != dtype::bf16)
                    throw error(error_code::unsupported,
                                weights_path + ": tensor '" + name + "' is stored as " + dtype_name(e->type) +
                                    "; LoRA weights must be F32, F16 or BF16",
                                "save the adapter again with PEFT (it stores float32 adapters by default)");
                const shape_t want = is_b ? shape_t{out, r} : shape_t{r, in};
                if (e->shape == want) continue;
                std::string problem;
                if (e->shape.size() != 2) {
                    problem = "has shape " + shape_str(e->shape) + ", expected " + shape_str(want);
                } else {
                    const int64_t got_r = is_b ? e->shape[1] : e->shape[0];
                    const int64_t got_f = is_b ? e->shape[0] : e->shape[1];
                    const int64_t want_f = is_b ? out : in;
                    if (got_f != want_f) {
                        const std::string feat = is_b ? out_feature_name(t) : in_feature_name(t);
                        throw error(error_code::shape_mismatch,
                                    weights_path + ": tensor '" + name + "' has shape " + shape_str(e->shape) +
                                        ", expected " + shape_str(want) + ": the adapter was trained for " + feat +
                                        " " + std::to_string(got_f) + ", this model has " + feat + " " +
                                        std::to_string(want_f),
                                    base_hint);
                    }
                    if (got_r != r)
                        throw error(error_code::shape_mismatch,
                                    weights_path + ": tensor '" + name + "' has rank " + std::to_string(got_r) +
                                        " (shape " + shape_str(e->shape) + "), but " + config_path +
                                        " says r = " + std::to_string(r),
                                    "adapter_config.json and adapter_model.safetensors come from different saves; save "
                                    "the adapter again with PEFT, or correct \"r\" if the config was edited by hand");
                }
                throw error(error_code::shape_mismatch, weights_path + ": tensor '" + name + "' " + problem, base_hint);
            }
            ad.in = in;
            ad.out = out;
            ad.rank = r;
            const tensor ta = f.read_weight_f32(arch.peft_name(l, t, false));
            const tensor tb = f.read_weight_f32(arch.peft_name(l, t, true));
            ad.a.assign(ta.f32(), ta.f32() + ta.numel());
            ad.b.assign(tb.f32(), tb.f32() + tb.numel());
            ad.da.assign(ad.a.size(), 0.0f);
            ad.db.assign(ad.b.size(), 0.0f);
        }
    return w;
}

} // namespace qls
