// RunLock: QLockFile in the run folder; a lock taken never goes stale by age, only when its process is gone.
#include "runlock.h"

#include <QDir>
#include <QFileInfo>
#include <QLockFile>

#include <limits>

RunLock::RunLock() = default;
RunLock::~RunLock() { unlock(); }

QString RunLock::lockPath(const QString& runDir) { return QDir(runDir).absoluteFilePath(".studio.lock"); }

namespace {

QString describeHolder(const QLockFile& file) {
    qint64 pid = 0;
    QString host, app;
    if (!file.getLockInfo(&pid, &host, &app)) return QObject::tr("another process");
    return QObject::tr("%1 (process %2 on %3)")
        .arg(app.isEmpty() ? QObject::tr("another studio") : app)
        .arg(pid)
        .arg(host);
}

} // namespace

bool RunLock::lock(const QString& runDir, QString* why) {
    const QString dir = QDir(runDir).absolutePath();
    if (m_file && m_runDir == dir) return true;
    unlock();
    if (!QDir().mkpath(dir)) {
        if (why)
            *why = QObject::tr("%1 cannot be created; choose a runs folder you can write to on the Runs page.")
                       .arg(QDir::toNativeSeparators(dir));
        return false;
    }
    auto file = std::make_unique<QLockFile>(lockPath(dir));
    // a training run holds its lock for hours or days: stale when its process is gone, not by age (24 days)
    file->setStaleLockTime(std::numeric_limits<int>::max());
    if (!file->tryLock(0)) {
        if (why) {
            if (file->error() == QLockFile::LockFailedError)
                *why = QObject::tr("%1 is being trained by %2. Wait for that run to end, or stop it there.")
                           .arg(QFileInfo(dir).fileName(), describeHolder(*file));
            else
                *why = QObject::tr("The lock file %1 cannot be written; check the folder's permissions.")
                           .arg(QDir::toNativeSeparators(lockPath(dir)));
        }
        return false;
    }
    m_file = std::move(file);
    m_runDir = dir;
    return true;
}

void RunLock::unlock() {
    if (m_file) m_file->unlock();
    m_file.reset();
    m_runDir.clear();
}

bool RunLock::isLocked(const QString& runDir, QString* holder) {
    const QString path = lockPath(runDir);
    if (!QFileInfo::exists(path)) return false;
    QLockFile probe(path);
    probe.setStaleLockTime(std::numeric_limits<int>::max());
    if (probe.tryLock(0)) { // free (or stale: its process is gone)
        probe.unlock();
        return false;
    }
    if (holder) *holder = describeHolder(probe);
    return probe.error() == QLockFile::LockFailedError;
}
