// DemoAssets: the embedded demo model and corpus extract once, repair themselves, load in the engine, tokenize and train.
#include "testutil.h"

#include "demoassets.h"
#include "studiocontroller.h"

#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/tokenizer.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <QCoreApplication>
#include <QFile>
#include <QTemporaryDir>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace {

QByteArray fileBytes(const QString& path) {
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

// Stories are paragraphs separated by blank lines, as the plain-text dataset reader splits them.
std::vector<std::string> stories(const QString& path) {
    std::ifstream in(path.toStdString());
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) out.push_back(line);
    return out;
}

} // namespace

class TestUiDemo : public QObject {
    Q_OBJECT

private slots:
    void embedsTheRepositoryFiles() {
        const QStringList names = DemoAssets::files();
        QCOMPARE(names, QStringList({"data/pip_the_lighthouse_mouse.txt", "data/pip_the_lighthouse_mouse.val.txt",
                                     "model/config.json", "model/generation_config.json", "model/model.safetensors",
                                     "model/tokenizer.model", "model/tokenizer_config.json"}));
        // byte for byte the committed files
        const QString src = QStringLiteral(QLS_SOURCE_DIR);
        QCOMPARE(fileBytes(":/demo/model/model.safetensors"),
                 fileBytes(src + "/resources/demo/model/model.safetensors"));
        QCOMPARE(fileBytes(":/demo/data/pip_the_lighthouse_mouse.txt"),
                 fileBytes(src + "/datasets/stories/pip_the_lighthouse_mouse.txt"));
        QCOMPARE(DemoAssets::contentHash().size(), 64);
    }

    void extractsOnceAndRepairs() {
        QTemporaryDir root;
        QVERIFY(root.isValid());
        // a folder an older build left behind, and an unrelated one that must survive
        QVERIFY(QDir().mkpath(root.path() + "/0123456789abcdef/model"));
        QFile stale(root.path() + "/0123456789abcdef/.complete");
        QVERIFY(stale.open(QIODevice::WriteOnly));
        stale.close();
        QVERIFY(QDir().mkpath(root.path() + "/keep-me"));

        DemoAssets first(root.path());
        QVERIFY2(first.extract(), qPrintable(first.errorString()));
        QVERIFY(!first.reusedCache());
        QCOMPARE(first.modelDir(), first.extractedDir() + "/model");
        QVERIFY(first.extractedDir().endsWith("/" + DemoAssets::contentHash().left(16)));
        for (const QString& name : DemoAssets::files())
            QCOMPARE(fileBytes(first.extractedDir() + "/" + name), fileBytes(":/demo/" + name));
        QVERIFY(!QFileInfo::exists(root.path() + "/0123456789abcdef"));
        QVERIFY(QFileInfo::exists(root.path() + "/keep-me"));

        DemoAssets second(root.path());
        QVERIFY(second.extract());
        QVERIFY(second.reusedCache());
        QCOMPARE(second.datasetFile(), first.datasetFile());

        // a damaged copy (same size, other bytes) is noticed and written again
        const QString cfg = first.modelDir() + "/tokenizer_config.json";
        QByteArray bytes = fileBytes(cfg);
        bytes[10] = bytes[10] == 'x' ? 'y' : 'x';
        QFile f(cfg);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(bytes);
        f.close();
        DemoAssets third(root.path());
        QVERIFY(third.extract());
        QVERIFY(!third.reusedCache());
        QCOMPARE(fileBytes(cfg), fileBytes(":/demo/model/tokenizer_config.json"));

        // a missing file too
        QVERIFY(QFile::remove(third.validationFile()));
        DemoAssets fourth(root.path());
        QVERIFY(!fourth.validationFile().isEmpty());
        QVERIFY(!fourth.reusedCache());
        QVERIFY(QFileInfo::exists(fourth.validationFile()));
    }

    void unwritableCacheGivesAClearMessage() {
        QTemporaryDir root;
        QFile blocker(root.path() + "/file");
        QVERIFY(blocker.open(QIODevice::WriteOnly));
        blocker.close();
        DemoAssets demo(root.path() + "/file/demo"); // a folder below a regular file cannot be created
        QVERIFY(!demo.extract());
        QVERIFY(demo.modelDir().isEmpty());
        QVERIFY2(demo.errorString().contains(root.path() + "/file/demo"), qPrintable(demo.errorString()));
    }

