// DatasetPage — choose the training data, its format and prompt template, see rendered examples with their loss tokens, the length histogram and the validation split.
#pragma once

#include "qls/dataset_analysis.h"

#include <QFutureWatcher>
#include <QString>
#include <QStringList>
#include <QTextFormat>
#include <QWidget>

#include <memory>
#include <vector>

class QButtonGroup;
class QCPBars;
class QCheckBox;
class QComboBox;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QRadioButton;
class QTextDocument;
class QTextEdit;
class QTimer;

namespace qls {
struct train_config;
}

// What one analysis of the dataset settings found: qls::analyze_dataset's answer (built on a pool thread) in the
// page's types, shown on the GUI thread.
struct DatasetAnalysis {
    struct Example {
        QString source;            // "file:line"
        std::vector<int> ids;      // (L)
        std::vector<uint8_t> loss; // (L) 1 = a training target (the engine's loss mask)
        QStringList pieces;        // (L) each token as text
        bool truncated = false;
    };
    quint64 generation = 0;                                        // the request it answers; older answers are dropped
    qls::dataset_format format = qls::dataset_format::auto_detect; // as resolved (detected when auto)
    qls::chat_template tmpl = qls::chat_template::auto_select;     // as resolved
    bool formatKnown = false, templateKnown = false;
    bool tokenized = false;       // false without a model: records are read and checked, not tokenized
    size_t records = 0;           // usable records (before tokenization)
    std::vector<Example> preview; // the first DatasetPage::previewLimit examples, in file order
    qls::dataset_stats stats;     // of every example of the training file
    int seqLen = 0;               // the sequence length its examples were truncated to
    QStringList warnings;         // "file:line: problem" for every skipped record (engine's list)
    size_t trainExamples = 0, validationExamples = 0;
    QStringList validationWarnings;
    QString trainError;      // the training file cannot be used (missing, malformed, nothing usable)
    QString templateError;   // the template does not apply to the format
    QString validationError; // the validation file / fraction cannot be used
    QString modelError;      // the tokenizer could not be loaded
    std::shared_ptr<const qls::tokenizer> tokenizer; // loaded (or reused) for modelDir
    QString tokenizerDir;
    qint64 elapsedMs = 0;

    static DatasetAnalysis fromEngine(const qls::dataset_analysis& a, quint64 generation);
};

// Reading, rendering and tokenizing a whole file runs on Qt's thread pool (QtConcurrent), one analysis at a time;
// inputs that change meanwhile start one more analysis when it ends, and only the newest answer is shown. The
// preview holds the first previewLimit examples; the statistics and the histogram cover the whole file.
class DatasetPage : public QWidget {
    Q_OBJECT
public:
    static constexpr int previewLimit = 200;
    // Char-format properties of each token in previewDocument(): its index in the example and whether the engine's
    // loss mask trains it (the highlighted tokens).
    static constexpr int TokenIndexProperty = QTextFormat::UserProperty + 1;
    static constexpr int TokenLossProperty = QTextFormat::UserProperty + 2;

    explicit DatasetPage(QWidget* parent = nullptr);
    ~DatasetPage() override;

    // Writes data.train, data.validation, data.validation_fraction, data.format, data.template,
    // data.train_on_prompt and data.skip_malformed (packing is on the Training page).
    void applyTo(qls::train_config& c) const;
    // Shows those fields; also takes seq_len (truncation and histogram bins) and seed (the validation split).
    void loadFrom(const qls::train_config& c);
    // False with the reason when the data cannot be used as set (no file, a reading error, a template mismatch, a
    // bad validation setting); an analysis still running counts as usable.
    bool validate(QString* reason = nullptr) const;

    // The model whose tokenizer.model renders the examples; empty: formats are detected and records checked only.
    void setModelDir(const QString& dir);
    // The Training page's sequence length and seed.
    void setSeqLen(int seqLen);
    void setSeed(quint64 seed);

    bool isAnalyzing() const;
    const DatasetAnalysis& analysis() const { return m_result; }
    // Shows example `row` of the preview in previewDocument().
    void showExample(int row);
    QTextDocument* previewDocument() const;
    // The histogram as drawn: (bin centre in tokens, examples) per bin.
    QVector<QPair<double, double>> histogramBars() const;

    // Token colours of the preview: loss-carrying tokens alternate between the two lossColors, prompt tokens
    // between the promptColors, so token boundaries stay visible.
    static QColor lossColor(int parity);
    static QColor promptColor(int parity);

signals:
    void changed();
    // An analysis ended and its result is on show (analysis()).
    void analysisFinished();

private:
    void scheduleAnalysis();
    void startAnalysis();
    void onAnalysisDone();
    void showResult();
    void updateValidationControls();
    void setFieldError(QLabel* label, const QString& text);
    void browse(QLineEdit* edit, const QString& title);

    // inputs
    QLineEdit* m_trainFile;
    QComboBox* m_format;
    QComboBox* m_template;
    QCheckBox* m_trainOnPrompt;
    QCheckBox* m_skipMalformed;
    QRadioButton* m_valNone;
    QRadioButton* m_valFile;
    QRadioButton* m_valFraction;
    QLineEdit* m_validationFile;
    QDoubleSpinBox* m_validationFraction;
    QString m_modelDir;
    int m_seqLen = 512;
    quint64 m_seed = 42;
    // inline messages
    QLabel* m_trainError;
    QLabel* m_formatInfo;
    QLabel* m_templateInfo;
    QLabel* m_validationInfo;
    QLabel* m_status;
    // results
    QListWidget* m_examples;
    QTextEdit* m_preview;
    QLabel* m_previewNote;
    QCustomPlot* m_histogram;
    QCPBars* m_bars;
    QLabel* m_stats;
    QListWidget* m_problems;

    QTimer* m_debounce;
    QFutureWatcher<DatasetAnalysis>* m_watcher;
    quint64 m_generation = 0;
    bool m_running = false; // an analysis is on the pool (set at start, cleared when its answer arrives)
    bool m_rerun = false;
    bool m_loading = false;
    DatasetAnalysis m_result;
    std::shared_ptr<const qls::tokenizer> m_tokenizer;
    QString m_tokenizerDir;
};
