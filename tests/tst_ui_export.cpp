// ExportPage on a real run (a short CPU run on the demo model, a checkpoint per step): PEFT, merged and GGUF exports
// of any checkpoint, progress, file sizes and run commands, and clear failures.
#include "testutil.h"

#include "demoassets.h"
#include "exportpage.h"

#include "qls/gguf.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/peft.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <QApplication>
#include <QComboBox>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>

#include <cmath>

class TestUiExport : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    QString m_model;
    QString m_runDir;
    QString m_checkpoint;
    qls::lora_weights<float> m_trained;

    // Runs an export on the page and waits for its signal; returns the finished path or "" (failure recorded).
    QString exportAndWait(ExportPage& page, QString* failure = nullptr) {
        QSignalSpy done(&page, &ExportPage::exportFinished);
        QSignalSpy failed(&page, &ExportPage::exportFailed);
        page.findChild<QPushButton*>("exportButton")->click();
        [&] { QTRY_VERIFY_WITH_TIMEOUT(done.count() + failed.count() == 1, 60000); }();
        if (failed.count() && failure) *failure = failed.at(0).at(0).toString();
        return done.count() ? done.at(0).at(0).toString() : QString();
    }

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        DemoAssets demo(m_tmp.path() + "/cache");
        m_model = demo.modelDir();
        QVERIFY2(!m_model.isEmpty(), qPrintable(demo.errorString()));
        qls::train_config cfg;
        cfg.name = "export";
        cfg.runs_dir = (m_tmp.path() + "/runs").toStdString();
        cfg.model = m_model.toStdString();
        cfg.train_file = demo.datasetFile().toStdString();
        cfg.lora.rank = 4;
        cfg.lora.alpha = 8;
        cfg.lora.dropout = 0;
        cfg.optimizer = qls::optimizer_kind::adamw_32bit;
        cfg.learning_rate = 0.01f;
        cfg.seq_len = 64;
        cfg.micro_batch = 2;
        cfg.grad_accum = 1;
        cfg.max_steps = 3;
        cfg.checkpoint_every = 1; // step-1 .. step-3: the picker offers each
        cfg.gradient_checkpointing = false;
        cfg.backend = "cpu";
        auto t = qls::trainer::create(cfg);
        QCOMPARE(t->run(), qls::train_outcome::completed);
        m_runDir = QString::fromStdString(t->run_dir());
        m_checkpoint = QString::fromStdString(qls::latest_checkpoint(t->run_dir()));
        QVERIFY(m_checkpoint.endsWith("/checkpoints/step-3"));
        m_trained = t->adapters();
    }

    void exportsPeftAdapter() {
        ExportPage page;
        page.setCheckpoint(m_model, m_checkpoint);
        QCOMPARE(page.format(), ExportPage::Format::Peft);
        QCOMPARE(page.outputDir(), m_runDir + "/exports/peft-step-3");
        QVERIFY(page.mergeIntoNf4()); // the run's config.json says the base was NF4 (the default)
        QVERIFY(!page.findChild<QPushButton*>("exportOpenFolder")->isEnabled());

        QString failure;
        const QString out = exportAndWait(page, &failure);
        QVERIFY2(!out.isEmpty(), qPrintable(failure));
        QCOMPARE(out, m_runDir + "/exports/peft-step-3");
        QVERIFY(QFileInfo::exists(out + "/adapter_config.json"));
        QVERIFY(QFileInfo::exists(out + "/adapter_model.safetensors"));
        QCOMPARE(page.resultPath(), out);
        QCOMPARE(page.findChild<QLabel*>("exportResult")->text(), out);
        QVERIFY(page.findChild<QPushButton*>("exportOpenFolder")->isEnabled());
        QVERIFY(page.statusText().contains("PEFT adapter"));
        QVERIFY(page.findChild<QPushButton*>("exportButton")->isEnabled());

        // the exported adapter is the trained one, and names the base model
        const qls::model_config mc = qls::load_model_config((m_model + "/config.json").toStdString());
        const qls::lora_weights<float> back = qls::load_peft(out.toStdString(), mc);
        QCOMPARE(back.config.rank, 4);
        for (int l = 0; l < mc.num_layers; ++l)
            for (qls::lora_target t : qls::all_lora_targets()) {
                QVERIFY(back.at(l, t).a == m_trained.at(l, t).a);
                QVERIFY(back.at(l, t).b == m_trained.at(l, t).b);
            }
        QFile cfg(out + "/adapter_config.json");
        QVERIFY(cfg.open(QIODevice::ReadOnly));
        QVERIFY(cfg.readAll().contains(("\"base_model_name_or_path\": \"" + m_model + "\"").toUtf8()));
    }

    void exportsMergedModel() {
        ExportPage page;
        page.setCheckpoint(m_model, m_checkpoint);
        page.setFormat(ExportPage::Format::Merged);
        QCOMPARE(page.outputDir(), m_runDir + "/exports/merged-step-3");
        QVERIFY(page.findChild<QWidget*>("exportNf4")->isEnabled());
        QSignalSpy progress(page.findChild<QProgressBar*>("exportProgress"), &QProgressBar::valueChanged);
        QString failure;
        const QString out = exportAndWait(page, &failure);
        QVERIFY2(!out.isEmpty(), qPrintable(failure));
        QCOMPARE(page.findChild<QProgressBar*>("exportProgress")->value(), 4000);
        QVERIFY(page.statusText().contains("merged model"));

        // a model the engine loads, tokenizer included, whose projections are the NF4 base plus scale·B·A
        const qls::hf_checkpoint ck = qls::hf_checkpoint::open(out.toStdString());
        QCOMPARE(qls::load_tokenizer_for(ck).vocab_size(), 512);
        const qls::llama_model merged = qls::llama_model::load(ck);
        qls::llama_load_options nf4;
        nf4.quantize_nf4 = true;
        const qls::llama_model base = qls::llama_model::load(m_model.toStdString(), nf4);
        double maxDelta = 0, maxErr = 0;
        for (int l = 0; l < base.config.num_layers; ++l)
            for (qls::lora_target t : qls::all_lora_targets()) {
                std::vector<float> expect = base.projection(l, t);
                qls::lora_merge(expect.data(), m_trained.at(l, t), m_trained.config.scale());
                const std::vector<float>& got = merged.projection(l, t);
                QCOMPARE(got.size(), expect.size());
                for (size_t i = 0; i < got.size(); ++i) {
                    maxErr = std::max(maxErr, double(std::abs(got[i] - expect[i])));
                    maxDelta = std::max(maxDelta, double(std::abs(got[i] - base.projection(l, t)[i])));
                }
            }
        QCOMPARE(maxErr, 0.0);
        QVERIFY(maxDelta > 0); // the adapter changed something
        QVERIFY(merged.params.embed == base.params.embed);
    }

    // A GGUF model of an older checkpoint chosen in the picker: per-tensor progress, the file and its size, the
    // Modelfile, the llama.cpp and Ollama commands; its adapter GGUF holds that checkpoint's weights, not the newest.
    void exportsGgufOfAnyCheckpoint() {
        ExportPage page;
        page.setCheckpoint(m_model, m_checkpoint);
        const QStringList choices = page.checkpointChoices();
        QCOMPARE(choices, (QStringList{m_runDir + "/checkpoints/step-3", m_runDir + "/checkpoints/step-2",
                                       m_runDir + "/checkpoints/step-1"}));
        auto* picker = page.findChild<QComboBox*>("exportCheckpointPicker");
        QVERIFY(picker->isEnabled());
        QCOMPARE(picker->currentText(), QString("step 3"));
        page.setFormat(ExportPage::Format::Gguf);
        QVERIFY(page.findChild<QWidget*>("exportQuant")->isEnabled());
        QVERIFY(!page.findChild<QWidget*>("exportAdapterDtype")->isEnabled());
        page.chooseCheckpoint(m_runDir + "/checkpoints/step-1");
        QCOMPARE(page.checkpointDir(), m_runDir + "/checkpoints/step-1");
        QCOMPARE(page.outputDir(), m_runDir + "/exports/gguf-step-1");
        page.setGgufQuant("q8_0");
        QCOMPARE(page.ggufQuant(), QString("q8_0"));
        QSignalSpy progress(page.findChild<QProgressBar*>("exportProgress"), &QProgressBar::valueChanged);
        QString failure;
        const QString out = exportAndWait(page, &failure);
        QVERIFY2(!out.isEmpty(), qPrintable(failure));
        QCOMPARE(out, m_runDir + "/exports/gguf-step-1");
        QCOMPARE(page.findChild<QProgressBar*>("exportProgress")->value(), 4000);
        // the bar moves forward only, in thousandths of a stage (QFutureWatcher passes at most 25 updates a second, so
        // how many arrive depends on the machine's speed; the engine's per-tensor reports are tested in
        // tst_gguf_export)
        int last = 0;
        for (const QList<QVariant>& v : progress) {
            QVERIFY(v.at(0).toInt() >= last && v.at(0).toInt() <= 4000);
            last = v.at(0).toInt();
        }
        QVERIFY(page.statusText().contains("GGUF model"));
        const QString gguf = out + "/model-q8_0.gguf";
        QCOMPARE(page.resultFiles().size(), 2);
        QCOMPARE(page.resultFiles().at(0), gguf + "\t" + QString::number(QFileInfo(gguf).size()));
        QVERIFY(page.findChild<QLabel*>("exportFiles")->text().contains("model-q8_0.gguf — "));
        QVERIFY(page.findChild<QLabel*>("exportFiles")->text().contains("Modelfile — "));
        QVERIFY2(page.commandsText().contains("llama-cli -m " + gguf), qPrintable(page.commandsText()));
        QVERIFY(page.commandsText().contains("ollama create export -f " + out + "/Modelfile"));
        QVERIFY(QFileInfo::exists(out + "/Modelfile"));
        const qls::gguf_file f = qls::gguf_file::open(gguf.toStdString());
        QCOMPARE(f.get_int("general.file_type"), int64_t(7));
        QCOMPARE(f.get_string("tokenizer.ggml.model"), std::string("llama"));

        // the adapter GGUF of the same older checkpoint, F16
        page.setFormat(ExportPage::Format::GgufAdapter);
        QVERIFY(page.findChild<QWidget*>("exportAdapterDtype")->isEnabled());
        page.setAdapterDtype("f16");
        QCOMPARE(page.outputDir(), m_runDir + "/exports/gguf-adapter-step-1");
        const QString adir = exportAndWait(page, &failure);
        QVERIFY2(!adir.isEmpty(), qPrintable(failure));
        const qls::gguf_file a = qls::gguf_file::open((adir + "/adapter-f16.gguf").toStdString());
        QCOMPARE(a.get_string("general.type"), std::string("adapter"));
        const qls::model_config mc = qls::load_model_config((m_model + "/config.json").toStdString());
        const qls::lora_weights<float> step1 = qls::load_peft((m_runDir + "/checkpoints/step-1").toStdString(), mc);
        const qls::gguf_tensor_info* la = a.find_tensor("blk.0.attn_v.weight.lora_a");
        QVERIFY(la);
        QCOMPARE(la->type, qls::ggml_type::f16);
        std::vector<float> got(size_t(la->numel()));
        a.dequantize(*la, got.data());
        const std::vector<float>& b1 = step1.at(0, qls::lora_target::v).a;
        const std::vector<float>& b3 = m_trained.at(0, qls::lora_target::v).a;
        double e1 = 0, e3 = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            e1 = std::max(e1, double(std::abs(got[i] - b1[i])));
            e3 = std::max(e3, double(std::abs(got[i] - b3[i])));
        }
        QVERIFY2(e1 < 1e-3, qPrintable(QString::number(e1))); // f16 rounding of values below 1
        QVERIFY2(e3 > 10 * e1, qPrintable(QString("%1 vs %2").arg(e3).arg(e1)));
        QVERIFY(page.commandsText().contains("--lora " + adir + "/adapter-f16.gguf"));
    }

    void badCheckpointShowsClearMessage() {
        ExportPage page;
        // a folder that does not exist
        const QString missing = m_tmp.path() + "/runs/export/checkpoints/step-99";
        page.setCheckpoint(m_model, missing);
        QString failure;
        QVERIFY(exportAndWait(page, &failure).isEmpty());
        QVERIFY2(failure.contains(missing) && failure.contains("no such folder"), qPrintable(failure));
        QVERIFY(page.statusText().contains("Export failed"));
        QVERIFY(page.statusText().contains("What to do"));
        QVERIFY(page.resultPath().isEmpty());
        QVERIFY(!page.findChild<QPushButton*>("exportOpenFolder")->isEnabled());

        // a folder that is not a checkpoint
        page.setCheckpoint(m_model, m_runDir);
        QVERIFY(exportAndWait(page, &failure).isEmpty());
        QVERIFY2(failure.contains("is not a checkpoint") && failure.contains("adapter_config.json"),
                 qPrintable(failure));

        // a checkpoint whose adapter file is damaged: the engine's message names the file
        const QString broken = m_tmp.path() + "/broken";
        QVERIFY(QDir().mkpath(broken));
        QVERIFY(QFile::copy(m_checkpoint + "/adapter_config.json", broken + "/adapter_config.json"));
        QFile junk(broken + "/adapter_model.safetensors");
        QVERIFY(junk.open(QIODevice::WriteOnly));
        junk.write("this is not a safetensors file");
        junk.close();
        page.setCheckpoint(m_model, broken);
        QCOMPARE(page.outputDir(), broken + "-peft");
        QVERIFY(exportAndWait(page, &failure).isEmpty());
        QVERIFY2(failure.contains(broken + "/adapter_model.safetensors"), qPrintable(failure));
        QVERIFY(!QFileInfo::exists(broken + "-peft"));

        // writing over an input is refused
        page.setCheckpoint(m_model, m_checkpoint);
        page.setOutputDir(m_checkpoint);
        QVERIFY(exportAndWait(page, &failure).isEmpty());
        QVERIFY2(failure.contains("is an input of the export"), qPrintable(failure));
    }

    // An existing, non-empty output folder: the page asks first; No leaves the folder alone, Yes overwrites it.
    void overwriteAsksFirst() {
        const QString out = m_tmp.path() + "/taken";
        QVERIFY(QDir().mkpath(out));
        QFile mine(out + "/config.json");
        QVERIFY(mine.open(QIODevice::WriteOnly));
        mine.write("{\"mine\": true}");
        mine.close();
        ExportPage page;
        page.setCheckpoint(m_model, m_checkpoint);
        page.setOutputDir(out);
        QStringList asked;
        bool answer = false;
        page.setOverwriteConfirmation([&](QWidget* parent, const QString& dir) {
            asked << dir;
            return parent == &page && answer;
        });
        QSignalSpy started(&page, &ExportPage::exportStarted);
        page.findChild<QPushButton*>("exportButton")->click();
        QCOMPARE(asked, QStringList{out});
        QCOMPARE(started.count(), 0);
        QVERIFY(!page.isRunning());
        QVERIFY2(page.statusText().contains("Not exported"), qPrintable(page.statusText()));
        QVERIFY(mine.open(QIODevice::ReadOnly));
        QCOMPARE(mine.readAll(), QByteArray("{\"mine\": true}"));
        mine.close();

        answer = true;
        QString failure;
        const QString done = exportAndWait(page, &failure);
        QVERIFY2(!done.isEmpty(), qPrintable(failure));
        QCOMPARE(asked.size(), 2);
        QVERIFY(QFileInfo::exists(out + "/adapter_model.safetensors"));

        // a new folder is not asked about
        page.setOutputDir(m_tmp.path() + "/fresh");
        QVERIFY(!exportAndWait(page, &failure).isEmpty());
        QCOMPARE(asked.size(), 2);
    }
};

QTEST_MAIN(TestUiExport)
#include "tst_ui_export.moc"
