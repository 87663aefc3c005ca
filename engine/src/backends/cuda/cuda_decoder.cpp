// cuda_decoder — single-stream generation on the GPU behind qls::decoder: NF4 projections read by a fused GEMV, the
// adapter applied beside them, fp32 activations and KV cache, each step replayed as one CUDA graph.
//
// One step (llama.h legend; x, xb, tmp (C), q (Q), k, v (KV), atty (Q), gate, up, h (H), logits (V), all fp32),
// the CPU decoder's (engine/src/model/llama.cpp llama_decoder::step) op for op, the newer families' steps in []:
//   x = embed[token] [· sqrt(C)]
//   per layer: xb = rmsnorm(x); q, k, v = proj(xb) [+ b]; [q, k = per-head rmsnorm]; rope(q, k) (the sliding
//              layers' own frequencies) and k, v into cache row pos;
//              atty = attention(q, cache rows 0..pos [or the window's last rows], [scale]);
//              x += proj_o(atty) [or tmp = proj_o(atty); x += post_attn_norm(tmp)];
//              xb = rmsnorm(x); h = act(proj_gate(xb)) * proj_up(xb) [act: silu, or tanh GELU];
//              x += proj_down(h) [or through post_mlp_norm as above]
//   logits = rmsnorm(x) · headᵀ
// rmsnorm multiplies by w, or by 1 + w for the (1 + w) norms (Gemma), folded into the fp32 weight at upload.
// proj(in) = NF4 GEMV (+ scale · B (A in) when the layer's adapter has that target), as the CPU pass computes
// W x + scale·B·A·x (engine/src/backends/cpu/ops.cpp lora_forward) — never merged into the quantized weight.
// The token and position live in device memory (decode_state), so the launches of a step do not change with the
// position and are captured once into a CUDA graph (reset() drops it when the cache moves).
#include "gpu_train_impl.h"

#include "qls/architecture.h" // defines: architecture_for (the family's layer ops)
#include "qls/dtype.h"        // defines: f32_to_bf16
#include "qls/generate.h"     // defines: decoder
#include "qls/llama.h"        // defines: projection_has_bias
#include "qls/quant.h"        // defines: dynamic_map
#include "qls_kernels/decode.h"
#include "qls_kernels/elementwise.h" // defines: fill_*

#include <cmath>
#include <string>

