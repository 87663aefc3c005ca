// TrainingWorker: the one catch site for training errors in the studio; telemetry leaves as queued signals.
#include "trainingworker.h"

#include "qls/error.h"
#include "qls/trainer.h"

#include <new>

TrainingWorker::TrainingWorker() = default;
TrainingWorker::~TrainingWorker() = default;

void TrainingWorker::requestStop() {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_stop = true;
    if (m_trainer) m_trainer->request_stop();
}

void TrainingWorker::requestPause() {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_pause = true;
    if (m_trainer) m_trainer->request_pause();
}

void TrainingWorker::requestContinue() {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_pause = false;
    if (m_trainer) m_trainer->request_continue();
}

void TrainingWorker::startRun(const qls::train_config& config, const std::optional<qls::memory_plan>& plan) {
    execute([config, plan](const qls::train_callbacks& cb) { return qls::trainer::create(config, cb, plan); });
}

void TrainingWorker::continueRun(const QString& runDir) {
    const std::string dir = runDir.toStdString();
    execute([dir](const qls::train_callbacks& cb) { return qls::trainer::resume(dir, cb); });
}

namespace {
std::atomic<int> g_loadDelayMs{0};
} // namespace

void TrainingWorker::setLoadDelayForTests(int msPerTensor) { g_loadDelayMs = msPerTensor; }

void TrainingWorker::execute(const factory& make) {
    std::unique_ptr<qls::trainer> t;
    qls::train_callbacks cb;
    // The model load: progress to the Monitor's bar; a stop while loading cancels it between two tensors.
    cb.on_load = [this](const qls::load_progress& p) {
        emit loadProgress(p.tensors_done, p.tensors_total, double(p.bytes_done), double(p.bytes_total), p.seconds);
    };
    cb.cancel_load = &m_stop;
    cb.load_test_delay_ms = g_loadDelayMs.load();
    cb.on_step = [this](const qls::step_stats& s) {
        // trainer::run() clears its stop flag when it begins: a stop that arrived in that window is repeated here
        if (m_stop && m_trainer) m_trainer->request_stop();
        emit stepDone(s);
    };
    cb.on_log = [this](const std::string& line) { emit logged(QString::fromStdString(line)); };
    try {
        t = make(cb);
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_trainer = t.get();
            if (m_pause) t->request_pause();
        }
        // gradient accumulation: each micro-batch of a step reports its place, so a long step shows progress
        // (the trainer calls the hook before micro-batch `index` of the next step; evaluation batches are skipped)
        if (const int accum = t->config().grad_accum; accum > 1)
            t->batch_hook = [this, accum](bool evaluation, int index) {
                if (!evaluation && index > 0) emit microStepDone(index, accum);
            };
        const QString runDir = QString::fromStdString(t->run_dir());
        emit runStarted(t->total_steps(), runDir);
        if (m_stop) {
            // stopped while the model was loading: nothing was trained, so there is nothing to save
            std::lock_guard<std::mutex> lock(m_mutex);
            m_trainer = nullptr;
            t.reset();
            m_stop = false;
            m_pause = false;
            emit runFinished(tr("stopped before the first step"),
                             QString::fromStdString(qls::latest_checkpoint(runDir.toStdString())));
            return;
        }
        const qls::train_outcome outcome = t->run(cb);
        const qint64 step = t->step(), total = t->total_steps();
        const std::string divergence = t->divergence_message();
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_trainer = nullptr;
        }
        t.reset(); // frees the model and optimizer before anyone starts the next run
        m_stop = false;
        m_pause = false;
        const QString checkpoint = QString::fromStdString(qls::latest_checkpoint(runDir.toStdString()));
        switch (outcome) {
        case qls::train_outcome::completed: emit runFinished(tr("completed %1 steps").arg(total), checkpoint); break;
        case qls::train_outcome::stopped:
            emit runFinished(tr("stopped at step %1 of %2; checkpoint saved").arg(step).arg(total), checkpoint);
            break;
        case qls::train_outcome::diverged:
            emit runFailed(QString::fromStdString(divergence),
                           tr("Lower the learning rate on the Training page or keep gradient clipping on, then "
                              "resume the last good checkpoint from the Runs page."));
            break;
        }
        return;
    } catch (const qls::error& e) {
        if (e.code() == qls::error_code::cancelled)
            emit runFinished(tr("cancelled while loading the model"), QString());
        else emit runFailed(QString::fromStdString(e.what()), QString::fromStdString(e.hint()));
    } catch (const std::bad_alloc&) {
        emit runFailed(tr("out of memory while training"),
                       tr("Lower the sequence length or the micro-batch on the Training page, or turn gradient "
                          "checkpointing on."));
    } catch (const std::exception& e) {
        emit runFailed(QString::fromStdString(e.what()), QString());
    }
    std::lock_guard<std::mutex> lock(m_mutex);
    m_trainer = nullptr;
    m_stop = false;
    m_pause = false;
}
