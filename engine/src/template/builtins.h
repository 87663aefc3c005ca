// The interpreter's state and the built-ins it dispatches to: attribute/item access with the sandbox's rules,
// operators, the filters and tests of Jinja2 3.1 (jinja2/filters.py, jinja2/tests.py) and the methods of
// str/list/dict that chat templates call.
#pragma once

#include "jinja_internal.h"

namespace qls::jinja {

struct scope;

class interpreter {
public:
    interpreter(const program& p, const render_options& opt, const template_limits& lim);
    ~interpreter();
    interpreter(const interpreter&) = delete;
    interpreter& operator=(const interpreter&) = delete;
    template_output run(const nlohmann::ordered_json& context);
    int line() const { return line_; }

    value eval(const expr& e, const std::shared_ptr<scope>& sc);
    value invoke(const value& fn, call_args& a);
    void step();
    void check_size(size_t n) const;
    const template_limits& limits() const { return lim_; }
    // A namespace() can be made to hold itself ({% set ns.me = ns %}): the destructor empties every one.
    void track_namespace(const value& ns) { namespaces_.push_back(ns.d); }

private:
    void exec(const body_t& body, const std::shared_ptr<scope>& sc);
    void exec(const node& n, const std::shared_ptr<scope>& sc);
    void exec_for(const node& n, const std::shared_ptr<scope>& sc);
    std::string capture(const body_t& body, const std::shared_ptr<scope>& sc, bool);
    void assign(const expr& target, value v, const std::shared_ptr<scope>& sc);
    value make_macro(const node& n, const std::shared_ptr<scope>& sc);
    void bind_params(const node& def, call_args& a, const std::shared_ptr<scope>& local, const std::string& name);
    static bool uses_name(const body_t& body, const std::string& name);
    value range(call_args& a);
    call_args eval_args(const expr& e, const std::shared_ptr<scope>& sc, size_t first = 1);
    value apply_filter(const expr& f, value operand, const std::shared_ptr<scope>& sc);
    void write(const std::string& s);

    const program& p_;
    const render_options& opt_;
    const template_limits& lim_;
    std::string* out_ = nullptr;
    std::string* root_out_ = nullptr;
    std::vector<generation_span>* spans_ = nullptr;
    uint64_t steps_ = 0;
    int call_depth_ = 0;
    int depth_ = 0; // nested exec/eval frames (bounded so no template exhausts the stack)
    friend struct frame_guard;
    int line_ = 1;
    // Reference cycles the template can build, broken when the run ends (values are reference-counted): a macro or a
    // caller() holds the scope it was defined in, and that scope (or a namespace in it) holds the macro.
    std::vector<std::shared_ptr<scope>> closure_scopes_;
    std::vector<std::weak_ptr<dict_t>> namespaces_;
};

// obj.name (Jinja's getattr: a Python attribute first, then obj["name"]; missing → Undefined; on Undefined → error).
value get_attr(interpreter& in, const value& obj, const std::string& name);
// obj[key] (Jinja's getitem: obj[key] first, then the attribute named key).
value get_item(interpreter& in, const value& obj, const value& key);
value slice_value(const value& obj, const value& start, const value& stop, const value& step);
value binary_op(interpreter& in, const std::string& op, const value& l, const value& r);
bool contains(const value& container, const value& item); // Python's `item in container`
value run_filter(interpreter& in, const std::string& name, value operand, call_args& a);
bool run_test(interpreter& in, const std::string& name, const value& operand, call_args& a);

} // namespace qls::jinja
