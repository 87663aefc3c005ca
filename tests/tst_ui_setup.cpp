// The studio's setup pages (Dataset, Training, Memory plan) checked against the engine they drive (offscreen).
#include "testutil.h"

#include "datasetpage.h"
#include "planpage.h"
#include "trainingpage.h"

#include "qls/dataset.h"
#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/memory_plan.h"
#include "qls/train_config.h"

#include <QApplication>
#include <QElapsedTimer>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTextBlock>
#include <QTextDocument>
#include <QTimer>

#include <map>

namespace {

QString datasetPath(const char* rel) { return QString(QLS_SOURCE_DIR) + "/datasets/" + rel; }

// Where the pages' screenshots go: <build>/ui-setup-shots/.
QString shotDir() {
    const QString d = QString(QLS_BIN_DIR) + "/../ui-setup-shots";
    QDir().mkpath(d);
    return QDir(d).absolutePath();
}

void grabPage(QWidget& w, const QString& name) {
    w.resize(1180, 780);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QCoreApplication::processEvents();
    const QString path = shotDir() + "/" + name + ".png";
    QVERIFY2(w.grab().save(path), qPrintable("could not write " + path));
}

bool waitForAnalysis(DatasetPage& page, int timeoutMs = 30000) {
    QElapsedTimer t;
    t.start();
    while (page.isAnalyzing() && t.elapsed() < timeoutMs) QTest::qWait(10);
    return !page.isAnalyzing();
}

qls::data_options engineOptions(const qls::train_config& c) {
    qls::data_options o;
    o.format = qls::parse_dataset_format(c.dataset_format);
    o.tmpl = qls::parse_chat_template(c.prompt_template);
    o.seq_len = c.seq_len;
    o.train_on_prompt = c.train_on_prompt;
    o.on_bad_record = c.skip_malformed ? qls::bad_record_policy::skip : qls::bad_record_policy::fail;
    return o;
}

// The engine's message for one bad value on top of an otherwise valid config.
QString engineMessageFor(const std::function<void(qls::train_config&)>& set) {
    qls::train_config c;
    c.model = "m";
    c.train_file = "t";
    set(c);
    try {
        qls::validate_train_config(c);
    } catch (const qls::error& e) {
        return QString::fromStdString(e.what());
    }
    return {};
}

// Every field the Training page owns, compared one by one (names in the failure message).
void compareTrainingFields(const qls::train_config& a, const qls::train_config& b) {
#define QLS_SAME(field) QVERIFY2(a.field == b.field, #field " differs")
    QLS_SAME(lora.rank);
    QLS_SAME(lora.alpha);
    QLS_SAME(lora.dropout);
    QLS_SAME(lora.use_rslora);
    QLS_SAME(lora.targets);
    QLS_SAME(quantize_nf4);
    QLS_SAME(double_quant);
    QLS_SAME(optimizer);
    QLS_SAME(learning_rate);
    QLS_SAME(schedule);
    QLS_SAME(warmup_steps);
    QLS_SAME(warmup_ratio);
    QLS_SAME(adamw.weight_decay);
    QLS_SAME(max_grad_norm);
    QLS_SAME(seq_len);
    QLS_SAME(micro_batch);
    QLS_SAME(grad_accum);
    QLS_SAME(packing);
    QLS_SAME(epochs);
    QLS_SAME(max_steps);
    QLS_SAME(eval_every);
    QLS_SAME(eval_batches);
    QLS_SAME(gradient_checkpointing);
    QLS_SAME(checkpoint_every);
    QLS_SAME(keep_checkpoints);
    QLS_SAME(budget_gib);
    QLS_SAME(seed);
#undef QLS_SAME
}

// A config whose every Training-page field differs from the defaults.
qls::train_config nonDefaultTraining() {
    qls::train_config x;
    x.lora.rank = 8;
    x.lora.alpha = 32;
    x.lora.dropout = 0.05f;
    x.lora.use_rslora = true;
    x.lora.targets = {qls::lora_target::q, qls::lora_target::v, qls::lora_target::down};
    x.quantize_nf4 = true;
    x.double_quant = false;
    x.optimizer = qls::optimizer_kind::adamw_32bit;
    x.learning_rate = 1.5e-4f;
    x.schedule = qls::lr_schedule::cosine;
    x.warmup_steps = 10;
    x.warmup_ratio = 0.1;
    x.adamw.weight_decay = 0.01f;
    x.max_grad_norm = 1.0f;
    x.seq_len = 1024;
    x.micro_batch = 2;
    x.grad_accum = 8;
    x.packing = false;
    x.epochs = 2.5;
    x.max_steps = 500;
    x.eval_every = 50;
    x.eval_batches = 4;
    x.gradient_checkpointing = false;
    x.checkpoint_every = 25;
    x.keep_checkpoints = 5;
    x.budget_gib = 23.5;
    x.seed = 12345678901234567890ull; // above 2^63: the seed is a full uint64
    return x;
}

double sum(const std::array<double, qls::plan_category_count>& v, bool withContext) {
    double s = 0;
    for (int i = 0; i < qls::plan_category_count; ++i)
        if (withContext || qls::plan_category(i) != qls::plan_category::cuda_context) s += v[size_t(i)];
    return s;
}

} // namespace

