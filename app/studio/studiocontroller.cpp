// StudioController: queued connections between the pages (GUI thread), the EngineWorker and the TrainingSession (worker threads).
#include "studiocontroller.h"

#include "datasetpage.h"
#include "demoassets.h"
#include "enginesession.h"
#include "engineworker.h"
#include "exportpage.h"
#include "loadprogress.h"
#include "mainwindow.h"
#include "modelpage.h"
#include "monitorpage.h"
#include "planpage.h"
#include "playgroundpage.h"
#include "runspage.h"
#include "trainingpage.h"

#include "qls/error.h"
#include "qls/memory_plan.h"
#include "qls/model_config.h"
#include "qls/model_source.h"
#include "qls/run_catalog.h"
#include "qls/run_plan.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QSettings>
#include <QStatusBar>

StudioController::StudioController(MainWindow* window, TrainingSession* session, QObject* parent)
    : QObject(parent), m_window(window), m_session(session), m_gpu(qls::probe_gpu()) {
    qRegisterMetaType<ModelInfo>();
    qRegisterMetaType<GenerateRequest>();
    qRegisterMetaType<ModelSide>();
    m_worker = new EngineWorker;
    m_worker->moveToThread(&m_thread);
    connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
    if (!m_session) m_session = new EngineSession(this);

    ModelPage* model = window->modelPage();
    PlaygroundPage* play = window->playgroundPage();
    MonitorPage* monitor = window->monitorPage();
    RunsPage* runs = window->runsPage();
    DatasetPage* dataset = window->datasetPage();
    TrainingPage* training = window->trainingPage();
    PlanPage* plan = window->planPage();

    // ---- model and playground (EngineWorker) ---------------------------------------------------------------------
    connect(model, &ModelPage::loadRequested, this, &StudioController::loadModel);
    connect(this, &StudioController::loadRequested, m_worker, &EngineWorker::loadModel, Qt::QueuedConnection);
    connect(this, &StudioController::runLoadRequested, m_worker, &EngineWorker::loadRun, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::modelLoaded, model, &ModelPage::showModel, Qt::QueuedConnection);
    // load progress and Cancel: the flag is atomic, set straight from the GUI thread so the load sees it at once
    // (on the page that asked for the load: the Model page, or the Playground for a run's adapter)
    connect(m_worker, &EngineWorker::loadProgress, this,
            [model, play, this](qint64 n, qint64 total, double bytes, double bytesTotal, double s) {
                if (m_adapterLoading) play->loadProgress()->setProgress(n, total, bytes, bytesTotal, s);
                else model->showProgress(n, total, bytes, bytesTotal, s);
            });
    connect(m_worker, &EngineWorker::loadCancelled, this, [model, play, this] {
        if (m_adapterLoading) play->showAdapterCancelled();
        model->showCancelled();
        m_adapterLoading = false;
    });
    connect(m_worker, &EngineWorker::runLoaded, this, [this] { m_adapterLoading = false; });
    connect(m_worker, &EngineWorker::runFailed, this, [this] { m_adapterLoading = false; });
    connect(model, &ModelPage::cancelRequested, this, [this] { m_worker->requestCancelLoad(); });
    connect(play, &PlaygroundPage::cancelLoadRequested, this, [this] { m_worker->requestCancelLoad(); });
    connect(m_worker, &EngineWorker::modelLoaded, this, [this, play, dataset, plan](const ModelInfo& info) {
        play->setModelReady(true);
        play->setChatAvailable(!info.chatTemplate.isEmpty(), info.chatTemplate);
        m_window->setDemoOffered(false);
        QSettings().setValue("model/lastDir", info.dir);
        dataset->setModelDir(info.dir);
        try {
            m_modelConfig = qls::open_model_source(info.dir.toStdString())->config(); // a directory or a .gguf
            plan->setModelConfig(*m_modelConfig);
        } catch (const qls::error&) {
            m_modelConfig.reset();
            plan->clearModel();
        }
        syncPlan();
    });
    connect(m_worker, &EngineWorker::modelFailed, model, &ModelPage::showError, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::modelFailed, play, [this, play, plan] {
        play->setModelReady(false);
        m_modelConfig.reset();
        plan->clearModel();
    });
    // the adapter side: loaded from Runs → Playground and after a run finishes; dropped when another base loads
    connect(m_worker, &EngineWorker::runLoaded, this, [this, play](const QString& runDir, const QString& checkpoint) {
        play->setAdapter(QFileInfo(runDir).fileName(), QFileInfo(checkpoint).fileName());
        m_window->statusBar()->showMessage(tr("Playground: %1 with the adapter of %2")
                                               .arg(QFileInfo(runDir).fileName(),
                                                    QDir::toNativeSeparators(checkpoint)));
    });
    connect(m_worker, &EngineWorker::runFailed, play, &PlaygroundPage::showAdapterError, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::adapterUnloaded, play, &PlaygroundPage::clearAdapter, Qt::QueuedConnection);
    // A Stop pressed after a request is queued must cancel it even before the worker starts it, and an older Stop must
    // not: reset the worker's flag here, on the GUI thread, then queue the request.
    connect(play, &PlaygroundPage::generateRequested, this, [this](const GenerateRequest& request) {
        m_worker->resetStop();
        QMetaObject::invokeMethod(
            m_worker, [worker = m_worker, request] { worker->generate(request); }, Qt::QueuedConnection);
    });
    // requestStop is an atomic flag: call it directly from the GUI thread so it is seen mid-generation.
    connect(play, &PlaygroundPage::stopRequested, this, [this] { m_worker->requestStop(); });
    connect(m_worker, &EngineWorker::textGenerated, play, &PlaygroundPage::appendText, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::generationFinished, play, &PlaygroundPage::showFinished, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::generationFailed, play, &PlaygroundPage::showError, Qt::QueuedConnection);

    // ---- setup pages -----------------------------------------------------------------------------------------------
    connect(training, &TrainingPage::changed, this, &StudioController::syncPlan);

    // ---- training (TrainingSession) --------------------------------------------------------------------------------
    monitor->setSession(m_session);
    window->setSession(m_session);
    connect(monitor, &MonitorPage::startRequested, this, &StudioController::startTraining);
    connect(m_session, &TrainingSession::started, runs, &RunsPage::refresh);
    connect(m_session, &TrainingSession::finished, runs, &RunsPage::refresh);
    connect(m_session, &TrainingSession::failed, runs, &RunsPage::refresh);
    connect(window, &MainWindow::demoRequested, this, [this] { startDemo(60); });

    // ---- past runs -------------------------------------------------------------------------------------------------
    connect(runs, &RunsPage::openRequested, this, &StudioController::openRun);
    connect(runs, &RunsPage::resumeRequested, this, &StudioController::resumeRun);
    connect(runs, &RunsPage::playgroundRequested, this, &StudioController::tryRunInPlayground);
    connect(runs, &RunsPage::exportRequested, this, &StudioController::exportRun);
    // a run that ends leaves its newest checkpoint ready on the Export page
    connect(m_session, &TrainingSession::started, this,
            [this](qint64, const QString& runDir) { m_currentRunDir = runDir; });
    connect(m_session, &TrainingSession::finished, this, [this](const QString&, const QString& checkpoint) {
        if (checkpoint.isEmpty()) return;
        m_window->exportPage()->setCheckpoint(runModelDir(m_currentRunDir), checkpoint);
        loadAdapter(m_currentRunDir, checkpoint); // and in the Playground beside the base model
    });

    restoreLastChoices();
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
    m_adapterLoading = false;
    m_worker->resetCancelLoad();
    emit loadRequested(dir);
}

