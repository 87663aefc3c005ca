// PEFT adapters and merged export: PEFT's tensor names/shapes and adapter_config.json, round trips, merged logits, bad
// inputs, and a real-PEFT fixture (tests/data/peft, made by make_peft_fixture.py with peft 0.21.2 / transformers 5.24.0).
#include "testutil.h"

#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/peft.h"
#include "qls/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>

using namespace qls;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const std::string& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << bytes;
}

std::string fixture_dir() { return std::string(QLS_SOURCE_DIR) + "/tests/data/peft"; }

#define EXPECT_ERROR(fn, code, ...)                                             \
    do {                                                                        \
        const std::string why_ = testutil::expect_error(fn, code, __VA_ARGS__); \
        QVERIFY2(why_.empty(), why_.c_str());                                   \
    } while (0)

// An adapter with random non-zero A and B (lora_init leaves B = 0, which would make every comparison trivial).
lora_weights<float> random_adapter(const model_config& m, lora_config c, uint64_t seed, float b_bound = 0.05f) {
    lora_weights<float> w = lora_init(m, c, seed);
    std::mt19937_64 rng(seed * 7 + 1);
    std::uniform_real_distribution<float> u(-b_bound, b_bound);
    for (auto& layer : w.layers)
        for (auto& ad : layer)
            for (float& x : ad.b) x = u(rng);
    return w;
}

lora_config rank4_all() {
    lora_config c;
    c.rank = 4;
    c.alpha = 8.0f;
    c.dropout = 0.05f;
    return c;
}

std::vector<float> run_logits(const llama_model& m, const std::vector<int>& toks, int B, int T,
                              lora_weights<float>* lw) {
    llama_pass<float> pass(m.config, m.params, m.inv_freq, B, T, lw);
    pass.forward(toks.data(), nullptr);
    return pass.logits();
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
    return d;
}

void edit_json(const std::string& path, const std::function<void(json&)>& f) {
    json j = json::parse(read_file(path));
    f(j);
    write_file(path, j.dump(2));
}

// Rewrites a safetensors file after letting `f` edit its tensor list (read into memory first; the save is atomic).
void edit_tensors(const std::string& path, const std::function<void(std::vector<std::pair<std::string, tensor>>&)>& f) {
    std::vector<std::pair<std::string, tensor>> ts;
    {
        safetensors_file sf = safetensors_file::open(path);
        for (const safetensors_entry& e : sf.entries()) ts.emplace_back(e.name, sf.read(e.name));
    }
    f(ts);
    safetensors_save(path, ts, {{"format", "pt"}});
}

const std::vector<int> k_tokens = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 259, 300};

} // namespace

class TestPeft : public QObject {
    Q_OBJECT

