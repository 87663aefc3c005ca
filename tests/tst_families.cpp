// The model families of the architecture table on the CPU reference: tiny random-weight models written by
// transformers (tests/data/families, make_families.py) give transformers' logits, through the training pass and the
// KV-cache decoder; input and adapter gradients match finite differences; a LoRA trained a few steps exports a PEFT
// adapter that reads back to the same logits; malformed family configs name the field.
#include "testutil.h"

#include "qls/architecture.h"
#include "qls/error.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/memory_plan.h"
#include "qls/model_config.h"
#include "qls/model_source.h"
#include "qls/peft.h"
#include "qls/run_plan.h"
#include "qls/safetensors.h"
#include "qls/train_backend.h"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>

#include <cmath>
#include <fstream>
#include <random>

using namespace qls;
using json = nlohmann::json;

namespace {

const std::vector<std::string> k_families = {"llama3", "qwen2", "qwen3", "mistral", "gemma3"};

std::string fixture_dir(const std::string& family) {
    return std::string(QLS_SOURCE_DIR) + "/tests/data/families/" + family;
}

struct fixture_logits {
    int S = 0, T = 0, V = 0;
    std::vector<int> tokens;   // (S, T)
    std::vector<float> logits; // (S, T, V)
};

fixture_logits read_logits(const std::string& path) {
    const safetensors_file f = safetensors_file::open(path);
    fixture_logits r;
    const tensor tok = f.read_f32("tokens");
    const tensor lg = f.read_f32("logits");
    r.S = int(lg.size(0));
    r.T = int(lg.size(1));
    r.V = int(lg.size(2));
    for (int64_t i = 0; i < tok.numel(); ++i) r.tokens.push_back(int(tok.f32()[i]));
    r.logits.assign(lg.f32(), lg.f32() + lg.numel());
    return r;
}

double max_abs_diff(const float* a, const float* b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, double(std::abs(a[i] - b[i])));
    return m;
}

// Central differences of the pass's mean loss in double: relative error of one analytic element.
double rel_err(double analytic, double numeric) {
    return std::abs(analytic - numeric) / std::max(1e-8, std::abs(analytic) + std::abs(numeric));
}

json fixture_config(const std::string& family) {
    std::ifstream in(fixture_dir(family) + "/config.json");
    return json::parse(in);
}

} // namespace