// ---- configuration -----------------------------------------------------------------------------------------------

bool StudioController::buildConfig(qls::train_config* config, QString* reason) const {
    qls::train_config c;
    auto refuse = [reason](const QString& why) {
        if (reason) *reason = why;
        return false;
    };
    c.model = m_window->modelPage()->directory().toStdString();
    if (c.model.empty()) return refuse(tr("Model: no model is chosen. Choose one on the Model page, or run the demo."));
    const QFileInfo modelPath(QString::fromStdString(c.model));
    const bool gguf = modelPath.isFile() && modelPath.suffix().compare("gguf", Qt::CaseInsensitive) == 0;
    if (!gguf && !QFileInfo::exists(QString::fromStdString(c.model) + "/config.json"))
        return refuse(tr("Model: %1 is neither a Hugging Face model directory (with config.json) nor a .gguf file. "
                         "Choose one on the Model page.")
                          .arg(QString::fromStdString(c.model)));
    QString why;
    if (!m_window->datasetPage()->validate(&why)) return refuse(tr("Dataset: %1").arg(why));
    if (!m_window->trainingPage()->validate(&why)) return refuse(tr("Training: %1").arg(why));
    m_window->datasetPage()->applyTo(c);
    m_window->trainingPage()->applyTo(c);
    const QString runs = m_window->runsPage()->runsDirectory();
    c.runs_dir = (runs.isEmpty() ? QString("runs") : runs).toStdString();
    const QString name = m_window->monitorPage()->runName();
    c.name = (name.isEmpty() ? "run-" + QDateTime::currentDateTime().toString("yyyyMMdd-hhmmss") : name).toStdString();
    try {
        qls::validate_train_config(c);
    } catch (const qls::error& e) {
        return refuse(QString::fromStdString(e.what()) +
                      (e.hint().empty() ? QString() : " — " + QString::fromStdString(e.hint())));
    }
    *config = c;
    return true;
}

