// ModelPage — choose a Hugging Face model directory and see what it is (architecture, size, tokenizer check).
#pragma once

#include "modelinfo.h"

#include <QWidget>

class QLabel;
class QLineEdit;
class QPushButton;
class QFormLayout;

class ModelPage : public QWidget {
    Q_OBJECT
public:
    explicit ModelPage(QWidget* parent = nullptr);
    QString directory() const;
    void setDirectory(const QString& dir);

public slots:
    void showLoading(const QString& dir);
    void showModel(const ModelInfo& info);
    void showError(const QString& message, const QString& hint);

signals:
    void loadRequested(const QString& dir);

private:
    void browse();
    QLineEdit* m_path;
    QPushButton* m_load;
    QLabel* m_status;
    QFormLayout* m_form;
    QWidget* m_details;
};
