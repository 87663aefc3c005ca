// Hardening of runs: resume state and optimizer state validated before anything changes, no NaN checkpoint saved as success, exports that do not overwrite unasked, and stops honoured inside a step.
#include "testutil.h"

#include "qls/error.h"
#include "qls/optim.h"
#include "qls/run_export.h"
#include "qls/safetensors.h"
#include "qls/trainer.h"

#include <nlohmann/json.hpp>

#include <QFile>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

using namespace qls;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

train_config small_config(const QString& runs, const std::string& name) {
    train_config c = testutil::pip_run(runs.toStdString(), name);
    c.lora.rank = 4;
    c.lora.alpha = 8;
    c.lora.dropout = 0.1f;
    c.optimizer = optimizer_kind::adamw_32bit;
    c.learning_rate = 2e-3f;
    c.warmup_steps = 1;
    c.seq_len = 64;
    c.micro_batch = 2;
    c.grad_accum = 2;
    c.max_steps = 4;
    c.eval_every = 0;
    c.eval_batches = 2;
    c.checkpoint_every = 2;
    c.keep_checkpoints = 5;
    c.gradient_checkpointing = false;
    c.backend = "cpu";
    c.seed = 7;
    return c;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const fs::path& p, const std::string& s) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << s;
}

std::vector<double> losses_of(const std::string& run_dir) {
    std::vector<double> v;
    for (const step_stats& s : read_metrics(run_dir)) v.push_back(s.loss);
    return v;
}

bool bit_equal(const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

// Rewrites one tensor of a safetensors file through `edit`.
template <class F> void edit_safetensors(const fs::path& file, F edit) {
    std::vector<std::pair<std::string, tensor>> all;
    {
        safetensors_file f = safetensors_file::open(file.string());
        for (const auto& e : f.entries()) all.emplace_back(e.name, f.read(e.name).clone());
    }
    for (auto& [name, t] : all) edit(name, t);
    safetensors_save(file.string(), all);
}

} // namespace

class TestHardeningRuns : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    std::string m_done; // a finished 4-step run (checkpoints step-2, step-4), copied for each damage

    std::string copy_run(const std::string& name) {
        const std::string to = m_tmp.filePath(QString::fromStdString(name)).toStdString();
        fs::remove_all(to);
        fs::copy(m_done, to, fs::copy_options::recursive);
        return to;
    }

