// Qt Test: the dataset pipeline — formats and detection, prompt templates and loss masks (real stories260K
// tokenizer), truncation, packing/padding batches, validation split, stats, batcher resume, malformed input.
#include "testutil.h"

#include "qls/chat_template.h"
#include "qls/dataset.h"
#include "qls/dataset_analysis.h"
#include "qls/error.h"
#include "qls/tokenizer.h"

#include <QDirIterator>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <set>

namespace {

const qls::tokenizer& tok() {
    static const qls::tokenizer t = qls::tokenizer::load(testutil::model_dir() + "/tokenizer.model");
    return t;
}

std::string write_file(const QTemporaryDir& dir, const std::string& name, const std::string& content) {
    const std::string path = dir.path().toStdString() + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out << content;
    return path;
}

std::vector<int> cat(std::initializer_list<std::vector<int>> parts) {
    std::vector<int> r;
    for (const auto& p : parts) r.insert(r.end(), p.begin(), p.end());
    return r;
}

std::vector<int> enc(const std::string& s) { return tok().encode(s, false); }

// A model chat template from text, with stories260K's special tokens.
std::shared_ptr<const qls::model_chat_template> model_template(const std::string& text, const std::string& origin) {
    auto m = std::make_shared<qls::model_chat_template>();
    m->tmpl = qls::jinja_template::parse(text, origin);
    m->variables = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}};
    return m;
}

