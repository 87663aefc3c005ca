// LLaMA on the CPU reference backend: golden greedy outputs of stories260K, decoder/pass agreement, whole-model input gradient.
#include "testutil.h"

#include "qls/generate.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/tokenizer.h"

#include <cmath>
#include <random>

using namespace qls;

// Reference outputs 1 and 3 of ../shared/models/stories260K/SOURCE.md (llama2.c run.c, greedy).
static const char* k_reference_1 =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
    "big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to "
    "play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
    "Lily didn't want to help her mom, so she";
static const char* k_reference_3 =
    "Zoo was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She "
    "wanted to play with it, but she didn't want to play with";

class TestLlama : public QObject {
    Q_OBJECT

    struct loaded {
        llama_model model;
        tokenizer tok;
    };
    static loaded& real() {
        static loaded l = [] {
            hf_checkpoint ck = hf_checkpoint::open(testutil::model_dir());
            tokenizer t = load_tokenizer_for(ck);
            return loaded{llama_model::load(ck), t};
        }();
        return l;
    }

private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    void loadsAllWeights() {
        const llama_model& m = real().model;
        QCOMPARE(m.config.num_layers, 5);
        QCOMPARE(m.params.layers.size(), size_t(5));
        QCOMPARE(m.params.embed.size(), size_t(512 * 64));
        QCOMPARE(m.params.layers[0].wk.size(), size_t(32 * 64));
        QCOMPARE(m.params.layers[4].w_down.size(), size_t(64 * 172));
        QVERIFY(m.params.lm_head.empty()); // tied
        QCOMPARE(m.inv_freq.size(), size_t(4));
    }

    void greedyReference1() {
        generate_options o;
        o.max_new_tokens = 200;
        o.sampling.temperature = 0;
        generate_result r = generate(real().model, real().tok, o);
        QCOMPARE(int(r.new_ids.size()), 200);
        QCOMPARE(QString::fromStdString(r.text), QString(k_reference_1));
    }

    void greedyReference3Zoo() {
        generate_options o;
        o.prompt = "Zoo";
        o.max_new_tokens = 57;
        o.sampling.temperature = 0;
        generate_result r = generate(real().model, real().tok, o);
        QCOMPARE(r.prompt_ids, (std::vector<int>{1, 410, 469, 347}));
        QCOMPARE(QString::fromStdString(r.text), QString(k_reference_3));
    }

