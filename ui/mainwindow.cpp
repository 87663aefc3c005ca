// MainWindow: navigation list + stacked pages; geometry, the last page and the demo offer; a run is stopped and saved before closing.
#include "mainwindow.h"

#include "datasetpage.h"
#include "exportpage.h"
#include "modelpage.h"
#include "monitorpage.h"
#include "planpage.h"
#include "playgroundpage.h"
#include "runspage.h"
#include "studiostate.h"
#include "trainingpage.h"
#include "trainingsession.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDialog>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QListWidget>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QStackedWidget>
#include <QStatusBar>
#include <QStyle>
#include <QTableWidget>
#include <QTimer>
#include <QVBoxLayout>

#include <cmath>

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent), m_state(new StudioState(this)) {
    setWindowTitle(tr("QLoRA Studio"));
    setMinimumSize(minimumWidth, minimumHeight);
    auto* central = new QWidget(this);
    auto* outer = new QVBoxLayout(central);

    m_demoBanner = new QWidget(central);
    auto* banner = new QHBoxLayout(m_demoBanner);
    banner->setContentsMargins(8, 4, 8, 4);
    m_demoBanner->setAutoFillBackground(true);
    m_demoBanner->setBackgroundRole(QPalette::AlternateBase);
    auto* bannerText = new QLabel(tr("<b>No model chosen yet.</b> Try the demo: a tiny LLaMA-shaped model (4 layers, "
                                     "built into the studio) learns a small story corpus, with every chart live."),
                                  m_demoBanner);
    bannerText->setObjectName("demoPromise");
    m_demoText = bannerText;
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
    m_nav->setFixedWidth(170);
    m_nav->setIconSize(QSize(20, 20));
    m_nav->setSpacing(2);
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
    addPage(Page::Export, m_exportPage, tr("Export"),
            tr("Save a checkpoint as a PEFT adapter, a merged model or GGUF for llama.cpp and Ollama"));
    addPage(Page::Playground, m_playgroundPage, tr("Playground"), tr("Generate text with the model"));
    addPage(Page::Runs, m_runsPage, tr("Runs"), tr("Past runs: reopen, resume, export, try"));
    connect(m_nav, &QListWidget::currentRowChanged, m_stack, &QStackedWidget::setCurrentIndex);

    // the marks and the status line follow the session state and the pages' own checks
    m_statusLine = new QLabel(statusBar());
    m_statusLine->setObjectName("statusSummary");
    statusBar()->addPermanentWidget(m_statusLine);
    connect(m_state, &StudioState::changed, this, &MainWindow::refreshMarks);
    connect(m_datasetPage, &DatasetPage::changed, this, &MainWindow::refreshMarks);
    connect(m_datasetPage, &DatasetPage::analysisFinished, this, &MainWindow::refreshMarks);
    connect(m_trainingPage, &TrainingPage::changed, this, &MainWindow::refreshMarks);
    connect(m_planPage, &PlanPage::planChanged, this, &MainWindow::refreshMarks);
    createActions();
    refreshMarks();

    statusBar()->showMessage(tr("CPU reference backend"));
    QSettings s;
    restoreGeometry(s.value("window/geometry").toByteArray());
    restoreState(s.value("window/state").toByteArray());
    if (!s.contains("window/geometry")) resize(1280, 800);
    m_nav->setCurrentRow(qBound(0, s.value("window/page", 0).toInt(), m_nav->count() - 1));
}

namespace {

// Each page's icon: the platform style's standard icons, so they follow the theme and the palette.
QStyle::StandardPixmap pageIcon(MainWindow::Page page) {
    using P = MainWindow::Page;
    switch (page) {
    case P::Model: return QStyle::SP_DriveHDIcon;
    case P::Dataset: return QStyle::SP_FileDialogDetailedView;
    case P::Training: return QStyle::SP_FileDialogInfoView;
    case P::Plan: return QStyle::SP_FileDialogContentsView;
    case P::Monitor: return QStyle::SP_MediaPlay;
    case P::Export: return QStyle::SP_DialogSaveButton;
    case P::Playground: return QStyle::SP_MessageBoxInformation;
    case P::Runs: return QStyle::SP_DirOpenIcon;
    }
    return QStyle::SP_FileIcon;
}

} // namespace

void MainWindow::addPage(Page page, QWidget* widget, const QString& title, const QString& tooltip) {
    m_stack->addWidget(widget);
    const int n = m_pages.size() + 1;
    auto* item = new QListWidgetItem(style()->standardIcon(pageIcon(page)), title, m_nav);
    item->setToolTip(tr("%1 (Ctrl+%2)").arg(tooltip).arg(n));
    item->setSizeHint(QSize(0, 30));
    m_pages << page;
    m_titles << title;
}