void StudioController::startTraining() {
    qls::train_config c;
    QString reason;
    if (!buildConfig(&c, &reason)) {
        m_window->monitorPage()->showFailed(reason, tr("Fix it on that page, then press Start again."));
        return;
    }
    rememberChoices(c);
    // The Plan page's plan is the run's when it was made for these settings on this device (the trainer checks the
    // model's dimensions too): the run then computes no plan of its own.
    PlanPage* planPage = m_window->planPage();
    std::optional<qls::memory_plan> plan = planPage->plan();
    const qls::plan_settings settings = qls::plan_settings_for(c, planPage->device());
    if (plan && !qls::plan_matches(*plan, plan->config, settings)) plan.reset();
    // the budget line is the run's plan's (budget_gib becomes bytes in run_plan only)
    m_window->monitorPage()->setBudgetBytes(plan ? plan->settings.budget_bytes : settings.budget_bytes);
    m_window->monitorPage()->setRunName(QString());
    m_session->start(c, plan);
    m_window->showPage(MainWindow::Page::Monitor);
}

void StudioController::syncPlan() {
    TrainingPage* training = m_window->trainingPage();
    if (!training->validate(nullptr)) return; // the page shows what is wrong; the plan keeps the last valid settings
    qls::train_config c;
    training->applyTo(c);
    m_window->planPage()->setDevice(runDevice(c));
    m_window->planPage()->setTrainConfig(c);
    m_window->datasetPage()->setSeqLen(c.seq_len);
    m_window->datasetPage()->setSeed(c.seed);
}

qls::compute_device StudioController::runDevice(const qls::train_config& c) {
    if (m_gpu.index != c.gpu) m_gpu = qls::probe_gpu(c.gpu);
    try {
        return qls::choose_train_device(c.backend, c.gpu, c.quantize_nf4 && c.double_quant,
                                        m_modelConfig ? m_modelConfig->head_dim : 0, m_gpu)
            .device;
    } catch (const qls::error&) {
        return qls::compute_device{};
    }
}

void StudioController::restoreLastChoices() {
    const QString json = QSettings().value("training/lastConfig").toString();
    if (json.isEmpty()) return;
    try {
        const qls::train_config c = qls::parse_train_config(json.toStdString(), "the saved settings", "");
        m_window->datasetPage()->loadFrom(c);
        m_window->trainingPage()->loadFrom(c);
    } catch (const qls::error&) {
        // settings written by another version: the pages keep their defaults
    }
    syncPlan();
}

void StudioController::rememberChoices(const qls::train_config& c) const {
    QSettings().setValue("training/lastConfig", QString::fromStdString(qls::train_config_to_json(c)));
}

// ---- demo ----------------------------------------------------------------------------------------------------------

bool StudioController::demoPaths(DemoPaths* paths, QString* error) {
    // the demo model and corpus are compiled in; the first use extracts them to the user's cache folder
    DemoAssets demo;
    if (!demo.extract()) {
        if (error) *error = tr("The demo files could not be prepared: %1").arg(demo.errorString());
        return false;
    }
    DemoPaths p;
    p.model = demo.modelDir();
    p.train = demo.datasetFile();
    p.validation = demo.validationFile();
    *paths = p;
    return true;
}

