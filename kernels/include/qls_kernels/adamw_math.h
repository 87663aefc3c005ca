// AdamW arithmetic shared by the CPU reference (engine/src/optim/adamw.cpp) and the CUDA kernels (kernels/src/adamw.cu):
// the per-step constants (host only) and the 8-bit requantization search (host and device).
//
// Plain C++17 when not compiled by nvcc, like nf4_codebook.h, so qls_engine includes it too. Nothing here can be
// contracted into an FMA ((a + b) * c has no multiply-add), so both compilers produce the same bits.
#pragma once
#include "qls_kernels/host_device.h"

#include <cmath>
#include <cstdint>

namespace qls_kernels {

// bnb `kOptimizer32bit2State` step constants (bitsandbytes csrc/kernels.cu):
//   correction1 = 1 - beta1^step; correction2 = sqrt(1 - beta2^step); step_size = -lr*correction2/correction1;
//   decay = 1 - lr*wd, contracted by nvcc to fma(-lr, wd, 1).
// On the GPU bnb gets __powf through --use_fast_math; this is the correctly rounded value it approximates.
struct adamw_step_constants {
    float correction2 = 0;
    float step_size = 0;
    float decay = 1;
};

inline adamw_step_constants adamw_constants(int64_t step, float lr, float beta1, float beta2, float weight_decay) {
    adamw_step_constants c;
    const float correction1 = 1.0f - std::pow(beta1, float(step));
    c.correction2 = std::sqrt(1.0f - std::pow(beta2, float(step)));
    c.step_size = (-lr * c.correction2) / correction1;
    c.decay = std::fma(-lr, weight_decay, 1.0f);
    return c;
}

// bnb `quantize_2D<SIGNED>` (csrc/cuda/optimizers.cu): binary search over the sorted 256-entry code with the three
// quadrant pivots code[63], code[127], code[191] for the first two levels, then round to the nearer neighbour by
// comparing with the float32 midpoint. x is state/absmax (NaN when absmax is 0: it then ends at code 0, as bnb's).
template <bool SIGNED> QLS_HD uint8_t quantize_2d(const float* code, float x) {
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = SIGNED ? -1.0f : 0.0f;
    float upper = 1.0f;
    const float quadrants[3] = {code[63], code[127], code[191]};
    float val = quadrants[1];
    int local_pivot = 1, offset = 1;
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
            local_pivot += offset;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
            local_pivot -= offset;
        }
        val = i >= 64 ? quadrants[local_pivot] : code[pivot];
        offset -= 1;
    }
    if (x > val) {
        const float midpoint = (upper + val) * 0.5f;
        return uint8_t(x > midpoint ? upper_pivot : pivot);
    }
    const float midpoint = (lower + val) * 0.5f;
    return uint8_t(x < midpoint ? lower_pivot : pivot);
}

} // namespace qls_kernels
