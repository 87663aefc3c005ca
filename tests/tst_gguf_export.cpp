// GGUF writer and exports: round trip through the reader, quantizers against gguf-py and their error bounds, the
// adapter and merged GGUFs of a trained run (permutation, tokenizer, metadata), Modelfiles, and bad inputs.
#include "testutil.h"

#include "qls/architecture.h"
#include "qls/dtype.h"
#include "qls/file_io.h"
#include "qls/gguf.h"
#include "qls/gguf_writer.h"
#include "qls/lora.h"
#include "qls/model_source.h"
#include "qls/peft.h"
#include "qls/run_catalog.h"
#include "qls/run_export.h"
#include "qls/safetensors.h"
#include "qls/tokenizer.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <QTemporaryDir>

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sys/resource.h>

namespace fs = std::filesystem;
using qls::error_code;
using qls::ggml_type;
using testutil::expect_error;

namespace {

std::string data_dir() { return std::string(QLS_SOURCE_DIR) + "/tests/data/gguf_export/"; }

std::vector<float> gaussian(size_t n, uint32_t seed, float sd = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.f, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

std::vector<std::byte> quantized(ggml_type t, const std::vector<float>& x) {
    const qls::ggml_type_traits tr = qls::ggml_traits(uint32_t(t));
    std::vector<std::byte> q(x.size() / size_t(tr.block_size) * size_t(tr.type_size));
    qls::gguf_quantize(t, x.data(), int64_t(x.size()), q.data(), "test");
    return q;
}

float half_at(const std::byte* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return qls::f16_to_f32(h);
}

// Files under dir whose names contain `part` (temporary files and staging folders left behind).
std::vector<std::string> leftovers(const std::string& dir, const std::string& part) {
    std::vector<std::string> r;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
        if (it->path().filename().string().find(part) != std::string::npos) r.push_back(it->path().string());
    return r;
}

} // namespace

class tst_gguf_export : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    std::string m_run;        // a 3-step CPU run of stories260K with LoRA on every projection
    std::string m_checkpoint; // its checkpoint
    qls::lora_weights<float> m_lora;
    qls::model_config m_cfg;

    std::string tmp(const std::string& name) const { return (m_tmp.path() + "/").toStdString() + name; }

private slots:
    void initTestCase();
    void writer_round_trip();
    void writer_refuses_misuse();
    void quantizers_match_gguf_py();
    void quant_error_bounds();
    void q4_k_m_tensor_types();
    void adapter_gguf();
    void merged_gguf_round_trip();
    void merged_quantized_within_format_error();
    void bpe_tokenizer_as_llama_cpp_converts_it();
    void ollama_modelfile_and_commands();
    void bad_inputs();
    void disk_full_leaves_nothing();
    void cli_export();
};

void tst_gguf_export::initTestCase() {
    QLS_REQUIRE_MODEL();
    QVERIFY(m_tmp.isValid());
    qls::train_config cfg;
    cfg.name = "ggufrun";
    cfg.runs_dir = tmp("runs");
    cfg.model = testutil::model_dir();
    cfg.train_file = testutil::pip_train();
    cfg.lora.rank = 4;
    cfg.lora.alpha = 8;
    cfg.lora.dropout = 0;
    cfg.lora.targets = qls::all_lora_targets();
    cfg.optimizer = qls::optimizer_kind::adamw_32bit;
    cfg.learning_rate = 0.02f;
    cfg.seq_len = 64;
    cfg.micro_batch = 2;
    cfg.grad_accum = 1;
    cfg.max_steps = 3;
    cfg.checkpoint_every = 0;
    cfg.gradient_checkpointing = false;
    cfg.backend = "cpu";
    auto t = qls::trainer::create(cfg);
    QCOMPARE(t->run(), qls::train_outcome::completed);
    m_run = t->run_dir();
    m_checkpoint = qls::find_checkpoint(m_run);
    m_cfg = qls::load_model_config(testutil::model_dir() + "/config.json");
    m_lora = qls::load_peft(m_checkpoint, m_cfg);
    // trained: some B is no longer zero
    float bmax = 0;
    for (float b : m_lora.at(0, qls::lora_target::q).b) bmax = std::max(bmax, std::fabs(b));
    QVERIFY(bmax > 0);
}

