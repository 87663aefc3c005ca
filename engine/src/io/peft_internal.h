// What peft_read.cpp, peft_write.cpp and peft_merge.cpp share: the adapter file names, PEFT's module keys and the
// export-side checks (adapters against the model, the output folder).
#pragma once

#include "qls/architecture.h" // defines: architecture (module paths, PEFT prefix)
#include "qls/lora.h"
#include "qls/model_config.h"

#include <string>
#include <vector>

namespace qls::peft_detail {

inline constexpr const char* k_config_name = "adapter_config.json";
inline constexpr const char* k_weights_name = "adapter_model.safetensors";

// dir without trailing slashes ("/" stays "/").
inline std::string strip_slashes(std::string d) {
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    return d;
}

// "mlp" for gate/up/down, "self_attn" for q/k/v/o (LLaMA): the submodule a projection lives in, from the table.
inline std::string section_of(const architecture& a, lora_target t) {
    const std::string& m = a.hf_projection[size_t(t)];
    return m.substr(0, m.find('.'));
}

// The base model's module key PEFT matches target_modules against: "model.layers.3.mlp.up_proj".
inline std::string module_key(const architecture& a, int layer, lora_target t) { return a.hf_module(layer, t); }

// Which layers hold adapters, after checking every adapter against the model and the config. Throws when the set of
// adapters is not layers × config.targets (the only shape PEFT's target_modules + layers_to_transform express).
// `what` starts every message. (peft_write.cpp)
std::vector<int> check_exportable(const lora_weights<float>& w, const model_config& m, const std::string& what);

// Creates the output folder dir (and its parents) unless it is there; refuses a path that is not a folder.
// (peft_write.cpp)
void make_dir(const std::string& dir);

} // namespace qls::peft_detail
