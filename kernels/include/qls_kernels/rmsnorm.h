// RMSNorm launchers (bf16 storage, fp32 math): out (N, C), rstd (N), inp (N, C), weight (C).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qls_kernels {

// out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps); one warp per row.
void rmsnorm_forward(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp, const __nv_bfloat16* weight, int N,
                     int C, float eps, cudaStream_t stream);

} // namespace qls_kernels
