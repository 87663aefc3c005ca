// Flash-style causal GQA attention forward/backward: WMMA bf16 tiles of 64×64, fp32 online softmax (see attention.h).
#include "qls_kernels/attention.h"
#include "qls_kernels/check.h"

#include <mma.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace qls_kernels {

namespace {

using namespace nvcuda;
using bf16 = __nv_bfloat16;

constexpr int BQ = 64;        // query rows per tile
constexpr int BK = 64;        // key rows per tile
constexpr int NTHREADS = 128; // 4 warps; warp w owns rows [16w, 16w + 16) of the block's tile
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

// Shared-memory leading dimensions (elements), padded so WMMA tile pointers stay 32-byte aligned and rows shift banks.
template <int D> struct tile_dims {
    static constexpr int LD = D + 8;   // bf16 [64][LD] tiles of q, k, v, dout
    static constexpr int LDS = BK + 4; // fp32 [64][LDS] scores
    static constexpr int LDP = BK + 8; // bf16 [64][LDP] probabilities
    static constexpr int LDO = D + 4;  // fp32 [64][LDO] output accumulators
};

using frag_a_row = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using frag_b_row = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using frag_b_col = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using frag_acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Rows [r0, r0 + 64) of head h of x (B, T, H, HS) into dst [64][D + 8]; rows past T and columns past HS are zero.
template <int D> __device__ void load_tile(bf16* dst, const bf16* x, int b, int r0, int T, int H, int h, int HS) {
    constexpr int LD = tile_dims<D>::LD;
    constexpr int VPR = D / 8; // 16-byte vectors per row
    for (int i = threadIdx.x; i < 64 * VPR; i += NTHREADS) {
        const int r = i / VPR, c = (i % VPR) * 8;
        const int t = r0 + r;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (t < T && c < HS) val = *reinterpret_cast<const uint4*>(x + ((size_t)(b * T + t) * H + h) * HS + c);
        *reinterpret_cast<uint4*>(dst + r * LD + c) = val;
    }
}

// out[16 x 64] (fp32, ld LDS) = A[16 x D] · Bᵀ where A rows are a_rows (bf16, ld LD) and B is [64 x D] (bf16, ld LD).
template <int D> __device__ void warp_abt_16x64(float* out, const bf16* a_rows, const bf16* b) {
    constexpr int LD = tile_dims<D>::LD, LDS = tile_dims<D>::LDS;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        frag_acc c;
        wmma::fill_fragment(c, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            frag_a_row a;
            frag_b_col bt;
            wmma::load_matrix_sync(a, a_rows + kk * 16, LD);
            wmma::load_matrix_sync(bt, b + (j * 16) * LD + kk * 16, LD);
            wmma::mma_sync(c, a, bt, c);
        }
        wmma::store_matrix_sync(out + j * 16, c, LDS, wmma::mem_row_major);
    }
}

// acc[D/16] (16 x D) += P[16 x 64] (bf16, ld LDP) · X[64 x D] (bf16, ld LD).
template <int D> __device__ void warp_pv_accumulate(frag_acc (&acc)[D / 16], const bf16* p_rows, const bf16* x) {
    constexpr int LD = tile_dims<D>::LD, LDP = tile_dims<D>::LDP;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        frag_a_row a;
        wmma::load_matrix_sync(a, p_rows + kk * 16, LDP);
#pragma unroll
        for (int j = 0; j < D / 16; ++j) {
            frag_b_row bx;
            wmma::load_matrix_sync(bx, x + (kk * 16) * LD + j * 16, LD);
            wmma::mma_sync(acc[j], a, bx, acc[j]);
        }
    }
}

// window > 0: a sliding-window layer also hides keys tk <= tq - window (cpu::attention_forward; transformers
// sliding_window_overlay). Tiles left of the window are then fully masked for their rows, as segment masks can make
// them, and the online softmax skips them the same way.
__device__ __forceinline__ bool attend(int tq, int tk, int T, const int* seg_row, int window) {
    return tk <= tq && tq < T && (seg_row == nullptr || seg_row[tk] == seg_row[tq]) &&
           (window <= 0 || tk > tq - window);
}

