// The CPU side of the GPU quantizer: the shared host/device 8-bit encoder equals the engine's on every decision
// boundary, and the loader quantizes each projection through llama_load_options::nf4_quantizer when one is given.
#include "testutil.h"

#include "qls/llama.h"
#include "qls/quant.h"
#include "qls_kernels/blockwise8_encode.h"

#include <cmath>
#include <limits>
#include <random>

using namespace qls;

class TestGpuQuant : public QObject {
    Q_OBJECT

private slots:
    void encoderEqualsTheEngines() {
        // Every map entry, each midpoint between neighbours and the floats right around it (the strict comparisons
        // decide there), random values beyond [-1, 1], NaN and infinities; both dynamic maps.
        for (bool is_signed : {true, false}) {
            const std::array<float, 256> map = dynamic_map(is_signed);
            std::vector<float> xs = {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY, 0.0f, -0.0f};
            for (int i = 0; i < 256; ++i) {
                xs.push_back(map[size_t(i)]);
                if (i + 1 < 256) {
                    const float mid = (map[size_t(i)] + map[size_t(i + 1)]) * 0.5f;
                    float lo = mid, hi = mid;
                    for (int k = 0; k < 3; ++k) {
                        xs.push_back(lo = std::nextafter(lo, -INFINITY));
                        xs.push_back(hi = std::nextafter(hi, INFINITY));
                    }
                    xs.push_back(mid);
                }
            }
            std::mt19937_64 rng(5);
            std::uniform_real_distribution<float> u(-1.2f, 1.2f);
            for (int i = 0; i < 100000; ++i) xs.push_back(u(rng));
            size_t checked = 0;
            for (float x : xs) {
                const unsigned got = qls_kernels::blockwise8_encode_map(x, map.data());
                const unsigned want = blockwise8_encode(x, map);
                if (got != want)
                    QFAIL(qPrintable(QString("x = %1 (signed %2): %3 vs engine %4")
                                         .arg(double(x), 0, 'g', 9)
                                         .arg(is_signed)
                                         .arg(got)
                                         .arg(want)));
                ++checked;
            }
            QVERIFY(checked > 100000);
        }
    }

    void loaderQuantizesThroughTheHook() {
        // A hook that records each call and quantizes on the CPU: called once per projection with the weight's
        // [out, in] shape, and the model equals the one the built-in quantizer makes, byte for byte.
        QLS_REQUIRE_MODEL();
        llama_load_options plain;
        plain.quantize_nf4 = true;
        const llama_model want = llama_model::load(testutil::model_dir(), plain);
        std::vector<std::pair<int64_t, int64_t>> calls;
        llama_load_options hooked = plain;
        hooked.nf4_quantizer = [&](const float* w, int64_t rows, int64_t cols, bool dq) {
            calls.emplace_back(rows, cols);
            return nf4_quantize(w, rows, cols, dq);
        };
        const llama_model got = llama_model::load(testutil::model_dir(), hooked);
        const model_config& c = want.config;
        QCOMPARE(int(calls.size()), c.num_layers * k_lora_target_count);
        QCOMPARE(calls[0], (std::pair<int64_t, int64_t>{int64_t(c.num_heads) * c.head_dim, c.hidden_size}));
        for (int l = 0; l < c.num_layers; ++l)
            for (lora_target t : all_lora_targets()) {
                const nf4_tensor& a = want.nf4[size_t(l)][size_t(t)];
                const nf4_tensor& b = got.nf4[size_t(l)][size_t(t)];
                QVERIFY(a.packed == b.packed && a.absmax_codes == b.absmax_codes && a.absmax_scale == b.absmax_scale);
                QCOMPARE(a.absmax_offset, b.absmax_offset);
                QVERIFY(want.projection(l, t) == got.projection(l, t));
            }
        // Without quantization the hook is never called.
        calls.clear();
        llama_load_options f32 = hooked;
        f32.quantize_nf4 = false;
        (void)llama_model::load(testutil::model_dir(), f32);
        QVERIFY(calls.empty());
    }
};

QTEST_APPLESS_MAIN(TestGpuQuant)
#include "tst_gpu_quant.moc"
