// PEFT LoRA adapter export: adapter_config.json (every LoraConfig field PEFT writes) + adapter_model.safetensors.
//
// Checked against PEFT 0.21.2 (with transformers 5.24.0, torch 2.15.0; tests/data/peft/make_peft_fixture.py):
//   - peft/config.py PeftConfigMixin.save_pretrained: json.dumps(asdict(config), indent=2, sort_keys=True), sets turned
//     into lists (in set iteration order, which depends on Python's string hash seed), no trailing newline.
//   - peft/tuners/lora/config.py LoraConfig: the field list and defaults written by peft_adapter_config_json below.
//   - peft/peft_model.py PeftModel.save_pretrained: inference_mode = True, base_model_name_or_path filled in,
//     safe_save_file(state_dict, "adapter_model.safetensors", metadata={"format": "pt"}).
//   - peft/utils/save_and_load.py get_peft_model_state_dict: keys "base_model.model." + module path + ".lora_A.weight"
//     (the adapter name ".default" removed).
#include "qls/peft.h"

#include "io/peft_internal.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace qls {

namespace fs = std::filesystem;
using namespace peft_detail;

namespace {

using json = nlohmann::json;

// The PEFT release whose LoraConfig field set and defaults peft_adapter_config_json reproduces (its "peft_version").
constexpr const char* k_peft_format_version = "0.21.2";

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

} // namespace

namespace peft_detail {

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
                throw error(error_code::invalid_argument, what + ": " + where +
                                                              " has an adapter but the LoRA config does not target " +
                                                              lora_target_name(t));
            if (ad.in != in || ad.out != out)
                throw error(error_code::shape_mismatch,
                            what + ": " + where + " adapter is " + std::to_string(ad.out) + "x" +
                                std::to_string(ad.in) + " but the model's projection is " + std::to_string(out) + "x" +
                                std::to_string(in),
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
                        what + ": layer " + std::to_string(l) + " has adapters on " + std::to_string(count) +
                            " of the " + std::to_string(w.config.targets.size()) + " targeted projections",
                        "PEFT describes adapters as target_modules x layers_to_transform: every adapted layer needs "
                        "all targeted projections");
        layers.push_back(l);
    }
    if (layers.empty())
        throw error(error_code::invalid_argument, what + ": the LoRA weights hold no adapter",
                    "train or load an adapter before exporting");
    return layers;
}

} // namespace peft_detail

std::string peft_tensor_name(int layer, lora_target t, bool b) {
    // the first (LLaMA) family's names: also the optimizer state's parameter keys, the same for every family
    return architectures().front().peft_name(layer, t, b);
}

// ---------------------------------------------------------------------------------------------------------------
// export

namespace {

std::vector<lora_target> sorted_targets(const lora_config& c) {
    std::vector<lora_target> t = c.targets;
    std::sort(t.begin(), t.end(),
              [](lora_target a, lora_target b) { return std::strcmp(lora_target_name(a), lora_target_name(b)) < 0; });
    return t;
}

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
    c["inference_mode"] = true; // PeftModel.save_pretrained forces it
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
    const std::string config_path = path_join(out_dir, k_config_name);
    const std::string weights_path = path_join(out_dir, k_weights_name);
    // validates w before anything is written
    const std::string config_text = adapter_config_json(w, m, base_model_name_or_path,
                                                        "cannot export the adapter to " + out_dir);
    make_dir(out_dir);

    const architecture& arch = architecture_for(m); // PEFT's tensor names
    std::vector<std::pair<std::string, tensor>> tensors;
    for (int l = 0; l < m.num_layers; ++l)
        for (lora_target t : all_lora_targets()) {
            const lora_adapter<float>& ad = w.at(l, t);
            if (!ad.enabled()) continue;
            tensors.emplace_back(arch.peft_name(l, t, false), tensor::from_f32(ad.a, {ad.rank, ad.in}));
            tensors.emplace_back(arch.peft_name(l, t, true), tensor::from_f32(ad.b, {ad.out, ad.rank}));
        }
    safetensors_save(weights_path, tensors, {{"format", "pt"}});
    write_file_atomic(config_path, config_text);
}

} // namespace qls
