// The streaming merged export: the shard writer equals safetensors_save byte for byte; the export equals the former
// whole-model path (tests/merged_export_reference.h) byte for byte for an f32 base, an NF4 run and a bitsandbytes
// checkpoint; shards load back; progress, cancel, --force and the peak host memory of old vs new.
#include "testutil.h"

#include "merged_export_reference.h"
#include "qls/file_io.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/peft.h"
#include "qls/quant.h"
#include "qls/run_export.h"
#include "qls/safetensors.h"
#include "qls_kernels/nf4_codebook.h"

#include <nlohmann/json.hpp>

#include <QCoreApplication>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

using namespace qls;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

#define EXPECT_ERROR(fn, code, ...)                                             \
    do {                                                                        \
        const std::string why_ = testutil::expect_error(fn, code, __VA_ARGS__); \
        QVERIFY2(why_.empty(), why_.c_str());                                   \
    } while (0)

std::string slurp(const fs::path& p) { return read_file_text(p.string()); }

// True when dir holds no ".tmp-*" staging folder or file.
bool no_temporaries(const std::string& dir) {
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().rfind(".tmp", 0) == 0) return false;
    return true;
}

// Every file under dir (relative name → bytes).
std::map<std::string, std::string> files_of(const std::string& dir) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out[e.path().filename().string()] = slurp(e.path());
    return out;
}

// "" when both folders hold the same files with the same bytes, else the first difference.
std::string same_files(const std::string& a, const std::string& b, const std::set<std::string>& skip = {}) {
    auto fa = files_of(a), fb = files_of(b);
    for (const std::string& s : skip) fa.erase(s), fb.erase(s);
    for (const auto& [n, bytes] : fa) {
        if (!fb.count(n)) return n + " is only in " + a;
        if (fb[n] != bytes) return n + " differs";
    }
    for (const auto& [n, bytes] : fb)
        if (!fa.count(n)) return n + " is only in " + b;
    return "";
}

lora_weights<float> random_adapter(const model_config& m, std::vector<lora_target> targets, uint64_t seed) {
    lora_config c;
    c.rank = 4;
    c.alpha = 8.0f;
    c.targets = std::move(targets);
    lora_weights<float> w = lora_init(m, c, seed);
    std::mt19937_64 rng(seed * 7 + 1);
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    for (auto& layer : w.layers)
        for (auto& ad : layer)
            for (float& x : ad.b) x = u(rng);
    return w;
}

// The tensors bitsandbytes' Params4bit._save_to_state_dict writes for one Linear4bit weight (double quant):
// <name> U8 [ceil(n/2), 1], .absmax U8 [nblocks], .quant_map F32 [16], .nested_absmax F32 [nscale],
// .nested_quant_map F32 [256], .quant_state.bitsandbytes__nf4 U8 (JSON).
void add_bnb(std::vector<std::pair<std::string, tensor>>& sd, const std::string& name, const nf4_tensor& q) {
    tensor packed(dtype::u8, {int64_t(q.packed.size()), 1});
    std::memcpy(packed.raw(), q.packed.data(), q.packed.size());
    sd.emplace_back(name, packed);
    tensor absmax(dtype::u8, {int64_t(q.absmax_codes.size())});
    std::memcpy(absmax.raw(), q.absmax_codes.data(), q.absmax_codes.size());
    sd.emplace_back(name + ".absmax", absmax);
    std::vector<float> qmap(16);
    for (int i = 0; i < 16; ++i) qmap[size_t(i)] = qls_kernels::nf4_code[i];
    sd.emplace_back(name + ".quant_map", tensor::from_f32(qmap, {16}));
    sd.emplace_back(name + ".nested_absmax", tensor::from_f32(q.absmax_scale, {int64_t(q.absmax_scale.size())}));
    sd.emplace_back(name + ".nested_quant_map",
                    tensor::from_f32(std::vector<float>(q.nested_map.begin(), q.nested_map.end()), {256}));
    const std::string s = json{{"quant_type", "nf4"},
                               {"blocksize", 64},
                               {"dtype", "float32"},
                               {"shape", {q.rows, q.cols}},
                               {"nested_blocksize", 256},
                               {"nested_dtype", "float32"},
                               {"nested_offset", q.absmax_offset}}
                              .dump();
    tensor state(dtype::u8, {int64_t(s.size())});
    std::memcpy(state.raw(), s.data(), s.size());
    sd.emplace_back(name + ".quant_state.bitsandbytes__nf4", state);
}

