// FlashAttention-2-class attention forward/backward: mma.sync m16n8k16 bf16→f32 (inline PTX), ldmatrix from XOR-swizzled
// shared memory, cp.async double-buffered tiles, register-resident accumulators (see attention_fa2.h).
#include "qls_kernels/attention.h"
#include "qls_kernels/attention_fa2.h"
#include "qls_kernels/check.h"
#include "qls_kernels/fa2_layout.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "attention_fa2.cu needs sm_80 or newer (mma.sync bf16, cp.async)"
#endif

namespace qls_kernels {

namespace {

using bf16 = __nv_bfloat16;

constexpr int TILE = 64;      // query rows per block tile and key rows per key tile
constexpr int NTHREADS = 128; // 4 warps; warp w owns rows [16w, 16w + 16) of the block's own tile
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

// ---- fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type") -------------------
// lane = 4·g + t (g = lane / 4 "groupID", t = lane % 4 "threadID_in_group"); bf16 pairs packed low element first.
//   A 16×16 (row): a[0] = (g, 2t..2t+1)  a[1] = (g+8, 2t..2t+1)  a[2] = (g, 2t+8..2t+9)  a[3] = (g+8, 2t+8..2t+9)
//   B 16×8 (col):  b[0] = (k 2t..2t+1, n g)                     b[1] = (k 2t+8..2t+9, n g)
//   C/D 16×8 f32:  c[0], c[1] = (g, 2t), (g, 2t+1)              c[2], c[3] = (g+8, 2t), (g+8, 2t+1)
// So the C fragments of two neighbouring n8 tiles (columns 16j..16j+15) are, packed to bf16, exactly the A fragment of
// the 16×16 k-block j of the next product (FlashAttention-2's P never leaves registers):
//   a[0] = C(2j)[0,1]  a[1] = C(2j)[2,3]  a[2] = C(2j+1)[0,1]  a[3] = C(2j+1)[2,3].
// ldmatrix.m8n8.x4: lanes 8i..8i+7 give the row addresses of 8×8 matrix i; register i of lane (4g + t) receives
// row g, columns 2t..2t+1 of matrix i (with .trans: row 2t..2t+1, column g, i.e. the transposed matrix).

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// 16-byte global→shared copy; src_bytes 0 fills the 16 bytes with zeros (rows past the sequence end).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); // .x (low 16 bits) = lo
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

// A tile is [64 rows][D] bf16 in shared memory, rows of D/8 16-byte chunks, XOR-swizzled (fa2::swz).
template <int D> __device__ __forceinline__ int swz(int row, int chunk) { return fa2::swz(D, row, chunk); }

// Rows [r0, r0 + 64) of head h of x (B, T, H, D) into the swizzled tile dst, asynchronously; rows past T are zeros.
template <int D>
__device__ __forceinline__ void load_tile_async(bf16* dst, const bf16* x, int b, int r0, int T, int H, int h) {
    constexpr int CPR = D / 8; // chunks per row
    static_assert(TILE * CPR % NTHREADS == 0, "whole chunks per thread");
#pragma unroll
    for (int it = 0; it < TILE * CPR / NTHREADS; ++it) {
        const int i = threadIdx.x + it * NTHREADS;
        const int r = i / CPR, c = i % CPR, t = r0 + r;
        const bool in = t < T;
        const bf16* src = x + ((size_t)(b * T + (in ? t : 0)) * H + h) * D + c * 8;
        cp_async_16(dst + swz<D>(r, c), src, in ? 16 : 0);
    }
}

// s (16×64, this warp's C fragments, n8 tile nt = columns 8nt..8nt+7) = A · Bᵀ with A rows [a_row0, a_row0 + 16) of the
// swizzled tile a_tile and B the 64 rows of b_tile (both [64][D]): S = Q Kᵀ, dP = dO Vᵀ, Sᵀ = K Qᵀ, dPᵀ = V dOᵀ.
// A by ldmatrix x4: lane l addresses row (l % 16), chunk 2kk + l / 16 -> matrices (rows 0-7, k 0-7), (rows 8-15,
// k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a[0..3]. B = b_tileᵀ (B[k][n] = b_tile[n][k]), no .trans: lane l
// addresses row 16j + l % 8 + 8 (l / 16), chunk 2kk + (l / 8) % 2 -> (n 0-7, k 0-7) = b[0] and (n 0-7, k 8-15) = b[1]
// of tile 2j, (n 8-15, k 0-7), (n 8-15, k 8-15) = b[0], b[1] of tile 2j + 1.
template <int D>
__device__ __forceinline__ void warp_abt(float (&s)[8][4], const bf16* a_tile, int a_row0, const bf16* b_tile) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t a[4];
        ldsm_x4(a, a_tile + swz<D>(a_row0 + fa2::a_row(lane), 2 * kk + fa2::a_chunk(lane)));
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            uint32_t bb[4];
            ldsm_x4(bb, b_tile + swz<D>(16 * j + fa2::bt_row(lane), 2 * kk + fa2::bt_chunk(lane)));
            mma16816(s[2 * j], a, bb[0], bb[1]);
            mma16816(s[2 * j + 1], a, bb[2], bb[3]);
        }
    }
}

