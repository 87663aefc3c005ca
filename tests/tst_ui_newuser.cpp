// The studio as a new user meets it (offscreen): no stale plan or demo leftovers, settings refused inline against the model, Paused/Stopped without ETA, reload colours, the run lock across two processes, shortcuts.
#include "testutil.h"
#include "ui_testutil.h"

#include "datasetpage.h"
#include "enginesession.h"
#include "engineworker.h"
#include "fakesession.h"
#include "mainwindow.h"
#include "modelpage.h"
#include "monitorpage.h"
#include "planpage.h"
#include "playgroundpage.h"
#include "runlock.h"
#include "runspage.h"
#include "studiocontroller.h"
#include "studiostate.h"
#include "studiostyle.h"
#include "trainingpage.h"

#include "charts/memorychart.h"
#include "qls/train_config.h"

#include <QApplication>
#include <QComboBox>
#include <QDialog>
#include <QElapsedTimer>
#include <QLineEdit>
#include <QProcess>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStatusBar>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QThread>
#include <QVBoxLayout>

#undef QT_NO_FOREACH
#include <qcustomplot.h>

#include <cstdio>
#include <ctime>
#include <iostream>

using namespace ui_testutil;

namespace {

// The process's CPU seconds (all threads) and the 1-minute load average, for timings on a shared machine.
double processCpuSeconds() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}
double loadAverage() {
    QFile f("/proc/loadavg");
    return f.open(QIODevice::ReadOnly) ? f.readAll().split(' ').value(0).toDouble() : -1.0;
}

// Pixels of a grabbed widget's top rows 0 and 1 at its middle third that are the palette's highlight colour (the
// focus ring is 2 pixels wide; Fusion's own hint is a 1-pixel line).
int ringPixels(const QImage& img, const QColor& highlight) {
    int n = 0;
    for (int x = img.width() / 3; x < 2 * img.width() / 3; ++x) {
        bool both = true;
        for (int y : {0, 1}) {
            const QColor c = img.pixelColor(x, y);
            both = both && qAbs(c.hue() - highlight.hue()) < 20 && c.saturation() > 80 &&
                   qAbs(c.value() - highlight.value()) < 60;
        }
        n += both;
    }
    return n;
}

bool loadTestModel(MainWindow& w, StudioController& c) {
    if (!loadModelAndWait(c, modelDir())) return false;
    QCoreApplication::processEvents();
    return w.state()->modelConfig().has_value();
}

// A finished run folder as the trainer leaves it: config.json with hyperparameters, metrics.jsonl, checkpoints.
void makeRun(const QString& dir, int rank, double lr, int steps, const QList<int>& checkpoints) {
    writeFile(dir + "/config.json", QStringLiteral(R"({"name": "%1", "model": "/models/tiny",
        "data": {"train": "/data/pip.txt"}, "lora": {"rank": %2}, "optimizer": {"lr": %3},
        "training": {"seq_len": 128, "micro_batch": 4, "grad_accum": 2}})")
                                        .arg(QFileInfo(dir).fileName())
                                        .arg(rank)
                                        .arg(lr)
                                        .toUtf8());
    QByteArray metrics;
    QVector<qls::step_stats> script = FakeSession::makeScript(steps, 0);
    for (qls::step_stats& s : script) {
        s.loss += 0.1 * rank; // a different curve per run
        metrics += QByteArray::fromStdString(qls::step_stats_to_json(s)) + "\n";
    }
    writeFile(dir + "/metrics.jsonl", metrics);
    for (int c : checkpoints) {
        writeFile(dir + QStringLiteral("/checkpoints/step-%1/trainer_state.json").arg(c), "{}");
        writeFile(dir + QStringLiteral("/checkpoints/step-%1/adapter_model.safetensors").arg(c), "x");
    }
}

} // namespace

