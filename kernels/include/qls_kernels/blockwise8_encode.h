// The 8-bit blockwise encoder of bitsandbytes (dQuantize<STOCHASTIC=0>) for host and device code, over a 256-entry
// ascending map given as a pointer (a device kernel passes its shared-memory copy).
//
// Source: bitsandbytes csrc/cuda/blockwise_quantization.cu dQuantize, statement for statement; the engine's
// qls::blockwise8_encode (engine/src/quant/dynamic_map.cpp) is the same function over a std::array, and
// tests/tst_gpu_quant.cpp checks the two agree on every map entry, every midpoint and its neighbours, NaN and +-inf.
#pragma once

#include "qls_kernels/host_device.h"

namespace qls_kernels {

// Index (0..255) of the code nearest to x (x already multiplied by 1/absmax): a 7-step binary search from pivot 127,
// then round to nearest against the float32 midpoint of the two bracketing codes. NaN gives 0 (every comparison is
// false) exactly as bnb. `code` must be ascending (both dynamic maps are).
QLS_HD unsigned char blockwise8_encode_map(float x, const float* code) {
    int pivot = 127;
    int upper_pivot = 255;
    int lower_pivot = 0;
    float lower = -1.0f;
    float upper = 1.0f;
    float val = code[pivot];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = code[pivot];
    }
    if (upper_pivot == 255) upper = code[upper_pivot];
    if (lower_pivot == 0) lower = code[lower_pivot];
    if (x > val) {
        const float midpoint = (upper + val) * 0.5f;
        return (unsigned char)(x > midpoint ? upper_pivot : pivot);
    }
    const float midpoint = (lower + val) * 0.5f;
    return (unsigned char)(x < midpoint ? lower_pivot : pivot);
}

} // namespace qls_kernels
