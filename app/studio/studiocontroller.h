// StudioController — lives on the GUI thread: owns the engine worker thread and the training session, wires the pages to them.
#pragma once

#include "qls/device.h"
#include "qls/model_config.h"
#include "qls/train_config.h"

#include "engineworker.h" // StepTiming
#include "runlock.h"

#include <QObject>
#include <QString>
#include <QThread>
#include <QTimer>

#include <memory>
#include <optional>

class EngineWorker;
class MainWindow;
class TrainingSession;

namespace qls {
struct train_config;
}

class StudioController : public QObject {
    Q_OBJECT
public:
    // session: the training session to drive (tests pass a fake); nullptr creates the engine's (EngineSession).
    explicit StudioController(MainWindow* window, TrainingSession* session = nullptr, QObject* parent = nullptr);
    ~StudioController() override; // stops a running generation, then quits and joins the worker thread

    // The user's model (the Model page, --model): clears what the demo left (its data, Playground output, adapter).
    void loadModel(const QString& dir);
    EngineWorker* worker() const { return m_worker; }
    TrainingSession* session() const { return m_session; }
    const qls::gpu_probe& gpu() const { return m_gpu; }

    // The run the pages describe (model, dataset, training settings, runs folder, run name); false with the reason,
    // naming the page and the field, when something is missing or out of range.
    bool buildConfig(qls::train_config* config, QString* reason) const;
    // The Monitor's Start: buildConfig, then the session starts it with the Plan page's plan when that plan is this
    // run's (so the run plans once), or the Monitor shows why not.
    void startTraining();
    // The device a run of this configuration trains on (qls::choose_train_device with the studio's GPU probe and the
    // loaded model's head size); the CPU when the configuration asks for a GPU there is not (the run then says why).
    qls::compute_device runDevice(const qls::train_config& config);

    // The demo: the bundled model and story dataset with small settings, `steps` optimizer steps.
    struct DemoPaths {
        QString model;
        QString train;
        QString validation;
    };
    static bool demoPaths(DemoPaths* paths, QString* error);
    static constexpr int k_demoSteps = 40; // as resources/examples/demo.run.json
    static qls::train_config demoConfig(const DemoPaths& paths, int steps, const QString& runsDir);
    void startDemo(int steps);
    // The time a CPU run of this configuration takes by a measured warm-up (Plan page, the demo's promise): its set-up,
    // steps × (accumulation micro-batches + an update), and its evaluations (trainer.cpp: every eval_every steps and at
    // the end, eval_batches forward passes each). cpu: from the warm-up's process CPU seconds instead of wall-clock.
    static double estimateRunSeconds(const qls::train_config& config, const StepTiming& t, bool cpu = false);
    // What the studio promises for that run: the estimate plus a margin for what the warm-up does not see (the charts
    // redrawn after every step on the same cores, telemetry and metrics.jsonl, the run's closing checkpoint, a
    // machine busier than during the warm-up): k_promiseFactor × estimate + k_promiseExtraSeconds.
    static constexpr double k_promiseFactor = 1.25;
    static constexpr double k_promiseExtraSeconds = 5.0;
    static double promiseSeconds(double estimateSeconds);
    // The demo promise's warm-up, once measured at start-up (nullopt before, or when the demo is not offered).
    std::optional<StepTiming> demoTiming() const { return m_demoTiming; }

    // The Runs page's actions.
    void openRun(const QString& runDir);
    // Refused (the Monitor says why) when the run is being trained by this or another studio (RunLock).
    void resumeRun(const QString& runDir);
    // The run this studio trains now holds this lock ("" when none).
    QString lockedRun() const { return m_runLock.lockedRun(); }
    // Loads the checkpoint's adapter as the Playground's adapter side (and the run's base model, when another one is
    // loaded), then shows the Playground. A run that finishes with a checkpoint loads it the same way, staying put.
    void tryRunInPlayground(const QString& runDir, const QString& checkpointDir);
    void exportRun(const QString& runDir, const QString& checkpointDir);
    // The base model a run trained (its config.json), "" when unreadable.
    static QString runModelDir(const QString& runDir);

signals:
    void loadRequested(const QString& dir);
    void runLoadRequested(const QString& runDir, const QString& checkpointDir);

private:
    void loadAdapter(const QString& runDir, const QString& checkpointDir);
    void loadModelFor(const QString& dir, bool demo);
    void clearDemoLeftovers(bool data);
    void syncPlan();
    void scheduleEstimate();
    void measureDemo();
    void restoreLastChoices();
    void rememberChoices(const qls::train_config& config) const;

    MainWindow* m_window;
    QThread m_thread;
    EngineWorker* m_worker;
    TrainingSession* m_session;
    qls::gpu_probe m_gpu;
    std::optional<qls::model_config> m_modelConfig; // the loaded model's dimensions (for the run's device)
    QString m_currentRunDir;
    RunLock m_runLock;                    // the run this studio trains (no other studio resumes it meanwhile)
    std::optional<DemoPaths> m_demoPaths; // the demo's files, once the demo has run (its leftovers are cleared)
    QTimer m_estimateTimer;               // a measured warm-up after the settings rest for a moment
    quint64 m_estimateKey = 0;            // the newest measurement asked for (older answers are dropped)
    quint64 m_demoKey = 0;                // the demo promise's measurement
    std::optional<StepTiming> m_demoTiming;
    std::optional<qls::train_config> m_estimateConfig;
    bool m_adapterLoading = false; // the worker's load in progress is a run's (Playground), not the Model page's
};
