// Qt Test suite for the demo model (resources/demo/model): its greedy story is readable English before fine-tuning, the demo's LoRA run (resources/examples/demo.run.json) makes it write about Pip, timed; a shortened recipe reproduces committed bytes.
#include "testutil.h"

#include "qls/generate.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/peft.h"
#include "qls/tokenizer.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <QCryptographicHash>
#include <QElapsedTimer>
#include <QFile>

#include <cctype>
#include <filesystem>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace {

const std::string k_src = QLS_SOURCE_DIR;
const std::string k_model = k_src + "/resources/demo/model";
const std::string k_prompt = "Once upon a time";

std::string read_all(const std::string& path) {
    QFile f(QString::fromStdString(path));
    if (!f.open(QIODevice::ReadOnly)) return {};
    return f.readAll().toStdString();
}

// Lower-case words of text: runs of letters (an apostrophe inside a word is kept: "let's").
std::vector<std::string> words_of(const std::string& text) {
    std::vector<std::string> out;
    std::string w;
    for (size_t i = 0; i <= text.size(); ++i) {
        const char ch = i < text.size() ? text[i] : ' ';
        if (std::isalpha(static_cast<unsigned char>(ch)) || (ch == '\'' && !w.empty())) {
            w += char(std::tolower(static_cast<unsigned char>(ch)));
        } else if (!w.empty()) {
            while (!w.empty() && w.back() == '\'') w.pop_back();
            if (!w.empty()) out.push_back(w);
            w.clear();
        }
    }
    return out;
}

// The greedy continuation of the prompt (the text after it).
std::string greedy(const qls::llama_model& m, const qls::tokenizer& tok, const qls::lora_weights<float>* adapter,
                   int new_tokens) {
    qls::generate_options go;
    go.prompt = k_prompt;
    go.max_new_tokens = new_tokens;
    go.sampling.temperature = 0;
    std::unique_ptr<qls::decoder> dec = qls::make_cpu_decoder(m, adapter);
    const qls::generate_result r = qls::generate(*dec, tok, go);
    return r.text.substr(std::min(r.text.size(), k_prompt.size()));
}

// What makes a continuation readable English: words, most of them from the corpus the model was pretrained on, and
// nothing the tokenizer had to spell byte by byte (a byte soup decodes to U+FFFD or control characters).
struct readability {
    size_t words = 0, known = 0, odd_bytes = 0;
    double known_fraction() const { return words ? double(known) / double(words) : 0; }
};
readability judge(const std::string& text, const std::set<std::string>& vocabulary) {
    readability r;
    for (const std::string& w : words_of(text)) {
        ++r.words;
        r.known += vocabulary.count(w);
    }
    for (unsigned char ch : text)
        if ((ch < 0x20 && ch != '\n') || ch >= 0x80) ++r.odd_bytes;
    return r;
}

QByteArray sha256_file(const std::string& path) {
    return QCryptographicHash::hash(QByteArray::fromStdString(read_all(path)), QCryptographicHash::Sha256).toHex();
}

} // namespace

class TestDemoModel : public QObject {
    Q_OBJECT

    std::set<std::string> m_tales_vocabulary;

private slots:
    void initTestCase() {
        const std::string tales = read_all(k_src + "/datasets/tales/small_tales.txt");
        QVERIFY2(!tales.empty(), "datasets/tales/small_tales.txt is missing (python3 datasets/tales/make_tales.py)");
        for (const std::string& w : words_of(tales)) m_tales_vocabulary.insert(w);
        // the pretraining corpus teaches nothing of Pip
        QVERIFY(!m_tales_vocabulary.count("pip"));
        QVERIFY(!m_tales_vocabulary.count("lighthouse"));
        QVERIFY(!m_tales_vocabulary.count("mouse"));
    }

    // The base model's greedy story: at least 40 words, 95% of them words of the tales corpus, no stray bytes,
    // and no Pip.
    void baseModelWritesReadableEnglish() {
        const qls::hf_checkpoint ck = qls::hf_checkpoint::open(k_model);
        const qls::tokenizer tok = qls::load_tokenizer_for(ck);
        const qls::llama_model m = qls::llama_model::load(ck);
        const std::string text = greedy(m, tok, nullptr, 80);
        const readability r = judge(text, m_tales_vocabulary);
        qInfo("base: \"%s%s\" (%zu words, %.0f%% known)", k_prompt.c_str(), text.c_str(), r.words,
              100 * r.known_fraction());
        QVERIFY2(r.words >= 40, qPrintable(QString::fromStdString(text)));
        QVERIFY2(r.known_fraction() >= 0.95, qPrintable(QString::fromStdString(text)));
        QCOMPARE(r.odd_bytes, size_t(0));
        QVERIFY2(text.find("Pip") == std::string::npos, qPrintable(QString::fromStdString(text)));
    }

