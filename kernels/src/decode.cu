// Single-stream decoding kernels (batch 1): the fused NF4 GEMV, bf16/fp32 GEMVs, and the per-token LLaMA ops with
// fp32 activations. Position and token come from a device decode_state, so a whole step can be a CUDA graph.
#include "qls_kernels/check.h"
#include "qls_kernels/decode.h"
#include "qls_kernels/nf4_codebook.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace qls_kernels {

namespace {

constexpr int k_gemv_warps = 8; // rows per 256-thread block

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
    return v;
}

// Block-wide reductions over blockDim.x (a multiple of 32, at most 1024); `red` holds 32 values of shared memory.
// Every thread gets the result.
__device__ float block_sum(float v, float* red) {
    v = warp_sum(v);
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}
__device__ double block_sum_d(double v, double* red) {
    v = warp_sum_d(v);
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0;
    return warp_sum_d(v);
}
__device__ float block_max(float v, float* red) {
    v = warp_max(v);
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

// The block absmax of NF4 block b, rebuilt as bnb's dequantize_4bit does: map[code] * scale, then + offset (never
// an FMA).
__device__ __forceinline__ float nf4_block_absmax(const uint8_t* codes, const float* scale, const float* map,
                                                  float offset, int64_t b, int nested_blocksize) {
    return __fadd_rn(__fmul_rn(map[codes[b]], scale[b / nested_blocksize]), offset);
}

// ---- NF4 GEMV -------------------------------------------------------------------------------------------------------

// Fast path: blocks of 64, nested blocks of 256, cols % 64 == 0. Lane c of the row's warp reads chunk c (32 codes in
// one 16-byte load, half an NF4 block, so one absmax) and the 32 matching x values in eight float4 loads.
__global__ void nf4_gemv_vec_kernel(float* __restrict__ y, const float* __restrict__ x,
                                    const uint4* __restrict__ packed, const uint8_t* __restrict__ codes,
                                    const float* __restrict__ scale, const float* __restrict__ map, float offset,
                                    int rows, int cols, bool accumulate) {
    __shared__ float lut[16];
    if (threadIdx.x < 16) lut[threadIdx.x] = nf4_decode(threadIdx.x);
    __syncthreads();
    const int row = blockIdx.x * k_gemv_warps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int chunks = cols / 32;
    const int64_t e0 = (int64_t)row * cols;
    const uint4* prow = packed + e0 / 32;
    float acc = 0.0f;
    // unrolled so that a lane has several 16-byte loads in flight (a 4096-wide row is 4 chunks per lane)
#pragma unroll 4
    for (int c = lane; c < chunks; c += 32) {
        const int64_t b = (e0 + (int64_t)c * 32) >> 6;
        const float am = __fadd_rn(__fmul_rn(map[codes[b]], scale[b >> 8]), offset);
        const uint4 w = prow[c];
        const float4* xv = reinterpret_cast<const float4*>(x + (int64_t)c * 32);
        const unsigned words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const float4 xa = xv[2 * k], xb = xv[2 * k + 1];
            const float xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const unsigned byte = (words[k] >> (8 * j)) & 0xFFu;
                acc = fmaf(__fmul_rn(lut[byte >> 4], am), xs[2 * j], acc);
                acc = fmaf(__fmul_rn(lut[byte & 0x0Fu], am), xs[2 * j + 1], acc);
            }
        }
    }
    acc = warp_sum(acc);
    if (lane == 0) y[row] = accumulate ? y[row] + acc : acc;
}

// General path: any blocksize, nested blocksize and cols (rows may start mid-block or mid-byte).
__global__ void nf4_gemv_kernel(float* __restrict__ y, const float* __restrict__ x, const uint8_t* __restrict__ packed,
                                const uint8_t* __restrict__ codes, const float* __restrict__ scale,
                                const float* __restrict__ map, float offset, int rows, int cols, int bs, int nbs,
                                bool accumulate) {
    __shared__ float lut[16];
    if (threadIdx.x < 16) lut[threadIdx.x] = nf4_decode(threadIdx.x);
    __syncthreads();
    const int row = blockIdx.x * k_gemv_warps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int64_t e0 = (int64_t)row * cols;
    float acc = 0.0f;
    for (int j = lane; j < cols; j += 32) {
        const int64_t i = e0 + j;
        const float am = nf4_block_absmax(codes, scale, map, offset, i / bs, nbs);
        const unsigned byte = packed[i >> 1];
        const unsigned q = (i & 1) ? (byte & 0x0Fu) : (byte >> 4);
        acc = fmaf(__fmul_rn(lut[q], am), x[j], acc);
    }
    acc = warp_sum(acc);
    if (lane == 0) y[row] = accumulate ? y[row] + acc : acc;
}

