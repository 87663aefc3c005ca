// Qt Test suite for GGUF: the reader's validation of every malformed-file case, dequantization bit-exact with gguf-py,
// the GGUF model_source (config, Hugging Face names and layout, q/k un-permutation, tokenizer metadata, chat template)
// and the real SmolLM2-135M-Instruct Q4_1 GGUF computing its reference logits and greedy answer.
// Fixtures: tests/data/gguf (gen_gguf_fixtures.py); format: ggml docs/gguf.md.
#include "qls/architecture.h"
#include "qls/gguf.h"
#include "qls/llama.h"
#include "qls/model_source.h"
#include "qls/safetensors.h"

#include "testutil.h"

#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <optional>

using qls::error_code;
using testutil::expect_error;

namespace {

std::string data_dir() { return std::string(QLS_SOURCE_DIR) + "/tests/data/gguf/"; }
std::string smollm_path() {
    // beside the stories260K test model (QLS_TEST_MODEL_DIR)
    return testutil::model_dir() + "/../smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// ---- a GGUF writer for hand-made (and malformed) files ----------------------------------------------------------

std::string le32(uint32_t v) {
    std::string s(4, '\0');
    std::memcpy(s.data(), &v, 4);
    return s;
}
std::string le64(uint64_t v) {
    std::string s(8, '\0');
    std::memcpy(s.data(), &v, 8);
    return s;
}
std::string gstr(const std::string& s) { return le64(s.size()) + s; }

enum vt : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 };

struct kv {
    std::string key;
    std::string bytes; // key + type + value, as in the file
};
kv kv_raw(const std::string& key, uint32_t type, const std::string& value) {
    return {key, gstr(key) + le32(type) + value};
}
kv kv_u32(const std::string& key, uint32_t v) { return kv_raw(key, U32, le32(v)); }
kv kv_f32(const std::string& key, float v) {
    std::string s(4, '\0');
    std::memcpy(s.data(), &v, 4);
    return kv_raw(key, F32, s);
}
kv kv_str(const std::string& key, const std::string& v) { return kv_raw(key, STR, gstr(v)); }
kv kv_strs(const std::string& key, const std::vector<std::string>& v) {
    std::string s = le32(STR) + le64(v.size());
    for (const std::string& x : v) s += gstr(x);
    return kv_raw(key, ARR, s);
}

struct tinfo {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type = 0;
    uint64_t offset = 0;
    std::string bytes() const {
        std::string s = gstr(name) + le32(uint32_t(dims.size()));
        for (uint64_t d : dims) s += le64(d);
        return s + le32(type) + le64(offset);
    }
};

struct gguf_parts {
    uint32_t version = 3;
    std::vector<kv> kvs;
    std::vector<tinfo> tensors;
    std::string data;
    uint64_t alignment = 32;
    std::optional<uint64_t> n_tensors, n_kv; // header counts when they should lie
    std::string build() const {
        std::string s = "GGUF" + le32(version) + le64(n_tensors.value_or(tensors.size())) +
                        le64(n_kv.value_or(kvs.size()));
        for (const kv& k : kvs) s += k.bytes;
        for (const tinfo& t : tensors) s += t.bytes();
        s.append((alignment - s.size() % alignment) % alignment, '\0');
        return s + data;
    }
    void set(const kv& k) {
        for (kv& x : kvs)
            if (x.key == k.key) {
                x = k;
                return;
            }
        kvs.push_back(k);
    }
    void erase(const std::string& key) {
        kvs.erase(std::remove_if(kvs.begin(), kvs.end(), [&](const kv& x) { return x.key == key; }), kvs.end());
    }
};

// The metadata of a small valid llama model (no tensors): 2 layers, hidden 64, 4 heads, 2 KV heads, vocabulary 8.
gguf_parts llama_metadata() {
    gguf_parts p;
    p.kvs = {kv_str("general.architecture", "llama"),
             kv_u32("llama.block_count", 2),
             kv_u32("llama.embedding_length", 64),
             kv_u32("llama.feed_forward_length", 128),
             kv_u32("llama.attention.head_count", 4),
             kv_u32("llama.attention.head_count_kv", 2),
             kv_u32("llama.context_length", 256),
             kv_f32("llama.rope.freq_base", 10000.0f),
             kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f),
             kv_str("tokenizer.ggml.model", "gpt2"),
             kv_strs("tokenizer.ggml.tokens", {"a", "b", "c", "d", "e", "f", "g", "h"}),
             kv_u32("tokenizer.ggml.bos_token_id", 1),
             kv_u32("tokenizer.ggml.eos_token_id", 2)};
    return p;
}

// A valid file with one tensor of `type` (ggml id) and dims, its data zero-filled.
gguf_parts one_tensor(uint32_t type, std::vector<uint64_t> dims, uint64_t bytes) {
    gguf_parts p;
    p.kvs = {kv_str("general.architecture", "llama")};
    p.tensors = {{"w", std::move(dims), type, 0}};
    p.data.assign(bytes, '\0');
    return p;
}

std::string top_ids(const std::vector<float>& logits, int k) {
    std::vector<int> idx(logits.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    std::string s;
    for (int i = 0; i < k; ++i) s += std::to_string(idx[i]) + " " + std::to_string(logits[size_t(idx[i])]) + ", ";
    return s;
}

int argmax(const std::vector<float>& v) { return int(std::max_element(v.begin(), v.end()) - v.begin()); }

// VmHWM / VmRSS of this process in KiB (/proc/self/status).
long proc_status_kib(const char* field) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field) + 1));
    return -1;
}

} // namespace

class tst_gguf : public QObject {
    Q_OBJECT

    QTemporaryDir tmp_;
    int n_ = 0;

