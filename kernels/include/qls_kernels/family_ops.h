// Launchers of the ops the newer model families add (bf16 storage, fp32 math): GeGLU with tanh GELU (Gemma 3), the
// bias add of biased linears (Qwen2), RMSNorm with a weight offset ((1 + w), Gemma; over HS rows it is the per-head
// q/k norm of Qwen3 and Gemma 3) and an in-place scale (Gemma's sqrt(C) embedding scale). Each mirrors the CPU op of
// the same name in engine/src/backends/cpu/ops.h; gradients are WRITTEN (=), as the other kernels' are.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qls_kernels {

// out (n) = gelu_tanh(gate) * up, gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). cpu::geglu_forward.
void geglu_forward(__nv_bfloat16* out, const __nv_bfloat16* gate, const __nv_bfloat16* up, int64_t n,
                   cudaStream_t stream);
// dgate (n) = dout * up * gelu_tanh'(gate), dup (n) = dout * gelu_tanh(gate); either may be nullptr.
// cpu::geglu_backward with written (=) gradients.
void geglu_backward(__nv_bfloat16* dgate, __nv_bfloat16* dup, const __nv_bfloat16* dout, const __nv_bfloat16* gate,
                    const __nv_bfloat16* up, int64_t n, cudaStream_t stream);

// out (N, OC) += bias (OC) on every row. cpu::bias_forward.
void bias_add(__nv_bfloat16* out, const __nv_bfloat16* bias, int N, int OC, cudaStream_t stream);

// x (n) *= s. cpu::scale_inplace.
void scale_inplace(__nv_bfloat16* x, float s, int64_t n, cudaStream_t stream);

// out (N, C) = inp * rstd * (offset + weight), rstd (N) fp32 saved for backward; one warp per row.
// cpu::rmsnorm_forward with weight_offset.
void rmsnorm_offset_forward(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                            int N, int C, float eps, float offset, cudaStream_t stream);
// dinp (N, C) = r w' dy - (r^3 / C) x sum_c(dy_c w'_c x_c), w' = offset + weight, r = rstd[n]; written (=).
// cpu::rmsnorm_backward with weight_offset (no weight gradient: the norms are frozen).
void rmsnorm_offset_backward(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                             const __nv_bfloat16* weight, const float* rstd, int N, int C, float offset,
                             cudaStream_t stream);

} // namespace qls_kernels
