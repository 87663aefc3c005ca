// Rotary position embedding launchers (bf16 storage, fp32 math), HF rotate_half convention, in place.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qls_kernels {

// x (N, NHX, HS) bf16 rotated in place, pair (i, i + HS/2) for i < HS/2, angle = float(pos[n]) * inv_freq[i]
// (one fp32 multiply, as the CPU op):
//   x'[i] = x[i] cos - x[i+HS/2] sin ;  x'[i+HS/2] = x[i+HS/2] cos + x[i] sin
// pos (N) int32 ; inv_freq (HS/2) fp32 ; HS even. NHX = NH for queries, NKV for keys.
// cos/sin are cosf/sinf in fp32 (full-range argument reduction, <= 2 ulp; not the __cosf/__sinf intrinsics, which
// lose accuracy for the large angles of late positions); the CPU op takes cos/sin in double of the same fp32 angle.
// Mirrors cpu::rope_forward (engine/src/backends/cpu/ops.h).
void rope_forward(__nv_bfloat16* x, const int* pos, const float* inv_freq, int N, int NHX, int HS, cudaStream_t stream);

// The inverse rotation applied in place to the gradient dx (N, NHX, HS):
//   dx[i] = d[i] cos + d[i+HS/2] sin ;  dx[i+HS/2] = d[i+HS/2] cos - d[i] sin
// Same shapes and angle as rope_forward. Mirrors cpu::rope_backward (in place, so neither = nor += applies).
void rope_backward(__nv_bfloat16* dx, const int* pos, const float* inv_freq, int N, int NHX, int HS,
                   cudaStream_t stream);

} // namespace qls_kernels
