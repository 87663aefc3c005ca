// StudioState: setters that emit changed() only when a value changes, and the status bar's one-line summary.
#include "studiostate.h"

#include <QDir>
#include <QFileInfo>

void StudioState::setModelLoading(const QString& dir, bool demo) {
    m_modelDir = dir;
    m_modelIsDemo = demo;
    m_modelLoading = true;
    m_modelConfig.reset();
    m_modelError.clear();
    emit changed();
}

void StudioState::setModelLoaded(const QString& dir, const std::optional<qls::model_config>& config) {
    m_modelDir = dir;
    m_modelLoading = false;
    m_modelConfig = config;
    m_modelError.clear();
    emit changed();
}

void StudioState::setModelFailed(const QString& message) {
    m_modelLoading = false;
    m_modelConfig.reset();
    m_modelError = message;
    emit changed();
}

void StudioState::setData(const QString& trainFile, const QString& error) {
    if (m_trainFile == trainFile && m_dataError == error) return;
    m_trainFile = trainFile;
    m_dataError = error;
    emit changed();
}

void StudioState::setSettingsError(const QString& error) {
    if (m_settingsError == error) return;
    m_settingsError = error;
    emit changed();
}

void StudioState::setRun(RunState state, const QString& runDir) {
    if (m_runState == state && (runDir.isEmpty() || runDir == m_runDir)) return;
    m_runState = state;
    if (!runDir.isEmpty()) m_runDir = runDir;
    emit changed();
}

void StudioState::setAdapterName(const QString& name) {
    if (m_adapterName == name) return;
    m_adapterName = name;
    emit changed();
}

QString StudioState::summary() const {
    QStringList parts;
    if (m_modelDir.isEmpty()) parts << tr("No model loaded");
    else {
        const QString name = m_modelIsDemo ? tr("the demo model") : QFileInfo(m_modelDir).fileName();
        if (m_modelLoading) parts << tr("Loading %1…").arg(name);
        else if (!m_modelError.isEmpty()) parts << tr("Model %1 failed to load").arg(name);
        else parts << tr("Model: %1").arg(name);
    }
    if (!m_adapterName.isEmpty()) parts << tr("adapter: %1").arg(m_adapterName);
    const QString run = QFileInfo(m_runDir).fileName();
    switch (m_runState) {
    case RunState::None: parts << tr("no run"); break;
    case RunState::Starting: parts << tr("run %1 starting").arg(run); break;
    case RunState::Running: parts << tr("run %1 training").arg(run); break;
    case RunState::Paused: parts << tr("run %1 paused").arg(run); break;
    case RunState::Stopping: parts << tr("run %1 stopping").arg(run); break;
    case RunState::Finished: parts << tr("run %1 finished").arg(run); break;
    case RunState::Stopped: parts << tr("run %1 stopped (resumable)").arg(run); break;
    case RunState::Failed: parts << tr("last run failed"); break;
    }
    return parts.join(QStringLiteral(" · "));
}