class TestUiSetup : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    // ---- Dataset page ----------------------------------------------------------------------------------------------

    void datasetDetectsFormats_data() {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("format");
        QTest::addColumn<QString>("tmpl");
        QTest::addColumn<bool>("withModel");
        for (bool m : {false, true}) {
            const char* tag = m ? " (tokenized)" : " (records only)";
            QTest::newRow(qPrintable(QString("alpaca json") + tag))
                << datasetPath("instructions/alpaca_sample.json") << "alpaca"
                << "alpaca" << m;
            QTest::newRow(qPrintable(QString("alpaca jsonl") + tag))
                << datasetPath("instructions/alpaca_sample.jsonl") << "alpaca"
                << "alpaca" << m;
            QTest::newRow(qPrintable(QString("messages") + tag)) << datasetPath("chat/chat_sample.jsonl") << "messages"
                                                                 << "llama2" << m;
            QTest::newRow(qPrintable(QString("sharegpt") + tag))
                << datasetPath("chat/sharegpt_sample.jsonl") << "sharegpt"
                << "llama2" << m;
            QTest::newRow(qPrintable(QString("plain text") + tag))
                << datasetPath("stories/pip_the_lighthouse_mouse.txt") << "plain"
                << "raw" << m;
        }
    }

    void datasetDetectsFormats() {
        QFETCH(QString, file);
        QFETCH(QString, format);
        QFETCH(QString, tmpl);
        QFETCH(bool, withModel);
        DatasetPage page;
        QSignalSpy finished(&page, &DatasetPage::analysisFinished);
        if (withModel) page.setModelDir(QString::fromStdString(testutil::model_dir()));
        qls::train_config c;
        c.train_file = file.toStdString();
        page.loadFrom(c);
        QVERIFY(waitForAnalysis(page));
        QVERIFY(finished.count() >= 1);
        const DatasetAnalysis& r = page.analysis();
        QVERIFY2(r.trainError.isEmpty(), qPrintable(r.trainError));
        QCOMPARE(QString(qls::dataset_format_name(r.format)), format);
        QCOMPARE(qls::dataset_format_name(r.format), qls::dataset_format_name(qls::detect_format(file.toStdString())));
        QCOMPARE(QString(qls::chat_template_name(r.tmpl)), tmpl);
        QCOMPARE(r.tokenized, withModel);
        // the page says what it detected, beside the combo
        bool shown = false;
        for (QLabel* l : page.findChildren<QLabel*>()) shown |= l->text().startsWith("detected:");
        QVERIFY(shown);
        // record count as the engine reads it
        const qls::record_set rs = qls::read_records(file.toStdString(), engineOptions(c));
        QCOMPARE(r.records, rs.records.size());
        // the page writes back "auto" (detection stays automatic) and the file
        qls::train_config out;
        page.applyTo(out);
        QCOMPARE(out.dataset_format, std::string("auto"));
        QCOMPARE(out.prompt_template, std::string("auto"));
        QCOMPARE(out.train_file, file.toStdString());
    }

    void datasetPreviewHighlightsExactlyLossTokens_data() {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("tmpl");
        QTest::addColumn<bool>("trainOnPrompt");
        QTest::newRow("alpaca") << datasetPath("instructions/alpaca_sample.json") << "auto" << false;
        QTest::newRow("alpaca as chatml") << datasetPath("instructions/alpaca_sample.jsonl") << "chatml" << false;
        QTest::newRow("chat messages") << datasetPath("chat/chat_sample.jsonl") << "auto" << false;
        QTest::newRow("sharegpt, train on prompt") << datasetPath("chat/sharegpt_sample.jsonl") << "auto" << true;
        QTest::newRow("stories") << datasetPath("stories/pip_the_lighthouse_mouse.txt") << "auto" << false;
    }

    void datasetPreviewHighlightsExactlyLossTokens() {
        QFETCH(QString, file);
        QFETCH(QString, tmpl);
        QFETCH(bool, trainOnPrompt);
        DatasetPage page;
        page.setModelDir(QString::fromStdString(testutil::model_dir()));
        qls::train_config c;
        c.train_file = file.toStdString();
        c.prompt_template = tmpl.toStdString();
        c.train_on_prompt = trainOnPrompt;
        page.loadFrom(c);
        QVERIFY(waitForAnalysis(page));
        QVERIFY2(page.analysis().trainError.isEmpty(), qPrintable(page.analysis().trainError));

        // the engine's own rendering of the same file
        const qls::tokenizer tok = qls::load_tokenizer_for(qls::hf_checkpoint::open(testutil::model_dir()));
        const qls::dataset ds = qls::load_dataset(c.train_file, tok, engineOptions(c));
        QCOMPARE(page.analysis().stats.examples, ds.examples.size());
        QCOMPARE(page.analysis().preview.size(), std::min<size_t>(ds.examples.size(), DatasetPage::previewLimit));

        const QSet<QRgb> lossColors{DatasetPage::lossColor(0).rgb(), DatasetPage::lossColor(1).rgb()};
        for (int row : {0, 1, 7}) {
            page.showExample(row);
            const qls::data_example& ex = ds.examples[size_t(row)];
            // every token of the document: index → (highlighted as seen, loss property)
            std::map<int, std::pair<bool, bool>> seen;
            for (QTextBlock b = page.previewDocument()->begin(); b.isValid(); b = b.next())
                for (auto it = b.begin(); !it.atEnd(); ++it) {
                    const QTextCharFormat f = it.fragment().charFormat();
                    if (!f.hasProperty(DatasetPage::TokenIndexProperty)) continue;
                    const int i = f.intProperty(DatasetPage::TokenIndexProperty);
                    seen[i] = {lossColors.contains(f.background().color().rgb()),
                               f.boolProperty(DatasetPage::TokenLossProperty)};
                }
            QCOMPARE(seen.size(), ex.ids.size());
            size_t highlighted = 0;
            for (size_t i = 0; i < ex.ids.size(); ++i) {
                const auto s = seen.at(int(i));
                QVERIFY2(s.first == (ex.loss[i] != 0),
                         qPrintable(QString("row %1 token %2: highlighted %3, engine loss %4")
                                        .arg(row)
                                        .arg(i)
                                        .arg(s.first)
                                        .arg(ex.loss[i])));
                QCOMPARE(s.second, ex.loss[i] != 0);
                highlighted += s.first;
            }
            QCOMPARE(highlighted, ex.loss_tokens());
            QVERIFY(highlighted > 0);
            if (trainOnPrompt) QCOMPARE(highlighted, ex.ids.size() - 1); // all but the first token
            else if (ex.ids.size() > highlighted + 1) QVERIFY(highlighted < ex.ids.size() - 1);
            // the page's ids are the engine's
            QCOMPARE(page.analysis().preview[size_t(row)].ids, ex.ids);
        }
    }

    void datasetHistogramHoldsCounts() {
        DatasetPage page;
        page.setModelDir(QString::fromStdString(testutil::model_dir()));
        qls::train_config c;
        c.train_file = datasetPath("stories/pip_the_lighthouse_mouse.txt").toStdString();
        c.seq_len = 384;
        page.loadFrom(c);
        QVERIFY(waitForAnalysis(page));
        const qls::tokenizer tok = qls::load_tokenizer_for(qls::hf_checkpoint::open(testutil::model_dir()));
        const qls::dataset ds = qls::load_dataset(c.train_file, tok, engineOptions(c));
        QCOMPARE(ds.stats.examples, size_t(300));
        const auto bars = page.histogramBars();
        QCOMPARE(bars.size(), qsizetype(qls::k_length_histogram_bins));
        const int w = ds.stats.histogram_bin_width;
        double total = 0;
        for (int i = 0; i < bars.size(); ++i) {
            QCOMPARE(bars[i].second, double(ds.stats.histogram[size_t(i)]));
            QVERIFY(bars[i].first > i * w && bars[i].first <= (i + 1) * w); // the bar sits on its bin
            total += bars[i].second;
        }
        QCOMPARE(total, 300.0);
        // the sequence length from the Training page changes the bins
        page.setSeqLen(256);
        QVERIFY(waitForAnalysis(page));
        c.seq_len = 256;
        const qls::dataset ds256 = qls::load_dataset(c.train_file, tok, engineOptions(c));
        const auto bars256 = page.histogramBars();
        for (int i = 0; i < bars256.size(); ++i) QCOMPARE(bars256[i].second, double(ds256.stats.histogram[size_t(i)]));
        QCOMPARE(page.analysis().stats.truncated, ds256.stats.truncated);
        QVERIFY(ds256.stats.truncated > 0);
    }

    // A big file is read and tokenized on the pool: the GUI thread keeps serving events meanwhile, the preview is
    // capped and says so, the statistics cover every example.
    void datasetAnalysisDoesNotBlockTheGuiThread() {
        QTemporaryDir dir;
        const QString path = dir.filePath("big.txt");
        QFile in(datasetPath("stories/pip_the_lighthouse_mouse.txt"));
        QVERIFY(in.open(QIODevice::ReadOnly));
        const QByteArray stories = in.readAll().trimmed();
        QFile out(path);
        QVERIFY(out.open(QIODevice::WriteOnly));
        const int copies = 12;
        for (int i = 0; i < copies; ++i) out.write(stories + "\n\n");
        out.close();

        DatasetPage page;
        page.setModelDir(QString::fromStdString(testutil::model_dir()));
        qls::train_config c;
        c.train_file = path.toStdString();
        QElapsedTimer t;
        t.start();
        page.loadFrom(c);
        const qint64 returnedAfter = t.elapsed();
        int ticks = 0;
        QTimer tick;
        connect(&tick, &QTimer::timeout, [&ticks] { ++ticks; });
        tick.start(5);
        QVERIFY(waitForAnalysis(page, 60000));
        const qint64 total = t.elapsed();
        qInfo("%d examples: loadFrom returned after %lld ms, analysis done after %lld ms, %d timer ticks meanwhile",
              copies * 300, returnedAfter, total, ticks);
        QVERIFY(returnedAfter < 50);
        QVERIFY2(ticks >= 5, qPrintable(QString::number(ticks))); // the event loop ran during the analysis
        QCOMPARE(page.analysis().stats.examples, size_t(copies * 300));
        QCOMPARE(page.analysis().preview.size(), size_t(DatasetPage::previewLimit));
        bool said = false;
        for (QLabel* l : page.findChildren<QLabel*>())
            said |= l->text().contains("Showing the first 200 of " + QLocale().toString(copies * 300));
        QVERIFY(said);
    }

    void datasetReportsMalformedLinesWithFileAndLine() {
        QTemporaryDir dir;
        const QString path = dir.filePath("broken.jsonl");
        QFile f(path);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("{\"instruction\": \"Say hi\", \"input\": \"\", \"output\": \"Hi\"}\n"
                "{\"instruction\": \"Say bye\", \"output\": \n"
                "{\"instruction\": \"Count\", \"input\": \"\", \"output\": \"1 2 3\"}\n");
        f.close();
        DatasetPage page;
        page.setModelDir(QString::fromStdString(testutil::model_dir()));
        qls::train_config c;
        c.train_file = path.toStdString();
        page.loadFrom(c);
        QVERIFY(waitForAnalysis(page));
        QCOMPARE(page.analysis().stats.examples, size_t(2));
        QCOMPARE(page.analysis().warnings.size(), 1);
        QVERIFY2(page.analysis().warnings[0].startsWith(path + ":2:"), qPrintable(page.analysis().warnings[0]));
        auto* problems = page.findChildren<QListWidget*>().last();
        QVERIFY(problems->item(0)->text().startsWith(path + ":2:"));

        // not skipping: the first malformed line refuses the file, inline, in red, with file:line
        c.skip_malformed = false;
        page.loadFrom(c);
        QVERIFY(waitForAnalysis(page));
        QVERIFY2(page.analysis().trainError.contains(path + ":2:"), qPrintable(page.analysis().trainError));
        QString reason;
        QVERIFY(!page.validate(&reason));
        QVERIFY(reason.contains(":2:"));
        bool inline_ = false;
        for (QLabel* l : page.findChildren<QLabel*>())
            inline_ |= l->isVisibleTo(&page) && l->text().contains(path + ":2:") && l->styleSheet().contains("#b00020");
        QVERIFY(inline_);
    }

    void datasetValidationSplit() {
        DatasetPage page;
        page.setModelDir(QString::fromStdString(testutil::model_dir()));
        qls::train_config c;
        c.train_file = datasetPath("stories/pip_the_lighthouse_mouse.txt").toStdString();
        c.validation_fraction = 0.1;
        page.loadFrom(c);
        QVERIFY(waitForAnalysis(page));
        QCOMPARE(page.analysis().trainExamples, size_t(270));
        QCOMPARE(page.analysis().validationExamples, size_t(30));
        qls::train_config out;
        page.applyTo(out);
        QCOMPARE(out.validation_fraction, 0.1);
        QVERIFY(out.validation_file.empty());

        c.validation_fraction = 0;
        c.validation_file = datasetPath("stories/pip_the_lighthouse_mouse.val.txt").toStdString();
        page.loadFrom(c);
        QVERIFY(waitForAnalysis(page));
        QCOMPARE(page.analysis().trainExamples, size_t(300));
        QCOMPARE(page.analysis().validationExamples, size_t(30));
        page.applyTo(out);
        QCOMPARE(out.validation_file, c.validation_file);
        QCOMPARE(out.validation_fraction, 0.0);
        QVERIFY(page.validate());

        // a missing validation file is refused with the engine's message
        c.validation_file = datasetPath("stories/missing.txt").toStdString();
        page.loadFrom(c);
        QVERIFY(waitForAnalysis(page));
        QString reason;
        QVERIFY(!page.validate(&reason));
        QVERIFY2(reason.contains("not found"), qPrintable(reason));
    }

    void datasetTemplateMismatchIsRefusedInline() {
        DatasetPage page;
        qls::train_config c;
        c.train_file = datasetPath("chat/chat_sample.jsonl").toStdString();
        c.prompt_template = "raw";
        page.loadFrom(c);
        QVERIFY(waitForAnalysis(page));
        QVERIFY(!page.analysis().templateError.isEmpty());
        QString expected;
        try {
            qls::resolve_template(qls::chat_template::raw, qls::dataset_format::chat_messages);
        } catch (const qls::error& e) {
            expected = QString::fromStdString(e.what());
        }
        QVERIFY(!expected.isEmpty());
        QVERIFY(page.analysis().templateError.contains(expected));
        QVERIFY(!page.validate());
    }

    // ---- Training page ---------------------------------------------------------------------------------------------

    void trainingDefaultsAreValidAndArePaperSettings() {
        TrainingPage page;
        QString reason;
        QVERIFY2(page.validate(&reason), qPrintable(reason));
        qls::train_config out;
        out.seed = 7; // overwritten by the page
        page.applyTo(out);
        compareTrainingFields(out, qls::train_config{});
        for (QWidget* w : page.findChildren<QWidget*>())
            if (qobject_cast<QLabel*>(w) && w->objectName().startsWith("error:")) QVERIFY(!w->isVisibleTo(&page));
    }

    void trainingRefusesInvalidValuesInline_data() {
        QTest::addColumn<QString>("key");
        QTest::addColumn<QString>("widgetValue");
        QTest::newRow("rank 0") << "lora.rank"
                                << "0";
        QTest::newRow("lr negative") << "optimizer.lr"
                                     << "-1e-4";
        QTest::newRow("lr not a number") << "optimizer.lr"
                                         << "fast";
        QTest::newRow("seq_len 1") << "training.seq_len"
                                   << "1";
        QTest::newRow("dropout 1") << "lora.dropout"
                                   << "1";
        QTest::newRow("micro_batch 0") << "training.micro_batch"
                                       << "0";
        QTest::newRow("no targets") << "lora.targets"
                                    << "";
        QTest::newRow("epochs 0") << "training.epochs"
                                  << "0";
        QTest::newRow("keep 0 checkpoints") << "training.keep_checkpoints"
                                            << "0";
    }

    void trainingRefusesInvalidValuesInline() {
        QFETCH(QString, key);
        QFETCH(QString, widgetValue);
        TrainingPage page;
        QSignalSpy changed(&page, &TrainingPage::changed);
        qls::train_config c; // drive the page through loadFrom for numbers, widgets for the rest
        QString expected;
        if (key == "lora.rank") {
            c.lora.rank = 0;
            page.loadFrom(c);
            expected = engineMessageFor([](qls::train_config& x) { x.lora.rank = 0; });
        } else if (key == "optimizer.lr") {
            auto* lr = page.findChild<QLabel*>("error:optimizer.lr")->parentWidget()->findChild<QLineEdit*>();
            QVERIFY(lr);
            lr->setText(widgetValue);
            expected = widgetValue == "fast" ? QString("optimizer.lr: \"fast\" is not a number")
                                             : engineMessageFor([](qls::train_config& x) { x.learning_rate = -1e-4f; });
        } else if (key == "training.seq_len") {
            c.seq_len = 1;
            page.loadFrom(c);
            expected = engineMessageFor([](qls::train_config& x) { x.seq_len = 1; });
        } else if (key == "lora.dropout") {
            c.lora.dropout = 1.0f;
            page.loadFrom(c);
            expected = engineMessageFor([](qls::train_config& x) { x.lora.dropout = 1.0f; });
        } else if (key == "training.micro_batch") {
            c.micro_batch = 0;
            page.loadFrom(c);
            expected = engineMessageFor([](qls::train_config& x) { x.micro_batch = 0; });
        } else if (key == "lora.targets") {
            c.lora.targets.clear();
            page.loadFrom(c);
            expected = engineMessageFor([](qls::train_config& x) { x.lora.targets.clear(); });
        } else if (key == "training.epochs") {
            c.epochs = 0;
            page.loadFrom(c);
            expected = engineMessageFor([](qls::train_config& x) { x.epochs = 0; });
        } else if (key == "training.keep_checkpoints") {
            c.keep_checkpoints = 0;
            page.loadFrom(c);
            expected = engineMessageFor([](qls::train_config& x) { x.keep_checkpoints = 0; });
        }
        QVERIFY(!expected.isEmpty());
        QVERIFY(changed.count() >= 1);
        QString reason;
        QVERIFY(!page.validate(&reason));
        const QString shown = page.fieldError(key);
        // the engine's message in the page's words: after the field's name, without the run.json key
        QString words = expected;
        if (words.startsWith(key + ": ")) words = words.mid(key.size() + 2);
        words = page.inFieldNames(words);
        QVERIFY2(shown.contains(words), qPrintable(shown + " / expected: " + words));
        QVERIFY2(!shown.contains(key), qPrintable(shown));
        QVERIFY2(shown.contains("fix:"), qPrintable(shown)); // the engine's hint says what to do
        QCOMPARE(reason, shown);
        auto* label = page.findChild<QLabel*>("error:" + key);
        QVERIFY(label && label->isVisibleTo(&page));
        QVERIFY(label->styleSheet().contains("#b00020"));
        // only that field complains (epochs is checked together with max steps)
        int visible = 0;
        for (QLabel* l : page.findChildren<QLabel*>())
            if (l->objectName().startsWith("error:") && l->isVisibleTo(&page)) ++visible;
        QCOMPARE(visible, 1);
        // and going back to the default clears it
        page.loadFrom(qls::train_config{});
        QVERIFY(page.validate());
        QVERIFY(page.fieldError(key).isEmpty());
    }

    void trainingPresetRoundTripsEveryField() {
        const qls::train_config x = nonDefaultTraining();
        TrainingPage a;
        a.loadFrom(x);
        QString reason;
        QVERIFY2(a.validate(&reason), qPrintable(reason));
        qls::train_config viaPage;
        a.applyTo(viaPage);
        compareTrainingFields(viaPage, x); // loadFrom → applyTo is exact

        QTemporaryDir dir;
        const QString path = dir.filePath("preset.json");
        QString error;
        QVERIFY2(a.savePreset(path, &error), qPrintable(error));
        // a run.json fragment: the sections of run.json, nothing of the other pages
        QFile f(path);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QJsonObject o = QJsonDocument::fromJson(f.readAll()).object();
        QCOMPARE(o.keys(), QStringList({"data", "device", "lora", "optimizer", "quantization", "training"}));
        QCOMPARE(o["data"].toObject().keys(), QStringList({"packing"}));
        QCOMPARE(o["lora"].toObject()["rank"].toInt(), 8);

        TrainingPage b;
        QVERIFY2(b.loadPreset(path, &error), qPrintable(error));
        qls::train_config back;
        b.applyTo(back);
        compareTrainingFields(back, x);

        // a preset that breaks a rule is refused with the parser's message and changes nothing
        QFile bad(dir.filePath("bad.json"));
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write(R"({"lora": {"rank": 0}, "training": {"seq_len": 64}})");
        bad.close();
        TrainingPage c;
        QVERIFY(!c.loadPreset(bad.fileName(), &error));
        QVERIFY2(error.contains("bad.json") && error.contains("LoRA rank must be at least 1"), qPrintable(error));
        qls::train_config unchanged;
        c.applyTo(unchanged);
        compareTrainingFields(unchanged, qls::train_config{});
        // so is an unknown key
        QFile typo(dir.filePath("typo.json"));
        QVERIFY(typo.open(QIODevice::WriteOnly));
        typo.write(R"({"lora": {"rnak": 16}})");
        typo.close();
        QVERIFY(!c.loadPreset(typo.fileName(), &error));
        QVERIFY2(error.contains("lora.rnak") && error.contains("is not a known setting"), qPrintable(error));
        // a partial preset sets its keys only
        QFile part(dir.filePath("part.json"));
        QVERIFY(part.open(QIODevice::WriteOnly));
        part.write(R"({"training": {"seq_len": 2048}})");
        part.close();
        QVERIFY(b.loadPreset(part.fileName(), &error));
        b.applyTo(back);
        QCOMPARE(back.seq_len, 2048);
        QCOMPARE(back.lora.rank, 8);
    }

    // ---- Plan page -------------------------------------------------------------------------------------------------

    void planVerdicts_data() {
        QTest::addColumn<double>("budgetGib");
        QTest::addColumn<QString>("optimizer");
        QTest::addColumn<QString>("verdict");
        QTest::newRow("7b fits 24 GiB") << 24.0 << "paged-adamw-8bit"
                                        << "Fits";
        QTest::newRow("7b in 2 GiB does not fit") << 2.0 << "paged-adamw-8bit"
                                                  << "Does not fit";
        QTest::newRow("7b paged between minimum and resident") << -1.0 << "paged-adamw-32bit"
                                                               << "Fits with paging";
    }

    void planVerdicts() {
        QFETCH(double, budgetGib);
        QFETCH(QString, optimizer);
        QFETCH(QString, verdict);
        const qls::model_config m = qls::shape_config("7b");
        qls::train_config c;
        c.seq_len = 2048;
        c.optimizer = qls::parse_optimizer_kind(optimizer.toStdString());
        if (budgetGib < 0) {
            // a budget halfway between the smallest footprint and the everything-resident one
            qls::plan_settings s;
            s.seq = c.seq_len;
            s.optimizer = c.optimizer;
            s.budget_bytes = qls::gib_to_bytes(1000);
            const qls::memory_plan free = qls::make_memory_plan(m, s);
            budgetGib = qls::to_gib((free.minimum_bytes + free.all_resident_bytes) / 2);
        }
        c.budget_gib = budgetGib;
        const qint64 card = qint64(qls::gib_to_bytes(80));
        PlanPage page;
        QSignalSpy planned(&page, &PlanPage::planChanged);
        qls::compute_device gpu; // a card of `card` bytes (free memory unknown)
        gpu.backend = "cuda";
        gpu.total_bytes = uint64_t(card);
        page.setInput(c, m, gpu);
        QCOMPARE(planned.count(), 1);
        QVERIFY(page.plan().has_value());
        QCOMPARE(page.verdictText(), verdict);

        // the same plan as the engine's, and the bars add up to it
        qls::plan_settings s;
        s.lora = c.lora;
        s.batch = c.micro_batch;
        s.seq = c.seq_len;
        s.optimizer = c.optimizer;
        s.gradient_checkpointing = c.gradient_checkpointing;
        s.budget_bytes = qls::gib_to_bytes(budgetGib);
        s.card_bytes = uint64_t(card);
        s.page_size = c.page_size;
        const qls::memory_plan p = qls::make_memory_plan(m, s);
        QCOMPARE(page.plan()->peak_bytes(), p.peak_bytes());
        QCOMPARE(int(page.plan()->verdict), int(p.verdict));
        const auto bars = page.barValuesGiB();
        QVERIFY(qAbs(sum(bars, false) - qls::to_gib(p.peak_bytes())) < 1e-9);
        QVERIFY(qAbs(sum(bars, true) - qls::to_gib(p.card_bytes_needed())) < 1e-9);
        for (int i = 0; i < qls::plan_category_count; ++i)
            QCOMPARE(bars[size_t(i)], qls::to_gib(p.category_bytes(qls::plan_category(i))));

        // a run that does not fit says what to change, one line per engine suggestion
        bool listed = false;
        for (QLabel* l : page.findChildren<QLabel*>())
            if (l->text().contains("To make it fit")) {
                listed = true;
                QCOMPARE(int(l->text().count("<li>")), int(p.suggestions.size()));
                QVERIFY(l->text().contains("Sequence length") || l->text().contains("VRAM budget"));
            }
        QCOMPARE(listed, p.verdict == qls::plan_verdict::does_not_fit);
        if (p.verdict == qls::plan_verdict::does_not_fit) QVERIFY(!p.suggestions.empty());
    }

    // 7B at 48k tokens under 24 GiB fits only with every layer's checkpoint in pinned host memory: the headline and
    // the table say so, with the engine's bytes.
    void planShowsCheckpointOffload() {
        qls::train_config c;
        c.seq_len = 49152;
        c.budget_gib = 24;
        PlanPage page;
        page.setHostMemory({256ull << 30, 200ull << 30});
        qls::compute_device gpu;
        gpu.backend = "cuda";
        gpu.total_bytes = qls::gib_to_bytes(80);
        page.setInput(c, qls::shape_config("7b"), gpu);
        QVERIFY(page.plan().has_value() && page.plan()->checkpoints_offloaded());
        QCOMPARE(page.verdictText(), QString("Fits with checkpoint offload"));
        const uint64_t bytes = 32ull * 49152 * 4096 * 2;
        QCOMPARE(page.plan()->offloaded_checkpoint_bytes(), bytes);
        bool row = false;
        QTableWidget* table = page.findChild<QTableWidget*>();
        QVERIFY(table);
        for (int i = 0; i < table->rowCount(); ++i)
            if (table->item(i, 0) && table->item(i, 0)->text() == "layer checkpoints offloaded to pinned host memory")
                row = table->item(i, 1) && table->item(i, 1)->text().startsWith(QString::number(qls::to_gib(bytes), 'f', 2));
        QVERIFY(row);
    }

    // device.checkpoint_offload on the Training page: loaded and applied as run.json has it; "always" without gradient
    // checkpointing is refused like the run refuses it.
    void checkpointOffloadField() {
        TrainingPage page;
        qls::train_config c;
        c.checkpoint_offload = "on";
        page.loadFrom(c);
        qls::train_config back;
        page.applyTo(back);
        QCOMPARE(back.checkpoint_offload, std::string("on"));
        QString why;
        QVERIFY2(page.validate(&why), qPrintable(why));
        c.gradient_checkpointing = false;
        page.loadFrom(c);
        QVERIFY(!page.validate(&why));
        QVERIFY2(why.contains("is \"on\" but") && why.contains("checkpointing"), qPrintable(why));
        c.checkpoint_offload = "off";
        page.loadFrom(c);
        QVERIFY2(page.validate(&why), qPrintable(why));
        page.applyTo(back);
        QCOMPARE(back.checkpoint_offload, std::string("off"));
    }

    void planRecomputesAndRefusesBadSettings() {
        PlanPage page;
        QVERIFY(!page.plan().has_value()); // no model yet
        qls::train_config c;
        c.budget_gib = 24;
        page.setHostMemory({1ull << 40, 1ull << 40}); // 7B in f32 on the CPU backend needs the RAM
        page.setInput(c, qls::shape_config("7b"), qls::compute_device{});
        QCOMPARE(page.verdictText(), QString("Fits"));
        // on a 16 GiB machine the CPU backend's f32 7B does not fit: the page says so with the host numbers
        page.setHostMemory({16ull << 30, 16ull << 30});
        QCOMPARE(page.verdictText(), QString("Does not fit the machine's memory"));
        bool host = false, change = false;
        for (QLabel* l : page.findChildren<QLabel*>()) {
            host = host || (l->text().contains("Host memory (CPU backend)") && l->text().contains("does not fit") &&
                            l->text().contains("model weights in f32"));
            change = change || l->text().contains("train on a CUDA GPU");
        }
        QVERIFY(host && change);
        page.setHostMemory({1ull << 40, 1ull << 40});
        QCOMPARE(page.verdictText(), QString("Fits"));
        const uint64_t before = page.plan()->peak_bytes();
        c.seq_len = 4096;
        page.setTrainConfig(c);
        QVERIFY(page.plan()->peak_bytes() > before);
        c.lora.rank = 0;
        page.setTrainConfig(c);
        QVERIFY(!page.plan().has_value());
        QVERIFY2(page.verdictText().startsWith("No plan: rank:"), qPrintable(page.verdictText()));
        page.clearModel();
        QVERIFY(!page.plan().has_value());
    }

    // The plan is computed on the GUI thread: it must stay far below a frame's worth of blocking in the worst case
    // (a 70B model that does not fit, with every suggestion searched).
    void planIsCheapEnoughForTheGuiThread() {
        qls::plan_settings s;
        s.seq = 8192;
        s.batch = 4;
        s.optimizer = qls::optimizer_kind::adamw_32bit;
        s.gradient_checkpointing = false;
        s.budget_bytes = qls::gib_to_bytes(24);
        const qls::model_config m = qls::shape_config("70b");
        QElapsedTimer t;
        t.start();
        const int runs = 20;
        size_t suggestions = 0;
        for (int i = 0; i < runs; ++i) suggestions += qls::make_memory_plan(m, s).suggestions.size();
        const double ms = double(t.nsecsElapsed()) / 1e6 / runs;
        qInfo("70B plan with %zu suggestions: %.3f ms", suggestions / runs, ms);
        QVERIFY(suggestions > 0);
        QVERIFY2(ms < 50, qPrintable(QString("a plan took %1 ms").arg(ms)));
    }

    // ---- screenshots -----------------------------------------------------------------------------------------------

    void grabPagesForReview() {
        DatasetPage data;
        data.setModelDir(QString::fromStdString(testutil::model_dir()));
        qls::train_config c;
        c.train_file = datasetPath("instructions/alpaca_sample.json").toStdString();
        c.validation_fraction = 0.05;
        data.loadFrom(c);
        QVERIFY(waitForAnalysis(data));
        grabPage(data, "datasetpage");

        TrainingPage training;
        qls::train_config bad;
        bad.lora.rank = 0;
        training.loadFrom(bad);
        grabPage(training, "trainingpage");

        PlanPage plan;
        qls::train_config pc;
        pc.seq_len = 2048;
        pc.budget_gib = 24;
        qls::compute_device card80;
        card80.backend = "cuda";
        card80.total_bytes = qls::gib_to_bytes(80);
        plan.setInput(pc, qls::shape_config("7b"), card80);
        grabPage(plan, "planpage-fits");
        pc.budget_gib = 4;
        plan.setTrainConfig(pc);
        grabPage(plan, "planpage-does-not-fit");
        qInfo("screenshots in %s", qPrintable(shotDir()));
    }
};

QTEST_MAIN(TestUiSetup)
#include "tst_ui_setup.moc"