private slots:
    void initTestCase() {
        QLS_REQUIRE_MODEL();
        QVERIFY(m_tmp.isValid());
        auto t = trainer::create(small_config(m_tmp.filePath("runs"), "done"));
        QCOMPARE(t->run(), train_outcome::completed);
        m_done = t->run_dir();
        QVERIFY(fs::exists(fs::path(m_done) / "checkpoints" / "step-4" / "trainer_state.json"));
        QCOMPARE(int(read_metrics(m_done).size()), 4);
    }

    // ---- 7: trainer_state.json validated field by field before anything on disk changes
    void badTrainerStateIsRefusedBeforeTouchingTheRun_data() {
        QTest::addColumn<QString>("field");    // a JSON pointer into trainer_state.json
        QTest::addColumn<QString>("value");    // the JSON value put there ("" = remove the field)
        QTest::addColumn<QString>("mentions"); // what the error must name
        QTest::newRow("negative step") << "/step"
                                       << "-3"
                                       << "'step'";
        QTest::newRow("huge step") << "/step"
                                   << "9223372036854775807"
                                   << "'step'";
        QTest::newRow("step past the end") << "/step"
                                           << "5"
                                           << "'step'";
        QTest::newRow("step not the folder's") << "/step"
                                               << "2"
                                               << "'step'";
        QTest::newRow("step as a string") << "/step"
                                          << "\"4\""
                                          << "'step'";
        QTest::newRow("step fractional") << "/step"
                                         << "3.5"
                                         << "'step'";
        QTest::newRow("step missing") << "/step"
                                      << ""
                                      << "'step'";
        QTest::newRow("format as a string") << "/format"
                                            << "\"1\""
                                            << "'format'";
        QTest::newRow("format unknown") << "/format"
                                        << "2"
                                        << "'format'";
        QTest::newRow("total_steps zero") << "/total_steps"
                                          << "0"
                                          << "'total_steps'";
        QTest::newRow("tokens_total negative") << "/tokens_total"
                                               << "-1"
                                               << "'tokens_total'";
        QTest::newRow("tokens_total impossible") << "/tokens_total"
                                                 << "100000000"
                                                 << "'tokens_total'";
        QTest::newRow("tokens_total as bool") << "/tokens_total"
                                              << "true"
                                              << "'tokens_total'";
        QTest::newRow("seed of another run") << "/seed"
                                             << "8"
                                             << "'seed'";
        QTest::newRow("seed negative") << "/seed"
                                       << "-7"
                                       << "'seed'";
        QTest::newRow("batcher not an object") << "/batcher"
                                               << "[1,2]"
                                               << "'batcher'";
        QTest::newRow("cursor huge") << "/batcher/cursor"
                                     << "1000000"
                                     << "'batcher.cursor'";
        QTest::newRow("cursor negative") << "/batcher/cursor"
                                         << "-1"
                                         << "'batcher.cursor'";
        QTest::newRow("cursor as a string") << "/batcher/cursor"
                                            << "\"x\""
                                            << "'batcher.cursor'";
        QTest::newRow("epoch off") << "/batcher/epoch"
                                   << "3"
                                   << "'batcher'";
        QTest::newRow("epoch as float") << "/batcher/epoch"
                                        << "0.5"
                                        << "'batcher.epoch'";
        QTest::newRow("batcher seed other") << "/batcher/seed"
                                            << "99"
                                            << "'batcher.seed'";
        QTest::newRow("batcher seed missing") << "/batcher/seed"
                                              << ""
                                              << "'batcher.seed'";
    }

    void badTrainerStateIsRefusedBeforeTouchingTheRun() {
        QFETCH(QString, field);
        QFETCH(QString, value);
        QFETCH(QString, mentions);
        const std::string run = copy_run("badstate");
        const fs::path state_file = fs::path(run) / "checkpoints" / "step-4" / "trainer_state.json";
        json st = json::parse(slurp(state_file));
        const json::json_pointer ptr(field.toStdString());
        if (value.isEmpty()) st[ptr.parent_pointer()].erase(ptr.back());
        else st[ptr] = json::parse(value.toStdString());
        spit(state_file, st.dump(2));
        const std::string metrics_before = slurp(fs::path(run) / "metrics.jsonl");
        QVERIFY(!metrics_before.empty());
        // a leftover partial checkpoint stays too: nothing is cleaned before the state is known good
        fs::create_directories(fs::path(run) / "checkpoints" / ".tmp-step-6");
        try {
            auto t = trainer::resume(run);
            QFAIL(qPrintable("resumed a damaged trainer_state.json (" + field + " = " + value + ")"));
        } catch (const qls::error& e) {
            const QString msg = QString::fromStdString(e.what());
            const QString hint = QString::fromStdString(e.hint());
            QVERIFY2(msg.contains(QString::fromStdString(state_file.string())), qPrintable(msg));
            QVERIFY2(msg.contains(mentions), qPrintable(msg));
            QVERIFY2(hint.contains("delete") && hint.contains("step-4"), qPrintable(hint));
        }
        QCOMPARE(slurp(fs::path(run) / "metrics.jsonl"), metrics_before);
        QVERIFY(fs::exists(fs::path(run) / "checkpoints" / ".tmp-step-6"));
        // deleting the damaged checkpoint, as the hint says, resumes from the one before it
        fs::remove_all(state_file.parent_path());
        auto t = trainer::resume(run);
        QCOMPARE(t->step(), int64_t(2));
        QCOMPARE(int(read_metrics(run).size()), 2);
    }

    void intactStateResumesAndAFinishedRunStaysFinished() {
        const std::string run = copy_run("intact");
        auto t = trainer::resume(run);
        QCOMPARE(t->step(), int64_t(4));
        QCOMPARE(t->run(), train_outcome::completed);
        QCOMPARE(t->step(), int64_t(4));
    }

    // ---- 7: a corrupt optimizer.safetensors is refused at load, naming the tensor
    void corruptOptimizerStateIsRefused_data() {
        QTest::addColumn<QString>("suffix");
        QTest::addColumn<float>("bad");
        QTest::newRow("NaN second moment") << ".exp_avg_sq" << std::numeric_limits<float>::quiet_NaN();
        QTest::newRow("negative second moment") << ".exp_avg_sq" << -1.0f;
        QTest::newRow("infinite first moment") << ".exp_avg" << std::numeric_limits<float>::infinity();
    }

    void corruptOptimizerStateIsRefused() {
        QFETCH(QString, suffix);
        QFETCH(float, bad);
        const std::string run = copy_run("badoptim");
        const fs::path file = fs::path(run) / "checkpoints" / "step-4" / "optimizer.safetensors";
        std::string damaged;
        edit_safetensors(file, [&](const std::string& name, tensor& t) {
            if (damaged.empty() && name.size() > size_t(suffix.size()) &&
                name.compare(name.size() - size_t(suffix.size()), std::string::npos, suffix.toStdString()) == 0) {
                t.data<float>()[1] = bad;
                damaged = name;
            }
        });
        QVERIFY(!damaged.empty());
        const std::string metrics_before = slurp(fs::path(run) / "metrics.jsonl");
        try {
            auto t = trainer::resume(run);
            QFAIL("resumed a damaged optimizer state");
        } catch (const qls::error& e) {
            const QString msg = QString::fromStdString(e.what());
            QVERIFY2(msg.contains("optimizer.safetensors") && msg.contains(QString::fromStdString(damaged)),
                     qPrintable(msg));
            QVERIFY2(QString::fromStdString(e.hint()).contains("delete"), qPrintable(QString::fromStdString(e.hint())));
        }
        QCOMPARE(slurp(fs::path(run) / "metrics.jsonl"), metrics_before);
    }

    // optimizer::load_state itself (both fp32 and 8-bit layouts) refuses such values, naming the tensor, and keeps
    // its state
    void optimizerLoadStateRefusesNonFiniteValues_data() {
        QTest::addColumn<int>("kind");
        QTest::addColumn<QString>("tensorName");
        QTest::addColumn<float>("bad");
        const float nan = std::numeric_limits<float>::quiet_NaN();
        QTest::newRow("fp32 v NaN") << int(optimizer_kind::adamw_32bit) << "w.exp_avg_sq" << nan;
        QTest::newRow("fp32 v negative") << int(optimizer_kind::adamw_32bit) << "w.exp_avg_sq" << -2.0f;
        QTest::newRow("fp32 m NaN") << int(optimizer_kind::adamw_32bit) << "w.exp_avg" << nan;
        QTest::newRow("8-bit absmax NaN") << int(optimizer_kind::adamw_8bit) << "w.absmax1" << nan;
        QTest::newRow("8-bit absmax negative") << int(optimizer_kind::adamw_8bit) << "w.absmax2" << -1.0f;
        QTest::newRow("paged 8-bit absmax inf")
            << int(optimizer_kind::paged_adamw_8bit) << "w.absmax2" << std::numeric_limits<float>::infinity();
    }

    void optimizerLoadStateRefusesNonFiniteValues() {
        QFETCH(int, kind);
        QFETCH(QString, tensorName);
        QFETCH(float, bad);
        std::vector<float> w(4096, 0.5f), g(4096, 0.01f);
        optimizer_config oc;
        oc.kind = optimizer_kind(kind);
        oc.min_8bit_size = 1;
        oc.paging.page_size = 4096;
        oc.paging.device_budget_bytes = 1 << 20;
        optimizer opt({{"w", w.data(), g.data(), w.size()}}, oc);
        opt.step(1e-3f);
        const auto good = opt.serialize_state();
        auto state = opt.serialize_state();
        bool found = false;
        for (auto& [name, t] : state)
            if (name == tensorName.toStdString()) {
                t = t.clone();
                t.data<float>()[0] = bad;
                found = true;
            }
        QVERIFY(found);
        try {
            opt.load_state(state);
            QFAIL("load_state took a damaged state");
        } catch (const qls::error& e) {
            QVERIFY2(QString::fromStdString(e.what()).contains(tensorName), e.what());
        }
        const auto after = opt.serialize_state();
        QCOMPARE(after.size(), good.size());
        for (size_t i = 0; i < after.size(); ++i)
            QVERIFY(std::memcmp(after[i].second.raw(), good[i].second.raw(), good[i].second.nbytes()) == 0);
    }

    // ---- 8: non-finite adapters are never saved; the run stops as diverged naming the step
    void nonFiniteAdaptersAreNeverCheckpointed() {
        const std::string run = copy_run("blowup");
        fs::remove_all(fs::path(run) / "checkpoints" / "step-4");
        // a state that passes every check but whose update overflows: a huge first moment over a zero second one
        edit_safetensors(fs::path(run) / "checkpoints" / "step-2" / "optimizer.safetensors",
                         [](const std::string& name, tensor& t) {
                             if (name.size() > 8 && name.compare(name.size() - 8, 8, ".exp_avg") == 0)
                                 for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 3e38f;
                             if (name.size() > 11 && name.compare(name.size() - 11, 11, ".exp_avg_sq") == 0)
                                 for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 0.0f;
                         });
        auto t = trainer::resume(run);
        QCOMPARE(t->step(), int64_t(2));
        QCOMPARE(t->run(), train_outcome::diverged);
        const QString msg = QString::fromStdString(t->divergence_message());
        QVERIFY2(msg.contains("adapters") && msg.contains("step 3") && msg.contains("no checkpoint"), qPrintable(msg));
        QCOMPARE(t->step(), int64_t(2));
        QCOMPARE(int(read_metrics(run).size()), 2);
        QCOMPARE(latest_checkpoint(run), (fs::path(run) / "checkpoints" / "step-2").string());
        // an explicit save is refused too, before anything is written
        try {
            t->save_checkpoint();
            QFAIL("saved NaN adapters");
        } catch (const qls::error& e) {
            QVERIFY2(QString(e.what()).contains("step 2") && QString(e.what()).contains("NaN"), e.what());
        }
        for (const auto& e : fs::directory_iterator(fs::path(run) / "checkpoints"))
            QCOMPARE(QString::fromStdString(e.path().filename().string()), QString("step-2"));
    }

    // ---- 9: an export never overwrites a non-empty folder unless asked
    void exportRefusesANonEmptyFolderUnlessForced() {
        const fs::path out = m_tmp.filePath("existing").toStdString();
        fs::create_directories(out);
        spit(out / "config.json", "{\"mine\": true}");
        spit(out / "model-00002-of-00002.safetensors", "other shard");
        export_request r = export_request_for_run(m_done, export_format::merged, {}, out.string());
        QVERIFY(export_would_overwrite(out.string()));
        try {
            run_export(r);
            QFAIL("exported over a non-empty folder");
        } catch (const qls::error& e) {
            QVERIFY2(QString(e.what()).contains(QString::fromStdString(out.string())), e.what());
            QVERIFY2(QString::fromStdString(e.hint()).contains("--force") &&
                         QString::fromStdString(e.hint()).contains("new folder"),
                     e.hint().c_str());
        }
        QCOMPARE(slurp(out / "config.json"), std::string("{\"mine\": true}"));
        QVERIFY(fs::exists(out / "model-00002-of-00002.safetensors"));

        // the CLI: refused (exit 1, the folder and --force named), then --force replaces it
        const QStringList args = {"export", QString::fromStdString(m_done),      "--format", "merged",
                                  "--out",  QString::fromStdString(out.string())};
        auto refused = testutil::run_cli(args);
        QCOMPARE(refused.exit_code, 1);
        QVERIFY2(refused.err.contains(QString::fromStdString(out.string())) && refused.err.contains("--force"),
                 qPrintable(refused.err));
        QCOMPARE(slurp(out / "config.json"), std::string("{\"mine\": true}"));
        auto forced = testutil::run_cli(args + QStringList{"--force"});
        QVERIFY2(forced.exit_code == 0, qPrintable(forced.err));
        QVERIFY(slurp(out / "config.json") != "{\"mine\": true}");
        QVERIFY(fs::exists(out / "model.safetensors"));

        // an empty existing folder and a new one are fine; a file in the folder's place is not
        const fs::path empty = m_tmp.filePath("empty").toStdString();
        fs::create_directories(empty);
        QVERIFY(!export_would_overwrite(empty.string()));
        QVERIFY(!export_would_overwrite(m_tmp.filePath("new").toStdString()));
        QCOMPARE(run_export(export_request_for_run(m_done, export_format::peft, {}, empty.string())).output_dir,
                 empty.string());
        const fs::path file = m_tmp.filePath("a-file").toStdString();
        spit(file, "x");
        QVERIFY(export_would_overwrite(file.string()));
        QVERIFY_THROWS_EXCEPTION(qls::error,
                                 run_export(export_request_for_run(m_done, export_format::peft, {}, file.string())));
    }

    // ---- 10: a stop inside gradient accumulation abandons the step; resume repeats it exactly
    void stopInsideAccumulationAbandonsTheStep() {
        train_config c = small_config(m_tmp.filePath("stop"), "straight");
        c.grad_accum = 6;
        c.max_steps = 5;
        c.checkpoint_every = 0;
        auto straight_t = trainer::create(c);
        QCOMPARE(straight_t->run(), train_outcome::completed);
        const std::vector<double> straight = losses_of(straight_t->run_dir());
        QCOMPARE(int(straight.size()), 5);

        for (const bool same_trainer : {false, true}) {
            c.name = same_trainer ? "again" : "resumed";
            auto t = trainer::create(c);
            t->batch_hook = [&](bool evaluation, int index) {
                if (t->step() == 2 && !evaluation && index == 4) t->request_stop(); // inside step 3
            };
            QCOMPARE(t->run(), train_outcome::stopped);
            QCOMPARE(t->step(), int64_t(2));
            const std::string ck = latest_checkpoint(t->run_dir());
            QCOMPARE(fs::path(ck).filename().string(), std::string("step-2"));
            // the data position saved is the start of the abandoned step: 2 steps of 6 micro-batches consumed
            const json st = json::parse(slurp(fs::path(ck) / "trainer_state.json"));
            QCOMPARE(st["step"].get<int64_t>(), int64_t(2));
            QCOMPARE(int(read_metrics(t->run_dir()).size()), 2);
            t->batch_hook = nullptr;
            if (same_trainer) {
                QCOMPARE(t->run(), train_outcome::completed); // the partial gradients were dropped
            } else {
                auto r = trainer::resume(t->run_dir());
                QCOMPARE(r->step(), int64_t(2));
                QCOMPARE(r->run(), train_outcome::completed);
            }
            const std::vector<double> got = losses_of(t->run_dir());
            QVERIFY2(bit_equal(got, straight), same_trainer ? "run() again after the stop" : "resume after the stop");
        }
    }

    // A stop from another thread while a very long step runs returns at once, not after the step.
    void stopFromAnotherThreadIsQuick() {
        train_config c = small_config(m_tmp.filePath("stopthread"), "long");
        c.grad_accum = 100000;
        c.max_steps = 2;
        auto t = trainer::create(c);
        std::atomic<int> micro{0};
        t->batch_hook = [&](bool evaluation, int) {
            if (!evaluation) ++micro;
        };
        train_outcome outcome = train_outcome::completed;
        std::thread worker([&] { outcome = t->run(); });
        QTRY_VERIFY_WITH_TIMEOUT(micro >= 5, 60000);
        const auto t0 = std::chrono::steady_clock::now();
        const int at_request = micro;
        t->request_stop();
        worker.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        QCOMPARE(outcome, train_outcome::stopped);
        QVERIFY2(micro - at_request <= 1,
                 qPrintable(QString("%1 micro-batches after the stop").arg(micro - at_request)));
        QVERIFY2(s < 30, qPrintable(QString("took %1 s").arg(s)));
        QCOMPARE(t->step(), int64_t(0));
        QCOMPARE(fs::path(latest_checkpoint(t->run_dir())).filename().string(), std::string("step-0"));
        const json st = json::parse(slurp(fs::path(latest_checkpoint(t->run_dir())) / "trainer_state.json"));
        QCOMPARE(st["batcher"]["cursor"].get<int64_t>(), int64_t(0));
        QCOMPARE(st["batcher"]["epoch"].get<int64_t>(), int64_t(0));
    }

    // A stop during evaluation skips the rest of it: no eval loss is reported for the step.
    void stopDuringEvaluationSkipsIt() {
        train_config c = small_config(m_tmp.filePath("stopeval"), "eval");
        c.eval_every = 1;
        c.eval_batches = 0; // the whole validation set
        c.max_steps = 3;
        auto t = trainer::create(c);
        int eval_batches_seen = 0;
        t->batch_hook = [&](bool evaluation, int index) {
            if (!evaluation) return;
            ++eval_batches_seen;
            if (t->step() == 1 && index == 1) t->request_stop();
        };
        QCOMPARE(t->run(), train_outcome::stopped);
        QCOMPARE(eval_batches_seen, 2);
        QCOMPARE(t->step(), int64_t(1));
        const std::vector<step_stats> m = read_metrics(t->run_dir());
        QCOMPARE(int(m.size()), 1);
        QVERIFY(!m[0].eval_loss.has_value());
    }
};

QTEST_APPLESS_MAIN(TestHardeningRuns)
#include "tst_hardening_runs.moc"
