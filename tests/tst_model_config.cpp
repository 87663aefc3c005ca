// Qt Test: config.json parsing (both rope layouts, defaults, eos lists), validation errors, rope_inv_freq, parameter_count.
#include "testutil.h"

#include "qls/error.h"
#include "qls/model_config.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <numbers>
#include <sstream>

using json = nlohmann::json;

namespace {

const std::string k_src = "/models/test/config.json";

json stories_json() {
    std::ifstream in(testutil::model_dir() + "/config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    return json::parse(ss.str());
}

qls::model_config parse(const json& j) { return qls::parse_model_config(j.dump(2), k_src); }

// Runs f, which must throw qls::error with `code` and a message containing every string in `parts`.
void expect_error(const std::function<void()>& f, qls::error_code code, const std::vector<std::string>& parts) {
    try {
        f();
    } catch (const qls::error& e) {
        std::string msg = e.what();
        QVERIFY2(e.code() == code, qPrintable(QString("expected code %1, got %2: %3")
                                                  .arg(qls::error_code_name(code), qls::error_code_name(e.code()),
                                                       QString::fromStdString(msg))));
        for (const std::string& p : parts)
            QVERIFY2(msg.find(p) != std::string::npos,
                     qPrintable(QString("message lacks \"%1\": %2")
                                    .arg(QString::fromStdString(p), QString::fromStdString(msg))));
        QVERIFY2(!e.hint().empty(), qPrintable("no hint for: " + QString::fromStdString(msg)));
        return;
    }
    QFAIL("no qls::error was thrown");
}

bool same_config(const qls::model_config& a, const qls::model_config& b) {
    return a.model_type == b.model_type && a.hidden_size == b.hidden_size &&
           a.intermediate_size == b.intermediate_size && a.num_layers == b.num_layers && a.num_heads == b.num_heads &&
           a.num_kv_heads == b.num_kv_heads && a.head_dim == b.head_dim && a.vocab_size == b.vocab_size &&
           a.max_position_embeddings == b.max_position_embeddings && a.rms_norm_eps == b.rms_norm_eps &&
           a.rope.theta == b.rope.theta && a.rope.type == b.rope.type && a.rope.factor == b.rope.factor &&
           a.rope.low_freq_factor == b.rope.low_freq_factor && a.rope.high_freq_factor == b.rope.high_freq_factor &&
           a.rope.original_max_position_embeddings == b.rope.original_max_position_embeddings &&
           a.tie_word_embeddings == b.tie_word_embeddings && a.bos_token_id == b.bos_token_id &&
           a.eos_token_ids == b.eos_token_ids && a.torch_dtype == b.torch_dtype;
}

// A Llama-3.1-like config: head_dim 128, theta 500000, llama3 rope scaling (factor 8, 1, 4, 8192).
json llama31_json() {
    json j = stories_json();
    j["hidden_size"] = 2048;
    j["num_attention_heads"] = 16;
    j["num_key_value_heads"] = 8;
    j["max_position_embeddings"] = 131072;
    j["rope_theta"] = 500000.0;
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}};
    return j;
}

} // namespace

class tst_model_config : public QObject {
    Q_OBJECT
private slots:
    void stories260k_values() {
        QLS_REQUIRE_MODEL();
        qls::model_config c = qls::load_model_config(testutil::model_dir() + "/config.json");
        QCOMPARE(c.model_type, std::string("llama"));
        QCOMPARE(c.hidden_size, 64);
        QCOMPARE(c.intermediate_size, 172);
        QCOMPARE(c.num_layers, 5);
        QCOMPARE(c.num_heads, 8);
        QCOMPARE(c.num_kv_heads, 4);
        QCOMPARE(c.head_dim, 8);
        QCOMPARE(c.vocab_size, 512);
        QCOMPARE(c.max_position_embeddings, 512);
        QCOMPARE(c.rms_norm_eps, 1e-5);
        QCOMPARE(c.rope.theta, 10000.0);
        QCOMPARE(c.rope.type, std::string("default"));
        QVERIFY(c.tie_word_embeddings);
        QCOMPARE(c.bos_token_id, 1);
        QCOMPARE(c.eos_token_ids, std::vector<int>{2});
        QCOMPARE(c.torch_dtype, std::string("float32"));
        // SOURCE.md: 260,032 model parameters (embedding shared with the LM head).
        QCOMPARE(c.parameter_count(), 260032LL);
        c.tie_word_embeddings = false;
        QCOMPARE(c.parameter_count(), 260032LL + 512 * 64);

        // head_dim 8, theta 10000: 10000^(-i/4) for i = 0..3.
        std::vector<float> inv = qls::rope_inv_freq(c);
        QCOMPARE(inv.size(), size_t(4));
        const double want[] = {1.0, 0.1, 0.01, 0.001};
        for (int i = 0; i < 4; ++i) QVERIFY(std::abs(inv[size_t(i)] - want[i]) <= 1e-6 * want[i]);
    }

