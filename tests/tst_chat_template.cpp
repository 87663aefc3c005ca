// Qt Test: the Jinja chat template engine (qls/chat_template.h): every real template of
// tests/data/chat_templates/templates renders byte-identical to Jinja2 as Hugging Face configures it (fixtures.json,
// made by gen_fixtures.py), generation spans included; Python value semantics; malformed templates and runaway
// templates fail with errors naming the origin and line; template discovery in a Hugging Face directory.
#include "testutil.h"

#include "qls/chat_template.h"
#include "qls/error.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

std::string data_dir() { return std::string(QLS_SOURCE_DIR) + "/tests/data/chat_templates"; }

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

// The fixtures' fixed clock, "YYYY-MM-DDTHH:MM:SS", as a normalized std::tm (weekday and day of year filled in).
std::tm fixed_tm(const std::string& iso) {
    std::tm tm{};
    tm.tm_year = std::stoi(iso.substr(0, 4)) - 1900;
    tm.tm_mon = std::stoi(iso.substr(5, 2)) - 1;
    tm.tm_mday = std::stoi(iso.substr(8, 2));
    tm.tm_hour = std::stoi(iso.substr(11, 2));
    tm.tm_min = std::stoi(iso.substr(14, 2));
    tm.tm_sec = std::stoi(iso.substr(17, 2));
    const time_t t = timegm(&tm);
    gmtime_r(&t, &tm);
    return tm;
}

std::string render(const std::string& text, const ojson& ctx = ojson::object(), const qls::template_limits& lim = {}) {
    return qls::jinja_template::parse(text, "test.jinja", lim).render(ctx);
}

// The error a template gives (parse or render), or "" when none.
std::string error_of(const std::string& text, const ojson& ctx = ojson::object(),
                     const qls::template_limits& lim = {}) {
    try {
        render(text, ctx, lim);
    } catch (const qls::error& e) {
        if (e.hint().empty()) return std::string("NO HINT: ") + e.what();
        return e.what();
    }
    return "";
}

// A readable first difference for a failed byte comparison.
std::string first_difference(const std::string& got, const std::string& want) {
    size_t k = 0;
    while (k < got.size() && k < want.size() && got[k] == want[k]) ++k;
    auto around = [&](const std::string& s) { return s.substr(k < 40 ? 0 : k - 40, 120); };
    return "at byte " + std::to_string(k) + "\n got: [" + around(got) + "]\nwant: [" + around(want) + "]";
}

} // namespace

