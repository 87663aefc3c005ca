// Internals of the Jinja engine behind qls::jinja_template: values with Python semantics, tokens, the syntax tree,
// and the entry points of the lexer, parser and interpreter (template/*.cpp).
//
// The semantics follow Jinja2 3.1 (jinja2/lexer.py, parser.py, runtime.py, filters.py, tests.py, sandbox.py) as
// Hugging Face transformers configures it (utils/chat_template_utils.py _compile_jinja_template):
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols]).
#pragma once

#include "qls/chat_template.h"
#include "qls/error.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qls::jinja {

// ---- values -----------------------------------------------------------------------------------------------------

struct value;
struct dict_t;
struct callable_t;
class interpreter;

enum class kind : uint8_t { undefined, none, boolean, integer, floating, string, list, dict, callable, ns };

using list_ptr = std::shared_ptr<std::vector<value>>;
using dict_ptr = std::shared_ptr<dict_t>;

struct value {
    kind k = kind::undefined;
    bool b = false;
    int64_t i = 0;
    double f = 0;
    std::string s; // string; for undefined: the reason it is undefined ("'x' is undefined")
    list_ptr l;    // list (also tuples and generators)
    dict_ptr d;    // dict and namespace
    std::shared_ptr<callable_t> fn;
    bool tuple = false;     // a Python tuple (prints with parentheses)
    bool generator = false; // a Python generator/iterator: no len(), no indexing, always true
    std::string unsafe;     // an undefined from the sandbox: calling it raises this security message

    static value undef(std::string why = {}) {
        value v;
        v.s = std::move(why);
        return v;
    }
    static value none() {
        value v;
        v.k = kind::none;
        return v;
    }
    static value boolean(bool x) {
        value v;
        v.k = kind::boolean;
        v.b = x;
        return v;
    }
    static value integer(int64_t x) {
        value v;
        v.k = kind::integer;
        v.i = x;
        return v;
    }
    static value floating(double x) {
        value v;
        v.k = kind::floating;
        v.f = x;
        return v;
    }
    static value string(std::string x) {
        value v;
        v.k = kind::string;
        v.s = std::move(x);
        return v;
    }
    static value list(std::vector<value> items = {}) {
        value v;
        v.k = kind::list;
        v.l = std::make_shared<std::vector<value>>(std::move(items));
        return v;
    }
    static value dict();
    static value namespace_();

    bool is_undefined() const { return k == kind::undefined; }
    bool is_string() const { return k == kind::string; }
    bool is_number() const { return k == kind::integer || k == kind::floating || k == kind::boolean; }
};

struct dict_t {
    std::vector<std::pair<std::string, value>> items; // insertion order, as Python dicts keep it
    const value* find(const std::string& key) const {
        for (const auto& kv : items)
            if (kv.first == key) return &kv.second;
        return nullptr;
    }
    void set(const std::string& key, value v) {
        for (auto& kv : items)
            if (kv.first == key) {
                kv.second = std::move(v);
                return;
            }
        items.emplace_back(key, std::move(v));
    }
};

inline value value::dict() {
    value v;
    v.k = kind::dict;
    v.d = std::make_shared<dict_t>();
    return v;
}
inline value value::namespace_() {
    value v;
    v.k = kind::ns;
    v.d = std::make_shared<dict_t>();
    return v;
}

struct call_args {
    std::vector<value> pos;
    std::vector<std::pair<std::string, value>> kw;
    const value* kwarg(const std::string& name) const {
        for (const auto& kv : kw)
            if (kv.first == name) return &kv.second;
        return nullptr;
    }
};

struct callable_t {
    std::string name; // for messages: "raise_exception", "macro render_content", "str.split"
    std::function<value(interpreter&, call_args&)> fn;
};

// A runtime failure inside the interpreter; the interpreter adds the origin and line.
struct runtime_failure {
    std::string message;
    bool raised = false; // from raise_exception (the template rejected its input)
};
[[noreturn]] void fail(std::string message);

// Python's type name of a value: "str", "int", "dict", "NoneType", "Undefined" ...
const char* type_name(const value& v);
bool truthy(const value& v);
// str(v) as Python prints it (Undefined prints ""), and repr(v).
std::string to_str(const value& v);
std::string repr(const value& v);
// ==, as Python compares (1 == 1.0 == True; Undefined equals only Undefined).
bool equals(const value& a, const value& b);
// <0, 0, >0 as Python orders numbers, strings and lists; TypeError otherwise.
int compare(const value& a, const value& b, const char* op);
// json.dumps(v, ensure_ascii, indent, separators, sort_keys) with Python's float repr.
struct json_style {
    bool ensure_ascii = false;
    bool has_indent = false;
    std::string indent; // the indent unit when has_indent
    std::string item_sep = ", ", key_sep = ": ";
    bool sort_keys = false;
};
std::string to_json(const value& v, const json_style& style);
std::string python_float_repr(double x);
value from_json(const nlohmann::ordered_json& j);

