// ModelPage — choose a Hugging Face model directory or a GGUF file and see what it is (architecture, size, tokenizer check).
#pragma once

#include "modelinfo.h"

#include <QWidget>

class QLabel;
class QLineEdit;
class QPushButton;
class QFormLayout;
class LoadProgress;

class ModelPage : public QWidget {
    Q_OBJECT
public:
    explicit ModelPage(QWidget* parent = nullptr);
    QString directory() const;
    LoadProgress* loadProgress() const { return m_progress; }
    void setDirectory(const QString& dir);
    // The text of a row of the loaded model's description ("Format", "Family", "Tokenizer", "Chat template", ...);
    // empty when there is no such row.
    QString field(const QString& label) const;

public slots:
    void showLoading(const QString& dir);
    void showModel(const ModelInfo& info);
    void showError(const QString& message, const QString& hint);
    // Load progress (from the engine worker): the bar, tensors n/N, GB read, rate and time left.
    void showProgress(qint64 tensorsDone, qint64 tensorsTotal, double bytesDone, double bytesTotal, double seconds);
    // The load was cancelled: the bar goes, Load is back, the status says so.
    void showCancelled();

signals:
    void loadRequested(const QString& dir);
    void cancelRequested(); // Cancel pressed during a load

private:
    void browse();     // a Hugging Face directory
    void browseGguf(); // a .gguf file
    QLineEdit* m_path;
    QPushButton* m_load;
    LoadProgress* m_progress;
    QLabel* m_status;
    QFormLayout* m_form;
    QWidget* m_details;
};
