// MonitorPage — a run as it trains (or a past run from the Runs page): loss, learning rate, throughput, memory and paging charts, progress and the step log.
#pragma once

#include "trainingsession.h" // qls::step_stats as a metatype

#include <QStringList>
#include <QTimer>
#include <QVector>
#include <QWidget>

#include <array>
#include <functional>

class LearningRateChart;
class LossChart;
class MemoryChart;
class MonitorChart;
class PagingChart;
class QCPGraph;
class QCheckBox;
class QCustomPlot;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class LoadProgress;
class QPushButton;

// The charts are ui/charts/ classes (one QCustomPlot each); the page keeps the run's steps, feeds every chart and
// redraws them together on one coalescing timer.
class MonitorPage : public QWidget {
    Q_OBJECT
public:
    enum Chart { LossChart, LearningRateChart, ThroughputChart, MemoryChart, PagingChart, ChartCount };
    // The fixed series (the memory chart's stacked plan categories come from the run: memoryCategoryGraphs()).
    enum Series {
        TrainLoss,
        EvalLoss,
        LearningRate,
        TokensPerSecond,
        MemoryMeasured,
        MemoryBudget,
        MemoryCard,
        PagingHostToDevice,
        PagingDeviceToHost,
        ResidentPages,
        CheckpointsHostToDevice, // offloaded gradient checkpoints (memory_plan.h checkpoint_offload)
        CheckpointsDeviceToHost,
        SeriesCount
    };
    // At most this many replots a second, however fast steps arrive (the charts are redrawn on a coalescing timer,
    // less often when drawing them is slow).
    static constexpr int maxReplotsPerSecond = 30;

    explicit MonitorPage(QWidget* parent = nullptr);

    // Connects the session's signals to this page and its buttons to the session (Pause, Resume, Stop and save).
    void setSession(TrainingSession* session);
    TrainingSession* session() const { return m_session; }
    // The name of the next run (its directory under the runs folder); empty = the controller picks one.
    QString runName() const;
    void setRunName(const QString& name);
    // The VRAM budget the run was given (a line on the memory chart), as the run's plan holds it
    // (memory_plan::settings.budget_bytes); 0 = none.
    void setBudgetBytes(quint64 bytes);

    const QVector<qls::step_stats>& history() const { return m_history; }
    QCustomPlot* chart(Chart c) const;
    MonitorChart* chartWidget(Chart c) const { return m_charts[size_t(c)]; }
    QCPGraph* graph(Series s) const { return m_series[size_t(s)]; }
    QList<QCPGraph*> memoryCategoryGraphs() const;
    QStringList memoryCategories() const;
    QString chartTitle(Chart c) const;
    QString progressText() const;
    int progressValue() const;
    int progressMaximum() const;
    QString logText() const;
    QString runTitle() const;
    int replotCount() const { return m_replotCount; }
    bool logScale() const;
    void setLogScale(bool on);
    // Chart export; false with a message naming the file and the cause.
    bool saveChartPng(Chart c, const QString& file, QString* error = nullptr) const;
    bool exportCsv(const QString& file, QString* error = nullptr) const;
    static QString formatDuration(double seconds);
    // One step's line in the step log ("step 3/80  loss 2.1234  lr ...").
    static QString stepLine(const qls::step_stats& s);

    // The keyboard's Start / Pause-or-Resume / Stop: the same as the buttons, and nothing when they are disabled.
    void triggerStart();
    void togglePause();
    void triggerStop();
    // A failure shown from an earlier Start (no model, a refused setting) is dropped once the choice changes.
    void clearStaleStatus();
    // The runs folder line above the run ("Runs folder: /home/.../runs").
    void setRunsFolder(const QString& dir);
    QString runsFolderText() const;
    // "about 5 s": the Plan page's estimate for the next run, on the runs folder line ("" hides it).
    void setNextRunEstimate(const QString& text);
    // Puts failure messages in the pages' words (run.json keys → field names); the controller passes the Training
    // page's translation.
    void setMessageWords(std::function<QString(const QString&)> words);
    // The status under the run's headline ("" when hidden) and the headline itself.
    QString statusText() const;

public slots:
    // A run has begun: clears the charts unless runDir is the run already shown (a resumed run goes on drawing).
    void beginRun(qint64 totalSteps, const QString& runDir);
    void addStats(const qls::step_stats& stats);
    void addLogLine(const QString& line);
    void showFinished(const QString& status, const QString& checkpointDir);
    void showFailed(const QString& message, const QString& hint);
    // Redraws a past run (metrics.jsonl read by the controller) without a session.
    void showRun(const QString& runDir, const QVector<qls::step_stats>& history);
    // Gradient accumulation: `done` of `total` micro-batches of the step in progress have passed.
    void addMicroStep(qint64 done, qint64 total);

signals:
    // Start was pressed: the controller assembles the configuration from the pages and starts the session.
    void startRequested();

protected:
    void showEvent(QShowEvent* event) override;

public:
    LoadProgress* loadProgress() const { return m_loadProgress; }

private:
    void rebuildCharts();
    void clearCharts();
    void markDirty();
    void replotNow();
    void adaptReplotInterval();
    void updateButtons();
    void updateProgress();
    void updateTitles();
    void contextMenu(Chart c, const QPoint& pos);
    void saveChartInteractive(Chart c);
    void exportCsvInteractive();
    void setStatus(const QString& html);

    TrainingSession* m_session = nullptr;
    ::LossChart* m_loss;
    ::LearningRateChart* m_learningRate;
    ::MemoryChart* m_memory;
    ::PagingChart* m_paging;
    std::array<MonitorChart*, ChartCount> m_charts{};
    std::array<QCPGraph*, SeriesCount> m_series{};

    QVector<qls::step_stats> m_history;
    QString m_runDir;
    qint64 m_totalSteps = 0;

    QTimer m_replotTimer;
    bool m_dirty = false;
    int m_replotCount = 0;
    QStringList m_pendingLog;

    QLineEdit* m_runName;
    QPushButton* m_start;
    QPushButton* m_pause;
    QPushButton* m_resume;
    QPushButton* m_stop;
    QPushButton* m_savePng;
    QPushButton* m_saveCsv;
    QCheckBox* m_logScale;
    QLabel* m_runLabel;
    QLabel* m_runsFolder;
    QString m_runsFolderPath, m_nextRunEstimate;
    std::function<QString(const QString&)> m_words;
    void updateRunsFolderLine();
    enum class Ended { None, Completed, Stopped, Failed };
    Ended m_ended = Ended::None; // how the run on show ended (its progress line then shows no ETA)
    qint64 m_microDone = 0, m_microTotal = 0;
    QLabel* m_status;
    QProgressBar* m_progress;
    QLabel* m_progressLabel;
    LoadProgress* m_loadProgress; // the model load at the start of a run (Cancel stops the run)
    QPlainTextEdit* m_log;
};
