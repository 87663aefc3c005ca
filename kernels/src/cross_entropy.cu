// Fused cross-entropy forward + backward on the GPU: bf16 logits, fp32 math; matches cpu::cross_entropy_forward and
// cpu::cross_entropy_backward (dlogits written with =, see cross_entropy.h).
#include "qls_kernels/check.h"
#include "qls_kernels/cross_entropy.h"

#include <cfloat>

namespace qls_kernels {

namespace {

constexpr int ce_block = 512;

// Merges the running (max, sum of exp(x - max)) pair (m, s) with (mo, so). -FLT_MAX (not -inf) marks "no element
// yet", so that expf(m - max) is expf(0) * 0 or expf(-huge) = 0, never expf(-inf + inf) = NaN.
__device__ __forceinline__ void online_merge(float& m, float& s, float mo, float so) {
    const float mx = fmaxf(m, mo);
    s = s * expf(m - mx) + so * expf(mo - mx);
    m = mx;
}

} // namespace

// ----------------------------------------------------------------------------
// CUDA kernels

// One block per row. Pass 1: each thread keeps an online (max, sum) over a strided slice; warp then block
// reduction of the pairs. Pass 2: p = exp(x - max) / sum, dlogits = dloss * (p - [i == y]) as bf16.
// logits[n, y] is read before the block barrier, so dlogits may alias logits.
__global__ void cross_entropy_kernel(float* losses, __nv_bfloat16* dlogits, const __nv_bfloat16* logits,
                                     const int* targets, int V, float dloss) {
    __shared__ float sh_m[ce_block / 32];
    __shared__ float sh_s[ce_block / 32];
    __shared__ float sh_zy;
    const int row = blockIdx.x;
    const int y = targets[row];
    const __nv_bfloat16* z = logits + (size_t)row * V;
    __nv_bfloat16* dz = dlogits ? dlogits + (size_t)row * V : nullptr;
    if (y < 0) { // ignored row (-1): loss 0, gradient row 0
        if (threadIdx.x == 0 && losses) losses[row] = 0.0f;
        if (dz)
            for (int i = threadIdx.x; i < V; i += blockDim.x) dz[i] = __float2bfloat16(0.0f);
        return;
    }
    if (threadIdx.x == 0) sh_zy = __bfloat162float(z[y]);

    float m = -FLT_MAX, s = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float x = __bfloat162float(z[i]);
        if (x > m) {
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    for (int off = 16; off > 0; off /= 2) {
        const float mo = __shfl_xor_sync(0xffffffffu, m, off);
        const float so = __shfl_xor_sync(0xffffffffu, s, off);
        online_merge(m, s, mo, so);
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
    if (lane == 0) {
        sh_m[warp] = m;
        sh_s[warp] = s;
    }
    __syncthreads(); // also orders the read of z[y] (sh_zy) before any write of dz
    m = lane < nwarps ? sh_m[lane] : -FLT_MAX;
    s = lane < nwarps ? sh_s[lane] : 0.0f;
    for (int off = 16; off > 0; off /= 2) {
        const float mo = __shfl_xor_sync(0xffffffffu, m, off);
        const float so = __shfl_xor_sync(0xffffffffu, s, off);
        online_merge(m, s, mo, so);
    }
    // every warp now holds the row's (max, sum)
    if (threadIdx.x == 0 && losses) losses[row] = m + logf(s) - sh_zy;
    if (!dz) return;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float p = expf(__bfloat162float(z[i]) - m) / s;
        dz[i] = __float2bfloat16(dloss * (p - (i == y ? 1.0f : 0.0f)));
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

void cross_entropy_forward_backward(float* losses, __nv_bfloat16* dlogits, const __nv_bfloat16* logits,
                                    const int* targets, int N, int V, float dloss, cudaStream_t stream) {
    if (N <= 0 || V <= 0) return;
    cross_entropy_kernel<<<N, ce_block, 0, stream>>>(losses, dlogits, logits, targets, V, dloss);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
