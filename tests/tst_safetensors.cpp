// Qt Test suite for the safetensors reader/writer: round trips, byte identity with the reference writer, and every malformed-file case.
// Format: https://github.com/huggingface/safetensors#format — u64 LE header length N, N bytes of JSON, data.
#include "qls/safetensors.h"

#include "testutil.h"

#include <QFile>
#include <QFileInfo>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>

namespace {

std::string fixture_path() { return std::string(QLS_SOURCE_DIR) + "/tests/data/safetensors/reference.safetensors"; }

std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string le64(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
    return s;
}

// A safetensors file built by hand: length prefix (the real one unless given), header, data.
std::string st_bytes(const std::string& header, const std::string& data, std::optional<uint64_t> header_len = {}) {
    return le64(header_len ? *header_len : header.size()) + header + data;
}

std::string f32_bytes(std::initializer_list<float> v) {
    std::string s(v.size() * 4, '\0');
    std::memcpy(s.data(), std::data(v), s.size());
    return s;
}

// Empty string when opening `path` throws qls::error with `code`, a message naming the path and containing
// every word, and a hint; otherwise what went wrong (QCOMPARE prints it).
QString open_failure(const std::string& path, qls::error_code code, std::initializer_list<const char*> words) {
    try {
        qls::safetensors_file::open(path);
    } catch (const qls::error& e) {
        QString msg = QString::fromStdString(e.what());
        if (e.code() != code)
            return QString("wrong code %1 (want %2): %3")
                .arg(qls::error_code_name(e.code()), qls::error_code_name(code), msg);
        if (!msg.contains(QString::fromStdString(path))) return "message does not name the file: " + msg;
        for (const char* w : words)
            if (!msg.contains(QString::fromUtf8(w), Qt::CaseInsensitive))
                return QString("message lacks \"%1\": %2").arg(w, msg);
        if (e.hint().empty()) return "no hint: " + msg;
        return {};
    } catch (const std::exception& e) {
        return QString("threw a non-qls exception: ") + e.what();
    }
    return "opened without error";
}

// Same for a save that must fail.
template <class F>
QString call_failure(F&& f, qls::error_code code, const std::string& path, std::initializer_list<const char*> words) {
    try {
        f();
    } catch (const qls::error& e) {
        QString msg = QString::fromStdString(e.what());
        if (e.code() != code)
            return QString("wrong code %1 (want %2): %3")
                .arg(qls::error_code_name(e.code()), qls::error_code_name(code), msg);
        if (!msg.contains(QString::fromStdString(path))) return "message does not name the file: " + msg;
        for (const char* w : words)
            if (!msg.contains(QString::fromUtf8(w), Qt::CaseInsensitive))
                return QString("message lacks \"%1\": %2").arg(w, msg);
        return {};
    } catch (const std::exception& e) {
        return QString("threw a non-qls exception: ") + e.what();
    }
    return "did not throw";
}

// ((i * mul) % mod - sub) / div computed in double and rounded once to float — the formula of
// tests/data/make_safetensors_fixture.py.
std::vector<float> rational(int n, int mul, int mod, int sub, double div) {
    std::vector<float> v;
    for (int64_t i = 0; i < n; ++i) v.push_back(float(double((i * mul) % mod - sub) / div));
    return v;
}

template <class T> qls::tensor typed(qls::dtype t, std::vector<T> v, qls::shape_t shape) {
    qls::tensor out(t, std::move(shape));
    QLS_ASSERT(out.nbytes() == v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(out.raw(), v.data(), out.nbytes());
    return out;
}

// The tensors of the fixture, built independently of the reader (same formulas as the Python generator).
std::vector<std::pair<std::string, qls::tensor>> fixture_tensors() {
    using qls::dtype;
    std::vector<float> f16v = rational(4, 7, 13, 6, 3.0);
    f16v.insert(f16v.end(), {65504.0f, -0.0f, float(std::ldexp(1.0, -24)), float(1e-6)});
    std::vector<float> bf16v = rational(5, 5, 11, 5, 7.0);
    bf16v.push_back(float(3.0e38));
    std::vector<uint8_t> tokens;
    for (int i = 0; i < 8; ++i) tokens.push_back(uint8_t((i * 37 + 11) % 256));
    // Given in yet another order than the Python dict: the writer's sort must make them agree.
    return {
        {"empty", qls::tensor(dtype::f32, {0, 3})},
        {"tokens", typed<uint8_t>(dtype::u8, tokens, {2, 2, 2})},
        {"scalar", qls::tensor::from_f32({float(-1.0 / 7.0)}, {})},
        {"positions",
         typed<int64_t>(dtype::i64, {-3, 0, (int64_t(1) << 40) + 5, std::numeric_limits<int64_t>::min()}, {4})},
        {"lm_head.weight", qls::tensor::from_f32(f16v, {2, 4}).to(dtype::f16)},
        {"model.norm.weight", qls::tensor::from_f32(rational(5, 7, 13, 6, 3.0), {5})},
        {"layers.0.attn.q", qls::tensor::from_f32(bf16v, {3, 2}).to(dtype::bf16)},
        {"embed.weight", qls::tensor::from_f32(rational(6, 3, 7, 3, 9.0), {2, 3})},
    };
}

const std::map<std::string, std::string> fixture_metadata = {
    {"note", "qls fixture \"v1\" \\ tab\tnewline\n ctrl\x01 caf\xc3\xa9 \xe2\x82\xac"}};

bool same_bytes(const qls::tensor& a, const qls::tensor& b) {
    return a.type() == b.type() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
           (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

// A valid two-tensor header and its data, used as the base of the malformed cases.
const char* const good_header =
    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})";
const std::string good_data = f32_bytes({1.5f, -2.0f}) + std::string("\x01\x02\x03\x04", 4);

} // namespace

class tst_safetensors : public QObject {
    Q_OBJECT

