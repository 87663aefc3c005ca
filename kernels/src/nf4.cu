// NF4 dequantization on the GPU (bf16 out), bit-identical to the CPU nf4_dequantize followed by bf16 rounding.
#include "qls_kernels/check.h"
#include "qls_kernels/nf4.h"
#include "qls_kernels/nf4_codebook.h"

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
        const float absmax = __fadd_rn(__fmul_rn(nested_map[absmax_codes[b]], absmax_scale[b / nested_blocksize]), offset);
        const unsigned q = k == 0 ? (byte >> 4) : (byte & 0x0F);
        out[i] = __float2bfloat16_rn(__fmul_rn(nf4_decode(q), absmax));
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

void nf4_dequantize_dq(__nv_bfloat16* out, const uint8_t* packed, const uint8_t* absmax_codes, const float* absmax_scale,
                       float offset, const float* nested_map, int64_t n, int blocksize, int nested_blocksize,
                       cudaStream_t stream) {
    const int64_t bytes = (n + 1) / 2;
    if (bytes == 0) return;
    const int block = 256;
    const int64_t grid = (bytes + block - 1) / block;
    nf4_dequantize_dq_kernel<<<(unsigned)grid, block, 0, stream>>>(out, packed, absmax_codes, absmax_scale, offset,
                                                                    nested_map, n, blocksize, nested_blocksize);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
