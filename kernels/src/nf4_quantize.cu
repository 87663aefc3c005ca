// NF4 quantization on the GPU: codes and block absmax, then the 8-bit double quantization of the absmax; every
// arithmetic step is a correctly rounded intrinsic so the bytes equal the CPU reference's (engine/src/quant/nf4.cpp).
#include "qls_kernels/blockwise8_encode.h"
#include "qls_kernels/check.h"
#include "qls_kernels/nf4_codebook.h"
#include "qls_kernels/nf4_quantize.h"

#include <cfloat>
#include <cstdint>
#include <stdexcept>

namespace qls_kernels {

namespace {

constexpr int k_warps_per_block = 8;

__device__ __forceinline__ float load_f32(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }

// The block maximum of fmaxf over a warp: fmaxf is exact and ignores NaN, so any order gives the CPU's value.
__device__ __forceinline__ float warp_max(float m) {
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
    return m;
}

// One warp per NF4 block b: elements [b*bs, min(n, (b+1)*bs)). Blocks start at even elements (bs even), so every
// packed byte belongs to one block.
template <class T>
__global__ void nf4_quantize_blocks_kernel(uint8_t* packed, float* absmax, const T* w, int64_t n, int bs, int64_t nb) {
    const int64_t b = (int64_t)blockIdx.x * k_warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (b >= nb) return;
    const int64_t begin = b * bs;
    const int64_t end = begin + bs < n ? begin + bs : n;
    float m = -FLT_MAX;
    for (int64_t i = begin + lane; i < end; i += 32) m = fmaxf(m, fabsf(load_f32(w, i)));
    m = warp_max(m);
    if (lane == 0) absmax[b] = m;
    const float s = __fdiv_rn(1.0f, m); // 0 -> inf -> 0 * inf = NaN -> code 0, as the CPU and bnb
    for (int64_t i = begin + 2 * lane; i < end; i += 64) {
        const float hi = __fmul_rn(load_f32(w, i), s);
        const float lo = __fmul_rn(i + 1 < end ? load_f32(w, i + 1) : 0.0f, s);
        packed[i / 2] = (uint8_t)((nf4_encode(hi) << 4) | nf4_encode(lo));
    }
}

// One warp per nested block k of the absmax: centered = absmax - offset, its block max, the 8-bit codes.
__global__ void nf4_double_quantize_kernel(uint8_t* codes, float* scale, const float* absmax, float offset,
                                           const float* map, int64_t nb, int nbs, int64_t nscale) {
    __shared__ float code[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) code[i] = map[i];
    __syncthreads();
    const int64_t k = (int64_t)blockIdx.x * k_warps_per_block + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (k >= nscale) return;
    const int64_t begin = k * nbs;
    const int64_t end = begin + nbs < nb ? begin + nbs : nb;
    float m = -FLT_MAX;
    for (int64_t i = begin + lane; i < end; i += 32) m = fmaxf(m, fabsf(__fsub_rn(absmax[i], offset)));
    m = warp_max(m);
    if (lane == 0) scale[k] = m;
    const float s = __fdiv_rn(1.0f, m);
    for (int64_t i = begin + lane; i < end; i += 32)
        codes[i] = blockwise8_encode_map(__fmul_rn(__fsub_rn(absmax[i], offset), s), code);
}

template <class T>
void launch_quantize(uint8_t* packed, float* absmax, const T* w, int64_t n, int blocksize, cudaStream_t stream) {
    if (n <= 0) return;
    if (blocksize <= 0 || blocksize % 2 != 0)
        throw std::invalid_argument("nf4_quantize_blocks: blocksize must be even");
    const int64_t nb = (n + blocksize - 1) / blocksize;
    const int64_t grid = (nb + k_warps_per_block - 1) / k_warps_per_block;
    nf4_quantize_blocks_kernel<T>
        <<<(unsigned)grid, 32 * k_warps_per_block, 0, stream>>>(packed, absmax, w, n, blocksize, nb);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace

void nf4_quantize_blocks(uint8_t* packed, float* absmax, const float* w, int64_t n, int blocksize,
                         cudaStream_t stream) {
    launch_quantize(packed, absmax, w, n, blocksize, stream);
}

void nf4_quantize_blocks(uint8_t* packed, float* absmax, const __nv_bfloat16* w, int64_t n, int blocksize,
                         cudaStream_t stream) {
    launch_quantize(packed, absmax, w, n, blocksize, stream);
}

void nf4_double_quantize(uint8_t* codes, float* scale, const float* absmax, float offset, const float* map, int64_t nb,
                         int nested_blocksize, cudaStream_t stream) {
    if (nb <= 0) return;
    if (nested_blocksize <= 0) throw std::invalid_argument("nf4_double_quantize: nested_blocksize must be positive");
    const int64_t nscale = (nb + nested_blocksize - 1) / nested_blocksize;
    const int64_t grid = (nscale + k_warps_per_block - 1) / k_warps_per_block;
    nf4_double_quantize_kernel<<<(unsigned)grid, 32 * k_warps_per_block, 0, stream>>>(codes, scale, absmax, offset, map,
                                                                                      nb, nested_blocksize, nscale);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