// acc (16×D, n8 tile dt = columns 8dt..8dt+7) += P (16×64 as four A fragments, k-block j = columns 16j..16j+15) · X,
// X the 64 rows of the swizzled tile x ([64][D], row = k): O += P V, dV += Pᵀ dO, dK += dSᵀ Q, dQ += dS K.
// X by ldmatrix x4 .trans: lane l addresses row 16j + l % 16, chunk 2c + l / 16 -> (k 0-7, n 0-7) = b[0] and
// (k 8-15, n 0-7) = b[1] of tile 2c, (k 0-7, n 8-15), (k 8-15, n 8-15) = b[0], b[1] of tile 2c + 1.
template <int D>
__device__ __forceinline__ void warp_pv(float (&acc)[D / 8][4], const uint32_t (&p)[4][4], const bf16* x) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int c = 0; c < D / 16; ++c) {
            uint32_t bb[4];
            ldsm_x4_trans(bb, x + swz<D>(16 * j + fa2::a_row(lane), 2 * c + fa2::a_chunk(lane)));
            mma16816(acc[2 * c], p[j], bb[0], bb[1]);
            mma16816(acc[2 * c + 1], p[j], bb[2], bb[3]);
        }
    }
}

// C fragments of a 16×64 product -> the four bf16 A fragments of the next product (layout above).
__device__ __forceinline__ void pack_a(uint32_t (&p)[4][4], const float (&s)[8][4]) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        p[j][0] = pack_bf16(s[2 * j][0], s[2 * j][1]);
        p[j][1] = pack_bf16(s[2 * j][2], s[2 * j][3]);
        p[j][2] = pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]);
        p[j][3] = pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3]);
    }
}

// Query tq attends key tk (cpu::attention_forward): causal, both inside the sequence, same packed segment, and inside
// the sliding window (window > 0 hides tk <= tq - window).
__device__ __forceinline__ bool attend(int tq, int tk, int T, const int* seg_row, int window) {
    return tk <= tq && tq < T && (seg_row == nullptr || seg_row[tk] == seg_row[tq]) &&
           (window <= 0 || tk > tq - window);
}

// The first key tile any query of [q0, q0 + 64) attends (window > 0 hides keys <= tq - window).
__device__ __forceinline__ int first_key_tile(int q0, int window) {
    return window > 0 ? max(0, q0 - window + 1) / TILE : 0;
}

// Whether a (64 queries from q0) × (64 keys from k0) tile needs the per-element mask: it crosses the diagonal, the
// sequence end, a window edge, or rows carry segment ids. Otherwise every pair attends.
__device__ __forceinline__ bool tile_needs_mask(int q0, int k0, int T, const int* seg_row, int window) {
    return seg_row != nullptr || window > 0 || k0 + TILE - 1 > q0 || q0 + TILE > T || k0 + TILE > T;
}

