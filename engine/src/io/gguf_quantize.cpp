// Quantizing f32 rows into ggml blocks (qls/gguf_writer.h gguf_quantize): F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K.
//
// Algorithms: ggml/src/ggml-quants.c, the reference (non-SIMD, no importance matrix) quantizers
// quantize_row_q8_0_ref, quantize_row_q4_0_ref, quantize_row_q5_0_ref, quantize_row_q4_K_ref (scale/min search by
// make_qkx2_quants, 6-bit scales packed as get_scale_min_k4 unpacks them) and quantize_row_q6_K_ref (make_qx_quants
// with rmse_type 1); block layouts: ggml/src/ggml-common.h. f32 → f16 / bf16 round to nearest even
// (ggml_compute_fp32_to_fp16 / _bf16). Every product and sum is computed in f32 in the reference's order so that the
// block bytes match it (Q8_0, Q4_0 and Q5_0 are compared byte for byte with gguf-py's quants.py in the tests).
#include "qls/gguf_writer.h"

#include "qls/dtype.h"
#include "qls/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qls {

namespace {

constexpr int qk_k = 256; // elements per K-quant super-block (ggml-common.h QK_K)

void put_half(std::byte* p, float v) {
    const uint16_t h = f32_to_f16(v);
    std::memcpy(p, &h, 2);
}

float half_of(float v) { return f16_to_f32(f32_to_f16(v)); } // the f16 the block stores, read back

// Round to nearest, ties to even, for |v| < 2^22: adding 1.5·2^23 leaves the integer in the low mantissa bits
// (ggml-quants.c nearest_int).
int nearest_int(float v) {
    const float shifted = v + 12582912.f;
    int32_t i;
    std::memcpy(&i, &shifted, 4);
    return (i & 0x007fffff) - 0x00400000;
}

// Q8_0: 32 values → half d = max|x| / 127, int8 q = round(x / d) (roundf: ties away from zero). 34 bytes.
void q8_0_block(const float* x, std::byte* b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    put_half(b, d);
    for (int j = 0; j < 32; ++j) b[2 + j] = std::byte(uint8_t(int8_t(std::roundf(x[j] * id))));
}

// The value of largest magnitude (the first one on ties), sign kept.
float signed_absmax(const float* x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; ++j)
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    return max;
}

// Q4_0: d = max / -8 (max the signed value of largest magnitude), q = min(15, trunc(x / d + 8.5)); element j in
// the low nibble of byte j, element j + 16 in its high nibble. 18 bytes.
void q4_0_block(const float* x, std::byte* b) {
    const float d = signed_absmax(x, 32) / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    put_half(b, d);
    for (int j = 0; j < 16; ++j) {
        const int q0 = std::min(15, int(int8_t(x[j] * id + 8.5f)));
        const int q1 = std::min(15, int(int8_t(x[j + 16] * id + 8.5f)));
        b[2 + j] = std::byte(uint8_t(q0 | (q1 << 4)));
    }
}

// Q5_0: d = max / -16, q = min(31, trunc(x / d + 16.5)); low nibbles as Q4_0, the fifth bits in a u32 qh (bit j for
// element j). Layout: half d, u8 qh[4], u8 qs[16] = 22 bytes.
void q5_0_block(const float* x, std::byte* b) {
    const float d = signed_absmax(x, 32) / -16.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    put_half(b, d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const int q0 = std::min(31, int(int8_t(x[j] * id + 16.5f)));
        const int q1 = std::min(31, int(int8_t(x[j + 16] * id + 16.5f)));
        b[6 + j] = std::byte(uint8_t((q0 & 0x0F) | ((q1 & 0x0F) << 4)));
        qh |= uint32_t((q0 & 0x10) >> 4) << j;
        qh |= uint32_t((q1 & 0x10) >> 4) << (j + 16);
    }
    std::memcpy(b + 2, &qh, 4);
}

