// Embedding forward on the GPU: row gather of bf16 wte rows; matches cpu::embedding_forward bit for bit.
#include "qls_kernels/check.h"
#include "qls_kernels/embedding.h"

#include <cstdint>

namespace qls_kernels {

// ----------------------------------------------------------------------------
// CUDA kernels

// One thread per output element (grid-stride): out (N, C), tokens (N), wte (V, C).
__global__ void embedding_forward_kernel(__nv_bfloat16* out, const int* tokens, const __nv_bfloat16* wte, int N,
                                         int C) {
    const int64_t total = (int64_t)N * C;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int64_t n = idx / C;
        const int64_t c = idx % C;
        out[idx] = wte[(int64_t)tokens[n] * C + c];
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

void embedding_forward(__nv_bfloat16* out, const int* tokens, const __nv_bfloat16* wte, int N, int C,
                       cudaStream_t stream) {
    const int64_t total = (int64_t)N * C;
    if (total <= 0) return;
    const int block = 256;
    int64_t grid = (total + block - 1) / block;
    if (grid > 65536) grid = 65536;
    embedding_forward_kernel<<<(unsigned)grid, block, 0, stream>>>(out, tokens, wte, N, C);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
