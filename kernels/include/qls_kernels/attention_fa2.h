// FlashAttention-2-class attention launchers (mma.sync m16n8k16, ldmatrix, cp.async; sm_80+) and the path switch.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qls_kernels {

// Head sizes the FA2 kernels cover (64 and 128); any other HS goes to the WMMA kernels of attention.h.
bool attention_fa2_supported(int HS);

// Same arguments, semantics and lse layout as attention_forward / attention_backward (attention.h): causal, GQA
// (NH % NKV == 0), segment ids, sliding window, custom scale; lse (B, NH, T) natural-log; delta (B, NH, T) workspace.
// Throws std::invalid_argument for an HS that attention_fa2_supported refuses.
// Forward (Dao 2023, https://arxiv.org/abs/2307.08691, Algorithm 1): one block of 4 warps per (64 queries, head,
// batch row), each warp owns 16 query rows; S, P and O stay in registers (mma.sync fragments); K/V tiles of 64 keys
// are double-buffered in XOR-swizzled shared memory by cp.async.
void attention_fa2_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                           const __nv_bfloat16* v, const int* segment, int B, int T, int NH, int NKV, int HS,
                           cudaStream_t stream, int window = 0, float scale = 0.0f);

// Backward (Algorithm 2): delta = rowsum(dout ∘ out); one kernel per (64-key tile, kv head) iterates the group's
// query heads and query tiles with dK, dV in registers; a separate dQ kernel per (64-query tile, head) iterates the
// key tiles with dQ in registers. Deterministic: no atomics, fixed loop orders.
void attention_fa2_backward(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, float* delta,
                            const __nv_bfloat16* dout, const __nv_bfloat16* out, const float* lse,
                            const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const int* segment,
                            int B, int T, int NH, int NKV, int HS, cudaStream_t stream, int window = 0,
                            float scale = 0.0f);

// Which kernels attention_forward_selected / attention_backward_selected use: QLS_ATTENTION=wmma|fa2 in the
// environment (read once per process); unset means fa2 (5x WMMA's speed at seq 8k-16k, check-gpu passing both on an
// H100, 2026-12-05). Throws std::invalid_argument naming the variable for any
// other value.
enum class attention_path { wmma, fa2 };
attention_path attention_path_from_env();

// The trainer's entry points: FA2 unless QLS_ATTENTION=wmma, where attention_fa2_supported(HS); else the WMMA kernels.
void attention_forward_selected(__nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                                const __nv_bfloat16* v, const int* segment, int B, int T, int NH, int NKV, int HS,
                                cudaStream_t stream, int window = 0, float scale = 0.0f);
void attention_backward_selected(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, float* delta,
                                 const __nv_bfloat16* dout, const __nv_bfloat16* out, const float* lse,
                                 const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                                 const int* segment, int B, int T, int NH, int NKV, int HS, cudaStream_t stream,
                                 int window = 0, float scale = 0.0f);

} // namespace qls_kernels
