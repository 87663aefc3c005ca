// The decoder-only model on the CPU reference backend: weights, a training pass (forward with saved activations,
// backward to the input), and a KV-cache decoder for generation. One code path computes every family of the
// architecture table (LLaMA, Mistral, Qwen2/2.5, Qwen3, Gemma 3): the table and the config say which of the optional
// steps (biases, q/k norms, post norms, (1 + w) norms, GeGLU, sliding windows, embedding scale) a layer takes.
//
// Dimension legend: B batch, T time, N = B*T rows, C hidden, NH query heads, NKV key/value heads,
// HS head size, H MLP hidden, V vocabulary, L layers. All tensors row-major; linear weights are (out, in)
// exactly as Hugging Face stores them.
#pragma once

#include "qls/architecture.h"
#include "qls/hf_checkpoint.h"
#include "qls/lora.h"
#include "qls/model_config.h"
#include "qls/model_source.h"
#include "qls/quant.h"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qls {

template <class T> struct llama_layer_params {
    std::vector<T> attn_norm; // (C)
    std::vector<T> wq;        // (NH*HS, C)
    std::vector<T> wk;        // (NKV*HS, C)
    std::vector<T> wv;        // (NKV*HS, C)
    std::vector<T> wo;        // (C, NH*HS)
    std::vector<T> mlp_norm;  // (C)
    std::vector<T> w_gate;    // (H, C)
    std::vector<T> w_up;      // (H, C)
    std::vector<T> w_down;    // (C, H)
    // Family specifics; empty when the family or config has none (architecture.h).
    std::array<std::vector<T>, k_lora_target_count> bias; // by lora_target: (out) of that projection
    std::vector<T> q_norm, k_norm;                        // (HS) per-head RMSNorm of q and k before RoPE
    std::vector<T> post_attn_norm, post_mlp_norm;         // (C) norms of the attention and MLP outputs (Gemma 3)
};

template <class T> struct llama_params {
    std::vector<T> embed;                      // (V, C)
    std::vector<llama_layer_params<T>> layers; // L
    std::vector<T> final_norm;                 // (C)
    std::vector<T> lm_head;                    // (V, C); empty when tied to embed
    const T* lm_head_data() const { return lm_head.empty() ? embed.data() : lm_head.data(); }
};

// Whether projection t carries a bias under this config (qkv_bias, o_bias, mlp_bias).
bool projection_has_bias(const model_config& c, lora_target t);
// The per-layer norm vector of a layer for base_tensor t (attn_norm, mlp_norm, q_norm, k_norm, post_*_norm).
template <class T> std::vector<T>& layer_tensor(llama_layer_params<T>& L, base_tensor t);

// Where a streaming load puts the frozen weights instead of the model (llama_load_options::sink): e.g. a GPU backend's
// arena. The loader calls it once per tensor as it is read, in the read order (embed; per layer its norms, biases,
// then projections; final norm; LM head), and keeps no copy: the model it returns holds config, inv_freq and empty
// weight vectors (has_f32_projections() false, quantized() false), so every CPU consumer refuses it.
class weight_sink {
public:
    virtual ~weight_sink() = default;
    // Projection t of `layer` as NF4 ((out, in) row-major, as quantized at load or read pre-quantized).
    virtual void put_projection(int layer, lora_target t, const nf4_tensor& w) = 0;
    // A frozen f32 tensor: embed (V, C), final_norm (C), lm_head (V, C) with layer -1; a per-layer norm with its layer
    // (base_tensor_per_layer), (C) or (HS) for q/k norms.
    virtual void put_base(int layer, base_tensor t, const std::vector<float>& v) = 0;
    // The bias (out) of projection t of `layer` (projection_has_bias).
    virtual void put_bias(int layer, lora_target t, const std::vector<float>& v) = 0;
};

struct llama_load_options {
    // Quantize the seven decoder projections to NF4 at load time (bitsandbytes-compatible, blocks of 64).
    bool quantize_nf4 = false;
    bool double_quant = true;
    // When set, quantizes each projection instead of the CPU's nf4_quantize (it must give the same bytes): e.g. a
    // qls::gpu_nf4_quantizer (gpu_train.h). w is [rows, cols] fp32 on the host.
    std::function<nf4_tensor(const float* w, int64_t rows, int64_t cols, bool double_quant)> nf4_quantizer = nullptr;
    // When set too, a projection the source stores as BF16 goes to this one as its bf16 bits (model_source::read_bf16)
    // instead of through an f32 copy: it must give nf4_quantizer's bytes for the same values (bf16 -> f32 is exact).
    std::function<nf4_tensor(const uint16_t* w, int64_t rows, int64_t cols, bool double_quant)> nf4_quantizer_bf16 =
        nullptr;
    // Keep the f32 dequantization of the NF4 projections in params (true: the CPU backend computes with f32). false
    // on the CUDA path: when the base is NF4 the seven projection vectors of every layer stay EMPTY and only `nf4`
    // holds them; each tensor's transient f32 is freed right after quantizing. No effect on a base that is not NF4.
    bool keep_f32_projections = true;
    // Progress after every tensor and a cancel flag checked between tensors (model_source.h).
    load_control control;
    // When set, every weight goes to the sink as it is read and the model keeps none (weight_sink above). Requires an
    // NF4 base (quantize_nf4 or a pre-quantized checkpoint): qls::error{invalid_argument} otherwise.
    weight_sink* sink = nullptr;
};