namespace qls {

namespace {

// One device allocation, freed with the decoder.
struct dmem {
    void* p = nullptr;
    size_t bytes = 0;
    dmem() = default;
    dmem(const dmem&) = delete;
    dmem& operator=(const dmem&) = delete;
    dmem(dmem&& o) noexcept : p(o.p), bytes(o.bytes) {
        o.p = nullptr;
        o.bytes = 0;
    }
    dmem& operator=(dmem&&) = delete;
    ~dmem() { release(); }
    void release() {
        if (p) cudaFree(p);
        p = nullptr;
        bytes = 0;
    }
    void alloc(size_t n, const char* what) {
        release();
        if (cudaMalloc(&p, std::max<size_t>(n, 16)) != cudaSuccess) {
            (void)cudaGetLastError();
            p = nullptr;
            throw error(error_code::out_of_memory,
                        std::string("GPU generation: ") + what + " needs " + std::to_string(n >> 20) +
                            " MiB of device memory, which cannot be allocated",
                        "generate fewer tokens, free the GPU, or generate on the CPU (--device cpu)");
        }
        bytes = n;
    }
    template <class T> T* as() const { return static_cast<T*>(p); }
};

template <class E> void upload(dmem& d, const E* src, size_t n, const char* what) {
    d.alloc(n * sizeof(E), what);
    QLS_CUDA_CHECK(cudaMemcpy(d.p, src, n * sizeof(E), cudaMemcpyHostToDevice));
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
    std::vector<uint16_t> o(v.size());
    for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
    return o;
}

struct projection {
    int rows = 0, cols = 0, blocksize = 64, nested_blocksize = 256;
    float offset = 0;
    dmem packed, codes, scale, map; // map: 256 fp32, this weight's nested map
    int rank = 0;
    dmem a, b; // LoRA A (r, cols), B (rows, r) fp32
    dmem bias; // (rows) fp32, frozen; empty when the projection has none
};

// A norm weight as the decoder reads it: w, or 1 + w in fp32 for a (1 + w) norm (what the CPU op multiplies by).
std::vector<float> norm_weight(const std::vector<float>& w, float offset) {
    if (offset == 0.0f) return w;
    std::vector<float> o(w.size());
    for (size_t i = 0; i < w.size(); ++i) o[i] = offset + w[i];
    return o;
}

class cuda_decoder final : public decoder {
public:
    cuda_decoder(const model_config& cfg, int device) : cfg_(cfg), device_(device) {
        const architecture& arch = architecture_for(cfg);
        qk_norm_ = arch.qk_norm;
        sandwich_ = arch.sandwich_norms;
        geglu_ = arch.mlp == mlp_kind::geglu_tanh;
        offset_ = arch.norm == norm_kind::rms_one_plus ? 1.0f : 0.0f;
        // the default scale stays the kernel's own 1/sqrt(HS), as before for LLaMA
        attn_scale_ = cfg.query_pre_attn_scalar > 0 ? float(cfg.attention_scale()) : 0.0f;
        QLS_CUDA_CHECK(cudaSetDevice(device));
        cudaDeviceProp prop{};
        QLS_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        label_ = "cuda:" + std::to_string(device) + " (" + prop.name + ")";
        QLS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        QLS_CUDA_CHECK(cudaMallocHost(&state_host_, sizeof(K::decode_state)));
        C = cfg.hidden_size;
        H = cfg.intermediate_size;
        V = cfg.vocab_size;
        NH = cfg.num_heads;
        NKV = cfg.num_kv_heads;
        HS = cfg.head_dim;
        L = cfg.num_layers;
        Q = NH * HS;
        KV = NKV * HS;
        w_.resize(size_t(L));
        attn_norm_.resize(size_t(L));
        mlp_norm_.resize(size_t(L));
        q_norm_.resize(size_t(L));
        k_norm_.resize(size_t(L));
        post_attn_norm_.resize(size_t(L));
        post_mlp_norm_.resize(size_t(L));
        const std::vector<float> inv = rope_inv_freq(cfg);
        upload(inv_freq_, inv.data(), inv.size(), "the rotary frequencies");
        if (cfg.has_local_rope && cfg.any_sliding()) { // the sliding layers' own (HS/2), Gemma 3
            const std::vector<float> local = rope_inv_freq_local(cfg);
            upload(inv_freq_local_, local.data(), local.size(), "the rotary frequencies");
        }
        x_.alloc(size_t(C) * 4, "activations");
        xb_.alloc(size_t(C) * 4, "activations");
        q_.alloc(size_t(Q) * 4, "activations");
        k_.alloc(size_t(KV) * 4, "activations");
        v_.alloc(size_t(KV) * 4, "activations");
        atty_.alloc(size_t(Q) * 4, "activations");
        gate_.alloc(size_t(H) * 4, "activations");
        up_.alloc(size_t(H) * 4, "activations");
        h_.alloc(size_t(H) * 4, "activations");
        if (sandwich_) tmp_.alloc(size_t(C) * 4, "activations");
        logits_.alloc(size_t(V) * 4, "the logits");
        state_.alloc(sizeof(K::decode_state), "the decode state");
        logits_host_.resize(size_t(V));
    }

    ~cuda_decoder() override {
        cudaSetDevice(device_);
        if (graph_) cudaGraphExecDestroy(graph_);
        if (stream_) cudaStreamDestroy(stream_);
        if (state_host_) cudaFreeHost(state_host_);
    }

