// RunLock — the lock file a studio holds in a run's folder while it trains that run, so no other studio (or window) resumes, deletes or trains it too.
#pragma once

#include <QString>

#include <memory>

class QLockFile;

// <run>/.studio.lock through QLockFile: it holds the owner's process id, host name and application, and a lock whose
// process has died is stale and taken over (so a crash never leaves a run locked for ever).
class RunLock {
public:
    RunLock();
    ~RunLock(); // unlocks
    RunLock(const RunLock&) = delete;
    RunLock& operator=(const RunLock&) = delete;

    // Takes the lock of runDir (creating the folder when it is missing); false with the reason (who holds it) in
    // *why. Releases a lock held on another run first.
    bool lock(const QString& runDir, QString* why = nullptr);
    void unlock();
    QString lockedRun() const { return m_runDir; }

    static QString lockPath(const QString& runDir);
    // True when some process (this one included, through another RunLock) holds runDir's lock; *holder says who.
    static bool isLocked(const QString& runDir, QString* holder = nullptr);

private:
    std::unique_ptr<QLockFile> m_file;
    QString m_runDir;
};
