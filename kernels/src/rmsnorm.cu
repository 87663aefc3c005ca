// RMSNorm forward/backward on the GPU: bf16 in/out, fp32 accumulation; matches cpu::rmsnorm_forward and the dinp
// part of cpu::rmsnorm_backward (written with =, see rmsnorm.h).
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
    for (int i = lane; i < C; i += 32)
        y[i] = __float2bfloat16(__bfloat162float(x[i]) * r * __bfloat162float(weight[i]));
}

// One warp per row: dot = sum_c dy_c w_c x_c (warp-reduced), then dx_c = r w_c dy_c - (r^3 / C) x_c dot.
// dinp, dout, inp (N, C), weight (C), rstd (N).
__global__ void rmsnorm_backward_kernel(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                        const __nv_bfloat16* weight, const float* rstd, int N, int C) {
    int warps_per_block = blockDim.x / 32;
    int row = blockIdx.x * warps_per_block + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const __nv_bfloat16* x = inp + (size_t)row * C;
    const __nv_bfloat16* dy = dout + (size_t)row * C;
    float dot = 0.0f;
    for (int i = lane; i < C; i += 32)
        dot += __bfloat162float(dy[i]) * __bfloat162float(weight[i]) * __bfloat162float(x[i]);
    for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    const float r = rstd[row];
    const float k = r * r * r * dot / (float)C;
    __nv_bfloat16* dx = dinp + (size_t)row * C;
    for (int i = lane; i < C; i += 32)
        dx[i] = __float2bfloat16(r * __bfloat162float(weight[i]) * __bfloat162float(dy[i]) -
                                 k * __bfloat162float(x[i]));
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

void rmsnorm_backward(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                      const __nv_bfloat16* weight, const float* rstd, int N, int C, cudaStream_t stream) {
    const int block = 256;
    const int rows_per_block = block / 32;
    const int grid = (N + rows_per_block - 1) / rows_per_block;
    if (grid == 0) return;
    rmsnorm_backward_kernel<<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, N, C);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