// make_qkx2_quants: n values to levels 0..nmax with a scale and a (non-positive) offset, y ≈ scale·L − the_min,
// minimizing the weighted squared error over nstep + 1 trial scales (rmin + rdelta·is + nmax) / (max − min).
float qkx2_scale(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, uint8_t* Laux, float rmin,
                 float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        min = std::min(min, x[i]);
        max = std::max(max, x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        std::fill(L, L + n, uint8_t(0));
        *the_min = -min;
        return 0.f;
    }
    float iscale = float(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = uint8_t(std::max(0, std::min(nmax, l)));
        const float diff = scale * float(L[i]) + min - x[i];
        best_err += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = uint8_t(l);
            sum_l += w[i] * float(l);
            sum_l2 += w[i] * float(l) * float(l);
            sum_xl += w[i] * float(l) * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; ++i) {
                const float diff = this_scale * float(Laux[i]) + this_min - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best_err) {
                std::copy(Laux, Laux + n, L);
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Q4_K super-block of 256: half d, half dmin, 12 bytes of eight 6-bit scales and mins, 128 bytes of nibbles
// (elements 64c + l low, 64c + 32 + l high, in byte 32c + l). y = d·sc·q − dmin·m per 32-element sub-block.
void q4_k_block(const float* x, std::byte* b) {
    uint8_t L[qk_k], Laux[32];
    float w[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        const float* xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xs[l]);
        scales[j] = qkx2_scale(32, 15, xs, w, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
        max_scale = std::max(max_scale, scales[j]);
        max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t sc[12] = {};
    for (int j = 0; j < 8; ++j) {
        const uint8_t ls = uint8_t(std::min(63, nearest_int(inv_scale * scales[j])));
        const uint8_t lm = uint8_t(std::min(63, nearest_int(inv_min * mins[j])));
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] |= uint8_t((ls >> 4) << 6);
            sc[j] |= uint8_t((lm >> 4) << 6);
        }
    }
    put_half(b, max_scale / 63.f);
    put_half(b + 2, max_min / 63.f);
    std::memcpy(b + 4, sc, 12);
    const float d_all = half_of(max_scale / 63.f), dmin_all = half_of(max_min / 63.f);
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        if (j < 4) {
            s = sc[j] & 63;
            m = sc[j + 4] & 63;
        } else {
            s = uint8_t((sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4));
            m = uint8_t((sc[j + 4] >> 4) | ((sc[j] >> 6) << 4));
        }
        const float d = d_all * float(s);
        if (d == 0.f) continue;
        const float dm = dmin_all * float(m);
        for (int i = 0; i < 32; ++i)
            L[32 * j + i] = uint8_t(std::max(0, std::min(15, nearest_int((x[32 * j + i] + dm) / d))));
    }
    std::byte* q = b + 16;
    for (int j = 0; j < qk_k; j += 64) {
        for (int l = 0; l < 32; ++l) q[l] = std::byte(uint8_t(L[j + l] | (L[j + l + 32] << 4)));
        q += 32;
    }
}