    std::string write(const std::string& bytes) {
        const std::string path = tmp_.path().toStdString() + "/f" + std::to_string(n_++) + ".gguf";
        std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
        return path;
    }
    // Opening `bytes` must fail with `code` and a message naming the file and every part.
    std::string open_fails(const std::string& bytes, error_code code, std::vector<std::string> parts) {
        const std::string path = write(bytes);
        parts.push_back(path);
        return expect_error([&] { (void)qls::gguf_file::open(path); }, code, parts);
    }
    std::string source_fails(const std::string& bytes, error_code code, std::vector<std::string> parts) {
        const std::string path = write(bytes);
        parts.push_back(path);
        return expect_error([&] { (void)qls::open_gguf_source(path); }, code, parts);
    }

private slots:
    // The real model first, so its load is measured in a process that has done little else.
    void smollm2_logits_and_greedy_answer();

    void dequantize_matches_gguf_py();
    void dequantize_refuses_other_types();
    void metadata_accessors();
    void tiny_llama_config();
    void tiny_llama_weights_bit_exact();
    void tiny_llama_loads_and_decodes();
    void tiny_llama_vocab_and_template();
    void non_finite_weight_refused();
    void valid_hand_made_files();
    void malformed_headers_and_metadata();
    void malformed_tensor_infos();
    void truncated_files();
    void config_errors();
    void llama3_rope_freqs();
    void cli_info_describes_gguf();
};

void tst_gguf::smollm2_logits_and_greedy_answer() {
    const std::string path = smollm_path();
    if (!QFileInfo::exists(QString::fromStdString(path)))
        QFAIL(qPrintable(QString::fromStdString("SmolLM2 GGUF not found at " + path)));
    const std::unique_ptr<qls::model_source> src = qls::open_model_source(path);
    QCOMPARE(src->format(), std::string("gguf"));
    const qls::model_config& c = src->config();
    QCOMPARE(c.model_type, std::string("llama"));
    QCOMPARE(c.num_layers, 30);
    QCOMPARE(c.hidden_size, 576);
    QCOMPARE(c.intermediate_size, 1536);
    QCOMPARE(c.num_heads, 9);
    QCOMPARE(c.num_kv_heads, 3);
    QCOMPARE(c.head_dim, 64);
    QCOMPARE(c.vocab_size, 49152);
    QCOMPARE(c.max_position_embeddings, 8192);
    QCOMPARE(c.rope.theta, 100000.0);
    QCOMPARE(c.rope.type, std::string("default"));
    QCOMPARE(float(c.rms_norm_eps), 1e-5f);
    QVERIFY(c.tie_word_embeddings);
    QCOMPARE(c.bos_token_id, 1);
    QCOMPARE(c.eos_token_ids, std::vector<int>{2});
    QCOMPARE(src->weights().size(), size_t(30 * 9 + 2));
    int q41 = 0;
    for (const qls::weight_info& w : src->weights()) q41 += w.stored == "Q4_1";
    QCOMPARE(q41, 210);
    QVERIFY(src->has("model.layers.29.mlp.down_proj.weight"));
    QVERIFY(!src->has("lm_head.weight"));
    const std::optional<qls::chat_template_text> tmpl = src->chat_template();
    QVERIFY(tmpl && tmpl->text.find("<|im_start|>") != std::string::npos);
    QCOMPARE(tmpl->origin, std::string("GGUF metadata tokenizer.chat_template"));

    // The load: time and peak resident memory (VmHWM reset through clear_refs "5").
    { std::ofstream("/proc/self/clear_refs") << "5"; }
    const long rss_before = proc_status_kib("VmRSS:");
    const auto t0 = std::chrono::steady_clock::now();
    const qls::llama_model m = qls::llama_model::load(*src);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const long peak = proc_status_kib("VmHWM:");
    const double weights_mib = double(c.parameter_count()) * 4 / 1048576.0;
    qInfo("SmolLM2 Q4_1 GGUF load: %.2f s; peak RSS %.0f MiB (before %.0f MiB; f32 weights %.0f MiB, file %.0f MiB)",
          secs, peak / 1024.0, rss_before / 1024.0, weights_mib, 98362432 / 1048576.0);
    // Tensor by tensor from the mapping: the f32 weights plus at most the mapped file and one tensor's scratch.
    if (!testutil::k_asan)
        QVERIFY2(peak - rss_before < long((weights_mib + 98362432 / 1048576.0 + 64) * 1024),
                 qPrintable(QString("peak RSS grew by %1 MiB").arg((peak - rss_before) / 1024.0)));
    QVERIFY(m.params.lm_head.empty()); // tied

    // SOURCE.md: the 37 prompt ids, the top-6 logits at the last prompt position (float64 reference) and the
    // greedy continuation "The capital of France is Paris.<|im_end|>".
    const std::vector<int> prompt = {1,   9690, 198, 2683, 359,   253,  5356, 5646, 11173, 3365, 3511, 308,  34519,
                                     28,  7018, 411, 407,  19712, 8182, 2,    198,  1,     4093, 198,  1780, 314,
                                     260, 3575, 282, 4649, 47,    2,    198,  1,    520,   9531, 198};
    QCOMPARE(prompt.size(), size_t(37));
    qls::llama_decoder dec(m, 64);
    std::vector<float> logits;
    for (int id : prompt) logits = dec.step(id);
    const std::vector<std::pair<int, double>> top6 = {{504, 25.325},  {60, 25.243},   {15319, 24.942},
                                                      {2219, 24.402}, {7026, 24.315}, {14925, 24.134}};
    std::vector<int> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 6, order.end(),
                      [&](int a, int b) { return logits[size_t(a)] > logits[size_t(b)]; });
    qInfo("SmolLM2 logits at the last prompt position, top 6: %s", top_ids(logits, 6).c_str());
    for (size_t i = 0; i < top6.size(); ++i) {
        QVERIFY2(order[i] == top6[i].first, qPrintable(QString::fromStdString("top-6: " + top_ids(logits, 6))));
        // The reference prints 3 decimals: its rounding (5e-4) plus the tolerance (1e-3).
        QVERIFY2(std::fabs(double(logits[size_t(top6[i].first)]) - top6[i].second) <= 1e-3 + 5e-4,
                 qPrintable(QString::fromStdString("top-6: " + top_ids(logits, 6))));
    }
    std::vector<int> answer;
    for (int i = 0; i < 8; ++i) {
        answer.push_back(argmax(logits));
        if (i < 7) logits = dec.step(answer.back());
    }
    QCOMPARE(answer, (std::vector<int>{504, 3575, 282, 4649, 314, 7042, 30, 2}));
}

