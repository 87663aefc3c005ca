// PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors export and validated import; merged HF export.
//
// Checked against PEFT 0.21.2 (with transformers 5.24.0, torch 2.15.0; tests/data/peft/make_peft_fixture.py):
//   - peft/config.py PeftConfigMixin.save_pretrained: json.dumps(asdict(config), indent=2, sort_keys=True), sets turned
//     into lists (in set iteration order, which depends on Python's string hash seed), no trailing newline;
//     from_peft_type drops keys it does not know (forward compatibility), only "peft_type" is required.
//   - peft/tuners/lora/config.py LoraConfig: the field list and defaults written by peft_adapter_config_json below.
//   - peft/peft_model.py PeftModel.save_pretrained: inference_mode = True, base_model_name_or_path filled in,
//     safe_save_file(state_dict, "adapter_model.safetensors", metadata={"format": "pt"}).
//   - peft/utils/save_and_load.py get_peft_model_state_dict: keys "base_model.model." + module path + ".lora_A.weight"
//     (the adapter name ".default" removed).
//   - peft/tuners/tuners_utils.py check_target_module_exists: a target_modules list entry matches a module key equal to
//     it or ending in "." + entry; a string is re.fullmatch'ed; layers_to_transform picks layer indices; exclude_modules
//     removes matches. The keys are the base model's module names, e.g. "model.layers.0.self_attn.q_proj".
//   - peft/utils/constants.py: default target_modules for llama ["q_proj", "v_proj"]; "all-linear" shorthand.
#include "qls/peft.h"

#include "qls/error.h"
#include "qls/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>

namespace qls {

namespace fs = std::filesystem;

namespace {

using json = nlohmann::json;

constexpr const char* k_config_name = "adapter_config.json";
constexpr const char* k_weights_name = "adapter_model.safetensors";

// The PEFT release whose LoraConfig field set and defaults peft_adapter_config_json reproduces (its "peft_version").
constexpr const char* k_peft_format_version = "0.21.2";

const char* const k_adapter_hint =
    "a PEFT LoRA adapter directory holds adapter_config.json and adapter_model.safetensors as "
    "PeftModel.save_pretrained writes them; save the adapter again from the tool that trained it";

std::string strip_slashes(std::string d) {
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    return d;
}

std::string join(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

bool is_file(const std::string& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw error(error_code::io, "cannot open " + path + ": " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw error(error_code::io, "cannot read " + path);
    return ss.str();
}

// Atomic write: bytes to path + ".tmp", fsync, rename over path, fsync the folder (as safetensors_save does).
void write_file_atomic(const std::string& path, const std::string& bytes) {
    const std::string tmp = path + ".tmp";
    int fd = -1;
    // Throws with errno's text; removes the temporary file unless it was already renamed.
    auto fail = [&](const std::string& what, bool unlink_tmp = true) {
        const int e = errno;
        if (fd >= 0) ::close(fd);
        if (unlink_tmp) ::unlink(tmp.c_str());
        throw error(error_code::io, "cannot write " + path + ": " + what + ": " + std::strerror(e),
                    "check that the folder exists, is writable and the disk is not full");
    };
    do { fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644); } while (fd < 0 && errno == EINTR);
    if (fd < 0) fail("cannot create " + tmp, false);
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail("writing " + tmp + " failed");
        done += size_t(n);
    }
    if (::fsync(fd) != 0) fail("fsync of " + tmp + " failed");
    const int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail("closing " + tmp + " failed");
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming " + tmp + " failed");
    std::string dir = fs::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    // Some file systems cannot fsync a directory (EINVAL); the data are safe anyway.
    fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && ::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) fail("syncing " + dir + " failed", false);
    if (fd >= 0) ::close(fd);
}

void make_dir(const std::string& dir) {
    std::error_code ec;
    if (fs::is_directory(dir, ec)) return;
    if (fs::exists(dir, ec))
        throw error(error_code::io, "cannot export to " + dir + ": it exists and is not a directory",
                    "choose a new or existing folder as the output");
    fs::create_directories(dir, ec);
    if (ec)
        throw error(error_code::io, "cannot create the output folder " + dir + ": " + ec.message(),
                    "check that the parent folder exists and is writable");
}

// The shortest decimal that reads back as f (what Python prints for the same float32 value held as a double).
double shortest_double(float f) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, f);
    return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

