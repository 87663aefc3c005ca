// Jinja built-ins: attribute and item access under ImmutableSandboxedEnvironment (jinja2/sandbox.py), operators with
// Python semantics, the filters and tests of Jinja2 3.1 (jinja2/filters.py, jinja2/tests.py), HF's tojson filter
// (transformers utils/chat_template_utils.py), and the str/dict/list methods chat templates call.
#include "builtins.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

namespace qls::jinja {

namespace {

value make_fn(std::string name, std::function<value(interpreter&, call_args&)> f) {
    value v;
    v.k = kind::callable;
    v.fn = std::make_shared<callable_t>(callable_t{std::move(name), std::move(f)});
    return v;
}

value unsafe_undefined(const value& obj, const std::string& name) {
    value u = value::undef("access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe.");
    u.unsafe = u.s;
    return u;
}

std::string object_desc(const value& obj) {
    if (obj.k == kind::none) return "'None'";
    return std::string("'") + type_name(obj) + " object'";
}

value no_attribute(const value& obj, const std::string& name) {
    return value::undef(object_desc(obj) + " has no attribute '" + name + "'");
}

[[noreturn]] void fail_undefined(const value& u) { fail(u.s.empty() ? "undefined value" : u.s); }

// ---- strings ----------------------------------------------------------------------------------------------------

uint32_t next_cp(const std::string& s, size_t& i) {
    const unsigned char c = s[i];
    const int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
    i += size_t(n);
    return cp;
}

// Python's str.isspace() characters (Unicode White_Space plus the \x1c-\x1f separators).
bool py_space(uint32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Code points of s with their byte offsets.
struct cps {
    std::vector<uint32_t> cp;
    std::vector<size_t> at; // at[i] byte offset of cp[i]; at.back() == size
    explicit cps(const std::string& s) {
        for (size_t i = 0; i < s.size();) {
            at.push_back(i);
            cp.push_back(next_cp(s, i));
        }
        at.push_back(s.size());
    }
};

std::string py_strip(const std::string& s, const value* chars, bool left, bool right) {
    const cps c(s);
    std::vector<uint32_t> set;
    const bool ws = !chars || chars->k == kind::none;
    if (!ws) {
        if (!chars->is_string()) fail("strip arg must be None or str");
        const cps cc(chars->s);
        set = cc.cp;
    }
    auto strip_it = [&](uint32_t x) { return ws ? py_space(x) : std::find(set.begin(), set.end(), x) != set.end(); };
    size_t b = 0, e = c.cp.size();
    if (left)
        while (b < e && strip_it(c.cp[b])) ++b;
    if (right)
        while (e > b && strip_it(c.cp[e - 1])) --e;
    return s.substr(c.at[b], c.at[e] - c.at[b]);
}

std::vector<std::string> py_split(const std::string& s, const value* sep, int64_t maxsplit, bool from_right) {
    std::vector<std::string> out;
    if (!sep || sep->k == kind::none) {
        const cps c(s);
        // Whitespace split: runs of whitespace separate, ends ignored.
        std::vector<std::pair<size_t, size_t>> words;
        size_t k = 0;
        while (k < c.cp.size()) {
            while (k < c.cp.size() && py_space(c.cp[k])) ++k;
            if (k >= c.cp.size()) break;
            const size_t b = k;
            while (k < c.cp.size() && !py_space(c.cp[k])) ++k;
            words.emplace_back(b, k);
        }
        if (maxsplit < 0 || size_t(maxsplit) + 1 >= words.size()) {
            for (auto [b, e] : words) out.push_back(s.substr(c.at[b], c.at[e] - c.at[b]));
            return out;
        }
        if (!from_right) {
            for (size_t w = 0; w < size_t(maxsplit); ++w)
                out.push_back(s.substr(c.at[words[w].first], c.at[words[w].second] - c.at[words[w].first]));
            // The remainder is the rest of the string as is (its trailing whitespace kept).
            const size_t b = words[size_t(maxsplit)].first;
            out.push_back(s.substr(c.at[b]));
            return out;
        }
        const size_t first_kept = words.size() - size_t(maxsplit);
        // The remainder is the start of the string as is (its leading whitespace kept).
        const size_t e = words[first_kept - 1].second;
        out.push_back(s.substr(0, c.at[e]));
        for (size_t w = first_kept; w < words.size(); ++w)
            out.push_back(s.substr(c.at[words[w].first], c.at[words[w].second] - c.at[words[w].first]));
        return out;
    }
    if (!sep->is_string()) fail("must be str or None, not " + std::string(type_name(*sep)));
    const std::string& d = sep->s;
    if (d.empty()) fail("empty separator");
    if (!from_right) {
        size_t pos = 0;
        int64_t n = 0;
        while (maxsplit < 0 || n < maxsplit) {
            const size_t f = s.find(d, pos);
            if (f == std::string::npos) break;
            out.push_back(s.substr(pos, f - pos));
            pos = f + d.size();
            ++n;
        }
        out.push_back(s.substr(pos));
        return out;
    }
    size_t end = s.size();
    int64_t n = 0;
    std::vector<std::string> rev;
    while (maxsplit < 0 || n < maxsplit) {
        if (end < d.size()) break;
        const size_t f = s.rfind(d, end - d.size());
        if (f == std::string::npos) break;
        rev.push_back(s.substr(f + d.size(), end - f - d.size()));
        end = f;
        ++n;
    }
    rev.push_back(s.substr(0, end));
    return std::vector<std::string>(rev.rbegin(), rev.rend());
}

std::string ascii_upper(std::string s) {
    for (char& c : s)
        if (c >= 'a' && c <= 'z') c = char(c - 32);
    return s;
}
std::string ascii_lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
    return s;
}
bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// str.title(): a cased letter after an uncased character starts a word (upper), the rest are lowered.
std::string py_title(const std::string& s) {
    std::string out = s;
    bool prev_cased = false;
    for (char& c : out) {
        if (ascii_alpha(c)) {
            c = prev_cased ? char(std::tolower((unsigned char)c)) : char(std::toupper((unsigned char)c));
            prev_cased = true;
        } else {
            prev_cased = (unsigned char)c >= 0x80 && prev_cased;
        }
    }
    return out;
}

std::string py_capitalize(const std::string& s) {
    std::string out = ascii_lower(s);
    if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = char(out[0] - 32);
    return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count) {
    if (old.empty()) {
        // Insert between every code point (and at both ends), up to count times.
        const cps c(s);
        std::string out;
        int64_t n = 0;
        for (size_t k = 0; k <= c.cp.size(); ++k) {
            if (count < 0 || n < count) {
                out += rep;
                ++n;
            }
            if (k < c.cp.size()) out.append(s, c.at[k], c.at[k + 1] - c.at[k]);
        }
        return out;
    }
    std::string out;
    size_t pos = 0;
    int64_t n = 0;
    while (count < 0 || n < count) {
        const size_t f = s.find(old, pos);
        if (f == std::string::npos) break;
        out.append(s, pos, f - pos);
        out += rep;
        pos = f + old.size();
        ++n;
    }
    out.append(s, pos, std::string::npos);
    return out;
}

int64_t as_int(const value& v, const char* what) {
    if (v.k == kind::integer) return v.i;
    if (v.k == kind::boolean) return v.b;
    fail(std::string(what) + ": an integer is required, not '" + type_name(v) + "'");
}

const value* arg(const call_args& a, size_t pos, const char* name) {
    if (pos < a.pos.size()) return &a.pos[pos];
    return a.kwarg(name);
}

// str.format with {} {0} {name} fields (format specs are not supported).
std::string py_format(interpreter& in, const std::string& fmt, const call_args& a) {
    std::string out;
    size_t auto_index = 0;
    for (size_t i = 0; i < fmt.size(); ++i) {
        const char c = fmt[i];
        if (c == '{') {
            if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
                out += '{';
                ++i;
                continue;
            }
            const size_t close = fmt.find('}', i);
            if (close == std::string::npos) fail("Single '{' encountered in format string");
            std::string field = fmt.substr(i + 1, close - i - 1);
            if (field.find(':') != std::string::npos || field.find('!') != std::string::npos)
                fail("format specs and conversions in str.format are not supported");
            value v;
            if (field.empty()) {
                if (auto_index >= a.pos.size())
                    fail("Replacement index " + std::to_string(auto_index) + " out of range");
                v = a.pos[auto_index++];
            } else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
                int64_t k = 0;
                if (!parse_decimal_int(field, k) || uint64_t(k) >= a.pos.size())
                    fail("Replacement index " + field + " out of range");
                v = a.pos[size_t(k)];
            } else {
                const value* kv = a.kwarg(field);
                if (!kv) fail("KeyError: '" + field + "'");
                v = *kv;
            }
            out += to_str(v);
            in.check_size(out.size());
            i = close;
        } else if (c == '}') {
            if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
            else fail("Single '}' encountered in format string");
            out += '}';
        } else out += c;
    }
    return out;
}

