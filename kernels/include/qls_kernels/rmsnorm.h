// RMSNorm launchers (bf16 storage, fp32 math): out/dinp/dout (N, C), rstd (N) fp32, inp (N, C), weight (C).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qls_kernels {

// out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps); one warp per row.
void rmsnorm_forward(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp, const __nv_bfloat16* weight, int N,
                     int C, float eps, cudaStream_t stream);

// dinp (N, C) = r w dy - (r^3 / C) x sum_c(dy_c w_c x_c), per row, with r = rstd[n] (saved by rmsnorm_forward),
// from dout (N, C), inp (N, C), weight (C), rstd (N) fp32; one warp per row. Mirrors the dinp part of
// cpu::rmsnorm_backward, except that dinp is WRITTEN (=), not accumulated (+=): the caller adds it into the residual
// stream gradient. No dweight: the norms are frozen under QLoRA.
void rmsnorm_backward(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                      const __nv_bfloat16* weight, const float* rstd, int N, int C, cudaStream_t stream);

} // namespace qls_kernels
