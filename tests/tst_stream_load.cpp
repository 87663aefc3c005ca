// The streaming load (llama_load_options::sink): every frozen tensor reaches the sink exactly once, in the loader's
// order, with the bytes a normal load keeps, and the model keeps none of them; the backend builder's CPU path.
#include "qls/architecture.h"
#include "qls/dtype.h"
#include "qls/error.h"
#include "qls/llama.h"
#include "qls/memory_plan.h"
#include "qls/quant.h"
#include "qls/safetensors.h"
#include "qls/train_backend.h"

#include "testutil.h"

#include <QFile>
#include <QFileInfo>
#include <QTemporaryDir>
#include <QtTest>
#include <atomic>

using namespace qls;

namespace {

// Records each call: what arrived, its order, and a copy of its values.
struct recording_sink final : weight_sink {
    struct call {
        int kind; // 0 base, 1 bias, 2 projection
        int layer;
        int which; // base_tensor or lora_target
        std::vector<float> values;
        nf4_tensor nf4;
        uint64_t bytes = 0;
    };
    std::vector<call> calls;
    void put_projection(int layer, lora_target t, const nf4_tensor& w) override {
        calls.push_back(
            {2, layer, int(t), {}, w, uint64_t(w.packed.size() + w.absmax_codes.size() + w.absmax_scale.size() * 4)});
    }
    void put_base(int layer, base_tensor t, const std::vector<float>& v) override {
        calls.push_back({0, layer, int(t), v, {}, uint64_t(v.size() * 4)});
    }
    void put_bias(int layer, lora_target t, const std::vector<float>& v) override {
        calls.push_back({1, layer, int(t), v, {}, uint64_t(v.size() * 4)});
    }
};

std::string family_dir(const std::string& f) { return std::string(QLS_SOURCE_DIR) + "/tests/data/families/" + f; }

// The calls a streaming load of `ref` (the same checkpoint loaded normally with NF4) must make, in this order:
// embed; per layer its norms (architecture::layer_tensors), biases, projections; final norm; LM head when untied.
// Each must carry the reference's values.
void check_stream(const llama_model& ref, const recording_sink& s) {
    const model_config& c = ref.config;
    const architecture& arch = architecture_for(c);
    size_t i = 0;
    auto next = [&](int kind, int layer, int which) -> const recording_sink::call& {
        if (i >= s.calls.size()) throw std::runtime_error("too few sink calls");
        const recording_sink::call& k = s.calls[i++];
        if (k.kind != kind || k.layer != layer || k.which != which)
            throw std::runtime_error("call " + std::to_string(i - 1) + " out of order: kind " + std::to_string(k.kind) +
                                     " layer " + std::to_string(k.layer));
        return k;
    };
    QVERIFY(next(0, -1, int(base_tensor::embed)).values == ref.params.embed);
    for (int l = 0; l < c.num_layers; ++l) {
        llama_layer_params<float> lp = ref.params.layers[size_t(l)];
        for (base_tensor bt : arch.layer_tensors()) QVERIFY(next(0, l, int(bt)).values == layer_tensor(lp, bt));
        for (lora_target t : arch.projections)
            if (projection_has_bias(c, t)) QVERIFY(next(1, l, int(t)).values == lp.bias[size_t(t)]);
        for (lora_target t : arch.projections) {
            const nf4_tensor& got = next(2, l, int(t)).nf4;
            const nf4_tensor& want = ref.nf4[size_t(l)][size_t(t)];
            QCOMPARE(got.rows, want.rows);
            QCOMPARE(got.cols, want.cols);
            QVERIFY(got.packed == want.packed);
            QVERIFY(got.absmax_codes == want.absmax_codes);
            QVERIFY(got.absmax_scale == want.absmax_scale);
            QCOMPARE(got.absmax_offset, want.absmax_offset);
            QVERIFY(got.double_quant && got.blocksize == 64 && got.nested_blocksize == 256);
        }
    }
    QVERIFY(next(0, -1, int(base_tensor::final_norm)).values == ref.params.final_norm);
    if (!c.tie_word_embeddings) QVERIFY(next(0, -1, int(base_tensor::lm_head)).values == ref.params.lm_head);
    QCOMPARE(i, s.calls.size()); // nothing after, nothing twice
}

// The streamed model holds config and rotary frequencies only: no weight, and every CPU consumer refuses it.
void check_empty(const llama_model& m, const llama_model& ref) {
    QVERIFY(m.params.embed.empty() && m.params.final_norm.empty() && m.params.lm_head.empty());
    QVERIFY(!m.quantized());
    QVERIFY(!m.has_f32_projections());
    QCOMPARE(m.params.layers.size(), size_t(ref.config.num_layers));
    for (const llama_layer_params<float>& L : m.params.layers) {
        QVERIFY(L.attn_norm.empty() && L.mlp_norm.empty() && L.q_norm.empty() && L.post_mlp_norm.empty());
        for (const auto& b : L.bias) QVERIFY(b.empty());
    }
    QVERIFY(m.inv_freq == ref.inv_freq);
    const std::string e = testutil::expect_error([&] { llama_decoder d(m, 8); }, error_code::internal, {"f32"});
    QVERIFY2(e.empty(), e.c_str());
}

} // namespace