    // ---- weights --------------------------------------------------------------------------------------------------
    void load(const llama_model& m, const lora_weights<float>* adapter) {
        const architecture& arch = architecture_for(cfg_);
        std::unique_ptr<gpu_nf4_quantizer> quantizer;
        for (int l = 0; l < L; ++l) {
            for (lora_target t : arch.projections) {
                projection& p = w_[size_t(l)][size_t(t)];
                const auto [in, out] = lora_in_out(cfg_, t);
                if (m.quantized()) {
                    put_nf4(p, m.nf4[size_t(l)][size_t(t)], l, t, in, out);
                } else {
                    // An unquantized model: the same NF4 bytes the CPU loader would make, quantized on this GPU.
                    const std::vector<float>& w = m.projection(l, t);
                    if (w.size() != size_t(in) * size_t(out))
                        throw error(error_code::invalid_argument,
                                    "layer " + std::to_string(l) + " " + lora_target_name(t) +
                                        ": the model has neither an NF4 nor an f32 weight for this projection",
                                    "load the model again");
                    if (!quantizer) quantizer = std::make_unique<gpu_nf4_quantizer>(device_);
                    put_nf4(p, quantizer->quantize(w.data(), out, in, true), l, t, in, out);
                    QLS_CUDA_CHECK(cudaSetDevice(device_));
                }
            }
            const llama_layer_params<float>& lp = m.params.layers[size_t(l)];
            put_norm(attn_norm_[size_t(l)], lp.attn_norm, C, l, "input norm");
            put_norm(mlp_norm_[size_t(l)], lp.mlp_norm, C, l, "MLP norm");
            if (qk_norm_) {
                put_norm(q_norm_[size_t(l)], lp.q_norm, HS, l, "q norm");
                put_norm(k_norm_[size_t(l)], lp.k_norm, HS, l, "k norm");
            }
            if (sandwich_) {
                put_norm(post_attn_norm_[size_t(l)], lp.post_attn_norm, C, l, "post-attention norm");
                put_norm(post_mlp_norm_[size_t(l)], lp.post_mlp_norm, C, l, "post-MLP norm");
            }
            for (lora_target t : arch.projections) {
                if (!projection_has_bias(cfg_, t)) continue;
                const std::vector<float>& b = lp.bias[size_t(t)];
                projection& p = w_[size_t(l)][size_t(t)];
                if (b.size() != size_t(p.rows))
                    throw error(error_code::invalid_argument,
                                "layer " + std::to_string(l) + " " + lora_target_name(t) + ": the model's bias has " +
                                    std::to_string(b.size()) + " values, the projection " + std::to_string(p.rows) +
                                    " outputs",
                                "load the model again; its config.json and weights disagree");
                upload(p.bias, b.data(), b.size(), "the biases");
            }
        }
        put_norm(final_norm_, m.params.final_norm, C, -1, "final norm");
        const std::vector<uint16_t> e = to_bf16(m.params.embed);
        upload(embed_, e.data(), e.size(), "the embedding");
        if (!m.params.lm_head.empty()) {
            const std::vector<uint16_t> h = to_bf16(m.params.lm_head);
            upload(head_, h.data(), h.size(), "the LM head");
        }
        if (adapter) put_adapter(*adapter);
    }

    // A norm weight of n values, as the decoder reads it (norm_weight); a wrong size is refused, never read past.
    void put_norm(dmem& d, const std::vector<float>& w, int n, int l, const char* what) {
        if (w.size() != size_t(n))
            throw error(error_code::invalid_argument,
                        (l >= 0 ? "layer " + std::to_string(l) + " " : std::string()) + what + ": the model has " +
                            std::to_string(w.size()) + " values, expected " + std::to_string(n),
                        "load the model again; its config.json and weights disagree");
        const std::vector<float> v = norm_weight(w, offset_);
        upload(d, v.data(), v.size(), "the norms");
    }

    void put_nf4(projection& p, const nf4_tensor& w, int l, lora_target t, int in, int out) {
        if (!w.double_quant)
            throw error(error_code::unsupported,
                        "layer " + std::to_string(l) + " " + lora_target_name(t) +
                            ": GPU generation takes NF4 with double quantization (this weight has a plain fp32 "
                            "absmax)",
                        "load the unquantized model and quantize at load time (double quantization is the default), "
                        "or generate on the CPU (--device cpu)");
        if (w.rows != out || w.cols != in)
            throw error(error_code::shape_mismatch,
                        "layer " + std::to_string(l) + " " + lora_target_name(t) + ": NF4 weight is [" +
                            std::to_string(w.rows) + ", " + std::to_string(w.cols) + "], expected [" +
                            std::to_string(out) + ", " + std::to_string(in) + "]",
                        "load the model again");
        p.rows = out;
        p.cols = in;
        p.blocksize = w.blocksize;
        p.nested_blocksize = w.nested_blocksize;
        p.offset = w.absmax_offset;
        upload(p.packed, w.packed.data(), w.packed.size(), "the NF4 weights");
        upload(p.codes, w.absmax_codes.data(), w.absmax_codes.size(), "the NF4 weights");
        upload(p.scale, w.absmax_scale.data(), w.absmax_scale.size(), "the NF4 weights");
        upload(p.map, w.nested_map.data(), w.nested_map.size(), "the NF4 weights");
    }