    // The studio's demo trains with resources/examples/demo.run.json's settings, the recipe tst_demo_model proves
    // ends in a story about Pip.
    void studioDemoUsesTheCommandLineRecipe() {
        const qls::train_config ref = qls::load_train_config(std::string(QLS_SOURCE_DIR) +
                                                             "/resources/examples/demo.run.json");
        const qls::train_config c = StudioController::demoConfig({"m", "t", "v"}, StudioController::k_demoSteps, "/r");
        QCOMPARE(c.max_steps, ref.max_steps);
        QCOMPARE(int(c.optimizer), int(ref.optimizer));
        QCOMPARE(c.learning_rate, ref.learning_rate);
        QCOMPARE(int(c.schedule), int(ref.schedule));
        QCOMPARE(c.warmup_steps, ref.warmup_steps);
        QCOMPARE(c.seq_len, ref.seq_len);
        QCOMPARE(c.micro_batch, ref.micro_batch);
        QCOMPARE(c.grad_accum, ref.grad_accum);
        QCOMPARE(c.lora.rank, ref.lora.rank);
        QCOMPARE(c.lora.alpha, ref.lora.alpha);
        QCOMPARE(c.lora.dropout, ref.lora.dropout);
        QCOMPARE(c.seed, ref.seed);
        QCOMPARE(c.eval_every, ref.eval_every);
        QCOMPARE(c.eval_batches, ref.eval_batches);
    }

    void engineLoadsTokenizesAndTrains() {
        QTemporaryDir root;
        DemoAssets demo(root.path() + "/cache");
        const std::string model = demo.modelDir().toStdString();
        QVERIFY2(!model.empty(), qPrintable(demo.errorString()));

        const qls::hf_checkpoint ck = qls::hf_checkpoint::open(model);
        const qls::model_config& c = ck.config();
        QCOMPARE(c.num_layers, 4);
        QCOMPARE(c.hidden_size, 64);
        QCOMPARE(c.vocab_size, 512);
        const qls::tokenizer tok = qls::load_tokenizer_for(ck);
        QCOMPARE(tok.vocab_size(), 512);
        QCOMPARE(tok.bos_id(), 1);
        QCOMPARE(tok.eos_id(), 2);
        const qls::llama_model m = qls::llama_model::load(ck);
        QCOMPARE(m.config.parameter_count(), 217664LL);

        // The tokenizer was trained on this corpus: every story round-trips exactly, without unknown pieces, and
        // fits the context with BOS and EOS.
        const std::vector<std::string> train = stories(demo.datasetFile());
        QCOMPARE(train.size(), size_t(300));
        size_t tokens = 0, longest = 0, unknown = 0;
        for (const std::string& s : train) {
            const std::vector<int> ids = tok.encode(s, true, true);
            tokens += ids.size();
            longest = std::max(longest, ids.size());
            unknown += size_t(std::count(ids.begin(), ids.end(), tok.unk_id()));
            QCOMPARE(tok.decode(ids), s);
        }
        QCOMPARE(unknown, size_t(0));
        QVERIFY2(longest <= size_t(c.max_position_embeddings), qPrintable(QString::number(longest)));
        // 512 pieces, half of them byte fallbacks, still compress the text: fewer tokens than characters / 2
        QVERIFY2(tokens < size_t(fileBytes(demo.datasetFile()).size()) / 2, qPrintable(QString::number(tokens)));

        // A few LoRA steps on the CPU lower the validation loss. The Pip corpus is new to the pretrained model (Pip,
        // the lighthouse and the sea are not in its tales corpus), so the loss starts high; tst_demo_model checks what
        // the model writes before and after the demo run.
        qls::train_config cfg;
        cfg.name = "demo";
        cfg.runs_dir = (root.path() + "/runs").toStdString();
        cfg.model = model;
        cfg.train_file = demo.datasetFile().toStdString();
        cfg.validation_file = demo.validationFile().toStdString();
        cfg.lora.rank = 8;
        cfg.lora.alpha = 16;
        cfg.lora.dropout = 0;
        cfg.optimizer = qls::optimizer_kind::adamw_32bit;
        cfg.learning_rate = 0.01f;
        cfg.schedule = qls::lr_schedule::constant;
        cfg.warmup_steps = 0;
        cfg.seq_len = 128;
        cfg.micro_batch = 4;
        cfg.grad_accum = 1;
        cfg.max_steps = 12;
        cfg.eval_batches = 4;
        cfg.checkpoint_every = 0;
        cfg.gradient_checkpointing = false;
        cfg.backend = "cpu";
        std::vector<double> losses;
        qls::train_callbacks cb;
        cb.on_step = [&losses](const qls::step_stats& s) { losses.push_back(s.loss); };
        auto t = qls::trainer::create(cfg, cb);
        const std::optional<double> before = t->evaluate();
        QVERIFY(before.has_value());
        QVERIFY2(std::isfinite(*before) && *before > 0, qPrintable(QString::number(*before)));
        QCOMPARE(t->run(cb), qls::train_outcome::completed);
        const std::optional<double> after = t->evaluate();
        QCOMPARE(losses.size(), size_t(12));
        qInfo("demo training: validation loss %.4f -> %.4f; train loss %.4f -> %.4f", *before, *after, losses.front(),
              losses.back());
        QVERIFY2(*after < *before - 0.1, qPrintable(QString("%1 -> %2").arg(*before).arg(*after)));
        QVERIFY(losses.back() < losses.front());
    }
};

QTEST_GUILESS_MAIN(TestUiDemo)
#include "tst_ui_demo.moc"
