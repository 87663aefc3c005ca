// Helpers the studio's UI suites (tests/tst_ui_*.cpp) share: widgets found by their text or field key, the test models, run folders written as the trainer leaves them.
#pragma once

#include "testutil.h"

#include "engineworker.h"
#include "studiocontroller.h"

#include "qls/train_config.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QString>
#include <QTest>

namespace ui_testutil {

// The first push button below w whose text is exactly `text`; nullptr when there is none.
inline QPushButton* button(QWidget* w, const QString& text) {
    for (QPushButton* b : w->findChildren<QPushButton*>())
        if (b->text() == text) return b;
    return nullptr;
}

// The input of the Training page's field with this run.json key ("training.seq_len"): each field's message label is
// named "error:<key>" and its input sits beside it in the same cell; nullptr when there is none.
template <class Input> Input* fieldInput(QWidget* page, const QString& key) {
    QLabel* error = page->findChild<QLabel*>("error:" + key);
    return error ? error->parentWidget()->findChild<Input*>() : nullptr;
}
inline QSpinBox* spinFor(QWidget* page, const QString& key) { return fieldInput<QSpinBox>(page, key); }

// The stories260K test model folder (QLS_TEST_MODEL_DIR), absolute.
inline QString modelDir() { return QFileInfo(QString::fromStdString(testutil::model_dir())).absoluteFilePath(); }

// SmolLM2-135M-Instruct as a Q4_1 GGUF file, next to the test model.
inline QString smollmGguf() {
    return QFileInfo(modelDir() + "/../smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf").absoluteFilePath();
}

// Loads dir through the controller as the Model page does and waits up to timeoutMs for the worker's answer: true
// when the model loaded, false when it failed or did not answer in time.
inline bool loadModelAndWait(StudioController& c, const QString& dir, int timeoutMs = 30000) {
    QSignalSpy loaded(c.worker(), &EngineWorker::modelLoaded);
    QSignalSpy failed(c.worker(), &EngineWorker::modelFailed);
    c.loadModel(dir);
    if (!QTest::qWaitFor([&] { return !loaded.isEmpty() || !failed.isEmpty(); }, timeoutMs)) return false;
    return loaded.count() == 1;
}

// Writes bytes to path, making its folder; a failure fails the calling test.
inline void writeFile(const QString& path, const QByteArray& bytes) {
    QDir().mkpath(QFileInfo(path).absolutePath());
    QFile f(path);
    QVERIFY2(f.open(QIODevice::WriteOnly), qPrintable(path));
    QCOMPARE(f.write(bytes), qint64(bytes.size()));
}

// root/tiny/config.json (the test model, trained in NF4 as runs are by default) and root/tiny/checkpoints/step-1/
// holding tests/data/peft/reference_adapter; returns the run directory, "" when a file could not be written.
inline QString makeAdapterRun(const QString& root) {
    const QString run = root + "/tiny";
    const QString ckpt = run + "/checkpoints/step-1";
    if (!QDir().mkpath(ckpt)) return QString();
    qls::train_config c;
    c.name = "tiny";
    c.runs_dir = root.toStdString();
    c.model = modelDir().toStdString();
    c.train_file = (root + "/train.txt").toStdString();
    c.quantize_nf4 = true;
    c.double_quant = true;
    QFile f(run + "/config.json");
    if (!f.open(QIODevice::WriteOnly)) return QString();
    f.write(QByteArray::fromStdString(qls::train_config_to_json(c)));
    f.close();
    const QString adapter = QString(QLS_SOURCE_DIR) + "/tests/data/peft/reference_adapter";
    for (const char* name : {"adapter_config.json", "adapter_model.safetensors"})
        if (!QFile::copy(adapter + "/" + name, ckpt + "/" + name)) return QString();
    return run;
}

} // namespace ui_testutil