class tst_stream_load : public QObject {
    Q_OBJECT
private slots:
    // stories260K: 1 + 5 layers x (2 norms + 7 projections) + 1 calls (tied head), each with the normal load's bytes.
    void storiesStreamsEveryTensorOnce() {
        QLS_REQUIRE_MODEL();
        llama_load_options lo;
        lo.quantize_nf4 = true;
        const llama_model ref = llama_model::load(testutil::model_dir(), lo);
        recording_sink s;
        lo.sink = &s;
        lo.keep_f32_projections = false;
        const llama_model m = llama_model::load(testutil::model_dir(), lo);
        const int L = ref.config.num_layers;
        QCOMPARE(s.calls.size(), size_t(1 + L * 9 + 1 + (ref.config.tie_word_embeddings ? 0 : 1)));
        check_stream(ref, s);
        check_empty(m, ref);
        uint64_t bytes = 0;
        for (const auto& k : s.calls) bytes += k.bytes;
        QVERIFY(bytes > 0);
        // the same with keep_f32_projections left true: the sink wins, nothing is kept
        recording_sink s2;
        lo.sink = &s2;
        lo.keep_f32_projections = true;
        check_empty(llama_model::load(testutil::model_dir(), lo), ref);
        QCOMPARE(s2.calls.size(), s.calls.size());
    }

    // The family fixtures: Qwen2's q/k/v biases, Gemma 3's q/k and post norms and untied head come through the sink.
    void familiesStreamEveryTensorOnce() {
        for (const char* f : {"qwen2", "gemma3", "qwen3", "llama3"}) {
            if (!QFileInfo::exists(QString::fromStdString(family_dir(f) + "/config.json"))) QFAIL(f);
            llama_load_options lo;
            lo.quantize_nf4 = true;
            const llama_model ref = llama_model::load(family_dir(f), lo);
            recording_sink s;
            lo.sink = &s;
            lo.keep_f32_projections = false;
            const llama_model m = llama_model::load(family_dir(f), lo);
            check_stream(ref, s);
            check_empty(m, ref);
        }
    }

    // A sink that refuses a tensor (a backend's shape check, a device error) stops the load with its error; a cancel
    // between tensors stops a streaming load as any other.
    void sinkErrorsAndCancelStopTheLoad() {
        QLS_REQUIRE_MODEL();
        struct refusing_sink final : weight_sink {
            int calls = 0;
            void put_projection(int layer, lora_target t, const nf4_tensor&) override {
                ++calls;
                if (layer == 1 && t == lora_target::v)
                    throw error(error_code::invalid_argument, "layer 1 v: refused by the test sink", "none");
            }
            void put_base(int, base_tensor, const std::vector<float>&) override { ++calls; }
            void put_bias(int, lora_target, const std::vector<float>&) override { ++calls; }
        } s;
        llama_load_options lo;
        lo.quantize_nf4 = true;
        lo.sink = &s;
        std::string e = testutil::expect_error([&] { llama_model::load(testutil::model_dir(), lo); },
                                               error_code::invalid_argument, {"layer 1 v", "refused"});
        QVERIFY2(e.empty(), e.c_str());
        QCOMPARE(s.calls, 1 + 9 + 2 + 3); // embed, layer 0, layer 1's norms and q, k, v
        recording_sink r;
        std::atomic<bool> cancel{false};
        lo.sink = &r;
        lo.control.cancel = &cancel;
        lo.control.on_progress = [&](const load_progress& p) {
            if (p.tensors_done == 5) cancel = true;
        };
        e = testutil::expect_error([&] { llama_model::load(testutil::model_dir(), lo); }, error_code::cancelled,
                                   {"cancelled"});
        QVERIFY2(e.empty(), e.c_str());
        QCOMPARE(r.calls.size(), size_t(5));
    }

    // A sink takes an NF4 base: an unquantized streaming load is refused with the fix.
    void sinkNeedsNf4() {
        QLS_REQUIRE_MODEL();
        recording_sink s;
        llama_load_options lo;
        lo.sink = &s;
        const std::string e = testutil::expect_error([&] { llama_model::load(testutil::model_dir(), lo); },
                                                     error_code::invalid_argument, {"sink", "NF4", "stories260K"});
        QVERIFY2(e.empty(), e.c_str());
        QVERIFY(s.calls.empty());
    }

