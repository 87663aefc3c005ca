// Qt Test: `qlora-studio --demo --run-steps 30 --screenshot FILE` (under Xvfb when xvfb-run exists) trains the embedded demo and saves a picture whose charts show the run.
#include "testutil.h"

#include <QColor>
#include <QImage>
#include <QProcessEnvironment>
#include <QStandardPaths>

namespace {

// Pixels within `tol` (per channel) of `c`.
int count_near(const QImage& img, QColor c, int tol) {
    int n = 0;
    for (int y = 0; y < img.height(); ++y)
        for (int x = 0; x < img.width(); ++x) {
            const QColor p = img.pixelColor(x, y);
            if (std::abs(p.red() - c.red()) <= tol && std::abs(p.green() - c.green()) <= tol &&
                std::abs(p.blue() - c.blue()) <= tol)
                ++n;
        }
    return n;
}

// How many pixel columns hold at least one pixel within tol of c: a line's horizontal extent, whatever its slope.
int columns_near(const QImage& img, QColor c, int tol) {
    int n = 0;
    for (int x = 0; x < img.width(); ++x)
        for (int y = 0; y < img.height(); ++y) {
            const QColor p = img.pixelColor(x, y);
            if (std::abs(p.red() - c.red()) <= tol && std::abs(p.green() - c.green()) <= tol &&
                std::abs(p.blue() - c.blue()) <= tol) {
                ++n;
                break;
            }
        }
    return n;
}

struct shot {
    int exit_code = -1;
    QString out, err;
    QImage image;
};

shot take(const QString& dir, int steps) {
    const QString studio = QString(QLS_BIN_DIR) + "/qlora-studio";
    const QString png = dir + QString("/shot-%1.png").arg(steps);
    QStringList args = {"--demo", "--run-steps", QString::number(steps), "--screenshot", png};
    QString program = studio;
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    // the demo model is extracted into this cache, the window's settings start fresh and the runs go to the
    // per-user data folder under dir
    env.insert("XDG_CACHE_HOME", dir + "/cache");
    env.insert("XDG_DATA_HOME", dir + "/data");
    env.insert("XDG_CONFIG_HOME", dir + "/config");
    const QString xvfb = QStandardPaths::findExecutable("xvfb-run");
    if (!xvfb.isEmpty()) {
        args = QStringList{"-a", "-s", "-screen 0 1600x1000x24", studio} + args;
        program = xvfb;
        env.remove("QT_QPA_PLATFORM");
    } else {
        env.insert("QT_QPA_PLATFORM", "offscreen");
    }
    p.setProcessEnvironment(env);
    p.setWorkingDirectory(dir);
    p.start(program, args);
    shot s;
    if (!p.waitForStarted(10000)) {
        s.err = "could not start " + program;
        return s;
    }
    p.waitForFinished(240000);
    s.exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    s.out = QString::fromUtf8(p.readAllStandardOutput());
    s.err = QString::fromUtf8(p.readAllStandardError());
    s.image.load(png);
    return s;
}

} // namespace

class TestScreenshot : public QObject {
    Q_OBJECT
private slots:
    void demoRunScreenshotShowsTheCharts() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const shot s = take(dir.path(), 30);
        QVERIFY2(s.exit_code == 0, qPrintable(s.out + s.err));
        QVERIFY2(!s.image.isNull(), "no PNG was written");
        QVERIFY(s.image.width() >= 800 && s.image.height() >= 500);
        QVERIFY2(s.out.contains("completed 30 steps"), qPrintable(s.out + s.err));
        // The run is in the charts: the train-loss line (the Monitor's first palette colour, #1f77b4) and the
        // learning-rate line (#2ca02c, flat: the demo's schedule is constant) each span well over a hundred pixel
        // columns; their legend samples alone span a few dozen.
        const int loss_px = count_near(s.image, QColor(0x1f, 0x77, 0xb4), 24);
        const int lr_cols = columns_near(s.image, QColor(0x2c, 0xa0, 0x2c), 64);
        QVERIFY2(loss_px > 250, qPrintable(QString("train-loss line pixels: %1").arg(loss_px)));
        QVERIFY2(lr_cols > 120, qPrintable(QString("learning-rate line columns: %1").arg(lr_cols)));
        // and a run of 30 steps left its checkpoint
        const QString runs = dir.path() + "/data/QLoRA Studio/qlora-studio/runs";
        QVERIFY2(!QDir(runs).entryList(QDir::Dirs | QDir::NoDotAndDotDot).isEmpty(), qPrintable(runs));
    }
};

QTEST_GUILESS_MAIN(TestScreenshot)
#include "tst_ui_screenshot.moc"
