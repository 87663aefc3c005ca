// Qt Test suite for dtype conversions (bf16/f16 <-> f32, checked exhaustively and against hardware) and tensor/tensor_view basics.
#include "qls/dtype.h"
#include "qls/tensor.h"

#include <QtTest>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define QLS_TEST_X86 1
#endif

namespace {

bool f32_is_nan_bits(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }
bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

// ---- reference f32 -> f16 -------------------------------------------------------------------------
// The reference is the F16C instruction vcvtps2ph with imm8 = 0 (round to nearest even, MXCSR not used) when the
// CPU has it; otherwise a g++ `_Float16` cast (g++ 12 converts through libgcc's __truncsfhf2, which rounds to
// nearest even). The F16C path also fixes NaN handling: quiet bit set, top 10 payload bits kept — which
// qls::f32_to_f16 matches bit for bit, so with F16C every pattern (NaNs included) is compared exactly.
enum class f16_ref { f16c, float16_cast, none };

#if QLS_TEST_X86
__attribute__((target("f16c"))) void hw_f32_to_f16x4(const float* in, uint16_t* out) {
    __m128i r = _mm_cvtps_ph(_mm_loadu_ps(in), _MM_FROUND_TO_NEAREST_INT);
    uint64_t packed = uint64_t(_mm_cvtsi128_si64(r));
    std::memcpy(out, &packed, 8);
}
__attribute__((target("f16c"))) float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
#endif

f16_ref pick_f16_ref() {
#if QLS_TEST_X86
    // CPUID leaf 1, ECX: F16C and OSXSAVE (the OS saves the VEX state); clang 14 has no __builtin_cpu_supports("f16c")
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) && (c & bit_OSXSAVE)) return f16_ref::f16c;
#endif
#ifdef __FLT16_MAX__
    return f16_ref::float16_cast;
#else
    return f16_ref::none;
#endif
}

// Converts n (a multiple of 4) floats with the reference.
void ref_f32_to_f16(f16_ref ref, const float* in, uint16_t* out, size_t n) {
#if QLS_TEST_X86
    if (ref == f16_ref::f16c) {
        for (size_t i = 0; i < n; i += 4) hw_f32_to_f16x4(in + i, out + i);
        return;
    }
#endif
#ifdef __FLT16_MAX__
    for (size_t i = 0; i < n; ++i) {
        _Float16 h = static_cast<_Float16>(in[i]);
        std::memcpy(&out[i], &h, 2);
    }
#else
    (void)ref;
    (void)in;
    (void)out;
    (void)n;
#endif
}

// Compares qls::f32_to_f16 with the reference on n bit patterns; returns the first mismatch's description.
QString compare_f16(f16_ref ref, const std::vector<uint32_t>& bits) {
    std::vector<float> in(bits.size() + 4, 0.0f);
    for (size_t i = 0; i < bits.size(); ++i) in[i] = qls::f32_from_bits(bits[i]);
    std::vector<uint16_t> want(in.size());
    ref_f32_to_f16(ref, in.data(), want.data(), in.size() / 4 * 4);
    for (size_t i = 0; i < bits.size(); ++i) {
        uint16_t got = qls::f32_to_f16(in[i]);
        bool ok = ref == f16_ref::f16c || !f32_is_nan_bits(bits[i]) ? got == want[i]
                                                                    : f16_is_nan(got) && f16_is_nan(want[i]);
        if (!ok)
            return QString("f32 0x%1 (%2): got 0x%3, reference 0x%4")
                .arg(bits[i], 8, 16, QChar('0'))
                .arg(double(in[i]), 0, 'g', 9)
                .arg(got, 4, 16, QChar('0'))
                .arg(want[i], 4, 16, QChar('0'));
    }
    return {};
}

} // namespace

class tst_dtype : public QObject {
    Q_OBJECT

private slots:
    // ---- names and sizes ------------------------------------------------------------------------

