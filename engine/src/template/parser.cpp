// Jinja parser: tokens → syntax tree, with Jinja2 3.1's grammar and operator precedence (jinja2/parser.py:
// parse_condexpr → or → and → not → compare → math1 (+ -) → concat (~) → math2 (* / // %) → pow (**) → unary,
// then postfix (. [] ()) and the filter/test chain).
#include "jinja_internal.h"

#include <initializer_list>

namespace qls::jinja {

namespace {

class parser {
public:
    parser(const std::vector<token>& t, const std::string& origin, int max_depth)
        : t_(t), origin_(origin), max_depth_(max_depth) {}

    std::shared_ptr<program> run() {
        auto p = std::make_shared<program>();
        p->origin = origin_;
        std::string end;
        p->body = body({}, end);
        p->has_generation = has_generation_;
        return p;
    }

private:
    // ---- helpers --------------------------------------------------------------------------------------------
    const token& cur() const { return t_[pos_]; }
    const token& peek(size_t n = 1) const { return t_[std::min(pos_ + n, t_.size() - 1)]; }
    const token& next() {
        const token& t = t_[pos_];
        if (pos_ + 1 < t_.size()) ++pos_;
        return t;
    }
    bool is_op(const char* op) const { return cur().type == tok::op && cur().text == op; }
    bool is_name(const char* n) const { return cur().type == tok::name && cur().text == n; }
    bool accept_op(const char* op) {
        if (!is_op(op)) return false;
        next();
        return true;
    }
    bool accept_name(const char* n) {
        if (!is_name(n)) return false;
        next();
        return true;
    }

    static std::string describe(const token& t) {
        switch (t.type) {
        case tok::data: return "template text";
        case tok::var_begin: return "'{{'";
        case tok::var_end: return "'}}'";
        case tok::block_begin: return "'{%'";
        case tok::block_end: return "end of statement block ('%}')";
        case tok::name: return "'" + t.text + "'";
        case tok::string: return "string literal";
        case tok::integer:
        case tok::floating: return "number " + t.text;
        case tok::op: return "'" + t.text + "'";
        case tok::eof: return "end of template";
        }
        return "token";
    }

    [[noreturn]] void fail_at(const token& t, const std::string& what) {
        throw error(error_code::format,
                    origin_ + ":" + std::to_string(t.line) + ":" + std::to_string(t.col) +
                        ": template syntax error: " + what,
                    "fix the chat template (Jinja syntax as Hugging Face transformers accepts it)");
    }
    void expect_op(const char* op) {
        if (!accept_op(op)) fail_at(cur(), std::string("expected '") + op + "', got " + describe(cur()));
    }
    std::string expect_name() {
        if (cur().type != tok::name) fail_at(cur(), "expected a name, got " + describe(cur()));
        return next().text;
    }
    void expect_block_end() {
        if (cur().type != tok::block_end)
            fail_at(cur(), "expected end of statement block ('%}'), got " + describe(cur()));
        next();
    }

    struct depth_guard {
        parser& p;
        explicit depth_guard(parser& pp) : p(pp) {
            if (++p.depth_ > p.max_depth_)
                p.fail_at(p.cur(), "nesting deeper than " + std::to_string(p.max_depth_) + " levels");
        }
        ~depth_guard() { --p.depth_; }
    };

    expr_ptr make(ex type, int line) {
        auto e = std::make_unique<expr>();
        e->type = type;
        e->line = line;
        return e;
    }

    // ---- statements -----------------------------------------------------------------------------------------

