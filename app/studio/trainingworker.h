// TrainingWorker — a qls::trainer on the session's worker thread: builds the run, trains it, and reports by signals.
#pragma once

#include "qls/train_config.h"
#include "trainingsession.h" // qls::step_stats as a metatype

#include <QObject>
#include <QString>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

namespace qls {
class trainer;
struct train_callbacks;
}

class TrainingWorker : public QObject {
    Q_OBJECT
public:
    TrainingWorker();
    ~TrainingWorker() override;

    // Thread-safe: called from the GUI thread while run()/continueRun() trains on the worker thread. A request made
    // before the trainer exists (the model is still loading) is applied as soon as it does.
    void requestStop();
    void requestPause();
    void requestContinue();

    // Worker thread (invoked queued): the whole run, from loading the model to the last checkpoint.
    // plan: the Plan page's plan of this run, handed to qls::trainer::create (used there when it matches the run).
    void startRun(const qls::train_config& config, const std::optional<qls::memory_plan>& plan = std::nullopt);
    void continueRun(const QString& runDir);
    // Test hook: every later run's model load sleeps this long after each tensor (a slowed loader); 0 by default.
    static void setLoadDelayForTests(int msPerTensor);

signals:
    // The model load at the start of a run, after every tensor; a stop requested meanwhile cancels the load.
    void loadProgress(qint64 tensorsDone, qint64 tensorsTotal, double bytesDone, double bytesTotal, double seconds);
    void runStarted(qint64 totalSteps, const QString& runDir);
    void stepDone(const qls::step_stats& stats);
    void microStepDone(qint64 done, qint64 total);
    void logged(const QString& line);
    void runFinished(const QString& status, const QString& checkpointDir);
    void runFailed(const QString& message, const QString& hint);

private:
    using factory = std::function<std::unique_ptr<qls::trainer>(const qls::train_callbacks&)>;
    void execute(const factory& make);

    std::mutex m_mutex;                // guards m_trainer against the GUI thread's requests
    qls::trainer* m_trainer = nullptr; // the run being trained, owned by execute()
    std::atomic<bool> m_stop{false};
    std::atomic<bool> m_pause{false};
};
