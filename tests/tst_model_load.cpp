// The streaming model load: NF4-only loads hold the same weights as the f32 path, progress, cancel, refusals, peak RSS.
#include "testutil.h"

#include "qls/architecture.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/memory_plan.h"
#include "qls/model_source.h"
#include "qls/peft.h"
#include "qls/quant.h"
#include "qls/safetensors.h"
#include "qls/tokenizer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

using namespace qls;

namespace {

// VmHWM / VmRSS / RssAnon / RssFile of this process in bytes (proc(5)); 0 when absent.
uint64_t proc_status_bytes(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    const std::string k = std::string(key) + ":";
    while (std::getline(f, line))
        if (line.compare(0, k.size(), k) == 0) {
            std::istringstream is(line.substr(k.size()));
            uint64_t kb = 0;
            is >> kb;
            return kb * 1024;
        }
    return 0;
}

bool same_nf4(const nf4_tensor& a, const nf4_tensor& b) {
    return a.rows == b.rows && a.cols == b.cols && a.blocksize == b.blocksize && a.packed == b.packed &&
           a.double_quant == b.double_quant && a.absmax == b.absmax && a.absmax_codes == b.absmax_codes &&
           a.absmax_scale == b.absmax_scale && std::memcmp(&a.absmax_offset, &b.absmax_offset, sizeof(float)) == 0 &&
           a.nested_map == b.nested_map;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// The first step's loss of a model on the Pip corpus's first 32 tokens (B=1, T=31), without adapters.
float first_loss(const llama_model& m) {
    const tokenizer tok = load_tokenizer_for(hf_checkpoint::open(testutil::model_dir()));
    std::ifstream f(testutil::pip_train());
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<int> ids = tok.encode(text.substr(0, 400), true, false);
    if (ids.size() < 32) return -1;
    ids.resize(32);
    std::vector<int> x(ids.begin(), ids.end() - 1), y(ids.begin() + 1, ids.end());
    llama_pass<float> pass(m.config, m.params, m.inv_freq, 1, 31);
    return pass.forward(x.data(), y.data());
}

} // namespace

class TestModelLoad : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    // keep_f32_projections = false leaves the projections empty and holds exactly the NF4 the f32 path holds, which
    // is exactly what quantizing each weight read through the tensor-returning reader gives; dequantized, the model
    // gives the f32 path's first-step loss bit for bit.
    void nf4OnlyHoldsTheSameWeightsAndLoss() {
        const hf_checkpoint ck = hf_checkpoint::open(testutil::model_dir());
        llama_load_options f32_opt;
        f32_opt.quantize_nf4 = true;
        const llama_model a = llama_model::load(ck, f32_opt); // the CPU path: f32 dequantization kept
        llama_load_options nf4_opt = f32_opt;
        nf4_opt.keep_f32_projections = false;
        const std::unique_ptr<model_source> src = open_model_source(testutil::model_dir());
        const llama_model b = llama_model::load(*src, nf4_opt);

        QVERIFY(a.has_f32_projections());
        QVERIFY(!b.has_f32_projections());
        QCOMPARE(b.nf4.size(), size_t(a.config.num_layers));
        for (int l = 0; l < a.config.num_layers; ++l)
            for (int t = 0; t < k_lora_target_count; ++t) {
                QVERIFY(b.projection(l, lora_target(t)).empty());
                QVERIFY2(same_nf4(a.nf4[size_t(l)][size_t(t)], b.nf4[size_t(l)][size_t(t)]),
                         qPrintable(QString("layer %1 target %2").arg(l).arg(t)));
                // the reference: the whole tensor read by the tensor-returning reader, then quantized
                const nf4_tensor& q = b.nf4[size_t(l)][size_t(t)];
                const std::string name = architecture_for(a.config).hf_weight(l, lora_target(t));
                const tensor w = ck.read_f32(name, {q.rows, q.cols});
                QVERIFY2(same_nf4(nf4_quantize(w.f32(), q.rows, q.cols, true), q), name.c_str());
            }
        QVERIFY(same_bits(a.params.embed, b.params.embed));
        QVERIFY(same_bits(a.params.final_norm, b.params.final_norm));
        QVERIFY(same_bits(a.params.layers[2].attn_norm, b.params.layers[2].attn_norm));

        // dequantize the NF4-only model's projections: the f32 path's weights, bit for bit, and its loss
        llama_model c = b;
        for (int l = 0; l < c.config.num_layers; ++l)
            for (int t = 0; t < k_lora_target_count; ++t) {
                const nf4_tensor& q = c.nf4[size_t(l)][size_t(t)];
                std::vector<float>& w = c.projection(l, lora_target(t));
                w.resize(size_t(q.numel()));
                nf4_dequantize(q, w.data());
                QVERIFY(same_bits(w, a.projection(l, lora_target(t))));
            }
        const float la = first_loss(a), lc = first_loss(c);
        QVERIFY(la > 0 && std::isfinite(la));
        QCOMPARE(std::memcmp(&la, &lc, sizeof(float)), 0);
        // and the unquantized model differs (the comparison above can fail)
        const float lf = first_loss(llama_model::load(ck));
        QVERIFY(lf != la);
    }

