// MainWindow — the studio's frame: a page list on the left, the pages on the right, the demo offer, persisted window state.
#pragma once

#include <QMainWindow>

#include <functional>

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
class TrainingPage;
class TrainingSession;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    enum class Page { Model, Dataset, Training, Plan, Monitor, Export, Playground, Runs };

    explicit MainWindow(QWidget* parent = nullptr);
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

    // The session whose run closing the window would interrupt (asked about, then stopped and saved).
    void setSession(TrainingSession* session);
    // Replaces the "stop the run and close?" dialog (tests); returns true to stop and close.
    void setCloseQuestion(std::function<bool()> ask) { m_closeQuestion = std::move(ask); }
    // The "no model yet: try the demo" banner.
    void setDemoOffered(bool offered);
    bool demoOffered() const;

signals:
    void demoRequested();

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void addPage(Page page, QWidget* widget, const QString& title, const QString& tooltip);
    void saveState();

    QListWidget* m_nav;
    QStackedWidget* m_stack;
    QWidget* m_demoBanner;
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