class tst_chat_template : public QObject {
    Q_OBJECT

private slots:
    // Every template × conversation × add_generation_prompt of fixtures.json: the same bytes, the same
    // {% generation %} spans, or an error where Jinja2 raised one (the raise_exception message kept verbatim).
    void hugging_face_fixtures() {
        const ojson fx = ojson::parse(read_file(data_dir() + "/fixtures.json"));
        QVERIFY(fx["cases"].size() >= 21 * 2);
        qls::render_options opt;
        const std::tm now = fixed_tm(fx["now"].get<std::string>());
        opt.now = [now] { return now; };
        std::map<std::string, qls::jinja_template> templates;
        size_t rendered = 0, errors = 0, with_spans = 0;
        std::set<std::string> names;
        for (const ojson& c : fx["cases"]) {
            const std::string name = c["template"].get<std::string>();
            names.insert(name);
            if (!templates.count(name))
                templates.emplace(name, qls::jinja_template::parse(read_file(data_dir() + "/templates/" + name), name));
            qls::chat_request req;
            req.tools = c["tools"].get<bool>() ? fx["tools"] : ojson(nullptr);
            req.add_generation_prompt = c["add_generation_prompt"].get<bool>();
            req.variables = c["variables"];
            const ojson& messages = fx["conversations"][c["conversation"].get<std::string>()];
            const std::string label = name + " / " + c["conversation"].get<std::string>() +
                                      (req.tools.is_null() ? "" : " +tools") +
                                      (req.add_generation_prompt ? " / agp" : " / no agp");
            if (c.contains("error")) {
                try {
                    qls::render_chat(templates.at(name), messages, req, opt);
                    QFAIL(qPrintable(QString::fromStdString(label + ": rendered, Jinja2 raised " +
                                                            c["error"].get<std::string>())));
                } catch (const qls::error& e) {
                    const std::string msg = e.what();
                    QVERIFY2(msg.find(name) != std::string::npos, qPrintable(QString::fromStdString(msg)));
                    if (c["error_type"] == "TemplateError") {
                        QVERIFY2(e.code() == qls::error_code::invalid_argument,
                                 qPrintable(QString::fromStdString(msg)));
                        QVERIFY2(msg.find(c["error"].get<std::string>()) != std::string::npos,
                                 qPrintable(QString::fromStdString(label + ": " + msg)));
                    }
                }
                ++errors;
                continue;
            }
            qls::template_output out;
            try {
                out = qls::render_chat(templates.at(name), messages, req, opt);
            } catch (const qls::error& e) {
                QFAIL(qPrintable(QString::fromStdString(label + ": " + e.what())));
            }
            const std::string want = c["expected"].get<std::string>();
            QVERIFY2(out.text == want,
                     qPrintable(QString::fromStdString(label + ": " + first_difference(out.text, want))));
            std::vector<qls::generation_span> spans;
            for (const ojson& s : c["generation"]) spans.push_back({s[0].get<size_t>(), s[1].get<size_t>()});
            QVERIFY2(out.generation == spans, qPrintable(QString::fromStdString(label + ": generation spans differ")));
            with_spans += !spans.empty();
            ++rendered;
        }
        QCOMPARE(names.size(), size_t(21));
        QVERIFY(rendered > 300);
        QVERIFY(errors > 10);
        QVERIFY(with_spans > 5);
        qInfo("%zu cases rendered byte-identical, %zu expected errors, %zu with generation spans", rendered, errors,
              with_spans);
    }

    // Expressions and statements of fixtures.json's "snippets" (numbers, repr, tojson, string methods, filters,
    // whitespace control): the same bytes as Jinja2.
    void python_snippets() {
        const ojson fx = ojson::parse(read_file(data_dir() + "/fixtures.json"));
        QVERIFY(fx["snippets"].size() >= 40);
        for (const ojson& c : fx["snippets"]) {
            const std::string text = c["template"].get<std::string>();
            if (c.contains("error")) {
                QVERIFY2(!error_of(text).empty(), qPrintable(QString::fromStdString(text)));
                continue;
            }
            std::string got;
            try {
                got = render(text);
            } catch (const qls::error& e) {
                QFAIL(qPrintable(QString::fromStdString(text + ": " + e.what())));
            }
            const std::string want = c["expected"].get<std::string>();
            QVERIFY2(got == want, qPrintable(QString::fromStdString(text + ": " + first_difference(got, want))));
        }
    }