// A random LLaMA checkpoint in BF16 (hidden C, MLP H, L layers, vocab V, untied head), written tensor by tensor with
// the streaming writer so that writing it never holds more than one tensor.
void write_random_bf16_model(const std::string& dir, int C, int H, int L, int V) {
    fs::create_directories(dir);
    const json cfg = {{"architectures", json::array({"LlamaForCausalLM"})},
                      {"model_type", "llama"},
                      {"hidden_act", "silu"},
                      {"hidden_size", C},
                      {"intermediate_size", H},
                      {"num_hidden_layers", L},
                      {"num_attention_heads", C / 64},
                      {"num_key_value_heads", C / 64},
                      {"vocab_size", V},
                      {"max_position_embeddings", 2048},
                      {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},
                      {"tie_word_embeddings", false},
                      {"torch_dtype", "bfloat16"}};
    write_file_atomic(dir + "/config.json", cfg.dump(2) + "\n");
    std::vector<safetensors_tensor_spec> specs;
    auto add = [&](const std::string& n, shape_t s) { specs.push_back({n, dtype::bf16, std::move(s)}); };
    add("model.embed_tokens.weight", {V, C});
    add("lm_head.weight", {V, C});
    add("model.norm.weight", {C});
    for (int l = 0; l < L; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"})
            add(p + n + ".weight", {C, C});
        add(p + "mlp.gate_proj.weight", {H, C});
        add(p + "mlp.up_proj.weight", {H, C});
        add(p + "mlp.down_proj.weight", {C, H});
        add(p + "input_layernorm.weight", {C});
        add(p + "post_attention_layernorm.weight", {C});
    }
    safetensors_stream_writer w(dir + "/model.safetensors", specs);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (const safetensors_tensor_spec& s : w.order()) {
        std::vector<float> f(size_t(shape_numel(s.shape)));
        const bool norm = s.shape.size() == 1;
        for (float& x : f) x = norm ? 1.0f : nd(rng);
        std::string bytes(size_t(s.nbytes()), '\0');
        convert_from_f32(bytes.data(), f.data(), dtype::bf16, f.size());
        w.write(s.name, bytes);
    }
    w.finish();
}

long status_kib(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key));
    return -1;
}

// Child mode of this executable (QLS_EXPORT_RSS_CHILD=old|new MODEL OUT): one merged export of MODEL with a rank-8
// adapter on every projection, printing "peak_kib baseline_kib" (VmHWM after, VmRSS before).
int rss_child(const char* mode, const std::string& model, const std::string& out) {
    const hf_checkpoint base = hf_checkpoint::open(model);
    lora_weights<float> w = random_adapter(base.config(), all_lora_targets(), 3);
    { std::ofstream("/proc/self/clear_refs") << "5"; } // VmHWM := VmRSS now
    const long baseline = status_kib("VmRSS:");
    if (std::string(mode) == "old") reference::reference_export_merged(out, base, llama_model::load(base), w);
    else export_merged(out, base, w);
    std::printf("%ld %ld\n", status_kib("VmHWM:"), baseline);
    return 0;
}

} // namespace

class TestExportStream : public QObject {
    Q_OBJECT

    const std::string model = testutil::model_dir();

private slots:
    void initTestCase() { QLS_REQUIRE_MODEL(); }

