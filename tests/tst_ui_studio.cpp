// The studio's Model and Playground pages driven through the real engine worker on its thread (offscreen).
#include "testutil.h"
#include "ui_testutil.h"

#include "engineworker.h"
#include "mainwindow.h"
#include "modelpage.h"
#include "playgroundpage.h"
#include "studiocontroller.h"

#include <QApplication>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>

using namespace ui_testutil;

class TestUiStudio : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QLS_REQUIRE_MODEL();
        QCoreApplication::setOrganizationName("QLoRA Studio Tests");
    }

    void loadsModelAndGeneratesGreedily() {
        MainWindow w;
        StudioController c(&w);
        QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
        c.loadModel(QString::fromStdString(testutil::model_dir()));
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, 30000);
        const ModelInfo info = loaded.at(0).at(0).value<ModelInfo>();
        QCOMPARE(info.layers, 5);
        QCOMPARE(info.vocab, 512);
        QCOMPARE(info.parameters, qint64(260032));
        // the page shows the description (the worker's signal reaches the page through the event loop)
        auto shown = [&w] {
            for (QLabel* l : w.modelPage()->findChildren<QLabel*>())
                if (l->text() == "260,032" || l->text() == "260032") return true;
            return false;
        };
        QTRY_VERIFY_WITH_TIMEOUT(shown(), 10000);

        QSignalSpy finished(c.worker(), &EngineWorker::generationFinished);
        GenerateRequest r;
        r.maxNewTokens = 30;
        r.temperature = 0;
        emit w.playgroundPage()->generateRequested(r);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 30000);
        QTRY_VERIFY(w.playgroundPage()->output().startsWith("Once upon a time, there was a little girl named Lily."));
        QCOMPARE(finished.at(0).at(0).value<ModelSide>(), ModelSide::Base);
        QVERIFY(finished.at(0).at(1).toString().contains("30 tokens"));
    }

    void stopInterruptsGeneration() {
        MainWindow w;
        StudioController c(&w);
        QVERIFY(loadModelAndWait(c, QString::fromStdString(testutil::model_dir())));
        QSignalSpy text(c.worker(), &EngineWorker::textGenerated);
        QSignalSpy finished(c.worker(), &EngineWorker::generationFinished);
        GenerateRequest r;
        r.maxNewTokens = 100000; // far more than the 512-position context: only Stop or the context ends it
        r.temperature = 1.0;
        emit w.playgroundPage()->generateRequested(r);
        QTRY_VERIFY_WITH_TIMEOUT(text.count() > 0, 30000);
        emit w.playgroundPage()->stopRequested();
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 30000);
        const QString status = finished.at(0).at(1).toString();
        QVERIFY2(status.contains("stopped") || status.contains("end of text"), qPrintable(status));
    }

    void badDirectoryShowsReadableError() {
        MainWindow w;
        StudioController c(&w);
        QSignalSpy failed(c.worker(), &EngineWorker::modelFailed);
        QTemporaryDir empty;
        c.loadModel(empty.path());
        QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, 10000);
        QVERIFY(failed.at(0).at(0).toString().contains(empty.path()));
        QVERIFY(failed.at(0).at(0).toString().contains("config.json"));
        auto shown = [&w] {
            for (QLabel* l : w.modelPage()->findChildren<QLabel*>())
                if (l->text().contains("Could not load the model")) return true;
            return false;
        };
        QTRY_VERIFY_WITH_TIMEOUT(shown(), 10000);
    }
};

QTEST_MAIN(TestUiStudio)
#include "tst_ui_studio.moc"