// Decimal digits as a 64-bit integer (an index, an attribute like x.0, a literal); false when the text is not all
// digits or the number does not fit, so callers report it instead of std::stoll throwing out_of_range.
bool parse_decimal_int(const std::string& digits, int64_t& out);

// Unicode helpers: strings are UTF-8; Python indexes them by code point.
size_t utf8_length(const std::string& s);
std::vector<size_t> utf8_offsets(const std::string& s); // byte offset of every code point, plus s.size()

// Items of an iterable value: list items, dict keys, string characters; Undefined gives nothing.
std::vector<value> iterate(const value& v);

// ---- tokens -----------------------------------------------------------------------------------------------------

enum class tok : uint8_t {
    data,        // template text
    var_begin,   // {{
    var_end,     // }}
    block_begin, // {%
    block_end,   // %}
    name,
    string,
    integer,
    floating,
    op, // operators and punctuation: + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { }
    eof,
};

struct token {
    tok type = tok::eof;
    std::string text; // data, name, decoded string literal, operator, number text
    int line = 1, col = 1;
};

// Tokenizes the template as Jinja2's lexer with trim_blocks and lstrip_blocks. Throws qls::error naming origin,
// line and column on unterminated tags, comments, strings and raw blocks.
std::vector<token> lex(const std::string& source, const std::string& origin);

// ---- syntax tree ------------------------------------------------------------------------------------------------

enum class ex : uint8_t {
    constant,  // value c
    name,      // name
    list,      // kids
    tuple,     // kids
    dict,      // kids: key, value, key, value ...
    getattr,   // kids[0], name
    getitem,   // kids[0], kids[1]
    slice,     // kids[0], kids[1..3] start, stop, step (each may be null)
    call,      // kids[0] the callee, kids[1..] positional, kw_names / kw kwargs
    filter,    // kids[0] the operand (null in a filter block), name, args as for call
    test,      // kids[0] the operand, name, args; negated
    unary,     // name: "-", "+", "not"; kids[0]
    binary,    // name: "+", "-", "*", "/", "//", "%", "**", "~", "and", "or", "in", "not in"; kids[0], kids[1]
    compare,   // kids[0], then ops[i] compares kids[i] with kids[i+1]
    condition, // kids[0] value, kids[1] test, kids[2] else value (may be null)
};

struct expr {
    ex type = ex::constant;
    int line = 1;
    value c;
    std::string name;
    bool negated = false;
    std::vector<std::unique_ptr<expr>> kids;
    std::vector<std::string> kw_names;
    std::vector<std::unique_ptr<expr>> kw;
    std::vector<std::string> ops;
    bool unknown = false; // filter/test unknown at parse time inside an if: fails when evaluated
};
using expr_ptr = std::unique_ptr<expr>;

enum class st : uint8_t {
    text,       // text
    print,      // e
    if_,        // conds[i] → bodies[i]; else_body
    for_,       // target, e iterable, cond (loop filter, may be null), body, else_body
    set,        // target, e
    set_block,  // target, body, filters (applied to the captured text)
    macro,      // name, params/defaults, body
    call_block, // e the call, params/defaults (the caller's), body
    filter,     // filters, body
    generation, // body
    break_,
    continue_,
    with, // targets/values in params/defaults, body
};

struct node;
using body_t = std::vector<std::unique_ptr<node>>;

struct node {
    st type = st::text;
    int line = 1;
    std::string text;
    expr_ptr e, cond, target;
    std::vector<expr_ptr> conds;
    std::vector<body_t> bodies;
    body_t body, else_body;
    std::vector<std::string> params;
    std::vector<expr_ptr> defaults; // one per param, null when none
    std::vector<expr_ptr> filters;  // filter expressions with a null operand
    std::vector<expr_ptr> with_targets;
};

struct program {
    std::string origin;
    body_t body;
    bool has_generation = false;
};

// Parses tokens into a program; throws qls::error naming origin, line and column. max_depth bounds the nesting of
// blocks and expressions.
std::shared_ptr<program> parse(const std::vector<token>& tokens, const std::string& origin, int max_depth);

bool filter_exists(const std::string& name);
bool test_exists(const std::string& name);

// ---- interpreter ------------------------------------------------------------------------------------------------

template_output execute(const program& p, const nlohmann::ordered_json& context, const render_options& opt,
                        const template_limits& limits);

} // namespace qls::jinja
