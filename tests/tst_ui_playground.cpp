// The Playground's two panes (base model, base + a real PEFT adapter) driven through the controller and the real engine worker thread, checked against `qlora generate`; chat mode on the SmolLM2 GGUF.
#include "testutil.h"
#include "ui_testutil.h"

#include "engineworker.h"
#include "fakesession.h"
#include "mainwindow.h"
#include "playgroundpage.h"
#include "runspage.h"
#include "studiocontroller.h"

#include "qls/train_config.h"

#include <QApplication>
#include <QPushButton>
#include <QSignalSpy>

#include <limits>

using namespace ui_testutil;

namespace {

const QString kPrompt = "Once upon a time";
const int kTokens = 40;

QString adapterDir() { return QString(QLS_SOURCE_DIR) + "/tests/data/peft/reference_adapter"; }

// What `qlora generate` prints for the same greedy request, without its closing newline.
QString cliText(const QStringList& extra) {
    QStringList args =
        {"generate", "--model", modelDir(), "--temperature", "0", "--max-new-tokens", QString::number(kTokens),
         "--prompt", kPrompt};
    args += extra;
    const testutil::cli_result r = testutil::run_cli(args, 60000);
    if (r.exit_code != 0) qWarning() << "qlora generate failed:" << r.err;
    QString out = r.out;
    if (out.endsWith('\n')) out.chop(1);
    return out;
}

const QString kQuestion = "What is the capital of France?";

// The newest checkpoint of a run folder (checkpoints/step-N with the largest N; "final" wins); empty when none.
QString newestCheckpoint(const QString& runDir) {
    QString best;
    qint64 bestStep = -1;
    for (const QFileInfo& fi : QDir(runDir + "/checkpoints").entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot)) {
        bool ok = false;
        const qint64 step = fi.fileName() == "final" ? std::numeric_limits<qint64>::max()
                                                     : fi.fileName().mid(5).toLongLong(&ok);
        if ((fi.fileName() == "final" || (fi.fileName().startsWith("step-") && ok)) && step > bestStep) {
            bestStep = step;
            best = fi.absoluteFilePath();
        }
    }
    return best;
}

GenerateRequest greedy() {
    GenerateRequest r;
    r.prompt = kPrompt;
    r.maxNewTokens = kTokens;
    r.temperature = 0;
    r.seed = 7;
    return r;
}

} // namespace

