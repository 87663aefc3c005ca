// Model loads in the studio with a slowed loader: the progress bars advance, the GUI thread stays responsive, Cancel leaves a clean state.
#include "testutil.h"
#include "ui_testutil.h"

#include "enginesession.h"
#include "engineworker.h"
#include "loadprogress.h"
#include "mainwindow.h"
#include "modelpage.h"
#include "monitorpage.h"
#include "playgroundpage.h"
#include "runspage.h"
#include "studiocontroller.h"
#include "trainingworker.h"

#include "qls/train_config.h"

#include <QApplication>
#include <QElapsedTimer>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QTimer>

using namespace ui_testutil;

namespace {

// Measures the GUI thread's responsiveness: a 10 ms timer whose largest gap between two ticks is kept.
class TickProbe {
public:
    TickProbe() {
        m_timer.setInterval(10);
        QObject::connect(&m_timer, &QTimer::timeout, [this] {
            if (m_clock.isValid()) m_maxGap = std::max(m_maxGap, m_clock.restart());
            else m_clock.start();
            ++m_ticks;
        });
        m_timer.start();
    }
    qint64 maxGapMs() const { return m_maxGap; }
    // The next tick starts a new interval (the test's own blocking work, a screenshot, is not the loader's).
    void skip() { m_clock.invalidate(); }
    int ticks() const { return m_ticks; }

private:
    QTimer m_timer;
    QElapsedTimer m_clock;
    qint64 m_maxGap = 0;
    int m_ticks = 0;
};

} // namespace

