// SwiGLU forward/backward on the GPU: bf16 in/out, fp32 math; matches cpu::swiglu_forward / cpu::swiglu_backward
// (the backward writes its gradients, see swiglu.h).
#include "qls_kernels/check.h"
#include "qls_kernels/swiglu.h"

namespace qls_kernels {

// ----------------------------------------------------------------------------
// CUDA kernels

// sigmoid in fp32 with expf (not __expf): for x -> -inf, expf(-x) -> inf and the result -> 0, as on the CPU.
__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// One thread per element, grid-stride loop. gate, up, out (n).
__global__ void swiglu_forward_kernel(__nv_bfloat16* out, const __nv_bfloat16* gate, const __nv_bfloat16* up,
                                      int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = __bfloat162float(gate[i]);
        out[i] = __float2bfloat16(g * sigmoidf_(g) * __bfloat162float(up[i]));
    }
}

// One thread per element, grid-stride loop. dout, gate, up, dgate, dup (n); dgate/dup written (=), may be nullptr.
__global__ void swiglu_backward_kernel(__nv_bfloat16* dgate, __nv_bfloat16* dup, const __nv_bfloat16* dout,
                                       const __nv_bfloat16* gate, const __nv_bfloat16* up, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = __bfloat162float(gate[i]);
        const float s = sigmoidf_(g);
        const float d = __bfloat162float(dout[i]);
        if (dgate) dgate[i] = __float2bfloat16(d * __bfloat162float(up[i]) * s * (1.0f + g * (1.0f - s)));
        if (dup) dup[i] = __float2bfloat16(d * g * s);
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

namespace {

// Enough blocks to fill the GPU, capped; the kernels loop over the rest.
unsigned elementwise_grid(int64_t n, int block) {
    const int64_t blocks = (n + block - 1) / block;
    return (unsigned)(blocks < 65536 ? blocks : 65536);
}

} // namespace

void swiglu_forward(__nv_bfloat16* out, const __nv_bfloat16* gate, const __nv_bfloat16* up, int64_t n,
                    cudaStream_t stream) {
    if (n <= 0) return;
    const int block = 256;
    swiglu_forward_kernel<<<elementwise_grid(n, block), block, 0, stream>>>(out, gate, up, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void swiglu_backward(__nv_bfloat16* dgate, __nv_bfloat16* dup, const __nv_bfloat16* dout, const __nv_bfloat16* gate,
                     const __nv_bfloat16* up, int64_t n, cudaStream_t stream) {
    if (n <= 0 || (!dgate && !dup)) return;
    const int block = 256;
    swiglu_backward_kernel<<<elementwise_grid(n, block), block, 0, stream>>>(dgate, dup, dout, gate, up, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