    static const llama_model& real() {
        static llama_model m = llama_model::load(testutil::model_dir());
        return m;
    }
    static const model_config& cfg() { return real().config; }

private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    // The tensor list PEFT's docs give for a Llama LoRA adapter (checkpoint.md: "base_model.model." + module path +
    // ".lora_A.weight"/".lora_B.weight"; lora/layer.py: A [r, in], B [out, r]), written out for stories260K:
    // hidden 64, 8 heads x head_dim 8 = 64, 4 KV heads -> 32, intermediate 172, rank 4, 5 layers.
    void exportedTensorNamesAndShapesArePefts() {
        const std::vector<std::pair<std::string, shape_t>> per_layer = {
            {"self_attn.q_proj.lora_A.weight", {4, 64}}, {"self_attn.q_proj.lora_B.weight", {64, 4}},
            {"self_attn.k_proj.lora_A.weight", {4, 64}}, {"self_attn.k_proj.lora_B.weight", {32, 4}},
            {"self_attn.v_proj.lora_A.weight", {4, 64}}, {"self_attn.v_proj.lora_B.weight", {32, 4}},
            {"self_attn.o_proj.lora_A.weight", {4, 64}}, {"self_attn.o_proj.lora_B.weight", {64, 4}},
            {"mlp.gate_proj.lora_A.weight", {4, 64}},    {"mlp.gate_proj.lora_B.weight", {172, 4}},
            {"mlp.up_proj.lora_A.weight", {4, 64}},      {"mlp.up_proj.lora_B.weight", {172, 4}},
            {"mlp.down_proj.lora_A.weight", {4, 172}},   {"mlp.down_proj.lora_B.weight", {64, 4}},
        };
        std::map<std::string, shape_t> expected;
        for (int i = 0; i < 5; ++i)
            for (const auto& [suffix, shape] : per_layer)
                expected["base_model.model.model.layers." + std::to_string(i) + "." + suffix] = shape;
        QCOMPARE(expected.size(), size_t(70));

        QTemporaryDir tmp;
        const std::string out = tmp.path().toStdString() + "/adapter"; // export creates the folder
        export_peft(out, random_adapter(cfg(), rank4_all(), 3), cfg(), "stories260K");
        safetensors_file f = safetensors_file::open(out + "/adapter_model.safetensors");
        std::map<std::string, shape_t> got;
        for (const safetensors_entry& e : f.entries()) {
            QCOMPARE(QString(dtype_name(e.type)), QString("F32"));
            got[e.name] = e.shape;
        }
        QCOMPARE(got.size(), expected.size());
        for (const auto& [name, shape] : expected) {
            QVERIFY2(got.count(name), name.c_str());
            QVERIFY2(got[name] == shape, (name + ": " + shape_str(got[name]) + " vs " + shape_str(shape)).c_str());
        }
        QCOMPARE(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
        QCOMPARE(peft_tensor_name(3, lora_target::down, true),
                 std::string("base_model.model.model.layers.3.mlp.down_proj.lora_B.weight"));
    }

    // adapter_config.json: every key LoraConfig of PEFT 0.21.2 writes (its to_dict(), listed here by hand), values for
    // an export, and json.dumps(indent=2, sort_keys=True) layout.
    void adapterConfigKeysAndValues() {
        QTemporaryDir tmp;
        const std::string out = tmp.path().toStdString();
        export_peft(out, random_adapter(cfg(), rank4_all(), 3), cfg(), "../shared/models/stories260K");
        const std::string text = read_file(out + "/adapter_config.json");
        json j = json::parse(text);
        const std::vector<std::string> keys = {"alora_invocation_tokens",
                                               "alpha_pattern",
                                               "arrow_config",
                                               "auto_mapping",
                                               "base_model_name_or_path",
                                               "bias",
                                               "corda_config",
                                               "ensure_weight_tying",
                                               "eva_config",
                                               "exclude_modules",
                                               "fan_in_fan_out",
                                               "inference_mode",
                                               "init_lora_weights",
                                               "kasa_config",
                                               "layer_replication",
                                               "layers_pattern",
                                               "layers_to_transform",
                                               "loftq_config",
                                               "lora_alpha",
                                               "lora_bias",
                                               "lora_dropout",
                                               "lora_ga_config",
                                               "megatron_config",
                                               "megatron_core",
                                               "modules_to_save",
                                               "monteclora_config",
                                               "peft_type",
                                               "peft_version",
                                               "qalora_group_size",
                                               "r",
                                               "rank_pattern",
                                               "revision",
                                               "target_modules",
                                               "target_parameters",
                                               "task_type",
                                               "trainable_token_indices",
                                               "use_bdlora",
                                               "use_dora",
                                               "use_qalora",
                                               "use_rslora",
                                               "velora_config"};
        std::vector<std::string> got;
        for (auto it = j.begin(); it != j.end(); ++it) got.push_back(it.key());
        QCOMPARE(got, keys);
        QCOMPARE(j["peft_type"], json("LORA"));
        QCOMPARE(j["task_type"], json("CAUSAL_LM"));
        QVERIFY(j["r"].is_number_integer() && j["r"] == 4);
        QVERIFY(j["lora_alpha"].is_number_integer() && j["lora_alpha"] == 8);
        QVERIFY(j["lora_dropout"].is_number_float() && j["lora_dropout"].get<double>() == 0.05);
        QCOMPARE(j["target_modules"],
                 json({"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"}));
        QCOMPARE(j["use_rslora"], json(false));
        QCOMPARE(j["bias"], json("none"));
        QCOMPARE(j["base_model_name_or_path"], json("../shared/models/stories260K"));
        QCOMPARE(j["inference_mode"], json(true));
        QCOMPARE(j["fan_in_fan_out"], json(false));
        QCOMPARE(j["init_lora_weights"], json(true));
        QVERIFY(j["modules_to_save"].is_null() && j["revision"].is_null() && j["layers_to_transform"].is_null() &&
                j["layers_pattern"].is_null());
        QCOMPARE(j["rank_pattern"], json::object());
        QCOMPARE(j["alpha_pattern"], json::object());
        QCOMPARE(j["use_dora"], json(false));
        QCOMPARE(j["peft_version"], json("0.21.2"));
        // Python's json.dumps(indent=2) layout: two-space indent, "key": value, no trailing newline, "{}" for empty.
        QVERIFY(text.rfind("{\n  \"alora_invocation_tokens\": null,\n  \"alpha_pattern\": {},\n", 0) == 0);
        QVERIFY(text.find("  \"lora_dropout\": 0.05,\n") != std::string::npos);
        QVERIFY(text.find("  \"target_modules\": [\n    \"down_proj\",\n    \"gate_proj\",") != std::string::npos);
        QVERIFY(text.back() == '}');

        // A subset of targets and layers, rsLoRA and a fractional alpha.
        lora_config c = rank4_all();
        c.targets = {lora_target::v, lora_target::q};
        c.alpha = 6.5f;
        c.use_rslora = true;
        c.dropout = 0.0f;
        lora_weights<float> w = random_adapter(cfg(), c, 5);
        for (int l : {0, 2, 4}) w.layers[size_t(l)] = {};
        export_peft(out, w, cfg(), "base");
        json k = json::parse(read_file(out + "/adapter_config.json"));
        QCOMPARE(k["target_modules"], json({"q_proj", "v_proj"}));
        QCOMPARE(k["layers_to_transform"], json({1, 3}));
        QVERIFY(k["lora_alpha"].is_number_float() && k["lora_alpha"].get<double>() == 6.5);
        QVERIFY(k["lora_dropout"].is_number_float() && k["lora_dropout"].get<double>() == 0.0);
        QCOMPARE(k["use_rslora"], json(true));
        QCOMPARE(safetensors_file::open(out + "/adapter_model.safetensors").entries().size(), size_t(2 * 2 * 2));
    }

    void roundTripIsExact() {
        QTemporaryDir tmp;
        const std::string out = tmp.path().toStdString();
        for (int variant = 0; variant < 2; ++variant) {
            lora_config c = rank4_all();
            if (variant == 1) {
                c.targets = {lora_target::gate, lora_target::k, lora_target::down};
                c.rank = 3;
                c.alpha = 5.0f;
                c.use_rslora = true;
                c.dropout = 0.1f;
            }
            lora_weights<float> w = random_adapter(cfg(), c, 11 + uint64_t(variant));
            if (variant == 1) w.layers[2] = {};
            export_peft(out, w, cfg(), "stories260K");
            lora_weights<float> r = load_peft(out, cfg());
            QCOMPARE(r.config.rank, c.rank);
            QCOMPARE(r.config.alpha, c.alpha);
            QCOMPARE(r.config.dropout, c.dropout);
            QCOMPARE(r.config.use_rslora, c.use_rslora);
            std::set<lora_target> want(c.targets.begin(), c.targets.end()),
                have(r.config.targets.begin(), r.config.targets.end());
            QVERIFY(want == have);
            QCOMPARE(r.layers.size(), w.layers.size());
            for (int l = 0; l < cfg().num_layers; ++l)
                for (lora_target t : all_lora_targets()) {
                    const auto& a = w.at(l, t);
                    const auto& b = r.at(l, t);
                    QCOMPARE(b.enabled(), a.enabled());
                    if (!a.enabled()) continue;
                    QCOMPARE(b.in, a.in);
                    QCOMPARE(b.out, a.out);
                    QCOMPARE(b.rank, a.rank);
                    QVERIFY(b.a.size() == a.a.size() && std::memcmp(b.a.data(), a.a.data(), a.a.size() * 4) == 0);
                    QVERIFY(b.b.size() == a.b.size() && std::memcmp(b.b.data(), a.b.data(), a.b.size() * 4) == 0);
                    QCOMPARE(b.da.size(), a.a.size());
                    QCOMPARE(b.db.size(), a.b.size());
                }
        }
        // F16/BF16 adapters are accepted and converted.
        lora_weights<float> w = random_adapter(cfg(), rank4_all(), 21);
        export_peft(out, w, cfg(), "stories260K");
        edit_tensors(out + "/adapter_model.safetensors", [](auto& ts) {
            for (size_t i = 0; i < ts.size(); ++i) ts[i].second = ts[i].second.to(i % 2 ? dtype::bf16 : dtype::f16);
        });
        lora_weights<float> r = load_peft(out, cfg());
        safetensors_file sf = safetensors_file::open(out + "/adapter_model.safetensors");
        const tensor want = sf.read_f32(peft_tensor_name(1, lora_target::o, false));
        const auto& got = r.at(1, lora_target::o).a;
        QVERIFY(std::memcmp(got.data(), want.f32(), got.size() * 4) == 0);
        QVERIFY(max_abs_diff(got, w.at(1, lora_target::o).a) < 1e-2);
    }

    // Base + loaded adapter through llama_pass == the merged export loaded as a plain model (and != the base).
    // Also: the merged folder's files, dtypes and untouched tensors; sharding; stale-file cleanup.
    void mergedExportEqualsAdapter() {
        const llama_model& m = real();
        const hf_checkpoint base = hf_checkpoint::open(testutil::model_dir());
        QTemporaryDir tmp;
        const std::string adapter = tmp.path().toStdString() + "/adapter";
        const std::string merged = tmp.path().toStdString() + "/merged";
        lora_config c = rank4_all();
        c.targets = {lora_target::q, lora_target::v, lora_target::gate, lora_target::down};
        export_peft(adapter, random_adapter(m.config, c, 7), m.config, testutil::model_dir());
        lora_weights<float> lw = load_peft(adapter, m.config);

        const int T = int(k_tokens.size());
        const std::vector<float> base_logits = run_logits(m, k_tokens, 1, T, nullptr);
        const std::vector<float> adapted = run_logits(m, k_tokens, 1, T, &lw);
        export_merged(merged, base, m, lw);
        for (const char* f : {"config.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json"})
            QVERIFY2(read_file(merged + "/" + f) == read_file(testutil::model_dir() + "/" + f), f);
        QVERIFY(!fs::exists(merged + "/model.safetensors.index.json"));
        const llama_model mm = llama_model::load(merged);
        const std::vector<float> merged_logits = run_logits(mm, k_tokens, 1, T, nullptr);
        const double d = max_abs_diff(adapted, merged_logits), d_base = max_abs_diff(adapted, base_logits);
        QVERIFY2(d < 1e-4, qPrintable(QString("max |adapter - merged| logit %1").arg(d)));
        QVERIFY2(d_base > 1e-2, qPrintable(QString("the adapter barely changes the logits (%1)").arg(d_base)));

        // Same tensors and dtypes; non-targeted weights byte-identical; targeted ones changed.
        const safetensors_file src = safetensors_file::open(testutil::model_dir() + "/model.safetensors");
        const safetensors_file dst = safetensors_file::open(merged + "/model.safetensors");
        QCOMPARE(dst.entries().size(), src.entries().size());
        QCOMPARE(dst.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
        int changed = 0;
        for (const safetensors_entry& e : src.entries()) {
            const safetensors_entry* o = dst.find(e.name);
            QVERIFY2(o && o->type == e.type && o->shape == e.shape, e.name.c_str());
            const bool same = std::memcmp(src.bytes(e), dst.bytes(*o), e.end - e.begin) == 0;
            const bool targeted = e.name.find("q_proj") != std::string::npos ||
                                  e.name.find("v_proj") != std::string::npos ||
                                  e.name.find("gate_proj") != std::string::npos ||
                                  e.name.find("down_proj") != std::string::npos;
            QVERIFY2(same != targeted, e.name.c_str());
            changed += !same;
        }
        QCOMPARE(changed, 4 * 5);

        // Sharded: a 100 kB limit splits stories260K (~1 MB of F32) into shards; it loads to the same logits, and the
        // single file of the previous export is removed. Exporting unsharded again removes the shards and the index.
        export_merged(merged, base, m, lw, 100'000);
        QVERIFY(!fs::exists(merged + "/model.safetensors"));
        const json index = json::parse(read_file(merged + "/model.safetensors.index.json"));
        std::set<std::string> shard_files;
        for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it)
            shard_files.insert(it.value());
        QVERIFY2(shard_files.size() > 3, qPrintable(QString::number(shard_files.size())));
        for (size_t i = 1; i <= shard_files.size(); ++i) {
            char name[64];
            std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i, shard_files.size());
            QVERIFY2(shard_files.count(name), name);
        }
        QCOMPARE(index["weight_map"].size(), src.entries().size());
        uint64_t total = 0;
        for (const safetensors_entry& e : src.entries()) total += e.end - e.begin;
        QCOMPARE(index["metadata"]["total_size"].get<uint64_t>(), total);
        for (const std::string& s : shard_files) {
            uint64_t bytes = 0;
            const safetensors_file shard = safetensors_file::open(merged + "/" + s); // outlives the loop over entries
            for (const safetensors_entry& e : shard.entries()) bytes += e.end - e.begin;
            QVERIFY2(bytes <= 100'000 || shard.entries().size() == 1, s.c_str());
        }
        const llama_model ms = llama_model::load(merged);
        QVERIFY(max_abs_diff(run_logits(ms, k_tokens, 1, T, nullptr), merged_logits) == 0.0);
        export_merged(merged, base, m, lw);
        QVERIFY(fs::exists(merged + "/model.safetensors"));
        QVERIFY(!fs::exists(merged + "/model.safetensors.index.json"));
        for (const std::string& s : shard_files) QVERIFY2(!fs::exists(merged + "/" + s), s.c_str());

        // Adapters that do not fit the model are refused before anything is written, naming the output.
        {
            model_config other = m.config;
            other.hidden_size = 128;
            other.head_dim = 16;
            const std::string bad = tmp.path().toStdString() + "/bad";
            EXPECT_ERROR([&] { export_peft(bad, random_adapter(other, c, 1), m.config, "x"); },
                         error_code::shape_mismatch, {bad, "layer 0 q_proj"});
            QVERIFY(!fs::exists(bad));
            EXPECT_ERROR([&] { export_merged(bad, base, m, random_adapter(other, c, 1)); }, error_code::shape_mismatch,
                         {"merged export", "layer 0 q_proj"});
        }
        // The base's own folder is refused.
        EXPECT_ERROR([&] { export_merged(testutil::model_dir(), base, m, lw); }, error_code::invalid_argument,
                     {"base model's own folder"});
    }

    void badInputsNameTheFileAndTheFix() {
        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString();
        const std::string cfg_path = dir + "/adapter_config.json";
        const std::string st_path = dir + "/adapter_model.safetensors";
        auto fresh = [&] { export_peft(dir, random_adapter(cfg(), rank4_all(), 9), cfg(), "stories260K"); };
        auto load = [&] { (void)load_peft(dir, cfg()); };

        fresh();
        fs::remove(cfg_path);
        EXPECT_ERROR(load, error_code::io, {cfg_path, "not found"});
        EXPECT_ERROR([&] { (void)load_peft(dir + "/nope", cfg()); }, error_code::io, {dir + "/nope", "does not exist"});

        fresh();
        write_file(cfg_path, "{\"peft_type\": \"LORA\", ");
        EXPECT_ERROR(load, error_code::format, {cfg_path, "not valid JSON"});

        // r disagrees with the tensors
        fresh();
        edit_json(cfg_path, [](json& j) { j["r"] = 8; });
        EXPECT_ERROR(load, error_code::shape_mismatch, {st_path, "rank 4", "r = 8", "lora_A.weight"});

        // an adapter trained for hidden size 128 on a model with hidden size 64
        fresh();
        {
            model_config big = cfg();
            big.hidden_size = 128;
            big.head_dim = 16;
            export_peft(dir, random_adapter(big, rank4_all(), 9), big, "bigger");
        }
        EXPECT_ERROR(load, error_code::shape_mismatch,
                     {st_path, "base_model.model.model.layers.0.", "hidden size 128", "this model has hidden size 64"});
        // intermediate size
        {
            model_config wide = cfg();
            wide.intermediate_size = 344;
            lora_config c = rank4_all();
            c.targets = {lora_target::down};
            export_peft(dir, random_adapter(wide, c, 9), wide, "wide");
        }
        EXPECT_ERROR(load, error_code::shape_mismatch,
                     {"mlp.down_proj.lora_A.weight", "intermediate size 344", "this model has intermediate size 172"});
        // a deeper model
        {
            model_config deep = cfg();
            deep.num_layers = 7;
            export_peft(dir, random_adapter(deep, rank4_all(), 9), deep, "deeper");
        }
        EXPECT_ERROR(load, error_code::shape_mismatch, {st_path, "layer 5", "5 layers"});

        // unknown target modules
        fresh();
        edit_json(cfg_path, [](json& j) { j["target_modules"] = {"q_proj", "lm_head"}; });
        EXPECT_ERROR(load, error_code::unsupported, {cfg_path, "\"lm_head\"", "q_proj, k_proj"});
        edit_json(cfg_path, [](json& j) { j["target_modules"] = {"c_attn"}; });
        EXPECT_ERROR(load, error_code::unsupported, {cfg_path, "\"c_attn\""});

        // a missing tensor
        fresh();
        const std::string gone = "base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight";
        edit_tensors(st_path, [&](auto& ts) {
            ts.erase(std::remove_if(ts.begin(), ts.end(), [&](auto& p) { return p.first == gone; }), ts.end());
        });
        EXPECT_ERROR(load, error_code::format, {st_path, gone, "missing"});

        // an unexpected tensor (lm_head adapter), a tensor the config does not select, a DoRA magnitude
        fresh();
        edit_tensors(st_path, [](auto& ts) {
            ts.emplace_back("base_model.model.lm_head.lora_A.weight",
                            tensor::from_f32(std::vector<float>(4 * 64), {4, 64}));
        });
        EXPECT_ERROR(load, error_code::unsupported, {st_path, "base_model.model.lm_head.lora_A.weight"});
        fresh();
        edit_json(cfg_path, [](json& j) {
            j["target_modules"] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"};
        });
        EXPECT_ERROR(load, error_code::format, {st_path, "down_proj", cfg_path, "does not select"});
        fresh();
        edit_json(cfg_path, [](json& j) { j["use_dora"] = true; });
        EXPECT_ERROR(load, error_code::unsupported, {cfg_path, "use_dora", "DoRA"});

        // other PEFT types / tasks / features
        fresh();
        edit_json(cfg_path, [](json& j) { j["peft_type"] = "IA3"; });
        EXPECT_ERROR(load, error_code::unsupported, {cfg_path, "IA3", "LORA"});
        edit_json(cfg_path, [](json& j) { j.erase("peft_type"); });
        EXPECT_ERROR(load, error_code::config, {cfg_path, "peft_type"});
        fresh();
        edit_json(cfg_path, [](json& j) { j["rank_pattern"] = {{"q_proj", 8}}; });
        EXPECT_ERROR(load, error_code::unsupported, {cfg_path, "rank_pattern"});
        fresh();
        edit_json(cfg_path, [](json& j) { j["init_lora_weights"] = "pissa"; });
        EXPECT_ERROR(load, error_code::unsupported, {cfg_path, "pissa"});
        fresh();
        edit_json(cfg_path, [](json& j) { j["lora_alpha"] = -1; });
        EXPECT_ERROR(load, error_code::config, {cfg_path, "lora_alpha"});

        // pickle weights only
        fresh();
        fs::rename(st_path, dir + "/adapter_model.bin");
        EXPECT_ERROR(load, error_code::unsupported, {st_path, "adapter_model.bin"});
        fs::remove(dir + "/adapter_model.bin");
        EXPECT_ERROR(load, error_code::io, {st_path, "not found"});

        // An output path that is a file.
        write_file(dir + "/plain_file", "x");
        EXPECT_ERROR([&] { export_peft(dir + "/plain_file", random_adapter(cfg(), rank4_all(), 9), cfg(), "s"); },
                     error_code::io, {dir + "/plain_file", "not a directory"});

        // PEFT's selection rules: defaults (q_proj, v_proj) when target_modules is null, "all-linear", module-path
        // suffixes, a regex, layers_to_transform and exclude_modules pick the expected tensor set.
        lora_config qv = rank4_all();
        qv.targets = {lora_target::q, lora_target::v};
        export_peft(dir, random_adapter(cfg(), qv, 9), cfg(), "s");
        edit_json(cfg_path, [](json& j) { j["target_modules"] = nullptr; });
        QCOMPARE(load_peft(dir, cfg()).config.targets, (std::vector<lora_target>{lora_target::q, lora_target::v}));
        edit_json(cfg_path, [](json& j) {
            j["target_modules"] = {"self_attn.q_proj", "model.layers.0.self_attn.v_proj", "v_proj"};
        });
        QCOMPARE(load_peft(dir, cfg()).config.targets, (std::vector<lora_target>{lora_target::q, lora_target::v}));
        edit_json(cfg_path, [](json& j) { j["target_modules"] = R"(.*\.(q|v)_proj)"; });
        QCOMPARE(load_peft(dir, cfg()).parameter_count(), size_t(5 * 4 * (64 + 64 + 64 + 32)));
        edit_json(cfg_path, [](json& j) {
            j["target_modules"] = {"q_proj", "v_proj"};
            j["layers_to_transform"] = {0, 1};
        });
        EXPECT_ERROR(load, error_code::format, {"layers.2.", "does not select"});
        edit_json(cfg_path, [](json& j) {
            j["layers_to_transform"] = nullptr;
            j["exclude_modules"] = {"v_proj"};
        });
        EXPECT_ERROR(load, error_code::format, {"v_proj", "does not select"});
        export_peft(dir, random_adapter(cfg(), rank4_all(), 9), cfg(), "s");
        edit_json(cfg_path, [](json& j) { j["target_modules"] = "all-linear"; });
        QCOMPARE(load_peft(dir, cfg()).config.targets.size(), size_t(7));
    }

    // ---- real PEFT (tests/data/peft, see make_peft_fixture.py) ----

    void referenceAdapterLoads() {
        lora_weights<float> w = load_peft(fixture_dir() + "/reference_adapter", cfg());
        QCOMPARE(w.config.rank, 4);
        QCOMPARE(w.config.alpha, 8.0f);
        QCOMPARE(w.config.dropout, 0.05f);
        QCOMPARE(w.config.use_rslora, false);
        QCOMPARE(w.config.targets.size(), size_t(7));
        QCOMPARE(w.parameter_count(),
                 size_t(5 * 4 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 172) * 2 + (172 + 64))));
    }

