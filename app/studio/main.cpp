// qlora-studio — the desktop application's entry point: options, main window, controller, optional screenshot.
#include "mainwindow.h"
#include "qls/device.h"
#include "engineworker.h"
#include "studiocontroller.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QIcon>
#include <QStatusBar>
#include <QSettings>
#include <QTimer>

#include <cstdio>

int main(int argc, char** argv) {
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
    QCommandLineOption shotOpt("screenshot", "Save a screenshot of the window to FILE once the model is loaded, then exit.",
                               "file");
    parser.addOption(modelOpt);
    parser.addOption(shotOpt);
    parser.process(app);

    MainWindow window;
    StudioController controller(&window);
    // the device line: a GPU, or why the CPU reference backend is used (never a crash without a driver)
    window.statusBar()->showMessage(QString::fromStdString(qls::probe_gpu().message));
    window.show();

    QString dir = parser.value(modelOpt);
    if (dir.isEmpty()) dir = QSettings().value("model/lastDir").toString();
    if (!dir.isEmpty()) controller.loadModel(dir);

    if (parser.isSet(shotOpt)) {
        const QString file = parser.value(shotOpt);
        auto save = [&window, file] {
            const bool ok = window.grab().save(file);
            std::fprintf(ok ? stdout : stderr, ok ? "saved %s\n" : "could not save %s\n", qPrintable(file));
            QApplication::exit(ok ? 0 : 1);
        };
        // after the model has loaded (or failed), so the picture shows the result
        QObject::connect(controller.worker(), &EngineWorker::modelLoaded, &window, [save] { QTimer::singleShot(200, save); });
        QObject::connect(controller.worker(), &EngineWorker::modelFailed, &window, [save] { QTimer::singleShot(200, save); });
        if (dir.isEmpty()) QTimer::singleShot(500, save);
    }
    return app.exec();
}