// printf-style "%s" % args (Jinja's format filter and the % operator on strings): %s %r %d %i %f %% only.
std::string py_percent(interpreter& in, const std::string& fmt, const std::vector<value>& args) {
    std::string out;
    size_t next = 0;
    for (size_t i = 0; i < fmt.size(); ++i) {
        if (fmt[i] != '%') {
            out += fmt[i];
            continue;
        }
        if (++i >= fmt.size()) fail("incomplete format");
        const char c = fmt[i];
        if (c == '%') {
            out += '%';
            continue;
        }
        if (next >= args.size()) fail("not enough arguments for format string");
        const value& v = args[next++];
        if (c == 's') out += to_str(v);
        else if (c == 'r') out += repr(v);
        else if (c == 'd' || c == 'i') {
            if (v.k == kind::floating) out += std::to_string(int64_t(v.f));
            else out += std::to_string(as_int(v, "%d format"));
        } else if (c == 'f') {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%f", v.k == kind::floating ? v.f : double(as_int(v, "%f format")));
            out += buf;
        } else fail(std::string("unsupported format character '") + c + "'");
        in.check_size(out.size());
    }
    if (next < args.size()) fail("not all arguments converted during string formatting");
    return out;
}

value string_method(interpreter& in, const value& self, const std::string& name) {
    const std::string s = self.s;
    auto fn = [&](std::function<value(interpreter&, call_args&)> f) { return make_fn("str." + name, std::move(f)); };
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
        const bool l = name != "rstrip", r = name != "lstrip";
        return fn([s, l, r](interpreter&, call_args& a) {
            return value::string(py_strip(s, a.pos.empty() ? nullptr : &a.pos[0], l, r));
        });
    }
    if (name == "split" || name == "rsplit") {
        const bool right = name == "rsplit";
        return fn([s, right](interpreter&, call_args& a) {
            const value* sep = arg(a, 0, "sep");
            const value* ms = arg(a, 1, "maxsplit");
            std::vector<value> parts;
            for (auto& p : py_split(s, sep, ms ? as_int(*ms, "maxsplit") : -1, right))
                parts.push_back(value::string(std::move(p)));
            return value::list(std::move(parts));
        });
    }
    if (name == "splitlines")
        return fn([s](interpreter&, call_args&) {
            std::vector<value> parts;
            std::string cur;
            for (size_t i = 0; i < s.size(); ++i) {
                if (s[i] == '\n' || s[i] == '\r') {
                    parts.push_back(value::string(cur));
                    cur.clear();
                    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
                } else cur += s[i];
            }
            if (!cur.empty()) parts.push_back(value::string(cur));
            return value::list(std::move(parts));
        });
    if (name == "startswith" || name == "endswith") {
        const bool start = name == "startswith";
        return fn([s, start](interpreter&, call_args& a) {
            if (a.pos.empty()) fail("startswith/endswith takes at least 1 argument");
            std::vector<value> cands = a.pos[0].k == kind::list && a.pos[0].tuple ? *a.pos[0].l
                                                                                  : std::vector<value>{a.pos[0]};
            for (const value& c : cands) {
                if (!c.is_string()) fail("startswith/endswith first arg must be str or a tuple of str");
                if (start ? s.compare(0, c.s.size(), c.s) == 0 && s.size() >= c.s.size()
                          : s.size() >= c.s.size() && s.compare(s.size() - c.s.size(), c.s.size(), c.s) == 0)
                    return value::boolean(true);
            }
            return value::boolean(false);
        });
    }
    if (name == "upper") return fn([s](interpreter&, call_args&) { return value::string(ascii_upper(s)); });
    if (name == "lower") return fn([s](interpreter&, call_args&) { return value::string(ascii_lower(s)); });
    if (name == "title") return fn([s](interpreter&, call_args&) { return value::string(py_title(s)); });
    if (name == "capitalize") return fn([s](interpreter&, call_args&) { return value::string(py_capitalize(s)); });
    if (name == "replace")
        return fn([s](interpreter& in2, call_args& a) {
            if (a.pos.size() < 2 || !a.pos[0].is_string() || !a.pos[1].is_string()) fail("replace() takes two strings");
            std::string r = py_replace(s, a.pos[0].s, a.pos[1].s, a.pos.size() > 2 ? as_int(a.pos[2], "count") : -1);
            in2.check_size(r.size());
            return value::string(std::move(r));
        });
    if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
        return fn([s, name](interpreter&, call_args& a) {
            if (a.pos.empty() || !a.pos[0].is_string()) fail(name + "() takes a string");
            const std::string& sub = a.pos[0].s;
            if (name == "count") {
                if (sub.empty()) return value::integer(int64_t(utf8_length(s)) + 1);
                int64_t n = 0;
                for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
                return value::integer(n);
            }
            const size_t p = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
            if (p == std::string::npos) {
                if (name == "index" || name == "rindex") fail("substring not found");
                return value::integer(-1);
            }
            return value::integer(int64_t(utf8_length(s.substr(0, p))));
        });
    }
    if (name == "format")
        return fn([s](interpreter& in2, call_args& a) { return value::string(py_format(in2, s, a)); });
    if (name == "join")
        return fn([s](interpreter& in2, call_args& a) {
            if (a.pos.size() != 1) fail("join() takes exactly one argument");
            std::string out;
            bool first = true;
            for (const value& v : iterate(a.pos[0])) {
                if (!v.is_string())
                    fail(std::string("sequence item: expected str instance, ") + type_name(v) + " found");
                if (!first) out += s;
                first = false;
                out += v.s;
                in2.check_size(out.size());
            }
            return value::string(std::move(out));
        });
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "islower" ||
        name == "isupper")
        return fn([s, name](interpreter&, call_args&) {
            if (s.empty()) return value::boolean(false);
            bool cased = false;
            for (unsigned char c : s) {
                if (name == "isdigit" && !std::isdigit(c)) return value::boolean(false);
                if (name == "isalpha" && !std::isalpha(c)) return value::boolean(false);
                if (name == "isalnum" && !std::isalnum(c)) return value::boolean(false);
                if (name == "isspace" && !std::isspace(c)) return value::boolean(false);
                if (name == "islower" && std::isupper(c)) return value::boolean(false);
                if (name == "isupper" && std::islower(c)) return value::boolean(false);
                cased = cased || std::isalpha(c);
            }
            if (name == "islower" || name == "isupper") return value::boolean(cased);
            return value::boolean(true);
        });
    (void)in;
    return no_attribute(self, name);
}

