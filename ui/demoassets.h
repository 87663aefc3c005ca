// DemoAssets — the demo model and Pip corpus compiled into the studio (resources/demo.qrc), extracted once per user to a cache folder.
#pragma once

#include <QString>
#include <QStringList>

// The demo needs nothing from outside the binary: a small LLaMA (random weights, a SentencePiece tokenizer trained on
// the Pip corpus; recipe resources/demo/make_demo_model.cpp) and the corpus itself. The engine reads files, so the
// first use copies them to <cacheRoot>/<first 16 hex digits of the content hash>/{model,data}/, writes a stamp holding
// the full SHA-256, and removes folders an older build left beside it. Later uses check every file against the
// embedded bytes (size and SHA-256) and extract again only when something is missing or changed.
//
//   DemoAssets demo;
//   if (demo.extract()) controller.loadModel(demo.modelDir()); else showError(demo.errorString());
class DemoAssets {
public:
    // cacheRoot: where the versioned folders go; empty → QStandardPaths::CacheLocation + "/demo".
    explicit DemoAssets(const QString& cacheRoot = QString());

    // Extracts when needed; true when the files are in place. Cheap after the first success.
    bool extract();
    // Paths of the extracted files (extracting on first use); empty when extraction failed (see errorString()).
    QString modelDir();
    QString datasetFile();    // data/pip_the_lighthouse_mouse.txt: 300 stories, one per paragraph
    QString validationFile(); // data/pip_the_lighthouse_mouse.val.txt: 30 more for validation loss
    QString errorString() const { return m_error; }
    // true when the last extract() found a complete, unchanged copy and wrote nothing
    bool reusedCache() const { return m_reused; }

    QString cacheRoot() const { return m_root; }
    QString extractedDir() const; // <cacheRoot>/<hash16>
    static QString contentHash(); // SHA-256 (hex) over every embedded file's name and bytes
    static QStringList files();   // embedded paths relative to the extracted folder, sorted

private:
    bool isIntact() const;
    QString m_root;
    QString m_error;
    bool m_done = false;
    bool m_reused = false;
};