// ---- bf16 and fp32 GEMVs --------------------------------------------------------------------------------------------

__global__ void bf16_gemv_vec_kernel(float* __restrict__ y, const float* __restrict__ x, const uint4* __restrict__ W,
                                     int rows, int cols) {
    const int row = blockIdx.x * k_gemv_warps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int chunks = cols / 8;
    const uint4* wrow = W + (int64_t)row * chunks;
    float acc = 0.0f;
#pragma unroll 4
    for (int c = lane; c < chunks; c += 32) {
        const uint4 w = wrow[c];
        const float4* xv = reinterpret_cast<const float4*>(x + (int64_t)c * 8);
        const float4 xa = xv[0], xb = xv[1];
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&w);
        const float2 w0 = __bfloat1622float2(h[0]), w1 = __bfloat1622float2(h[1]), w2 = __bfloat1622float2(h[2]),
                     w3 = __bfloat1622float2(h[3]);
        acc = fmaf(w0.x, xa.x, acc);
        acc = fmaf(w0.y, xa.y, acc);
        acc = fmaf(w1.x, xa.z, acc);
        acc = fmaf(w1.y, xa.w, acc);
        acc = fmaf(w2.x, xb.x, acc);
        acc = fmaf(w2.y, xb.y, acc);
        acc = fmaf(w3.x, xb.z, acc);
        acc = fmaf(w3.y, xb.w, acc);
    }
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc;
}

__global__ void bf16_gemv_kernel(float* __restrict__ y, const float* __restrict__ x,
                                 const __nv_bfloat16* __restrict__ W, int rows, int cols) {
    const int row = blockIdx.x * k_gemv_warps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const __nv_bfloat16* wrow = W + (int64_t)row * cols;
    float acc = 0.0f;
    for (int j = lane; j < cols; j += 32) acc = fmaf(__bfloat162float(wrow[j]), x[j], acc);
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc;
}

__global__ void f32_gemv_kernel(float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ W,
                                int rows, int cols, float alpha, bool accumulate) {
    const int row = blockIdx.x * k_gemv_warps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* wrow = W + (int64_t)row * cols;
    float acc = 0.0f;
    for (int j = lane; j < cols; j += 32) acc = fmaf(wrow[j], x[j], acc);
    acc = warp_sum(acc);
    if (lane == 0) {
        const float v = alpha * acc;
        y[row] = accumulate ? y[row] + v : v;
    }
}

// ---- per-token ops --------------------------------------------------------------------------------------------------

__global__ void decode_embedding_kernel(float* x, const __nv_bfloat16* table, const decode_state* state, int C) {
    const int64_t row = (int64_t)state->token * C;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < C; i += gridDim.x * blockDim.x)
        x[i] = __bfloat162float(table[row + i]);
}