// A model: config, f32 weights and the rotary frequencies. When the base is NF4 (quantized at load or read from a
// pre-quantized bitsandbytes checkpoint), `nf4` holds the quantized projections and `params` holds their exact
// dequantization, so the CPU reference computes with precisely the weights a GPU backend dequantizes on the fly.
// NF4-only state (loaded with keep_f32_projections = false): the projection vectors in params are empty and only
// `nf4` holds the projections (embed, norms and lm_head stay f32). Only a GPU upload reads such a model; every CPU
// consumer (llama_pass, llama_decoder, the PEFT merge, CPU memory telemetry) calls require_f32_projections and refuses
// it with error_code::internal instead of reading empty vectors.
struct llama_model {
    model_config config;
    llama_params<float> params;
    std::vector<float> inv_freq; // (HS/2)
    std::string dir;             // where it was loaded from (may be empty)
    // [L][lora_target] NF4 projections; empty when the base is not quantized
    std::vector<std::array<nf4_tensor, k_lora_target_count>> nf4;

    bool quantized() const { return !nf4.empty(); }
    // false in the NF4-only state (see above).
    bool has_f32_projections() const;
    // Throws qls::error(internal) naming `who` when the model is in the NF4-only state.
    void require_f32_projections(const std::string& who) const;
    // Reads every weight from the checkpoint tensor by tensor (F32/F16/BF16 converted straight from the file mapping,
    // or bnb NF4), checking each shape against config.json; never more than one tensor's transient f32 besides the
    // result. Reports progress and honours cancel through opt.control: a cancelled load throws
    // qls::error(error_code::cancelled) and frees what it had read.
    static llama_model load(const hf_checkpoint& ckpt, const llama_load_options& opt = {});
    static llama_model load(const model_source& src, const llama_load_options& opt = {});
    static llama_model load(const std::string& dir, const llama_load_options& opt = {}) {
        return load(hf_checkpoint::open(dir), opt);
    }
    // The projection weight of (layer, target) in params, (out, in) row-major.
    std::vector<float>& projection(int layer, lora_target t);
    const std::vector<float>& projection(int layer, lora_target t) const;
    // A randomly initialised model of the given config (normal(0, 0.02) weights, unit norms), for tests.
    static llama_model random(const model_config& cfg, uint64_t seed);

    llama_params<double> params_f64() const;
};

// One training-style pass over a batch on the CPU: forward saves what backward needs; backward produces the
// gradient of the mean loss with respect to the embedding output x0 (the model's continuous input) and to the
// LoRA adapters; the base weights are frozen (no gradient).
// T = float for training, double for gradient checks.
template <class T> class llama_pass {
public:
    // lora (optional): adapters added to the projections; backward accumulates their gradients (da, db).
    llama_pass(const model_config& cfg, const llama_params<T>& params, const std::vector<float>& inv_freq, int B,
               int Tn, lora_weights<T>* lora = nullptr);
    // Dropout on the adapters' inputs: on for training steps, with a per-step seed (lora_dropout_keep); off by default.
    void set_dropout(bool enabled, uint64_t seed);
    // Full-parameter training: when set, backward also accumulates (+=) the gradient of the mean loss with respect to
    // every base weight into `grads`, which must have the shapes of the pass's params (lm_head empty when tied: the
    // head's gradient then goes into grads->embed). nullptr (the default) keeps the base frozen.
    void set_weight_grads(llama_params<T>* grads);
    // Gradient checkpointing: forward keeps only each layer's input; backward recomputes the layer first.
    // Results are bit-identical to a pass without it (the recomputation repeats the same arithmetic).
    void set_checkpointing(bool enabled);
    ~llama_pass();
    llama_pass(const llama_pass&) = delete;
    llama_pass& operator=(const llama_pass&) = delete;

    // tokens (B,T); targets (B,T), -1 = no loss; positions (B,T) or nullptr for 0..T-1 per row;
    // segments (B,T) or nullptr: tokens attend only within their segment (packed examples).
    // x0 (B,T,C) or nullptr: use these input embeddings instead of looking tokens up (for gradient checks).
    // Returns the mean loss over counted targets (0 when none).
    T forward(const int* tokens, const int* targets, const int* positions = nullptr, const int* segments = nullptr,
              const T* x0 = nullptr);
    // Gradient of forward()'s mean loss with respect to x0 and (+=) every adapter's A and B; call after forward.
    void backward();

    const std::vector<T>& logits() const; // (B, T, V) from the last forward
    const std::vector<T>& dx0() const;    // (B, T, C) from the last backward
    int counted_targets() const;
    // Bytes of the buffers this pass holds (saved activations, residual stream, logits): the CPU backend's
    // "activations" and "logits/loss" memory, reported in step_stats.
    size_t activation_bytes() const;

private:
    struct buffers;
    std::unique_ptr<buffers> b_;
};

// Incremental decoding with a KV cache (batch 1, f32): feed one token at a time, get logits.
class llama_decoder {
public:
    // The cache holds max_positions (capped by config.max_position_embeddings; 0 → all of them): pass what the
    // generation needs (prompt + new tokens), since a config may claim millions of positions.
    explicit llama_decoder(const llama_model& model, int max_positions = 0);
    // Appends token at the next position and returns the logits (V) for the token that follows it.
    const std::vector<float>& step(int token);
    int position() const { return pos_; }
    int capacity() const { return max_pos_; }
    void reset() { pos_ = 0; }

private:
    const llama_model* m_;
    int max_pos_;
    int pos_ = 0;
    std::vector<float> k_cache_, v_cache_; // (L, max_pos, NKV*HS)
    std::vector<float> inv_freq_local_;    // (HS/2) the sliding layers' RoPE (model_config::has_local_rope)
    std::vector<float> x_, xb_, q_, k_, v_, att_, atty_, gate_, up_, h_, logits_, scores_;
};

} // namespace qls
