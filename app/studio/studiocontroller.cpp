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
#include "studiostate.h"
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
    connect(m_worker, &EngineWorker::modelLoaded, this, [this, play, dataset, plan, training](const ModelInfo& info) {
        play->setModelReady(true);
        play->setChatAvailable(!info.chatTemplate.isEmpty(), info.chatTemplate);
        m_window->setDemoOffered(false);
        if (!m_window->state()->modelIsDemo()) QSettings().setValue("model/lastDir", info.dir);
        dataset->setModelDir(info.dir);
        try {
            m_modelConfig = qls::open_model_source(info.dir.toStdString())->config(); // a directory or a .gguf
            plan->setModelConfig(*m_modelConfig);
        } catch (const qls::error&) {
            m_modelConfig.reset();
            plan->clearModel();
        }
        m_window->state()->setModelLoaded(info.dir, m_modelConfig);
        training->setModelLimits(m_modelConfig); // the settings are checked against this model from now on
        training->setTargetNames(info.loraTargets, info.family);
        m_window->monitorPage()->clearStaleStatus();
        syncPlan();
    });
    connect(m_worker, &EngineWorker::modelFailed, model, &ModelPage::showError, Qt::QueuedConnection);
    connect(m_worker, &EngineWorker::modelFailed, play, [this, play, plan, training](const QString& message) {
        play->setModelReady(false);
        m_modelConfig.reset();
        plan->clearModel();
        training->setModelLimits(std::nullopt);
        training->setTargetNames({}, {});
        m_window->state()->setModelFailed(message);
    });
    // the adapter side: loaded from Runs → Playground and after a run finishes; dropped when another base loads
    connect(m_worker, &EngineWorker::runLoaded, this, [this, play](const QString& runDir, const QString& checkpoint) {
        play->setAdapter(QFileInfo(runDir).fileName(), QFileInfo(checkpoint).fileName());
        m_window->state()->setAdapterName(QStringLiteral("%1/%2").arg(QFileInfo(runDir).fileName(),
                                                                      QFileInfo(checkpoint).fileName()));
    });
    connect(m_worker, &EngineWorker::adapterUnloaded, this, [this] { m_window->state()->setAdapterName(QString()); });
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
    // data of the user's own: the demo's validation file does not stay behind
    connect(dataset, &DatasetPage::changed, this, [this, dataset] {
        qls::train_config c;
        dataset->applyTo(c);
        const QString train = QString::fromStdString(c.train_file);
        QString why;
        m_window->state()->setData(train, dataset->validate(&why) ? QString() : why);
        if (m_demoPaths && !train.isEmpty() && train != m_demoPaths->train &&
            QString::fromStdString(c.validation_file) == m_demoPaths->validation)
            clearDemoLeftovers(true);
        m_window->monitorPage()->clearStaleStatus();
    });
    // the Training page weighs the steps against the data's size
    // (tokens are known only once a model's tokenizer has read the data; the analysis truncated to its seq_len)
    connect(dataset, &DatasetPage::analysisFinished, this, [dataset, training] {
        const DatasetAnalysis& a = dataset->analysis();
        const bool known = a.trainError.isEmpty() && a.tokenized;
        training->setDatasetSize(known ? qint64(a.stats.examples) : 0, known ? qint64(a.stats.tokens) : 0, a.seqLen);
    });
    connect(runs, &RunsPage::runsDirectoryChanged, monitor, &MonitorPage::setRunsFolder);
    monitor->setRunsFolder(runs->runsDirectory());
    runs->setMetricsReader([](const QString& runDir) { return qls::read_metrics(runDir.toStdString()); });

    // ---- training (TrainingSession) --------------------------------------------------------------------------------
    monitor->setSession(m_session);
    window->setSession(m_session);
    connect(monitor, &MonitorPage::startRequested, this, &StudioController::startTraining);
    connect(m_session, &TrainingSession::started, runs, &RunsPage::refresh);
    connect(m_session, &TrainingSession::finished, runs, &RunsPage::refresh);
    connect(m_session, &TrainingSession::failed, runs, &RunsPage::refresh);
    connect(window, &MainWindow::demoRequested, this, [this] { startDemo(k_demoSteps); });

    // ---- past runs -------------------------------------------------------------------------------------------------
    connect(runs, &RunsPage::openRequested, this, &StudioController::openRun);
    connect(runs, &RunsPage::resumeRequested, this, &StudioController::resumeRun);
    connect(runs, &RunsPage::playgroundRequested, this, &StudioController::tryRunInPlayground);
    connect(runs, &RunsPage::exportRequested, this, &StudioController::exportRun);
    // a run that ends leaves its newest checkpoint ready on the Export page
    connect(m_session, &TrainingSession::started, this, [this](qint64, const QString& runDir) {
        m_currentRunDir = runDir;
        // a new run's folder exists now: this studio holds it until the run ends (a resumed run holds it already)
        QString why;
        if (!m_runLock.lock(runDir, &why)) m_session->logLine(tr("run lock: %1").arg(why));
        m_window->runsPage()->refresh();
    });
    // the session state every page observes
    connect(m_session, &TrainingSession::stateChanged, this, [this](TrainingSession::State s) {
        using S = TrainingSession::State;
        using R = StudioState::RunState;
        const R r = s == S::Starting   ? R::Starting
                    : s == S::Running  ? R::Running
                    : s == S::Paused   ? R::Paused
                    : s == S::Stopping ? R::Stopping
                                       : m_window->state()->runState();
        m_window->state()->setRun(r);
    });
    connect(m_session, &TrainingSession::started, this, [this](qint64, const QString& runDir) {
        m_window->state()->setRun(m_window->state()->runState(), runDir);
    });
    connect(m_session, &TrainingSession::finished, this, [this](const QString& status) {
        m_runLock.unlock();
        m_window->state()->setRun(status.startsWith("completed") ? StudioState::RunState::Finished
                                                                 : StudioState::RunState::Stopped);
        m_window->runsPage()->refresh();
    });
    connect(m_session, &TrainingSession::failed, this, [this] {
        // a refusal while a run trains (a second Start) does not end that run
        if (m_session->isActive()) return;
        m_runLock.unlock();
        m_window->state()->setRun(StudioState::RunState::Failed);
    });
    connect(m_session, &TrainingSession::finished, this, [this](const QString&, const QString& checkpoint) {
        if (checkpoint.isEmpty()) return;
        m_window->exportPage()->setCheckpoint(runModelDir(m_currentRunDir), checkpoint);
        loadAdapter(m_currentRunDir, checkpoint); // and in the Playground beside the base model
    });

    // ---- the time estimate: a short measured warm-up of the run's micro-batch on this machine ------------------
    m_estimateTimer.setSingleShot(true);
    m_estimateTimer.setInterval(400);
    connect(&m_estimateTimer, &QTimer::timeout, this, [this] {
        if (!m_estimateConfig) return;
        const qls::train_config c = *m_estimateConfig;
        const quint64 key = ++m_estimateKey;
        QMetaObject::invokeMethod(
            m_worker, [w = m_worker, c, key] { w->measureStep(QString::fromStdString(c.model), c, key); },
            Qt::QueuedConnection);
    });
    connect(m_worker, &EngineWorker::stepMeasured, this, [this](quint64 key, const StepTiming& t) {
        if (key == m_demoKey && m_demoKey != 0) {
            DemoPaths paths;
            if (demoPaths(&paths, nullptr)) {
                m_demoTiming = t;
                m_window->setDemoEstimate(promiseSeconds(estimateRunSeconds(demoConfig(paths, k_demoSteps, {}), t)));
            }
            return;
        }
        if (key != m_estimateKey || !m_estimateConfig) return;
        const qls::train_config& c = *m_estimateConfig;
        auto secs = [](double s) { return QString::number(s, 'f', s < 0.1 ? 3 : 2); };
        const QString how = tr("measured here: one micro-batch of %1 × %2 tokens took %3 s on the CPU, an update %4 s, "
                               "reading the model and data %5 s")
                                .arg(c.micro_batch)
                                .arg(c.seq_len)
                                .arg(secs(t.micro), secs(t.update), secs(t.setup));
        if (c.max_steps > 0)
            m_window->planPage()->setTimeEstimate(promiseSeconds(estimateRunSeconds(c, t)),
                                                  how + tr("; with a margin for drawing and saving"));
        else
            m_window->planPage()->setTimeEstimate(t.micro * c.grad_accum + t.update,
                                                  how + tr("; per optimizer step — Max steps is 0, so the data's size "
                                                           "and the epochs decide the number of steps"));
        m_window->monitorPage()->setNextRunEstimate(c.max_steps > 0 ? m_window->planPage()->timeEstimateShort()
                                                                    : QString());
    });
    connect(m_worker, &EngineWorker::measureFailed, this, [this](quint64 key, const QString& why) {
        if (key != m_estimateKey) return;
        m_window->planPage()->setTimeEstimate(0, why);
        m_window->monitorPage()->setNextRunEstimate(QString());
    });
    monitor->setMessageWords([training](const QString& m) { return training->inFieldNames(m); });

    restoreLastChoices();
    m_thread.start();
    QTimer::singleShot(0, this, &StudioController::measureDemo);
}