// ---- forward ----------------------------------------------------------------------------------------------------
// smem: Q [64][D], K [2][64][D], V [2][64][D] (swizzled bf16).
template <int D>
__global__ void __launch_bounds__(NTHREADS)
    fa2_forward_kernel(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int* segment, int T,
                       int NH, int NKV, float scale_log2, int window) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Qs = reinterpret_cast<bf16*>(smem);
    bf16* Ks = Qs + TILE * D; // two buffers
    bf16* Vs = Ks + 2 * TILE * D;

    // the longest (causal) query tiles first, so the short ones fill the tail of the grid
    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (NH / NKV);
    const int q0 = qt * TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int* seg_row = segment ? segment + (size_t)b * T : nullptr;
    const int tq0 = q0 + warp * 16 + g, tq1 = tq0 + 8; // this thread's two query rows

    const int kt_begin = first_key_tile(q0, window);
    const int kt_end = min(q0 + TILE - 1, T - 1) / TILE;

    load_tile_async<D>(Qs, q, b, q0, T, NH, h);
    load_tile_async<D>(Ks, k, b, kt_begin * TILE, T, NKV, kvh);
    load_tile_async<D>(Vs, v, b, kt_begin * TILE, T, NKV, kvh);
    cp_async_commit();

    float o[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY; // running max of rows tq0, tq1 (scaled scores, log2 units)
    float l0 = 0.0f, l1 = 0.0f;           // running sums over this thread's columns (reduced over the quad at the end)

    for (int kt = kt_begin; kt <= kt_end; ++kt) {
        const int buf = (kt - kt_begin) & 1;
        cp_async_wait_all();
        __syncthreads(); // tile kt landed for every thread; every warp is done with buffer buf ^ 1
        if (kt < kt_end) {
            load_tile_async<D>(Ks + (buf ^ 1) * TILE * D, k, b, (kt + 1) * TILE, T, NKV, kvh);
            load_tile_async<D>(Vs + (buf ^ 1) * TILE * D, v, b, (kt + 1) * TILE, T, NKV, kvh);
        }
        cp_async_commit();
        const bf16* Kt = Ks + buf * TILE * D;
        const bf16* Vt = Vs + buf * TILE * D;
        const int k0 = kt * TILE;

        float s[8][4];
        warp_abt<D>(s, Qs, warp * 16, Kt); // S = Q Kᵀ, rows tq0 / tq1, columns k0 + 8nt + 2t4 + {0, 1}
        const bool masked = tile_needs_mask(q0, k0, T, seg_row, window);
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int tq = e < 2 ? tq0 : tq1, tk = k0 + nt * 8 + 2 * t4 + (e & 1);
                float x = s[nt][e] * scale_log2;
                if (masked && !attend(tq, tk, T, seg_row, window)) x = -INFINITY;
                s[nt][e] = x;
            }
            mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
        // a row's 64 columns live in the 4 lanes of its quad (lanes 4g .. 4g+3)
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        // a row with every key masked so far keeps m = -inf: subtract 0 instead so exp2 gives 0, not NaN
        const float mu0 = mn0 == -INFINITY ? 0.0f : mn0, mu1 = mn1 == -INFINITY ? 0.0f : mn1;
        const float al0 = exp2f(m0 - mu0), al1 = exp2f(m1 - mu1); // online-softmax rescale (Algorithm 1, line 10)
        m0 = mn0;
        m1 = mn1;
        float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            s[nt][0] = exp2f(s[nt][0] - mu0);
            s[nt][1] = exp2f(s[nt][1] - mu0);
            s[nt][2] = exp2f(s[nt][2] - mu1);
            s[nt][3] = exp2f(s[nt][3] - mu1);
            ps0 += s[nt][0] + s[nt][1];
            ps1 += s[nt][2] + s[nt][3];
        }
        l0 = l0 * al0 + ps0;
        l1 = l1 * al1 + ps1;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
            o[dt][0] *= al0;
            o[dt][1] *= al0;
            o[dt][2] *= al1;
            o[dt][3] *= al1;
        }
        uint32_t p[4][4];
        pack_a(p, s);
        warp_pv<D>(o, p, Vt); // O += P V
    }
    cp_async_wait_all();

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    // every row inside the sequence attends at least its own key, so l > 0 there
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    if (tq0 < T) {
        __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(out + ((size_t)(b * T + tq0) * NH + h) * D);
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) dst[dt * 4 + t4] = __floats2bfloat162_rn(o[dt][0] * inv0, o[dt][1] * inv0);
        if (t4 == 0) lse[((size_t)b * NH + h) * T + tq0] = m0 * LN2 + logf(l0); // ln Σ exp(s·scale)
    }
    if (tq1 < T) {
        __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(out + ((size_t)(b * T + tq1) * NH + h) * D);
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) dst[dt * 4 + t4] = __floats2bfloat162_rn(o[dt][2] * inv1, o[dt][3] * inv1);
        if (t4 == 0) lse[((size_t)b * NH + h) * T + tq1] = m1 * LN2 + logf(l1);
    }
}