    void rope_parameters_layout_parses_identically() {
        QLS_REQUIRE_MODEL();
        json legacy = stories_json();
        json v5 = legacy;
        v5.erase("rope_theta");
        v5.erase("torch_dtype");
        v5["dtype"] = "float32"; // transformers v5 also renames torch_dtype
        v5["rope_parameters"] = {{"rope_theta", 10000.0}, {"rope_type", "default"}};
        QVERIFY(same_config(parse(legacy), parse(v5)));

        // llama3 scaling in both layouts.
        json a = llama31_json();
        json b = a;
        b.erase("rope_theta");
        b.erase("rope_scaling");
        b["rope_parameters"] = {{"rope_theta", 500000.0},  {"rope_type", "llama3"},
                                {"factor", 8.0},           {"low_freq_factor", 1.0},
                                {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
        qls::model_config ca = parse(a), cb = parse(b);
        QVERIFY(same_config(ca, cb));
        QCOMPARE(cb.rope.type, std::string("llama3"));
        QCOMPARE(cb.rope.theta, 500000.0);
        QCOMPARE(cb.rope.factor, 8.0);
        QCOMPARE(cb.rope.original_max_position_embeddings, 8192);
        QCOMPARE(qls::rope_inv_freq(ca), qls::rope_inv_freq(cb));

        // The legacy BC key "type" instead of "rope_type".
        json c = a;
        c["rope_scaling"].erase("rope_type");
        c["rope_scaling"]["type"] = "llama3";
        QVERIFY(same_config(ca, parse(c)));
    }

    void llama3_inv_freq() {
        QLS_REQUIRE_MODEL();
        qls::model_config c = parse(llama31_json());
        QCOMPARE(c.head_dim, 128);
        std::vector<float> inv = qls::rope_inv_freq(c);
        QCOMPARE(inv.size(), size_t(64));

        // Independent float64 evaluation of the Llama 3.1 rule: wavelength 2*pi/f below 8192/4 keeps f, above
        // 8192/1 divides it by 8, in between blends f/8 and f with s = (8192/wavelen - 1) / (4 - 1).
        for (int i = 0; i < 64; ++i) {
            double f = 1.0 / std::pow(500000.0, 2.0 * i / 128.0);
            double wl = 2 * std::numbers::pi / f;
            double want;
            if (wl < 2048.0) want = f;
            else if (wl > 8192.0) want = f / 8.0;
            else {
                double s = (8192.0 / wl - 1.0) / 3.0;
                want = (1 - s) * f / 8.0 + s * f;
            }
            QVERIFY2(std::abs(inv[size_t(i)] - want) <= 2e-6 * want,
                     qPrintable(QString("i=%1: %2 vs %3").arg(i).arg(inv[size_t(i)], 0, 'g', 9).arg(want, 0, 'g', 9)));
        }
        // Hand-checked entries (Python float64 of the formula above): i=0 and 10 unscaled, 29..34 blended,
        // 35 and 63 divided by 8.
        struct {
            int i;
            double v;
        } hand[] = {{0, 1.0},
                    {10, 0.12868737343265052},
                    {29, 0.002166570763503359},
                    {30, 0.0013718935677611381},
                    {34, 0.00017850781276799638},
                    {35, 9.556212353964683e-05},
                    {63, 3.068925988914511e-07}};
        for (auto h : hand)
            QVERIFY2(std::abs(inv[size_t(h.i)] - h.v) <= 2e-6 * h.v, qPrintable(QString("i=%1").arg(h.i)));

        // Unscaled entries equal the default rope exactly; scaled ones are default / 8 (float32).
        qls::model_config d = c;
        d.rope.type = "default";
        std::vector<float> base = qls::rope_inv_freq(d);
        QCOMPARE(inv[10], base[10]);
        QCOMPARE(inv[63], base[63] / 8.0f);
        QVERIFY(inv[30] < base[30] && inv[30] > base[30] / 8.0f);

        // linear: every frequency divided by the factor.
        json lj = llama31_json();
        lj["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
        std::vector<float> lin = qls::rope_inv_freq(parse(lj));
        for (size_t i = 0; i < lin.size(); ++i) QCOMPARE(lin[i], base[i] / 4.0f);
    }

    void defaults() {
        QLS_REQUIRE_MODEL();
        json j = stories_json();
        for (const char* k :
             {"num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings",
              "bos_token_id", "eos_token_id", "torch_dtype", "hidden_act", "attention_bias", "mlp_bias"})
            j.erase(k);
        qls::model_config c = parse(j);
        QCOMPARE(c.num_kv_heads, 8); // = num_attention_heads
        QCOMPARE(c.head_dim, 8);     // = hidden_size / num_attention_heads
        QCOMPARE(c.max_position_embeddings, 2048);
        QCOMPARE(c.rms_norm_eps, 1e-6);
        QCOMPARE(c.rope.theta, 10000.0);
        QVERIFY(!c.tie_word_embeddings);
        QCOMPARE(c.bos_token_id, 1);
        QCOMPARE(c.eos_token_ids, std::vector<int>{2});

        json n = stories_json();
        n["num_key_value_heads"] = nullptr; // explicit null: also num_attention_heads
        n["head_dim"] = nullptr;
        QCOMPARE(parse(n).num_kv_heads, 8);
        QCOMPARE(parse(n).head_dim, 8);

        json h = stories_json();
        h["head_dim"] = 16; // explicit head_dim wins over hidden_size / heads
        QCOMPARE(parse(h).head_dim, 16);

        json m = stories_json();
        m["model_type"] = "mistral";
        m["num_attention_heads"] = 32;
        m["hidden_size"] = 256;
        m.erase("num_key_value_heads");
        m.erase("max_position_embeddings");
        qls::model_config mc = parse(m);
        QCOMPARE(mc.num_kv_heads, 8); // MistralConfig's default
        QCOMPARE(mc.max_position_embeddings, 4096 * 32);

        // Mistral v0.1: a 4096-token sliding window caps the usable context (full causal attention is exact there)
        m["max_position_embeddings"] = 32768;
        m["sliding_window"] = 4096;
        QCOMPARE(parse(m).max_position_embeddings, 4096);
        m["sliding_window"] = nullptr;
        QCOMPARE(parse(m).max_position_embeddings, 32768);
    }

    void eos_list() {
        QLS_REQUIRE_MODEL();
        json j = stories_json();
        j["eos_token_id"] = {2, 7, 9};
        QCOMPARE(parse(j).eos_token_ids, (std::vector<int>{2, 7, 9}));
        j["eos_token_id"] = 5;
        QCOMPARE(parse(j).eos_token_ids, std::vector<int>{5});
    }

    void bad_configs() {
        QLS_REQUIRE_MODEL();
        using qls::error_code;
        auto edit = [](const std::function<void(json&)>& f) {
            json j = stories_json();
            f(j);
            return j;
        };
        auto bad = [&](const std::function<void(json&)>& f, error_code code, std::vector<std::string> parts) {
            json j = edit(f);
            parts.push_back(k_src);
            expect_error([&] { parse(j); }, code, parts);
        };
        bad([](json& j) { j.erase("hidden_size"); }, error_code::config, {"'hidden_size'", "missing"});
        bad([](json& j) { j["hidden_size"] = "64"; }, error_code::config,
            {"'hidden_size'", "\"64\"", "a string", "integer"});
        bad([](json& j) { j["hidden_size"] = 64.5; }, error_code::config, {"'hidden_size'", "64.5"});
        bad([](json& j) { j["vocab_size"] = nullptr; }, error_code::config, {"'vocab_size'", "null"});
        bad([](json& j) { j["num_hidden_layers"] = 0; }, error_code::config, {"'num_hidden_layers'", "positive"});
        bad([](json& j) { j["intermediate_size"] = -3; }, error_code::config, {"'intermediate_size'", "-3"});
        bad([](json& j) { j["num_key_value_heads"] = 3; }, error_code::config,
            {"'num_key_value_heads'", "divide num_attention_heads (8)", "3"});
        bad(
            [](json& j) {
                j["num_attention_heads"] = 5;
                j["num_key_value_heads"] = 5;
            },
            error_code::config, {"'num_attention_heads'", "hidden_size (64)"});
        bad(
            [](json& j) {
                j["head_dim"] = 9;
                j["num_key_value_heads"] = 8;
            },
            error_code::config, {"'head_dim'", "even"});
        bad([](json& j) { j["attention_bias"] = true; }, error_code::unsupported, {"'attention_bias'", "bias"});
        bad([](json& j) { j["mlp_bias"] = true; }, error_code::unsupported, {"'mlp_bias'", "bias"});
        bad([](json& j) { j["hidden_act"] = "gelu"; }, error_code::unsupported, {"'hidden_act'", "gelu", "silu"});
        bad([](json& j) { j["model_type"] = "gpt2"; }, error_code::unsupported, {"'model_type'", "gpt2", "llama"});
        bad([](json& j) { j.erase("model_type"); }, error_code::config, {"'model_type'", "missing"});
        bad([](json& j) { j["tie_word_embeddings"] = "yes"; }, error_code::config,
            {"'tie_word_embeddings'", "true or false"});
        bad([](json& j) { j["eos_token_id"] = "2"; }, error_code::config, {"'eos_token_id'", "\"2\""});
        bad([](json& j) { j["eos_token_id"] = json::array(); }, error_code::config, {"'eos_token_id'", "non-empty"});
        bad([](json& j) { j["eos_token_id"] = 600; }, error_code::config, {"'eos_token_id'", "600", "vocab_size 512"});
        bad([](json& j) { j["rope_theta"] = -1.0; }, error_code::config, {"'rope_theta'", "positive"});
        bad(
            [](json& j) {
                j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
            },
            error_code::unsupported, {"'rope_scaling.rope_type'", "yarn", "llama3"});
        bad(
            [](json& j) {
                j["rope_scaling"] = {{"type", "wobbly"}};
            },
            error_code::unsupported, {"'rope_scaling.type'", "wobbly"});
        bad(
            [](json& j) {
                j.erase("rope_theta");
                j["rope_parameters"] = {{"rope_theta", 1e4}, {"rope_type", "bogus"}};
            },
            error_code::unsupported, {"'rope_parameters.rope_type'", "bogus"});
        bad(
            [](json& j) {
                j["rope_parameters"] = {{"rope_theta", "big"}};
            },
            error_code::config, {"'rope_parameters.rope_theta'", "\"big\""});
        bad(
            [](json& j) {
                j["rope_scaling"] = {{"rope_type", "linear"}};
            },
            error_code::config, {"'rope_scaling.factor'", "missing"});
        bad(
            [](json& j) {
                j["rope_scaling"] = {{"rope_type", "llama3"},
                                     {"factor", 8.0},
                                     {"high_freq_factor", 4.0},
                                     {"original_max_position_embeddings", 8192}};
            },
            error_code::config, {"'rope_scaling.low_freq_factor'", "missing"});
        bad(
            [](json& j) {
                j["rope_scaling"] = {{"rope_type", "llama3"},
                                     {"factor", 8.0},
                                     {"low_freq_factor", 4.0},
                                     {"high_freq_factor", 4.0},
                                     {"original_max_position_embeddings", 8192}};
            },
            error_code::config, {"'rope_scaling.high_freq_factor'", "greater than low_freq_factor"});
        bad([](json& j) { j["rope_scaling"] = 2.0; }, error_code::config, {"'rope_scaling'", "object"});

        // Not JSON / not an object: the file is named, with the parser's position.
        expect_error([] { qls::parse_model_config("{\"hidden_size\": 64,", k_src); }, error_code::format,
                     {k_src, "not valid JSON", "line 1"});
        expect_error([] { qls::parse_model_config("[1, 2]", k_src); }, error_code::format, {k_src, "JSON object"});
        expect_error([] { qls::load_model_config("/nonexistent/dir/config.json"); }, error_code::io,
                     {"/nonexistent/dir/config.json"});
    }
};

QTEST_APPLESS_MAIN(tst_model_config)
#include "tst_model_config.moc"
