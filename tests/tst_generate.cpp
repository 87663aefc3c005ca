// Sampling (greedy, temperature, top-k, top-p, seed), the decoder interface on the CPU against the direct llama_decoder
// loop, and the `qlora generate` command end to end.
#include "testutil.h"

#include "qls/generate.h"
#include "qls/hf_checkpoint.h"
#include "qls/lora.h"
#include "qls/tokenizer.h"

#include <cmath>
#include <map>
#include <random>

using namespace qls;

static const char* k_reference_1_tail = "Lily didn't want to help her mom, so she\n";

// The generation loop as it ran directly on llama_decoder before the decoder interface: the reference the interface
// must reproduce token for token.
static std::vector<int> direct_loop(const llama_model& model, const tokenizer& tok, const generate_options& o) {
    const std::vector<int> prompt = tok.encode(o.prompt, true);
    llama_decoder dec(model, int(prompt.size()) + o.max_new_tokens);
    sampler smp(o.sampling);
    const std::vector<float>* logits = nullptr;
    for (int id : prompt) logits = &dec.step(id);
    std::vector<int> stops = model.config.eos_token_ids;
    stops.push_back(tok.eos_id());
    std::vector<int> out;
    for (int n = 0; n < o.max_new_tokens; ++n) {
        const int next = smp.sample(*logits);
        if (next == tok.bos_id() || std::find(stops.begin(), stops.end(), next) != stops.end()) break;
        out.push_back(next);
        if (n + 1 == o.max_new_tokens) break;
        logits = &dec.step(next);
    }
    return out;
}

static generate_options options(const std::string& prompt, int n, float temperature, uint64_t seed) {
    generate_options o;
    o.prompt = prompt;
    o.max_new_tokens = n;
    o.sampling.temperature = temperature;
    o.sampling.top_p = 0.9f;
    o.sampling.seed = seed;
    return o;
}

// An adapter part-way through training: PEFT's A, B drawn (B = 0 would change nothing).
static lora_weights<float> trained_adapter(const model_config& cfg) {
    lora_config lc;
    lc.rank = 4;
    lora_weights<float> a = lora_init(cfg, lc, 11);
    std::mt19937_64 rng(12);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    for (auto& layer : a.layers)
        for (auto& ad : layer)
            for (float& b : ad.b) b = nd(rng);
    return a;
}

class TestGenerate : public QObject {
    Q_OBJECT

private slots:
    void greedyPicksArgmaxLowestIdOnTies() {
        sampling_options o;
        o.temperature = 0;
        sampler s(o);
        QCOMPARE(s.sample({0.1f, 3.0f, -1.0f, 3.0f}), 1);
    }

    void samplingFollowsSoftmax() {
        // logits log(p) with temperature 1 and no truncation → frequencies ≈ p (20000 draws; 4-sigma bounds).
        const std::vector<double> p = {0.5, 0.3, 0.15, 0.05};
        std::vector<float> logits;
        for (double x : p) logits.push_back(float(std::log(x)));
        sampling_options o;
        o.temperature = 1;
        o.top_p = 1;
        o.seed = 42;
        sampler s(o);
        const int n = 20000;
        std::map<int, int> count;
        for (int i = 0; i < n; ++i) ++count[s.sample(logits)];
        for (size_t k = 0; k < p.size(); ++k) {
            double sigma = std::sqrt(p[k] * (1 - p[k]) / n);
            double f = double(count[int(k)]) / n;
            QVERIFY2(std::fabs(f - p[k]) < 4 * sigma,
                     qPrintable(QString("token %1: %2 vs %3").arg(k).arg(f).arg(p[k])));
        }
    }

    void temperatureSharpens() {
        std::vector<float> logits = {1.0f, 0.0f};
        sampling_options o;
        o.temperature = 0.25f;
        o.top_p = 1;
        o.seed = 1;
        sampler s(o);
        int first = 0;
        for (int i = 0; i < 4000; ++i) first += s.sample(logits) == 0;
        // p(0) = 1 / (1 + e^-4) = 0.982
        QVERIFY2(std::fabs(first / 4000.0 - 0.982) < 0.01, qPrintable(QString::number(first / 4000.0)));
    }

    void topKAndTopPTruncate() {
        std::vector<float> logits = {2.0f, 1.9f, 1.8f, 0.0f, -1.0f};
        sampling_options o;
        o.top_k = 2;
        o.top_p = 1;
        o.seed = 5;
        sampler k2(o);
        for (int i = 0; i < 2000; ++i) QVERIFY(k2.sample(logits) <= 1);
        // softmax(2, 1.9, 1.8, 0, -1) = (0.344, 0.311, 0.282, 0.047, 0.017): top_p 0.3 keeps only token 0
        sampling_options q;
        q.top_p = 0.3f;
        q.seed = 6;
        sampler p03(q);
        for (int i = 0; i < 500; ++i) QCOMPARE(p03.sample(logits), 0);
        // top_p 0.6 keeps tokens 0 and 1 (0.344 + 0.311 = 0.655 ≥ 0.6), never 2
        q.top_p = 0.6f;
        sampler p06(q);
        std::map<int, int> seen;
        for (int i = 0; i < 2000; ++i) ++seen[p06.sample(logits)];
        QVERIFY(seen.count(0) && seen.count(1));
        QVERIFY(!seen.count(2) && !seen.count(3) && !seen.count(4));
    }

