// The seams of a run: one plan per run (plan_run counted), the budget's one meaning, the device choice, and the
// train_backend interface against the CPU reference it wraps.
#include "testutil.h"

#include "qls/error.h"
#include "qls/peft.h"
#include "qls/run_plan.h"
#include "qls/train_backend.h"
#include "qls/trainer.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <sys/resource.h>

using namespace qls;

static train_config tiny_config(const QString& runs, const std::string& name) {
    train_config c = testutil::pip_run(runs.toStdString(), name);
    c.backend = "cpu";
    c.lora.rank = 4;
    c.seq_len = 32;
    c.micro_batch = 2;
    c.grad_accum = 2;
    c.max_steps = 3;
    c.eval_batches = 1;
    c.checkpoint_every = 0;
    return c;
}

class TestRunPlan : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    // create() plans once; given a matching plan it plans not at all; a plan for other settings is not used.
    void aRunComputesItsPlanOnce() {
        QTemporaryDir tmp;
        const train_config c = tiny_config(tmp.path(), "once");
        const uint64_t n0 = plan_run_count();
        auto t = trainer::create(c);
        QCOMPARE(plan_run_count() - n0, uint64_t(1));
        QCOMPARE(t->run(), train_outcome::completed);
        QCOMPARE(plan_run_count() - n0, uint64_t(1)); // neither the steps nor the checkpoints plan again

        const model_config m = load_model_config(testutil::model_dir() + "/config.json");
        const memory_plan p = plan_run(m, plan_settings_for(c, compute_device{}));
        const uint64_t n1 = plan_run_count();
        train_config c2 = c;
        c2.name = "given";
        auto g = trainer::create(c2, {}, p);
        QCOMPARE(plan_run_count(), n1); // the caller's plan was used as it is
        QCOMPARE(g->plan().peak_bytes(), p.peak_bytes());

        train_config c3 = c;
        c3.name = "other";
        c3.seq_len = 64; // the given plan is for seq 32: planned again
        auto o = trainer::create(c3, {}, p);
        QCOMPARE(plan_run_count(), n1 + 1);
        QCOMPARE(o->plan().settings.seq, 64);
    }

    // `qlora plan --config run.json` and `qlora train` of that run make the same plan (one path, one result).
    void cliPlanOfARunIsTheTrainersPlan() {
        QTemporaryDir tmp;
        train_config c = tiny_config(tmp.path(), "cli");
        c.budget_gib = 0.05; // a budget of one's own: 51.2 MiB, under the run's all-resident need
        const QString run_json = tmp.path() + "/run.json";
        {
            QFile f(run_json);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(QByteArray::fromStdString(train_config_to_json(c)));
        }
        const testutil::cli_result r = testutil::run_cli({"plan", "--config", run_json, "--json"});
        QCOMPARE(r.exit_code, 0);
        // nlohmann reads the byte counts as exact 64-bit integers (a double would round above 2^53)
        const nlohmann::json j = nlohmann::json::parse(r.out.toStdString());
        auto t = trainer::create(c);
        QCOMPARE(j.at("peak_bytes").get<uint64_t>(), t->plan().peak_bytes());
        QCOMPARE(j.at("verdict").get<std::string>(), std::string(plan_verdict_name(t->plan().verdict)));
        QCOMPARE(j.at("settings").at("budget_bytes").get<uint64_t>(), gib_to_bytes(0.05));
        const testutil::cli_result bad = testutil::run_cli({"plan", "--config", run_json, "--seq", "64"});
        QCOMPARE(bad.exit_code, 2);
        QVERIFY(bad.err.contains("--seq cannot be combined with --config"));
    }

    // A run whose host need exceeds the machine's RAM is refused by the trainer with the plan's numbers.
    void trainerRefusesAHostNeedOverTheRam() {
        QTemporaryDir tmp;
        const train_config c = tiny_config(tmp.path(), "ram");
        const model_config m = load_model_config(testutil::model_dir() + "/config.json");
        plan_settings ps = plan_settings_for(c, compute_device{});
        ps.host.total_bytes = ps.host.available_bytes = 8ull << 20; // an 8 MiB machine
        const memory_plan p = plan_run(m, ps);
        QVERIFY(!p.host.fits);
        QVERIFY(plan_matches(p, m, plan_settings_for(c, compute_device{}))); // the RAM is not part of the match
        const std::string r = testutil::expect_error([&] { (void)trainer::create(c, {}, p); }, error_code::config,
                                                     {"machine's memory", "host memory does not fit", "0.01 GiB"});
        QVERIFY2(r.empty(), r.c_str());
        QVERIFY(!QFileInfo::exists(tmp.path() + "/ram/config.json")); // refused before the run directory exists
    }

    // The CPU plan's host figure against the measured peak RSS of a whole `qlora train` of stories260K (a child
    // process: getrusage(RUSAGE_CHILDREN) gives its peak), within half to one and a half times the plan.
    void cpuHostPlanMatchesMeasuredRss() {
        QTemporaryDir tmp;
        const train_config c = tiny_config(tmp.path(), "rss");
        const QString run_json = tmp.path() + "/run.json";
        {
            QFile f(run_json);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(QByteArray::fromStdString(train_config_to_json(c)));
        }
        const testutil::cli_result pj = testutil::run_cli({"plan", "--config", run_json, "--json"});
        QCOMPARE(pj.exit_code, 0);
        const nlohmann::json j = nlohmann::json::parse(pj.out.toStdString());
        const uint64_t planned = j.at("host").at("peak_bytes").get<uint64_t>();
        QCOMPARE(j.at("host").at("backend").get<std::string>(), std::string("cpu"));
        const testutil::cli_result r = testutil::run_cli({"train", "--config", run_json, "--quiet"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QVERIFY2(r.err.contains("device: cpu trains"), qPrintable(r.err));
        rusage ru{};
        QCOMPARE(getrusage(RUSAGE_CHILDREN, &ru), 0);
        const uint64_t measured = uint64_t(ru.ru_maxrss) * 1024; // the largest child's peak (the training run)
        qInfo("host plan %.1f MiB, measured peak RSS of qlora train %.1f MiB", to_mib(planned), to_mib(measured));
        if (!testutil::k_asan)
            QVERIFY2(measured * 2 <= planned * 3 && measured * 2 >= planned,
                     qPrintable(QString("planned %1 MiB, measured %2 MiB").arg(to_mib(planned)).arg(to_mib(measured))));
    }

    // GiB → bytes once; the device's size and free memory join the plan only for the CUDA backend.
    void settingsForADevice() {
        train_config c;
        c.budget_gib = 1.5;
        compute_device cpu;
        plan_settings s = plan_settings_for(c, cpu);
        QCOMPARE(s.budget_bytes, uint64_t(1.5 * double(1ull << 30)));
        QCOMPARE(s.card_bytes, uint64_t(0));
        QCOMPARE(s.free_bytes, uint64_t(0));
        compute_device gpu;
        gpu.backend = "cuda";
        gpu.total_bytes = 24ull << 30;
        gpu.free_bytes = 20ull << 30;
        s = plan_settings_for(c, gpu);
        QCOMPARE(s.card_bytes, uint64_t(24ull << 30));
        QCOMPARE(s.free_bytes, uint64_t(20ull << 30));
        QCOMPARE(s.seq, c.seq_len);
        QCOMPARE(s.batch, c.micro_batch);
        QCOMPARE(int(s.optimizer), int(c.optimizer));
    }

    // Budget 0 means the device's free memory (95%) when it is known, else no limit; a budget of one's own wins.
    void budgetZeroHasOneMeaning() {
        const model_config m = shape_config("7b");
        train_config c;
        c.seq_len = 2048;
        c.micro_batch = 1;
        compute_device gpu;
        gpu.backend = "cuda";
        gpu.total_bytes = 80ull << 30;
        gpu.free_bytes = 4ull << 30;
        const memory_plan on_gpu = plan_run(m, plan_settings_for(c, gpu));
        QCOMPARE(on_gpu.limit_bytes, uint64_t(double(4ull << 30) * 0.95));
        QVERIFY(on_gpu.verdict != plan_verdict::fits); // 7B does not fit 3.8 GiB unpaged
        QVERIFY2(on_gpu.explanation.find("free") != std::string::npos, on_gpu.explanation.c_str());
        plan_settings cpu_settings = plan_settings_for(c, compute_device{});
        QCOMPARE(cpu_settings.backend, std::string("cpu"));
        cpu_settings.host.total_bytes = cpu_settings.host.available_bytes = 1ull << 40; // 7B in f32 needs the RAM
        const memory_plan on_cpu = plan_run(m, cpu_settings);
        QCOMPARE(on_cpu.limit_bytes, uint64_t(0));
        QCOMPARE(int(on_cpu.verdict), int(plan_verdict::fits));
        cpu_settings.host.total_bytes = cpu_settings.host.available_bytes = 16ull << 30; // a 16 GiB machine
        QCOMPARE(int(plan_run(m, cpu_settings).verdict), int(plan_verdict::does_not_fit));
        c.budget_gib = 12;
        const memory_plan budgeted = plan_run(m, plan_settings_for(c, gpu));
        QCOMPARE(budgeted.limit_bytes, uint64_t(12ull << 30));
    }

    void deviceChoice() {
        gpu_probe none;
        none.message = "no CUDA GPU found: using the CPU reference backend";
        QCOMPARE(QString::fromStdString(choose_train_device("cpu", 0, true, 64, none).device.backend), QString("cpu"));
        const device_choice a = choose_train_device("auto", 0, true, 64, none);
        QCOMPARE(QString::fromStdString(a.device.backend), QString("cpu"));
        QCOMPARE(a.why, none.message);
        try {
            choose_train_device("cuda", 0, true, 64, none);
            QFAIL("device.backend cuda without a GPU must be refused");
        } catch (const error& e) {
            QVERIFY(std::string(e.what()).find("device.backend \"cuda\"") != std::string::npos);
        }
        gpu_probe gp;
        gp.available = true;
        gp.index = 1;
        gp.name = "Test GPU";
        gp.total_bytes = 48ull << 30;
        gp.free_bytes = 40ull << 30;
        const device_choice g = choose_train_device("auto", 1, true, 64, gp);
        QCOMPARE(QString::fromStdString(g.device.label()), QString("cuda:1 (Test GPU)"));
        QCOMPARE(g.device.free_bytes, gp.free_bytes);
        QVERIFY(choose_train_device("auto", 1, false, 64, gp).why.find("NF4") != std::string::npos);
        QVERIFY(choose_train_device("auto", 1, true, 20, gp).why.find("head size 20") != std::string::npos);
    }

    // The CPU backend behind the interface: one step through train_backend equals llama_pass + optimizer by hand.
    void cpuBackendIsTheReference() {
        llama_load_options lo;
        lo.quantize_nf4 = true;
        const llama_model m = llama_model::load(testutil::model_dir(), lo);
        lora_config lc;
        lc.rank = 4;
        lc.dropout = 0.0f;
        const lora_weights<float> init = lora_init(m.config, lc, 3);
        plan_settings ps;
        ps.lora = lc;
        ps.batch = 1;
        ps.seq = 16;
        ps.optimizer = optimizer_kind::adamw_32bit;
        const memory_plan plan = plan_run(m.config, ps);
        auto be = make_train_backend(compute_device{}, m, init, plan, {});
        QCOMPARE(QString(be->kind()), QString("cpu"));
        std::vector<int> tokens(16), targets(16);
        for (int i = 0; i < 16; ++i) tokens[size_t(i)] = 1 + (i * 37) % (m.config.vocab_size - 1);
        for (int i = 0; i < 16; ++i) targets[size_t(i)] = i + 1 < 16 ? tokens[size_t(i + 1)] : -1;
        train_batch b{tokens.data(), targets.data(), nullptr, nullptr};
        const double loss = be->forward_backward(b, 0);
        const train_update u = be->optimizer_step(1e-2f, 1, 0.0f);
        QVERIFY(u.applied && u.grad_norm > 0);

        lora_weights<float> ref = init;
        llama_pass<float> pass(m.config, m.params, m.inv_freq, 1, 16, &ref);
        std::vector<optim_param> params;
        for (int l = 0; l < m.config.num_layers; ++l)
            for (lora_target t : lc.targets) {
                auto& ad = ref.at(l, t);
                params.push_back({peft_tensor_name(l, t, false), ad.a.data(), ad.da.data(), ad.a.size()});
                params.push_back({peft_tensor_name(l, t, true), ad.b.data(), ad.db.data(), ad.b.size()});
            }
        optimizer_config oc;
        oc.kind = optimizer_kind::adamw_32bit;
        oc.hparams = train_backend_options{}.adamw;
        optimizer opt(params, oc);
        ref.zero_grad();
        QCOMPARE(double(pass.forward(tokens.data(), targets.data())), loss);
        pass.backward();
        opt.step(1e-2f);
        for (int l = 0; l < m.config.num_layers; ++l)
            for (lora_target t : lc.targets) {
                const auto& x = be->adapters().at(l, t);
                const auto& y = ref.at(l, t);
                QVERIFY(std::memcmp(x.b.data(), y.b.data(), x.b.size() * 4) == 0);
                QVERIFY(std::memcmp(x.a.data(), y.a.data(), x.a.size() * 4) == 0);
                for (float g : x.db) QCOMPARE(g, 0.0f); // optimizer_step leaves the gradients zeroed
            }
        QVERIFY(be->memory().used_bytes > 0);
        QCOMPARE(be->memory().total_bytes, uint64_t(0));
        // a checkpoint's state round-trips through the interface
        auto state = be->optimizer_state();
        auto be2 = make_train_backend(compute_device{}, m, init, plan, {});
        be2->set_adapters(be->adapters());
        be2->load_optimizer_state(state);
        QCOMPARE(be2->forward_backward(b, 0), be->forward_backward(b, 0));
    }
};

QTEST_GUILESS_MAIN(TestRunPlan)
#include "tst_run_plan.moc"
