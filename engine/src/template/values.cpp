// Jinja values with Python semantics: truthiness, str()/repr(), ==/ordering, float repr and json.dumps as
// CPython prints them (Objects/floatobject.c float_repr via PyOS_double_to_string 'r'; Lib/json/encoder.py).
#include "jinja_internal.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace qls::jinja {

void fail(std::string message) { throw runtime_failure{std::move(message), false}; }

const char* type_name(const value& v) {
    switch (v.k) {
    case kind::undefined: return "Undefined";
    case kind::none: return "NoneType";
    case kind::boolean: return "bool";
    case kind::integer: return "int";
    case kind::floating: return "float";
    case kind::string: return "str";
    case kind::list: return v.generator ? "generator" : v.tuple ? "tuple" : "list";
    case kind::dict: return "dict";
    case kind::callable: return "function";
    case kind::ns: return "Namespace";
    }
    return "object";
}

bool truthy(const value& v) {
    switch (v.k) {
    case kind::undefined:
    case kind::none: return false;
    case kind::boolean: return v.b;
    case kind::integer: return v.i != 0;
    case kind::floating: return v.f != 0;
    case kind::string: return !v.s.empty();
    case kind::list: return v.generator || !v.l->empty();
    case kind::dict: return !v.d->items.empty();
    case kind::callable:
    case kind::ns: return true;
    }
    return false;
}

size_t utf8_length(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

std::vector<size_t> utf8_offsets(const std::string& s) {
    std::vector<size_t> o;
    o.reserve(s.size() + 1);
    for (size_t i = 0; i < s.size(); ++i)
        if (((unsigned char)s[i] & 0xC0) != 0x80) o.push_back(i);
    o.push_back(s.size());
    return o;
}

namespace {

uint32_t decode_utf8(const std::string& s, size_t& i) {
    const unsigned char c = s[i];
    int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
    i += n;
    return cp;
}

void hex_escape(std::string& out, const char* prefix, uint32_t cp, int digits) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%s%0*x", prefix, digits, cp);
    out += buf;
}

// Python's str.isprintable() for the characters repr() keeps: controls, surrogates and the separators U+2028/2029
// and U+0085/U+00A0-adjacent control range are escaped. (A close approximation of unicodedata's Other/Separator
// categories: C0, DEL, C1, U+00AD, U+2028, U+2029, surrogates and noncharacters.)
bool printable(uint32_t cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || cp == 0xAD) return false;
    if (cp == 0x2028 || cp == 0x2029 || (cp >= 0xD800 && cp < 0xE000)) return false;
    if (cp >= 0x200B && cp <= 0x200F) return false;
    if (cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF) return false;
    return true;
}

std::string repr_string(const std::string& s) {
    const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
    const char q = has_single && !has_double ? '"' : '\'';
    std::string out(1, q);
    for (size_t i = 0; i < s.size();) {
        const size_t start = i;
        const uint32_t cp = decode_utf8(s, i);
        if (cp == uint32_t(q) || cp == '\\') {
            out += '\\';
            out += char(cp);
        } else if (cp == '\n') out += "\\n";
        else if (cp == '\r') out += "\\r";
        else if (cp == '\t') out += "\\t";
        else if (!printable(cp)) {
            if (cp < 0x100) hex_escape(out, "\\x", cp, 2);
            else if (cp < 0x10000) hex_escape(out, "\\u", cp, 4);
            else hex_escape(out, "\\U", cp, 8);
        } else out.append(s, start, i - start);
    }
    out += q;
    return out;
}

std::string json_string(const std::string& s, bool ensure_ascii) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = s[i];
        if (c < 0x80) {
            ++i;
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20 || (ensure_ascii && c == 0x7F)) hex_escape(out, "\\u", c, 4);
                else out += char(c);
            }
            continue;
        }
        const size_t start = i;
        const uint32_t cp = decode_utf8(s, i);
        if (!ensure_ascii) {
            out.append(s, start, i - start);
        } else if (cp < 0x10000) {
            hex_escape(out, "\\u", cp, 4);
        } else {
            const uint32_t v = cp - 0x10000;
            hex_escape(out, "\\u", 0xD800 + (v >> 10), 4);
            hex_escape(out, "\\u", 0xDC00 + (v & 0x3FF), 4);
        }
    }
    out += '"';
    return out;
}