    void put_adapter(const lora_weights<float>& ad) {
        if (int(ad.layers.size()) != L)
            throw error(error_code::shape_mismatch,
                        "the adapter has " + std::to_string(ad.layers.size()) + " layers, the model " +
                            std::to_string(L),
                        "use the adapter trained on this base model");
        scale_ = ad.config.scale();
        for (int l = 0; l < L; ++l)
            for (lora_target t : all_lora_targets()) {
                const lora_adapter<float>& a = ad.at(l, t);
                if (!a.enabled()) continue;
                projection& p = w_[size_t(l)][size_t(t)];
                if (a.in != p.cols || a.out != p.rows || a.a.size() != size_t(a.rank) * size_t(a.in) ||
                    a.b.size() != size_t(a.out) * size_t(a.rank))
                    throw error(error_code::shape_mismatch,
                                "layer " + std::to_string(l) + " " + lora_target_name(t) +
                                    ": the adapter's shapes do not match the model's projection",
                                "use the adapter trained on this base model");
                p.rank = a.rank;
                max_rank_ = std::max(max_rank_, a.rank);
                upload(p.a, a.a.data(), a.a.size(), "the adapter");
                upload(p.b, a.b.data(), a.b.size(), "the adapter");
            }
        if (max_rank_ > 0) xa_.alloc(size_t(max_rank_) * 4, "activations");
    }