// Every metadata type and several tensor types written, read back by the reader with identical values and bytes;
// the predicted size is the file's size; data offsets are aligned.
void tst_gguf_export::writer_round_trip() {
    qls::gguf_metadata md;
    md.set_string("general.architecture", "llama");
    md.set_u8("t.u8", 200);
    md.set_i8("t.i8", -100);
    md.set_u16("t.u16", 60000);
    md.set_i16("t.i16", -30000);
    md.set_u32("t.u32", 4000000000u);
    md.set_i32("t.i32", -2000000000);
    md.set_u64("t.u64", 1ull << 60);
    md.set_i64("t.i64", -(1ll << 60));
    md.set_f32("t.f32", 0.125f);
    md.set_f64("t.f64", 1e-300);
    md.set_bool("t.bool", true);
    md.set_string("t.utf8", "héllo ▁world");
    md.set_string_array("t.strings", {"a", "", "<|im_end|>"});
    md.set_i32_array("t.ints", {1, -2, 3});
    md.set_f32_array("t.floats", {0.5f, -1.5f});
    md.set_u32("t.u32", 7); // replaced in place
    const std::vector<float> a = gaussian(3 * 64, 1), b = gaussian(2 * 256, 2);
    const std::vector<qls::gguf_tensor_spec> specs = {
        {"a.f32", {64, 3}, ggml_type::f32},    {"b.q8_0", {256, 2}, ggml_type::q8_0},
        {"b.q4_k", {256, 2}, ggml_type::q4_k}, {"a.f16", {64, 3}, ggml_type::f16},
        {"one", {1}, ggml_type::f32},
    };
    const std::vector<std::vector<std::byte>> data = {quantized(ggml_type::f32, a), quantized(ggml_type::q8_0, b),
                                                      quantized(ggml_type::q4_k, b), quantized(ggml_type::f16, a),
                                                      quantized(ggml_type::f32, {3.f})};
    const std::string path = tmp("round.gguf");
    {
        qls::gguf_stream_writer w(path, md, specs);
        for (const auto& d : data) {
            // in two pieces, as a streamed tensor may come
            const std::string_view all(reinterpret_cast<const char*>(d.data()), d.size());
            w.write(all.substr(0, d.size() / 2));
            w.write(all.substr(d.size() / 2));
        }
        QCOMPARE(w.file_size(), qls::gguf_file_size(md, specs));
        w.finish();
    }
    QVERIFY(!fs::exists(path + ".tmp"));
    QCOMPARE(uint64_t(fs::file_size(path)), qls::gguf_file_size(md, specs));
    const qls::gguf_file f = qls::gguf_file::open(path);
    QCOMPARE(f.version(), 3u);
    QCOMPARE(f.keys(), md.keys());
    QCOMPARE(f.get_string("general.architecture"), std::string("llama"));
    QCOMPARE(f.type("t.u8"), qls::gguf_value_type::u8);
    QCOMPARE(f.get_int("t.u8"), int64_t(200));
    QCOMPARE(f.get_int("t.i8"), int64_t(-100));
    QCOMPARE(f.get_int("t.u16"), int64_t(60000));
    QCOMPARE(f.get_int("t.i16"), int64_t(-30000));
    QCOMPARE(f.get_uint32("t.u32"), 7u);
    QCOMPARE(f.get_int("t.i32"), int64_t(-2000000000));
    QCOMPARE(f.get_int("t.u64"), int64_t(1ll << 60));
    QCOMPARE(f.get_int("t.i64"), -(int64_t(1) << 60));
    QCOMPARE(f.type("t.f32"), qls::gguf_value_type::f32);
    QCOMPARE(f.get_float("t.f32"), 0.125);
    QCOMPARE(f.type("t.f64"), qls::gguf_value_type::f64);
    QCOMPARE(f.get_float("t.f64"), 1e-300);
    QCOMPARE(f.get_bool("t.bool"), true);
    QCOMPARE(f.get_string("t.utf8"), std::string("héllo ▁world"));
    QCOMPARE(f.get_string_array("t.strings"), (std::vector<std::string>{"a", "", "<|im_end|>"}));
    QCOMPARE(f.array_type("t.ints"), qls::gguf_value_type::i32);
    QCOMPARE(f.get_int_array("t.ints"), (std::vector<int64_t>{1, -2, 3}));
    QCOMPARE(f.get_float_array("t.floats"), (std::vector<float>{0.5f, -1.5f}));
    QCOMPARE(f.tensors().size(), specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
        const qls::gguf_tensor_info& t = f.tensors()[i];
        QCOMPARE(t.name, specs[i].name);
        QCOMPARE(t.dims, specs[i].dims);
        QCOMPARE(t.type, specs[i].type);
        QCOMPARE(t.offset % 32, uint64_t(0));
        QCOMPARE(t.bytes, uint64_t(data[i].size()));
        QVERIFY(std::memcmp(f.tensor_data(t), data[i].data(), data[i].size()) == 0);
    }
    // copy_from: a second file made of the first's metadata, every type preserved
    qls::gguf_metadata copy;
    for (const std::string& k : f.keys()) copy.copy_from(f, k);
    QCOMPARE(copy.serialize(), md.serialize());
}

void tst_gguf_export::writer_refuses_misuse() {
    qls::gguf_metadata md;
    QCOMPARE(expect_error(
                 [&] {
                     qls::gguf_tensor_bytes({"x", {100, 2}, ggml_type::q8_0});
                 },
                 error_code::invalid_argument, {"x", "100", "Q8_0", "32"}),
             std::string());
    QCOMPARE(expect_error(
                 [&] {
                     qls::gguf_tensor_bytes({"y", {0}, ggml_type::f32});
                 },
                 error_code::invalid_argument, {"y", "dimension of 0"}),
             std::string());
    const std::string path = tmp("misuse.gguf");
    {
        qls::gguf_stream_writer w(path, md, {{"t", {4}, ggml_type::f32}});
        QCOMPARE(expect_error([&] { w.write(std::string(20, 'x')); }, error_code::invalid_argument,
                              {path, "'t'", "16 bytes"}),
                 std::string());
        QCOMPARE(expect_error([&] { w.finish(); }, error_code::invalid_argument, {path, "'t'"}), std::string());
    }
    QVERIFY(!fs::exists(path));
    QVERIFY(!fs::exists(path + ".tmp"));
    QCOMPARE(expect_error([&] { qls::gguf_quantize(ggml_type::q2_k, nullptr, 256, nullptr, "w"); },
                          error_code::unsupported, {"w", "Q2_K"}),
             std::string());
}

// Q8_0, Q4_0 and Q5_0 blocks equal gguf-py's quantize() byte for byte on the fixture (make_quant_fixture.py), which
// includes zero, constant, tiny, huge and rounding-tie blocks.
void tst_gguf_export::quantizers_match_gguf_py() {
    const qls::gguf_file f = qls::gguf_file::open(data_dir() + "quant_fixture.gguf");
    const qls::gguf_tensor_info* in = f.find_tensor("input");
    QVERIFY(in);
    std::vector<float> x(size_t(in->numel()));
    f.dequantize(*in, x.data());
    for (auto [name, type] :
         {std::pair{"q8_0", ggml_type::q8_0}, std::pair{"q4_0", ggml_type::q4_0}, std::pair{"q5_0", ggml_type::q5_0}}) {
        const qls::gguf_tensor_info* t = f.find_tensor(name);
        QVERIFY(t);
        QCOMPARE(t->type, type);
        const std::vector<std::byte> ours = quantized(type, x);
        QCOMPARE(uint64_t(ours.size()), t->bytes);
        QVERIFY2(std::memcmp(ours.data(), f.tensor_data(*t), ours.size()) == 0, name);
    }
}