    // Parses statements until one of `ends` ({% end... %}, {% else %}, ...) is found; `found` receives its name
    // (the tag's name token is consumed; its arguments and %} are not). At the top level ends is empty.
    body_t body(const std::vector<std::string>& ends, std::string& found) {
        depth_guard g(*this);
        body_t out;
        const token& open = t_[pos_ == 0 ? 0 : pos_ - 1];
        while (true) {
            const token& t = cur();
            if (t.type == tok::eof) {
                if (ends.empty()) return out;
                std::string list;
                for (const auto& e : ends) list += (list.empty() ? "'" : " or '") + e + "'";
                fail_at(t, "unexpected end of template: missing " + list + " (block opened at line " +
                               std::to_string(open.line) + ")");
            }
            if (t.type == tok::data) {
                auto n = std::make_unique<node>();
                n->type = st::text;
                n->line = t.line;
                n->text = t.text;
                out.push_back(std::move(n));
                next();
            } else if (t.type == tok::var_begin) {
                next();
                auto n = std::make_unique<node>();
                n->type = st::print;
                n->line = t.line;
                n->e = tuple_expr();
                if (cur().type != tok::var_end) fail_at(cur(), "expected '}}', got " + describe(cur()));
                next();
                out.push_back(std::move(n));
            } else if (t.type == tok::block_begin) {
                next();
                const token& name = cur();
                if (name.type != tok::name)
                    fail_at(name, "expected a statement name after '{%', got " + describe(name));
                for (const auto& e : ends)
                    if (name.text == e) {
                        found = e;
                        next();
                        return out;
                    }
                out.push_back(statement());
            } else {
                fail_at(t, "unexpected " + describe(t));
            }
        }
    }

    // The statement's tag closes (%}), then its body runs up to {% end_tag %}, whose tag closes too.
    std::unique_ptr<node> with_body(std::unique_ptr<node> n, const char* end_tag) {
        expect_block_end();
        std::string end;
        n->body = body({end_tag}, end);
        expect_block_end();
        return n;
    }

    std::unique_ptr<node> statement() {
        const token& t = next(); // the statement name
        const std::string& s = t.text;
        auto n = std::make_unique<node>();
        n->line = t.line;
        if (s == "if") return if_statement(std::move(n));
        if (s == "for") return for_statement(std::move(n));
        if (s == "set") return set_statement(std::move(n));
        if (s == "macro") return macro_statement(std::move(n));
        if (s == "call") return call_statement(std::move(n));
        if (s == "filter") {
            n->type = st::filter;
            filter_chain(n->filters, true);
            return with_body(std::move(n), "endfilter");
        }
        if (s == "generation") {
            n->type = st::generation;
            has_generation_ = true;
            return with_body(std::move(n), "endgeneration");
        }
        if (s == "with") {
            n->type = st::with;
            while (cur().type != tok::block_end) {
                if (!n->with_targets.empty()) expect_op(",");
                n->with_targets.push_back(assign_target(false));
                expect_op("=");
                n->defaults.push_back(expression(true));
            }
            return with_body(std::move(n), "endwith");
        }
        if (s == "break" || s == "continue") {
            if (loop_depth_ == 0) fail_at(t, "'" + s + "' outside of a loop");
            n->type = s == "break" ? st::break_ : st::continue_;
            expect_block_end();
            return n;
        }
        if (s == "raw") fail_at(t, "malformed {% raw %} tag");
        static const char* const unsupported[] = {"include", "import", "from",  "extends",
                                                  "block",   "do",     "trans", "autoescape"};
        for (const char* u : unsupported)
            if (s == u)
                fail_at(t, "the '" + s +
                               "' statement is not available in chat templates (Hugging Face's environment has none)");
        fail_at(t, "unknown statement '" + s + "'");
    }

    std::unique_ptr<node> if_statement(std::unique_ptr<node> n) {
        n->type = st::if_;
        ++if_depth_;
        n->conds.push_back(tuple_expr());
        expect_block_end();
        while (true) {
            std::string end;
            n->bodies.push_back(body({"elif", "else", "endif"}, end));
            if (end == "elif") {
                n->conds.push_back(tuple_expr());
                expect_block_end();
                continue;
            }
            if (end == "else") {
                expect_block_end();
                n->else_body = body({"endif"}, end);
            }
            expect_block_end();
            break;
        }
        --if_depth_;
        return n;
    }

