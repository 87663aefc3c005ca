// Qt Test: NF4 codebook and encoder, 8-bit dynamic maps and blockwise quantization, NF4 + double quantization and pre-quantized bnb checkpoints, byte for byte against the real bitsandbytes.
// Fixtures: tests/data/bnb/*.safetensors and llama2_7b_nf4_bytes.json, written by tests/data/bnb/make_bnb_fixtures.py
// with bitsandbytes 0.50.2 (CUDA kernels, H100) — see that script's header and make_bnb_fixtures.log for versions.
#include "testutil.h"

#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/quant.h"
#include "qls/safetensors.h"
#include "qls_kernels/nf4_codebook.h"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

using json = nlohmann::json;

namespace {

std::string data_path(const std::string& name) { return std::string(QLS_SOURCE_DIR) + "/tests/data/bnb/" + name; }

const qls::safetensors_file& nf4_fx() {
    static const qls::safetensors_file f = qls::safetensors_file::open(data_path("nf4.safetensors"));
    return f;
}
const qls::safetensors_file& d8_fx() {
    static const qls::safetensors_file f = qls::safetensors_file::open(data_path("dynamic8.safetensors"));
    return f;
}

std::vector<float> f32v(const qls::safetensors_file& f, const std::string& name) {
    qls::tensor t = f.read(name);
    if (t.type() != qls::dtype::f32) throw std::runtime_error(name + " is not F32");
    return std::vector<float>(t.f32(), t.f32() + t.numel());
}
std::vector<uint8_t> u8v(const qls::safetensors_file& f, const std::string& name) {
    qls::tensor t = f.read(name);
    if (t.type() != qls::dtype::u8) throw std::runtime_error(name + " is not U8");
    return std::vector<uint8_t>(t.data<uint8_t>(), t.data<uint8_t>() + t.numel());
}

// Distance in units in the last place between two finite floats (0 when bit-identical; +0 and -0 are 1 apart).
int64_t ulp_distance(float a, float b) {
    auto key = [](float x) {
        int32_t i;
        std::memcpy(&i, &x, 4);
        return i < 0 ? int64_t(INT32_MIN) - int64_t(i) - 1 : int64_t(i);
    };
    return std::llabs(key(a) - key(b));
}

// First index where two float vectors differ bitwise, or -1; a message for QVERIFY2.
QString bitwise_diff(const std::vector<float>& ours, const std::vector<float>& theirs, const char* what) {
    if (ours.size() != theirs.size())
        return QString("%1: size %2 vs bnb %3").arg(what).arg(ours.size()).arg(theirs.size());
    size_t count = 0, first = 0;
    for (size_t i = 0; i < ours.size(); ++i)
        if (qls::f32_bits(ours[i]) != qls::f32_bits(theirs[i]) && count++ == 0) first = i;
    if (count == 0) return {};
    return QString("%1: %2 of %3 differ, first at %4: ours %5 vs bnb %6")
        .arg(what)
        .arg(count)
        .arg(ours.size())
        .arg(first)
        .arg(double(ours[first]), 0, 'g', 9)
        .arg(double(theirs[first]), 0, 'g', 9);
}
QString bytes_diff(const std::vector<uint8_t>& ours, const std::vector<uint8_t>& theirs, const char* what) {
    if (ours.size() != theirs.size())
        return QString("%1: size %2 vs bnb %3").arg(what).arg(ours.size()).arg(theirs.size());
    size_t count = 0, first = 0;
    for (size_t i = 0; i < ours.size(); ++i)
        if (ours[i] != theirs[i] && count++ == 0) first = i;
    if (count == 0) return {};
    return QString("%1: %2 of %3 differ, first at %4: ours 0x%5 vs bnb 0x%6")
        .arg(what)
        .arg(count)
        .arg(ours.size())
        .arg(first)
        .arg(ours[first], 2, 16, QChar('0'))
        .arg(theirs[first], 2, 16, QChar('0'));
}
#define QLS_EXPECT_SAME(msg) QVERIFY2((msg).isEmpty(), qPrintable(msg))

struct fx_case {
    std::string id;
    int64_t rows, cols;
};
// a, b: random N(0, 0.05^2) weights; c: odd n with an all-zero first block; d: crafted values that x * (1/absmax)
// (bnb) and x / absmax code differently, then a one-element all-zero last block (see make_bnb_fixtures.py).
constexpr int kNumCases = 4;
const fx_case kCases[kNumCases] = {{"a", 96, 200}, {"b", 64, 128}, {"c", 33, 37}, {"d", 3, 43}};

// bnb's quantized tensors of one fixture case as an nf4_tensor (what read_bnb_nf4 would build).
qls::nf4_tensor nf4_from_bnb(const fx_case& c, bool dq) {
    const auto& f = nf4_fx();
    const std::string p = c.id + (dq ? ".dq." : ".plain.");
    qls::nf4_tensor t;
    t.rows = c.rows;
    t.cols = c.cols;
    t.blocksize = 64;
    t.packed = u8v(f, p + "packed");
    t.double_quant = dq;
    if (dq) {
        t.absmax_codes = u8v(f, p + "absmax");
        t.absmax_scale = f32v(f, p + "nested_absmax");
        t.absmax_offset = f32v(f, p + "offset").at(0);
        const std::vector<float> m = f32v(f, p + "nested_quant_map");
        std::copy(m.begin(), m.end(), t.nested_map.begin());
    } else {
        t.absmax = f32v(f, p + "absmax");
    }
    return t;
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

// A tiny LLaMA config.json whose down_proj is [rows, cols] = [hidden_size, intermediate_size].
std::string tiny_config(int64_t rows, int64_t cols) {
    json j = {{"model_type", "llama"},  {"hidden_size", rows},      {"intermediate_size", cols},
              {"num_hidden_layers", 1}, {"num_attention_heads", 1}, {"head_dim", 2},
              {"vocab_size", 16},       {"rms_norm_eps", 1e-5},     {"rope_theta", 10000.0}};
    return j.dump(2);
}

const std::string kWeight = "model.layers.0.mlp.down_proj.weight";

// The state_dict tensors of fixture case c (mode plain/dq) renamed to kWeight + suffix, plus a plain norm weight.
std::vector<std::pair<std::string, qls::tensor>> bnb_state_dict(const fx_case& c, bool dq) {
    const auto& f = nf4_fx();
    const std::string prefix = "sd." + c.id + (dq ? ".dq.weight" : ".plain.weight");
    std::vector<std::pair<std::string, qls::tensor>> out;
    for (const auto& e : f.entries())
        if (e.name.rfind(prefix, 0) == 0) out.emplace_back(kWeight + e.name.substr(prefix.size()), f.read(e.name));
    out.emplace_back("model.norm.weight", qls::tensor::from_f32(std::vector<float>(size_t(c.rows), 1.0f), {c.rows}));
    return out;
}

// Runs f, which must throw qls::error with `code` and a message containing every part; else a description.
QString expect_error(const std::function<void()>& f, qls::error_code code, const std::vector<std::string>& parts) {
    try {
        f();
    } catch (const qls::error& e) {
        const std::string msg = e.what();
        if (e.code() != code)
            return QString("wrong code %1 (want %2): %3")
                .arg(qls::error_code_name(e.code()), qls::error_code_name(code), QString::fromStdString(msg));
        for (const std::string& p : parts)
            if (msg.find(p) == std::string::npos)
                return QString("message lacks \"%1\": %2").arg(QString::fromStdString(p), QString::fromStdString(msg));
        if (e.hint().empty()) return "no hint: " + QString::fromStdString(msg);
        return {};
    } catch (const std::exception& e) {
        return QString("not a qls::error: ") + e.what();
    }
    return "no error thrown";
}

} // namespace

class tst_quant : public QObject {
    Q_OBJECT

private slots:
    // ---- NF4 codebook --------------------------------------------------------------------------------------------
    void codebook() {
        // bnb csrc/kernels.cu nf4_dequantization_lut / functional.py get_4bit_type("nf4"), as printed there.
        const double expected[16] = {-1.0,
                                     -0.6961928009986877,
                                     -0.5250730514526367,
                                     -0.39491748809814453,
                                     -0.28444138169288635,
                                     -0.18477343022823334,
                                     -0.09105003625154495,
                                     0.0,
                                     0.07958029955625534,
                                     0.16093020141124725,
                                     0.24611230194568634,
                                     0.33791524171829224,
                                     0.44070982933044434,
                                     0.5626170039176941,
                                     0.7229568362236023,
                                     1.0};
        const std::vector<float> bnb_map = f32v(nf4_fx(), "quant_map"); // the tensor bnb's QuantState holds
        QCOMPARE(bnb_map.size(), size_t(16));
        for (unsigned i = 0; i < 16; ++i) {
            // each printed value is a float32 exactly (widened to double)
            QCOMPARE(double(qls_kernels::nf4_code[i]), expected[i]);
            QCOMPARE(qls::f32_bits(qls_kernels::nf4_code[i]), qls::f32_bits(bnb_map[i]));
            QCOMPARE(qls::f32_bits(qls_kernels::nf4_decode(i)), qls::f32_bits(qls_kernels::nf4_code[i]));
            QCOMPARE(qls::f32_bits(qls_kernels::nf4_decode(i + 16)),
                     qls::f32_bits(qls_kernels::nf4_code[i])); // low 4 bits
            if (i > 0) QVERIFY(qls_kernels::nf4_code[i - 1] < qls_kernels::nf4_code[i]);
        }
        // 8 positive, 7 negative, an exact zero at index 7 (create_normal_map(use_extra_value=True)).
        QCOMPARE(qls_kernels::nf4_code[7], 0.0f);
        // Each threshold of bnb's decision tree is the float nearest the exact midpoint (code[k] + code[k+1]) / 2
        // (a 25-bit value, exact in double); where the midpoint is a tie between two floats (7 of 15), either
        // neighbour — see nf4_codebook.h.
        const float inf = std::numeric_limits<float>::infinity();
        int ties = 0;
        for (int k = 0; k < 15; ++k) {
            const double mid = (double(qls_kernels::nf4_code[k]) + double(qls_kernels::nf4_code[k + 1])) / 2.0;
            float lo = float(mid);
            if (double(lo) > mid) lo = std::nextafter(lo, -inf);
            const float hi = double(lo) == mid ? lo : std::nextafter(lo, inf);
            const double dlo = mid - double(lo), dhi = double(hi) - mid;
            const float t = qls_kernels::nf4_threshold[k];
            if (lo == hi) QCOMPARE(qls::f32_bits(t), qls::f32_bits(lo)); // the midpoint is a float (6 of them)
            else if (dlo < dhi) QCOMPARE(qls::f32_bits(t), qls::f32_bits(lo));
            else if (dhi < dlo) QCOMPARE(qls::f32_bits(t), qls::f32_bits(hi));
            else {
                QVERIFY(t == lo || t == hi);
                ++ties;
            }
            QVERIFY(qls_kernels::nf4_code[k] < t && t < qls_kernels::nf4_code[k + 1]);
        }
        QCOMPARE(ties, 7);
    }