// Every block dequantized (our reader, bit-exact with gguf-py's dequantize) is within the format's error:
//   Q8_0: |x − x̂| ≤ d/2 + 127·|d − d16| ≤ 0.5625·d16 (d = absmax/127 rounded to the f16 d16: relative 2^-11);
//   Q4_0 / Q5_0: |x − x̂| ≤ |d16|·(1 + 2^-6): round to the nearest level, except the value opposite the extreme,
//     which clips one level short (−max/d = +8 (16) clips to 7 (15)) — one step;
//   Q4_K (32-value sub-blocks, step d16·sc) and Q6_K (16-value sub-blocks, step d16·sc): within one step of the
//     sub-block (levels are rounded from a least-squares scale and min that may leave the extremes clipped by part of
//     a step), and the RMS error at most 0.35 steps (uniform rounding: 1/√12 = 0.29);
//   F16 / BF16: relative 2^-11 / 2^-8 (round to nearest even).
void tst_gguf_export::quant_error_bounds() {
    const std::vector<float> x = gaussian(64 * 256, 7, 0.05f);
    std::vector<float> y(x.size());
    auto dq = [&](ggml_type t, const std::vector<std::byte>& q) {
        qls::gguf_dequantize(t, q.data(), int64_t(x.size()), y.data(), "test");
    };
    {
        const auto q = quantized(ggml_type::q8_0, x);
        dq(ggml_type::q8_0, q);
        for (size_t b = 0; b < x.size() / 32; ++b) {
            const float d = half_at(q.data() + b * 34);
            for (size_t j = 0; j < 32; ++j) QVERIFY(std::fabs(x[b * 32 + j] - y[b * 32 + j]) <= 0.5625f * d);
        }
    }
    for (auto [type, size] : {std::pair{ggml_type::q4_0, 18}, std::pair{ggml_type::q5_0, 22}}) {
        const auto q = quantized(type, x);
        dq(type, q);
        for (size_t b = 0; b < x.size() / 32; ++b) {
            const float d = std::fabs(half_at(q.data() + b * size_t(size)));
            for (size_t j = 0; j < 32; ++j) QVERIFY(std::fabs(x[b * 32 + j] - y[b * 32 + j]) <= d * (1 + 1.f / 64));
        }
    }
    {
        const auto q = quantized(ggml_type::q4_k, x);
        dq(ggml_type::q4_k, q);
        double sq = 0, steps = 0;
        for (size_t b = 0; b < x.size() / 256; ++b) {
            const std::byte* blk = q.data() + b * 144;
            const float d = half_at(blk);
            const uint8_t* s = reinterpret_cast<const uint8_t*>(blk + 4);
            for (int j = 0; j < 8; ++j) {
                const int sc = j < 4 ? (s[j] & 63) : ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
                const float step = d * float(sc);
                for (int i = 0; i < 32; ++i) {
                    const size_t k = b * 256 + size_t(j) * 32 + size_t(i);
                    const float e = std::fabs(x[k] - y[k]);
                    QVERIFY2(e <= step * 1.001f,
                             qPrintable(QString("Q4_K block %1 sub %2: %3 > step %4").arg(b).arg(j).arg(e).arg(step)));
                    sq += double(e) * e;
                    steps += double(step) * step;
                }
            }
        }
        QVERIFY2(std::sqrt(sq / steps) <= 0.35, qPrintable(QString::number(std::sqrt(sq / steps))));
    }
    {
        const auto q = quantized(ggml_type::q6_k, x);
        dq(ggml_type::q6_k, q);
        double sq = 0, steps = 0;
        for (size_t b = 0; b < x.size() / 256; ++b) {
            const std::byte* blk = q.data() + b * 210;
            const float d = half_at(blk + 208);
            const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
            for (int j = 0; j < 16; ++j) {
                const float step = std::fabs(d * float(sc[j]));
                for (int i = 0; i < 16; ++i) {
                    const size_t k = b * 256 + size_t(j) * 16 + size_t(i);
                    const float e = std::fabs(x[k] - y[k]);
                    QVERIFY2(e <= step * 1.001f,
                             qPrintable(QString("Q6_K block %1 sub %2: %3 > step %4").arg(b).arg(j).arg(e).arg(step)));
                    sq += double(e) * e;
                    steps += double(step) * step;
                }
            }
        }
        QVERIFY2(std::sqrt(sq / steps) <= 0.35, qPrintable(QString::number(std::sqrt(sq / steps))));
    }
    for (auto [type, rel] : {std::pair{ggml_type::f16, 1.f / 2048}, std::pair{ggml_type::bf16, 1.f / 256}}) {
        const auto q = quantized(type, x);
        dq(type, q);
        for (size_t k = 0; k < x.size(); ++k) QVERIFY(std::fabs(x[k] - y[k]) <= rel * std::fabs(x[k]) + 1e-7f);
    }
    // all-zero input stays zero in every block type
    const std::vector<float> z(256, 0.f);
    for (ggml_type t : {ggml_type::q8_0, ggml_type::q4_0, ggml_type::q5_0, ggml_type::q4_k, ggml_type::q6_k}) {
        std::vector<float> back(256, 1.f);
        const auto q = quantized(t, z);
        qls::gguf_dequantize(t, q.data(), 256, back.data(), "zeros");
        QVERIFY(std::all_of(back.begin(), back.end(), [](float v) { return v == 0.f; }));
    }
}