// A float as PEFT would hold it: an int when integral (PEFT's lora_alpha is an int field), else a float.
json number_json(float f) {
    if (std::isfinite(f) && f == std::trunc(f) && std::fabs(f) < 9.0e15f) return json(int64_t(f));
    return json(shortest_double(f));
}

const char* section_of(lora_target t) {
    return (t == lora_target::gate || t == lora_target::up || t == lora_target::down) ? "mlp" : "self_attn";
}

// The base model's module key PEFT matches target_modules against: "model.layers.3.mlp.up_proj".
std::string module_key(int layer, lora_target t) {
    return "model.layers." + std::to_string(layer) + "." + section_of(t) + "." + lora_target_name(t);
}

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

std::string shown(const json& v) {
    std::string d = v.dump();
    if (d.size() > 80) d = d.substr(0, 77) + "...";
    return d + " (" + type_word(v) + ")";
}

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

} // namespace

std::string peft_tensor_name(int layer, lora_target t, bool b) {
    return "base_model.model." + module_key(layer, t) + (b ? ".lora_B.weight" : ".lora_A.weight");
}

// ---------------------------------------------------------------------------------------------------------------
// export

namespace {

// Which layers hold adapters, after checking every adapter against the model and the config. Throws when the set of
// adapters is not layers × config.targets (the only shape PEFT's target_modules + layers_to_transform express).
std::vector<int> check_exportable(const lora_weights<float>& w, const model_config& m, const std::string& what) {
    try {
        validate_lora(w.config);
    } catch (const error& e) {
        throw error(e.code(), what + ": " + e.what(), e.hint());
    }
    if (int(w.layers.size()) != m.num_layers)
        throw error(error_code::invalid_argument,
                    what + ": the LoRA weights have " + std::to_string(w.layers.size()) + " layers but the model has " +
                        std::to_string(m.num_layers),
                    "export the adapters with the model they were trained on");
    std::vector<int> layers;
    for (int l = 0; l < m.num_layers; ++l) {
        int count = 0;
        for (int ti = 0; ti < k_lora_target_count; ++ti) {
            const lora_target t = lora_target(ti);
            const lora_adapter<float>& ad = w.at(l, t);
            if (!ad.enabled()) continue;
            ++count;
            auto [in, out] = lora_in_out(m, t);
            const std::string where = std::string("layer ") + std::to_string(l) + " " + lora_target_name(t);
            if (!w.config.targets_has(t))
                throw error(error_code::invalid_argument,
                            what + ": " + where + " has an adapter but the LoRA config does not target " +
                                lora_target_name(t));
            if (ad.in != in || ad.out != out)
                throw error(error_code::shape_mismatch,
                            what + ": " + where + " adapter is " + std::to_string(ad.out) + "x" + std::to_string(ad.in) +
                                " but the model's projection is " + std::to_string(out) + "x" + std::to_string(in),
                            "export the adapters with the model they were trained on");
            if (ad.rank != w.config.rank)
                throw error(error_code::invalid_argument,
                            what + ": " + where + " adapter has rank " + std::to_string(ad.rank) +
                                " but the LoRA config says r = " + std::to_string(w.config.rank),
                            "PEFT adapters of one rank only are exported (no rank_pattern)");
            if (ad.a.size() != size_t(ad.rank) * size_t(in) || ad.b.size() != size_t(out) * size_t(ad.rank))
                throw error(error_code::internal, what + ": " + where + " adapter's A/B sizes disagree with its shape");
        }
        if (count == 0) continue;
        if (count != int(w.config.targets.size()))
            throw error(error_code::invalid_argument,
                        what + ": layer " + std::to_string(l) + " has adapters on " + std::to_string(count) + " of the " +
                            std::to_string(w.config.targets.size()) + " targeted projections",
                        "PEFT describes adapters as target_modules x layers_to_transform: every adapted layer needs "
                        "all targeted projections");
        layers.push_back(l);
    }
    if (layers.empty())
        throw error(error_code::invalid_argument, what + ": the LoRA weights hold no adapter",
                    "train or load an adapter before exporting");
    return layers;
}

std::vector<lora_target> sorted_targets(const lora_config& c) {
    std::vector<lora_target> t = c.targets;
    std::sort(t.begin(), t.end(), [](lora_target a, lora_target b) {
        return std::strcmp(lora_target_name(a), lora_target_name(b)) < 0;
    });
    return t;
}

} // namespace

