// Causal grouped-query attention launchers, flash-style (no T×T matrix in global memory): bf16 in/out, fp32 softmax.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qls_kernels {

// Largest head size the kernels take (the padded head size is a template parameter: 16, 32, 64 or 128).
constexpr int attention_max_head_size = 128;

// q (B, T, NH, HS), k/v (B, T, NKV, HS) bf16 -> out (B, T, NH, HS) bf16 and lse (B, NH, T) fp32, the natural-log
// logsumexp of each row's scaled scores (saved for backward). Query head h reads kv head h / (NH / NKV).
// score(t, j) = q_t·k_j / sqrt(HS), masked unless j <= t and (segment == nullptr or segment[b, j] == segment[b, t]),
// as cpu::attention_forward (engine/src/backends/cpu/ops.h). HS a multiple of 8, at most 128; NH % NKV == 0.
// window > 0 (sliding-window layers: Gemma 3, Qwen with use_sliding_window) also masks j <= t - window; scale > 0
// replaces 1/sqrt(HS) (Gemma 3: query_pre_attn_scalar^-0.5). The backward takes the forward's window and scale.
// FlashAttention-2 schedule (Dao 2023, https://arxiv.org/abs/2307.08691, Algorithm 1): one block of 4 warps per
// (64 queries, head, batch row); each warp owns 16 query rows; S = Q Kᵀ and P V on tensor cores (WMMA bf16, fp32
// accumulation); the online softmax in fp32.
void attention_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                       const __nv_bfloat16* v, const int* segment, int B, int T, int NH, int NKV, int HS,
                       cudaStream_t stream, int window = 0, float scale = 0.0f);

// Gradients WRITTEN (=): dq (B, T, NH, HS), dk/dv (B, T, NKV, HS) bf16, from dout (B, T, NH, HS), the forward's out
// and lse, and q, k, v. delta (B, NH, T) fp32 is a workspace (rowsum(dout ∘ out), FlashAttention-2 Algorithm 2).
// Deterministic (no atomics): one kernel accumulates dk, dv per key tile over the group's query heads, another dq per
// query tile, each in a fixed order; P is recomputed from lse in both.
void attention_backward(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, float* delta,
                        const __nv_bfloat16* dout, const __nv_bfloat16* out, const float* lse, const __nv_bfloat16* q,
                        const __nv_bfloat16* k, const __nv_bfloat16* v, const int* segment, int B, int T, int NH,
                        int NKV, int HS, cudaStream_t stream, int window = 0, float scale = 0.0f);

} // namespace qls_kernels