void tst_gguf::dequantize_matches_gguf_py() {
    const qls::gguf_file f = qls::gguf_file::open(data_dir() + "quants.gguf");
    const qls::safetensors_file expected = qls::safetensors_file::open(data_dir() + "quants.expected.safetensors");
    QCOMPARE(expected.entries().size(), size_t(9));
    for (const char* type : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"}) {
        std::string name = std::string("t_") + type;
        std::transform(name.begin(), name.end(), name.begin(), [](char ch) { return char(std::tolower(ch)); });
        const qls::gguf_tensor_info* t = f.find_tensor(name);
        QVERIFY2(t, name.c_str());
        QCOMPARE(std::string(qls::ggml_traits(uint32_t(t->type)).name), std::string(type));
        QCOMPARE(t->dims, (std::vector<int64_t>{512, 3}));
        std::vector<float> got(size_t(t->numel()));
        f.dequantize(*t, got.data());
        const qls::tensor want = expected.read(name);
        QCOMPARE(want.shape(), (qls::shape_t{3, 512}));
        // Bit-exact: every f32 equal as bits (the fixtures include signed zeros and subnormal halves).
        QVERIFY2(std::memcmp(got.data(), want.f32(), got.size() * 4) == 0, name.c_str());
        // Row by row through gguf_dequantize gives the same bits.
        const qls::ggml_type_traits tr = qls::ggml_traits(uint32_t(t->type));
        std::vector<float> row(512);
        qls::gguf_dequantize(t->type, f.tensor_data(*t) + 512 / tr.block_size * tr.type_size * 2, 512, row.data(),
                             name);
        QVERIFY2(std::memcmp(row.data(), want.f32() + 2 * 512, 512 * 4) == 0, name.c_str());
    }
}

void tst_gguf::dequantize_refuses_other_types() {
    const std::string path = data_dir() + "quants.gguf";
    const qls::gguf_file f = qls::gguf_file::open(path);
    const qls::gguf_tensor_info* t = f.find_tensor("t_q5_0");
    QVERIFY(t);
    // Q5_0 dequantizes (the merged GGUF export writes it where llama.cpp's quantizer falls back to it); a type this
    // build does not dequantize (Q5_1, same block size) is refused with its name.
    std::vector<float> out(size_t(t->numel()));
    f.dequantize(*t, out.data());
    std::vector<std::byte> q5_1(size_t(qls::ggml_traits(7).type_size), std::byte{0});
    QCOMPARE(expect_error([&] { qls::gguf_dequantize(qls::ggml_type::q5_1, q5_1.data(), 32, out.data(), path + " t"); },
                          error_code::unsupported, {path, "Q5_1"}),
             std::string());
}

void tst_gguf::metadata_accessors() {
    const std::string path = data_dir() + "tiny_llama.gguf";
    const qls::gguf_file f = qls::gguf_file::open(path);
    QCOMPARE(f.version(), 3u);
    QCOMPARE(f.alignment(), uint64_t(32));
    QCOMPARE(f.get_string("general.architecture"), std::string("llama"));
    QCOMPARE(f.get_uint32("llama.block_count"), 2u);
    QCOMPARE(f.get_int("llama.feed_forward_length"), int64_t(256));
    QCOMPARE(f.get_float("llama.attention.layer_norm_rms_epsilon"), double(1e-5f));
    QCOMPARE(f.get_float("llama.rope.freq_base"), 50000.0);
    QCOMPARE(f.get_bool("tokenizer.ggml.add_bos_token"), false);
    QCOMPARE(f.type("tokenizer.ggml.tokens"), qls::gguf_value_type::array);
    QCOMPARE(f.array_type("tokenizer.ggml.tokens"), qls::gguf_value_type::string);
    QCOMPARE(f.array_size("tokenizer.ggml.tokens"), uint64_t(300));
    QCOMPARE(f.get_int_array("tokenizer.ggml.token_type").size(), size_t(300));
    QCOMPARE(f.show("llama.block_count"), std::string("2"));
    QCOMPARE(f.show("tokenizer.ggml.tokens"), std::string("[300 string values]"));
    QCOMPARE(f.tensors().size(), size_t(20));
    QCOMPARE(f.tensors().front().name, std::string("token_embd.weight"));
    QCOMPARE(f.tensors().front().dims, (std::vector<int64_t>{64, 300}));
    // Errors name the file, the key, what was expected and what is there.
    QCOMPARE(expect_error([&] { (void)f.get_string("llama.block_count"); }, error_code::format,
                          {path, "'llama.block_count'", "must be a string, found uint32"}),
             std::string());
    QCOMPARE(expect_error([&] { (void)f.get_uint32("general.architecture"); }, error_code::format,
                          {path, "'general.architecture'", "unsigned integer", "found string"}),
             std::string());
    QCOMPARE(expect_error([&] { (void)f.get_float_array("tokenizer.ggml.tokens"); }, error_code::format,
                          {path, "'tokenizer.ggml.tokens'", "array of float32", "found array of string"}),
             std::string());
    QCOMPARE(expect_error([&] { (void)f.get_bool("llama.no_such_key"); }, error_code::format,
                          {path, "'llama.no_such_key'", "is missing", "bool"}),
             std::string());
    QCOMPARE(expect_error([&] { (void)f.get_string_array("tokenizer.ggml.token_type"); }, error_code::format,
                          {path, "array of strings", "found array of int32"}),
             std::string());
}