namespace {

// `what` names the output in error messages.
std::string adapter_config_json(const lora_weights<float>& w, const model_config& m,
                                const std::string& base_model_name_or_path, const std::string& what) {
    const std::vector<int> layers = check_exportable(w, m, what);
    json targets = json::array();
    for (lora_target t : sorted_targets(w.config)) targets.push_back(lora_target_name(t));
    json layers_to_transform = nullptr;
    if (int(layers.size()) != m.num_layers) layers_to_transform = layers;

    // Every field LoraConfig (PEFT 0.21.2) writes, with its default unless this adapter sets it. std::map keys are
    // byte-sorted, which equals Python's sort_keys for these ASCII names.
    json c = json::object();
    c["alora_invocation_tokens"] = nullptr;
    c["alpha_pattern"] = json::object();
    c["arrow_config"] = nullptr;
    c["auto_mapping"] = nullptr;
    c["base_model_name_or_path"] = base_model_name_or_path;
    c["bias"] = "none";
    c["corda_config"] = nullptr;
    c["ensure_weight_tying"] = false;
    c["eva_config"] = nullptr;
    c["exclude_modules"] = nullptr;
    c["fan_in_fan_out"] = false;
    c["inference_mode"] = true;              // PeftModel.save_pretrained forces it
    c["init_lora_weights"] = true;
    c["kasa_config"] = nullptr;
    c["layer_replication"] = nullptr;
    c["layers_pattern"] = nullptr;
    c["layers_to_transform"] = layers_to_transform;
    c["loftq_config"] = json::object();
    c["lora_alpha"] = number_json(w.config.alpha);
    c["lora_bias"] = false;
    c["lora_dropout"] = shortest_double(w.config.dropout); // a Python float: 0.0, 0.05
    c["lora_ga_config"] = nullptr;
    c["megatron_config"] = nullptr;
    c["megatron_core"] = "megatron.core";
    c["modules_to_save"] = nullptr;
    c["monteclora_config"] = nullptr;
    c["peft_type"] = "LORA";
    c["peft_version"] = k_peft_format_version;
    c["qalora_group_size"] = 16;
    c["r"] = w.config.rank;
    c["rank_pattern"] = json::object();
    c["revision"] = nullptr;
    c["target_modules"] = targets;
    c["target_parameters"] = nullptr;
    c["task_type"] = "CAUSAL_LM";
    c["trainable_token_indices"] = nullptr;
    c["use_bdlora"] = nullptr;
    c["use_dora"] = false;
    c["use_qalora"] = false;
    c["use_rslora"] = w.config.use_rslora;
    c["velora_config"] = nullptr;
    // json.dumps(indent=2) layout; ensure_ascii like Python's default.
    return c.dump(2, ' ', true);
}

} // namespace

std::string peft_adapter_config_json(const lora_weights<float>& w, const model_config& m,
                                     const std::string& base_model_name_or_path) {
    return adapter_config_json(w, m, base_model_name_or_path, "adapter_config.json");
}

void export_peft(const std::string& out_dir_in, const lora_weights<float>& w, const model_config& m,
                 const std::string& base_model_name_or_path) {
    const std::string out_dir = strip_slashes(out_dir_in);
    const std::string config_path = join(out_dir, k_config_name);
    const std::string weights_path = join(out_dir, k_weights_name);
    // validates w before anything is written
    const std::string config_text =
        adapter_config_json(w, m, base_model_name_or_path, "cannot export the adapter to " + out_dir);
    make_dir(out_dir);

    std::vector<std::pair<std::string, tensor>> tensors;
    for (int l = 0; l < m.num_layers; ++l)
        for (lora_target t : all_lora_targets()) {
            const lora_adapter<float>& ad = w.at(l, t);
            if (!ad.enabled()) continue;
            tensors.emplace_back(peft_tensor_name(l, t, false), tensor::from_f32(ad.a, {ad.rank, ad.in}));
            tensors.emplace_back(peft_tensor_name(l, t, true), tensor::from_f32(ad.b, {ad.out, ad.rank}));
        }
    safetensors_save(weights_path, tensors, {{"format", "pt"}});
    write_file_atomic(config_path, config_text);
}

// ---------------------------------------------------------------------------------------------------------------
// import

