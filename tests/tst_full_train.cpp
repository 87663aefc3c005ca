// Qt Test suite for full-parameter training (full_train.h): every weight's gradient against finite differences, a run that writes a loadable Hugging Face model, byte-identical reruns, the CLI, and the refusals.
#include "testutil.h"

#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/full_train.h"
#include "qls/generate.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/model_config.h"
#include "qls/tokenizer.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <QCryptographicHash>
#include <QFile>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

namespace fs = std::filesystem;

namespace {

// A model small enough for a central difference on every sampled element: C 8, 2 query / 1 key-value heads of 4,
// MLP 12, vocabulary 11, 2 layers.
qls::model_config tiny_config(bool tied) {
    qls::model_config c;
    c.hidden_size = 8;
    c.intermediate_size = 12;
    c.num_layers = 2;
    c.num_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = 4;
    c.vocab_size = 11;
    c.max_position_embeddings = 16;
    c.rms_norm_eps = 1e-5;
    c.rope.theta = 10000.0;
    c.tie_word_embeddings = tied;
    return c;
}

// Every tensor of p with a name, in one order (the same for weights and gradients).
std::vector<std::pair<std::string, std::vector<double>*>> tensors_of(qls::llama_params<double>& p) {
    std::vector<std::pair<std::string, std::vector<double>*>> v = {{"embed", &p.embed}};
    for (size_t l = 0; l < p.layers.size(); ++l) {
        auto& L = p.layers[l];
        const std::string s = "layer" + std::to_string(l) + ".";
        for (auto [n, t] :
             std::initializer_list<std::pair<const char*, std::vector<double>*>>{{"attn_norm", &L.attn_norm},
                                                                                 {"wq", &L.wq},
                                                                                 {"wk", &L.wk},
                                                                                 {"wv", &L.wv},
                                                                                 {"wo", &L.wo},
                                                                                 {"mlp_norm", &L.mlp_norm},
                                                                                 {"w_gate", &L.w_gate},
                                                                                 {"w_up", &L.w_up},
                                                                                 {"w_down", &L.w_down}})
            v.emplace_back(s + n, t);
    }
    v.emplace_back("final_norm", &p.final_norm);
    if (!p.lm_head.empty()) v.emplace_back("lm_head", &p.lm_head);
    return v;
}

QByteArray sha256_of(const std::string& path) {
    QFile f(QString::fromStdString(path));
    if (!f.open(QIODevice::ReadOnly)) return {};
    return QCryptographicHash::hash(f.readAll(), QCryptographicHash::Sha256).toHex();
}

// A short full run on stories260K and the Pip corpus.
qls::train_config short_full_run(const std::string& runs, const std::string& name, int steps) {
    qls::train_config c = testutil::pip_run(runs, name);
    c.mode = "full";
    c.dataset_format = "plain";
    c.prompt_template = "raw";
    c.train_on_prompt = true;
    c.optimizer = qls::optimizer_kind::adamw_32bit;
    c.learning_rate = 2e-3f;
    c.schedule = qls::lr_schedule::constant;
    c.warmup_steps = 0;
    c.max_grad_norm = 1.0f;
    c.seq_len = 64;
    c.micro_batch = 4;
    c.grad_accum = 2;
    c.max_steps = steps;
    c.eval_every = 0;
    c.eval_batches = 4;
    c.checkpoint_every = 0;
    c.gradient_checkpointing = false;
    c.backend = "cpu";
    return c;
}

} // namespace