void tst_gguf::tiny_llama_config() {
    const std::unique_ptr<qls::model_source> src = qls::open_model_source(data_dir() + "tiny_llama.gguf");
    const qls::model_config& c = src->config();
    QCOMPARE(c.model_type, std::string("llama"));
    QCOMPARE(c.num_layers, 2);
    QCOMPARE(c.hidden_size, 64);
    QCOMPARE(c.intermediate_size, 256);
    QCOMPARE(c.num_heads, 4);
    QCOMPARE(c.num_kv_heads, 2);
    QCOMPARE(c.head_dim, 16);
    QCOMPARE(c.vocab_size, 300);
    QCOMPARE(c.max_position_embeddings, 512);
    QCOMPARE(c.rope.theta, 50000.0);
    QCOMPARE(c.rms_norm_eps, double(1e-5f));
    QVERIFY(c.tie_word_embeddings);
    QCOMPARE(c.bos_token_id, 1);
    QCOMPARE(c.eos_token_ids, std::vector<int>{2});
    QCOMPARE(c.torch_dtype, std::string("GGUF Q4_1"));
}

void tst_gguf::tiny_llama_weights_bit_exact() {
    const std::string path = data_dir() + "tiny_llama.gguf";
    const std::unique_ptr<qls::model_source> src = qls::open_gguf_source(path);
    const qls::safetensors_file expected = qls::safetensors_file::open(data_dir() + "tiny_llama.expected.safetensors");
    // Every weight, named and shaped as Hugging Face has it, with the stored type.
    QCOMPARE(src->weights().size(), expected.entries().size());
    const std::map<std::string, std::string> stored = {
        {"model.embed_tokens.weight", "Q8_0"},
        {"model.layers.0.self_attn.q_proj.weight", "Q4_1"},
        {"model.layers.0.self_attn.k_proj.weight", "Q8_0"},
        {"model.layers.0.self_attn.o_proj.weight", "F16"},
        {"model.layers.0.mlp.gate_proj.weight", "BF16"},
        {"model.layers.0.mlp.down_proj.weight", "Q4_K"},
        {"model.layers.1.self_attn.k_proj.weight", "Q4_1"},
        {"model.layers.1.mlp.down_proj.weight", "Q5_K"},
        {"model.norm.weight", "F32"},
    };
    int checked = 0;
    for (const qls::weight_info& w : src->weights()) {
        const qls::safetensors_entry* e = expected.find(w.name);
        QVERIFY2(e, w.name.c_str());
        QCOMPARE(w.shape, e->shape);
        QVERIFY(w.stored_bytes > 0);
        if (auto it = stored.find(w.name); it != stored.end()) {
            QCOMPARE(w.stored, it->second);
            ++checked;
        }
        QVERIFY(src->has(w.name));
        // The values gguf-py's dequantize gives, q/k rows un-permuted: bit for bit.
        std::vector<float> got(size_t(qls::shape_numel(w.shape)));
        src->read_f32(w.name, w.shape, got.data());
        const qls::tensor want = expected.read(w.name);
        QVERIFY2(std::memcmp(got.data(), want.f32(), got.size() * 4) == 0, w.name.c_str());
    }
    QCOMPARE(checked, int(stored.size()));
    QCOMPARE(src->weights()[1].name, std::string("model.layers.0.input_layernorm.weight"));
    QVERIFY(!src->has("lm_head.weight"));
    // A shape the config does not give, and an absent weight.
    std::vector<float> buf(64 * 64);
    QCOMPARE(expect_error(
                 [&] {
                     src->read_f32("model.layers.0.self_attn.q_proj.weight", {32, 128}, buf.data());
                 },
                 error_code::shape_mismatch, {path, "blk.0.attn_q.weight", "(64, 64)", "(32, 128)"}),
             std::string());
    QCOMPARE(expect_error(
                 [&] {
                     src->read_f32("lm_head.weight", {300, 64}, buf.data());
                 },
                 error_code::format, {path, "'lm_head.weight'"}),
             std::string());
}

void tst_gguf::tiny_llama_loads_and_decodes() {
    const std::unique_ptr<qls::model_source> src = qls::open_model_source(data_dir() + "tiny_llama.gguf");
    const qls::llama_model m = qls::llama_model::load(*src);
    const qls::safetensors_file expected = qls::safetensors_file::open(data_dir() + "tiny_llama.expected.safetensors");
    // The loader reads each weight through the source: the q and k projections in rotate_half row order.
    const qls::tensor wq = expected.read("model.layers.1.self_attn.q_proj.weight");
    const qls::tensor wk = expected.read("model.layers.0.self_attn.k_proj.weight");
    QVERIFY(std::memcmp(m.params.layers[1].wq.data(), wq.f32(), size_t(wq.numel()) * 4) == 0);
    QVERIFY(std::memcmp(m.params.layers[0].wk.data(), wk.f32(), size_t(wk.numel()) * 4) == 0);
    QVERIFY(m.params.lm_head.empty());
    QCOMPARE(m.inv_freq.size(), size_t(8));
    qls::llama_decoder dec(m, 16);
    for (int id : {1, 40, 77, 260, 2}) {
        const std::vector<float>& logits = dec.step(id);
        QCOMPARE(logits.size(), size_t(300));
        for (float x : logits) QVERIFY(std::isfinite(x));
    }
}

