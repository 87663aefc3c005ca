// Helpers shared by the Qt Test suites: paths to the test model, temp dirs, running the CLI.
#pragma once

#include <QDir>
#include <QProcess>
#include <QString>
#include <QTemporaryDir>
#include <QtTest>

#include "qls/error.h"
#include "qls/train_config.h"

#include <functional>
#include <string>
#include <vector>

namespace testutil {

// True in an AddressSanitizer build (QLS_SANITIZE): shadow memory and the freed-memory quarantine inflate resident
// memory, so bounds on peak RSS measure ASan there, not the code; those checks print their figure and skip the bound.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool k_asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool k_asan = true;
#else
inline constexpr bool k_asan = false;
#endif
#else
inline constexpr bool k_asan = false;
#endif

// ../shared/models/stories260K (configurable with -DQLS_TEST_MODEL_DIR).
inline std::string model_dir() { return QLS_TEST_MODEL_DIR; }

// Fails the current test with a clear message when the stories260K model is not where the build expects it.
#define QLS_REQUIRE_MODEL()                                                                                  \
    do {                                                                                                     \
        if (!QFileInfo::exists(QString::fromStdString(testutil::model_dir() + "/config.json")))              \
            QFAIL(qPrintable(QString("test model not found at %1 (configure with -DQLS_TEST_MODEL_DIR=...)") \
                                 .arg(QString::fromStdString(testutil::model_dir()))));                      \
    } while (0)

// The Pip corpus in datasets/ (training and validation files).
inline std::string pip_train() {
    return std::string(QLS_SOURCE_DIR) + "/datasets/stories/pip_the_lighthouse_mouse.txt";
}
inline std::string pip_val() {
    return std::string(QLS_SOURCE_DIR) + "/datasets/stories/pip_the_lighthouse_mouse.val.txt";
}

// A run named `name` in runs_dir `runs`: stories260K on the Pip corpus (training and validation files); every other
// field is train_config's default, for the suite to set.
inline qls::train_config pip_run(const std::string& runs, const std::string& name) {
    qls::train_config c;
    c.name = name;
    c.runs_dir = runs;
    c.model = model_dir();
    c.train_file = pip_train();
    c.validation_file = pip_val();
    return c;
}

// Runs f, which must throw qls::error with `code`, a hint and a message containing every part (and, when max_chars
// > 0, no longer than that); returns "" or what went wrong.
inline std::string expect_error(const std::function<void()>& f, qls::error_code code,
                                const std::vector<std::string>& parts, size_t max_chars = 0) {
    try {
        f();
    } catch (const qls::error& e) {
        const std::string msg = e.what();
        if (e.code() != code)
            return std::string("expected code ") + qls::error_code_name(code) + ", got " +
                   qls::error_code_name(e.code()) + ": " + msg;
        for (const std::string& p : parts)
            if (msg.find(p) == std::string::npos) return "message lacks \"" + p + "\": " + msg;
        if (e.hint().empty()) return "no hint: " + msg;
        if (max_chars > 0 && msg.size() > max_chars)
            return "message longer than " + std::to_string(max_chars) + " characters";
        return "";
    } catch (const std::exception& e) {
        return std::string("not a qls::error: ") + e.what();
    }
    return "no error was thrown";
}

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