qls::train_config StudioController::demoConfig(const DemoPaths& paths, int steps, const QString& runsDir) {
    qls::train_config c;
    c.name = ("demo-" + QDateTime::currentDateTime().toString("yyyyMMdd-hhmmss")).toStdString();
    c.runs_dir = (runsDir.isEmpty() ? QString("runs") : runsDir).toStdString();
    c.model = paths.model.toStdString();
    c.train_file = paths.train.toStdString();
    c.validation_file = paths.validation.toStdString();
    c.lora.rank = 8;
    c.lora.alpha = 16;
    c.lora.dropout = 0.0f;
    c.optimizer = qls::optimizer_kind::paged_adamw_8bit;
    c.learning_rate = 3e-3f;
    c.schedule = qls::lr_schedule::cosine;
    c.warmup_steps = std::min(4, steps / 10);
    c.seq_len = 128;
    c.micro_batch = 4;
    c.grad_accum = 1;
    c.max_steps = steps;
    c.eval_every = std::max(1, steps / 5);
    c.eval_batches = 4;
    c.checkpoint_every = 0;
    c.gradient_checkpointing = false;
    c.seed = 42;
    return c;
}

void StudioController::startDemo(int steps) {
    DemoPaths paths;
    QString error;
    if (!demoPaths(&paths, &error)) {
        m_window->monitorPage()->showFailed(
            error, tr("Choose a model on the Model page and a dataset on the Dataset page instead."));
        m_window->showPage(MainWindow::Page::Monitor);
        return;
    }
    const qls::train_config c = demoConfig(paths, steps, m_window->runsPage()->runsDirectory());
    loadModel(paths.model);
    m_window->datasetPage()->loadFrom(c);
    m_window->trainingPage()->loadFrom(c);
    m_window->monitorPage()->setBudgetBytes(0);
    m_session->start(c);
    m_window->showPage(MainWindow::Page::Monitor);
}

// ---- past runs ---------------------------------------------------------------------------------------------------

void StudioController::openRun(const QString& runDir) {
    quint64 budget = 0;
    try {
        // a past run's budget as its plan settings hold it (its plan itself is not stored)
        budget = qls::plan_settings_for(qls::load_train_config((runDir + "/config.json").toStdString()),
                                        qls::compute_device{})
                     .budget_bytes;
    } catch (const qls::error&) {
        // no budget line for a run whose config cannot be read; its metrics still draw
    }
    const std::vector<qls::step_stats> metrics = qls::read_metrics(runDir.toStdString());
    MonitorPage* monitor = m_window->monitorPage();
    monitor->setBudgetBytes(budget);
    monitor->showRun(runDir, QVector<qls::step_stats>(metrics.begin(), metrics.end()));
    m_window->showPage(MainWindow::Page::Monitor);
}

void StudioController::resumeRun(const QString& runDir) {
    openRun(runDir);
    m_session->continueRun(runDir);
}

QString StudioController::runModelDir(const QString& runDir) {
    const qls::run_info run = qls::read_run(runDir.toStdString());
    return run.problem.empty() ? QString::fromStdString(run.model) : QString();
}

void StudioController::exportRun(const QString& runDir, const QString& checkpointDir) {
    if (checkpointDir.isEmpty()) {
        m_window->statusBar()->showMessage(tr("%1 has no checkpoint to export yet.").arg(QFileInfo(runDir).fileName()));
        return;
    }
    m_window->exportPage()->setCheckpoint(runModelDir(runDir), checkpointDir);
    m_window->showPage(MainWindow::Page::Export);
}

void StudioController::tryRunInPlayground(const QString& runDir, const QString& checkpointDir) {
    if (checkpointDir.isEmpty()) {
        m_window->statusBar()->showMessage(tr("%1 has no checkpoint to try yet.").arg(QFileInfo(runDir).fileName()));
        return;
    }
    loadAdapter(runDir, checkpointDir);
    m_window->showPage(MainWindow::Page::Playground);
}

void StudioController::loadAdapter(const QString& runDir, const QString& checkpointDir) {
    m_window->playgroundPage()->showAdapterLoading(QFileInfo(runDir).fileName(), QFileInfo(checkpointDir).fileName());
    m_adapterLoading = true;
    m_worker->resetCancelLoad();
    emit runLoadRequested(runDir, checkpointDir);
}