void tst_gguf::tiny_llama_vocab_and_template() {
    const std::string path = data_dir() + "tiny_llama.gguf";
    const qls::gguf_vocab v = qls::read_gguf_vocab(qls::gguf_file::open(path));
    QCOMPARE(v.origin, path);
    QCOMPARE(v.model, std::string("gpt2"));
    QCOMPARE(v.pre, std::string("smollm"));
    QCOMPARE(v.tokens.size(), size_t(300));
    QCOMPARE(v.tokens[1], std::string("<|im_start|>"));
    QCOMPARE(v.tokens[3 + 'A'], std::string("A"));        // byte-level symbols in byte order
    QCOMPARE(v.tokens[3 + ' '], std::string("\xC4\xA0")); // "Ġ"
    QCOMPARE(v.token_types.size(), size_t(300));
    QCOMPARE(v.token_types[0], 3);
    QCOMPARE(v.token_types[100], 1);
    QCOMPARE(v.token_types[299], 4);
    QVERIFY(v.scores.empty());
    QCOMPARE(v.merges.size(), size_t(40));
    QCOMPARE(v.merges[0], std::string("\xC4\xA0 t"));
    QCOMPARE(v.bos_id, 1);
    QCOMPARE(v.eos_id, 2);
    QCOMPARE(v.unk_id, 0);
    QCOMPARE(v.pad_id, 2);
    QVERIFY(v.add_bos.has_value() && !*v.add_bos);
    QVERIFY(!v.add_eos.has_value());
    const std::unique_ptr<qls::model_source> src = qls::open_gguf_source(path);
    const std::optional<qls::chat_template_text> t = src->chat_template();
    QVERIFY(t.has_value());
    QCOMPARE(t->origin, std::string("GGUF metadata tokenizer.chat_template"));
    QVERIFY(t->text.rfind("{% for message in messages %}", 0) == 0);

    // Token lists that disagree, and special ids outside the vocabulary.
    gguf_parts p = llama_metadata();
    p.set(kv_raw("tokenizer.ggml.scores", ARR, le32(F32) + le64(3) + std::string(12, '\0')));
    std::string bad = write(p.build());
    QCOMPARE(expect_error([&] { (void)qls::read_gguf_vocab(qls::gguf_file::open(bad)); }, error_code::format,
                          {bad, "tokenizer.ggml.scores", "3 entries", "8"}),
             std::string());
    p = llama_metadata();
    p.set(kv_u32("tokenizer.ggml.eos_token_id", 8));
    bad = write(p.build());
    QCOMPARE(expect_error([&] { (void)qls::read_gguf_vocab(qls::gguf_file::open(bad)); }, error_code::format,
                          {bad, "tokenizer.ggml.eos_token_id", "8", "outside the vocabulary"}),
             std::string());
}

void tst_gguf::non_finite_weight_refused() {
    std::string bytes = read_all(data_dir() + "tiny_llama.gguf");
    const qls::gguf_file f = qls::gguf_file::open(data_dir() + "tiny_llama.gguf");
    const qls::gguf_tensor_info* t = f.find_tensor("blk.1.ffn_norm.weight");
    QVERIFY(t && t->type == qls::ggml_type::f32);
    const size_t at = bytes.find(std::string(reinterpret_cast<const char*>(f.tensor_data(*t)), 16));
    QVERIFY(at != std::string::npos);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(bytes.data() + at + 4 * 5, &nan, 4);
    const std::string path = write(bytes);
    const std::unique_ptr<qls::model_source> src = qls::open_gguf_source(path);
    std::vector<float> out(64);
    QCOMPARE(expect_error([&] { src->read_f32("model.layers.1.post_attention_layernorm.weight", {64}, out.data()); },
                          error_code::format, {path, "blk.1.ffn_norm.weight", "non-finite", "element 5"}),
             std::string());
}

void tst_gguf::valid_hand_made_files() {
    // The writer here makes files the reader accepts: every scalar type, nested arrays, a custom alignment, GGUF v2.
    gguf_parts p = one_tensor(8 /*Q8_0*/, {64, 2}, 4 * 34);
    p.version = 2;
    p.alignment = 64;
    p.kvs.push_back(kv_u32("general.alignment", 64));
    p.kvs.push_back(kv_raw("x.u8", U8, "\x07"));
    p.kvs.push_back(kv_raw("x.i16", I16, le32(0xFFFE).substr(0, 2)));
    p.kvs.push_back(kv_raw("x.i64", I64, le64(uint64_t(-5))));
    p.kvs.push_back(kv_raw("x.f64", F64, le64(0x3FF8000000000000ull))); // 1.5
    p.kvs.push_back(kv_raw("x.nested", ARR,
                           le32(ARR) + le64(2) + le32(U8) + le64(1) + "a" + le32(STR) + le64(1) + gstr("z")));
    const std::string path = write(p.build());
    const qls::gguf_file f = qls::gguf_file::open(path);
    QCOMPARE(f.version(), 2u);
    QCOMPARE(f.alignment(), uint64_t(64));
    QCOMPARE(f.get_int("x.u8"), int64_t(7));
    QCOMPARE(f.get_int("x.i16"), int64_t(-2));
    QCOMPARE(f.get_int("x.i64"), int64_t(-5));
    QCOMPARE(f.get_float("x.f64"), 1.5);
    QCOMPARE(f.array_size("x.nested"), uint64_t(2));
    QCOMPARE(f.tensors().size(), size_t(1));
    QCOMPARE(f.tensors()[0].bytes, uint64_t(4 * 34));
    QCOMPARE(expect_error([&] { (void)f.get_uint32("x.i64"); }, error_code::format, {path, "'x.i64'", "-5"}),
             std::string());
}

