// LoadProgress: the bar's text is what the CLI prints (tensors, GB or MB, rate, seconds left), in one place for every page.
#include "loadprogress.h"

#include <QHBoxLayout>
#include <QProgressBar>
#include <QPushButton>

LoadProgress::LoadProgress(QWidget* parent) : QWidget(parent) {
    auto* row = new QHBoxLayout(this);
    row->setContentsMargins(0, 0, 0, 0);
    m_bar = new QProgressBar(this);
    m_bar->setRange(0, 1000);
    m_bar->setTextVisible(true);
    m_cancel = new QPushButton(tr("Cancel"), this);
    m_cancel->setToolTip(tr("Stop loading the model; nothing else changes"));
    row->addWidget(m_bar, 1);
    row->addWidget(m_cancel);
    connect(m_cancel, &QPushButton::clicked, this, [this] {
        m_cancel->setEnabled(false);
        m_bar->setFormat(tr("cancelling …"));
        emit cancelRequested();
    });
    hide();
}

int LoadProgress::permille() const { return m_bar->value(); }
QString LoadProgress::text() const { return m_bar->text(); }

void LoadProgress::start() {
    m_bar->setValue(0);
    m_bar->setFormat(tr("loading the model …"));
    m_cancel->setEnabled(true);
    show();
}

void LoadProgress::setProgress(qint64 tensorsDone, qint64 tensorsTotal, double bytesDone, double bytesTotal,
                               double seconds) {
    if (!m_cancel->isEnabled()) return; // cancelling: keep saying so
    const double frac = bytesTotal > 0     ? bytesDone / bytesTotal
                        : tensorsTotal > 0 ? double(tensorsDone) / double(tensorsTotal)
                                           : 0.0;
    const double rate = seconds > 0 ? bytesDone / seconds : 0.0; // bytes/s
    const double eta = rate > 0 ? (bytesTotal - bytesDone) / rate : 0.0;
    // GB for real checkpoints, MB below 1 GB (a test model would read "0.00 GB")
    const bool gb = bytesTotal >= 1e9;
    const double unit = gb ? 1e9 : 1e6;
    const QString u = gb ? QStringLiteral("GB") : QStringLiteral("MB");
    m_bar->setValue(int(frac * 1000.0 + 0.5));
    m_bar->setFormat(tr("tensors %1/%2 · %3 of %4 %5 · %6 %5/s · %7 s left")
                         .arg(tensorsDone)
                         .arg(tensorsTotal)
                         .arg(bytesDone / unit, 0, 'f', 2)
                         .arg(bytesTotal / unit, 0, 'f', 2)
                         .arg(u)
                         .arg(rate / unit, 0, 'f', 2)
                         .arg(eta, 0, 'f', 0));
    if (!isVisible()) show();
}

void LoadProgress::finish() { hide(); }