    // Whitespace control exactly as Jinja2 with trim_blocks + lstrip_blocks (outputs checked with Jinja2 3.1).
    void whitespace_control() {
        QCOMPARE(render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), std::string("a\n  b\nc"));
        QCOMPARE(render("a  {%- if true -%}  b  {%- endif -%}  c"), std::string("abc"));
        QCOMPARE(render("x {{ 1 }} y"), std::string("x 1 y"));
        QCOMPARE(render("a\n{{- 1 -}}\nb"), std::string("a1b"));
        QCOMPARE(render("  {%+ if true %}x{% endif %}"), std::string("  x"));
        QCOMPARE(render("a {# c #}\nb"), std::string("a b"));
        QCOMPARE(render("  {# c #}\nb"), std::string("b"));
        QCOMPARE(render("{% if true %}x{% endif +%}\ny"), std::string("x\ny"));
        QCOMPARE(render("line\n"), std::string("line")); // keep_trailing_newline=False
        QCOMPARE(render("line\n\n"), std::string("line\n"));
        QCOMPARE(render("{% raw %}{{ not parsed }}{% endraw %}"), std::string("{{ not parsed }}"));
        QCOMPARE(render("a\r\nb"), std::string("a\nb"));
    }

    // Python semantics where templates notice them.
    void python_values() {
        QCOMPARE(render("{{ 1.0 }} {{ 2.5e-7 }} {{ 1e16 }} {{ 10/4 }} {{ 7//2 }} {{ -7//2 }} {{ -7 % 3 }} {{ 2**10 }}"),
                 std::string("1.0 2.5e-07 1e+16 2.5 3 -4 2 1024"));
        QCOMPARE(render("{{ true }} {{ none }} {{ True }} {{ [1, 'a', none, 1.5] }} {{ {'k': \"it's\"} }} {{ (1,) }}"),
                 std::string("True None True [1, 'a', None, 1.5] {'k': \"it's\"} (1,)"));
        QCOMPARE(render("{{ 'a\\tb\\x41\\u00e9' }}|{{ \"q\\\"\" }}"), std::string("a\tbA\xC3\xA9|q\""));
        QCOMPARE(render("{{ [] | length }}{{ 'x' if [] else 'y' }}{{ 'x' if {} else 'y' }}{{ 'x' if '0' else 'y' }}"),
                 std::string("0yyx"));
        QCOMPARE(
            render("{{ 'héllo'[1] }}{{ 'héllo'|length }}{{ 'héllo'[::-1] }}{{ [1,2,3,4][-1] }}{{ [1,2,3,4][::-2] }}"),
            std::string("\xC3\xA9"
                        "5oll\xC3\xA9h4[4, 2]"));
        QCOMPARE(
            render("{{ x }}|{{ x is defined }}|{{ x|default('d') }}|{{ none|default('d') }}|{{ ''|d('e', true) }}"),
            std::string("|False|d|None|e"));
        QCOMPARE(
            render(
                "{{ 1 == 1.0 }} {{ 'a' < 'b' < 'c' }} {{ 2 in [1, 2] }} {{ 'b' not in 'abc' }} {{ 'k' in {'k': 1} }}"),
            std::string("True True True False True"));
        QCOMPARE(render("{{ 'a' ~ 1 ~ none ~ x }}|{{ 1 and 'y' }}|{{ 0 or '' or 'z' }}|{{ not 0 }}"),
                 std::string("a1None|y|z|True"));
        QVERIFY(error_of("{{ 'a' + none }}").find("can only concatenate str (not \"NoneType\") to str") !=
                std::string::npos);
        QVERIFY(error_of("{{ x.y }}").find("'x' is undefined") != std::string::npos);
        QCOMPARE(render("{{ none.y }}|{{ {'a': 1}.b }}|{{ [1][5] }}"), std::string("||"));
    }

    void statements() {
        QCOMPARE(
            render(
                "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ loop.index }}{{ k }}{{ v }}{{ ',' if not loop.last }}{% endfor %}"),
            std::string("1a1,2b2"));
        QCOMPARE(
            render("{% for x in [1,2,3,4] if x is even %}{{ loop.index0 }}:{{ x }}/{{ loop.length }} {% endfor %}"),
            std::string("0:2/2 1:4/2 "));
        QCOMPARE(render("{% for x in [] %}x{% else %}empty{% endfor %}"), std::string("empty"));
        QCOMPARE(
            render("{% for x in 'abc' %}{{ loop.revindex }}{{ loop.previtem }}{{ loop.cycle('+', '-') }}{% endfor %}"),
            std::string("3+2a-1b+"));
        QCOMPARE(
            render(
                "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            std::string("013"));
        // A set inside a loop does not leak out; a namespace carries the value.
        QCOMPARE(
            render(
                "{% set a = 1 %}{% set ns = namespace(n=0) %}{% for x in [1,2] %}{% set a = x %}{% set ns.n = ns.n + x %}{% endfor %}{{ a }}{{ ns.n }}"),
            std::string("13"));
        // Reference cycles a template can build (a namespace holding itself, a macro stored in a namespace of the
        // scope it was defined in, a macro defined inside a loop body): the sanitizer tree's leak check fails this test
        // if any is not released when rendering ends.
        QCOMPARE(render("{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns.me.me.a }}"), std::string("1"));
        QCOMPARE(render("{% macro m() %}M{% endmacro %}{% set ns = namespace(f=m) %}{{ ns.f() }}"), std::string("M"));
        QCOMPARE(render("{% for x in [1,2] %}{% macro m() %}{{ x }}{% endmacro %}{{ m() }}{% endfor %}"),
                 std::string("12"));
        QCOMPARE(render("{% set a %}  block {{ 1 }} {% endset %}[{{ a }}]{% set b | trim %}  t  {% endset %}[{{ b }}]"),
                 std::string("[  block 1 ][t]"));
        QCOMPARE(
            render("{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, b=2) }}{{ m('x', 'y') }}"),
            std::string("1B12xy"));
        QCOMPARE(render("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}inner{% endcall %}"),
                 std::string("<inner>"));
        QCOMPARE(render("{% filter upper %}abc{% endfilter %}"), std::string("ABC"));
        QCOMPARE(render("{{ 'a' if false }}|{{ 1 if 0 else 2 }}"), std::string("|2"));
        QCOMPARE(render("{% with a = 5 %}{{ a }}{% endwith %}{{ a }}"), std::string("5"));
    }

    void filters_and_methods() {
        const ojson ctx = ojson::parse(R"({"people": [{"name": "b", "age": 3}, {"name": "A", "age": 1, "x": true}],
                                          "d": {"z": 1, "a": [1, 2], "s": "é"}})");
        QCOMPARE(
            render(
                "{{ people|map(attribute='name')|join(',') }}|{{ people|selectattr('x')|list|length }}|"
                "{{ people|rejectattr('x', 'defined')|map(attribute='age')|first }}|{{ people|sort(attribute='name')|map(attribute='name')|join }}",
                ctx),
            std::string("b,A|1|3|Ab"));
        QCOMPARE(
            render(
                "{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(separators=(',', ':'), sort_keys=true) }}|{{ d|tojson(ensure_ascii=true) }}",
                ctx),
            std::string(
                "{\"z\": 1, \"a\": [1, 2], \"s\": \"\xC3\xA9\"}|{\n  \"z\": 1,\n  \"a\": [\n    1,\n    2\n  ],\n  \"s\": \"\xC3\xA9\"\n}|"
                "{\"a\":[1,2],\"s\":\"\xC3\xA9\",\"z\":1}|{\"z\": 1, \"a\": [1, 2], \"s\": \"\\u00e9\"}"));
        QCOMPARE(
            render("{{ d|dictsort|first }}|{{ d.items()|list|length }}|{{ d.get('q', 'none') }}|{{ d.keys()|list }}",
                   ctx),
            std::string("('a', [1, 2])|3|none|['z', 'a', 's']"));
        QCOMPARE(
            render(
                "{{ '  x y  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'a,b,c'.split(',', 1) }}|{{ ' a  b '.split() }}|"
                "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'hello world'.title() }}|{{ 'abcabc'.rfind('b') }}|"
                "{{ 'a-b'.replace('-', '+') }}|{{ '{} {x}'.format(1, x=2) }}|{{ 'aXa'.count('a') }}"),
            std::string("x y|a|['a', 'b,c']|['a', 'b']|TrueTrue|Hello World|4|a+b|1 2|2"));
        QCOMPARE(
            render(
                "{{ [3, 1, 2]|sort|list }}{{ [3, 1, 2]|max }}{{ [1, 2, 3]|sum }}{{ [1, 1, 2]|unique|list }}{{ [1, 2]|reverse|list }}"),
            std::string("[1, 2, 3]36[1, 2][2, 1]"));
        QCOMPARE(
            render(
                "{{ 'x\ny'|indent(2) }}|{{ 3.14159|round(2) }}|{{ -3|abs }}|{{ '42'|int + 1 }}|{{ '2.5'|float }}|{{ 'ab'|upper }}|{{ 'aB'|capitalize }}|{{ 'one two'|wordcount }}"),
            std::string("x\n  y|3.14|3|43|2.5|AB|Ab|2"));
        QCOMPARE(
            render(
                "{{ [1,2,3,4,5]|batch(2)|list }}|{{ range(3)|list }}|{{ range(5, 0, -2)|list }}|{{ 3 is odd }}{{ 4 is divisibleby 2 }}{{ 'a' is string }}{{ {} is mapping }}{{ none is none }}"),
            std::string("[[1, 2], [3, 4], [5]]|[0, 1, 2]|[5, 3, 1]|TrueTrueTrueTrueTrue"));
        // The immutable sandbox refuses list.append as Hugging Face's environment does.
        QVERIFY(error_of("{% set l = [] %}{{ l.append(1) }}")
                    .find("access to attribute 'append' of 'list' object is unsafe") != std::string::npos);
        // selectattr yields a generator: no len(), as in Jinja2.
        QVERIFY(error_of("{{ [1]|select|length }}", ojson::object()).find("has no len()") != std::string::npos);
    }

    void globals() {
        QCOMPARE(render("{{ dict(a=1)|tojson }}{{ namespace(x=2).x }}"), std::string("{\"a\": 1}2"));
        qls::render_options opt;
        opt.now = [] { return fixed_tm("2024-07-26T10:30:05"); };
        QCOMPARE(qls::jinja_template::parse("{{ strftime_now('%d %b %Y %B %Y-%m-%d %A') }}", "t")
                     .render(ojson::object(), opt),
                 std::string("26 Jul 2024 July 2024-07-26 Friday"));
        try {
            render("line1\n{{ raise_exception('No system role, please.') }}");
            QFAIL("raise_exception did not throw");
        } catch (const qls::error& e) {
            QCOMPARE(e.code(), qls::error_code::invalid_argument);
            const std::string msg = e.what();
            QVERIFY2(msg.find("test.jinja:2") != std::string::npos &&
                         msg.find("No system role, please.") != std::string::npos,
                     e.what());
        }
        QVERIFY(error_of("{{ range(1000000)|length }}").find("range too big") != std::string::npos);
    }

    // {% generation %} spans are byte ranges of the output; sets inside the block stay inside it.
    void generation_spans() {
        auto t = qls::jinja_template::parse(
            "{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' %}{% generation %}{{ m.content }}!{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}",
            "gen.jinja");
        QVERIFY(t.has_generation_blocks());
        const auto out = t.render_tracked(ojson::parse(
            R"({"messages": [{"role": "user", "content": "hé"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "ok"}]})"));
        QCOMPARE(out.text, std::string("<user>h\xC3\xA9<assistant>yo!<user>q<assistant>ok!"));
        QCOMPARE(out.generation.size(), size_t(2));
        QCOMPARE(out.text.substr(out.generation[0].begin, out.generation[0].end - out.generation[0].begin),
                 std::string("yo!"));
        QCOMPARE(out.text.substr(out.generation[1].begin, out.generation[1].end - out.generation[1].begin),
                 std::string("ok!"));
        QVERIFY(!qls::jinja_template::parse("{{ 1 }}", "x").has_generation_blocks());
    }

    // Malformed templates: a format error naming the origin, the line and column, and the problem.
    void malformed_templates() {
        struct bad {
            const char* text;
            const char* where;
            const char* problem;
        };
        const bad cases[] = {
            {"ok\n{% if x %}never closed", "test.jinja:2:", "missing 'elif' or 'else' or 'endif'"},
            {"{% for x in y %}{% endif %}", "test.jinja:1:", "endif"},
            {"a\nb {{ 1 + }}", "test.jinja:2:", "unexpected"},
            {"{{ x | nosuchfilter }}", "test.jinja:1:", "no filter named 'nosuchfilter'"},
            {"{{ x is nosuchtest }}", "test.jinja:1:", "no test named 'nosuchtest'"},
            {"{{ 'unterminated }}", "test.jinja:1:", "unterminated string"},
            {"{# comment", "test.jinja:1:", "unterminated comment"},
            {"{{ x", "test.jinja:1:", "unterminated"},
            {"{% include 'x' %}", "test.jinja:1:", "not available"},
            {"{% break %}", "test.jinja:1:", "outside of a loop"},
            {"{{ (1 ]}}", "test.jinja:1:", "unexpected"},
            // numbers past 64 bits: a literal and an index written as an attribute (found by fuzz_chat_template)
            {"{{ 99999999999999999999 }}", "test.jinja:1:", "integer literal 99999999999999999999 is too large"},
            {"{% if m.777777777777777777777 == 1 %}{% endif %}", "test.jinja:1:", "index .777777777777777777777 is too large"},
        };
        for (const bad& b : cases) {
            const std::string msg = testutil::expect_error([&] { qls::jinja_template::parse(b.text, "test.jinja"); },
                                                           qls::error_code::format, {b.where, b.problem});
            QVERIFY2(msg.empty(), qPrintable(QString::fromStdString(std::string(b.text) + " → " + msg)));
        }
        // the same numbers reaching str.format and attribute paths at render time
        QVERIFY(error_of("{{ '{99999999999999999999}'.format(1) }}").find("Replacement index 99999999999999999999 out of range") !=
                std::string::npos);
        QCOMPARE(render("{{ [[1]] | map(attribute='99999999999999999999') | list }}"), std::string("[Undefined]"));
        // An unknown filter inside an if fails only when that branch runs, as in Jinja2.
        QCOMPARE(render("{% if false %}{{ x|nosuch }}{% endif %}ok"), std::string("ok"));
        QVERIFY(error_of("{% if true %}\n{{ x|nosuch }}{% endif %}").find("test.jinja:2") != std::string::npos);
    }

    // Nothing a template does can crash or hang the engine: depth, recursion, work and output are bounded.
    void limits() {
        std::string deep;
        for (int k = 0; k < 5000; ++k) deep += "{% if true %}";
        QVERIFY(testutil::expect_error([&] { qls::jinja_template::parse(deep, "deep.jinja"); }, qls::error_code::format,
                                       {"deep.jinja:1:", "nesting deeper than"})
                    .empty());
        const std::string parens = std::string(5000, '(') + "1" + std::string(5000, ')');
        QVERIFY(testutil::expect_error([&] { qls::jinja_template::parse("{{ " + parens + " }}", "deep.jinja"); },
                                       qls::error_code::format, {"deep.jinja:1:", "nesting deeper than"})
                    .empty());
        const std::string runaway = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}";
        QVERIFY(testutil::expect_error([&] { render(runaway); }, qls::error_code::format,
                                       {"test.jinja:", "nested deeper than", "recursion"})
                    .empty());
        // Deep expressions inside recursive macros: bounded before the native stack is.
        std::string nested = "f(n + 1)";
        for (int k = 0; k < 20; ++k) nested = "1 + (" + nested + ")";
        QVERIFY(testutil::expect_error([&] { render("{% macro f(n) %}{{ " + nested + " }}{% endmacro %}{{ f(0) }}"); },
                                       qls::error_code::format, {"test.jinja:1", "deeper than 1000 levels"})
                    .empty());
        qls::template_limits few_steps;
        few_steps.max_steps = 100000;
        QVERIFY(testutil::expect_error(
                    [&] {
                        render("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                               ojson::object(), few_steps);
                    },
                    qls::error_code::format, {"test.jinja:1", "more than 100000 steps"})
                    .empty());
        qls::template_limits small;
        small.max_output_bytes = 1000;
        QVERIFY(
            testutil::expect_error([&] { render("{% for a in range(2000) %}xy{% endfor %}", ojson::object(), small); },
                                   qls::error_code::format, {"test.jinja:1", "exceeds 1000 bytes"})
                .empty());
        QVERIFY(testutil::expect_error([&] { render("{{ 'ab' * 100000000000 }}"); }, qls::error_code::format,
                                       {"test.jinja:1", "exceeds"})
                    .empty());
        // Exponential string doubling stops at the output limit too.
        QVERIFY(
            testutil::expect_error(
                [&] {
                    render(
                        "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                        ojson::object(), small);
                },
                qls::error_code::format, {"exceeds"})
                .empty());
    }

    // A real Hugging Face tokenizer directory (SmolLM2-135M-Instruct): its tokenizer_config.json template is the
    // fixture's template byte for byte, and its special tokens are read.
    void discovery_real_directory() {
        const std::string dir = testutil::model_dir() + "/../smollm2-135m-instruct/hf-tokenizer";
        if (!fs::exists(dir + "/tokenizer_config.json")) QSKIP("smollm2-135m-instruct/hf-tokenizer not present");
        const auto t = qls::find_chat_template(dir);
        QVERIFY(t);
        QCOMPARE(t->text, read_file(data_dir() + "/templates/HuggingFaceTB-SmolLM2-135M-Instruct.jinja"));
        const ojson sp = qls::read_special_tokens(dir);
        QCOMPARE(sp["eos_token"].get<std::string>(), std::string("<|im_end|>"));
        const auto mt = qls::load_model_chat_template(dir);
        QVERIFY(mt && !mt->tmpl.has_generation_blocks());
    }

    // Hugging Face directory discovery: chat_template.jinja, then tokenizer_config.json (string or named list),
    // then chat_template.json; special tokens as strings or AddedToken dicts.
    void discovery() {
        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString();
        QVERIFY(!qls::find_chat_template(dir).has_value());
        QCOMPARE(qls::read_special_tokens(dir), ojson::object());

        write_file(dir + "/chat_template.json", R"({"chat_template": "from json"})");
        QCOMPARE(qls::find_chat_template(dir)->text, std::string("from json"));
        QVERIFY(qls::find_chat_template(dir)->origin.find("chat_template.json") != std::string::npos);

        write_file(dir + "/tokenizer_config.json",
                   R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null,
                       "additional_special_tokens": ["<x>"],
                       "chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "dflt"}]})");
        QCOMPARE(qls::find_chat_template(dir)->text, std::string("dflt"));
        const ojson sp = qls::read_special_tokens(dir);
        QCOMPARE(sp["bos_token"].get<std::string>(), std::string("<s>"));
        QCOMPARE(sp["eos_token"].get<std::string>(), std::string("</s>"));
        QVERIFY(!sp.contains("pad_token"));
        QCOMPARE(sp["additional_special_tokens"][0].get<std::string>(), std::string("<x>"));

        write_file(dir + "/tokenizer_config.json", R"({"chat_template": "{{ bos_token }}hi"})");
        const auto t = qls::find_chat_template(dir);
        QCOMPARE(t->text, std::string("{{ bos_token }}hi"));
        QVERIFY(t->origin.find("tokenizer_config.json") != std::string::npos);

        write_file(dir + "/chat_template.jinja", "{{ 'jinja file' }}\n");
        QCOMPARE(qls::find_chat_template(dir)->text, std::string("{{ 'jinja file' }}\n"));
        fs::remove(dir + "/chat_template.jinja");

        write_file(dir + "/tokenizer_config.json", R"({"chat_template": [{"name": "rag", "template": "r"}]})");
        QVERIFY(testutil::expect_error([&] { qls::find_chat_template(dir); }, qls::error_code::format,
                                       {"tokenizer_config.json", "none is \"default\"", "rag"})
                    .empty());
        write_file(dir + "/tokenizer_config.json", R"({"chat_template": 5})");
        QVERIFY(testutil::expect_error([&] { qls::find_chat_template(dir); }, qls::error_code::format,
                                       {"tokenizer_config.json", "chat_template"})
                    .empty());
        write_file(dir + "/tokenizer_config.json", R"({"eos_token": 7})");
        QVERIFY(testutil::expect_error([&] { qls::read_special_tokens(dir); }, qls::error_code::format,
                                       {"tokenizer_config.json", "eos_token"})
                    .empty());
        // A file too large to be a template is refused before it is read.
        write_file(dir + "/chat_template.jinja", "x");
        fs::resize_file(dir + "/chat_template.jinja", (uintmax_t(16) << 20) + 1);
        QVERIFY(testutil::expect_error([&] { qls::find_chat_template(dir); }, qls::error_code::format,
                                       {"chat_template.jinja", "more than"})
                    .empty());
        fs::remove(dir + "/chat_template.jinja");
        write_file(dir + "/tokenizer_config.json", "{not json");
        QVERIFY(testutil::expect_error([&] { qls::find_chat_template(dir); }, qls::error_code::format,
                                       {"tokenizer_config.json"})
                    .empty());
    }
};

QTEST_GUILESS_MAIN(tst_chat_template)
#include "tst_chat_template.moc"
