// MainWindow: navigation list + stacked pages; geometry and the last page are kept in QSettings.
#include "mainwindow.h"

#include "modelpage.h"
#include "playgroundpage.h"

#include <QCloseEvent>
#include <QHBoxLayout>
#include <QListWidget>
#include <QSettings>
#include <QStackedWidget>
#include <QStatusBar>

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    setWindowTitle(tr("QLoRA Studio"));
    auto* central = new QWidget(this);
    auto* layout = new QHBoxLayout(central);
    m_nav = new QListWidget(central);
    m_nav->setFixedWidth(160);
    m_stack = new QStackedWidget(central);
    layout->addWidget(m_nav);
    layout->addWidget(m_stack, 1);
    setCentralWidget(central);

    m_modelPage = new ModelPage(m_stack);
    m_playgroundPage = new PlaygroundPage(m_stack);
    m_stack->addWidget(m_modelPage);
    m_stack->addWidget(m_playgroundPage);
    m_nav->addItem(tr("Model"));
    m_nav->addItem(tr("Playground"));
    connect(m_nav, &QListWidget::currentRowChanged, m_stack, &QStackedWidget::setCurrentIndex);

    statusBar()->showMessage(tr("CPU reference backend"));
    QSettings s;
    restoreGeometry(s.value("window/geometry").toByteArray());
    if (!s.contains("window/geometry")) resize(1100, 700);
    m_nav->setCurrentRow(qBound(0, s.value("window/page", 0).toInt(), m_nav->count() - 1));
}

void MainWindow::showPage(int index) { m_nav->setCurrentRow(index); }

void MainWindow::closeEvent(QCloseEvent* event) {
    QSettings s;
    s.setValue("window/geometry", saveGeometry());
    s.setValue("window/page", m_nav->currentRow());
    QMainWindow::closeEvent(event);
}
