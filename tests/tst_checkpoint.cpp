// Qt Test: hf_checkpoint on stories260K (single and sharded) and its errors; load_tokenizer_for's checks.
#include "testutil.h"

#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/safetensors.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

using json = nlohmann::json;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

json stories_config() { return json::parse(read_file(testutil::model_dir() + "/config.json")); }

// A scratch model directory; files are copied from stories260K or written by the test.
struct scratch_dir {
    QTemporaryDir tmp;
    std::string path() const { return tmp.path().toStdString(); }
    std::string file(const std::string& name) const { return path() + "/" + name; }
    void copy(const std::string& name) const { write_file(file(name), read_file(testutil::model_dir() + "/" + name)); }
    void write_config(const json& j) const { write_file(file("config.json"), j.dump(2)); }
};

// Runs f, which must throw qls::error with `code` and a message containing every string in `parts`;
// returns the error's describe() text (message + hint) for further checks.
std::string expect_error(const std::function<void()>& f, qls::error_code code, const std::vector<std::string>& parts) {
    try {
        f();
    } catch (const qls::error& e) {
        std::string msg = e.what();
        if (e.code() != code)
            qWarning("expected code %s, got %s: %s", qls::error_code_name(code), qls::error_code_name(e.code()),
                     msg.c_str());
        if (e.code() != code) return "<wrong code>";
        for (const std::string& p : parts)
            if (msg.find(p) == std::string::npos) {
                qWarning("message lacks \"%s\": %s", p.c_str(), msg.c_str());
                return "<missing part>";
            }
        return e.describe();
    }
    return "<no error>";
}
// The describe() text of the error the last EXPECT_ERROR caught.
std::string last_error;
#define EXPECT_ERROR(fn, code, ...)                                                              \
    do {                                                                                         \
        last_error = expect_error(fn, code, __VA_ARGS__);                                        \
        QVERIFY2(last_error.rfind("<", 0) != 0, qPrintable(QString::fromStdString(last_error))); \
    } while (0)

// Every tensor of the real checkpoint, read through the safetensors reader.
std::vector<std::pair<std::string, qls::tensor>> stories_tensors() {
    qls::safetensors_file f = qls::safetensors_file::open(testutil::model_dir() + "/model.safetensors");
    std::vector<std::pair<std::string, qls::tensor>> out;
    for (const qls::safetensors_entry& e : f.entries()) out.emplace_back(e.name, f.read(e.name));
    return out;
}

// Writes stories260K split in two shards plus model.safetensors.index.json into dir; returns the weight_map.
json write_sharded(const scratch_dir& d) {
    auto all = stories_tensors();
    size_t half = all.size() / 2;
    std::vector<std::pair<std::string, qls::tensor>> a(all.begin(), all.begin() + std::ptrdiff_t(half));
    std::vector<std::pair<std::string, qls::tensor>> b(all.begin() + std::ptrdiff_t(half), all.end());
    qls::safetensors_save(d.file("model-00001-of-00002.safetensors"), a, {{"format", "pt"}});
    qls::safetensors_save(d.file("model-00002-of-00002.safetensors"), b, {{"format", "pt"}});
    json wm = json::object();
    for (auto& [n, t] : a) wm[n] = "model-00001-of-00002.safetensors";
    for (auto& [n, t] : b) wm[n] = "model-00002-of-00002.safetensors";
    json index = {{"metadata", {{"total_size", 1044000}}}, {"weight_map", wm}};
    write_file(d.file("model.safetensors.index.json"), index.dump(2));
    d.copy("config.json");
    return index;
}

} // namespace