MainWindow::Mark MainWindow::pageMark(Page page) const {
    switch (page) {
    case Page::Model:
        if (m_state->modelLoading()) return Mark::Busy;
        if (!m_state->modelError().isEmpty()) return Mark::Attention;
        return m_state->modelConfig() ? Mark::Done : Mark::Attention;
    case Page::Dataset:
        if (m_datasetPage->isAnalyzing()) return Mark::Busy;
        return m_datasetPage->validate(nullptr) ? Mark::Done : Mark::Attention;
    case Page::Training: return m_trainingPage->validate(nullptr) ? Mark::Done : Mark::Attention;
    case Page::Plan: {
        if (!m_planPage->plan()) return Mark::Attention;
        const QString v = m_planPage->verdictText();
        return v.startsWith(tr("Does not fit")) ? Mark::Attention : Mark::Done;
    }
    case Page::Monitor:
        switch (m_state->runState()) {
        case StudioState::RunState::Starting:
        case StudioState::RunState::Running:
        case StudioState::RunState::Stopping: return Mark::Busy;
        case StudioState::RunState::Paused: return Mark::Attention;
        case StudioState::RunState::Finished:
        case StudioState::RunState::Stopped: return Mark::Done;
        case StudioState::RunState::Failed: return Mark::Attention;
        case StudioState::RunState::None: return Mark::None;
        }
        return Mark::None;
    case Page::Export:
    case Page::Playground:
    case Page::Runs: return Mark::None;
    }
    return Mark::None;
}

QString MainWindow::pageTitle(Page page) const {
    const int i = m_pages.indexOf(page);
    return i >= 0 ? m_nav->item(i)->text() : QString();
}

void MainWindow::refreshMarks() {
    for (int i = 0; i < m_pages.size(); ++i) {
        QListWidgetItem* item = m_nav->item(i);
        const Mark mark = pageMark(m_pages[i]);
        QString text = m_titles[i];
        QColor colour = palette().color(QPalette::Text);
        switch (mark) {
        case Mark::Done:
            text += QStringLiteral("  ✓");
            colour = QColor(0x1b, 0x7f, 0x3b);
            break;
        case Mark::Attention:
            text += QStringLiteral("  ⚠");
            colour = QColor(0xb3, 0x6b, 0x00);
            break;
        case Mark::Busy: text += QStringLiteral("  …"); break;
        case Mark::None: break;
        }
        // the mark's colour on a dark palette: lighter, so it stays readable
        if (mark != Mark::None && mark != Mark::Busy && palette().color(QPalette::Base).lightness() < 128)
            colour = colour.lighter(170);
        item->setText(text);
        item->setForeground(mark == Mark::Done || mark == Mark::Attention ? QBrush(colour) : QBrush());
    }
    m_statusLine->setText(m_state->summary());
    m_trainingPage->setRunActive(m_state->runActive());
}

QString MainWindow::statusSummary() const { return m_statusLine->text(); }

QAction* MainWindow::addShortcut(const QKeySequence& keys, const QString& what, std::function<void()> run) {
    auto* a = new QAction(what, this);
    a->setShortcut(keys);
    a->setShortcutContext(Qt::WindowShortcut);
    connect(a, &QAction::triggered, this, [run] { run(); });
    addAction(a);
    m_shortcutList << qMakePair(keys.toString(QKeySequence::NativeText), what);
    return a;
}

