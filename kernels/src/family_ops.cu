// The newer families' ops on the GPU (family_ops.h): GeGLU (tanh GELU), bias add, scale, RMSNorm with a weight offset.
// bf16 in/out, fp32 math; each matches the CPU op of the same name (engine/src/backends/cpu/ops.cpp).
#include "qls_kernels/check.h"
#include "qls_kernels/family_ops.h"

namespace qls_kernels {

namespace {

constexpr float k_gelu_k = 0.7978845608028654f; // sqrt(2 / pi)
constexpr float k_gelu_c = 0.044715f;

// Enough blocks to fill the GPU, capped; the kernels loop over the rest.
unsigned grid_for(int64_t n, int block) {
    const int64_t blocks = (n + block - 1) / block;
    return (unsigned)(blocks < 65536 ? blocks : 65536);
}

// One thread per element, grid-stride loop. gate, up, out (n).
__global__ void geglu_forward_kernel(__nv_bfloat16* out, const __nv_bfloat16* gate, const __nv_bfloat16* up,
                                     int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = __bfloat162float(gate[i]);
        const float th = tanhf(k_gelu_k * (g + k_gelu_c * g * g * g));
        out[i] = __float2bfloat16(0.5f * g * (1.0f + th) * __bfloat162float(up[i]));
    }
}

// dgate, dup written (=), either may be nullptr. d gelu/dx = 0.5 (1 + th) + 0.5 x (1 - th^2) k (1 + 3 c x^2).
__global__ void geglu_backward_kernel(__nv_bfloat16* dgate, __nv_bfloat16* dup, const __nv_bfloat16* dout,
                                      const __nv_bfloat16* gate, const __nv_bfloat16* up, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = __bfloat162float(gate[i]);
        const float th = tanhf(k_gelu_k * (g + k_gelu_c * g * g * g));
        const float d = __bfloat162float(dout[i]);
        const float dgelu = 0.5f * (1.0f + th) +
                            0.5f * g * (1.0f - th * th) * k_gelu_k * (1.0f + 3.0f * k_gelu_c * g * g);
        if (dgate) dgate[i] = __float2bfloat16(d * __bfloat162float(up[i]) * dgelu);
        if (dup) dup[i] = __float2bfloat16(d * 0.5f * g * (1.0f + th));
    }
}

// out (N, OC) += bias (OC); grid-stride over N*OC.
__global__ void bias_add_kernel(__nv_bfloat16* out, const __nv_bfloat16* bias, int64_t n, int OC) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = __float2bfloat16(__bfloat162float(out[i]) + __bfloat162float(bias[i % OC]));
}

__global__ void scale_kernel(__nv_bfloat16* x, float s, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        x[i] = __float2bfloat16(__bfloat162float(x[i]) * s);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One warp per row n of (N, C): rstd = 1 / sqrt(mean(x^2) + eps), out = x rstd (offset + w).
__global__ void rmsnorm_offset_forward_kernel(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp,
                                              const __nv_bfloat16* weight, int N, int C, float eps, float offset) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= N) return;
    const __nv_bfloat16* x = inp + (int64_t)row * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float v = __bfloat162float(x[c]);
        ss += v * v;
    }
    ss = warp_sum(ss);
    const float r = rsqrtf(ss / (float)C + eps);
    __nv_bfloat16* o = out + (int64_t)row * C;
    for (int c = lane; c < C; c += 32)
        o[c] = __float2bfloat16(__bfloat162float(x[c]) * r * (offset + __bfloat162float(weight[c])));
    if (lane == 0) rstd[row] = r;
}

// One warp per row: dinp = r w' dy - (r^3 / C) x dot, dot = sum_c dy_c w'_c x_c.
__global__ void rmsnorm_offset_backward_kernel(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                               const __nv_bfloat16* weight, const float* rstd, int N, int C,
                                               float offset) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= N) return;
    const __nv_bfloat16* x = inp + (int64_t)row * C;
    const __nv_bfloat16* dy = dout + (int64_t)row * C;
    float dot = 0.0f;
    for (int c = lane; c < C; c += 32)
        dot += __bfloat162float(dy[c]) * (offset + __bfloat162float(weight[c])) * __bfloat162float(x[c]);
    dot = warp_sum(dot);
    const float r = rstd[row];
    const float k = r * r * r * dot / (float)C;
    __nv_bfloat16* dx = dinp + (int64_t)row * C;
    for (int c = lane; c < C; c += 32)
        dx[c] = __float2bfloat16(r * (offset + __bfloat162float(weight[c])) * __bfloat162float(dy[c]) -
                                 k * __bfloat162float(x[c]));
}

} // namespace

void geglu_forward(__nv_bfloat16* out, const __nv_bfloat16* gate, const __nv_bfloat16* up, int64_t n,
                   cudaStream_t stream) {
    if (n <= 0) return;
    geglu_forward_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, gate, up, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void geglu_backward(__nv_bfloat16* dgate, __nv_bfloat16* dup, const __nv_bfloat16* dout, const __nv_bfloat16* gate,
                    const __nv_bfloat16* up, int64_t n, cudaStream_t stream) {
    if (n <= 0 || (!dgate && !dup)) return;
    geglu_backward_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dgate, dup, dout, gate, up, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void bias_add(__nv_bfloat16* out, const __nv_bfloat16* bias, int N, int OC, cudaStream_t stream) {
    const int64_t n = (int64_t)N * OC;
    if (n <= 0) return;
    bias_add_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, bias, n, OC);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void scale_inplace(__nv_bfloat16* x, float s, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    scale_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, s, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void rmsnorm_offset_forward(__nv_bfloat16* out, float* rstd, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                            int N, int C, float eps, float offset, cudaStream_t stream) {
    if (N <= 0) return;
    const int warps = 8; // rows per block
    rmsnorm_offset_forward_kernel<<<(N + warps - 1) / warps, warps * 32, 0, stream>>>(out, rstd, inp, weight, N, C, eps,
                                                                                      offset);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void rmsnorm_offset_backward(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                             const __nv_bfloat16* weight, const float* rstd, int N, int C, float offset,
                             cudaStream_t stream) {
    if (N <= 0) return;
    const int warps = 8;
    rmsnorm_offset_backward_kernel<<<(N + warps - 1) / warps, warps * 32, 0, stream>>>(dinp, dout, inp, weight, rstd, N,
                                                                                       C, offset);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