void tst_gguf::malformed_headers_and_metadata() {
    const std::string good = llama_metadata().build();
    QVERIFY(qls::gguf_file::open(write(good)).has("llama.block_count"));
    auto patched = [&](size_t at, const std::string& bytes) {
        std::string s = good;
        s.replace(at, bytes.size(), bytes);
        return s;
    };
    std::vector<std::pair<std::string, std::string>> failures;
    auto check = [&](const char* what, const std::string& r) {
        if (!r.empty()) failures.push_back({what, r});
    };
    check("bad magic", open_fails(patched(0, "GGML"), error_code::format, {"magic", "not a GGUF file"}));
    check("version 1", open_fails(patched(4, le32(1)), error_code::unsupported, {"version 1"}));
    check("version 4", open_fails(patched(4, le32(4)), error_code::format, {"version 4"}));
    check("huge tensor count",
          open_fails(patched(8, le64(uint64_t(1) << 60)), error_code::format, {"1152921504606846976 tensors"}));
    check("huge kv count", open_fails(patched(16, le64(~uint64_t(0))), error_code::format,
                                      {"metadata entries", "18446744073709551615"}));
    check("more kvs than written", open_fails(patched(16, le64(14)), error_code::format, {"metadata entry 13"}));
    // The first key ("general.architecture") starts at byte 24: its length, then its type at 24 + 8 + 20.
    check("key length past the end",
          open_fails(patched(24, le64(uint64_t(1) << 40)), error_code::format, {"past the end", "metadata entry 0"}));
    check("unknown value type",
          open_fails(patched(52, le32(13)), error_code::format, {"'general.architecture'", "value type 13", "0-12"}));
    // Its value: a string whose length runs past the end.
    check("string value past the end",
          open_fails(patched(56, le64(good.size())), error_code::format, {"'general.architecture'", "past the end"}));
    gguf_parts p = llama_metadata();
    p.kvs.push_back(kv_u32("llama.block_count", 3));
    check("duplicate key", open_fails(p.build(), error_code::format, {"'llama.block_count'", "more than once"}));
    // Arrays: nested too deep, an element type outside 0-12, a count larger than the file.
    std::string deep = le32(U8) + le64(0);
    for (int i = 0; i < 6; ++i) deep = le32(ARR) + le64(1) + deep;
    p = llama_metadata();
    p.kvs.push_back(kv_raw("x.deep", ARR, deep));
    check("deep nested arrays", open_fails(p.build(), error_code::format, {"'x.deep'", "nests arrays"}));
    p = llama_metadata();
    p.kvs.push_back(kv_raw("x.arr", ARR, le32(99) + le64(1) + "z"));
    check("unknown array element type", open_fails(p.build(), error_code::format, {"'x.arr'", "value type 99"}));
    p = llama_metadata();
    p.kvs.push_back(kv_raw("x.big", ARR, le32(STR) + le64(uint64_t(1) << 61)));
    check("huge array count",
          open_fails(p.build(), error_code::format, {"'x.big'", "2305843009213693952 array elements"}));
    p = llama_metadata();
    p.kvs.push_back(kv_raw("x.str", ARR, le32(STR) + le64(2) + gstr("ok") + le64(1000) + "z"));
    check("array string past the end", open_fails(p.build(), error_code::format, {"'x.str'", "past the end"}));
    p = llama_metadata();
    p.kvs.push_back(kv_u32("general.alignment", 48));
    check("alignment not a power of two",
          open_fails(p.build(), error_code::format, {"'general.alignment'", "48", "power of two"}));
    p = llama_metadata();
    p.kvs.push_back(kv_str("general.alignment", "32"));
    check("alignment a string", open_fails(p.build(), error_code::format, {"'general.alignment'", "found string"}));
    p = llama_metadata();
    p.kvs.push_back(kv_u32(std::string(70000, 'k'), 1));
    check("key of 70000 bytes", open_fails(p.build(), error_code::format, {"metadata entry 13", "70000 bytes"}));
    check("shorter than a header", open_fails("GGUF\x03", error_code::format, {"shorter than a GGUF header"}));
    check("empty file", open_fails("", error_code::format, {"0 bytes"}));
    for (const auto& [what, r] : failures) qWarning("%s: %s", what.c_str(), r.c_str());
    QVERIFY(failures.empty());
    QCOMPARE(expect_error([] { (void)qls::gguf_file::open("/nonexistent/x.gguf"); }, error_code::io,
                          {"/nonexistent/x.gguf", "cannot open"}),
             std::string());
}

void tst_gguf::malformed_tensor_infos() {
    std::vector<std::pair<std::string, std::string>> failures;
    auto check = [&](const char* what, const std::string& r) {
        if (!r.empty()) failures.push_back({what, r});
    };
    gguf_parts p = one_tensor(0, {4, 4}, 64);
    QCOMPARE(qls::gguf_file::open(write(p.build())).tensors()[0].bytes, uint64_t(64));
    p.tensors[0].type = 4; // Q4_2, removed from the format
    check("unknown ggml type", open_fails(p.build(), error_code::format, {"'w'", "ggml type 4"}));
    p = one_tensor(0, {4, 4}, 64);
    p.tensors[0].type = 1000;
    check("unknown ggml type 1000", open_fails(p.build(), error_code::format, {"'w'", "ggml type 1000"}));
    p = one_tensor(0, {2, 2, 2, 2, 2}, 128);
    check("n_dims 5", open_fails(p.build(), error_code::format, {"'w'", "5 dimensions"}));
    p = one_tensor(0, {}, 4);
    check("n_dims 0", open_fails(p.build(), error_code::format, {"'w'", "0 dimensions"}));
    p = one_tensor(0, {4, 0}, 0);
    check("zero dimension", open_fails(p.build(), error_code::format, {"'w'", "dimension 1 = 0", "positive"}));
    p = one_tensor(0, {uint64_t(1) << 32, uint64_t(1) << 32}, 0);
    check("dims product overflow", open_fails(p.build(), error_code::format, {"'w'", "overflows"}));
    p = one_tensor(0, {uint64_t(1) << 40, uint64_t(1) << 20}, 0);
    check("huge tensor data", open_fails(p.build(), error_code::format, {"'w'", "past the end"}));
    p = one_tensor(12 /*Q4_K*/, {128, 2}, 144);
    check("ne0 not a block multiple", open_fails(p.build(), error_code::format, {"'w'", "128", "Q4_K block size 256"}));
    p = one_tensor(0, {4, 4}, 96);
    p.tensors[0].offset = 8;
    check("misaligned offset", open_fails(p.build(), error_code::format, {"'w'", "offset 8", "alignment 32"}));
    p = one_tensor(0, {4, 4}, 64);
    p.tensors[0].offset = 32;
    check("data past the end", open_fails(p.build(), error_code::format, {"'w'", "past the end", "truncated"}));
    p = one_tensor(0, {16}, 128);
    p.tensors.push_back({"v", {16}, 0, 32});
    check("overlapping data", open_fails(p.build(), error_code::format, {"'w'", "'v'", "overlap"}));
    p = one_tensor(0, {8}, 64);
    p.tensors.push_back({"w", {8}, 0, 32});
    check("duplicate tensor", open_fails(p.build(), error_code::format, {"'w'", "more than once"}));
    p = one_tensor(0, {8}, 32);
    p.tensors[0].name.clear();
    check("empty tensor name", open_fails(p.build(), error_code::format, {"tensor 0", "empty name"}));
    p = one_tensor(0, {8}, 32);
    p.tensors[0].name = std::string(70000, 't');
    check("tensor name of 70000 bytes", open_fails(p.build(), error_code::format, {"tensor 0", "70000 bytes"}));
    p = one_tensor(0, {8}, 32);
    p.n_tensors = 2;
    check("more tensors than written", open_fails(p.build(), error_code::format, {"tensor 1"}));
    for (const auto& [what, r] : failures) qWarning("%s: %s", what.c_str(), r.c_str());
    QVERIFY(failures.empty());
}

