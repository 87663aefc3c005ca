// MainWindow: navigation list + stacked pages; geometry, the last page and the demo offer; a run is stopped and saved before closing.
#include "mainwindow.h"

#include "datasetpage.h"
#include "exportpage.h"
#include "modelpage.h"
#include "monitorpage.h"
#include "planpage.h"
#include "playgroundpage.h"
#include "runspage.h"
#include "trainingpage.h"
#include "trainingsession.h"

#include <QCloseEvent>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QStackedWidget>
#include <QStatusBar>
#include <QTimer>
#include <QVBoxLayout>

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    setWindowTitle(tr("QLoRA Studio"));
    auto* central = new QWidget(this);
    auto* outer = new QVBoxLayout(central);

    m_demoBanner = new QWidget(central);
    auto* banner = new QHBoxLayout(m_demoBanner);
    banner->setContentsMargins(8, 4, 8, 4);
    m_demoBanner->setAutoFillBackground(true);
    QPalette pal = m_demoBanner->palette();
    pal.setColor(QPalette::Window, QColor(0xe8, 0xf1, 0xfb));
    m_demoBanner->setPalette(pal);
    auto* bannerText = new QLabel(tr("<b>No model chosen yet.</b> Try the demo: a tiny LLaMA-shaped model (4 layers, "
                                     "built into the studio) learns a small story corpus in under a minute, with every "
                                     "chart live."),
                                  m_demoBanner);
    bannerText->setWordWrap(true);
    auto* demoButton = new QPushButton(tr("Run the demo"), m_demoBanner);
    demoButton->setToolTip(tr("Load the bundled demo model and dataset, fill in small settings and start training; "
                              "the Monitor page shows the run"));
    banner->addWidget(bannerText, 1);
    banner->addWidget(demoButton);
    outer->addWidget(m_demoBanner);
    m_demoBanner->hide();
    connect(demoButton, &QPushButton::clicked, this, &MainWindow::demoRequested);

    auto* row = new QHBoxLayout;
    m_nav = new QListWidget(central);
    m_nav->setFixedWidth(150);
    m_nav->setToolTip(tr("The steps of a fine-tuning run, in order; Runs lists the past ones"));
    m_stack = new QStackedWidget(central);
    row->addWidget(m_nav);
    row->addWidget(m_stack, 1);
    outer->addLayout(row, 1);
    outer->setContentsMargins(4, 4, 4, 0);
    setCentralWidget(central);

    m_modelPage = new ModelPage(m_stack);
    m_datasetPage = new DatasetPage(m_stack);
    m_trainingPage = new TrainingPage(m_stack);
    m_planPage = new PlanPage(m_stack);
    m_monitorPage = new MonitorPage(m_stack);
    m_exportPage = new ExportPage(m_stack);
    m_playgroundPage = new PlaygroundPage(m_stack);
    m_runsPage = new RunsPage(m_stack);
    addPage(Page::Model, m_modelPage, tr("Model"), tr("Choose the base model to fine-tune"));
    addPage(Page::Dataset, m_datasetPage, tr("Dataset"), tr("Choose the training data and see how it is tokenized"));
    addPage(Page::Training, m_trainingPage, tr("Training"), tr("LoRA, optimizer, schedule, batch and device settings"));
    addPage(Page::Plan, m_planPage, tr("Plan"), tr("Whether the run fits in memory, and why, before it starts"));
    addPage(Page::Monitor, m_monitorPage, tr("Monitor"), tr("Start, pause and stop the run; live charts"));
    addPage(Page::Export, m_exportPage, tr("Export"), tr("Save a checkpoint as a PEFT adapter or a merged model"));
    addPage(Page::Playground, m_playgroundPage, tr("Playground"), tr("Generate text with the model"));
    addPage(Page::Runs, m_runsPage, tr("Runs"), tr("Past runs: reopen, resume, export, try"));
    connect(m_nav, &QListWidget::currentRowChanged, m_stack, &QStackedWidget::setCurrentIndex);

    statusBar()->showMessage(tr("CPU reference backend"));
    QSettings s;
    restoreGeometry(s.value("window/geometry").toByteArray());
    restoreState(s.value("window/state").toByteArray());
    if (!s.contains("window/geometry")) resize(1280, 800);
    m_nav->setCurrentRow(qBound(0, s.value("window/page", 0).toInt(), m_nav->count() - 1));
}

void MainWindow::addPage(Page page, QWidget* widget, const QString& title, const QString& tooltip) {
    m_stack->addWidget(widget);
    auto* item = new QListWidgetItem(title, m_nav);
    item->setToolTip(tooltip);
    m_pages << page;
}

void MainWindow::showPage(Page page) {
    const int i = m_pages.indexOf(page);
    if (i >= 0) m_nav->setCurrentRow(i);
}

MainWindow::Page MainWindow::currentPage() const {
    const int i = m_stack->currentIndex();
    return i >= 0 && i < m_pages.size() ? m_pages[i] : Page::Model;
}

void MainWindow::setSession(TrainingSession* session) {
    m_session = session;
    if (!session) return;
    auto maybeClose = [this] {
        if (m_closeWhenStopped) QTimer::singleShot(0, this, &QWidget::close);
    };
    connect(session, &TrainingSession::finished, this, maybeClose);
    connect(session, &TrainingSession::failed, this, maybeClose);
}

void MainWindow::setDemoOffered(bool offered) { m_demoBanner->setVisible(offered); }
bool MainWindow::demoOffered() const { return !m_demoBanner->isHidden(); }

void MainWindow::saveState() {
    QSettings s;
    s.setValue("window/geometry", saveGeometry());
    s.setValue("window/state", QMainWindow::saveState());
    s.setValue("window/page", m_nav->currentRow());
}

void MainWindow::closeEvent(QCloseEvent* event) {
    if (m_session && m_session->isActive()) {
        if (!m_closeWhenStopped) {
            const bool stop = m_closeQuestion
                                  ? m_closeQuestion()
                                  : QMessageBox::question(this, tr("A run is in progress"),
                                                          tr("Stop the run after its current step, save a checkpoint "
                                                             "(it can be resumed from the Runs page) and close?"),
                                                          QMessageBox::Yes | QMessageBox::Cancel,
                                                          QMessageBox::Cancel) == QMessageBox::Yes;
            if (!stop) {
                event->ignore();
                return;
            }
            m_closeWhenStopped = true;
            m_session->stopAndSave();
            statusBar()->showMessage(
                tr("Stopping the run and saving a checkpoint; the window closes when it is saved…"));
        }
        event->ignore(); // closes once the session reports finished() or failed()
        return;
    }
    saveState();
    QMainWindow::closeEvent(event);
}
