// gguf_quants — ggml block layouts (sizes of every type the format defines) and dequantization of F32, F16, BF16,
// Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K and Q6_K to f32.
//
// Block structs: ggml/src/ggml-common.h (block_q4_0 ...); formulas: ggml/src/ggml-quants.c dequantize_row_q4_0,
// _q4_1, _q5_0, _q8_0, _q4_K, _q5_K, _q6_K and get_scale_min_k4; sizes: ggml.c type_traits (= gguf-py constants.py
// GGML_QUANT_SIZES). Every product and sum is evaluated in f32 in the same order as ggml-quants.c (and gguf-py's
// float32 NumPy), one rounding per operation, so the results are bit-identical: the engine compiles without FMA
// contraction on x86-64 (no -march flags), and each formula is written as separate multiplies and adds.
#include "qls/error.h"
#include "qls/gguf.h"

#include <cstring>

namespace qls {

namespace {

constexpr int64_t qk_k = 256; // ggml-common.h QK_K: elements per K-quant super-block

struct type_row {
    uint32_t id;
    const char* name;
    int64_t block_size;
    int64_t type_size;
    bool dequantizable;
};

// ggml.c type_traits[] .blck_size / .type_size.
constexpr type_row k_types[] = {
    {0, "F32", 1, 4, true},
    {1, "F16", 1, 2, true},
    {2, "Q4_0", 32, 2 + 16, true},
    {3, "Q4_1", 32, 2 + 2 + 16, true},
    {6, "Q5_0", 32, 2 + 4 + 16, true},
    {7, "Q5_1", 32, 2 + 2 + 4 + 16, false},
    {8, "Q8_0", 32, 2 + 32, true},
    {9, "Q8_1", 32, 4 + 4 + 32, false},
    {10, "Q2_K", qk_k, 2 + 2 + qk_k / 16 + qk_k / 4, false},
    {11, "Q3_K", qk_k, 2 + qk_k / 4 + qk_k / 8 + 12, false},
    {12, "Q4_K", qk_k, 2 + 2 + qk_k / 2 + 12, true},
    {13, "Q5_K", qk_k, 2 + 2 + qk_k / 2 + qk_k / 8 + 12, true},
    {14, "Q6_K", qk_k, 2 + qk_k / 2 + qk_k / 4 + qk_k / 16, true},
    {15, "Q8_K", qk_k, 4 + qk_k + qk_k / 8, false},
    {16, "IQ2_XXS", qk_k, 2 + qk_k / 4, false},
    {17, "IQ2_XS", qk_k, 2 + qk_k / 4 + qk_k / 32, false},
    {18, "IQ3_XXS", qk_k, 2 + qk_k / 4 + qk_k / 8, false},
    {19, "IQ1_S", qk_k, 2 + qk_k / 8 + qk_k / 16, false},
    {20, "IQ4_NL", 32, 2 + 16, false},
    {21, "IQ3_S", qk_k, 2 + qk_k / 4 + qk_k / 8 + qk_k / 32 + 4, false},
    {22, "IQ2_S", qk_k, 2 + qk_k / 4 + qk_k / 16, false},
    {23, "IQ4_XS", qk_k, 2 + 2 + qk_k / 2 + qk_k / 64, false},
    {24, "I8", 1, 1, false},
    {25, "I16", 1, 2, false},
    {26, "I32", 1, 4, false},
    {27, "I64", 1, 8, false},
    {28, "F64", 1, 8, false},
    {29, "IQ1_M", qk_k, qk_k / 8 + qk_k / 16 + qk_k / 32, false},
    {30, "BF16", 1, 2, true},
    {34, "TQ1_0", qk_k, 2 + 4 * 13, false},
    {35, "TQ2_0", qk_k, 2 + 64, false},
    {39, "MXFP4", 32, 1 + 16, false},
};

// IEEE half → float, exact for every half (normal, subnormal, zero, inf, NaN); ggml_compute_fp16_to_fp32.
inline float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { // subnormal: normalize
        exp = 113;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            --exp;
        }
        bits = sign | (exp << 23) | ((mant & 0x3FFu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline uint16_t rd16(const std::byte* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}
inline float rd_half(const std::byte* p) { return half_to_float(rd16(p)); }
inline const uint8_t* u8(const std::byte* p) { return reinterpret_cast<const uint8_t*>(p); }

// ggml-quants.c get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7) packed in 12 bytes.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = uint8_t((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

// block_q4_0 {half d; u8 qs[16]}: y[j] = (lo(qs[j]) - 8)·d, y[j+16] = (hi(qs[j]) - 8)·d.
void block_q4_0(const std::byte* b, float* y) {
    const float d = rd_half(b);
    const uint8_t* qs = u8(b + 2);
    for (int j = 0; j < 16; ++j) {
        const int x0 = (qs[j] & 0x0F) - 8;
        const int x1 = (qs[j] >> 4) - 8;
        y[j] = float(x0) * d;
        y[j + 16] = float(x1) * d;
    }
}

// block_q5_0 {half d; u8 qh[4]; u8 qs[16]}: bit j of qh (little-endian u32) is the fifth bit of element j;
// y[j] = ((lo(qs[j]) | bit j << 4) - 16)·d, y[j+16] = ((hi(qs[j]) | bit j+16 << 4) - 16)·d.
void block_q5_0(const std::byte* b, float* y) {
    const float d = rd_half(b);
    uint32_t qh = 0;
    std::memcpy(&qh, b + 2, 4);
    const uint8_t* qs = u8(b + 6);
    for (int j = 0; j < 16; ++j) {
        const int x0 = int((qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
        const int x1 = int((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
        y[j] = float(x0) * d;
        y[j + 16] = float(x1) * d;
    }
}

// block_q4_1 {half d; half m; u8 qs[16]}: y = q·d + m.
void block_q4_1(const std::byte* b, float* y) {
    const float d = rd_half(b);
    const float m = rd_half(b + 2);
    const uint8_t* qs = u8(b + 4);
    for (int j = 0; j < 16; ++j) {
        const float p0 = float(qs[j] & 0x0F) * d;
        const float p1 = float(qs[j] >> 4) * d;
        y[j] = p0 + m;
        y[j + 16] = p1 + m;
    }
}

// block_q8_0 {half d; i8 qs[32]}: y = q·d.
void block_q8_0(const std::byte* b, float* y) {
    const float d = rd_half(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) y[j] = float(qs[j]) * d;
}

// block_q4_K {half d; half dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32, y = (d·sc)·q - dmin·m.
void block_q4_k(const std::byte* b, float* y) {
    const float d = rd_half(b);
    const float min = rd_half(b + 2);
    const uint8_t* scales = u8(b + 4);
    const uint8_t* q = u8(b + 16);
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < qk_k; j += 64) {
        scale_min_k4(is + 0, scales, sc, m);
        const float d1 = d * float(sc), m1 = min * float(m);
        scale_min_k4(is + 1, scales, sc, m);
        const float d2 = d * float(sc), m2 = min * float(m);
        for (int l = 0; l < 32; ++l) {
            const float p = d1 * float(q[l] & 0xF);
            *y++ = p - m1;
        }
        for (int l = 0; l < 32; ++l) {
            const float p = d2 * float(q[l] >> 4);
            *y++ = p - m2;
        }
        q += 32;
        is += 2;
    }
}

// block_q5_K {half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as Q4_K with a fifth bit from qh.
void block_q5_k(const std::byte* b, float* y) {
    const float d = rd_half(b);
    const float min = rd_half(b + 2);
    const uint8_t* scales = u8(b + 4);
    const uint8_t* qh = u8(b + 16);
    const uint8_t* ql = u8(b + 48);
    int is = 0;
    uint8_t sc, m;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < qk_k; j += 64) {
        scale_min_k4(is + 0, scales, sc, m);
        const float d1 = d * float(sc), m1 = min * float(m);
        scale_min_k4(is + 1, scales, sc, m);
        const float d2 = d * float(sc), m2 = min * float(m);
        for (int l = 0; l < 32; ++l) {
            const float p = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0));
            *y++ = p - m1;
        }
        for (int l = 0; l < 32; ++l) {
            const float p = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0));
            *y++ = p - m2;
        }
        ql += 32;
        is += 2;
        u1 = uint8_t(u1 << 2);
        u2 = uint8_t(u2 << 2);
    }
}

// block_q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}: 16 sub-blocks of 16, y = (d·sc)·(q - 32).
void block_q6_k(const std::byte* b, float* y) {
    const uint8_t* ql = u8(b);
    const uint8_t* qh = u8(b + 128);
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = rd_half(b + 208);
    for (int n = 0; n < qk_k; n += 128) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = int8_t((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = int8_t((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = int8_t((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = int8_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * float(sc[is + 0]) * float(q1);
            y[l + 32] = d * float(sc[is + 2]) * float(q2);
            y[l + 64] = d * float(sc[is + 4]) * float(q3);
            y[l + 96] = d * float(sc[is + 6]) * float(q4);
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

// Dequantizes n_blocks consecutive blocks of a block-quantized type (blocks are independent: parallel).
template <void (*F)(const std::byte*, float*)>
void run_blocks(const std::byte* src, int64_t n_blocks, int64_t block_size, int64_t type_size, float* out) {
    // Chunks of 1024 blocks handed out dynamically: a core that is busy elsewhere does not hold the others up.
#pragma omp parallel for schedule(dynamic, 1024) if (n_blocks > 4096)
    for (int64_t i = 0; i < n_blocks; ++i) F(src + i * type_size, out + i * block_size);
}

} // namespace

ggml_type_traits ggml_traits(uint32_t type_id) {
    for (const type_row& r : k_types)
        if (r.id == type_id) return {true, r.name, r.block_size, r.type_size, r.dequantizable};
    return {};
}

void gguf_dequantize(ggml_type type, const std::byte* src, int64_t n, float* out, const std::string& what) {
    const ggml_type_traits tr = ggml_traits(uint32_t(type));
    if (!tr.known)
        throw error(error_code::unsupported, what + ": ggml type " + std::to_string(uint32_t(type)) + " is unknown",
                    "the file was written by a newer or foreign tool");
    if (!tr.dequantizable)
        throw error(error_code::unsupported,
                    what + " is stored as " + tr.name +
                        ", which this build does not dequantize (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, "
                        "Q4_K, Q5_K, Q6_K)",
                    "use a GGUF quantized with one of the supported types (for example Q4_K_M, Q6_K or Q8_0)");
    QLS_ASSERT(n >= 0 && n % tr.block_size == 0);
    const int64_t nb = n / tr.block_size;
    switch (type) {
    case ggml_type::f32: std::memcpy(out, src, size_t(n) * 4); return;
    case ggml_type::f16:
#pragma omp parallel for schedule(dynamic, 32768) if (n > 65536)
        for (int64_t i = 0; i < n; ++i) out[i] = rd_half(src + 2 * i);
        return;
    case ggml_type::bf16: // the top 16 bits of an f32 (ggml_compute_bf16_to_fp32)
#pragma omp parallel for schedule(dynamic, 32768) if (n > 65536)
        for (int64_t i = 0; i < n; ++i) {
            const uint32_t bits = uint32_t(rd16(src + 2 * i)) << 16;
            std::memcpy(&out[i], &bits, 4);
        }
        return;
    case ggml_type::q4_0: run_blocks<block_q4_0>(src, nb, tr.block_size, tr.type_size, out); return;
    case ggml_type::q5_0: run_blocks<block_q5_0>(src, nb, tr.block_size, tr.type_size, out); return;
    case ggml_type::q4_1: run_blocks<block_q4_1>(src, nb, tr.block_size, tr.type_size, out); return;
    case ggml_type::q8_0: run_blocks<block_q8_0>(src, nb, tr.block_size, tr.type_size, out); return;
    case ggml_type::q4_k: run_blocks<block_q4_k>(src, nb, tr.block_size, tr.type_size, out); return;
    case ggml_type::q5_k: run_blocks<block_q5_k>(src, nb, tr.block_size, tr.type_size, out); return;
    case ggml_type::q6_k: run_blocks<block_q6_k>(src, nb, tr.block_size, tr.type_size, out); return;
    default: break;
    }
    QLS_ASSERT(!"dequantizable type without a kernel");
}

} // namespace qls