    void nf4_encode_thresholds() {
        const float inf = std::numeric_limits<float>::infinity();
        for (unsigned i = 0; i < 16; ++i) QCOMPARE(unsigned(qls_kernels::nf4_encode(qls_kernels::nf4_code[i])), i);
        for (unsigned k = 0; k < 15; ++k) {
            const float t = qls_kernels::nf4_threshold[k];
            // bnb compares `x > t`: a value exactly on a threshold goes to the lower code.
            QCOMPARE(unsigned(qls_kernels::nf4_encode(t)), k);
            QCOMPARE(unsigned(qls_kernels::nf4_encode(std::nextafter(t, inf))), k + 1);
            QCOMPARE(unsigned(qls_kernels::nf4_encode(std::nextafter(t, -inf))), k);
            // and it is the nearest code on both sides (round to nearest)
            const float above = std::nextafter(t, inf), below = std::nextafter(t, -inf);
            QVERIFY(std::fabs(above - qls_kernels::nf4_code[k + 1]) <= std::fabs(above - qls_kernels::nf4_code[k]));
            QVERIFY(std::fabs(below - qls_kernels::nf4_code[k]) <= std::fabs(below - qls_kernels::nf4_code[k + 1]));
        }
        QCOMPARE(unsigned(qls_kernels::nf4_encode(std::nanf(""))), 0u); // every comparison false → 0b0000
        QCOMPARE(unsigned(qls_kernels::nf4_encode(-0.0f)), 7u);
        QCOMPARE(unsigned(qls_kernels::nf4_encode(inf)), 15u);
        QCOMPARE(unsigned(qls_kernels::nf4_encode(-inf)), 0u);
        QCOMPARE(unsigned(qls_kernels::nf4_encode(1.5f)), 15u);
    }

