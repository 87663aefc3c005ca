// Elementwise and reduction kernels of the CUDA training step (see elementwise.h for shapes and semantics).
#include "qls_kernels/check.h"
#include "qls_kernels/dropout_hash.h"
#include "qls_kernels/elementwise.h"

#include <cmath>

namespace qls_kernels {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kBlock = 256;
constexpr int kPartials = 1024; // blocks of the first sum-of-squares pass

int grid_for(int64_t n) {
    const int64_t g = (n + kBlock - 1) / kBlock;
    return (int)(g < 65535 * 16 ? g : 65535 * 16);
}

__global__ void cast_f32_to_bf16_kernel(bf16* out, const float* in, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16(in[i]);
}
__global__ void cast_bf16_to_f32_kernel(float* out, const bf16* in, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __bfloat162float(in[i]);
}
__global__ void add_inplace_bf16_kernel(bf16* y, const bf16* x, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16(__bfloat162float(y[i]) + __bfloat162float(x[i]));
}
__global__ void add_bf16_to_f32_kernel(float* y, const bf16* x, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += __bfloat162float(x[i]);
}

__global__ void lora_dropout_kernel(bf16* out, float* out_f32, const bf16* in, int64_t n, uint64_t seed, int layer,
                                    int target, float p, float keep_scale, bool accumulate) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float x = dropout_keep(seed, layer, target, (uint64_t)i, p) ? __bfloat162float(in[i]) * keep_scale : 0.0f;
        if (out_f32) out_f32[i] = accumulate ? out_f32[i] + x : x;
        else out[i] = __float2bfloat16(accumulate ? __bfloat162float(out[i]) + x : x);
    }
}

__global__ void rmsnorm_backward_accumulate_kernel(float* dres, const float* dout, const bf16* inp, const bf16* weight,
                                                   const float* rstd, int N, int C) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= N) return;
    const bf16* x = inp + (size_t)row * C;
    const float* dy = dout + (size_t)row * C;
    float dot = 0.0f;
    for (int i = lane; i < C; i += 32) dot += dy[i] * __bfloat162float(weight[i]) * __bfloat162float(x[i]);
    for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    const float r = rstd[row];
    const float k = r * r * r * dot / (float)C;
    float* dx = dres + (size_t)row * C;
    for (int i = lane; i < C; i += 32) dx[i] += r * __bfloat162float(weight[i]) * dy[i] - k * __bfloat162float(x[i]);
}

// Block b sums x over its contiguous slice [b*chunk, min((b+1)*chunk, n)) in a fixed thread/tree order.
__global__ void sum_squares_partial_kernel(float* partial, const float* x, int64_t n, int64_t chunk) {
    __shared__ float red[kBlock];
    const int64_t begin = blockIdx.x * chunk;
    const int64_t end = begin + chunk < n ? begin + chunk : n;
    float s = 0.0f;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) s += x[i] * x[i];
    red[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = red[0];
}

// One block: sum of x (n) in double over a fixed order, rounded to fp32 in out[0].
__global__ void sum_fixed_order_kernel(float* out, const float* x, int n) {
    __shared__ double red[kBlock];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += (double)x[i];
    red[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = (float)red[0];
}

__device__ __forceinline__ uint64_t hash2(uint64_t seed, uint64_t i) { return splitmix64(seed ^ splitmix64(i)); }

__global__ void fill_random_bytes_kernel(uint8_t* out, int64_t n, uint64_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = (uint8_t)(hash2(seed, (uint64_t)i) >> 56);
}
__global__ void fill_random_normal_bf16_kernel(bf16* out, int64_t n, uint64_t seed, float stddev) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const uint64_t h = hash2(seed, (uint64_t)i);
        // Box-Muller on two 24-bit uniforms (u1 in (0, 1])
        const float u1 = ((float)(h >> 40) + 1.0f) * (1.0f / 16777216.0f);
        const float u2 = (float)((h >> 8) & 0xFFFFFF) * (1.0f / 16777216.0f);
        out[i] = __float2bfloat16(stddev * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
    }
}
__global__ void fill_random_uniform_f32_kernel(float* out, int64_t n, uint64_t seed, float bound) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float u = (float)(hash2(seed, (uint64_t)i) >> 40) * (1.0f / 16777216.0f);
        out[i] = (2.0f * u - 1.0f) * bound;
    }
}
__global__ void fill_bf16_kernel(bf16* out, int64_t n, float value) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16(value);
}
__global__ void fill_f32_kernel(float* out, int64_t n, float value) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = value;
}

} // namespace

