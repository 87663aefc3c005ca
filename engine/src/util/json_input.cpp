// The one JSON entry point for untrusted documents (limits enforced during parsing) and the bounded value printer.
#include "qls/json_input.h"

#include "qls/error.h"

#include <istream>
#include <set>

namespace qls {

namespace {

using json = nlohmann::json;

struct too_deep {};
struct duplicate_key {
    std::string key;
};

// nlohmann's "[json.exception.out_of_range.406] number overflow ..." → "number overflow ...".
std::string without_prefix(const std::string& what) {
    if (what.rfind("[json.exception.", 0) == 0) {
        const size_t close = what.find("] ");
        if (close != std::string::npos) return what.substr(close + 2);
    }
    return what;
}

constexpr int k_shown_depth = 3;

void shown_into(const json& v, std::string& out, size_t max_chars, int depth) {
    if (out.size() > max_chars) return;
    switch (v.type()) {
    case json::value_t::array: {
        if (v.empty()) {
            out += "[]";
            return;
        }
        if (depth >= k_shown_depth) {
            out += "[...]";
            return;
        }
        out += '[';
        bool first = true;
        for (const json& e : v) {
            if (out.size() > max_chars) return;
            if (!first) out += ',';
            first = false;
            shown_into(e, out, max_chars, depth + 1);
        }
        out += ']';
        return;
    }
    case json::value_t::object: {
        if (v.empty()) {
            out += "{}";
            return;
        }
        if (depth >= k_shown_depth) {
            out += "{...}";
            return;
        }
        out += '{';
        bool first = true;
        for (auto it = v.begin(); it != v.end(); ++it) {
            if (out.size() > max_chars) return;
            if (!first) out += ',';
            first = false;
            shown_into(json(it.key().substr(0, max_chars + 1)), out, max_chars, depth + 1);
            out += ':';
            shown_into(it.value(), out, max_chars, depth + 1);
        }
        out += '}';
        return;
    }
    case json::value_t::string: {
        const std::string& s = v.get_ref<const std::string&>();
        // Only the part that can be shown is escaped; a cut UTF-8 sequence is replaced, not an error.
        const json part = s.size() > max_chars + 1 ? json(s.substr(0, max_chars + 1)) : v;
        out += part.dump(-1, ' ', false, json::error_handler_t::replace);
        return;
    }
    default: out += v.dump(-1, ' ', false, json::error_handler_t::replace); return;
    }
}

// Parses `input` (iterators or a stream) with the depth and key limits enforced by the parser callback.
template <class... Input> json_parse_result parse_limited(const json_limits& limits, Input&&... input) {
    json_parse_result r;
    const int max_depth = limits.max_depth;
    std::set<std::string> top_keys;
    // depth is the number of enclosing containers when an object or array starts (0 for the top level), and 1
    // for the keys of the top-level object.
    const json::parser_callback_t limit = [&](int depth, json::parse_event_t ev, json& parsed) {
        if ((ev == json::parse_event_t::object_start || ev == json::parse_event_t::array_start) && depth >= max_depth)
            throw too_deep{};
        if (limits.unique_top_level_keys && ev == json::parse_event_t::key && depth == 1) {
            const auto& k = parsed.get_ref<const std::string&>();
            if (!top_keys.insert(k).second) throw duplicate_key{k};
        }
        return true;
    };
    try {
        r.value = json::parse(std::forward<Input>(input)..., limit);
        r.ok = true;
    } catch (const too_deep&) {
        r.problem = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
    } catch (const duplicate_key& d) {
        r.duplicate_key = d.key;
        r.problem = "the key '" + (d.key.size() > 200 ? d.key.substr(0, 197) + "..." : d.key) +
                    "' appears more than once";
    } catch (const json::parse_error& e) {
        r.problem = e.what();
        r.byte = e.byte;
        r.syntax = true;
    } catch (const json::exception& e) { // out_of_range (number overflow: 1e999), type_error, ...
        r.problem = without_prefix(e.what());
    } catch (const std::bad_alloc&) {
        r.problem = "out of memory while parsing";
    }
    if (!r.ok) r.value = json();
    return r;
}

} // namespace

json_parse_result try_parse_json(std::string_view text, const json_limits& limits) {
    if (text.size() > limits.max_bytes) {
        json_parse_result r;
        r.problem = "the document is " + std::to_string(text.size()) + " bytes, more than the " +
                    std::to_string(limits.max_bytes) + "-byte limit";
        return r;
    }
    // JSON text never holds a raw NUL (inside strings it must be escaped), but nlohmann's lexer takes one for the
    // end of the input: "{...}\0junk" would parse as "{...}". Refused here for every document.
    if (const size_t nul = text.find('\0'); nul != std::string_view::npos) {
        json_parse_result r;
        r.problem = "a NUL byte at byte " + std::to_string(nul + 1) + " (JSON text cannot contain one)";
        r.byte = nul + 1;
        return r;
    }
    return parse_limited(limits, text.begin(), text.end());
}

json_parse_result try_parse_json(std::istream& in, const json_limits& limits) { return parse_limited(limits, in); }

json parse_json_input(std::string_view text, const std::string& source, const std::string& hint,
                      const json_limits& limits) {
    json_parse_result r = try_parse_json(text, limits);
    if (!r.ok) throw error(error_code::format, source + ": not valid JSON: " + r.problem, hint);
    return std::move(r.value);
}

std::string json_shown(const json& v, size_t max_chars) {
    std::string out;
    shown_into(v, out, max_chars, 0);
    if (out.size() > max_chars) out = out.substr(0, max_chars > 3 ? max_chars - 3 : 0) + "...";
    return out;
}

} // namespace qls