class tst_checkpoint : public QObject {
    Q_OBJECT
private slots:
    void open_stories260k() {
        QLS_REQUIRE_MODEL();
        qls::hf_checkpoint ck = qls::hf_checkpoint::open(testutil::model_dir());
        QCOMPARE(ck.config().hidden_size, 64);
        QCOMPARE(ck.config().vocab_size, 512);
        std::vector<std::string> names = ck.tensor_names();
        QCOMPARE(names.size(), size_t(1 + 5 * 9 + 1)); // embedding, 9 per layer, final norm; no lm_head (tied)
        QVERIFY(std::is_sorted(names.begin(), names.end()));
        QVERIFY(ck.has("model.embed_tokens.weight"));
        QVERIFY(!ck.has("lm_head.weight"));
        QCOMPARE(ck.entry("model.embed_tokens.weight").shape, (qls::shape_t{512, 64}));
        QCOMPARE(ck.entry("model.layers.0.self_attn.q_proj.weight").shape, (qls::shape_t{64, 64}));
        QCOMPARE(ck.entry("model.layers.4.self_attn.k_proj.weight").shape, (qls::shape_t{32, 64}));
        QCOMPARE(ck.entry("model.layers.2.mlp.gate_proj.weight").shape, (qls::shape_t{172, 64}));
        QCOMPARE(ck.entry("model.layers.2.mlp.down_proj.weight").shape, (qls::shape_t{64, 172}));
        QCOMPARE(ck.entry("model.norm.weight").type, qls::dtype::f32);
        QCOMPARE(ck.file_of("model.norm.weight").path(), testutil::model_dir() + "/model.safetensors");

        // read_f32 equals the bytes at the data offsets the header gives, parsed here independently.
        qls::tensor norm = ck.read_f32("model.norm.weight", {64});
        QCOMPARE(norm.shape(), (qls::shape_t{64}));
        std::string raw = read_file(testutil::model_dir() + "/model.safetensors");
        uint64_t hlen;
        std::memcpy(&hlen, raw.data(), 8);
        json header = json::parse(raw.substr(8, hlen));
        uint64_t begin = header["model.norm.weight"]["data_offsets"][0];
        std::vector<float> want(64);
        std::memcpy(want.data(), raw.data() + 8 + hlen + begin, 64 * 4);
        for (int i = 0; i < 64; ++i) QCOMPARE(norm.f32()[i], want[size_t(i)]);

        EXPECT_ERROR([&] { ck.entry("lm_head.weight"); }, qls::error_code::format,
                     {"lm_head.weight", testutil::model_dir()});
        EXPECT_ERROR([&] { ck.read_f32("model.norm.weight", {32}); }, qls::error_code::shape_mismatch,
                     {testutil::model_dir() + "/model.safetensors", "model.norm.weight", "[64]", "[32]",
                      testutil::model_dir() + "/config.json"});
        QVERIFY(last_error.find("config.json disagrees with the weights") != std::string::npos);

        qls::tokenizer tok = qls::load_tokenizer_for(ck);
        QCOMPARE(tok.vocab_size(), 512);
        QCOMPARE(tok.encode("Once upon a time", true), (std::vector<int>{1, 403, 407, 261, 378}));
    }

    void missing_config() {
        QLS_REQUIRE_MODEL();
        scratch_dir d;
        d.copy("model.safetensors");
        EXPECT_ERROR([&] { qls::hf_checkpoint::open(d.path()); }, qls::error_code::io,
                     {d.file("config.json"), "Hugging Face model directory"});
        EXPECT_ERROR([&] { qls::hf_checkpoint::open(d.file("nope")); }, qls::error_code::io,
                     {d.file("nope"), "does not exist"});
    }

    void missing_weights() {
        QLS_REQUIRE_MODEL();
        scratch_dir d;
        d.copy("config.json");
        EXPECT_ERROR([&] { qls::hf_checkpoint::open(d.path()); }, qls::error_code::io,
                     {d.file("model.safetensors"), d.file("model.safetensors.index.json")});
        QVERIFY(last_error.find("safe_serialization") == std::string::npos);

        write_file(d.file("pytorch_model.bin"), std::string(64, '\x80'));
        EXPECT_ERROR([&] { qls::hf_checkpoint::open(d.path()); }, qls::error_code::io,
                     {d.file("model.safetensors"), "pytorch_model.bin"});
        QVERIFY2(last_error.find("save_pretrained") != std::string::npos &&
                     last_error.find("safe_serialization=True") != std::string::npos &&
                     last_error.find("not supported") != std::string::npos,
                 last_error.c_str());
    }

    void sharded_checkpoint() {
        QLS_REQUIRE_MODEL();
        scratch_dir d;
        json index = write_sharded(d);
        qls::hf_checkpoint ck = qls::hf_checkpoint::open(d.path());
        qls::hf_checkpoint ref = qls::hf_checkpoint::open(testutil::model_dir());
        QCOMPARE(ck.tensor_names(), ref.tensor_names());
        QCOMPARE(ck.file_of("model.embed_tokens.weight").path(), d.file("model-00001-of-00002.safetensors"));
        QCOMPARE(ck.file_of("model.norm.weight").path(), d.file("model-00002-of-00002.safetensors"));
        for (const std::string& n : ref.tensor_names()) {
            const qls::shape_t& shape = ref.entry(n).shape;
            QCOMPARE(ck.entry(n).shape, shape);
            qls::tensor a = ck.read_f32(n, shape), b = ref.read_f32(n, shape);
            QVERIFY2(a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0, n.c_str());
        }
    }

    void sharded_missing_shard() {
        QLS_REQUIRE_MODEL();
        scratch_dir d;
        write_sharded(d);
        QVERIFY(QFile::remove(QString::fromStdString(d.file("model-00002-of-00002.safetensors"))));
        EXPECT_ERROR([&] { qls::hf_checkpoint::open(d.path()); }, qls::error_code::io,
                     {d.file("model.safetensors.index.json"), "model-00002-of-00002.safetensors", "missing"});
    }