    void synthetic(int rank, const std::vector<lora_target>& targets, uint64_t seed) {
        const auto nested = dynamic_map(true);
        uint64_t s = seed;
        auto next = [&] { return s = s * 6364136223846793005ull + 1442695040888963407ull; };
        const architecture& arch = architecture_for(cfg_);
        for (int l = 0; l < L; ++l) {
            for (lora_target t : arch.projections) {
                projection& p = w_[size_t(l)][size_t(t)];
                const auto [in, out] = lora_in_out(cfg_, t);
                const int64_t n = int64_t(in) * out, nb = (n + 63) / 64, ns = (nb + 255) / 256;
                p.rows = out;
                p.cols = in;
                p.offset = 0.03f; // absmax = nested_map[code] * 0.01 + 0.03: block maxima in [0.02, 0.04]
                p.packed.alloc(size_t((n + 1) / 2), "the NF4 weights");
                p.codes.alloc(size_t(nb), "the NF4 weights");
                p.scale.alloc(size_t(ns) * 4, "the NF4 weights");
                upload(p.map, nested.data(), nested.size(), "the NF4 weights");
                K::fill_random_bytes(p.packed.as<uint8_t>(), (n + 1) / 2, next(), stream_);
                K::fill_random_bytes(p.codes.as<uint8_t>(), nb, next(), stream_);
                K::fill_f32(p.scale.as<float>(), ns, 0.01f, stream_);
                if (rank > 0 && std::find(targets.begin(), targets.end(), t) != targets.end()) {
                    p.rank = rank;
                    p.a.alloc(size_t(rank) * in * 4, "the adapter");
                    p.b.alloc(size_t(out) * rank * 4, "the adapter");
                    K::fill_random_uniform_f32(p.a.as<float>(), int64_t(rank) * in, next(), 1.0f / std::sqrt(float(in)),
                                               stream_);
                    K::fill_random_uniform_f32(p.b.as<float>(), int64_t(out) * rank, next(), 0.01f, stream_);
                    max_rank_ = std::max(max_rank_, rank);
                }
            }
            attn_norm_[size_t(l)].alloc(size_t(C) * 4, "the norms");
            mlp_norm_[size_t(l)].alloc(size_t(C) * 4, "the norms");
            K::fill_f32(attn_norm_[size_t(l)].as<float>(), C, 1.0f, stream_);
            K::fill_f32(mlp_norm_[size_t(l)].as<float>(), C, 1.0f, stream_);
            // the newer families' tensors: identity norms and small random biases
            for (auto [d, n] : {std::pair<dmem*, int>{&q_norm_[size_t(l)], qk_norm_ ? HS : 0},
                                {&k_norm_[size_t(l)], qk_norm_ ? HS : 0},
                                {&post_attn_norm_[size_t(l)], sandwich_ ? C : 0},
                                {&post_mlp_norm_[size_t(l)], sandwich_ ? C : 0}})
                if (n > 0) {
                    d->alloc(size_t(n) * 4, "the norms");
                    K::fill_f32(d->as<float>(), n, 1.0f, stream_);
                }
            for (lora_target t : arch.projections)
                if (projection_has_bias(cfg_, t)) {
                    projection& p = w_[size_t(l)][size_t(t)];
                    p.bias.alloc(size_t(p.rows) * 4, "the biases");
                    K::fill_random_uniform_f32(p.bias.as<float>(), p.rows, next(), 0.02f, stream_);
                }
        }
        final_norm_.alloc(size_t(C) * 4, "the norms");
        K::fill_f32(final_norm_.as<float>(), C, 1.0f, stream_);
        embed_.alloc(size_t(V) * C * 2, "the embedding");
        K::fill_random_normal_bf16(embed_.as<bf16>(), int64_t(V) * C, next(), 0.02f, stream_);
        if (!cfg_.tie_word_embeddings) {
            head_.alloc(size_t(V) * C * 2, "the LM head");
            K::fill_random_normal_bf16(head_.as<bf16>(), int64_t(V) * C, next(), 0.02f, stream_);
        }
        scale_ = rank > 0 ? 1.0f : 0.0f;
        if (max_rank_ > 0) xa_.alloc(size_t(max_rank_) * 4, "activations");
        QLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    // ---- decoder ----------------------------------------------------------------------------------------------------
    void reset(int max_positions) override {
        device_call("GPU generation", [&] {
            QLS_CUDA_CHECK(cudaSetDevice(device_));
            const int want = std::max(1, std::min(max_positions, cfg_.max_position_embeddings));
            pos_ = 0;
            if (want == max_pos_) return;
            drop_graph();
            k_cache_.release();
            v_cache_.release();
            scores_.release();
            max_pos_ = 0;
            size_t elems = 0, bytes = 0;
            if (__builtin_mul_overflow(size_t(L) * size_t(want), size_t(KV), &elems) ||
                __builtin_mul_overflow(elems, sizeof(float), &bytes))
                throw error(error_code::invalid_argument,
                            "a KV cache of " + std::to_string(want) + " positions overflows the address space",
                            "generate with fewer positions (a shorter prompt or fewer new tokens)");
            k_cache_.alloc(bytes, "the KV cache");
            v_cache_.alloc(bytes, "the KV cache");
            scores_.alloc(size_t(NH) * size_t(want) * 4, "the attention scores");
            max_pos_ = want;
        });
    }

    const std::vector<float>& step(int token) override {
        if (token < 0 || token >= V)
            throw error(error_code::invalid_argument, "token id " + std::to_string(token) +
                                                          " is outside the vocabulary (0.." + std::to_string(V - 1) +
                                                          ")");
        if (max_pos_ == 0) reset(1);
        if (pos_ >= max_pos_)
            throw error(error_code::invalid_argument,
                        "the context is full (" + std::to_string(max_pos_) + " positions)",
                        "ask for fewer new tokens or a shorter prompt");
        device_call("GPU generation", [&] {
            QLS_CUDA_CHECK(cudaSetDevice(device_));
            state_host_->token = token;
            state_host_->pos = pos_;
            QLS_CUDA_CHECK(cudaMemcpyAsync(state_.p, state_host_, sizeof(K::decode_state), cudaMemcpyHostToDevice,
                                           stream_));
            run_step();
            QLS_CUDA_CHECK(cudaMemcpyAsync(logits_host_.data(), logits_.p, size_t(V) * 4, cudaMemcpyDeviceToHost,
                                           stream_));
            QLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
        });
        ++pos_;
        return logits_host_;
    }

    int position() const override { return pos_; }
    int capacity() const override { return max_pos_; }
    const model_config& config() const override { return cfg_; }
    std::string device_label() const override { return label_; }

    cuda_decoder_memory memory() const {
        cuda_decoder_memory m;
        for (const auto& layer : w_)
            for (const projection& p : layer)
                m.weight_bytes += p.packed.bytes + p.codes.bytes + p.scale.bytes + p.map.bytes + p.a.bytes + p.b.bytes +
                                  p.bias.bytes;
        for (const auto* v : {&attn_norm_, &mlp_norm_, &q_norm_, &k_norm_, &post_attn_norm_, &post_mlp_norm_})
            for (const dmem& d : *v) m.weight_bytes += d.bytes;
        m.weight_bytes += final_norm_.bytes + embed_.bytes + head_.bytes + inv_freq_.bytes + inv_freq_local_.bytes;
        m.cache_bytes = k_cache_.bytes + v_cache_.bytes + scores_.bytes;
        return m;
    }

    // Graph capture on or off (off: every step launches its kernels one by one).
    bool use_graph = true;

private:
    void drop_graph() {
        if (graph_) cudaGraphExecDestroy(graph_);
        graph_ = nullptr;
    }

    // The step's launches on stream_: as a replayed graph when possible, directly otherwise.
    void run_step() {
        if (use_graph && !graph_) {
            cudaGraph_t g = nullptr;
            QLS_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
            try {
                enqueue();
            } catch (...) {
                cudaStreamEndCapture(stream_, &g);
                if (g) cudaGraphDestroy(g);
                (void)cudaGetLastError();
                throw;
            }
            QLS_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
            const cudaError_t st = cudaGraphInstantiate(&graph_, g, 0);
            cudaGraphDestroy(g);
            if (st != cudaSuccess) {
                // Without a graph the same launches run one by one: slower, same results.
                (void)cudaGetLastError();
                graph_ = nullptr;
                use_graph = false;
            }
        }
        if (use_graph && graph_) QLS_CUDA_CHECK(cudaGraphLaunch(graph_, stream_));
        else enqueue();
    }

    // out (rows) [=, or += when accumulate] W in [+ bias] + scale · B (A in)
    void proj(int l, lora_target t, const float* in, float* out, bool accumulate) {
        const projection& p = w_[size_t(l)][size_t(t)];
        K::nf4_gemv(out, in, p.packed.as<uint8_t>(), p.codes.as<uint8_t>(), p.scale.as<float>(), p.offset,
                    p.map.as<float>(), p.rows, p.cols, p.blocksize, p.nested_blocksize, accumulate, stream_);
        if (p.bias.p) K::decode_add(out, p.bias.as<float>(), p.rows, stream_);
        if (p.rank > 0) {
            K::f32_gemv(xa_.as<float>(), in, p.a.as<float>(), p.rank, p.cols, 1.0f, false, stream_);
            K::f32_gemv(out, xa_.as<float>(), p.b.as<float>(), p.rows, p.rank, scale_, true, stream_);
        }
    }

    // x (C) += proj_t(in), or with a post norm: tmp = proj_t(in); xb = post_norm(tmp); x += xb (xb is free here:
    // the next use rewrites it).
    void residual_proj(int l, lora_target t, const float* in, const dmem* post_norm) {
        float* x = x_.as<float>();
        if (!post_norm) {
            proj(l, t, in, x, true);
            return;
        }
        float *tmp = tmp_.as<float>(), *xb = xb_.as<float>();
        proj(l, t, in, tmp, false);
        K::decode_rmsnorm(xb, tmp, post_norm->as<float>(), C, float(cfg_.rms_norm_eps), stream_);
        K::decode_add(x, xb, C, stream_);
    }

    void enqueue() {
        const auto* st = state_.as<K::decode_state>();
        float *x = x_.as<float>(), *xb = xb_.as<float>(), *q = q_.as<float>(), *k = k_.as<float>(), *v = v_.as<float>(),
              *atty = atty_.as<float>();
        const float eps = float(cfg_.rms_norm_eps);
        K::decode_embedding(x, embed_.as<bf16>(), st, C, stream_);
        if (cfg_.embed_scale != 1.0) K::decode_scale(x, float(cfg_.embed_scale), C, stream_);
        for (int l = 0; l < L; ++l) {
            float* kc = k_cache_.as<float>() + size_t(l) * size_t(max_pos_) * size_t(KV);
            float* vc = v_cache_.as<float>() + size_t(l) * size_t(max_pos_) * size_t(KV);
            const float* freq = cfg_.layer_sliding(l) && inv_freq_local_.p ? inv_freq_local_.as<float>()
                                                                           : inv_freq_.as<float>();
            K::decode_rmsnorm(xb, x, attn_norm_[size_t(l)].as<float>(), C, eps, stream_);
            proj(l, lora_target::q, xb, q, false);
            proj(l, lora_target::k, xb, k, false);
            proj(l, lora_target::v, xb, v, false);
            if (qk_norm_) { // per head, in place: q (NH, HS), k (NKV, HS)
                K::decode_rmsnorm_rows(q, q, q_norm_[size_t(l)].as<float>(), NH, HS, eps, stream_);
                K::decode_rmsnorm_rows(k, k, k_norm_[size_t(l)].as<float>(), NKV, HS, eps, stream_);
            }
            K::decode_rope_store(q, k, v, kc, vc, freq, st, NH, NKV, HS, stream_);
            K::decode_attention(atty, scores_.as<float>(), q, kc, vc, st, NH, NKV, HS, max_pos_, stream_,
                                cfg_.layer_window(l), attn_scale_);
            residual_proj(l, lora_target::o, atty, sandwich_ ? &post_attn_norm_[size_t(l)] : nullptr);
            K::decode_rmsnorm(xb, x, mlp_norm_[size_t(l)].as<float>(), C, eps, stream_);
            proj(l, lora_target::gate, xb, gate_.as<float>(), false);
            proj(l, lora_target::up, xb, up_.as<float>(), false);
            if (geglu_) K::decode_geglu(h_.as<float>(), gate_.as<float>(), up_.as<float>(), H, stream_);
            else K::decode_swiglu(h_.as<float>(), gate_.as<float>(), up_.as<float>(), H, stream_);
            residual_proj(l, lora_target::down, h_.as<float>(), sandwich_ ? &post_mlp_norm_[size_t(l)] : nullptr);
        }
        K::decode_rmsnorm(xb, x, final_norm_.as<float>(), C, eps, stream_);
        K::bf16_gemv(logits_.as<float>(), xb, (head_.p ? head_ : embed_).as<bf16>(), V, C, stream_);
    }

    model_config cfg_;
    int device_ = 0;
    std::string label_;
    int C = 0, H = 0, V = 0, NH = 0, NKV = 0, HS = 0, L = 0, Q = 0, KV = 0;
    cudaStream_t stream_ = nullptr;
    cudaGraphExec_t graph_ = nullptr;
    K::decode_state* state_host_ = nullptr; // pinned
    std::vector<std::array<projection, k_lora_target_count>> w_;
    std::vector<dmem> attn_norm_, mlp_norm_, q_norm_, k_norm_, post_attn_norm_, post_mlp_norm_;
    dmem final_norm_, embed_, head_, inv_freq_, inv_freq_local_;
    bool qk_norm_ = false, sandwich_ = false, geglu_ = false;
    float offset_ = 0.0f, attn_scale_ = 0.0f;
    float scale_ = 0;
    int max_rank_ = 0;
    dmem tmp_, x_, xb_, q_, k_, v_, atty_, gate_, up_, h_, xa_, logits_, state_, k_cache_, v_cache_, scores_;
    int max_pos_ = 0, pos_ = 0;
    std::vector<float> logits_host_;
};

} // namespace

std::unique_ptr<decoder> make_cuda_decoder(const llama_model& model, const lora_weights<float>* adapter, int device) {
    return device_call("GPU generation", [&] {
        auto d = std::make_unique<cuda_decoder>(model.config, device);
        d->load(model, adapter);
        return std::unique_ptr<decoder>(std::move(d));
    });
}

std::unique_ptr<decoder> make_cuda_decoder_synthetic(const model_config& cfg, int rank,
                                                     const std::vector<lora_target>& targets, uint64_t seed,
                                                     int device) {
    return device_call("GPU generation", [&] {
        auto d = std::make_unique<cuda_decoder>(cfg, device);
        d->synthetic(rank, targets, seed);
        return std::unique_ptr<decoder>(std::move(d));
    });
}

cuda_decoder_memory cuda_decoder_memory_of(const decoder& d) {
    const auto* c = dynamic_cast<const cuda_decoder*>(&d);
    if (!c)
        throw error(error_code::invalid_argument,
                    "cuda_decoder_memory_of: " + d.device_label() + " is not a CUDA decoder");
    return c->memory();
}

} // namespace qls
