// The Runs page on hand-made run directories, and the main window + controller around a FakeSession: open, resume, export, demo, closing during a run.
#include "testutil.h"
#include "ui_testutil.h"

#include "engineworker.h"
#include "fakesession.h"
#include "mainwindow.h"
#include "monitorpage.h"
#include "runspage.h"
#include "studiocontroller.h"

#include "qls/telemetry.h"

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>

using namespace ui_testutil;

namespace {

// runs/alpha: 8 of 10 steps, evaluations at 4 and 8, one complete checkpoint (step-4), one cut short (step-8), a
// leftover temporary; runs/beta: a damaged config.json; runs/notes: not a run.
void makeRuns(const QString& root) {
    writeFile(root + "/alpha/config.json",
              R"({"name": "alpha", "model": "/models/tiny", "data": {"train": "/data/pip.txt"}})");
    QByteArray metrics;
    for (const qls::step_stats& s : FakeSession::makeScript(10, 4).mid(0, 8))
        metrics += QByteArray::fromStdString(qls::step_stats_to_json(s)) + "\n";
    metrics += "{\"step\": 9, \"loss\""; // a line cut short by a crash
    writeFile(root + "/alpha/metrics.jsonl", metrics);
    writeFile(root + "/alpha/checkpoints/step-4/trainer_state.json", "{}");
    writeFile(root + "/alpha/checkpoints/step-4/adapter_model.safetensors", "x");
    writeFile(root + "/alpha/checkpoints/step-8/adapter_model.safetensors", "x");
    writeFile(root + "/alpha/checkpoints/.tmp-step-9/trainer_state.json", "{}");
    writeFile(root + "/beta/config.json", "{ not json");
    writeFile(root + "/notes/readme.txt", "not a run");
}

} // namespace