value dict_method(const value& self, const std::string& name) {
    const dict_ptr d = self.d;
    if (name == "items")
        return make_fn("dict.items", [d](interpreter&, call_args&) {
            std::vector<value> out;
            for (const auto& kv : d->items) {
                value t = value::list({value::string(kv.first), kv.second});
                t.tuple = true;
                out.push_back(std::move(t));
            }
            return value::list(std::move(out));
        });
    if (name == "keys")
        return make_fn("dict.keys", [d](interpreter&, call_args&) {
            std::vector<value> out;
            for (const auto& kv : d->items) out.push_back(value::string(kv.first));
            return value::list(std::move(out));
        });
    if (name == "values")
        return make_fn("dict.values", [d](interpreter&, call_args&) {
            std::vector<value> out;
            for (const auto& kv : d->items) out.push_back(kv.second);
            return value::list(std::move(out));
        });
    if (name == "get")
        return make_fn("dict.get", [d](interpreter&, call_args& a) {
            if (a.pos.empty()) fail("get expected at least 1 argument, got 0");
            if (a.pos[0].is_string())
                if (const value* v = d->find(a.pos[0].s)) return *v;
            return a.pos.size() > 1 ? a.pos[1] : value::none();
        });
    if (name == "copy")
        return make_fn("dict.copy", [d](interpreter&, call_args&) {
            value c = value::dict();
            c.d->items = d->items;
            return c;
        });
    if (name == "pop" || name == "popitem" || name == "setdefault" || name == "update" || name == "clear")
        return unsafe_undefined(self, name);
    return value();
}

value list_method(const value& self, const std::string& name) {
    const list_ptr l = self.l;
    if (name == "index")
        return make_fn("list.index", [l](interpreter&, call_args& a) {
            if (a.pos.empty()) fail("index expected 1 argument");
            for (size_t k = 0; k < l->size(); ++k)
                if (equals((*l)[k], a.pos[0])) return value::integer(int64_t(k));
            fail(repr(a.pos[0]) + " is not in list");
        });
    if (name == "count")
        return make_fn("list.count", [l](interpreter&, call_args& a) {
            if (a.pos.empty()) fail("count expected 1 argument");
            int64_t n = 0;
            for (const value& v : *l) n += equals(v, a.pos[0]);
            return value::integer(n);
        });
    if (name == "copy") return make_fn("list.copy", [l](interpreter&, call_args&) { return value::list(*l); });
    if (name == "append" || name == "extend" || name == "insert" || name == "pop" || name == "remove" ||
        name == "clear" || name == "sort" || name == "reverse")
        return unsafe_undefined(self, name);
    return value();
}

// a OP b on 64-bit integers; Python's integers are unbounded, so an overflow is reported instead of wrapping.
int64_t checked(char op, int64_t a, int64_t b) {
    int64_t r = 0;
    const bool overflow = op == '+'   ? __builtin_add_overflow(a, b, &r)
                          : op == '-' ? __builtin_sub_overflow(a, b, &r)
                                      : __builtin_mul_overflow(a, b, &r);
    if (overflow) fail("integer overflow (values beyond 64 bits are not supported)");
    return r;
}

double num(const value& v) { return v.k == kind::floating ? v.f : v.k == kind::integer ? double(v.i) : double(v.b); }
int64_t inum(const value& v) { return v.k == kind::integer ? v.i : int64_t(v.b); }

[[noreturn]] void bad_operands(const std::string& op, const value& l, const value& r) {
    if (l.is_undefined()) fail_undefined(l);
    if (r.is_undefined()) fail_undefined(r);
    if (op == "+" && l.is_string()) fail(std::string("can only concatenate str (not \"") + type_name(r) + "\") to str");
    if (op == "+" && l.k == kind::list && !l.generator)
        fail(std::string("can only concatenate list (not \"") + type_name(r) + "\") to list");
    fail("unsupported operand type(s) for " + op + ": '" + type_name(l) + "' and '" + type_name(r) + "'");
}

} // namespace

// ---- access -----------------------------------------------------------------------------------------------------

value get_attr(interpreter& in, const value& obj, const std::string& name) {
    switch (obj.k) {
    case kind::undefined: fail_undefined(obj);
    case kind::dict: {
        value m = dict_method(obj, name);
        if (!m.is_undefined() || !m.unsafe.empty()) return m;
        if (const value* v = obj.d->find(name)) return *v;
        return no_attribute(obj, name);
    }
    case kind::ns: {
        if (const value* v = obj.d->find(name)) return *v;
        return no_attribute(obj, name);
    }
    case kind::string: return string_method(in, obj, name);
    case kind::list: {
        if (obj.generator) return no_attribute(obj, name);
        value m = list_method(obj, name);
        if (!m.is_undefined() || !m.unsafe.empty()) return m;
        return no_attribute(obj, name);
    }
    default: return no_attribute(obj, name);
    }
}

value get_item(interpreter& in, const value& obj, const value& key) {
    switch (obj.k) {
    case kind::undefined: fail_undefined(obj);
    case kind::dict:
        if (key.is_string()) {
            if (const value* v = obj.d->find(key.s)) return *v;
            value m = dict_method(obj, key.s);
            if (!m.is_undefined() || !m.unsafe.empty()) return m;
        }
        return value::undef(object_desc(obj) + " has no attribute " + repr(key));
    case kind::list:
    case kind::string: {
        if (key.k == kind::integer || key.k == kind::boolean) {
            if (obj.generator) return value::undef("'generator' object is not subscriptable");
            int64_t i = inum(key);
            if (obj.k == kind::list) {
                const int64_t n = int64_t(obj.l->size());
                if (i < 0) i += n;
                if (i < 0 || i >= n)
                    return value::undef(object_desc(obj) + " has no element " + std::to_string(inum(key)));
                return (*obj.l)[size_t(i)];
            }
            const auto o = utf8_offsets(obj.s);
            const int64_t n = int64_t(o.size()) - 1;
            if (i < 0) i += n;
            if (i < 0 || i >= n) return value::undef(object_desc(obj) + " has no element " + std::to_string(inum(key)));
            return value::string(obj.s.substr(o[size_t(i)], o[size_t(i) + 1] - o[size_t(i)]));
        }
        if (key.is_string()) return get_attr(in, obj, key.s);
        return value::undef(object_desc(obj) + " has no attribute " + repr(key));
    }
    case kind::ns:
        if (key.is_string()) return get_attr(in, obj, key.s);
        return no_attribute(obj, to_str(key));
    default: return value::undef(object_desc(obj) + " has no attribute " + repr(key));
    }
}