class TestFullTrain : public QObject {
    Q_OBJECT

private slots:
    // d(mean loss)/d(every weight) from llama_pass<double>::backward against central differences, for sampled
    // elements of every tensor (the first, the last and 6 random ones), tied and untied heads, with and without
    // gradient checkpointing, padding targets (-1) and two packed segments.
    void weightGradientsMatchFiniteDifferences_data() {
        QTest::addColumn<bool>("tied");
        QTest::addColumn<bool>("checkpointing");
        QTest::newRow("untied") << false << false;
        QTest::newRow("tied") << true << false;
        QTest::newRow("tied, checkpointing") << true << true;
    }
    void weightGradientsMatchFiniteDifferences() {
        QFETCH(bool, tied);
        QFETCH(bool, checkpointing);
        const qls::model_config cfg = tiny_config(tied);
        const qls::llama_model m = qls::llama_model::random(cfg, 7);
        qls::llama_params<double> p = m.params_f64();
        // weights of size ~0.5 (not 0.02) and norms away from 1, so that no path is negligible
        std::mt19937_64 rng(11);
        std::normal_distribution<double> nd(0.0, 0.5);
        for (auto& [name, t] : tensors_of(p))
            for (double& x : *t) x = name.find("norm") != std::string::npos ? 1.0 + 0.3 * nd(rng) : nd(rng);
        const int B = 2, T = 5;
        const std::vector<int> tokens = {1, 4, 9, 2, 10, 3, 3, 0, 7, 5};
        const std::vector<int> targets = {4, 9, -1, 10, 6, 3, 0, 7, -1, 8};
        const std::vector<int> segments = {1, 1, 1, 2, 2, 1, 1, 1, 1, 1};
        qls::llama_pass<double> pass(cfg, p, m.inv_freq, B, T);
        pass.set_checkpointing(checkpointing);
        qls::llama_params<double> g = p;
        for (auto& [name, t] : tensors_of(g)) std::fill(t->begin(), t->end(), 0.0);
        pass.set_weight_grads(&g);
        pass.forward(tokens.data(), targets.data(), nullptr, segments.data());
        pass.backward();
        pass.set_weight_grads(nullptr); // the difference quotients below run forward only

        auto wt = tensors_of(p);
        auto gt = tensors_of(g);
        QCOMPARE(wt.size(), gt.size());
        QCOMPARE(wt.size(), size_t(1 + 9 * cfg.num_layers + 1 + (tied ? 0 : 1)));
        const double h = 1e-5;
        std::uniform_int_distribution<size_t> pick(0, size_t(1) << 40);
        double worst = 0;
        std::string worst_at;
        for (size_t k = 0; k < wt.size(); ++k) {
            std::vector<double>& w = *wt[k].second;
            const std::vector<double>& dw = *gt[k].second;
            std::vector<size_t> idx = {0, w.size() - 1};
            for (int r = 0; r < 6; ++r) idx.push_back(pick(rng) % w.size());
            double tensor_norm = 0;
            for (double x : dw) tensor_norm = std::max(tensor_norm, std::abs(x));
            QVERIFY2(tensor_norm > 1e-6, qPrintable(QString::fromStdString(wt[k].first + ": gradient is all zero")));
            for (size_t i : idx) {
                const double keep = w[i];
                w[i] = keep + h;
                const double lp = pass.forward(tokens.data(), targets.data(), nullptr, segments.data());
                w[i] = keep - h;
                const double lm = pass.forward(tokens.data(), targets.data(), nullptr, segments.data());
                w[i] = keep;
                const double fd = (lp - lm) / (2 * h);
                const double err = std::abs(fd - dw[i]) / std::max(1e-3, std::abs(fd) + std::abs(dw[i]));
                if (err > worst) {
                    worst = err;
                    worst_at = wt[k].first + "[" + std::to_string(i) + "]: analytic " + std::to_string(dw[i]) +
                               ", finite difference " + std::to_string(fd);
                }
            }
        }
        qInfo("worst relative error %.3g at %s", worst, worst_at.c_str());
        QVERIFY2(worst < 1e-6, qPrintable(QString::fromStdString(worst_at)));
    }