// llama-quant.cpp's type choice for Q4_K_M: attn_v and ffn_down get Q6_K in the layers use_more_bits picks, the
// head Q6_K, norms F32; rows that do not fit 256 fall back to Q5_0 (Q4_K) and Q8_0 (Q6_K).
void tst_gguf_export::q4_k_m_tensor_types() {
    using qls::gguf_quant;
    const int n = 16; // use_more_bits: i < 2, i >= 14, (i − 2) % 3 == 2 → 0 1 4 7 10 13 14 15
    std::vector<int> more;
    for (int i = 0; i < n; ++i)
        if (qls::gguf_tensor_type(gguf_quant::q4_k_m, "blk." + std::to_string(i) + ".attn_v.weight", {4096, 1024}, i, n,
                                  false) == ggml_type::q6_k)
            more.push_back(i);
    QCOMPARE(more, (std::vector<int>{0, 1, 4, 7, 10, 13, 14, 15}));
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_k_m, "blk.3.ffn_down.weight", {11008, 4096}, 3, n, false),
             ggml_type::q4_k);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_k_m, "blk.4.ffn_down.weight", {11008, 4096}, 4, n, false),
             ggml_type::q6_k);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_k_m, "blk.3.attn_q.weight", {4096, 4096}, 3, n, false),
             ggml_type::q4_k);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_k_m, "output.weight", {4096, 32000}, -1, n, false), ggml_type::q6_k);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_k_m, "token_embd.weight", {4096, 32000}, -1, n, false),
             ggml_type::q4_k);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_k_m, "token_embd.weight", {4096, 32000}, -1, n, true),
             ggml_type::q6_k);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_k_m, "blk.0.attn_norm.weight", {4096}, 0, n, false), ggml_type::f32);
    // SmolLM2-135M's 576-wide rows
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_k_m, "blk.3.attn_q.weight", {576, 576}, 3, 30, true),
             ggml_type::q5_0);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_k_m, "token_embd.weight", {576, 49152}, -1, 30, true),
             ggml_type::q8_0);
    // rows of 172 fit no block: F16
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_0, "blk.0.ffn_down.weight", {172, 64}, 0, 5, true), ggml_type::f16);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q8_0, "token_embd.weight", {64, 512}, -1, 5, true), ggml_type::q8_0);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::q4_0, "token_embd.weight", {64, 512}, -1, 5, true), ggml_type::q8_0);
    QCOMPARE(qls::gguf_tensor_type(gguf_quant::bf16, "blk.0.attn_q.weight", {64, 64}, 0, 5, true), ggml_type::bf16);
}

// The adapter GGUF: keys, names and shapes as convert_lora_to_gguf.py writes them, A as trained, B of q and k
// row-permuted per head (n_head for q, n_head_kv for k), and W_gguf + scale·B_gguf·A equal to the merged GGUF's
// weight: adapter and merged model agree on the layout llama.cpp uses.
void tst_gguf_export::adapter_gguf() {
    const std::string path = tmp("adapter.gguf");
    qls::write_gguf_adapter(path, m_lora, m_cfg, ggml_type::f32, "ggufrun");
    const qls::gguf_file f = qls::gguf_file::open(path);
    QCOMPARE(f.get_string("general.type"), std::string("adapter"));
    QCOMPARE(f.get_string("general.architecture"), std::string("llama"));
    QCOMPARE(f.get_string("adapter.type"), std::string("lora"));
    QCOMPARE(float(f.get_float("adapter.lora.alpha")), m_lora.config.scale() * float(m_lora.config.rank));
    QCOMPARE(f.tensors().size(), size_t(2 * 7 * m_cfg.num_layers));
    const int r = m_lora.config.rank, hs = m_cfg.head_dim;
    for (int l = 0; l < m_cfg.num_layers; ++l)
        for (qls::lora_target t : qls::all_lora_targets()) {
            const qls::lora_adapter<float>& ad = m_lora.at(l, t);
            const std::string base = qls::architecture_for(m_cfg).gguf_weight(l, t);
            const qls::gguf_tensor_info* a = f.find_tensor(base + ".lora_a");
            const qls::gguf_tensor_info* b = f.find_tensor(base + ".lora_b");
            QVERIFY2(a && b, base.c_str());
            QCOMPARE(a->dims, (std::vector<int64_t>{ad.in, r}));
            QCOMPARE(b->dims, (std::vector<int64_t>{r, ad.out}));
            QVERIFY(std::memcmp(f.tensor_data(*a), ad.a.data(), ad.a.size() * 4) == 0);
            std::vector<float> bg(ad.b.size());
            f.dequantize(*b, bg.data());
            const bool permuted = t == qls::lora_target::q || t == qls::lora_target::k;
            for (int row = 0; row < ad.out; ++row) {
                // GGUF row h·HS + 2i + j holds HF row h·HS + j·HS/2 + i
                int src = row;
                if (permuted) {
                    const int h = row / hs, w = row % hs;
                    src = h * hs + (w % 2) * (hs / 2) + w / 2;
                }
                QVERIFY(std::memcmp(bg.data() + size_t(row) * r, ad.b.data() + size_t(src) * r, size_t(r) * 4) == 0);
            }
        }
    // base (merge none, F32... written F16 here is not exact: use the merged F16 export's own reader for layout)
    const std::unique_ptr<qls::model_source> src = qls::open_model_source(testutil::model_dir());
    qls::gguf_merged_options o;
    o.quant = qls::gguf_quant::f16;
    const std::string base_path = tmp("base.gguf"), merged_path = tmp("merged.gguf");
    qls::write_gguf_merged(base_path, *src, {}, o);
    qls::write_gguf_merged(merged_path, *src, m_lora, o);
    const qls::gguf_file base = qls::gguf_file::open(base_path), merged = qls::gguf_file::open(merged_path);
    const float scale = m_lora.config.scale();
    for (qls::lora_target t : {qls::lora_target::q, qls::lora_target::k, qls::lora_target::down}) {
        const std::string n = qls::architecture_for(m_cfg).gguf_weight(2, t);
        const qls::gguf_tensor_info* wb = base.find_tensor(n);
        const qls::gguf_tensor_info* wm = merged.find_tensor(n);
        std::vector<float> w0(size_t(wb->numel())), w1(size_t(wm->numel()));
        base.dequantize(*wb, w0.data());
        merged.dequantize(*wm, w1.data());
        std::vector<float> A(size_t(f.find_tensor(n + ".lora_a")->numel())),
            B(size_t(f.find_tensor(n + ".lora_b")->numel()));
        f.dequantize(*f.find_tensor(n + ".lora_a"), A.data());
        f.dequantize(*f.find_tensor(n + ".lora_b"), B.data());
        const int64_t in = wb->dims[0], out = wb->dims[1];
        double max_delta = 0, max_err = 0;
        for (int64_t o2 = 0; o2 < out; ++o2)
            for (int64_t i = 0; i < in; ++i) {
                float ba = 0;
                for (int k = 0; k < r; ++k) ba += B[size_t(o2 * r + k)] * A[size_t(k * in + i)];
                const float want = w0[size_t(o2 * in + i)] + scale * ba;
                // both sides rounded to f16: 2 half-ulps of the larger magnitude
                const float tol = (std::fabs(want) + std::fabs(w0[size_t(o2 * in + i)])) / 2048.f + 1e-7f;
                max_err = std::max(max_err, double(std::fabs(w1[size_t(o2 * in + i)] - want)) / tol);
                max_delta = std::max(max_delta, double(std::fabs(scale * ba)));
            }
        QVERIFY2(max_err <= 1.0, qPrintable(QString("%1: error %2 tolerances").arg(n.c_str()).arg(max_err)));
        QVERIFY2(max_delta > 1e-4, qPrintable(QString("%1: the adapter changes nothing").arg(n.c_str())));
    }
    QCOMPARE(expect_error([&] { qls::write_gguf_adapter(tmp("a8.gguf"), m_lora, m_cfg, ggml_type::q8_0, "x"); },
                          error_code::invalid_argument, {"F32 or F16"}),
             std::string());
}

