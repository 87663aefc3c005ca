// FakeSession — a TrainingSession for the UI tests: plays scripted step_stats on a timer and records what reached it.
#pragma once

#include "trainingsession.h"

#include "qls/train_config.h"

#include <QTimer>
#include <QVector>

#include <cmath>
#include <optional>

class FakeSession : public TrainingSession {
public:
    // A deterministic run of n steps: falling loss, warmup + cosine learning rate, an evaluation every evalEvery
    // steps, the plan's categories, paging traffic on odd steps; cardBytes 0 is a CPU run (no card).
    static QVector<qls::step_stats> makeScript(int n, int evalEvery = 5, uint64_t cardBytes = 0) {
        QVector<qls::step_stats> v;
        int64_t tokensTotal = 0;
        for (int i = 1; i <= n; ++i) {
            qls::step_stats s;
            s.step = i;
            s.total_steps = n;
            s.epoch = double(i) / 10.0;
            s.loss = 1.0 + 3.0 * std::exp(-double(i) / 20.0);
            s.lr = i <= 3 ? 2e-4 * i / 3.0 : 2e-4 * 0.5 * (1 + std::cos(M_PI * (i - 3) / double(std::max(1, n - 3))));
            s.grad_norm = 0.5 + 0.01 * i;
            s.tokens = 512;
            tokensTotal += s.tokens;
            s.tokens_total = tokensTotal;
            s.step_time_s = 0.25 + 0.001 * i;
            s.tokens_per_s = double(s.tokens) / s.step_time_s;
            s.eta_s = s.step_time_s * double(n - i);
            s.plan_bytes = {{"quantized_weights", 3ull << 30}, {"frozen_weights", 1ull << 29},
                            {"lora_weights", 160ull << 20},    {"lora_grads", 160ull << 20},
                            {"optimizer_resident", 0},         {"optimizer_paged", 320ull << 20},
                            {"activations", 2ull << 30},       {"logits_loss", 256ull << 20},
                            {"workspace", 128ull << 20},       {"cuda_context", 600ull << 20}};
            s.device_used_bytes = (6ull << 30) + uint64_t(i) * (1ull << 20);
            s.device_peak_bytes = s.device_used_bytes;
            s.device_total_bytes = cardBytes;
            s.paging_h2d_bytes = i % 2 ? uint64_t(i) * 1000000 : 0;
            s.paging_d2h_bytes = i % 2 ? uint64_t(i) * 500000 : 0;
            s.resident_pages = 40 + uint64_t(i % 7);
            s.total_pages = 64;
            s.offload_d2h_bytes = uint64_t(i) * 2000000; // a run that offloads its checkpoints: out in the forward,
            s.offload_h2d_bytes = uint64_t(i) * 1500000; // back in the backward
            if (evalEvery > 0 && i % evalEvery == 0) s.eval_loss = s.loss + 0.1;
            v.push_back(s);
        }
        return v;
    }

    explicit FakeSession(QObject* parent = nullptr) : TrainingSession(parent) {
        QObject::connect(&m_timer, &QTimer::timeout, this, [this] { playNext(); });
    }

    // the script and its pace
    QVector<qls::step_stats> script = makeScript(20);
    int intervalMs = 0;
    QString runDir = "/tmp/fake-runs/fake";

    // what reached the session
    int startCount = 0, continueCount = 0, pauseCount = 0, resumeCount = 0, stopCount = 0;
    std::optional<qls::train_config> lastConfig;
    std::optional<qls::memory_plan> lastPlan;
    QString lastContinued;
    int played() const { return m_next; }

    void start(const qls::train_config& config, const std::optional<qls::memory_plan>& plan = std::nullopt) override {
        ++startCount;
        lastConfig = config;
        lastPlan = plan;
        begin();
    }
    void continueRun(const QString& dir) override {
        ++continueCount;
        lastContinued = dir;
        runDir = dir;
        begin();
    }
    void pause() override {
        ++pauseCount;
        if (state() != State::Running) return;
        m_timer.stop();
        setState(State::Paused);
    }
    void resume() override {
        ++resumeCount;
        if (state() != State::Paused) return;
        setState(State::Running);
        m_timer.start(intervalMs);
    }
    void stopAndSave() override {
        ++stopCount;
        if (!isActive() || state() == State::Stopping) return;
        m_timer.stop();
        setState(State::Stopping);
        // like the engine: the current step ends, a checkpoint of the last completed one is written
        QTimer::singleShot(intervalMs, this, [this] {
            end(QString("stopped at step %1 of %2; checkpoint saved").arg(m_next).arg(script.size()));
        });
    }

private:
    void begin() {
        if (isActive()) {
            emit failed("A run is already in progress.", "Stop it first.");
            return;
        }
        m_next = 0;
        setState(State::Starting);
        QTimer::singleShot(0, this, [this] {
            if (state() != State::Starting) return;
            setState(State::Running);
            emit started(script.size(), runDir);
            m_timer.start(intervalMs);
        });
    }
    void playNext() {
        if (m_next >= script.size()) return;
        const qls::step_stats& s = script[m_next++];
        emit stepStats(s);
        if (s.eval_loss) emit evalLoss(s.step, *s.eval_loss);
        if (m_next == script.size()) {
            m_timer.stop();
            end(QString("completed %1 steps").arg(script.size()));
        }
    }
    void end(const QString& status) {
        setState(State::Idle);
        emit finished(status, m_next > 0 ? QString("%1/checkpoints/step-%2").arg(runDir).arg(m_next) : QString());
    }

    QTimer m_timer;
    int m_next = 0;
};
