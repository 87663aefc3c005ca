// LoRA: op gradients by finite differences, whole-model adapter gradients on stories260K, B = 0 equals the base,
// merge equals the adapter path, initialisation, dropout mask and configuration checks.
#include "testutil.h"

#include "backends/cpu/ops.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/lora.h"

#include <cmath>
#include <cstring>
#include <random>

using namespace qls;

static std::vector<double> random_vec(size_t n, std::mt19937_64& rng, double scale = 1.0) {
    std::uniform_real_distribution<double> u(-scale, scale);
    std::vector<double> v(n);
    for (double& x : v) x = u(rng);
    return v;
}

class TestLora : public QObject {
    Q_OBJECT

    static const llama_model& real() {
        static llama_model m = llama_model::load(testutil::model_dir());
        return m;
    }

private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    void opGradientsMatchFiniteDifferences() {
        const int N = 5, IC = 7, OC = 9, r = 3;
        const double scale = 1.7;
        std::mt19937_64 rng(11);
        auto x = random_vec(size_t(N) * IC, rng), A = random_vec(size_t(r) * IC, rng),
             B = random_vec(size_t(OC) * r, rng);
        auto R = random_vec(size_t(N) * OC, rng); // loss = sum(out * R)
        auto loss = [&](const std::vector<double>& xx, const std::vector<double>& AA, const std::vector<double>& BB) {
            std::vector<double> out(size_t(N) * OC, 0.0), xa(size_t(N) * r);
            cpu::lora_forward(out.data(), xa.data(), xx.data(), AA.data(), BB.data(), N, IC, OC, r, scale);
            double s = 0;
            for (size_t i = 0; i < out.size(); ++i) s += out[i] * R[i];
            return s;
        };
        std::vector<double> out(size_t(N) * OC, 0.0), xa(size_t(N) * r);
        cpu::lora_forward(out.data(), xa.data(), x.data(), A.data(), B.data(), N, IC, OC, r, scale);
        std::vector<double> dx(x.size(), 0.0), dA(A.size(), 0.0), dB(B.size(), 0.0);
        cpu::lora_backward(dx.data(), dA.data(), dB.data(), R.data(), x.data(), xa.data(), A.data(), B.data(), N, IC,
                           OC, r, scale);
        // loss is bilinear in each argument: central differences are exact up to rounding (~1e-10 here)
        const double h = 1e-5;
        auto check = [&](std::vector<double>& v, const std::vector<double>& g, const char* what) {
            for (size_t i = 0; i < v.size(); ++i) {
                double keep = v[i];
                v[i] = keep + h;
                double lp = loss(x, A, B);
                v[i] = keep - h;
                double lm = loss(x, A, B);
                v[i] = keep;
                double num = (lp - lm) / (2 * h);
                QVERIFY2(std::fabs(num - g[i]) <= 1e-7 * (1 + std::fabs(g[i])),
                         qPrintable(QString("%1[%2]: analytic %3 numeric %4").arg(what).arg(i).arg(g[i]).arg(num)));
            }
        };
        check(x, dx, "dx");
        check(A, dA, "dA");
        check(B, dB, "dB");
    }