// The merged F16 GGUF read back as a model: the same config, a tokenizer that encodes like the original
// tokenizer.model, weights equal to base + scale·B·A in Hugging Face layout within f16 rounding (the reader undoes
// the q/k permutation the writer applied).
void tst_gguf_export::merged_gguf_round_trip() {
    const std::unique_ptr<qls::model_source> hf = qls::open_model_source(testutil::model_dir());
    qls::gguf_merged_options o;
    o.quant = qls::gguf_quant::f16;
    std::vector<qls::gguf_merged_progress> seen;
    o.on_progress = [&](const qls::gguf_merged_progress& p) { seen.push_back(p); };
    const std::string path = tmp("merged-rt.gguf");
    const qls::gguf_merged_progress done = qls::write_gguf_merged(path, *hf, m_lora, o);
    QVERIFY(seen.size() >= 2);
    QCOMPARE(seen.front().tensors_done, int64_t(0));
    QCOMPARE(seen.front().file_size, uint64_t(fs::file_size(path))); // the size shown before writing
    QCOMPARE(done.tensors_done, done.tensors_total);
    const std::unique_ptr<qls::model_source> g = qls::open_model_source(path);
    const qls::model_config& c = g->config();
    QCOMPARE(c.hidden_size, m_cfg.hidden_size);
    QCOMPARE(c.num_layers, m_cfg.num_layers);
    QCOMPARE(c.num_heads, m_cfg.num_heads);
    QCOMPARE(c.num_kv_heads, m_cfg.num_kv_heads);
    QCOMPARE(c.intermediate_size, m_cfg.intermediate_size);
    QCOMPARE(c.vocab_size, m_cfg.vocab_size);
    QCOMPARE(c.tie_word_embeddings, true);
    QCOMPARE(c.rms_norm_eps, double(float(m_cfg.rms_norm_eps)));
    const qls::tokenizer a = hf->load_tokenizer(), b = g->load_tokenizer();
    // (no runs of spaces: stories260K's tokenizer.model collapses them, remove_extra_whitespaces, a normalizer flag
    // GGUF has no key for; llama.cpp keeps them, and so does the tokenizer read back)
    for (const char* text : {"Once upon a time, Pip the mouse lived in a lighthouse.", "Hello\n\nworld 123!"})
        QCOMPARE(b.encode_prompt(text), a.encode_prompt(text));
    QCOMPARE(b.bos_id(), a.bos_id());
    QCOMPARE(b.eos_id(), a.eos_id());
    const qls::gguf_file f = qls::gguf_file::open(path);
    QCOMPARE(f.get_string("tokenizer.ggml.model"), std::string("llama"));
    QCOMPARE(f.get_int("general.file_type"), int64_t(1));
    const qls::architecture& arch = qls::architecture_for(m_cfg);
    for (qls::lora_target t : qls::all_lora_targets()) {
        const auto [out, in] = arch.projection_shape(m_cfg, t);
        std::vector<float> want(size_t(out * in)), got(want.size());
        hf->read_f32(arch.hf_weight(1, t), {out, in}, want.data());
        qls::lora_merge(want.data(), m_lora.at(1, t), m_lora.config.scale());
        g->read_f32(arch.hf_weight(1, t), {out, in}, got.data());
        for (size_t k = 0; k < want.size(); ++k)
            // half an f16 ulp: relative 2^-11, absolute 2^-25 among the subnormals
            QVERIFY2(std::fabs(got[k] - want[k]) <= std::fabs(want[k]) / 2048.f + 3e-8f,
                     qPrintable(QString("%1[%2]").arg(qls::lora_target_name(t)).arg(k)));
    }
    // the norms stay F32, exactly
    std::vector<float> n0(size_t(m_cfg.hidden_size)), n1(n0.size());
    hf->read_f32(arch.hf_name(qls::base_tensor::attn_norm, 0), {m_cfg.hidden_size}, n0.data());
    g->read_f32(arch.hf_name(qls::base_tensor::attn_norm, 0), {m_cfg.hidden_size}, n1.data());
    QCOMPARE(n1, n0);
}

