// RoPE forward/backward on the GPU (HF rotate_half pairs), bf16 in place, fp32 math; matches cpu::rope_forward /
// cpu::rope_backward up to cos/sin in fp32 (cosf/sinf) instead of double.
#include "qls_kernels/check.h"
#include "qls_kernels/rope.h"

namespace qls_kernels {

// ----------------------------------------------------------------------------
// CUDA kernels

// One thread per (token n, pair i): the angle and its cos/sin are computed once, then every head of the token is
// rotated (heads are HS apart, so a warp's consecutive i stay coalesced). x (N, NHX, HS), pos (N), inv_freq (HS/2).
// `inverse` selects the backward rotation R(-theta).
template <bool inverse>
__global__ void rope_kernel(__nv_bfloat16* x, const int* pos, const float* inv_freq, int N, int NHX, int HS) {
    const int half = HS / 2;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)N * half) return;
    const int n = (int)(idx / half);
    const int i = (int)(idx % half);
    // fp32 multiply, rounded once, as cpu::rope_angle's (float)p * inv_freq (no FMA to contract, but be explicit).
    const float angle = __fmul_rn((float)pos[n], inv_freq[i]);
    const float c = cosf(angle);
    const float s = sinf(angle);
    __nv_bfloat16* row = x + (size_t)n * NHX * HS;
    for (int h = 0; h < NHX; ++h) {
        __nv_bfloat16* xh = row + (size_t)h * HS;
        const float x1 = __bfloat162float(xh[i]);
        const float x2 = __bfloat162float(xh[i + half]);
        if (inverse) {
            xh[i] = __float2bfloat16(x1 * c + x2 * s);
            xh[i + half] = __float2bfloat16(x2 * c - x1 * s);
        } else {
            xh[i] = __float2bfloat16(x1 * c - x2 * s);
            xh[i + half] = __float2bfloat16(x2 * c + x1 * s);
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

namespace {

template <bool inverse>
void rope_launch(__nv_bfloat16* x, const int* pos, const float* inv_freq, int N, int NHX, int HS, cudaStream_t stream) {
    const int64_t threads = (int64_t)N * (HS / 2);
    if (threads <= 0 || NHX <= 0) return;
    const int block = 256;
    const int64_t grid = (threads + block - 1) / block;
    rope_kernel<inverse><<<(unsigned)grid, block, 0, stream>>>(x, pos, inv_freq, N, NHX, HS);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace

void rope_forward(__nv_bfloat16* x, const int* pos, const float* inv_freq, int N, int NHX, int HS,
                  cudaStream_t stream) {
    rope_launch<false>(x, pos, inv_freq, N, NHX, HS, stream);
}

void rope_backward(__nv_bfloat16* dx, const int* pos, const float* inv_freq, int N, int NHX, int HS,
                   cudaStream_t stream) {
    rope_launch<true>(dx, pos, inv_freq, N, NHX, HS, stream);
}

} // namespace qls_kernels
