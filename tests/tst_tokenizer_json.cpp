// Qt Test: tokenizer.json and GGUF vocabularies against Hugging Face tokenizers 0.23.3 (fixtures written by
// tests/data/tokenizers/gen_tokenizer_fixtures.py), malformed files, load_tokenizer_for's choice, `qlora tokenize`.
#include "testutil.h"

#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/tokenizer.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string data_dir() { return std::string(QLS_SOURCE_DIR) + "/tests/data/tokenizers"; }
std::string smollm2_dir() { return testutil::model_dir() + "/../smollm2-135m-instruct/hf-tokenizer"; }

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

const json& corpus() {
    static const json c = json::parse(slurp(data_dir() + "/corpus.json"));
    return c;
}
const json& expected() {
    static const json e = json::parse(slurp(data_dir() + "/expected.json"));
    return e;
}

std::string from_hex(const std::string& h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(char(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}

std::string ids_str(const std::vector<int>& ids) {
    std::string s;
    for (int id : ids) s += std::to_string(id) + " ";
    return s;
}

// Compares encode_prompt and decode with the expectations of one tokenizer; returns "" or the first difference.
std::string compare_with_hf(const qls::tokenizer& t, const json& exp, bool check_decode = true) {
    const json& texts = corpus()["texts"];
    const json& cases = exp["cases"];
    if (texts.size() != cases.size()) return "corpus and expectations differ in size";
    for (size_t i = 0; i < texts.size(); ++i) {
        const std::string text = texts[i].get<std::string>();
        const std::vector<int> want = cases[i]["ids"].get<std::vector<int>>();
        const std::vector<int> got = t.encode_prompt(text);
        if (got != want)
            return "text #" + std::to_string(i) + " " + json(text.substr(0, 80)).dump() + ": ids " +
                   ids_str(got).substr(0, 300) + "\n  expected " + ids_str(want).substr(0, 300);
        if (check_decode) {
            const std::string dec = t.decode(got);
            if (dec != cases[i]["decoded"].get<std::string>())
                return "text #" + std::to_string(i) + ": decode gives " + json(dec.substr(0, 120)).dump() +
                       ", expected " + cases[i]["decoded"].dump().substr(0, 120);
        }
    }
    for (const json& c : exp["invalid_utf8"]) {
        const std::vector<int> got = t.encode_prompt(from_hex(c["hex"].get<std::string>()));
        if (got != c["ids"].get<std::vector<int>>())
            return "invalid UTF-8 " + c["hex"].get<std::string>() + ": ids " + ids_str(got) + ", expected " +
                   c["ids"].dump();
    }
    return "";
}

std::string write_file(const QTemporaryDir& dir, const std::string& name, const std::string& content) {
    const std::string p = dir.path().toStdString() + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
}

// A minimal valid tokenizer.json with `patch` merged over it (top level).
json minimal_tokenizer() {
    return json::parse(R"({"version": "1.0", "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
        "post_processor": null, "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
}

} // namespace

class tst_tokenizer_json : public QObject {
    Q_OBJECT
private slots:
    // (b) + (c): the trained tokenizers — Llama 3, Qwen2 (+NFC), Tekken, GPT-2 byte-level BPE; Metaspace with
    // byte fallback (both the current and the legacy Prepend/Replace layout); every added-token flag combination
    // over normalizers and split behaviours; Whitespace + RobertaProcessing — give HF's ids and decodes.
    void trained_tokenizers_match_hf_data() {
        QTest::addColumn<QString>("name");
        for (const char* n : {"llama3", "qwen2", "tekken", "gpt2", "gpt2_prefix", "metaspace", "metaspace_legacy",
                              "metaspace_split", "added", "whitespace"})
            QTest::newRow(n) << QString(n);
    }
    void trained_tokenizers_match_hf() {
        QFETCH(QString, name);
        const std::string n = name.toStdString();
        const qls::tokenizer t = qls::tokenizer::load_json(data_dir() + "/" + n + "/tokenizer.json");
        const std::string diff = compare_with_hf(t, expected()[n]);
        QVERIFY2(diff.empty(), diff.c_str());
    }

    void kinds_and_specials() {
        const qls::tokenizer l3 = qls::tokenizer::load_json(data_dir() + "/llama3/tokenizer.json");
        QCOMPARE(l3.kind(), std::string("byte-level BPE"));
        QCOMPARE(l3.bos_id(), l3.token_id("<|begin_of_text|>"));
        QVERIFY(l3.bos_id() >= 0 && l3.is_special(l3.bos_id()));
        QCOMPARE(l3.encode_prompt("").size(), size_t(1)); // the template's BOS only
        QCOMPARE(l3.token_id("no such token"), -1);
        const qls::tokenizer ms = qls::tokenizer::load_json(data_dir() + "/metaspace/tokenizer.json");
        QCOMPARE(ms.kind(), std::string("BPE with byte fallback"));
        QCOMPARE(ms.unk_id(), ms.token_id("<unk>"));
        QCOMPARE(ms.piece(ms.token_id("<0x0A>")), std::string("<0x0A>"));
        // encode() adds BOS/EOS only when asked, whatever the template says
        const std::vector<int> plain = ms.encode("hello", false);
        QCOMPARE(ms.encode("hello", true, true).size(), plain.size() + 2);
    }

    // (a): SmolLM2's real tokenizer.json on the whole corpus, and the chat prompt of SOURCE.md.
    void smollm2_matches_hf() {
        const qls::tokenizer t = qls::tokenizer::load_json(smollm2_dir() + "/tokenizer.json");
        QCOMPARE(t.vocab_size(), 49152);
        QCOMPARE(t.bos_id(), 1);
        QCOMPARE(t.eos_id(), 2);
        const std::string diff = compare_with_hf(t, expected()["smollm2"]);
        QVERIFY2(diff.empty(), diff.c_str());
        const std::string prompt =
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
            "<|im_start|>assistant\n";
        const std::vector<int> want = {1,   9690, 198, 2683, 359,   253,  5356, 5646, 11173, 3365, 3511, 308,  34519,
                                       28,  7018, 411, 407,  19712, 8182, 2,    198,  1,     4093, 198,  1780, 314,
                                       260, 3575, 282, 4649, 47,    2,    198,  1,    520,   9531, 198};
        QCOMPARE(t.encode_prompt(prompt), want);
        QCOMPARE(t.decode({504, 3575, 282, 4649, 314, 7042, 30, 2}), std::string("The capital of France is Paris."));
    }

    // A byte-level BPE streams whole characters: an emoji split over several ids appears once complete.
    void detokenizer_byte_level() {
        const qls::tokenizer t = qls::tokenizer::load_json(smollm2_dir() + "/tokenizer.json");
        const std::string text = "Hi 🧑🏾‍💻 and 你好";
        const std::vector<int> ids = t.encode_prompt(text);
        qls::detokenizer d(t);
        std::string out;
        for (int id : ids) {
            const std::string delta = d.push(id);
            QVERIFY2(delta.find("\xEF\xBF\xBD") == std::string::npos, "a partial character was emitted");
            out += delta;
        }
        out += d.flush();
        QCOMPARE(out, text);
    }

    // The 340 KB training text through SmolLM2's tokenizer: byte-level BPE decodes back to the same bytes; the speed
    // is reported.
    void round_trip_and_speed() {
        const qls::tokenizer t = qls::tokenizer::load_json(smollm2_dir() + "/tokenizer.json");
        const std::string text = slurp(data_dir() + "/train_corpus.txt");
        QVERIFY(text.size() > 300000);
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<int> ids = t.encode(text, false);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        qInfo("encoded %zu bytes into %zu tokens in %.3f s (%.2f MB/s)", text.size(), ids.size(), s,
              double(text.size()) / s / 1e6);
        QCOMPARE(t.decode(ids), text);
        QVERIFY2(s < 30.0, qPrintable(QString("encoding took %1 s").arg(s)));
    }

    // Random bytes (valid and invalid UTF-8, specials' fragments) through every fixture tokenizer: no crash, ids in
    // range; the byte-level tokenizers without a normalizer decode valid text back byte for byte.
    void random_inputs() {
        std::mt19937 rng(7);
        const std::vector<std::string> bits = {"<|im_start|>",
                                               "<|im_",
                                               "<s>",
                                               "</s",
                                               "[Tk03]",
                                               "[tk19]",
                                               " ",
                                               "\n",
                                               "\r\n",
                                               "\t",
                                               "'S",
                                               "1234",
                                               "\xC3\xA9",
                                               "\xE2\x80\x8D",
                                               "\xF0\x9F\x91\x8D",
                                               "\xFF",
                                               "\xE2\x82",
                                               "\xC0",
                                               "\x00",
                                               "a",
                                               "Z",
                                               "\xE2\x96\x81",
                                               "<0x41>"};
        for (const char* n : {"llama3", "qwen2", "tekken", "gpt2", "gpt2_prefix", "metaspace", "metaspace_legacy",
                              "metaspace_split", "added", "whitespace"}) {
            const qls::tokenizer t = qls::tokenizer::load_json(data_dir() + "/" + n + "/tokenizer.json");
            const bool lossless = std::string(n) == "llama3" || std::string(n) == "tekken" || std::string(n) == "gpt2";
            for (int k = 0; k < 300; ++k) {
                std::string text;
                const int parts = int(rng() % 12);
                for (int i = 0; i < parts; ++i) {
                    if (rng() % 3 == 0) text += char(rng() % 256);
                    else text += bits[rng() % bits.size()];
                }
                const std::vector<int> ids = t.encode_prompt(text);
                for (int id : ids) QVERIFY(id >= 0 && id < t.vocab_size());
                if (lossless) { // valid UTF-8 without special tokens comes back byte for byte
                    std::string valid;
                    for (int i = 0; i < parts; ++i) {
                        const std::string& bit = bits[rng() % bits.size()];
                        if (bit != "<s>" && bit != "\xFF" && bit != "\xE2\x82" && bit != "\xC0") valid += bit;
                    }
                    QCOMPARE(t.decode(t.encode(valid, false)), valid);
                }
            }
        }
    }

    // from_gguf "gpt2": a GGUF vocabulary made of SmolLM2's tokens, merges and token types (pre "smollm") gives the
    // ids of its tokenizer.json on the whole corpus.
    void gguf_gpt2_matches_tokenizer_json() {
        const json j = json::parse(slurp(smollm2_dir() + "/tokenizer.json"));
        qls::gguf_vocab v;
        v.model = "gpt2";
        v.pre = "smollm";
        v.origin = "SmolLM2 vocabulary";
        const json& vocab = j["model"]["vocab"];
        v.tokens.assign(vocab.size(), "");
        for (auto it = vocab.begin(); it != vocab.end(); ++it) v.tokens[it.value().get<size_t>()] = it.key();
        v.token_types.assign(v.tokens.size(), 1);
        for (const json& a : j["added_tokens"]) v.token_types[a["id"].get<size_t>()] = a["special"].get<bool>() ? 3 : 4;
        for (const json& m : j["model"]["merges"])
            v.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
        v.bos_id = 1;
        v.eos_id = 2;
        v.unk_id = 0;
        v.add_bos = false;
        const qls::tokenizer t = qls::tokenizer::from_gguf(v);
        QCOMPARE(t.kind(), std::string("byte-level BPE"));
        QCOMPARE(t.bos_id(), 1);
        const std::string diff = compare_with_hf(t, expected()["smollm2"]);
        QVERIFY2(diff.empty(), diff.c_str());

        v.pre = "mystery-pre";
        QCOMPARE(testutil::expect_error([&] { qls::tokenizer::from_gguf(v); }, qls::error_code::unsupported,
                                        {"SmolLM2 vocabulary", "mystery-pre"}),
                 std::string());
        v.pre = "llama-bpe"; // a known pre with a regex list: builds
        QVERIFY(!qls::tokenizer::from_gguf(v).encode_prompt("Hello world").empty());
        v.model = "bert";
        QCOMPARE(testutil::expect_error([&] { qls::tokenizer::from_gguf(v); }, qls::error_code::unsupported,
                                        {"SmolLM2 vocabulary", "\"bert\""}),
                 std::string());
    }

    // from_gguf "llama": a SentencePiece ModelProto built from stories260K's pieces, scores and types encodes as
    // its tokenizer.model does. The GGUF vocabulary keeps runs of spaces (llama.cpp's SPM tokenizer; Llama's own
    // model has remove_extra_whitespaces false) while stories260K's model collapses them, so texts with space runs
    // or leading/trailing spaces are left out.
    void gguf_llama_matches_sentencepiece() {
        QLS_REQUIRE_MODEL();
        const json pieces = json::parse(slurp(data_dir() + "/stories260k_vocab.json"));
        qls::gguf_vocab v;
        v.model = "llama";
        v.origin = "stories260K vocabulary";
        v.tokens = pieces["tokens"].get<std::vector<std::string>>();
        v.scores = pieces["scores"].get<std::vector<float>>();
        v.token_types = pieces["token_types"].get<std::vector<int32_t>>();
        v.bos_id = 1;
        v.eos_id = 2;
        v.unk_id = 0;
        const qls::tokenizer g = qls::tokenizer::from_gguf(v);
        const qls::tokenizer sp = qls::tokenizer::load(testutil::model_dir() + "/tokenizer.model");
        QCOMPARE(g.vocab_size(), sp.vocab_size());
        QCOMPARE(g.bos_id(), 1);
        QCOMPARE(g.eos_id(), 2);
        int compared = 0;
        for (const json& tj : corpus()["texts"]) {
            const std::string text = tj.get<std::string>();
            if (text.find("  ") != std::string::npos || (!text.empty() && (text.front() == ' ' || text.back() == ' ')))
                continue;
            QCOMPARE(g.encode(text, true), sp.encode(text, true));
            QCOMPARE(g.decode(g.encode(text, false)), sp.decode(sp.encode(text, false)));
            ++compared;
        }
        QVERIFY(compared > 100);
        QCOMPARE(g.encode_prompt("<s>Once</s>"), sp.encode_prompt("<s>Once</s>"));
        v.token_types[5] = 9;
        QCOMPARE(testutil::expect_error([&] { qls::tokenizer::from_gguf(v); }, qls::error_code::format,
                                        {"stories260K vocabulary", "token_type[5]"}),
                 std::string());
    }

    // SentencePiece encode_prompt: BOS as tokenizer_config.json says, control pieces in the text recognized.
    void sentencepiece_prompt() {
        QLS_REQUIRE_MODEL();
        const qls::tokenizer sp = qls::tokenizer::load(testutil::model_dir() + "/tokenizer.model");
        QCOMPARE(sp.kind(), std::string("SentencePiece"));
        const std::vector<int> body = sp.encode("Once upon a time", false);
        std::vector<int> want = {1};
        want.insert(want.end(), body.begin(), body.end());
        want.push_back(2);
        QCOMPARE(sp.encode_prompt("Once upon a time</s>"), want);
        QCOMPARE(sp.token_id("</s>"), 2);
        QVERIFY(sp.is_special(1));
        QVERIFY(!sp.is_special(body[0]));
    }

    // Malformed tokenizer.json files: each an error naming the file and the problem.
    void malformed_files() {
        QTemporaryDir dir;
        auto check = [&](const std::string& content, qls::error_code code, std::vector<std::string> parts) {
            const std::string p = write_file(dir, "tokenizer.json", content);
            parts.insert(parts.begin(), p);
            return testutil::expect_error([&] { qls::tokenizer::load_json(p); }, code, parts);
        };
        QCOMPARE(check("{ not json", qls::error_code::format, {"not valid JSON"}), std::string());
        QCOMPARE(check("[1, 2]", qls::error_code::format, {"JSON object"}), std::string());
        json j = minimal_tokenizer();
        QCOMPARE(check(j.dump(), qls::error_code::format, {}), std::string("no error was thrown")); // the base is valid
        j["model"]["vocab"] = json::array();
        QCOMPARE(check(j.dump(), qls::error_code::format, {"model.vocab", "must be an object"}), std::string());
        j = minimal_tokenizer();
        j["model"]["vocab"]["a"] = "zero";
        QCOMPARE(check(j.dump(), qls::error_code::format, {"model.vocab", "integer"}), std::string());
        j = minimal_tokenizer();
        j["model"]["type"] = "Unigram";
        QCOMPARE(check(j.dump(), qls::error_code::unsupported, {"model type \"Unigram\""}), std::string());
        j = minimal_tokenizer();
        j["normalizer"] = {{"type", "Precompiled"}};
        QCOMPARE(check(j.dump(), qls::error_code::unsupported, {"normalizer type \"Precompiled\""}), std::string());
        j = minimal_tokenizer();
        j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
        QCOMPARE(check(j.dump(), qls::error_code::unsupported, {"pre-tokenizer type \"BertPreTokenizer\""}),
                 std::string());
        j = minimal_tokenizer();
        j["decoder"] = {{"type", "WordPiece"}};
        QCOMPARE(check(j.dump(), qls::error_code::unsupported, {"decoder type \"WordPiece\""}), std::string());
        j = minimal_tokenizer();
        j["post_processor"] = {{"type", "Mystery"}};
        QCOMPARE(check(j.dump(), qls::error_code::unsupported, {"post-processor type \"Mystery\""}), std::string());
        j = minimal_tokenizer();
        j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed[a-"}}}, {"behavior", "Isolated"}};
        QCOMPARE(check(j.dump(), qls::error_code::format, {"(unclosed[a-", "does not compile"}), std::string());
        j = minimal_tokenizer();
        j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "x"}}}, {"behavior", "Sideways"}};
        QCOMPARE(check(j.dump(), qls::error_code::format, {"behavior", "Sideways"}), std::string());
        j = minimal_tokenizer();
        j["model"]["merges"] = {"a zz"};
        QCOMPARE(check(j.dump(), qls::error_code::format, {"model.merges[0]", "\"zz\"", "not in model.vocab"}),
                 std::string());
        j = minimal_tokenizer();
        j["model"]["merges"] = {"b a"};
        QCOMPARE(check(j.dump(), qls::error_code::format, {"merges into \"ba\""}), std::string());
        j = minimal_tokenizer();
        j["model"]["merges"] = {"a b c"};
        QCOMPARE(check(j.dump(), qls::error_code::format, {"model.merges[0]", "one space"}), std::string());
        j = minimal_tokenizer();
        j["model"]["vocab"]["huge"] = 1LL << 40;
        QCOMPARE(check(j.dump(), qls::error_code::format, {"model.vocab[\"huge\"]", "outside"}), std::string());
        j = minimal_tokenizer();
        j["model"]["vocab"][std::string(5000, 'x')] = 3;
        QCOMPARE(check(j.dump(), qls::error_code::format, {"5000 bytes"}), std::string());
        j = minimal_tokenizer();
        j["added_tokens"] = {{{"id", 1LL << 33}, {"content", "<x>"}}};
        QCOMPARE(check(j.dump(), qls::error_code::format, {"added_tokens[0].id", "outside"}), std::string());
        j = minimal_tokenizer();
        j["added_tokens"] = {{{"id", 3}, {"content", 7}}};
        QCOMPARE(check(j.dump(), qls::error_code::format, {"added_tokens[0].content", "string"}), std::string());
        j = minimal_tokenizer();
        j["model"]["dropout"] = 0.1;
        QCOMPARE(check(j.dump(), qls::error_code::unsupported, {"dropout"}), std::string());
        j = minimal_tokenizer(); // Sequence nested beyond the limit
        json deep = {{"type", "Lowercase"}};
        for (int i = 0; i < 20; ++i) deep = {{"type", "Sequence"}, {"normalizers", {deep}}};
        j["normalizer"] = deep;
        QCOMPARE(check(j.dump(), qls::error_code::format, {"too deeply"}), std::string());
        QCOMPARE(testutil::expect_error([&] { qls::tokenizer::load_json(dir.path().toStdString() + "/none.json"); },
                                        qls::error_code::io, {"none.json"}),
                 std::string());
    }

    // A pathological regex on a long text fails with an error (match limits), not a hang.
    void regex_limits() {
        QTemporaryDir dir;
        json j = minimal_tokenizer();
        j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(a|aa)+$"}}}, {"behavior", "Isolated"}};
        const std::string p = write_file(dir, "tokenizer.json", j.dump());
        const qls::tokenizer t = qls::tokenizer::load_json(p);
        const auto t0 = std::chrono::steady_clock::now();
        const std::string r = testutil::expect_error([&] { t.encode_prompt(std::string(5000, 'a') + "b"); },
                                                     qls::error_code::invalid_argument, {p, "(a|aa)+$"});
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        QCOMPARE(r, std::string());
        QVERIFY2(s < 20.0, qPrintable(QString("took %1 s").arg(s)));
    }

    // load_tokenizer_in / load_tokenizer_for: tokenizer.json preferred (AutoTokenizer's fast tokenizer), said in
    // `which`; the vocabulary check against config.json applies to tokenizer.json too.
    void directory_choice() {
        QLS_REQUIRE_MODEL();
        QTemporaryDir dir;
        const std::string d = dir.path().toStdString();
        fs::copy_file(testutil::model_dir() + "/tokenizer.model", d + "/tokenizer.model");
        std::string which;
        QCOMPARE(qls::load_tokenizer_in(d, &which).kind(), std::string("SentencePiece"));
        QCOMPARE(which, std::string("tokenizer.model (SentencePiece)"));
        fs::copy_file(data_dir() + "/metaspace/tokenizer.json", d + "/tokenizer.json");
        const qls::tokenizer t = qls::load_tokenizer_in(d, &which);
        QCOMPARE(which, std::string("tokenizer.json (BPE with byte fallback); tokenizer.model is also there and is "
                                    "not used"));
        QCOMPARE(t.path(), d + "/tokenizer.json");

        // a model directory whose tokenizer.json has 1500+ tokens against config.json's 512
        QTemporaryDir model;
        const std::string m = model.path().toStdString();
        for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
            fs::copy_file(testutil::model_dir() + "/" + f, m + "/" + f);
        fs::copy_file(data_dir() + "/metaspace/tokenizer.json", m + "/tokenizer.json");
        const qls::hf_checkpoint ck = qls::hf_checkpoint::open(m);
        QCOMPARE(testutil::expect_error([&] { qls::load_tokenizer_for(ck); }, qls::error_code::config,
                                        {m + "/tokenizer.json", m + "/config.json", "512"}),
                 std::string());
        fs::remove(m + "/tokenizer.json");
        QCOMPARE(qls::load_tokenizer_for(ck, &which).vocab_size(), 512);
        QCOMPARE(which, std::string("tokenizer.model (SentencePiece)"));
        QCOMPARE(testutil::expect_error([&] { qls::load_tokenizer_in(d + "/nothing"); }, qls::error_code::io,
                                        {"tokenizer.model", "tokenizer.json", "not found"}),
                 std::string());
    }

    // `qlora tokenize` on a tokenizer-only directory (no weights, no config.json).
    void cli_tokenize() {
        QTemporaryDir dir;
        const std::string d = dir.path().toStdString();
        for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
            fs::copy_file(smollm2_dir() + "/" + f, d + "/" + f);
        auto r = testutil::run_cli({"tokenize", "--model", QString::fromStdString(d), "--text",
                                    "<|im_start|>user\nWhat is the capital of France?<|im_end|>", "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const json out = json::parse(r.out.toStdString());
        QCOMPARE(out["ids"].get<std::vector<int>>(),
                 (std::vector<int>{1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2}));
        QCOMPARE(out["pieces"][1].get<std::string>(), std::string("user"));
        QCOMPARE(out["tokenizer"].get<std::string>(), std::string("tokenizer.json (byte-level BPE)"));
        r = testutil::run_cli({"tokenize", "--model", QString::fromStdString(d), "--text", "Hi"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY2(r.out.contains("\"Hi\""), qPrintable(r.out));
        r = testutil::run_cli({"tokenize", "--model", QString::fromStdString(d + "/x.gguf"), "--text", "Hi"});
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("x.gguf"), qPrintable(r.err));
        r = testutil::run_cli({"tokenize", "--text", "Hi"});
        QCOMPARE(r.exit_code, 2);
    }
};

QTEST_GUILESS_MAIN(tst_tokenizer_json)
#include "tst_tokenizer_json.moc"