class TestUiNewUser : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QCoreApplication::setOrganizationName("QLoRA Studio Tests");
        QCoreApplication::setApplicationName("tst_ui_newuser");
        QSettings().clear();
    }

    // ---- 1. no stale state ------------------------------------------------------------------------------------

    // Rank 0 on the Training page: the Plan page says the settings are invalid and shows no numbers of older ones.
    void planIsNeverStale() {
        QLS_REQUIRE_MODEL();
        MainWindow w;
        FakeSession fake;
        StudioController c(&w, &fake);
        QVERIFY(loadTestModel(w, c));
        PlanPage* plan = w.planPage();
        QTRY_VERIFY(plan->plan().has_value());
        QCOMPARE(w.pageMark(MainWindow::Page::Plan), MainWindow::Mark::Done);

        QSpinBox* rank = spinFor(w.trainingPage(), "lora.rank");
        QVERIFY(rank);
        rank->setValue(0);
        QVERIFY(!plan->plan().has_value());
        QVERIFY2(plan->verdictText().startsWith("Settings invalid: "), qPrintable(plan->verdictText()));
        QVERIFY2(plan->verdictText().contains("Rank"), qPrintable(plan->verdictText()));
        for (double v : plan->barValuesGiB()) QCOMPARE(v, 0.0); // no bar of the rank-64 plan
        QCOMPARE(w.pageMark(MainWindow::Page::Training), MainWindow::Mark::Attention);
        QCOMPARE(w.pageMark(MainWindow::Page::Plan), MainWindow::Mark::Attention);
        QVERIFY(w.pageTitle(MainWindow::Page::Training).endsWith(QStringLiteral("⚠")));
        QVERIFY(!w.state()->settingsValid());

        rank->setValue(8);
        QVERIFY(plan->plan().has_value());
        QCOMPARE(plan->plan()->settings.lora.rank, 8);
        QCOMPARE(w.pageMark(MainWindow::Page::Training), MainWindow::Mark::Done);
        // a 260K-parameter model: MiB, not rows of 0.000 GiB
        QCOMPARE(plan->unit(), QString("MiB"));
        // a CPU run has no CUDA context in its bar
        QCOMPARE(plan->barValuesGiB()[size_t(qls::plan_category::cuda_context)], 0.0);
        // the measured warm-up gives a time before Start
        spinFor(w.trainingPage(), "training.max_steps")->setValue(20);
        QTRY_VERIFY_WITH_TIMEOUT(plan->timeEstimateText().contains("measured here"), 30000);
        QTRY_VERIFY(!plan->timeEstimateText().contains("per optimizer step"));
        QVERIFY2(plan->timeEstimateShort().startsWith("about "), qPrintable(plan->timeEstimateShort()));
        QVERIFY2(w.monitorPage()->runsFolderText().contains("should take " + plan->timeEstimateShort()),
                 qPrintable(w.monitorPage()->runsFolderText()));
    }

    // Sequence length 999,999 on a 512-token model is refused as it is typed, under the field, with its name.
    void seqLenOverContextRefusedInline() {
        QLS_REQUIRE_MODEL();
        MainWindow w;
        FakeSession fake;
        StudioController c(&w, &fake);
        QVERIFY(loadTestModel(w, c));
        QCOMPARE(w.state()->modelConfig()->max_position_embeddings, 512);
        qls::train_config data;
        data.train_file = QLS_SOURCE_DIR "/datasets/stories/pip_the_lighthouse_mouse.txt";
        w.datasetPage()->loadFrom(data);
        QSpinBox* seq = spinFor(w.trainingPage(), "training.seq_len");
        QVERIFY(seq);
        seq->setValue(999999);
        const QString error = w.trainingPage()->fieldError("training.seq_len");
        QVERIFY2(error.startsWith("Sequence length: "), qPrintable(error));
        QVERIFY2(error.contains("512"), qPrintable(error));
        QVERIFY2(!error.contains("training.seq_len"), qPrintable(error));
        QVERIFY(w.findChild<QLabel*>("error:training.seq_len")->isVisible() ||
                !w.isVisible()); // shown (the window itself is not on screen here)
        QVERIFY(!w.findChild<QLabel*>("error:training.seq_len")->isHidden());
        QVERIFY(w.planPage()->verdictText().startsWith("Settings invalid: Sequence length"));
        qls::train_config cfg;
        QString why;
        QVERIFY(!c.buildConfig(&cfg, &why));
        QVERIFY2(why.contains("Sequence length"), qPrintable(why));
        QVERIFY2(!why.contains("training.") && !why.contains("runs_dir"), qPrintable(why));
        // Start is refused with the same words, and nothing starts
        w.monitorPage()->triggerStart();
        QCOMPARE(fake.startCount, 0);
        QVERIFY2(w.monitorPage()->statusText().contains("Sequence length"), qPrintable(w.monitorPage()->statusText()));
        seq->setValue(512);
        QVERIFY(w.trainingPage()->fieldError("training.seq_len").isEmpty());
        // an engine message about another field names it the GUI's way too (never a run.json key)
        spinFor(w.trainingPage(), "lora.rank")->setValue(0);
        const QString rank = w.trainingPage()->fieldError("lora.rank");
        QVERIFY2(rank.startsWith("Rank r: ") && !rank.contains("lora.rank") && !rank.contains("README"),
                 qPrintable(rank));
    }

    // A config.json whose heads do not divide its hidden size, or whose KV heads do not divide its heads, is refused on
    // the Model page with the config field named; no model is then loaded.
    void headCountsRefusedOnModelPage_data() {
        QTest::addColumn<QString>("field");
        QTest::addColumn<int>("heads");
        QTest::addColumn<int>("kvHeads");
        QTest::newRow("KV heads") << "num_key_value_heads" << 8 << 3;
        QTest::newRow("heads") << "num_attention_heads" << 6 << 6;
    }
    void headCountsRefusedOnModelPage() {
        QLS_REQUIRE_MODEL();
        QFETCH(QString, field);
        QFETCH(int, heads);
        QFETCH(int, kvHeads);
        QTemporaryDir tmp;
        for (const QFileInfo& f : QDir(modelDir()).entryInfoList(QDir::Files))
            QVERIFY(QFile::copy(f.absoluteFilePath(), tmp.filePath(f.fileName())));
        QFile cfg(tmp.filePath("config.json"));
        QVERIFY(cfg.open(QIODevice::ReadOnly));
        QByteArray text = cfg.readAll();
        cfg.close();
        text.replace("\"num_attention_heads\": 8", "\"num_attention_heads\": " + QByteArray::number(heads));
        text.replace("\"num_key_value_heads\": 4", "\"num_key_value_heads\": " + QByteArray::number(kvHeads));
        QVERIFY(QFile::remove(tmp.filePath("config.json")));
        writeFile(tmp.filePath("config.json"), text);

        MainWindow w;
        FakeSession fake;
        StudioController c(&w, &fake);
        QSignalSpy failed(c.worker(), &EngineWorker::modelFailed);
        c.loadModel(tmp.path());
        QVERIFY(failed.wait(30000) || !failed.isEmpty());
        QString shown;
        for (QLabel* l : w.modelPage()->findChildren<QLabel*>())
            if (l->text().contains("Could not load")) shown = l->text();
        QVERIFY2(shown.contains("field '" + field + "'"), qPrintable(shown));
        QVERIFY2(shown.contains("must divide"), qPrintable(shown));
        QVERIFY(!w.state()->modelConfig().has_value());
        QCOMPARE(w.pageMark(MainWindow::Page::Model), MainWindow::Mark::Attention);
    }

    // The settings against the loaded model and the data as they are typed: a rank larger than a targeted
    // projection, intervals longer than the run and steps over the data more than once are notes under their fields
    // (the run may start); a training data shorter than one sequence is refused under Sequence length.
    void settingsAgainstModelAndData() {
        QLS_REQUIRE_MODEL();
        MainWindow w;
        FakeSession fake;
        StudioController c(&w, &fake);
        QVERIFY(loadTestModel(w, c));
        TrainingPage* page = w.trainingPage();
        // stories260K's k and v project to 32: rank 64 (the default) is a note, not an error
        QVERIFY2(page->fieldNote("lora.rank")
                     .startsWith("Rank r: 64 is larger than the smaller dimension of k_proj (32) and v_proj (32)"),
                 qPrintable(page->fieldNote("lora.rank")));
        QVERIFY2(page->fieldNote("lora.rank").endsWith("fix: use Rank r <= 32, or leave those out of Target modules"),
                 qPrintable(page->fieldNote("lora.rank")));
        QVERIFY(page->fieldError("lora.rank").isEmpty());
        auto* rankLabel = w.findChild<QLabel*>("error:lora.rank");
        QVERIFY(!rankLabel->isHidden() && rankLabel->text() == page->fieldNote("lora.rank"));
        QVERIFY(rankLabel->styleSheet().contains("#a15c00"));
        QVERIFY(page->validate());
        spinFor(page, "lora.rank")->setValue(32);
        QVERIFY(page->fieldNote("lora.rank").isEmpty());
        QVERIFY(rankLabel->isHidden());
        // intervals against max steps (Save every is 100 by default)
        spinFor(page, "training.max_steps")->setValue(40);
        spinFor(page, "training.eval_every")->setValue(50);
        QCOMPARE(page->fieldNote("training.checkpoint_every"),
                 QString("Save every: every 100 steps, but the run has 40 steps: it saves only at the end — fix: use "
                         "Save every <= 40, or 0 for only at the end"));
        QVERIFY2(page->fieldNote("training.eval_every").contains("it evaluates only at the end"),
                 qPrintable(page->fieldNote("training.eval_every")));
        spinFor(page, "training.eval_every")->setValue(10);
        QVERIFY(page->fieldNote("training.eval_every").isEmpty());
        // the data: 300 rows of 128 tokens an epoch, 4 rows a step
        spinFor(page, "training.seq_len")->setValue(128);
        spinFor(page, "training.micro_batch")->setValue(4);
        spinFor(page, "training.grad_accum")->setValue(1);
        page->setDatasetSize(300, 38400, 128);
        spinFor(page, "training.max_steps")->setValue(150);
        QVERIFY2(page->fieldNote("training.max_steps")
                     .startsWith("Max steps: 150 steps = 2.00 epochs of your data (300 rows an epoch, 4 rows a step)"),
                 qPrintable(page->fieldNote("training.max_steps")));
        QVERIFY2(page->fieldNote("training.max_steps").contains("Max steps 75 is one epoch"),
                 qPrintable(page->fieldNote("training.max_steps")));
        QVERIFY(page->dataCoverageText().contains("150 steps = 2.00 epochs of your data"));
        QVERIFY(w.state()->settingsValid());
        // a training file of 100 tokens: shorter than one sequence of 128, refused inline and on the Plan page
        page->setDatasetSize(2, 100, 128);
        const QString error = page->fieldError("training.seq_len");
        QVERIFY2(error.startsWith("Sequence length: the training data holds 100 tokens in all, fewer than one "
                                  "sequence of 128 — fix: use Sequence length <= 100"),
                 qPrintable(error));
        QVERIFY(!w.state()->settingsValid());
        QVERIFY2(w.planPage()->verdictText().startsWith("Settings invalid: Sequence length"),
                 qPrintable(w.planPage()->verdictText()));
        spinFor(page, "training.seq_len")->setValue(64);
        QVERIFY(page->fieldError("training.seq_len").isEmpty());
        QVERIFY(w.state()->settingsValid());
        // a count truncated to a shorter sequence than the one typed is not trusted until the data is analysed again
        page->setDatasetSize(2, 64, 64);
        spinFor(page, "training.seq_len")->setValue(128);
        QVERIFY(page->fieldError("training.seq_len").isEmpty());
    }

    // After the demo, the user's own model clears the demo's data files, Playground output and adapter name; the
    // Monitor's failure from an earlier Start goes once a model is loaded.
    void demoLeftoversCleared() {
        QLS_REQUIRE_MODEL();
        MainWindow w;
        FakeSession fake;
        fake.script = FakeSession::makeScript(3, 0);
        StudioController c(&w, &fake);
        // a Start with nothing chosen fails before any run: no "No run yet" beside the failure
        w.monitorPage()->triggerStart();
        QVERIFY(w.monitorPage()->statusText().contains("no model is chosen"));
        QVERIFY(!w.monitorPage()->findChildren<QLabel*>().isEmpty());
        for (QLabel* l : w.monitorPage()->findChildren<QLabel*>())
            QVERIFY2(!(l->text().startsWith("No run yet") && !l->isHidden()), qPrintable(l->text()));

        c.startDemo(3);
        QTRY_COMPARE_WITH_TIMEOUT(fake.startCount, 1, 5000);
        QTRY_VERIFY_WITH_TIMEOUT(w.state()->modelIsDemo() && w.state()->modelConfig().has_value(), 30000);
        QTRY_COMPARE(w.state()->runState(), StudioState::RunState::Finished);
        qls::train_config before;
        w.datasetPage()->applyTo(before);
        QVERIFY(!before.validation_file.empty()); // the demo's cached validation file
        // what the demo leaves on other pages
        w.playgroundPage()->setModelReady(true);
        w.playgroundPage()->appendText(ModelSide::Base, "demo words");
        QVERIFY(w.playgroundPage()->output().contains("demo words"));
        w.state()->setAdapterName("demo-run/step-3");
        w.statusBar()->showMessage("Playground: demo-run with the adapter of step-3");
        QVERIFY(w.statusSummary().contains("demo-run"));

        QVERIFY(loadTestModel(w, c));
        QVERIFY(!w.state()->modelIsDemo());
        qls::train_config after;
        w.datasetPage()->applyTo(after);
        QVERIFY2(after.validation_file.empty(), after.validation_file.c_str());
        QVERIFY2(after.train_file.empty(), after.train_file.c_str());
        QVERIFY(w.playgroundPage()->output().isEmpty());
        QVERIFY(w.state()->adapterName().isEmpty());
        QVERIFY(w.statusBar()->currentMessage().isEmpty());
        QVERIFY2(!w.statusSummary().contains("demo"), qPrintable(w.statusSummary()));
        QVERIFY2(w.statusSummary().contains("stories260K"), qPrintable(w.statusSummary()));
    }

    // The demo's offer names the time a warm-up measured on this machine, never a fixed promise.
    void demoPromiseIsMeasured() {
        MainWindow w;
        w.setDemoOffered(true);
        QVERIFY(!w.demoPromise().contains("minute"));
        FakeSession fake;
        StudioController c(&w, &fake);
        QTRY_VERIFY_WITH_TIMEOUT(w.demoPromise().contains("on this machine (measured just now)"), 30000);
        QVERIFY(w.demoPromise().contains(QRegularExpression("about \\d+ (seconds|minutes)")));
    }

    // The warm-up times the run's own set-up (the run's data reading, qls::load_run_data): data with a malformed
    // line and skip_malformed on is measured, as the run would train on it, and refused like the run with it off.
    void estimateReadsDataAsTheRunDoes() {
        QTemporaryDir dir;
        const QString data = dir.filePath("pairs.jsonl");
        QByteArray lines;
        for (int i = 0; i < 8; ++i)
            lines += QStringLiteral(R"({"instruction": "Tell a story number %1.", "output": "Pip the mouse saw the sea."})")
                         .arg(i)
                         .toUtf8() +
                     "\n";
        lines += "{\"instruction\": \"never closed\n";
        writeFile(data, lines);
        qls::train_config cfg;
        cfg.model = modelDir().toStdString();
        cfg.train_file = data.toStdString();
        cfg.dataset_format = "alpaca";
        cfg.seq_len = 128; // the alpaca prompt around each pair is longer than 32 tokens
        cfg.lora.rank = 4;
        cfg.skip_malformed = true;
        EngineWorker worker;
        QSignalSpy measured(&worker, &EngineWorker::stepMeasured);
        QSignalSpy failed(&worker, &EngineWorker::measureFailed);
        worker.measureStep(modelDir(), cfg, 1);
        QVERIFY2(failed.isEmpty(), failed.isEmpty() ? "" : qPrintable(failed.at(0).at(1).toString()));
        QCOMPARE(measured.size(), 1);
        QVERIFY(measured.at(0).at(1).value<StepTiming>().setup > 0);
        cfg.skip_malformed = false;
        worker.measureStep(modelDir(), cfg, 2);
        QCOMPARE(failed.size(), 1);
        QVERIFY2(failed.at(0).at(1).toString().contains("pairs.jsonl"), qPrintable(failed.at(0).at(1).toString()));
    }

    // The demo through the studio's own path (controller, the real training session, the Monitor drawing every step)
    // finishes within the time its banner promised. The promise is the start-up warm-up's estimate with the stated
    // margin (StudioController::promiseSeconds): checked in process CPU seconds, which a machine shared with other
    // builds hardly changes, and in wall-clock seconds when the machine was no busier than its cores.
    void demoRunKeepsItsPromise() {
        QTemporaryDir runs;
        MainWindow w;
        w.setDemoOffered(true);
        EngineSession session;
        StudioController c(&w, &session);
        w.runsPage()->setRunsDirectory(runs.path());
        QTRY_VERIFY_WITH_TIMEOUT(c.demoTiming().has_value() && w.demoPromiseSeconds() > 0, 120000);
        const StepTiming t = *c.demoTiming();
        StudioController::DemoPaths paths;
        QVERIFY(StudioController::demoPaths(&paths, nullptr));
        const qls::train_config demo = StudioController::demoConfig(paths, StudioController::k_demoSteps, {});
        // the promise is the measured warm-up's, not a constant
        QVERIFY(t.micro > 0 && t.update > 0 && t.eval > 0 && t.setup > 0 && t.microCpu > 0 && t.setupCpu > 0);
        const double estimate = StudioController::estimateRunSeconds(demo, t);
        QCOMPARE(estimate, t.setup + 40 * (t.micro + t.update) + 4 * 8 * t.eval); // eval at 10, 20, 30, 40
        const double promise = StudioController::promiseSeconds(estimate);
        QVERIFY(w.demoPromiseSeconds() >= promise);
        QVERIFY(w.demoPromiseSeconds() < promise + 60);
        const double promiseCpu = StudioController::promiseSeconds(StudioController::estimateRunSeconds(demo, t, true));

        const double load0 = loadAverage(), cpu0 = processCpuSeconds();
        QElapsedTimer wall;
        wall.start();
        c.startDemo(StudioController::k_demoSteps);
        QTRY_VERIFY_WITH_TIMEOUT(w.state()->runState() == StudioState::RunState::Finished ||
                                     w.state()->runState() == StudioState::RunState::Failed,
                                 600000);
        const double seconds = double(wall.elapsed()) / 1000.0, cpu = processCpuSeconds() - cpu0;
        const double load1 = loadAverage();
        QCOMPARE(w.state()->runState(), StudioState::RunState::Finished);
        QCOMPARE(w.monitorPage()->history().size(), qsizetype(StudioController::k_demoSteps));
        qInfo("demo: warm-up micro-batch %.4f s (%.4f CPU s), update %.4f s, eval batch %.4f s, set-up %.3f s (%.3f "
              "CPU s); estimate %.1f s, promise %.1f s (banner %d s), CPU promise %.1f s; the run took %.1f s wall, "
              "%.1f CPU s; load average %.2f before, %.2f after, on %d cores",
              t.micro, t.microCpu, t.update, t.eval, t.setup, t.setupCpu, estimate, promise, w.demoPromiseSeconds(),
              promiseCpu, seconds, cpu, load0, load1, QThread::idealThreadCount());
        QVERIFY2(cpu <= promiseCpu, qPrintable(QString("%1 CPU s > %2").arg(cpu).arg(promiseCpu)));
        if (std::max(load0, load1) <= QThread::idealThreadCount())
            QVERIFY2(seconds <= w.demoPromiseSeconds(),
                     qPrintable(QString("%1 s > %2 s").arg(seconds).arg(w.demoPromiseSeconds())));
    }

    // ---- 3. the Monitor ---------------------------------------------------------------------------------------

    void pausedAndStoppedShowNoEta() {
        MonitorPage page;
        FakeSession fake;
        fake.script = FakeSession::makeScript(30, 0);
        fake.intervalMs = 30;
        page.setSession(&fake);
        page.show();
        fake.start(qls::train_config{});
        // gradient accumulation: progress inside the first step
        QTRY_VERIFY(fake.state() == TrainingSession::State::Running);
        emit fake.microStep(3, 16);
        QVERIFY2(page.progressText().contains("micro-batch 3 of 16"), qPrintable(page.progressText()));
        QTRY_VERIFY(page.history().size() >= 3);
        QTRY_VERIFY(page.progressText().contains("ETA"));
        fake.pause();
        QVERIFY2(page.progressText().contains("Paused"), qPrintable(page.progressText()));
        QVERIFY2(!page.progressText().contains("ETA"), qPrintable(page.progressText()));
        QTest::qWait(100); // no step arrives while paused, and the label stays
        QVERIFY(!page.progressText().contains("ETA"));
        fake.resume();
        QTRY_VERIFY(page.progressText().contains("ETA"));
        fake.stopAndSave();
        QTRY_COMPARE(fake.state(), TrainingSession::State::Idle);
        QTRY_VERIFY2(page.progressText().contains("Stopped"), qPrintable(page.progressText()));
        QVERIFY(!page.progressText().contains("ETA"));
    }

    // A run reopened from Runs draws its memory bands in the live view's colours and stacking, and fills its log.
    void reloadKeepsColoursAndLog() {
        MonitorPage page;
        FakeSession fake;
        fake.script = FakeSession::makeScript(6, 0, 80ull << 30);
        page.setSession(&fake);
        page.show();
        fake.start(qls::train_config{});
        QTRY_COMPARE(page.history().size(), 6);
        QStringList liveNames;
        QList<QColor> liveColours;
        for (QCPGraph* g : page.memoryCategoryGraphs()) {
            liveNames << g->name();
            liveColours << g->brush().color();
        }
        QVERIFY(liveNames.size() >= 8);
        QCOMPARE(liveNames.first(), QString("NF4 weights")); // the plan's order, not the step's

        // the same run read back: metrics.jsonl lists the categories in its JSON object's order (reversed here)
        QVector<qls::step_stats> reloaded = fake.script;
        for (qls::step_stats& s : reloaded) std::reverse(s.plan_bytes.begin(), s.plan_bytes.end());
        page.showRun("/tmp/some-run", reloaded);
        QStringList names;
        QList<QColor> colours;
        for (QCPGraph* g : page.memoryCategoryGraphs()) {
            names << g->name();
            colours << g->brush().color();
        }
        QCOMPARE(names, liveNames);
        QCOMPARE(colours, liveColours);
        QTRY_VERIFY(page.logText().contains("step 6/6  loss"));
        QCOMPARE(page.logText().count("step "), 6);
    }

    // ---- 4. Runs --------------------------------------------------------------------------------------------

    // A run trained by one studio cannot be resumed by another: two controllers in this process, then a second
    // process holding the lock, then that process gone (a stale lock is taken over).
    void runLockAcrossInstances() {
        QTemporaryDir tmp;
        const QString run = QDir(tmp.path()).absoluteFilePath("shared-run");
        makeRun(run, 8, 1e-3, 10, {5});

        MainWindow w1, w2;
        FakeSession f1, f2;
        f1.script = FakeSession::makeScript(10, 0);
        f1.intervalMs = 20;
        f1.runDir = run;
        StudioController c1(&w1, &f1), c2(&w2, &f2);
        w2.runsPage()->setRunsDirectory(tmp.path());
        c1.resumeRun(run);
        QCOMPARE(f1.continueCount, 1);
        QTRY_COMPARE(f1.state(), TrainingSession::State::Running);
        QCOMPARE(c1.lockedRun(), run);
        QVERIFY(RunLock::isLocked(run));

        c2.resumeRun(run);
        QCOMPARE(f2.continueCount, 0);
        QVERIFY2(w2.monitorPage()->statusText().contains("is being trained"),
                 qPrintable(w2.monitorPage()->statusText()));
        // the second window's Runs page marks it and offers no Resume or Delete
        w2.runsPage()->refresh();
        QVERIFY(w2.runsPage()->selectRun(run));
        QVERIFY(w2.runsPage()->runs().first().locked);
        QPushButton* resume = nullptr;
        for (QPushButton* b : w2.runsPage()->findChildren<QPushButton*>())
            if (b->text() == "Resume") resume = b;
        QVERIFY(resume && !resume->isEnabled());
        QString why;
        QVERIFY(!w2.runsPage()->deleteSelected(&why));
        QVERIFY(QFileInfo::exists(run + "/config.json"));

        // the run ends: the lock goes with it and the other window may resume
        QTRY_COMPARE_WITH_TIMEOUT(f1.state(), TrainingSession::State::Idle, 5000);
        QVERIFY(!RunLock::isLocked(run));
        f2.script = FakeSession::makeScript(2, 0);
        f2.runDir = run;
        c2.resumeRun(run);
        QCOMPARE(f2.continueCount, 1);
        QTRY_COMPARE(f2.state(), TrainingSession::State::Idle);

        // another process (a second studio) holds it
        QProcess holder;
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("QLS_HOLD_RUN_LOCK", run);
        holder.setProcessEnvironment(env);
        holder.start(QCoreApplication::applicationFilePath(), {});
        QVERIFY(holder.waitForStarted(10000));
        QVERIFY(holder.waitForReadyRead(10000));
        QCOMPARE(holder.readLine().trimmed(), QByteArray("locked"));
        QVERIFY(RunLock::isLocked(run));
        c1.resumeRun(run);
        QCOMPARE(f1.continueCount, 1); // refused
        QVERIFY(w1.monitorPage()->statusText().contains("is being trained"));
        holder.kill(); // a crash: its lock is stale and taken over
        QVERIFY(holder.waitForFinished(10000));
        QVERIFY(!RunLock::isLocked(run));
        f1.script = FakeSession::makeScript(2, 0);
        c1.resumeRun(run);
        QCOMPARE(f1.continueCount, 2);
        QTRY_COMPARE(f1.state(), TrainingSession::State::Idle);
    }

    void runsFolderColumnsCompareDeleteAndCheckpoints() {
        QSettings().remove("runs/directory");
        {
            RunsPage fresh;
            QVERIFY(QDir::isAbsolutePath(fresh.runsDirectory()));
            QCOMPARE(fresh.runsDirectory(), RunsPage::defaultRunsDirectory());
            QVERIFY(fresh.runsDirectory().endsWith("/runs"));
        }
        QTemporaryDir tmp;
        makeRun(tmp.path() + "/r8", 8, 0.003, 10, {5, 10});
        makeRun(tmp.path() + "/r16", 16, 0.0002, 6, {6});
        MainWindow w;
        FakeSession fake;
        StudioController c(&w, &fake);
        RunsPage* runs = w.runsPage();
        // the Monitor names the folder and follows it
        w.runsPage()->setRunsDirectory(tmp.path());
        QVERIFY2(w.monitorPage()->runsFolderText().contains(QDir::toNativeSeparators(tmp.path())),
                 qPrintable(w.monitorPage()->runsFolderText()));
        QCOMPARE(runs->runs().size(), 2);
        QVERIFY2(!runs->statusText().contains("does not exist"), qPrintable(runs->statusText()));
        // hyperparameter columns
        const RunSummary* r8 = nullptr;
        for (const RunSummary& r : runs->runs())
            if (r.name == "r8") r8 = &r;
        QVERIFY(r8);
        QCOMPARE(r8->rank, 8);
        QCOMPARE(r8->seqLen, 128);
        QCOMPARE(r8->rowsPerStep, 8);
        QVERIFY(qAbs(r8->learningRate - 0.003) < 1e-9);
        // two selected runs: two loss curves
        QVERIFY(runs->selectRuns({tmp.path() + "/r8", tmp.path() + "/r16"}));
        QStringList compared = runs->comparedRuns();
        compared.sort();
        QCOMPARE(compared, QStringList({"r16", "r8"}));
        QCOMPARE(runs->comparisonChart()->graph(0)->dataCount() + runs->comparisonChart()->graph(1)->dataCount(), 16);
        // any checkpoint for the Playground
        QVERIFY(runs->selectRun(tmp.path() + "/r8"));
        QVERIFY(runs->chosenCheckpoint().endsWith("checkpoints/step-10")); // the newest by default
        QVERIFY(runs->chooseCheckpoint(5));
        QSignalSpy play(runs, &RunsPage::playgroundRequested);
        for (QPushButton* b : runs->findChildren<QPushButton*>())
            if (b->text() == "Playground") b->click();
        QCOMPARE(play.count(), 1);
        QVERIFY(play.at(0).at(1).toString().endsWith("checkpoints/step-5"));
        // delete asks first; No keeps the run, Yes deletes it and the list follows
        QString asked;
        runs->setDeleteQuestion([&asked](const QString& name) {
            asked = name;
            return false;
        });
        QVERIFY(!runs->deleteSelected());
        QCOMPARE(asked, QString("r8"));
        QVERIFY(QFileInfo::exists(tmp.path() + "/r8"));
        runs->setDeleteQuestion([](const QString&) { return true; });
        QVERIFY(runs->selectRun(tmp.path() + "/r8"));
        QVERIFY(runs->deleteSelected());
        QVERIFY(!QFileInfo::exists(tmp.path() + "/r8"));
        QCOMPARE(runs->runs().size(), 1);
        // a run written by something else appears without Refresh
        makeRun(tmp.path() + "/r32", 32, 0.001, 4, {4});
        QTRY_COMPARE_WITH_TIMEOUT(runs->runs().size(), 2, 5000);
    }

    // ---- 6. navigation, status bar -----------------------------------------------------------------------------

    void navigationMarksAndStatusLine() {
        MainWindow w;
        FakeSession fake;
        fake.script = FakeSession::makeScript(4, 0);
        fake.intervalMs = 20;
        StudioController c(&w, &fake);
        QCOMPARE(w.pageMark(MainWindow::Page::Model), MainWindow::Mark::Attention);
        QVERIFY(w.pageTitle(MainWindow::Page::Model).startsWith("Model"));
        QVERIFY2(w.statusSummary().contains("No model loaded"), qPrintable(w.statusSummary()));
        // a run going: the Training page says its changes apply to the next run; the status line says it trains
        fake.start(qls::train_config{});
        QTRY_COMPARE(fake.state(), TrainingSession::State::Running);
        QVERIFY(w.trainingPage()->runActiveNoteVisible());
        QVERIFY2(w.statusSummary().contains("training"), qPrintable(w.statusSummary()));
        QCOMPARE(w.pageMark(MainWindow::Page::Monitor), MainWindow::Mark::Busy);
        QTRY_COMPARE(fake.state(), TrainingSession::State::Idle);
        QVERIFY(!w.trainingPage()->runActiveNoteVisible());
        QVERIFY2(w.statusSummary().contains("finished"), qPrintable(w.statusSummary()));
        QCOMPARE(w.pageMark(MainWindow::Page::Monitor), MainWindow::Mark::Done);
        QVERIFY(w.minimumSize().width() >= 1024 && w.minimumSize().height() >= 700);
    }

    // ---- 7. shortcuts ----------------------------------------------------------------------------------------

    void everyShortcutWorksAndIsListed() {
        MainWindow w;
        FakeSession fake;
        fake.script = FakeSession::makeScript(200, 0);
        fake.intervalMs = 20;
        StudioController c(&w, &fake);
        w.resize(1024, 700);
        w.show();
        QApplication::setActiveWindow(&w);
        QVERIFY(QTest::qWaitForWindowActive(&w));

        // Ctrl+1..8: the pages in order
        for (int i = 0; i < 8; ++i) {
            QTest::keyClick(&w, Qt::Key(Qt::Key_1 + i), Qt::ControlModifier);
            QCOMPARE(int(w.currentPage()), i);
        }
        // Ctrl+R: Start (refused here: no model; the Monitor says why)
        QSignalSpy start(w.monitorPage(), &MonitorPage::startRequested);
        QTest::keyClick(&w, Qt::Key_R, Qt::ControlModifier);
        QCOMPARE(start.count(), 1);
        QCOMPARE(w.currentPage(), MainWindow::Page::Monitor);
        // Ctrl+P pauses and resumes, Ctrl+Shift+S stops and saves
        fake.start(qls::train_config{});
        QTRY_COMPARE(fake.state(), TrainingSession::State::Running);
        QTest::keyClick(&w, Qt::Key_P, Qt::ControlModifier);
        QCOMPARE(fake.state(), TrainingSession::State::Paused);
        QTest::keyClick(&w, Qt::Key_P, Qt::ControlModifier);
        QCOMPARE(fake.state(), TrainingSession::State::Running);
        QTest::keyClick(&w, Qt::Key_S, Qt::ControlModifier | Qt::ShiftModifier);
        QCOMPARE(fake.stopCount, 1);
        QTRY_COMPARE(fake.state(), TrainingSession::State::Idle);
        // Ctrl+Enter: Generate on the Playground
        QSignalSpy generate(w.playgroundPage(), &PlaygroundPage::generateRequested);
        w.playgroundPage()->setModelReady(true);
        QTest::keyClick(&w, Qt::Key_Return, Qt::ControlModifier);
        QCOMPARE(w.currentPage(), MainWindow::Page::Playground);
        QCOMPARE(generate.count(), 1);
        w.playgroundPage()->showFinished(ModelSide::Base, "done");
        // F1: Help → Shortcuts lists every one
        QTest::keyClick(&w, Qt::Key_F1);
        QVERIFY(w.shortcutsDialog() && w.shortcutsDialog()->isVisible());
        auto* table = w.shortcutsDialog()->findChild<QTableWidget*>();
        QCOMPARE(table->rowCount(), int(w.shortcuts().size()));
        QStringList keys;
        for (int r = 0; r < table->rowCount(); ++r) keys << table->item(r, 0)->text();
        for (const char* k : {"Ctrl+1", "Ctrl+8", "Ctrl+R", "Ctrl+P", "Ctrl+Shift+S", "Ctrl+Return", "Ctrl+Q", "F1"})
            QVERIFY2(keys.contains(k), qPrintable(QString(k) + " missing from " + keys.join(", ")));
        w.shortcutsDialog()->close();
        // the buttons' tooltips name their keys
        QVERIFY(w.monitorPage()->findChild<QPushButton*>("startButton")->toolTip().contains("Ctrl+R"));
        QVERIFY(w.monitorPage()->findChild<QPushButton*>("pauseButton")->toolTip().contains("Ctrl+P"));
        QVERIFY(w.playgroundPage()->findChild<QPushButton*>("generateButton")->toolTip().contains("Ctrl+Return"));
        // Ctrl+Q closes the window (no run is going)
        QApplication::setActiveWindow(&w);
        QVERIFY(QTest::qWaitForWindowActive(&w));
        QTest::keyClick(&w, Qt::Key_Q, Qt::ControlModifier);
        QTRY_VERIFY(!w.isVisible());
    }

    // The dark palette reaches the charts (their background is the palette's base) and the focus ring is drawn.
    void darkAndLightPalettes() {
        auto* app = qobject_cast<QApplication*>(QCoreApplication::instance());
        studio_style::apply(app, studio_style::Scheme::Dark);
        QVERIFY(studio_style::isDark(QApplication::palette()));
        {
            MonitorPage page;
            page.resize(900, 600);
            page.show();
            QVERIFY(QTest::qWaitForWindowExposed(&page));
            QCustomPlot* plot = page.chart(MonitorPage::LossChart);
            const QImage img = plot->grab().toImage();
            const QColor corner = img.pixelColor(3, img.height() - 3);
            QVERIFY2(corner.lightness() < 80, qPrintable(corner.name()));
            // a focused field gets the highlight-coloured ring
            auto* edit = page.findChild<QLineEdit*>();
            edit->setFocus();
            QApplication::setActiveWindow(&page);
            QTRY_VERIFY(edit->hasFocus());
            const QImage field = edit->grab().toImage();
            const QColor ring = field.pixelColor(field.width() / 2, 1);
            const QColor highlight = QApplication::palette().color(QPalette::Highlight);
            QVERIFY2(qAbs(ring.hue() - highlight.hue()) < 20 && ring.saturation() > 80, qPrintable(ring.name()));
        }
        studio_style::apply(app, studio_style::Scheme::Light);
        QVERIFY(!studio_style::isDark(QApplication::palette()));
    }

    // A focused spin box, combo box and line edit get the 2-pixel highlight-coloured ring in both palettes; the same
    // fields unfocused do not.
    void focusRingOnFieldsInBothPalettes() {
        auto* app = qobject_cast<QApplication*>(QCoreApplication::instance());
        for (studio_style::Scheme scheme : {studio_style::Scheme::Light, studio_style::Scheme::Dark}) {
            studio_style::apply(app, scheme);
            QWidget page;
            auto* layout = new QVBoxLayout(&page);
            auto* spin = new QSpinBox(&page);
            auto* combo = new QComboBox(&page);
            combo->addItems({"constant", "linear", "cosine"});
            auto* edit = new QLineEdit("2e-4", &page);
            auto* other = new QPushButton("elsewhere", &page); // holds the focus while the fields are grabbed unfocused
            for (QWidget* f : std::initializer_list<QWidget*>{spin, combo, edit, other}) {
                f->setFixedWidth(200);
                layout->addWidget(f);
            }
            page.show();
            QApplication::setActiveWindow(&page);
            QVERIFY(QTest::qWaitForWindowActive(&page));
            const QColor highlight = QApplication::palette().color(QPalette::Highlight);
            for (QWidget* f : std::initializer_list<QWidget*>{spin, combo, edit}) {
                const QString what = QString("%1 (%2)").arg(f->metaObject()->className(),
                                                            scheme == studio_style::Scheme::Dark ? "dark" : "light");
                other->setFocus();
                QTRY_VERIFY(other->hasFocus());
                const int unfocused = ringPixels(f->grab().toImage(), highlight);
                f->setFocus();
                QTRY_VERIFY(f->hasFocus());
                const int focused = ringPixels(f->grab().toImage(), highlight);
                QVERIFY2(focused > 50, qPrintable(what + ": " + QString::number(focused)));
                QVERIFY2(unfocused == 0, qPrintable(what + ": " + QString::number(unfocused)));
            }
        }
        studio_style::apply(app, studio_style::Scheme::Light);
    }

    // The steps weighed against the data's size as they are typed.
    void stepsAgainstDataSize() {
        TrainingPage page;
        qls::train_config c;
        c.seq_len = 128;
        c.micro_batch = 4;
        c.grad_accum = 1;
        c.max_steps = 20;
        page.loadFrom(c);
        QVERIFY(page.dataCoverageText().contains("Dataset page"));
        page.setDatasetSize(300, 38400); // packed: 300 rows of 128 tokens an epoch
        QVERIFY2(page.dataCoverageText().contains("300 rows an epoch; 20 steps × 4 rows cover 0.27 epochs"),
                 qPrintable(page.dataCoverageText()));
        spinFor(&page, "training.max_steps")->setValue(2000);
        QVERIFY2(page.dataCoverageText().contains("2000 steps = 26.7 epochs of your data"),
                 qPrintable(page.dataCoverageText()));
        QVERIFY2(page.dataCoverageText().contains("memorise"), qPrintable(page.dataCoverageText()));
        spinFor(&page, "training.max_steps")->setValue(20);
        spinFor(&page, "training.micro_batch")->setValue(64);
        spinFor(&page, "training.grad_accum")->setValue(8);
        QVERIFY2(page.dataCoverageText().contains("one step takes Micro-batch × Accumulation = 512 rows but the data "
                                                  "fills 300 rows an epoch"),
                 qPrintable(page.dataCoverageText()));
        QVERIFY(page.fieldNote("training.micro_batch").contains("512 rows"));
    }

    // Maximised, number fields keep a readable width.
    void numberFieldsDoNotStretch() {
        MainWindow w;
        w.resize(1900, 1000);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.showPage(MainWindow::Page::Training);
        QTest::qWait(50);
        QSpinBox* seq = spinFor(w.trainingPage(), "training.seq_len");
        QVERIFY(seq->width() <= seq->fontMetrics().horizontalAdvance('0') * 24);
    }
};

// A second process for runLockAcrossInstances: holds a run's lock until it is killed.
static int holdRunLock(int argc, char** argv) {
    QCoreApplication app(argc, argv);
    QCoreApplication::setApplicationName("second studio");
    RunLock lock;
    QString why;
    if (!lock.lock(qEnvironmentVariable("QLS_HOLD_RUN_LOCK"), &why)) {
        std::fprintf(stderr, "%s\n", qPrintable(why));
        return 3;
    }
    std::printf("locked\n");
    std::fflush(stdout);
    for (;;) QThread::sleep(1);
}

int main(int argc, char** argv) {
    if (qEnvironmentVariableIsSet("QLS_HOLD_RUN_LOCK")) return holdRunLock(argc, argv);
    QApplication app(argc, argv);
    TestUiNewUser t;
    QTEST_SET_MAIN_SOURCE_PATH
    return QTest::qExec(&t, argc, argv);
}

#include "tst_ui_newuser.moc"