    std::unique_ptr<node> for_statement(std::unique_ptr<node> n) {
        n->type = st::for_;
        n->target = assign_target(true);
        if (!accept_name("in")) fail_at(cur(), "expected 'in' in the for statement, got " + describe(cur()));
        n->e = tuple_expr(/*with_condexpr=*/false);
        if (accept_name("if")) n->cond = expression(true);
        if (accept_name("recursive")) fail_at(cur(), "recursive loops are not supported");
        expect_block_end();
        ++loop_depth_;
        std::string end;
        n->body = body({"endfor", "else"}, end);
        --loop_depth_;
        if (end == "else") {
            expect_block_end();
            n->else_body = body({"endfor"}, end);
        }
        expect_block_end();
        return n;
    }

    std::unique_ptr<node> set_statement(std::unique_ptr<node> n) {
        n->target = assign_target(true, /*allow_ns=*/true);
        if (accept_op("=")) {
            n->type = st::set;
            n->e = tuple_expr();
            expect_block_end();
            return n;
        }
        n->type = st::set_block;
        filter_chain(n->filters, false);
        return with_body(std::move(n), "endset");
    }

    void params(node& n) {
        expect_op("(");
        while (!accept_op(")")) {
            if (!n.params.empty()) expect_op(",");
            if (accept_op(")")) break;
            n.params.push_back(expect_name());
            if (accept_op("=")) n.defaults.push_back(expression(true));
            else if (!n.defaults.empty() && n.defaults.back())
                fail_at(cur(), "non-default argument follows default argument");
            else n.defaults.push_back(nullptr);
        }
    }

    std::unique_ptr<node> macro_statement(std::unique_ptr<node> n) {
        n->type = st::macro;
        n->text = expect_name();
        params(*n);
        expect_block_end();
        const int saved = loop_depth_;
        loop_depth_ = 0;
        std::string end;
        n->body = body({"endmacro"}, end);
        loop_depth_ = saved;
        if (cur().type == tok::name) next(); // {% endmacro name %}
        expect_block_end();
        return n;
    }

    std::unique_ptr<node> call_statement(std::unique_ptr<node> n) {
        n->type = st::call_block;
        if (is_op("(")) params(*n);
        n->e = expression(true);
        if (n->e->type != ex::call) fail_at(cur(), "expected a call after {% call %}");
        return with_body(std::move(n), "endcall");
    }

    // ---- expressions ----------------------------------------------------------------------------------------

    // Names, tuples of names, and (for set) ns.attr.
    expr_ptr assign_target(bool allow_tuple, bool allow_ns = false) {
        const int line = cur().line;
        auto one = [&]() -> expr_ptr {
            if (accept_op("(")) {
                auto t = assign_target(true);
                expect_op(")");
                return t;
            }
            const token& nt = cur();
            auto e = make(ex::name, line);
            e->name = expect_name();
            if (allow_ns && is_op(".")) {
                next();
                auto a = make(ex::getattr, line);
                a->name = expect_name();
                a->kids.push_back(std::move(e));
                return a;
            }
            if (e->name == "true" || e->name == "false" || e->name == "none" || e->name == "True" ||
                e->name == "False" || e->name == "None")
                fail_at(nt, "cannot assign to '" + e->name + "'");
            return e;
        };
        auto first = one();
        if (!allow_tuple || !is_op(",")) return first;
        auto t = make(ex::tuple, line);
        t->kids.push_back(std::move(first));
        while (accept_op(",")) {
            if (cur().type != tok::name && !is_op("(")) break;
            t->kids.push_back(one());
        }
        return t;
    }

    // parse_tuple: expressions separated by commas become a tuple (without parentheses).
    expr_ptr tuple_expr(bool with_condexpr = true) {
        const int line = cur().line;
        auto first = expression(with_condexpr);
        if (!is_op(",")) return first;
        auto t = make(ex::tuple, line);
        t->kids.push_back(std::move(first));
        while (accept_op(",")) {
            if (cur().type == tok::block_end || cur().type == tok::var_end || is_op(")") || is_name("in") ||
                is_name("if"))
                break;
            t->kids.push_back(expression(with_condexpr));
        }
        return t;
    }

