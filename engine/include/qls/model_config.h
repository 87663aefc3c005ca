// model_config — the hyperparameters of a supported family (LLaMA, Mistral, Qwen2/3, Gemma 3) read from a Hugging Face
// config.json or a GGUF file's metadata.
#pragma once

#include <cstdint>
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

    // Family specifics (architecture.h says which family has which).
    std::string hidden_act = "silu"; // "silu" (SwiGLU) or "gelu_pytorch_tanh" (GeGLU, Gemma 3)
    bool qkv_bias = false;           // q/k/v_proj carry biases (Qwen2; attention_bias)
    bool o_bias = false;             // o_proj carries a bias (attention_bias outside Qwen2)
    bool mlp_bias = false;           // gate/up/down_proj carry biases (mlp_bias)
    // Attention scores are scaled by query_pre_attn_scalar^-0.5 (Gemma 3); 0: head_dim^-0.5.
    double query_pre_attn_scalar = 0;
    // Sliding-window attention: a query at t sees keys j with t - sliding_window < j <= t (transformers
    // masking_utils.sliding_window_overlay) in the layers marked in sliding_layers (config layer_types).
    int sliding_window = 0;
    std::vector<uint8_t> sliding_layers; // (L) 1 = "sliding_attention"; empty = every layer full
    // RoPE of the sliding layers when the family gives them their own (Gemma 3: rope_local_base_freq, default type).
    bool has_local_rope = false;
    rope_config rope_local;
    // Input embeddings are multiplied by this (Gemma 3: sqrt(hidden_size)); 1 otherwise.
    double embed_scale = 1.0;

    bool layer_sliding(int l) const { return !sliding_layers.empty() && sliding_layers[size_t(l)] != 0; }
    bool any_sliding() const;
    // The attention window of layer l: sliding_window for a sliding layer, 0 (none) otherwise.
    int layer_window(int l) const { return layer_sliding(l) ? sliding_window : 0; }
    // The softmax scale of the attention scores.
    double attention_scale() const;

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
// The sliding layers' frequencies: rope_local when has_local_rope, else the same as rope_inv_freq.
std::vector<float> rope_inv_freq_local(const model_config& cfg);

} // namespace qls
