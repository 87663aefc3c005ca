// RunsPage — the past runs under the runs folder (qls::list_runs: config.json, metrics.jsonl, checkpoints/step-N): open, resume, export, try.
#pragma once

#include <QDateTime>
#include <QList>
#include <QString>
#include <QStringList>
#include <QWidget>

#include <optional>

namespace qls {
struct run_info;
}

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

    bool complete() const { return totalSteps > 0 && lastStep >= totalSteps; }
    // A summary from the run directory's files (qls::read_run); problems go to `problem`, never an exception.
    static RunSummary read(const QString& dir);
    static RunSummary fromInfo(const qls::run_info& info);
};

class RunsPage : public QWidget {
    Q_OBJECT
public:
    explicit RunsPage(QWidget* parent = nullptr);
    QString runsDirectory() const;
    void setRunsDirectory(const QString& dir); // remembered in QSettings; refreshes the list
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
    QList<RunSummary> m_runs;
};
