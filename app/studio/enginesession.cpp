// EngineSession: GUI-thread façade over the TrainingWorker; requests go down as atomics or queued calls, results come up as queued signals.
#include "enginesession.h"

#include "trainingworker.h"

#include "qls/train_config.h"

#ifdef Q_OS_LINUX
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

EngineSession::EngineSession(QObject* parent) : TrainingSession(parent) {
    m_thread.setObjectName("training");
    m_worker = new TrainingWorker;
    m_worker->moveToThread(&m_thread);
    connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
#ifdef Q_OS_LINUX
    // Training is background work: one nice level below the GUI thread (inherited by the OpenMP threads this thread
    // starts) keeps the window responsive when the training threads take every core. Throughput is unchanged when
    // nothing else wants the CPU.
    connect(&m_thread, &QThread::started, m_worker, [] { setpriority(PRIO_PROCESS, id_t(syscall(SYS_gettid)), 5); });
#endif

    connect(m_worker, &TrainingWorker::runStarted, this, [this](qint64 total, const QString& dir) {
        m_runDir = dir;
        if (state() == State::Starting) setState(m_pauseRequested ? State::Paused : State::Running);
        emit started(total, dir);
    });
    connect(m_worker, &TrainingWorker::stepDone, this, [this](const qls::step_stats& s) {
        emit stepStats(s);
        if (s.eval_loss) emit evalLoss(s.step, *s.eval_loss);
    });
    connect(m_worker, &TrainingWorker::logged, this, &TrainingSession::logLine);
    connect(m_worker, &TrainingWorker::microStepDone, this, &TrainingSession::microStep);
    connect(m_worker, &TrainingWorker::loadProgress, this, &TrainingSession::loadProgress);
    connect(m_worker, &TrainingWorker::runFinished, this, [this](const QString& status, const QString& checkpoint) {
        m_pauseRequested = false;
        setState(State::Idle);
        emit finished(status, checkpoint);
    });
    connect(m_worker, &TrainingWorker::runFailed, this, [this](const QString& message, const QString& hint) {
        m_pauseRequested = false;
        setState(State::Idle);
        emit failed(message, hint);
    });
    m_thread.start();
}

EngineSession::~EngineSession() {
    m_worker->requestContinue();
    m_worker->requestStop();
    m_thread.quit();
    m_thread.wait();
}

bool EngineSession::refuseWhenActive() {
    if (!isActive()) return false;
    emit failed(tr("A run is already in progress (%1).").arg(stateName(state())),
                tr("Stop it with Stop and save on the Monitor page before starting another."));
    return true;
}

void EngineSession::start(const qls::train_config& config, const std::optional<qls::memory_plan>& plan) {
    if (refuseWhenActive()) return;
    m_pauseRequested = false;
    m_runDir.clear();
    setState(State::Starting);
    TrainingWorker* w = m_worker;
    QMetaObject::invokeMethod(
        m_worker, [w, config, plan] { w->startRun(config, plan); }, Qt::QueuedConnection);
}

void EngineSession::continueRun(const QString& runDir) {
    if (refuseWhenActive()) return;
    m_pauseRequested = false;
    m_runDir = runDir;
    setState(State::Starting);
    TrainingWorker* w = m_worker;
    QMetaObject::invokeMethod(
        m_worker, [w, runDir] { w->continueRun(runDir); }, Qt::QueuedConnection);
}

void EngineSession::pause() {
    if (state() != State::Running && state() != State::Starting) return;
    m_pauseRequested = true;
    m_worker->requestPause();
    if (state() == State::Running) setState(State::Paused);
}

void EngineSession::resume() {
    if (state() != State::Paused && !(state() == State::Starting && m_pauseRequested)) return;
    m_pauseRequested = false;
    m_worker->requestContinue();
    if (state() == State::Paused) setState(State::Running);
}

void EngineSession::stopAndSave() {
    if (state() == State::Idle || state() == State::Stopping) return;
    m_worker->requestStop();
    setState(State::Stopping);
}