// The CPU op's arithmetic: sum of squares in double, r = 1 / sqrt(ss / C + eps) in double, out = x * r * w rounded
// once (separate double multiplies, never fused, so only the summation order differs from the CPU).
// One block per row (blockIdx.x; one row for decode_rmsnorm): out, x (rows, C), w (C).
__global__ void decode_rmsnorm_kernel(float* out, const float* x, const float* w, int C, float eps) {
    __shared__ double red[32];
    x += (int64_t)blockIdx.x * C;
    out += (int64_t)blockIdx.x * C;
    double ss = 0.0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss = __fma_rn((double)x[i], (double)x[i], ss);
    ss = block_sum_d(ss, red);
    const double r = 1.0 / sqrt(ss / C + (double)eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        out[i] = (float)__dmul_rn(__dmul_rn((double)x[i], r), (double)w[i]);
}

// Threads [0, NH*half): query pairs; [NH*half, (NH+NKV)*half): key pairs, also written to the cache; then NKV*HS
// value copies. cos/sin in double of the fp32 angle, and the rotation in double, as cpu::rope_forward.
__global__ void decode_rope_store_kernel(float* q, float* k, const float* v, float* k_cache, float* v_cache,
                                         const float* inv_freq, const decode_state* state, int NH, int NKV, int HS) {
    const int half = HS / 2;
    const int pos = state->pos;
    const int KV = NKV * HS;
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const int nq = NH * half, nk = NKV * half;
    if (t < nq + nk) {
        const bool is_q = t < nq;
        const int u = is_q ? t : t - nq;
        const int h = u / half, i = u % half;
        float* xh = (is_q ? q : k) + h * HS;
        const float angle = __fmul_rn((float)pos, inv_freq[i]);
        const double c = cos((double)angle), s = sin((double)angle);
        const double x1 = xh[i], x2 = xh[i + half];
        const float a = (float)__dsub_rn(__dmul_rn(x1, c), __dmul_rn(x2, s));
        const float b = (float)__dadd_rn(__dmul_rn(x2, c), __dmul_rn(x1, s));
        xh[i] = a;
        xh[i + half] = b;
        if (!is_q) {
            float* row = k_cache + (int64_t)pos * KV + h * HS;
            row[i] = a;
            row[i + half] = b;
        }
    } else if (t < nq + nk + KV) {
        const int j = t - nq - nk;
        v_cache[(int64_t)pos * KV + j] = v[j];
    }
}

// One block per query head. Shared memory: q (HS), partial sums (G * HS), G = max(1, blockDim / HS) groups of
// positions for the weighted sum of V.
__global__ void decode_attention_kernel(float* out, float* scores, const float* q, const float* k_cache,
                                        const float* v_cache, const decode_state* state, int NH, int NKV, int HS,
                                        int max_pos, float scale, int window) {
    extern __shared__ float smem[];
    __shared__ float red[32];
    const int h = blockIdx.x;
    const int kvh = h / (NH / NKV);
    const int KV = NKV * HS;
    const int npos = state->pos + 1;
    const int j0 = window > 0 && state->pos - window + 1 > 0 ? state->pos - window + 1 : 0; // first row seen
    const int G = blockDim.x >= HS ? blockDim.x / HS : 1;
    float* qs = smem;
    float* partial = smem + HS;
    float* sc = scores + (int64_t)h * max_pos;
    for (int i = threadIdx.x; i < HS; i += blockDim.x) qs[i] = q[h * HS + i];
    __syncthreads();
    float m = -INFINITY;
    for (int j = j0 + threadIdx.x; j < npos; j += blockDim.x) {
        const float* kj = k_cache + (int64_t)j * KV + kvh * HS;
        float d = 0.0f;
        for (int i = 0; i < HS; ++i) d = fmaf(qs[i], kj[i], d);
        const float s = d * scale;
        sc[j] = s;
        m = fmaxf(m, s);
    }
    m = block_max(m, red);
    float sum = 0.0f;
    for (int j = j0 + threadIdx.x; j < npos; j += blockDim.x) {
        const float e = expf(sc[j] - m);
        sc[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red); // its barriers also make every sc[j] visible to the whole block
    for (int idx = threadIdx.x; idx < G * HS; idx += blockDim.x) {
        const int i = idx % HS, g = idx / HS;
        float acc = 0.0f;
        for (int j = j0 + g; j < npos; j += G) acc = fmaf(sc[j], v_cache[(int64_t)j * KV + kvh * HS + i], acc);
        partial[idx] = acc;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < HS; i += blockDim.x) {
        float acc = 0.0f;
        for (int g = 0; g < G; ++g) acc += partial[g * HS + i];
        out[h * HS + i] = acc / sum;
    }
}

__global__ void decode_swiglu_kernel(float* h, const float* gate, const float* up, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const double g = gate[i];
        const double s = 1.0 / (1.0 + exp(-g));
        h[i] = (float)__dmul_rn(__dmul_rn(g, s), (double)up[i]);
    }
}

// h = gelu_tanh(gate) * up in double, as cpu::geglu_forward: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) up.
__global__ void decode_geglu_kernel(float* h, const float* gate, const float* up, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const double g = gate[i];
        const double th = tanh(0.7978845608028654 * (g + 0.044715 * g * g * g));
        h[i] = (float)(0.5 * g * (1.0 + th) * (double)up[i]);
    }
}

__global__ void decode_add_kernel(float* y, const float* x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] += x[i];
}

__global__ void decode_scale_kernel(float* x, float s, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] *= s;
}

unsigned gemv_grid(int rows) { return unsigned((rows + k_gemv_warps - 1) / k_gemv_warps); }

} // namespace

// ----------------------------------------------------------------------------
// launchers