    void names_and_sizes() {
        using qls::dtype;
        const dtype all[] = {dtype::f64, dtype::f32, dtype::f16, dtype::bf16, dtype::i64,
                             dtype::i32, dtype::i16, dtype::i8,  dtype::u8,   dtype::boolean};
        const size_t sizes[] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 1};
        for (size_t i = 0; i < std::size(all); ++i) {
            QCOMPARE(qls::dtype_size(all[i]), sizes[i]);
            auto back = qls::dtype_from_name(qls::dtype_name(all[i]));
            QVERIFY(back && *back == all[i]);
        }
        QCOMPARE(std::string(qls::dtype_name(dtype::bf16)), std::string("BF16"));
        QVERIFY(!qls::dtype_from_name("F8_E9M9"));
        QVERIFY(!qls::dtype_from_name("f32")); // names are case-sensitive, as in the safetensors header
        QVERIFY(qls::dtype_is_float(dtype::bf16) && !qls::dtype_is_float(dtype::i64));
    }

    // ---- bf16 -----------------------------------------------------------------------------------

    void bf16_round_to_nearest_even_ties() {
        struct tie {
            uint32_t f32;
            uint16_t bf16;
        };
        const tie cases[] = {
            {0x3F808000u, 0x3F80u}, // exactly halfway, even below: stays
            {0x3F818000u, 0x3F82u}, // exactly halfway, odd below: rounds up to even
            {0x3F808001u, 0x3F81u}, // just above halfway: up
            {0x3F807FFFu, 0x3F80u}, // just below halfway: down
            {0xBF818000u, 0xBF82u}, // negative tie, odd: away from zero to even
            {0xBF808000u, 0xBF80u}, // negative tie, even: stays
            {0x3F80FFFFu, 0x3F81u}, // near the next value
            {0x7F7F8000u, 0x7F80u}, // tie at the top of the range rounds (to even) into +inf
            {0x7F7F7FFFu, 0x7F7Fu}, // just below: largest finite bf16
            {0x00008000u, 0x0000u}, // subnormal tie, even: to zero
            {0x00018000u, 0x0002u}, // subnormal tie, odd: up
        };
        for (const tie& c : cases)
            QVERIFY2(qls::f32_to_bf16(qls::f32_from_bits(c.f32)) == c.bf16,
                     qPrintable(QString("0x%1 -> 0x%2, want 0x%3")
                                    .arg(c.f32, 8, 16, QChar('0'))
                                    .arg(qls::f32_to_bf16(qls::f32_from_bits(c.f32)), 4, 16, QChar('0'))
                                    .arg(c.bf16, 4, 16, QChar('0'))));
    }

    void bf16_specials() {
        const float inf = std::numeric_limits<float>::infinity();
        QCOMPARE(qls::f32_to_bf16(inf), uint16_t(0x7F80));
        QCOMPARE(qls::f32_to_bf16(-inf), uint16_t(0xFF80));
        QCOMPARE(qls::f32_to_bf16(0.0f), uint16_t(0x0000));
        QCOMPARE(qls::f32_to_bf16(-0.0f), uint16_t(0x8000));
        QVERIFY(std::signbit(qls::bf16_to_f32(0x8000)) && qls::bf16_to_f32(0x8000) == 0.0f);
        QCOMPARE(qls::bf16_to_f32(0x7F80), inf);
        QCOMPARE(qls::bf16_to_f32(0xFF80), -inf);
        // NaNs must not round into infinity: a signalling NaN whose payload sits only in the low 16 bits,
        // and the largest payload (which the +0x7fff bias would carry into the sign bit).
        const uint32_t nans[] = {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0xFFFFFFFFu, 0x7F80FFFFu};
        for (uint32_t u : nans) {
            uint16_t h = qls::f32_to_bf16(qls::f32_from_bits(u));
            QVERIFY2(bf16_is_nan(h),
                     qPrintable(QString("0x%1 -> 0x%2").arg(u, 8, 16, QChar('0')).arg(h, 4, 16, QChar('0'))));
            QCOMPARE(h & 0x8000u, (u >> 16) & 0x8000u); // sign kept
            QVERIFY(h & 0x0040u);                       // quiet
            QVERIFY(std::isnan(qls::bf16_to_f32(h)));
        }
    }

    void bf16_all_values_round_trip() {
        for (uint32_t i = 0; i < 65536; ++i) {
            const uint16_t h = uint16_t(i);
            const float f = qls::bf16_to_f32(h);
            QCOMPARE(qls::f32_bits(f), uint32_t(h) << 16); // widening is exact: the top half of the f32
            const uint16_t back = qls::f32_to_bf16(f);
            if (bf16_is_nan(h)) {
                QVERIFY(std::isnan(f));
                QCOMPARE(back, uint16_t(h | 0x0040u)); // stays NaN: sign and payload kept, quiet bit set
            } else {
                QCOMPARE(back, h);
            }
        }
    }

    // ---- f16 ------------------------------------------------------------------------------------

    void f16_all_values_round_trip() {
        const f16_ref ref = pick_f16_ref();
        for (uint32_t i = 0; i < 65536; ++i) {
            const uint16_t h = uint16_t(i);
            const float f = qls::f16_to_f32(h);
#if QLS_TEST_X86
            if (ref == f16_ref::f16c) {
                const float hw = hw_f16_to_f32(h);
                if (f16_is_nan(h)) QVERIFY(std::isnan(f) && std::isnan(hw));
                else
                    QVERIFY2(qls::f32_bits(f) == qls::f32_bits(hw),
                             qPrintable(QString("f16 0x%1").arg(i, 4, 16, QChar('0'))));
            }
#endif
            const uint16_t back = qls::f32_to_f16(f);
            if (f16_is_nan(h)) {
                QVERIFY(std::isnan(f));
                QVERIFY(f16_is_nan(back));
                QCOMPARE(back & 0x8000u, h & 0x8000u);
            } else {
                QVERIFY2(back == h, qPrintable(QString("f16 0x%1 -> %2 -> 0x%3")
                                                   .arg(i, 4, 16, QChar('0'))
                                                   .arg(double(f), 0, 'g', 9)
                                                   .arg(back, 4, 16, QChar('0'))));
            }
        }
        (void)ref;
    }

    void f16_edge_values() {
        // Exact expectations first (independent of any reference), then the same values against hardware.
        struct c {
            float f;
            uint16_t h;
        };
        const c cases[] = {
            {65504.0f, 0x7BFF},  // largest finite half
            {65519.99f, 0x7BFF}, // just below the rounding boundary
            {65520.0f, 0x7C00},  // halfway to 65536 (= 2^16): ties to even, which is +inf
            {-65520.0f, 0xFC00},
            {1e10f, 0x7C00},
            {std::ldexp(1.0f, -24), 0x0001},                       // smallest subnormal
            {std::ldexp(1.0f, -25), 0x0000},                       // exactly half of it: tie to even zero
            {std::nextafter(std::ldexp(1.0f, -25), 1.0f), 0x0001}, // just above half: up
            {std::ldexp(3.0f, -25), 0x0002},                       // 1.5 ulp: tie to even 2
            {std::ldexp(1.0f, -14), 0x0400},                       // smallest normal
            {std::ldexp(1023.0f, -24), 0x03FF},                    // largest subnormal
            {std::ldexp(2047.0f, -25), 0x0400},     // tie between largest subnormal and smallest normal: even
            {1.0f + std::ldexp(1.0f, -11), 0x3C00}, // tie at 1.0, even: stays
            {1.0f + std::ldexp(3.0f, -11), 0x3C02}, // tie, odd: up
            {-0.0f, 0x8000},
            {0.0f, 0x0000},
            {std::numeric_limits<float>::infinity(), 0x7C00},
            {std::numeric_limits<float>::denorm_min(), 0x0000},
        };
        for (const c& x : cases)
            QVERIFY2(qls::f32_to_f16(x.f) == x.h, qPrintable(QString("%1 -> 0x%2, want 0x%3")
                                                                 .arg(double(x.f), 0, 'g', 12)
                                                                 .arg(qls::f32_to_f16(x.f), 4, 16, QChar('0'))
                                                                 .arg(x.h, 4, 16, QChar('0'))));
        const f16_ref ref = pick_f16_ref();
        if (ref == f16_ref::none) QSKIP("no F16C and no _Float16 in this compiler: the exact cases above ran");
        std::vector<uint32_t> bits;
        for (const c& x : cases) bits.push_back(qls::f32_bits(x.f));
        QCOMPARE(compare_f16(ref, bits), QString());
    }

    void f16_matches_hardware_over_the_interesting_range() {
        const f16_ref ref = pick_f16_ref();
        if (ref == f16_ref::none) QSKIP("no F16C and no _Float16 reference on this machine/compiler");
        qInfo("f32 -> f16 reference: %s", ref == f16_ref::f16c ? "F16C vcvtps2ph (hardware)" : "g++ _Float16 cast");
        // Every f32 whose exponent field is 100..144 (|x| from 2^-27 to below 2^18: all of f16's subnormals,
        // normals, the rounding boundaries at both ends, and the overflow to inf), both signs — 755M values,
        // split across threads; outside that range the result is 0 or inf, covered by the random sample below.
        std::atomic<uint64_t> first_bad{~uint64_t(0)};
        const unsigned nthreads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
        const uint32_t lo = 100u << 23, hi = 145u << 23; // [lo, hi) of the magnitude bits
        auto work = [&](unsigned k) {
            constexpr size_t block = 4096;
            std::vector<float> in(block);
            std::vector<uint16_t> want(block);
            for (uint64_t start = lo + uint64_t(k) * block; start < hi; start += uint64_t(nthreads) * block) {
                for (uint32_t sign : {0u, 0x80000000u}) {
                    for (size_t j = 0; j < block; ++j) in[j] = qls::f32_from_bits(sign | uint32_t(start + j));
                    ref_f32_to_f16(ref, in.data(), want.data(), block);
                    for (size_t j = 0; j < block; ++j)
                        if (qls::f32_to_f16(in[j]) != want[j]) {
                            uint64_t b = sign | (start + j), cur = first_bad.load();
                            while (b < cur && !first_bad.compare_exchange_weak(cur, b)) {
                            }
                            return;
                        }
                }
                if (first_bad.load() != ~uint64_t(0)) return;
            }
        };
        std::vector<std::thread> pool;
        for (unsigned k = 0; k < nthreads; ++k) pool.emplace_back(work, k);
        for (auto& t : pool) t.join();
        if (first_bad.load() != ~uint64_t(0)) QCOMPARE(compare_f16(ref, {uint32_t(first_bad.load())}), QString());

        // 20M uniformly random bit patterns: every exponent, NaNs and infinities included.
        std::mt19937 rng(12345);
        std::vector<uint32_t> bits(1 << 20);
        for (int round = 0; round < 20; ++round) {
            for (auto& b : bits) b = uint32_t(rng());
            QCOMPARE(compare_f16(ref, bits), QString());
        }
    }

    void bulk_conversions() {
        const std::vector<float> src = {1.0f, -2.5f, 1.0f / 3.0f, 65504.0f, -0.0f, 1e-3f, 3.0e38f};
        std::vector<uint16_t> h(src.size()), b(src.size());
        qls::convert_from_f32(h.data(), src.data(), qls::dtype::f16, src.size());
        qls::convert_from_f32(b.data(), src.data(), qls::dtype::bf16, src.size());
        std::vector<float> hf(src.size()), bf(src.size());
        qls::convert_to_f32(hf.data(), h.data(), qls::dtype::f16, src.size());
        qls::convert_to_f32(bf.data(), b.data(), qls::dtype::bf16, src.size());
        for (size_t i = 0; i < src.size(); ++i) {
            QCOMPARE(h[i], qls::f32_to_f16(src[i]));
            QCOMPARE(b[i], qls::f32_to_bf16(src[i]));
            QCOMPARE(qls::f32_bits(hf[i]), qls::f32_bits(qls::f16_to_f32(h[i])));
            QCOMPARE(qls::f32_bits(bf[i]), qls::f32_bits(qls::bf16_to_f32(b[i])));
        }
        QCOMPARE(h[6], uint16_t(0x7C00)); // 3e38 overflows f16
        const int64_t ints[] = {-7, 0, 1 << 24};
        float out[3];
        qls::convert_to_f32(out, ints, qls::dtype::i64, 3);
        QCOMPARE(out[0], -7.0f);
        QCOMPARE(out[2], 16777216.0f);
        const uint8_t u8[] = {0, 255};
        qls::convert_to_f32(out, u8, qls::dtype::u8, 2);
        QCOMPARE(out[1], 255.0f);
        QVERIFY_THROWS_EXCEPTION(qls::error, qls::convert_from_f32(out, src.data(), qls::dtype::i32, 1));
    }

    // ---- tensor / tensor_view -------------------------------------------------------------------

    void shape_helpers() {
        QCOMPARE(qls::shape_numel({}), int64_t(1));
        QCOMPARE(qls::shape_numel({3, 0, 5}), int64_t(0));
        QCOMPARE(qls::shape_numel({2, 3, 4}), int64_t(24));
        QCOMPARE(qls::shape_str({512, 64}), std::string("[512, 64]"));
        QCOMPARE(qls::shape_str({}), std::string("[]"));
        QCOMPARE(qls::contiguous_strides({2, 3, 4}), std::vector<int64_t>({12, 4, 1}));
    }

    void tensor_construction() {
        qls::tensor t(qls::dtype::bf16, {3, 5});
        QCOMPARE(t.numel(), int64_t(15));
        QCOMPARE(t.nbytes(), size_t(30));
        QCOMPARE(t.dim(), int64_t(2));
        QCOMPARE(t.size(-1), int64_t(5));
        QVERIFY(!t.empty());
        QCOMPARE(reinterpret_cast<uintptr_t>(t.raw()) % 64, uintptr_t(0));
        for (int i = 0; i < 15; ++i) QCOMPARE(t.data<uint16_t>()[i], uint16_t(0)); // zero-filled
        QVERIFY(qls::tensor().empty());
        qls::tensor scalar = qls::tensor::from_f32({2.5f}, {});
        QCOMPARE(scalar.numel(), int64_t(1));
        QCOMPARE(scalar.f32()[0], 2.5f);
        QCOMPARE(qls::tensor(qls::dtype::f32, {4, 0}).nbytes(), size_t(0));
        try {
            qls::tensor bad(qls::dtype::f32, {2, -1});
            QFAIL("negative dimension accepted");
        } catch (const qls::error& e) {
            QCOMPARE(e.code(), qls::error_code::invalid_argument);
        }
        QVERIFY_THROWS_EXCEPTION(qls::error, qls::tensor::from_f32({1, 2, 3}, {2, 2}));
        QVERIFY_THROWS_EXCEPTION(qls::error, t.f32()); // wrong dtype for the f32 accessor
    }

    void view_slice_select_reshape() {
        std::vector<float> v(12);
        for (int i = 0; i < 12; ++i) v[size_t(i)] = float(i);
        qls::tensor t = qls::tensor::from_f32(v, {3, 4});
        qls::tensor_view w = t.view();
        QVERIFY(w.is_contiguous());
        QCOMPARE(w.at<float>({2, 3}), 11.0f);

        qls::tensor_view rows = w.slice(0, 1, 3); // rows 1..2
        QCOMPARE(rows.shape, qls::shape_t({2, 4}));
        QVERIFY(rows.is_contiguous());
        QCOMPARE(rows.at<float>({0, 0}), 4.0f);

        qls::tensor_view cols = w.slice(-1, 1, 3); // columns 1..2, negative dim
        QCOMPARE(cols.shape, qls::shape_t({3, 2}));
        QCOMPARE(cols.strides, std::vector<int64_t>({4, 1}));
        QVERIFY(!cols.is_contiguous());
        QCOMPARE(cols.at<float>({2, 1}), 10.0f);
        QCOMPARE(cols.at<float>({0, 0}), 1.0f);

        qls::tensor_view row1 = w.select(0, 1);
        QCOMPARE(row1.shape, qls::shape_t({4}));
        QCOMPARE(row1.ptr<float>()[3], 7.0f);
        qls::tensor_view col2 = w.select(1, 2);
        QCOMPARE(col2.shape, qls::shape_t({3}));
        QCOMPARE(col2.strides, std::vector<int64_t>({4}));
        QCOMPARE(col2.at<float>({2}), 10.0f);

        qls::tensor_view r = w.reshape({2, 6});
        QCOMPARE(r.strides, std::vector<int64_t>({6, 1}));
        QCOMPARE(r.at<float>({1, 0}), 6.0f);
        QVERIFY_THROWS_EXCEPTION(qls::error, cols.reshape({6})); // not contiguous
        QVERIFY_THROWS_EXCEPTION(qls::error, w.reshape({5, 2})); // wrong element count
        QVERIFY_THROWS_EXCEPTION(qls::error, w.slice(0, 2, 4));  // past the end
        QVERIFY_THROWS_EXCEPTION(qls::error, w.select(1, 4));    // index out of range

        // Byte offsets use the element size: a bf16 view steps by 2 bytes.
        qls::tensor b = t.to(qls::dtype::bf16);
        qls::tensor_view bs = b.view().select(1, 3);
        QCOMPARE(qls::bf16_to_f32(bs.at<uint16_t>({1})), 7.0f);
    }

    void clone_copy_reshaped_share_semantics() {
        qls::tensor t = qls::tensor::from_f32({1, 2, 3, 4}, {2, 2});
        qls::tensor shared = t; // copies share storage
        shared.f32()[0] = 10;
        QCOMPARE(t.f32()[0], 10.0f);
        qls::tensor c = t.clone(); // clone copies bytes
        QVERIFY(c.raw() != t.raw());
        c.f32()[1] = 20;
        QCOMPARE(t.f32()[1], 2.0f);
        QCOMPARE(c.f32()[0], 10.0f);
        QCOMPARE(c.shape(), t.shape());
        qls::tensor r = t.reshaped({4});
        QCOMPARE(r.shape(), qls::shape_t({4}));
        QVERIFY(r.raw() == t.raw());
        QVERIFY_THROWS_EXCEPTION(qls::error, t.reshaped({3}));
    }

    void tensor_to_dtype() {
        const std::vector<float> v = {1.0f / 3.0f, -65504.0f, 1e-5f, 3.0e38f, -0.0f, 0.1f};
        qls::tensor t = qls::tensor::from_f32(v, {2, 3});
        qls::tensor b = t.to(qls::dtype::bf16);
        qls::tensor h = t.to(qls::dtype::f16);
        qls::tensor d = t.to(qls::dtype::f64);
        QCOMPARE(b.type(), qls::dtype::bf16);
        QCOMPARE(b.shape(), t.shape());
        for (size_t i = 0; i < v.size(); ++i) {
            QCOMPARE(b.data<uint16_t>()[i], qls::f32_to_bf16(v[i]));
            QCOMPARE(h.data<uint16_t>()[i], qls::f32_to_f16(v[i]));
            QCOMPARE(d.data<double>()[i], double(v[i]));
        }
        qls::tensor back = b.to(qls::dtype::f32);
        QCOMPARE(back.f32()[0], qls::bf16_to_f32(qls::f32_to_bf16(v[0])));
        qls::tensor b2h = b.to(qls::dtype::f16); // neither side f32: goes through f32
        for (size_t i = 0; i < v.size(); ++i)
            QCOMPARE(b2h.data<uint16_t>()[i], qls::f32_to_f16(qls::bf16_to_f32(b.data<uint16_t>()[i])));
        qls::tensor same = t.to(qls::dtype::f32); // same dtype: a clone, not shared
        QVERIFY(same.raw() != t.raw());
        QVERIFY(std::memcmp(same.raw(), t.raw(), t.nbytes()) == 0);
        QVERIFY_THROWS_EXCEPTION(qls::error, t.to(qls::dtype::i32));
    }
};

QTEST_APPLESS_MAIN(tst_dtype)
#include "tst_dtype.moc"