namespace {

// Selected (layer, target) pairs as PEFT's check_target_module_exists decides them for this model's module keys.
lora_selection select_modules(const json& cfg, const model_config& m, const std::string& config_path) {
    const int L = m.num_layers;
    lora_selection sel;
    sel.on.assign(size_t(L), {});
    const std::string proj_list = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj";

    auto regex_of = [&](const std::string& field, const std::string& pattern) {
        try {
            return std::regex(pattern, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
            throw error(error_code::unsupported,
                        config_path + ": " + field + " is the regular expression \"" + pattern +
                            "\", which this engine cannot parse (" + e.what() + ")",
                        "write " + field + " as a list of module names, e.g. [\"q_proj\", \"v_proj\"]");
        }
    };
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
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
        if (lower == "all-linear") {
            for (auto& row : sel.on) row.fill(true); // every nn.Linear except the output embedding (lm_head)
        } else {
            std::regex re = regex_of("target_modules", s);
            bool any = false;
            for (int l = 0; l < L; ++l)
                for (lora_target t : all_lora_targets())
                    if (std::regex_match(module_key(l, t), re)) sel.on[size_t(l)][size_t(t)] = any = true;
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
                throw error(error_code::config, config_path + ": target_modules holds " + shown(e) + ", not a module name",
                            "target_modules must be a list of module names such as \"q_proj\"");
            const std::string entry = e.get<std::string>();
            bool any = false;
            for (int l = 0; l < L; ++l)
                for (lora_target t : all_lora_targets())
                    if (entry_matches(module_key(l, t), entry)) sel.on[size_t(l)][size_t(t)] = any = true;
            if (!any)
                throw error(error_code::unsupported,
                            config_path + ": target_modules lists \"" + entry +
                                "\", which is not one of the LLaMA projections this engine adapts (" + proj_list + ")",
                            "adapters on other modules (lm_head, embed_tokens, or another architecture's layers) cannot "
                            "be loaded; retrain with target_modules among those seven");
        }
    } else {
        throw error(error_code::config, config_path + ": target_modules is " + shown(tm) + ", expected a list of module names",
                    "write target_modules as a list, e.g. [\"q_proj\", \"v_proj\"]");
    }

    // layers_to_transform (only applies to list-form target_modules, as in PEFT)
    if (!is_unset(cfg, "layers_to_transform")) {
        const json& lt = cfg["layers_to_transform"];
        if (!list_form)
            throw error(error_code::config,
                        config_path + ": layers_to_transform cannot be combined with a string target_modules (PEFT refuses it too)",
                        "save the adapter again with PEFT");
        std::vector<json> idx = lt.is_array() ? std::vector<json>(lt.begin(), lt.end()) : std::vector<json>{lt};
        std::vector<bool> keep(size_t(L), false);
        for (const json& v : idx) {
            if (!v.is_number_integer())
                throw error(error_code::config, config_path + ": layers_to_transform holds " + shown(v) + ", not a layer index",
                            "layers_to_transform must be an integer or a list of integers");
            const int64_t i = v.get<int64_t>();
            if (i < 0 || i >= L)
                throw error(error_code::shape_mismatch,
                            config_path + ": layers_to_transform names layer " + std::to_string(i) + ", but this model has " +
                                std::to_string(L) + " layers (0.." + std::to_string(L - 1) + ")",
                            "the adapter was trained for a deeper model: load it on the base model named in "
                            "base_model_name_or_path");
            keep[size_t(i)] = true;
        }
        if (!is_unset(cfg, "layers_pattern")) {
            const json& lp = cfg["layers_pattern"];
            bool ok = (lp.is_string() && lp.get<std::string>() == "layers");
            if (lp.is_array()) for (const json& p : lp) ok = ok || (p.is_string() && p.get<std::string>() == "layers");
            if (!ok)
                throw error(error_code::unsupported,
                            config_path + ": layers_pattern is " + shown(lp) + "; LLaMA's decoder layers are \"layers\"",
                            "the adapter was made for another architecture");
        }
        for (int l = 0; l < L; ++l)
            if (!keep[size_t(l)]) sel.on[size_t(l)].fill(false);
    }

    // exclude_modules
    if (!is_unset(cfg, "exclude_modules")) {
        const json& ex = cfg["exclude_modules"];
        if (ex.is_string()) {
            std::regex re = regex_of("exclude_modules", ex.get<std::string>());
            for (int l = 0; l < L; ++l)
                for (lora_target t : all_lora_targets())
                    if (std::regex_match(module_key(l, t), re)) sel.on[size_t(l)][size_t(t)] = false;
        } else if (ex.is_array()) {
            for (const json& e : ex) {
                if (!e.is_string())
                    throw error(error_code::config, config_path + ": exclude_modules holds " + shown(e) + ", not a module name",
                                "exclude_modules must be a list of module names");
                for (int l = 0; l < L; ++l)
                    for (lora_target t : all_lora_targets())
                        if (entry_matches(module_key(l, t), e.get<std::string>())) sel.on[size_t(l)][size_t(t)] = false;
            }
        } else {
            throw error(error_code::config, config_path + ": exclude_modules is " + shown(ex), "exclude_modules must be a list or a string");
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
        throw error(error_code::io, "adapter directory " + dir + (fs::exists(dir, ec) ? " is not a directory" : " does not exist"),
                    k_adapter_hint);
    const std::string config_path = join(dir, k_config_name);
    const std::string weights_path = join(dir, k_weights_name);
    if (!is_file(config_path))
        throw error(error_code::io, config_path + " not found: " + dir + " is not a PEFT adapter directory", k_adapter_hint);

    json cfg;
    try {
        cfg = json::parse(read_bytes(config_path));
    } catch (const json::parse_error& e) {
        throw error(error_code::format, config_path + ": not valid JSON: " + e.what(), k_adapter_hint);
    }
    if (!cfg.is_object())
        throw error(error_code::format, config_path + ": expected a JSON object, found " + type_word(cfg), k_adapter_hint);

    // peft_type / task_type
    if (!cfg.contains("peft_type") || cfg["peft_type"].is_null())
        throw error(error_code::config, config_path + ": field 'peft_type' is missing (PEFT requires it)",
                    "a LoRA adapter's adapter_config.json says \"peft_type\": \"LORA\"");
    if (!cfg["peft_type"].is_string() || cfg["peft_type"].get<std::string>() != "LORA")
        throw error(error_code::unsupported,
                    config_path + ": peft_type is " + shown(cfg["peft_type"]) + "; only LoRA adapters (\"LORA\") can be loaded",
                    "this engine trains and loads LoRA adapters; other PEFT methods (AdaLoRA, IA3, prompt tuning, ...) "
                    "are not supported");
    if (!is_unset(cfg, "task_type") &&
        !(cfg["task_type"].is_string() && cfg["task_type"].get<std::string>() == "CAUSAL_LM"))
        throw error(error_code::unsupported,
                    config_path + ": task_type is " + shown(cfg["task_type"]) + "; only causal language-model adapters "
                    "(\"CAUSAL_LM\") can be loaded",
                    "adapters for classification or sequence-to-sequence heads do not apply to a causal LLaMA");

    // Features that change what the adapter computes, which lora_weights cannot represent.
    struct refused { const char* key; const char* what; };
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
            throw error(error_code::unsupported,
                        config_path + ": " + r.key + " is " + shown(cfg[r.key]) + "; " + r.what + " is not supported",
                        "only plain LoRA adapters (A, B, r, lora_alpha, optional rsLoRA) can be loaded; retrain without it "
                        "or merge the adapter into the base model with PEFT (merge_and_unload) and load that instead");
    if (cfg.contains("bias") && !cfg["bias"].is_null() &&
        !(cfg["bias"].is_string() && cfg["bias"].get<std::string>() == "none"))
        throw error(error_code::unsupported,
                    config_path + ": bias is " + shown(cfg["bias"]) + "; only \"none\" (no trained biases) is supported",
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
        throw error(error_code::config, config_path + ": lora_alpha is " + shown(cfg["lora_alpha"]) + ", expected a positive number",
                    "lora_alpha sets the adapter scale alpha/r");
    lc.alpha = float(alpha);
    const double dropout = number_field(cfg, "lora_dropout", 0.0, config_path);
    if (!(dropout >= 0 && dropout < 1))
        throw error(error_code::config, config_path + ": lora_dropout is " + shown(cfg["lora_dropout"]) + ", expected a value in [0, 1)",
                    "use 0.05-0.1, or 0 for none");
    lc.dropout = float(dropout);
    if (cfg.contains("use_rslora") && !cfg["use_rslora"].is_null()) {
        if (!cfg["use_rslora"].is_boolean())
            throw error(error_code::config, config_path + ": use_rslora is " + shown(cfg["use_rslora"]) + ", expected true or false",
                        "adapter_config.json is damaged; save the adapter again with PEFT");
        lc.use_rslora = cfg["use_rslora"].get<bool>();
    }

    const lora_selection sel = select_modules(cfg, m, config_path);
    lc.targets.clear();
    for (lora_target t : all_lora_targets())
        for (int l = 0; l < m.num_layers; ++l)
            if (sel.on[size_t(l)][size_t(t)]) { lc.targets.push_back(t); break; }
    if (lc.targets.empty())
        throw error(error_code::config, config_path + ": target_modules, layers_to_transform and exclude_modules select no module",
                    "the adapter adapts nothing; check adapter_config.json");
    validate_lora(lc);

    // The weights.
    if (!is_file(weights_path)) {
        if (is_file(join(dir, "adapter_model.bin")))
            throw error(error_code::unsupported,
                        weights_path + " not found; " + join(dir, "adapter_model.bin") + " (PyTorch pickle) is not supported",
                        "convert it once in Python: PeftModel.from_pretrained(base, \"" + dir +
                            "\").save_pretrained(OUT_DIR, safe_serialization=True)");
        throw error(error_code::io, weights_path + " not found: the adapter's weights are missing", k_adapter_hint);
    }
    const safetensors_file f = safetensors_file::open(weights_path);

    std::set<std::string> expected;
    for (int l = 0; l < m.num_layers; ++l)
        for (lora_target t : all_lora_targets())
            if (sel.on[size_t(l)][size_t(t)]) {
                expected.insert(peft_tensor_name(l, t, false));
                expected.insert(peft_tensor_name(l, t, true));
            }
    static const std::regex k_lora_name(R"(^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.([A-Za-z0-9_]+)\.lora_(A|B)\.weight$)");
    const std::string base_hint = cfg.contains("base_model_name_or_path") && cfg["base_model_name_or_path"].is_string()
                                      ? "load the adapter on the base model it was trained for (adapter_config.json names \"" +
                                            cfg["base_model_name_or_path"].get<std::string>() + "\")"
                                      : std::string("load the adapter on the base model it was trained for");
    for (const safetensors_entry& e : f.entries()) {
        if (expected.count(e.name)) continue;
        std::smatch mt;
        if (std::regex_match(e.name, mt, k_lora_name)) {
            const long long layer = std::stoll(mt[1].str().substr(0, 12));
            const auto target = lora_target_from_name(mt[3].str());
            const bool known = target && mt[2].str() == section_of(*target) && mt[3].str() == lora_target_name(*target);
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
                const std::string name = peft_tensor_name(l, t, is_b);
                const safetensors_entry* e = f.find(name);
                if (!e)
                    throw error(error_code::format,
                                weights_path + ": tensor '" + name + "' is missing, though " + config_path +
                                    " targets " + lora_target_name(t) + " in layer " + std::to_string(l),
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
                                        ", expected " + shape_str(want) + ": the adapter was trained for " + feat + " " +
                                        std::to_string(got_f) + ", this model has " + feat + " " + std::to_string(want_f),
                                    base_hint);
                    }
                    if (got_r != r)
                        throw error(error_code::shape_mismatch,
                                    weights_path + ": tensor '" + name + "' has rank " + std::to_string(got_r) +
                                        " (shape " + shape_str(e->shape) + "), but " + config_path + " says r = " +
                                        std::to_string(r),
                                    "adapter_config.json and adapter_model.safetensors come from different saves; save "
                                    "the adapter again with PEFT, or correct \"r\" if the config was edited by hand");
                }
                throw error(error_code::shape_mismatch, weights_path + ": tensor '" + name + "' " + problem, base_hint);
            }
            ad.in = in; ad.out = out; ad.rank = r;
            const tensor ta = f.read_f32(peft_tensor_name(l, t, false));
            const tensor tb = f.read_f32(peft_tensor_name(l, t, true));
            ad.a.assign(ta.f32(), ta.f32() + ta.numel());
            ad.b.assign(tb.f32(), tb.f32() + tb.numel());
            ad.da.assign(ad.a.size(), 0.0f);
            ad.db.assign(ad.b.size(), 0.0f);
        }
    return w;
}

// ---------------------------------------------------------------------------------------------------------------
// merged export

namespace {

// Position of a weight in LlamaForCausalLM.state_dict() order (embed, each layer's modules in registration order,
// final norm, lm_head), so shards fill in the order transformers' save_pretrained would fill them; unknown names last.
struct state_dict_rank {
    int group = 4;
    long long layer = 0;
    int within = 0;
    bool operator<(const state_dict_rank& o) const {
        return std::tie(group, layer, within) < std::tie(o.group, o.layer, o.within);
    }
};

state_dict_rank rank_of(const std::string& name) {
    static const std::regex k_layer(R"(^model\.layers\.(\d+)\.(.+)$)");
    static const char* const k_within[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                                           "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                                           "mlp.down_proj.weight", "input_layernorm.weight",
                                           "post_attention_layernorm.weight"};
    if (name == "model.embed_tokens.weight") return {0, 0, 0};
    if (name == "model.norm.weight") return {2, 0, 0};
    if (name == "lm_head.weight") return {3, 0, 0};
    std::smatch mt;
    if (std::regex_match(name, mt, k_layer)) {
        int w = 9;
        for (int i = 0; i < 9; ++i)
            if (mt[2].str() == k_within[i]) w = i;
        return {1, std::stoll(mt[1].str().substr(0, 12)), w};
    }
    return {4, 0, 0};
}

// The f32 projection weight a tensor name refers to in model.params, or nullptr with target untouched.
const std::vector<float>* projection_of(const llama_model& model, const std::string& name, int& layer, lora_target& target) {
    static const std::regex k_proj(R"(^model\.layers\.(\d+)\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.weight$)");
    std::smatch mt;
    if (!std::regex_match(name, mt, k_proj)) return nullptr;
    const long long l = std::stoll(mt[1].str().substr(0, 12));
    const auto t = lora_target_from_name(mt[3].str());
    if (!t || mt[2].str() != section_of(*t) || l >= model.config.num_layers) return nullptr;
    layer = int(l);
    target = *t;
    const llama_layer_params<float>& L = model.params.layers[size_t(l)];
    switch (*t) {
    case lora_target::q: return &L.wq;
    case lora_target::k: return &L.wk;
    case lora_target::v: return &L.wv;
    case lora_target::o: return &L.wo;
    case lora_target::gate: return &L.w_gate;
    case lora_target::up: return &L.w_up;
    case lora_target::down: return &L.w_down;
    }
    return nullptr;
}

void check_same_model(const model_config& a, const model_config& b, const std::string& base_dir) {
    const bool same = a.hidden_size == b.hidden_size && a.intermediate_size == b.intermediate_size &&
                      a.num_layers == b.num_layers && a.num_heads == b.num_heads && a.num_kv_heads == b.num_kv_heads &&
                      a.head_dim == b.head_dim && a.vocab_size == b.vocab_size;
    if (!same)
        throw error(error_code::invalid_argument,
                    "merged export: the model passed in does not have the dimensions of the checkpoint " + base_dir,
                    "pass the model that was loaded from this checkpoint");
}

} // namespace

void export_merged(const std::string& out_dir_in, const hf_checkpoint& base, const llama_model& model,
                   const lora_weights<float>& w, uint64_t max_shard_bytes) {
    const std::string out_dir = strip_slashes(out_dir_in);
    const model_config& m = model.config;
    check_same_model(base.config(), m, base.dir());
    if (max_shard_bytes == 0)
        throw error(error_code::invalid_argument, "merged export: the shard size limit must be positive");
    if (int(model.params.layers.size()) != m.num_layers)
        throw error(error_code::invalid_argument, "merged export: the model holds no weights for its " +
                                                      std::to_string(m.num_layers) + " layers",
                    "load the model's weights before exporting");
    (void)check_exportable(w, m, "merged export");
    {
        std::error_code ec1, ec2;
        if (fs::exists(out_dir, ec1) && fs::equivalent(out_dir, base.dir(), ec2))
            throw error(error_code::invalid_argument,
                        "merged export: the output folder " + out_dir + " is the base model's own folder",
                        "choose a new folder: the base weights are read while the merged ones are written");
    }
    make_dir(out_dir);
    const float scale = w.config.scale();

    // Plan shards the way huggingface_hub's split_state_dict_into_shards_factory does (used by save_pretrained):
    // walk the state dict in order; a tensor larger than the limit gets a shard of its own; otherwise start a new
    // shard when adding it would exceed the limit.
    std::vector<std::string> names = base.tensor_names();
    std::stable_sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
        const state_dict_rank ra = rank_of(a), rb = rank_of(b);
        if (ra < rb) return true;
        if (rb < ra) return false;
        return a < b;
    });
    std::vector<std::vector<std::string>> shards;
    std::vector<std::string> current;
    uint64_t current_size = 0, total_size = 0, total_parameters = 0;
    for (const std::string& n : names) {
        const safetensors_entry& e = base.entry(n);
        const uint64_t bytes = e.end - e.begin;
        total_size += bytes;
        total_parameters += uint64_t(shape_numel(e.shape));
        if (bytes > max_shard_bytes) { shards.push_back({n}); continue; }
        if (current_size + bytes > max_shard_bytes) { shards.push_back(current); current.clear(); current_size = 0; }
        current.push_back(n);
        current_size += bytes;
    }
    if (!current.empty()) shards.push_back(current);