// q8_0 / q4_0 / q4_k_m merged files: every tensor's type as llama-quant.cpp assigns it, and its weights (dequantized
// by our reader) within the format's error of the merged F32 weights: per element at most one step of its block
// (Q8_0: d, Q4_0/Q5_0: d, F16: relative 2^-11); the q/k rows un-permuted back to Hugging Face layout.
void tst_gguf_export::merged_quantized_within_format_error() {
    const std::unique_ptr<qls::model_source> hf = qls::open_model_source(testutil::model_dir());
    const qls::architecture& arch = qls::architecture_for(m_cfg);
    for (qls::gguf_quant q :
         {qls::gguf_quant::q8_0, qls::gguf_quant::q4_0, qls::gguf_quant::q4_k_m, qls::gguf_quant::bf16}) {
        qls::gguf_merged_options o;
        o.quant = q;
        const std::string path = tmp(std::string("merged-") + qls::gguf_quant_name(q) + ".gguf");
        qls::write_gguf_merged(path, *hf, m_lora, o);
        const qls::gguf_file f = qls::gguf_file::open(path);
        const std::unique_ptr<qls::model_source> g = qls::open_model_source(path);
        for (const qls::gguf_tensor_info& t : f.tensors()) {
            const int layer = t.name.rfind("blk.", 0) == 0 ? std::stoi(t.name.substr(4)) : -1;
            QCOMPARE(t.type, qls::gguf_tensor_type(q, t.name, t.dims, layer, m_cfg.num_layers, true));
        }
        for (qls::lora_target t : qls::all_lora_targets()) {
            const auto [out, in] = arch.projection_shape(m_cfg, t);
            std::vector<float> want(size_t(out * in)), got(want.size());
            hf->read_f32(arch.hf_weight(3, t), {out, in}, want.data());
            qls::lora_merge(want.data(), m_lora.at(3, t), m_lora.config.scale());
            g->read_f32(arch.hf_weight(3, t), {out, in}, got.data());
            const ggml_type type = f.find_tensor(arch.gguf_weight(3, t))->type;
            // the largest step a block of this row length can have: absmax/127 (Q8_0), absmax/8 (Q4_0), /16 (Q5_0)
            float amax = 0;
            for (float v : want) amax = std::max(amax, std::fabs(v));
            const float step = type == ggml_type::q8_0   ? amax / 127
                               : type == ggml_type::q4_0 ? amax / 8
                               : type == ggml_type::q5_0 ? amax / 16
                                                         : 0.f;
            for (size_t k = 0; k < want.size(); ++k) {
                const float tol = type == ggml_type::f16    ? std::fabs(want[k]) / 2048.f + 3e-8f
                                  : type == ggml_type::bf16 ? std::fabs(want[k]) / 256.f + 1e-8f
                                                            : step * 1.02f;
                QVERIFY2(std::fabs(got[k] - want[k]) <= tol,
                         qPrintable(QString("%1 %2 %3[%4]: %5 vs %6")
                                        .arg(qls::gguf_quant_name(q), qls::ggml_traits(uint32_t(type)).name,
                                             qls::lora_target_name(t))
                                        .arg(k)
                                        .arg(got[k])
                                        .arg(want[k])));
            }
        }
    }
}

