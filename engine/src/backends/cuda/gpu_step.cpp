// gpu_step — one micro-batch on the CUDA backend: embedding, L × (NF4 base GEMMs + LoRA, RoPE, flash-style attention,
// SwiGLU), the chunked-loss head, then the backward in exact reverse order, recomputing each layer from its checkpoint.
//
// The layer mirrors the CPU pass (engine/src/model/llama.cpp layer_forward / layer_backward) op for op, with the
// newer families' steps in [] (architecture.h):
//   x = embed(tokens) [· sqrt(C)]
//   h = norm(x) ; q,k,v = h·Wᵀ [+ b] (+ LoRA) ; [q, k = per-head norm(q), norm(k)] ; rope(q), rope(k) (the sliding
//   layers' own frequencies) ; a = attention(q,k,v) [window, scale] ; o = a·Woᵀ [+ b] ; [o = post_attn_norm(o)] ;
//   x_mid = x + o ; h = norm(x_mid) ; m = down(act(gate(h)) · up(h)) [act: silu or tanh GELU] ;
//   [m = post_mlp_norm(m)] ; x_out = x_mid + m
// A (1 + w) norm is the plain RMSNorm kernel with the weight uploaded as 1 + w (gpu_weights.cpp).
//
// Shapes (llama.h legend): N = B*T rows, C hidden, H MLP hidden, Q = NH*HS, KV = NKV*HS, V vocabulary, r LoRA rank.
// Activations bf16, residual gradient and normed-input gradients fp32, LoRA masters and gradients fp32.
#include "gpu_train_impl.h"

#include "qls_kernels/attention_fa2.h"
#include "qls_kernels/cross_entropy.h"
#include "qls_kernels/elementwise.h"
#include "qls_kernels/embedding.h"
#include "qls_kernels/family_ops.h"
#include "qls_kernels/nf4.h"
#include "qls_kernels/rmsnorm.h"
#include "qls_kernels/rope.h"
#include "qls_kernels/swiglu.h"

