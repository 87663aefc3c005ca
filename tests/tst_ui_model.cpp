// The Model page on real models through the controller and the engine worker: the SmolLM2 GGUF file (a typed path)
// and the stories260K Hugging Face directory, each with its format, family, tokenizer and chat template rows.
#include "testutil.h"
#include "ui_testutil.h"

#include "engineworker.h"
#include "mainwindow.h"
#include "modelpage.h"
#include "playgroundpage.h"
#include "studiocontroller.h"

#include "qls/architecture.h"
#include "qls/model_config.h"
#include "trainingpage.h"

#include <QApplication>
#include <QCheckBox>
#include <QLineEdit>
#include <QPushButton>
#include <QSignalSpy>

using namespace ui_testutil;

class TestUiModel : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QLS_REQUIRE_MODEL();
        QVERIFY2(QFileInfo::exists(smollmGguf()), qPrintable("the SmolLM2 GGUF is not at " + smollmGguf()));
        QCoreApplication::setOrganizationName("QLoRA Studio Tests");
        QCoreApplication::setApplicationName("tst_ui_model");
        QSettings().clear();
    }

    void ggufFileTypedAndLoaded() {
        MainWindow w;
        StudioController c(&w);
        ModelPage* page = w.modelPage();
        QVERIFY(button(page, "Open GGUF…")); // the file chooser beside the directory one
        QVERIFY(button(page, "Browse…"));
        QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
        // a typed path to a .gguf file, then Load
        page->findChild<QLineEdit*>()->setText(smollmGguf());
        button(page, "Load")->click();
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, 120000);
        const ModelInfo info = loaded.at(0).at(0).value<ModelInfo>();
        QCOMPARE(info.dir, smollmGguf());
        QCOMPARE(info.format, QString("gguf"));
        QCOMPARE(info.family, QString("llama"));
        QCOMPARE(info.vocab, 49152);
        QTRY_COMPARE(page->field("Format"), QString("GGUF file"));
        QCOMPARE(page->field("Family"), QString("llama"));
        QCOMPARE(page->field("Architecture"), QString("llama"));
        QCOMPARE(page->field("Layers"), QString("30"));
        QCOMPARE(page->field("Specifics"), QString("tied LM head"));
        QCOMPARE(page->field("LoRA targets"), QString("q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"));
        bool named = false; // the controller hands the family's module names to the Training page
        for (QCheckBox* cb : w.trainingPage()->findChildren<QCheckBox*>())
            if (cb->toolTip().contains("gate_proj")) named = cb->toolTip().contains("llama family");
        QVERIFY(named);
        const QString tok = page->field("Tokenizer");
        QVERIFY2(tok.contains("GGUF") && tok.contains("49152 tokens") && tok.contains("BOS 1") && tok.contains("EOS 2"),
                 qPrintable(tok));
        const QString tmpl = page->field("Chat template");
        QVERIFY2(tmpl.startsWith("from ") && tmpl.contains("tokenizer.chat_template"), qPrintable(tmpl));
        QCOMPARE(info.chatTemplate, tmpl.mid(5));
        // the Playground meets a chat model in chat mode
        QTRY_VERIFY(w.playgroundPage()->chatAvailable());
        QVERIFY(w.playgroundPage()->isChatMode());
    }

    void huggingFaceDirectoryWithoutTemplate() {
        MainWindow w;
        StudioController c(&w);
        ModelPage* page = w.modelPage();
        QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
        c.loadModel(modelDir());
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, 30000);
        QTRY_COMPARE(page->field("Format"), QString("Hugging Face directory (safetensors)"));
        QCOMPARE(page->field("Family"), QString("llama"));
        const QString tok = page->field("Tokenizer");
        QVERIFY2(tok.contains("tokenizer.model") && tok.contains("512 tokens") && tok.contains("BOS 1") &&
                     tok.contains("EOS 2"),
                 qPrintable(tok));
        QCOMPARE(page->field("Chat template"), QString("none (text completion only)"));
        QVERIFY(loaded.at(0).at(0).value<ModelInfo>().chatTemplate.isEmpty());
        QVERIFY(!w.playgroundPage()->chatAvailable());
        QVERIFY(!w.playgroundPage()->isChatMode());
    }

    // A family other than LLaMA: the Model page lists what sets its layers apart and its LoRA target names, and the
    // Training page's target checkboxes name the module as that family calls it.
    void familySpecificsAndTargetNames() {
        MainWindow w;
        const qls::model_config cfg = qls::load_model_config(std::string(QLS_SOURCE_DIR) +
                                                             "/tests/data/families/gemma3/config.json");
        ModelInfo info;
        info.dir = "gemma3";
        info.family = QString::fromStdString(qls::architecture_for(cfg).family);
        for (const std::string& x : qls::family_specifics(cfg)) info.specifics << QString::fromStdString(x);
        for (const std::string& x : qls::peft_target_modules(qls::architecture_for(cfg)))
            info.loraTargets << QString::fromStdString(x);
        w.modelPage()->showModel(info);
        QCOMPARE(w.modelPage()->field("Family"), QString("gemma3"));
        const QString spec = w.modelPage()->field("Specifics");
        QVERIFY2(spec.contains("GeGLU") && spec.contains("sliding window") && spec.contains("(1 + w) RMSNorm"),
                 qPrintable(spec));
        QCOMPARE(w.modelPage()->field("LoRA targets"),
                 QString("q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"));
        w.trainingPage()->setModelLimits(cfg);
        w.trainingPage()->setTargetNames(info.loraTargets, info.family);
        bool named = false;
        for (QCheckBox* cb : w.trainingPage()->findChildren<QCheckBox*>())
            if (cb->toolTip().contains("gate_proj")) named = cb->toolTip().contains(info.family);
        QVERIFY(named);
        // a LLaMA-2 layout says so instead of an empty row
        qls::model_config llama = qls::load_model_config(testutil::model_dir() + "/config.json");
        llama.tie_word_embeddings = false; // stories260K ties its head; Llama 2 does not
        info.specifics.clear();
        for (const std::string& x : qls::family_specifics(llama)) info.specifics << QString::fromStdString(x);
        w.modelPage()->showModel(info);
        QVERIFY2(w.modelPage()->field("Specifics").startsWith("none"), qPrintable(w.modelPage()->field("Specifics")));
    }

    void missingGgufSaysWhich() {
        MainWindow w;
        StudioController c(&w);
        QVERIFY(loadModelAndWait(c, modelDir()));
        QTRY_VERIFY(!w.modelPage()->field("Format").isEmpty());
        QSignalSpy failed(c.worker(), &EngineWorker::modelFailed);
        const QString missing = QDir::tempPath() + "/no-such-model.gguf";
        c.loadModel(missing);
        QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, 30000);
        QVERIFY2(failed.at(0).at(0).toString().contains("no-such-model.gguf"),
                 qPrintable(failed.at(0).at(0).toString()));
        QTRY_COMPARE(w.modelPage()->field("Format"), QString()); // the description goes with the failed load
    }
};

QTEST_MAIN(TestUiModel)
#include "tst_ui_model.moc"
