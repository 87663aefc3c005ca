// RMSNorm forward on the GPU: bf16 in/out, fp32 accumulation; matches cpu::rmsnorm_forward.
#include "qls_kernels/check.h"
#include "qls_kernels/rmsnorm.h"

namespace qls_kernels {

// ----------------------------------------------------------------------------
// CUDA kernels

// One warp per row: each lane sums squares over a strided slice, warp-reduce, then scale.
__global__ void rmsnorm_forward_kernel(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp,
                                       const __nv_bfloat16* weight, int N, int C, float eps) {
    int warps_per_block = blockDim.x / 32;
    int row = blockIdx.x * warps_per_block + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const __nv_bfloat16* x = inp + (size_t)row * C;
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float v = __bfloat162float(x[i]);
        sum += v * v;
    }
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    float r = rsqrtf(sum / (float)C + eps);
    if (lane == 0 && rstd) rstd[row] = r;
    __nv_bfloat16* y = out + (size_t)row * C;
    for (int i = lane; i < C; i += 32) y[i] = __float2bfloat16(__bfloat162float(x[i]) * r * __bfloat162float(weight[i]));
}

// ----------------------------------------------------------------------------
// kernel launchers

void rmsnorm_forward(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp, const __nv_bfloat16* weight, int N,
                     int C, float eps, cudaStream_t stream) {
    const int block = 256;
    const int rows_per_block = block / 32;
    const int grid = (N + rows_per_block - 1) / rows_per_block;
    if (grid == 0) return;
    rmsnorm_forward_kernel<<<grid, block, 0, stream>>>(out, rstd, inp, weight, N, C, eps);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
