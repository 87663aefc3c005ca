// ExportPage — export any checkpoint of a run as a PEFT adapter, a merged Hugging Face model, a LoRA adapter GGUF or
// a merged GGUF (llama.cpp, Ollama), off the GUI thread, with progress, the files' sizes and the commands to run them.
#pragma once

#include <QFutureWatcher>
#include <QString>
#include <QStringList>
#include <QWidget>

#include <functional>

class QButtonGroup;
class QCheckBox;
class QComboBox;
class QPlainTextEdit;
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
    QStringList files;    // "path\tbytes" of each file written (GGUF formats)
    QStringList commands; // how to run the export in llama.cpp and Ollama (GGUF formats)
};

class ExportPage : public QWidget {
    Q_OBJECT
public:
    enum class Format { Peft, Merged, GgufAdapter, Gguf };

    // Asked before an export into a folder that already holds files; true: replace its contents.
    using ConfirmOverwrite = std::function<bool(QWidget* parent, const QString& outputDir)>;

    explicit ExportPage(QWidget* parent = nullptr);
    ~ExportPage() override; // waits for a running export (the engine call cannot be interrupted)

    // The base model a run trained and one of its checkpoints (runs/<name>/checkpoints/step-N). Fills in the default
    // output folder (runs/<name>/exports/<format>-step-N) and, from runs/<name>/config.json when present, whether the
    // base was NF4 during training (a merge then folds the adapter into the dequantized NF4 weights, as trained).
    // The checkpoint picker then lists every checkpoint of that run (newest first), the given one selected.
    void setCheckpoint(const QString& modelDir, const QString& checkpointDir);
    QString checkpointDir() const { return m_checkpointDir; }
    QStringList checkpointChoices() const;               // the picker's folders, newest first
    void chooseCheckpoint(const QString& checkpointDir); // one of checkpointChoices()

    Format format() const;
    void setFormat(Format f);
    QString outputDir() const;
    void setOutputDir(const QString& dir); // an explicit folder; setCheckpoint/format changes no longer replace it
    bool mergeIntoNf4() const;
    QString ggufQuant() const; // "f16", "bf16", "q8_0", "q4_0", "q4_k_m"
    void setGgufQuant(const QString& quant);
    QString adapterDtype() const; // "f32" or "f16"
    void setAdapterDtype(const QString& dtype);
    QStringList resultFiles() const { return m_resultFiles; } // "path\tbytes"
    QString commandsText() const;                             // the run commands shown
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
    QStringList m_resultFiles;
    bool m_outputEdited = false;
    ConfirmOverwrite m_confirmOverwrite;

    QLabel* m_model;
    QLabel* m_checkpoint;
    QRadioButton* m_peft;
    QRadioButton* m_merged;
    QRadioButton* m_ggufAdapter;
    QRadioButton* m_gguf;
    QButtonGroup* m_formatGroup;
    QCheckBox* m_nf4;
    QComboBox* m_checkpoints;
    QComboBox* m_quant;
    QComboBox* m_dtype;
    QLabel* m_files;
    QPlainTextEdit* m_commands;
    QLineEdit* m_output;
    QPushButton* m_browse;
    QPushButton* m_export;
    QProgressBar* m_progress;
    QLabel* m_status;
    QLabel* m_result;
    QPushButton* m_openFolder;
    QFutureWatcher<ExportResult> m_watcher;
};
