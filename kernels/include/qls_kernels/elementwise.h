// Small launchers of the CUDA training step: casts, residual adds, LoRA dropout, f32-accumulating RMSNorm backward,
// deterministic sums of squares, and the random fills that make a synthetic NF4 model on the device.
#pragma once
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qls_kernels {

// out (n) bf16 = round(in (n) fp32) ; out (n) fp32 = in (n) bf16
void cast_f32_to_bf16(__nv_bfloat16* out, const float* in, int64_t n, cudaStream_t stream);
void cast_bf16_to_f32(float* out, const __nv_bfloat16* in, int64_t n, cudaStream_t stream);
// y (n) bf16 += x (n) bf16, fp32 add then one rounding (the residual stream).
void add_inplace_bf16(__nv_bfloat16* y, const __nv_bfloat16* x, int64_t n, cudaStream_t stream);
// y (n) fp32 += x (n) bf16
void add_bf16_to_f32(float* y, const __nv_bfloat16* x, int64_t n, cudaStream_t stream);

// Inverted dropout with the shared mask (dropout_hash.h): out[i] = keep(i) ? in[i] / (1 - p) : 0, i in [0, n),
// n = rows * cols of one adapter input (the element index of the CPU pass). accumulate: out[i] += instead of =.
// out, in: bf16 when out_f32 is nullptr; otherwise the result goes to out_f32 (fp32) and in is bf16.
void lora_dropout(__nv_bfloat16* out, float* out_f32, const __nv_bfloat16* in, int64_t n, uint64_t seed, int layer,
                  int target, float p, bool accumulate, cudaStream_t stream);

// dres (N, C) fp32 += r w dy - (r^3 / C) x sum_c(dy_c w_c x_c), dy = dout (N, C) fp32, x = inp (N, C) bf16,
// w (C) bf16, r = rstd (N): the input gradient of RMSNorm (cpu::rmsnorm_backward), accumulated into the residual
// gradient. One warp per row.
void rmsnorm_backward_accumulate(float* dres, const float* dout, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                                 const float* rstd, int N, int C, cudaStream_t stream);

// partial (num_partials) = sums of squares of x (n) fp32 over fixed slices; then total = sum of partials in index
// order: the same bits on every run (no atomics). sum_squares writes out[0] = sum_i x_i^2 (fp32 per slice, the
// final sum in double rounded to fp32). partial must hold sum_squares_partials() floats.
int sum_squares_partials();
void sum_squares(float* out, float* partial, const float* x, int64_t n, cudaStream_t stream);
// out[0] = sum of x (n) fp32 in a fixed order (one block), for the loss.
void sum_f32(float* out, const float* x, int n, cudaStream_t stream);

// Random fills from a counter hash (deterministic in seed): bytes uniform in [0, 256); bf16 normal(0, stddev);
// fp32 uniform(-bound, bound); bf16 constant.
void fill_random_bytes(uint8_t* out, int64_t n, uint64_t seed, cudaStream_t stream);
void fill_random_normal_bf16(__nv_bfloat16* out, int64_t n, uint64_t seed, float stddev, cudaStream_t stream);
void fill_random_uniform_f32(float* out, int64_t n, uint64_t seed, float bound, cudaStream_t stream);
void fill_bf16(__nv_bfloat16* out, int64_t n, float value, cudaStream_t stream);
void fill_f32(float* out, int64_t n, float value, cudaStream_t stream);

} // namespace qls_kernels