    void sharded_tensor_not_in_shard() {
        QLS_REQUIRE_MODEL();
        scratch_dir d;
        json index = write_sharded(d);
        index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors"; // it lives in shard 2
        write_file(d.file("model.safetensors.index.json"), index.dump());
        EXPECT_ERROR([&] { qls::hf_checkpoint::open(d.path()); }, qls::error_code::format,
                     {d.file("model.safetensors.index.json"), "model.norm.weight", "model-00001-of-00002.safetensors",
                      "does not contain"});

        write_file(d.file("model.safetensors.index.json"), "{\"metadata\": {}}");
        EXPECT_ERROR([&] { qls::hf_checkpoint::open(d.path()); }, qls::error_code::format,
                     {d.file("model.safetensors.index.json"), "weight_map"});
        write_file(d.file("model.safetensors.index.json"), "{\"weight_map\": {\"a\": ");
        EXPECT_ERROR([&] { qls::hf_checkpoint::open(d.path()); }, qls::error_code::format,
                     {d.file("model.safetensors.index.json"), "not valid JSON"});
    }

    void shape_disagrees_with_config() {
        QLS_REQUIRE_MODEL();
        // config.json claims hidden_size 32 (heads 8 -> head_dim 4) for 64-wide weights.
        {
            scratch_dir d;
            d.copy("model.safetensors");
            json cfg = stories_config();
            cfg["hidden_size"] = 32;
            d.write_config(cfg);
            qls::hf_checkpoint ck = qls::hf_checkpoint::open(d.path());
            const qls::model_config& c = ck.config();
            EXPECT_ERROR(
                [&] {
                    ck.read_f32("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
                },
                qls::error_code::shape_mismatch,
                {d.file("model.safetensors"), "model.embed_tokens.weight", "[512, 64]", "[512, 32]",
                 d.file("config.json")});
            QVERIFY(last_error.find("config.json disagrees with the weights") != std::string::npos);
        }
        // A wrong-shaped tensor in the weights, config.json untouched.
        {
            scratch_dir d;
            d.copy("config.json");
            auto all = stories_tensors();
            for (auto& [n, t] : all)
                if (n == "model.layers.3.mlp.up_proj.weight") t = qls::tensor(qls::dtype::f32, {170, 64});
            qls::safetensors_save(d.file("model.safetensors"), all);
            qls::hf_checkpoint ck = qls::hf_checkpoint::open(d.path());
            const qls::model_config& c = ck.config();
            EXPECT_ERROR(
                [&] {
                    ck.read_f32("model.layers.3.mlp.up_proj.weight", {c.intermediate_size, c.hidden_size});
                },
                qls::error_code::shape_mismatch,
                {d.file("model.safetensors"), "model.layers.3.mlp.up_proj.weight", "[170, 64]", "[172, 64]"});
        }
    }

    void tokenizer_checks() {
        QLS_REQUIRE_MODEL();
        // Missing tokenizer.model.
        {
            scratch_dir d;
            d.copy("config.json");
            d.copy("model.safetensors");
            qls::hf_checkpoint ck = qls::hf_checkpoint::open(d.path());
            EXPECT_ERROR([&] { qls::load_tokenizer_for(ck); }, qls::error_code::io,
                         {d.file("tokenizer.model"), "not found"});
            QVERIFY(last_error.find("copy tokenizer.model from the original model repository") != std::string::npos);
            QVERIFY(last_error.find("SentencePiece") != std::string::npos);
        }
        // Tokenizer larger than the embedding: config vocab_size 256 with the 512-piece tokenizer.
        auto with_vocab = [](scratch_dir& d, int vocab) {
            d.copy("model.safetensors");
            d.copy("tokenizer.model");
            json cfg = stories_config();
            cfg["vocab_size"] = vocab;
            d.write_config(cfg);
            return qls::hf_checkpoint::open(d.path());
        };
        {
            scratch_dir d;
            qls::hf_checkpoint ck = with_vocab(d, 256);
            EXPECT_ERROR([&] { qls::load_tokenizer_for(ck); }, qls::error_code::config,
                         {d.file("tokenizer.model"), d.file("config.json"), "512", "256", "past the"});
        }
        // A padded embedding (up to 128 extra rows) is accepted; a larger gap is not.
        {
            scratch_dir d;
            qls::hf_checkpoint ck = with_vocab(d, 512 + 128);
            QCOMPARE(qls::load_tokenizer_for(ck).vocab_size(), 512);
        }
        {
            scratch_dir d;
            qls::hf_checkpoint ck = with_vocab(d, 512 + 129);
            EXPECT_ERROR([&] { qls::load_tokenizer_for(ck); }, qls::error_code::config,
                         {d.file("tokenizer.model"), d.file("config.json"), "512", "641", "129 more"});
        }
        // Random bytes in tokenizer.model.
        {
            scratch_dir d;
            d.copy("config.json");
            d.copy("model.safetensors");
            std::string junk;
            uint32_t x = 12345;
            for (int i = 0; i < 7522; ++i) {
                x = x * 1664525u + 1013904223u;
                junk.push_back(char(x >> 24));
            }
            write_file(d.file("tokenizer.model"), junk);
            qls::hf_checkpoint ck = qls::hf_checkpoint::open(d.path());
            EXPECT_ERROR([&] { qls::load_tokenizer_for(ck); }, qls::error_code::format,
                         {d.file("tokenizer.model"), "not a SentencePiece model"});
        }
    }
};

QTEST_APPLESS_MAIN(tst_checkpoint)
#include "tst_checkpoint.moc"
