// LoadProgress — a model load's progress bar (tensors n/N, GB read, rate, time left) with a Cancel button; hidden when idle.
#pragma once

#include <QWidget>

class QProgressBar;
class QPushButton;

class LoadProgress : public QWidget {
    Q_OBJECT
public:
    explicit LoadProgress(QWidget* parent = nullptr);
    int permille() const; // 0..1000, for tests
    QString text() const; // the bar's text

public slots:
    void start(); // shown, empty, Cancel enabled
    void setProgress(qint64 tensorsDone, qint64 tensorsTotal, double bytesDone, double bytesTotal, double seconds);
    void finish(); // hidden

signals:
    void cancelRequested(); // Cancel pressed (the button then disables itself until the next start)

private:
    QProgressBar* m_bar;
    QPushButton* m_cancel;
};
