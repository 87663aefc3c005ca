// architecture — one description per model family: its tensors' names in Hugging Face, PEFT and GGUF files, their
// shapes, which projections exist, the norm, biases, the RoPE variant and the tied LM head.
//
// Loading (llama.cpp), config.json parsing (model_config.cpp), the memory plan's items (memory_plan.cpp), the CUDA
// upload, PEFT export (peft_*.cpp) and generation all read this table, so adding a family is one new entry in
// architecture.cpp plus the ops that are genuinely new (a different norm, a bias add, q/k norms ...).
// Sources of the names: transformers models/<family>/modeling_<family>.py (module paths); PEFT
// utils/save_and_load.py ("base_model.model." + module path); llama.cpp src/llama-arch.cpp LLM_TENSOR_NAMES (GGUF).
//
// Dimension legend (llama.h): C hidden, H MLP hidden, NH query heads, NKV key/value heads, HS head size, V vocabulary.
#pragma once

#include "qls/lora.h" // defines: lora_target, k_lora_target_count
#include "qls/model_config.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qls {

// The frozen tensors besides the projections and their biases. embed, final_norm and lm_head are global, the rest per
// layer. attn_norm and mlp_norm exist in every family (Gemma 3: input_layernorm and pre_feedforward_layernorm);
// q_norm/k_norm (HS) only with architecture::qk_norm, post_attn_norm/post_mlp_norm (C) only with sandwich_norms.
enum class base_tensor : uint8_t {
    embed,
    final_norm,
    lm_head,
    attn_norm,
    mlp_norm,
    q_norm,
    k_norm,
    post_attn_norm,
    post_mlp_norm
};
constexpr int k_base_tensor_count = 9;
inline bool base_tensor_per_layer(base_tensor t) { return uint8_t(t) >= uint8_t(base_tensor::attn_norm); }

enum class norm_kind : uint8_t {
    rms,         // y = x / sqrt(mean(x²) + eps) · w        (LlamaRMSNorm)
    rms_one_plus // y = x / sqrt(mean(x²) + eps) · (1 + w)  (Gemma3RMSNorm, modeling_gemma3.py)
};
enum class rope_kind : uint8_t { rotate_half }; // pairs (i, i + HS/2), HF rotate_half (modeling_llama.py)
enum class mlp_kind : uint8_t {
    swiglu,    // down(silu(gate(x)) · up(x)), hidden_act "silu"
    geglu_tanh // down(gelu_tanh(gate(x)) · up(x)), hidden_activation "gelu_pytorch_tanh" (Gemma3MLP)
};

struct architecture {
    std::string family;                   // "llama"
    std::vector<std::string> model_types; // config.json model_type values this entry reads
    std::string gguf_arch;                // GGUF general.architecture
    // Hugging Face: global tensor names, per-layer ones under hf_layer_prefix + "<l>."
    std::string hf_layer_prefix;                                // "model.layers."
    std::array<std::string, k_base_tensor_count> hf_base;       // by base_tensor
    std::array<std::string, k_lora_target_count> hf_projection; // by lora_target: module path in a layer
    // PEFT: the adapter of module M is "<peft_prefix>M.lora_A.weight" / ".lora_B.weight"
    std::string peft_prefix; // "base_model.model."
    // GGUF: per-layer names under gguf_layer_prefix + "<l>."
    std::string gguf_layer_prefix; // "blk."
    std::array<std::string, k_base_tensor_count> gguf_base;
    std::array<std::string, k_lora_target_count> gguf_projection; // + ".weight"
    bool gguf_permutes_qk = false; // llama.cpp stores q/k rows interleaved per head (convert_hf_to_gguf)

    std::vector<lora_target> projections; // the decoder linears that exist (LoRA targets)
    norm_kind norm = norm_kind::rms;
    rope_kind rope = rope_kind::rotate_half;
    mlp_kind mlp = mlp_kind::swiglu;
    bool projection_bias = false;         // q/k/v always carry biases (Qwen2); others follow config attention_bias
    bool tied_head_allowed = true;        // tie_word_embeddings may be true: the head is the embedding
    bool qk_norm = false;                 // per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3)
    bool sandwich_norms = false;          // norms after the attention and MLP outputs too (Gemma 2/3)
    bool embed_scale_sqrt_hidden = false; // embeddings multiplied by sqrt(C) (Gemma3TextScaledWordEmbedding)
    bool needs_head_dim = false;          // config.json must give head_dim (it is not C / NH in general)
    bool local_rope = false;              // sliding layers use their own RoPE parameters (Gemma 3 rope_local_base_freq)
    bool attn_scale_from_config = false;  // scores scaled by query_pre_attn_scalar^-0.5 (Gemma 3)
    std::string hidden_act_key = "hidden_act"; // config.json key of the activation ("hidden_activation": Gemma 3)