// ---- forward ----------------------------------------------------------------------------------------------------
template <int D>
__global__ void __launch_bounds__(NTHREADS)
    attention_forward_kernel(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int* segment,
                             int T, int NH, int NKV, int HS, float scale_log2, int window) {
    using dims = tile_dims<D>;
    constexpr int LD = dims::LD, LDS = dims::LDS, LDP = dims::LDP, LDO = dims::LDO;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Qs = reinterpret_cast<bf16*>(smem);
    bf16* Ks = Qs + 64 * LD;
    bf16* Vs = Ks + 64 * LD;
    bf16* Ps = Vs + 64 * LD;
    float* Ss = reinterpret_cast<float*>(Ps + 64 * LDP);
    float* Os = Ss + 64 * LDS;

    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (NH / NKV);
    const int q0 = qt * BQ;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int* seg_row = segment ? segment + (size_t)b * T : nullptr;

    load_tile<D>(Qs, q, b, q0, T, NH, h, HS);
    for (int i = threadIdx.x; i < 64 * LDO; i += NTHREADS) Os[i] = 0.0f;

    // lane pair (2 lanes) per row: row r = 16*warp + lane/2, columns half*32 .. half*32+31 of each tile
    const int r = warp * 16 + lane / 2, half = lane % 2;
    const int tq = q0 + r;
    float m = -INFINITY, l = 0.0f; // running max (log2 units) and sum for row r

    const int last_key = min(q0 + BQ - 1, T - 1);
    const int kt_end = last_key / BK;
    for (int kt = 0; kt <= kt_end; ++kt) {
        __syncthreads(); // every warp is done with the previous K, V tiles
        load_tile<D>(Ks, k, b, kt * BK, T, NKV, kvh, HS);
        load_tile<D>(Vs, v, b, kt * BK, T, NKV, kvh, HS);
        __syncthreads();

        float* S = Ss + warp * 16 * LDS;
        warp_abt_16x64<D>(S, Qs + warp * 16 * LD, Ks);
        __syncwarp();

        // online softmax for row r over this tile's 64 keys (this lane's 32 of them)
        float* srow = Ss + r * LDS + half * 32;
        float smax = -INFINITY;
#pragma unroll 8
        for (int c = 0; c < 32; ++c) {
            const int tk = kt * BK + half * 32 + c;
            const float s = attend(tq, tk, T, seg_row, window) ? srow[c] * scale_log2 : -INFINITY;
            srow[c] = s;
            smax = fmaxf(smax, s);
        }
        smax = fmaxf(smax, __shfl_xor_sync(0xffffffffu, smax, 1));
        const float m_new = fmaxf(m, smax);
        const float alpha = (m_new == -INFINITY) ? 1.0f : exp2f(m - m_new);
        float psum = 0.0f;
        bf16* prow = Ps + r * LDP + half * 32;
#pragma unroll 8
        for (int c = 0; c < 32; ++c) {
            const float p = (srow[c] == -INFINITY) ? 0.0f : exp2f(srow[c] - m_new);
            psum += p;
            prow[c] = __float2bfloat16(p);
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        l = l * alpha + psum;
        m = m_new;
        float* orow = Os + r * LDO + half * (D / 2);
#pragma unroll 8
        for (int c = 0; c < D / 2; ++c) orow[c] *= alpha;
        __syncwarp();

        // O rows of this warp += P V
        frag_acc acc[D / 16];
#pragma unroll
        for (int j = 0; j < D / 16; ++j)
            wmma::load_matrix_sync(acc[j], Os + warp * 16 * LDO + j * 16, LDO, wmma::mem_row_major);
        warp_pv_accumulate<D>(acc, Ps + warp * 16 * LDP, Vs);
#pragma unroll
        for (int j = 0; j < D / 16; ++j)
            wmma::store_matrix_sync(Os + warp * 16 * LDO + j * 16, acc[j], LDO, wmma::mem_row_major);
        __syncwarp();
    }

    if (tq < T) {
        const float inv_l = 1.0f / l;
        const float* orow = Os + r * LDO;
        bf16* dst = out + ((size_t)(b * T + tq) * NH + h) * HS;
        for (int c = half; c < HS; c += 2) dst[c] = __float2bfloat16(orow[c] * inv_l);
        if (half == 0) lse[((size_t)b * NH + h) * T + tq] = m * LN2 + logf(l);
    }
}

// ---- backward ---------------------------------------------------------------------------------------------------
// delta (B, NH, T) = sum_c dout * out, one warp per (b, t, h) row.
__global__ void attention_delta_kernel(float* delta, const bf16* dout, const bf16* out, int B, int T, int NH, int HS) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; // (b, t, h) flattened as in out
    const int lane = threadIdx.x % 32;
    if (row >= B * T * NH) return;
    const bf16* a = dout + (size_t)row * HS;
    const bf16* o = out + (size_t)row * HS;
    float s = 0.0f;
    for (int c = lane; c < HS; c += 32) s += __bfloat162float(a[c]) * __bfloat162float(o[c]);
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
        const int h = row % NH, bt = row / NH, t = bt % T, b = bt / T;
        delta[((size_t)b * NH + h) * T + t] = s;
    }
}