    // ---- NF4 error bounds ---------------------------------------------------------------------------------------
    void nf4_error_bounds_data() {
        QTest::addColumn<bool>("dq");
        QTest::newRow("plain") << false;
        QTest::newRow("double_quant") << true;
    }
    void nf4_error_bounds() {
        QFETCH(bool, dq);
        const int64_t rows = 1024, cols = 1024, n = rows * cols;
        std::mt19937 rng(42);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> w(static_cast<size_t>(n));
        for (float& v : w) v = normal(rng);
        const qls::nf4_tensor t = qls::nf4_quantize(w.data(), rows, cols, dq);
        QCOMPARE(t.packed.size(), size_t(n / 2));
        QCOMPARE(t.nblocks(), n / 64);
        std::vector<float> deq(static_cast<size_t>(n));
        qls::nf4_dequantize(t, deq.data());
        const std::vector<float> absmax = qls::nf4_absmax(t);

        // Exact block absmax (plain) / its reconstruction error (double quant) — bounded by the signed dynamic
        // map's largest half gap times the nested scale.
        std::vector<float> true_absmax(size_t(t.nblocks()), 0.0f);
        for (int64_t i = 0; i < n; ++i)
            true_absmax[size_t(i / 64)] = std::max(true_absmax[size_t(i / 64)], std::fabs(w[size_t(i)]));
        const std::array<float, 256> dmap = qls::dynamic_map(true);
        float map_half_gap = 0.0f;
        for (size_t k = 0; k + 1 < 256; ++k) map_half_gap = std::max(map_half_gap, (dmap[k + 1] - dmap[k]) / 2);
        for (int64_t b = 0; b < t.nblocks(); ++b) {
            if (!dq) {
                QCOMPARE(absmax[size_t(b)], true_absmax[size_t(b)]);
            } else {
                const float scale = t.absmax_scale[size_t(b / 256)];
                QVERIFY2(std::fabs(absmax[size_t(b)] - true_absmax[size_t(b)]) <=
                             map_half_gap * scale * 1.0001f + 1e-6f,
                         qPrintable(QString("block %1").arg(b)));
            }
        }

        // Per element: round to nearest code, so |w - deq| <= absmax * (largest half gap of the codebook) =
        // absmax * (-0.6961928 - -1) / 2 = absmax * 0.1519036, plus |code| * |absmax error| with double quant.
        float nf4_half_gap = 0.0f;
        for (int k = 0; k < 15; ++k)
            nf4_half_gap = std::max(nf4_half_gap, (qls_kernels::nf4_code[k + 1] - qls_kernels::nf4_code[k]) / 2);
        QVERIFY(std::fabs(nf4_half_gap - 0.1519036f) < 1e-6f);
        double sum_err = 0, sum_rel = 0, sum_rel_absmax = 0;
        for (int64_t i = 0; i < n; ++i) {
            const size_t b = size_t(i / 64);
            const float err = std::fabs(w[size_t(i)] - deq[size_t(i)]);
            const float bound = true_absmax[b] * nf4_half_gap * 1.000001f + std::fabs(absmax[b] - true_absmax[b]);
            if (err > bound)
                QFAIL(qPrintable(QString("element %1: |w - deq| = %2 > bound %3").arg(i).arg(err).arg(bound)));
            sum_err += err;
            sum_rel += err / (std::fabs(w[size_t(i)]) + 1e-8);
            sum_rel_absmax += err / true_absmax[b];
        }
        const double mean_err = sum_err / double(n), mean_rel = sum_rel / double(n);
        const double mean_rel_absmax = sum_rel_absmax / double(n);
        qInfo("NF4 %s on N(0,1) [1024,1024]: mean |err| %.5f, mean |err|/|w| %.4f, mean |err|/absmax %.5f",
              dq ? "+DQ" : "plain", mean_err, mean_rel, mean_rel_absmax);
        // bnb tests/test_functional.py test_4bit_quant (randn(1024, 1024), blocksize <= 64): err.mean() < 0.1 and
        // relerr.mean() < 0.28 — the same criteria here.
        QVERIFY(mean_err < 0.1);
        QVERIFY(mean_rel < 0.28);
        // Mean error relative to the block absmax: measured 0.0283 (plain and DQ alike) with this seed; a uniform
        // error within each code interval would give about a quarter of the mean gap (0.133 / 4 = 0.033), the bound.
        QVERIFY(mean_rel_absmax < 0.033);
    }