value slice_value(const value& obj, const value& start, const value& stop, const value& stepv) {
    if (obj.is_undefined()) fail_undefined(obj);
    if (!(obj.k == kind::list && !obj.generator) && obj.k != kind::string)
        return value::undef(object_desc(obj) + " is not subscriptable");
    auto idx = [](const value& v, const char* what) -> std::optional<int64_t> {
        if (v.k == kind::none) return std::nullopt;
        if (v.k == kind::integer || v.k == kind::boolean) return inum(v);
        fail(std::string("slice indices must be integers or None (") + what + ")");
    };
    std::vector<size_t> offs;
    int64_t n;
    if (obj.k == kind::list) n = int64_t(obj.l->size());
    else {
        offs = utf8_offsets(obj.s);
        n = int64_t(offs.size()) - 1;
    }
    const int64_t st = idx(stepv, "step").value_or(1);
    if (st == 0) fail("slice step cannot be zero");
    // PySlice_AdjustIndices.
    auto adjust = [&](std::optional<int64_t> v, int64_t def) {
        if (!v) return def;
        int64_t x = *v;
        if (x < 0) {
            x += n;
            if (x < 0) x = st < 0 ? -1 : 0;
        } else if (x >= n) x = st < 0 ? n - 1 : n;
        return x;
    };
    const int64_t b = adjust(idx(start, "start"), st < 0 ? n - 1 : 0);
    const int64_t e = adjust(idx(stop, "stop"), st < 0 ? -1 : n);
    if (obj.k == kind::list) {
        std::vector<value> out;
        for (int64_t k = b; st > 0 ? k < e : k > e; k += st) out.push_back((*obj.l)[size_t(k)]);
        value v = value::list(std::move(out));
        v.tuple = obj.tuple;
        return v;
    }
    std::string out;
    for (int64_t k = b; st > 0 ? k < e : k > e; k += st)
        out.append(obj.s, offs[size_t(k)], offs[size_t(k) + 1] - offs[size_t(k)]);
    return value::string(std::move(out));
}

bool contains(const value& c, const value& item) {
    switch (c.k) {
    case kind::undefined: return false;
    case kind::string:
        if (!item.is_string())
            fail(std::string("'in <string>' requires string as left operand, not ") + type_name(item));
        return c.s.find(item.s) != std::string::npos;
    case kind::list:
        for (const value& v : *c.l)
            if (equals(v, item)) return true;
        return false;
    case kind::dict:
        if (item.k == kind::list && !item.tuple) fail("unhashable type: 'list'");
        if (item.k == kind::dict) fail("unhashable type: 'dict'");
        return item.is_string() && c.d->find(item.s) != nullptr;
    default: fail(std::string("argument of type '") + type_name(c) + "' is not iterable");
    }
}

value binary_op(interpreter& in, const std::string& op, const value& l, const value& r) {
    if (op == "~") {
        std::string s = to_str(l) + to_str(r);
        in.check_size(s.size());
        return value::string(std::move(s));
    }
    const bool nums = l.is_number() && r.is_number();
    const bool ints = nums && l.k != kind::floating && r.k != kind::floating;
    if (op == "+") {
        if (ints) return value::integer(checked('+', inum(l), inum(r)));
        if (nums) return value::floating(num(l) + num(r));
        if (l.is_string() && r.is_string()) {
            in.check_size(l.s.size() + r.s.size());
            return value::string(l.s + r.s);
        }
        if (l.k == kind::list && r.k == kind::list && !l.generator && !r.generator && l.tuple == r.tuple) {
            std::vector<value> out = *l.l;
            out.insert(out.end(), r.l->begin(), r.l->end());
            value v = value::list(std::move(out));
            v.tuple = l.tuple;
            return v;
        }
        bad_operands(op, l, r);
    }
    if (op == "-") {
        if (ints) return value::integer(checked('-', inum(l), inum(r)));
        if (nums) return value::floating(num(l) - num(r));
        bad_operands(op, l, r);
    }
    if (op == "*") {
        if (ints) return value::integer(checked('*', inum(l), inum(r)));
        if (nums) return value::floating(num(l) * num(r));
        const value* seq = (l.is_string() || l.k == kind::list)   ? &l
                           : (r.is_string() || r.k == kind::list) ? &r
                                                                  : nullptr;
        const value* cnt = seq == &l ? &r : &l;
        if (seq && !seq->generator && (cnt->k == kind::integer || cnt->k == kind::boolean)) {
            const int64_t n = std::max<int64_t>(0, inum(*cnt));
            const size_t unit = seq->is_string() ? seq->s.size() : seq->l->size() * 16;
            if (n > 0 && unit > 0 && uint64_t(n) > in.limits().max_output_bytes / unit) in.check_size(SIZE_MAX);
            if (seq->is_string()) {
                std::string out;
                for (int64_t k = 0; k < n; ++k) out += seq->s;
                return value::string(std::move(out));
            }
            std::vector<value> out;
            for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq->l->begin(), seq->l->end());
            value v = value::list(std::move(out));
            v.tuple = seq->tuple;
            return v;
        }
        bad_operands(op, l, r);
    }
    if (op == "/") {
        if (!nums) bad_operands(op, l, r);
        if (num(r) == 0) fail("division by zero");
        return value::floating(num(l) / num(r));
    }
    if (op == "//" || op == "%") {
        if (op == "%" && l.is_string()) {
            std::vector<value> args = r.k == kind::list && r.tuple ? *r.l : std::vector<value>{r};
            return value::string(py_percent(in, l.s, args));
        }
        if (!nums) bad_operands(op, l, r);
        if (ints) {
            const int64_t a = inum(l), b = inum(r);
            if (b == 0) fail(op == "//" ? "integer division or modulo by zero" : "integer modulo by zero");
            if (a == INT64_MIN && b == -1) fail("integer overflow (values beyond 64 bits are not supported)");
            int64_t q = a / b, m = a % b;
            if (m != 0 && ((m < 0) != (b < 0))) {
                --q;
                m += b;
            }
            return value::integer(op == "//" ? q : m);
        }
        const double a = num(l), b = num(r);
        if (b == 0) fail("float division by zero");
        double m = std::fmod(a, b);
        if (m != 0 && ((m < 0) != (b < 0))) m += b;
        if (op == "%") return value::floating(m);
        // CPython float_floor_div: (a - mod) / b, floored and corrected by one half.
        const double div = (a - m) / b;
        double fl = std::floor(div);
        if (div - fl > 0.5) fl += 1.0;
        return value::floating(fl);
    }
    if (op == "**") {
        if (ints && inum(r) >= 0) {
            int64_t base = inum(l), e = inum(r), acc = 1;
            while (e > 0) {
                if (e & 1) acc = checked('*', acc, base);
                e >>= 1;
                if (e > 0) base = checked('*', base, base);
            }
            return value::integer(acc);
        }
        if (nums) {
            if (num(l) == 0 && num(r) < 0) fail("0.0 cannot be raised to a negative power");
            return value::floating(std::pow(num(l), num(r)));
        }
        bad_operands(op, l, r);
    }
    fail("unknown operator " + op);
}