namespace qls {

// ---- building blocks --------------------------------------------------------------------------------------------
const bf16* gpu_trainer::impl::dequantize(int l, lora_target t) {
    auto [in, out] = in_out(t);
    const int64_t n = int64_t(in) * out;
    bf16* dst = item<bf16>({plan_item_id::ws_dequantized_weight}) + size_t(deq_slot) * size_t(max_weight_elems());
    deq_slot ^= 1;
    const float* maps = item<float>({plan_item_id::nf4_maps, t}, l);
    K::nf4_dequantize_dq(dst, item<uint8_t>({plan_item_id::nf4_codes, t}, l),
                         item<uint8_t>({plan_item_id::nf4_absmax, t}, l),
                         item<float>({plan_item_id::nf4_nested_absmax, t}, l), nested_offset[size_t(l)][size_t(t)],
                         maps + 16, n, 64, 256, stream);
    tick("nf4.dequantize");
    return dst;
}

int64_t gpu_trainer::impl::max_weight_elems() const {
    int64_t m = 0;
    for (int t = 0; t < k_lora_target_count; ++t) {
        auto [in, out] = lora_in_out(cfg, lora_target(t));
        m = std::max(m, int64_t(in) * out);
    }
    return m;
}

bf16* gpu_trainer::impl::lora_bf16(lora_target t, bool a) const {
    const int ti = target_index(t);
    auto [in, out] = in_out(t);
    bf16* base = item<bf16>({plan_item_id::ws_lora_bf16}) + lora_bf16_offset[size_t(ti)];
    return a ? base : base + size_t(r) * size_t(in);
}

void gpu_trainer::impl::cast_layer_lora(int l) {
    for (lora_target t : targets) {
        auto [in, out] = in_out(t);
        K::cast_f32_to_bf16(lora_bf16(t, true), lora_w(t, true, l), int64_t(r) * in, stream);
        K::cast_f32_to_bf16(lora_bf16(t, false), lora_w(t, false, l), int64_t(out) * r, stream);
    }
}

// y (N, out) [=, or += when accumulate] x (N, in) · Wᵀ [+ bias (out)] + s · (drop(x) · Aᵀ) · Bᵀ ; saves xa (N, r).
// The bias is frozen (no gradient in linear_backward), added after the base GEMM as the CPU pass does.
void gpu_trainer::impl::linear_forward(int l, lora_target t, const bf16* x, bf16* y, bool accumulate, bool dropout,
                                       uint64_t seed) {
    auto [in, out] = in_out(t);
    const bf16* w = dequantize(l, t);
    blas->gemm(false, true, N, out, in, x, in, w, in, y, false, out, 1.0f, accumulate ? 1.0f : 0.0f);
    if (const bf16* bias = bias_of(l, t)) K::bias_add(y, bias, N, out, stream);
    tick("gemm.base.fwd");
    if (!adapted(t)) return;
    const bf16* xd = x;
    if (dropout_on(dropout)) {
        bf16* scratch = item<bf16>({plan_item_id::ws_lora_dropout_input});
        K::lora_dropout(scratch, nullptr, x, int64_t(N) * in, seed, l, int(t), opt.lora.dropout, false, stream);
        xd = scratch;
    }
    bf16* xa = xa_buf(l, t);
    blas->gemm(false, true, N, r, in, xd, in, lora_bf16(t, true), in, xa, false, r, 1.0f, 0.0f);
    blas->gemm(false, true, N, out, r, xa, r, lora_bf16(t, false), r, y, false, out, lora_scale, 1.0f);
    tick("gemm.lora.fwd");
}

// dx (N, in) [bf16 or fp32; = or +=] dy (N, out) · W + drop'(s · dy · B · A); dA += dxaᵀ drop(x); dB += s dyᵀ xa
void gpu_trainer::impl::linear_backward(int l, lora_target t, const bf16* dy, const bf16* x, void* dx, bool dx_f32,
                                        bool accumulate, bool dropout, uint64_t seed) {
    auto [in, out] = in_out(t);
    const bf16* w = dequantize(l, t);
    blas->gemm(false, false, N, in, out, dy, out, w, in, dx, dx_f32, in, 1.0f, accumulate ? 1.0f : 0.0f);
    tick("gemm.base.bwd");
    if (!adapted(t)) return;
    const bf16* xa = xa_buf(l, t);
    bf16* dxa = item<bf16>({plan_item_id::grad_lora_xa});
    float* dA = lora_g(t, true, l);
    float* dB = lora_g(t, false, l);
    blas->gemm(true, false, out, r, N, dy, out, xa, r, dB, true, r, lora_scale, 1.0f);
    blas->gemm(false, false, N, r, out, dy, out, lora_bf16(t, false), r, dxa, false, r, lora_scale, 0.0f);
    const bool drop = dropout_on(dropout);
    bf16* scratch = drop ? item<bf16>({plan_item_id::ws_lora_dropout_input}) : nullptr;
    const bf16* xd = x;
    if (drop) {
        K::lora_dropout(scratch, nullptr, x, int64_t(N) * in, seed, l, int(t), opt.lora.dropout, false, stream);
        xd = scratch;
    }
    blas->gemm(true, false, r, in, N, dxa, r, xd, in, dA, true, in, 1.0f, 1.0f);
    if (!drop) {
        blas->gemm(false, false, N, in, r, dxa, r, lora_bf16(t, true), in, dx, dx_f32, in, 1.0f, 1.0f);
    } else {
        blas->gemm(false, false, N, in, r, dxa, r, lora_bf16(t, true), in, scratch, false, in, 1.0f, 0.0f);
        K::lora_dropout(dx_f32 ? nullptr : static_cast<bf16*>(dx), dx_f32 ? static_cast<float*>(dx) : nullptr, scratch,
                        int64_t(N) * in, seed, l, int(t), opt.lora.dropout, true, stream);
    }
    tick("gemm.lora.bwd");
}

// xa (N, r) = drop(x) · Aᵀ of one adapter, without the base projection.
void gpu_trainer::impl::lora_xa_only(int l, lora_target t, const bf16* x, bool dropout, uint64_t seed) {
    if (!adapted(t)) return;
    auto [in, out] = in_out(t);
    const bf16* xd = x;
    if (dropout_on(dropout)) {
        bf16* scratch = item<bf16>({plan_item_id::ws_lora_dropout_input});
        K::lora_dropout(scratch, nullptr, x, int64_t(N) * in, seed, l, int(t), opt.lora.dropout, false, stream);
        xd = scratch;
    }
    blas->gemm(false, true, N, r, in, xd, in, lora_bf16(t, true), in, xa_buf(l, t), false, r, 1.0f, 0.0f);
    tick("gemm.lora.fwd");
}

// ---- the layer -----------------------------------------------------------------------------------------------------

// Layer l forward from resid_in(l); writes resid_in(l + 1) unless recompute.
void gpu_trainer::impl::layer_forward(int l, bool dropout, uint64_t seed, bool recompute) {
    const bf16* x = resid_in(l);
    const int* pos = item<int>({plan_item_id::loss_positions});
    const int* seg = use_segments ? item<int>({plan_item_id::loss_segments}) : nullptr;
    const float* inv = rope_freq(l);
    const float eps = float(cfg.rms_norm_eps);
    cast_layer_lora(l);
    tick("lora.cast");
    bf16* xn = act({plan_item_id::act_attn_norm_out}, l);
    K::rmsnorm_forward(xn, act_f32({plan_item_id::act_attn_norm_rstd}, l), x,
                       item<bf16>({plan_item_id::attn_norm_weight}, l), N, C, eps, stream);
    bf16 *q = act({plan_item_id::act_q}, l), *k = act({plan_item_id::act_k}, l), *v = act({plan_item_id::act_v}, l);
    // with q/k norms the projections write q_raw (N, Q), k_raw (N, KV), which the norms' backward reads
    bf16* q_lin = qk_norm ? act({plan_item_id::act_q_raw}, l) : q;
    bf16* k_lin = qk_norm ? act({plan_item_id::act_k_raw}, l) : k;
    linear_forward(l, lora_target::q, xn, q_lin, false, dropout, seed);
    linear_forward(l, lora_target::k, xn, k_lin, false, dropout, seed);
    linear_forward(l, lora_target::v, xn, v, false, dropout, seed);
    if (qk_norm) { // per-head RMSNorm over HS: (N*NH, HS) and (N*NKV, HS) rows, 1/rms (N*NH), (N*NKV) fp32
        K::rmsnorm_forward(q, act_f32({plan_item_id::act_q_norm_rstd}, l), q_lin,
                           item<bf16>({plan_item_id::q_norm_weight}, l), N * NH, HS, eps, stream);
        K::rmsnorm_forward(k, act_f32({plan_item_id::act_k_norm_rstd}, l), k_lin,
                           item<bf16>({plan_item_id::k_norm_weight}, l), N * NKV, HS, eps, stream);
    }
    K::rope_forward(q, pos, inv, N, NH, HS, stream);
    K::rope_forward(k, pos, inv, N, NKV, HS, stream);
    bf16* att = act({plan_item_id::act_attn_out}, l);
    tick("norm+rope");
    K::attention_forward_selected(att, act_f32({plan_item_id::act_attn_lse}, l), q, k, v, seg, B, T, NH, NKV, HS,
                                  stream, cfg.layer_window(l), attn_scale);
    tick("attention.fwd");
    bf16* mid = act({plan_item_id::act_residual_mid}, l);
    if (!sandwich) {
        QLS_CUDA_CHECK(cudaMemcpyAsync(mid, x, size_t(N) * C * 2, cudaMemcpyDeviceToDevice, stream));
        linear_forward(l, lora_target::o, att, mid, true, dropout, seed);
    } else {
        // o_raw (N, C) = o(att), post = post_attn_norm(o_raw) (N, C) in the scratch, mid = x + post
        bf16* o_raw = act({plan_item_id::act_attn_proj_out}, l);
        bf16* post = item<bf16>({plan_item_id::ws_post_norm});
        linear_forward(l, lora_target::o, att, o_raw, false, dropout, seed);
        K::rmsnorm_forward(post, act_f32({plan_item_id::act_attn_post_rstd}, l), o_raw,
                           item<bf16>({plan_item_id::post_attn_norm_weight}, l), N, C, eps, stream);
        QLS_CUDA_CHECK(cudaMemcpyAsync(mid, x, size_t(N) * C * 2, cudaMemcpyDeviceToDevice, stream));
        K::add_inplace_bf16(mid, post, int64_t(N) * C, stream);
    }
    bf16* xn2 = act({plan_item_id::act_mlp_norm_out}, l);
    K::rmsnorm_forward(xn2, act_f32({plan_item_id::act_mlp_norm_rstd}, l), mid,
                       item<bf16>({plan_item_id::mlp_norm_weight}, l), N, C, eps, stream);
    bf16 *gate = act({plan_item_id::act_mlp_gate}, l), *up = act({plan_item_id::act_mlp_up}, l),
         *hid = act({plan_item_id::act_mlp_hidden}, l);
    linear_forward(l, lora_target::gate, xn2, gate, false, dropout, seed);
    linear_forward(l, lora_target::up, xn2, up, false, dropout, seed);
    if (geglu) K::geglu_forward(hid, gate, up, int64_t(N) * H, stream);
    else K::swiglu_forward(hid, gate, up, int64_t(N) * H, stream);
    if (sandwich) {
        // d_raw (N, C) = down(hid) and post_mlp_norm's 1/rms, which the backward reads, also when recomputing;
        // then x_out = mid + post_mlp_norm(d_raw) unless recomputing (the next checkpoint already holds it)
        bf16* d_raw = act({plan_item_id::act_mlp_proj_out}, l);
        bf16* post = item<bf16>({plan_item_id::ws_post_norm});
        linear_forward(l, lora_target::down, hid, d_raw, false, dropout, seed);
        K::rmsnorm_forward(post, act_f32({plan_item_id::act_mlp_post_rstd}, l), d_raw,
                           item<bf16>({plan_item_id::post_mlp_norm_weight}, l), N, C, eps, stream);
        if (recompute) return;
        bf16* y = resid_in(l + 1);
        QLS_CUDA_CHECK(cudaMemcpyAsync(y, mid, size_t(N) * C * 2, cudaMemcpyDeviceToDevice, stream));
        K::add_inplace_bf16(y, post, int64_t(N) * C, stream);
        return;
    }
    if (recompute) {
        // the backward needs down's xa (for dB) but not its output: the next checkpoint already holds it
        lora_xa_only(l, lora_target::down, hid, dropout, seed);
        return;
    }
    bf16* y = resid_in(l + 1);
    QLS_CUDA_CHECK(cudaMemcpyAsync(y, mid, size_t(N) * C * 2, cudaMemcpyDeviceToDevice, stream));
    linear_forward(l, lora_target::down, hid, y, true, dropout, seed);
}

void gpu_trainer::impl::layer_backward(int l, bool dropout, uint64_t seed) {
    if (ckpt) layer_forward(l, dropout, seed, true);
    else cast_layer_lora(l);
    tick("other");
    prefetch_layer(l);
    tick("paging.prefetch");
    const int* pos = item<int>({plan_item_id::loss_positions});
    const int* seg = use_segments ? item<int>({plan_item_id::loss_segments}) : nullptr;
    const float* inv = rope_freq(l);
    float* dres = item<float>({plan_item_id::grad_residual});
    bf16* dres_bf = item<bf16>({plan_item_id::grad_residual_bf16});
    float* dnorm = item<float>({plan_item_id::grad_norm_out});
    bf16* dpost = sandwich ? item<bf16>({plan_item_id::ws_post_norm}) : nullptr; // (N, C) d post-norm input
    // MLP
    K::cast_f32_to_bf16(dres_bf, dres, int64_t(N) * C, stream);
    const bf16* ddown = dres_bf; // d down_proj output (N, C)
    if (sandwich) {              // x_out = x_mid + post_mlp_norm(d_raw): through the post norm to d_raw
        K::rmsnorm_backward(dpost, dres_bf, act({plan_item_id::act_mlp_proj_out}, l),
                            item<bf16>({plan_item_id::post_mlp_norm_weight}, l),
                            act_f32({plan_item_id::act_mlp_post_rstd}, l), N, C, stream);
        ddown = dpost;
    }
    bf16* dh = item<bf16>({plan_item_id::grad_mlp_hidden});
    bf16* dup = item<bf16>({plan_item_id::grad_mlp_up});
    linear_backward(l, lora_target::down, ddown, act({plan_item_id::act_mlp_hidden}, l), dh, false, false, dropout,
                    seed);
    // in place: dh (N, H) becomes d gate; each element is read before it is written, by the same thread
    if (geglu)
        K::geglu_backward(dh, dup, dh, act({plan_item_id::act_mlp_gate}, l), act({plan_item_id::act_mlp_up}, l),
                          int64_t(N) * H, stream);
    else
        K::swiglu_backward(dh, dup, dh, act({plan_item_id::act_mlp_gate}, l), act({plan_item_id::act_mlp_up}, l),
                           int64_t(N) * H, stream);
    const bf16* xn2 = act({plan_item_id::act_mlp_norm_out}, l);
    linear_backward(l, lora_target::gate, dh, xn2, dnorm, true, false, dropout, seed);
    linear_backward(l, lora_target::up, dup, xn2, dnorm, true, true, dropout, seed);
    K::rmsnorm_backward_accumulate(dres, dnorm, act({plan_item_id::act_residual_mid}, l),
                                   item<bf16>({plan_item_id::mlp_norm_weight}, l),
                                   act_f32({plan_item_id::act_mlp_norm_rstd}, l), N, C, stream);
    // attention
    K::cast_f32_to_bf16(dres_bf, dres, int64_t(N) * C, stream);
    const bf16* dproj_o = dres_bf; // d o_proj output (N, C)
    if (sandwich) {                // x_mid = x_in + post_attn_norm(o_raw)
        K::rmsnorm_backward(dpost, dres_bf, act({plan_item_id::act_attn_proj_out}, l),
                            item<bf16>({plan_item_id::post_attn_norm_weight}, l),
                            act_f32({plan_item_id::act_attn_post_rstd}, l), N, C, stream);
        dproj_o = dpost;
    }
    bf16* datt = item<bf16>({plan_item_id::grad_attn_out});
    linear_backward(l, lora_target::o, dproj_o, act({plan_item_id::act_attn_out}, l), datt, false, false, dropout,
                    seed);
    bf16 *dq = item<bf16>({plan_item_id::grad_q}), *dk = item<bf16>({plan_item_id::grad_k}),
         *dv = item<bf16>({plan_item_id::grad_v});
    K::attention_backward_selected(dq, dk, dv, item<float>({plan_item_id::grad_attn_delta}), datt,
                                   act({plan_item_id::act_attn_out}, l), act_f32({plan_item_id::act_attn_lse}, l),
                                   act({plan_item_id::act_q}, l), act({plan_item_id::act_k}, l),
                                   act({plan_item_id::act_v}, l), seg, B, T, NH, NKV, HS, stream, cfg.layer_window(l),
                                   attn_scale);
    tick("attention.bwd");
    K::rope_backward(dq, pos, inv, N, NH, HS, stream);
    K::rope_backward(dk, pos, inv, N, NKV, HS, stream);
    if (qk_norm) {
        // through the per-head norms to the projections' outputs, in place over (N*NH, HS) and (N*NKV, HS) rows:
        // one warp per row reads the whole row (its dot product) before any lane writes it
        K::rmsnorm_backward(dq, dq, act({plan_item_id::act_q_raw}, l), item<bf16>({plan_item_id::q_norm_weight}, l),
                            act_f32({plan_item_id::act_q_norm_rstd}, l), N * NH, HS, stream);
        K::rmsnorm_backward(dk, dk, act({plan_item_id::act_k_raw}, l), item<bf16>({plan_item_id::k_norm_weight}, l),
                            act_f32({plan_item_id::act_k_norm_rstd}, l), N * NKV, HS, stream);
    }
    const bf16* xn = act({plan_item_id::act_attn_norm_out}, l);
    linear_backward(l, lora_target::q, dq, xn, dnorm, true, false, dropout, seed);
    linear_backward(l, lora_target::k, dk, xn, dnorm, true, true, dropout, seed);
    linear_backward(l, lora_target::v, dv, xn, dnorm, true, true, dropout, seed);
    K::rmsnorm_backward_accumulate(dres, dnorm, resid_in(l), item<bf16>({plan_item_id::attn_norm_weight}, l),
                                   act_f32({plan_item_id::act_attn_norm_rstd}, l), N, C, stream);
}

// ---- the head and the pass ------------------------------------------------------------------------------------------

// Final norm, chunked logits + fused cross-entropy (+ dlnf when backward), then dres = d final_residual.
double gpu_trainer::impl::head(bool backward, int counted) {
    const float eps = float(cfg.rms_norm_eps);
    bf16* lnf = item<bf16>({plan_item_id::loss_final_norm_out});
    float* rstdf = item<float>({plan_item_id::loss_final_norm_rstd});
    const bf16* wf = item<bf16>({plan_item_id::final_norm_weight});
    K::rmsnorm_forward(lnf, rstdf, resid_in(L), wf, N, C, eps, stream);
    const bf16* lm = mem->has({plan_item_id::lm_head}) ? item<bf16>({plan_item_id::lm_head})
                                                       : item<bf16>({plan_item_id::embed_tokens});
    bf16* logits = item<bf16>({plan_item_id::loss_logits_chunk});
    float* losses = item<float>({plan_item_id::loss_losses});
    const int* tgt = item<int>({plan_item_id::loss_targets});
    float* dlnf = item<float>({plan_item_id::loss_grad_final_norm_out});
    const float dloss = counted > 0 ? 1.0f / float(counted) : 0.0f;
    for (int c0 = 0; c0 < N; c0 += chunk) {
        const int rows = std::min(chunk, N - c0);
        blas->gemm(false, true, rows, V, C, lnf + size_t(c0) * C, C, lm, C, logits, false, V, 1.0f, 0.0f);
        K::cross_entropy_forward_backward(losses + c0, backward ? logits : nullptr, logits, tgt + c0, rows, V, dloss,
                                          stream);
        if (backward)
            blas->gemm(false, false, rows, C, V, logits, V, lm, C, dlnf + size_t(c0) * C, true, C, 1.0f, 0.0f);
    }
    float* red = item<float>({plan_item_id::ws_reductions});
    K::sum_f32(red + 1024, losses, N, stream);
    if (backward) {
        float* dres = item<float>({plan_item_id::grad_residual});
        QLS_CUDA_CHECK(cudaMemsetAsync(dres, 0, size_t(N) * C * 4, stream));
        K::rmsnorm_backward_accumulate(dres, dlnf, resid_in(L), wf, rstdf, N, C, stream);
    }
    float sum = 0;
    QLS_CUDA_CHECK(cudaMemcpyAsync(&sum, red + 1024, 4, cudaMemcpyDeviceToHost, stream));
    QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
    return counted > 0 ? double(sum) / counted : 0.0;
}

int gpu_trainer::impl::upload_batch(const gpu_batch& b) {
    if (!b.tokens || !b.targets)
        throw error(error_code::invalid_argument, "gpu_trainer: a batch needs tokens and targets");
    int counted = 0;
    for (int i = 0; i < N; ++i) {
        if (b.tokens[i] < 0 || b.tokens[i] >= V)
            throw error(error_code::invalid_argument,
                        "token id " + std::to_string(b.tokens[i]) + " at position " + std::to_string(i) +
                            " is outside the vocabulary (" + std::to_string(V) + ")",
                        "the tokenizer and the model must match");
        if (b.targets[i] >= V || b.targets[i] < -1)
            throw error(error_code::invalid_argument, "target id " + std::to_string(b.targets[i]) + " is invalid");
        counted += b.targets[i] >= 0;
    }
    QLS_CUDA_CHECK(cudaMemcpyAsync(item<int>({plan_item_id::loss_tokens}), b.tokens, size_t(N) * 4,
                                   cudaMemcpyHostToDevice, stream));
    QLS_CUDA_CHECK(cudaMemcpyAsync(item<int>({plan_item_id::loss_targets}), b.targets, size_t(N) * 4,
                                   cudaMemcpyHostToDevice, stream));
    std::vector<int> pos;
    const int* pp = b.positions;
    if (!pp) {
        pos.resize(size_t(N));
        for (int i = 0; i < N; ++i) pos[size_t(i)] = i % T;
        pp = pos.data();
    }
    QLS_CUDA_CHECK(cudaMemcpyAsync(item<int>({plan_item_id::loss_positions}), pp, size_t(N) * 4, cudaMemcpyHostToDevice,
                                   stream));
    use_segments = b.segments != nullptr;
    if (use_segments)
        QLS_CUDA_CHECK(cudaMemcpyAsync(item<int>({plan_item_id::loss_segments}), b.segments, size_t(N) * 4,
                                       cudaMemcpyHostToDevice, stream));
    QLS_CUDA_CHECK(cudaStreamSynchronize(stream)); // pageable sources: keep `pos` alive until copied
    return counted;
}

double gpu_trainer::impl::run(const gpu_batch& b, bool backward, bool dropout, uint64_t seed) {
    if (!step_open && backward) {
        QLS_CUDA_CHECK(cudaEventRecord(ev_start, stream));
        step_open = true;
    }
    const int counted = upload_batch(b);
    if (offload) { // slot 0 takes the embedding: an earlier pass's copies out of or into it must be done
        QLS_CUDA_CHECK(cudaStreamWaitEvent(stream, ev_saved[0], 0));
        QLS_CUDA_CHECK(cudaStreamWaitEvent(stream, ev_loaded[0], 0));
    }
    K::embedding_forward(resid_in(0), item<int>({plan_item_id::loss_tokens}), item<bf16>({plan_item_id::embed_tokens}),
                         N, C, stream);
    // Gemma: x = embed · sqrt(C) (the CPU pass's float(embed_scale)); no gradient flows to the frozen table
    if (cfg.embed_scale != 1.0) K::scale_inplace(resid_in(0), float(cfg.embed_scale), int64_t(N) * C, stream);
    for (int l = 0; l < L; ++l) {
        if (offload) offload_before_forward(l, backward);
        layer_forward(l, backward && dropout, seed, false);
    }
    tick("other");
    const double loss = head(backward, counted);
    tick("head (final norm, logits, loss)");
    if (backward)
        for (int l = L - 1; l >= 0; --l) {
            if (offload) offload_before_backward(l);
            layer_backward(l, dropout, seed);
            if (offload) offload_after_backward(l);
        }
    sample_memory();
    return loss;
}

} // namespace qls
