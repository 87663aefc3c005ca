// EngineSession — the real TrainingSession: qls::trainer on its own QThread (a TrainingWorker), telemetry as queued signals.
#pragma once

#include "trainingsession.h"

#include <QThread>

class TrainingWorker;

class EngineSession : public TrainingSession {
    Q_OBJECT
public:
    explicit EngineSession(QObject* parent = nullptr);
    // Asks a running run to stop (it saves a checkpoint of its last completed step), then quits and joins the thread.
    ~EngineSession() override;

    void start(const qls::train_config& config, const std::optional<qls::memory_plan>& plan = std::nullopt) override;
    void continueRun(const QString& runDir) override;
    void pause() override;
    void resume() override;
    void stopAndSave() override;

    QString runDir() const { return m_runDir; }

private:
    bool refuseWhenActive();
    QThread m_thread;
    TrainingWorker* m_worker;
    QString m_runDir;
    bool m_pauseRequested = false;
};