std::string chat_template_file(const std::string& name) {
    std::ifstream in(std::string(QLS_SOURCE_DIR) + "/tests/data/chat_templates/templates/" + name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

qls::data_record chat_record(std::vector<qls::chat_message> messages) {
    qls::data_record r;
    r.type = qls::data_record::kind::chat;
    r.messages = std::move(messages);
    r.source = "chat.jsonl:1";
    return r;
}

// The ids whose loss mask is set, in order.
std::vector<int> loss_ids(const qls::data_example& ex) {
    std::vector<int> r;
    for (size_t i = 0; i < ex.ids.size(); ++i)
        if (ex.loss[i]) r.push_back(ex.ids[i]);
    return r;
}

// Runs f, expecting a qls::error whose message or hint (describe()) contains every needle; returns the message.
// Failures are reported at the caller's line (__builtin_FILE/LINE: std::source_location needs clang 15 with libstdc++).
template <class F>
std::string expect_error(F&& f, std::initializer_list<std::string> needles, const char* file = __builtin_FILE(),
                         int line = __builtin_LINE()) {
    try {
        f();
    } catch (const qls::error& e) {
        const std::string text = e.describe();
        for (const auto& n : needles)
            if (text.find(n) == std::string::npos) {
                QTest::qFail(qPrintable(QString("error \"%1\" lacks \"%2\"")
                                            .arg(QString::fromStdString(text), QString::fromStdString(n))),
                             file, line);
                break;
            }
        return e.what();
    }
    QTest::qFail("no qls::error was thrown", file, line);
    return {};
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

bool any_warning(const std::vector<std::string>& w, const std::string& needle1, const std::string& needle2 = {}) {
    return std::any_of(w.begin(), w.end(),
                       [&](const std::string& s) { return contains(s, needle1) && contains(s, needle2); });
}

qls::data_example synthetic(int id, size_t len, size_t prompt_len) {
    qls::data_example ex;
    ex.source = "synthetic:" + std::to_string(id);
    for (size_t i = 0; i < len; ++i) {
        ex.ids.push_back(i == 0 ? 1 : 3 + int((size_t(id) * 31 + i * 7) % 500));
        ex.loss.push_back(i >= prompt_len);
    }
    return ex;
}

// Checks the structural invariants of a batch against the examples; returns the examples' ids seen in it.
std::vector<std::vector<int>> check_batch(const qls::batch& b, const std::vector<qls::data_example>& examples,
                                          int pad_id) {
    std::vector<std::vector<int>> seen;
    std::map<std::vector<int>, const qls::data_example*> by_ids;
    for (const auto& ex : examples) by_ids[ex.ids] = &ex;
    const size_t T = size_t(b.T);
    int counted = 0;
    for (int r = 0; r < b.B; ++r) {
        const size_t o = size_t(r) * T;
        int expected_segment = 1;
        size_t t = 0;
        while (t < T && b.segments[o + t] != 0) {
            if (b.segments[o + t] != expected_segment) {
                QTest::qFail("segment ids must count 1, 2, 3 in a row", __FILE__, __LINE__);
                return seen;
            }
            size_t e = t;
            while (e < T && b.segments[o + e] == expected_segment) ++e;
            std::vector<int> ids(b.tokens.begin() + std::ptrdiff_t(o + t), b.tokens.begin() + std::ptrdiff_t(o + e));
            auto it = by_ids.find(ids);
            if (it == by_ids.end()) {
                QTest::qFail("a segment is not one whole example", __FILE__, __LINE__);
                return seen;
            }
            const qls::data_example& ex = *it->second;
            for (size_t i = t; i < e; ++i) {
                if (b.positions[o + i] != int(i - t)) {
                    QTest::qFail("positions must restart at 0 per example", __FILE__, __LINE__);
                    return seen;
                }
                const size_t k = i - t;
                const int want = (k + 1 < ex.ids.size() && ex.loss[k + 1]) ? ex.ids[k + 1] : -1;
                if (b.targets[o + i] != want) {
                    QTest::qFail("target differs from the next trained token", __FILE__, __LINE__);
                    return seen;
                }
                if (want != -1) ++counted;
            }
            if (b.targets[o + e - 1] != -1) {
                QTest::qFail("the last token of a segment must have no target", __FILE__, __LINE__);
                return seen;
            }
            seen.push_back(ids);
            ++expected_segment;
            t = e;
        }
        for (size_t i = t; i < T; ++i) {
            if (b.segments[o + i] != 0 || b.targets[o + i] != -1 || b.tokens[o + i] != pad_id ||
                b.positions[o + i] != int(i - t)) {
                QTest::qFail("padding must be segment 0, target -1, the pad id, positions from 0", __FILE__, __LINE__);
                return seen;
            }
        }
    }
    // No target crosses a segment boundary (also implied above, checked directly here).
    for (int r = 0; r < b.B; ++r)
        for (size_t i = 0; i < T; ++i) {
            const size_t o = size_t(r) * T + i;
            if (b.targets[o] == -1) continue;
            if (i + 1 >= T || b.segments[o + 1] != b.segments[o] || b.tokens[o + 1] != b.targets[o]) {
                QTest::qFail("a target crosses a segment boundary", __FILE__, __LINE__);
                return seen;
            }
        }
    if (counted != b.counted_targets) QTest::qFail("counted_targets is wrong", __FILE__, __LINE__);
    if (b.real_tokens != int(std::count_if(b.segments.begin(), b.segments.end(), [](int s) { return s != 0; })))
        QTest::qFail("real_tokens is wrong", __FILE__, __LINE__);
    if (int(seen.size()) != b.examples) QTest::qFail("examples count is wrong", __FILE__, __LINE__);
    return seen;
}

bool same_batch(const qls::batch& a, const qls::batch& b) {
    return a.B == b.B && a.T == b.T && a.tokens == b.tokens && a.targets == b.targets && a.positions == b.positions &&
           a.segments == b.segments && a.counted_targets == b.counted_targets && a.real_tokens == b.real_tokens &&
           a.examples == b.examples && a.epoch == b.epoch && a.index == b.index;
}

const char* k_alpaca_no_input =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n";
const char* k_alpaca_input =
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n";

} // namespace

class tst_dataset : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    void names_round_trip() {
        for (auto f :
             {qls::dataset_format::auto_detect, qls::dataset_format::alpaca, qls::dataset_format::chat_messages,
              qls::dataset_format::chat_sharegpt, qls::dataset_format::text_jsonl, qls::dataset_format::plain_text})
            QCOMPARE(qls::parse_dataset_format(qls::dataset_format_name(f)), f);
        for (auto t : {qls::chat_template::auto_select, qls::chat_template::alpaca, qls::chat_template::llama2_chat,
                       qls::chat_template::chatml, qls::chat_template::raw, qls::chat_template::model})
            QCOMPARE(qls::parse_chat_template(qls::chat_template_name(t)), t);
        expect_error([] { qls::parse_dataset_format("csv"); }, {"csv", "alpaca"});
        expect_error([] { qls::parse_chat_template("vicuna"); }, {"vicuna", "chatml"});
    }

    void formats_parse_and_detect() {
        QTemporaryDir dir;
        const std::string alpaca_json = write_file(
            dir, "a.json",
            "[\n  {\"instruction\": \"Add.\", \"input\": \"2 and 3\", \"output\": \"5\", \"id\": 7},\n"
            "  {\"instruction\": \"Say hi.\",\n   \"output\": \"Hi!\"}\n]\n");
        const std::string alpaca_jsonl = write_file(
            dir, "a.jsonl",
            "{\"instruction\": \"Add.\", \"input\": \"\", \"output\": \"5\"}\n\n{\"instruction\": \"Say hi.\", \"input\": null, \"output\": \"Hi!\"}\n");
        const std::string messages = write_file(
            dir, "m.jsonl",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"Be kind.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, "
            "{\"role\": \"assistant\", \"content\": \"Hello!\"}]}\n"
            "{\"messages\": [{\"role\": \"user\", \"content\": \"A\"}, {\"role\": \"assistant\", \"content\": \"B\"}, "
            "{\"role\": \"user\", \"content\": \"C\"}, {\"role\": \"assistant\", \"content\": \"D\"}]}\n");
        const std::string sharegpt = write_file(
            dir, "s.jsonl",
            "{\"conversations\": [{\"from\": \"system\", \"value\": \"S\"}, {\"from\": \"human\", \"value\": \"Q\"}, "
            "{\"from\": \"gpt\", \"value\": \"A\"}]}\n");
        const std::string text = write_file(
            dir, "t.jsonl", "{\"text\": \"Once upon a time\"}\n{\"text\": \"The end.\", \"meta\": 1}\n");
        const std::string plain = write_file(dir, "p.txt",
                                             "\n\nFirst story,\nsecond line.  \n\n\n  Second story.\n\nThird.\n\n");
        const std::string lines = write_file(dir, "l.txt", "One.\nTwo.\n  \nThree.\n");
        const std::string lines_nb = write_file(dir, "n.txt", "One.\nTwo.\nThree.\n");
        const std::string bracket = write_file(dir, "b.txt", "[Verse 1]\nLa la.\n\n[Verse 2]\nLo lo.\n");

        QCOMPARE(qls::detect_format(alpaca_json), qls::dataset_format::alpaca);
        QCOMPARE(qls::detect_format(alpaca_jsonl), qls::dataset_format::alpaca);
        QCOMPARE(qls::detect_format(messages), qls::dataset_format::chat_messages);
        QCOMPARE(qls::detect_format(sharegpt), qls::dataset_format::chat_sharegpt);
        QCOMPARE(qls::detect_format(text), qls::dataset_format::text_jsonl);
        QCOMPARE(qls::detect_format(plain), qls::dataset_format::plain_text);
        QCOMPARE(qls::detect_format(bracket), qls::dataset_format::plain_text);

        qls::data_options opt;
        auto rs = qls::read_records(alpaca_json, opt);
        QCOMPARE(rs.format, qls::dataset_format::alpaca);
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.records[0].instruction, std::string("Add."));
        QCOMPARE(rs.records[0].input, std::string("2 and 3"));
        QCOMPARE(rs.records[0].output, std::string("5"));
        QCOMPARE(rs.records[0].source, alpaca_json + ":2");
        QCOMPARE(rs.records[1].input, std::string());
        QCOMPARE(rs.records[1].source, alpaca_json + ":3");
        QVERIFY(rs.warnings.empty());

        rs = qls::read_records(alpaca_jsonl, opt);
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.records[1].source, alpaca_jsonl + ":3"); // blank line 2 ignored
        QCOMPARE(rs.records[1].output, std::string("Hi!"));

        rs = qls::read_records(messages, opt);
        QCOMPARE(rs.format, qls::dataset_format::chat_messages);
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.records[0].type, qls::data_record::kind::chat);
        QCOMPARE(rs.records[0].messages.size(), size_t(3));
        QCOMPARE(rs.records[0].messages[0].role, qls::chat_role::system);
        QCOMPARE(rs.records[0].messages[2].role, qls::chat_role::assistant);
        QCOMPARE(rs.records[0].messages[2].content, std::string("Hello!"));
        QCOMPARE(rs.records[1].messages.size(), size_t(4));

        rs = qls::read_records(sharegpt, opt);
        QCOMPARE(rs.format, qls::dataset_format::chat_sharegpt);
        QCOMPARE(rs.records[0].messages.size(), size_t(3));
        QCOMPARE(rs.records[0].messages[0].role, qls::chat_role::system);
        QCOMPARE(rs.records[0].messages[1].role, qls::chat_role::user);
        QCOMPARE(rs.records[0].messages[2].role, qls::chat_role::assistant);
        QCOMPARE(rs.records[0].messages[2].content, std::string("A"));

        rs = qls::read_records(text, opt);
        QCOMPARE(rs.format, qls::dataset_format::text_jsonl);
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.records[1].text, std::string("The end."));

        rs = qls::read_records(plain, opt);
        QCOMPARE(rs.format, qls::dataset_format::plain_text);
        QCOMPARE(rs.records.size(), size_t(3));
        QCOMPARE(rs.records[0].text, std::string("First story,\nsecond line."));
        QCOMPARE(rs.records[0].source, plain + ":3");
        QCOMPARE(rs.records[1].text, std::string("Second story."));
        QCOMPARE(rs.records[1].source, plain + ":7");
        QCOMPARE(rs.records[2].text, std::string("Third."));

        rs = qls::read_records(lines, opt); // has a (whitespace-only) blank line: paragraphs
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.records[0].text, std::string("One.\nTwo."));
        rs = qls::read_records(lines_nb, opt); // no blank line at all: one document per line
        QCOMPARE(rs.records.size(), size_t(3));
        QCOMPARE(rs.records[2].text, std::string("Three."));
        QCOMPARE(rs.records[2].source, lines_nb + ":3");

        rs = qls::read_records(bracket, opt);
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.records[1].text, std::string("[Verse 2]\nLo lo."));

        // Override: JSONL read as plain text gives one document per line, the JSON kept verbatim.
        opt.format = qls::dataset_format::plain_text;
        rs = qls::read_records(text, opt);
        QCOMPARE(rs.format, qls::dataset_format::plain_text);
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.records[0].text, std::string("{\"text\": \"Once upon a time\"}"));

        // BOM and CRLF line endings.
        const std::string crlf = write_file(dir, "c.jsonl", "\xEF\xBB\xBF{\"text\": \"a\"}\r\n{\"text\": \"b\"}\r\n");
        opt.format = qls::dataset_format::auto_detect;
        rs = qls::read_records(crlf, opt);
        QCOMPARE(rs.format, qls::dataset_format::text_jsonl);
        QCOMPARE(rs.records.size(), size_t(2));
        const std::string crlf_txt = write_file(dir, "c.txt", "\xEF\xBB\xBFStory one.\r\n\r\nStory two.\r\n");
        rs = qls::read_records(crlf_txt, opt);
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.records[0].text, std::string("Story one."));
    }

    void alpaca_template() {
        qls::data_record r;
        r.type = qls::data_record::kind::instruction;
        r.instruction = "Name a color.";
        r.output = "Blue is a color.";
        r.source = "x:1";
        const std::string prompt = std::string(k_alpaca_no_input) +
                                   "### Instruction:\nName a color.\n\n### Response:\n";
        auto ex = qls::render_example(r, tok(), qls::chat_template::alpaca, false);
        QCOMPARE(ex.ids, cat({{1}, enc(prompt), enc("Blue is a color."), {2}}));
        // Decoded: the response piece carries SentencePiece's dummy-prefix space.
        QCOMPARE(tok().decode(ex.ids), prompt + " Blue is a color.");
        QCOMPARE(loss_ids(ex), cat({enc("Blue is a color."), {2}}));
        QCOMPARE(ex.loss.size(), ex.ids.size());
        QCOMPARE(ex.loss_tokens(), enc("Blue is a color.").size() + 1);
        QCOMPARE(ex.source, std::string("x:1"));
        // The mask is exactly the tail: prompt tokens all 0, response tokens all 1.
        const size_t p = 1 + enc(prompt).size();
        for (size_t i = 0; i < ex.ids.size(); ++i) QCOMPARE(int(ex.loss[i]), i >= p ? 1 : 0);

        r.input = "red, car, blue";
        const std::string prompt_in =
            std::string(k_alpaca_input) +
            "### Instruction:\nName a color.\n\n### Input:\nred, car, blue\n\n### Response:\n";
        ex = qls::render_example(r, tok(), qls::chat_template::alpaca, false);
        QCOMPARE(ex.ids, cat({{1}, enc(prompt_in), enc("Blue is a color."), {2}}));
        QCOMPARE(tok().decode(ex.ids), prompt_in + " Blue is a color.");
        QCOMPARE(loss_ids(ex), cat({enc("Blue is a color."), {2}}));

        // Train on everything: every token but the first.
        ex = qls::render_example(r, tok(), qls::chat_template::alpaca, true);
        QCOMPARE(int(ex.loss[0]), 0);
        QCOMPARE(ex.loss_tokens(), ex.ids.size() - 1);
    }

    void llama2_template() {
        qls::data_record r;
        r.type = qls::data_record::kind::chat;
        r.messages = {{qls::chat_role::system, "Be brief."},
                      {qls::chat_role::user, "Hi"},
                      {qls::chat_role::assistant, "Hello there!"},
                      {qls::chat_role::user, " How are you? "},
                      {qls::chat_role::assistant, "Fine."}};
        auto ex = qls::render_example(r, tok(), qls::chat_template::llama2_chat, false);
        // Meta: per exchange bos + "[INST] {user} [/INST] {answer} " + eos; contents strip()ped.
        const std::vector<int> want = cat({{1},
                                           enc("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"),
                                           enc("Hello there! "),
                                           {2},
                                           {1},
                                           enc("[INST] How are you? [/INST]"),
                                           enc("Fine. "),
                                           {2}});
        QCOMPARE(ex.ids, want);
        // stories260K removes extra whitespace, so the answers' trailing spaces vanish in its ids.
        QCOMPARE(
            tok().decode(ex.ids),
            std::string(
                "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello there! [INST] How are you? [/INST] Fine."));
        QCOMPARE(loss_ids(ex), cat({enc("Hello there! "), {2}, enc("Fine. "), {2}}));
        // The second BOS is not trained; with train_on_prompt it is.
        size_t second_bos = std::find(ex.ids.begin() + 1, ex.ids.end(), 1) - ex.ids.begin();
        QVERIFY(second_bos < ex.ids.size());
        QCOMPARE(int(ex.loss[second_bos]), 0);
        QCOMPARE(int(ex.loss[second_bos - 1]), 1); // the EOS before it is
        ex = qls::render_example(r, tok(), qls::chat_template::llama2_chat, true);
        QCOMPARE(int(ex.loss[second_bos]), 1);
        QCOMPARE(ex.loss_tokens(), ex.ids.size() - 1);

        // Without a system message there is no <<SYS>> block.
        r.messages.erase(r.messages.begin());
        ex = qls::render_example(r, tok(), qls::chat_template::llama2_chat, false);
        QCOMPARE(tok().decode(ex.ids), std::string("[INST] Hi [/INST] Hello there! [INST] How are you? [/INST] Fine."));
    }

    void chatml_template() {
        qls::data_record r;
        r.type = qls::data_record::kind::chat;
        r.messages = {{qls::chat_role::system, "Be brief."},
                      {qls::chat_role::user, "Hi"},
                      {qls::chat_role::assistant, "Hello!"},
                      {qls::chat_role::user, "Bye"},
                      {qls::chat_role::assistant, "Goodbye!"}};
        auto ex = qls::render_example(r, tok(), qls::chat_template::chatml, false);
        const std::string p1 =
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
        const std::string p2 = "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n";
        QCOMPARE(ex.ids,
                 cat({{1}, enc(p1), enc("Hello!<|im_end|>\n"), {2}, enc(p2), enc("Goodbye!<|im_end|>\n"), {2}}));
        QCOMPARE(tok().decode(ex.ids), p1 + " Hello!<|im_end|>\n " + p2 + " Goodbye!<|im_end|>\n");
        QCOMPARE(loss_ids(ex), cat({enc("Hello!<|im_end|>\n"), {2}, enc("Goodbye!<|im_end|>\n"), {2}}));
    }

    void raw_template() {
        qls::data_record r;
        r.type = qls::data_record::kind::text;
        r.text = "Once upon a time";
        auto ex = qls::render_example(r, tok(), qls::chat_template::raw, false);
        QCOMPARE(ex.ids, (std::vector<int>{1, 403, 407, 261, 378, 2}));
        QCOMPARE(ex.loss, (std::vector<uint8_t>{0, 1, 1, 1, 1, 1}));
        QCOMPARE(tok().decode(ex.ids), std::string("Once upon a time"));
    }

    void alpaca_records_under_chat_templates() {
        qls::data_record r;
        r.type = qls::data_record::kind::instruction;
        r.instruction = "Add.";
        r.input = "2 and 3";
        r.output = "5";
        auto ex = qls::render_example(r, tok(), qls::chat_template::llama2_chat, false);
        QCOMPARE(ex.ids, cat({{1}, enc("[INST] Add.\n\n2 and 3 [/INST]"), enc("5 "), {2}}));
        ex = qls::render_example(r, tok(), qls::chat_template::chatml, false);
        QCOMPARE(tok().decode(ex.ids),
                 std::string("<|im_start|>user\nAdd.\n\n2 and 3<|im_end|>\n<|im_start|>assistant\n 5<|im_end|>\n"));
        QCOMPARE(loss_ids(ex), cat({enc("5<|im_end|>\n"), {2}}));
    }

    void template_resolution() {
        using F = qls::dataset_format;
        using C = qls::chat_template;
        QCOMPARE(qls::resolve_template(C::auto_select, F::alpaca), C::alpaca);
        QCOMPARE(qls::resolve_template(C::auto_select, F::chat_messages), C::llama2_chat);
        QCOMPARE(qls::resolve_template(C::auto_select, F::chat_sharegpt), C::llama2_chat);
        QCOMPARE(qls::resolve_template(C::auto_select, F::text_jsonl), C::raw);
        QCOMPARE(qls::resolve_template(C::auto_select, F::plain_text), C::raw);
        QCOMPARE(qls::resolve_template(C::chatml, F::alpaca), C::chatml);
        expect_error([] { qls::resolve_template(C::raw, F::alpaca); }, {"raw", "alpaca"});
        expect_error([] { qls::resolve_template(C::alpaca, F::chat_messages); }, {"alpaca", "messages"});
        expect_error([] { qls::resolve_template(C::chatml, F::plain_text); }, {"chatml", "plain"});
        qls::data_record text;
        text.type = qls::data_record::kind::text;
        text.text = "x";
        expect_error([&] { qls::render_example(text, tok(), C::llama2_chat, false); }, {"llama2", "text records"});
        expect_error([&] { qls::render_example(text, tok(), C::auto_select, false); }, {"resolved template"});
        // Through load_dataset the error names the file.
        QTemporaryDir dir;
        const std::string f = write_file(dir, "t.jsonl", "{\"text\": \"x\"}\n");
        qls::data_options opt;
        opt.tmpl = C::alpaca;
        expect_error([&] { qls::load_dataset(f, tok(), opt); }, {f, "alpaca"});
    }

    void generation_prompt_is_training_prefix() {
        qls::data_record r;
        r.type = qls::data_record::kind::chat;
        r.messages = {{qls::chat_role::system, "Be brief."},
                      {qls::chat_role::user, "Hi"},
                      {qls::chat_role::assistant, "Hello!"},
                      {qls::chat_role::user, "Bye"},
                      {qls::chat_role::assistant, "Goodbye!"}};
        for (auto t : {qls::chat_template::llama2_chat, qls::chat_template::chatml}) {
            const auto ex = qls::render_example(r, tok(), t, false);
            // The prefix before the second response.
            size_t second = 0, runs = 0;
            for (size_t i = 1; i < ex.loss.size(); ++i)
                if (ex.loss[i] && !ex.loss[i - 1] && ++runs == 2) {
                    second = i;
                    break;
                }
            QVERIFY(second > 0);
            std::vector<qls::chat_message> conv(r.messages.begin(), r.messages.end() - 1);
            const auto prompt = qls::render_generation_prompt(conv, tok(), t);
            QCOMPARE(prompt, std::vector<int>(ex.ids.begin(), ex.ids.begin() + std::ptrdiff_t(second)));
        }
        qls::data_record a;
        a.type = qls::data_record::kind::instruction;
        a.instruction = "Name a color.";
        a.output = "Blue.";
        const auto ex = qls::render_example(a, tok(), qls::chat_template::alpaca, false);
        const auto prompt = qls::render_generation_prompt({{qls::chat_role::user, "Name a color."}}, tok(),
                                                          qls::chat_template::alpaca);
        QCOMPARE(prompt, std::vector<int>(ex.ids.begin(), ex.ids.end() - std::ptrdiff_t(ex.loss_tokens())));
        expect_error(
            [] {
                qls::render_generation_prompt({{qls::chat_role::user, "a"}, {qls::chat_role::assistant, "b"}}, tok(),
                                              qls::chat_template::chatml);
            },
            {"ending with a user message"});
    }

    void truncation_and_stats() {
        QTemporaryDir dir;
        // Lengths with BOS/EOS: "Once upon a time" → 6 tokens; the long one is longer than 8.
        const std::string f = write_file(
            dir, "t.jsonl",
            "{\"text\": \"Once upon a time\"}\n"
            "{\"text\": \"Once upon a time, there was a little girl named Lily. She loved to play outside.\"}\n"
            "{\"text\": \"Zoo\"}\n");
        qls::data_options opt;
        opt.seq_len = 8;
        const auto ds = qls::load_dataset(f, tok(), opt);
        QCOMPARE(ds.format, qls::dataset_format::text_jsonl);
        QCOMPARE(ds.tmpl, qls::chat_template::raw);
        QCOMPARE(ds.examples.size(), size_t(3));
        QVERIFY(ds.warnings.empty());
        QCOMPARE(ds.examples[0].ids.size(), size_t(6));
        QVERIFY(!ds.examples[0].truncated);
        QCOMPARE(ds.examples[1].ids.size(), size_t(8));
        QVERIFY(ds.examples[1].truncated);
        const auto full = tok().encode(
            "Once upon a time, there was a little girl named Lily. She loved to play outside.", true);
        QCOMPARE(ds.examples[1].ids, std::vector<int>(full.begin(), full.begin() + 8));
        QCOMPARE(ds.examples[2].ids, (std::vector<int>{1, 410, 469, 347, 2}));
        const auto& s = ds.stats;
        QCOMPARE(s.examples, size_t(3));
        QCOMPARE(s.truncated, size_t(1));
        QCOMPARE(s.skipped, size_t(0));
        QCOMPARE(s.tokens, size_t(6 + 8 + 5));
        QCOMPARE(s.loss_tokens, size_t(5 + 7 + 4));
        QCOMPARE(s.min_length, size_t(5));
        QCOMPARE(s.max_length, size_t(8));
        QCOMPARE(s.mean_length, 19.0 / 3.0);
        QCOMPARE(s.histogram_bin_width, 1); // ceil(8 / 16)
        QCOMPARE(s.histogram.size(), size_t(qls::k_length_histogram_bins));
        QCOMPARE(s.histogram[4], size_t(1)); // length 5
        QCOMPARE(s.histogram[5], size_t(1)); // length 6
        QCOMPARE(s.histogram[7], size_t(1)); // length 8

        // compute_stats on its own: bins of width ceil(100/16) = 7; lengths 1, 7, 8, 100 → bins 0, 0, 1, 15.
        std::vector<qls::data_example> exs = {synthetic(0, 1, 1), synthetic(1, 7, 2), synthetic(2, 8, 8),
                                              synthetic(3, 100, 50)};
        exs[3].truncated = true;
        const auto st = qls::compute_stats(exs, 100, 4);
        QCOMPARE(st.histogram_bin_width, 7);
        QCOMPARE(st.histogram[0], size_t(2));
        QCOMPARE(st.histogram[1], size_t(1));
        QCOMPARE(st.histogram[14], size_t(1)); // (100-1)/7 = 14
        QCOMPARE(st.loss_tokens, size_t(0 + 5 + 0 + 50));
        QCOMPARE(st.truncated, size_t(1));
        QCOMPARE(st.skipped, size_t(4));
        QCOMPARE(st.tokens, size_t(116));
    }

    void prompt_longer_than_seq_len() {
        QTemporaryDir dir;
        const std::string f = write_file(
            dir, "a.jsonl",
            "{\"instruction\": \"Say hi.\", \"output\": \"Hi!\"}\n"
            "{\"instruction\": \"Once upon a time there was a very long instruction that goes on and on and on and on.\", "
            "\"output\": \"Ok.\"}\n");
        qls::data_options opt;
        // The short example: BOS + prompt + response + EOS must fit, the long prompt must not.
        qls::data_record shortr;
        shortr.type = qls::data_record::kind::instruction;
        shortr.instruction = "Say hi.";
        shortr.output = "Hi!";
        opt.seq_len = int(qls::render_example(shortr, tok(), qls::chat_template::alpaca, false).ids.size()) + 2;
        auto ds = qls::load_dataset(f, tok(), opt);
        QCOMPARE(ds.examples.size(), size_t(1));
        QCOMPARE(ds.stats.skipped, size_t(1));
        QCOMPARE(ds.warnings.size(), size_t(1));
        QVERIFY2(contains(ds.warnings[0], f + ":2: ") && contains(ds.warnings[0], "no response token"),
                 ds.warnings[0].c_str());
        QCOMPARE(ds.stats.truncated, size_t(0));
        // Fatal policy: the same problem is an error naming file:line.
        opt.on_bad_record = qls::bad_record_policy::fail;
        expect_error([&] { qls::load_dataset(f, tok(), opt); }, {f + ":2:", "sequence length"});
        // Every example too long: a clear error with the fix.
        opt.on_bad_record = qls::bad_record_policy::skip;
        opt.seq_len = 10;
        try {
            qls::load_dataset(f, tok(), opt);
            QFAIL("expected an error");
        } catch (const qls::error& e) {
            QVERIFY(contains(e.what(), "no usable examples") && contains(e.what(), f));
            QVERIFY(contains(e.hint(), "sequence length"));
        }
        // Truncation that keeps some response tokens is counted, not skipped.
        opt.seq_len = int(qls::render_example(shortr, tok(), qls::chat_template::alpaca, false).ids.size()) - 1;
        ds = qls::load_dataset(f, tok(), opt);
        QCOMPARE(ds.examples.size(), size_t(1));
        QCOMPARE(ds.stats.truncated, size_t(1));
        QVERIFY(ds.examples[0].truncated);
        QCOMPARE(ds.examples[0].loss_tokens(), size_t(enc("Hi!").size())); // EOS cut off
    }

    void packing_batches() {
        // 40s and 24s fill rows of 64 exactly under best-fit decreasing.
        std::vector<qls::data_example> exs;
        for (int i = 0; i < 10; ++i) exs.push_back(synthetic(i, i % 2 ? 24 : 40, 5));
        qls::batch_options bo;
        bo.B = 2;
        bo.T = 64;
        bo.seed = 11;
        bo.pad_id = 0;
        qls::batcher b(exs, bo);
        QCOMPARE(b.rows_per_epoch(), size_t(5));
        QCOMPARE(b.batches_per_epoch(), size_t(3));
        std::multiset<std::vector<int>> seen;
        size_t counted = 0, pad_tokens = 0, empty_rows = 0;
        for (size_t k = 0; k < b.batches_per_epoch(); ++k) {
            const auto bt = b.next();
            QCOMPARE(bt.B, 2);
            QCOMPARE(bt.T, 64);
            QCOMPARE(bt.tokens.size(), size_t(128));
            QCOMPARE(bt.epoch, uint64_t(0));
            QCOMPARE(bt.index, uint64_t(k));
            for (auto& ids : check_batch(bt, exs, 0)) seen.insert(ids);
            counted += size_t(bt.counted_targets);
            for (int r = 0; r < 2; ++r) {
                const size_t pads = size_t(std::count(bt.segments.begin() + r * 64, bt.segments.begin() + (r + 1) * 64,
                                                      0));
                if (pads == 64) ++empty_rows;
                else pad_tokens += pads;
            }
        }
        QCOMPARE(pad_tokens, size_t(0)); // every real row is full
        QCOMPARE(empty_rows, size_t(1)); // the last batch is completed with one empty row
        QCOMPARE(seen.size(), exs.size());
        for (const auto& ex : exs) QCOMPARE(seen.count(ex.ids), size_t(1)); // each example exactly once per epoch
        QCOMPARE(counted, qls::compute_stats(exs, 64).loss_tokens);
        QCOMPARE(b.position().epoch, uint64_t(1));
        QCOMPARE(b.position().cursor, uint64_t(0));

        // Real data: the story corpus packs into nearly full rows, each story once, targets never cross.
        const std::string stories = std::string(QLS_SOURCE_DIR) + "/datasets/stories/pip_the_lighthouse_mouse.val.txt";
        if (!QFileInfo::exists(QString::fromStdString(stories))) return;
        qls::data_options opt;
        opt.seq_len = 512;
        const auto ds = qls::load_dataset(stories, tok(), opt);
        qls::batch_options so;
        so.B = 4;
        so.T = 1024;
        so.seed = 3;
        qls::batcher sb(ds.examples, so);
        size_t real = 0, rows_used = 0;
        std::multiset<std::vector<int>> got;
        for (size_t k = 0; k < sb.batches_per_epoch(); ++k) {
            const auto bt = sb.next();
            for (auto& ids : check_batch(bt, ds.examples, 0)) got.insert(ids);
            for (int s : bt.segments) real += s != 0;
        }
        rows_used = sb.rows_per_epoch();
        QCOMPARE(got.size(), ds.examples.size());
        QCOMPARE(real, ds.stats.tokens);
        QVERIFY2(double(real) / double(rows_used * 1024) > 0.85, "packed rows should be mostly full");
    }

    void padding_batches() {
        std::vector<qls::data_example> exs;
        for (int i = 0; i < 5; ++i) exs.push_back(synthetic(i, size_t(3 + i * 4), 2));
        qls::batch_options bo;
        bo.B = 2;
        bo.T = 24;
        bo.packing = false;
        bo.shuffle = false;
        bo.pad_id = 2;
        qls::batcher b(exs, bo);
        QCOMPARE(b.rows_per_epoch(), size_t(5));
        QCOMPARE(b.batches_per_epoch(), size_t(3));
        size_t row = 0;
        for (size_t k = 0; k < 3; ++k) {
            const auto bt = b.next();
            check_batch(bt, exs, 2);
            for (int r = 0; r < 2; ++r, ++row) {
                const size_t o = size_t(r) * 24;
                const size_t L = row < exs.size() ? exs[row].ids.size() : 0;
                for (size_t i = 0; i < 24; ++i) {
                    if (i < L) {
                        QCOMPARE(bt.tokens[o + i], exs[row].ids[i]); // no shuffle: file order
                        QCOMPARE(bt.segments[o + i], 1);
                        QCOMPARE(bt.positions[o + i], int(i));
                    } else {
                        QCOMPARE(bt.targets[o + i], -1);
                        QCOMPARE(bt.tokens[o + i], 2);
                        QCOMPARE(bt.segments[o + i], 0);
                    }
                }
                if (L > 0) {
                    QCOMPARE(bt.targets[o + L - 1], -1);
                    QCOMPARE(bt.targets[o], -1); // token 1 is prompt (loss from index 2)
                    QCOMPARE(bt.targets[o + 1], exs[row].ids[2]);
                }
            }
        }
        // Validation of options and examples.
        expect_error([&] { qls::batcher(exs, qls::batch_options{1, 10, false, true, 0, 0}); }, {"more than", "10"});
        expect_error([&] { qls::batcher({}, bo); }, {"at least one example"});
        expect_error([&] { qls::batcher(exs, qls::batch_options{0, 24, true, true, 0, 0}); }, {"batch size"});
    }

    void batcher_determinism_and_resume() {
        std::vector<qls::data_example> exs;
        for (int i = 0; i < 37; ++i) exs.push_back(synthetic(i, size_t(5 + (i * 13) % 40), 3));
        for (bool packing : {true, false}) {
            qls::batch_options bo;
            bo.B = 3;
            bo.T = 64;
            bo.seed = 1234;
            bo.packing = packing;
            qls::batcher a(exs, bo), b(exs, bo);
            const size_t per_epoch = a.batches_per_epoch();
            QVERIFY(per_epoch >= 3);
            std::vector<qls::batch> first;
            std::optional<qls::batcher_position> saved;
            const size_t save_at = per_epoch + 1; // in the second epoch
            for (size_t k = 0; k < 2 * per_epoch + 2; ++k) {
                if (k == save_at) saved = a.position();
                first.push_back(a.next());
                QVERIFY(same_batch(first.back(), b.next())); // same seed → same batches
            }
            QCOMPARE(saved->epoch, uint64_t(1));
            QCOMPARE(saved->cursor, uint64_t(1));
            QCOMPARE(saved->seed, uint64_t(1234));
            // Epochs are reshuffled: epoch 1 differs from epoch 0.
            bool differs = false;
            for (size_t k = 0; k < per_epoch; ++k) differs |= first[k].tokens != first[per_epoch + k].tokens;
            QVERIFY(differs);
            // A fresh batcher (even with another seed in its options) resumes exactly at the saved position.
            qls::batch_options other = bo;
            other.seed = 99;
            qls::batcher c(exs, other);
            c.set_position(*saved);
            QCOMPARE(c.position(), *saved);
            for (size_t k = save_at; k < first.size(); ++k) QVERIFY(same_batch(c.next(), first[k]));
            // A different seed gives a different order.
            qls::batcher d(exs, other);
            bool any_diff = false;
            for (size_t k = 0; k < per_epoch; ++k) any_diff |= d.next().tokens != first[k].tokens;
            QVERIFY(any_diff);
            // A cursor past the epoch is rejected; the cursor at the end means the next epoch's start.
            expect_error([&] { c.set_position({0, per_epoch + 1, 1234}); }, {"cursor"});
            c.set_position({2, per_epoch, 1234});
            QCOMPARE(c.position(), (qls::batcher_position{3, 0, 1234}));
        }
    }

    void validation_split() {
        QTemporaryDir dir;
        std::string lines;
        for (int i = 0; i < 50; ++i) lines += "{\"text\": \"Story number " + std::to_string(i) + ".\"}\n";
        const std::string f = write_file(dir, "t.jsonl", lines);
        qls::data_options opt;
        opt.seq_len = 64;
        auto sources = [](const qls::dataset& d) {
            std::vector<std::string> s;
            for (const auto& ex : d.examples) s.push_back(ex.source);
            return s;
        };
        const auto s1 = qls::load_dataset_split(f, tok(), opt, {"", 0.2, 7});
        const auto s2 = qls::load_dataset_split(f, tok(), opt, {"", 0.2, 7});
        const auto s3 = qls::load_dataset_split(f, tok(), opt, {"", 0.2, 8});
        QCOMPARE(s1.validation.examples.size(), size_t(10));
        QCOMPARE(s1.train.examples.size(), size_t(40));
        QCOMPARE(sources(s1.validation), sources(s2.validation)); // same seed, same split
        QVERIFY(sources(s1.validation) != sources(s3.validation));
        std::set<std::string> all;
        for (const auto& s : sources(s1.train)) all.insert(s);
        for (const auto& s : sources(s1.validation)) QVERIFY(all.insert(s).second); // disjoint
        QCOMPARE(all.size(), size_t(50));
        auto v = sources(s1.validation);
        QVERIFY(std::is_sorted(v.begin(), v.end(), [](const std::string& a, const std::string& b) {
            auto line = [](const std::string& s) { return std::stoi(s.substr(s.rfind(':') + 1)); };
            return line(a) < line(b);
        })); // file order kept
        QCOMPARE(s1.validation.stats.examples, size_t(10));
        QCOMPARE(s1.train.stats.examples, size_t(40));
        QCOMPARE(s1.train.stats.tokens + s1.validation.stats.tokens, qls::load_dataset(f, tok(), opt).stats.tokens);
        // A tiny fraction still gives one validation example; no fraction gives none.
        QCOMPARE(qls::load_dataset_split(f, tok(), opt, {"", 0.001, 7}).validation.examples.size(), size_t(1));
        QCOMPARE(qls::load_dataset_split(f, tok(), opt, {}).validation.examples.size(), size_t(0));
        expect_error([&] { qls::load_dataset_split(f, tok(), opt, {"", 1.0, 7}); }, {"validation fraction"});
        expect_error([&] { qls::load_dataset_split(f, tok(), opt, {"", 0.99, 7}); }, {"leaves no training example"});

        // By file: the validation file keeps its own examples and the training template.
        const std::string vf = write_file(dir, "v.txt", "A validation story.\n\nAnother one.\n");
        const auto s4 = qls::load_dataset_split(f, tok(), opt, {vf, 0, 0});
        QCOMPARE(s4.train.examples.size(), size_t(50));
        QCOMPARE(s4.validation.examples.size(), size_t(2));
        QCOMPARE(s4.validation.format, qls::dataset_format::plain_text);
        QCOMPARE(s4.validation.tmpl, qls::chat_template::raw);
        QCOMPARE(s4.validation.examples[0].ids, tok().encode("A validation story.", true, true));
        expect_error([&] { qls::load_dataset_split(f, tok(), opt, {vf, 0.1, 0}); }, {"both"});
        // A validation file the training template cannot render is an error naming it.
        const std::string bad_v = write_file(dir, "v.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n");
        expect_error([&] { qls::load_dataset_split(f, tok(), opt, {bad_v, 0, 0}); }, {bad_v, "raw"});
    }

    void bundled_datasets_load_cleanly() {
        const QString root = QString(QLS_SOURCE_DIR) + "/datasets";
        if (!QFileInfo::exists(root)) QSKIP("datasets/ is not in this checkout");
        struct expect {
            const char* file;
            qls::dataset_format format;
            size_t examples;
        };
        const expect known[] = {
            {"stories/pip_the_lighthouse_mouse.txt", qls::dataset_format::plain_text, 300},
            {"stories/pip_the_lighthouse_mouse.val.txt", qls::dataset_format::plain_text, 30},
            {"instructions/alpaca_sample.json", qls::dataset_format::alpaca, 60},
            {"instructions/alpaca_sample.jsonl", qls::dataset_format::alpaca, 20},
            {"chat/chat_sample.jsonl", qls::dataset_format::chat_messages, 40},
            {"chat/sharegpt_sample.jsonl", qls::dataset_format::chat_sharegpt, 20},
        };
        int loaded = 0;
        QDirIterator it(root, {"*.json", "*.jsonl", "*.txt"}, QDir::Files, QDirIterator::Subdirectories);
        while (it.hasNext()) {
            const QString path = it.next();
            const std::string rel = QDir(root).relativeFilePath(path).toStdString();
            qls::data_options opt;
            opt.seq_len = 2048;
            opt.on_bad_record = qls::bad_record_policy::fail;
            qls::dataset ds;
            try {
                ds = qls::load_dataset(path.toStdString(), tok(), opt);
            } catch (const qls::error& e) {
                QFAIL(qPrintable(QString::fromStdString(rel + ": " + e.describe())));
            }
            QVERIFY2(ds.warnings.empty(), rel.c_str());
            QCOMPARE(ds.stats.skipped, size_t(0));
            QVERIFY2(ds.stats.loss_tokens > 0, rel.c_str());
            for (const auto& k : known)
                if (rel == k.file) {
                    QCOMPARE(ds.format, k.format);
                    QCOMPARE(ds.examples.size(), k.examples);
                }
            if (ds.format == qls::dataset_format::plain_text) {
                QCOMPARE(ds.stats.truncated, size_t(0));
                QVERIFY(ds.stats.max_length <= 512); // the stories fit the model's context
            }
            ++loaded;
        }
        QVERIFY(loaded > 0);
    }

    // ---- malformed input ---------------------------------------------------------------------------------

    void bad_json_missing_fields_wrong_types() {
        QTemporaryDir dir;
        const std::string f = write_file(
            dir, "a.jsonl",
            "{\"instruction\": \"Say hi.\", \"output\": \"Hi!\"}\n"             // 1 ok
            "{\"instruction\": \"x\", \"output\": }\n"                          // 2 bad JSON
            "{\"instruction\": \"x\"}\n"                                        // 3 missing output
            "{\"instruction\": \"x\", \"output\": 5}\n"                         // 4 wrong type
            "{\"instruction\": \"x\", \"output\": \"  \"}\n"                    // 5 empty
            "[1, 2]\n"                                                          // 6 not an object
            "{\"instruction\": \"x\", \"input\": [\"a\"], \"output\": \"y\"}\n" // 7 input wrong type
            "{\"instruction\": \"Say bye.\", \"output\": \"Bye!\"}\n");         // 8 ok
        qls::data_options opt;
        const auto rs = qls::read_records(f, opt);
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.skipped, size_t(6));
        QCOMPARE(rs.warnings.size(), size_t(6));
        QVERIFY(any_warning(rs.warnings, f + ":2: ", "invalid JSON at column 32: syntax error")); // the '}'
        QVERIFY(any_warning(rs.warnings, f + ":3: ", "missing the field \"output\""));
        QVERIFY(any_warning(rs.warnings, f + ":4: ", "\"output\" must be a string, got number"));
        QVERIFY(any_warning(rs.warnings, f + ":5: ", "\"output\" is empty"));
        QVERIFY(any_warning(rs.warnings, f + ":6: ", "expected a JSON object, got array"));
        QVERIFY(any_warning(rs.warnings, f + ":7: ", "\"input\" must be a string, got array"));
        // load_dataset carries the warnings and counts them.
        const auto ds = qls::load_dataset(f, tok(), opt);
        QCOMPARE(ds.examples.size(), size_t(2));
        QCOMPARE(ds.stats.skipped, size_t(6));
        QCOMPARE(ds.warnings, rs.warnings);
        // Fatal policy: the first problem, with file:line and a hint.
        opt.on_bad_record = qls::bad_record_policy::fail;
        try {
            qls::read_records(f, opt);
            QFAIL("expected an error");
        } catch (const qls::error& e) {
            QCOMPARE(e.code(), qls::error_code::format);
            QVERIFY2(contains(e.what(), f + ":2: invalid JSON"), e.what());
            QVERIFY(contains(e.hint(), "instruction"));
        }
    }

    void bad_chat_records() {
        QTemporaryDir dir;
        const std::string f = write_file(
            dir, "m.jsonl",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}]}\n"
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"tool\", \"content\": \"x\"}]}\n"
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}, {\"role\": \"user\", \"content\": \"?\"}]}\n"
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}]}\n"
            "{\"messages\": \"Hi\"}\n"
            "{\"messages\": []}\n"
            "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Hi\"}]}, {\"role\": \"assistant\", \"content\": \"Yo\"}]}\n"
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"\"}]}\n"
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}, {\"role\": \"system\", \"content\": \"S\"}]}\n"
            "{\"messages\": [{\"role\": 3, \"content\": \"Hi\"}]}\n"
            "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}]}\n");
        const auto rs = qls::read_records(f, {});
        QCOMPARE(rs.records.size(), size_t(1));
        QCOMPARE(rs.skipped, size_t(10));
        QVERIFY(any_warning(rs.warnings, f + ":2: ", "unknown role \"tool\""));
        QVERIFY(any_warning(rs.warnings, f + ":3: ", "does not end with an assistant turn"));
        QVERIFY(any_warning(rs.warnings, f + ":4: ", "turns must alternate"));
        QVERIFY(any_warning(rs.warnings, f + ":5: ", "\"messages\" must be an array, got string"));
        QVERIFY(any_warning(rs.warnings, f + ":6: ", "empty array"));
        QVERIFY(any_warning(rs.warnings, f + ":7: ", "content parts"));
        QVERIFY(any_warning(rs.warnings, f + ":8: ", "turn 2 field \"content\" is empty"));
        QVERIFY(any_warning(rs.warnings, f + ":9: ", "system turn is only allowed first"));
        QVERIFY(any_warning(rs.warnings, f + ":10: ", "\"role\" must be a string, got number"));
        QVERIFY(any_warning(rs.warnings, f + ":11: ", "no user or assistant turn"));

        const std::string g = write_file(
            dir, "s.jsonl",
            "{\"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", \"value\": \"Yo\"}]}\n"
            "{\"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"bing\", \"value\": \"Yo\"}]}\n"
            "{\"conversations\": [{\"from\": \"human\"}, {\"from\": \"gpt\", \"value\": \"Yo\"}]}\n");
        const auto gs = qls::read_records(g, {});
        QCOMPARE(gs.records.size(), size_t(1));
        QVERIFY(any_warning(gs.warnings, g + ":2: ", "unknown from \"bing\" (expected system, human or gpt)"));
        QVERIFY(any_warning(gs.warnings, g + ":3: ", "turn 1 is missing the field \"value\""));
    }

    void empty_missing_and_unusable_files() {
        QTemporaryDir dir;
        const std::string empty = write_file(dir, "e.jsonl", "");
        const std::string blank = write_file(dir, "b.txt", " \n\n\t\n");
        const std::string missing = dir.path().toStdString() + "/nope.jsonl";
        const std::string all_bad = write_file(dir, "bad.jsonl", "{\"text\": 1}\n{\"text\": \"\"}\n");
        const std::string unknown = write_file(dir, "u.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
        const std::string one_object = write_file(dir, "o.json", "{\n  \"data\": [\n    {\"text\": \"a\"}\n  ]\n}\n");
        const std::string empty_array = write_file(dir, "ea.json", "[ ]\n");
        qls::data_options opt;
        for (const auto& f : {empty, blank}) {
            try {
                qls::load_dataset(f, tok(), opt);
                QFAIL("expected an error");
            } catch (const qls::error& e) {
                QCOMPARE(e.code(), qls::error_code::format);
                QVERIFY(contains(e.what(), f) && contains(e.what(), "is empty"));
                QVERIFY(contains(e.hint(), "Alpaca"));
            }
        }
        try {
            qls::load_dataset(missing, tok(), opt);
            QFAIL("expected an error");
        } catch (const qls::error& e) {
            QCOMPARE(e.code(), qls::error_code::io);
            QVERIFY(contains(e.what(), missing) && contains(e.what(), "not found"));
            QVERIFY(!e.hint().empty());
        }
        expect_error([&] { qls::load_dataset(dir.path().toStdString(), tok(), opt); }, {"is a directory"});
        const std::string msg = expect_error([&] { qls::load_dataset(all_bad, tok(), opt); },
                                             {"no usable examples", all_bad, all_bad + ":1: ", "all 2 records"});
        expect_error([&] { qls::load_dataset(unknown, tok(), opt); }, {"cannot tell the format", unknown});
        expect_error([&] { qls::load_dataset(one_object, tok(), opt); }, {"one JSON object", one_object});
        expect_error([&] { qls::load_dataset(empty_array, tok(), opt); }, {"empty JSON array", empty_array});
        opt.format = qls::dataset_format::alpaca; // explicit format: no detection, same clear message
        expect_error([&] { qls::load_dataset(empty_array, tok(), opt); }, {"contains no examples", empty_array});
        opt.seq_len = 1;
        expect_error([&] { qls::load_dataset(all_bad, tok(), opt); }, {"sequence length"});
    }

    void line_of_10_megabytes() {
        QTemporaryDir dir;
        std::string big = "{\"text\": \"" + std::string(10 * 1024 * 1024, 'a') + "\"}";
        const std::string f = write_file(dir, "big.jsonl",
                                         "{\"text\": \"Once upon a time\"}\n" + big + "\n{\"text\": \"Zoo\"}\n");
        qls::data_options opt;
        const auto ds = qls::load_dataset(f, tok(), opt);
        QCOMPARE(ds.examples.size(), size_t(2));
        QCOMPARE(ds.stats.skipped, size_t(1));
        QVERIFY2(any_warning(ds.warnings, f + ":2: line of " + std::to_string(big.size()) + " bytes",
                             "1048576-byte record limit"),
                 ds.warnings.empty() ? "" : ds.warnings[0].c_str());
        QCOMPARE(ds.examples[1].source, f + ":3");
        opt.on_bad_record = qls::bad_record_policy::fail;
        expect_error([&] { qls::load_dataset(f, tok(), opt); }, {f + ":2:", "record limit"});
        // The same in a JSON array and in plain text.
        const std::string arr = write_file(dir, "big.json", "[\n{\"text\": \"a\"},\n" + big + "\n]\n");
        opt.on_bad_record = qls::bad_record_policy::skip;
        const auto da = qls::load_dataset(arr, tok(), opt);
        QCOMPARE(da.examples.size(), size_t(1));
        QVERIFY(any_warning(da.warnings, arr + ":3: ", "record limit"));
        const std::string txt = write_file(dir, "big.txt",
                                           "Short story.\n\n" + std::string(10 * 1024 * 1024, 'a') + "\n\nAnother.\n");
        const auto dt = qls::load_dataset(txt, tok(), opt);
        QCOMPARE(dt.examples.size(), size_t(2));
        QVERIFY(any_warning(dt.warnings, txt + ":3: ", "record limit"));
    }

    void invalid_utf8() {
        QTemporaryDir dir;
        const std::string f = write_file(dir, "u.jsonl",
                                         "{\"text\": \"ok\"}\n{\"text\": \"caf\xC3\x28\"}\n{\"text\": \"\xFF\"}\n");
        const auto rs = qls::read_records(f, {});
        QCOMPARE(rs.records.size(), size_t(1));
        QVERIFY(any_warning(rs.warnings, f + ":2: ", "invalid UTF-8 at byte 14"));
        QVERIFY(any_warning(rs.warnings, f + ":3: ", "invalid UTF-8"));
        const std::string t = write_file(dir, "u.txt", "Good story.\n\nBad\nline \xED\xA0\x80 here.\n\nGood again.\n");
        const auto rt = qls::read_records(t, {});
        QCOMPARE(rt.records.size(), size_t(2));
        QVERIFY(any_warning(rt.warnings, t + ":4: ", "invalid UTF-8 at byte 6"));
        QVERIFY(any_warning(rt.warnings, "document starting at line 3"));
        qls::data_options fail;
        fail.on_bad_record = qls::bad_record_policy::fail;
        expect_error([&] { qls::read_records(t, fail); }, {t + ":4:", "invalid UTF-8"});
    }

    void json_array_problems() {
        QTemporaryDir dir;
        const std::string f = write_file(
            dir, "a.json",
            "[\n"
            "  {\"instruction\": \"a\", \"output\": \"b\"},\n"     // line 2
            "  {\"instruction\": \"c\",\n"                         // line 3
            "   \"output\": nope},\n"                              // line 4: bad JSON reported here
            "  {\"instruction\": \"e\", \"output\": \"f [x]\"},\n" // line 5: brackets inside a string
            "  {\"instruction\": \"g\"},\n"                        // line 6: missing output
            "]\n");                                                // trailing comma
        const auto rs = qls::read_records(f, {});
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.records[1].output, std::string("f [x]"));
        QCOMPARE(rs.records[1].source, f + ":5");
        QVERIFY(any_warning(rs.warnings,
                            f + ":4: ", "invalid JSON at column 15")); // "no" of nope, as nlohmann reports it
        QVERIFY(any_warning(rs.warnings, f + ":6: ", "missing the field \"output\""));
        QVERIFY(any_warning(rs.warnings, f + ":7: ", "trailing comma"));
        const std::string open = write_file(dir, "o.json", "[{\"text\": \"a\"}, {\"text\": \"b\"");
        const auto ro = qls::read_records(open, {});
        QCOMPARE(ro.records.size(), size_t(1));
        QVERIFY(any_warning(ro.warnings, open + ":1: ", "ends inside this element"));
        const std::string one_line = write_file(dir, "l.json", "[{\"text\": \"a\"}, {\"text\": nope}]");
        QVERIFY(any_warning(qls::read_records(one_line, {}).warnings, one_line + ":1: ", "invalid JSON at column 27"));
        const std::string after = write_file(dir, "t.json", "[{\"text\": \"a\"}]\n\nextra\n");
        QVERIFY(any_warning(qls::read_records(after, {}).warnings, after + ":3: ", "after the closing"));
        const std::string deep = write_file(dir, "d.jsonl",
                                            "{\"text\": \"a\"}\n{\"text\": " + std::string(100000, '[') + "}\n");
        QVERIFY(any_warning(qls::read_records(deep, {}).warnings, deep + ":2: ", "nested deeper"));
    }

    void skip_versus_fail_and_warning_cap() {
        QTemporaryDir dir;
        std::string lines = "{\"text\": \"good\"}\n";
        for (int i = 0; i < 1500; ++i) lines += "{\"text\": 0}\n";
        const std::string f = write_file(dir, "many.jsonl", lines);
        qls::data_options opt;
        const auto ds = qls::load_dataset(f, tok(), opt);
        QCOMPARE(ds.examples.size(), size_t(1));
        QCOMPARE(ds.stats.skipped, size_t(1500));
        QCOMPARE(ds.warnings.size(), size_t(1001)); // 1000 listed + the count of the rest
        QVERIFY(contains(ds.warnings[0], f + ":2: "));
        QVERIFY(contains(ds.warnings.back(), "500 more"));
        opt.on_bad_record = qls::bad_record_policy::fail;
        expect_error([&] { qls::load_dataset(f, tok(), opt); }, {f + ":2: ", "must be a string"});
    }

    // The model's own template with {% generation %} blocks: the loss covers exactly the spans; the template's
    // bos_token/eos_token text becomes the BOS/EOS ids.
    void model_template_generation_spans() {
        const auto mt = model_template("{{ bos_token }}{% for m in messages %}{% if m.role == 'assistant' %}assistant: "
                                       "{% generation %}{{ m.content }}{{ eos_token }}{% endgeneration %}\n{% else %}"
                                       "{{ m.role }}: {{ m.content }}\n{% endif %}{% endfor %}",
                                       "gen.jinja");
        const auto r = chat_record({{qls::chat_role::user, "Hi"},
                                    {qls::chat_role::assistant, "Hello!"},
                                    {qls::chat_role::user, "Bye"},
                                    {qls::chat_role::assistant, "Goodbye!"}});
        const auto ex = qls::render_example(r, tok(), qls::chat_template::model, false, mt.get());
        // trim_blocks removes the newline after {% endgeneration %}.
        QCOMPARE(ex.ids, cat({{1},
                              enc("user: Hi\nassistant: "),
                              enc("Hello!"),
                              {2},
                              enc("user: Bye\nassistant: "),
                              enc("Goodbye!"),
                              {2}}));
        QCOMPARE(loss_ids(ex), cat({enc("Hello!"), {2}, enc("Goodbye!"), {2}}));
        const auto all = qls::render_example(r, tok(), qls::chat_template::model, true, mt.get());
        QCOMPARE(all.ids, ex.ids);
        QCOMPARE(all.loss_tokens(), ex.ids.size() - 1);
    }

    // Without generation blocks the assistant turns are found by rendering prefixes; same ids and mask as above.
    void model_template_prefix_rendering() {
        const auto mt = model_template("{{ bos_token }}{% for m in messages %}{% if m.role == 'assistant' %}assistant: "
                                       "{{ m.content }}{{ eos_token }}\n{% else %}{{ m.role }}: {{ m.content }}\n"
                                       "{% endif %}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
                                       "prefix.jinja");
        QVERIFY(!mt->tmpl.has_generation_blocks());
        const auto r = chat_record({{qls::chat_role::system, "Be brief."},
                                    {qls::chat_role::user, "Hi"},
                                    {qls::chat_role::assistant, "Hello!"},
                                    {qls::chat_role::user, "Bye"},
                                    {qls::chat_role::assistant, "Goodbye!"}});
        const auto ex = qls::render_example(r, tok(), qls::chat_template::model, false, mt.get());
        // A turn is all the text it adds: its reply, EOS and the newline after it.
        QCOMPARE(ex.ids, cat({{1},
                              enc("system: Be brief.\nuser: Hi\nassistant: "),
                              enc("Hello!"),
                              {2},
                              enc("\n"),
                              enc("user: Bye\nassistant: "),
                              enc("Goodbye!"),
                              {2},
                              enc("\n")}));
        QCOMPARE(loss_ids(ex), cat({enc("Hello!"), {2}, enc("\n"), enc("Goodbye!"), {2}, enc("\n")}));
        // The generation prompt is the template rendered with add_generation_prompt.
        const std::vector<qls::chat_message> conv = {{qls::chat_role::user, "Hi"}};
        QCOMPARE(qls::render_generation_prompt(conv, tok(), qls::chat_template::model, mt.get()),
                 cat({{1}, enc("user: Hi\nassistant: ")}));
    }

    // Real templates: SmolLM2 (ChatML with a default system prompt) by prefixes, SmolLM3 by its generation blocks.
    void model_template_real_templates() {
        const auto smol2 = model_template(chat_template_file("HuggingFaceTB-SmolLM2-135M-Instruct.jinja"), "SmolLM2");
        const auto r = chat_record({{qls::chat_role::user, "Hi"},
                                    {qls::chat_role::assistant, "Hello!"},
                                    {qls::chat_role::user, "Bye"},
                                    {qls::chat_role::assistant, "Goodbye!"}});
        auto ex = qls::render_example(r, tok(), qls::chat_template::model, false, smol2.get());
        const std::string sys =
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
        QCOMPARE(ex.ids,
                 cat({enc(sys + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), enc("Hello!<|im_end|>\n"),
                      enc("<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"), enc("Goodbye!<|im_end|>\n")}));
        QCOMPARE(loss_ids(ex), cat({enc("Hello!<|im_end|>\n"), enc("Goodbye!<|im_end|>\n")}));

        const auto smol3 = model_template(chat_template_file("HuggingFaceTB-SmolLM3-3B.jinja"), "SmolLM3");
        QVERIFY(smol3->tmpl.has_generation_blocks());
        ex = qls::render_example(r, tok(), qls::chat_template::model, false, smol3.get());
        // SmolLM3's generation block holds the whole assistant message, header included (thinking mode is its
        // default, so no empty <think> block).
        QCOMPARE(loss_ids(ex), cat({enc("<|im_start|>assistant\nHello!<|im_end|>\n"),
                                    enc("<|im_start|>assistant\nGoodbye!<|im_end|>\n")}));
    }

    // A template that rewrites earlier turns (Qwen3 drops the reasoning of turns before the last question) cannot
    // give a prefix-consistent mask: the error names the template.
    void model_template_not_prefix_consistent() {
        const auto qwen3 = model_template(chat_template_file("Qwen-Qwen3-0.6B.jinja"), "Qwen-Qwen3-0.6B.jinja");
        const auto r = chat_record({{qls::chat_role::user, "Is 7 prime?"},
                                    {qls::chat_role::assistant, "<think>\nDivisors?\n</think>\n\nYes."},
                                    {qls::chat_role::user, "Is 9 prime?"},
                                    {qls::chat_role::assistant, "No."}});
        expect_error([&] { qls::render_example(r, tok(), qls::chat_template::model, false, qwen3.get()); },
                     {"Qwen-Qwen3-0.6B.jinja", "message 4", "loss mask", "generation"});
        // Without reasoning in earlier turns the same template is prefix-consistent.
        const auto plain = chat_record({{qls::chat_role::user, "Is 7 prime?"}, {qls::chat_role::assistant, "Yes."}});
        const auto ex = qls::render_example(plain, tok(), qls::chat_template::model, false, qwen3.get());
        QCOMPARE(loss_ids(ex), enc("<think>\n\n</think>\n\nYes.<|im_end|>\n"));
    }

    // load_dataset with the model's template: auto picks it for chat data; a conversation the template rejects
    // (raise_exception) is a bad record with the template's message; text data cannot take it.
    void model_template_load_dataset() {
        QTemporaryDir dir;
        const std::string path = write_file(
            dir, "chat.jsonl",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hey\"}]}\n"
            "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"Q\"}, "
            "{\"role\": \"assistant\", \"content\": \"A\"}]}\n");
        qls::data_options opt;
        opt.seq_len = 256;
        opt.model_template = model_template(chat_template_file("google-gemma-2-2b-it.jinja"), "gemma-2.jinja");
        const qls::dataset ds = qls::load_dataset(path, tok(), opt);
        QCOMPARE(ds.tmpl, qls::chat_template::model);
        QCOMPARE(ds.examples.size(), size_t(1));
        QCOMPARE(ds.stats.skipped, size_t(1));
        QVERIFY(ds.warnings[0].find("chat.jsonl:2") != std::string::npos);
        QVERIFY(ds.warnings[0].find("System role not supported") != std::string::npos);
        QCOMPARE(loss_ids(ds.examples[0]), enc("Hey<end_of_turn>\n"));
        QCOMPARE(ds.examples[0].ids[0], 1); // the template's "<s>" bos_token text became the BOS id

        opt.on_bad_record = qls::bad_record_policy::fail;
        expect_error([&] { qls::load_dataset(path, tok(), opt); }, {"chat.jsonl:2", "System role not supported"});

        QCOMPARE(qls::resolve_template(qls::chat_template::auto_select, qls::dataset_format::chat_messages, true),
                 qls::chat_template::model);
        QCOMPARE(qls::resolve_template(qls::chat_template::auto_select, qls::dataset_format::chat_messages, false),
                 qls::chat_template::llama2_chat);
        QCOMPARE(qls::resolve_template(qls::chat_template::model, qls::dataset_format::alpaca, true),
                 qls::chat_template::model);
        expect_error(
            [] { qls::resolve_template(qls::chat_template::model, qls::dataset_format::chat_messages, false); },
            {"no chat template", "chatml"});
        expect_error([] { qls::resolve_template(qls::chat_template::model, qls::dataset_format::plain_text, true); },
                     {"model template cannot render", "raw"});
    }

    // A Hugging Face directory's template and special tokens, loaded as the trainer and the Dataset page do.
    void model_template_from_directory() {
        QTemporaryDir dir;
        write_file(
            dir, "tokenizer_config.json",
            "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\", \"chat_template\": "
            "\"{{ bos_token }}{% for m in messages %}{{ m.content }}{% if m.role == 'assistant' %}{{ eos_token }}"
            "{% endif %}{% endfor %}\"}");
        const auto mt = qls::load_model_chat_template(dir.path().toStdString());
        QVERIFY(mt);
        QVERIFY(mt->tmpl.origin().find("tokenizer_config.json") != std::string::npos);
        const auto ex = qls::render_example(chat_record({{qls::chat_role::user, "Q"},
                                                         {qls::chat_role::assistant, "A"}}),
                                            tok(), qls::chat_template::model, false, mt.get());
        QCOMPARE(ex.ids, cat({{1}, enc("Q"), enc("A"), {2}}));
        QCOMPARE(loss_ids(ex), cat({enc("A"), {2}}));
        QVERIFY(!qls::load_model_chat_template(testutil::model_dir())); // stories260K has no template
    }

    // The Dataset page's analysis with a model directory that has a chat template: auto resolves to the model's
    // template and the preview's loss mask is exactly the assistant turn.
    void model_template_dataset_analysis() {
        QLS_REQUIRE_MODEL();
        QTemporaryDir dir;
        const std::string model = dir.path().toStdString() + "/model";
        QVERIFY(QDir().mkpath(QString::fromStdString(model)));
        for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
            QVERIFY(QFile::link(QString::fromStdString(testutil::model_dir() + "/" + f),
                                QString::fromStdString(model + "/" + f)));
        write_file(
            dir, "model/tokenizer_config.json",
            R"({"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' %}{% generation %}{{ m.content }}{{ eos_token }}{% endgeneration %}{% else %}{{ m.content }}\n{% endif %}{% endfor %}"})");
        const std::string data = write_file(
            dir, "chat.jsonl",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hey\"}]}\n");
        qls::dataset_analysis_request rq;
        rq.train_file = data;
        rq.model_dir = model;
        rq.options.seq_len = 64;
        const qls::dataset_analysis a = qls::analyze_dataset(rq);
        QVERIFY2(a.train_error.empty() && a.template_error.empty() && a.model_error.empty(),
                 qPrintable(QString::fromStdString(a.train_error + a.template_error + a.model_error)));
        QCOMPARE(a.tmpl, qls::chat_template::model);
        QCOMPARE(a.preview.size(), size_t(1));
        QCOMPARE(a.preview[0].ids, cat({{1}, enc("user: Hi\nassistant: "), enc("Hey"), {2}}));
        std::vector<int> trained;
        for (size_t i = 0; i < a.preview[0].ids.size(); ++i)
            if (a.preview[0].loss[i]) trained.push_back(a.preview[0].ids[i]);
        QCOMPARE(trained, cat({enc("Hey"), {2}}));

        // A template that does not parse is the template's error, naming the file and line.
        write_file(dir, "model/tokenizer_config.json", R"({"chat_template": "ok\n{% if %}"})");
        const qls::dataset_analysis b = qls::analyze_dataset(rq);
        QVERIFY2(b.template_error.find("tokenizer_config.json:2:") != std::string::npos,
                 qPrintable(QString::fromStdString(b.template_error)));
    }
};

QTEST_APPLESS_MAIN(tst_dataset)
#include "tst_dataset.moc"