void tst_gguf::truncated_files() {
    // The real fixture cut at many points: inside the header, a key, a string array, the tensor infos, the data.
    const std::string good = read_all(data_dir() + "tiny_llama.gguf");
    QVERIFY(good.size() > 100000);
    const qls::gguf_file f = qls::gguf_file::open(data_dir() + "tiny_llama.gguf");
    const uint64_t last = f.tensors().back().offset + f.tensors().back().bytes;
    std::vector<size_t> cuts = {0, 3, 4, 10, 23, 24, 30, 60, 200, 1000, 3000, 5000, 6500, 7000, 7100};
    for (size_t at = 7104; at < good.size(); at += 9973) cuts.push_back(at);
    cuts.push_back(good.size() - 1);
    int n = 0;
    for (size_t at : cuts) {
        const std::string path = write(good.substr(0, at));
        const std::string r = expect_error([&] { (void)qls::gguf_file::open(path); }, error_code::format, {path});
        QVERIFY2(r.empty(), qPrintable(QString("cut at %1: %2").arg(at).arg(QString::fromStdString(r))));
        try {
            (void)qls::gguf_file::open(path);
        } catch (const qls::error& e) {
            const std::string m = e.what();
            QVERIFY2(m.find("truncated") != std::string::npos || m.find("past the end") != std::string::npos ||
                         m.find("shorter than") != std::string::npos,
                     m.c_str());
        }
        ++n;
    }
    QVERIFY(n > 20);
    QVERIFY(last <= good.size());
}

void tst_gguf::config_errors() {
    std::vector<std::pair<std::string, std::string>> failures;
    auto check = [&](const char* what, const std::string& r) {
        if (!r.empty()) failures.push_back({what, r});
    };
    {
        const std::unique_ptr<qls::model_source> src = qls::open_gguf_source(write(llama_metadata().build()));
        QCOMPARE(src->config().head_dim, 16);
        QCOMPARE(src->config().vocab_size, 8);
        QVERIFY(src->config().tie_word_embeddings);
        QVERIFY(!src->chat_template());
    }
    for (const char* key :
         {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
          "llama.context_length", "llama.attention.layer_norm_rms_epsilon", "general.architecture"}) {
        gguf_parts p = llama_metadata();
        p.erase(key);
        check(key, source_fails(p.build(), error_code::format, {std::string("'") + key + "'", "is missing"}));
    }
    gguf_parts p = llama_metadata();
    p.set(kv_str("llama.embedding_length", "64"));
    check("wrong type string", source_fails(p.build(), error_code::format,
                                            {"'llama.embedding_length'", "unsigned integer", "found string"}));
    p = llama_metadata();
    p.set(kv_u32("llama.attention.layer_norm_rms_epsilon", 0));
    check("eps zero",
          source_fails(p.build(), error_code::config, {"llama.attention.layer_norm_rms_epsilon", "positive"}));
    p = llama_metadata();
    p.set(kv_str("llama.rope.freq_base", "1e4"));
    check("wrong type float", source_fails(p.build(), error_code::format, {"'llama.rope.freq_base'", "found string"}));
    p = llama_metadata();
    p.set(kv_raw("llama.attention.head_count", I32, le32(uint32_t(-4))));
    check("negative head count", source_fails(p.build(), error_code::format, {"'llama.attention.head_count'", "-4"}));
    p = llama_metadata();
    p.set(kv_u32("llama.attention.head_count", 6));
    check("heads do not divide hidden",
          source_fails(p.build(), error_code::config, {"llama.attention.head_count", "must divide"}));
    p = llama_metadata();
    p.set(kv_u32("llama.attention.head_count_kv", 3));
    check("kv heads do not divide heads",
          source_fails(p.build(), error_code::config, {"llama.attention.head_count_kv", "must divide"}));
    p = llama_metadata();
    p.set(kv_u32("llama.block_count", 5000));
    check("too many layers", source_fails(p.build(), error_code::config, {"llama.block_count", "5000"}));
    p = llama_metadata();
    p.set(kv_u32("tokenizer.ggml.bos_token_id", 8));
    check("bos outside vocab", source_fails(p.build(), error_code::config, {"tokenizer.ggml.bos_token_id", "outside"}));
    p = llama_metadata();
    p.erase("tokenizer.ggml.tokens");
    check("no vocabulary", source_fails(p.build(), error_code::format, {"'llama.vocab_size'", "is missing"}));
    p = llama_metadata();
    p.set(kv_str("general.architecture", "phi3"));
    check("other architecture",
          source_fails(p.build(), error_code::unsupported, {"\"phi3\"", "not supported yet", "llama"}));
    p = llama_metadata();
    p.set(kv_str("llama.rope.scaling.type", "yarn"));
    check("yarn", source_fails(p.build(), error_code::unsupported, {"llama.rope.scaling.type", "yarn"}));
    p = llama_metadata();
    p.set(kv_u32("llama.rope.dimension_count", 8));
    check("partial rotary", source_fails(p.build(), error_code::unsupported, {"llama.rope.dimension_count", "8"}));
    p = llama_metadata();
    p.set(kv_u32("llama.attention.key_length", 32));
    p.set(kv_u32("llama.attention.value_length", 16));
    check("key/value sizes differ", source_fails(p.build(), error_code::unsupported, {"key_length", "value_length"}));
    // Linear rope scaling is read.
    p = llama_metadata();
    p.set(kv_str("llama.rope.scaling.type", "linear"));
    p.set(kv_f32("llama.rope.scaling.factor", 4.0f));
    {
        const std::unique_ptr<qls::model_source> src = qls::open_gguf_source(write(p.build()));
        QCOMPARE(src->config().rope.type, std::string("linear"));
        QCOMPARE(src->config().rope.factor, 4.0);
    }
    p.erase("llama.rope.scaling.factor");
    check("linear without factor",
          source_fails(p.build(), error_code::format, {"'llama.rope.scaling.factor'", "missing"}));
    for (const auto& [what, r] : failures) qWarning("%s: %s", what.c_str(), r.c_str());
    QVERIFY(failures.empty());
}