    // ---- NF4 against bnb, byte for byte -------------------------------------------------------------------------
    void nf4_matches_bnb_data() {
        QTest::addColumn<int>("which");
        QTest::addColumn<bool>("dq");
        for (int i = 0; i < kNumCases; ++i) {
            QTest::newRow((kCases[i].id + ".plain").c_str()) << i << false;
            QTest::newRow((kCases[i].id + ".dq").c_str()) << i << true;
        }
    }
    void nf4_matches_bnb() {
        QFETCH(int, which);
        QFETCH(bool, dq);
        const fx_case& c = kCases[which];
        const auto& f = nf4_fx();
        const std::string p = c.id + (dq ? ".dq." : ".plain.");
        const std::vector<float> w = f32v(f, "w." + c.id);
        QCOMPARE(int64_t(w.size()), c.rows * c.cols);
        const qls::nf4_tensor ours = qls::nf4_quantize(w.data(), c.rows, c.cols, dq);
        const qls::nf4_tensor bnb = nf4_from_bnb(c, dq);

        // Packed 4-bit codes: identical (including the zero-padded low nibble of an odd n and an all-zero block).
        QLS_EXPECT_SAME(bytes_diff(ours.packed, bnb.packed, "packed"));
        if (c.id == "d") {
            // The crafted case really separates bnb's x * (1/absmax) from x / absmax: dividing codes some
            // elements differently from bnb, and the one-element zero block packs as 0x00 (NaN codes, padding too).
            const std::vector<float> am = f32v(f, c.id + ".plain.absmax");
            int differ = 0;
            for (size_t i = 0; i < w.size(); ++i) {
                const uint8_t byte = bnb.packed[i / 2];
                const unsigned q = i % 2 == 0 ? unsigned(byte >> 4) : unsigned(byte & 0x0F);
                differ += qls_kernels::nf4_encode(w[i] / am[i / 64]) != q;
            }
            qInfo("case d: %d elements code differently when divided by absmax", differ);
            QVERIFY(differ >= 2);
            QCOMPARE(unsigned(bnb.packed.back()), 0u);
        }
        const std::vector<float> bnb_plain_absmax = f32v(f, c.id + ".plain.absmax");
        std::vector<float> deq(w.size());
        if (!dq) {
            QLS_EXPECT_SAME(bitwise_diff(ours.absmax, bnb.absmax, "absmax"));
        } else {
            // The nested map is bnb's create_dynamic_map(signed=True), bit for bit.
            QLS_EXPECT_SAME(bitwise_diff(std::vector<float>(ours.nested_map.begin(), ours.nested_map.end()),
                                         std::vector<float>(bnb.nested_map.begin(), bnb.nested_map.end()),
                                         "nested map"));
            // Given bnb's own offset, our 8-bit nested quantization reproduces bnb's codes and scales exactly.
            std::vector<float> centered(bnb_plain_absmax.size());
            for (size_t i = 0; i < centered.size(); ++i) centered[i] = bnb_plain_absmax[i] - bnb.absmax_offset;
            std::vector<uint8_t> codes(centered.size());
            std::vector<float> scale(qls::blockwise_blocks(centered.size(), 256));
            qls::blockwise8_quantize(centered.data(), centered.size(), 256, ours.nested_map, codes.data(),
                                     scale.data());
            QLS_EXPECT_SAME(bytes_diff(codes, bnb.absmax_codes, "nested codes (bnb offset)"));
            QLS_EXPECT_SAME(bitwise_diff(scale, bnb.absmax_scale, "nested absmax (bnb offset)"));
            // Our offset: torch's CUDA mean sums in float32 in a GPU-specific tree order, we sum in double; the
            // results are bit-identical for cases a and b and 2 ulps apart for case c (20 blocks).
            const int64_t d = ulp_distance(ours.absmax_offset, bnb.absmax_offset);
            qInfo("case %s: offset ours %.9g, bnb %.9g (%lld ulp)", c.id.c_str(), double(ours.absmax_offset),
                  double(bnb.absmax_offset), (long long)d);
            QVERIFY2(d <= 2, qPrintable(QString("offset %1 ulps from bnb's").arg(d)));
            if (c.id == "a" || c.id == "b") QCOMPARE(d, int64_t(0));
            // With our offset the codes still equal bnb's on every fixture; the scales follow the offset (<= 2 ulp).
            QLS_EXPECT_SAME(bytes_diff(ours.absmax_codes, bnb.absmax_codes, "nested codes"));
            QCOMPARE(ours.absmax_scale.size(), bnb.absmax_scale.size());
            for (size_t i = 0; i < ours.absmax_scale.size(); ++i)
                QVERIFY(ulp_distance(ours.absmax_scale[i], bnb.absmax_scale[i]) <= 2);
            if (d == 0) {
                QLS_EXPECT_SAME(bitwise_diff(ours.absmax_scale, bnb.absmax_scale, "nested absmax"));
                QLS_EXPECT_SAME(bitwise_diff(qls::nf4_absmax(ours), f32v(f, p + "absmax_deq"),
                                             "absmax (ours, rebuilt)"));
                qls::nf4_dequantize(ours, deq.data());
                QLS_EXPECT_SAME(bitwise_diff(deq, f32v(f, p + "deq"), "dequantized (ours)"));
            }
            // Reconstructing bnb's absmax from bnb's nested state: bit for bit (code * scale, then + offset).
            QLS_EXPECT_SAME(bitwise_diff(qls::nf4_absmax(bnb), f32v(f, p + "absmax_deq"), "absmax (bnb state)"));
        }
        if (!dq) {
            qls::nf4_dequantize(ours, deq.data());
            QLS_EXPECT_SAME(bitwise_diff(deq, f32v(f, p + "deq"), "dequantized (ours)"));
        }
        // Our dequantization of bnb's bytes equals bnb's dequantize_4bit output bit for bit.
        qls::nf4_dequantize(bnb, deq.data());
        QLS_EXPECT_SAME(bitwise_diff(deq, f32v(f, p + "deq"), "dequantized (bnb bytes)"));

        // Storage size = the bytes of the tensors bnb keeps (packed, absmax, nested absmax, maps, offset).
        size_t bnb_bytes = bnb.packed.size() + 16 * 4;
        bnb_bytes += dq ? bnb.absmax_codes.size() + bnb.absmax_scale.size() * 4 + 256 * 4 + 4 : bnb.absmax.size() * 4;
        QCOMPARE(ours.nbytes(), bnb_bytes);
        QCOMPARE(bnb.nbytes(), bnb_bytes);
    }

