// The decoder-only model on the CPU reference backend: weight loading, forward/backward over a batch, KV-cache
// decoding.
//
// Forward (HF LlamaForCausalLM, modeling_llama.py; Qwen2/Qwen3/Gemma3 modeling files for the optional steps in []),
// x = embed(tokens) [· sqrt(C)], per layer l with x (N, C):
//   h = norm(x) ; q,k,v = h·Wqᵀ [+ bq], ... ; [q, k = per-head norm(q), norm(k)] ; rope(q), rope(k) ;
//   a = attention(q,k,v) [sliding window, scale] ; o = a·Woᵀ [+ bo] ; [o = post_attn_norm(o)] ; x = x + o
//   h = norm(x) ; m = (act(h·Wgateᵀ) * h·Wupᵀ)·Wdownᵀ ; [m = post_mlp_norm(m)] ; x = x + m
// then logits = norm(x)·Wlmᵀ and a mean cross-entropy over targets != -1. norm is RMSNorm with w or (1 + w), act
// silu (SwiGLU) or tanh GELU (GeGLU).
// Backward calls the ops' backward functions in exactly the reverse order.
#include "qls/llama.h"

#include "backends/cpu/ops.h"
#include "qls/architecture.h"
#include "qls/error.h"
#include "qls/model_source.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <thread>

