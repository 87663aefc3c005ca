// DemoAssets: hashes the embedded demo files, checks or writes the per-user extracted copy, and cleans up stale ones.
#include "demoassets.h"

#include <QCoreApplication>
#include <QCryptographicHash>
#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QFileInfo>
#include <QRegularExpression>
#include <QSaveFile>
#include <QStandardPaths>

// Outside any namespace, as Q_INIT_RESOURCE requires: the resources live in the static qls_ui library, whose
// initializer the linker would otherwise drop.
static void initDemoResources() { Q_INIT_RESOURCE(demo); }

namespace {

const char* const kPrefix = ":/demo/";
const char* const kStamp = ".complete";

QByteArray sha256(const QByteArray& bytes) { return QCryptographicHash::hash(bytes, QCryptographicHash::Sha256); }

QByteArray readAll(const QString& path, bool* ok) {
    QFile f(path);
    *ok = f.open(QIODevice::ReadOnly);
    return *ok ? f.readAll() : QByteArray();
}

} // namespace

DemoAssets::DemoAssets(const QString& cacheRoot) : m_root(cacheRoot) {
    initDemoResources();
    if (m_root.isEmpty())
        m_root = QStandardPaths::writableLocation(QStandardPaths::CacheLocation) + QStringLiteral("/demo");
    m_root = QDir::cleanPath(m_root);
}

QStringList DemoAssets::files() {
    initDemoResources();
    QStringList out;
    QDirIterator it(QString::fromLatin1(kPrefix), QDir::Files, QDirIterator::Subdirectories);
    while (it.hasNext()) out << it.next().mid(int(qstrlen(kPrefix)));
    out.sort();
    return out;
}

QString DemoAssets::contentHash() {
    static const QString hash = [] {
        QCryptographicHash h(QCryptographicHash::Sha256);
        for (const QString& name : files()) {
            bool ok = false;
            const QByteArray bytes = readAll(QString::fromLatin1(kPrefix) + name, &ok);
            h.addData(name.toUtf8());
            h.addData(QByteArray(1, '\0'));
            h.addData(QByteArray::number(bytes.size()));
            h.addData(QByteArray(1, '\0'));
            h.addData(bytes);
        }
        return QString::fromLatin1(h.result().toHex());
    }();
    return hash;
}

QString DemoAssets::extractedDir() const { return m_root + QLatin1Char('/') + contentHash().left(16); }

bool DemoAssets::isIntact() const {
    const QString dir = extractedDir();
    bool ok = false;
    if (readAll(dir + QLatin1Char('/') + QLatin1String(kStamp), &ok).trimmed() != contentHash().toLatin1() || !ok)
        return false;
    for (const QString& name : files()) {
        bool a = false, b = false;
        const QByteArray embedded = readAll(QString::fromLatin1(kPrefix) + name, &a);
        const QString path = dir + QLatin1Char('/') + name;
        if (!a || QFileInfo(path).size() != embedded.size()) return false;
        if (sha256(readAll(path, &b)) != sha256(embedded) || !b) return false;
    }
    return true;
}

bool DemoAssets::extract() {
    if (m_done) return true;
    m_error.clear();
    const QStringList names = files();
    if (names.isEmpty()) {
        m_error = QCoreApplication::translate("DemoAssets", "This build holds no demo files (resources/demo.qrc was "
                                                            "not compiled in); rebuild qls_ui.");
        return false;
    }
    const QString target = extractedDir();
    if (isIntact()) {
        m_done = m_reused = true;
        return true;
    }
    m_reused = false;
    if (!QDir().mkpath(m_root)) {
        m_error = QCoreApplication::translate("DemoAssets", "Cannot create the cache folder %1; check that it is "
                                                            "writable or free some space.")
                      .arg(m_root);
        return false;
    }
    // Write everything into a private temporary folder, then move it into place in one rename, so that a crash or a
    // second studio never leaves a half-written model under the final name.
    const QString tmp =
        m_root + QStringLiteral("/.tmp-%1-%2").arg(contentHash().left(16)).arg(QCoreApplication::applicationPid());
    QDir(tmp).removeRecursively();
    auto fail = [&](const QString& message) {
        m_error = message;
        QDir(tmp).removeRecursively();
        return false;
    };
    for (const QString& name : names) {
        const QString path = tmp + QLatin1Char('/') + name;
        bool ok = false;
        const QByteArray bytes = readAll(QString::fromLatin1(kPrefix) + name, &ok);
        QSaveFile out(path);
        if (!QDir().mkpath(QFileInfo(path).absolutePath()) || !ok || !out.open(QIODevice::WriteOnly) ||
            out.write(bytes) != bytes.size() || !out.commit())
            return fail(QCoreApplication::translate("DemoAssets", "Cannot write %1 (%2); check that the cache folder "
                                                                  "%3 is writable and the disk is not full.")
                            .arg(path, out.errorString(), m_root));
    }
    QSaveFile stamp(tmp + QLatin1Char('/') + QLatin1String(kStamp));
    if (!stamp.open(QIODevice::WriteOnly) || stamp.write(contentHash().toLatin1() + '\n') < 0 || !stamp.commit())
        return fail(QCoreApplication::translate("DemoAssets", "Cannot write %1 (%2).")
                        .arg(stamp.fileName(), stamp.errorString()));

    QDir(target).removeRecursively(); // a damaged copy of the same version
    if (!QDir().rename(tmp, target)) {
        // Another process may have finished the same extraction first; its copy is as good as ours.
        if (!isIntact())
            return fail(QCoreApplication::translate("DemoAssets", "Cannot move the demo files into %1; check that "
                                                                  "the folder is writable.")
                            .arg(target));
        QDir(tmp).removeRecursively();
    }
    // Remove what older builds extracted (folders named by 16 hex digits, each with its stamp).
    static const QRegularExpression versioned(QStringLiteral("^[0-9a-f]{16}$"));
    const QString current = QFileInfo(target).fileName();
    for (const QFileInfo& fi : QDir(m_root).entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot)) {
        if (fi.fileName() != current && versioned.match(fi.fileName()).hasMatch() &&
            QFileInfo::exists(fi.filePath() + QLatin1Char('/') + QLatin1String(kStamp)))
            QDir(fi.filePath()).removeRecursively();
    }
    m_done = true;
    return true;
}

QString DemoAssets::modelDir() { return extract() ? extractedDir() + QStringLiteral("/model") : QString(); }

QString DemoAssets::datasetFile() {
    return extract() ? extractedDir() + QStringLiteral("/data/pip_the_lighthouse_mouse.txt") : QString();
}

QString DemoAssets::validationFile() {
    return extract() ? extractedDir() + QStringLiteral("/data/pip_the_lighthouse_mouse.val.txt") : QString();
}