// A Hugging Face folder with SmolLM2's tokenizer.json (byte-level BPE, pre-tokenizer "smollm") exported as a merged
// GGUF: its tokenizer.* metadata equals what llama.cpp's convert_hf_to_gguf.py wrote into SmolLM2's own GGUF: tokens,
// token types, merges, pre-tokenizer name, special ids, add_bos_token, chat template.
void tst_gguf_export::bpe_tokenizer_as_llama_cpp_converts_it() {
    const std::string shared = fs::path(testutil::model_dir()).parent_path().string() + "/smollm2-135m-instruct";
    const std::string gguf_path = shared + "/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!fs::exists(gguf_path)) QSKIP("SmolLM2-135M-Instruct not found beside the test model");
    const std::string dir = tmp("smol-hf");
    fs::create_directories(dir);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
        fs::copy_file(shared + "/hf-tokenizer/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
    // a small random-free model of SmolLM2's vocabulary (the weights do not matter here)
    const int C = 64, H = 128, V = 49152;
    std::ofstream(dir + "/config.json") << R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        "vocab_size": 49152, "hidden_act": "silu", "tie_word_embeddings": true, "bos_token_id": 1,
        "eos_token_id": 2, "torch_dtype": "float32"})";
    {
        std::vector<qls::safetensors_tensor_spec> specs = {
            {"model.embed_tokens.weight", qls::dtype::f32, {V, C}},
            {"model.norm.weight", qls::dtype::f32, {C}},
            {"model.layers.0.input_layernorm.weight", qls::dtype::f32, {C}},
            {"model.layers.0.post_attention_layernorm.weight", qls::dtype::f32, {C}},
            {"model.layers.0.self_attn.q_proj.weight", qls::dtype::f32, {C, C}},
            {"model.layers.0.self_attn.k_proj.weight", qls::dtype::f32, {C / 2, C}},
            {"model.layers.0.self_attn.v_proj.weight", qls::dtype::f32, {C / 2, C}},
            {"model.layers.0.self_attn.o_proj.weight", qls::dtype::f32, {C, C}},
            {"model.layers.0.mlp.gate_proj.weight", qls::dtype::f32, {H, C}},
            {"model.layers.0.mlp.up_proj.weight", qls::dtype::f32, {H, C}},
            {"model.layers.0.mlp.down_proj.weight", qls::dtype::f32, {C, H}},
        };
        qls::safetensors_stream_writer w(dir + "/model.safetensors", specs);
        for (const qls::safetensors_tensor_spec& t : w.order()) {
            const std::vector<float> v = gaussian(size_t(t.nbytes() / 4), 3, 0.02f);
            w.write(t.name, {reinterpret_cast<const char*>(v.data()), v.size() * 4});
        }
        w.finish();
    }
    const std::string out = tmp("smol-hf.gguf");
    qls::write_gguf_merged(out, *qls::open_model_source(dir), {}, {});
    const qls::gguf_file ours = qls::gguf_file::open(out), ref = qls::gguf_file::open(gguf_path);
    QCOMPARE(ours.get_string("tokenizer.ggml.model"), ref.get_string("tokenizer.ggml.model"));
    QCOMPARE(ours.get_string("tokenizer.ggml.pre"), std::string("smollm"));
    QCOMPARE(ours.get_string("tokenizer.ggml.pre"), ref.get_string("tokenizer.ggml.pre"));
    QVERIFY(ours.get_string_array("tokenizer.ggml.tokens") == ref.get_string_array("tokenizer.ggml.tokens"));
    QVERIFY(ours.get_int_array("tokenizer.ggml.token_type") == ref.get_int_array("tokenizer.ggml.token_type"));
    QVERIFY(ours.get_string_array("tokenizer.ggml.merges") == ref.get_string_array("tokenizer.ggml.merges"));
    for (const char* k : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"})
        QCOMPARE(ours.get_int(k), ref.get_int(k));
    QCOMPARE(ours.get_bool("tokenizer.ggml.add_bos_token"), ref.get_bool("tokenizer.ggml.add_bos_token"));
    QCOMPARE(ours.get_string("tokenizer.chat_template"), ref.get_string("tokenizer.chat_template"));
    // and the engine reads it back as the same tokenizer
    const qls::tokenizer a = qls::open_model_source(dir)->load_tokenizer(),
                         b = qls::open_model_source(out)->load_tokenizer();
    const char* text = "<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n";
    QCOMPARE(b.encode_prompt(text), a.encode_prompt(text));
}

void tst_gguf_export::ollama_modelfile_and_commands() {
    const qls::ollama_template chatml = qls::ollama_template_for(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% "
        "endfor %}",
        "<|im_end|>");
    QCOMPARE(chatml.family, std::string("chatml"));
    QCOMPARE(chatml.stops, (std::vector<std::string>{"<|im_start|>", "<|im_end|>"}));
    const std::string mf = qls::ollama_modelfile("/m/base.gguf", "./adapter-f32.gguf", chatml);
    QVERIFY(mf.find("\nFROM /m/base.gguf\n") != std::string::npos);
    QVERIFY(mf.find("\nADAPTER ./adapter-f32.gguf\n") != std::string::npos);
    QVERIFY(mf.find("TEMPLATE \"\"\"{{- range .Messages }}<|im_start|>{{ .Role }}") != std::string::npos);
    QVERIFY(mf.find("PARAMETER stop \"<|im_end|>\"\n") != std::string::npos);
    const qls::ollama_template l3 = qls::ollama_template_for("<|start_header_id|>", "<|eot_id|>");
    QCOMPARE(l3.family, std::string("llama3"));
    QCOMPARE(l3.stops.back(), std::string("<|eot_id|>"));
    const qls::ollama_template none = qls::ollama_template_for("", "</s>");
    QVERIFY(none.text.empty());
    QCOMPARE(none.stops, (std::vector<std::string>{"</s>"}));
    const std::string plain = qls::ollama_modelfile("./model-f16.gguf", "", none);
    QVERIFY(plain.find("ADAPTER") == std::string::npos);
    QVERIFY(plain.find("# no TEMPLATE") != std::string::npos);
    QVERIFY(plain.find("PARAMETER stop \"</s>\"") != std::string::npos);

    // run_export: the adapter GGUF of the run with its Modelfile and commands
    qls::export_request r = qls::export_request_for_run(m_run, qls::export_format::gguf_adapter);
    r.output_dir = tmp("exp-adapter");
    const qls::export_result res = qls::run_export(r);
    QCOMPARE(res.files.size(), size_t(2));
    QCOMPARE(res.files[0].path, r.output_dir + "/adapter-f32.gguf");
    QCOMPARE(res.files[0].bytes, uint64_t(fs::file_size(res.files[0].path)));
    const std::string text = qls::read_file_text(r.output_dir + "/Modelfile");
    QVERIFY(text.find("FROM " + fs::absolute(testutil::model_dir()).lexically_normal().string()) != std::string::npos);
    QVERIFY(text.find("ADAPTER ./adapter-f32.gguf") != std::string::npos);
    bool llama = false, ollama = false, base = false;
    for (const std::string& c : res.commands) {
        llama |= c.find("llama-cli -m ") == 0 && c.find("--lora " + res.files[0].path) != std::string::npos;
        ollama |= c == "ollama create ggufrun -f " + r.output_dir + "/Modelfile";
        base |= c.find("--format gguf --merge none") != std::string::npos; // the base as GGUF, for llama.cpp
    }
    QVERIFY(llama && ollama && base);
}

