// tst_hardening_inputs — regression tests for untrusted-file parsing: deep JSON, number overflow, user regexes, size overflow, oversized allocations, truncated integers, bad weights.
#include "testutil.h"

#include "qls/dataset.h"
#include "qls/dtype.h"
#include "qls/error.h"
#include "qls/generate.h"
#include "qls/hf_checkpoint.h"
#include "qls/json_input.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/model_config.h"
#include "qls/peft.h"
#include "qls/run_plan.h" // defines: plan_settings_for
#include "qls/run_catalog.h"
#include "qls/safetensors.h"
#include "qls/telemetry.h"
#include "qls/tokenizer.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

using namespace qls;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

void write_file(const std::string& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << bytes;
}

std::string read_file(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// "[[[...0...]]]" nested `depth` deep, built as text (never as a json value).
std::string deep_array(size_t depth) { return std::string(depth, '[') + "0" + std::string(depth, ']'); }
std::string deep_object(size_t depth) {
    std::string s;
    for (size_t i = 0; i < depth; ++i) s += "{\"a\":";
    s += "1";
    s += std::string(depth, '}');
    return s;
}

#define EXPECT_ERROR(fn, code, ...)                                                   \
    do {                                                                              \
        const std::string why_ = testutil::expect_error(fn, code, __VA_ARGS__, 2000); \
        QVERIFY2(why_.empty(), why_.c_str());                                         \
    } while (0)

// A safetensors file whose header is the given bytes (no tensors data).
void write_safetensors_header(const std::string& path, const std::string& header) {
    std::string bytes(8, '\0');
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((n >> (8 * i)) & 0xff);
    write_file(path, bytes + header);
}

json model_config_json() { return json::parse(read_file(testutil::model_dir() + "/config.json")); }

const std::string k_run_ok = R"("model": "m", "data": {"train": "t.txt"})";

std::string run_error(const std::string& text) {
    try {
        (void)parse_train_config(text, "/x/run.json", "/x");
    } catch (const error& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("NOT A QLS ERROR: ") + e.what();
    }
    return "NO ERROR";
}

// A copy of the test model directory (config.json, tokenizer.model) with model.safetensors rewritten by `edit`.
std::string model_copy(const QTemporaryDir& tmp,
                       const std::function<void(std::vector<std::pair<std::string, tensor>>&)>& edit) {
    const std::string dir = tmp.path().toStdString() + "/model";
    fs::create_directories(dir);
    for (const char* f : {"config.json", "tokenizer.model"})
        fs::copy_file(testutil::model_dir() + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
    safetensors_file src = safetensors_file::open(testutil::model_dir() + "/model.safetensors");
    std::vector<std::pair<std::string, tensor>> ts;
    for (const safetensors_entry& e : src.entries()) ts.emplace_back(e.name, src.read(e.name));
    edit(ts);
    safetensors_save(dir + "/model.safetensors", ts);
    return dir;
}

} // namespace

class tst_hardening_inputs : public QObject {
    Q_OBJECT

private slots:
    // ---- 1 & 5: one JSON entry point with a depth limit; every nlohmann failure a qls::error naming the file ----

    void jsonInputLimitsDepthAndSize() {
        for (const std::string& deep : {deep_array(100000), deep_object(100000)}) {
            const json_parse_result r = try_parse_json(deep);
            QVERIFY(!r.ok);
            QVERIFY2(r.problem.find("nested deeper than 64") != std::string::npos, r.problem.c_str());
        }
        QVERIFY(try_parse_json(deep_array(64)).ok);
        QVERIFY(!try_parse_json(deep_array(65)).ok);
        json_limits small;
        small.max_bytes = 10;
        QVERIFY(!try_parse_json("[1,2,3,4,5,6]", small).ok);
        EXPECT_ERROR([] { (void)parse_json_input(deep_array(100000), "/d/doc.json", "fix it"); }, error_code::format,
                     {"/d/doc.json", "not valid JSON", "nested deeper"});
        // Number overflow (out_of_range in nlohmann) and a NUL before junk are parse failures, not escapes.
        EXPECT_ERROR([] { (void)parse_json_input("{\"x\": 1e999}", "/d/n.json", "fix it"); }, error_code::format,
                     {"/d/n.json", "not valid JSON", "1e999"});
        EXPECT_ERROR([] { (void)parse_json_input(std::string("{}\0junk", 7), "/d/z.json", "fix it"); },
                     error_code::format, {"/d/z.json", "NUL"});
    }

    void jsonShownIsBounded() {
        json v = 1;
        for (int i = 0; i < 5000; ++i) v = json::array({std::move(v)});
        const std::string s = json_shown(v);
        QVERIFY2(s.size() <= 60, s.c_str());
        json wide = json::array();
        for (int i = 0; i < 100000; ++i) wide.push_back(std::string(100, 'x'));
        QVERIFY(json_shown(wide, 80).size() <= 80);
        QCOMPARE(QString::fromStdString(json_shown(json{{"a", 1}})), QString(R"({"a":1})"));
        QCOMPARE(QString::fromStdString(json_shown(json("\xff\xfe"))), QString("\"\xef\xbf\xbd\xef\xbf\xbd\""));
    }

    void deepJsonInEveryDocumentIsAnErrorNamingTheFile() {
        QLS_REQUIRE_MODEL();
        // config.json: a field's value nested 100,000 deep (it was printed into the message, recursively).
        const std::string cfg_text = R"({"model_type": "llama", "hidden_size": )" + deep_array(100000) + "}";
        EXPECT_ERROR([&] { (void)parse_model_config(cfg_text, "/m/config.json"); }, error_code::format,
                     {"/m/config.json", "nested deeper"});
        // config.json: a shallow but wide wrong value is shown shortened.
        json wide = model_config_json();
        wide["hidden_size"] = json::array();
        for (int i = 0; i < 10000; ++i) wide["hidden_size"].push_back(i);
        EXPECT_ERROR([&] { (void)parse_model_config(wide.dump(), "/m/config.json"); }, error_code::config,
                     {"/m/config.json", "'hidden_size'", "..."});

        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString();
        // safetensors header
        const std::string st = dir + "/deep.safetensors";
        write_safetensors_header(st, R"({"w": {"dtype": "F32", "shape": )" + deep_array(100000) +
                                         R"(, "data_offsets": [0, 0]}})");
        EXPECT_ERROR([&] { (void)safetensors_file::open(st); }, error_code::format, {st, "nested deeper"});
        // shard index
        const std::string mdir = dir + "/sharded";
        fs::create_directories(mdir);
        fs::copy_file(testutil::model_dir() + "/config.json", mdir + "/config.json");
        write_file(mdir + "/model.safetensors.index.json", R"({"weight_map": )" + deep_object(100000) + "}");
        EXPECT_ERROR([&] { (void)hf_checkpoint::open(mdir); }, error_code::format,
                     {mdir + "/model.safetensors.index.json", "nested deeper"});
        // run.json
        const std::string run = run_error("{" + k_run_ok + R"(, "training": {"seq_len": )" + deep_array(100000) + "}}");
        QVERIFY2(run.find("/x/run.json") != std::string::npos && run.find("nested deeper") != std::string::npos,
                 run.c_str());
        // adapter_config.json
        const std::string adir = dir + "/adapter";
        fs::create_directories(adir);
        write_file(adir + "/adapter_config.json", R"({"peft_type": "LORA", "r": )" + deep_array(100000) + "}");
        const model_config m = load_model_config(testutil::model_dir() + "/config.json");
        EXPECT_ERROR([&] { (void)load_peft(adir, m); }, error_code::format,
                     {adir + "/adapter_config.json", "nested deeper"});
        // a dataset line: skipped as malformed, naming the line
        const std::string data = dir + "/deep.jsonl";
        write_file(data, "{\"text\": \"ok\"}\n{\"text\": " + deep_array(100000) + "}\n{\"text\": \"fine\"}\n");
        const record_set rs = read_records(data, {});
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.skipped, size_t(1));
        QVERIFY2(rs.warnings.size() == 1 && rs.warnings[0].find(data + ":2:") != std::string::npos &&
                     rs.warnings[0].find("nested deeper") != std::string::npos,
                 rs.warnings.empty() ? "no warning" : rs.warnings[0].c_str());
    }

    void numberOverflowNamesTheFile() {
        QLS_REQUIRE_MODEL();
        json c = model_config_json();
        std::string text = c.dump();
        text.insert(1, "\"rms_norm_eps\": 1e999, ");
        EXPECT_ERROR([&] { (void)parse_model_config(text, "/m/config.json"); }, error_code::format,
                     {"/m/config.json", "not valid JSON", "1e999"});
        const std::string run = run_error("{" + k_run_ok + R"(, "optimizer": {"lr": 1e999}})");
        QVERIFY2(run.find("/x/run.json") != std::string::npos && run.find("1e999") != std::string::npos, run.c_str());
        QVERIFY2(run.find("NOT A QLS ERROR") == std::string::npos, run.c_str());

        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString();
        const std::string adir = dir + "/adapter";
        fs::create_directories(adir);
        write_file(adir + "/adapter_config.json", R"({"peft_type": "LORA", "lora_alpha": -1e999})");
        const model_config m = load_model_config(testutil::model_dir() + "/config.json");
        EXPECT_ERROR([&] { (void)load_peft(adir, m); }, error_code::format, {adir + "/adapter_config.json", "1e999"});
        const std::string st = dir + "/n.safetensors";
        write_safetensors_header(st, R"({"w": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 0]}})");
        EXPECT_ERROR([&] { (void)safetensors_file::open(st); }, error_code::format, {st, "1e999"});

        // A dataset line with a number out of range: skipped as malformed with skip, an error naming it with fail.
        const std::string data = dir + "/num.jsonl";
        write_file(data, "{\"text\": \"one\"}\n{\"text\": \"two\", \"score\": 1e999}\n{\"text\": \"three\"}\n");
        const record_set rs = read_records(data, {});
        QCOMPARE(rs.records.size(), size_t(2));
        QCOMPARE(rs.skipped, size_t(1));
        QVERIFY2(rs.warnings.size() == 1 && rs.warnings[0].find(data + ":2:") != std::string::npos &&
                     rs.warnings[0].find("1e999") != std::string::npos,
                 rs.warnings.empty() ? "no warning" : rs.warnings[0].c_str());
        data_options strict;
        strict.on_bad_record = bad_record_policy::fail;
        try {
            (void)read_records(data, strict);
            QFAIL("expected an error");
        } catch (const error& e) {
            QVERIFY2(std::string(e.what()).find(data + ":2") != std::string::npos, e.what());
        }
    }

    // ---- 2: PEFT's target_modules regex runs on PCRE2 with limits ----

    void targetModulesRegexHasLimits() {
        QLS_REQUIRE_MODEL();
        const model_config m = load_model_config(testutil::model_dir() + "/config.json");
        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString() + "/adapter";
        lora_config lc;
        lc.rank = 4;
        lc.alpha = 8;
        lc.targets = {lora_target::q, lora_target::v};
        export_peft(dir, lora_init(m, lc, 3), m, "stories260K");
        const std::string cfg_path = dir + "/adapter_config.json";
        const json base = json::parse(read_file(cfg_path));
        auto with_targets = [&](const json& tm) {
            json j = base;
            j["target_modules"] = tm;
            write_file(cfg_path, j.dump());
        };

        // Ordinary patterns behave as before (Python re.fullmatch).
        with_targets(R"(.*\.(q_proj|v_proj))");
        QCOMPARE(load_peft(dir, m).config.targets, (std::vector<lora_target>{lora_target::q, lora_target::v}));
        with_targets(R"(model\.layers\.\d+\.self_attn\.[qv]_proj)");
        QCOMPARE(load_peft(dir, m).config.targets, (std::vector<lora_target>{lora_target::q, lora_target::v}));
        with_targets("q_proj"); // fullmatch: no module is named just q_proj
        EXPECT_ERROR([&] { (void)load_peft(dir, m); }, error_code::config, {cfg_path, "matches none"});

        // Catastrophic backtracking: stopped by the match limit, quickly, naming the file and the field.
        const auto t0 = std::chrono::steady_clock::now();
        with_targets(R"((.|.|.)*(.|.|.)*\d\d_proj)");
        EXPECT_ERROR([&] { (void)load_peft(dir, m); }, error_code::config, {cfg_path, "target_modules", "limit"});
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        QVERIFY2(secs < 20, qPrintable(QString("took %1 s").arg(secs)));
        // Deeply parenthesised and very long patterns: refused, no stack overflow.
        with_targets(std::string(100000, '(') + "a" + std::string(100000, ')'));
        EXPECT_ERROR([&] { (void)load_peft(dir, m); }, error_code::config, {cfg_path, "target_modules", "limit"});
        with_targets(std::string(200, '(') + "a" + std::string(200, ')'));
        EXPECT_ERROR([&] { (void)load_peft(dir, m); }, error_code::unsupported, {cfg_path, "target_modules"});
        with_targets(std::string(5000, 'a') + "|.*q_proj");
        EXPECT_ERROR([&] { (void)load_peft(dir, m); }, error_code::config, {cfg_path, "target_modules", "limit"});
        // exclude_modules goes through the same engine.
        json j = base;
        j["exclude_modules"] = "(";
        write_file(cfg_path, j.dump());
        EXPECT_ERROR([&] { (void)load_peft(dir, m); }, error_code::unsupported, {cfg_path, "exclude_modules"});
    }

    // ---- 3 & 4: sizes derived from config.json: bounded dimensions, checked 64-bit arithmetic ----

    void configSizesAreBoundedAndChecked() {
        QLS_REQUIRE_MODEL();
        auto refused = [](std::function<void(json&)> edit, const std::string& field) {
            json c = model_config_json();
            edit(c);
            return testutil::expect_error([&] { (void)parse_model_config(c.dump(), "/m/config.json"); },
                                          error_code::config, {"/m/config.json", field}, 2000);
        };
        std::string why;
        // heads × head_dim would wrap 32 bits (65536 × 65536) and still pass a shape check.
        why = refused(
            [](json& c) {
                c["num_attention_heads"] = 4096;
                c["num_key_value_heads"] = 4096;
                c["head_dim"] = 4096;
            },
            "head_dim");
        QVERIFY2(why.empty(), why.c_str());
        why = refused([](json& c) { c["head_dim"] = 65536; }, "'head_dim'");
        QVERIFY2(why.empty(), why.c_str());
        why = refused([](json& c) { c["num_attention_heads"] = 65536; }, "'num_attention_heads'");
        QVERIFY2(why.empty(), why.c_str());
        why = refused([](json& c) { c["num_hidden_layers"] = 2147483647; }, "'num_hidden_layers'");
        QVERIFY2(why.empty(), why.c_str());
        why = refused([](json& c) { c["hidden_size"] = 1 << 30; }, "'hidden_size'");
        QVERIFY2(why.empty(), why.c_str());
        why = refused([](json& c) { c["intermediate_size"] = 2000000000; }, "'intermediate_size'");
        QVERIFY2(why.empty(), why.c_str());
        why = refused([](json& c) { c["vocab_size"] = 2000000000; }, "'vocab_size'");
        QVERIFY2(why.empty(), why.c_str());
        why = refused([](json& c) { c["max_position_embeddings"] = 2000000000; }, "'max_position_embeddings'");
        QVERIFY2(why.empty(), why.c_str());

        // The largest accepted dimensions still give a positive parameter count.
        json big = model_config_json();
        big["hidden_size"] = 1 << 17;
        big["intermediate_size"] = 1 << 20;
        big["num_hidden_layers"] = 1024;
        big["num_attention_heads"] = 256;
        big["num_key_value_heads"] = 256;
        big["head_dim"] = 4096;
        big["vocab_size"] = 1 << 23;
        const model_config mc = parse_model_config(big.dump(), "/m/config.json");
        QVERIFY(mc.parameter_count() > 0);

        // A config built in code with sizes whose count overflows: an error, never a negative number.
        model_config wild = mc;
        wild.hidden_size = std::numeric_limits<int>::max();
        wild.intermediate_size = std::numeric_limits<int>::max();
        wild.num_layers = std::numeric_limits<int>::max();
        EXPECT_ERROR([&] { (void)wild.parameter_count(); }, error_code::config, {"parameter count", "overflows"});
    }

    void generationSizesTheCacheByWhatItNeeds() {
        QLS_REQUIRE_MODEL();
        const hf_checkpoint ck = hf_checkpoint::open(testutil::model_dir());
        llama_model model = llama_model::load(ck);
        const tokenizer tok = load_tokenizer_for(ck);
        // A config claiming 2^26 positions: the old cache (all positions) would be ~hundreds of GB here.
        model.config.max_position_embeddings = 1 << 26;
        generate_options o;
        o.prompt = "Once upon a time";
        o.max_new_tokens = 5;
        o.sampling.temperature = 0;
        const generate_result r = generate(model, tok, o, nullptr);
        QVERIFY(r.new_ids.size() <= 5);
        // The decoder caps what it is asked by the model's context.
        model.config.max_position_embeddings = 16;
        llama_decoder dec(model, 1 << 30);
        QCOMPARE(dec.capacity(), 16);
    }

    void pageSizeIsBounded() {
        const std::string e = run_error("{" + k_run_ok + R"(, "device": {"page_size": 1099511627776}})"); // 1 TiB
        QVERIFY2(e.find("device.page_size") != std::string::npos && e.find("/x/run.json") != std::string::npos,
                 e.c_str());
        train_config c;
        c.model = "m";
        c.train_file = "t.txt";
        c.page_size = size_t(1) << 30;
        EXPECT_ERROR([&] { validate_train_config(c); }, error_code::config, {"device.page_size", "64 MiB"});
        c.page_size = size_t(64) << 20;
        validate_train_config(c);
    }

    // ---- 6: run.json integers read in 64 bits and range-checked, never truncated ----

    void runJsonIntegersAreNotTruncated() {
        struct row {
            std::string section, key, value;
        };
        const std::vector<row> rows = {
            {"training", "seq_len", "4294967312"}, // was 16
            {"training", "seq_len", "-5"},
            {"training", "micro_batch", "-1"},
            {"training", "micro_batch", "4294967297"},
            {"training", "grad_accum", "0"},
            {"training", "eval_every", "-3"},
            {"training", "eval_batches", "-1"},
            {"training", "checkpoint_every", "-1"},
            {"training", "keep_checkpoints", "4294967296"},
            {"training", "max_steps", "-1"},
            {"training", "seed", "-1"},
            {"lora", "rank", "4294967300"},
            {"lora", "rank", "-8"},
            {"optimizer", "warmup_steps", "-2"},
            {"optimizer", "warmup_steps", "4294967296"},
            {"device", "gpu", "-1"},
            {"device", "gpu", "4294967296"},
            {"device", "page_pool_bytes", "-1"},
            {"device", "page_size", "-1024"},
            {"device", "page_size", "18446744073709551615"},
            {"device", "checkpoint_offload", "\"sometimes\""},
            {"device", "checkpoint_offload", "1"},
        };
        for (const row& r : rows) {
            const std::string e = run_error("{" + k_run_ok + ", \"" + r.section + "\": {\"" + r.key + "\": " + r.value +
                                            "}}");
            const std::string field = r.section + "." + r.key;
            QVERIFY2(e.find(field) != std::string::npos && e.find("/x/run.json") != std::string::npos,
                     (field + " = " + r.value + ": " + e).c_str());
        }
        // Values in range survive a round trip unchanged, the full 64-bit seed included.
        const train_config c = parse_train_config(
            "{" + k_run_ok +
                R"(, "training": {"seq_len": 4096, "max_steps": 5000000000, "seed": 18446744073709551615},
                     "device": {"page_pool_bytes": 17179869184, "page_size": 1048576}, "optimizer": {"warmup_steps": -1}})",
            "/x/run.json", "/x");
        QCOMPARE(c.seq_len, 4096);
        QCOMPARE(c.max_steps, int64_t(5000000000));
        QCOMPARE(c.seed, std::numeric_limits<uint64_t>::max());
        QCOMPARE(c.page_pool_bytes, uint64_t(17179869184));
        QCOMPARE(c.page_size, size_t(1048576));
        QCOMPARE(c.warmup_steps, -1);
        const train_config back = parse_train_config(train_config_to_json(c), "/x/run.json", "/x");
        QCOMPARE(back.seed, c.seed);
        QCOMPARE(back.max_steps, c.max_steps);
        // checkpoint offload: auto by default, on/off kept, "on" without checkpoints refused naming both fields
        QCOMPARE(c.checkpoint_offload, std::string("auto"));
        const train_config on = parse_train_config("{" + k_run_ok + R"(, "device": {"checkpoint_offload": "on"}})",
                                                   "/x/run.json", "/x");
        QCOMPARE(parse_train_config(train_config_to_json(on), "/x/run.json", "/x").checkpoint_offload, std::string("on"));
        QCOMPARE(plan_settings_for(on, compute_device{}).offload, checkpoint_offload::on);
        const std::string e = run_error("{" + k_run_ok + R"(, "device": {"checkpoint_offload": "on"},
                                          "training": {"gradient_checkpointing": false}})");
        QVERIFY2(e.find("device.checkpoint_offload") != std::string::npos &&
                     e.find("training.gradient_checkpointing") != std::string::npos,
                 e.c_str());
    }

    // ---- safetensors: trailing junk, integer weights, non-finite weights ----

    void safetensorsHeaderWithNulAndJunkIsRefused() {
        QTemporaryDir tmp;
        const std::string p = tmp.path().toStdString() + "/junk.safetensors";
        write_safetensors_header(p, std::string(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})") +
                                        std::string(1, '\0') + "junk after the header");
        EXPECT_ERROR([&] { (void)safetensors_file::open(p); }, error_code::format, {p, "NUL"});
        // Trailing spaces (the reference writer's padding) stay valid.
        write_safetensors_header(p, R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})" +
                                        std::string(6, ' '));
        QCOMPARE(safetensors_file::open(p).entries().size(), size_t(1));
    }

    void integerAndNonFiniteWeightsAreRefused() {
        QLS_REQUIRE_MODEL();
        QTemporaryDir tmp;
        const std::string norm = "model.norm.weight";
        {
            const std::string dir = model_copy(tmp, [&](std::vector<std::pair<std::string, tensor>>& ts) {
                for (auto& [name, t] : ts)
                    if (name == norm) t = tensor(dtype::i32, t.shape());
            });
            EXPECT_ERROR([&] { (void)llama_model::load(dir); }, error_code::format, {"'" + norm + "'", "I32"});
        }
        for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
            const std::string dir = model_copy(tmp, [&](std::vector<std::pair<std::string, tensor>>& ts) {
                for (auto& [name, t] : ts)
                    if (name == norm) {
                        tensor f(dtype::f32, t.shape());
                        for (int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = 1.0f;
                        f.f32()[3] = bad;
                        t = std::move(f);
                    }
            });
            EXPECT_ERROR([&] { (void)llama_model::load(dir); }, error_code::format,
                         {"'" + norm + "'", std::isnan(bad) ? "NaN" : "infinite"});
        }
        // Direct: read_weight_f32 refuses integer dtypes; read_f32 (a plain conversion) still converts them.
        const std::string p = tmp.path().toStdString() + "/ints.safetensors";
        tensor i8(dtype::u8, {4});
        safetensors_save(p, {{"ids", i8}});
        const safetensors_file f = safetensors_file::open(p);
        EXPECT_ERROR([&] { (void)f.read_weight_f32("ids"); }, error_code::format, {p, "'ids'", "U8"});
        QCOMPARE(f.read_f32("ids").numel(), int64_t(4));
    }

    // Found by fuzz_sentencepiece: libsentencepiece's trie builder throws its own exception type from inside Load for
    // a piece that starts with a NUL byte; the loader turns it into a qls::error naming the file.
    void sentencePieceModelWithNulPieceIsAnError() {
        QTemporaryDir tmp;
        // ModelProto (sentencepiece_model.proto): repeated SentencePiece pieces = 1 {piece = 1, score = 2, type = 3}
        auto piece = [](const std::string& text, int type) {
            std::string body = "\x0a" + std::string(1, char(text.size())) + text;
            body += std::string("\x15\0\0\0\0", 5) + "\x18" + std::string(1, char(type));
            return "\x0a" + std::string(1, char(body.size())) + body;
        };
        const std::string model = piece("<unk>", 2) + piece("<s>", 3) + piece("</s>", 3) + piece("a", 1) +
                                  piece(std::string("\0b", 2), 1);
        const std::string p = tmp.path().toStdString() + "/tokenizer.model";
        write_file(p, model);
        EXPECT_ERROR([&] { (void)tokenizer::load(p); }, error_code::format, {p, "SentencePiece", "zero-length key"});
        // the same model without the NUL piece loads
        write_file(p, piece("<unk>", 2) + piece("<s>", 3) + piece("</s>", 3) + piece("a", 1) + piece("b", 1));
        QCOMPARE(tokenizer::load(p).vocab_size(), 5);
    }

    // Found by fuzz_metrics_line: a metrics.jsonl number out of its field's integer range (4.4e31 bytes, a negative
    // byte count, a fraction of a step) was converted anyway, which is undefined for a float (the sanitizer tree
    // aborts on it). It is a damaged line now, which read_metrics skips.
    void metricsLineIntegersOutOfRangeAreErrors() {
        const std::string ok = step_stats_to_json(step_stats{});
        QCOMPARE(step_stats_to_json(step_stats_from_json(ok)), ok);
        // offloaded checkpoints' traffic: written only by runs that offload, read back exactly; other lines read 0
        step_stats offloading;
        offloading.offload_h2d_bytes = 3;
        offloading.offload_d2h_bytes = 5;
        const std::string with = step_stats_to_json(offloading);
        QCOMPARE(step_stats_to_json(step_stats_from_json(with)), with);
        QCOMPARE(step_stats_from_json(with).offload_d2h_bytes, uint64_t(5));
        QVERIFY(ok.find("offload") == std::string::npos);
        for (const char* bad : {R"({"arena_bytes": 4.4e31})", R"({"device_used_bytes": -5})", R"({"step": 1.5})",
                                R"({"step": 9223372036854775808})", R"({"total_pages": 1e300})"}) {
            const std::string field = json::parse(bad).begin().key();
            EXPECT_ERROR([&] { (void)step_stats_from_json(bad); }, error_code::format, {"'" + field + "'", "range"});
        }
        QCOMPARE(step_stats_from_json(R"({"step": 7, "device_used_bytes": 18446744073709551615})").device_used_bytes,
                 UINT64_MAX);
        // the Runs page reads the last line's step the same way: out of range reads as 0, never converted
        QTemporaryDir tmp;
        const std::string run = tmp.path().toStdString() + "/r";
        fs::create_directories(run);
        write_file(run + "/config.json", R"({"model": "m"})");
        write_file(run + "/metrics.jsonl", "{\"step\": 1e300, \"total_steps\": -4.5e30, \"loss\": 1.5}\n");
        const run_info r = read_run(run);
        QCOMPARE(r.last_step, int64_t(0));
        QCOMPARE(r.total_steps, int64_t(0));
        QCOMPARE(r.last_loss.value_or(0.0), 1.5);
        QVERIFY(read_metrics(run).empty());
    }

    // A checkpoint folder is "step-N", N 1 to 19 digits within int64's range, for resume and the run list alike:
    // a signed or spaced number was a checkpoint to resume from but not in the list, and a 20-digit one wrapped
    // around in the list.
    void checkpointFolderNamesReadAlike() {
        QTemporaryDir tmp;
        const std::string run = tmp.path().toStdString() + "/r";
        for (const char* name : {"step-3", "step-007", "step-+9", "step- 8", "step-99999999999999999999",
                                 "step-9223372036854775808", "step-", "step-x", "stop-12"}) {
            fs::create_directories(run + "/checkpoints/" + name);
            write_file(run + "/checkpoints/" + name + "/trainer_state.json", "{}");
        }
        write_file(run + "/config.json", R"({"model": "m"})");
        QCOMPARE(read_run(run).checkpoint_steps, (std::vector<int64_t>{3, 7}));
        QCOMPARE(latest_checkpoint(run), (fs::path(run) / "checkpoints" / "step-007").string());
        fs::create_directories(run + "/checkpoints/step-9223372036854775807");
        write_file(run + "/checkpoints/step-9223372036854775807/trainer_state.json", "{}");
        QCOMPARE(read_run(run).checkpoint_steps.back(), std::numeric_limits<int64_t>::max());
        QCOMPARE(latest_checkpoint(run), (fs::path(run) / "checkpoints" / "step-9223372036854775807").string());
    }

    // Found by the sanitizer tree (tst_safetensors): an empty tensor's data pointer may be null, and memcpy must not
    // get a null pointer even for 0 bytes (undefined; UBSan aborts). Conversions of 0 elements touch nothing.
    void emptyTensorsConvertWithoutTouchingTheirPointers() {
        convert_to_f32(nullptr, nullptr, dtype::f32, 0);
        convert_from_f32(nullptr, nullptr, dtype::f32, 0);
        const tensor empty = tensor::from_f32({}, {0, 3});
        QCOMPARE(empty.clone().numel(), int64_t(0));
        QTemporaryDir tmp;
        const std::string p = tmp.path().toStdString() + "/empty.safetensors";
        safetensors_save(p, {{"empty", empty}});
        QCOMPARE(safetensors_file::open(p).read_f32("empty").numel(), int64_t(0));
    }
};

QTEST_GUILESS_MAIN(tst_hardening_inputs)
#include "tst_hardening_inputs.moc"