// ---- tests ------------------------------------------------------------------------------------------------------

namespace {

using test_fn = bool (*)(interpreter&, const value&, call_args&);

const value& need_arg(const call_args& a, const char* test) {
    if (a.pos.empty()) fail(std::string("test '") + test + "' needs an argument");
    return a.pos[0];
}

const std::map<std::string, test_fn>& tests() {
    static const std::map<std::string, test_fn> t = {
        {"defined", [](interpreter&, const value& v, call_args&) { return !v.is_undefined(); }},
        {"undefined", [](interpreter&, const value& v, call_args&) { return v.is_undefined(); }},
        {"none", [](interpreter&, const value& v, call_args&) { return v.k == kind::none; }},
        {"boolean", [](interpreter&, const value& v, call_args&) { return v.k == kind::boolean; }},
        {"true", [](interpreter&, const value& v, call_args&) { return v.k == kind::boolean && v.b; }},
        {"false", [](interpreter&, const value& v, call_args&) { return v.k == kind::boolean && !v.b; }},
        {"integer", [](interpreter&, const value& v, call_args&) { return v.k == kind::integer; }},
        {"float", [](interpreter&, const value& v, call_args&) { return v.k == kind::floating; }},
        {"number", [](interpreter&, const value& v, call_args&) { return v.is_number(); }},
        {"string", [](interpreter&, const value& v, call_args&) { return v.is_string(); }},
        {"mapping", [](interpreter&, const value& v, call_args&) { return v.k == kind::dict; }},
        {"iterable",
         [](interpreter&, const value& v, call_args&) {
             return v.k == kind::list || v.k == kind::dict || v.is_string() || v.is_undefined();
         }},
        {"sequence",
         [](interpreter&, const value& v, call_args&) {
             return (v.k == kind::list && !v.generator) || v.k == kind::dict || v.is_string() || v.is_undefined();
         }},
        {"callable", [](interpreter&, const value& v, call_args&) { return v.k == kind::callable; }},
        {"odd", [](interpreter&, const value& v, call_args&) { return (as_int(v, "odd") % 2 + 2) % 2 == 1; }},
        {"even", [](interpreter&, const value& v, call_args&) { return (as_int(v, "even") % 2) == 0; }},
        {"divisibleby",
         [](interpreter&, const value& v, call_args& a) {
             const int64_t d = as_int(need_arg(a, "divisibleby"), "divisibleby");
             if (d == 0) fail("integer modulo by zero");
             return as_int(v, "divisibleby") % d == 0;
         }},
        {"eq", [](interpreter&, const value& v, call_args& a) { return equals(v, need_arg(a, "eq")); }},
        {"equalto", [](interpreter&, const value& v, call_args& a) { return equals(v, need_arg(a, "equalto")); }},
        {"==", [](interpreter&, const value& v, call_args& a) { return equals(v, need_arg(a, "==")); }},
        {"ne", [](interpreter&, const value& v, call_args& a) { return !equals(v, need_arg(a, "ne")); }},
        {"!=", [](interpreter&, const value& v, call_args& a) { return !equals(v, need_arg(a, "!=")); }},
        {"lt", [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, "lt"), "<") < 0; }},
        {"<", [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, "<"), "<") < 0; }},
        {"lessthan",
         [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, "lessthan"), "<") < 0; }},
        {"le", [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, "le"), "<=") <= 0; }},
        {"<=", [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, "<="), "<=") <= 0; }},
        {"gt", [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, "gt"), ">") > 0; }},
        {">", [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, ">"), ">") > 0; }},
        {"greaterthan",
         [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, "greaterthan"), ">") > 0; }},
        {"ge", [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, "ge"), ">=") >= 0; }},
        {">=", [](interpreter&, const value& v, call_args& a) { return compare(v, need_arg(a, ">="), ">=") >= 0; }},
        {"in", [](interpreter&, const value& v, call_args& a) { return contains(need_arg(a, "in"), v); }},
        {"sameas",
         [](interpreter&, const value& v, call_args& a) {
             const value& o = need_arg(a, "sameas");
             if (v.k != o.k) return false;
             switch (v.k) {
             case kind::none:
             case kind::undefined: return true;
             case kind::boolean: return v.b == o.b;
             case kind::list: return v.l == o.l;
             case kind::dict:
             case kind::ns: return v.d == o.d;
             default: return equals(v, o);
             }
         }},
        {"lower",
         [](interpreter&, const value& v, call_args&) {
             const std::string s = to_str(v);
             return s == ascii_lower(s) && std::any_of(s.begin(), s.end(), ascii_alpha);
         }},
        {"upper",
         [](interpreter&, const value& v, call_args&) {
             const std::string s = to_str(v);
             return s == ascii_upper(s) && std::any_of(s.begin(), s.end(), ascii_alpha);
         }},
        {"escaped", [](interpreter&, const value&, call_args&) { return false; }},
        {"filter", [](interpreter&, const value& v, call_args&) { return v.is_string() && filter_exists(v.s); }},
        {"test", [](interpreter&, const value& v, call_args&) { return v.is_string() && test_exists(v.s); }},
    };
    return t;
}

// ---- filters ------------------------------------------------------------------------------------------------

using filter_fn = value (*)(interpreter&, value&, call_args&);

// make_attrgetter: "a.b.0" looked up item-first at each step.
value attr_path(interpreter& in, const value& obj, const std::string& path) {
    value cur = obj;
    size_t pos = 0;
    while (true) {
        const size_t dot = path.find('.', pos);
        const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
        int64_t index = 0; // Jinja2's make_attrgetter turns all-digit parts into ints; longer ones stay strings here
        const bool digits = std::all_of(part.begin(), part.end(), ::isdigit) && parse_decimal_int(part, index);
        cur = get_item(in, cur, digits ? value::integer(index) : value::string(part));
        if (dot == std::string::npos) return cur;
        pos = dot + 1;
    }
}

value attr_of(interpreter& in, const value& obj, const value& attribute) {
    if (attribute.is_string()) return attr_path(in, obj, attribute.s);
    if (attribute.k == kind::integer) return get_item(in, obj, attribute);
    fail("attribute must be a string or an integer");
}

value gen(std::vector<value> items) {
    value v = value::list(std::move(items));
    v.generator = true;
    return v;
}

std::vector<value> items_of(const value& v) {
    if (v.k == kind::none) fail("'NoneType' object is not iterable");
    return iterate(v);
}

