// TrainingSession — the interface the studio's pages drive a training run through (the engine in app/, a fake in tests/).
//
// Protocol (reference/anchors-aesthetics.md §7.8 habit 14): every method is called on the GUI thread and returns at
// once; the work happens elsewhere and comes back as the signals below, emitted on the GUI thread, carrying values only.
// A run goes Idle → Starting → Running ⇄ Paused → Stopping → Idle; started() comes once the run is built, then one
// stepStats() per optimizer step, and exactly one of finished() or failed() ends it.
#pragma once

#include "qls/memory_plan.h"
#include "qls/telemetry.h"

#include <QMetaType>
#include <QObject>
#include <QString>

#include <optional>

namespace qls {
struct train_config;
}

Q_DECLARE_METATYPE(qls::step_stats)

class TrainingSession : public QObject {
    Q_OBJECT
public:
    enum class State { Idle, Starting, Running, Paused, Stopping };
    Q_ENUM(State)

    explicit TrainingSession(QObject* parent = nullptr);

    State state() const { return m_state; }
    // True from start() until finished() or failed(): a run exists that closing the window would interrupt.
    bool isActive() const { return m_state != State::Idle; }
    static QString stateName(State s);

    // A new run from a complete configuration (the pages' values); refused with failed() when a run is active.
    // plan: the run's plan as the Plan page computed it (qls::plan_run for this configuration and device); the trainer
    // uses it when it matches the run (qls::plan_matches), so the run is planned once; empty: the trainer plans.
    virtual void start(const qls::train_config& config, const std::optional<qls::memory_plan>& plan = std::nullopt) = 0;
    // Continues runs_dir/<name> from its newest checkpoint (the Runs page's Resume).
    virtual void continueRun(const QString& runDir) = 0;
    // Holds the run between two steps; resume() lets it go on. Both are no-ops in the wrong state.
    virtual void pause() = 0;
    virtual void resume() = 0;
    // Ends the run after the current step and writes a checkpoint of the last completed step.
    virtual void stopAndSave() = 0;

signals:
    void stateChanged(TrainingSession::State state);
    // The model load at the start of a run, after every tensor (stopAndSave during it cancels the load).
    void loadProgress(qint64 tensorsDone, qint64 tensorsTotal, double bytesDone, double bytesTotal, double seconds);
    void started(qint64 totalSteps, const QString& runDir);
    void stepStats(const qls::step_stats& stats);
    // With gradient accumulation: `done` of the `total` micro-batches of the step in progress have been computed.
    void microStep(qint64 done, qint64 total);
    void evalLoss(qint64 step, double loss);
    void logLine(const QString& line);
    // status is a sentence for people ("completed 80 steps"); checkpointDir is the newest checkpoint ("" when none).
    void finished(const QString& status, const QString& checkpointDir);
    // message names what went wrong (file, field); hint says what to do about it.
    void failed(const QString& message, const QString& hint);

protected:
    void setState(State s);

private:
    State m_state = State::Idle;
};