// ---- backward ---------------------------------------------------------------------------------------------------
// delta (B, NH, T) = Σ_c dout ∘ out (Algorithm 2, line 4), one warp per (b, t, h) row of D elements, 16-byte loads.
template <int D>
__global__ void fa2_delta_kernel(float* delta, const bf16* dout, const bf16* out, int B, int T, int NH) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; // (b, t, h) flattened as in out
    const int lane = threadIdx.x & 31;
    if (row >= B * T * NH) return;
    float s = 0.0f;
    for (int c = lane * 8; c < D; c += 32 * 8) {
        const uint4 a = *reinterpret_cast<const uint4*>(dout + (size_t)row * D + c);
        const uint4 o = *reinterpret_cast<const uint4*>(out + (size_t)row * D + c);
        const __nv_bfloat162* a2 = reinterpret_cast<const __nv_bfloat162*>(&a);
        const __nv_bfloat162* o2 = reinterpret_cast<const __nv_bfloat162*>(&o);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 af = __bfloat1622float2(a2[i]), of = __bfloat1622float2(o2[i]);
            s += af.x * of.x + af.y * of.y;
        }
    }
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
        const int h = row % NH, bt = row / NH, t = bt % T, b = bt / T;
        delta[((size_t)b * NH + h) * T + t] = s;
    }
}

