// A chat fine-tune of a GGUF model end to end on the CPU: SmolLM2-135M-Instruct (Q4_1 GGUF) trained on the "Ahoy!"
// chat set through the model's own template; validation loss falls, the adapter changes the chat answer, the run
// resumes and exports as PEFT naming the GGUF base. QLS_KEEP_CHAT_RUN=DIR copies the trained run folder to DIR.
#include "testutil.h"

#include "qls/error.h"
#include "qls/run_export.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace qls;
namespace fs = std::filesystem;

namespace {

std::string smollm2_gguf() {
    return std::string(QLS_SOURCE_DIR) + "/../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
}
std::string ahoy(const char* file) { return std::string(QLS_SOURCE_DIR) + "/datasets/chat/" + file; }

const QString k_question = "What is the capital of France?";

// `qlora generate --chat QUESTION` greedy on the CPU, with an adapter when given; the reply text (stdout).
QString chat_answer(const QString& adapter) {
    QStringList args{"generate",
                     "--model",
                     QString::fromStdString(smollm2_gguf()),
                     "--chat",
                     k_question,
                     "--temperature",
                     "0",
                     "--device",
                     "cpu",
                     "--max-new-tokens",
                     "24"};
    if (!adapter.isEmpty()) args << "--adapter" << adapter;
    const testutil::cli_result r = testutil::run_cli(args);
    if (r.exit_code != 0) qWarning("qlora generate failed (%d): %s", r.exit_code, qPrintable(r.err));
    return r.exit_code == 0 ? r.out.trimmed() : QString();
}

} // namespace

class TestChatFinetune : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        if (!fs::is_regular_file(smollm2_gguf()))
            QFAIL(qPrintable(QString("SmolLM2 GGUF not found at %1").arg(QString::fromStdString(smollm2_gguf()))));
    }

    // run.json "model" names a .gguf file or a directory; anything else is refused naming the field.
    void modelPathIsChecked() {
        QTemporaryDir tmp;
        const std::string not_gguf = tmp.filePath("weights.bin").toStdString();
        std::ofstream(not_gguf) << "x";
        train_config c;
        c.model = not_gguf;
        c.train_file = ahoy("ahoy_chat.jsonl");
        testutil::expect_error([&] { validate_train_config(c); }, error_code::config,
                               {"model", "weights.bin", "neither a model directory nor a .gguf file"});
        c.model = smollm2_gguf();
        validate_train_config(c);
        c.model = testutil::model_dir();
        validate_train_config(c);
        // a missing model is reported when the run opens it, naming the path
        c.model = tmp.filePath("absent.gguf").toStdString();
        c.runs_dir = tmp.filePath("runs").toStdString();
        testutil::expect_error([&] { trainer::create(c); }, error_code::io, {"absent.gguf"});
    }

    void ggufChatFinetune() {
        QTemporaryDir tmp;
        train_config c;
        c.name = "ahoy";
        c.runs_dir = tmp.filePath("runs").toStdString();
        c.model = smollm2_gguf();
        c.train_file = ahoy("ahoy_chat.jsonl");
        c.validation_file = ahoy("ahoy_chat.val.jsonl");
        c.dataset_format = "messages";
        c.prompt_template = "model"; // SmolLM2's own ChatML template from the GGUF metadata
        c.quantize_nf4 = false;      // the base as the GGUF stores it, as generate and PEFT read it
        c.lora.rank = 8;
        c.lora.alpha = 16;
        c.lora.dropout = 0.0f;
        c.lora.targets = {lora_target::q, lora_target::v};
        c.optimizer = optimizer_kind::adamw_32bit;
        c.learning_rate = 5e-3f;
        c.max_grad_norm = 1.0f;
        c.schedule = lr_schedule::constant;
        c.warmup_steps = 2;
        c.seq_len = 96;
        c.micro_batch = 2;
        c.grad_accum = 1;
        c.max_steps = 20;
        c.eval_every = 0;
        c.eval_batches = 0;
        c.checkpoint_every = 0;
        c.gradient_checkpointing = false;
        c.backend = "cpu";
        c.seed = 11;

        std::unique_ptr<trainer> t = trainer::create(c);
        QCOMPARE(t->model().config.vocab_size, 49152);
        QVERIFY(t->validation_stats().examples == 12);
        const std::optional<double> before = t->evaluate();
        QVERIFY(before.has_value());
        const auto t0 = std::chrono::steady_clock::now();
        QVERIFY(t->run() == train_outcome::completed);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const std::optional<double> after = t->evaluate();
        QVERIFY(after.has_value());
        std::printf("validation loss: %.4f before, %.4f after %lld steps (%.1f s, %.2f s/step)\n", *before, *after,
                    (long long)t->step(), secs, secs / double(t->step()));
        QVERIFY2(*after < 0.6 * *before, "the validation loss did not fall clearly");
        const std::string run_dir = t->run_dir();
        const lora_weights<float> trained = t->adapters();
        t.reset();
        const std::string ckpt = latest_checkpoint(run_dir);
        QVERIFY(!ckpt.empty());

        // the chat answer: the base's, then with the adapter
        const QString base = chat_answer({});
        const QString tuned = chat_answer(QString::fromStdString(ckpt));
        std::printf("base : %s\ntuned: %s\n", qPrintable(base), qPrintable(tuned));
        QVERIFY2(base.startsWith("The capital of France is Paris"), qPrintable(base));
        QVERIFY2(tuned.startsWith("Ahoy!"), qPrintable(tuned));

        // resume: the run reopens from the GGUF at its last step with the same adapters
        {
            std::unique_ptr<trainer> r = trainer::resume(run_dir);
            QCOMPARE(r->step(), int64_t(20));
            const lora_weights<float>& back = r->adapters();
            const lora_adapter<float>& a = trained.at(0, lora_target::q);
            const lora_adapter<float>& b = back.at(0, lora_target::q);
            QVERIFY(a.rank == 8 && a.a.size() == b.a.size() && a.b.size() == b.b.size());
            QVERIFY(a.a == b.a && a.b == b.b);
        }

        // PEFT export: adapter_config.json names the GGUF base
        const export_result ex = run_export(export_request_for_run(run_dir, export_format::peft));
        std::ifstream f(fs::path(ex.output_dir) / "adapter_config.json");
        const nlohmann::json j = nlohmann::json::parse(f);
        QCOMPARE(QString::fromStdString(fs::weakly_canonical(j.at("base_model_name_or_path").get<std::string>())),
                 QString::fromStdString(fs::weakly_canonical(smollm2_gguf())));
        // a merged export needs Hugging Face shards: refused with a clear error
        testutil::expect_error([&] { run_export(export_request_for_run(run_dir, export_format::merged)); },
                               error_code::unsupported, {"GGUF", "PEFT"});

        if (const char* keep = std::getenv("QLS_KEEP_CHAT_RUN"); keep && *keep) {
            fs::remove_all(keep);
            fs::create_directories(fs::path(keep).parent_path().empty() ? "." : fs::path(keep).parent_path());
            fs::copy(run_dir, keep, fs::copy_options::recursive);
            std::printf("run kept at %s\n", keep);
        }
    }
};

QTEST_GUILESS_MAIN(TestChatFinetune)
#include "tst_chat_finetune.moc"