bool flag(const call_args& a, size_t pos, const char* name, bool def) {
    const value* v = arg(a, pos, name);
    return v ? truthy(*v) : def;
}

// A sort key: lowered strings unless case_sensitive.
value sort_key(const value& v, bool case_sensitive) {
    if (!case_sensitive && v.is_string()) return value::string(ascii_lower(v.s));
    return v;
}

// select/reject/selectattr/rejectattr (jinja2/filters.py select_or_reject).
value select_or_reject(interpreter& in, const value& seq, call_args& a, bool use_attr, bool keep_if) {
    size_t k = 0;
    value attribute;
    if (use_attr) {
        if (a.pos.empty()) fail("selectattr/rejectattr need an attribute name");
        attribute = a.pos[k++];
    }
    std::string test;
    call_args targs;
    if (k < a.pos.size()) {
        if (!a.pos[k].is_string()) fail("the test name must be a string");
        test = a.pos[k++].s;
        for (; k < a.pos.size(); ++k) targs.pos.push_back(a.pos[k]);
        targs.kw = a.kw;
        if (!test_exists(test)) fail("no test named '" + test + "'");
    }
    std::vector<value> out;
    for (const value& item : items_of(seq)) {
        in.step();
        const value probe = use_attr ? attr_of(in, item, attribute) : item;
        const bool r = test.empty() ? truthy(probe) : run_test(in, test, probe, targs);
        if (r == keep_if) out.push_back(item);
    }
    return gen(std::move(out));
}