    // Every CPU consumer refuses the NF4-only state (the merged export streams from the checkpoint, not a model) with an internal error instead of reading empty vectors.
    void cpuConsumersRefuseNf4Only() {
        llama_load_options o;
        o.quantize_nf4 = true;
        o.keep_f32_projections = false;
        const llama_model m = llama_model::load(testutil::model_dir(), o);
        std::string r = testutil::expect_error([&] { llama_pass<float> p(m.config, m.params, m.inv_freq, 1, 4); },
                                               error_code::internal, {"CPU training pass", "NF4-only"});
        QVERIFY2(r.empty(), r.c_str());
        r = testutil::expect_error([&] { llama_decoder d(m, 8); }, error_code::internal, {"decoder", "NF4-only"});
        QVERIFY2(r.empty(), r.c_str());
        // without NF4 the option does nothing: f32 is all there is
        o.quantize_nf4 = false;
        QVERIFY(llama_model::load(testutil::model_dir(), o).has_f32_projections());
    }

    // Progress after every tensor: monotone, one tensor at a time, reaching the totals, which are the tensors and
    // stored bytes of the checkpoint.
    void progressIsMonotoneAndReachesTotals() {
        const std::unique_ptr<model_source> src = open_model_source(testutil::model_dir());
        std::vector<load_progress> seen;
        llama_load_options o;
        o.control.on_progress = [&](const load_progress& p) { seen.push_back(p); };
        (void)llama_model::load(*src, o);
        const model_config& c = src->config();
        const int64_t expected = 1 + int64_t(c.num_layers) * 9 + 1 + (c.tie_word_embeddings ? 0 : 1);
        QCOMPARE(int64_t(seen.size()), expected);
        uint64_t stored = 0;
        for (const weight_info& w : src->weights()) stored += w.stored_bytes;
        for (size_t i = 0; i < seen.size(); ++i) {
            QCOMPARE(seen[i].tensors_done, int64_t(i + 1));
            QCOMPARE(seen[i].tensors_total, expected);
            QCOMPARE(seen[i].bytes_total, stored); // stories260K: every stored tensor is a weight the model reads
            if (i) {
                QVERIFY(seen[i].bytes_done > seen[i - 1].bytes_done);
                QVERIFY(seen[i].seconds >= seen[i - 1].seconds);
            }
        }
        QCOMPARE(seen.back().bytes_done, seen.back().bytes_total);
    }

    // A cancel between tensors throws cancelled (with a hint); a cancel before the load starts reads nothing.
    void cancelMidLoadThrowsCancelled() {
        std::atomic<bool> cancel{false};
        int calls = 0;
        llama_load_options o;
        o.quantize_nf4 = true;
        o.control.cancel = &cancel;
        o.control.on_progress = [&](const load_progress& p) {
            ++calls;
            if (p.tensors_done == 10) cancel = true;
        };
        std::string r = testutil::expect_error([&] { (void)llama_model::load(testutil::model_dir(), o); },
                                               error_code::cancelled, {"cancelled"});
        QVERIFY2(r.empty(), r.c_str());
        QCOMPARE(calls, 10);
        calls = 0;
        r = testutil::expect_error([&] { (void)llama_model::load(testutil::model_dir(), o); }, error_code::cancelled,
                                   {"cancelled"});
        QVERIFY2(r.empty(), r.c_str());
        QCOMPARE(calls, 0);
    }

    // The test hook slows each tensor: 47 tensors at 5 ms take at least 0.235 s.
    void testDelaySlowsEachTensor() {
        llama_load_options o;
        o.control.test_delay_ms_per_tensor = 5;
        double last = 0;
        o.control.on_progress = [&](const load_progress& p) { last = p.seconds; };
        (void)llama_model::load(testutil::model_dir(), o);
        QVERIFY2(last >= 0.2, qPrintable(QString::number(last)));
    }

    // Reading into the caller's buffer converts BF16 and F16 exactly as the tensor-returning reader, and refuses a
    // non-finite weight naming the file and the tensor.
    void readIntoConvertsAndChecks() {
        QTemporaryDir tmp;
        const std::string path = tmp.path().toStdString() + "/w.safetensors";
        tensor bf(dtype::bf16, {3, 5}), hf(dtype::f16, {7}), bad(dtype::f32, {4});
        for (int i = 0; i < 15; ++i) reinterpret_cast<uint16_t*>(bf.raw())[i] = uint16_t(0x3C00 + 37 * i);
        for (int i = 0; i < 7; ++i) reinterpret_cast<uint16_t*>(hf.raw())[i] = uint16_t(0x3800 + 91 * i);
        const float vals[4] = {1.0f, 2.0f, std::numeric_limits<float>::infinity(), 3.0f};
        std::memcpy(bad.raw(), vals, sizeof vals);
        safetensors_save(path, {{"bf", bf}, {"hf", hf}, {"bad", bad}});
        const safetensors_file f = safetensors_file::open(path);
        for (const char* n : {"bf", "hf"}) {
            const tensor ref = f.read_f32(n);
            std::vector<float> got(size_t(ref.numel()));
            f.read_weight_f32_into(n, got.data());
            QCOMPARE(std::memcmp(got.data(), ref.f32(), got.size() * sizeof(float)), 0);
        }
        std::vector<float> out(4);
        const std::string r = testutil::expect_error([&] { f.read_weight_f32_into("bad", out.data()); },
                                                     error_code::format, {path, "'bad'", "infinite", "element 2"});
        QVERIFY2(r.empty(), r.c_str());
    }