    void sameSeedSameTokens() {
        std::vector<float> logits(50);
        for (int i = 0; i < 50; ++i) logits[size_t(i)] = float(std::sin(i));
        sampling_options o;
        o.seed = 1234;
        sampler a(o), b(o);
        o.seed = 1235;
        sampler c(o);
        int differ = 0;
        for (int i = 0; i < 200; ++i) {
            int x = a.sample(logits), y = b.sample(logits), z = c.sample(logits);
            QCOMPARE(x, y);
            differ += x != z;
        }
        QVERIFY(differ > 0);
    }

    void invalidOptionsAreRefused() {
        sampling_options o;
        o.temperature = -1;
        QVERIFY_THROWS_EXCEPTION(qls::error, validate_sampling(o));
        o = {};
        o.top_p = 0;
        QVERIFY_THROWS_EXCEPTION(qls::error, validate_sampling(o));
        o = {};
        o.top_p = 1.5f;
        QVERIFY_THROWS_EXCEPTION(qls::error, validate_sampling(o));
        o = {};
        o.top_k = -3;
        QVERIFY_THROWS_EXCEPTION(qls::error, validate_sampling(o));
    }

    // ---- the decoder interface ------------------------------------------------------------------------------
    void cpuDecoderGivesTheDirectLoopsTokens() {
        QLS_REQUIRE_MODEL();
        const hf_checkpoint ck = hf_checkpoint::open(testutil::model_dir());
        const tokenizer tok = load_tokenizer_for(ck);
        const llama_model model = llama_model::load(ck);
        for (const generate_options& o :
             {options("Once upon a time", 80, 0.0f, 0), options("Zoo", 60, 0.8f, 7), options("", 40, 1.0f, 99)}) {
            const std::vector<int> want = direct_loop(model, tok, o);
            QVERIFY(want.size() > 10);
            auto dec = make_cpu_decoder(model);
            QCOMPARE(dec->device_label(), std::string("cpu"));
            QCOMPARE(generate(*dec, tok, o).new_ids, want);
            QCOMPARE(generate(model, tok, o).new_ids, want);     // the model overload runs the same decoder
            auto chosen = make_decoder(model, compute_device{}); // the default device is the CPU
            QCOMPARE(generate(*chosen, tok, o).new_ids, want);
        }
    }

    void decoderIsReusedAcrossGenerations() {
        // reset() resizes the cache to each request: a long, a short and the long one again give what fresh
        // decoders give, and the cache is sized by the request, not the model's context.
        QLS_REQUIRE_MODEL();
        const hf_checkpoint ck = hf_checkpoint::open(testutil::model_dir());
        const tokenizer tok = load_tokenizer_for(ck);
        const llama_model model = llama_model::load(ck);
        auto dec = make_cpu_decoder(model);
        const generate_options a = options("Once upon a time", 70, 0.0f, 0), b = options("Zoo", 12, 0.9f, 3);
        const std::vector<int> a1 = generate(*dec, tok, a).new_ids;
        QCOMPARE(dec->capacity(), int(tok.encode(a.prompt, true).size()) + a.max_new_tokens);
        const std::vector<int> b1 = generate(*dec, tok, b).new_ids;
        QCOMPARE(dec->capacity(), int(tok.encode(b.prompt, true).size()) + b.max_new_tokens);
        QCOMPARE(generate(*dec, tok, a).new_ids, a1);
        QCOMPARE(b1, direct_loop(model, tok, b));
        QCOMPARE(a1, direct_loop(model, tok, a));
    }

    void adapterDecoderEqualsTheMergedModel() {
        // make_cpu_decoder(model, &adapter) decodes a merged copy: the same tokens as merging into the model, which
        // itself stays the base model.
        QLS_REQUIRE_MODEL();
        const hf_checkpoint ck = hf_checkpoint::open(testutil::model_dir());
        const tokenizer tok = load_tokenizer_for(ck);
        const llama_model model = llama_model::load(ck);
        const lora_weights<float> adapter = trained_adapter(model.config);
        llama_model merged = model;
        for (int l = 0; l < model.config.num_layers; ++l)
            for (lora_target t : all_lora_targets())
                lora_merge(merged.projection(l, t).data(), adapter.at(l, t), adapter.config.scale());
        const generate_options o = options("Once upon a time", 60, 0.0f, 0);
        const std::vector<int> base = direct_loop(model, tok, o), tuned = direct_loop(merged, tok, o);
        QVERIFY(base != tuned); // the adapter matters
        auto dec = make_cpu_decoder(model, &adapter);
        QCOMPARE(generate(*dec, tok, o).new_ids, tuned);
        QCOMPARE(generate(model, tok, o).new_ids, base);
        lora_weights<float> wrong = adapter;
        wrong.layers.pop_back();
        const std::string e = testutil::expect_error([&] { make_cpu_decoder(model, &wrong); },
                                                     error_code::shape_mismatch, {"layers"});
        QVERIFY2(e.empty(), e.c_str());
    }