// dq for one (64-query tile, head, batch row): loop over key tiles; dS = P ∘ (dP − delta) · scale; dq += dS K.
template <int D>
__global__ void __launch_bounds__(NTHREADS)
    attention_backward_dq_kernel(bf16* dq, const bf16* dout, const float* lse, const float* delta, const bf16* q,
                                 const bf16* k, const bf16* v, const int* segment, int T, int NH, int NKV, int HS,
                                 float scale, float scale_log2, int window) {
    using dims = tile_dims<D>;
    constexpr int LD = dims::LD, LDS = dims::LDS, LDP = dims::LDP, LDO = dims::LDO;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Qs = reinterpret_cast<bf16*>(smem);
    bf16* dOs = Qs + 64 * LD;
    bf16* Ks = dOs + 64 * LD;
    bf16* Vs = Ks + 64 * LD;
    bf16* dSs = Vs + 64 * LD;
    float* Ss = reinterpret_cast<float*>(dSs + 64 * LDP);
    float* dPs = Ss + 64 * LDS;

    const int qt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (NH / NKV);
    const int q0 = qt * BQ;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int* seg_row = segment ? segment + (size_t)b * T : nullptr;
    const int r = warp * 16 + lane / 2, half = lane % 2;
    const int tq = q0 + r;
    const float lse2 = tq < T ? lse[((size_t)b * NH + h) * T + tq] * LOG2E : INFINITY;
    const float dlt = tq < T ? delta[((size_t)b * NH + h) * T + tq] : 0.0f;

    load_tile<D>(Qs, q, b, q0, T, NH, h, HS);
    load_tile<D>(dOs, dout, b, q0, T, NH, h, HS);

    frag_acc acc[D / 16];
#pragma unroll
    for (int j = 0; j < D / 16; ++j) wmma::fill_fragment(acc[j], 0.0f);

    const int kt_end = min(q0 + BQ - 1, T - 1) / BK;
    for (int kt = 0; kt <= kt_end; ++kt) {
        __syncthreads();
        load_tile<D>(Ks, k, b, kt * BK, T, NKV, kvh, HS);
        load_tile<D>(Vs, v, b, kt * BK, T, NKV, kvh, HS);
        __syncthreads();
        warp_abt_16x64<D>(Ss + warp * 16 * LDS, Qs + warp * 16 * LD, Ks);   // S = Q Kᵀ
        warp_abt_16x64<D>(dPs + warp * 16 * LDS, dOs + warp * 16 * LD, Vs); // dP = dO Vᵀ
        __syncwarp();
        const float* srow = Ss + r * LDS + half * 32;
        const float* dprow = dPs + r * LDS + half * 32;
        bf16* dsrow = dSs + r * LDP + half * 32;
#pragma unroll 8
        for (int c = 0; c < 32; ++c) {
            const int tk = kt * BK + half * 32 + c;
            const float p = attend(tq, tk, T, seg_row, window) ? exp2f(srow[c] * scale_log2 - lse2) : 0.0f;
            dsrow[c] = __float2bfloat16(p * (dprow[c] - dlt) * scale);
        }
        __syncwarp();
        warp_pv_accumulate<D>(acc, dSs + warp * 16 * LDP, Ks); // dq += dS K
    }
    __syncthreads(); // the fp32 staging below overlaps Ss/dPs rows of other warps
    float* Os = Ss;  // [64][LDO] fits in Ss + dPs (2 * 64 * LDS >= 64 * LDO for D <= 128)
#pragma unroll
    for (int j = 0; j < D / 16; ++j)
        wmma::store_matrix_sync(Os + warp * 16 * LDO + j * 16, acc[j], LDO, wmma::mem_row_major);
    __syncwarp();
    if (tq < T) {
        bf16* dst = dq + ((size_t)(b * T + tq) * NH + h) * HS;
        for (int c = half; c < HS; c += 2) dst[c] = __float2bfloat16(Os[r * LDO + c]);
    }
}