std::string do_indent(const std::string& s0, const value* width, bool first, bool blank) {
    std::string ind = width && width->is_string() ? width->s
                                                  : std::string(size_t(width ? as_int(*width, "indent") : 4), ' ');
    const std::string s = s0 + "\n";
    std::vector<std::string> lines;
    size_t pos = 0;
    while (pos < s.size()) {
        const size_t nl = s.find('\n', pos);
        lines.push_back(s.substr(pos, nl - pos));
        pos = nl + 1;
    }
    std::string rv;
    if (blank) {
        for (size_t k = 0; k < lines.size(); ++k) rv += (k ? "\n" + ind : "") + lines[k];
    } else {
        rv = lines.empty() ? "" : lines[0];
        for (size_t k = 1; k < lines.size(); ++k) rv += "\n" + (lines[k].empty() ? "" : ind + lines[k]);
    }
    if (first) rv = ind + rv;
    return rv;
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

value minmax(interpreter& in, value& v, call_args& a, bool want_max) {
    const bool cs = flag(a, 0, "case_sensitive", false);
    const value* attribute = arg(a, 1, "attribute");
    std::vector<value> items = items_of(v);
    if (items.empty()) return value::undef("No aggregated item, sequence was empty.");
    size_t best = 0;
    for (size_t k = 1; k < items.size(); ++k) {
        const value x = sort_key(attribute ? attr_of(in, items[k], *attribute) : items[k], cs);
        const value y = sort_key(attribute ? attr_of(in, items[best], *attribute) : items[best], cs);
        const int c = compare(x, y, want_max ? ">" : "<");
        if (want_max ? c > 0 : c < 0) best = k;
    }
    return items[best];
}

// Python's round(x, nd): the correctly rounded decimal of the exact binary value (half to even on exact ties),
// which is what printf's %.*f gives with glibc.
double py_round(double x, int64_t nd) {
    if (!std::isfinite(x)) return x;
    if (nd < 0) {
        const double p = std::pow(10.0, double(-nd));
        return std::nearbyint(x / p) * p;
    }
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", int(std::min<int64_t>(nd, 300)), x);
    return std::strtod(buf, nullptr);
}

const std::map<std::string, filter_fn>& filters() {
    static const std::map<std::string, filter_fn> f = {
        {"safe", [](interpreter&, value& v, call_args&) { return v; }},
        {"string", [](interpreter&, value& v, call_args&) { return value::string(to_str(v)); }},
        {"e", [](interpreter&, value& v, call_args&) { return value::string(html_escape(to_str(v))); }},
        {"escape", [](interpreter&, value& v, call_args&) { return value::string(html_escape(to_str(v))); }},
        {"forceescape", [](interpreter&, value& v, call_args&) { return value::string(html_escape(to_str(v))); }},
        {"upper", [](interpreter&, value& v, call_args&) { return value::string(ascii_upper(to_str(v))); }},
        {"lower", [](interpreter&, value& v, call_args&) { return value::string(ascii_lower(to_str(v))); }},
        {"capitalize", [](interpreter&, value& v, call_args&) { return value::string(py_capitalize(to_str(v))); }},
        {"title",
         [](interpreter&, value& v, call_args&) {
             // jinja2 do_title: split at runs of [-\s({[<], each part: first char upper, the rest lower.
             const std::string s = to_str(v);
             std::string out;
             bool start = true;
             for (char c : s) {
                 const bool delim = c == '-' || std::isspace((unsigned char)c) || c == '(' || c == '{' || c == '[' ||
                                    c == '<';
                 if (delim) {
                     out += c;
                     start = true;
                 } else {
                     out += start ? char(std::toupper((unsigned char)c)) : char(std::tolower((unsigned char)c));
                     start = false;
                 }
             }
             return value::string(out);
         }},
        {"trim", [](interpreter&, value& v,
                    call_args& a) { return value::string(py_strip(to_str(v), arg(a, 0, "chars"), true, true)); }},
        {"length",
         [](interpreter&, value& v, call_args&) {
             switch (v.k) {
             case kind::undefined: return value::integer(0);
             case kind::string: return value::integer(int64_t(utf8_length(v.s)));
             case kind::list:
                 if (v.generator) fail("object of type 'generator' has no len()");
                 return value::integer(int64_t(v.l->size()));
             case kind::dict: return value::integer(int64_t(v.d->items.size()));
             default: fail(std::string("object of type '") + type_name(v) + "' has no len()");
             }
         }},
        {"first",
         [](interpreter&, value& v, call_args&) {
             std::vector<value> items = items_of(v);
             if (items.empty()) return value::undef("No first item, sequence was empty.");
             return items.front();
         }},
        {"last",
         [](interpreter&, value& v, call_args&) {
             if (v.generator) fail("'generator' object is not reversible");
             std::vector<value> items = items_of(v);
             if (items.empty()) return value::undef("No last item, sequence was empty.");
             return items.back();
         }},
        {"join",
         [](interpreter& in, value& v, call_args& a) {
             const value* d = arg(a, 0, "d");
             const value* attribute = arg(a, 1, "attribute");
             const std::string sep = d ? to_str(*d) : "";
             std::string out;
             bool first = true;
             for (const value& x : items_of(v)) {
                 if (!first) out += sep;
                 first = false;
                 out += to_str(attribute ? attr_of(in, x, *attribute) : x);
                 in.check_size(out.size());
             }
             return value::string(std::move(out));
         }},
        {"default",
         [](interpreter&, value& v, call_args& a) {
             const value* d = arg(a, 0, "default_value");
             const bool boolean = flag(a, 1, "boolean", false);
             if (v.is_undefined() || (boolean && !truthy(v))) return d ? *d : value::string("");
             return v;
         }},
        {"replace",
         [](interpreter& in, value& v, call_args& a) {
             const value* old = arg(a, 0, "old");
             const value* rep = arg(a, 1, "new");
             const value* count = arg(a, 2, "count");
             if (!old || !rep) fail("replace needs old and new");
             std::string r = py_replace(to_str(v), to_str(*old), to_str(*rep),
                                        count && count->k != kind::none ? as_int(*count, "count") : -1);
             in.check_size(r.size());
             return value::string(std::move(r));
         }},
        {"tojson",
         [](interpreter& in, value& v, call_args& a) {
             // transformers: json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
             // sort_keys=sort_keys); json.dumps' default separators are (", ", ": "), or (",", ": ") with an indent.
             json_style st;
             const value* ea = arg(a, 0, "ensure_ascii");
             const value* indent = arg(a, 1, "indent");
             const value* seps = arg(a, 2, "separators");
             const value* sk = arg(a, 3, "sort_keys");
             st.ensure_ascii = ea && truthy(*ea);
             if (indent && indent->k != kind::none) {
                 st.has_indent = true;
                 if (indent->is_string()) st.indent = indent->s;
                 else st.indent = std::string(size_t(std::clamp<int64_t>(as_int(*indent, "indent"), 0, 64)), ' ');
                 st.item_sep = ",";
             }
             if (seps && seps->k != kind::none) {
                 if (seps->k != kind::list || seps->l->size() != 2 || !(*seps->l)[0].is_string() ||
                     !(*seps->l)[1].is_string())
                     fail("tojson separators must be a pair of strings");
                 st.item_sep = (*seps->l)[0].s;
                 st.key_sep = (*seps->l)[1].s;
             }
             st.sort_keys = sk && truthy(*sk);
             std::string s = to_json(v, st);
             in.check_size(s.size());
             return value::string(std::move(s));
         }},
        {"int",
         [](interpreter&, value& v, call_args& a) {
             const value* d = arg(a, 0, "default");
             const value def = d ? *d : value::integer(0);
             switch (v.k) {
             case kind::integer: return v;
             case kind::boolean: return value::integer(v.b);
             case kind::floating:
                 if (!std::isfinite(v.f)) return def;
                 return value::integer(int64_t(v.f));
             case kind::string: {
                 std::string s = py_strip(v.s, nullptr, true, true);
                 // Python's int() and float() take decimal text only (no hex floats as strtod would).
                 if (s.find_first_of("xXpP") != std::string::npos) return def;
                 std::string t;
                 for (char c : s)
                     if (c != '_') t += c;
                 try {
                     size_t used = 0;
                     const long long x = std::stoll(t, &used, 10);
                     if (used == t.size()) return value::integer(x);
                 } catch (const std::exception&) {
                 }
                 try {
                     size_t used = 0;
                     const double x = std::stod(t, &used);
                     if (used == t.size() && std::isfinite(x)) return value::integer(int64_t(x));
                 } catch (const std::exception&) {
                 }
                 return def;
             }
             default: return def;
             }
         }},
        {"float",
         [](interpreter&, value& v, call_args& a) {
             const value* d = arg(a, 0, "default");
             const value def = d ? *d : value::floating(0.0);
             if (v.is_number()) return value::floating(num(v));
             if (v.is_string()) {
                 try {
                     const std::string t = py_strip(v.s, nullptr, true, true);
                     if (t.find_first_of("xXpP") != std::string::npos) return def;
                     size_t used = 0;
                     const double x = std::stod(t, &used);
                     if (used == t.size()) return value::floating(x);
                 } catch (const std::exception&) {
                 }
             }
             return def;
         }},
        {"abs",
         [](interpreter&, value& v, call_args&) {
             if (v.k == kind::integer) return value::integer(v.i < 0 ? -v.i : v.i);
             if (v.k == kind::boolean) return value::integer(v.b);
             if (v.k == kind::floating) return value::floating(std::fabs(v.f));
             fail(std::string("bad operand type for abs(): '") + type_name(v) + "'");
         }},
        {"round",
         [](interpreter&, value& v, call_args& a) {
             const value* p = arg(a, 0, "precision");
             const value* m = arg(a, 1, "method");
             const int64_t prec = p ? as_int(*p, "precision") : 0;
             const std::string method = m ? to_str(*m) : "common";
             if (!v.is_number()) fail(std::string("round: a number is required, not '") + type_name(v) + "'");
             const double x = num(v), scale = std::pow(10.0, double(prec));
             if (method == "common") {
                 if (v.k != kind::floating) return value::integer(inum(v)); // round(int, n) → int
                 return value::floating(py_round(x, prec));
             }
             if (method == "ceil") return value::floating(std::ceil(x * scale) / scale);
             if (method == "floor") return value::floating(std::floor(x * scale) / scale);
             fail("method must be common, ceil or floor");
         }},
        {"list", [](interpreter&, value& v, call_args&) { return value::list(items_of(v)); }},
        {"items",
         [](interpreter&, value& v, call_args&) {
             if (v.is_undefined()) return gen({});
             if (v.k != kind::dict) fail(std::string("can only get item pairs from a mapping, not ") + type_name(v));
             std::vector<value> out;
             for (const auto& kv : v.d->items) {
                 value t = value::list({value::string(kv.first), kv.second});
                 t.tuple = true;
                 out.push_back(std::move(t));
             }
             return gen(std::move(out));
         }},
        {"dictsort",
         [](interpreter&, value& v, call_args& a) {
             if (v.k != kind::dict) fail(std::string("dictsort needs a mapping, not ") + type_name(v));
             const bool cs = flag(a, 0, "case_sensitive", false);
             const value* by = arg(a, 1, "by");
             const bool reverse = flag(a, 2, "reverse", false);
             const bool by_value = by && to_str(*by) == "value";
             if (by && !by_value && to_str(*by) != "key") fail("You can only sort by either \"key\" or \"value\"");
             std::vector<value> out;
             for (const auto& kv : v.d->items) {
                 value t = value::list({value::string(kv.first), kv.second});
                 t.tuple = true;
                 out.push_back(std::move(t));
             }
             std::stable_sort(out.begin(), out.end(), [&](const value& x, const value& y) {
                 const value kx = sort_key((*x.l)[by_value ? 1 : 0], cs), ky = sort_key((*y.l)[by_value ? 1 : 0], cs);
                 return reverse ? compare(ky, kx, "<") < 0 : compare(kx, ky, "<") < 0;
             });
             return value::list(std::move(out));
         }},
        {"sort",
         [](interpreter& in, value& v, call_args& a) {
             const bool reverse = flag(a, 0, "reverse", false);
             const bool cs = flag(a, 1, "case_sensitive", false);
             const value* attribute = arg(a, 2, "attribute");
             std::vector<value> items = items_of(v);
             std::vector<value> keys;
             for (const value& x : items) keys.push_back(sort_key(attribute ? attr_of(in, x, *attribute) : x, cs));
             std::vector<size_t> idx(items.size());
             for (size_t k = 0; k < idx.size(); ++k) idx[k] = k;
             std::stable_sort(idx.begin(), idx.end(), [&](size_t x, size_t y) {
                 return reverse ? compare(keys[y], keys[x], "<") < 0 : compare(keys[x], keys[y], "<") < 0;
             });
             std::vector<value> out;
             for (size_t k : idx) out.push_back(items[k]);
             return value::list(std::move(out));
         }},
        {"reverse",
         [](interpreter&, value& v, call_args&) {
             if (v.is_string()) {
                 const auto o = utf8_offsets(v.s);
                 std::string out;
                 for (size_t k = o.size() - 1; k > 0; --k) out.append(v.s, o[k - 1], o[k] - o[k - 1]);
                 return value::string(out);
             }
             std::vector<value> items = items_of(v);
             if (v.generator) fail("'generator' object is not reversible");
             std::reverse(items.begin(), items.end());
             return gen(std::move(items));
         }},
        {"unique",
         [](interpreter& in, value& v, call_args& a) {
             const bool cs = flag(a, 0, "case_sensitive", false);
             const value* attribute = arg(a, 1, "attribute");
             std::vector<value> seen, out;
             for (const value& x : items_of(v)) {
                 const value key = sort_key(attribute ? attr_of(in, x, *attribute) : x, cs);
                 if (std::any_of(seen.begin(), seen.end(), [&](const value& s) { return equals(s, key); })) continue;
                 seen.push_back(key);
                 out.push_back(x);
             }
             return gen(std::move(out));
         }},
        {"max", [](interpreter& in, value& v, call_args& a) { return minmax(in, v, a, true); }},
        {"min", [](interpreter& in, value& v, call_args& a) { return minmax(in, v, a, false); }},
        {"sum",
         [](interpreter& in, value& v, call_args& a) {
             const value* attribute = arg(a, 0, "attribute");
             const value* start = arg(a, 1, "start");
             value acc = start ? *start : value::integer(0);
             for (const value& x : items_of(v))
                 acc = binary_op(in, "+", acc, attribute ? attr_of(in, x, *attribute) : x);
             return acc;
         }},
        {"select", [](interpreter& in, value& v, call_args& a) { return select_or_reject(in, v, a, false, true); }},
        {"reject", [](interpreter& in, value& v, call_args& a) { return select_or_reject(in, v, a, false, false); }},
        {"selectattr", [](interpreter& in, value& v, call_args& a) { return select_or_reject(in, v, a, true, true); }},
        {"rejectattr", [](interpreter& in, value& v, call_args& a) { return select_or_reject(in, v, a, true, false); }},
        {"map",
         [](interpreter& in, value& v, call_args& a) {
             std::vector<value> out;
             if (a.pos.empty()) {
                 const value* attribute = a.kwarg("attribute");
                 if (!attribute) fail("map needs a filter name or attribute=");
                 const value* def = a.kwarg("default");
                 for (const value& x : items_of(v)) {
                     value r = attr_of(in, x, *attribute);
                     if (r.is_undefined() && def) r = *def;
                     out.push_back(std::move(r));
                 }
                 return gen(std::move(out));
             }
             if (!a.pos[0].is_string()) fail("map: the filter name must be a string");
             const std::string name = a.pos[0].s;
             if (!filter_exists(name)) fail("no filter named '" + name + "'");
             call_args rest;
             rest.pos.assign(a.pos.begin() + 1, a.pos.end());
             rest.kw = a.kw;
             for (value x : items_of(v)) {
                 call_args copy = rest;
                 out.push_back(run_filter(in, name, std::move(x), copy));
             }
             return gen(std::move(out));
         }},
        {"batch",
         [](interpreter&, value& v, call_args& a) {
             const value* n = arg(a, 0, "linecount");
             const value* fill = arg(a, 1, "fill_with");
             const int64_t count = n ? as_int(*n, "linecount") : 0;
             if (count <= 0) fail("batch: linecount must be positive");
             std::vector<value> out, cur;
             for (const value& x : items_of(v)) {
                 cur.push_back(x);
                 if (int64_t(cur.size()) == count) {
                     out.push_back(value::list(std::move(cur)));
                     cur.clear();
                 }
             }
             if (!cur.empty()) {
                 if (fill && fill->k != kind::none)
                     while (int64_t(cur.size()) < count) cur.push_back(*fill);
                 out.push_back(value::list(std::move(cur)));
             }
             return gen(std::move(out));
         }},
        {"wordcount",
         [](interpreter&, value& v, call_args&) {
             // len(re.findall(r"\w+", s)): runs of word characters (letters, digits, underscore, non-ASCII).
             const std::string s = to_str(v);
             int64_t n = 0;
             bool in_word = false;
             for (unsigned char c : s) {
                 const bool w = std::isalnum(c) || c == '_' || c >= 0x80;
                 if (w && !in_word) ++n;
                 in_word = w;
             }
             return value::integer(n);
         }},
        {"indent",
         [](interpreter&, value& v, call_args& a) {
             return value::string(do_indent(to_str(v), arg(a, 0, "width"), flag(a, 1, "first", false),
                                            flag(a, 2, "blank", false)));
         }},
        {"center",
         [](interpreter&, value& v, call_args& a) {
             const value* w = arg(a, 0, "width");
             const std::string s = to_str(v);
             const int64_t width = std::min<int64_t>(w ? as_int(*w, "width") : 80, 1 << 20);
             const int64_t len = int64_t(utf8_length(s));
             if (width <= len) return value::string(s);
             const int64_t marg = width - len, left = marg / 2 + (marg & width & 1);
             return value::string(std::string(size_t(left), ' ') + s + std::string(size_t(marg - left), ' '));
         }},
        {"format",
         [](interpreter& in, value& v, call_args& a) {
             if (!a.kw.empty()) fail("format filter: keyword arguments are not supported");
             return value::string(py_percent(in, to_str(v), a.pos));
         }},
        {"attr",
         [](interpreter& in, value& v, call_args& a) {
             if (a.pos.empty() || !a.pos[0].is_string()) fail("attr needs a name");
             if (v.k == kind::dict) {
                 value m = dict_method(v, a.pos[0].s);
                 if (!m.is_undefined() || !m.unsafe.empty()) return m;
                 return no_attribute(v, a.pos[0].s);
             }
             return get_attr(in, v, a.pos[0].s);
         }},
        {"pprint", [](interpreter&, value& v, call_args&) { return value::string(repr(v)); }},
    };
    return f;
}

} // namespace

bool filter_exists(const std::string& name) { return name == "d" || name == "count" || filters().count(name); }
bool test_exists(const std::string& name) { return tests().count(name) > 0; }

value run_filter(interpreter& in, const std::string& name, value operand, call_args& a) {
    const std::string& n = name == "d" ? std::string("default") : name == "count" ? std::string("length") : name;
    auto it = filters().find(n);
    if (it == filters().end()) fail("no filter named '" + name + "'");
    return it->second(in, operand, a);
}

bool run_test(interpreter& in, const std::string& name, const value& operand, call_args& a) {
    auto it = tests().find(name);
    if (it == tests().end()) fail("no test named '" + name + "'");
    return it->second(in, operand, a);
}

} // namespace qls::jinja