    void cpuDecoderRefusesAModelWithoutF32Projections() {
        // A model loaded for the GPU keeps only its NF4 projections: the CPU decoder says so instead of reading them.
        QLS_REQUIRE_MODEL();
        llama_model model = llama_model::load(testutil::model_dir(), {true, true});
        std::vector<float>().swap(model.projection(2, lora_target::up));
        const std::string e = testutil::expect_error([&] { make_cpu_decoder(model); }, error_code::invalid_argument,
                                                     {"layer 2", "up_proj", "CPU decoder"});
        QVERIFY2(e.empty(), e.c_str());
    }

    // ---- the CLI --------------------------------------------------------------------------------------
    // The reference texts are the f32 model's on the CPU decoder (--device cpu: on a machine with a GPU, auto would
    // decode the NF4 model there).
    void cliGreedyMatchesReference1() {
        QLS_REQUIRE_MODEL();
        auto r = testutil::run_cli({"generate", "--model", QString::fromStdString(testutil::model_dir()),
                                    "--temperature", "0", "--max-new-tokens", "200", "--device", "cpu"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY2(r.out.startsWith("Once upon a time, there was a little girl named Lily."), qPrintable(r.out));
        QVERIFY2(r.out.endsWith(k_reference_1_tail), qPrintable(r.out));
        QCOMPARE(r.out.count('\n'), 4);
    }

    void cliZoo() {
        QLS_REQUIRE_MODEL();
        auto r = testutil::run_cli({"generate", "--model", QString::fromStdString(testutil::model_dir()), "--prompt",
                                    "Zoo", "--temperature", "0", "--max-new-tokens", "57", "--device", "cpu"});
        QCOMPARE(r.exit_code, 0);
        QCOMPARE(r.out, QString("Zoo was a little girl named Lily. She loved to play outside in the park. One day, she "
                                "saw a big, red ball. She wanted to play with it, but she didn't want to play with\n"));
    }

    void cliSeededSamplingIsReproducible() {
        QLS_REQUIRE_MODEL();
        QStringList args = {"generate",
                            "--model",
                            QString::fromStdString(testutil::model_dir()),
                            "--temperature",
                            "1",
                            "--top-p",
                            "0.9",
                            "--seed",
                            "133742",
                            "--max-new-tokens",
                            "40"};
        auto a = testutil::run_cli(args), b = testutil::run_cli(args);
        QCOMPARE(a.exit_code, 0);
        QCOMPARE(a.out, b.out);
        QVERIFY(a.out.size() > 20);
    }

    void cliBadArguments() {
        QLS_REQUIRE_MODEL();
        const QString dir = QString::fromStdString(testutil::model_dir());
        auto r = testutil::run_cli({"generate"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.err.contains("--model"));
        r = testutil::run_cli({"generate", "--model", dir, "--temperature", "hot"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.err.contains("--temperature"));
        r = testutil::run_cli({"generate", "--model", dir, "--top-p", "2"});
        QCOMPARE(r.exit_code, 1);
        QVERIFY(r.err.contains("top-p"));
        r = testutil::run_cli({"generate", "--model", dir, "--bogus", "1"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.err.contains("unknown option --bogus"));
        r = testutil::run_cli({"generate", "--model", "/nonexistent/model"});
        QCOMPARE(r.exit_code, 1);
        QVERIFY(r.err.contains("/nonexistent/model"));
    }

    void cliDeviceChoice() {
        // --device cpu decodes on the CPU decoder (the reference text); a device that does not exist is a usage
        // error; --device cuda without a usable GPU says why instead of falling back.
        QLS_REQUIRE_MODEL();
        const QString dir = QString::fromStdString(testutil::model_dir());
        auto r = testutil::run_cli({"generate", "--model", dir, "--prompt", "Zoo", "--temperature", "0",
                                    "--max-new-tokens", "57", "--device", "cpu"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY(r.out.startsWith("Zoo was a little girl named Lily."));
        QVERIFY2(r.err.contains("on cpu"), qPrintable(r.err));
        r = testutil::run_cli({"generate", "--model", dir, "--device", "tpu"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.err.contains("--device must be auto, cpu or cuda"));
        if (!probe_gpu().available) {
            r = testutil::run_cli({"generate", "--model", dir, "--device", "cuda", "--max-new-tokens", "3"});
            QCOMPARE(r.exit_code, 1);
            QVERIFY2(r.err.contains("cuda") && r.err.contains("GPU"), qPrintable(r.err));
        }
    }

    void cliVersion() {
        auto r = testutil::run_cli({"--version"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY(r.out.startsWith("qlora "));
    }
};

QTEST_APPLESS_MAIN(TestGenerate)
#include "tst_generate.moc"