    void nf4_invalid_arguments() {
        const std::vector<float> w(64, 1.0f);
        QLS_EXPECT_SAME(expect_error([&] { qls::nf4_quantize(w.data(), 1, 64, false, 48); },
                                     qls::error_code::invalid_argument, {"blocksize 48"}));
        QLS_EXPECT_SAME(expect_error([&] { qls::nf4_quantize(w.data(), 0, 64, false); },
                                     qls::error_code::invalid_argument, {"[0, 64]"}));
        qls::nf4_tensor t = qls::nf4_quantize(w.data(), 1, 64, false);
        t.packed.pop_back();
        std::vector<float> out(64);
        QLS_EXPECT_SAME(expect_error([&] { qls::nf4_dequantize(t, out.data()); }, qls::error_code::invalid_argument,
                                     {"packed"}));
    }

    // ---- 8-bit dynamic maps and blockwise quantization ----------------------------------------------------------
    void dynamic_maps_match_bnb() {
        const auto adam = qls::safetensors_file::open(data_path("adamw8bit.safetensors"));
        for (bool is_signed : {true, false}) {
            const std::array<float, 256> m = qls::dynamic_map(is_signed);
            const std::vector<float> ours(m.begin(), m.end());
            QLS_EXPECT_SAME(bitwise_diff(ours, f32v(d8_fx(), is_signed ? "map.signed" : "map.unsigned"),
                                         is_signed ? "signed map" : "unsigned map"));
            QLS_EXPECT_SAME(bitwise_diff(ours, f32v(adam, is_signed ? "qmap1" : "qmap2"), "optimizer qmap"));
            for (size_t i = 1; i < 256; ++i) QVERIFY(m[i - 1] < m[i]);
            QCOMPARE(m[255], 1.0f);
        }
        QCOMPARE(qls::dynamic_map(false)[0], 0.0f);
        QCOMPARE(qls::dynamic_map(true)[0], -0.99296875f);
    }

