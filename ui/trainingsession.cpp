// TrainingSession: the run-state bookkeeping shared by every session (engine or fake).
#include "trainingsession.h"

TrainingSession::TrainingSession(QObject* parent) : QObject(parent) {
    qRegisterMetaType<qls::step_stats>();
    qRegisterMetaType<TrainingSession::State>();
}

QString TrainingSession::stateName(State s) {
    switch (s) {
    case State::Idle: return tr("idle");
    case State::Starting: return tr("starting");
    case State::Running: return tr("running");
    case State::Paused: return tr("paused");
    case State::Stopping: return tr("stopping");
    }
    return QString();
}

void TrainingSession::setState(State s) {
    if (s == m_state) return;
    m_state = s;
    emit stateChanged(s);
}