class TestUiPlayground : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QLS_REQUIRE_MODEL();
        QVERIFY2(QFileInfo::exists(testutil::qlora_exe()), qPrintable(testutil::qlora_exe() + " is not built"));
        QCoreApplication::setOrganizationName("QLoRA Studio Tests");
        QCoreApplication::setApplicationName("tst_ui_playground");
        QSettings().clear();
        QVERIFY(m_tmp.isValid());
        m_run = makeAdapterRun(m_tmp.path());
        QVERIFY(!m_run.isEmpty());
        m_base = cliText({});
        m_adapted = cliText({"--adapter", adapterDir(), "--nf4"});
        QVERIFY(m_base.startsWith(kPrompt) && m_base.size() > kPrompt.size() + 20);
        QVERIFY(m_adapted.startsWith(kPrompt) && m_adapted.size() > kPrompt.size() + 20);
        QVERIFY2(m_base != m_adapted, "the reference adapter should change greedy text");
    }

    void withoutAdapterOnlyTheBaseRuns() {
        MainWindow w;
        StudioController c(&w);
        PlaygroundPage* play = w.playgroundPage();
        QVERIFY(loadModelAndWait(c, modelDir()));
        QTRY_VERIFY(button(play, "Generate")->isEnabled());
        QCOMPARE(play->paneTitle(ModelSide::Base), QString("Base model"));
        QCOMPARE(play->paneTitle(ModelSide::Adapter), QString("Base + adapter"));
        QVERIFY(play->adapterHint().contains("Runs") && play->adapterHint().contains("training run"));

        QSignalSpy finished(c.worker(), &EngineWorker::generationFinished);
        play->setSettings(greedy());
        button(play, "Generate")->click();
        QVERIFY(play->isGenerating());
        QVERIFY(!button(play, "Generate")->isEnabled()); // the GUI thread is free while the worker generates
        QTRY_VERIFY_WITH_TIMEOUT(!play->isGenerating(), 30000);
        QCOMPARE(finished.count(), 1);
        QCOMPARE(finished.at(0).at(0).value<ModelSide>(), ModelSide::Base);
        QCOMPARE(play->output(ModelSide::Base), m_base);
        QVERIFY(play->output(ModelSide::Adapter).isEmpty());
        QVERIFY(play->adapterHint().contains("Runs"));
        QVERIFY(play->paneStatus(ModelSide::Base).contains(QString("%1 tokens").arg(kTokens)));
        QVERIFY(button(play, "Generate")->isEnabled());

        w.showPage(MainWindow::Page::Playground);
        w.resize(1280, 800);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QVERIFY(w.grab().save(QString(QLS_BIN_DIR) + "/../tst_ui_playground-no-adapter.png"));
    }

    void bothPanesMatchTheCli() {
        MainWindow w;
        StudioController c(&w);
        PlaygroundPage* play = w.playgroundPage();
        QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
        QSignalSpy runLoaded(c.worker(), &EngineWorker::runLoaded);
        c.loadModel(modelDir());
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, 30000);
        // Runs → Playground: the adapter side loads (the run's base is the one already loaded: not loaded again)
        emit w.runsPage()->playgroundRequested(m_run, m_run + "/checkpoints/step-1");
        QCOMPARE(w.currentPage(), MainWindow::Page::Playground);
        QVERIFY(!button(play, "Generate")->isEnabled());
        QVERIFY(play->adapterHint().contains("Loading"));
        QTRY_COMPARE_WITH_TIMEOUT(runLoaded.count(), 1, 30000);
        QTRY_VERIFY(play->hasAdapter());
        QCOMPARE(loaded.count(), 1);
        QCOMPARE(play->paneTitle(ModelSide::Adapter), QString("Base + adapter (tiny/step-1)"));
        QVERIFY(play->adapterHint().isEmpty());

        QSignalSpy finished(c.worker(), &EngineWorker::generationFinished);
        play->setSettings(greedy());
        button(play, "Generate")->click();
        QTRY_VERIFY_WITH_TIMEOUT(!play->isGenerating(), 30000);
        QCOMPARE(finished.count(), 2);
        QCOMPARE(finished.at(0).at(0).value<ModelSide>(), ModelSide::Base);
        QCOMPARE(finished.at(1).at(0).value<ModelSide>(), ModelSide::Adapter);
        QCOMPARE(play->output(ModelSide::Base), m_base);
        QCOMPARE(play->output(ModelSide::Adapter), m_adapted);
        QVERIFY(play->output(ModelSide::Base) != play->output(ModelSide::Adapter));
        QVERIFY(play->paneStatus(ModelSide::Adapter).contains(QString("%1 tokens").arg(kTokens)));

        // the picture: both panes filled
        w.resize(1280, 800);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        const QString png = QString(QLS_BIN_DIR) + "/../tst_ui_playground.png";
        QVERIFY(w.grab().save(png));
        qInfo() << "screenshot" << QFileInfo(png).absoluteFilePath();

        // loading another base model drops the adapter side
        QSignalSpy unloaded(c.worker(), &EngineWorker::adapterUnloaded);
        c.loadModel(modelDir());
        QTRY_COMPARE_WITH_TIMEOUT(unloaded.count(), 1, 30000);
        QTRY_VERIFY(!play->hasAdapter());
        QVERIFY(play->adapterHint().contains("Runs"));
    }

    void stopSkipsTheAdapterSide() {
        MainWindow w;
        StudioController c(&w);
        PlaygroundPage* play = w.playgroundPage();
        QSignalSpy runLoaded(c.worker(), &EngineWorker::runLoaded);
        QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
        // no base loaded yet: the run's base model loads with its adapter
        c.tryRunInPlayground(m_run, m_run + "/checkpoints/step-1");
        QTRY_COMPARE_WITH_TIMEOUT(runLoaded.count(), 1, 30000);
        QCOMPARE(loaded.count(), 1);
        QTRY_VERIFY(play->hasAdapter() && button(play, "Generate")->isEnabled());

        QSignalSpy text(c.worker(), &EngineWorker::textGenerated);
        QSignalSpy finished(c.worker(), &EngineWorker::generationFinished);
        GenerateRequest r = greedy();
        r.maxNewTokens = 100000; // only Stop or the 512-position context ends it
        r.temperature = 1.0;
        play->setSettings(r);
        button(play, "Generate")->click();
        QTRY_VERIFY_WITH_TIMEOUT(text.count() > 0, 30000);
        button(play, "Stop")->click();
        QTRY_VERIFY_WITH_TIMEOUT(!play->isGenerating(), 30000);
        QCOMPARE(finished.count(), 1);
        QCOMPARE(finished.at(0).at(0).value<ModelSide>(), ModelSide::Base);
        QVERIFY(play->output(ModelSide::Adapter).isEmpty());
        const QString status = play->paneStatus(ModelSide::Adapter);
        QVERIFY2(status.contains("Skipped") || play->paneStatus(ModelSide::Base).contains("end of text"),
                 qPrintable(status));
        QTest::qWait(200);
        QCOMPARE(finished.count(), 1); // nothing ran after Stop
    }

    void finishedRunLoadsItsAdapter() {
        MainWindow w;
        FakeSession fake;
        fake.runDir = m_run;
        fake.script = FakeSession::makeScript(1, 0);
        StudioController c(&w, &fake);
        QSignalSpy runLoaded(c.worker(), &EngineWorker::runLoaded);
        fake.start(qls::train_config{});
        QTRY_COMPARE_WITH_TIMEOUT(runLoaded.count(), 1, 30000);
        QCOMPARE(runLoaded.at(0).at(1).toString(), m_run + "/checkpoints/step-1");
        QTRY_VERIFY(w.playgroundPage()->hasAdapter());
        QCOMPARE(w.playgroundPage()->paneTitle(ModelSide::Adapter), QString("Base + adapter (tiny/step-1)"));
    }

    // Chat mode end to end on a real instruction-tuned GGUF: the template comes from the file, the reply streams
    // without the prompt or the end-of-turn token, the second turn carries the whole history, New chat forgets it,
    // and a model without a template cannot chat.
    void chatOnSmolLM2() {
        QVERIFY2(QFileInfo::exists(smollmGguf()), qPrintable("the SmolLM2 GGUF is not at " + smollmGguf()));
        MainWindow w;
        StudioController c(&w);
        PlaygroundPage* play = w.playgroundPage();
        QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
        c.loadModel(smollmGguf());
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, 120000);
        QTRY_VERIFY(play->chatAvailable());
        QVERIFY(play->isChatMode());
        QVERIFY(button(play, "Send") && button(play, "New chat"));
        QTRY_VERIFY(button(play, "Send")->isEnabled());

        // an adapter for the picture (a run trained on this GGUF), when one is given
        const QString adapterRun = qEnvironmentVariable("QLS_CHAT_ADAPTER_RUN");
        if (!adapterRun.isEmpty()) {
            const QString ckpt = newestCheckpoint(adapterRun);
            QVERIFY2(!ckpt.isEmpty(), qPrintable("no checkpoint under " + adapterRun + "/checkpoints"));
            QSignalSpy runLoaded(c.worker(), &EngineWorker::runLoaded);
            c.tryRunInPlayground(adapterRun, ckpt);
            QTRY_COMPARE_WITH_TIMEOUT(runLoaded.count(), 1, 300000);
            QTRY_VERIFY(play->hasAdapter() && button(play, "Send")->isEnabled());
        }

        QSignalSpy requests(play, &PlaygroundPage::generateRequested);
        GenerateRequest settings;
        settings.maxNewTokens = 16;
        settings.temperature = 0;
        settings.seed = 1;
        play->setSettings(settings);
        play->setMessage(kQuestion);
        button(play, "Send")->click();
        QVERIFY(play->isGenerating());
        QTRY_VERIFY_WITH_TIMEOUT(!play->isGenerating(), 300000);
        QVERIFY(requests.count() >= 1);
        const GenerateRequest first = requests.at(0).at(0).value<GenerateRequest>();
        QVERIFY(first.chat);
        QCOMPARE(first.messages.size(), 1);
        QCOMPARE(first.messages[0].role, QString("user"));
        QCOMPARE(first.messages[0].content, kQuestion);
        QCOMPARE(play->lastReply(ModelSide::Base), QString("The capital of France is Paris."));
        if (!adapterRun.isEmpty()) {
            // the fine-tuned adapter (the ahoy chats) changes the answer the Playground shows beside the base's
            QTRY_VERIFY_WITH_TIMEOUT(!play->isGenerating(), 900000);
            const QString tuned = play->lastReply(ModelSide::Adapter);
            QVERIFY2(!tuned.isEmpty() && tuned != play->lastReply(ModelSide::Base), qPrintable(tuned));
        }
        const QList<ChatTurn> conv = play->conversation(ModelSide::Base);
        QCOMPARE(conv.size(), 2);
        QCOMPARE(conv[0].role, QString("user"));
        QCOMPARE(conv[0].content, kQuestion);
        QCOMPARE(conv[1].role, QString("assistant"));
        QCOMPARE(conv[1].content, QString("The capital of France is Paris."));
        QVERIFY2(play->paneStatus(ModelSide::Base).contains("end of turn"),
                 qPrintable(play->paneStatus(ModelSide::Base)));
        QVERIFY(play->output(ModelSide::Base).contains("You: " + kQuestion));
        QVERIFY(play->output(ModelSide::Base).endsWith("Assistant: The capital of France is Paris."));
        QVERIFY(!play->output(ModelSide::Base).contains("<|im_end|>"));

        // the picture: chat mode after the answer
        w.showPage(MainWindow::Page::Playground);
        w.resize(1280, 800);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        const QString png = QString(QLS_BIN_DIR) + "/../tst_ui_playground-chat.png";
        QVERIFY(w.grab().save(png));
        qInfo() << "screenshot" << QFileInfo(png).absoluteFilePath();

        // the second turn sends the whole conversation
        requests.clear();
        settings.maxNewTokens = 4;
        play->setSettings(settings);
        play->setMessage("And of Italy?");
        button(play, "Send")->click();
        QTRY_VERIFY_WITH_TIMEOUT(!play->isGenerating(), 300000);
        QVERIFY(requests.count() >= 1);
        const GenerateRequest second = requests.at(0).at(0).value<GenerateRequest>();
        QCOMPARE(second.side, ModelSide::Base);
        QCOMPARE(second.messages.size(), 3);
        QCOMPARE(second.messages[0].content, kQuestion);
        QCOMPARE(second.messages[1].role, QString("assistant"));
        QCOMPARE(second.messages[1].content, QString("The capital of France is Paris."));
        QCOMPARE(second.messages[2].role, QString("user"));
        QCOMPARE(second.messages[2].content, QString("And of Italy?"));
        const QList<ChatTurn> conv2 = play->conversation(ModelSide::Base);
        QCOMPARE(conv2.size(), 4);
        QCOMPARE(conv2[3].role, QString("assistant"));
        QVERIFY(!conv2[3].content.isEmpty());

        // New chat forgets both conversations
        button(play, "New chat")->click();
        QVERIFY(play->conversation(ModelSide::Base).isEmpty());
        QVERIFY(play->conversation(ModelSide::Adapter).isEmpty());
        QVERIFY(play->output(ModelSide::Base).isEmpty());

        // a model without a chat template: chat is off, and the worker refuses a chat request with the reason
        c.loadModel(modelDir());
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 2, 30000);
        QTRY_VERIFY(!play->chatAvailable());
        QVERIFY(!play->isChatMode());
        play->setChatMode(true);
        QVERIFY(!play->isChatMode());
        QVERIFY(button(play, "Generate"));
        QSignalSpy failed(c.worker(), &EngineWorker::generationFailed);
        GenerateRequest chat;
        chat.chat = true;
        chat.messages = {{"user", kQuestion}};
        QMetaObject::invokeMethod(c.worker(), "generate", Qt::QueuedConnection, Q_ARG(GenerateRequest, chat));
        QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, 30000);
        QVERIFY2(failed.at(0).at(1).toString().contains("no chat template"), qPrintable(failed.at(0).at(1).toString()));
    }

    // The page's own bookkeeping of a conversation, without the engine: the system prompt opens it, a reply joins it,
    // a message that got no reply (an error) leaves it so user and assistant keep alternating, and the adapter side
    // keeps nothing while it has no adapter.
    void chatHistoryBookkeeping() {
        PlaygroundPage p;
        p.setModelReady(true);
        p.setChatAvailable(true, "chat_template.jinja");
        QVERIFY(p.isChatMode());
        QSignalSpy requests(&p, &PlaygroundPage::generateRequested);
        p.setSystemPrompt("Be brief.");
        p.setMessage("Hello");
        p.generate();
        QCOMPARE(requests.count(), 1);
        GenerateRequest r = requests.at(0).at(0).value<GenerateRequest>();
        QCOMPARE(r.messages.size(), 2);
        QCOMPARE(r.messages[0].role, QString("system"));
        QCOMPARE(r.messages[0].content, QString("Be brief."));
        QCOMPARE(r.messages[1].content, QString("Hello"));
        p.appendText(ModelSide::Base, "Hi there.");
        p.showFinished(ModelSide::Base, "done");
        QVERIFY(!p.isGenerating());
        QCOMPARE(p.conversation(ModelSide::Base).size(), 3);
        QCOMPARE(p.lastReply(ModelSide::Base), QString("Hi there."));
        QVERIFY(p.conversation(ModelSide::Adapter).isEmpty());

        p.setMessage("Again");
        p.generate();
        QCOMPARE(requests.count(), 2);
        QCOMPARE(requests.at(1).at(0).value<GenerateRequest>().messages.size(), 4);
        p.showError(ModelSide::Base, "failed", QString());
        QCOMPARE(p.conversation(ModelSide::Base).size(), 3); // the unanswered message is not kept
        QCOMPARE(p.conversation(ModelSide::Base).back().role, QString("assistant"));

        p.setMessage("Third");
        p.generate();
        const GenerateRequest third = requests.at(2).at(0).value<GenerateRequest>();
        QCOMPARE(third.messages.size(), 4);
        QCOMPARE(third.messages[2].role, QString("assistant"));
        QCOMPARE(third.messages[3].content, QString("Third"));
    }

    void badCheckpointSaysWhy() {
        MainWindow w;
        StudioController c(&w);
        QSignalSpy failed(c.worker(), &EngineWorker::runFailed);
        QTemporaryDir empty;
        c.tryRunInPlayground(m_run, empty.path());
        QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, 30000);
        PlaygroundPage* play = w.playgroundPage();
        QTRY_VERIFY(play->adapterHint().contains("could not be loaded"));
        QVERIFY(play->adapterHint().contains("adapter_config.json"));
        QVERIFY(!play->hasAdapter());
        QTRY_VERIFY(button(play, "Generate")->isEnabled()); // the base side still works
    }

private:
    QTemporaryDir m_tmp;
    QString m_run;
    QString m_base;
    QString m_adapted;
};

QTEST_MAIN(TestUiPlayground)
#include "tst_ui_playground.moc"
