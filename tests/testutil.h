// Helpers shared by the Qt Test suites: paths to the test model, temp dirs, running the CLI.
#pragma once

#include <QDir>
#include <QProcess>
#include <QString>
#include <QTemporaryDir>
#include <QtTest>

#include <string>

namespace testutil {

// ../shared/models/stories260K (configurable with -DQLS_TEST_MODEL_DIR).
inline std::string model_dir() { return QLS_TEST_MODEL_DIR; }

// Fails the current test with a clear message when the stories260K model is not where the build expects it.
#define QLS_REQUIRE_MODEL()                                                                                  \
    do {                                                                                                     \
        if (!QFileInfo::exists(QString::fromStdString(testutil::model_dir() + "/config.json")))              \
            QFAIL(qPrintable(QString("test model not found at %1 (configure with -DQLS_TEST_MODEL_DIR=...)") \
                                 .arg(QString::fromStdString(testutil::model_dir()))));                      \
    } while (0)

inline QString qlora_exe() { return QString(QLS_BIN_DIR) + "/qlora"; }

struct cli_result {
    int exit_code = -1;
    QString out;
    QString err;
};

// Runs `qlora args...`; waits up to timeout_ms.
inline cli_result run_cli(const QStringList& args, int timeout_ms = 600000) {
    QProcess p;
    p.start(qlora_exe(), args);
    cli_result r;
    if (!p.waitForStarted(10000)) {
        r.err = "could not start " + qlora_exe();
        return r;
    }
    p.waitForFinished(timeout_ms);
    r.exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    r.out = QString::fromUtf8(p.readAllStandardOutput());
    r.err = QString::fromUtf8(p.readAllStandardError());
    return r;
}

} // namespace testutil
