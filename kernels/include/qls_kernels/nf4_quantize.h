// NF4 quantization on the GPU (bitsandbytes quantize_4bit(quant_type="nf4") layout) and the 8-bit blockwise
// quantization of its block absmax (double quantization), byte-identical to the engine's CPU nf4_quantize.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qls_kernels {

// w (n) fp32 or bf16 on the device -> packed (ceil(n/2)) codes, element 2j in the high nibble and 2j+1 in the low
// one, and absmax (ceil(n/blocksize)) fp32, per block of `blocksize` consecutive elements (the last may be partial):
//   absmax[b] = max |w| over the block (fmaxf from -FLT_MAX: NaN ignored, as the CPU's std::fmax)
//   s = 1.0f / absmax[b] (correctly rounded, __fdiv_rn: the CPU reference's, not bnb's rcp.approx; qls/quant.h)
//   code_i = nf4_encode(w_i * s) (__fmul_rn), a missing element 2j+1 of an odd n is loaded as 0.0f
// Mirrors qls::nf4_quantize (engine/src/quant/nf4.cpp) before its double quantization. blocksize: an even number
// (bnb: 32 ... 4096); one warp per block.
void nf4_quantize_blocks(uint8_t* packed, float* absmax, const float* w, int64_t n, int blocksize, cudaStream_t stream);
void nf4_quantize_blocks(uint8_t* packed, float* absmax, const __nv_bfloat16* w, int64_t n, int blocksize,
                         cudaStream_t stream);

// Double quantization of the block absmax (nb values) given its mean `offset` (computed by the caller, on the host,
// in the CPU reference's summation order): centered_i = absmax_i - offset (__fsub_rn), then 8-bit blockwise with
// `map` (256 fp32, ascending; bnb's signed dynamic map) in blocks of nested_blocksize:
//   scale[k] = max |centered| over block k; code_i = blockwise8_encode_map(centered_i * (1.0f / scale[k]), map)
// codes (nb) uint8, scale (ceil(nb / nested_blocksize)) fp32. Mirrors the tail of qls::nf4_quantize
// (qls::blockwise8_quantize of absmax - offset). One warp per nested block.
void nf4_double_quantize(uint8_t* codes, float* scale, const float* absmax, float offset, const float* map, int64_t nb,
                         int nested_blocksize, cudaStream_t stream);

} // namespace qls_kernels