// dk, dv for one (64-key tile, kv head, batch row): loop over the group's query heads and the query tiles at or after
// the key tile; with Sᵀ = K Qᵀ, Pᵀ from lse, dPᵀ = V dOᵀ: dv += Pᵀ dO, dk += dSᵀ Q.
template <int D>
__global__ void __launch_bounds__(NTHREADS)
    attention_backward_dkv_kernel(bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* delta,
                                  const bf16* q, const bf16* k, const bf16* v, const int* segment, int T, int NH,
                                  int NKV, int HS, float scale, float scale_log2, int window) {
    using dims = tile_dims<D>;
    constexpr int LD = dims::LD, LDS = dims::LDS, LDP = dims::LDP, LDO = dims::LDO;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Ks = reinterpret_cast<bf16*>(smem);
    bf16* Vs = Ks + 64 * LD;
    bf16* Qs = Vs + 64 * LD;
    bf16* dOs = Qs + 64 * LD;
    bf16* Pt = dOs + 64 * LD;
    bf16* dSt = Pt + 64 * LDP;
    float* St = reinterpret_cast<float*>(dSt + 64 * LDP);
    float* dPt = St + 64 * LDS;
    float* lse_s = dPt + 64 * LDS;
    float* delta_s = lse_s + 64;

    const int kt = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    const int group = NH / NKV;
    const int k0 = kt * BK;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int* seg_row = segment ? segment + (size_t)b * T : nullptr;
    const int r = warp * 16 + lane / 2, half = lane % 2; // r: key row within the tile
    const int tk = k0 + r;

    load_tile<D>(Ks, k, b, k0, T, NKV, kvh, HS);
    load_tile<D>(Vs, v, b, k0, T, NKV, kvh, HS);

    frag_acc dk_acc[D / 16], dv_acc[D / 16];
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
        wmma::fill_fragment(dk_acc[j], 0.0f);
        wmma::fill_fragment(dv_acc[j], 0.0f);
    }

    const int qt_end = (T - 1) / BQ;
    for (int hh = 0; hh < group; ++hh) {
        const int h = kvh * group + hh;
        for (int qt = kt; qt <= qt_end; ++qt) {
            const int q0 = qt * BQ;
            __syncthreads();
            load_tile<D>(Qs, q, b, q0, T, NH, h, HS);
            load_tile<D>(dOs, dout, b, q0, T, NH, h, HS);
            for (int i = threadIdx.x; i < 64; i += NTHREADS) {
                const int t = q0 + i;
                lse_s[i] = t < T ? lse[((size_t)b * NH + h) * T + t] * LOG2E : INFINITY;
                delta_s[i] = t < T ? delta[((size_t)b * NH + h) * T + t] : 0.0f;
            }
            __syncthreads();
            warp_abt_16x64<D>(St + warp * 16 * LDS, Ks + warp * 16 * LD, Qs);   // Sᵀ = K Qᵀ
            warp_abt_16x64<D>(dPt + warp * 16 * LDS, Vs + warp * 16 * LD, dOs); // dPᵀ = V dOᵀ
            __syncwarp();
            const float* srow = St + r * LDS + half * 32;
            const float* dprow = dPt + r * LDS + half * 32;
            bf16* prow = Pt + r * LDP + half * 32;
            bf16* dsrow = dSt + r * LDP + half * 32;
#pragma unroll 8
            for (int c = 0; c < 32; ++c) {
                const int col = half * 32 + c;
                const int tq = q0 + col;
                const float p = (tk < T && attend(tq, tk, T, seg_row, window))
                                    ? exp2f(srow[c] * scale_log2 - lse_s[col])
                                    : 0.0f;
                prow[c] = __float2bfloat16(p);
                dsrow[c] = __float2bfloat16(p * (dprow[c] - delta_s[col]) * scale);
            }
            __syncwarp();
            warp_pv_accumulate<D>(dv_acc, Pt + warp * 16 * LDP, dOs); // dv += Pᵀ dO
            warp_pv_accumulate<D>(dk_acc, dSt + warp * 16 * LDP, Qs); // dk += dSᵀ Q
        }
    }
    __syncthreads();
    float* Os = St; // [64][LDO] staging inside St + dPt
