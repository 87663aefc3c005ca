// StudioState — the one record of what the studio has chosen and is doing (model, data, settings, run) that every page and the frame observe.
#pragma once

#include "qls/model_config.h"

#include <QObject>
#include <QString>

#include <optional>

// The controller writes it (and only the controller); pages, the navigation and the status bar read it and redraw on
// changed(). Values only: no page owns a copy of these facts, so none can show an older one.
class StudioState : public QObject {
    Q_OBJECT
public:
    enum class RunState { None, Starting, Running, Paused, Stopping, Finished, Stopped, Failed };
    Q_ENUM(RunState)

    explicit StudioState(QObject* parent = nullptr) : QObject(parent) {}

    // ---- model ----
    QString modelDir() const { return m_modelDir; }
    bool modelIsDemo() const { return m_modelIsDemo; }
    bool modelLoading() const { return m_modelLoading; }
    const std::optional<qls::model_config>& modelConfig() const { return m_modelConfig; }
    QString modelError() const { return m_modelError; }
    void setModelLoading(const QString& dir, bool demo);
    void setModelLoaded(const QString& dir, const std::optional<qls::model_config>& config);
    void setModelFailed(const QString& message);

    // ---- data ----
    QString trainFile() const { return m_trainFile; }
    QString dataError() const { return m_dataError; }
    void setData(const QString& trainFile, const QString& error);

    // ---- settings (the Training page) ----
    bool settingsValid() const { return m_settingsError.isEmpty(); }
    QString settingsError() const { return m_settingsError; }
    void setSettingsError(const QString& error);

    // ---- the run ----
    RunState runState() const { return m_runState; }
    QString runDir() const { return m_runDir; }
    bool runActive() const {
        return m_runState == RunState::Starting || m_runState == RunState::Running || m_runState == RunState::Paused ||
               m_runState == RunState::Stopping;
    }
    void setRun(RunState state, const QString& runDir = QString());

    // ---- the Playground's adapter ("" when none) ----
    QString adapterName() const { return m_adapterName; }
    void setAdapterName(const QString& name);

    // One line for the status bar: what is loaded and what is running.
    QString summary() const;

signals:
    void changed();

private:
    QString m_modelDir;
    bool m_modelIsDemo = false;
    bool m_modelLoading = false;
    std::optional<qls::model_config> m_modelConfig;
    QString m_modelError;
    QString m_trainFile;
    QString m_dataError;
    QString m_settingsError;
    RunState m_runState = RunState::None;
    QString m_runDir;
    QString m_adapterName;
};
