// The LLaMA model with an NF4 base: quantized at load time, or read from a bitsandbytes-style pre-quantized
// checkpoint of stories260K; both give the same weights, and the quantized model stays close to the f32 one.
#include "testutil.h"

#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/quant.h"
#include "qls/safetensors.h"
#include "qls_kernels/nf4_codebook.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>

using namespace qls;
namespace fs = std::filesystem;

// The tensors bitsandbytes' Params4bit._save_to_state_dict writes for one Linear4bit weight (double quant):
// <name> U8 [ceil(n/2), 1], .absmax U8 [nblocks], .quant_map F32 [16], .nested_absmax F32 [nscale],
// .nested_quant_map F32 [256], .quant_state.bitsandbytes__nf4 U8 (JSON).
static void add_bnb(std::vector<std::pair<std::string, tensor>>& sd, const std::string& name, const nf4_tensor& q,
                    std::optional<double> nested_offset = std::nullopt) {
    tensor packed(dtype::u8, {int64_t(q.packed.size()), 1});
    std::memcpy(packed.raw(), q.packed.data(), q.packed.size());
    sd.emplace_back(name, packed);
    tensor absmax(dtype::u8, {int64_t(q.absmax_codes.size())});
    std::memcpy(absmax.raw(), q.absmax_codes.data(), q.absmax_codes.size());
    sd.emplace_back(name + ".absmax", absmax);
    std::vector<float> qmap(16);
    for (int i = 0; i < 16; ++i) qmap[size_t(i)] = qls_kernels::nf4_code[i];
    sd.emplace_back(name + ".quant_map", tensor::from_f32(qmap, {16}));
    sd.emplace_back(name + ".nested_absmax", tensor::from_f32(q.absmax_scale, {int64_t(q.absmax_scale.size())}));
    sd.emplace_back(name + ".nested_quant_map",
                    tensor::from_f32(std::vector<float>(q.nested_map.begin(), q.nested_map.end()), {256}));
    nlohmann::json js = {{"quant_type", "nf4"},
                         {"blocksize", 64},
                         {"dtype", "float32"},
                         {"shape", {q.rows, q.cols}},
                         {"nested_blocksize", 256},
                         {"nested_dtype", "float32"},
                         {"nested_offset", nested_offset.value_or(double(q.absmax_offset))}};
    const std::string s = js.dump();
    tensor state(dtype::u8, {int64_t(s.size())});
    std::memcpy(state.raw(), s.data(), s.size());
    sd.emplace_back(name + ".quant_state.bitsandbytes__nf4", state);
}

class TestQloraModel : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    void prequantizedCheckpointEqualsLoadTimeQuantization() {
        const llama_model q = llama_model::load(testutil::model_dir(), {true, true});
        QVERIFY(q.quantized());

        // write stories260K the way a *-bnb-4bit checkpoint stores it: projections in NF4, the rest as is
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        const safetensors_file src = safetensors_file::open(testutil::model_dir() + "/model.safetensors");
        static const char* names[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                      "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
        std::vector<std::pair<std::string, tensor>> sd;
        for (const auto& e : src.entries())
            if (e.name.find("_proj.") == std::string::npos) sd.emplace_back(e.name, src.read(e.name));
        for (int l = 0; l < q.config.num_layers; ++l)
            for (int t = 0; t < k_lora_target_count; ++t)
                add_bnb(sd, "model.layers." + std::to_string(l) + "." + names[t] + ".weight",
                        q.nf4[size_t(l)][size_t(t)]);
        safetensors_save((dir / "model.safetensors").string(), sd);
        for (const char* f : {"config.json", "tokenizer.model", "tokenizer_config.json"})
            fs::copy_file(fs::path(testutil::model_dir()) / f, dir / f);

        const llama_model p = llama_model::load(dir.string()); // no option: the checkpoint says it is NF4
        QVERIFY(p.quantized());
        for (int l = 0; l < q.config.num_layers; ++l)
            for (lora_target t : all_lora_targets()) {
                QCOMPARE(p.projection(l, t), q.projection(l, t));
                QCOMPARE(p.nf4[size_t(l)][size_t(t)].packed, q.nf4[size_t(l)][size_t(t)].packed);
            }
        QCOMPARE(p.params.embed, q.params.embed);

        // a checkpoint where one projection is not quantized is refused with the tensor named
        std::erase_if(sd, [](const auto& kv) { return kv.first.rfind("model.layers.2.mlp.up_proj.weight", 0) == 0; });
        sd.emplace_back("model.layers.2.mlp.up_proj.weight", src.read("model.layers.2.mlp.up_proj.weight"));
        safetensors_save((dir / "model.safetensors").string(), sd);
        try {
            llama_model::load(dir.string());
            QFAIL("expected an error");
        } catch (const qls::error& e) {
            QVERIFY2(QString(e.what()).contains("model.layers.2.mlp.up_proj.weight"), e.what());
        }

        // a nested_offset past float32's range (JSON allows 1e39) is refused, not turned into an infinite absmax
        std::erase_if(sd, [](const auto& kv) { return kv.first.rfind("model.layers.2.mlp.up_proj.weight", 0) == 0; });
        add_bnb(sd, "model.layers.2.mlp.up_proj.weight", q.nf4[2][size_t(lora_target::up)], 1e39);
        safetensors_save((dir / "model.safetensors").string(), sd);
        try {
            llama_model::load(dir.string());
            QFAIL("expected an error");
        } catch (const qls::error& e) {
            QVERIFY2(QString(e.what()).contains("nested_offset") &&
                         QString(e.what()).contains("model.layers.2.mlp.up_proj.weight"),
                     e.what());
        }
    }

    // NF4 is a 4-bit code: the weights move by about a tenth of their mean magnitude and the logits of this tiny
    // model (64-wide layers, so little averaging) by about 13% RMS (measured); a broken dequantization (wrong
    // nibble order, absmax or codebook) moves them by far more than the bounds below.
    void quantizedModelStaysClose() {
        const llama_model f = llama_model::load(testutil::model_dir());
        const llama_model q = llama_model::load(testutil::model_dir(), {true, true});
        double err = 0, ref = 0;
        size_t n = 0;
        for (int l = 0; l < f.config.num_layers; ++l)
            for (lora_target t : all_lora_targets()) {
                const auto& a = f.projection(l, t);
                const auto& b = q.projection(l, t);
                for (size_t i = 0; i < a.size(); ++i) {
                    err += std::fabs(a[i] - b[i]);
                    ref += std::fabs(a[i]);
                    ++n;
                }
            }
        QVERIFY2(err / ref < 0.12, qPrintable(QString("mean |w - nf4(w)| / mean |w| = %1").arg(err / ref)));
        QVERIFY(err > 0);
        std::vector<int> toks = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};
        llama_pass<float> pf(f.config, f.params, f.inv_freq, 1, int(toks.size()));
        llama_pass<float> pq(q.config, q.params, q.inv_freq, 1, int(toks.size()));
        pf.forward(toks.data(), nullptr);
        pq.forward(toks.data(), nullptr);
        double d = 0, s = 0;
        for (size_t i = 0; i < pf.logits().size(); ++i) {
            d += std::pow(pf.logits()[i] - pq.logits()[i], 2);
            s += std::pow(pf.logits()[i], 2);
        }
        QVERIFY2(std::sqrt(d / s) < 0.25, qPrintable(QString("relative RMS logit change %1").arg(std::sqrt(d / s))));
    }
};

QTEST_APPLESS_MAIN(TestQloraModel)
#include "tst_qlora_model.moc"