    QTemporaryDir tmp_;
    std::string file(const char* name) const { return tmp_.filePath(name).toStdString(); }
    // Writes a hand-made file and returns its path.
    std::string make(const char* name, const std::string& bytes) const {
        std::string p = file(name);
        write_all(p, bytes);
        return p;
    }
    std::string make_header(const char* name, const std::string& header, const std::string& data = good_data) const {
        return make(name, st_bytes(header, data));
    }

private slots:
    void initTestCase() { QVERIFY(tmp_.isValid()); }

    // ---- valid files ------------------------------------------------------------------------------

    void round_trip_all_dtypes_and_shapes() {
        using qls::dtype;
        std::vector<float> big(20000); // crosses read_f32's 16384-element conversion chunk
        for (size_t i = 0; i < big.size(); ++i) big[i] = float(std::sin(double(i) * 0.01) * 3.0);
        std::vector<std::pair<std::string, qls::tensor>> in = {
            {"f64", typed<double>(dtype::f64, {1.0 / 3.0, -2.5e300, 0.0}, {3})},
            {"f32", qls::tensor::from_f32({1, -2, 3.25f, 4, 5e-30f, -6}, {2, 3})},
            {"f16", qls::tensor::from_f32({0.5f, -1.0f, 65504.0f, 6e-8f}, {4}).to(dtype::f16)},
            {"bf16", qls::tensor::from_f32({1.0f / 3, -7.0f, 1e30f, 0.0f}, {2, 2}).to(dtype::bf16)},
            {"bf16_big", qls::tensor::from_f32(big, {200, 100}).to(dtype::bf16)},
            {"i64", typed<int64_t>(dtype::i64, {-1, std::numeric_limits<int64_t>::max(), 42}, {3})},
            {"i32", typed<int32_t>(dtype::i32, {-100000, 7}, {2, 1})},
            {"i16", typed<int16_t>(dtype::i16, {-300, 300}, {2})},
            {"i8", typed<int8_t>(dtype::i8, {-128, 0, 127}, {3})},
            {"u8", typed<uint8_t>(dtype::u8, {0, 1, 128, 200, 255}, {5})},
            {"bool", typed<uint8_t>(dtype::boolean, {1, 0}, {2})},
            {"zero_elements", qls::tensor(dtype::f32, {0})},
            {"zero_middle", qls::tensor(dtype::bf16, {2, 0, 3})},
            {"scalar", qls::tensor::from_f32({-42.5f}, {})},
        };
        const std::string p = file("round_trip.safetensors");
        qls::safetensors_save(p, in);
        QVERIFY(!QFileInfo::exists(QString::fromStdString(p + ".tmp")));

        auto f = qls::safetensors_file::open(p);
        QCOMPARE(f.path(), p);
        QCOMPARE(f.entries().size(), in.size());
        QVERIFY(f.metadata().empty());
        for (const auto& [name, t] : in) {
            const qls::safetensors_entry* e = f.find(name);
            QVERIFY2(e, name.c_str());
            QCOMPARE(e->name, name);
            QCOMPARE(e->type, t.type());
            QCOMPARE(e->shape, t.shape());
            QCOMPARE(e->end - e->begin, uint64_t(t.nbytes()));
            if (t.nbytes()) QVERIFY(std::memcmp(f.bytes(*e), t.raw(), t.nbytes()) == 0);
            qls::tensor r = f.read(name);
            QVERIFY2(same_bytes(r, t), name.c_str());
            qls::tensor r32 = f.read_f32(name);
            QCOMPARE(r32.type(), dtype::f32);
            QCOMPARE(r32.shape(), t.shape());
            std::vector<float> want(size_t(t.numel()));
            qls::convert_to_f32(want.data(), t.raw(), t.type(), want.size());
            QVERIFY2(want.empty() || std::memcmp(r32.raw(), want.data(), want.size() * 4) == 0, name.c_str());
        }
        QCOMPARE(f.read_f32("i64").f32()[1], float(std::numeric_limits<int64_t>::max()));
        QCOMPARE(f.read_f32("u8").f32()[4], 255.0f);
        QCOMPARE(f.read_f32("i8").f32()[0], -128.0f);
        QCOMPARE(f.read_f32("scalar").f32()[0], -42.5f);
        QCOMPARE(f.read_f32("bf16_big").f32()[19999], qls::bf16_to_f32(qls::f32_to_bf16(big[19999])));
        QVERIFY(f.find("absent") == nullptr);
    }