    expr_ptr expression(bool with_condexpr = true) {
        depth_guard g(*this);
        return with_condexpr ? condexpr() : or_expr();
    }

    expr_ptr condexpr() {
        auto e = or_expr();
        while (is_name("if")) {
            const int line = cur().line;
            next();
            auto c = make(ex::condition, line);
            c->kids.push_back(std::move(e));
            c->kids.push_back(or_expr());
            if (accept_name("else")) c->kids.push_back(condexpr());
            else c->kids.push_back(nullptr);
            e = std::move(c);
        }
        return e;
    }

    expr_ptr binary(const char* op, expr_ptr l, expr_ptr r, int line) {
        auto b = make(ex::binary, line);
        b->name = op;
        b->kids.push_back(std::move(l));
        b->kids.push_back(std::move(r));
        return b;
    }

    // operand (op operand)*, left-associative: op_at() names the operator at the cursor (nullptr: none).
    template <class operand_parser, class op_finder> expr_ptr left_assoc(operand_parser operand, op_finder op_at) {
        auto e = operand();
        while (const char* op = op_at()) {
            const int line = next().line;
            e = binary(op, std::move(e), operand(), line);
        }
        return e;
    }
    // The operator at the cursor among `ops` (operator tokens, or names with names = true); nullptr: none of them.
    const char* op_among(std::initializer_list<const char*> ops, bool names = false) const {
        for (const char* op : ops)
            if (names ? is_name(op) : is_op(op)) return op;
        return nullptr;
    }

    expr_ptr or_expr() {
        return left_assoc([this] { return and_expr(); }, [this] { return op_among({"or"}, true); });
    }
    expr_ptr and_expr() {
        return left_assoc([this] { return not_expr(); }, [this] { return op_among({"and"}, true); });
    }
    expr_ptr not_expr() {
        if (is_name("not")) {
            depth_guard g(*this);
            const int line = next().line;
            auto u = make(ex::unary, line);
            u->name = "not";
            u->kids.push_back(not_expr());
            return u;
        }
        return compare();
    }
    expr_ptr compare() {
        const int line = cur().line;
        auto first = math1();
        expr_ptr c;
        while (true) {
            std::string op;
            if (cur().type == tok::op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                          cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
                op = next().text;
            } else if (is_name("in")) {
                next();
                op = "in";
            } else if (is_name("not") && peek().type == tok::name && peek().text == "in") {
                next();
                next();
                op = "not in";
            } else {
                break;
            }
            if (!c) {
                c = make(ex::compare, line);
                c->kids.push_back(std::move(first));
            }
            c->ops.push_back(op);
            c->kids.push_back(math1());
        }
        return c ? std::move(c) : std::move(first);
    }
    expr_ptr math1() {
        return left_assoc([this] { return concat(); }, [this] { return op_among({"+", "-"}); });
    }
    expr_ptr concat() {
        return left_assoc([this] { return math2(); }, [this] { return op_among({"~"}); });
    }
    expr_ptr math2() {
        return left_assoc([this] { return pow_expr(); }, [this] { return op_among({"*", "/", "//", "%"}); });
    }
    expr_ptr pow_expr() {
        return left_assoc([this] { return unary(true); }, [this] { return op_among({"**"}); });
    }
    expr_ptr unary(bool with_filter) {
        depth_guard g(*this);
        expr_ptr e;
        if (is_op("-") || is_op("+")) {
            const token& t = next();
            e = make(ex::unary, t.line);
            e->name = t.text;
            e->kids.push_back(unary(false));
        } else {
            e = primary();
        }
        e = postfix(std::move(e));
        if (with_filter) e = filter_expr(std::move(e));
        return e;
    }