class TestFamilies : public QObject {
    Q_OBJECT
private slots:
    void tableEntriesReadTheirConfigs() {
        struct want {
            const char* family;
            const char* arch_family;
            bool qkv_bias, sliding, local_rope;
            int head_dim;
        };
        for (const want& w :
             {want{"llama3", "llama", false, false, false, 4}, want{"qwen2", "qwen2", true, false, false, 4},
              want{"qwen3", "qwen3", false, false, false, 8}, want{"mistral", "llama", false, false, false, 6},
              want{"gemma3", "gemma3", false, true, true, 8}}) {
            const model_config c = load_model_config(fixture_dir(w.family) + "/config.json");
            QCOMPARE(QString::fromStdString(architecture_for(c).family), QString(w.arch_family));
            QCOMPARE(c.qkv_bias, w.qkv_bias);
            QCOMPARE(c.any_sliding(), w.sliding);
            QCOMPARE(c.has_local_rope, w.local_rope);
            QCOMPARE(c.head_dim, w.head_dim);
        }
        const model_config l3 = load_model_config(fixture_dir("llama3") + "/config.json");
        QCOMPARE(QString::fromStdString(l3.rope.type), QString("llama3"));
        QVERIFY(l3.tie_word_embeddings);
        const model_config g = load_model_config(fixture_dir("gemma3") + "/config.json");
        QCOMPARE(g.sliding_window, 4);
        QVERIFY(g.layer_sliding(0) && !g.layer_sliding(1));
        QCOMPARE(g.layer_window(0), 4);
        QCOMPARE(g.layer_window(1), 0);
        QCOMPARE(g.rope.theta, 1e6);
        QCOMPARE(QString::fromStdString(g.rope.type), QString("linear"));
        QCOMPARE(g.rope_local.theta, 1e4);
        QCOMPARE(g.attention_scale(), 1.0 / std::sqrt(24.0));
        QCOMPARE(g.embed_scale, double(float(std::sqrt(16.0))));
        QVERIFY(g.tie_word_embeddings);
        QCOMPARE(QString::fromStdString(g.hidden_act), QString("gelu_pytorch_tanh"));
        // every family's PEFT target names are the HF module names
        for (const architecture& a : architectures())
            QCOMPARE(peft_target_modules(a), (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj",
                                                                       "gate_proj", "up_proj", "down_proj"}));
        // code that computes only LLaMA's layers (full-parameter training) refuses the new families by name
        for (const char* f : {"qwen2", "qwen3", "gemma3"}) {
            const model_config c = load_model_config(fixture_dir(f) + "/config.json");
            const std::string r = testutil::expect_error([&] { require_llama_layers(c, "full-parameter training"); },
                                                         error_code::unsupported, {"full-parameter training"});
            QVERIFY2(r.empty(), r.c_str());
        }
        require_llama_layers(load_model_config(fixture_dir("llama3") + "/config.json"), "full-parameter training");
    }

    // Our CPU logits equal transformers' (float32, eager attention) within 1e-4, through the batched training pass
    // and token by token through the KV-cache decoder.
    void logitsMatchTransformers() {
        for (const std::string& f : k_families) {
            const llama_model m = llama_model::load(fixture_dir(f));
            const fixture_logits ref = read_logits(fixture_dir(f) + "/logits.safetensors");
            QCOMPARE(ref.V, m.config.vocab_size);
            llama_pass<float> pass(m.config, m.params, m.inv_freq, ref.S, ref.T);
            pass.forward(ref.tokens.data(), nullptr);
            const double d = max_abs_diff(pass.logits().data(), ref.logits.data(), ref.logits.size());
            qInfo("%s: max |ours - transformers| = %.3g (pass)", f.c_str(), d);
            QVERIFY2(d < 1e-4, qPrintable(QString::fromStdString(f) + QString(" pass differs by %1").arg(d)));
            double dd = 0;
            for (int s = 0; s < ref.S; ++s) {
                llama_decoder dec(m, ref.T);
                for (int t = 0; t < ref.T; ++t) {
                    const std::vector<float>& lg = dec.step(ref.tokens[size_t(s * ref.T + t)]);
                    dd = std::max(dd, max_abs_diff(lg.data(), ref.logits.data() + (size_t(s) * ref.T + t) * ref.V,
                                                   size_t(ref.V)));
                }
            }
            qInfo("%s: max |ours - transformers| = %.3g (decoder)", f.c_str(), dd);
            QVERIFY2(dd < 1e-4, qPrintable(QString::fromStdString(f) + QString(" decoder differs by %1").arg(dd)));
        }
    }

    // GGUF files of the same weights (make_families_gguf.py, as llama.cpp's converter writes them): Qwen2 (biases)
    // and Qwen3 (q/k norms) give transformers' logits; Gemma 3's norms, stored as 1 + w, read back to Hugging Face's
    // w, and the metadata gives the window, the RoPE and the attention scale.
    void ggufFamiliesReadLikeTheirCheckpoints() {
        for (const std::string f : {"qwen2", "qwen3"}) {
            const std::string path = std::string(QLS_SOURCE_DIR) + "/tests/data/families/" + f + ".gguf";
            const llama_model m = llama_model::load(*open_gguf_source(path));
            QCOMPARE(QString::fromStdString(architecture_for(m.config).family), QString::fromStdString(f));
            const fixture_logits ref = read_logits(fixture_dir(f) + "/logits.safetensors");
            llama_pass<float> pass(m.config, m.params, m.inv_freq, ref.S, ref.T);
            pass.forward(ref.tokens.data(), nullptr);
            const double d = max_abs_diff(pass.logits().data(), ref.logits.data(), ref.logits.size());
            qInfo("%s.gguf: max |ours - transformers| = %.3g", f.c_str(), d);
            QVERIFY2(d < 1e-4, f.c_str());
        }
        const llama_model g = llama_model::load(*open_gguf_source(std::string(QLS_SOURCE_DIR) +
                                                                  "/tests/data/families/gemma3.gguf"));
        const llama_model h = llama_model::load(fixture_dir("gemma3"));
        QCOMPARE(QString::fromStdString(g.config.model_type), QString("gemma3_text"));
        QCOMPARE(g.config.sliding_window, 4);
        QCOMPARE(g.config.head_dim, 8);
        QCOMPARE(g.config.query_pre_attn_scalar, 8.0); // llama.cpp: 1/sqrt(head size) below 27B
        QCOMPARE(g.config.rope.factor, 2.0);
        QCOMPARE(g.config.rope_local.theta, 1e4);
        QVERIFY(g.config.tie_word_embeddings);
        QVERIFY(g.config.layer_sliding(0) && g.config.layer_sliding(1)); // every 6th layer is global in llama.cpp
        QCOMPARE(g.params.embed, h.params.embed);
        QVERIFY(max_abs_diff(g.params.final_norm.data(), h.params.final_norm.data(), h.params.final_norm.size()) <
                1e-6); // (1 + w) - 1 in float
        for (int l = 0; l < h.config.num_layers; ++l) {
            llama_layer_params<float> a = g.params.layers[size_t(l)], b = h.params.layers[size_t(l)];
            for (base_tensor t : architecture_for(h.config).layer_tensors()) {
                const std::vector<float>& x = layer_tensor(a, t);
                const std::vector<float>& y = layer_tensor(b, t);
                QCOMPARE(x.size(), y.size());
                for (size_t i = 0; i < x.size(); ++i) QVERIFY(std::abs(x[i] - y[i]) < 1e-6f); // (1 + w) - 1
            }
            for (lora_target t : all_lora_targets()) QCOMPARE(g.projection(l, t), h.projection(l, t));
        }
    }

    // A wrong weight is seen: the fixtures are sensitive to each family's extra tensors.
    void extraTensorsMatter() {
        for (const auto& [f, tweak] : std::vector<std::pair<std::string, std::function<void(llama_model&)>>>{
                 {"qwen2", [](llama_model& m) { m.params.layers[0].bias[size_t(lora_target::k)][1] += 0.1f; }},
                 {"qwen3", [](llama_model& m) { m.params.layers[1].k_norm[2] += 0.1f; }},
                 {"gemma3", [](llama_model& m) { m.params.layers[0].post_mlp_norm[3] += 0.1f; }}}) {
            llama_model m = llama_model::load(fixture_dir(f));
            const fixture_logits ref = read_logits(fixture_dir(f) + "/logits.safetensors");
            tweak(m);
            llama_pass<float> pass(m.config, m.params, m.inv_freq, ref.S, ref.T);
            pass.forward(ref.tokens.data(), nullptr);
            QVERIFY(max_abs_diff(pass.logits().data(), ref.logits.data(), ref.logits.size()) > 1e-3);
        }
    }

    // d loss / d input embeddings and d loss / d LoRA (A, B) on every projection, biased ones included, against
    // central differences of the double-precision pass; sequences longer than Gemma's window, packed segments.
    void gradientsMatchFiniteDifferences() {
        for (const std::string& f : k_families) {
            const llama_model m = llama_model::load(fixture_dir(f));
            const model_config& c = m.config;
            const llama_params<double> P = m.params_f64();
            lora_config lc;
            lc.rank = 2;
            lc.alpha = 4;
            lc.dropout = 0;
            lora_weights<double> lw = lora_to_f64(lora_init(c, lc, 7));
            std::mt19937_64 rng(11);
            std::normal_distribution<double> nd(0.0, 0.3);
            for (auto& layer : lw.layers)
                for (auto& ad : layer)
                    for (double& b : ad.b) b = nd(rng); // B = 0 would hide A's gradient
            const int B = 2, T = 7, N = B * T, C = c.hidden_size;
            std::vector<int> tokens(static_cast<size_t>(N)), targets(tokens.size()), segments(tokens.size());
            std::uniform_int_distribution<int> tok(0, c.vocab_size - 1);
            for (int i = 0; i < N; ++i) {
                tokens[size_t(i)] = tok(rng);
                targets[size_t(i)] = i % 5 == 4 ? -1 : tok(rng);
                segments[size_t(i)] = (i % T) < 6 ? 0 : 1;
            }
            std::vector<double> x0(size_t(N) * C);
            for (double& v : x0) v = nd(rng);
            llama_pass<double> pass(c, P, m.inv_freq, B, T, &lw);
            lw.zero_grad();
            pass.forward(tokens.data(), targets.data(), nullptr, segments.data(), x0.data());
            pass.backward();
            const std::vector<double> dx0 = pass.dx0();
            auto loss = [&] {
                return pass.forward(tokens.data(), targets.data(), nullptr, segments.data(), x0.data());
            };
            const double h = 1e-6;
            double worst = 0;
            auto check = [&](double& x, double analytic) {
                const double keep = x;
                x = keep + h;
                const double lp = loss();
                x = keep - h;
                const double lm = loss();
                x = keep;
                worst = std::max(worst, rel_err(analytic, (lp - lm) / (2 * h)));
            };
            for (size_t i = 0; i < x0.size(); i += 7) check(x0[i], dx0[i]);
            for (int l = 0; l < c.num_layers; ++l)
                for (lora_target t : all_lora_targets()) {
                    lora_adapter<double>& ad = lw.at(l, t);
                    const std::vector<double> da = ad.da, db = ad.db;
                    for (size_t i = 0; i < ad.a.size(); i += 5) check(ad.a[i], da[i]);
                    for (size_t i = 0; i < ad.b.size(); i += 5) check(ad.b[i], db[i]);
                }
            qInfo("%s: worst relative error of the gradients %.3g", f.c_str(), worst);
            QVERIFY2(worst < 1e-5, qPrintable(QString::fromStdString(f) + QString(" worst %1").arg(worst)));
        }
    }

    // A few steps of LoRA training on the CPU backend lower the loss; the exported PEFT adapter reads back to the same
    // weights and logits. With QLS_FAMILIES_PEFT_OUT=DIR the adapters and our logits are kept in DIR/<family>/ for
    // tests/oracles/families_peft_check.py (real PEFT on the transformers model).
    void loraTrainsAndExportsPeft() {
        QTemporaryDir tmp;
        const QByteArray keep = qgetenv("QLS_FAMILIES_PEFT_OUT");
        const std::string out_root = keep.isEmpty() ? tmp.path().toStdString() : keep.toStdString();
        for (const std::string& f : k_families) {
            const llama_model m = llama_model::load(fixture_dir(f));
            const model_config& c = m.config;
            const fixture_logits ref = read_logits(fixture_dir(f) + "/logits.safetensors");
            plan_settings ps;
            ps.lora.rank = 4;
            ps.lora.alpha = 8;
            ps.lora.dropout = 0;
            ps.batch = 2;
            ps.seq = ref.T;
            ps.optimizer = optimizer_kind::adamw_32bit;
            ps.gradient_checkpointing = false;
            ps.backend = "cpu";
            ps.quantize_nf4 = false;
            const memory_plan plan = plan_run(c, ps);
            train_backend_options opt;
            auto be = make_cpu_train_backend(m, lora_init(c, ps.lora, 3), plan, opt);
            // learn to predict a fixed shifted sequence
            std::vector<int> tokens(size_t(2 * ref.T)), targets(tokens.size());
            for (size_t i = 0; i < tokens.size(); ++i) {
                tokens[i] = ref.tokens[i % ref.tokens.size()];
                targets[i] = (tokens[i] + 1) % c.vocab_size;
            }
            const train_batch batch{tokens.data(), targets.data(), nullptr, nullptr};
            const double first = be->forward_loss(batch);
            for (int step = 0; step < 8; ++step) {
                be->forward_backward(batch, uint64_t(step));
                be->optimizer_step(0.02f, 1, 1.0f);
            }
            const double last = be->forward_loss(batch);
            qInfo("%s: loss %.4f -> %.4f after 8 LoRA steps", f.c_str(), first, last);
            QVERIFY2(last < first - 0.05, f.c_str());

            const std::string dir = out_root + "/" + f;
            export_peft(dir, be->adapters(), c, fixture_dir(f));
            lora_weights<float> back = load_peft(dir, c);
            // our logits with the adapter (the first fixture sequence), from the reloaded adapter
            llama_pass<float> pass(c, m.params, m.inv_freq, 1, ref.T, &back);
            pass.forward(ref.tokens.data(), nullptr);
            llama_pass<float> pass2(c, m.params, m.inv_freq, 1, ref.T,
                                    const_cast<lora_weights<float>*>(&be->adapters()));
            pass2.forward(ref.tokens.data(), nullptr);
            QCOMPARE(max_abs_diff(pass.logits().data(), pass2.logits().data(), pass.logits().size()), 0.0);
            QVERIFY(max_abs_diff(pass.logits().data(), ref.logits.data(), size_t(ref.T) * ref.V) > 1e-2); // it moved
            // the merged export (biases, q/k and post norms copied, the adapters folded into the projections) gives
            // the same logits without the adapter
            const std::string merged = tmp.path().toStdString() + "/merged-" + f;
            export_merged(merged, hf_checkpoint::open(fixture_dir(f)), back);
            const llama_model mm = llama_model::load(merged);
            llama_pass<float> pass3(mm.config, mm.params, mm.inv_freq, 1, ref.T);
            pass3.forward(ref.tokens.data(), nullptr);
            const double dm = max_abs_diff(pass3.logits().data(), pass.logits().data(), pass.logits().size());
            qInfo("%s: merged export vs base + adapter: max |diff| = %.3g", f.c_str(), dm);
            QVERIFY2(dm < 1e-4, f.c_str());
            tensor tok(dtype::i64, {1, ref.T});
            for (int t = 0; t < ref.T; ++t) tok.data<int64_t>()[t] = ref.tokens[size_t(t)];
            safetensors_save(dir + "/ours_logits.safetensors",
                             {{"tokens", tok}, {"logits", tensor::from_f32(pass.logits(), {1, ref.T, ref.V})}});
        }
    }

    // `qlora info` names the family and what sets it apart (the studio's Model page calls family_specifics too).
    void infoDescribesTheFamily() {
        const testutil::cli_result r = testutil::run_cli({"info", "--model",
                                                          QString::fromStdString(fixture_dir("gemma3"))});
        QCOMPARE(r.exit_code, 1); // no tokenizer in the fixture: described, then refused
        for (const char* part : {"family       gemma3", "per-head q/k RMSNorm", "(1 + w) RMSNorm",
                                 "sliding window 4 on 1 of 2 layers (their RoPE theta 10000)", "embeddings x 4 (sqrt",
                                 "GeGLU MLP (gelu_pytorch_tanh)", "attention scale 24^-0.5", "RoPE linear scaling x2",
                                 "LoRA targets q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"})
            QVERIFY2(r.out.contains(part), qPrintable(r.out));
        const std::vector<std::string> q2 = family_specifics(load_model_config(fixture_dir("qwen2") + "/config.json"));
        QCOMPARE(q2, std::vector<std::string>{"q/k/v biases"});
        QVERIFY(family_specifics(load_model_config(testutil::model_dir() + "/config.json")).empty() ||
                family_specifics(load_model_config(testutil::model_dir() + "/config.json")) ==
                    std::vector<std::string>{"tied LM head"});
    }

    // The named shapes of the newer families have the published parameter counts (transformers on the meta device,
    // AutoModelForCausalLM.from_config with the same dimensions).
    void familyShapesHaveThePublishedSizes() {
        const std::vector<std::pair<std::string, long long>> want = {{"llama3.1-8b", 8030261248LL},
                                                                     {"qwen2.5-7b", 7615616512LL},
                                                                     {"qwen3-8b", 8190735360LL},
                                                                     {"mistral-nemo-12b", 12247782400LL},
                                                                     {"gemma3-12b", 11766034176LL}};
        for (const auto& [name, count] : want) {
            const model_config c = shape_config(name);
            QCOMPARE(c.parameter_count(), count);
            const memory_plan p = make_memory_plan(c, plan_settings{});
            QVERIFY(p.peak_bytes() > 0);
        }
        QCOMPARE(QString::fromStdString(architecture_for(shape_config("gemma3-12b")).family), QString("gemma3"));
        QCOMPARE(shape_config("gemma3-12b").sliding_window, 1024);
        QVERIFY(shape_config("qwen2.5-7b").qkv_bias);
        QCOMPARE(QString::fromStdString(shape_config("llama3.1-8b").rope.type), QString("llama3"));
        const testutil::cli_result r = testutil::run_cli({"plan", "--shape", "qwen3-8b", "--json"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY(r.out.contains("\"parameters\": 8190735360"));
    }

    // Malformed family configs: the error names the field.
    void malformedFamilyConfigsNameTheField() {
        struct bad_case {
            const char* family;
            std::function<void(json&)> edit;
            error_code code;
            std::vector<std::string> parts;
        };
        const std::vector<bad_case> cases = {
            {"qwen3", [](json& j) { j.erase("head_dim"); }, error_code::config, {"'head_dim'", "missing", "qwen3"}},
            {"gemma3", [](json& j) { j.erase("head_dim"); }, error_code::config, {"'head_dim'", "missing"}},
            {"gemma3",
             [](json& j) { j["layer_types"] = {"sliding_attention"}; },
             error_code::config,
             {"'layer_types'", "1 layers", "num_hidden_layers is 2"}},
            {"gemma3",
             [](json& j) { j["layer_types"][1] = "local"; },
             error_code::config,
             {"'layer_types[1]'", "\"local\""}},
            {"gemma3", [](json& j) { j["sliding_window"] = nullptr; }, error_code::config, {"'sliding_window'"}},
            {"gemma3",
             [](json& j) { j["hidden_activation"] = "relu"; },
             error_code::unsupported,
             {"'hidden_activation'", "relu", "gelu_pytorch_tanh"}},
            {"qwen2", [](json& j) { j["hidden_act"] = "gelu"; }, error_code::unsupported, {"'hidden_act'", "silu"}},
            {"gemma3",
             [](json& j) { j["final_logit_softcapping"] = 30.0; },
             error_code::unsupported,
             {"'final_logit_softcapping'"}},
            {"gemma3",
             [](json& j) { j.erase("query_pre_attn_scalar"); },
             error_code::config,
             {"'query_pre_attn_scalar'", "missing"}},
            {"gemma3",
             [](json& j) { j["rope_parameters"]["global"] = json::object(); },
             error_code::config,
             {"'rope_parameters.global'"}},
            {"gemma3",
             [](json& j) { j["rope_parameters"]["full_attention"]["rope_type"] = "yarn"; },
             error_code::unsupported,
             {"'rope_parameters.full_attention.rope_type'", "yarn"}},
            {"qwen2", [](json& j) { j["layer_types"] = "full_attention"; }, error_code::config, {"'layer_types'"}},
        };
        for (const bad_case& b : cases) {
            json j = fixture_config(b.family);
            b.edit(j);
            const std::string r = testutil::expect_error([&] { (void)parse_model_config(j.dump(), "config.json"); },
                                                         b.code, b.parts);
            QVERIFY2(r.empty(), (std::string(b.family) + ": " + r).c_str());
        }
        // Qwen2 layer_types marking sliding layers without use_sliding_window attend fully, as transformers does.
        json q = fixture_config("qwen2");
        q["layer_types"] = {"sliding_attention", "sliding_attention"};
        QVERIFY(!parse_model_config(q.dump(), "config.json").any_sliding());
        q["use_sliding_window"] = true;
        q["sliding_window"] = 5;
        const model_config qs = parse_model_config(q.dump(), "config.json");
        QVERIFY(qs.any_sliding() && qs.layer_window(1) == 5);
        // Gemma 3 without layer_types: every 6th layer full (sliding_window_pattern), as Gemma3TextConfig.
        json g = fixture_config("gemma3");
        g.erase("layer_types");
        g["num_hidden_layers"] = 7;
        const model_config gc = parse_model_config(g.dump(), "config.json");
        for (int l = 0; l < 7; ++l) QCOMPARE(gc.layer_sliding(l), l != 5);
        // The older layout: rope_theta, rope_local_base_freq, rope_scaling for the global layers.
        g.erase("rope_parameters");
        g["rope_theta"] = 1e6;
        g["rope_local_base_freq"] = 1e4;
        g["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
        const model_config go = parse_model_config(g.dump(), "config.json");
        QCOMPARE(go.rope.factor, 8.0);
        QCOMPARE(go.rope_local.theta, 1e4);
        QCOMPARE(QString::fromStdString(go.rope_local.type), QString("default"));
    }
};

QTEST_GUILESS_MAIN(TestFamilies)
#include "tst_families.moc"