// make_qx_quants with rmse_type 1 (weights x²): n values to signed levels −nmax..nmax−1 stored + nmax, returning the
// scale that minimizes the weighted error over 19 trial inverse scales −(nmax + 0.1·is) / max.
float qx_scale(int n, int nmax, const float* x, int8_t* L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max = x[i];
        }
    if (amax < 1e-30f) {
        std::fill(L, L + n, int8_t(0));
        return 0.f;
    }
    float iscale = -float(nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = int8_t(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * float(l);
        suml2 += w * float(l) * float(l);
    }
    float scale = sumlx / suml2;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(float(nmax) + 0.1f * float(is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * float(l);
            suml2 += w * float(l) * float(l);
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i)
                L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Q6_K super-block of 256: u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), int8 scales[16], half d;
// y = d·scale[16-element sub-block]·(q − 32).
void q6_k_block(const float* x, std::byte* b) {
    int8_t L[qk_k];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float s = qx_scale(16, 32, x + 16 * ib, L + 16 * ib);
        scales[ib] = s;
        if (std::fabs(s) > max_abs_scale) {
            max_abs_scale = std::fabs(s);
            max_scale = s;
        }
    }
    std::memset(b, 0, 210);
    if (max_abs_scale == 0.f) return; // all zero: d = 0 (and every byte 0)
    const float iscale = -128.f / max_scale;
    int8_t sc[16];
    for (int ib = 0; ib < 16; ++ib) sc[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
    const float d_all = half_of(1 / iscale);
    for (int j = 0; j < 16; ++j) {
        const float d = d_all * float(sc[j]);
        if (d == 0.f) continue;
        for (int i = 0; i < 16; ++i)
            L[16 * j + i] = int8_t(std::max(-32, std::min(31, nearest_int(x[16 * j + i] / d))) + 32);
    }
    std::byte* ql = b;
    std::byte* qh = b + 128;
    for (int j = 0; j < qk_k; j += 128) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = uint8_t(L[j + l]) & 0xF, q2 = uint8_t(L[j + l + 32]) & 0xF;
            const uint8_t q3 = uint8_t(L[j + l + 64]) & 0xF, q4 = uint8_t(L[j + l + 96]) & 0xF;
            ql[l] = std::byte(uint8_t(q1 | (q3 << 4)));
            ql[l + 32] = std::byte(uint8_t(q2 | (q4 << 4)));
            qh[l] = std::byte(uint8_t((uint8_t(L[j + l]) >> 4) | ((uint8_t(L[j + l + 32]) >> 4) << 2) |
                                      ((uint8_t(L[j + l + 64]) >> 4) << 4) | ((uint8_t(L[j + l + 96]) >> 4) << 6)));
        }
        ql += 64;
        qh += 32;
    }
    std::memcpy(b + 192, sc, 16);
    put_half(b + 208, 1 / iscale);
}

template <void (*F)(const float*, std::byte*)>
void run(const float* x, int64_t n_blocks, int64_t block, int64_t size, std::byte* out) {
#pragma omp parallel for schedule(dynamic, 256) if (n_blocks > 1024)
    for (int64_t i = 0; i < n_blocks; ++i) F(x + i * block, out + i * size);
}

} // namespace

bool gguf_can_quantize(ggml_type t) {
    switch (t) {
    case ggml_type::f32:
    case ggml_type::f16:
    case ggml_type::bf16:
    case ggml_type::q8_0:
    case ggml_type::q4_0:
    case ggml_type::q5_0:
    case ggml_type::q4_k:
    case ggml_type::q6_k: return true;
    default: return false;
    }
}

void gguf_quantize(ggml_type t, const float* src, int64_t n, std::byte* out, const std::string& what) {
    const ggml_type_traits tr = ggml_traits(uint32_t(t));
    if (!tr.known || !gguf_can_quantize(t))
        throw error(error_code::unsupported,
                    what + ": cannot write " + (tr.known ? tr.name : "an unknown type") +
                        " (the writer quantizes F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K and Q6_K)",
                    "choose one of those types");
    if (n < 0 || n % tr.block_size != 0)
        throw error(error_code::invalid_argument,
                    what + ": " + std::to_string(n) + " values are not whole " + tr.name + " blocks of " +
                        std::to_string(tr.block_size),
                    "quantize whole rows whose length is a multiple of the block size");
    const int64_t nb = n / tr.block_size;
    switch (t) {
    case ggml_type::f32: std::memcpy(out, src, size_t(n) * 4); return;
    case ggml_type::f16:
        for (int64_t i = 0; i < n; ++i) put_half(out + 2 * i, src[i]);
        return;
    case ggml_type::bf16:
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = f32_to_bf16(src[i]);
            std::memcpy(out + 2 * i, &h, 2);
        }
        return;
    case ggml_type::q8_0: return run<q8_0_block>(src, nb, tr.block_size, tr.type_size, out);
    case ggml_type::q4_0: return run<q4_0_block>(src, nb, tr.block_size, tr.type_size, out);
    case ggml_type::q5_0: return run<q5_0_block>(src, nb, tr.block_size, tr.type_size, out);
    case ggml_type::q4_k: return run<q4_k_block>(src, nb, tr.block_size, tr.type_size, out);
    case ggml_type::q6_k: return run<q6_k_block>(src, nb, tr.block_size, tr.type_size, out);
    default: break;
    }
}

} // namespace qls
