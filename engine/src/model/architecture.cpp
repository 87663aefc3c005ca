// The model families the engine trains: one table entry each (qls/architecture.h), and the name and shape functions.
#include "qls/architecture.h"

#include "qls/error.h"

#include <algorithm>

namespace qls {

namespace {

// LLaMA 1/2/3.x, TinyLlama, SmolLM, Mistral 7B: transformers models/llama/modeling_llama.py (LlamaDecoderLayer:
// input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.{gate,up,down}_proj), model.norm,
// lm_head; MistralForCausalLM keeps the same module names. GGUF: llama.cpp src/llama-arch.cpp, LLM_ARCH_LLAMA.
architecture llama_entry() {
    architecture a;
    a.family = "llama";
    a.model_types = {"llama", "mistral"};
    a.gguf_arch = "llama";
    a.hf_layer_prefix = "model.layers.";
    a.hf_base = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "input_layernorm.weight",
                 "post_attention_layernorm.weight"};
    a.hf_projection = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                       "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    a.peft_prefix = "base_model.model.";
    a.gguf_layer_prefix = "blk.";
    a.gguf_base = {"token_embd.weight", "output_norm.weight", "output.weight", "attn_norm.weight", "ffn_norm.weight"};
    a.gguf_projection = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    a.gguf_permutes_qk = true;
    a.projections = all_lora_targets();
    a.norm = norm_kind::rms;
    a.rope = rope_kind::rotate_half;
    a.mlp = mlp_kind::swiglu;
    a.projection_bias = false;
    a.tied_head_allowed = true;
    return a;
}

std::string layer_dot(int layer) {
    QLS_ASSERT(layer >= 0);
    return std::to_string(layer) + ".";
}

} // namespace

const std::vector<architecture>& architectures() {
    static const std::vector<architecture> table = {llama_entry()};
    return table;
}

const architecture* find_architecture(std::string_view model_type) {
    for (const architecture& a : architectures())
        if (std::find(a.model_types.begin(), a.model_types.end(), model_type) != a.model_types.end()) return &a;
    return nullptr;
}

std::string supported_model_types() {
    std::string s;
    for (const architecture& a : architectures())
        for (const std::string& t : a.model_types) s += (s.empty() ? "" : ", ") + t;
    return s;
}

const architecture& architecture_for(std::string_view model_type) {
    if (const architecture* a = find_architecture(model_type)) return *a;
    throw error(error_code::unsupported,
                "model_type \"" + std::string(model_type) +
                    "\" is not a family this engine trains (supported: " + supported_model_types() + ")",
                "choose a model of a supported family");
}

void require_llama_layers(const architecture& a, const std::string& who) {
    if (a.norm != norm_kind::rms || a.rope != rope_kind::rotate_half || a.mlp != mlp_kind::swiglu || a.projection_bias)
        throw error(error_code::unsupported,
                    who + " has no implementation yet of the layers of the " + a.family +
                        " family (its norm, RoPE, MLP or biases differ from LLaMA's)",
                    "choose a model of a supported family");
}

std::string architecture::hf_name(base_tensor t, int layer) const {
    const std::string& n = hf_base[size_t(t)];
    return base_tensor_per_layer(t) ? hf_layer_prefix + layer_dot(layer) + n : n;
}

std::string architecture::hf_module(int layer, lora_target t) const {
    return hf_layer_prefix + layer_dot(layer) + hf_projection[size_t(t)];
}

std::string architecture::peft_name(int layer, lora_target t, bool b) const {
    return peft_prefix + hf_module(layer, t) + (b ? ".lora_B.weight" : ".lora_A.weight");
}

std::string architecture::gguf_name(base_tensor t, int layer) const {
    const std::string& n = gguf_base[size_t(t)];
    return base_tensor_per_layer(t) ? gguf_layer_prefix + layer_dot(layer) + n : n;
}

std::string architecture::gguf_weight(int layer, lora_target t) const {
    return gguf_layer_prefix + layer_dot(layer) + gguf_projection[size_t(t)] + ".weight";
}

std::string architecture::hf_name_any_layer(base_tensor t) const {
    const std::string& n = hf_base[size_t(t)];
    return base_tensor_per_layer(t) ? hf_layer_prefix + "*." + n : n;
}

std::string architecture::hf_weight_any_layer(lora_target t) const {
    return hf_layer_prefix + "*." + hf_projection[size_t(t)] + ".weight";
}

std::pair<int64_t, int64_t> architecture::projection_shape(const model_config& c, lora_target t) const {
    const int64_t C = c.hidden_size, H = c.intermediate_size;
    const int64_t Q = int64_t(c.num_heads) * c.head_dim, KV = int64_t(c.num_kv_heads) * c.head_dim;
    switch (t) {
    case lora_target::q: return {Q, C};
    case lora_target::k:
    case lora_target::v: return {KV, C};
    case lora_target::o: return {C, Q};
    case lora_target::gate:
    case lora_target::up: return {H, C};
    case lora_target::down: return {C, H};
    }
    return {0, 0};
}

std::vector<int64_t> architecture::base_shape(const model_config& c, base_tensor t) const {
    if (t == base_tensor::embed || t == base_tensor::lm_head) return {c.vocab_size, c.hidden_size};
    return {c.hidden_size};
}

bool architecture::has_projection(lora_target t) const {
    return std::find(projections.begin(), projections.end(), t) != projections.end();
}

} // namespace qls