double StudioController::estimateRunSeconds(const qls::train_config& c, const StepTiming& t, bool cpu) {
    const double micro = cpu ? t.microCpu : t.micro, update = cpu ? t.updateCpu : t.update;
    const double eval = cpu ? t.evalCpu : t.eval, setup = cpu ? t.setupCpu : t.setup;
    const int64_t steps = std::max<int64_t>(1, c.max_steps);
    // trainer.cpp evaluates when step % eval_every == 0 and after the last step (once when they coincide);
    // eval_batches 0 (the whole validation set) is counted as 8 batches
    const int64_t evals = c.eval_every > 0 ? steps / c.eval_every + (steps % c.eval_every != 0 ? 1 : 0) : 1;
    const double evalBatches = c.eval_batches > 0 ? c.eval_batches : 8;
    return setup + double(steps) * (c.grad_accum * micro + update) + double(evals) * evalBatches * eval;
}

double StudioController::promiseSeconds(double estimateSeconds) {
    return k_promiseFactor * estimateSeconds + k_promiseExtraSeconds;
}

void StudioController::measureDemo() {
    if (!m_window->demoOffered()) return;
    DemoPaths paths;
    if (!demoPaths(&paths, nullptr)) return;
    const qls::train_config c = demoConfig(paths, k_demoSteps, {});
    const quint64 key = m_demoKey = ++m_estimateKey;
    QMetaObject::invokeMethod(
        m_worker, [w = m_worker, c, key] { w->measureStep(QString::fromStdString(c.model), c, key); },
        Qt::QueuedConnection);
}