    void blockwise8_matches_bnb_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<bool>("is_signed");
        QTest::newRow("signed") << "signed" << true;
        QTest::newRow("unsigned") << "unsigned" << false;
        QTest::newRow("ties_signed") << "ties_signed" << true;
        QTest::newRow("ties_unsigned") << "ties_unsigned" << false;
        QTest::newRow("recip_signed") << "recip_signed" << true;
        QTest::newRow("recip_unsigned") << "recip_unsigned" << false;
    }
    void blockwise8_matches_bnb() {
        QFETCH(QString, name);
        QFETCH(bool, is_signed);
        const std::string k = name.toStdString();
        const auto& f = d8_fx();
        const std::vector<float> x = f32v(f, "x." + k);
        const std::array<float, 256> map = qls::dynamic_map(is_signed);
        std::vector<uint8_t> codes(x.size());
        std::vector<float> absmax(qls::blockwise_blocks(x.size(), 256));
        qls::blockwise8_quantize(x.data(), x.size(), 256, map, codes.data(), absmax.data());
        const std::vector<uint8_t> bnb_codes = u8v(f, k + ".codes");
        QLS_EXPECT_SAME(bitwise_diff(absmax, f32v(f, k + ".absmax"), "absmax"));
        if (k.rfind("recip_", 0) != 0) {
            QLS_EXPECT_SAME(bytes_diff(codes, bnb_codes, "codes"));
        } else {
            // Crafted blocks (absmax 0.0123, 0.7, 3.3) of values near code midpoints * absmax.
            // Blocks 1 and 2: bnb multiplies by its reciprocal of the absmax, here equal to fl(1/absmax): our codes
            // are bnb's, and dividing by the absmax instead would code many of them differently.
            const std::vector<uint8_t> ours12(codes.begin() + 256, codes.end());
            const std::vector<uint8_t> bnb12(bnb_codes.begin() + 256, bnb_codes.end());
            QLS_EXPECT_SAME(bytes_diff(ours12, bnb12, "codes (blocks 1, 2)"));
            int divided_differ = 0;
            for (size_t i = 256; i < x.size(); ++i)
                divided_differ += qls::blockwise8_encode(x[i] / absmax[i / 256], map) != bnb_codes[i];
            qInfo("%s: dividing by absmax would change %d of bnb's codes in blocks 1-2", k.c_str(), divided_differ);
            QVERIFY(divided_differ >= 60);
            // Block 0 documents the one known difference: bnb's CUDA build uses --use_fast_math, so its
            // 1.0f / absmax is the GPU's approximate reciprocal (rcp.approx, <= 1 ulp). For absmax 0.0123f it is
            // fl(1/absmax) - 1 ulp = 81.30081f; with that reciprocal our encoder reproduces bnb's block exactly,
            // while our correctly rounded one codes the 138 crafted values one step differently.
            const float r_rn = 1.0f / absmax[0];
            const float r_gpu = std::nextafter(r_rn, 0.0f);
            int ours_differ = 0;
            for (size_t i = 0; i < 256; ++i) {
                QCOMPARE(unsigned(qls::blockwise8_encode(x[i] * r_gpu, map)), unsigned(bnb_codes[i]));
                ours_differ += codes[i] != bnb_codes[i];
                QVERIFY(std::abs(int(codes[i]) - int(bnb_codes[i])) <= 1);
            }
            qInfo("%s: block 0 (absmax %.9g, GPU reciprocal %.9g vs %.9g): %d codes differ by one step", k.c_str(),
                  double(absmax[0]), double(r_gpu), double(r_rn), ours_differ);
            QCOMPARE(ours_differ, 138);
            codes = bnb_codes; // dequantize bnb's codes below
        }
        std::vector<float> deq(x.size());
        qls::blockwise8_dequantize(codes.data(), absmax.data(), x.size(), 256, map, deq.data());
        QLS_EXPECT_SAME(bitwise_diff(deq, f32v(f, k + ".deq"), "dequantized"));
        // Round to nearest: |x - deq| <= absmax * (largest half gap of the map), per element, up to float rounding
        // (the crafted values sit on midpoints). Negative values cannot be represented by the unsigned map (the
        // crafted unsigned blocks have some; they code to 0 in bnb and here alike).
        float half_gap = 0.0f;
        for (size_t i = 0; i + 1 < 256; ++i) half_gap = std::max(half_gap, (map[i + 1] - map[i]) / 2);
        for (size_t i = 0; i < x.size(); ++i) {
            if (!is_signed && x[i] < 0) {
                QCOMPARE(unsigned(codes[i]), 0u);
                continue;
            }
            QVERIFY2(std::fabs(x[i] - deq[i]) <= absmax[i / 256] * half_gap * 1.0001f,
                     qPrintable(QString("element %1: x %2 deq %3").arg(i).arg(x[i]).arg(deq[i])));
        }
    }

    void blockwise8_encode_rules() {
        const std::array<float, 256> m = qls::dynamic_map(true);
        for (unsigned i = 0; i < 256; ++i) QCOMPARE(unsigned(qls::blockwise8_encode(m[i], m)), i);
        QCOMPARE(unsigned(qls::blockwise8_encode(std::nanf(""), m)), 0u);
        QCOMPARE(unsigned(qls::blockwise8_encode(2.0f, m)), 255u);
        QCOMPARE(unsigned(qls::blockwise8_encode(-2.0f, m)), 0u);
        // An all-zero block: absmax 0, 0 * (1/0) = NaN, every code 0 — as bnb stores it; dequantizes to -0.
        std::vector<float> x(300, 0.0f);
        x[299] = 0.5f;
        std::vector<uint8_t> codes(300);
        std::vector<float> absmax(2);
        qls::blockwise8_quantize(x.data(), x.size(), 256, m, codes.data(), absmax.data());
        QCOMPARE(absmax[0], 0.0f);
        QCOMPARE(absmax[1], 0.5f);
        for (int i = 0; i < 256; ++i) QCOMPARE(unsigned(codes[size_t(i)]), 0u);
        QCOMPARE(unsigned(codes[299]), 255u);
        QLS_EXPECT_SAME(
            expect_error([&] { qls::blockwise8_quantize(x.data(), x.size(), 0, m, codes.data(), absmax.data()); },
                         qls::error_code::invalid_argument, {"blocksize"}));
    }