    void metadata_round_trip_sorted() {
        const std::string p = file("meta.safetensors");
        std::map<std::string, std::string> md = {{"zeta", "1"}, {"alpha", "two words"}, {"Mid", "caf\xc3\xa9\n"}};
        qls::safetensors_save(p, {{"w", qls::tensor::from_f32({1, 2}, {2})}}, md);
        auto f = qls::safetensors_file::open(p);
        QCOMPARE(f.metadata(), md);
        std::string bytes = read_all(p);
        QVERIFY2(bytes.substr(8).starts_with(R"({"__metadata__":{"Mid":"caf)"
                                             "\xc3\xa9"
                                             R"(\n","alpha":"two words","zeta":"1"},"w":)"),
                 bytes.c_str() + 8);
    }

    void writer_orders_by_dtype_then_name_and_pads() {
        using qls::dtype;
        // One of each dtype, named so that name order disagrees with dtype order.
        std::vector<std::pair<std::string, qls::tensor>> in = {
            {"a_bool", qls::tensor(dtype::boolean, {3})}, {"b_u8", qls::tensor(dtype::u8, {1})},
            {"c_i8", qls::tensor(dtype::i8, {1})},        {"d_i16", qls::tensor(dtype::i16, {1})},
            {"e_f16", qls::tensor(dtype::f16, {1})},      {"f_bf16", qls::tensor(dtype::bf16, {1})},
            {"g_i32", qls::tensor(dtype::i32, {1})},      {"h_f32", qls::tensor(dtype::f32, {1})},
            {"i_f64", qls::tensor(dtype::f64, {1})},      {"j_i64", qls::tensor(dtype::i64, {1})},
            {"B_f32", qls::tensor(dtype::f32, {2})},      {"a.9", qls::tensor(dtype::f32, {1})},
            {"a.10", qls::tensor(dtype::f32, {1})},
        };
        const std::string p = file("order.safetensors");
        qls::safetensors_save(p, in);
        auto f = qls::safetensors_file::open(p);
        std::vector<std::string> names;
        uint64_t expect_begin = 0;
        for (const auto& e : f.entries()) {
            names.push_back(e.name);
            QCOMPARE(e.begin, expect_begin); // contiguous, no gaps, starting at 0
            expect_begin = e.end;
        }
        const std::vector<std::string> want = {"j_i64",  "i_f64", "B_f32", "a.10", "a.9",  "h_f32", "g_i32",
                                               "f_bf16", "e_f16", "d_i16", "c_i8", "b_u8", "a_bool"};
        QCOMPARE(names, want);
        std::string bytes = read_all(p);
        uint64_t n = 0;
        std::memcpy(&n, bytes.data(), 8);
        QCOMPARE(n % 8, uint64_t(0));
        QCOMPARE(bytes.size(), size_t(8 + n + expect_begin));
        std::string header = bytes.substr(8, size_t(n));
        size_t close = header.find_last_of('}');
        QVERIFY(header.find_first_not_of(' ', close + 1) == std::string::npos); // padding is spaces only
        QVERIFY2(header.starts_with(R"({"j_i64":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"i_f64":)"),
                 header.c_str());
    }

    void empty_file_list_matches_reference() {
        // safetensors/src/tensor.rs test_empty: no tensors is "{}" plus 6 spaces.
        const std::string p = file("empty_list.safetensors");
        qls::safetensors_save(p, {});
        QCOMPARE(read_all(p), le64(8) + "{}      ");
        QVERIFY(qls::safetensors_file::open(p).entries().empty());
    }

    void byte_identical_to_reference_writer() {
        const std::string want = read_all(fixture_path());
        QVERIFY2(!want.empty(), ("fixture missing: " + fixture_path()).c_str());
        const std::string p = file("mine.safetensors");
        qls::safetensors_save(p, fixture_tensors(), fixture_metadata);
        const std::string got = read_all(p);
        if (got != want) {
            size_t i = 0;
            while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
            QFAIL(qPrintable(QString("differs from %1 at byte %2 (sizes %3 vs %4); ours near there: %5")
                                 .arg(QString::fromStdString(fixture_path()))
                                 .arg(i)
                                 .arg(got.size())
                                 .arg(want.size())
                                 .arg(QString::fromStdString(got.substr(i > 20 ? i - 20 : 0, 60)))));
        }
    }

    void reads_reference_fixture() {
        using qls::dtype;
        auto f = qls::safetensors_file::open(fixture_path());
        QCOMPARE(f.metadata(), fixture_metadata);
        // entries() is sorted by offset, which is the reference writer's order.
        std::vector<std::string> names;
        for (const auto& e : f.entries()) names.push_back(e.name);
        const std::vector<std::string> want = {"positions", "embed.weight",    "empty",          "model.norm.weight",
                                               "scalar",    "layers.0.attn.q", "lm_head.weight", "tokens"};
        QCOMPARE(names, want);
        QCOMPARE(f.find("positions")->begin, uint64_t(0));
        QCOMPARE(f.find("tokens")->end, uint64_t(116));

        qls::tensor pos = f.read("positions");
        QCOMPARE(pos.type(), dtype::i64);
        QCOMPARE(pos.data<int64_t>()[0], int64_t(-3));
        QCOMPARE(pos.data<int64_t>()[2], (int64_t(1) << 40) + 5);
        QCOMPARE(pos.data<int64_t>()[3], std::numeric_limits<int64_t>::min());

        qls::tensor norm = f.read_f32("model.norm.weight");
        QCOMPARE(norm.shape(), qls::shape_t({5}));
        const float norm_want[] = {-2.0f, float(1.0 / 3.0), float(-5.0 / 3.0), float(2.0 / 3.0), float(-4.0 / 3.0)};
        for (int i = 0; i < 5; ++i) QCOMPARE(norm.f32()[i], norm_want[i]);

        qls::tensor emb = f.read("embed.weight");
        QCOMPARE(emb.shape(), qls::shape_t({2, 3}));
        QCOMPARE(emb.f32()[3], float(-1.0 / 9.0));

        QCOMPARE(f.read("empty").shape(), qls::shape_t({0, 3}));
        QCOMPARE(f.read("empty").numel(), int64_t(0));
        qls::tensor sc = f.read("scalar");
        QCOMPARE(sc.shape(), qls::shape_t{});
        QCOMPARE(sc.f32()[0], float(-1.0 / 7.0));

        // Raw 16-bit patterns as printed by numpy/ml_dtypes when the fixture was made.
        qls::tensor q = f.read("layers.0.attn.q");
        QCOMPARE(q.type(), dtype::bf16);
        QCOMPARE(q.shape(), qls::shape_t({3, 2}));
        const uint16_t q_bits[] = {0xbf37, 0x0000, 0x3f37, 0xbe12, 0x3f12, 0x7f62};
        for (int i = 0; i < 6; ++i) QCOMPARE(q.data<uint16_t>()[i], q_bits[i]);
        QCOMPARE(f.read_f32("layers.0.attn.q").f32()[0], -0.71484375f);

        qls::tensor h = f.read("lm_head.weight");
        QCOMPARE(h.type(), dtype::f16);
        const uint16_t h_bits[] = {0xc000, 0x3555, 0xbeab, 0x3955, 0x7bff, 0x8000, 0x0001, 0x0011};
        for (int i = 0; i < 8; ++i) QCOMPARE(h.data<uint16_t>()[i], h_bits[i]);
        qls::tensor h32 = f.read_f32("lm_head.weight");
        QCOMPARE(h32.f32()[4], 65504.0f);
        QVERIFY(std::signbit(h32.f32()[5]) && h32.f32()[5] == 0.0f);
        QCOMPARE(h32.f32()[6], float(std::ldexp(1.0, -24)));

        qls::tensor tok = f.read("tokens");
        QCOMPARE(tok.shape(), qls::shape_t({2, 2, 2}));
        const uint8_t tok_want[] = {11, 48, 85, 122, 159, 196, 233, 14};
        for (int i = 0; i < 8; ++i) QCOMPARE(tok.data<uint8_t>()[i], tok_want[i]);
    }

    void unaligned_data_reads_correctly() {
        // A 1-byte U8 first and no header padding put the F32/F16 data at odd addresses in the mapping.
        std::string header = R"({"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("f":{"dtype":"F32","shape":[3],"data_offsets":[1,13]},)"
                             R"("h":{"dtype":"F16","shape":[2],"data_offsets":[13,17]}})";
        while ((8 + header.size() + 1) % 4 != 1) header += " "; // "f" lands at 1 mod 4, "h" at 1 mod 4 too (odd)
        std::string data = "\x07" + f32_bytes({1.25f, -3.5f, 1e-20f}) + std::string("\x00\x3c\x00\xc0", 4); // f16 1, -2
        const std::string p = make("unaligned.safetensors", st_bytes(header, data));
        auto f = qls::safetensors_file::open(p);
        QVERIFY(reinterpret_cast<uintptr_t>(f.bytes(*f.find("f"))) % 4 != 0);
        qls::tensor t = f.read_f32("f");
        QCOMPARE(t.f32()[0], 1.25f);
        QCOMPARE(t.f32()[1], -3.5f);
        QCOMPARE(t.f32()[2], 1e-20f);
        qls::tensor h = f.read_f32("h");
        QCOMPARE(h.f32()[0], 1.0f);
        QCOMPARE(h.f32()[1], -2.0f);
        QCOMPARE(f.read("u").data<uint8_t>()[0], uint8_t(7));
    }

    void copies_share_the_mapping() {
        const std::string p = file("shared.safetensors");
        qls::safetensors_save(p, {{"w", qls::tensor::from_f32({9, 8, 7}, {3})}});
        std::optional<qls::safetensors_file> a(qls::safetensors_file::open(p));
        qls::safetensors_file b = *a;
        const std::byte* raw = b.bytes(*b.find("w"));
        QVERIFY(raw == a->bytes(*a->find("w")));
        a.reset();
        float v[3];
        std::memcpy(v, raw, 12); // still mapped: b holds it
        QCOMPARE(v[2], 7.0f);
        QCOMPARE(b.read_f32("w").f32()[0], 9.0f);
    }

    void empty_tensor_inside_another_range_is_not_overlap() {
        const std::string p = make_header(
            "empty_inside.safetensors",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
            f32_bytes({1, 2}));
        auto f = qls::safetensors_file::open(p);
        QCOMPARE(f.entries().size(), size_t(2));
        QCOMPARE(f.read("z").numel(), int64_t(0));
    }

    void missing_tensor_read_names_file_and_tensor() {
        const std::string p = make_header("present.safetensors", good_header);
        auto f = qls::safetensors_file::open(p);
        for (int mode = 0; mode < 2; ++mode) {
            try {
                if (mode == 0) f.read("model.layers.0.mlp.up_proj.weight");
                else f.read_f32("model.layers.0.mlp.up_proj.weight");
                QFAIL("read of an absent tensor did not throw");
            } catch (const qls::error& e) {
                QString msg = e.what();
                QVERIFY2(msg.contains(QString::fromStdString(p)), qPrintable(msg));
                QVERIFY2(msg.contains("'model.layers.0.mlp.up_proj.weight'"), qPrintable(msg));
                QVERIFY(!e.hint().empty());
            }
        }
    }

    // ---- malformed files: one case each ---------------------------------------------------------

    void missing_file() {
        QCOMPARE(open_failure(file("does_not_exist.safetensors"), qls::error_code::io, {"cannot open"}), QString());
    }

    void path_is_directory() {
        QDir(tmp_.path()).mkdir("a_dir.safetensors");
        QCOMPARE(open_failure(file("a_dir.safetensors"), qls::error_code::io, {"directory"}), QString());
    }

    void file_of_three_bytes() {
        QCOMPARE(open_failure(make("three.safetensors", "{}\n"), qls::error_code::format, {"3 bytes", "truncated"}),
                 QString());
    }

    void empty_file() {
        QCOMPARE(open_failure(make("zero.safetensors", ""), qls::error_code::format, {"0 bytes", "truncated"}),
                 QString());
    }

    void header_length_past_end_of_file() {
        const std::string p = make("hlen.safetensors", st_bytes(good_header, good_data, 5000));
        QCOMPARE(open_failure(p, qls::error_code::format, {"header length 5000", "past the end of the file"}),
                 QString());
    }

    void header_length_overflowing() {
        // 2^64 - 1: N + 8 wraps around in 64 bits; must still be caught, not read.
        const std::string p = make("hlen_max.safetensors", st_bytes(good_header, good_data, ~uint64_t(0)));
        QCOMPARE(open_failure(p, qls::error_code::format, {"header length", "past the end"}), QString());
    }

    void header_length_over_limit() {
        // 150 MB of header in a sparse file: inside the file, but beyond the reference's 100 MB cap.
        const std::string p = make("hlen_big.safetensors", le64(150'000'000) + "{");
        QCOMPARE(::truncate(p.c_str(), 8 + 150'000'000), 0);
        QCOMPARE(open_failure(p, qls::error_code::format, {"header length", "limit"}), QString());
    }

    void invalid_json() {
        const std::string p = make_header("badjson.safetensors",
                                          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)");
        QCOMPARE(open_failure(p, qls::error_code::format, {"not valid JSON"}), QString());
    }

    void invalid_utf8_in_header() {
        const std::string p = make_header("utf8.safetensors",
                                          "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
        QCOMPARE(open_failure(p, qls::error_code::format, {"not valid JSON"}), QString());
    }

    void header_not_an_object() {
        const std::string p = make_header("array.safetensors", "[1, 2, 3]");
        QCOMPARE(open_failure(p, qls::error_code::format, {"not an object", "array"}), QString());
    }

    void entry_not_an_object() {
        const std::string p = make_header("entry.safetensors", R"({"a":[0,8]})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "not an object"}), QString());
    }

    void missing_dtype() {
        const std::string p = make_header("nodtype.safetensors", R"({"a":{"shape":[2],"data_offsets":[0,8]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "no \"dtype\""}), QString());
    }

    void dtype_not_a_string() {
        const std::string p = make_header("dtypeint.safetensors",
                                          R"({"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "\"dtype\" is not a string"}), QString());
    }

    void unknown_dtype() {
        const std::string p = make_header("f8e9m9.safetensors",
                                          R"({"a":{"dtype":"F8_E9M9","shape":[2],"data_offsets":[0,8]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "unknown dtype", "F8_E9M9"}), QString());
    }

    void valid_but_unsupported_dtype() {
        const std::string p = make_header("u16.safetensors",
                                          R"({"a":{"dtype":"U16","shape":[4],"data_offsets":[0,8]}})");
        QCOMPARE(open_failure(p, qls::error_code::unsupported, {"'a'", "dtype 'U16'", "does not read"}), QString());
    }

    void missing_shape() {
        const std::string p = make_header("noshape.safetensors", R"({"a":{"dtype":"F32","data_offsets":[0,8]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "no \"shape\""}), QString());
    }

    void shape_not_an_array() {
        const std::string p = make_header("shapestr.safetensors",
                                          R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "\"shape\" is not an array"}), QString());
    }

    void negative_shape() {
        const std::string p = make_header("negshape.safetensors",
                                          R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "negative dimension"}), QString());
    }

    void non_integer_shape() {
        const std::string p = make_header("floatshape.safetensors",
                                          R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "non-integer dimension"}), QString());
    }

    void shape_overflowing_element_count() {
        // 2^32 * 2^32 * 4 elements: the product must be checked, not wrapped to a small number.
        const std::string p = make_header(
            "hugeshape.safetensors",
            R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4,0],"data_offsets":[0,0]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "overflow"}), QString());
    }

    void missing_data_offsets() {
        const std::string p = make_header("nooffsets.safetensors", R"({"a":{"dtype":"F32","shape":[2]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "no \"data_offsets\""}), QString());
    }

    void data_offsets_not_two_integers() {
        const std::string p = make_header("oneoffset.safetensors",
                                          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "data_offsets", "two integers"}), QString());
    }

    void data_offsets_negative() {
        const std::string p = make_header("negoffset.safetensors",
                                          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "data_offsets", "non-negative"}), QString());
    }

    void data_offsets_begin_after_end() {
        const std::string p = make_header("reversed.safetensors",
                                          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "data_offsets [8, 0]", "begin after end"}),
                 QString());
    }

    void data_offsets_out_of_range() {
        const std::string p = make_header("outofrange.safetensors",
                                          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,999999]}})");
        QCOMPARE(open_failure(p, qls::error_code::format,
                              {"'a'", "data_offsets [0, 999999]", "past the end of the data section (12 bytes)",
                               "truncated"}),
                 QString());
    }

    void size_mismatch_with_shape() {
        // [2, 3] F32 needs 24 bytes; the offsets give 8.
        const std::string p = make_header("mismatch.safetensors",
                                          R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,8]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "size mismatch", "24 bytes"}), QString());
    }

    void overlapping_offsets() {
        const std::string p = make_header(
            "overlap.safetensors",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "'b'", "overlap"}), QString());
    }

    void overlap_across_an_empty_tensor() {
        // Sorted by begin: a [0,12], z [4,4] (empty: owns no bytes, overlaps nothing), c [8,10]. The check must
        // neither blame z nor lose track of a when it steps over z.
        const std::string p = make_header(
            "overlap3.safetensors",
            R"({"a":{"dtype":"U8","shape":[12],"data_offsets":[0,12]},"z":{"dtype":"U8","shape":[0],"data_offsets":[4,4]},)"
            R"("c":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"overlap", "'a' [0, 12]", "'c' [8, 10]"}), QString());
    }

    void duplicate_tensor_name() {
        const std::string p = make_header(
            "dup.safetensors",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})");
        QCOMPARE(open_failure(p, qls::error_code::format, {"'a'", "more than once"}), QString());
    }

    void metadata_not_an_object() {
        const std::string p = make_header("metaarr.safetensors",
                                          std::string(R"({"__metadata__":["x"],)") + (good_header + 1));
        QCOMPARE(open_failure(p, qls::error_code::format, {"__metadata__", "not an object"}), QString());
    }

    void metadata_value_not_a_string() {
        const std::string p = make_header("metaint.safetensors",
                                          std::string(R"({"__metadata__":{"step":5},)") + (good_header + 1));
        QCOMPARE(open_failure(p, qls::error_code::format, {"__metadata__", "'step'", "not a string"}), QString());
    }

    void truncated_file() {
        // A valid file cut in the middle of its data: the second tensor (400 bytes) loses its last 200.
        const std::string whole = file("whole.safetensors");
        std::vector<float> v(1000);
        for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
        qls::safetensors_save(whole,
                              {{"model.embed_tokens.weight", qls::tensor::from_f32(v, {10, 100})},
                               {"model.norm.weight", qls::tensor::from_f32(std::vector<float>(100, 1.0f), {100})}});
        QVERIFY(qls::safetensors_file::open(whole).find("model.norm.weight"));
        std::string bytes = read_all(whole);
        const std::string p = make("cut.safetensors", bytes.substr(0, bytes.size() - 200));
        QCOMPARE(open_failure(p, qls::error_code::format, {"'model.norm.weight'", "past the end", "truncated"}),
                 QString());
    }

    // ---- writer failures and atomicity ----------------------------------------------------------

    void save_rejects_bad_arguments() {
        const std::string p = file("bad_args.safetensors");
        auto t = qls::tensor::from_f32({1}, {1});
        QCOMPARE(call_failure(
                     [&] {
                         qls::safetensors_save(p, {{"w", t}, {"w", t}});
                     },
                     qls::error_code::invalid_argument, p, {"'w'", "twice"}),
                 QString());
        QCOMPARE(call_failure(
                     [&] {
                         qls::safetensors_save(p, {{"__metadata__", t}});
                     },
                     qls::error_code::invalid_argument, p, {"reserved"}),
                 QString());
        QCOMPARE(call_failure(
                     [&] {
                         qls::safetensors_save(p, {{"w", qls::tensor()}});
                     },
                     qls::error_code::invalid_argument, p, {"'w'", "no storage"}),
                 QString());
        QCOMPARE(call_failure(
                     [&] {
                         qls::safetensors_save(p, {{"bad\xff", t}});
                     },
                     qls::error_code::invalid_argument, p, {"UTF-8"}),
                 QString());
        QVERIFY(!QFileInfo::exists(QString::fromStdString(p)));
        QVERIFY(!QFileInfo::exists(QString::fromStdString(p + ".tmp")));
    }

    void save_replaces_existing_file() {
        const std::string p = file("replace.safetensors");
        write_all(p, "old contents");
        qls::safetensors_save(p, {{"w", qls::tensor::from_f32({3, 4}, {2})}});
        QCOMPARE(qls::safetensors_file::open(p).read_f32("w").f32()[1], 4.0f);
        QVERIFY(!QFileInfo::exists(QString::fromStdString(p + ".tmp")));
    }

    void save_onto_a_directory_fails_and_leaves_it() {
        QDir(tmp_.path()).mkpath("target_dir.safetensors");
        const std::string p = file("target_dir.safetensors");
        write_all(p + "/inside.txt", "keep me");
        QCOMPARE(call_failure(
                     [&] {
                         qls::safetensors_save(p, {{"w", qls::tensor::from_f32({1}, {1})}});
                     },
                     qls::error_code::io, p, {"cannot write"}),
                 QString());
        QVERIFY(QFileInfo(QString::fromStdString(p)).isDir());
        QCOMPARE(read_all(p + "/inside.txt"), std::string("keep me"));
        QVERIFY(!QFileInfo::exists(QString::fromStdString(p + ".tmp"))); // the temp file was removed
    }

    void save_failing_to_create_temp_keeps_old_file() {
        // The temp path is blocked by a directory: the write fails before anything touches the target.
        const std::string p = file("keep_old.safetensors");
        qls::safetensors_save(p, {{"old", qls::tensor::from_f32({1, 2, 3}, {3})}});
        const std::string before = read_all(p);
        QDir(tmp_.path()).mkdir("keep_old.safetensors.tmp");
        QCOMPARE(call_failure(
                     [&] {
                         qls::safetensors_save(p, {{"new", qls::tensor::from_f32({9}, {1})}});
                     },
                     qls::error_code::io, p, {"temporary file"}),
                 QString());
        QCOMPARE(read_all(p), before);
        QVERIFY(qls::safetensors_file::open(p).find("old"));
    }

    void save_into_unwritable_directory_keeps_old_file() {
        if (::geteuid() == 0) QSKIP("running as root: directory permissions do not stop root from writing");
        QDir(tmp_.path()).mkdir("ro");
        const std::string dir = file("ro");
        const std::string p = dir + "/model.safetensors";
        qls::safetensors_save(p, {{"old", qls::tensor::from_f32({1, 2, 3}, {3})}});
        const std::string before = read_all(p);
        QCOMPARE(::chmod(dir.c_str(), 0555), 0);
        QString failure = call_failure(
            [&] {
                qls::safetensors_save(p, {{"new", qls::tensor::from_f32({9}, {1})}});
            },
            qls::error_code::io, p, {"temporary file", "Permission denied"});
        ::chmod(dir.c_str(), 0755);
        QCOMPARE(failure, QString());
        QCOMPARE(read_all(p), before);
    }
};

QTEST_APPLESS_MAIN(tst_safetensors)
#include "tst_safetensors.moc"