    void greedyReference4Tokens() {
        // SOURCE.md reference 4 lists the token ids: BOS, 4 prompt tokens, 60 generated.
        const std::vector<int> expected = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267,
                                           337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432,
                                           358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337,
                                           335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};
        generate_options o;
        o.prompt = "Once upon a time";
        o.max_new_tokens = 60;
        o.sampling.temperature = 0;
        generate_result r = generate(real().model, real().tok, o);
        QCOMPARE(r.prompt_ids, (std::vector<int>{1, 403, 407, 261, 378}));
        QCOMPARE(r.new_ids, expected);
    }

    // The KV-cache decoder and the batch pass are two codings of one model: their logits must agree.
    void decoderMatchesPass() {
        const llama_model& m = real().model;
        std::vector<int> toks = real().tok.encode("Once upon a time, there was a cat.", true);
        const int T = int(toks.size());
        llama_pass<float> pass(m.config, m.params, m.inv_freq, 1, T);
        pass.forward(toks.data(), nullptr);
        llama_decoder dec(m);
        double worst = 0;
        for (int t = 0; t < T; ++t) {
            const std::vector<float>& lg = dec.step(toks[size_t(t)]);
            for (int v = 0; v < m.config.vocab_size; ++v)
                worst = std::max(worst, double(std::fabs(lg[size_t(v)] - pass.logits()[size_t(t) * 512 + size_t(v)])));
        }
        QVERIFY2(worst < 1e-4, qPrintable(QString("max |decoder - pass| logit difference %1").arg(worst)));
    }

    // Two sequences in one batch give the same logits as each alone; packing them into one row with segment ids
    // and restarted positions gives the same logits too (attention never crosses the boundary).
    void batchAndPackingAreIndependent() {
        const llama_model& m = real().model;
        std::vector<int> a = real().tok.encode("The dog ran to the park.", true);
        std::vector<int> b = real().tok.encode("Tom had a red hat.", true);
        a.resize(8);
        b.resize(8);
        llama_pass<float> one(m.config, m.params, m.inv_freq, 1, 8);
        one.forward(a.data(), nullptr);
        std::vector<float> la = one.logits();
        one.forward(b.data(), nullptr);
        std::vector<float> lb = one.logits();

        std::vector<int> both(a);
        both.insert(both.end(), b.begin(), b.end());
        llama_pass<float> two(m.config, m.params, m.inv_freq, 2, 8);
        two.forward(both.data(), nullptr);
        llama_pass<float> packed(m.config, m.params, m.inv_freq, 1, 16);
        std::vector<int> pos(16), seg(16);
        for (int i = 0; i < 16; ++i) {
            pos[size_t(i)] = i % 8;
            seg[size_t(i)] = i / 8;
        }
        packed.forward(both.data(), nullptr, pos.data(), seg.data());
        double worst = 0;
        for (size_t i = 0; i < la.size(); ++i) {
            worst = std::max(worst, double(std::fabs(two.logits()[i] - la[i])));
            worst = std::max(worst, double(std::fabs(two.logits()[la.size() + i] - lb[i])));
            worst = std::max(worst, double(std::fabs(packed.logits()[i] - la[i])));
            worst = std::max(worst, double(std::fabs(packed.logits()[la.size() + i] - lb[i])));
        }
        QVERIFY2(worst < 1e-4, qPrintable(QString("max logit difference %1").arg(worst)));
    }

    void lossOfRealTextIsLow() {
        // The model was trained to val loss ~1.30 (SOURCE.md); its own greedy text must score far below
        // log(512) = 6.24, and a shuffled version far above that.
        const llama_model& m = real().model;
        std::vector<int> toks = real().tok.encode(k_reference_1, true);
        const int T = 64;
        std::vector<int> in(toks.begin(), toks.begin() + T), tgt(toks.begin() + 1, toks.begin() + T + 1);
        llama_pass<float> pass(m.config, m.params, m.inv_freq, 1, T);
        float loss = pass.forward(in.data(), tgt.data());
        QVERIFY2(loss < 1.0f, qPrintable(QString("loss %1").arg(loss)));
        std::mt19937 rng(3);
        std::shuffle(tgt.begin(), tgt.end(), rng);
        float shuffled = pass.forward(in.data(), tgt.data());
        QVERIFY2(shuffled > 4.0f, qPrintable(QString("shuffled loss %1").arg(shuffled)));
    }

    // d(mean loss)/d(x0) on stories260K in float64 against central differences over every element of x0.
    void inputGradientMatchesFiniteDifferences_data() {
        QTest::addColumn<int>("B");
        QTest::addColumn<int>("T");
        QTest::addColumn<bool>("packed");
        QTest::newRow("1x12") << 1 << 12 << false;
        QTest::newRow("2x6 packed") << 2 << 6 << true;
    }
    void inputGradientMatchesFiniteDifferences() {
        QFETCH(int, B);
        QFETCH(int, T);
        QFETCH(bool, packed);
        const llama_model& m = real().model;
        const llama_params<double> p64 = m.params_f64();
        const int C = m.config.hidden_size, N = B * T;
        std::vector<int> toks = real().tok.encode(k_reference_1, true);
        std::vector<int> in(toks.begin(), toks.begin() + N), tgt(toks.begin() + 1, toks.begin() + N + 1);
        tgt[2] = -1; // an ignored target must not contribute
        std::vector<int> seg(static_cast<size_t>(N)), pos(static_cast<size_t>(N));
        for (int i = 0; i < N; ++i) {
            int row_t = i % T;
            seg[size_t(i)] = row_t < T / 2 ? 0 : 1;
            pos[size_t(i)] = row_t < T / 2 ? row_t : row_t - T / 2;
        }
        llama_pass<double> pass(m.config, p64, m.inv_freq, B, T);
        std::vector<double> x0(size_t(N) * C);
        for (int i = 0; i < N; ++i)
            for (int c = 0; c < C; ++c) x0[size_t(i) * C + c] = p64.embed[size_t(in[size_t(i)]) * C + c];
        const int* sp = packed ? seg.data() : nullptr;
        const int* pp = packed ? pos.data() : nullptr;
        pass.forward(in.data(), tgt.data(), pp, sp, x0.data());
        pass.backward();
        const std::vector<double> grad = pass.dx0();

        // Tolerance: central differences with h = 1e-5 have truncation error O(h^2 f''') ~ 1e-10 and rounding
        // ~ 1e-16/h ~ 1e-11 on a loss of O(1); we require |analytic - numeric| <= 1e-8 + 1e-5 |analytic|.
        const double h = 1e-5;
        double worst_excess = 0;
        int worst_i = -1;
        double gmax = 0;
        for (size_t i = 0; i < x0.size(); ++i) {
            const double keep = x0[i];
            x0[i] = keep + h;
            double lp = pass.forward(in.data(), tgt.data(), pp, sp, x0.data());
            x0[i] = keep - h;
            double lm = pass.forward(in.data(), tgt.data(), pp, sp, x0.data());
            x0[i] = keep;
            double num = (lp - lm) / (2 * h);
            double err = std::fabs(num - grad[i]) - (1e-8 + 1e-5 * std::fabs(grad[i]));
            gmax = std::max(gmax, std::fabs(grad[i]));
            if (err > worst_excess) {
                worst_excess = err;
                worst_i = int(i);
            }
        }
        QVERIFY2(gmax > 1e-4, "gradient is all (near) zero: the check would be vacuous");
        QVERIFY2(worst_i < 0, qPrintable(QString("element %1: analytic %2 vs numeric differs beyond tolerance by %3")
                                             .arg(worst_i)
                                             .arg(worst_i >= 0 ? grad[size_t(worst_i)] : 0.0)
                                             .arg(worst_excess)));
    }

    void randomModelRuns() {
        model_config c;
        c.hidden_size = 16;
        c.intermediate_size = 24;
        c.num_layers = 2;
        c.num_heads = 4;
        c.num_kv_heads = 2;
        c.head_dim = 4;
        c.vocab_size = 37;
        c.max_position_embeddings = 32;
        c.tie_word_embeddings = false;
        llama_model m = llama_model::random(c, 7);
        std::vector<int> toks = {1, 5, 9, 2, 30, 36}, tgt = {5, 9, 2, 30, 36, -1};
        llama_pass<float> pass(m.config, m.params, m.inv_freq, 1, 6);
        float loss = pass.forward(toks.data(), tgt.data());
        QCOMPARE(pass.counted_targets(), 5);
        // tiny random weights → nearly uniform predictions: logits have std ≈ 0.02·sqrt(C) = 0.08, so the mean of five
        // token losses lies within ±0.04 (1σ) of log V; 0.25 is a 6σ bound that a wrong loss (e.g. no softmax) breaks
        QVERIFY2(std::fabs(loss - std::log(37.0f)) < 0.25f,
                 qPrintable(QString("loss %1 vs log(37) %2").arg(loss).arg(std::log(37.0f))));
    }

    void outOfVocabularyTokenIsAnError() {
        const llama_model& m = real().model;
        std::vector<int> toks = {1, 600};
        llama_pass<float> pass(m.config, m.params, m.inv_freq, 1, 2);
        try {
            pass.forward(toks.data(), nullptr);
            QFAIL("expected an error");
        } catch (const qls::error& e) {
            QVERIFY(QString(e.what()).contains("600"));
            QVERIFY(QString(e.what()).contains("vocabulary"));
        }
    }
};

QTEST_APPLESS_MAIN(TestLlama)
#include "tst_llama.moc"