#define QLS_LAUNCH_1D(kernel, n, stream, ...)                    \
    do {                                                         \
        if ((n) <= 0) break;                                     \
        kernel<<<grid_for(n), kBlock, 0, stream>>>(__VA_ARGS__); \
        QLS_CUDA_CHECK(cudaGetLastError());                      \
    } while (0)

void cast_f32_to_bf16(bf16* out, const float* in, int64_t n, cudaStream_t s) {
    QLS_LAUNCH_1D(cast_f32_to_bf16_kernel, n, s, out, in, n);
}
void cast_bf16_to_f32(float* out, const bf16* in, int64_t n, cudaStream_t s) {
    QLS_LAUNCH_1D(cast_bf16_to_f32_kernel, n, s, out, in, n);
}
void add_inplace_bf16(bf16* y, const bf16* x, int64_t n, cudaStream_t s) {
    QLS_LAUNCH_1D(add_inplace_bf16_kernel, n, s, y, x, n);
}
void add_bf16_to_f32(float* y, const bf16* x, int64_t n, cudaStream_t s) {
    QLS_LAUNCH_1D(add_bf16_to_f32_kernel, n, s, y, x, n);
}
void lora_dropout(bf16* out, float* out_f32, const bf16* in, int64_t n, uint64_t seed, int layer, int target, float p,
                  bool accumulate, cudaStream_t s) {
    const float keep_scale = 1.0f / (1.0f - p);
    QLS_LAUNCH_1D(lora_dropout_kernel, n, s, out, out_f32, in, n, seed, layer, target, p, keep_scale, accumulate);
}
void rmsnorm_backward_accumulate(float* dres, const float* dout, const bf16* inp, const bf16* weight, const float* rstd,
                                 int N, int C, cudaStream_t s) {
    if (N <= 0) return;
    rmsnorm_backward_accumulate_kernel<<<(N + 7) / 8, 256, 0, s>>>(dres, dout, inp, weight, rstd, N, C);
    QLS_CUDA_CHECK(cudaGetLastError());
}
int sum_squares_partials() { return kPartials; }
void sum_squares(float* out, float* partial, const float* x, int64_t n, cudaStream_t s) {
    const int64_t chunk = n > 0 ? (n + kPartials - 1) / kPartials : 1;
    sum_squares_partial_kernel<<<kPartials, kBlock, 0, s>>>(partial, x, n, chunk);
    QLS_CUDA_CHECK(cudaGetLastError());
    sum_fixed_order_kernel<<<1, kBlock, 0, s>>>(out, partial, kPartials);
    QLS_CUDA_CHECK(cudaGetLastError());
}
void sum_f32(float* out, const float* x, int n, cudaStream_t s) {
    sum_fixed_order_kernel<<<1, kBlock, 0, s>>>(out, x, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}
void fill_random_bytes(uint8_t* out, int64_t n, uint64_t seed, cudaStream_t s) {
    QLS_LAUNCH_1D(fill_random_bytes_kernel, n, s, out, n, seed);
}
void fill_random_normal_bf16(bf16* out, int64_t n, uint64_t seed, float stddev, cudaStream_t s) {
    QLS_LAUNCH_1D(fill_random_normal_bf16_kernel, n, s, out, n, seed, stddev);
}
void fill_random_uniform_f32(float* out, int64_t n, uint64_t seed, float bound, cudaStream_t s) {
    QLS_LAUNCH_1D(fill_random_uniform_f32_kernel, n, s, out, n, seed, bound);
}
void fill_bf16(bf16* out, int64_t n, float value, cudaStream_t s) {
    QLS_LAUNCH_1D(fill_bf16_kernel, n, s, out, n, value);
}
void fill_f32(float* out, int64_t n, float value, cudaStream_t s) {
    QLS_LAUNCH_1D(fill_f32_kernel, n, s, out, n, value);
}

} // namespace qls_kernels
