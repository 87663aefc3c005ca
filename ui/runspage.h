// RunsPage — the past runs under the runs folder (qls::list_runs: config.json, metrics.jsonl, checkpoints/step-N): open, resume, export, try.
#pragma once

#include <QDateTime>
#include <QList>
#include <QString>
#include <QStringList>
#include <QWidget>

#include "qls/telemetry.h"

#include <functional>
#include <optional>
#include <vector>

namespace qls {
struct run_info;
}

class QComboBox;
class QCustomPlot;
class QFileSystemWatcher;
class QLabel;
class QLineEdit;
class QPushButton;
class QTreeWidget;

// What the Runs page knows about one run directory: qls::run_info (the engine's run catalog) in the page's types.
struct RunSummary {
    QString dir; // absolute path of runs/<name>
    QString name;
    QString model; // from config.json
    QString trainFile;
    QDateTime modified;  // newest of config.json and metrics.jsonl
    qint64 lastStep = 0; // from the last line of metrics.jsonl
    qint64 totalSteps = 0;
    std::optional<double> lastLoss;
    std::optional<double> lastEvalLoss;
    QList<qint64> checkpointSteps; // complete checkpoints (checkpoints/step-N with trainer_state.json), ascending
    QString latestCheckpoint;      // its directory, "" when none
    QString problem;               // why the directory is not a usable run, "" when it is
    // hyperparameters from config.json (0 when it cannot be read)
    int rank = 0;
    double learningRate = 0;
    int seqLen = 0;
    int rowsPerStep = 0; // micro-batch × accumulation
    bool locked = false; // a studio is training it now (RunLock)
    QString lockHolder;

    bool complete() const { return totalSteps > 0 && lastStep >= totalSteps; }
    // A summary from the run directory's files (qls::read_run); problems go to `problem`, never an exception.
    static RunSummary read(const QString& dir);
    static RunSummary fromInfo(const qls::run_info& info);
};

class RunsPage : public QWidget {
    Q_OBJECT
public:
    explicit RunsPage(QWidget* parent = nullptr);
    // The per-user default: <AppDataLocation>/runs (e.g. ~/.local/share/QLoRA Studio/qlora-studio/runs).
    static QString defaultRunsDirectory();
    // Always absolute (a relative entry is taken relative to the current folder once, when entered).
    QString runsDirectory() const;
    void setRunsDirectory(const QString& dir); // remembered in QSettings; refreshes the list
    // Selects several runs (their loss curves overlay in the comparison chart); false when one is not listed.
    bool selectRuns(const QStringList& runDirs);
    QStringList selectedRuns() const;
    // The comparison chart: one loss curve per selected run, named by the run.
    QStringList comparedRuns() const;
    QCustomPlot* comparisonChart() const { return m_compare; }
    // The checkpoint the Export and Playground buttons use (the newest by default); "" when none.
    QString chosenCheckpoint() const;
    bool chooseCheckpoint(qint64 step);
    // Deletes the selected run's folder after the question (replaceable in tests; true = delete). A run being
    // trained (locked) is refused. False with the reason in *why.
    bool deleteSelected(QString* why = nullptr);
    void setDeleteQuestion(std::function<bool(const QString& runName)> ask) { m_deleteQuestion = std::move(ask); }
    // Reads a run's metrics.jsonl for the comparison chart (the controller passes the engine's reader).
    using MetricsReader = std::function<std::vector<qls::step_stats>(const QString& runDir)>;
    void setMetricsReader(MetricsReader reader) {
        m_metricsReader = std::move(reader);
        updateComparison();
    }
    const QList<RunSummary>& runs() const { return m_runs; }
    QString selectedRun() const;
    bool selectRun(const QString& runDir);
    QString statusText() const;

public slots:
    void refresh();

signals:
    // The controller reads the run's metrics.jsonl and redraws it on the Monitor page.
    void openRequested(const QString& runDir);
    // Continue the run from its newest checkpoint.
    void resumeRequested(const QString& runDir);
    // Export (PEFT adapter, merged model) from this checkpoint.
    void exportRequested(const QString& runDir, const QString& checkpointDir);
    // Try the run's model with this checkpoint's adapter in the Playground.
    void playgroundRequested(const QString& runDir, const QString& checkpointDir);
    // The runs folder changed (the Monitor shows it).
    void runsDirectoryChanged(const QString& dir);

private:
    void browse();
    void updateSelection();
    const RunSummary* current() const;

    QLineEdit* m_dir;
    QPushButton* m_browse;
    QPushButton* m_refresh;
    QTreeWidget* m_list;
    QLabel* m_details;
    QPushButton* m_open;
    QPushButton* m_resume;
    QPushButton* m_export;
    QPushButton* m_playground;
    QPushButton* m_delete;
    QComboBox* m_checkpoint;
    QCustomPlot* m_compare;
    QFileSystemWatcher* m_watcher;
    std::function<bool(const QString&)> m_deleteQuestion;
    MetricsReader m_metricsReader;
    QList<RunSummary> m_runs;
    void updateComparison();
};