    // backward accumulates (+=) into the weight gradients, as it does for the adapters; a frozen pass (no buffers)
    // gives the same input gradient as one that also computes weight gradients.
    void weightGradientsAccumulate() {
        const qls::model_config cfg = tiny_config(false);
        const qls::llama_model m = qls::llama_model::random(cfg, 3);
        const std::vector<int> tokens = {1, 2, 3, 4}, targets = {2, 3, 4, 5};
        qls::llama_pass<float> frozen(cfg, m.params, m.inv_freq, 1, 4);
        frozen.forward(tokens.data(), targets.data());
        frozen.backward();
        qls::llama_params<float> g = m.params;
        for (auto* v : {&g.embed, &g.final_norm, &g.lm_head}) std::fill(v->begin(), v->end(), 0.0f);
        for (auto& L : g.layers)
            for (auto* v : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.mlp_norm, &L.w_gate, &L.w_up, &L.w_down})
                std::fill(v->begin(), v->end(), 0.0f);
        qls::llama_pass<float> pass(cfg, m.params, m.inv_freq, 1, 4);
        pass.set_weight_grads(&g);
        pass.forward(tokens.data(), targets.data());
        pass.backward();
        QCOMPARE(pass.dx0(), frozen.dx0());
        const std::vector<float> once = g.layers[1].w_down;
        pass.forward(tokens.data(), targets.data());
        pass.backward();
        for (size_t i = 0; i < once.size(); ++i) QCOMPARE(g.layers[1].w_down[i], 2 * once[i]);
        // buffers of the wrong shape are refused
        qls::llama_params<float> bad = g;
        bad.layers[0].wq.pop_back();
        QCOMPARE(testutil::expect_error([&] { pass.set_weight_grads(&bad); }, qls::error_code::shape_mismatch,
                                        {"set_weight_grads"}),
                 std::string());
    }

    // A full run on stories260K trains every weight, writes a Hugging Face model folder that the loaders, the
    // generator and the LoRA trainer take as a model, and a second identical run writes the same bytes.
    void fullRunWritesALoadableModel() {
        QLS_REQUIRE_MODEL();
        QTemporaryDir tmp;
        const std::string runs = tmp.path().toStdString() + "/runs";
        std::vector<double> losses;
        qls::train_callbacks cb;
        cb.on_step = [&losses](const qls::step_stats& s) { losses.push_back(s.loss); };
        std::vector<std::string> logs;
        cb.on_log = [&logs](const std::string& line) { logs.push_back(line); };
        qls::train_config cfg = short_full_run(runs, "a", 8);
        cfg.checkpoint_every = 50; // saves at the end as 0 does, and says so before the first step as a LoRA run does
        const qls::full_train_result r = qls::run_full_training(cfg, cb);
        QVERIFY(std::find(logs.begin(), logs.end(),
                          "note: training.checkpoint_every: every 50 steps, but the run has 8 steps: it saves only at "
                          "the end (use training.checkpoint_every <= 8, or 0 for only at the end)") != logs.end());
        QCOMPARE(r.outcome, qls::train_outcome::completed);
        QCOMPARE(r.steps, int64_t(8));
        QCOMPARE(losses.size(), size_t(8));
        QVERIFY(r.eval_loss.has_value());
        qInfo("full run: loss %.4f -> %.4f, eval %.4f", losses.front(), losses.back(), *r.eval_loss);
        QVERIFY2(losses.back() < losses.front(),
                 qPrintable(QString("%1 -> %2").arg(losses.front()).arg(losses.back())));
        QCOMPARE(fs::path(r.checkpoint).filename().string(), std::string("step-8"));
        for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
            QVERIFY2(fs::exists(fs::path(r.checkpoint) / f), f);
        QCOMPARE(qls::read_metrics(r.run_dir).size(), size_t(8));

        // every tensor moved (embeddings, norms, projections; stories260K ties its head to the embeddings)
        const qls::llama_model base = qls::llama_model::load(testutil::model_dir());
        const qls::llama_model trained = qls::llama_model::load(r.checkpoint);
        auto moved = [](const std::vector<float>& a, const std::vector<float>& b) {
            if (a.size() != b.size()) return false;
            for (size_t i = 0; i < a.size(); ++i)
                if (a[i] != b[i]) return true;
            return false;
        };
        QVERIFY(moved(base.params.embed, trained.params.embed));
        QVERIFY(moved(base.params.final_norm, trained.params.final_norm));
        for (size_t l = 0; l < base.params.layers.size(); ++l) {
            const auto &A = base.params.layers[l], &B = trained.params.layers[l];
            QVERIFY(moved(A.attn_norm, B.attn_norm) && moved(A.mlp_norm, B.mlp_norm));
            QVERIFY(moved(A.wq, B.wq) && moved(A.wk, B.wk) && moved(A.wv, B.wv) && moved(A.wo, B.wo));
            QVERIFY(moved(A.w_gate, B.w_gate) && moved(A.w_up, B.w_up) && moved(A.w_down, B.w_down));
        }

        // the checkpoint is a model: generation and a LoRA run start from it
        const qls::hf_checkpoint ck = qls::hf_checkpoint::open(r.checkpoint);
        const qls::tokenizer tok = qls::load_tokenizer_for(ck);
        qls::generate_options go;
        go.prompt = "Once upon a time";
        go.max_new_tokens = 8;
        go.sampling.temperature = 0;
        QVERIFY(!qls::generate(trained, tok, go).new_ids.empty());
        qls::train_config lora = short_full_run(runs, "lora-on-full", 1);
        lora.mode = "lora";
        lora.model = r.checkpoint;
        lora.lora.rank = 4;
        lora.grad_accum = 1;
        auto t = qls::trainer::create(lora);
        QCOMPARE(t->run(), qls::train_outcome::completed);

        // the same run again: the same bytes
        const qls::full_train_result again = qls::run_full_training(short_full_run(runs, "b", 8));
        QCOMPARE(sha256_of(again.checkpoint + "/model.safetensors"), sha256_of(r.checkpoint + "/model.safetensors"));
        QCOMPARE(sha256_of(again.checkpoint + "/config.json"), sha256_of(testutil::model_dir() + "/config.json"));

        // a second run into a folder with checkpoints is refused
        QCOMPARE(testutil::expect_error([&] { qls::run_full_training(short_full_run(runs, "a", 1)); },
                                        qls::error_code::config, {"already has checkpoints"}),
                 std::string());
    }

    // What full training cannot do is refused with the field, the problem and the fix.
    void refusals() {
        qls::train_config c;
        c.mode = "full";
        c.model = testutil::model_dir();
        c.backend = "cuda";
        const qls::model_config small = tiny_config(true);
        QCOMPARE(testutil::expect_error([&] { qls::check_full_training(c, small); }, qls::error_code::config,
                                        {"device.backend", "CPU only"}),
                 std::string());
        c.backend = "auto";
        qls::model_config big = small;
        big.hidden_size = 1024;
        big.head_dim = 512;
        big.intermediate_size = 4096;
        big.num_layers = 8;
        big.vocab_size = 32000;
        QVERIFY(big.parameter_count() > qls::k_full_train_max_parameters);
        QCOMPARE(testutil::expect_error([&] { qls::check_full_training(c, big); }, qls::error_code::config,
                                        {"training.mode", std::to_string(big.parameter_count()), "at most"}),
                 std::string());
        // a family whose layers differ from LLaMA's (here Qwen2's q/k/v biases): no weight gradients for them yet
        const qls::model_config qwen2 = qls::load_model_config(std::string(QLS_SOURCE_DIR) +
                                                               "/tests/data/families/qwen2/config.json");
        QCOMPARE(testutil::expect_error([&] { qls::check_full_training(c, qwen2); }, qls::error_code::config,
                                        {"full-parameter training", "qwen2"}),
                 std::string());
        c.model = testutil::model_dir() + "/model.gguf";
        QCOMPARE(testutil::expect_error([&] { qls::check_full_training(c, small); }, qls::error_code::config,
                                        {"Hugging Face model folder"}),
                 std::string());

        // run.json: the mode is checked when read, and round-trips
        const std::string bad =
            "{\"model\": \"m\", \"data\": {\"train\": \"t.txt\"}, \"training\": {\"mode\": \"half\"}}";
        QCOMPARE(testutil::expect_error([&] { qls::parse_train_config(bad, "run.json", "/tmp"); },
                                        qls::error_code::config, {"training.mode", "half"}),
                 std::string());
        const std::string good =
            "{\"model\": \"m\", \"data\": {\"train\": \"t.txt\"}, \"training\": {\"mode\": \"full\"}}";
        const qls::train_config parsed = qls::parse_train_config(good, "run.json", "/tmp");
        QCOMPARE(parsed.mode, std::string("full"));
        QCOMPARE(qls::parse_train_config(qls::train_config_to_json(parsed), "config.json", "").mode,
                 std::string("full"));

        // the LoRA trainer does not take a full run
        QLS_REQUIRE_MODEL();
        QTemporaryDir tmp;
        qls::train_config full = short_full_run(tmp.path().toStdString(), "x", 1);
        QCOMPARE(testutil::expect_error([&] { qls::trainer::create(full); }, qls::error_code::config,
                                        {"training.mode", "full"}),
                 std::string());
    }

    // `qlora train --config run.json --full` trains every weight and prints the model folder, which
    // `qlora generate --model` reads.
    void cliTrainsFull() {
        QLS_REQUIRE_MODEL();
        QTemporaryDir tmp;
        const QString run_json = tmp.path() + "/run.json";
        {
            nlohmann::json j = {{"name", "cli"},
                                {"runs_dir", tmp.path().toStdString() + "/runs"},
                                {"model", testutil::model_dir()},
                                {"data",
                                 {{"train", testutil::pip_train()},
                                  {"format", "plain"},
                                  {"template", "raw"},
                                  {"train_on_prompt", true}}},
                                {"optimizer", {{"kind", "adamw-32bit"}, {"lr", 0.001}}},
                                {"training",
                                 {{"seq_len", 64}, {"micro_batch", 2}, {"grad_accum", 1}, {"max_steps", 2}}},
                                {"device", {{"backend", "cpu"}}}};
            std::ofstream f(run_json.toStdString());
            f << j.dump(2);
        }
        QProcess p;
        p.start(testutil::qlora_exe(), {"train", "--config", run_json, "--full", "--quiet"});
        QVERIFY(p.waitForFinished(300000));
        const QString out = QString::fromUtf8(p.readAllStandardOutput());
        QVERIFY2(p.exitCode() == 0, qPrintable(out + p.readAllStandardError()));
        const QString model = tmp.path() + "/runs/cli/checkpoints/step-2";
        QVERIFY2(out.contains(model), qPrintable(out));
        QProcess g;
        g.start(testutil::qlora_exe(), {"generate", "--model", model, "--prompt", "Once upon a time", "--temperature",
                                        "0", "--max-new-tokens", "5"});
        QVERIFY(g.waitForFinished(120000));
        QVERIFY2(g.exitCode() == 0, qPrintable(g.readAllStandardError()));
        QVERIFY(QString::fromUtf8(g.readAllStandardOutput()).startsWith("Once upon a time"));
    }
};

QTEST_GUILESS_MAIN(TestFullTrain)
#include "tst_full_train.moc"
