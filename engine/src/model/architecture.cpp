// The model families the engine trains: one table entry each (qls/architecture.h), and the name and shape functions.
#include "qls/architecture.h"

#include "qls/error.h"

#include <algorithm>
#include <cstdio>

namespace qls {

namespace {

// Names by base_tensor of the tensors every family has (embed, final_norm, lm_head, attn_norm, mlp_norm); those of
// q_norm, k_norm, post_attn_norm and post_mlp_norm empty.
std::array<std::string, k_base_tensor_count> base_names(const char* embed, const char* final_norm, const char* lm_head,
                                                        const char* attn_norm, const char* mlp_norm) {
    return {embed, final_norm, lm_head, attn_norm, mlp_norm, "", "", "", ""};
}

// LLaMA 1/2/3.x, TinyLlama, SmolLM, Mistral 7B: transformers models/llama/modeling_llama.py (LlamaDecoderLayer:
// input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.{gate,up,down}_proj), model.norm,
// lm_head; MistralForCausalLM keeps the same module names. GGUF: llama.cpp src/llama-arch.cpp, LLM_ARCH_LLAMA.
// The base of every entry: the other families state only what differs from it.
architecture llama_entry() {
    architecture a;
    a.family = "llama";
    a.model_types = {"llama", "mistral"};
    a.gguf_arch = "llama";
    a.hf_layer_prefix = "model.layers.";
    a.hf_base = base_names("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "input_layernorm.weight",
                           "post_attention_layernorm.weight");
    a.hf_projection = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                       "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    a.peft_prefix = "base_model.model.";
    a.gguf_layer_prefix = "blk.";
    a.gguf_base = base_names("token_embd.weight", "output_norm.weight", "output.weight", "attn_norm.weight",
                             "ffn_norm.weight");
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

// A family on LLaMA's module layout under its own names. convert_hf_to_gguf.py permutes the q/k rows for LLaMA
// (LlamaModel.permute) only: these families' GGUF files keep Hugging Face's row order.
architecture llama_layout_entry(const std::string& family, const std::string& model_type,
                                const std::string& gguf_arch) {
    architecture a = llama_entry();
    a.family = family;
    a.model_types = {model_type};
    a.gguf_arch = gguf_arch;
    a.gguf_permutes_qk = false;
    return a;
}

// Per-head q/k RMSNorm (over HS) applied to q and k before RoPE: self_attn.q_norm / k_norm in transformers
// (Qwen3RMSNorm, Gemma3RMSNorm), attn_q_norm / attn_k_norm in GGUF.
void add_qk_norms(architecture& a) {
    a.qk_norm = true;
    a.hf_base[size_t(base_tensor::q_norm)] = "self_attn.q_norm.weight";
    a.hf_base[size_t(base_tensor::k_norm)] = "self_attn.k_norm.weight";
    a.gguf_base[size_t(base_tensor::q_norm)] = "attn_q_norm.weight";
    a.gguf_base[size_t(base_tensor::k_norm)] = "attn_k_norm.weight";
}

// Qwen2 / Qwen2.5: transformers models/qwen2/modeling_qwen2.py — LLaMA's module names, q/k/v_proj with bias=True
// (o_proj and the MLP without). GGUF: LLM_ARCH_QWEN2 (blk.N.attn_q.bias ...), q/k rows not permuted.
architecture qwen2_entry() {
    architecture a = llama_layout_entry("qwen2", "qwen2", "qwen2");
    a.projection_bias = true;
    return a;
}

// Qwen3: models/qwen3/modeling_qwen3.py — q/k norms; head_dim explicit (128 for every size, not C / NH).
// GGUF: LLM_ARCH_QWEN3.
architecture qwen3_entry() {
    architecture a = llama_layout_entry("qwen3", "qwen3", "qwen3");
    add_qk_norms(a);
    a.needs_head_dim = true;
    return a;
}

// Gemma 3 text (Gemma3ForCausalLM, model_type "gemma3_text"): models/gemma3/modeling_gemma3.py. Gemma3DecoderLayer:
// input_layernorm → attention → post_attention_layernorm → residual; pre_feedforward_layernorm → MLP →
// post_feedforward_layernorm → residual. Gemma3RMSNorm scales by (1 + w); embeddings times sqrt(C); q/k norms; GeGLU
// with tanh GELU; layer_types alternate sliding_attention (rope_local_base_freq) and full_attention (rope_theta +
// rope_scaling); scores scaled by query_pre_attn_scalar^-0.5. GGUF: LLM_ARCH_GEMMA3 (convert_hf_to_gguf.py stores
// the norms as 1 + w).
architecture gemma3_entry() {
    architecture a = llama_layout_entry("gemma3", "gemma3_text", "gemma3");
    add_qk_norms(a);
    a.norm = norm_kind::rms_one_plus;
    a.mlp = mlp_kind::geglu_tanh;
    a.sandwich_norms = true;
    a.embed_scale_sqrt_hidden = true;
    a.needs_head_dim = true;
    a.local_rope = true;
    a.attn_scale_from_config = true;
    a.hidden_act_key = "hidden_activation";
    // post_attention_layernorm follows the attention here; the MLP's input norm is pre_feedforward_layernorm
    a.hf_base[size_t(base_tensor::mlp_norm)] = "pre_feedforward_layernorm.weight";
    a.hf_base[size_t(base_tensor::post_attn_norm)] = "post_attention_layernorm.weight";
    a.hf_base[size_t(base_tensor::post_mlp_norm)] = "post_feedforward_layernorm.weight";
    a.gguf_base[size_t(base_tensor::post_attn_norm)] = "post_attention_norm.weight";
    a.gguf_base[size_t(base_tensor::post_mlp_norm)] = "post_ffw_norm.weight";
    return a;
}

std::string layer_dot(int layer) {
    QLS_ASSERT(layer >= 0);
    return std::to_string(layer) + ".";
}

} // namespace

const std::vector<architecture>& architectures() {
    static const std::vector<architecture> table = {llama_entry(), qwen2_entry(), qwen3_entry(), gemma3_entry()};
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
    if (a.norm != norm_kind::rms || a.rope != rope_kind::rotate_half || a.mlp != mlp_kind::swiglu ||
        a.projection_bias || a.qk_norm || a.sandwich_norms || a.embed_scale_sqrt_hidden || a.local_rope)
        throw error(error_code::unsupported,
                    who + " has no implementation yet of the layers of the " + a.family +
                        " family (its norm, RoPE, MLP, biases or q/k norms differ from LLaMA's)",
                    "use the CPU backend (device.backend \"cpu\"), which computes every supported family");
}

void require_llama_layers(const model_config& c, const std::string& who) {
    require_llama_layers(architecture_for(c), who);
    std::string what;
    if (c.qkv_bias || c.o_bias || c.mlp_bias) what = "biases on its linear layers (attention_bias / mlp_bias)";
    else if (c.any_sliding()) what = "sliding-window attention layers (sliding_window / layer_types)";
    else if (c.query_pre_attn_scalar > 0 && c.query_pre_attn_scalar != c.head_dim)
        what = "an attention scale other than head_dim^-0.5 (query_pre_attn_scalar)";
    if (!what.empty())
        throw error(error_code::unsupported, who + " has no implementation yet of " + what,
                    "use the CPU backend (device.backend \"cpu\"), which computes them");
}

std::vector<std::string> family_specifics(const model_config& c) {
    const architecture& a = architecture_for(c);
    auto num = [](double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", v);
        return std::string(buf);
    };
    std::vector<std::string> s;
    if (c.qkv_bias && c.o_bias) s.push_back("q/k/v/o biases");
    else if (c.qkv_bias) s.push_back("q/k/v biases");
    if (c.mlp_bias) s.push_back("MLP biases");
    if (a.qk_norm) s.push_back("per-head q/k RMSNorm");
    if (a.norm == norm_kind::rms_one_plus) s.push_back("(1 + w) RMSNorm");
    if (a.sandwich_norms) s.push_back("post-attention and post-MLP norms");
    if (c.embed_scale != 1.0) s.push_back("embeddings x " + num(c.embed_scale) + " (sqrt of hidden)");
    if (a.mlp == mlp_kind::geglu_tanh) s.push_back("GeGLU MLP (" + c.hidden_act + ")");
    if (c.any_sliding()) {
        int n = 0;
        for (int l = 0; l < c.num_layers; ++l) n += c.layer_sliding(l) ? 1 : 0;
        std::string w = "sliding window " + std::to_string(c.sliding_window) + " on " + std::to_string(n) + " of " +
                        std::to_string(c.num_layers) + " layers";
        if (c.has_local_rope) w += " (their RoPE theta " + num(c.rope_local.theta) + ")";
        s.push_back(w);
    }
    if (c.query_pre_attn_scalar > 0)
        s.push_back("attention scale " + num(c.query_pre_attn_scalar) + "^-0.5 (query_pre_attn_scalar)");
    if (c.rope.type != "default") s.push_back("RoPE " + c.rope.type + " scaling x" + num(c.rope.factor));
    if (c.tie_word_embeddings) s.push_back("tied LM head");
    return s;
}

std::vector<std::string> peft_target_modules(const architecture& a) {
    std::vector<std::string> names;
    for (const std::string& path : a.hf_projection) names.push_back(path.substr(path.rfind('.') + 1));
    return names;
}

std::vector<base_tensor> architecture::layer_tensors() const {
    std::vector<base_tensor> v = {base_tensor::attn_norm, base_tensor::mlp_norm};
    if (qk_norm) v.insert(v.end(), {base_tensor::q_norm, base_tensor::k_norm});
    if (sandwich_norms) v.insert(v.end(), {base_tensor::post_attn_norm, base_tensor::post_mlp_norm});
    return v;
}

std::string architecture::gguf_bias(int layer, lora_target t) const {
    return gguf_layer_prefix + layer_dot(layer) + gguf_projection[size_t(t)] + ".bias";
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
    if (t == base_tensor::q_norm || t == base_tensor::k_norm) return {c.head_dim};
    return {c.hidden_size};
}

bool architecture::has_projection(lora_target t) const {
    return std::find(projections.begin(), projections.end(), t) != projections.end();
}

} // namespace qls