void tst_gguf::llama3_rope_freqs() {
    // rope_freqs.weight as convert_hf_to_gguf.py writes it for rope_scaling {factor 8, low 1, high 4, original 8192}:
    // with theta 500000 and head size 16 the 8 frequencies fall in all three bands (1, smoothed, factor).
    const double theta = 500000.0;
    auto factors = [&](double factor) {
        std::vector<float> rf;
        for (int i = 0; i < 8; ++i) {
            const float freq = 1.0f / std::pow(float(theta), float(2 * i) / 16.0f);
            const double wavelen = 2 * M_PI / double(freq);
            const double smooth = (8192.0 / wavelen - 1.0) / 3.0;
            rf.push_back(wavelen < 2048   ? 1.0f
                         : wavelen > 8192 ? float(factor)
                                          : float(1 / ((1 - smooth) / factor + smooth)));
        }
        return rf;
    };
    auto file = [&](const std::vector<float>& rf) {
        gguf_parts p = llama_metadata();
        p.set(kv_f32("llama.rope.freq_base", float(theta)));
        p.tensors = {{"rope_freqs.weight", {uint64_t(rf.size())}, 0, 0}};
        p.data.assign(reinterpret_cast<const char*>(rf.data()), rf.size() * 4);
        return p.build();
    };
    const std::vector<float> rf = factors(8.0);
    QVERIFY(rf[0] == 1.0f && rf[7] == 8.0f && rf[4] > 1.0f && rf[4] < 8.0f);
    const std::unique_ptr<qls::model_source> src = qls::open_gguf_source(write(file(rf)));
    const qls::model_config& c = src->config();
    QCOMPARE(c.rope.type, std::string("llama3"));
    QCOMPARE(c.rope.factor, 8.0);
    QCOMPARE(c.rope.low_freq_factor, 1.0);
    QCOMPARE(c.rope.high_freq_factor, 4.0);
    QCOMPARE(c.rope.original_max_position_embeddings, 8192);
    // The engine's llama3 frequencies are llama.cpp's: base frequency / factor.
    const std::vector<float> inv = qls::rope_inv_freq(c);
    QCOMPARE(inv.size(), size_t(8));
    for (int i = 0; i < 8; ++i) {
        const double base = std::pow(theta, -2.0 * i / 16.0);
        QVERIFY2(std::fabs(double(inv[size_t(i)]) - base / rf[size_t(i)]) <= 1e-5 * base,
                 qPrintable(QString("frequency %1: %2 vs %3").arg(i).arg(inv[size_t(i)]).arg(base / rf[size_t(i)])));
    }
    // Factors that are not Llama 3's formula, and a tensor of the wrong size, are refused.
    std::vector<float> odd = rf;
    odd[4] *= 1.5f;
    QCOMPARE(source_fails(file(odd), error_code::unsupported, {"rope_freqs.weight", "element 4"}), std::string());
    QCOMPARE(source_fails(file(std::vector<float>(rf.begin(), rf.begin() + 4)), error_code::format,
                          {"rope_freqs.weight", "must be 8 F32 values"}),
             std::string());
    // All ones: no scaling.
    const std::unique_ptr<qls::model_source> flat = qls::open_gguf_source(write(file(std::vector<float>(8, 1.0f))));
    QCOMPARE(flat->config().rope.type, std::string("default"));
}

void tst_gguf::cli_info_describes_gguf() {
    const std::string path = data_dir() + "tiny_llama.gguf";
    const testutil::cli_result r = testutil::run_cli({"info", "--model", QString::fromStdString(path)});
    QVERIFY2(r.out.contains("format       gguf"), qPrintable(r.out + r.err));
    QVERIFY(r.out.contains("family       llama"));
    QVERIFY(r.out.contains("layers       2"));
    QVERIFY(r.out.contains("heads        4 query, 2 key/value, head size 16"));
    QVERIFY(r.out.contains("tensors      20"));
    QVERIFY(r.out.contains("stored as    F32 x6, Q4_1 x4, Q8_0 x3"));
    QVERIFY(r.out.contains("template     GGUF metadata tokenizer.chat_template (198 characters)"));
    // The tokenizer line: the vocabulary the metadata describes, or (exit 1) the reason it cannot be built.
    if (r.exit_code == 0) {
        QVERIFY2(r.out.contains("tok. kind    GGUF metadata tokenizer.ggml.*"), qPrintable(r.out));
        QVERIFY(r.out.contains("(300 pieces, BOS 1, EOS 2)"));
    } else {
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.out.contains("tokenizer    not usable: " + QString::fromStdString(path)), qPrintable(r.out));
    }
    // A Hugging Face directory keeps its description, with the format and the tokenizer's kind added.
    QLS_REQUIRE_MODEL();
    const testutil::cli_result h = testutil::run_cli({"info", "--model",
                                                      QString::fromStdString(testutil::model_dir())});
    QCOMPARE(h.exit_code, 0);
    QVERIFY(h.out.contains("format       safetensors"));
    QVERIFY(h.out.contains("tokenizer    " + QString::fromStdString(testutil::model_dir()) + "/tokenizer.model"));
    QVERIFY(h.out.contains("tok. kind    tokenizer.model"));
    QVERIFY(h.out.contains("template     none"));
    // A file that is not a model.
    const testutil::cli_result bad = testutil::run_cli({"info", "--model", QString::fromStdString(write("GGUFxx"))});
    QVERIFY(bad.exit_code != 0);
    QVERIFY2(bad.err.contains("shorter than a GGUF header"), qPrintable(bad.err));
}

QTEST_GUILESS_MAIN(tst_gguf)
#include "tst_gguf.moc"
