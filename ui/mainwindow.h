// MainWindow — the studio's frame: a page list on the left, the pages on the right, the demo offer, persisted window state.
#pragma once

#include <QMainWindow>

#include <functional>

class QAction;
class QLabel;
class QListWidget;
class QStackedWidget;
class DatasetPage;
class ExportPage;
class ModelPage;
class MonitorPage;
class PlanPage;
class PlaygroundPage;
class RunsPage;
class StudioState;
class TrainingPage;
class TrainingSession;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    enum class Page { Model, Dataset, Training, Plan, Monitor, Export, Playground, Runs };

    // A page's mark in the navigation: nothing to say, done (✓), needs attention (⚠), or busy (a run, a load).
    enum class Mark { None, Done, Attention, Busy };

    // The smallest size every page is laid out for (and the window's minimum size).
    static constexpr int minimumWidth = 1024, minimumHeight = 700;

    explicit MainWindow(QWidget* parent = nullptr);
    // The session state every page observes (the controller writes it).
    StudioState* state() const { return m_state; }
    ModelPage* modelPage() const { return m_modelPage; }
    DatasetPage* datasetPage() const { return m_datasetPage; }
    TrainingPage* trainingPage() const { return m_trainingPage; }
    PlanPage* planPage() const { return m_planPage; }
    MonitorPage* monitorPage() const { return m_monitorPage; }
    ExportPage* exportPage() const { return m_exportPage; }
    PlaygroundPage* playgroundPage() const { return m_playgroundPage; }
    RunsPage* runsPage() const { return m_runsPage; }
    void showPage(Page page);
    Page currentPage() const;
    Mark pageMark(Page page) const;
    QString pageTitle(Page page) const; // the navigation's text, mark included

    // The window's keyboard shortcuts: (keys, what they do), as Help → Shortcuts lists them.
    QList<QPair<QString, QString>> shortcuts() const;
    // Help → Shortcuts (F1); the dialog is modeless and reused.
    void showShortcuts();
    QWidget* shortcutsDialog() const { return m_shortcutsDialog; }
    // The permanent status-bar line: what is loaded and what is running.
    QString statusSummary() const;

    // The session whose run closing the window would interrupt (asked about, then stopped and saved).
    void setSession(TrainingSession* session);
    // Replaces the "stop the run and close?" dialog (tests); returns true to stop and close.
    void setCloseQuestion(std::function<bool()> ask) { m_closeQuestion = std::move(ask); }
    // The "no model yet: try the demo" banner.
    void setDemoOffered(bool offered);
    // The demo's promise: its run's time as measured on this machine (a short warm-up); until then no time is named.
    void setDemoEstimate(double seconds);
    QString demoPromise() const;
    // The seconds the promise names (the estimate rounded up to 5 s, or to whole minutes from 90 s); 0: none yet.
    int demoPromiseSeconds() const { return m_demoPromiseSeconds; }
    bool demoOffered() const;

signals:
    void demoRequested();

protected:
    void closeEvent(QCloseEvent* event) override;
    void changeEvent(QEvent* event) override;

private:
    void addPage(Page page, QWidget* widget, const QString& title, const QString& tooltip);
    void saveState();
    void createActions();
    QAction* addShortcut(const QKeySequence& keys, const QString& what, std::function<void()> run);
    void refreshMarks();

    StudioState* m_state;
    QLabel* m_statusLine;
    QWidget* m_shortcutsDialog = nullptr;
    QList<QPair<QString, QString>> m_shortcutList;
    QStringList m_titles;
    QListWidget* m_nav;
    QStackedWidget* m_stack;
    QWidget* m_demoBanner;
    QLabel* m_demoText;
    int m_demoPromiseSeconds = 0;
    ModelPage* m_modelPage;
    DatasetPage* m_datasetPage;
    TrainingPage* m_trainingPage;
    PlanPage* m_planPage;
    MonitorPage* m_monitorPage;
    ExportPage* m_exportPage;
    PlaygroundPage* m_playgroundPage;
    RunsPage* m_runsPage;
    QList<Page> m_pages; // stack index → page
    TrainingSession* m_session = nullptr;
    std::function<bool()> m_closeQuestion;
    bool m_closeWhenStopped = false;
};
