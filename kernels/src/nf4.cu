// NF4 dequantization on the GPU (bf16 out), bit-identical to the CPU nf4_dequantize followed by bf16 rounding.
#include "qls_kernels/check.h"
#include "qls_kernels/nf4.h"
#include "qls_kernels/nf4_codebook.h"

#include <algorithm>
#include <cstdint>

namespace qls_kernels {

// ----------------------------------------------------------------------------
// CUDA kernels

// One thread per packed byte: two elements. The absmax is rebuilt per element's block; __fmul_rn/__fadd_rn keep
// nvcc from contracting the multiply-add into an FMA, so the arithmetic equals the CPU reference's.
__global__ void nf4_dequantize_dq_kernel(__nv_bfloat16* out, const uint8_t* packed, const uint8_t* absmax_codes,
                                         const float* absmax_scale, float offset, const float* nested_map, int64_t n,
                                         int blocksize, int nested_blocksize) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t i0 = 2 * j;
    if (i0 >= n) return;
    const uint8_t byte = packed[j];
    for (int k = 0; k < 2; ++k) {
        const int64_t i = i0 + k;
        if (i >= n) break;
        const int64_t b = i / blocksize;
        const float absmax = __fadd_rn(__fmul_rn(nested_map[absmax_codes[b]], absmax_scale[b / nested_blocksize]),
                                       offset);
        const unsigned q = k == 0 ? (byte >> 4) : (byte & 0x0F);
        out[i] = __float2bfloat16_rn(__fmul_rn(nf4_decode(q), absmax));
    }
}

// The training path's layout (blocks of 64, nested blocks of 256, n a multiple of 16): one thread per 16 elements
// (8 packed bytes in one 8-byte load, 32 bytes out in two 16-byte stores), so one absmax per thread and shifts instead
// of 64-bit divisions; the code values come from shared memory (a run-time index into a register array would spill to
// local memory). Same operations as the kernel above, so the same bits.
__global__ void nf4_dequantize_dq_vec16_kernel(__nv_bfloat16* out, const uint2* packed, const uint8_t* absmax_codes,
                                               const float* absmax_scale, float offset, const float* nested_map,
                                               int64_t groups) {
    __shared__ float lut[16];
    if (threadIdx.x < 16) lut[threadIdx.x] = nf4_decode(threadIdx.x);
    __syncthreads();
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i0 = g * 16;
        const int64_t b = i0 >> 6;
        const float absmax = __fadd_rn(__fmul_rn(nested_map[absmax_codes[b]], absmax_scale[b >> 8]), offset);
        const uint2 w = packed[g];
        __align__(16) __nv_bfloat16 v[16];
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const unsigned byte = ((k < 4 ? w.x : w.y) >> (8 * (k & 3))) & 0xFFu;
            v[2 * k] = __float2bfloat16_rn(__fmul_rn(lut[byte >> 4], absmax));
            v[2 * k + 1] = __float2bfloat16_rn(__fmul_rn(lut[byte & 0x0F], absmax));
        }
        uint4* dst = reinterpret_cast<uint4*>(out + i0);
        dst[0] = *reinterpret_cast<const uint4*>(&v[0]);
        dst[1] = *reinterpret_cast<const uint4*>(&v[8]);
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

void nf4_dequantize_dq(__nv_bfloat16* out, const uint8_t* packed, const uint8_t* absmax_codes,
                       const float* absmax_scale, float offset, const float* nested_map, int64_t n, int blocksize,
                       int nested_blocksize, cudaStream_t stream) {
    const int64_t bytes = (n + 1) / 2;
    if (bytes == 0) return;
    const int block = 256;
    if (blocksize == 64 && nested_blocksize == 256 && n % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
        reinterpret_cast<uintptr_t>(packed) % 8 == 0) {
        const int64_t groups = n / 16;
        const int64_t grid = std::min<int64_t>((groups + block - 1) / block, 65535LL * 8);
        nf4_dequantize_dq_vec16_kernel<<<(unsigned)grid, block, 0, stream>>>(out,
                                                                             reinterpret_cast<const uint2*>(packed),
                                                                             absmax_codes, absmax_scale, offset,
                                                                             nested_map, groups);
        QLS_CUDA_CHECK(cudaGetLastError());
        return;
    }
    const int64_t grid = (bytes + block - 1) / block;
    nf4_dequantize_dq_kernel<<<(unsigned)grid, block, 0, stream>>>(out, packed, absmax_codes, absmax_scale, offset,
                                                                   nested_map, n, blocksize, nested_blocksize);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