    auto materialize = [&](const std::string& name) {
        const safetensors_entry& e = base.entry(name);
        int layer = 0;
        lora_target t = lora_target::q;
        const std::vector<float>* proj = projection_of(model, name, layer, t);
        tensor out(e.type, e.shape);
        if (!proj) {
            if (out.nbytes()) std::memcpy(out.raw(), base.file_of(name).bytes(e), out.nbytes());
            return out;
        }
        if (!dtype_is_float(e.type) || e.type == dtype::f64)
            throw error(error_code::unsupported,
                        base.file_of(name).path() + ": tensor '" + name + "' is stored as " + dtype_name(e.type) +
                            "; merged projections are written as F32, F16 or BF16");
        if (int64_t(proj->size()) != shape_numel(e.shape))
            throw error(error_code::invalid_argument,
                        "merged export: model weight for '" + name + "' has " + std::to_string(proj->size()) +
                            " values but the checkpoint's tensor has shape " + shape_str(e.shape),
                        "pass the model that was loaded from this checkpoint");
        std::vector<float> merged = *proj;
        const lora_adapter<float>& ad = w.at(layer, t);
        if (ad.enabled()) lora_merge(merged.data(), ad, scale);
        convert_from_f32(out.raw(), merged.data(), e.type, merged.size());
        return out;
    };