    // ---- storage size vs bnb's QuantState on the Llama-2-7B shapes ----------------------------------------------
    void nf4_storage_bytes_llama2_7b() {
        std::ifstream in(data_path("llama2_7b_nf4_bytes.json"));
        QVERIFY(in.good());
        const json j = json::parse(in);
        int64_t layer = 0;
        for (const auto& [label, e] : j.at("per_shape").items()) {
            const int64_t numel = e.at("numel").get<int64_t>();
            const auto& comp = e.at("components_bytes");
            QCOMPARE(int64_t(qls::nf4_storage_bytes(numel, true)), e.at("total_bytes").get<int64_t>());
            // components: packed + u8 absmax + fp32 nested absmax + maps + offset
            QCOMPARE(comp.at("weight_packed").get<int64_t>(), (numel + 1) / 2);
            QCOMPARE(comp.at("absmax_u8").get<int64_t>(), (numel + 63) / 64);
            QCOMPARE(comp.at("nested_absmax_f32").get<int64_t>(), ((numel + 63) / 64 + 255) / 256 * 4);
            QCOMPARE(comp.at("quant_map_f32").get<int64_t>(), int64_t(64));
            QCOMPARE(comp.at("nested_quant_map_f32").get<int64_t>(), int64_t(1024));
            QCOMPARE(comp.at("nested_offset_f32").get<int64_t>(), int64_t(4));
            const int64_t per_layer = label.rfind("q_k_v_o", 0) == 0 ? 4 : label.rfind("gate_up", 0) == 0 ? 2 : 1;
            layer += per_layer * int64_t(qls::nf4_storage_bytes(numel, true));
        }
        QCOMPARE(layer, j.at("linear_nf4_dq_bytes_per_layer").get<int64_t>());
        QCOMPARE(32 * layer, j.at("linear_nf4_dq_bytes_all_layers").get<int64_t>());
        // 4.127 bits per parameter (anchors §2.2) plus the per-tensor maps.
        const int64_t params = 32 * (4LL * 4096 * 4096 + 3LL * 11008 * 4096);
        const double bits = 8.0 * double(32 * layer) / double(params);
        QVERIFY(bits > 4.127 && bits < 4.128);
    }

    // ---- pre-quantized bnb checkpoints --------------------------------------------------------------------------
    void prequantized_checkpoint_data() {
        QTest::addColumn<int>("which");
        QTest::addColumn<bool>("dq");
        for (int i = 0; i < kNumCases; ++i) {
            QTest::newRow((kCases[i].id + ".plain").c_str()) << i << false;
            QTest::newRow((kCases[i].id + ".dq").c_str()) << i << true;
        }
    }
    void prequantized_checkpoint() {
        QFETCH(int, which);
        QFETCH(bool, dq);
        const fx_case& c = kCases[which];
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const std::string dir = tmp.path().toStdString();
        write_text(dir + "/config.json", tiny_config(c.rows, c.cols));
        qls::safetensors_save(dir + "/model.safetensors", bnb_state_dict(c, dq));

        const qls::hf_checkpoint ck = qls::hf_checkpoint::open(dir);
        QVERIFY(qls::bnb_nf4_present(ck, kWeight));
        QVERIFY(!qls::bnb_nf4_present(ck, "model.norm.weight"));
        const qls::nf4_tensor t = qls::read_bnb_nf4(ck, kWeight, ck.config().hidden_size,
                                                    ck.config().intermediate_size);
        QCOMPARE(t.rows, c.rows);
        QCOMPARE(t.cols, c.cols);
        QCOMPARE(t.blocksize, 64);
        QCOMPARE(t.double_quant, dq);
        const qls::nf4_tensor bnb = nf4_from_bnb(c, dq);
        QLS_EXPECT_SAME(bytes_diff(t.packed, bnb.packed, "packed"));
        if (dq) {
            QCOMPARE(t.nested_blocksize, 256);
            QCOMPARE(qls::f32_bits(t.absmax_offset), qls::f32_bits(bnb.absmax_offset)); // via the JSON's repr
            QLS_EXPECT_SAME(bytes_diff(t.absmax_codes, bnb.absmax_codes, "absmax codes"));
        }
        std::vector<float> deq(size_t(t.numel()));
        qls::nf4_dequantize(t, deq.data());
        QLS_EXPECT_SAME(bitwise_diff(deq, f32v(nf4_fx(), c.id + (dq ? ".dq.deq" : ".plain.deq")), "dequantized"));
        QCOMPARE(t.nbytes(), bnb.nbytes());
    }

