// Sampling (greedy, temperature, top-k, top-p, seed) and the `qlora generate` command end to end.
#include "testutil.h"

#include "qls/generate.h"

#include <cmath>
#include <map>

using namespace qls;

static const char* k_reference_1_tail = "Lily didn't want to help her mom, so she\n";

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

    // ---- the CLI --------------------------------------------------------------------------------------
    void cliGreedyMatchesReference1() {
        QLS_REQUIRE_MODEL();
        auto r = testutil::run_cli({"generate", "--model", QString::fromStdString(testutil::model_dir()),
                                    "--temperature", "0", "--max-new-tokens", "200"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY2(r.out.startsWith("Once upon a time, there was a little girl named Lily."), qPrintable(r.out));
        QVERIFY2(r.out.endsWith(k_reference_1_tail), qPrintable(r.out));
        QCOMPARE(r.out.count('\n'), 4);
    }

    void cliZoo() {
        QLS_REQUIRE_MODEL();
        auto r = testutil::run_cli({"generate", "--model", QString::fromStdString(testutil::model_dir()), "--prompt",
                                    "Zoo", "--temperature", "0", "--max-new-tokens", "57"});
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

    void cliVersion() {
        auto r = testutil::run_cli({"--version"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY(r.out.startsWith("qlora "));
    }
};

QTEST_APPLESS_MAIN(TestGenerate)
#include "tst_generate.moc"
