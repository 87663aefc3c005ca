// qlora-studio — the desktop application's entry point: options, main window, controller, the demo and the screenshot mode.
#include "engineworker.h"
#include "mainwindow.h"
#include "monitorpage.h"
#include "studiocontroller.h"
#include "trainingsession.h"

#include <cstdlib>

#include <QApplication>
#include <QCommandLineParser>
#include <QIcon>
#include <QSettings>
#include <QStatusBar>
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

    QCommandLineParser parser;
    parser.setApplicationDescription("QLoRA Studio: fine-tune LLaMA-family models on your GPU");
    parser.addHelpOption();
    parser.addVersionOption();
    QCommandLineOption modelOpt("model", "Open this Hugging Face model directory.", "dir");
    QCommandLineOption demoOpt("demo", "Train the bundled demo model on the demo dataset (the Monitor page shows it).");
    QCommandLineOption stepsOpt("run-steps", "With --demo: train this many steps (default 60).", "N", "60");
    QCommandLineOption shotOpt("screenshot",
                               "Save a screenshot of the window to FILE, then exit: after the demo run ends with "
                               "--demo, else once the model is loaded.",
                               "file");
    parser.addOption(modelOpt);
    parser.addOption(demoOpt);
    parser.addOption(stepsOpt);
    parser.addOption(shotOpt);
    parser.process(app);

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
    auto save = [&window, shot](int code) {
        const bool ok = window.grab().save(shot);
        std::fprintf(ok ? stdout : stderr, ok ? "saved %s\n" : "could not save %s\n", qPrintable(shot));
        QApplication::exit(ok ? code : 1);
    };
    TrainingSession* session = controller.session();
    if (demo) {
        controller.startDemo(steps);
        if (parser.isSet(shotOpt)) {
            // after the run has ended and the charts have had their last replot
            QObject::connect(session, &TrainingSession::finished, &window, [save](const QString& status) {
                std::printf("demo: %s\n", qPrintable(status));
                QTimer::singleShot(1000 / MonitorPage::maxReplotsPerSecond * 4, [save] { save(0); });
            });
            QObject::connect(session, &TrainingSession::failed, &window,
                             [save](const QString& message, const QString& hint) {
                                 std::fprintf(stderr, "demo failed: %s\n%s\n", qPrintable(message), qPrintable(hint));
                                 QTimer::singleShot(200, [save] { save(1); });
                             });
        }
    } else if (parser.isSet(shotOpt)) {
        // after the model has loaded (or failed), so the picture shows the result
        QObject::connect(controller.worker(), &EngineWorker::modelLoaded, &window,
                         [save] { QTimer::singleShot(200, [save] { save(0); }); });
        QObject::connect(controller.worker(), &EngineWorker::modelFailed, &window,
                         [save] { QTimer::singleShot(200, [save] { save(0); }); });
        if (dir.isEmpty()) QTimer::singleShot(500, [save] { save(0); });
    }
    return app.exec();
}