    std::set<std::string> written;
    const std::map<std::string, std::string> metadata{{"format", "pt"}};
    if (shards.size() <= 1) {
        std::vector<std::pair<std::string, tensor>> ts;
        for (const std::string& n : names) ts.emplace_back(n, materialize(n));
        safetensors_save(join(out_dir, "model.safetensors"), ts, metadata);
        written.insert("model.safetensors");
    } else {
        json weight_map = json::object();
        char fname[64];
        for (size_t s = 0; s < shards.size(); ++s) {
            std::snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
            std::vector<std::pair<std::string, tensor>> ts;
            for (const std::string& n : shards[s]) {
                ts.emplace_back(n, materialize(n));
                weight_map[n] = fname;
            }
            safetensors_save(join(out_dir, fname), ts, metadata);
            written.insert(fname);
        }
        // transformers 5 modeling_utils.py save_pretrained: {"metadata": {"total_parameters", "total_size"}, "weight_map"},
        // json.dumps(index, indent=2, sort_keys=True) + "\n".
        json index = {{"metadata", {{"total_parameters", total_parameters}, {"total_size", total_size}}},
                      {"weight_map", weight_map}};
        write_file_atomic(join(out_dir, "model.safetensors.index.json"), index.dump(2, ' ', true) + "\n");
        written.insert("model.safetensors.index.json");
    }

    // Remove weight files of an earlier export that the new layout does not use (transformers' save_pretrained
    // cleans its folder the same way), so that a loader does not pick up a stale model.safetensors.
    static const std::regex k_weight_file(R"(^(model\.safetensors|model\.safetensors\.index\.json|model-\d{5}-of-\d{5}\.safetensors)$)");
    std::error_code ec;
    for (fs::directory_iterator it(out_dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string n = it->path().filename().string();
        if (std::regex_match(n, k_weight_file) && !written.count(n)) {
            std::error_code rm;
            fs::remove(it->path(), rm);
            if (rm)
                throw error(error_code::io, "merged export: cannot remove the stale " + it->path().string() + ": " + rm.message(),
                            "delete it by hand: a loader could pick it instead of the new weights");
        }
    }

    for (const char* aux : {"config.json", "generation_config.json", "tokenizer.model", "tokenizer.json",
                            "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}) {
        const std::string src = join(base.dir(), aux);
        if (!is_file(src)) continue;
        write_file_atomic(join(out_dir, aux), read_bytes(src));
    }
}

} // namespace qls