void StudioController::scheduleEstimate() {
    qls::train_config c;
    c.model = m_window->modelPage()->directory().toStdString();
    m_window->trainingPage()->applyTo(c);
    if (!m_modelConfig || c.model.empty() || !m_window->trainingPage()->validate(nullptr) ||
        runDevice(c).backend == "cuda") {
        m_estimateConfig.reset();
        m_estimateTimer.stop();
        m_window->planPage()->setTimeEstimate(
            0, m_modelConfig && !c.model.empty() && m_window->trainingPage()->validate(nullptr)
                   ? tr("a GPU run is not measured beforehand; the Monitor shows the ETA after the first step")
                   : QString());
        m_window->monitorPage()->setNextRunEstimate(QString());
        return;
    }
    m_estimateConfig = c;
    m_estimateTimer.start();
}

StudioController::~StudioController() {
    m_worker->requestStop();
    m_thread.quit();
    m_thread.wait();
}

void StudioController::loadModel(const QString& dir) { loadModelFor(dir, false); }

void StudioController::clearDemoLeftovers(bool data) {
    if (!m_demoPaths) return;
    if (data) {
        DatasetPage* dataset = m_window->datasetPage();
        qls::train_config c;
        dataset->applyTo(c);
        m_window->trainingPage()->applyTo(c);
        bool changed = false;
        if (QString::fromStdString(c.validation_file) == m_demoPaths->validation) {
            c.validation_file.clear();
            changed = true;
        }
        if (QString::fromStdString(c.train_file) == m_demoPaths->train) {
            c.train_file.clear();
            changed = true;
        }
        if (changed) dataset->loadFrom(c);
    }
}

