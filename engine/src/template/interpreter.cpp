// Jinja interpreter: walks the syntax tree with Jinja2 3.1 runtime semantics (scoping of set/for/macro, loop
// variables, Undefined, the sandbox's attribute rules) and Hugging Face's globals (raise_exception, strftime_now).
// Filters, tests and the methods of str/list/dict live in builtins.cpp.
#include "builtins.h"

#include <chrono>
#include <ctime>

namespace qls::jinja {

struct scope {
    std::vector<std::pair<std::string, value>> vars;
    std::shared_ptr<scope> parent;
    const value* find(const std::string& name) const {
        for (const scope* s = this; s; s = s->parent.get())
            for (auto it = s->vars.rbegin(); it != s->vars.rend(); ++it)
                if (it->first == name) return &it->second;
        return nullptr;
    }
    void set(const std::string& name, value v) {
        for (auto& kv : vars)
            if (kv.first == name) {
                kv.second = std::move(v);
                return;
            }
        vars.emplace_back(name, std::move(v));
    }
};

namespace {

// Nested statements and expressions across macro calls: parse-time nesting and the macro call depth bound them
// already; this bound keeps the native stack small whatever their product is.
constexpr int k_max_frames = 1000;

struct break_signal {};
struct continue_signal {};

value make_fn(std::string name, std::function<value(interpreter&, call_args&)> f) {
    value v;
    v.k = kind::callable;
    v.fn = std::make_shared<callable_t>(callable_t{std::move(name), std::move(f)});
    return v;
}

} // namespace

struct frame_guard {
    interpreter& in;
    explicit frame_guard(interpreter& i) : in(i) {
        if (++in.depth_ > k_max_frames) {
            --in.depth_;
            fail("the template nests statements, expressions and macro calls deeper than " +
                 std::to_string(k_max_frames) + " levels");
        }
    }
    ~frame_guard() { --in.depth_; }
};

interpreter::interpreter(const program& p, const render_options& opt, const template_limits& lim)
    : p_(p), opt_(opt), lim_(lim) {}

interpreter::~interpreter() {
    // emptied, not destroyed: whatever they hold is released once, with no destructor recursing through a cycle
    std::vector<std::pair<std::string, value>> dropped;
    for (const auto& w : namespaces_)
        if (auto d = w.lock()) {
            for (auto& kv : d->items) dropped.push_back(std::move(kv));
            d->items.clear();
        }
    for (const auto& sc : closure_scopes_) {
        for (auto& kv : sc->vars) dropped.push_back(std::move(kv));
        sc->vars.clear();
    }
    closure_scopes_.clear();
}

void interpreter::step() {
    if (++steps_ > lim_.max_steps)
        fail("the template did more than " + std::to_string(lim_.max_steps) +
             " steps (statements, loop iterations, calls); it does not terminate in reasonable time");
}

void interpreter::check_size(size_t n) const {
    if (n > lim_.max_output_bytes)
        fail("the template's output (or a string it builds) exceeds " + std::to_string(lim_.max_output_bytes) +
             " bytes");
}

void interpreter::write(const std::string& s) {
    out_->append(s);
    check_size(out_->size());
}

template_output interpreter::run(const nlohmann::ordered_json& context) {
    auto root = std::make_shared<scope>();
    // Globals (HF's environment): range, namespace, dict, raise_exception, strftime_now; then the context.
    root->set("range", make_fn("range", [](interpreter& in, call_args& a) { return in.range(a); }));
    closure_scopes_.push_back(root);
    root->set("namespace", make_fn("namespace", [](interpreter& in, call_args& a) {
                  value ns = value::namespace_();
                  in.track_namespace(ns);
                  for (const value& p : a.pos) {
                      if (p.k != kind::dict) fail("namespace() takes a dict as its positional argument");
                      for (const auto& kv : p.d->items) ns.d->set(kv.first, kv.second);
                  }
                  for (auto& kv : a.kw) ns.d->set(kv.first, kv.second);
                  return ns;
              }));
    root->set("dict", make_fn("dict", [](interpreter&, call_args& a) {
                  value d = value::dict();
                  for (const value& p : a.pos) {
                      if (p.k != kind::dict) fail("dict() takes a dict as its positional argument");
                      for (const auto& kv : p.d->items) d.d->set(kv.first, kv.second);
                  }
                  for (auto& kv : a.kw) d.d->set(kv.first, kv.second);
                  return d;
              }));
    root->set("raise_exception", make_fn("raise_exception", [](interpreter&, call_args& a) -> value {
                  throw runtime_failure{a.pos.empty() ? std::string() : to_str(a.pos[0]), true};
              }));
    root->set("strftime_now", make_fn("strftime_now", [](interpreter& in, call_args& a) {
                  if (a.pos.size() != 1 || !a.pos[0].is_string()) fail("strftime_now(format) takes one string");
                  std::tm tm{};
                  if (in.opt_.now) tm = in.opt_.now();
                  else {
                      const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
                      localtime_r(&t, &tm);
                  }
                  char buf[512];
                  const size_t n = a.pos[0].s.size() < 200 ? std::strftime(buf, sizeof buf, a.pos[0].s.c_str(), &tm)
                                                           : 0;
                  if (n == 0 && !a.pos[0].s.empty()) fail("strftime_now: format too long or empty result");
                  return value::string(std::string(buf, n));
              }));
    if (!context.is_object()) fail("the template context must be a JSON object");
    for (auto it = context.begin(); it != context.end(); ++it) root->set(it.key(), from_json(it.value()));

    template_output res;
    out_ = &res.text;
    root_out_ = &res.text;
    spans_ = &res.generation;
    exec(p_.body, root);
    return res;
}

// ---- statements -------------------------------------------------------------------------------------------------

void interpreter::exec(const body_t& body, const std::shared_ptr<scope>& sc) {
    for (const auto& n : body) exec(*n, sc);
}

void interpreter::exec(const node& n, const std::shared_ptr<scope>& sc) {
    frame_guard guard(*this);
    line_ = n.line;
    step();
    switch (n.type) {
    case st::text: write(n.text); return;
    case st::print: {
        const value v = eval(*n.e, sc);
        line_ = n.line;
        write(to_str(v));
        return;
    }
    case st::if_:
        for (size_t k = 0; k < n.conds.size(); ++k)
            if (truthy(eval(*n.conds[k], sc))) {
                exec(n.bodies[k], sc);
                return;
            }
        exec(n.else_body, sc);
        return;
    case st::for_: exec_for(n, sc); return;
    case st::set: {
        value v = eval(*n.e, sc);
        line_ = n.line;
        assign(*n.target, std::move(v), sc);
        return;
    }
    case st::set_block: {
        std::string text = capture(n.body, std::make_shared<scope>(scope{{}, sc}), false);
        value v = value::string(std::move(text));
        for (const auto& f : n.filters) v = apply_filter(*f, std::move(v), sc);
        assign(*n.target, std::move(v), sc);
        return;
    }
    case st::macro: sc->set(n.text, make_macro(n, sc)); return;
    case st::call_block: {
        // caller() renders the body in a scope of its own, seeing the call site's variables.
        const node* body_node = &n;
        std::shared_ptr<scope> site = sc;
        if (closure_scopes_.empty() || closure_scopes_.back() != sc) closure_scopes_.push_back(sc);
        value caller = make_fn("caller", [body_node, site](interpreter& in, call_args& a) {
            auto local = std::make_shared<scope>(scope{{}, site});
            in.bind_params(*body_node, a, local, "caller");
            return value::string(in.capture(body_node->body, local, false));
        });
        const expr& call = *n.e;
        value fn = eval(*call.kids[0], sc);
        call_args a = eval_args(call, sc);
        a.kw.emplace_back("caller", caller);
        line_ = n.line;
        write(to_str(invoke(fn, a)));
        return;
    }
    case st::filter: {
        value v = value::string(capture(n.body, std::make_shared<scope>(scope{{}, sc}), false));
        for (const auto& f : n.filters) v = apply_filter(*f, std::move(v), sc);
        write(to_str(v));
        return;
    }
    case st::generation: {
        // AssistantTracker: a call block whose caller output is recorded as [start, start + len) of the
        // rendered text (transformers utils/chat_template_utils.py _generation_support).
        std::string text = capture(n.body, std::make_shared<scope>(scope{{}, sc}), false);
        if (out_ == root_out_) {
            const size_t begin = out_->size();
            spans_->push_back({begin, begin + text.size()});
        }
        write(text);
        return;
    }
    case st::break_: throw break_signal{};
    case st::continue_: throw continue_signal{};
    case st::with: {
        auto local = std::make_shared<scope>(scope{{}, sc});
        std::vector<value> vals;
        for (const auto& d : n.defaults) vals.push_back(eval(*d, sc));
        for (size_t k = 0; k < vals.size(); ++k) assign(*n.with_targets[k], std::move(vals[k]), local);
        exec(n.body, local);
        return;
    }
    }
}

std::string interpreter::capture(const body_t& body, const std::shared_ptr<scope>& sc, bool) {
    std::string buf;
    std::string* saved = out_;
    out_ = &buf;
    try {
        exec(body, sc);
    } catch (...) {
        out_ = saved;
        throw;
    }
    out_ = saved;
    return buf;
}

void interpreter::assign(const expr& target, value v, const std::shared_ptr<scope>& sc) {
    if (target.type == ex::name) {
        sc->set(target.name, std::move(v));
        return;
    }
    if (target.type == ex::getattr) {
        const value* ns = sc->find(target.kids[0]->name);
        if (!ns || ns->k != kind::ns) fail("cannot assign attribute on non-namespace object");
        ns->d->set(target.name, std::move(v));
        return;
    }
    if (target.type == ex::tuple) {
        std::vector<value> items = iterate(v);
        if (items.size() != target.kids.size())
            fail(items.size() < target.kids.size()
                     ? "not enough values to unpack (expected " + std::to_string(target.kids.size()) + ", got " +
                           std::to_string(items.size()) + ")"
                     : "too many values to unpack (expected " + std::to_string(target.kids.size()) + ")");
        for (size_t k = 0; k < items.size(); ++k) assign(*target.kids[k], std::move(items[k]), sc);
        return;
    }
    fail("cannot assign to this expression");
}

void interpreter::exec_for(const node& n, const std::shared_ptr<scope>& sc) {
    value seq = eval(*n.e, sc);
    std::vector<value> items = iterate(seq);
    if (n.cond) {
        // for x in y if cond: the filter runs first, so loop.index/length count the kept items only.
        std::vector<value> kept;
        for (value& it : items) {
            step();
            auto probe = std::make_shared<scope>(scope{{}, sc});
            assign(*n.target, it, probe);
            if (truthy(eval(*n.cond, probe))) kept.push_back(std::move(it));
        }
        items = std::move(kept);
    }
    line_ = n.line;
    if (items.empty()) {
        exec(n.else_body, sc);
        return;
    }
    const int64_t len = int64_t(items.size());
    // loop.cycle reads the current index through a shared counter, so one callable serves every iteration.
    auto index = std::make_shared<int64_t>(0);
    const value cycle = make_fn("loop.cycle", [index](interpreter&, call_args& a) {
        if (a.pos.empty()) fail("no items for cycling given");
        return a.pos[size_t(*index) % a.pos.size()];
    });
    for (int64_t k = 0; k < len; ++k) {
        step();
        *index = k;
        auto local = std::make_shared<scope>(scope{{}, sc});
        value loop = value::dict();
        auto& d = loop.d->items;
        d.reserve(13);
        d.emplace_back("index", value::integer(k + 1));
        d.emplace_back("index0", value::integer(k));
        d.emplace_back("revindex", value::integer(len - k));
        d.emplace_back("revindex0", value::integer(len - k - 1));
        d.emplace_back("first", value::boolean(k == 0));
        d.emplace_back("last", value::boolean(k == len - 1));
        d.emplace_back("length", value::integer(len));
        d.emplace_back("depth", value::integer(1));
        d.emplace_back("depth0", value::integer(0));
        if (k > 0) d.emplace_back("previtem", items[size_t(k - 1)]);
        if (k + 1 < len) d.emplace_back("nextitem", items[size_t(k + 1)]);
        d.emplace_back("cycle", cycle);
        local->set("loop", std::move(loop));
        assign(*n.target, items[size_t(k)], local);
        try {
            exec(n.body, local);
        } catch (const break_signal&) {
            break;
        } catch (const continue_signal&) {
        }
    }
}

value interpreter::make_macro(const node& n, const std::shared_ptr<scope>& sc) {
    const node* def = &n;
    std::shared_ptr<scope> defined_in = sc;
    if (closure_scopes_.empty() || closure_scopes_.back() != sc) closure_scopes_.push_back(sc);
    return make_fn("macro " + n.text, [def, defined_in](interpreter& in, call_args& a) {
        if (++in.call_depth_ > in.lim_.max_call_depth) {
            --in.call_depth_;
            fail("macro '" + def->text + "' nested deeper than " + std::to_string(in.lim_.max_call_depth) +
                 " calls (runaway recursion?)");
        }
        const int saved_line = in.line_;
        try {
            auto local = std::make_shared<scope>(scope{{}, defined_in});
            in.bind_params(*def, a, local, def->text);
            std::string text = in.capture(def->body, local, false);
            --in.call_depth_;
            in.line_ = saved_line;
            return value::string(std::move(text));
        } catch (...) {
            --in.call_depth_;
            throw;
        }
    });
}

void interpreter::bind_params(const node& def, call_args& a, const std::shared_ptr<scope>& local,
                              const std::string& name) {
    std::vector<bool> bound(def.params.size(), false);
    std::vector<value> extra_pos;
    for (size_t k = 0; k < a.pos.size(); ++k) {
        if (k < def.params.size()) {
            local->set(def.params[k], a.pos[k]);
            bound[k] = true;
        } else extra_pos.push_back(a.pos[k]);
    }
    value kwargs = value::dict();
    value caller;
    for (auto& kv : a.kw) {
        if (kv.first == "caller") {
            caller = kv.second;
            continue;
        }
        bool found = false;
        for (size_t k = 0; k < def.params.size(); ++k)
            if (def.params[k] == kv.first) {
                if (bound[k]) fail("macro '" + name + "' got multiple values for argument '" + kv.first + "'");
                local->set(kv.first, kv.second);
                bound[k] = true;
                found = true;
            }
        if (!found) kwargs.d->set(kv.first, kv.second);
    }
    for (size_t k = 0; k < def.params.size(); ++k) {
        if (bound[k]) continue;
        if (def.defaults[k]) local->set(def.params[k], eval(*def.defaults[k], local));
        else local->set(def.params[k], value::undef("parameter '" + def.params[k] + "' was not provided"));
    }
    // Jinja gives every macro varargs and kwargs; a macro body that never names them rejects extra arguments,
    // as Jinja does ("macro 'x' takes not more than N argument(s)").
    if (!extra_pos.empty() && !uses_name(def.body, "varargs"))
        fail("macro '" + name + "' takes not more than " + std::to_string(def.params.size()) + " argument(s)");
    if (!kwargs.d->items.empty() && !uses_name(def.body, "kwargs"))
        fail("macro '" + name + "' takes no keyword argument '" + kwargs.d->items.front().first + "'");
    local->set("varargs", value::list(std::move(extra_pos)));
    local->set("kwargs", std::move(kwargs));
    if (!caller.is_undefined()) local->set("caller", std::move(caller));
}

bool interpreter::uses_name(const body_t& body, const std::string& name) {
    std::function<bool(const expr*)> in_expr = [&](const expr* e) -> bool {
        if (!e) return false;
        if (e->type == ex::name && e->name == name) return true;
        for (const auto& k : e->kids)
            if (in_expr(k.get())) return true;
        for (const auto& k : e->kw)
            if (in_expr(k.get())) return true;
        return false;
    };
    std::function<bool(const body_t&)> in_body = [&](const body_t& b) -> bool {
        for (const auto& n : b) {
            if (in_expr(n->e.get()) || in_expr(n->cond.get())) return true;
            for (const auto& c : n->conds)
                if (in_expr(c.get())) return true;
            for (const auto& c : n->defaults)
                if (in_expr(c.get())) return true;
            for (const auto& c : n->bodies)
                if (in_body(c)) return true;
            if (n->type != st::macro && (in_body(n->body) || in_body(n->else_body))) return true;
        }
        return false;
    };
    return in_body(body);
}

value interpreter::range(call_args& a) {
    int64_t start = 0, stop = 0, stepv = 1;
    auto num = [](const value& v) {
        if (v.k == kind::integer) return v.i;
        if (v.k == kind::boolean) return int64_t(v.b);
        fail(std::string("'") + type_name(v) + "' object cannot be interpreted as an integer");
    };
    if (a.pos.size() == 1) stop = num(a.pos[0]);
    else if (a.pos.size() == 2 || a.pos.size() == 3) {
        start = num(a.pos[0]);
        stop = num(a.pos[1]);
        if (a.pos.size() == 3) stepv = num(a.pos[2]);
    } else fail("range expected 1 to 3 arguments, got " + std::to_string(a.pos.size()));
    if (stepv == 0) fail("range() arg 3 must not be zero");
    std::vector<value> items;
    // The sandbox refuses ranges over MAX_RANGE = 100000 items (jinja2/sandbox.py safe_range).
    const int64_t n = stepv > 0 ? (stop > start ? (stop - start + stepv - 1) / stepv : 0)
                                : (start > stop ? (start - stop - stepv - 1) / (-stepv) : 0);
    if (n > 100000) fail("range too big: the sandbox blocks ranges larger than 100000 items");
    for (int64_t k = 0; k < n; ++k) items.push_back(value::integer(start + k * stepv));
    return value::list(std::move(items));
}

// ---- expressions ------------------------------------------------------------------------------------------------

call_args interpreter::eval_args(const expr& e, const std::shared_ptr<scope>& sc, size_t first) {
    call_args a;
    for (size_t k = first; k < e.kids.size(); ++k) a.pos.push_back(eval(*e.kids[k], sc));
    for (size_t k = 0; k < e.kw.size(); ++k) a.kw.emplace_back(e.kw_names[k], eval(*e.kw[k], sc));
    return a;
}

value interpreter::invoke(const value& fn, call_args& a) {
    step();
    if (fn.k == kind::undefined) {
        if (!fn.unsafe.empty()) fail(fn.unsafe);
        fail(fn.s.empty() ? "call of an undefined value" : fn.s);
    }
    if (fn.k != kind::callable) fail(std::string("'") + type_name(fn) + "' object is not callable");
    return fn.fn->fn(*this, a);
}

value interpreter::apply_filter(const expr& f, value operand, const std::shared_ptr<scope>& sc) {
    if (f.unknown) fail("no filter named '" + f.name + "'");
    call_args a = eval_args(f, sc, 1);
    line_ = f.line;
    step();
    return run_filter(*this, f.name, std::move(operand), a);
}

value interpreter::eval(const expr& e, const std::shared_ptr<scope>& sc) {
    frame_guard guard(*this);
    line_ = e.line;
    switch (e.type) {
    case ex::constant: return e.c;
    case ex::name: {
        if (const value* v = sc->find(e.name)) return *v;
        return value::undef("'" + e.name + "' is undefined");
    }
    case ex::list:
    case ex::tuple: {
        std::vector<value> items;
        for (const auto& k : e.kids) items.push_back(eval(*k, sc));
        value v = value::list(std::move(items));
        v.tuple = e.type == ex::tuple;
        return v;
    }
    case ex::dict: {
        value d = value::dict();
        for (size_t k = 0; k + 1 < e.kids.size(); k += 2) {
            value key = eval(*e.kids[k], sc);
            if (!key.is_string()) fail("dict keys other than strings are not supported in chat templates");
            d.d->set(key.s, eval(*e.kids[k + 1], sc));
        }
        return d;
    }
    case ex::getattr: {
        value obj = eval(*e.kids[0], sc);
        line_ = e.line;
        return get_attr(*this, obj, e.name);
    }
    case ex::getitem: {
        value obj = eval(*e.kids[0], sc);
        value key = eval(*e.kids[1], sc);
        line_ = e.line;
        return get_item(*this, obj, key);
    }
    case ex::slice: {
        value obj = eval(*e.kids[0], sc);
        value parts[3];
        for (int k = 0; k < 3; ++k) parts[k] = e.kids[size_t(k) + 1] ? eval(*e.kids[size_t(k) + 1], sc) : value::none();
        line_ = e.line;
        return slice_value(obj, parts[0], parts[1], parts[2]);
    }
    case ex::call: {
        value fn = eval(*e.kids[0], sc);
        call_args a = eval_args(e, sc, 1);
        line_ = e.line;
        return invoke(fn, a);
    }
    case ex::filter: return apply_filter(e, eval(*e.kids[0], sc), sc);
    case ex::test: {
        if (e.unknown) fail("no test named '" + e.name + "'");
        value operand = eval(*e.kids[0], sc);
        call_args a = eval_args(e, sc, 1);
        line_ = e.line;
        const bool r = run_test(*this, e.name, operand, a);
        return value::boolean(e.negated ? !r : r);
    }
    case ex::unary: {
        value v = eval(*e.kids[0], sc);
        line_ = e.line;
        if (e.name == "not") return value::boolean(!truthy(v));
        if (v.k == kind::integer) return value::integer(e.name == "-" ? -v.i : v.i);
        if (v.k == kind::boolean) return value::integer(e.name == "-" ? -int64_t(v.b) : int64_t(v.b));
        if (v.k == kind::floating) return value::floating(e.name == "-" ? -v.f : v.f);
        if (v.is_undefined()) fail(v.s);
        fail(std::string("bad operand type for unary ") + e.name + ": '" + type_name(v) + "'");
    }
    case ex::binary: {
        if (e.name == "and") {
            value l = eval(*e.kids[0], sc);
            return truthy(l) ? eval(*e.kids[1], sc) : l;
        }
        if (e.name == "or") {
            value l = eval(*e.kids[0], sc);
            return truthy(l) ? l : eval(*e.kids[1], sc);
        }
        value l = eval(*e.kids[0], sc);
        value r = eval(*e.kids[1], sc);
        line_ = e.line;
        return binary_op(*this, e.name, l, r);
    }
    case ex::compare: {
        value l = eval(*e.kids[0], sc);
        for (size_t k = 0; k < e.ops.size(); ++k) {
            value r = eval(*e.kids[k + 1], sc);
            line_ = e.line;
            const std::string& op = e.ops[k];
            bool ok;
            if (op == "==") ok = equals(l, r);
            else if (op == "!=") ok = !equals(l, r);
            else if (op == "in") ok = contains(r, l);
            else if (op == "not in") ok = !contains(r, l);
            else {
                const int c = compare(l, r, op.c_str());
                ok = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
            }
            if (!ok) return value::boolean(false);
            l = std::move(r);
        }
        return value::boolean(true);
    }
    case ex::condition: {
        if (truthy(eval(*e.kids[1], sc))) return eval(*e.kids[0], sc);
        if (e.kids[2]) return eval(*e.kids[2], sc);
        return value::undef("the inline if expression evaluated to false and no else section was defined");
    }
    }
    return value::undef();
}

// ---- entry --------------------------------------------------------------------------------------------------

template_output execute(const program& p, const nlohmann::ordered_json& context, const render_options& opt,
                        const template_limits& lim) {
    interpreter in(p, opt, lim);
    try {
        return in.run(context);
    } catch (const runtime_failure& f) {
        const std::string where = p.origin + ":" + std::to_string(in.line());
        if (f.raised)
            throw error(error_code::invalid_argument, where + ": the chat template raised an error: " + f.message,
                        "the template rejects this conversation; change the messages (roles, order, fields) to what "
                        "the model's template accepts");
        throw error(error_code::format, where + ": template error: " + f.message,
                    "the chat template cannot render this input; check the messages' fields or fix the template");
    } catch (const break_signal&) {
        throw error(error_code::internal, p.origin + ": break outside of a loop");
    } catch (const continue_signal&) {
        throw error(error_code::internal, p.origin + ": continue outside of a loop");
    }
}

} // namespace qls::jinja