// dQ for one (64-query tile, head, batch row): iterate the key tiles; S = Q Kᵀ, P = exp2(S·scale·log2e − lse·log2e),
// dP = dO Vᵀ, dS = P ∘ (dP − delta) · scale, dQ += dS K (Algorithm 2, lines 11-16 and 21, reordered per query tile).
// smem: Q, dO [64][D]; K, V [2][64][D].
template <int D>
__global__ void __launch_bounds__(NTHREADS)
    fa2_backward_dq_kernel(bf16* dq, const bf16* dout, const float* lse, const float* delta, const bf16* q,
                           const bf16* k, const bf16* v, const int* segment, int T, int NH, int NKV, float scale,
                           float scale_log2, int window) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Qs = reinterpret_cast<bf16*>(smem);
    bf16* dOs = Qs + TILE * D;
    bf16* Ks = dOs + TILE * D; // two buffers
    bf16* Vs = Ks + 2 * TILE * D;

    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (NH / NKV);
    const int q0 = qt * TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int* seg_row = segment ? segment + (size_t)b * T : nullptr;
    const int tq0 = q0 + warp * 16 + g, tq1 = tq0 + 8;
    const float lse0 = tq0 < T ? lse[((size_t)b * NH + h) * T + tq0] * LOG2E : 0.0f;
    const float lse1 = tq1 < T ? lse[((size_t)b * NH + h) * T + tq1] * LOG2E : 0.0f;
    const float dl0 = tq0 < T ? delta[((size_t)b * NH + h) * T + tq0] : 0.0f;
    const float dl1 = tq1 < T ? delta[((size_t)b * NH + h) * T + tq1] : 0.0f;

    const int kt_begin = first_key_tile(q0, window);
    const int kt_end = min(q0 + TILE - 1, T - 1) / TILE;

    load_tile_async<D>(Qs, q, b, q0, T, NH, h);
    load_tile_async<D>(dOs, dout, b, q0, T, NH, h);
    load_tile_async<D>(Ks, k, b, kt_begin * TILE, T, NKV, kvh);
    load_tile_async<D>(Vs, v, b, kt_begin * TILE, T, NKV, kvh);
    cp_async_commit();

    float acc[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;

    for (int kt = kt_begin; kt <= kt_end; ++kt) {
        const int buf = (kt - kt_begin) & 1;
        cp_async_wait_all();
        __syncthreads();
        if (kt < kt_end) {
            load_tile_async<D>(Ks + (buf ^ 1) * TILE * D, k, b, (kt + 1) * TILE, T, NKV, kvh);
            load_tile_async<D>(Vs + (buf ^ 1) * TILE * D, v, b, (kt + 1) * TILE, T, NKV, kvh);
        }
        cp_async_commit();
        const bf16* Kt = Ks + buf * TILE * D;
        const bf16* Vt = Vs + buf * TILE * D;
        const int k0 = kt * TILE;
        const bool masked = tile_needs_mask(q0, k0, T, seg_row, window);

        float s[8][4];
        warp_abt<D>(s, Qs, warp * 16, Kt); // S = Q Kᵀ
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int tq = e < 2 ? tq0 : tq1, tk = k0 + nt * 8 + 2 * t4 + (e & 1);
                const bool on = !masked || attend(tq, tk, T, seg_row, window);
                s[nt][e] = on ? exp2f(s[nt][e] * scale_log2 - (e < 2 ? lse0 : lse1)) : 0.0f; // P
            }
        float dp[8][4];
        warp_abt<D>(dp, dOs, warp * 16, Vt); // dP = dO Vᵀ
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[nt][e] = s[nt][e] * (dp[nt][e] - (e < 2 ? dl0 : dl1)) * scale; // dS
        uint32_t ds[4][4];
        pack_a(ds, s);
        warp_pv<D>(acc, ds, Kt); // dQ += dS K
    }
    cp_async_wait_all();

    if (tq0 < T) {
        __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(dq + ((size_t)(b * T + tq0) * NH + h) * D);
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) dst[dt * 4 + t4] = __floats2bfloat162_rn(acc[dt][0], acc[dt][1]);
    }
    if (tq1 < T) {
        __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(dq + ((size_t)(b * T + tq1) * NH + h) * D);
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) dst[dt * 4 + t4] = __floats2bfloat162_rn(acc[dt][2], acc[dt][3]);
    }
}