#pragma unroll
    for (int j = 0; j < D / 16; ++j)
        wmma::store_matrix_sync(Os + warp * 16 * LDO + j * 16, dk_acc[j], LDO, wmma::mem_row_major);
    __syncwarp();
    if (tk < T) {
        bf16* dst = dk + ((size_t)(b * T + tk) * NKV + kvh) * HS;
        for (int c = half; c < HS; c += 2) dst[c] = __float2bfloat16(Os[r * LDO + c]);
    }
    __syncwarp();
#pragma unroll
    for (int j = 0; j < D / 16; ++j)
        wmma::store_matrix_sync(Os + warp * 16 * LDO + j * 16, dv_acc[j], LDO, wmma::mem_row_major);
    __syncwarp();
    if (tk < T) {
        bf16* dst = dv + ((size_t)(b * T + tk) * NKV + kvh) * HS;
        for (int c = half; c < HS; c += 2) dst[c] = __float2bfloat16(Os[r * LDO + c]);
    }
}

template <int D> constexpr size_t forward_smem() {
    using d = tile_dims<D>;
    return 3 * 64 * d::LD * 2 + 64 * d::LDP * 2 + 64 * d::LDS * 4 + 64 * d::LDO * 4;
}
template <int D> constexpr size_t dq_smem() {
    using d = tile_dims<D>;
    return 4 * 64 * d::LD * 2 + 64 * d::LDP * 2 + 2 * 64 * d::LDS * 4;
}
template <int D> constexpr size_t dkv_smem() {
    using d = tile_dims<D>;
    return 4 * 64 * d::LD * 2 + 2 * 64 * d::LDP * 2 + 2 * 64 * d::LDS * 4 + 2 * 64 * 4;
}
static_assert(2 * 64 * tile_dims<128>::LDS >= 64 * tile_dims<128>::LDO, "dq/dkv staging must fit in the score tiles");

void check_shapes(const char* what, int B, int T, int NH, int NKV, int HS) {
    if (B <= 0 || T <= 0 || NH <= 0 || NKV <= 0 || NH % NKV != 0 || HS <= 0 || HS % 8 != 0 ||
        HS > attention_max_head_size)
        throw std::invalid_argument(std::string(what) + ": unsupported shape B=" + std::to_string(B) +
                                    " T=" + std::to_string(T) + " NH=" + std::to_string(NH) +
                                    " NKV=" + std::to_string(NKV) + " HS=" + std::to_string(HS) +
                                    " (HS must be a multiple of 8, at most 128; NH a multiple of NKV)");
}