    expr_ptr primary() {
        const token& t = cur();
        switch (t.type) {
        case tok::name: {
            next();
            auto e = make(ex::constant, t.line);
            if (t.text == "true" || t.text == "True") e->c = value::boolean(true);
            else if (t.text == "false" || t.text == "False") e->c = value::boolean(false);
            else if (t.text == "none" || t.text == "None") e->c = value::none();
            else {
                e->type = ex::name;
                e->name = t.text;
            }
            return e;
        }
        case tok::string: {
            std::string s = next().text;
            while (cur().type == tok::string) s += next().text; // adjacent literals concatenate
            auto e = make(ex::constant, t.line);
            e->c = value::string(std::move(s));
            return e;
        }
        case tok::integer: {
            next();
            auto e = make(ex::constant, t.line);
            int64_t x = 0;
            if (!parse_decimal_int(t.text, x)) fail_at(t, "integer literal " + t.text + " is too large");
            e->c = value::integer(x);
            return e;
        }
        case tok::floating: {
            next();
            auto e = make(ex::constant, t.line);
            e->c = value::floating(std::strtod(t.text.c_str(), nullptr));
            return e;
        }
        case tok::op:
            if (t.text == "(") {
                next();
                if (accept_op(")")) {
                    auto e = make(ex::tuple, t.line);
                    return e;
                }
                auto first = expression(true);
                if (accept_op(")")) return first;
                auto tup = make(ex::tuple, t.line);
                tup->kids.push_back(std::move(first));
                while (accept_op(",")) {
                    if (is_op(")")) break;
                    tup->kids.push_back(expression(true));
                }
                expect_op(")");
                return tup;
            }
            if (t.text == "[") {
                next();
                auto e = make(ex::list, t.line);
                comma_separated("]", [&] { e->kids.push_back(expression(true)); });
                return e;
            }
            if (t.text == "{") {
                next();
                auto e = make(ex::dict, t.line);
                comma_separated("}", [&] {
                    e->kids.push_back(expression(true));
                    expect_op(":");
                    e->kids.push_back(expression(true));
                });
                return e;
            }
            break;
        default: break;
        }
        fail_at(t, "unexpected " + describe(t));
    }

    // item (, item)* up to `close`, which is consumed; the opening bracket was. A trailing comma is allowed.
    template <class item_parser> void comma_separated(const char* close, item_parser item) {
        bool first = true;
        while (!accept_op(close)) {
            if (!first) {
                expect_op(",");
                if (accept_op(close)) break;
            }
            first = false;
            item();
        }
    }

    // callee(arguments), cur() at "(": a call node whose first kid is the callee.
    expr_ptr call_of(expr_ptr callee) {
        auto c = make(ex::call, cur().line);
        c->kids.push_back(std::move(callee));
        call_args(*c);
        return c;
    }

    void call_args(expr& call) {
        // cur() is "("
        expect_op("(");
        comma_separated(")", [&] {
            if (is_op("*") || is_op("**")) fail_at(cur(), "*args and **kwargs in calls are not supported");
            if (cur().type == tok::name && peek().type == tok::op && peek().text == "=") {
                call.kw_names.push_back(next().text);
                next();
                call.kw.push_back(expression(true));
            } else {
                if (!call.kw.empty()) fail_at(cur(), "positional argument follows keyword argument");
                call.kids.push_back(expression(true));
            }
        });
    }

    expr_ptr postfix(expr_ptr e) {
        while (true) {
            if (is_op(".")) {
                const int line = next().line;
                if (cur().type == tok::integer) {
                    auto g = make(ex::getitem, line);
                    auto k = make(ex::constant, line);
                    const token& index = next();
                    int64_t x = 0;
                    if (!parse_decimal_int(index.text, x)) fail_at(index, "index ." + index.text + " is too large");
                    k->c = value::integer(x);
                    g->kids.push_back(std::move(e));
                    g->kids.push_back(std::move(k));
                    e = std::move(g);
                } else {
                    auto g = make(ex::getattr, line);
                    g->name = expect_name();
                    g->kids.push_back(std::move(e));
                    e = std::move(g);
                }
            } else if (is_op("[")) {
                e = subscript(std::move(e));
            } else if (is_op("(")) {
                e = call_of(std::move(e));
            } else {
                return e;
            }
        }
    }

