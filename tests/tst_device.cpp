// The device probe and the no-GPU path: on a machine without a GPU or driver the engine and CLI say so and fall
// back to the CPU backend; with a GPU, `qlora check-gpu` runs and passes.
#include "testutil.h"

#include "qls/device.h"
#include "qls/error.h"
#include "qls/gpu_checks.h"

class TestDevice : public QObject {
    Q_OBJECT

private slots:
    void probeNeverThrowsAndExplains() {
        const qls::gpu_probe p = qls::probe_gpu();
        QVERIFY(!p.message.empty());
        if (!p.available) {
            QVERIFY2(QString::fromStdString(p.message).contains("CPU reference backend"), p.message.c_str());
            QCOMPARE(p.device_count, 0);
        } else {
            QVERIFY(p.built_with_cuda);
            QVERIFY(p.total_bytes > 0);
        }
    }

    void checksRefuseWithoutAGpu() {
        if (qls::probe_gpu().available) QSKIP("a GPU is present: covered by cliCheckGpu");
        try {
            qls::run_gpu_op_checks(1);
            QFAIL("expected an error");
        } catch (const qls::error& e) {
            QCOMPARE(e.code(), qls::error_code::device);
            QVERIFY(!e.hint().empty());
        }
    }

    void cliDevicesAndCheckGpu() {
        const qls::gpu_probe p = qls::probe_gpu();
        auto d = testutil::run_cli({"devices"});
        QCOMPARE(d.exit_code, 0);
        QCOMPARE(d.out.trimmed(), QString::fromStdString(p.message));
        auto c = testutil::run_cli({"check-gpu", "--seed", "5"});
        if (p.available) {
            QVERIFY2(c.exit_code == 0, qPrintable(c.out + c.err));
            QVERIFY(c.out.contains("0 failed"));
        } else {
            QCOMPARE(c.exit_code, 1);
            QVERIFY(c.out.contains("CPU reference backend"));
        }
        // --only picks parts (one part a compute-sanitizer call); a wrong one is refused before any GPU work
        auto bad = testutil::run_cli({"check-gpu", "--only", "ops,kernels"});
        QCOMPARE(bad.exit_code, 2);
        QVERIFY2(bad.err.contains("--only: 'kernels' is not a part of check-gpu") &&
                     bad.err.contains("ops, decode, generate, finetune, families"),
                 qPrintable(bad.err));
        auto nomodel = testutil::run_cli({"check-gpu", "--only", "finetune"});
        QCOMPARE(nomodel.exit_code, 2);
        QVERIFY2(nomodel.err.contains("--model DIR --text FILE"), qPrintable(nomodel.err));
        auto ops = testutil::run_cli({"check-gpu", "--only", "ops", "--seed", "5"});
        if (p.available) {
            QVERIFY2(ops.exit_code == 0, qPrintable(ops.out + ops.err));
            QVERIFY(ops.out.contains("0 failed") && !ops.out.contains("nf4_gemv")); // no decode rows
        } else {
            QCOMPARE(ops.exit_code, 1);
        }
    }
};

QTEST_APPLESS_MAIN(TestDevice)
#include "tst_device.moc"