    // Our forward with PEFT's adapter equals transformers + PEFT (float32, eager attention) within 1e-4.
    void logitsEqualPefts() {
        const llama_model& m = real();
        const safetensors_file ref = safetensors_file::open(fixture_dir() + "/reference_logits.safetensors");
        const tensor tok = ref.read("tokens");
        QCOMPARE(QString(dtype_name(tok.type())), QString("I64"));
        const int B = int(tok.size(0)), T = int(tok.size(1));
        std::vector<int> toks(size_t(B * T));
        for (size_t i = 0; i < toks.size(); ++i) toks[i] = int(tok.data<int64_t>()[i]);
        auto as_vec = [&](const char* name) {
            tensor t = ref.read_f32(name);
            return std::vector<float>(t.f32(), t.f32() + t.numel());
        };
        const std::vector<float> peft_logits = as_vec("logits"), peft_base = as_vec("base_logits");

        lora_weights<float> w = load_peft(fixture_dir() + "/reference_adapter", m.config);
        const std::vector<float> ours = run_logits(m, toks, B, T, &w);
        const std::vector<float> ours_base = run_logits(m, toks, B, T, nullptr);
        const double d = max_abs_diff(ours, peft_logits), db = max_abs_diff(ours_base, peft_base);
        qInfo("max |ours - PEFT| logit: adapter %.3g, base %.3g", d, db);
        QVERIFY2(db < 1e-4, qPrintable(QString("base logits differ from transformers by %1").arg(db)));
        QVERIFY2(d < 1e-4, qPrintable(QString("adapter logits differ from PEFT by %1").arg(d)));
        QVERIFY(max_abs_diff(peft_logits, peft_base) > 0.1); // the reference adapter is not a no-op

        // Our merged export of PEFT's adapter also gives PEFT's logits.
        QTemporaryDir tmp;
        const std::string merged = tmp.path().toStdString() + "/merged";
        export_merged(merged, hf_checkpoint::open(testutil::model_dir()), m, w);
        const double dm = max_abs_diff(run_logits(llama_model::load(merged), toks, B, T, nullptr), peft_logits);
        QVERIFY2(dm < 1e-4, qPrintable(QString("merged export logits differ from PEFT by %1").arg(dm)));

        // For make_peft_fixture.py's "check" step: keep our exports where QLS_PEFT_EXPORT_DIR says.
        if (const char* keep = std::getenv("QLS_PEFT_EXPORT_DIR"); keep && *keep) {
            const json pc = json::parse(read_file(fixture_dir() + "/reference_adapter/adapter_config.json"));
            export_peft(std::string(keep) + "/adapter", w, m.config, pc["base_model_name_or_path"].get<std::string>());
            export_merged(std::string(keep) + "/merged", hf_checkpoint::open(testutil::model_dir()), m, w);
            // An adapter of ours that exercises layers_to_transform, rsLoRA and a fractional alpha, with our logits.
            lora_config c;
            c.rank = 3;
            c.alpha = 5.5f;
            c.use_rslora = true;
            c.targets = {lora_target::k, lora_target::o, lora_target::up};
            lora_weights<float> sub = random_adapter(m.config, c, 31);
            for (int l : {0, 2, 4}) sub.layers[size_t(l)] = {};
            export_peft(std::string(keep) + "/subset", sub, m.config, pc["base_model_name_or_path"].get<std::string>());
            safetensors_save(std::string(keep) + "/subset_logits.safetensors",
                             {{"logits",
                               tensor::from_f32(run_logits(m, toks, B, T, &sub), {B, T, m.config.vocab_size})}});
        }
    }