    // The streaming writer writes the bytes safetensors_save writes, for mixed dtypes, odd shapes and metadata.
    void writerEqualsSafetensorsSave() {
        QTemporaryDir tmp;
        std::mt19937 rng(1);
        std::vector<std::pair<std::string, tensor>> ts;
        const std::vector<std::tuple<std::string, dtype, shape_t>> list =
            {{"z.weight", dtype::f32, {3, 5}},   {"a.bias", dtype::bf16, {7}},  {"m.scale", dtype::f16, {2, 2, 3}},
             {"ids", dtype::i64, {4}},           {"codes", dtype::u8, {9, 1}},  {"scalar", dtype::f32, {}},
             {"empty", dtype::bf16, {0, 4}},     {"B.weight", dtype::f32, {1}}, {"q\"uote\\d", dtype::i32, {2}},
             {"model.é.weight", dtype::f64, {3}}};
        std::vector<safetensors_tensor_spec> specs;
        for (const auto& [n, t, s] : list) {
            tensor x(t, s);
            auto* p = static_cast<unsigned char*>(x.raw());
            for (size_t i = 0; i < x.nbytes(); ++i) p[i] = static_cast<unsigned char>(rng());
            ts.emplace_back(n, x);
            specs.push_back({n, t, s});
        }
        for (const std::map<std::string, std::string>& meta :
             {std::map<std::string, std::string>{}, {{"format", "pt"}}, {{"b", "2"}, {"a", "1"}}}) {
            const std::string a = tmp.filePath("saved.safetensors").toStdString();
            const std::string b = tmp.filePath("streamed.safetensors").toStdString();
            fs::remove(b);
            safetensors_save(a, ts, meta);
            safetensors_stream_writer w(b, specs, meta);
            QCOMPARE(w.file_size(), uint64_t(fs::file_size(a)));
            for (const safetensors_tensor_spec& s : w.order()) {
                const auto it = std::find_if(ts.begin(), ts.end(), [&](const auto& kv) { return kv.first == s.name; });
                const std::string_view all{static_cast<const char*>(it->second.raw()), it->second.nbytes()};
                if (meta.size() == 1 && !all.empty()) // in pieces of 3 bytes
                    for (size_t at = 0; at < all.size(); at += 3) w.write(s.name, all.substr(at, 3));
                else w.write(s.name, all);
            }
            QVERIFY(fs::exists(b + ".tmp") && !fs::exists(b));
            w.finish();
            QVERIFY(!fs::exists(b + ".tmp"));
            QVERIFY2(slurp(a) == slurp(b), qPrintable(QString::number(meta.size())));
        }

        // misuse is refused, naming the file and the tensor; an unfinished writer leaves no file behind
        const std::string c = tmp.filePath("c.safetensors").toStdString();
        {
            safetensors_stream_writer w(c, specs);
            const std::string first = w.next_name();
            QVERIFY(!first.empty());
            EXPECT_ERROR([&] { w.write("nope", ""); }, error_code::invalid_argument, {c, "'nope'", first});
            EXPECT_ERROR([&] { w.write(first, std::string(w.order().front().nbytes() + 1, 'x')); },
                         error_code::invalid_argument, {c, first, "needs", "exceed"});
            w.write(first, "x"); // a piece of it
            EXPECT_ERROR([&] { w.write(first, std::string(w.order().front().nbytes(), 'x')); },
                         error_code::invalid_argument, {c, first, "1 were written"});
            EXPECT_ERROR([&] { w.finish(); }, error_code::invalid_argument, {c, first, "never", "1 of"});
        }
        QVERIFY(!fs::exists(c) && !fs::exists(c + ".tmp"));
        specs.push_back(specs.front());
        EXPECT_ERROR([&] { safetensors_stream_writer again(c, specs); }, error_code::invalid_argument,
                     {c, "listed twice"});
    }

