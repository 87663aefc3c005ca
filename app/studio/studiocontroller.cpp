// StudioController: queued connections between the pages (GUI thread) and the EngineWorker (worker thread).
#include "studiocontroller.h"

#include "engineworker.h"
#include "mainwindow.h"
#include "modelpage.h"
#include "playgroundpage.h"

#include <QSettings>

StudioController::StudioController(MainWindow* window, QObject* parent) : QObject(parent), m_window(window) {
    qRegisterMetaType<ModelInfo>();
    qRegisterMetaType<GenerateRequest>();
    m_worker = new EngineWorker;
    m_worker->moveToThread(&m_thread);
    connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);

    ModelPage* model = window->modelPage();
    PlaygroundPage* play = window->playgroundPage();
    connect(model, &ModelPage::loadRequested, this, &StudioController::loadModel);
    connect(this, &StudioController::loadRequested, m_worker, &EngineWorker::loadModel, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::modelLoaded, model, &ModelPage::showModel, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::modelLoaded, this, [play](const ModelInfo& info) {
        play->setModelReady(true);
        QSettings().setValue("model/lastDir", info.dir);
    });
    connect(m_worker, &EngineWorker::modelFailed, model, &ModelPage::showError, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::modelFailed, play, [play] { play->setModelReady(false); });

    connect(play, &PlaygroundPage::generateRequested, m_worker, &EngineWorker::generate, Qt::QueuedConnection);
    // requestStop is an atomic flag: call it directly from the GUI thread so it is seen mid-generation.
    connect(play, &PlaygroundPage::stopRequested, this, [this] { m_worker->requestStop(); });
    connect(m_worker, &EngineWorker::textGenerated, play, &PlaygroundPage::appendText, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::generationFinished, play, &PlaygroundPage::showFinished, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::generationFailed, play, &PlaygroundPage::showError, Qt::QueuedConnection);
    m_thread.start();
}

StudioController::~StudioController() {
    m_worker->requestStop();
    m_thread.quit();
    m_thread.wait();
}

void StudioController::loadModel(const QString& dir) {
    m_window->modelPage()->setDirectory(dir);
    m_window->modelPage()->showLoading(dir);
    emit loadRequested(dir);
}
