// qls/json_input.h — the one entry point for parsing untrusted JSON (size and nesting limits, every failure a qls::error naming the file) and a bounded value printer for messages.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <iosfwd>
#include <string>
#include <string_view>

namespace qls {

struct json_limits {
    size_t max_bytes = size_t(64) << 20; // a larger document is refused before parsing
    int max_depth = 64;                  // arrays/objects nested deeper than this are refused while parsing
    bool unique_top_level_keys = false;  // refuse a top-level object that names a key twice (nlohmann keeps the last)
};

// The outcome of parsing without throwing: `ok`, or `problem` (one line, no file name) and, for syntax errors,
// `byte`, the 1-based offset nlohmann reports (0 when unknown).
struct json_parse_result {
    bool ok = false;
    nlohmann::json value;
    std::string problem;
    size_t byte = 0;
    bool syntax = false;       // a parse_error (the problem is nlohmann's what(), with its "line L, column C")
    std::string duplicate_key; // with unique_top_level_keys: the key named twice
};

// Parses one JSON document within `limits`. Never throws for bad input (depth, size, syntax, number overflow
// such as 1e999, invalid UTF-8): the result says what is wrong. The parser is iterative and the depth limit
// is enforced while parsing, so a value nested 100,000 deep costs nothing.
json_parse_result try_parse_json(std::string_view text, const json_limits& limits = {});
// The same for a stream (a whole file); max_bytes does not apply, and a NUL ends the input as nlohmann reads it.
json_parse_result try_parse_json(std::istream& in, const json_limits& limits = {});

// Parses one JSON document; any failure throws qls::error(format, "<source>: not valid JSON: <problem>", hint).
nlohmann::json parse_json_input(std::string_view text, const std::string& source, const std::string& hint,
                                const json_limits& limits = {});

// A JSON value shown for a message: at most `max_chars` characters (then "..."), containers shown to a small
// depth only ("[...]", "{...}" below it). Never recurses deeper than that, whatever the value.
std::string json_shown(const nlohmann::json& v, size_t max_chars = 60);

} // namespace qls