    // The conversion runs in parallel chunks: over a tensor of many chunks the result is still exact, and the error
    // names the FIRST non-finite element even when later chunks hold others. The BF16 reader hands out the stored
    // bits with the same checks, and declines (false, nothing read) a tensor stored in another dtype.
    void readIntoParallelChunksAndBf16Bits() {
        QTemporaryDir tmp;
        const std::string path = tmp.path().toStdString() + "/w.safetensors";
        const int64_t n = 1'000'003; // 62 chunks of 16384 and a tail
        tensor bf(dtype::bf16, {n}), badf(dtype::f32, {n}), badb(dtype::bf16, {n}), f(dtype::f32, {5});
        auto* b = reinterpret_cast<uint16_t*>(bf.raw());
        auto* bb = reinterpret_cast<uint16_t*>(badb.raw());
        for (int64_t i = 0; i < n; ++i) b[i] = bb[i] = uint16_t(0x3C00 + (i * 2654435761u >> 20) % 0x0300);
        for (int64_t i = 0; i < n; ++i) badf.f32()[i] = float(i % 1000) * 1e-3f;
        badf.f32()[900'000] = std::numeric_limits<float>::infinity();
        badf.f32()[700'001] = std::numeric_limits<float>::quiet_NaN();
        badf.f32()[999'999] = std::numeric_limits<float>::quiet_NaN();
        bb[650'000] = 0x7f80; // +inf
        bb[800'000] = 0x7fc1; // NaN
        for (int i = 0; i < 5; ++i) f.f32()[i] = float(i);
        safetensors_save(path, {{"bf", bf}, {"badf", badf}, {"badb", badb}, {"f", f}});
        const safetensors_file file = safetensors_file::open(path);
        std::vector<float> got(static_cast<size_t>(n));
        file.read_weight_f32_into("bf", got.data());
        const tensor ref = file.read_f32("bf");
        QCOMPARE(std::memcmp(got.data(), ref.f32(), got.size() * sizeof(float)), 0);
        std::string r = testutil::expect_error([&] { file.read_weight_f32_into("badf", got.data()); },
                                               error_code::format, {path, "'badf'", "NaN", "element 700001"});
        QVERIFY2(r.empty(), r.c_str());
        std::vector<uint16_t> bits(static_cast<size_t>(n), 0);
        QVERIFY(file.read_weight_bf16_into("bf", bits.data()));
        QCOMPARE(std::memcmp(bits.data(), b, bits.size() * 2), 0);
        r = testutil::expect_error([&] { (void)file.read_weight_bf16_into("badb", bits.data()); }, error_code::format,
                                   {path, "'badb'", "infinite", "element 650000"});
        QVERIFY2(r.empty(), r.c_str());
        std::vector<uint16_t> none(5, 0xabcd);
        QVERIFY(!file.read_weight_bf16_into("f", none.data()));
        QCOMPARE(none[0], uint16_t(0xabcd));
    }

    // Peak resident memory of loading a larger checkpoint (packaging/gpu/write-random-checkpoint.py), run on its own:
    //   QLS_LOAD_BENCH_DIR=/tmp/rc7 QLS_LOAD_BENCH_MODE=nf4-only|nf4-f32|f32 tst_model_load measuresPeakRss
    // Prints VmHWM, RssAnon and RssFile after the load; skipped without QLS_LOAD_BENCH_DIR.
    void measuresPeakRss() {
        const QByteArray dir = qgetenv("QLS_LOAD_BENCH_DIR");
        if (dir.isEmpty()) QSKIP("set QLS_LOAD_BENCH_DIR to a checkpoint to measure its load's peak RSS");
        const QByteArray mode = qgetenv("QLS_LOAD_BENCH_MODE");
        llama_load_options o;
        o.quantize_nf4 = mode != "f32";
        o.keep_f32_projections = mode != "nf4-only";
        const uint64_t before = proc_status_bytes("VmHWM");
        const auto t0 = std::chrono::steady_clock::now();
        const llama_model m = llama_model::load(dir.toStdString(), o);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("load %s (%s): %.1f s, VmHWM before %.0f MiB after %.0f MiB, RssAnon %.0f MiB, RssFile %.0f MiB\n",
                    dir.constData(), mode.isEmpty() ? "nf4-f32" : mode.constData(), s, to_mib(before),
                    to_mib(proc_status_bytes("VmHWM")), to_mib(proc_status_bytes("RssAnon")),
                    to_mib(proc_status_bytes("RssFile")));
        QVERIFY(m.config.num_layers > 0);
    }
};

QTEST_GUILESS_MAIN(TestModelLoad)
#include "tst_model_load.moc"
