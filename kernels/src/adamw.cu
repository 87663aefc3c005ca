// AdamW on the GPU with bitsandbytes semantics, reproducing engine/src/optim/adamw.cpp operation for operation:
// fp32 states over many tensors in one launch, and 8-bit blockwise states (one CUDA block per 256 elements).
// Every product, sum, quotient and square root is written as a correctly rounded intrinsic (__fmul_rn, __fadd_rn,
// __fdiv_rn, __fsqrt_rn, __fmaf_rn) so nvcc neither contracts nor approximates anything: the fused multiply-adds are
// exactly the CPU's std::fma calls and nothing else. The step constants are computed on the host by the CPU's code.
#include "qls_kernels/adamw.h"
#include "qls_kernels/adamw_math.h"
#include "qls_kernels/check.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <stdexcept>
#include <string>

namespace qls_kernels {

namespace {

constexpr int adamw_block = 256; // threads per block for the fp32 update
constexpr int q8_block = 256;    // elements per absmax block = threads per block for the 8-bit update

// The host step constants (adamw_math.h, the CPU's own expressions) plus what the kernels read per element.
struct step_consts {
    float correction2;
    float step_size;
    float decay;
    float b1, b2, omb1, omb2, eps;
    bool use_decay;
};

step_consts make_consts(int64_t step, float lr, const adamw_config& h) {
    const adamw_step_constants k = adamw_constants(step, lr, h.beta1, h.beta2, h.weight_decay);
    step_consts c;
    c.correction2 = k.correction2;
    c.step_size = k.step_size;
    c.decay = k.decay;
    c.b1 = h.beta1;
    c.b2 = h.beta2;
    c.omb1 = 1.0f - h.beta1;
    c.omb2 = 1.0f - h.beta2;
    c.eps = h.eps;
    c.use_decay = h.weight_decay > 0.0f;
    return c;
}

} // namespace

// ----------------------------------------------------------------------------
// CUDA kernels

// grid (x: strided over elements, y: tensor). Per element the CPU's adamw_update_32bit.
__global__ void adamw_32bit_multi_kernel(const adamw_tensor* tensors, step_consts c, float gnorm_scale) {
    const adamw_tensor t = tensors[blockIdx.y];
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < t.n; i += stride) {
        const float gv = __fmul_rn(gnorm_scale, t.g[i]);
        const float s1 = __fmaf_rn(t.m[i], c.b1, __fmul_rn(c.omb1, gv));
        const float s2 = __fmaf_rn(t.v[i], c.b2, __fmul_rn(c.omb2, __fmul_rn(gv, gv)));
        float pv = __fmaf_rn(c.step_size, __fdiv_rn(s1, __fmaf_rn(c.eps, c.correction2, __fsqrt_rn(s2))), t.p[i]);
        if (c.use_decay) pv = __fmul_rn(pv, c.decay);
        t.m[i] = s1;
        t.v[i] = s2;
        t.p[i] = pv;
    }
}

// One block of 256 threads per 256-element block (the CPU's adamw_update_8bit_blockwise). Threads past the end
// load g = 0, state1 code 128, state2 code 0 and take part in the absmax reduction; only valid ones store.
// blk: the 256-element block of this tensor that this CUDA block updates (block-uniform).
__device__ __forceinline__ void adamw_8bit_block(float* p, const float* g, uint8_t* state1, uint8_t* state2,
                                                 float* absmax1, float* absmax2, int64_t n, int64_t blk,
                                                 const step_consts& c, const float* qmap1, const float* qmap2,
                                                 float gnorm_scale) {
    __shared__ float q1[256];
    __shared__ float q2[256];
    __shared__ float red1[q8_block / 32];
    __shared__ float red2[q8_block / 32];
    q1[threadIdx.x] = qmap1[threadIdx.x];
    q2[threadIdx.x] = qmap2[threadIdx.x];
    const int64_t i = blk * q8_block + threadIdx.x;
    const bool valid = i < n;
    const float a1 = absmax1[blk], a2 = absmax2[blk];
    __syncthreads();

    const float graw = valid ? g[i] : 0.0f;
    const uint8_t c1 = valid ? state1[i] : uint8_t(128);
    const uint8_t c2 = valid ? state2[i] : uint8_t(0);
    const bool finite = isfinite(graw);
    float s1 = 0.0f, s2 = 0.0f; // a NaN/Inf gradient zeroes this element's states and skips its update
    if (finite) {
        const float gv = __fmul_rn(graw, gnorm_scale);
        s2 = __fmaf_rn(__fmul_rn(c.omb2, gv), gv, __fmul_rn(__fmul_rn(q2[c2], a2), c.b2));
        s1 = __fmaf_rn(c.omb1, gv, __fmul_rn(__fmul_rn(q1[c1], a1), c.b1));
    }
    // block absmax (max is exact, so the reduction order does not matter)
    float m1 = fabsf(s1), m2 = fabsf(s2);
    for (int off = 16; off > 0; off /= 2) {
        m1 = fmaxf(m1, __shfl_xor_sync(0xffffffffu, m1, off));
        m2 = fmaxf(m2, __shfl_xor_sync(0xffffffffu, m2, off));
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        red1[warp] = m1;
        red2[warp] = m2;
    }
    __syncthreads();
    float max1 = red1[0], max2 = red2[0];
    for (int w = 1; w < q8_block / 32; ++w) {
        max1 = fmaxf(max1, red1[w]);
        max2 = fmaxf(max2, red2[w]);
    }
    if (threadIdx.x == 0) {
        absmax1[blk] = max1;
        absmax2[blk] = max2;
    }
    if (!valid) return;
    if (finite) {
        float pv = __fmaf_rn(c.step_size, __fdiv_rn(s1, __fmaf_rn(c.correction2, c.eps, __fsqrt_rn(s2))), p[i]);
        if (c.use_decay) pv = __fmul_rn(pv, c.decay);
        p[i] = pv;
    }
    // requantize against the new absmax; keep m's sign
    uint8_t n1 = quantize_2d<true>(q1, __fdiv_rn(s1, max1));
    const uint8_t n2 = quantize_2d<false>(q2, __fdiv_rn(s2, max2));
    if (signbit(q1[n1]) != signbit(s1)) {
        if (s1 > 0.0f) n1 = uint8_t(n1 + 1);
        else n1 = uint8_t(n1 - 1);
    }
    state1[i] = n1;
    state2[i] = n2;
}