    void zeroBLeavesTheBaseModelUnchanged() {
        const llama_model& m = real();
        lora_config c;
        c.rank = 8;
        lora_weights<float> lw = lora_init(m.config, c, 1);
        std::vector<int> toks = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376};
        llama_pass<float> base(m.config, m.params, m.inv_freq, 1, 10);
        base.forward(toks.data(), nullptr);
        llama_pass<float> adapted(m.config, m.params, m.inv_freq, 1, 10, &lw);
        adapted.set_dropout(true, 99); // dropout changes nothing either while B = 0
        adapted.forward(toks.data(), nullptr);
        QCOMPARE(adapted.logits().size(), base.logits().size());
        QVERIFY(std::memcmp(adapted.logits().data(), base.logits().data(), base.logits().size() * sizeof(float)) == 0);
    }

    // Whole stories260K with adapters on all seven projections (random non-zero B), dropout on, float64:
    // d(mean loss)/dA and dB at 400 random elements against central differences, and d/dx0 at 100.
    void modelAdapterGradientsMatchFiniteDifferences() {
        const llama_model& m = real();
        const llama_params<double> p64 = m.params_f64();
        lora_config c;
        c.rank = 3;
        c.alpha = 6;
        c.dropout = 0.2f;
        lora_weights<float> lf = lora_init(m.config, c, 5);
        std::mt19937_64 rng(17);
        std::normal_distribution<float> nd(0.0f, 0.05f);
        for (auto& layer : lf.layers)
            for (auto& ad : layer)
                for (float& b : ad.b) b = nd(rng);
        lora_weights<double> lw = lora_to_f64(lf);
        const int T = 10;
        std::vector<int> toks = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298};
        std::vector<int> in(toks.begin(), toks.begin() + T), tgt(toks.begin() + 1, toks.end());
        llama_pass<double> pass(m.config, p64, m.inv_freq, 1, T, &lw);
        pass.set_dropout(true, 1234);
        lw.zero_grad();
        pass.forward(in.data(), tgt.data());
        pass.backward();

        struct probe {
            double* value;
            double grad;
            QString name;
        };
        std::vector<probe> probes;
        std::uniform_int_distribution<int> pick_layer(0, m.config.num_layers - 1), pick_t(0, k_lora_target_count - 1);
        for (int i = 0; i < 400; ++i) {
            int l = pick_layer(rng), t = pick_t(rng);
            auto& ad = lw.at(l, lora_target(t));
            bool use_a = i % 2 == 0;
            std::vector<double>& v = use_a ? ad.a : ad.b;
            std::vector<double>& g = use_a ? ad.da : ad.db;
            size_t j = std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng);
            probes.push_back({&v[j], g[j],
                              QString("layer %1 %2 %3[%4]")
                                  .arg(l)
                                  .arg(lora_target_name(lora_target(t)))
                                  .arg(use_a ? "A" : "B")
                                  .arg(j)});
        }
        const double h = 1e-5;
        double gmax = 0;
        for (const probe& pr : probes) {
            const double keep = *pr.value;
            *pr.value = keep + h;
            double lp = pass.forward(in.data(), tgt.data());
            *pr.value = keep - h;
            double lm = pass.forward(in.data(), tgt.data());
            *pr.value = keep;
            double num = (lp - lm) / (2 * h);
            gmax = std::max(gmax, std::fabs(pr.grad));
            // same tolerance argument as tst_llama: truncation O(h^2) ~ 1e-10, rounding ~ 1e-11
            QVERIFY2(std::fabs(num - pr.grad) <= 1e-8 + 1e-5 * std::fabs(pr.grad),
                     qPrintable(QString("%1: analytic %2 numeric %3").arg(pr.name).arg(pr.grad).arg(num)));
        }
        QVERIFY2(gmax > 1e-4, "adapter gradients are all near zero: the check would be vacuous");
    }

    // Gradient checkpointing recomputes each layer in backward: loss, input gradient and adapter gradients must be
    // bit-identical to a pass that kept every activation (dropout on, so the recomputed mask must match too).
    void checkpointingIsBitIdentical() {
        const llama_model& m = real();
        lora_config c;
        c.rank = 4;
        c.dropout = 0.1f;
        lora_weights<float> a = lora_init(m.config, c, 8);
        std::mt19937_64 rng(9);
        std::normal_distribution<float> nd(0.0f, 0.05f);
        for (auto& layer : a.layers)
            for (auto& ad : layer)
                for (float& b : ad.b) b = nd(rng);
        lora_weights<float> b = a;
        std::vector<int> toks = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421};
        std::vector<int> in(toks.begin(), toks.end() - 1), tgt(toks.begin() + 1, toks.end());
        const int T = int(in.size());
        llama_pass<float> plain(m.config, m.params, m.inv_freq, 1, T, &a);
        llama_pass<float> ckpt(m.config, m.params, m.inv_freq, 1, T, &b);
        ckpt.set_checkpointing(true);
        plain.set_dropout(true, 77);
        ckpt.set_dropout(true, 77);
        float l1 = plain.forward(in.data(), tgt.data());
        float l2 = ckpt.forward(in.data(), tgt.data());
        QCOMPARE(l1, l2);
        plain.backward();
        ckpt.backward();
        QVERIFY(plain.dx0() == ckpt.dx0());
        for (int l = 0; l < m.config.num_layers; ++l)
            for (lora_target t : all_lora_targets()) {
                QVERIFY(a.at(l, t).da == b.at(l, t).da);
                QVERIFY(a.at(l, t).db == b.at(l, t).db);
            }
    }

    void mergedWeightsEqualTheAdapterPath() {
        const llama_model& m = real();
        lora_config c;
        c.rank = 4;
        c.use_rslora = true;
        lora_weights<float> lw = lora_init(m.config, c, 3);
        std::mt19937_64 rng(4);
        std::normal_distribution<float> nd(0.0f, 0.1f);
        for (auto& layer : lw.layers)
            for (auto& ad : layer)
                for (float& b : ad.b) b = nd(rng);
        std::vector<int> toks = {1, 403, 407, 261, 378, 432, 383, 286};
        llama_pass<float> adapted(m.config, m.params, m.inv_freq, 1, 8, &lw);
        adapted.forward(toks.data(), nullptr);

        llama_params<float> merged = m.params;
        for (int l = 0; l < m.config.num_layers; ++l) {
            auto& L = merged.layers[size_t(l)];
            std::vector<float>* w[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
            for (int t = 0; t < k_lora_target_count; ++t) lora_merge(w[t]->data(), lw.at(l, lora_target(t)), c.scale());
        }
        llama_pass<float> mp(m.config, merged, m.inv_freq, 1, 8);
        mp.forward(toks.data(), nullptr);
        double worst = 0, moved = 0;
        llama_pass<float> base(m.config, m.params, m.inv_freq, 1, 8);
        base.forward(toks.data(), nullptr);
        for (size_t i = 0; i < mp.logits().size(); ++i) {
            worst = std::max(worst, double(std::fabs(mp.logits()[i] - adapted.logits()[i])));
            moved = std::max(moved, double(std::fabs(base.logits()[i] - adapted.logits()[i])));
        }
        QVERIFY2(moved > 1e-2, "the adapter must change the logits for this test to mean anything");
        QVERIFY2(worst < 1e-4, qPrintable(QString("merged vs adapter logits differ by %1").arg(worst)));
    }

    void initialisationFollowsPeft() {
        model_config mc = real().config;
        lora_config c;
        c.rank = 16;
        lora_weights<float> w = lora_init(mc, c, 42);
        const lora_adapter<float>& q = w.at(0, lora_target::q);
        QCOMPARE(q.in, 64);
        QCOMPARE(q.out, 64);
        QCOMPARE(q.a.size(), size_t(16 * 64));
        QCOMPARE(w.at(2, lora_target::down).in, 172);
        QCOMPARE(w.at(2, lora_target::k).out, 32);
        const float bound = 1.0f / std::sqrt(64.0f);
        double sum = 0, sq = 0;
        for (float a : q.a) {
            QVERIFY(std::fabs(a) <= bound);
            sum += a;
            sq += double(a) * a;
        }
        const double n = double(q.a.size());
        const double mean = sum / n, var = sq / n - mean * mean;
        // U(-b, b): mean 0 (sd b/sqrt(3n)), variance b²/3
        QVERIFY2(std::fabs(mean) < 4 * bound / std::sqrt(3 * n), qPrintable(QString::number(mean)));
        QVERIFY2(std::fabs(var - bound * bound / 3) < 0.1 * bound * bound / 3, qPrintable(QString::number(var)));
        for (float b : q.b) QCOMPARE(b, 0.0f);
        // deterministic in the seed, and a subset of targets keeps the same A for the targets it has
        lora_config only_v = c;
        only_v.targets = {lora_target::v};
        lora_weights<float> w2 = lora_init(mc, only_v, 42);
        QVERIFY(!w2.at(0, lora_target::q).enabled());
        QCOMPARE(w2.at(3, lora_target::v).a, w.at(3, lora_target::v).a);
        QCOMPARE(w.parameter_count(), size_t(5) * (16 * (64 + 64) + 2 * 16 * (64 + 32) + 16 * (64 + 64) +
                                                   2 * 16 * (64 + 172) + 16 * (172 + 64)));
    }

    void scalesAndValidation() {
        lora_config c;
        c.rank = 64;
        c.alpha = 16;
        QCOMPARE(c.scale(), 0.25f);
        c.use_rslora = true;
        QCOMPARE(c.scale(), 2.0f);
        lora_config bad = c;
        bad.rank = 0;
        QVERIFY_THROWS_EXCEPTION(qls::error, validate_lora(bad));
        bad = c;
        bad.alpha = -1;
        QVERIFY_THROWS_EXCEPTION(qls::error, validate_lora(bad));
        bad = c;
        bad.dropout = 1.0f;
        QVERIFY_THROWS_EXCEPTION(qls::error, validate_lora(bad));
        bad = c;
        bad.targets = {};
        QVERIFY_THROWS_EXCEPTION(qls::error, validate_lora(bad));
        bad = c;
        bad.targets = {lora_target::q, lora_target::q};
        try {
            validate_lora(bad);
            QFAIL("expected an error");
        } catch (const qls::error& e) {
            QVERIFY(QString(e.what()).contains("'q'"));
        }
        QCOMPARE(lora_target_from_name("gate_proj").value(), lora_target::gate);
        QCOMPARE(lora_target_from_name("down").value(), lora_target::down);
        QVERIFY(!lora_target_from_name("lm_head"));
    }

    void dropoutMaskIsDeterministicWithTheRightRate() {
        int kept = 0;
        const int n = 200000;
        for (int i = 0; i < n; ++i) kept += lora_dropout_keep(7, 2, lora_target::up, uint64_t(i), 0.1f);
        // binomial(n, 0.9): sd = sqrt(n·0.09) ≈ 134
        QVERIFY2(std::abs(kept - int(0.9 * n)) < 5 * 134, qPrintable(QString::number(kept)));
        int same = 0, other_seed_same = 0;
        for (int i = 0; i < 1000; ++i) {
            same += lora_dropout_keep(7, 2, lora_target::up, uint64_t(i), 0.5f) ==
                    lora_dropout_keep(7, 2, lora_target::up, uint64_t(i), 0.5f);
            other_seed_same += lora_dropout_keep(7, 2, lora_target::up, uint64_t(i), 0.5f) ==
                               lora_dropout_keep(8, 2, lora_target::up, uint64_t(i), 0.5f);
        }
        QCOMPARE(same, 1000);
        QVERIFY(other_seed_same < 600); // independent masks agree about half the time
        QVERIFY(lora_dropout_keep(1, 0, lora_target::q, 5, 0.0f));
    }
};

QTEST_APPLESS_MAIN(TestLora)
#include "tst_lora.moc"
