// PlanPage — predicted VRAM of a run before it starts: a stacked bar per category against the budget and the card, the verdict and what to change.
#pragma once

#include "qls/device.h"
#include "qls/memory_plan.h"
#include "qls/model_config.h"
#include "qls/run_plan.h"
#include "qls/train_config.h"

#include <QWidget>

#include <array>
#include <optional>

class QCPBars;
class QCustomPlot;
class QLabel;
class QTableWidget;

// The plan is the run's: qls::plan_run(model, qls::plan_settings_for(config, device)) for the device the run will use
// (the one plan path, run_plan.h); the controller hands it to the trainer when Start is pressed, so a run started
// here plans once. It is arithmetic over one table of tensor sizes (no allocation, no I/O), so it is computed on the
// GUI thread whenever an input changes. Its suggestions are found by re-planning variants (a bisection over the
// sequence length, ~30 plans); a 70B plan with every suggestion takes a few milliseconds (tests/tst_ui_setup.cpp
// measures it and fails above 50 ms).
class PlanPage : public QWidget {
    Q_OBJECT
public:
    explicit PlanPage(QWidget* parent = nullptr);

    // Everything the plan depends on: the run's settings (lora, micro_batch, seq_len, optimizer,
    // gradient_checkpointing, budget_gib, page_size), the model's dimensions (qls::load_model_config(dir +
    // "/config.json") or qls::shape_config("7b")) and the device the run will use (qls::choose_train_device; the CPU
    // backend by default: no card line, and a budget of 0 means no limit). Recomputes and redraws at once.
    void setInput(const qls::train_config& config, const qls::model_config& model, const qls::compute_device& device);
    void setTrainConfig(const qls::train_config& config);
    void setModelConfig(const qls::model_config& model);
    // Recomputes only when the device differs from the one planned for.
    void setDevice(const qls::compute_device& device);
    // The machine's RAM the plan checks host memory against; default (zeros): /proc/meminfo. Tests inject one.
    void setHostMemory(const qls::host_memory& host);
    const qls::compute_device& device() const { return m_device; }
    // No model yet: the page says so and draws nothing.
    void clearModel();
    // The Training page's settings do not pass its checks: no plan is shown (never the last valid one), only
    // "Settings invalid: <reason>"; the next setTrainConfig/setInput plans again.
    void setSettingsInvalid(const QString& reason);
    // The run's time before Start: seconds for the whole run and how it was found ("" when unknown: no estimate shown).
    void setTimeEstimate(double seconds, const QString& basis);
    QString timeEstimateText() const;
    // "about 5 s" ("" when there is no estimate).
    QString timeEstimateShort() const { return m_estimateShort; }
    // The unit the page shows bytes in for the plan on show: "MiB" below 1 GiB of peak, else "GiB".
    QString unit() const;

    // The plan on show (empty when there is no model or the settings are invalid).
    const std::optional<qls::memory_plan>& plan() const { return m_plan; }
    // The verdict line as shown ("Fits", "Fits with paging", "Does not fit", or why there is no plan).
    QString verdictText() const;
    // Each stacked bar's value in GiB, in qls::plan_category order (cuda_context last).
    std::array<double, qls::plan_category_count> barValuesGiB() const;

signals:
    // The plan was recomputed (also when it failed: plan() is then empty).
    void planChanged();

private:
    void recompute();
    void showPlan();
    void showNoPlan(const QString& why, bool error);

    qls::train_config m_config;
    std::optional<qls::model_config> m_model;
    qls::compute_device m_device;
    qls::host_memory m_host; // zeros: read /proc/meminfo when planning
    QString m_settingsError; // non-empty: the settings are invalid and nothing is planned
    QLabel* m_estimate;
    QString m_estimateShort;
    double m_unitBytes = double(1ull << 30); // the chart's and table's unit: 1 GiB, or 1 MiB for a small plan
    std::optional<qls::memory_plan> m_plan;

    QLabel* m_summary;
    QLabel* m_verdict;
    QLabel* m_explanation;
    QLabel* m_suggestions;
    QLabel* m_hostLabel; // host memory: what the run needs by category against the machine's RAM
    QCustomPlot* m_chart;
    std::array<QCPBars*, qls::plan_category_count> m_bars{};
    QTableWidget* m_table;
};