// dK, dV for one (64-key tile, kv head, batch row): iterate the group's query heads (fixed order) and the query tiles
// that can see the tile; Sᵀ = K Qᵀ, Pᵀ from lse, dPᵀ = V dOᵀ, dSᵀ = Pᵀ ∘ (dPᵀ − delta) · scale; dV += Pᵀ dO,
// dK += dSᵀ Q (Algorithm 2, lines 6-20). Warp w owns keys [16w, 16w + 16) of the tile: rows of its C fragments are
// keys, columns queries. smem: K, V [64][D]; Q, dO [2][64][D]; lse·log2e, delta [2][64] fp32.
template <int D>
__global__ void __launch_bounds__(NTHREADS)
    fa2_backward_dkv_kernel(bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* delta, const bf16* q,
                            const bf16* k, const bf16* v, const int* segment, int T, int NH, int NKV, float scale,
                            float scale_log2, int window) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Ks = reinterpret_cast<bf16*>(smem);
    bf16* Vs = Ks + TILE * D;
    bf16* Qs = Vs + TILE * D;                                    // two buffers
    bf16* dOs = Qs + 2 * TILE * D;                               // two buffers
    float* lse_s = reinterpret_cast<float*>(dOs + 2 * TILE * D); // [2][64]
    float* dl_s = lse_s + 2 * TILE;                              // [2][64]

    const int kt = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z; // low key tiles (most query tiles) first
    const int group = NH / NKV;
    const int k0 = kt * TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int* seg_row = segment ? segment + (size_t)b * T : nullptr;
    const int tk0 = k0 + warp * 16 + g, tk1 = tk0 + 8; // this thread's two key rows

    // query tiles that can attend a key of [k0, k0 + 64): from the diagonal to the end, or to the window's reach
    const int qt_begin = kt;
    int qt_end = (T - 1) / TILE;
    if (window > 0) qt_end = min(qt_end, (k0 + TILE - 1 + window - 1) / TILE);
    const int per_head = qt_end - qt_begin + 1;
    // iteration i: head kvh·group + i / per_head, query tile qt_begin + i % per_head
    const int n_iter = group * per_head;

    auto issue = [&](int i, int buf) {
        const int h = kvh * group + i / per_head, q0 = (qt_begin + i % per_head) * TILE;
        load_tile_async<D>(Qs + buf * TILE * D, q, b, q0, T, NH, h);
        load_tile_async<D>(dOs + buf * TILE * D, dout, b, q0, T, NH, h);
        for (int c = threadIdx.x; c < TILE; c += NTHREADS) {
            const int t = q0 + c;
            lse_s[buf * TILE + c] = t < T ? lse[((size_t)b * NH + h) * T + t] * LOG2E : 0.0f;
            dl_s[buf * TILE + c] = t < T ? delta[((size_t)b * NH + h) * T + t] : 0.0f;
        }
    };

    load_tile_async<D>(Ks, k, b, k0, T, NKV, kvh);
    load_tile_async<D>(Vs, v, b, k0, T, NKV, kvh);
    issue(0, 0);
    cp_async_commit();

    float dka[D / 8][4], dva[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) dka[dt][e] = dva[dt][e] = 0.0f;

    for (int i = 0; i < n_iter; ++i) {
        const int buf = i & 1;
        cp_async_wait_all();
        __syncthreads(); // tiles of iteration i (and lse/delta, plain stores) visible; buffer buf ^ 1 free
        if (i + 1 < n_iter) issue(i + 1, buf ^ 1);
        cp_async_commit();
        const bf16* Qt = Qs + buf * TILE * D;
        const bf16* dOt = dOs + buf * TILE * D;
        const float* ls = lse_s + buf * TILE;
        const float* ds_ = dl_s + buf * TILE;
        const int q0 = (qt_begin + i % per_head) * TILE;
        const bool masked = tile_needs_mask(q0, k0, T, seg_row, window);

        float s[8][4];
        warp_abt<D>(s, Ks, warp * 16, Qt); // Sᵀ = K Qᵀ: rows keys tk0 / tk1, columns queries q0 + 8nt + 2t4 + {0, 1}
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int c = nt * 8 + 2 * t4 + (e & 1);
                const int tk = e < 2 ? tk0 : tk1, tq = q0 + c;
                const bool on = !masked || (tk < T && attend(tq, tk, T, seg_row, window));
                s[nt][e] = on ? exp2f(s[nt][e] * scale_log2 - ls[c]) : 0.0f; // Pᵀ
            }
        uint32_t pa[4][4];
        pack_a(pa, s);
        warp_pv<D>(dva, pa, dOt); // dV += Pᵀ dO
        float dp[8][4];
        warp_abt<D>(dp, Vs, warp * 16, dOt); // dPᵀ = V dOᵀ
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int c = nt * 8 + 2 * t4 + (e & 1);
                s[nt][e] = s[nt][e] * (dp[nt][e] - ds_[c]) * scale; // dSᵀ
            }
        pack_a(pa, s);
        warp_pv<D>(dka, pa, Qt); // dK += dSᵀ Q
    }
    cp_async_wait_all();

    if (tk0 < T) {
        const size_t o = ((size_t)(b * T + tk0) * NKV + kvh) * D;
        __nv_bfloat162* dkd = reinterpret_cast<__nv_bfloat162*>(dk + o);
        __nv_bfloat162* dvd = reinterpret_cast<__nv_bfloat162*>(dv + o);
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
            dkd[dt * 4 + t4] = __floats2bfloat162_rn(dka[dt][0], dka[dt][1]);
            dvd[dt * 4 + t4] = __floats2bfloat162_rn(dva[dt][0], dva[dt][1]);
        }
    }
    if (tk1 < T) {
        const size_t o = ((size_t)(b * T + tk1) * NKV + kvh) * D;
        __nv_bfloat162* dkd = reinterpret_cast<__nv_bfloat162*>(dk + o);
        __nv_bfloat162* dvd = reinterpret_cast<__nv_bfloat162*>(dv + o);
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
            dkd[dt * 4 + t4] = __floats2bfloat162_rn(dka[dt][2], dka[dt][3]);
            dvd[dt * 4 + t4] = __floats2bfloat162_rn(dva[dt][2], dva[dt][3]);
        }
    }
}

