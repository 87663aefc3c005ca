// model_config — the LLaMA-family hyperparameters read from a Hugging Face config.json.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace qls {

// Rotary embedding frequency scaling as HF transformers names it ("rope_type"):
// default (none), linear (positions / factor), llama3 (Llama 3.1 wavelength-dependent scaling).
struct rope_config {
    double theta = 10000.0;
    std::string type = "default";
    double factor = 1.0;
    double low_freq_factor = 1.0;
    double high_freq_factor = 4.0;
    int original_max_position_embeddings = 8192;
};

struct model_config {
    std::string model_type = "llama";
    int hidden_size = 0;       // C
    int intermediate_size = 0; // H (MLP)
    int num_layers = 0;        // L
    int num_heads = 0;         // NH
    int num_kv_heads = 0;      // NKV (defaults to NH)
    int head_dim = 0;          // HS (defaults to C / NH)
    int vocab_size = 0;        // V
    int max_position_embeddings = 2048;
    double rms_norm_eps = 1e-6;
    rope_config rope;
    bool tie_word_embeddings = false;
    int bos_token_id = 1;
    std::vector<int> eos_token_ids{2};
    std::string torch_dtype = "float32";

    // Parameter count of the dense model (embeddings, all layers, final norm, LM head unless tied).
    long long parameter_count() const;
};

// Parses config.json text. `source` names the file in error messages. Accepts `rope_theta` (+ optional
// `rope_scaling`) and the newer `rope_parameters` object; rejects attention/MLP biases and unknown rope
// types with a clear message. Checks every dimension (positive, heads divide hidden size, NH % NKV == 0).
model_config parse_model_config(std::string_view json_text, const std::string& source);
model_config load_model_config(const std::string& config_json_path);

// Rotary inverse frequencies, HS/2 values: theta^(-2i/HS), then the rope_type's scaling.
// Reference: transformers modeling_rope_utils.py (_compute_default_rope_parameters,
// _compute_linear_scaling_rope_parameters, _compute_llama3_parameters).
std::vector<float> rope_inv_freq(const model_config& cfg);

} // namespace qls