void json_into(std::string& out, const value& v, const json_style& st, int level) {
    const auto newline = [&](int lv) {
        out += '\n';
        for (int k = 0; k < lv; ++k) out += st.indent;
    };
    switch (v.k) {
    case kind::none: out += "null"; return;
    case kind::boolean: out += v.b ? "true" : "false"; return;
    case kind::integer: out += std::to_string(v.i); return;
    case kind::floating:
        if (std::isnan(v.f)) out += "NaN";
        else if (std::isinf(v.f)) out += v.f > 0 ? "Infinity" : "-Infinity";
        else out += python_float_repr(v.f);
        return;
    case kind::string: out += json_string(v.s, st.ensure_ascii); return;
    case kind::list: {
        if (v.generator) fail("Object of type generator is not JSON serializable");
        if (v.l->empty()) {
            out += "[]";
            return;
        }
        if (level > 200) fail("tojson: nesting deeper than 200 levels");
        out += '[';
        bool first = true;
        for (const value& x : *v.l) {
            if (!first) out += st.item_sep;
            first = false;
            if (st.has_indent) newline(level + 1);
            json_into(out, x, st, level + 1);
        }
        if (st.has_indent) newline(level);
        out += ']';
        return;
    }
    case kind::dict: {
        if (v.d->items.empty()) {
            out += "{}";
            return;
        }
        if (level > 200) fail("tojson: nesting deeper than 200 levels");
        std::vector<const std::pair<std::string, value>*> items;
        for (const auto& kv : v.d->items) items.push_back(&kv);
        if (st.sort_keys)
            std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
        out += '{';
        bool first = true;
        for (const auto* kv : items) {
            if (!first) out += st.item_sep;
            first = false;
            if (st.has_indent) newline(level + 1);
            out += json_string(kv->first, st.ensure_ascii);
            out += st.key_sep;
            json_into(out, kv->second, st, level + 1);
        }
        if (st.has_indent) newline(level);
        out += '}';
        return;
    }
    default: fail(std::string("Object of type ") + type_name(v) + " is not JSON serializable");
    }
}

void repr_into(std::string& out, const value& v, int level) {
    if (level > 200) fail("repr: nesting deeper than 200 levels");
    switch (v.k) {
    case kind::string: out += repr_string(v.s); return;
    case kind::list: {
        if (v.generator) {
            out += "<generator object>";
            return;
        }
        out += v.tuple ? '(' : '[';
        bool first = true;
        for (const value& x : *v.l) {
            if (!first) out += ", ";
            first = false;
            repr_into(out, x, level + 1);
        }
        if (v.tuple && v.l->size() == 1) out += ',';
        out += v.tuple ? ')' : ']';
        return;
    }
    case kind::dict: {
        out += '{';
        bool first = true;
        for (const auto& kv : v.d->items) {
            if (!first) out += ", ";
            first = false;
            out += repr_string(kv.first);
            out += ": ";
            repr_into(out, kv.second, level + 1);
        }
        out += '}';
        return;
    }
    case kind::ns: {
        out += "<Namespace {";
        bool first = true;
        for (const auto& kv : v.d->items) {
            if (!first) out += ", ";
            first = false;
            out += repr_string(kv.first) + ": ";
            repr_into(out, kv.second, level + 1);
        }
        out += "}>";
        return;
    }
    case kind::undefined: out += "Undefined"; return;
    default: out += to_str(v); return;
    }
}

} // namespace

std::string python_float_repr(double x) {
    if (std::isnan(x)) return "nan";
    if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
    if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
    // Shortest round-trip digits (as David Gay's mode 0, which CPython uses), then CPython's layout: exponent form
    // when the decimal exponent is < -4 or >= 16, else positional with at least one digit after the point.
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
    std::string sci(buf, r.ptr);
    const size_t e = sci.find('e');
    std::string mant = sci.substr(0, e);
    const int exp10 = std::stoi(sci.substr(e + 1));
    std::string sign;
    if (mant[0] == '-') {
        sign = "-";
        mant.erase(0, 1);
    }
    std::string digits;
    for (char c : mant)
        if (c != '.') digits += c;
    const int decpt = exp10 + 1; // value = 0.digits × 10^decpt
    if (decpt > 16 || decpt < -3) {
        std::string out = sign + digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        char eb[16];
        std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
        return out + eb;
    }
    std::string out = sign;
    if (decpt <= 0) {
        out += "0." + std::string(size_t(-decpt), '0') + digits;
    } else if (size_t(decpt) >= digits.size()) {
        out += digits + std::string(size_t(decpt) - digits.size(), '0') + ".0";
    } else {
        out += digits.substr(0, size_t(decpt)) + "." + digits.substr(size_t(decpt));
    }
    return out;
}

std::string to_str(const value& v) {
    switch (v.k) {
    case kind::undefined: return "";
    case kind::none: return "None";
    case kind::boolean: return v.b ? "True" : "False";
    case kind::integer: return std::to_string(v.i);
    case kind::floating: return python_float_repr(v.f);
    case kind::string: return v.s;
    case kind::callable: return "<function " + v.fn->name + ">";
    default: {
        std::string out;
        repr_into(out, v, 0);
        return out;
    }
    }
}