    // The streaming export equals the former whole-model path byte for byte: every file of the folder.
    void equalsFormerPath_data() {
        QTest::addColumn<bool>("nf4");
        QTest::addColumn<bool>("dq");
        QTest::addColumn<qulonglong>("shard");
        QTest::newRow("f32") << false << false << qulonglong(5'000'000'000ull);
        QTest::newRow("f32.sharded") << false << false << qulonglong(100'000);
        QTest::newRow("nf4.dq") << true << true << qulonglong(5'000'000'000ull);
        QTest::newRow("nf4.plain.sharded") << true << false << qulonglong(150'000);
    }
    void equalsFormerPath() {
        QFETCH(bool, nf4);
        QFETCH(bool, dq);
        QFETCH(qulonglong, shard);
        QTemporaryDir tmp;
        const hf_checkpoint base = hf_checkpoint::open(model);
        const lora_weights<float> w = random_adapter(
            base.config(), {lora_target::q, lora_target::v, lora_target::gate, lora_target::down}, 9);
        const std::string ref = tmp.filePath("ref").toStdString(), out = tmp.filePath("out").toStdString();
        reference::reference_export_merged(ref, base, llama_model::load(base, {nf4, dq}), w, shard);
        merged_export_options o;
        o.quantize_nf4 = nf4;
        o.double_quant = dq;
        o.max_shard_bytes = shard;
        const merged_export_progress p = export_merged(out, base, w, o);
        QCOMPARE(p.nf4_base, nf4);
        QCOMPARE(p.tensors_done, p.tensors_total);
        const std::string diff = same_files(ref, out);
        QVERIFY2(diff.empty(), diff.c_str());
        QCOMPARE(fs::exists(out + "/model.safetensors.index.json"), shard < 1'000'000);
        // the quantized run really differs from the f32 one (the NF4 path is taken)
        if (nf4) {
            const std::string f = tmp.filePath("f32").toStdString();
            merged_export_options fo;
            fo.max_shard_bytes = shard;
            export_merged(f, base, w, fo);
            QVERIFY(!same_files(f, out).empty());
        }
        QVERIFY(no_temporaries(tmp.path().toStdString()));
    }

    // A pre-quantized bitsandbytes checkpoint of stories260K: the projections are dequantized, merged and written in
    // the embedding's dtype without their quantization state, so the export equals the former path's export of the
    // NF4 run on the f32 checkpoint (same NF4 weights); config.json loses its quantization_config.
    void bnbCheckpointEqualsNf4Run() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bnb").toStdString();
        fs::create_directories(dir);
        const llama_model q = llama_model::load(model, {true, true});
        const safetensors_file src = safetensors_file::open(model + "/model.safetensors");
        std::vector<std::pair<std::string, tensor>> sd;
        for (const auto& e : src.entries())
            if (e.name.find("_proj.") == std::string::npos) sd.emplace_back(e.name, src.read(e.name));
        const architecture& arch = architecture_for(q.config);
        for (int l = 0; l < q.config.num_layers; ++l)
            for (lora_target t : arch.projections) add_bnb(sd, arch.hf_weight(l, t), q.nf4[size_t(l)][size_t(t)]);
        safetensors_save((dir / "model.safetensors").string(), sd);
        json cfg = json::parse(slurp(fs::path(model) / "config.json"));
        const json original = cfg;
        cfg["quantization_config"] = {{"quant_method", "bitsandbytes"},
                                      {"load_in_4bit", true},
                                      {"bnb_4bit_quant_type", "nf4"},
                                      {"bnb_4bit_use_double_quant", true}};
        write_file_atomic((dir / "config.json").string(), cfg.dump(2));
        for (const char* f : {"tokenizer.model", "tokenizer_config.json", "generation_config.json"})
            fs::copy_file(fs::path(model) / f, dir / f);

        const hf_checkpoint f32_base = hf_checkpoint::open(model), bnb = hf_checkpoint::open(dir.string());
        const lora_weights<float> w = random_adapter(q.config, all_lora_targets(), 4);
        const std::string ref = tmp.filePath("ref").toStdString(), out = tmp.filePath("out").toStdString();
        reference::reference_export_merged(ref, f32_base, q, w);
        const merged_export_progress p = export_merged(out, bnb, w); // no option: the checkpoint says it is NF4
        QVERIFY(p.nf4_base);
        const std::string diff = same_files(ref, out, {"config.json"});
        QVERIFY2(diff.empty(), diff.c_str());
        QCOMPARE(json::parse(slurp(out + "/config.json")), original);
        const safetensors_file merged_file = safetensors_file::open(out + "/model.safetensors");
        for (const safetensors_entry& e : merged_file.entries())
            QVERIFY2(e.name.find("absmax") == std::string::npos && e.type == dtype::f32, e.name.c_str());

        // a checkpoint where one projection is not quantized is refused before anything is written, naming it
        std::erase_if(sd, [](const auto& kv) { return kv.first.rfind("model.layers.2.mlp.up_proj.weight", 0) == 0; });
        sd.emplace_back("model.layers.2.mlp.up_proj.weight", src.read("model.layers.2.mlp.up_proj.weight"));
        safetensors_save((dir / "model.safetensors").string(), sd);
        const std::string mixed = tmp.filePath("mixed").toStdString();
        EXPECT_ERROR([&] { export_merged(mixed, hf_checkpoint::open(dir.string()), w); }, error_code::format,
                     {"model.layers.2.mlp.up_proj.weight", "not 4-bit quantized"});
        QVERIFY(!fs::exists(mixed));
        QVERIFY(no_temporaries(tmp.path().toStdString()));
        // an output path that is a file is refused and left alone
        const std::string file = tmp.filePath("a-file").toStdString();
        write_file_atomic(file, "x");
        EXPECT_ERROR([&] { export_merged(file, f32_base, w); }, error_code::io, {file, "not a directory"});
        QCOMPARE(slurp(file), std::string("x"));
    }

    // Shards of a tiny limit load back through hf_checkpoint with the single file's weights; each shard respects the
    // limit (or holds one tensor larger than it) and the index's total_size is the sum of the data.
    void shardsLoadBack() {
        QTemporaryDir tmp;
        const hf_checkpoint base = hf_checkpoint::open(model);
        const lora_weights<float> w = random_adapter(base.config(), all_lora_targets(), 11);
        const std::string one = tmp.filePath("one").toStdString(), many = tmp.filePath("many").toStdString();
        export_merged(one, base, w);
        merged_export_options o;
        o.max_shard_bytes = 60'000;
        export_merged(many, base, w, o);
        QVERIFY(!fs::exists(many + "/model.safetensors"));
        const json index = json::parse(slurp(many + "/model.safetensors.index.json"));
        std::set<std::string> shard_files;
        for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it)
            shard_files.insert(it.value().get<std::string>());
        QVERIFY2(shard_files.size() > 10, qPrintable(QString::number(shard_files.size())));
        uint64_t total = 0;
        for (const std::string& s : shard_files) {
            const safetensors_file f = safetensors_file::open(many + "/" + s);
            uint64_t bytes = 0;
            for (const safetensors_entry& e : f.entries()) bytes += e.end - e.begin;
            QVERIFY2(bytes <= o.max_shard_bytes || f.entries().size() == 1, s.c_str());
            total += bytes;
        }
        QCOMPARE(index["metadata"]["total_size"].get<uint64_t>(), total);
        const hf_checkpoint a = hf_checkpoint::open(one), b = hf_checkpoint::open(many);
        QCOMPARE(b.tensor_names(), a.tensor_names());
        for (const std::string& n : a.tensor_names()) {
            const safetensors_entry &ea = a.entry(n), &eb = b.entry(n);
            QVERIFY2(ea.type == eb.type && ea.shape == eb.shape, n.c_str());
            QVERIFY2(std::memcmp(a.file_of(n).bytes(ea), b.file_of(n).bytes(eb), ea.end - ea.begin) == 0, n.c_str());
        }
        const llama_model ma = llama_model::load(one), mb = llama_model::load(many);
        QCOMPARE(mb.params.embed, ma.params.embed);
        QCOMPARE(mb.projection(4, lora_target::down), ma.projection(4, lora_target::down));
    }

    // run_export reports loading_base, then merging after every tensor with growing counters; a cancel from the
    // progress callback leaves no output folder and no temporary folder; a cancel of an export over an existing
    // folder leaves that folder as it was; --force keeps unrelated files and drops stale shards.
    void progressAndCancel() {
        QTemporaryDir tmp;
        const hf_checkpoint base = hf_checkpoint::open(model);
        const std::string ck = tmp.filePath("ck").toStdString();
        export_peft(ck, random_adapter(base.config(), all_lora_targets(), 2), base.config(), model);
        export_request r;
        r.model_dir = model;
        r.checkpoint_dir = ck;
        r.output_dir = tmp.filePath("out").toStdString();
        r.format = export_format::merged;
        r.quantize_nf4 = false;
        r.max_shard_bytes = 200'000;

        std::vector<export_progress> seen;
        export_callbacks cb;
        cb.on_stage = [&](const export_progress& p) { seen.push_back(p); };
        run_export(r, cb);
        QVERIFY(seen.size() > 10);
        QCOMPARE(int(seen[2].stage), int(export_stage::loading_base));
        QCOMPARE(int(seen[3].stage), int(export_stage::merging));
        QCOMPARE(seen[3].tensors_done, int64_t(0));
        const int64_t n = seen[3].tensors_total;
        QCOMPARE(n, int64_t(base.tensor_names().size()));
        for (size_t i = 3; i + 1 < seen.size(); ++i) {
            QCOMPARE(int(seen[i].stage), int(export_stage::merging));
            QCOMPARE(seen[i].tensors_done, int64_t(i - 3));
            QVERIFY(i == 3 || seen[i].bytes_done > seen[i - 1].bytes_done);
        }
        const export_progress& last = seen[seen.size() - 2];
        QCOMPARE(last.tensors_done, n);
        QCOMPARE(last.bytes_done, last.bytes_total);
        QCOMPARE(int(seen.back().stage), int(export_stage::done));

        // cancel midway: nothing at all is left
        std::atomic<bool> stop{false};
        cb.cancel = &stop;
        cb.on_stage = [&](const export_progress& p) {
            if (p.stage == export_stage::merging && p.tensors_done == n / 2) stop = true;
        };
        r.output_dir = tmp.filePath("cancelled").toStdString();
        EXPECT_ERROR([&] { run_export(r, cb); }, error_code::cancelled, {"cancelled", r.output_dir});
        QVERIFY(!fs::exists(r.output_dir));
        QVERIFY(no_temporaries(tmp.path().toStdString()));

        // an existing folder (overwrite): a cancel leaves it as it was; a finished export keeps notes.txt, replaces
        // config.json and removes the stale shard of an earlier export
        const fs::path existing = tmp.filePath("existing").toStdString();
        fs::create_directories(existing / "sub");
        write_file_atomic((existing / "notes.txt").string(), "mine");
        write_file_atomic((existing / "sub" / "a.txt").string(), "a");
        write_file_atomic((existing / "config.json").string(), "{}");
        write_file_atomic((existing / "model-00007-of-00009.safetensors").string(), "stale");
        r.output_dir = existing.string();
        r.overwrite = true;
        stop = false;
        EXPECT_ERROR([&] { run_export(r, cb); }, error_code::cancelled, {"cancelled"});
        QCOMPARE(slurp(existing / "config.json"), std::string("{}"));
        QVERIFY(fs::exists(existing / "model-00007-of-00009.safetensors"));
        cb = {};
        run_export(r, cb);
        QCOMPARE(slurp(existing / "notes.txt"), std::string("mine"));
        QCOMPARE(slurp(existing / "sub" / "a.txt"), std::string("a"));
        QCOMPARE(slurp(existing / "config.json"), slurp(fs::path(model) / "config.json"));
        QVERIFY(!fs::exists(existing / "model-00007-of-00009.safetensors"));
        QVERIFY(fs::exists(existing / "model.safetensors.index.json"));
        QVERIFY(no_temporaries(tmp.path().toStdString()));

        // a cancel before the start writes nothing
        std::atomic<bool> early{true};
        cb.cancel = &early;
        r.output_dir = tmp.filePath("never").toStdString();
        EXPECT_ERROR([&] { run_export(r, cb); }, error_code::cancelled, {"cancelled"});
        QVERIFY(!fs::exists(r.output_dir));
    }

    // `qlora logits` (what packaging/gpu/check-merged-in-transformers.py compares transformers with) writes the CPU
    // forward's logits of a merged export: those of the base + adapter; a token id outside the vocabulary is a usage
    // error naming the range.
    void cliLogitsOfMergedExport() {
        QTemporaryDir tmp;
        const hf_checkpoint base = hf_checkpoint::open(model);
        lora_weights<float> w = random_adapter(base.config(), all_lora_targets(), 21);
        const std::string merged = tmp.filePath("merged").toStdString();
        export_merged(merged, base, w);
        const std::vector<int> toks = {1, 403, 407, 261, 378, 432, 383, 286};
        const std::string out = tmp.filePath("logits.safetensors").toStdString();
        const auto r = testutil::run_cli({"logits", "--model", QString::fromStdString(merged), "--tokens",
                                          "1,403,407,261,378,432,383,286", "--out", QString::fromStdString(out)});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const safetensors_file f = safetensors_file::open(out);
        const tensor t = f.read("tokens");
        QCOMPARE(t.shape(), (shape_t{1, int64_t(toks.size())}));
        for (size_t i = 0; i < toks.size(); ++i) QCOMPARE(t.data<int64_t>()[i], int64_t(toks[i]));
        const tensor got = f.read("logits");
        const int T = int(toks.size());
        QCOMPARE(got.shape(), (shape_t{1, T, base.config().vocab_size}));
        const llama_model m = llama_model::load(base);
        llama_pass<float> pass(m.config, m.params, m.inv_freq, 1, T, &w);
        pass.forward(toks.data(), nullptr);
        const std::vector<float>& want = pass.logits();
        double d = 0;
        for (size_t i = 0; i < want.size(); ++i) d = std::max(d, double(std::fabs(got.f32()[i] - want[i])));
        QVERIFY2(d < 1e-4, qPrintable(QString("qlora logits vs base + adapter: %1").arg(d)));
        const auto bad = testutil::run_cli({"logits", "--model", QString::fromStdString(merged), "--tokens", "1,512",
                                            "--out", QString::fromStdString(out)});
        QCOMPARE(bad.exit_code, 2);
        QVERIFY2(bad.err.contains("'512'") && bad.err.contains("0..511"), qPrintable(bad.err));
    }

    // Peak host memory (VmHWM) of a merged export, the former whole-model path vs the streaming one, each in a child
    // process, on a random BF16 model (QLS_EXPORT_RSS_LAYERS layers of 1024 / 2816, vocab 32000, untied head:
    // 4 layers ≈ 0.23 GB by default; 32 layers ≈ 0.95 GB). The streaming peak must stay under the size of the model's
    // largest tensors in f32 plus a margin, and far under the former path's.
    void peakMemoryOldVsNew() {
        const char* env = std::getenv("QLS_EXPORT_RSS_LAYERS");
        const int L = env && *env ? std::atoi(env) : 4;
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("random").toStdString();
        const int C = 1024, H = 2816, V = 32000;
        write_random_bf16_model(dir, C, H, L, V);
        const double model_mb = double(fs::file_size(dir + "/model.safetensors")) / 1e6;
        auto run = [&](const char* mode) {
            QProcess p;
            QProcessEnvironment e = QProcessEnvironment::systemEnvironment();
            e.insert("QLS_EXPORT_RSS_CHILD", mode);
            p.setProcessEnvironment(e);
            p.start(QCoreApplication::applicationFilePath(),
                    {QString::fromStdString(dir), tmp.filePath(QString("out-") + mode)});
            if (!p.waitForFinished(600'000) || p.exitCode() != 0)
                qFatal("child %s failed: %s", mode, p.readAllStandardError().constData());
            const QStringList f = QString(p.readAllStandardOutput()).trimmed().split(' ');
            return std::make_pair(f.value(0).toLong(), f.value(1).toLong());
        };
        const auto [old_peak, old_base] = run("old");
        const auto [new_peak, new_base] = run("new");
        const std::string diff = same_files(tmp.filePath("out-old").toStdString(),
                                            tmp.filePath("out-new").toStdString());
        QVERIFY2(diff.empty(), diff.c_str());
        qInfo(
            "random BF16 model %.0f MB (%d layers): peak RSS old %.0f MB (baseline %.0f), new %.0f MB (baseline %.0f)",
            model_mb, L, old_peak / 1024.0, old_base / 1024.0, new_peak / 1024.0, new_base / 1024.0);
        // one tensor at a time: the largest projection (H x C) in f32 plus its BF16 bytes, and the pages of the
        // largest copied tensor (the embedding or the head, V x C BF16) until they are released; 64 MB for the rest
        const double bound_mb = (double(H) * C * 6 + double(V) * C * 2) / 1e6 + 64;
        if (!testutil::k_asan)
            QVERIFY2((new_peak - new_base) / 1024.0 < bound_mb,
                     qPrintable(QString("streaming export grew by %1 MB (bound %2)")
                                    .arg((new_peak - new_base) / 1024.0)
                                    .arg(bound_mb)));
        QVERIFY2((old_peak - old_base) > 2 * (new_peak - new_base),
                 qPrintable(QString("old %1 kB vs new %2 kB").arg(old_peak - old_base).arg(new_peak - new_base)));
    }
};

int main(int argc, char** argv) {
    if (const char* mode = std::getenv("QLS_EXPORT_RSS_CHILD"); mode && *mode && argc == 3) {
        try {
            return rss_child(mode, argv[1], argv[2]);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s\n", e.what());
            return 1;
        }
    }
    QCoreApplication app(argc, argv);
    TestExportStream t;
    return QTest::qExec(&t, argc, argv);
}

#include "tst_export_stream.moc"