    // Re-exporting PEFT's adapter reproduces PEFT's files: adapter_model.safetensors byte for byte; adapter_config.json
    // with the same keys and values, the only difference being target_modules' order (PEFT writes a Python set).
    void exportOfPeftAdapterMatchesPeftFiles() {
        const std::string ref_dir = fixture_dir() + "/reference_adapter";
        const std::string peft_text = read_file(ref_dir + "/adapter_config.json");
        json peft_cfg = json::parse(peft_text);
        lora_weights<float> w = load_peft(ref_dir, cfg());
        QTemporaryDir tmp;
        const std::string out = tmp.path().toStdString();
        export_peft(out, w, cfg(), peft_cfg["base_model_name_or_path"].get<std::string>());

        const std::string ours_st = read_file(out + "/adapter_model.safetensors");
        const std::string peft_st = read_file(ref_dir + "/adapter_model.safetensors");
        QVERIFY(!peft_st.empty());
        QVERIFY2(ours_st == peft_st, "adapter_model.safetensors differs from PEFT's bytes");

        const std::string ours_text = read_file(out + "/adapter_config.json");
        json ours_cfg = json::parse(ours_text);
        std::vector<std::string> peft_targets = peft_cfg["target_modules"].get<std::vector<std::string>>();
        std::sort(peft_targets.begin(), peft_targets.end());
        QCOMPARE(ours_cfg["target_modules"].get<std::vector<std::string>>(), peft_targets);
        // PEFT's own text is exactly the 2-space dump of its parsed JSON: the layouts agree ...
        QCOMPARE(QString::fromStdString(peft_cfg.dump(2, ' ', true)), QString::fromStdString(peft_text));
        // ... and with the set put in sorted order, ours is PEFT's file byte for byte.
        peft_cfg["target_modules"] = peft_targets;
        QCOMPARE(QString::fromStdString(ours_text), QString::fromStdString(peft_cfg.dump(2, ' ', true)));
    }
};

QTEST_APPLESS_MAIN(TestPeft)
#include "tst_peft.moc"