std::string repr(const value& v) {
    std::string out;
    repr_into(out, v, 0);
    return out;
}

std::string to_json(const value& v, const json_style& style) {
    std::string out;
    json_into(out, v, style, 0);
    return out;
}

namespace {
double as_double(const value& v) {
    return v.k == kind::floating ? v.f : v.k == kind::integer ? double(v.i) : double(v.b);
}
} // namespace

bool equals(const value& a, const value& b) {
    if (a.is_number() && b.is_number()) {
        if (a.k != kind::floating && b.k != kind::floating)
            return (a.k == kind::integer ? a.i : int64_t(a.b)) == (b.k == kind::integer ? b.i : int64_t(b.b));
        return as_double(a) == as_double(b);
    }
    if (a.k != b.k) return false;
    switch (a.k) {
    case kind::undefined:
    case kind::none: return true;
    case kind::string: return a.s == b.s;
    case kind::list: {
        if (a.tuple != b.tuple || a.generator || b.generator) return a.l == b.l;
        if (a.l->size() != b.l->size()) return false;
        for (size_t k = 0; k < a.l->size(); ++k)
            if (!equals((*a.l)[k], (*b.l)[k])) return false;
        return true;
    }
    case kind::dict: {
        if (a.d->items.size() != b.d->items.size()) return false;
        for (const auto& kv : a.d->items) {
            const value* o = b.d->find(kv.first);
            if (!o || !equals(kv.second, *o)) return false;
        }
        return true;
    }
    case kind::callable: return a.fn == b.fn;
    case kind::ns: return a.d == b.d;
    default: return false;
    }
}

int compare(const value& a, const value& b, const char* op) {
    if (a.is_number() && b.is_number()) {
        if (a.k != kind::floating && b.k != kind::floating) {
            const int64_t x = a.k == kind::integer ? a.i : a.b, y = b.k == kind::integer ? b.i : b.b;
            return x < y ? -1 : x > y ? 1 : 0;
        }
        const double x = as_double(a), y = as_double(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.k == kind::string && b.k == kind::string) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0; // UTF-8 = code points
    if (a.k == kind::list && b.k == kind::list && a.tuple == b.tuple && !a.generator && !b.generator) {
        for (size_t k = 0; k < a.l->size() && k < b.l->size(); ++k) {
            if (equals((*a.l)[k], (*b.l)[k])) continue;
            return compare((*a.l)[k], (*b.l)[k], op);
        }
        return a.l->size() < b.l->size() ? -1 : a.l->size() > b.l->size() ? 1 : 0;
    }
    if (a.is_undefined() || b.is_undefined()) fail(a.is_undefined() ? a.s : b.s);
    fail(std::string("'") + op + "' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) +
         "'");
}

value from_json(const nlohmann::ordered_json& j) {
    switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return value::none();
    case nlohmann::ordered_json::value_t::boolean: return value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
        const uint64_t u = j.get<uint64_t>();
        if (u > uint64_t(INT64_MAX)) return value::floating(double(u));
        return value::integer(int64_t(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return value::floating(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
        std::vector<value> items;
        items.reserve(j.size());
        for (const auto& x : j) items.push_back(from_json(x));
        return value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
        value d = value::dict();
        for (auto it = j.begin(); it != j.end(); ++it) d.d->items.emplace_back(it.key(), from_json(it.value()));
        return d;
    }
    default: return value::none();
    }
}

std::vector<value> iterate(const value& v) {
    switch (v.k) {
    case kind::undefined: return {};
    case kind::list: return *v.l;
    case kind::dict: {
        std::vector<value> keys;
        keys.reserve(v.d->items.size());
        for (const auto& kv : v.d->items) keys.push_back(value::string(kv.first));
        return keys;
    }
    case kind::string: {
        std::vector<value> chars;
        const auto o = utf8_offsets(v.s);
        for (size_t k = 0; k + 1 < o.size(); ++k) chars.push_back(value::string(v.s.substr(o[k], o[k + 1] - o[k])));
        return chars;
    }
    default: fail(std::string("'") + type_name(v) + "' object is not iterable");
    }
}

bool parse_decimal_int(const std::string& digits, int64_t& out) {
    if (digits.empty()) return false;
    const char* end = digits.data() + digits.size();
    const auto [p, ec] = std::from_chars(digits.data(), end, out, 10);
    return ec == std::errc() && p == end && digits[0] != '-';
}

} // namespace qls::jinja
