// Single-stream decoding launchers (batch 1, one token per step): the fused NF4 GEMV, bf16 and fp32 GEMVs, and the
// small per-token ops of a LLaMA layer, all with fp32 activations. The position and token are read from device
// memory (`state`), so one step's launches can be captured once in a CUDA graph and replayed at every position.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qls_kernels {

// What a step reads from device memory: the token fed at this step and its position (0-based).
struct decode_state {
    int token;
    int pos;
};

// y (rows) fp32 = W x (+ y when accumulate), W (rows, cols) NF4 with double-quantized absmax as nf4_dequantize_dq
// takes it (packed ceil(rows*cols/2), absmax_codes (nblocks), absmax_scale (ceil(nblocks/nested_blocksize)),
// nested_map (256), offset), x (cols) fp32. Each weight is nf4_code[q] * absmax (absmax rebuilt with a separate
// multiply and add, as bnb); the dot product accumulates in fp32. One warp per row. Fast path (blocksize 64, nested
// 256, cols % 64 == 0, 16-byte aligned packed): 16-byte loads of 32 codes and one absmax per load; otherwise a
// general path, element by element. Mirrors cpu::matmul_forward over the CPU's nf4_dequantize.
void nf4_gemv(float* y, const float* x, const uint8_t* packed, const uint8_t* absmax_codes, const float* absmax_scale,
              float offset, const float* nested_map, int rows, int cols, int blocksize, int nested_blocksize,
              bool accumulate, cudaStream_t stream);

// y (rows) fp32 = W x, W (rows, cols) bf16, x (cols) fp32, fp32 accumulation; one warp per row (8 bf16 per 16-byte
// load when cols % 8 == 0 and W is 16-byte aligned). The LM head.
void bf16_gemv(float* y, const float* x, const __nv_bfloat16* W, int rows, int cols, cudaStream_t stream);

// y (rows) fp32 = alpha * (W x) (+ y when accumulate), W (rows, cols) fp32. LoRA's x·Aᵀ (alpha 1) and xa·Bᵀ·scale.
void f32_gemv(float* y, const float* x, const float* W, int rows, int cols, float alpha, bool accumulate,
              cudaStream_t stream);

// x (C) fp32 = table[state->token] (a bf16 row widened). table (V, C) bf16.
void decode_embedding(float* x, const __nv_bfloat16* table, const decode_state* state, int C, cudaStream_t stream);

// out (C) = x * rsqrt(mean(x^2) + eps) * weight, fp32 in and out, weight (C) fp32; one block. cpu::rmsnorm_forward.
void decode_rmsnorm(float* out, const float* x, const float* weight, int C, float eps, cudaStream_t stream);
// The same over `rows` rows of (rows, C), one block per row, the one weight (C) for every row: the per-head q/k norm
// (rows NH or NKV, C = HS) of Qwen3 and Gemma 3. out may equal x (each element is read before it is written).
void decode_rmsnorm_rows(float* out, const float* x, const float* weight, int rows, int C, float eps,
                         cudaStream_t stream);

// RoPE (rotate_half, angle float(pos) * inv_freq[i] as one fp32 multiply, cosf/sinf) on q (NH, HS) and k (NKV, HS)
// in place at position state->pos, then k and v (NKV*HS) stored into row pos of k_cache and v_cache
// (max_pos, NKV*HS). Mirrors cpu::rope_forward and the CPU decoder's cache writes.
void decode_rope_store(float* q, float* k, const float* v, float* k_cache, float* v_cache, const float* inv_freq,
                       const decode_state* state, int NH, int NKV, int HS, cudaStream_t stream);

// out (NH, HS) = softmax(q·Kᵀ / sqrt(HS)) V over cache rows 0..state->pos (causal: all of them), query head h reading
// kv head h / (NH / NKV). scores: scratch (NH, max_pos) fp32. One block per head; fp32 throughout.
// window > 0 (a sliding-window layer): only rows pos - window < j <= pos, as the CPU decoder; scale > 0 replaces
// 1/sqrt(HS) (Gemma 3: query_pre_attn_scalar^-0.5). The cache keeps every position; the window only limits the rows.
void decode_attention(float* out, float* scores, const float* q, const float* k_cache, const float* v_cache,
                      const decode_state* state, int NH, int NKV, int HS, int max_pos, cudaStream_t stream,
                      int window = 0, float scale = 0.0f);

// h (n) = silu(gate) * up, fp32. cpu::swiglu_forward.
void decode_swiglu(float* h, const float* gate, const float* up, int n, cudaStream_t stream);

// h (n) = gelu_tanh(gate) * up, fp32 (math in double). cpu::geglu_forward (Gemma 3).
void decode_geglu(float* h, const float* gate, const float* up, int n, cudaStream_t stream);
// y (n) += x (n), fp32: a bias add (x the bias) or a residual add (x a post norm's output). cpu::bias_forward.
void decode_add(float* y, const float* x, int n, cudaStream_t stream);
// x (n) *= s, fp32. cpu::scale_inplace (Gemma's sqrt(C) embedding scale).
void decode_scale(float* x, float s, int n, cudaStream_t stream);

} // namespace qls_kernels