    // A BF16 checkpoint with nf4_quantizer_bf16 set (the GPU quantizer's bf16 entry; here a CPU stand-in): every
    // projection reaches it as its stored bits, none through the f32 copy, and the NF4 equals the f32 path's (bf16 ->
    // f32 is exact); an F32 checkpoint never calls it.
    void bf16ProjectionsGoToTheBf16Quantizer() {
        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString();
        QVERIFY(QFile::copy(QString::fromStdString(family_dir("llama3") + "/config.json"),
                            QString::fromStdString(dir + "/config.json")));
        const safetensors_file src = safetensors_file::open(family_dir("llama3") + "/model.safetensors");
        std::vector<std::pair<std::string, tensor>> bf16_tensors;
        for (const safetensors_entry& e : src.entries()) {
            const tensor f = src.read_f32(e.name);
            tensor b(dtype::bf16, f.shape());
            for (int64_t i = 0; i < f.numel(); ++i) reinterpret_cast<uint16_t*>(b.raw())[i] = f32_to_bf16(f.f32()[i]);
            bf16_tensors.emplace_back(e.name, std::move(b));
        }
        safetensors_save(dir + "/model.safetensors", bf16_tensors);
        llama_load_options lo;
        lo.quantize_nf4 = true;
        const llama_model ref = llama_model::load(dir, lo);
        int calls = 0;
        lo.nf4_quantizer_bf16 = [&calls](const uint16_t* w, int64_t rows, int64_t cols, bool dq) {
            ++calls;
            std::vector<float> f(size_t(rows * cols));
            for (size_t i = 0; i < f.size(); ++i) f[i] = bf16_to_f32(w[i]);
            return nf4_quantize(f.data(), rows, cols, dq);
        };
        recording_sink s;
        lo.sink = &s;
        lo.keep_f32_projections = false;
        check_empty(llama_model::load(dir, lo), ref);
        check_stream(ref, s);
        QCOMPARE(calls, ref.config.num_layers * int(architecture_for(ref.config).projections.size()));
        calls = 0;
        recording_sink s2;
        lo.sink = &s2;
        (void)llama_model::load(family_dir("llama3"), lo);
        QCOMPARE(calls, 0);
        QVERIFY(!s2.calls.empty());
    }

    // The CPU backend through the builder: no sink, and the backend it finishes computes exactly as make_train_backend.
    void cpuBuilderMatchesDirect() {
        QLS_REQUIRE_MODEL();
        llama_load_options lo;
        lo.quantize_nf4 = true;
        const llama_model m = llama_model::load(testutil::model_dir(), lo);
        lora_config lc;
        lc.rank = 4;
        lc.dropout = 0.0f;
        const lora_weights<float> init = lora_init(m.config, lc, 7);
        plan_settings ps;
        ps.backend = "cpu";
        ps.batch = 2;
        ps.seq = 16;
        ps.lora = lc;
        const memory_plan plan = make_memory_plan(m.config, ps);
        compute_device dev;
        dev.backend = "cpu";
        auto b = begin_train_backend(dev, m.config, init, plan, {});
        QVERIFY(b->sink() == nullptr);
        auto via_builder = b->finish(m);
        auto direct = make_train_backend(dev, m, init, plan, {});
        std::vector<int> tok(32), tgt(32);
        for (int i = 0; i < 32; ++i) tok[size_t(i)] = (i * 37 + 11) % m.config.vocab_size;
        for (int i = 0; i < 32; ++i) tgt[size_t(i)] = tok[size_t((i + 1) % 32)];
        const train_batch tb{tok.data(), tgt.data(), nullptr, nullptr};
        const double a = via_builder->forward_backward(tb, 1), d = direct->forward_backward(tb, 1);
        QVERIFY(a > 0);
        QCOMPARE(a, d);
        via_builder->optimizer_step(1e-3f, 1, 0.3f);
        direct->optimizer_step(1e-3f, 1, 0.3f);
        QVERIFY(via_builder->adapters().at(0, lora_target::q).a == direct->adapters().at(0, lora_target::q).a);
        // an unknown backend is refused by name
        compute_device bad;
        bad.backend = "tpu";
        const std::string e = testutil::expect_error([&] { begin_train_backend(bad, m.config, init, plan, {}); },
                                                     error_code::device, {"tpu"});
        QVERIFY2(e.empty(), e.c_str());
    }
};

QTEST_MAIN(tst_stream_load)
#include "tst_stream_load.moc"