template <int D> constexpr size_t forward_smem() { return 5 * TILE * D * sizeof(bf16); }
template <int D> constexpr size_t dq_smem() { return 6 * TILE * D * sizeof(bf16); }
template <int D> constexpr size_t dkv_smem() { return 6 * TILE * D * sizeof(bf16) + 4 * TILE * sizeof(float); }
// sm_86/89/120 allow 99 KiB of dynamic shared memory per block; the largest layout must fit there too.
static_assert(dkv_smem<128>() <= 99 * 1024, "FA2 backward tiles exceed 99 KiB of shared memory");

void check_fa2_shapes(const char* what, int B, int T, int NH, int NKV, int HS) {
    if (B <= 0 || T <= 0 || NH <= 0 || NKV <= 0 || NH % NKV != 0 || !attention_fa2_supported(HS))
        throw std::invalid_argument(std::string(what) + ": unsupported shape B=" + std::to_string(B) +
                                    " T=" + std::to_string(T) + " NH=" + std::to_string(NH) +
                                    " NKV=" + std::to_string(NKV) + " HS=" + std::to_string(HS) +
                                    " (HS must be 64 or 128, NH a multiple of NKV; other head sizes use "
                                    "attention_forward)");
}

template <int D>
void forward_impl(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int* segment, int B, int T,
                  int NH, int NKV, int window, float scale, cudaStream_t stream) {
    constexpr size_t smem = forward_smem<D>();
    QLS_CUDA_CHECK(cudaFuncSetAttribute(fa2_forward_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const float scale_log2 = LOG2E * (scale > 0.0f ? scale : 1.0f / sqrtf((float)D));
    dim3 grid((T + TILE - 1) / TILE, NH, B);
    fa2_forward_kernel<D><<<grid, NTHREADS, smem, stream>>>(out, lse, q, k, v, segment, T, NH, NKV, scale_log2, window);
    QLS_CUDA_CHECK(cudaGetLastError());
}

template <int D>
void backward_impl(bf16* dq, bf16* dk, bf16* dv, float* delta, const bf16* dout, const bf16* out, const float* lse,
                   const bf16* q, const bf16* k, const bf16* v, const int* segment, int B, int T, int NH, int NKV,
                   int window, float scale_in, cudaStream_t stream) {
    const float scale = scale_in > 0.0f ? scale_in : 1.0f / sqrtf((float)D);
    const float scale_log2 = scale * LOG2E;
    const int rows = B * T * NH;
    fa2_delta_kernel<D><<<(rows + 7) / 8, 256, 0, stream>>>(delta, dout, out, B, T, NH);
    QLS_CUDA_CHECK(cudaGetLastError());
    constexpr size_t smem_q = dq_smem<D>(), smem_kv = dkv_smem<D>();
    QLS_CUDA_CHECK(cudaFuncSetAttribute(fa2_backward_dq_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem_q));
    QLS_CUDA_CHECK(cudaFuncSetAttribute(fa2_backward_dkv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem_kv));
    dim3 grid_kv((T + TILE - 1) / TILE, NKV, B);
    fa2_backward_dkv_kernel<D><<<grid_kv, NTHREADS, smem_kv, stream>>>(dk, dv, dout, lse, delta, q, k, v, segment, T,
                                                                       NH, NKV, scale, scale_log2, window);
    QLS_CUDA_CHECK(cudaGetLastError());
    dim3 grid_q((T + TILE - 1) / TILE, NH, B);
    fa2_backward_dq_kernel<D><<<grid_q, NTHREADS, smem_q, stream>>>(dq, dout, lse, delta, q, k, v, segment, T, NH, NKV,
                                                                    scale, scale_log2, window);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace

bool attention_fa2_supported(int HS) { return HS == 64 || HS == 128; }

void attention_fa2_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int* segment,
                           int B, int T, int NH, int NKV, int HS, cudaStream_t stream, int window, float scale) {
    check_fa2_shapes("attention_fa2_forward", B, T, NH, NKV, HS);
    if (HS == 64) forward_impl<64>(out, lse, q, k, v, segment, B, T, NH, NKV, window, scale, stream);
    else forward_impl<128>(out, lse, q, k, v, segment, B, T, NH, NKV, window, scale, stream);
}

void attention_fa2_backward(bf16* dq, bf16* dk, bf16* dv, float* delta, const bf16* dout, const bf16* out,
                            const float* lse, const bf16* q, const bf16* k, const bf16* v, const int* segment, int B,
                            int T, int NH, int NKV, int HS, cudaStream_t stream, int window, float scale) {
    check_fa2_shapes("attention_fa2_backward", B, T, NH, NKV, HS);
    if (HS == 64)
        backward_impl<64>(dq, dk, dv, delta, dout, out, lse, q, k, v, segment, B, T, NH, NKV, window, scale, stream);
    else backward_impl<128>(dq, dk, dv, delta, dout, out, lse, q, k, v, segment, B, T, NH, NKV, window, scale, stream);
}

attention_path attention_path_from_env() {
    static const attention_path path = [] {
        const char* s = std::getenv("QLS_ATTENTION");
        if (s == nullptr || *s == '\0' || std::strcmp(s, "fa2") == 0) return attention_path::fa2;
        if (std::strcmp(s, "wmma") == 0) return attention_path::wmma;
        throw std::invalid_argument(std::string("QLS_ATTENTION=") + s +
                                    " is not a known attention path; set it to wmma or fa2, or unset it");
    }();
    return path;
}

void attention_forward_selected(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int* segment,
                                int B, int T, int NH, int NKV, int HS, cudaStream_t stream, int window, float scale) {
    if (attention_path_from_env() == attention_path::fa2 && attention_fa2_supported(HS))
        attention_fa2_forward(out, lse, q, k, v, segment, B, T, NH, NKV, HS, stream, window, scale);
    else attention_forward(out, lse, q, k, v, segment, B, T, NH, NKV, HS, stream, window, scale);
}

void attention_backward_selected(bf16* dq, bf16* dk, bf16* dv, float* delta, const bf16* dout, const bf16* out,
                                 const float* lse, const bf16* q, const bf16* k, const bf16* v, const int* segment,
                                 int B, int T, int NH, int NKV, int HS, cudaStream_t stream, int window, float scale) {
    if (attention_path_from_env() == attention_path::fa2 && attention_fa2_supported(HS))
        attention_fa2_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, segment, B, T, NH, NKV, HS, stream, window,
                               scale);
    else
        attention_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, segment, B, T, NH, NKV, HS, stream, window,
                           scale);
}

} // namespace qls_kernels
