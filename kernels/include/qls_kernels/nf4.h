// NF4 dequantization launcher: bitsandbytes-layout 4-bit weights (with double-quantized absmax) to bf16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qls_kernels {

// out (n) bf16 = nf4_code[q_i] * absmax[i / blocksize], q_i the high nibble of packed[i/2] for even i, the low one
// for odd i (bitsandbytes kDequantizeBlockwise NF4). absmax per block is rebuilt from the double quantization:
// absmax[b] = nested_map[absmax_codes[b]] * absmax_scale[b / nested_blocksize] + offset (a multiply, then a separate
// add, as bitsandbytes' dequantize_4bit does). Shapes: packed (ceil(n/2)), absmax_codes (nblocks),
// absmax_scale (ceil(nblocks / nested_blocksize)), nested_map (256).
void nf4_dequantize_dq(__nv_bfloat16* out, const uint8_t* packed, const uint8_t* absmax_codes,
                       const float* absmax_scale, float offset, const float* nested_map, int64_t n, int blocksize,
                       int nested_blocksize, cudaStream_t stream);

} // namespace qls_kernels