// An output folder that cannot be created, a run without checkpoints, a non-empty output folder without overwrite,
// an unknown quantization: clear errors naming the problem, and nothing under the final name.
void tst_gguf_export::bad_inputs() {
    qls::export_request r = qls::export_request_for_run(m_run, qls::export_format::gguf);
    // a folder under a regular file cannot be created (also for root)
    const std::string blocker = tmp("a-file");
    std::ofstream(blocker) << "x";
    r.output_dir = blocker + "/out";
    QCOMPARE(expect_error([&] { qls::run_export(r); }, error_code::io, {blocker}), std::string());
    QVERIFY(!fs::exists(r.output_dir));

    // a run without checkpoints
    const std::string empty_run = tmp("runs/empty");
    fs::create_directories(empty_run);
    fs::copy_file(m_run + "/config.json", empty_run + "/config.json");
    QCOMPARE(expect_error([&] { qls::export_request_for_run(empty_run, qls::export_format::gguf); }, error_code::io,
                          {empty_run, "no checkpoint"}),
             std::string());

    // a non-empty folder is refused unless overwrite, then replaced
    const std::string full = tmp("full");
    fs::create_directories(full);
    std::ofstream(full + "/keep.txt") << "mine";
    r.output_dir = full;
    QCOMPARE(expect_error([&] { qls::run_export(r); }, error_code::invalid_argument, {full, "not empty"}),
             std::string());
    QVERIFY(fs::exists(full + "/keep.txt"));
    r.overwrite = true;
    const qls::export_result res = qls::run_export(r);
    QVERIFY(fs::exists(full + "/model-f16.gguf"));
    QVERIFY(fs::exists(full + "/Modelfile"));
    QCOMPARE(res.files.size(), size_t(2));

    r.gguf_quant = "q3_k";
    QCOMPARE(expect_error([&] { qls::run_export(r); }, error_code::invalid_argument, {"q3_k", "q4_k_m"}),
             std::string());
    r.gguf_quant = "f16";
    r.gguf_merge = "half";
    QCOMPARE(expect_error([&] { qls::run_export(r); }, error_code::invalid_argument, {"half"}), std::string());
}

// A disk that fills up mid-file (simulated by RLIMIT_FSIZE: writes past the limit fail with EFBIG as they would with
// ENOSPC): a clear error naming the file and the reason, no file under the final name, no temporary file or staging
// folder left.
void tst_gguf_export::disk_full_leaves_nothing() {
    qls::export_request r = qls::export_request_for_run(m_run, qls::export_format::gguf);
    r.output_dir = tmp("fill/out");
    r.gguf_quant = "f16";
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit old{};
    QCOMPARE(getrlimit(RLIMIT_FSIZE, &old), 0);
    rlimit small = old;
    small.rlim_cur = 100 * 1000; // the f16 model is about 0.6 MB
    QCOMPARE(setrlimit(RLIMIT_FSIZE, &small), 0);
    const std::string err = expect_error([&] { qls::run_export(r); }, error_code::io, {"model-f16.gguf", "too large"});
    QCOMPARE(setrlimit(RLIMIT_FSIZE, &old), 0);
    QCOMPARE(err, std::string());
    QVERIFY(!fs::exists(r.output_dir));
    QCOMPARE(leftovers(tmp("fill"), ".tmp"), std::vector<std::string>());
    QCOMPARE(leftovers(tmp("fill"), ".gguf"), std::vector<std::string>());
}

// `qlora export` with the GGUF formats: the file, its size, the Modelfile and the run commands on stderr; refusal of
// a non-empty folder without --force.
void tst_gguf_export::cli_export() {
    const QString out = QString::fromStdString(tmp("cli-q4km"));
    QProcess p;
    p.start(testutil::qlora_exe(), {"export", QString::fromStdString(m_run), "--format", "gguf", "--quant", "q4_k_m",
                                    "--merge", "original", "--out", out});
    QVERIFY(p.waitForFinished(120000));
    const QString err = QString::fromUtf8(p.readAllStandardError());
    QVERIFY2(p.exitCode() == 0, qPrintable(err));
    QVERIFY2(err.contains("writing a ") && err.contains(" MB GGUF"), qPrintable(err));
    QVERIFY2(err.contains("wrote " + out + "/model-q4_k_m.gguf"), qPrintable(err));
    QVERIFY2(err.contains("llama-cli -m " + out + "/model-q4_k_m.gguf"), qPrintable(err));
    QVERIFY2(err.contains("ollama create ggufrun -f " + out + "/Modelfile"), qPrintable(err));
    QVERIFY(QFileInfo::exists(out + "/Modelfile"));
    const qls::gguf_file f = qls::gguf_file::open((out + "/model-q4_k_m.gguf").toStdString());
    QCOMPARE(f.get_int("general.file_type"), int64_t(15));

    p.start(testutil::qlora_exe(),
            {"export", QString::fromStdString(m_run), "--format", "gguf-adapter", "--dtype", "f16", "--out", out});
    QVERIFY(p.waitForFinished(60000));
    QCOMPARE(p.exitCode(), 1);
    QVERIFY(QString::fromUtf8(p.readAllStandardError()).contains("--force"));
    p.start(testutil::qlora_exe(), {"export", QString::fromStdString(m_run), "--format", "gguf-adapter", "--dtype",
                                    "f16", "--out", out, "--force"});
    QVERIFY(p.waitForFinished(60000));
    QVERIFY2(p.exitCode() == 0, qPrintable(QString::fromUtf8(p.readAllStandardError())));
    QVERIFY(QFileInfo::exists(out + "/adapter-f16.gguf"));
    QVERIFY(!QFileInfo::exists(out + "/model-q4_k_m.gguf"));
    p.start(testutil::qlora_exe(), {"export", QString::fromStdString(m_run), "--format", "gguf", "--dtype", "f16"});
    QVERIFY(p.waitForFinished(60000));
    QCOMPARE(p.exitCode(), 2); // --dtype is the adapter's
}

QTEST_GUILESS_MAIN(tst_gguf_export)
#include "tst_gguf_export.moc"