void MainWindow::createActions() {
    QMenu* file = menuBar()->addMenu(tr("&File"));
    QMenu* go = menuBar()->addMenu(tr("&Go"));
    QMenu* run = menuBar()->addMenu(tr("&Run"));
    QMenu* help = menuBar()->addMenu(tr("&Help"));
    for (int i = 0; i < m_pages.size(); ++i) {
        const Page page = m_pages[i];
        go->addAction(addShortcut(QKeySequence(Qt::CTRL | Qt::Key(Qt::Key_1 + i)),
                                  tr("Show the %1 page").arg(m_titles[i]), [this, page] { showPage(page); }));
    }
    run->addAction(addShortcut(QKeySequence(Qt::CTRL | Qt::Key_R), tr("Start the run (Monitor page)"), [this] {
        showPage(Page::Monitor);
        m_monitorPage->triggerStart();
    }));
    run->addAction(addShortcut(QKeySequence(Qt::CTRL | Qt::Key_P), tr("Pause or resume the run"),
                               [this] { m_monitorPage->togglePause(); }));
    run->addAction(addShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_S), tr("Stop the run and save a checkpoint"),
                               [this] { m_monitorPage->triggerStop(); }));
    auto generate = [this] {
        showPage(Page::Playground);
        m_playgroundPage->generate();
    };
    run->addAction(addShortcut(QKeySequence(Qt::CTRL | Qt::Key_Return), tr("Generate (Playground)"), generate));
    // the keypad's Enter is the same shortcut; one row in the list
    auto* enter = new QAction(this);
    enter->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Enter));
    connect(enter, &QAction::triggered, this, generate);
    addAction(enter);
    file->addAction(addShortcut(QKeySequence(Qt::CTRL | Qt::Key_Q),
                                tr("Quit (a running run is stopped and saved first)"), [this] { close(); }));
    help->addAction(addShortcut(QKeySequence(Qt::Key_F1), tr("Keyboard shortcuts"), [this] { showShortcuts(); }));

    // the buttons' tooltips name their keys
    auto withKeys = [](QWidget* w, const QString& keys) {
        if (w && !w->toolTip().contains(keys)) w->setToolTip(w->toolTip() + QStringLiteral(" (%1)").arg(keys));
    };
    const auto native = [](const QKeySequence& k) { return k.toString(QKeySequence::NativeText); };
    withKeys(m_monitorPage->findChild<QWidget*>("startButton"), native(QKeySequence(Qt::CTRL | Qt::Key_R)));
    withKeys(m_monitorPage->findChild<QWidget*>("pauseButton"), native(QKeySequence(Qt::CTRL | Qt::Key_P)));
    withKeys(m_monitorPage->findChild<QWidget*>("resumeButton"), native(QKeySequence(Qt::CTRL | Qt::Key_P)));
    withKeys(m_monitorPage->findChild<QWidget*>("stopButton"), native(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_S)));
    withKeys(m_playgroundPage->findChild<QWidget*>("generateButton"), native(QKeySequence(Qt::CTRL | Qt::Key_Return)));
}

QList<QPair<QString, QString>> MainWindow::shortcuts() const { return m_shortcutList; }

void MainWindow::showShortcuts() {
    if (!m_shortcutsDialog) {
        auto* dialog = new QDialog(this);
        dialog->setObjectName("shortcutsDialog");
        dialog->setWindowTitle(tr("Keyboard shortcuts"));
        auto* layout = new QVBoxLayout(dialog);
        auto* table = new QTableWidget(int(m_shortcutList.size()), 2, dialog);
        table->setHorizontalHeaderLabels({tr("Keys"), tr("Action")});
        table->verticalHeader()->hide();
        table->setEditTriggers(QAbstractItemView::NoEditTriggers);
        for (int r = 0; r < m_shortcutList.size(); ++r) {
            table->setItem(r, 0, new QTableWidgetItem(m_shortcutList[r].first));
            table->setItem(r, 1, new QTableWidgetItem(m_shortcutList[r].second));
        }
        table->resizeColumnsToContents();
        table->horizontalHeader()->setStretchLastSection(true);
        layout->addWidget(table);
        auto* close = new QPushButton(tr("Close"), dialog);
        connect(close, &QPushButton::clicked, dialog, &QDialog::close);
        layout->addWidget(close, 0, Qt::AlignRight);
        dialog->resize(520, 420);
        m_shortcutsDialog = dialog;
    }
    m_shortcutsDialog->show();
    m_shortcutsDialog->raise();
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

void MainWindow::setDemoEstimate(double seconds) {
    const qint64 s = qint64(std::ceil(seconds / 5.0) * 5.0); // rounded up to 5 s: a promise, not a measurement
    m_demoPromiseSeconds = int(s < 90 ? std::max<qint64>(5, s) : (s + 59) / 60 * 60);
    const QString time = s < 90 ? tr("about %1 seconds").arg(std::max<qint64>(5, s))
                                : tr("about %1 minutes").arg((s + 59) / 60);
    m_demoText->setText(
        tr("<b>No model chosen yet.</b> Try the demo: a tiny LLaMA-shaped model (4 layers, built into "
           "the studio) learns a small story corpus within %1 on this machine (measured just now), with "
           "every chart live.")
            .arg(time));
}

QString MainWindow::demoPromise() const { return m_demoText->text(); }

void MainWindow::saveState() {
    QSettings s;
    s.setValue("window/geometry", saveGeometry());
    s.setValue("window/state", QMainWindow::saveState());
    s.setValue("window/page", m_nav->currentRow());
}

void MainWindow::changeEvent(QEvent* event) {
    QMainWindow::changeEvent(event);
    if (event->type() == QEvent::PaletteChange) refreshMarks(); // the marks' colours for the new scheme
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
