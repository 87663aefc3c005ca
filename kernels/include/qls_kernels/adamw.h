// AdamW launchers with bitsandbytes semantics: fp32 states (one fused launch over many tensors) and 8-bit blockwise
// states (one tensor). The per-element arithmetic is engine/src/optim/adamw.cpp's, operation for operation.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qls_kernels {

// One tensor of a multi-tensor fp32 update; all pointers are device pointers to n floats.
struct adamw_tensor {
    float* p;
    const float* g;
    float* m;
    float* v;
    int64_t n;
};

// AdamW hyper-parameters (bnb AdamW defaults), as qls::adamw_hparams.
struct adamw_config {
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 1e-2f;
};

// qls::adamw_update_32bit over num_tensors tensors in ONE launch. tensors: a DEVICE array of num_tensors
// descriptors (the caller uploads it and keeps it alive until the launch has run); max_n: the largest n among them
// (sizes the grid). step >= 1. Per element, with g = gnorm_scale * g:
//   m = fma(m, b1, (1-b1)*g); v = fma(v, b2, (1-b2)*(g*g)); p = fma(step_size, m / fma(eps, c2, sqrt(v)), p);
//   p = p * fma(-lr, wd, 1) when wd > 0
// with the step constants computed on the host exactly as the CPU does; every device operation is a correctly
// rounded intrinsic (no contraction, no approximate math), so the result is the CPU's bit for bit.
void adamw_update_32bit_multi(const adamw_tensor* tensors, int num_tensors, int64_t max_n, int64_t step, float lr,
                              const adamw_config& cfg, float gnorm_scale, cudaStream_t stream);

// qls::adamw_update_8bit_blockwise on one tensor (or a chunk starting on a 256-element block boundary): p, g [n];
// state1 (m codes), state2 (v codes) [n]; absmax1, absmax2 [ceil(n / 256)]; qmap1 = dynamic_map(true),
// qmap2 = dynamic_map(false) as 256 device floats each. One CUDA block of 256 threads per 256-element block;
// requantization is bnb's quantize_2D search (the CPU's quantize_2d), so codes and absmax equal the CPU's.
void adamw_update_8bit_blockwise(float* p, const float* g, uint8_t* state1, uint8_t* state2, float* absmax1,
                                 float* absmax2, int64_t n, int64_t step, float lr, const adamw_config& cfg,
                                 const float* qmap1, const float* qmap2, float gnorm_scale, cudaStream_t stream);

// One tensor (or 256-aligned chunk) of a multi-tensor 8-bit update; device pointers: p, g, state1, state2 [n],
// absmax1, absmax2 [ceil(n / 256)].
struct adamw8_tensor {
    float* p;
    const float* g;
    uint8_t* state1;
    uint8_t* state2;
    float* absmax1;
    float* absmax2;
    int64_t n;
};
// adamw_update_8bit_blockwise over num_tensors tensors in ONE launch (grid y = tensor), each element exactly as the
// single-tensor launcher computes it. tensors: a DEVICE array the caller keeps alive until the launch has run;
// max_n: the largest n among them.
void adamw_update_8bit_blockwise_multi(const adamw8_tensor* tensors, int num_tensors, int64_t max_n, int64_t step,
                                       float lr, const adamw_config& cfg, const float* qmap1, const float* qmap2,
                                       float gnorm_scale, cudaStream_t stream);
} // namespace qls_kernels