void StudioController::loadModelFor(const QString& dir, bool demo) {
    if (!demo && m_demoPaths) {
        // the user's own model: nothing of the demo stays on any page
        clearDemoLeftovers(true);
        m_window->playgroundPage()->newChat();
        m_window->statusBar()->clearMessage();
    }
    if (!demo) {
        // the worker drops the adapter with the old base model (adapterUnloaded); the status line says so at once
        m_window->state()->setAdapterName(QString());
    }
    m_window->state()->setModelLoading(dir, demo);
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
    c.runs_dir = (runs.isEmpty() ? RunsPage::defaultRunsDirectory() : runs).toStdString();
    const QString name = m_window->monitorPage()->runName();
    c.name = (name.isEmpty() ? "run-" + QDateTime::currentDateTime().toString("yyyyMMdd-hhmmss") : name).toStdString();
    try {
        qls::validate_train_config(c);
    } catch (const qls::error& e) {
        // in the pages' words: field names, not run.json keys
        return refuse(m_window->trainingPage()->inFieldNames(
            QString::fromStdString(e.what()) +
            (e.hint().empty() ? QString() : " — " + QString::fromStdString(e.hint()))));
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
    QString why;
    if (!training->validate(&why)) {
        // the page shows what is wrong under the field; the plan shows no numbers of older settings
        m_window->planPage()->setSettingsInvalid(why);
        m_window->state()->setSettingsError(why);
        return;
    }
    m_window->state()->setSettingsError(QString());
    qls::train_config c;
    training->applyTo(c);
    m_window->planPage()->setDevice(runDevice(c));
    m_window->planPage()->setTrainConfig(c);
    m_window->datasetPage()->setSeqLen(c.seq_len);
    m_window->datasetPage()->setSeed(c.seed);
    scheduleEstimate();
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
    c.runs_dir = (runsDir.isEmpty() ? RunsPage::defaultRunsDirectory() : runsDir).toStdString();
    c.model = paths.model.toStdString();
    c.train_file = paths.train.toStdString();
    c.validation_file = paths.validation.toStdString();
    c.lora.rank = 8;
    c.lora.alpha = 16;
    c.lora.dropout = 0.0f;
    // resources/examples/demo.run.json's settings (the recipe whose greedy story mentions Pip after 40 steps,
    // tests/tst_demo_model.cpp): fp32 AdamW at a constant 0.01, no warm-up
    c.optimizer = qls::optimizer_kind::adamw_32bit;
    c.learning_rate = 0.01f;
    c.schedule = qls::lr_schedule::constant;
    c.warmup_steps = 0;
    c.seq_len = 128;
    c.micro_batch = 4;
    c.grad_accum = 1;
    c.max_steps = steps;
    c.eval_every = std::max(1, steps / 4);
    c.eval_batches = 8;
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
    m_demoPaths = paths;
    loadModelFor(paths.model, true);
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
    if (m_session->isActive()) {
        m_window->monitorPage()->showFailed(tr("A run is already training in this window."),
                                            tr("Stop it with Stop and save before resuming another."));
        return;
    }
    QString why;
    if (!m_runLock.lock(runDir, &why)) {
        m_window->monitorPage()->showFailed(why, tr("Open the window that trains it, or wait until it ends."));
        m_window->runsPage()->refresh();
        return;
    }
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
