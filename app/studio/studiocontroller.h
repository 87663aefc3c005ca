// StudioController — lives on the GUI thread, owns the worker thread and wires the pages to the engine worker.
#pragma once

#include <QObject>
#include <QThread>

class EngineWorker;
class MainWindow;

class StudioController : public QObject {
    Q_OBJECT
public:
    explicit StudioController(MainWindow* window, QObject* parent = nullptr);
    ~StudioController() override; // stops a running generation, then quits and joins the worker thread
    void loadModel(const QString& dir);
    EngineWorker* worker() const { return m_worker; }

signals:
    void loadRequested(const QString& dir);

private:
    MainWindow* m_window;
    QThread m_thread;
    EngineWorker* m_worker;
};
