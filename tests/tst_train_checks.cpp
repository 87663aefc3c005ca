// The settings against the model and the data (train_checks.cpp): the context and a data shorter than one sequence refused by name, rank / steps / interval notes, the same through the trainer and `qlora train`.
#include "testutil.h"

#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/model_config.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <QFileInfo>
#include <QTemporaryDir>

#include <cmath>
#include <fstream>

using namespace qls;

namespace {

model_config stories260k() { return hf_checkpoint::open(testutil::model_dir()).config(); }

const config_note* note_for(const std::vector<config_note>& notes, const std::string& key) {
    for (const config_note& n : notes)
        if (n.key == key) return &n;
    return nullptr;
}

train_config run_config(const QString& runs) {
    train_config c;
    c.name = "checks";
    c.runs_dir = runs.toStdString();
    c.model = testutil::model_dir();
    c.train_file = testutil::pip_train();
    c.backend = "cpu";
    c.lora.rank = 8;
    c.seq_len = 64;
    c.micro_batch = 2;
    c.grad_accum = 2;
    return c;
}

} // namespace

class TestTrainChecks : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    // stories260K: hidden 64, 8 heads of 8, 4 KV heads (k/v project to 32), MLP 172, context 512.
    void againstTheModel() {
        const model_config m = stories260k();
        train_config c;
        c.seq_len = 999999;
        QCOMPARE(testutil::expect_error([&] { check_train_config_for_model(c, m); }, error_code::config,
                                        {"training.seq_len: 999999", "context of 512"}),
                 std::string());
        c.seq_len = 512;
        // rank 64 on every projection: k and v have only 32 outputs
        c.lora.rank = 64;
        std::vector<config_note> notes = check_train_config_for_model(c, m);
        QCOMPARE(notes.size(), size_t(1));
        QCOMPARE(notes[0].key, std::string("lora.rank"));
        QCOMPARE(notes[0].text,
                 std::string("64 is larger than the smaller dimension of k_proj (32) and v_proj (32): an "
                             "adapter there cannot use more than that rank, the rest only costs memory"));
        QCOMPARE(notes[0].hint, std::string("use lora.rank <= 32, or leave those out of lora.targets"));
        c.lora.rank = 32;
        QVERIFY(check_train_config_for_model(c, m).empty());
        // without k and v the smallest targeted dimension is 64 (q, o, the MLP's input side)
        c.lora.targets = {lora_target::q, lora_target::o, lora_target::gate, lora_target::up, lora_target::down};
        c.lora.rank = 64;
        QVERIFY(check_train_config_for_model(c, m).empty());
        c.lora.rank = 65;
        notes = check_train_config_for_model(c, m);
        QCOMPARE(notes.size(), size_t(1));
        QVERIFY2(notes[0].text.starts_with("65 is larger than the smaller dimension of q_proj (64), o_proj (64), "
                                           "gate_proj (64), up_proj (64) and down_proj (64):"),
                 notes[0].text.c_str());
        QCOMPARE(notes[0].hint, std::string("use lora.rank <= 64")); // every target is over: leaving them out is no fix
    }

    void againstTheData() {
        train_config c;
        c.seq_len = 128;
        c.micro_batch = 4;
        c.grad_accum = 1;
        c.max_steps = 20;
        c.checkpoint_every = 0;
        // packed: 38400 tokens fill 300 rows of 128
        train_data_fit f = check_train_config_for_data(c, 300, 38400);
        QCOMPARE(f.rows_per_epoch, int64_t(300));
        QCOMPARE(f.rows_per_step, int64_t(4));
        QCOMPARE(f.steps, int64_t(20));
        QVERIFY(std::abs(f.epochs - 80.0 / 300.0) < 1e-12);
        QVERIFY(f.notes.empty());
        // more steps than the data has: said in epochs, with the steps of one epoch
        c.max_steps = 2000;
        f = check_train_config_for_data(c, 300, 38400);
        const config_note* n = note_for(f.notes, "training.max_steps");
        QVERIFY(n);
        QCOMPARE(n->text, std::string("2000 steps = 26.7 epochs of your data (300 rows an epoch, 4 rows a step)"));
        QVERIFY2(n->hint.find("memorise") != std::string::npos &&
                     n->hint.find("training.max_steps 75 is one epoch") != std::string::npos,
                 n->hint.c_str());
        c.max_steps = 150;
        f = check_train_config_for_data(c, 300, 38400);
        n = note_for(f.notes, "training.max_steps");
        QVERIFY(n && n->text.starts_with("150 steps = 2.00 epochs") && n->hint.find("memorise") == std::string::npos);
        // a step larger than an epoch
        c.max_steps = 20;
        c.micro_batch = 64;
        c.grad_accum = 8;
        f = check_train_config_for_data(c, 300, 38400);
        n = note_for(f.notes, "training.micro_batch");
        QVERIFY(n && n->text.find("512 rows but the data fills 300 rows an epoch") != std::string::npos);
        // epochs decide the steps as the trainer counts them: ceil(2 × ceil(300 / 4) / 1)
        c.micro_batch = 4;
        c.grad_accum = 1;
        c.max_steps = 0;
        c.epochs = 2;
        QCOMPARE(check_train_config_for_data(c, 300, 38400).steps, int64_t(150));
        // not packed: one example a row
        c.packing = false;
        QCOMPARE(check_train_config_for_data(c, 300, 38400).rows_per_epoch, int64_t(300));
        QCOMPARE(check_train_config_for_data(c, 1000, 38400).rows_per_epoch, int64_t(1000));
        // the whole data shorter than one sequence is refused, naming the field
        QCOMPARE(testutil::expect_error([&] { check_train_config_for_data(c, 3, 100); }, error_code::config,
                                        {"training.seq_len: the training data holds 100 tokens", "sequence of 128"}),
                 std::string());
        QCOMPARE(testutil::expect_error([&] { check_train_config_for_data(c, 3, 0); }, error_code::config,
                                        {"training.seq_len"}),
                 std::string());
    }

    // Intervals over the run's steps: known from max_steps even before the data is.
    void intervalsAgainstTheSteps() {
        train_config c;
        c.max_steps = 40;
        c.eval_every = 50;
        c.checkpoint_every = 100; // the default
        for (int64_t examples : {int64_t(0), int64_t(300)}) {
            const train_data_fit f = check_train_config_for_data(c, examples, examples * 128);
            const config_note* e = note_for(f.notes, "training.eval_every");
            const config_note* k = note_for(f.notes, "training.checkpoint_every");
            QVERIFY(e && k);
            QCOMPARE(e->text, std::string("every 50 steps, but the run has 40 steps: it evaluates only at the end"));
            QCOMPARE(k->text, std::string("every 100 steps, but the run has 40 steps: it saves only at the end"));
            QVERIFY(k->hint.find("training.checkpoint_every <= 40") != std::string::npos);
        }
        c.eval_every = 40;
        c.checkpoint_every = 0;
        QVERIFY(check_train_config_for_data(c, 0, 0).notes.empty());
        c.max_steps = 0; // epochs, no data: the steps are not known, nothing is said
        c.eval_every = 1000000;
        QVERIFY(check_train_config_for_data(c, 0, 0).notes.empty());
    }

    // The trainer (what `qlora train` and the studio run) refuses and notes with the same words, and its step count
    // from epochs is the one the checks compute (packing's rows are ceil(tokens / seq_len) or a few more).
    void theTrainerSaysTheSame() {
        QTemporaryDir tmp;
        train_config c = run_config(tmp.path());
        c.seq_len = 999999;
        QCOMPARE(testutil::expect_error([&] { trainer::create(c); }, error_code::config,
                                        {"training.seq_len: 999999 is longer than the model's context of 512"}),
                 std::string());

        c = run_config(tmp.path());
        c.lora.rank = 64;
        c.epochs = 1;
        std::vector<std::string> log;
        train_callbacks cb;
        cb.on_log = [&log](const std::string& line) { log.push_back(line); };
        auto t = trainer::create(c, cb);
        const train_data_fit f = check_train_config_for_data(c, int64_t(t->train_stats().examples),
                                                             int64_t(t->train_stats().tokens));
        QVERIFY2(std::abs(double(f.steps - t->total_steps())) <= std::max(1.0, 0.05 * double(t->total_steps())),
                 qPrintable(QString("%1 vs %2").arg(f.steps).arg(t->total_steps())));
        auto logged = [&log](const std::string& part) {
            for (const std::string& l : log)
                if (l.find(part) != std::string::npos) return true;
            return false;
        };
        QVERIFY(logged("note: lora.rank: 64 is larger than the smaller dimension of k_proj (32) and v_proj (32)"));
        if (t->total_steps() < c.checkpoint_every)
            QVERIFY(logged("note: training.checkpoint_every: every 100 steps, but the run has"));

        // a training file shorter than one sequence
        const QString tiny = tmp.filePath("tiny.txt");
        std::ofstream(tiny.toStdString()) << "Pip ran.\n";
        c = run_config(tmp.path());
        c.name = "tiny";
        c.train_file = tiny.toStdString();
        c.seq_len = 512;
        QCOMPARE(testutil::expect_error([&] { trainer::create(c); }, error_code::config,
                                        {"training.seq_len: the training data holds",
                                         "fewer than one sequence of 512"}),
                 std::string());
    }

    // `qlora train --config run.json` prints the refusal with the run.json key.
    void theCommandLineSaysTheSame() {
        if (!QFileInfo::exists(testutil::qlora_exe())) QSKIP("the qlora executable is not built");
        QTemporaryDir tmp;
        train_config c = run_config(tmp.path());
        c.seq_len = 999999;
        const QString path = tmp.filePath("run.json");
        std::ofstream(path.toStdString()) << train_config_to_json(c);
        const testutil::cli_result r = testutil::run_cli({"train", "--config", path});
        QVERIFY(r.exit_code != 0);
        QVERIFY2(r.err.contains("training.seq_len: 999999 is longer than the model's context of 512 positions"),
                 qPrintable(r.err));
        QVERIFY2(r.err.contains("use training.seq_len <= 512"), qPrintable(r.err));
    }
};

QTEST_GUILESS_MAIN(TestTrainChecks)
#include "tst_train_checks.moc"