    // The demo run exactly as resources/examples/demo.run.json configures it (NF4 base, LoRA rank 8, 40 steps),
    // timed; its adapter on the NF4 base makes the greedy story about Pip and still readable.
    void demoFineTuneWritesAboutPip() {
        QTemporaryDir tmp;
        qls::train_config c = qls::load_train_config(k_src + "/resources/examples/demo.run.json");
        c.runs_dir = tmp.path().toStdString();
        QElapsedTimer clock;
        clock.start();
        auto t = qls::trainer::create(c);
        QCOMPARE(t->run(), qls::train_outcome::completed);
        const double seconds = double(clock.elapsed()) / 1000.0;
        const std::vector<qls::step_stats> steps = qls::read_metrics(t->run_dir());
        QCOMPARE(int64_t(steps.size()), c.max_steps);
        QVERIFY(steps.back().eval_loss.has_value());
        qInfo("demo run: %lld steps in %.1f s (setup included); train loss %.4f -> %.4f, eval loss %.4f",
              (long long)c.max_steps, seconds, steps.front().loss, steps.back().loss, *steps.back().eval_loss);
        // what README.md and resources/demo/README.md promise for this run on a 2-core machine
        QVERIFY2(seconds < 150, qPrintable(QString::number(seconds)));

        qls::llama_load_options lo;
        lo.quantize_nf4 = c.quantize_nf4;
        lo.double_quant = c.double_quant;
        const qls::hf_checkpoint ck = qls::hf_checkpoint::open(k_model);
        const qls::tokenizer tok = qls::load_tokenizer_for(ck);
        const qls::llama_model m = qls::llama_model::load(ck, lo);
        const qls::lora_weights<float> adapter = qls::load_peft(qls::latest_checkpoint(t->run_dir()), m.config);
        const std::string text = greedy(m, tok, &adapter, 80);
        const readability r = judge(text, m_tales_vocabulary);
        qInfo("fine-tuned: \"%s%s\"", k_prompt.c_str(), text.c_str());
        QVERIFY2(text.find("Pip") != std::string::npos, qPrintable(QString::fromStdString(text)));
        QCOMPARE(r.odd_bytes, size_t(0));
        QVERIFY2(r.words >= 40, qPrintable(QString::fromStdString(text)));
    }

    // The recipe (make_demo_model) shortened to 3 pretraining steps: its tokenizer and config are the committed
    // model's byte for byte (they do not depend on the steps), and its weights match the checksum committed for the
    // shortened recipe, so the recipe is a pure function of the repository's files.
    void shortenedRecipeReproducesCommittedBytes() {
        const QString exe = QString(QLS_BIN_DIR) + "/make_demo_model";
        QVERIFY2(QFileInfo::exists(exe), "build the make_demo_model target (it is part of the default build)");
        QTemporaryDir tmp;
        const QString out = tmp.path() + "/model";
        QProcess p;
        p.start(exe, {QString::fromStdString(k_src + "/datasets/stories/pip_the_lighthouse_mouse.txt"),
                      QString::fromStdString(k_src + "/datasets/tales/small_tales.txt"),
                      QString::fromStdString(k_src + "/datasets/tales/small_tales.val.txt"), out, "--steps", "3"});
        QVERIFY(p.waitForFinished(600000));
        QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0, p.readAllStandardError().constData());
        const std::string o = out.toStdString();
        for (const char* f : {"tokenizer.model", "config.json", "tokenizer_config.json", "generation_config.json"})
            QVERIFY2(sha256_file(o + "/" + f) == sha256_file(k_model + "/" + f), f);
        // resources/demo/recipe-steps3.sha256: "<sha256>  model.safetensors", written by the same command
        const std::string expected = read_all(k_src + "/resources/demo/recipe-steps3.sha256");
        QVERIFY2(!expected.empty(), "resources/demo/recipe-steps3.sha256 is missing");
        QCOMPARE(QByteArray::fromStdString(expected.substr(0, 64)), sha256_file(o + "/model.safetensors"));
    }
};

QTEST_GUILESS_MAIN(TestDemoModel)
#include "tst_demo_model.moc"
