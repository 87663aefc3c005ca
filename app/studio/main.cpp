// qlora-studio — the desktop application's entry point: options, main window, controller, the demo and the screenshot mode.
#include "engineworker.h"
#include "mainwindow.h"
#include "monitorpage.h"
#include "playgroundpage.h"
#include "runspage.h"
#include "studiocontroller.h"
#include "studiostyle.h"
#include "trainingsession.h"

#include <cstdlib>

#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QIcon>
#include <QSettings>
#include <QStatusBar>
#include <QThread>
#include <QTimer>

#include <cstdio>

int main(int argc, char** argv) {
    // The engine's OpenMP loops run on the training and generation threads beside the GUI: spinning idle OpenMP
    // workers would take the cores from them and from the GUI (generation measured 100x slower on 2 busy cores).
    // Set before the OpenMP runtime starts; a value the user set wins.
    setenv("OMP_WAIT_POLICY", "passive", 0);
    QApplication app(argc, argv);
    QApplication::setOrganizationName("QLoRA Studio");
    QApplication::setApplicationName("qlora-studio");
    QApplication::setApplicationVersion(QLS_VERSION);
    QApplication::setWindowIcon(QIcon(":/icons/qlora-studio.svg"));
    // one look on every desktop: Fusion with a visible focus ring, the desktop's light or dark palette
    studio_style::apply(&app);

    QCommandLineParser parser;
    parser.setApplicationDescription("QLoRA Studio: fine-tune LLaMA-family models on your GPU");
    parser.addHelpOption();
    parser.addVersionOption();
    QCommandLineOption modelOpt("model", "Open this Hugging Face model directory.", "dir");
    QCommandLineOption demoOpt("demo", "Train the bundled demo model on the demo dataset (the Monitor page shows it).");
    QCommandLineOption pagesOpt("screenshot-pages",
                                "Save every page at 1024x700 and at 1920x1080 into DIR (<page>-<size>.png), then exit: "
                                "after the demo run ends with --demo, else once the model is loaded.",
                                "dir");
    QCommandLineOption themeOpt("theme", "The palette: system (default), light or dark.", "scheme", "system");
    QCommandLineOption stepsOpt("run-steps",
                                "With --demo: train this many steps (default " +
                                    QString::number(StudioController::k_demoSteps) + ").",
                                "N", QString::number(StudioController::k_demoSteps));
    QCommandLineOption shotOpt("screenshot",
                               "Save a screenshot of the window to FILE, then exit: after the demo run ends with "
                               "--demo, else once the model is loaded.",
                               "file");
    parser.addOption(modelOpt);
    parser.addOption(demoOpt);
    parser.addOption(stepsOpt);
    parser.addOption(shotOpt);
    parser.addOption(themeOpt);
    parser.addOption(pagesOpt);
    parser.process(app);

    const QString theme = parser.value(themeOpt);
    if (theme == "light") studio_style::apply(&app, studio_style::Scheme::Light);
    else if (theme == "dark") studio_style::apply(&app, studio_style::Scheme::Dark);
    else if (theme != "system") {
        std::fprintf(stderr, "--theme: expected system, light or dark, got \"%s\"\n", qPrintable(theme));
        return 2;
    }
    bool stepsOk = false;
    const int steps = parser.value(stepsOpt).toInt(&stepsOk);
    if (!stepsOk || steps < 1 || steps > 1000000) {
        std::fprintf(stderr, "--run-steps: expected a whole number of steps from 1 to 1000000, got \"%s\"\n",
                     qPrintable(parser.value(stepsOpt)));
        return 2;
    }

    MainWindow window;
    StudioController controller(&window);
    // the device line: a GPU, or why the CPU reference backend is used (never a crash without a driver)
    window.statusBar()->showMessage(QString::fromStdString(controller.gpu().message));
    window.show();

    const bool demo = parser.isSet(demoOpt);
    QString dir = parser.value(modelOpt);
    if (dir.isEmpty() && !demo) dir = QSettings().value("model/lastDir").toString();
    if (!dir.isEmpty()) controller.loadModel(dir);
    // with no model chosen, the studio offers the demo
    window.setDemoOffered(dir.isEmpty() && !demo);

    const QString shot = parser.value(shotOpt);
    const QString pagesDir = parser.value(pagesOpt);
    auto save = [&window, shot, pagesDir](int code) {
        bool ok = true;
        if (!shot.isEmpty()) {
            ok = window.grab().save(shot);
            std::fprintf(ok ? stdout : stderr, ok ? "saved %s\n" : "could not save %s\n", qPrintable(shot));
        }
        if (!pagesDir.isEmpty()) {
            // every page at the smallest size the layouts are made for and at a full-HD maximised window
            const QStringList names = {"model",   "dataset", "training",   "plan",
                                       "monitor", "export",  "playground", "runs"};
            QDir().mkpath(pagesDir);
            // the Runs page compares every run it lists
            QStringList runDirs;
            for (const RunSummary& r : window.runsPage()->runs()) runDirs << r.dir;
            window.runsPage()->selectRuns(runDirs);
            for (const QSize size : {QSize(1024, 700), QSize(1920, 1080)}) {
                window.resize(size);
                for (int i = 0; i < names.size(); ++i) {
                    window.showPage(MainWindow::Page(i));
                    // let layouts settle and the charts replot at the new size
                    for (int k = 0; k < 5; ++k) {
                        QCoreApplication::processEvents();
                        QThread::msleep(40);
                    }
                    const QString file =
                        QStringLiteral("%1/%2-%3x%4.png").arg(pagesDir, names[i]).arg(size.width()).arg(size.height());
                    const bool saved = window.grab().save(file);
                    ok = ok && saved;
                    std::fprintf(saved ? stdout : stderr, saved ? "saved %s\n" : "could not save %s\n",
                                 qPrintable(file));
                }
            }
        }
        QApplication::exit(ok ? code : 1);
    };
    TrainingSession* session = controller.session();
    if (demo) {
        controller.startDemo(steps);
        if (parser.isSet(pagesOpt)) {
            // the pages after the run, with the Playground showing the base model beside the adapter the run trained
            // (greedy, the corpus's opening words)
            PlaygroundPage* play = window.playgroundPage();
            QObject::connect(session, &TrainingSession::finished, &window,
                             [](const QString& status) { std::printf("demo: %s\n", qPrintable(status)); });
            QObject::connect(controller.worker(), &EngineWorker::runLoaded, &window, [play] {
                GenerateRequest r;
                r.prompt = "Once upon a time";
                r.maxNewTokens = 60;
                r.temperature = 0;
                play->setSettings(r);
                QTimer::singleShot(100, play, &PlaygroundPage::generate);
            });
            QObject::connect(controller.worker(), &EngineWorker::runFailed, &window,
                             [save] { QTimer::singleShot(200, [save] { save(1); }); });
            QObject::connect(controller.worker(), &EngineWorker::generationFinished, &window,
                             [save, play](ModelSide side) {
                                 if (side == ModelSide::Adapter || !play->hasAdapter())
                                     QTimer::singleShot(300, [save] { save(0); });
                             });
        } else if (parser.isSet(shotOpt)) {
            // after the run has ended and the charts have had their last replot
            QObject::connect(session, &TrainingSession::finished, &window, [save](const QString& status) {
                std::printf("demo: %s\n", qPrintable(status));
                QTimer::singleShot(1000 / MonitorPage::maxReplotsPerSecond * 4, [save] { save(0); });
            });
        }
        if (parser.isSet(shotOpt) || parser.isSet(pagesOpt)) {
            QObject::connect(session, &TrainingSession::failed, &window,
                             [save](const QString& message, const QString& hint) {
                                 std::fprintf(stderr, "demo failed: %s\n%s\n", qPrintable(message), qPrintable(hint));
                                 QTimer::singleShot(200, [save] { save(1); });
                             });
        }
    } else if (parser.isSet(shotOpt) || parser.isSet(pagesOpt)) {
        // after the model has loaded (or failed), so the picture shows the result
        QObject::connect(controller.worker(), &EngineWorker::modelLoaded, &window,
                         [save] { QTimer::singleShot(200, [save] { save(0); }); });
        QObject::connect(controller.worker(), &EngineWorker::modelFailed, &window,
                         [save] { QTimer::singleShot(200, [save] { save(0); }); });
        if (dir.isEmpty()) QTimer::singleShot(500, [save] { save(0); });
    }
    return app.exec();
}