namespace qls {

// ----------------------------------------------------------------------------
// loading

llama_model llama_model::load(const hf_checkpoint& ckpt, const llama_load_options& opt) {
    return load(*open_hf_source(ckpt), opt);
}

namespace {

// Progress and cancel of one load: the totals come from the tensors the load will read (every stored tensor of a
// projection counts, so a bitsandbytes weight's absmax and quant state are in its bytes).
class load_tracker {
public:
    load_tracker(const model_source& src, const load_control& ctl) : ctl_(ctl), t0_(std::chrono::steady_clock::now()) {
        for (const weight_info& w : src.weights()) bytes_of_[w.name] = w.stored_bytes;
    }
    // Declares a tensor the load reads (before the first one is read).
    void plan(const std::string& name) {
        ++p_.tensors_total;
        p_.bytes_total += bytes_for(name);
    }
    void check_cancel() const {
        if (ctl_.cancel && ctl_.cancel->load(std::memory_order_relaxed))
            throw error(error_code::cancelled, "the model load was cancelled",
                        "load the model again when you want to use it");
    }
    // After a tensor: progress, the test delay, then the cancel check before the next one.
    void done(const std::string& name) {
        ++p_.tensors_done;
        p_.bytes_done += bytes_for(name);
        if (ctl_.test_delay_ms_per_tensor > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(ctl_.test_delay_ms_per_tensor));
        p_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
        if (ctl_.on_progress) ctl_.on_progress(p_);
        check_cancel();
    }

private:
    // The stored bytes of `name` and of every companion tensor "name.*" (bitsandbytes: .absmax, .quant_map, ...).
    uint64_t bytes_for(const std::string& name) const {
        uint64_t n = 0;
        for (auto it = bytes_of_.lower_bound(name); it != bytes_of_.end(); ++it) {
            if (it->first != name && it->first.compare(0, name.size() + 1, name + ".") != 0) break;
            n += it->second;
        }
        return n;
    }
    const load_control& ctl_;
    std::chrono::steady_clock::time_point t0_;
    std::map<std::string, uint64_t> bytes_of_;
    load_progress p_;
};

} // namespace

bool projection_has_bias(const model_config& c, lora_target t) {
    switch (t) {
    case lora_target::q:
    case lora_target::k:
    case lora_target::v: return c.qkv_bias;
    case lora_target::o: return c.o_bias;
    case lora_target::gate:
    case lora_target::up:
    case lora_target::down: return c.mlp_bias;
    }
    return false;
}

template <class T> std::vector<T>& layer_tensor(llama_layer_params<T>& L, base_tensor t) {
    switch (t) {
    case base_tensor::attn_norm: return L.attn_norm;
    case base_tensor::mlp_norm: return L.mlp_norm;
    case base_tensor::q_norm: return L.q_norm;
    case base_tensor::k_norm: return L.k_norm;
    case base_tensor::post_attn_norm: return L.post_attn_norm;
    case base_tensor::post_mlp_norm: return L.post_mlp_norm;
    default: break;
    }
    QLS_ASSERT(false && "not a per-layer tensor");
    return L.attn_norm;
}
template std::vector<float>& layer_tensor(llama_layer_params<float>&, base_tensor);
template std::vector<double>& layer_tensor(llama_layer_params<double>&, base_tensor);

llama_model llama_model::load(const model_source& src, const llama_load_options& opt) {
    llama_model m;
    m.config = src.config();
    m.dir = src.path();
    const model_config& c = m.config;
    const architecture& arch = architecture_for(c);
    load_tracker track(src, opt.control);
    track.check_cancel();

    // A pre-quantized (bitsandbytes *-bnb-4bit) checkpoint is NF4 whatever the options say.
    const bool prequantized = src.stores_nf4(arch.hf_weight(0, arch.projections.front()));
    const bool nf4 = prequantized || opt.quantize_nf4;
    const bool keep_f32 = opt.keep_f32_projections || !nf4;
    const bool has_head = !c.tie_word_embeddings;
    const std::string head = arch.hf_name(base_tensor::lm_head);
    if (has_head && !src.has(head))
        throw error(error_code::format,
                    src.path() + ": the model's config has tie_word_embeddings false but no tensor '" + head +
                        "' exists",
                    "set \"tie_word_embeddings\": true in config.json if the model shares its embedding and "
                    "output weights, or re-export the checkpoint with its lm_head");

    // Totals first (progress reports n/N), in the order the tensors are read.
    track.plan(arch.hf_name(base_tensor::embed));
    const std::vector<base_tensor> layer_tensors = arch.layer_tensors();
    std::vector<lora_target> biased;
    for (lora_target t : arch.projections)
        if (projection_has_bias(c, t)) biased.push_back(t);
    for (int l = 0; l < c.num_layers; ++l) {
        for (base_tensor t : layer_tensors) track.plan(arch.hf_name(t, l));
        for (lora_target t : arch.projections) track.plan(arch.hf_weight(l, t));
        for (lora_target t : biased) track.plan(arch.hf_bias(l, t));
    }
    track.plan(arch.hf_name(base_tensor::final_norm));
    if (has_head) track.plan(head);

    auto get = [&](const std::string& name, const shape_t& shape) {
        std::vector<float> v(size_t(shape_numel(shape)));
        src.read_f32(name, shape, v.data());
        track.done(name);
        return v;
    };
    auto get_base = [&](base_tensor t, int layer = -1) { return get(arch.hf_name(t, layer), arch.base_shape(c, t)); };
    // A tensor goes to the sink (and is dropped here) or into the model.
    weight_sink* const sink = opt.sink;
    if (sink && !nf4)
        throw error(error_code::invalid_argument,
                    src.path() + ": a streaming load (llama_load_options::sink) takes an NF4 base, but this load "
                                 "neither quantizes nor reads a 4-bit checkpoint",
                    "set quantize_nf4 (quantization.nf4 true in run.json)");
    auto keep_base = [&](std::vector<float>& dst, base_tensor t, int layer) {
        std::vector<float> v = get_base(t, layer);
        if (sink) sink->put_base(layer, t, v);
        else dst = std::move(v);
    };
    keep_base(m.params.embed, base_tensor::embed, -1);
    m.params.layers.resize(size_t(c.num_layers));
    if (nf4 && !sink) m.nf4.resize(size_t(c.num_layers));
    // The one transient f32 of the NF4-only load: a projection read from the file, quantized, then overwritten by
    // the next one; freed when the load returns.
    std::vector<float> scratch;
    std::vector<uint16_t> bf16_scratch; // the same for a BF16 projection going to nf4_quantizer_bf16
    for (int l = 0; l < c.num_layers; ++l) {
        llama_layer_params<float>& L = m.params.layers[size_t(l)];
        for (base_tensor t : layer_tensors) keep_base(layer_tensor(L, t), t, l);
        for (lora_target t : biased) {
            std::vector<float> v = get(arch.hf_bias(l, t), {arch.projection_shape(c, t).first});
            if (sink) sink->put_bias(l, t, v);
            else L.bias[size_t(t)] = std::move(v);
        }
        for (lora_target t : arch.projections) {
            const std::string name = arch.hf_weight(l, t);
            const auto [out, in] = arch.projection_shape(c, t);
            const size_t numel = size_t(in) * size_t(out);
            std::vector<float>& w = keep_f32 && !sink ? m.projection(l, t) : scratch;
            // streaming: the one NF4 tensor in flight, handed to the sink and dropped
            nf4_tensor streamed;
            // where the NF4 goes; m.nf4 is empty unless the base is NF4 (an f32 load never writes through it)
            nf4_tensor* const q = !nf4 ? nullptr : sink ? &streamed : &m.nf4[size_t(l)][size_t(t)];
            if (src.stores_nf4(name)) {
                std::optional<nf4_tensor> stored = src.read_nf4(name, out, in);
                QLS_ASSERT(stored.has_value() && q != nullptr);
                *q = std::move(*stored);
            } else if (prequantized) {
                throw error(error_code::format,
                            src.path() + ": tensor '" + name +
                                "' is not 4-bit quantized while the rest of the "
                                "checkpoint is (bitsandbytes NF4)",
                            "the checkpoint is incomplete or mixed; download or export it again");
            } else if (nf4 && opt.nf4_quantizer_bf16 && src.read_bf16(name, {out, in}, bf16_scratch)) {
                // stored as BF16: the quantizer takes the bits (half the bytes of an f32 copy, no host conversion)
                *q = opt.nf4_quantizer_bf16(bf16_scratch.data(), out, in, opt.double_quant);
            } else {
                w.resize(numel);
                src.read_f32(name, {out, in}, w.data());
                if (nf4)
                    *q = opt.nf4_quantizer ? opt.nf4_quantizer(w.data(), out, in, opt.double_quant)
                                           : nf4_quantize(w.data(), out, in, opt.double_quant);
            }
            if (sink) {
                sink->put_projection(l, t, streamed);
            } else if (nf4 && keep_f32) {
                w.resize(numel);
                nf4_dequantize(m.nf4[size_t(l)][size_t(t)], w.data());
            }
            track.done(name);
        }
    }
    std::vector<float>().swap(scratch); // the projections' staging goes before the LM head is read
    std::vector<uint16_t>().swap(bf16_scratch);
    keep_base(m.params.final_norm, base_tensor::final_norm, -1);
    if (has_head) keep_base(m.params.lm_head, base_tensor::lm_head, -1);
    m.inv_freq = rope_inv_freq(c);
    return m;
}

bool llama_model::has_f32_projections() const {
    for (const llama_layer_params<float>& L : params.layers)
        if (L.wq.empty() || L.wk.empty() || L.wv.empty() || L.wo.empty() || L.w_gate.empty() || L.w_up.empty() ||
            L.w_down.empty())
            return false;
    return true;
}

void llama_model::require_f32_projections(const std::string& who) const {
    if (!has_f32_projections())
        throw error(error_code::internal,
                    who + " needs the model's f32 projection weights, but this model was loaded NF4-only "
                          "(keep_f32_projections = false) for a GPU backend",
                    "load the model with keep_f32_projections = true for the CPU backend");
}

std::vector<float>& llama_model::projection(int layer, lora_target t) {
    llama_layer_params<float>& L = params.layers.at(size_t(layer));
    switch (t) {
    case lora_target::q: return L.wq;
    case lora_target::k: return L.wk;
    case lora_target::v: return L.wv;
    case lora_target::o: return L.wo;
    case lora_target::gate: return L.w_gate;
    case lora_target::up: return L.w_up;
    case lora_target::down: return L.w_down;
    }
    return L.wq;
}

const std::vector<float>& llama_model::projection(int layer, lora_target t) const {
    return const_cast<llama_model*>(this)->projection(layer, t);
}

llama_model llama_model::random(const model_config& cfg, uint64_t seed) {
    llama_model m;
    m.config = cfg;
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    auto rnd = [&](size_t n) {
        std::vector<float> v(n);
        for (float& x : v) x = nd(rng);
        return v;
    };
    const architecture& arch = architecture_for(cfg);
    // Norm weights that give the identity scale: 1 for w, 0 for (1 + w) (Gemma3RMSNorm initialises zeros).
    const float unit = arch.norm == norm_kind::rms_one_plus ? 0.0f : 1.0f;
    auto ones = [unit](size_t n) { return std::vector<float>(n, unit); };
    const size_t C = size_t(cfg.hidden_size), H = size_t(cfg.intermediate_size), V = size_t(cfg.vocab_size);
    const size_t Q = size_t(cfg.num_heads) * size_t(cfg.head_dim), KV = size_t(cfg.num_kv_heads) * size_t(cfg.head_dim);
    m.params.embed = rnd(V * C);
    m.params.layers.resize(size_t(cfg.num_layers));
    for (auto& L : m.params.layers) {
        L.attn_norm = ones(C);
        L.wq = rnd(Q * C);
        L.wk = rnd(KV * C);
        L.wv = rnd(KV * C);
        L.wo = rnd(C * Q);
        L.mlp_norm = ones(C);
        L.w_gate = rnd(H * C);
        L.w_up = rnd(H * C);
        L.w_down = rnd(C * H);
        for (base_tensor t : arch.layer_tensors())
            if (t != base_tensor::attn_norm && t != base_tensor::mlp_norm)
                layer_tensor(L, t) = ones(size_t(arch.base_shape(cfg, t)[0]));
        for (lora_target t : arch.projections)
            if (projection_has_bias(cfg, t)) L.bias[size_t(t)] = rnd(size_t(arch.projection_shape(cfg, t).first));
    }
    m.params.final_norm = ones(C);
    if (!cfg.tie_word_embeddings) m.params.lm_head = rnd(V * C);
    m.inv_freq = rope_inv_freq(cfg);
    return m;
}

llama_params<double> llama_model::params_f64() const {
    auto d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
    llama_params<double> p;
    p.embed = d(params.embed);
    for (const auto& L : params.layers) {
        llama_layer_params<double> D;
        D.attn_norm = d(L.attn_norm);
        D.wq = d(L.wq);
        D.wk = d(L.wk);
        D.wv = d(L.wv);
        D.wo = d(L.wo);
        D.mlp_norm = d(L.mlp_norm);
        D.w_gate = d(L.w_gate);
        D.w_up = d(L.w_up);
        D.w_down = d(L.w_down);
        for (size_t t = 0; t < L.bias.size(); ++t) D.bias[t] = d(L.bias[t]);
        D.q_norm = d(L.q_norm);
        D.k_norm = d(L.k_norm);
        D.post_attn_norm = d(L.post_attn_norm);
        D.post_mlp_norm = d(L.post_mlp_norm);
        p.layers.push_back(std::move(D));
    }
    p.final_norm = d(params.final_norm);
    p.lm_head = d(params.lm_head);
    return p;
}

// ----------------------------------------------------------------------------
// training pass

template <class T> struct llama_pass<T>::buffers {
    const model_config& cfg;
    const llama_params<T>& p;
    const std::vector<float>& inv_freq;
    lora_weights<T>* lora;
    llama_params<T>* wgrad = nullptr; // full-parameter training: base weight gradients (+=), else nullptr
    int B, Tn, N, C, NH, NKV, HS, H, V, L, Q, KV;
    const architecture& arch;
    T norm_offset;                     // 1 for (1 + w) norms, else 0
    std::vector<float> inv_freq_local; // (HS/2) the sliding layers' RoPE
    bool dropout_on = false;
    uint64_t dropout_seed = 0;

    // What one adapter saves in forward: its input after dropout (only when dropout is on) and xa = xd·Aᵀ.
    struct lora_acts {
        std::vector<T> xd; // (N, in)
        std::vector<T> xa; // (N, r)
    };
    // Saved by one layer's forward for its backward. Without checkpointing there is one per layer; with it, one
    // scratch set that backward refills by recomputing the layer from its input xs[l].
    struct layer_acts {
        std::vector<T> ln1, rstd1;     // (N, C), (N)
        std::vector<T> q, k, v;        // (N, Q), (N, KV), (N, KV); q and k after rope
        std::vector<T> att;            // (B, NH, T, T)
        std::vector<T> atty;           // (N, Q)
        std::vector<T> x_mid;          // (N, C) after the attention residual
        std::vector<T> ln2, rstd2;     // (N, C), (N)
        std::vector<T> gate, up, hmid; // (N, H)
        std::vector<T> q_raw, k_raw;   // (N, Q), (N, KV) before the q/k norms (qk_norm only)
        std::vector<T> rstd_q, rstd_k; // (N*NH), (N*NKV)
        std::vector<T> o_raw, d_raw;   // (N, C) attention and MLP outputs before the post norms (sandwich only)
        std::vector<T> rstd_o, rstd_d; // (N)
        std::array<lora_acts, k_lora_target_count> lora;
    };
    std::vector<layer_acts> acts;
    bool checkpointing = false;
    std::vector<std::vector<T>> xs;            // (L+1) × (N, C): residual stream entering layer l; xs[L] final
    std::vector<T> lnf, rstdf, logits, losses; // (N,C), (N), (N,V), (N)
    std::vector<int> tokens, targets, positions, segments;
    bool use_segments = false;
    bool x0_given = false; // the last forward took its input embeddings from the caller
    int counted = 0;
    std::vector<T> dx0; // (N, C)

    buffers(const model_config& c, const llama_params<T>& params, const std::vector<float>& f, int b, int t,
            lora_weights<T>* lw)
        : cfg(c), p(params), inv_freq(f), lora(lw), B(b), Tn(t), N(b * t), C(c.hidden_size), NH(c.num_heads),
          NKV(c.num_kv_heads), HS(c.head_dim), H(c.intermediate_size), V(c.vocab_size), L(c.num_layers),
          Q(c.num_heads * c.head_dim), KV(c.num_kv_heads * c.head_dim), arch(architecture_for(c)),
          norm_offset(arch.norm == norm_kind::rms_one_plus ? T(1) : T(0)), inv_freq_local(rope_inv_freq_local(c)) {
        const size_t n = size_t(N);
        xs.assign(size_t(L) + 1, std::vector<T>(n * C));
        lnf.resize(n * C);
        rstdf.resize(n);
        logits.resize(n * V);
        losses.resize(n);
        set_checkpointing(false);
        dx0.resize(n * C);
        tokens.resize(n);
        targets.resize(n);
        positions.resize(n);
        segments.resize(n);
    }

    void set_checkpointing(bool on) {
        checkpointing = on;
        acts.clear();
        acts.resize(on ? 1 : size_t(L));
        const size_t n = size_t(N);
        for (auto& a : acts) {
            a.ln1.resize(n * C);
            a.rstd1.resize(n);
            a.q.resize(n * Q);
            a.k.resize(n * KV);
            a.v.resize(n * KV);
            a.att.resize(size_t(B) * NH * Tn * Tn);
            a.atty.resize(n * Q);
            a.x_mid.resize(n * C);
            a.ln2.resize(n * C);
            a.rstd2.resize(n);
            a.gate.resize(n * H);
            a.up.resize(n * H);
            a.hmid.resize(n * H);
            if (arch.qk_norm) {
                a.q_raw.resize(n * Q);
                a.k_raw.resize(n * KV);
                a.rstd_q.resize(n * NH);
                a.rstd_k.resize(n * NKV);
            }
            if (arch.sandwich_norms) {
                a.o_raw.resize(n * C);
                a.d_raw.resize(n * C);
                a.rstd_o.resize(n);
                a.rstd_d.resize(n);
            }
        }
    }
    layer_acts& acts_of(int l) { return acts[checkpointing ? 0 : size_t(l)]; }

    const lora_adapter<T>* adapter(int l, lora_target t) const {
        if (!lora) return nullptr;
        const lora_adapter<T>& ad = lora->at(l, t);
        return ad.enabled() ? &ad : nullptr;
    }
    T dropout_p() const { return dropout_on && lora ? T(lora->config.dropout) : T(0); }

    // The gradient buffer of projection (l, t), or nullptr when the base is frozen.
    T* weight_grad(int l, lora_target t) {
        if (!wgrad) return nullptr;
        llama_layer_params<T>& G = wgrad->layers[size_t(l)];
        switch (t) {
        case lora_target::q: return G.wq.data();
        case lora_target::k: return G.wk.data();
        case lora_target::v: return G.wv.data();
        case lora_target::o: return G.wo.data();
        case lora_target::gate: return G.w_gate.data();
        case lora_target::up: return G.w_up.data();
        case lora_target::down: return G.w_down.data();
        }
        return nullptr;
    }

    // out (N, OC) = inp (N, IC) · Wᵀ [+ scale · B (A dropout(inp))]
    void linear_forward(layer_acts& a, int l, lora_target t, T* out, const T* inp, const T* W, int IC, int OC) {
        cpu::matmul_forward(out, inp, W, N, IC, OC);
        const std::vector<T>& bias = p.layers[size_t(l)].bias[size_t(t)];
        if (!bias.empty()) cpu::bias_forward(out, bias.data(), N, OC); // frozen: no gradient in backward
        const lora_adapter<T>* ad = adapter(l, t);
        if (!ad) return;
        lora_acts& la = a.lora[size_t(t)];
        la.xa.assign(size_t(N) * ad->rank, T(0));
        const T* xd = inp;
        const T p = dropout_p();
        if (p > 0) {
            // inverted dropout: kept elements scaled by 1/(1-p) (torch.nn.Dropout)
            la.xd.resize(size_t(N) * IC);
            const T keep_scale = T(1) / (T(1) - p);
            for (size_t i = 0; i < la.xd.size(); ++i)
                la.xd[i] = lora_dropout_keep(dropout_seed, l, t, i, float(p)) ? inp[i] * keep_scale : T(0);
            xd = la.xd.data();
        }
        cpu::lora_forward(out, la.xa.data(), xd, ad->a.data(), ad->b.data(), N, IC, OC, ad->rank,
                          T(lora->config.scale()));
    }

    // dinp (N, IC) += dout · W [+ adapter path]; adapter grads (da, db) +=
    void linear_backward(layer_acts& a, int l, lora_target t, T* dinp, const T* dout, const T* inp, const T* W, int IC,
                         int OC) {
        cpu::matmul_backward<T>(dinp, weight_grad(l, t), dout, inp, W, N, IC, OC);
        lora_adapter<T>* ad = lora ? &lora->at(l, t) : nullptr;
        if (!ad || !ad->enabled()) return;
        lora_acts& la = a.lora[size_t(t)];
        const T p = dropout_p();
        const T* xd = p > 0 ? la.xd.data() : inp;
        if (p == 0) {
            cpu::lora_backward(dinp, ad->da.data(), ad->db.data(), dout, xd, la.xa.data(), ad->a.data(), ad->b.data(),
                               N, IC, OC, ad->rank, T(lora->config.scale()));
            return;
        }
        std::vector<T> dxd(size_t(N) * IC, T(0));
        cpu::lora_backward(dxd.data(), ad->da.data(), ad->db.data(), dout, xd, la.xa.data(), ad->a.data(), ad->b.data(),
                           N, IC, OC, ad->rank, T(lora->config.scale()));
        const T keep_scale = T(1) / (T(1) - p);
        for (size_t i = 0; i < dxd.size(); ++i)
            if (lora_dropout_keep(dropout_seed, l, t, i, float(p))) dinp[i] += dxd[i] * keep_scale;
    }

    // One decoder layer: xs[l] (N, C) → xs[l+1] (N, C), saving into a what layer_backward needs.
    void layer_forward(int l, layer_acts& a) {
        const auto& W = p.layers[size_t(l)];
        const T eps = T(cfg.rms_norm_eps);
        const T* x_in = xs[size_t(l)].data();
        const float* freq = cfg.layer_sliding(l) ? inv_freq_local.data() : inv_freq.data();
        std::vector<T> proj_out(size_t(N) * C);
        // attention block: x_mid = x_in + [post_norm](o(attention(rope(q(h)), rope(k(h)), v(h)))), h = norm(x_in)
        cpu::rmsnorm_forward(a.ln1.data(), a.rstd1.data(), x_in, W.attn_norm.data(), N, C, eps, norm_offset);
        T* q_lin = arch.qk_norm ? a.q_raw.data() : a.q.data();
        T* k_lin = arch.qk_norm ? a.k_raw.data() : a.k.data();
        linear_forward(a, l, lora_target::q, q_lin, a.ln1.data(), W.wq.data(), C, Q);
        linear_forward(a, l, lora_target::k, k_lin, a.ln1.data(), W.wk.data(), C, KV);
        linear_forward(a, l, lora_target::v, a.v.data(), a.ln1.data(), W.wv.data(), C, KV);
        if (arch.qk_norm) { // per-head RMSNorm over HS: (N*NH, HS) and (N*NKV, HS) rows
            cpu::rmsnorm_forward(a.q.data(), a.rstd_q.data(), q_lin, W.q_norm.data(), N * NH, HS, eps, norm_offset);
            cpu::rmsnorm_forward(a.k.data(), a.rstd_k.data(), k_lin, W.k_norm.data(), N * NKV, HS, eps, norm_offset);
        }
        cpu::rope_forward(a.q.data(), positions.data(), freq, N, NH, HS);
        cpu::rope_forward(a.k.data(), positions.data(), freq, N, NKV, HS);
        cpu::attention_forward(a.atty.data(), a.att.data(), a.q.data(), a.k.data(), a.v.data(),
                               use_segments ? segments.data() : nullptr, B, Tn, NH, NKV, HS, cfg.layer_window(l),
                               cfg.attention_scale());
        T* o_lin = arch.sandwich_norms ? a.o_raw.data() : proj_out.data();
        linear_forward(a, l, lora_target::o, o_lin, a.atty.data(), W.wo.data(), Q, C);
        if (arch.sandwich_norms)
            cpu::rmsnorm_forward(proj_out.data(), a.rstd_o.data(), o_lin, W.post_attn_norm.data(), N, C, eps,
                                 norm_offset);
        cpu::residual_forward(a.x_mid.data(), x_in, proj_out.data(), long(N) * C);
        // MLP block: x_out = x_mid + [post_norm](down(act(gate(h)) * up(h))), h = norm(x_mid)
        cpu::rmsnorm_forward(a.ln2.data(), a.rstd2.data(), a.x_mid.data(), W.mlp_norm.data(), N, C, eps, norm_offset);
        linear_forward(a, l, lora_target::gate, a.gate.data(), a.ln2.data(), W.w_gate.data(), C, H);
        linear_forward(a, l, lora_target::up, a.up.data(), a.ln2.data(), W.w_up.data(), C, H);
        if (arch.mlp == mlp_kind::geglu_tanh)
            cpu::geglu_forward(a.hmid.data(), a.gate.data(), a.up.data(), long(N) * H);
        else cpu::swiglu_forward(a.hmid.data(), a.gate.data(), a.up.data(), long(N) * H);
        T* d_lin = arch.sandwich_norms ? a.d_raw.data() : proj_out.data();
        linear_forward(a, l, lora_target::down, d_lin, a.hmid.data(), W.w_down.data(), H, C);
        if (arch.sandwich_norms)
            cpu::rmsnorm_forward(proj_out.data(), a.rstd_d.data(), d_lin, W.post_mlp_norm.data(), N, C, eps,
                                 norm_offset);
        cpu::residual_forward(xs[size_t(l) + 1].data(), a.x_mid.data(), proj_out.data(), long(N) * C);
    }

    // The reverse of layer_forward: dx (N, C) holds d loss/d xs[l+1] on entry and d loss/d xs[l] on return.
    void layer_backward(int l, layer_acts& a, std::vector<T>& dx) {
        const auto& W = p.layers[size_t(l)];
        const float* freq = cfg.layer_sliding(l) ? inv_freq_local.data() : inv_freq.data();
        const size_t nC = size_t(N) * C;
        std::vector<T> dhmid(size_t(N) * H, T(0)), dgate(size_t(N) * H, T(0)), dup(size_t(N) * H, T(0));
        std::vector<T> dln(nC, T(0)), dx_mid(dx);
        std::vector<T> datty(size_t(N) * Q, T(0)), dq(size_t(N) * Q, T(0)), dk(size_t(N) * KV, T(0)),
            dv(size_t(N) * KV, T(0));
        // x_out = x_mid + post(down(hmid)): dx flows to x_mid directly and through the MLP
        std::vector<T> dproj;
        const T* dd = dx.data();
        if (arch.sandwich_norms) {
            dproj.assign(nC, T(0));
            cpu::rmsnorm_backward<T>(dproj.data(), nullptr, dx.data(), a.d_raw.data(), W.post_mlp_norm.data(),
                                     a.rstd_d.data(), N, C, norm_offset);
            dd = dproj.data();
        }
        linear_backward(a, l, lora_target::down, dhmid.data(), dd, a.hmid.data(), W.w_down.data(), H, C);
        if (arch.mlp == mlp_kind::geglu_tanh)
            cpu::geglu_backward(dgate.data(), dup.data(), dhmid.data(), a.gate.data(), a.up.data(), long(N) * H);
        else cpu::swiglu_backward(dgate.data(), dup.data(), dhmid.data(), a.gate.data(), a.up.data(), long(N) * H);
        linear_backward(a, l, lora_target::up, dln.data(), dup.data(), a.ln2.data(), W.w_up.data(), C, H);
        linear_backward(a, l, lora_target::gate, dln.data(), dgate.data(), a.ln2.data(), W.w_gate.data(), C, H);
        cpu::rmsnorm_backward<T>(dx_mid.data(), wgrad ? wgrad->layers[size_t(l)].mlp_norm.data() : nullptr, dln.data(),
                                 a.x_mid.data(), W.mlp_norm.data(), a.rstd2.data(), N, C, norm_offset);
        // x_mid = x_in + post(o(atty)): dx_mid flows to x_in directly and through attention
        std::copy(dx_mid.begin(), dx_mid.end(), dx.begin());
        const T* dout_o = dx_mid.data();
        if (arch.sandwich_norms) {
            std::fill(dproj.begin(), dproj.end(), T(0));
            cpu::rmsnorm_backward<T>(dproj.data(), nullptr, dx_mid.data(), a.o_raw.data(), W.post_attn_norm.data(),
                                     a.rstd_o.data(), N, C, norm_offset);
            dout_o = dproj.data();
        }
        linear_backward(a, l, lora_target::o, datty.data(), dout_o, a.atty.data(), W.wo.data(), Q, C);
        cpu::attention_backward(dq.data(), dk.data(), dv.data(), datty.data(), a.att.data(), a.q.data(), a.k.data(),
                                a.v.data(), B, Tn, NH, NKV, HS, cfg.attention_scale());
        cpu::rope_backward(dq.data(), positions.data(), freq, N, NH, HS);
        cpu::rope_backward(dk.data(), positions.data(), freq, N, NKV, HS);
        if (arch.qk_norm) { // through the per-head norms to the projections' outputs
            std::vector<T> dq_lin(dq.size(), T(0)), dk_lin(dk.size(), T(0));
            cpu::rmsnorm_backward<T>(dq_lin.data(), nullptr, dq.data(), a.q_raw.data(), W.q_norm.data(),
                                     a.rstd_q.data(), N * NH, HS, norm_offset);
            cpu::rmsnorm_backward<T>(dk_lin.data(), nullptr, dk.data(), a.k_raw.data(), W.k_norm.data(),
                                     a.rstd_k.data(), N * NKV, HS, norm_offset);
            dq.swap(dq_lin);
            dk.swap(dk_lin);
        }
        std::fill(dln.begin(), dln.end(), T(0));
        linear_backward(a, l, lora_target::q, dln.data(), dq.data(), a.ln1.data(), W.wq.data(), C, Q);
        linear_backward(a, l, lora_target::k, dln.data(), dk.data(), a.ln1.data(), W.wk.data(), C, KV);
        linear_backward(a, l, lora_target::v, dln.data(), dv.data(), a.ln1.data(), W.wv.data(), C, KV);
        cpu::rmsnorm_backward<T>(dx.data(), wgrad ? wgrad->layers[size_t(l)].attn_norm.data() : nullptr, dln.data(),
                                 xs[size_t(l)].data(), W.attn_norm.data(), a.rstd1.data(), N, C, norm_offset);
    }
};

template <class T>
llama_pass<T>::llama_pass(const model_config& cfg, const llama_params<T>& params, const std::vector<float>& inv_freq,
                          int B, int Tn, lora_weights<T>* lora) {
    const architecture& arch = architecture_for(cfg);
    for (const llama_layer_params<T>& L : params.layers) {
        bool missing = false;
        for (base_tensor t : arch.layer_tensors())
            missing |= layer_tensor(const_cast<llama_layer_params<T>&>(L), t).empty();
        for (lora_target t : arch.projections) missing |= projection_has_bias(cfg, t) && L.bias[size_t(t)].empty();
        if (missing)
            throw error(error_code::internal, "the CPU training pass needs the " + arch.family +
                                                  " family's norm weights and biases, and the parameters lack some");
    }
    for (const llama_layer_params<T>& L : params.layers)
        if (L.wq.empty() || L.wk.empty() || L.wv.empty() || L.wo.empty() || L.w_gate.empty() || L.w_up.empty() ||
            L.w_down.empty())
            throw error(error_code::internal,
                        "the CPU training pass needs the model's f32 projection weights, but this model was loaded "
                        "NF4-only (keep_f32_projections = false) for a GPU backend",
                        "load the model with keep_f32_projections = true for the CPU backend");
    if (B <= 0 || Tn <= 0)
        throw error(error_code::invalid_argument, "batch and sequence length must be positive (got batch " +
                                                      std::to_string(B) + ", seq " + std::to_string(Tn) + ")");
    if (lora && int(lora->layers.size()) != cfg.num_layers)
        throw error(error_code::invalid_argument, "the LoRA adapters have " + std::to_string(lora->layers.size()) +
                                                      " layers but the model has " + std::to_string(cfg.num_layers));
    b_ = std::make_unique<buffers>(cfg, params, inv_freq, B, Tn, lora);
}

template <class T> llama_pass<T>::~llama_pass() = default;

template <class T> void llama_pass<T>::set_checkpointing(bool enabled) { b_->set_checkpointing(enabled); }

template <class T> void llama_pass<T>::set_weight_grads(llama_params<T>* grads) {
    if (grads) {
        const llama_params<T>& p = b_->p;
        bool same = grads->embed.size() == p.embed.size() && grads->final_norm.size() == p.final_norm.size() &&
                    grads->lm_head.size() == p.lm_head.size() && grads->layers.size() == p.layers.size();
        for (size_t l = 0; same && l < p.layers.size(); ++l) {
            const auto &G = grads->layers[l], &W = p.layers[l];
            same = G.attn_norm.size() == W.attn_norm.size() && G.wq.size() == W.wq.size() &&
                   G.wk.size() == W.wk.size() && G.wv.size() == W.wv.size() && G.wo.size() == W.wo.size() &&
                   G.mlp_norm.size() == W.mlp_norm.size() && G.w_gate.size() == W.w_gate.size() &&
                   G.w_up.size() == W.w_up.size() && G.w_down.size() == W.w_down.size();
        }
        if (!same)
            throw error(error_code::shape_mismatch,
                        "set_weight_grads: the gradient buffers' shapes differ from the model's weights",
                        "allocate the gradients with the shapes of the pass's params (a copy of them, zeroed)");
    }
    b_->wgrad = grads;
}

template <class T> void llama_pass<T>::set_dropout(bool enabled, uint64_t seed) {
    b_->dropout_on = enabled;
    b_->dropout_seed = seed;
}

template <class T>
T llama_pass<T>::forward(const int* tokens, const int* targets, const int* positions, const int* segments,
                         const T* x0) {
    buffers& s = *b_;
    const auto& P = s.p;
    const int N = s.N, C = s.C, V = s.V;
    const T eps = T(s.cfg.rms_norm_eps);
    for (int i = 0; i < N; ++i) {
        int tok = tokens ? tokens[i] : 0;
        if (!x0 && (tok < 0 || tok >= V))
            throw error(error_code::invalid_argument,
                        "token id " + std::to_string(tok) + " at position " + std::to_string(i) +
                            " is outside the vocabulary (0.." + std::to_string(V - 1) + ")",
                        "the tokenizer and the model disagree; use the tokenizer.model of this checkpoint");
        s.tokens[size_t(i)] = tok;
        s.targets[size_t(i)] = targets ? targets[i] : -1;
        s.positions[size_t(i)] = positions ? positions[i] : i % s.Tn;
        s.segments[size_t(i)] = segments ? segments[i] : 0;
    }
    s.use_segments = segments != nullptr;
    s.x0_given = x0 != nullptr;

    // embedding → residual stream x (N, C)
    if (x0) std::copy(x0, x0 + size_t(N) * C, s.xs[0].begin());
    else cpu::embedding_forward(s.xs[0].data(), s.tokens.data(), P.embed.data(), N, C);
    // Gemma: x = embed · sqrt(C) (x0 is the lookup before the scale)
    if (s.cfg.embed_scale != 1.0) cpu::scale_inplace(s.xs[0].data(), T(float(s.cfg.embed_scale)), long(N) * C);
    for (int l = 0; l < s.L; ++l) s.layer_forward(l, s.acts_of(l));
    cpu::rmsnorm_forward(s.lnf.data(), s.rstdf.data(), s.xs[size_t(s.L)].data(), P.final_norm.data(), N, C, eps,
                         s.norm_offset);
    cpu::matmul_forward(s.logits.data(), s.lnf.data(), P.lm_head_data(), N, C, V);
    s.counted = cpu::cross_entropy_forward(s.losses.data(), s.logits.data(), s.targets.data(), N, V);
    double sum = 0;
    for (T v : s.losses) sum += double(v);
    return s.counted ? T(sum / s.counted) : T(0);
}

template <class T> void llama_pass<T>::backward() {
    buffers& s = *b_;
    const auto& P = s.p;
    const int N = s.N, C = s.C, V = s.V;
    const size_t nC = size_t(N) * C;
    if (s.counted == 0) {
        std::fill(s.dx0.begin(), s.dx0.end(), T(0));
        return;
    }

    // loss → logits → final norm
    std::vector<T> dlogits(size_t(N) * V, T(0));
    cpu::cross_entropy_backward(dlogits.data(), s.logits.data(), s.targets.data(), N, V, T(1) / T(s.counted));
    std::vector<T> dlnf(nC, T(0));
    llama_params<T>* G = s.wgrad;
    // the head's gradient: its own tensor, or the embedding's when tied (HF tie_word_embeddings shares one tensor)
    T* dhead = G ? (G->lm_head.empty() ? G->embed.data() : G->lm_head.data()) : nullptr;
    cpu::matmul_backward<T>(dlnf.data(), dhead, dlogits.data(), s.lnf.data(), P.lm_head_data(), N, C, V);
    std::vector<T> dx(nC, T(0)); // gradient of the residual stream at the current point
    cpu::rmsnorm_backward<T>(dx.data(), G ? G->final_norm.data() : nullptr, dlnf.data(), s.xs[size_t(s.L)].data(),
                             P.final_norm.data(), s.rstdf.data(), N, C, s.norm_offset);

    for (int l = s.L - 1; l >= 0; --l) {
        // with checkpointing, recompute this layer's activations from its saved input (same inputs, same dropout
        // mask: the recomputation is bit-identical to the first forward)
        if (s.checkpointing) s.layer_forward(l, s.acts_of(l));
        s.layer_backward(l, s.acts_of(l), dx);
    }
    if (s.cfg.embed_scale != 1.0) cpu::scale_inplace(dx.data(), T(float(s.cfg.embed_scale)), long(nC));
    s.dx0 = dx;
    // the embedding lookup's gradient (only when the tokens were looked up, not given as x0)
    if (G && !s.x0_given) cpu::embedding_backward(G->embed.data(), dx.data(), s.tokens.data(), N, C);
}

template <class T> const std::vector<T>& llama_pass<T>::logits() const { return b_->logits; }
template <class T> const std::vector<T>& llama_pass<T>::dx0() const { return b_->dx0; }
template <class T> int llama_pass<T>::counted_targets() const { return b_->counted; }

template <class T> size_t llama_pass<T>::activation_bytes() const {
    const buffers& s = *b_;
    size_t n = 0;
    auto add = [&n](const std::vector<T>& v) { n += v.capacity() * sizeof(T); };
    for (const auto& a : s.acts) {
        for (const auto* v : {&a.ln1,   &a.rstd1,  &a.q,      &a.k,     &a.v,     &a.att,    &a.atty,
                              &a.x_mid, &a.ln2,    &a.rstd2,  &a.gate,  &a.up,    &a.hmid,   &a.q_raw,
                              &a.k_raw, &a.rstd_q, &a.rstd_k, &a.o_raw, &a.d_raw, &a.rstd_o, &a.rstd_d})
            add(*v);
        for (const auto& la : a.lora) {
            add(la.xd);
            add(la.xa);
        }
    }
    for (const auto& x : s.xs) add(x);
    for (const auto* v : {&s.lnf, &s.rstdf, &s.logits, &s.losses, &s.dx0}) add(*v);
    return n;
}

template class llama_pass<float>;
template class llama_pass<double>;

// ----------------------------------------------------------------------------
// KV-cache decoder (batch 1). Same math as the pass, one position at a time; attention over the cache.

llama_decoder::llama_decoder(const llama_model& model, int max_positions) : m_(&model) {
    const model_config& c = model.config;
    model.require_f32_projections("the CPU decoder (generation)");
    inv_freq_local_ = rope_inv_freq_local(c);
    max_pos_ = max_positions > 0 ? std::min(max_positions, c.max_position_embeddings) : c.max_position_embeddings;
    const size_t KV = size_t(c.num_kv_heads) * size_t(c.head_dim), Q = size_t(c.num_heads) * size_t(c.head_dim);
    // The cache's size in checked arithmetic; an impossible one is a clear error, not a wrapped size or an abort.
    size_t cache_elems = 0, cache_bytes = 0;
    if (__builtin_mul_overflow(size_t(c.num_layers) * size_t(max_pos_), KV, &cache_elems) ||
        __builtin_mul_overflow(cache_elems, 2 * sizeof(float), &cache_bytes))
        throw error(error_code::invalid_argument,
                    "a KV cache of " + std::to_string(max_pos_) + " positions overflows the address space",
                    "generate with fewer positions (a shorter prompt or fewer new tokens)");
    try {
        k_cache_.resize(cache_elems);
        v_cache_.resize(cache_elems);
    } catch (const std::bad_alloc&) {
        throw error(error_code::out_of_memory,
                    "the KV cache for " + std::to_string(max_pos_) + " positions needs " +
                        std::to_string(cache_bytes >> 20) + " MiB, which cannot be allocated",
                    "generate with fewer positions (a shorter prompt or fewer new tokens)");
    }
    x_.resize(size_t(c.hidden_size));
    xb_.resize(x_.size());
    q_.resize(Q);
    k_.resize(KV);
    v_.resize(KV);
    atty_.resize(Q);
    gate_.resize(size_t(c.intermediate_size));
    up_.resize(gate_.size());
    h_.resize(gate_.size());
    logits_.resize(size_t(c.vocab_size));
    scores_.resize(size_t(max_pos_));
}

const std::vector<float>& llama_decoder::step(int token) {
    const model_config& c = m_->config;
    const auto& P = m_->params;
    const int C = c.hidden_size, H = c.intermediate_size, V = c.vocab_size, NH = c.num_heads, NKV = c.num_kv_heads,
              HS = c.head_dim, Q = NH * HS, KV = NKV * HS;
    if (token < 0 || token >= V)
        throw error(error_code::invalid_argument, "token id " + std::to_string(token) +
                                                      " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
    if (pos_ >= max_pos_)
        throw error(error_code::invalid_argument, "the context is full (" + std::to_string(max_pos_) + " positions)",
                    "ask for fewer new tokens or a shorter prompt");
    const float eps = float(c.rms_norm_eps);
    const architecture& arch = architecture_for(c);
    const float off = arch.norm == norm_kind::rms_one_plus ? 1.0f : 0.0f;
    const int pos = pos_;
    cpu::embedding_forward(x_.data(), &token, P.embed.data(), 1, C);
    if (c.embed_scale != 1.0) cpu::scale_inplace(x_.data(), float(c.embed_scale), long(C));
    std::vector<float> rstd(size_t(std::max(NH, 1)) + 1), tmp(static_cast<size_t>(C)), tmp2(static_cast<size_t>(C));
    // out (n) = inp · Wᵀ [+ bias] for projection t of layer l
    auto linear = [&](int l, lora_target t, float* out, const float* inp, const std::vector<float>& W, int IC, int OC) {
        cpu::matmul_forward(out, inp, W.data(), 1, IC, OC);
        const std::vector<float>& b = P.layers[size_t(l)].bias[size_t(t)];
        if (!b.empty()) cpu::bias_forward(out, b.data(), 1, OC);
    };
    const double scale = c.attention_scale();
    for (int l = 0; l < c.num_layers; ++l) {
        const auto& W = P.layers[size_t(l)];
        const float* freq = c.layer_sliding(l) ? inv_freq_local_.data() : m_->inv_freq.data();
        const int window = c.layer_window(l);
        cpu::rmsnorm_forward(xb_.data(), rstd.data(), x_.data(), W.attn_norm.data(), 1, C, eps, off);
        linear(l, lora_target::q, q_.data(), xb_.data(), W.wq, C, Q);
        linear(l, lora_target::k, k_.data(), xb_.data(), W.wk, C, KV);
        linear(l, lora_target::v, v_.data(), xb_.data(), W.wv, C, KV);
        if (arch.qk_norm) { // in place: each row is read before it is written
            cpu::rmsnorm_forward(q_.data(), rstd.data(), q_.data(), W.q_norm.data(), NH, HS, eps, off);
            cpu::rmsnorm_forward(k_.data(), rstd.data(), k_.data(), W.k_norm.data(), NKV, HS, eps, off);
        }
        cpu::rope_forward(q_.data(), &pos, freq, 1, NH, HS);
        cpu::rope_forward(k_.data(), &pos, freq, 1, NKV, HS);
        float* kc = k_cache_.data() + size_t(l) * size_t(max_pos_) * KV;
        float* vc = v_cache_.data() + size_t(l) * size_t(max_pos_) * KV;
        std::copy(k_.begin(), k_.end(), kc + size_t(pos) * KV);
        std::copy(v_.begin(), v_.end(), vc + size_t(pos) * KV);
        // attention of this query over positions j0..pos (same formula as cpu::attention_forward; a sliding layer
        // sees the last `window` positions)
        const int j0 = window > 0 ? std::max(0, pos - window + 1) : 0;
        for (int h = 0; h < NH; ++h) {
            const int kvh = h / (NH / NKV);
            const float* qh = q_.data() + size_t(h) * HS;
            double maxv = -INFINITY;
            for (int j = j0; j <= pos; ++j) {
                const float* kj = kc + size_t(j) * KV + size_t(kvh) * HS;
                double d = 0;
                for (int i = 0; i < HS; ++i) d += double(qh[i]) * double(kj[i]);
                scores_[size_t(j)] = float(d * scale);
                maxv = std::max(maxv, double(scores_[size_t(j)]));
            }
            double sum = 0;
            for (int j = j0; j <= pos; ++j) sum += std::exp(double(scores_[size_t(j)]) - maxv);
            float* out = atty_.data() + size_t(h) * HS;
            std::vector<double> acc(size_t(HS), 0.0);
            for (int j = j0; j <= pos; ++j) {
                const double pj = std::exp(double(scores_[size_t(j)]) - maxv) / sum;
                const float* vj = vc + size_t(j) * KV + size_t(kvh) * HS;
                for (int i = 0; i < HS; ++i) acc[size_t(i)] += pj * double(vj[i]);
            }
            for (int i = 0; i < HS; ++i) out[i] = float(acc[size_t(i)]);
        }
        linear(l, lora_target::o, tmp.data(), atty_.data(), W.wo, Q, C);
        if (arch.sandwich_norms) {
            cpu::rmsnorm_forward(tmp2.data(), rstd.data(), tmp.data(), W.post_attn_norm.data(), 1, C, eps, off);
            tmp.swap(tmp2);
        }
        for (int i = 0; i < C; ++i) x_[size_t(i)] += tmp[size_t(i)];
        cpu::rmsnorm_forward(xb_.data(), rstd.data(), x_.data(), W.mlp_norm.data(), 1, C, eps, off);
        linear(l, lora_target::gate, gate_.data(), xb_.data(), W.w_gate, C, H);
        linear(l, lora_target::up, up_.data(), xb_.data(), W.w_up, C, H);
        if (arch.mlp == mlp_kind::geglu_tanh) cpu::geglu_forward(h_.data(), gate_.data(), up_.data(), long(H));
        else cpu::swiglu_forward(h_.data(), gate_.data(), up_.data(), long(H));
        linear(l, lora_target::down, tmp.data(), h_.data(), W.w_down, H, C);
        if (arch.sandwich_norms) {
            cpu::rmsnorm_forward(tmp2.data(), rstd.data(), tmp.data(), W.post_mlp_norm.data(), 1, C, eps, off);
            tmp.swap(tmp2);
        }
        for (int i = 0; i < C; ++i) x_[size_t(i)] += tmp[size_t(i)];
    }
    cpu::rmsnorm_forward(xb_.data(), rstd.data(), x_.data(), P.final_norm.data(), 1, C, eps, off);
    cpu::matmul_forward(logits_.data(), xb_.data(), P.lm_head_data(), 1, C, V);
    ++pos_;
    return logits_;
}

} // namespace qls