class TestUiLoad : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QLS_REQUIRE_MODEL();
        QCoreApplication::setOrganizationName("QLoRA Studio Tests");
        QCoreApplication::setApplicationName("tst_ui_load");
        QSettings().clear();
    }
    void cleanup() {
        EngineWorker::setLoadDelayForTests(0);
        TrainingWorker::setLoadDelayForTests(0);
    }

    // The Model page: the bar advances through every tensor while the event loop keeps ticking; a screenshot of it
    // mid-load; then the details replace it.
    void modelPageShowsProgress() {
        EngineWorker::setLoadDelayForTests(40); // 47 tensors: about 2 s
        MainWindow w;
        StudioController c(&w);
        w.resize(1280, 800);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        LoadProgress* bar = w.modelPage()->loadProgress();
        QSignalSpy progress(c.worker(), &EngineWorker::loadProgress);
        QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
        TickProbe probe;
        QVector<int> seen;
        QTimer sampler;
        sampler.setInterval(25);
        connect(&sampler, &QTimer::timeout, [&] {
            if (!bar->isHidden() && (seen.isEmpty() || seen.back() != bar->permille())) seen << bar->permille();
        });
        sampler.start();
        c.loadModel(modelDir());
        QVERIFY(!bar->isHidden());
        bool shot = false;
        const QString png = QString(QLS_BIN_DIR) + "/../tst_ui_load.png";
        QElapsedTimer t;
        t.start();
        while (loaded.count() == 0 && t.elapsed() < 60000) {
            QTest::qWait(20);
            if (!shot && bar->permille() > 400) {
                QVERIFY(w.grab().save(png));
                probe.skip();
                qInfo() << "screenshot" << QFileInfo(png).absoluteFilePath() << bar->text();
                QVERIFY2(bar->text().contains("tensors") && bar->text().contains(" MB"), qPrintable(bar->text()));
                shot = true;
            }
        }
        QCOMPARE(loaded.count(), 1);
        QVERIFY(shot);
        QCOMPARE(progress.count(), 47);
        QCOMPARE(progress.last().at(0).toLongLong(), progress.last().at(1).toLongLong());
        QVERIFY2(seen.size() >= 5, qPrintable(QString("the bar took only %1 values").arg(seen.size())));
        for (int i = 1; i < seen.size(); ++i) QVERIFY(seen[i] > seen[i - 1]);
        QTRY_VERIFY(bar->isHidden());
        // the GUI thread kept turning: ~200 ticks in 2 s, never a pause of half a second (the load takes 2 s)
        QVERIFY2(probe.ticks() > 50, qPrintable(QString::number(probe.ticks())));
        QVERIFY2(probe.maxGapMs() < 500, qPrintable(QString("longest event-loop gap %1 ms").arg(probe.maxGapMs())));
    }

    // Cancel mid-load: the worker stops between two tensors, nothing is loaded, the page is back to its idle state,
    // and the next load works.
    void modelPageCancel() {
        EngineWorker::setLoadDelayForTests(40);
        MainWindow w;
        StudioController c(&w);
        LoadProgress* bar = w.modelPage()->loadProgress();
        QSignalSpy progress(c.worker(), &EngineWorker::loadProgress);
        QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
        QSignalSpy failed(c.worker(), &EngineWorker::modelFailed);
        QSignalSpy cancelled(c.worker(), &EngineWorker::loadCancelled);
        c.loadModel(modelDir());
        QTRY_VERIFY_WITH_TIMEOUT(progress.count() >= 5, 30000);
        QPushButton* cancel = button(bar, "Cancel");
        QVERIFY(cancel && cancel->isEnabled());
        cancel->click();
        QVERIFY(!cancel->isEnabled());
        QTRY_COMPARE_WITH_TIMEOUT(cancelled.count(), 1, 30000);
        QVERIFY2(progress.count() < 47, qPrintable(QString::number(progress.count())));
        QCOMPARE(loaded.count(), 0);
        QCOMPARE(failed.count(), 0);
        QTRY_VERIFY(bar->isHidden());
        QVERIFY(button(w.modelPage(), "Load")->isEnabled());
        bool said = false;
        for (QLabel* l : w.modelPage()->findChildren<QLabel*>()) said = said || l->text().contains("cancelled");
        QVERIFY2(said, "the Model page does not say the load was cancelled");
        // clean state: the next load completes
        EngineWorker::setLoadDelayForTests(0);
        c.loadModel(modelDir());
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, 30000);
        QCOMPARE(cancelled.count(), 1);
    }

    // Runs → Playground: the run's NF4 base loads with the Playground's bar; Cancel leaves no adapter, no error, and
    // the base model still generating.
    void playgroundLoadCancel() {
        QTemporaryDir tmp;
        const QString run = makeAdapterRun(tmp.path());
        QVERIFY(!run.isEmpty());
        MainWindow w;
        StudioController c(&w);
        PlaygroundPage* play = w.playgroundPage();
        QVERIFY(loadModelAndWait(c, modelDir()));
        EngineWorker::setLoadDelayForTests(40);
        QSignalSpy progress(c.worker(), &EngineWorker::loadProgress);
        QSignalSpy runLoaded(c.worker(), &EngineWorker::runLoaded);
        QSignalSpy runFailed(c.worker(), &EngineWorker::runFailed);
        QSignalSpy cancelled(c.worker(), &EngineWorker::loadCancelled);
        emit w.runsPage()->playgroundRequested(run, run + "/checkpoints/step-1");
        LoadProgress* bar = play->loadProgress();
        QVERIFY(!bar->isHidden());
        QTRY_VERIFY_WITH_TIMEOUT(progress.count() >= 5, 30000);
        QTRY_VERIFY(bar->permille() > 0);
        QVERIFY(w.modelPage()->loadProgress()->isHidden()); // the Playground's load, not the Model page's
        button(bar, "Cancel")->click();
        QTRY_COMPARE_WITH_TIMEOUT(cancelled.count(), 1, 30000);
        QCOMPARE(runLoaded.count(), 0);
        QCOMPARE(runFailed.count(), 0);
        QTRY_VERIFY(bar->isHidden());
        QVERIFY(!play->hasAdapter());
        QVERIFY(play->adapterHint().contains("Runs"));
        QTRY_VERIFY(button(play, "Generate")->isEnabled()); // the base model is still there
    }

    // The start of a training run: the Monitor's bar follows the trainer's model load; its Cancel stops the run
    // before any step, and the session is idle again.
    void trainingStartCancel() {
        TrainingWorker::setLoadDelayForTests(40);
        QTemporaryDir tmp;
        MainWindow w;
        EngineSession session;
        MonitorPage* monitor = w.monitorPage();
        monitor->setSession(&session);
        QSignalSpy progress(&session, &TrainingSession::loadProgress);
        QSignalSpy finished(&session, &TrainingSession::finished);
        QSignalSpy started(&session, &TrainingSession::started);
        qls::train_config cfg;
        cfg.name = "load";
        cfg.runs_dir = tmp.path().toStdString();
        cfg.model = modelDir().toStdString();
        cfg.train_file = testutil::pip_train();
        cfg.backend = "cpu";
        cfg.seq_len = 32;
        cfg.max_steps = 2;
        TickProbe probe;
        session.start(cfg);
        QTRY_VERIFY_WITH_TIMEOUT(progress.count() >= 5, 30000);
        LoadProgress* bar = monitor->loadProgress();
        QTRY_VERIFY(!bar->isHidden() && bar->permille() > 0);
        button(bar, "Cancel")->click();
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 30000);
        QVERIFY2(finished.at(0).at(0).toString().contains("cancelled while loading"),
                 qPrintable(finished.at(0).at(0).toString()));
        QCOMPARE(started.count(), 0);
        QCOMPARE(session.state(), TrainingSession::State::Idle);
        QVERIFY(bar->isHidden());
        QVERIFY2(probe.maxGapMs() < 500, qPrintable(QString("longest event-loop gap %1 ms").arg(probe.maxGapMs())));
        // clean state: the next run starts and completes
        TrainingWorker::setLoadDelayForTests(0);
        cfg.name = "load2";
        session.start(cfg);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, 120000);
        QVERIFY2(finished.at(1).at(0).toString().contains("completed"), qPrintable(finished.at(1).at(0).toString()));
    }
};

QTEST_MAIN(TestUiLoad)
#include "tst_ui_load.moc"