class TestUiRuns : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QCoreApplication::setOrganizationName("QLoRA Studio Tests");
        QCoreApplication::setApplicationName("tst_ui_runs");
        QSettings().clear();
    }

    void listsRunsFromTheirFiles() {
        QTemporaryDir tmp;
        makeRuns(tmp.path());
        RunsPage page;
        page.setRunsDirectory(tmp.path());
        QCOMPARE(page.runs().size(), 2); // alpha and beta; notes is not a run
        const RunSummary* alpha = nullptr;
        const RunSummary* beta = nullptr;
        for (const RunSummary& r : page.runs()) (r.name == "alpha" ? alpha : beta) = &r;
        QVERIFY(alpha && beta);
        QVERIFY(alpha->problem.isEmpty());
        QCOMPARE(alpha->model, QString("/models/tiny"));
        QCOMPARE(alpha->lastStep, qint64(8));
        QCOMPARE(alpha->totalSteps, qint64(10));
        QVERIFY(alpha->lastLoss && std::abs(*alpha->lastLoss - FakeSession::makeScript(10, 4)[7].loss) < 1e-9);
        QVERIFY(alpha->lastEvalLoss);
        QCOMPARE(alpha->checkpointSteps, QList<qint64>({4})); // step-8 has no trainer_state.json, .tmp-* is ignored
        QVERIFY(alpha->latestCheckpoint.endsWith("/alpha/checkpoints/step-4"));
        QVERIFY(!alpha->complete());
        QVERIFY2(beta->problem.contains("config.json") && beta->problem.contains("not valid JSON"),
                 qPrintable(beta->problem));

        // buttons follow the selection; actions leave as signals
        QVERIFY(page.selectRun(tmp.path() + "/beta"));
        QVERIFY(!button(&page, "Open in Monitor")->isEnabled());
        QVERIFY(!button(&page, "Resume")->isEnabled());
        QVERIFY(page.statusText().contains("not valid JSON"));
        QVERIFY(page.selectRun(tmp.path() + "/alpha"));
        QSignalSpy open(&page, &RunsPage::openRequested);
        QSignalSpy resume(&page, &RunsPage::resumeRequested);
        QSignalSpy exporting(&page, &RunsPage::exportRequested);
        QSignalSpy play(&page, &RunsPage::playgroundRequested);
        button(&page, "Open in Monitor")->click();
        button(&page, "Resume")->click();
        button(&page, "Export…")->click();
        button(&page, "Playground")->click();
        QCOMPARE(open.count(), 1);
        QCOMPARE(open.at(0).at(0).toString(), alpha->dir);
        QCOMPARE(resume.at(0).at(0).toString(), alpha->dir);
        QCOMPARE(exporting.at(0).at(1).toString(), alpha->latestCheckpoint);
        QCOMPARE(play.at(0).at(1).toString(), alpha->latestCheckpoint);

        // a folder that does not exist: a message, an empty list
        page.setRunsDirectory(tmp.path() + "/nowhere");
        QCOMPARE(page.runs().size(), 0);
        QVERIFY(page.statusText().contains("does not exist"));
    }

    void controllerOpensResumesAndExportsRuns() {
        QTemporaryDir tmp;
        makeRuns(tmp.path());
        MainWindow w;
        FakeSession fake;
        StudioController c(&w, &fake);
        w.runsPage()->setRunsDirectory(tmp.path());
        const QString alpha = QDir(tmp.path()).absoluteFilePath("alpha");
        emit w.runsPage()->openRequested(alpha);
        QCOMPARE(w.currentPage(), MainWindow::Page::Monitor);
        QCOMPARE(w.monitorPage()->history().size(), 8); // the damaged last line is skipped
        QCOMPARE(w.monitorPage()->graph(MonitorPage::TrainLoss)->dataCount(), 8);
        QCOMPARE(w.monitorPage()->graph(MonitorPage::EvalLoss)->dataCount(), 2);

        fake.script = FakeSession::makeScript(10, 4).mid(4); // steps 5..10 after the step-4 checkpoint
        emit w.runsPage()->resumeRequested(alpha);
        QCOMPARE(fake.continueCount, 1);
        QCOMPARE(fake.lastContinued, alpha);
        QTRY_COMPARE(w.monitorPage()->history().size(), 10);
        QCOMPARE(w.monitorPage()->graph(MonitorPage::TrainLoss)->dataCount(), 10);

        emit w.runsPage()->exportRequested(alpha, alpha + "/checkpoints/step-4");
        QCOMPARE(w.currentPage(), MainWindow::Page::Export);
    }

    void startWithoutAModelSaysWhatToDo() {
        MainWindow w;
        FakeSession fake;
        StudioController c(&w, &fake);
        button(w.monitorPage(), "Start")->click();
        QCOMPARE(fake.startCount, 0);
        QString shown;
        for (QLabel* l : w.monitorPage()->findChildren<QLabel*>()) shown += l->text();
        QVERIFY2(shown.contains("Model: no model is chosen"), qPrintable(shown));
    }

    void demoStartsFromTheBanner() {
        MainWindow w;
        FakeSession fake;
        StudioController c(&w, &fake);
        QTemporaryDir runs;
        w.runsPage()->setRunsDirectory(runs.path());
        w.show();
        w.setDemoOffered(true);
        QVERIFY(w.demoOffered());
        QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
        button(&w, "Run the demo")->click();
        QCOMPARE(fake.startCount, 1);
        QVERIFY(fake.lastConfig.has_value());
        const qls::train_config& cfg = *fake.lastConfig;
        QVERIFY(QFileInfo::exists(QString::fromStdString(cfg.model) + "/config.json"));
        QVERIFY(QFileInfo::exists(QString::fromStdString(cfg.train_file)));
        QCOMPARE(cfg.max_steps, int64_t(40)); // resources/examples/demo.run.json's recipe
        QCOMPARE(QDir(QString::fromStdString(cfg.runs_dir)).absolutePath(), QDir(runs.path()).absolutePath());
        QCOMPARE(w.currentPage(), MainWindow::Page::Monitor);
        // the demo model is loaded on the Model page too, and the offer goes away
        QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, 30000);
        QTRY_VERIFY(!w.demoOffered());
    }

    void closingDuringARunAsksThenStopsAndSaves() {
        MainWindow w;
        FakeSession fake;
        fake.script = FakeSession::makeScript(1000, 0);
        fake.intervalMs = 20;
        StudioController c(&w, &fake);
        w.show();
        w.showPage(MainWindow::Page::Runs);
        fake.start(qls::train_config{});
        QTRY_VERIFY(fake.played() >= 2);
        int asked = 0;
        w.setCloseQuestion([&asked] {
            ++asked;
            return false;
        });
        QVERIFY(!w.close());
        QCOMPARE(asked, 1);
        QVERIFY(w.isVisible());
        QCOMPARE(fake.stopCount, 0);
        w.setCloseQuestion([&asked] {
            ++asked;
            return true;
        });
        QVERIFY(!w.close()); // not yet: the run stops and saves first
        QCOMPARE(asked, 2);
        QCOMPARE(fake.stopCount, 1);
        QTRY_VERIFY_WITH_TIMEOUT(!w.isVisible(), 5000);
        QCOMPARE(fake.state(), TrainingSession::State::Idle);
        // window state and the last page persist
        QSettings s;
        QVERIFY(s.contains("window/geometry"));
        QCOMPARE(s.value("window/page").toInt(), 7); // Runs
        MainWindow again;
        QCOMPARE(again.currentPage(), MainWindow::Page::Runs);
    }
};

QTEST_MAIN(TestUiRuns)
#include "tst_ui_runs.moc"