void nf4_gemv(float* y, const float* x, const uint8_t* packed, const uint8_t* absmax_codes, const float* absmax_scale,
              float offset, const float* nested_map, int rows, int cols, int blocksize, int nested_blocksize,
              bool accumulate, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    if (blocksize <= 0 || nested_blocksize <= 0) throw std::invalid_argument("nf4_gemv: block sizes must be positive");
    const bool vec = blocksize == 64 && nested_blocksize == 256 && cols % 64 == 0 &&
                     reinterpret_cast<uintptr_t>(packed) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
    if (vec)
        nf4_gemv_vec_kernel<<<gemv_grid(rows), 32 * k_gemv_warps, 0, stream>>>(y, x,
                                                                               reinterpret_cast<const uint4*>(packed),
                                                                               absmax_codes, absmax_scale, nested_map,
                                                                               offset, rows, cols, accumulate);
    else
        nf4_gemv_kernel<<<gemv_grid(rows), 32 * k_gemv_warps, 0, stream>>>(y, x, packed, absmax_codes, absmax_scale,
                                                                           nested_map, offset, rows, cols, blocksize,
                                                                           nested_blocksize, accumulate);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void bf16_gemv(float* y, const float* x, const __nv_bfloat16* W, int rows, int cols, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    if (cols % 8 == 0 && reinterpret_cast<uintptr_t>(W) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0)
        bf16_gemv_vec_kernel<<<gemv_grid(rows), 32 * k_gemv_warps, 0, stream>>>(y, x, reinterpret_cast<const uint4*>(W),
                                                                                rows, cols);
    else bf16_gemv_kernel<<<gemv_grid(rows), 32 * k_gemv_warps, 0, stream>>>(y, x, W, rows, cols);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void f32_gemv(float* y, const float* x, const float* W, int rows, int cols, float alpha, bool accumulate,
              cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    f32_gemv_kernel<<<gemv_grid(rows), 32 * k_gemv_warps, 0, stream>>>(y, x, W, rows, cols, alpha, accumulate);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void decode_embedding(float* x, const __nv_bfloat16* table, const decode_state* state, int C, cudaStream_t stream) {
    decode_embedding_kernel<<<unsigned((C + 255) / 256), 256, 0, stream>>>(x, table, state, C);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void decode_rmsnorm(float* out, const float* x, const float* weight, int C, float eps, cudaStream_t stream) {
    decode_rmsnorm_kernel<<<1, 1024, 0, stream>>>(out, x, weight, C, eps);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void decode_rmsnorm_rows(float* out, const float* x, const float* weight, int rows, int C, float eps,
                         cudaStream_t stream) {
    if (rows <= 0) return;
    decode_rmsnorm_kernel<<<unsigned(rows), 1024, 0, stream>>>(out, x, weight, C, eps);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void decode_rope_store(float* q, float* k, const float* v, float* k_cache, float* v_cache, const float* inv_freq,
                       const decode_state* state, int NH, int NKV, int HS, cudaStream_t stream) {
    if (HS % 2 != 0) throw std::invalid_argument("decode_rope_store: head size must be even");
    const int total = (NH + NKV) * (HS / 2) + NKV * HS;
    decode_rope_store_kernel<<<unsigned((total + 255) / 256), 256, 0, stream>>>(q, k, v, k_cache, v_cache, inv_freq,
                                                                                state, NH, NKV, HS);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void decode_attention(float* out, float* scores, const float* q, const float* k_cache, const float* v_cache,
                      const decode_state* state, int NH, int NKV, int HS, int max_pos, cudaStream_t stream, int window,
                      float scale_in) {
    if (NKV <= 0 || NH % NKV != 0) throw std::invalid_argument("decode_attention: NKV must divide NH");
    const int threads = 256;
    const int G = threads >= HS ? threads / HS : 1;
    const size_t smem = size_t(HS + G * HS) * sizeof(float);
    if (smem > 48 * 1024) throw std::invalid_argument("decode_attention: head size too large");
    const float scale = scale_in > 0.0f ? scale_in : float(1.0 / std::sqrt(double(HS)));
    decode_attention_kernel<<<unsigned(NH), threads, smem, stream>>>(out, scores, q, k_cache, v_cache, state, NH, NKV,
                                                                     HS, max_pos, scale, window);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void decode_swiglu(float* h, const float* gate, const float* up, int n, cudaStream_t stream) {
    if (n <= 0) return;
    decode_swiglu_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(h, gate, up, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void decode_geglu(float* h, const float* gate, const float* up, int n, cudaStream_t stream) {
    if (n <= 0) return;
    decode_geglu_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(h, gate, up, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void decode_add(float* y, const float* x, int n, cudaStream_t stream) {
    if (n <= 0) return;
    decode_add_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(y, x, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}

void decode_scale(float* x, float s, int n, cudaStream_t stream) {
    if (n <= 0) return;
    decode_scale_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(x, s, n);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace qls_kernels