    expr_ptr subscript(expr_ptr e) {
        const int line = next().line; // [
        auto slice_part = [&]() -> expr_ptr {
            if (is_op(":") || is_op("]") || is_op(",")) return nullptr;
            return expression(true);
        };
        std::vector<expr_ptr> items;
        expr_ptr start = slice_part();
        if (is_op(":")) {
            next();
            auto s = make(ex::slice, line);
            s->kids.push_back(std::move(e));
            s->kids.push_back(std::move(start));
            s->kids.push_back(slice_part());
            if (accept_op(":")) s->kids.push_back(slice_part());
            else s->kids.push_back(nullptr);
            expect_op("]");
            return s;
        }
        if (!start) fail_at(cur(), "expected an index, got " + describe(cur()));
        if (is_op(",")) {
            auto t = make(ex::tuple, line);
            t->kids.push_back(std::move(start));
            while (accept_op(",")) {
                if (is_op("]")) break;
                t->kids.push_back(expression(true));
            }
            start = std::move(t);
        }
        expect_op("]");
        auto g = make(ex::getitem, line);
        g->kids.push_back(std::move(e));
        g->kids.push_back(std::move(start));
        return g;
    }

    // One filter application (after "|" or in a filter block / set block), operand left null.
    expr_ptr one_filter() {
        const token& nt = cur();
        auto f = make(ex::filter, nt.line);
        f->name = expect_name();
        while (is_op(".")) {
            next();
            f->name += "." + expect_name();
        }
        f->kids.push_back(nullptr);
        if (is_op("(")) call_args(*f);
        if (!filter_exists(f->name)) {
            if (if_depth_ == 0) fail_at(nt, "no filter named '" + f->name + "'");
            f->unknown = true;
        }
        return f;
    }

    void filter_chain(std::vector<expr_ptr>& out, bool first_without_pipe) {
        if (first_without_pipe) out.push_back(one_filter());
        while (accept_op("|")) out.push_back(one_filter());
    }

    expr_ptr filter_expr(expr_ptr e) {
        while (true) {
            if (is_op("|")) {
                next();
                auto f = one_filter();
                f->kids[0] = std::move(e);
                e = std::move(f);
            } else if (is_name("is")) {
                const token& it = next();
                auto t = make(ex::test, it.line);
                t->negated = accept_name("not");
                const token& nt = cur();
                t->name = expect_name();
                while (is_op(".")) {
                    next();
                    t->name += "." + expect_name();
                }
                t->kids.push_back(std::move(e));
                if (is_op("(")) {
                    call_args(*t);
                } else if ((cur().type == tok::name || cur().type == tok::string || cur().type == tok::integer ||
                            cur().type == tok::floating || is_op("(") || is_op("[") || is_op("{")) &&
                           !is_name("else") && !is_name("or") && !is_name("and")) {
                    if (is_name("is")) fail_at(cur(), "you cannot chain multiple tests with is");
                    t->kids.push_back(postfix(primary()));
                }
                if (!test_exists(t->name)) {
                    if (if_depth_ == 0) fail_at(nt, "no test named '" + t->name + "'");
                    t->unknown = true;
                }
                e = std::move(t);
            } else if (is_op("(")) {
                e = call_of(std::move(e));
            } else {
                return e;
            }
        }
    }

    const std::vector<token>& t_;
    const std::string& origin_;
    size_t pos_ = 0;
    int depth_ = 0, max_depth_;
    int loop_depth_ = 0, if_depth_ = 0;
    bool has_generation_ = false;
};

} // namespace

std::shared_ptr<program> parse(const std::vector<token>& tokens, const std::string& origin, int max_depth) {
    return parser(tokens, origin, max_depth).run();
}

} // namespace qls::jinja