template <int D>
void forward_impl(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int* segment, int B, int T,
                  int NH, int NKV, int HS, int window, float scale, cudaStream_t stream) {
    constexpr size_t smem = forward_smem<D>();
    QLS_CUDA_CHECK(cudaFuncSetAttribute(attention_forward_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem));
    const float scale_log2 = LOG2E * (scale > 0.0f ? scale : 1.0f / sqrtf((float)HS));
    dim3 grid((T + BQ - 1) / BQ, NH, B);
    attention_forward_kernel<D>
        <<<grid, NTHREADS, smem, stream>>>(out, lse, q, k, v, segment, T, NH, NKV, HS, scale_log2, window);
    QLS_CUDA_CHECK(cudaGetLastError());
}

template <int D>
void backward_impl(bf16* dq, bf16* dk, bf16* dv, float* delta, const bf16* dout, const float* lse, const bf16* q,
                   const bf16* k, const bf16* v, const int* segment, int B, int T, int NH, int NKV, int HS, int window,
                   float scale_in, cudaStream_t stream) {
    const float scale = scale_in > 0.0f ? scale_in : 1.0f / sqrtf((float)HS);
    const float scale_log2 = scale * LOG2E;
    constexpr size_t smem_q = dq_smem<D>(), smem_kv = dkv_smem<D>();
    QLS_CUDA_CHECK(cudaFuncSetAttribute(attention_backward_dq_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem_q));
    QLS_CUDA_CHECK(cudaFuncSetAttribute(attention_backward_dkv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem_kv));
    dim3 grid_q((T + BQ - 1) / BQ, NH, B);
    attention_backward_dq_kernel<D><<<grid_q, NTHREADS, smem_q, stream>>>(dq, dout, lse, delta, q, k, v, segment, T, NH,
                                                                          NKV, HS, scale, scale_log2, window);
    QLS_CUDA_CHECK(cudaGetLastError());
    dim3 grid_kv((T + BK - 1) / BK, NKV, B);
    attention_backward_dkv_kernel<D><<<grid_kv, NTHREADS, smem_kv, stream>>>(dk, dv, dout, lse, delta, q, k, v, segment,
                                                                             T, NH, NKV, HS, scale, scale_log2, window);
    QLS_CUDA_CHECK(cudaGetLastError());
}

} // namespace

void attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int* segment, int B,
                       int T, int NH, int NKV, int HS, cudaStream_t stream, int window, float scale) {
    check_shapes("attention_forward", B, T, NH, NKV, HS);
    if (HS <= 16) forward_impl<16>(out, lse, q, k, v, segment, B, T, NH, NKV, HS, window, scale, stream);
    else if (HS <= 32) forward_impl<32>(out, lse, q, k, v, segment, B, T, NH, NKV, HS, window, scale, stream);
    else if (HS <= 64) forward_impl<64>(out, lse, q, k, v, segment, B, T, NH, NKV, HS, window, scale, stream);
    else forward_impl<128>(out, lse, q, k, v, segment, B, T, NH, NKV, HS, window, scale, stream);
}

void attention_backward(bf16* dq, bf16* dk, bf16* dv, float* delta, const bf16* dout, const bf16* out, const float* lse,
                        const bf16* q, const bf16* k, const bf16* v, const int* segment, int B, int T, int NH, int NKV,
                        int HS, cudaStream_t stream, int window, float scale) {
    check_shapes("attention_backward", B, T, NH, NKV, HS);
    const int rows = B * T * NH;
    attention_delta_kernel<<<(rows + 7) / 8, 256, 0, stream>>>(delta, dout, out, B, T, NH, HS);
    QLS_CUDA_CHECK(cudaGetLastError());
    if (HS <= 16)
        backward_impl<16>(dq, dk, dv, delta, dout, lse, q, k, v, segment, B, T, NH, NKV, HS, window, scale, stream);
    else if (HS <= 32)
        backward_impl<32>(dq, dk, dv, delta, dout, lse, q, k, v, segment, B, T, NH, NKV, HS, window, scale, stream);
    else if (HS <= 64)
        backward_impl<64>(dq, dk, dv, delta, dout, lse, q, k, v, segment, B, T, NH, NKV, HS, window, scale, stream);
    else backward_impl<128>(dq, dk, dv, delta, dout, lse, q, k, v, segment, B, T, NH, NKV, HS, window, scale, stream);
}

} // namespace qls_kernels
