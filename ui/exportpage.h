// ExportPage — export a run's checkpoint as a PEFT adapter or a merged Hugging Face model, off the GUI thread.
#pragma once

#include <QFutureWatcher>
#include <QString>
#include <QWidget>

#include <functional>

class QButtonGroup;
class QCheckBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QRadioButton;

// What one export produced (or why it did not); crosses from the worker thread by value.
struct ExportResult {
    bool ok = false;
    QString path;
    QString message;
    QString hint;
};

class ExportPage : public QWidget {
    Q_OBJECT
public:
    enum class Format { Peft, Merged };

    // Asked before an export into a folder that already holds files; true: replace its contents.
    using ConfirmOverwrite = std::function<bool(QWidget* parent, const QString& outputDir)>;

    explicit ExportPage(QWidget* parent = nullptr);
    ~ExportPage() override; // waits for a running export (the engine call cannot be interrupted)

    // The base model a run trained and one of its checkpoints (runs/<name>/checkpoints/step-N). Fills in the default
    // output folder (runs/<name>/exports/<format>-step-N) and, from runs/<name>/config.json when present, whether the
    // base was NF4 during training (a merge then folds the adapter into the dequantized NF4 weights, as trained).
    void setCheckpoint(const QString& modelDir, const QString& checkpointDir);

    Format format() const;
    void setFormat(Format f);
    QString outputDir() const;
    void setOutputDir(const QString& dir); // an explicit folder; setCheckpoint/format changes no longer replace it
    bool mergeIntoNf4() const;
    bool isRunning() const { return m_watcher.isRunning(); }
    QString resultPath() const { return m_resultPath; }
    QString statusText() const;
    // The question before overwriting (default: a QMessageBox, No preselected); tests inject their answer.
    void setOverwriteConfirmation(ConfirmOverwrite confirm);

public slots:
    void startExport();

signals:
    void exportStarted(const QString& outputDir);
    void exportFinished(const QString& path);
    void exportFailed(const QString& message, const QString& hint);

private:
    void updateDefaultOutput();
    void browseOutput();
    void openResultFolder();
    void finish();
    void showFailure(const QString& message, const QString& hint);
    void setBusy(bool busy);

    QString m_modelDir;
    QString m_checkpointDir;
    QString m_resultPath;
    bool m_outputEdited = false;
    ConfirmOverwrite m_confirmOverwrite;

    QLabel* m_model;
    QLabel* m_checkpoint;
    QRadioButton* m_peft;
    QRadioButton* m_merged;
    QButtonGroup* m_formatGroup;
    QCheckBox* m_nf4;
    QLineEdit* m_output;
    QPushButton* m_browse;
    QPushButton* m_export;
    QProgressBar* m_progress;
    QLabel* m_status;
    QLabel* m_result;
    QPushButton* m_openFolder;
    QFutureWatcher<ExportResult> m_watcher;
};