__global__ void adamw_8bit_blockwise_kernel(float* p, const float* g, uint8_t* state1, uint8_t* state2, float* absmax1,
                                            float* absmax2, int64_t n, step_consts c, const float* qmap1,
                                            const float* qmap2, float gnorm_scale) {
    adamw_8bit_block(p, g, state1, state2, absmax1, absmax2, n, blockIdx.x, c, qmap1, qmap2, gnorm_scale);
}

// grid (x: 256-element blocks, up to the largest tensor's; y: tensor). Blocks past a tensor's end return at once.
__global__ void adamw_8bit_blockwise_multi_kernel(const adamw8_tensor* tensors, step_consts c, const float* qmap1,
                                                  const float* qmap2, float gnorm_scale) {
    const adamw8_tensor t = tensors[blockIdx.y];
    const int64_t blk = blockIdx.x;
    if (blk * q8_block >= t.n) return; // uniform over the block: before any barrier
    adamw_8bit_block(t.p, t.g, t.state1, t.state2, t.absmax1, t.absmax2, t.n, blk, c, qmap1, qmap2, gnorm_scale);
}

// ----------------------------------------------------------------------------
// kernel launchers

void adamw_update_32bit_multi(const adamw_tensor* tensors, int num_tensors, int64_t max_n, int64_t step, float lr,
                              const adamw_config& cfg, float gnorm_scale, cudaStream_t stream) {
    if (num_tensors <= 0 || max_n <= 0) return;
    const step_consts c = make_consts(step, lr, cfg);
    // x: enough blocks for the largest tensor, capped (the loop strides); y: one row of blocks per tensor, in
    // launches of at most 65535 tensors (gridDim.y's limit).
    const int64_t want = (max_n + adamw_block - 1) / adamw_block;
    const unsigned gx = unsigned(std::min<int64_t>(want, 1024));
    for (int first = 0; first < num_tensors; first += 65535) {
        const unsigned gy = unsigned(std::min(num_tensors - first, 65535));
        adamw_32bit_multi_kernel<<<dim3(gx, gy), adamw_block, 0, stream>>>(tensors + first, c, gnorm_scale);
        QLS_CUDA_CHECK(cudaGetLastError());
    }
}

void adamw_update_8bit_blockwise(float* p, const float* g, uint8_t* state1, uint8_t* state2, float* absmax1,
                                 float* absmax2, int64_t n, int64_t step, float lr, const adamw_config& cfg,
                                 const float* qmap1, const float* qmap2, float gnorm_scale, cudaStream_t stream) {
    if (n <= 0) return;
    const step_consts c = make_consts(step, lr, cfg);
    const int64_t blocks = (n + q8_block - 1) / q8_block;
    adamw_8bit_blockwise_kernel<<<unsigned(blocks), q8_block, 0, stream>>>(p, g, state1, state2, absmax1, absmax2, n, c,
                                                                           qmap1, qmap2, gnorm_scale);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void adamw_update_8bit_blockwise_multi(const adamw8_tensor* tensors, int num_tensors, int64_t max_n, int64_t step,
                                       float lr, const adamw_config& cfg, const float* qmap1, const float* qmap2,
                                       float gnorm_scale, cudaStream_t stream) {
    if (num_tensors <= 0 || max_n <= 0) return;
    const step_consts c = make_consts(step, lr, cfg);
    const int64_t blocks = (max_n + q8_block - 1) / q8_block;
    if (blocks > int64_t(0x7fffffff))
        throw std::invalid_argument("adamw_update_8bit_blockwise_multi: a tensor of " + std::to_string(max_n) +
                                    " elements is too large for one launch");
    for (int first = 0; first < num_tensors; first += 65535) {
        const unsigned gy = unsigned(std::min(num_tensors - first, 65535));
        adamw_8bit_blockwise_multi_kernel<<<dim3(unsigned(blocks), gy), q8_block, 0, stream>>>(tensors + first, c,
                                                                                               qmap1, qmap2,
                                                                                               gnorm_scale);
        QLS_CUDA_CHECK(cudaGetLastError());
    }
}

} // namespace qls_kernels
