// The Monitor page driven by a FakeSession's scripted step_stats: chart data, progress and ETA, the buttons, coalesced replots, export.
#include "testutil.h"
#include "ui_testutil.h"

#include "charts/monitorchart.h"
#include "fakesession.h"
#include "monitorpage.h"

// NOTE: QCustomPlot still uses foreach
#undef QT_NO_FOREACH
#include <qcustomplot.h>

#include <QApplication>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QToolTip>

using namespace ui_testutil;

namespace {

QString statusText(QWidget* page) {
    QString all;
    for (QLabel* l : page->findChildren<QLabel*>())
        if (l->isVisible()) all += l->text() + "\n";
    return all;
}

// Wires the page's Start to the fake, as the controller does with a real configuration.
void wireStart(MonitorPage& page, FakeSession& fake) {
    QObject::connect(&page, &MonitorPage::startRequested, &fake, [&fake] { fake.start(qls::train_config{}); });
}

double valueAt(QCPGraph* g, double key) {
    for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it)
        if (it->key == key) return it->value;
    return std::nan("");
}

} // namespace

class TestUiMonitor : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { QCoreApplication::setOrganizationName("QLoRA Studio Tests"); }

    void chartsHoldTheScriptedSteps() {
        MonitorPage page;
        FakeSession fake;
        fake.script = FakeSession::makeScript(25, 5);
        page.setSession(&fake);
        wireStart(page, fake);
        page.show();
        QSignalSpy done(&fake, &TrainingSession::finished);
        button(&page, "Start")->click();
        QCOMPARE(fake.startCount, 1);
        QTRY_COMPARE_WITH_TIMEOUT(done.count(), 1, 10000);

        QCOMPARE(page.history().size(), 25);
        QCOMPARE(page.graph(MonitorPage::TrainLoss)->dataCount(), 25);
        QCOMPARE(page.graph(MonitorPage::EvalLoss)->dataCount(), 5);
        QCOMPARE(page.graph(MonitorPage::LearningRate)->dataCount(), 25);
        QCOMPARE(page.graph(MonitorPage::TokensPerSecond)->dataCount(), 25);
        for (const qls::step_stats& s : fake.script) {
            QCOMPARE(valueAt(page.graph(MonitorPage::TrainLoss), s.step), s.loss);
            QCOMPARE(valueAt(page.graph(MonitorPage::LearningRate), s.step), s.lr);
            QCOMPARE(valueAt(page.graph(MonitorPage::TokensPerSecond), s.step), s.tokens_per_s);
            QCOMPARE(valueAt(page.graph(MonitorPage::PagingHostToDevice), s.step),
                     s.paging_h2d_bytes / s.step_time_s / 1e6);
            QCOMPARE(valueAt(page.graph(MonitorPage::PagingDeviceToHost), s.step),
                     s.paging_d2h_bytes / s.step_time_s / 1e6);
            QCOMPARE(valueAt(page.graph(MonitorPage::ResidentPages), s.step), double(s.resident_pages));
            QCOMPARE(valueAt(page.graph(MonitorPage::CheckpointsHostToDevice), s.step),
                     s.offload_h2d_bytes / s.step_time_s / 1e6);
            QCOMPARE(valueAt(page.graph(MonitorPage::CheckpointsDeviceToHost), s.step),
                     s.offload_d2h_bytes / s.step_time_s / 1e6);
            if (s.eval_loss) QCOMPARE(valueAt(page.graph(MonitorPage::EvalLoss), s.step), *s.eval_loss);
        }
        // memory: the plan's non-zero categories stacked (a CPU run has no CUDA context), in GiB for a 7 GiB plan
        const QStringList cats = page.memoryCategories();
        QCOMPARE(cats, QStringList({"quantized_weights", "frozen_weights", "lora_weights", "lora_grads",
                                    "optimizer_paged", "activations", "logits_loss", "workspace"}));
        const QList<QCPGraph*> stack = page.memoryCategoryGraphs();
        QCOMPARE(stack.size(), cats.size());
        double planNoContext = 0;
        for (const auto& [name, bytes] : fake.script.first().plan_bytes)
            if (name != "cuda_context") planNoContext += double(bytes);
        QCOMPARE(valueAt(stack.last(), 1), planNoContext / double(1ull << 30));
        QCOMPARE(valueAt(stack.first(), 1), 3.0); // 3 GiB of NF4 weights at the bottom
        QCOMPARE(valueAt(page.graph(MonitorPage::MemoryMeasured), 25),
                 double((6ull << 30) + 25 * (1ull << 20)) / double(1ull << 30));
        // no card on a CPU run: no card line, and the title says why
        QCOMPARE(page.graph(MonitorPage::MemoryCard)->dataCount(), 0);
        QVERIFY2(page.chartTitle(MonitorPage::MemoryChart).contains("CPU"),
                 qPrintable(page.chartTitle(MonitorPage::MemoryChart)));
        QVERIFY(page.chartTitle(MonitorPage::LossChart).contains("eval"));
        // the step log holds every step and the finish
        QTRY_VERIFY(page.logText().contains("step 25/25"));
        QVERIFY(page.logText().contains("finished: completed 25 steps"));
    }

    void gpuRunDrawsCardAndBudgetLines() {
        MonitorPage page;
        FakeSession fake;
        fake.script = FakeSession::makeScript(6, 0, 24ull << 30);
        page.setSession(&fake);
        page.setBudgetBytes(12ull << 30);
        fake.start(qls::train_config{});
        QTRY_COMPARE(page.history().size(), 6);
        QCOMPARE(page.graph(MonitorPage::MemoryCard)->dataCount(), 6);
        QCOMPARE(valueAt(page.graph(MonitorPage::MemoryCard), 3), 24.0);
        QCOMPARE(valueAt(page.graph(MonitorPage::MemoryBudget), 3), 12.0);
        QVERIFY(page.memoryCategories().contains("cuda_context")); // the context is on the card
        QVERIFY(!page.chartTitle(MonitorPage::MemoryChart).contains("CPU"));
    }

    void progressAndEtaFollowTheRun() {
        MonitorPage page;
        FakeSession fake;
        fake.script = FakeSession::makeScript(12, 0);
        fake.intervalMs = 40;
        page.setSession(&fake);
        page.show();
        fake.start(qls::train_config{});
        QTRY_VERIFY_WITH_TIMEOUT(page.history().size() >= 3 && page.history().size() < 12, 5000);
        fake.pause(); // hold the run so the newest step stays the newest while it is checked
        QTRY_VERIFY(page.progressValue() >= 3);
        QCOMPARE(page.progressValue(), page.history().size());
        QCOMPARE(page.progressMaximum(), 12);
        // paused: the label names the newest step and says Paused, with no ETA
        QTRY_VERIFY_WITH_TIMEOUT(page.progressText().contains(QString("step %1 of 12").arg(page.history().size())),
                                 2000);
        QVERIFY2(page.progressText().contains("Paused") && !page.progressText().contains("ETA"),
                 qPrintable(page.progressText()));
        fake.resume();
        // running again: the newest step's ETA, formatted
        QTRY_VERIFY_WITH_TIMEOUT(
            page.progressText().contains("ETA " + MonitorPage::formatDuration(page.history().last().eta_s)) ||
                page.progressText().contains("done"),
            2000);
        QTRY_COMPARE_WITH_TIMEOUT(page.progressValue(), 12, 5000);
        QTRY_VERIFY(page.progressText().contains("done"));
    }

    void formatDuration_data() {
        QTest::addColumn<double>("seconds");
        QTest::addColumn<QString>("text");
        QTest::newRow("sub-second") << 0.4 << "< 1 s";
        QTest::newRow("seconds") << 42.0 << "42 s";
        QTest::newRow("minutes") << 185.0 << "3 min 05 s";
        QTest::newRow("hours") << 7440.0 << "2 h 04 min";
        QTest::newRow("nan") << std::nan("") << "unknown";
    }
    void formatDuration() {
        QFETCH(double, seconds);
        QFETCH(QString, text);
        QCOMPARE(MonitorPage::formatDuration(seconds), text);
    }

    void buttonsReachTheSession() {
        MonitorPage page;
        FakeSession fake;
        fake.script = FakeSession::makeScript(400, 0);
        fake.intervalMs = 10;
        page.setSession(&fake);
        wireStart(page, fake);
        page.show();
        QPushButton* start = button(&page, "Start");
        QPushButton* pause = button(&page, "Pause");
        QPushButton* resume = button(&page, "Resume");
        QPushButton* stop = button(&page, "Stop and save");
        QVERIFY(start && pause && resume && stop);
        QVERIFY(start->isEnabled() && !pause->isEnabled() && !resume->isEnabled() && !stop->isEnabled());
        start->click();
        QTRY_VERIFY(page.history().size() >= 3);
        QVERIFY(!start->isEnabled() && pause->isEnabled() && stop->isEnabled());
        pause->click();
        QCOMPARE(fake.pauseCount, 1);
        QCOMPARE(fake.state(), TrainingSession::State::Paused);
        QVERIFY(resume->isEnabled() && !pause->isEnabled());
        const int held = page.history().size();
        QTest::qWait(100);
        QCOMPARE(page.history().size(), held); // paused: no steps
        resume->click();
        QCOMPARE(fake.resumeCount, 1);
        QTRY_VERIFY(page.history().size() > held);
        QSignalSpy done(&fake, &TrainingSession::finished);
        stop->click();
        QCOMPARE(fake.stopCount, 1);
        QVERIFY(!stop->isEnabled() && !start->isEnabled());
        QTRY_COMPARE(done.count(), 1);
        QVERIFY(done.at(0).at(0).toString().startsWith("stopped at step"));
        QVERIFY(start->isEnabled() && !stop->isEnabled());
        QTRY_VERIFY(statusText(&page).contains("Finished:"));
        QVERIFY(statusText(&page).contains("checkpoints/step-"));
        QVERIFY(page.history().size() < 400);
    }

    void failureIsShownWithItsHint() {
        MonitorPage page;
        FakeSession fake;
        page.setSession(&fake);
        page.show();
        emit fake.failed("data.train: /nowhere/x.jsonl: not found", "Choose the training file on the Dataset page.");
        QVERIFY(statusText(&page).contains("/nowhere/x.jsonl"));
        QVERIFY(statusText(&page).contains("Choose the training file on the Dataset page."));
    }

    // However fast steps come, the charts are redrawn at most ~30 times a second, and they keep being redrawn.
    void replotIsCoalesced() {
        MonitorPage page;
        FakeSession fake;
        page.setSession(&fake);
        page.resize(1200, 700);
        page.show();
        QVERIFY(QTest::qWaitForWindowExposed(&page));
        QTest::qWait(200); // the first show's resize replots
        // a burst: 2000 steps delivered without the event loop running in between
        const int before = page.replotCount();
        emit fake.started(2000, "/tmp/fake-runs/burst");
        for (const qls::step_stats& s : FakeSession::makeScript(2000, 0)) emit fake.stepStats(s);
        QCOMPARE(page.graph(MonitorPage::TrainLoss)->dataCount(), 2000);
        QTest::qWait(300);
        const int burst = page.replotCount() - before;
        QVERIFY2(burst >= 1 && burst <= 3, qPrintable(QString("%1 replots for one burst").arg(burst)));

        // a stream: one step per millisecond for a second
        FakeSession stream;
        stream.script = FakeSession::makeScript(1000, 0);
        stream.intervalMs = 1;
        page.setSession(&stream);
        QSignalSpy done(&stream, &TrainingSession::finished);
        QElapsedTimer clock;
        clock.start();
        const int streamBefore = page.replotCount();
        stream.start(qls::train_config{});
        QTRY_COMPARE_WITH_TIMEOUT(done.count(), 1, 20000);
        QTest::qWait(100);
        const double seconds = clock.elapsed() / 1000.0;
        const int replots = page.replotCount() - streamBefore;
        QCOMPARE(page.graph(MonitorPage::TrainLoss)->dataCount(), 1000);
        const int allowed = int(std::ceil(seconds * MonitorPage::maxReplotsPerSecond)) + 2;
        QVERIFY2(replots <= allowed,
                 qPrintable(
                     QString("%1 replots in %2 s for 1000 steps (at most %3)").arg(replots).arg(seconds).arg(allowed)));
        // live: the charts were redrawn while the steps arrived, not only at the end
        QVERIFY2(replots >= std::min(5, int(seconds * 10)),
                 qPrintable(QString("only %1 replots in %2 s").arg(replots).arg(seconds)));
    }

    void hoverShowsValuesAndWheelZoomStopsFollowing() {
        MonitorPage page;
        FakeSession fake;
        fake.script = FakeSession::makeScript(20, 5);
        page.setSession(&fake);
        page.resize(1200, 700);
        page.show();
        QVERIFY(QTest::qWaitForWindowExposed(&page));
        fake.start(qls::train_config{});
        QTRY_COMPARE(page.history().size(), 20);
        QCustomPlot* plot = page.chart(MonitorPage::LossChart);
        QTRY_COMPARE(plot->xAxis->range().upper, 20.0); // following the data
        QCOMPARE(plot->interactions() & (QCP::iRangeDrag | QCP::iRangeZoom), QCP::iRangeDrag | QCP::iRangeZoom);

        // hover at step 10: the tooltip names the step and its losses
        const QPoint at(int(plot->xAxis->coordToPixel(10)),
                        int(plot->yAxis->coordToPixel(plot->yAxis->range().center())));
        QMouseEvent move(QEvent::MouseMove, QPointF(at), plot->mapToGlobal(QPointF(at)), Qt::NoButton, Qt::NoButton,
                         Qt::NoModifier);
        QApplication::sendEvent(plot, &move);
        // the read-out is drawn in the chart and stays while the mouse rests
        MonitorChart* lossChart = page.chartWidget(MonitorPage::LossChart);
        QTRY_VERIFY(lossChart->hoverText().contains("step 10"));
        QVERIFY(lossChart->hoverText().contains(QString::number(fake.script[9].loss, 'f', 4)));
        QVERIFY(lossChart->hoverText().contains(QString::number(*fake.script[9].eval_loss, 'f', 4)));
        QTest::qWait(300);
        QVERIFY(lossChart->hoverText().contains("step 10"));

        // wheel zoom: the range changes and stays put while more steps arrive
        QWheelEvent wheel(QPointF(at), plot->mapToGlobal(QPointF(at)), QPoint(), QPoint(0, 240), Qt::NoButton,
                          Qt::NoModifier, Qt::NoScrollPhase, false);
        const QCPRange yBefore = plot->yAxis->range();
        QApplication::sendEvent(plot, &wheel);
        const QCPRange zoomed = plot->xAxis->range();
        QVERIFY2(zoomed.size() < 19.0, qPrintable(QString::number(zoomed.size())));
        // the wheel zooms both axes
        QVERIFY2(plot->yAxis->range().size() < yBefore.size() * 0.99,
                 qPrintable(QString::number(plot->yAxis->range().size())));
        qls::step_stats more = fake.script.last();
        for (int i = 21; i <= 30; ++i) {
            more.step = i;
            emit fake.stepStats(more);
        }
        QTest::qWait(150);
        QCOMPARE(plot->xAxis->range().upper, zoomed.upper);
        // double-click: follow the run again
        QMouseEvent dbl(QEvent::MouseButtonDblClick, QPointF(at), plot->mapToGlobal(QPointF(at)), Qt::LeftButton,
                        Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(plot, &dbl);
        QTRY_COMPARE(plot->xAxis->range().upper, 30.0);
    }

    void logScaleToggles() {
        MonitorPage page;
        FakeSession fake;
        fake.script = FakeSession::makeScript(10, 0);
        page.setSession(&fake);
        page.show();
        fake.start(qls::train_config{});
        QTRY_COMPARE(page.history().size(), 10);
        QCPAxis* y = page.chart(MonitorPage::LossChart)->yAxis;
        QCOMPARE(y->scaleType(), QCPAxis::stLinear);
        page.findChild<QCheckBox*>()->click();
        QVERIFY(page.logScale());
        QCOMPARE(y->scaleType(), QCPAxis::stLogarithmic);
        QTRY_VERIFY(y->range().lower > 0 && y->range().lower < 1.0 + 3.0 * std::exp(-0.5));
        page.setLogScale(false);
        QCOMPARE(y->scaleType(), QCPAxis::stLinear);
        QVERIFY(!page.findChild<QCheckBox*>()->isChecked());
    }

    void exportsCsvAndPng() {
        MonitorPage page;
        FakeSession fake;
        fake.script = FakeSession::makeScript(15, 5);
        page.setSession(&fake);
        page.resize(1200, 700);
        page.show();
        fake.start(qls::train_config{});
        QTRY_COMPARE(page.history().size(), 15);
        QTemporaryDir tmp;
        const QString csv = tmp.filePath("metrics.csv");
        QString error;
        QVERIFY2(page.exportCsv(csv, &error), qPrintable(error));
        QFile f(csv);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QStringList lines = QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts);
        QCOMPARE(lines.size(), 16);
        const QStringList header = lines[0].split(',');
        QVERIFY(header.contains("loss") && header.contains("eval_loss") && header.contains("plan_activations_bytes"));
        const QStringList row5 = lines[5].split(',');
        QCOMPARE(row5.size(), header.size());
        QCOMPARE(row5[header.indexOf("step")], QString("5"));
        QVERIFY(std::abs(row5[header.indexOf("loss")].toDouble() - fake.script[4].loss) < 1e-9);
        QVERIFY(std::abs(row5[header.indexOf("eval_loss")].toDouble() - *fake.script[4].eval_loss) < 1e-9);
        QCOMPARE(lines[4].split(',')[header.indexOf("eval_loss")], QString()); // no evaluation at step 4
        QCOMPARE(row5[header.indexOf("plan_activations_bytes")], QString::number(2ull << 30));

        const QString png = tmp.filePath("loss.png");
        QVERIFY2(page.saveChartPng(MonitorPage::LossChart, png, &error), qPrintable(error));
        QImage image(png);
        QVERIFY(!image.isNull());
        QVERIFY(image.width() >= 800 && image.height() >= 500);

        // an unwritable place: a message naming the file, no crash
        QVERIFY(!page.exportCsv("/nonexistent-dir/metrics.csv", &error));
        QVERIFY2(error.contains("/nonexistent-dir/metrics.csv"), qPrintable(error));
        QVERIFY(!page.saveChartPng(MonitorPage::MemoryChart, "/nonexistent-dir/memory.png", &error));
        QVERIFY2(error.contains("/nonexistent-dir/memory.png"), qPrintable(error));
    }

    void pastRunAndResumedRunRedraw() {
        MonitorPage page;
        FakeSession fake;
        page.setSession(&fake);
        page.show();
        const QVector<qls::step_stats> history = FakeSession::makeScript(30, 10);
        page.showRun("/tmp/fake-runs/past", history.mid(0, 20));
        QCOMPARE(page.graph(MonitorPage::TrainLoss)->dataCount(), 20);
        QCOMPARE(page.graph(MonitorPage::EvalLoss)->dataCount(), 2);
        QVERIFY(page.runTitle().contains("past"));
        QTRY_COMPARE(page.progressValue(), 20);
        // resuming the same run from its step-16 checkpoint: steps 17.. replace the recorded ones, nothing is cleared
        fake.runDir = "/tmp/fake-runs/past";
        fake.script = history.mid(16);
        fake.continueRun("/tmp/fake-runs/past");
        QTRY_COMPARE(page.history().size(), 30);
        QCOMPARE(page.graph(MonitorPage::TrainLoss)->dataCount(), 30);
        for (int i = 0; i < 30; ++i) QCOMPARE(page.history()[i].step, int64_t(i + 1));
        // another run clears the charts
        fake.runDir = "/tmp/fake-runs/other";
        fake.script = FakeSession::makeScript(4, 0);
        fake.start(qls::train_config{});
        QTRY_COMPARE(page.history().size(), 4);
        QCOMPARE(page.graph(MonitorPage::TrainLoss)->dataCount(), 4);
    }
};

QTEST_MAIN(TestUiMonitor)
#include "tst_ui_monitor.moc"