    void prequantized_bad_inputs() {
        const fx_case& c = kCases[1];
        const std::string qs_key = kWeight + ".quant_state.bitsandbytes__nf4";
        // Builds a checkpoint from case b (double quant) after `edit` changed its state dict; returns the dir.
        auto build = [&](QTemporaryDir& tmp,
                         const std::function<void(std::vector<std::pair<std::string, qls::tensor>>&)>& edit) {
            const std::string dir = tmp.path().toStdString();
            write_text(dir + "/config.json", tiny_config(c.rows, c.cols));
            auto sd = bnb_state_dict(c, true);
            edit(sd);
            qls::safetensors_save(dir + "/model.safetensors", sd);
            return dir;
        };
        auto set_json = [&](std::vector<std::pair<std::string, qls::tensor>>& sd, const std::function<void(json&)>& f) {
            for (auto& [k, v] : sd)
                if (k == qs_key) {
                    json q = json::parse(std::string(v.data<char>(), size_t(v.numel())));
                    f(q);
                    const std::string s = q.dump();
                    qls::tensor nt(qls::dtype::u8, {int64_t(s.size())});
                    std::memcpy(nt.raw(), s.data(), s.size());
                    v = nt;
                }
        };
        auto read = [&](const std::string& dir) {
            const qls::hf_checkpoint ck = qls::hf_checkpoint::open(dir);
            qls::read_bnb_nf4(ck, kWeight, ck.config().hidden_size, ck.config().intermediate_size);
        };
        { // quant_type "fp4" inside the nf4 quant state
            QTemporaryDir tmp;
            const std::string dir = build(tmp,
                                          [&](auto& sd) { set_json(sd, [](json& q) { q["quant_type"] = "fp4"; }); });
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::unsupported,
                                         {dir + "/model.safetensors", qs_key, "\"fp4\"", "nf4"}));
        }
        { // an FP4-quantized weight (bnb names the key after the quant type)
            QTemporaryDir tmp;
            const std::string dir = build(tmp, [&](auto& sd) {
                set_json(sd, [](json& q) { q["quant_type"] = "fp4"; });
                for (auto& [k, v] : sd)
                    if (k == qs_key) k = kWeight + ".quant_state.bitsandbytes__fp4";
            });
            const qls::hf_checkpoint ck = qls::hf_checkpoint::open(dir);
            QVERIFY(qls::bnb_nf4_present(ck, kWeight));
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::unsupported,
                                         {dir + "/model.safetensors", "bitsandbytes__fp4", "FP4", kWeight}));
        }
        { // the quant state's shape disagrees with config.json
            QTemporaryDir tmp;
            const std::string dir = build(tmp, [&](auto& sd) {
                set_json(sd, [&](json& q) { q["shape"] = json::array({c.cols, c.rows}); });
            });
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::shape_mismatch,
                                         {dir + "/model.safetensors", qs_key, "[128, 64]", "[64, 128]",
                                          "config.json"}));
        }
        { // absmax missing
            QTemporaryDir tmp;
            const std::string dir = build(tmp, [&](auto& sd) {
                std::erase_if(sd, [&](const auto& kv) { return kv.first == kWeight + ".absmax"; });
            });
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::format,
                                         {dir + "/model.safetensors", kWeight + ".absmax", "missing"}));
        }
        { // nested_absmax missing while the JSON says double quant
            QTemporaryDir tmp;
            const std::string dir = build(tmp, [&](auto& sd) {
                std::erase_if(sd, [&](const auto& kv) { return kv.first == kWeight + ".nested_absmax"; });
            });
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::format,
                                         {kWeight + ".nested_absmax", "missing"}));
        }
        { // absmax stored as F32 although the state is nested
            QTemporaryDir tmp;
            const std::string dir = build(tmp, [&](auto& sd) {
                for (auto& [k, v] : sd)
                    if (k == kWeight + ".absmax") v = v.to(qls::dtype::f32);
            });
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::format,
                                         {kWeight + ".absmax", "F32", "U8"}));
        }
        { // packed weight truncated
            QTemporaryDir tmp;
            const std::string dir = build(tmp, [&](auto& sd) {
                for (auto& [k, v] : sd)
                    if (k == kWeight) {
                        qls::tensor nt(qls::dtype::u8, {v.numel() - 2, 1});
                        std::memcpy(nt.raw(), v.raw(), size_t(nt.numel()));
                        v = nt;
                    }
            });
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::shape_mismatch,
                                         {kWeight, "4094 bytes", "4096"}));
        }
        { // a quant_map that is not the NF4 codebook
            QTemporaryDir tmp;
            const std::string dir = build(tmp, [&](auto& sd) {
                for (auto& [k, v] : sd)
                    if (k == kWeight + ".quant_map") {
                        v = v.clone();
                        v.f32()[3] += 0.01f;
                    }
            });
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::unsupported,
                                         {kWeight + ".quant_map", "entry 3"}));
        }
        { // the quant state is not JSON
            QTemporaryDir tmp;
            const std::string dir = build(tmp, [&](auto& sd) {
                for (auto& [k, v] : sd)
                    if (k == qs_key) {
                        v = v.clone();
                        v.template data<char>()[0] = '[';
                    }
            });
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::format, {qs_key, "JSON"}));
        }
        { // no quant state at all
            QTemporaryDir tmp;
            const std::string dir = build(tmp, [&](auto& sd) {
                std::erase_if(sd, [&](const auto& kv) { return kv.first == qs_key; });
            });
            const qls::hf_checkpoint ck = qls::hf_checkpoint::open(dir);
            QVERIFY(!qls::bnb_nf4_present(ck, kWeight));
            QLS_EXPECT_SAME(expect_error([&] { read(dir); }, qls::error_code::format, {qs_key, "missing"}));
        }
    }
};

QTEST_APPLESS_MAIN(tst_quant)
#include "tst_quant.moc"