    // The per-layer frozen tensors this family has besides the projections: attn_norm, mlp_norm, then q/k norms and
    // the post norms when present.
    std::vector<base_tensor> layer_tensors() const;

    // ---- names -------------------------------------------------------------------------------------------------
    // "model.embed_tokens.weight"; per-layer tensors need the layer: "model.layers.3.input_layernorm.weight".
    std::string hf_name(base_tensor t, int layer = -1) const;
    // "model.layers.3.self_attn.q_proj" (the module PEFT matches target_modules against); + ".weight" for the tensor.
    std::string hf_module(int layer, lora_target t) const;
    std::string hf_weight(int layer, lora_target t) const { return hf_module(layer, t) + ".weight"; }
    // "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight" (b: lora_B)
    std::string peft_name(int layer, lora_target t, bool b) const;
    // "token_embd.weight", "blk.3.attn_norm.weight"; "blk.3.attn_q.weight"
    std::string gguf_name(base_tensor t, int layer = -1) const;
    std::string gguf_weight(int layer, lora_target t) const;
    // The plan's display names: per-layer tensors with "*" for the layer ("model.layers.*.input_layernorm.weight").
    std::string hf_name_any_layer(base_tensor t) const;
    std::string hf_weight_any_layer(lora_target t) const;

    // ---- shapes ------------------------------------------------------------------------------------------------
    // "model.layers.3.self_attn.q_proj.bias"
    std::string hf_bias(int layer, lora_target t) const { return hf_module(layer, t) + ".bias"; }
    // "blk.3.attn_q.bias"
    std::string gguf_bias(int layer, lora_target t) const;
    // (out, in) of a projection as HF stores the weight: q (NH*HS, C), k/v (NKV*HS, C), o (C, NH*HS),
    // gate/up (H, C), down (C, H).
    std::pair<int64_t, int64_t> projection_shape(const model_config& c, lora_target t) const;
    // embed and lm_head (V, C), q_norm/k_norm (HS), the other norms (C).
    std::vector<int64_t> base_shape(const model_config& c, base_tensor t) const;
    bool has_projection(lora_target t) const;
};

// The entry that reads config.json's model_type; qls::error{unsupported} naming the type and the supported ones.
const architecture& architecture_for(std::string_view model_type);
inline const architecture& architecture_for(const model_config& c) { return architecture_for(c.model_type); }
// nullptr when no entry reads this model_type.
const architecture* find_architecture(std::string_view model_type);
// Throws qls::error{unsupported} naming `who` unless the family's layers are the ones the LLaMA code computes
// (RMSNorm, rotate_half RoPE, SwiGLU, no biases, no q/k or post norms, no embedding scale): a backend that lacks the
// newer families' ops calls it, so such a family is refused instead of computed wrongly.
void require_llama_layers(const architecture& a, const std::string& who);
// The same for one model: its family, plus what its config.json adds (biases, sliding-window layers, an attention
// scale other than HS^-0.5).
void require_llama_layers(const model_config& c, const std::string& who);
// What sets this model's layers apart from LLaMA's, one short phrase each, for people (the studio's Model page, `qlora
// info`): "q/k/v biases", "per-head q/k RMSNorm", "(1 + w) RMSNorm", "post-attention and post-MLP norms",
// "embeddings x 61.97 (sqrt of hidden)", "GeGLU MLP (gelu_pytorch_tanh)", "sliding window 1024 on 40 of 48 layers
// (their RoPE theta 10000)", "attention scale 256^-0.5 (query_pre_attn_scalar)", "RoPE llama3 scaling x8", "tied LM
// head". Empty for a plain LLaMA-2 layout.
std::vector<std::string> family_specifics(const model_config& c);
// "q_proj", "k_proj", ... : the module names PEFT's target_modules takes for this family's projections (the last
// component of hf_projection), in lora_target order.
std::vector<std::string> peft_target_modules(const architecture& a);
// Every family, in table order.
const std::vector<architecture>& architectures();
// "llama, mistral": the model_type values any entry reads, for messages.
std::string supported_model_types();

} // namespace qls
