// Dataset file reading: format names, content-based format detection, and parsing of Alpaca / chat (OpenAI
// messages, ShareGPT conversations) / text JSONL, JSON arrays and plain text into data_record, with every bad
// record reported as "file:line: problem".
#include "qls/dataset.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/json_input.h"

#include "data/data_internal.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

namespace qls {

using nlohmann::json;

const char* dataset_format_name(dataset_format f) {
    switch (f) {
    case dataset_format::auto_detect: return "auto";
    case dataset_format::alpaca: return "alpaca";
    case dataset_format::chat_messages: return "messages";
    case dataset_format::chat_sharegpt: return "sharegpt";
    case dataset_format::text_jsonl: return "text";
    case dataset_format::plain_text: return "plain";
    }
    return "unknown";
}

dataset_format parse_dataset_format(const std::string& name) {
    for (dataset_format f : {dataset_format::auto_detect, dataset_format::alpaca, dataset_format::chat_messages,
                             dataset_format::chat_sharegpt, dataset_format::text_jsonl, dataset_format::plain_text})
        if (name == dataset_format_name(f)) return f;
    throw error(error_code::invalid_argument, "unknown dataset format \"" + name + "\"",
                "use one of auto, alpaca, messages, sharegpt, text, plain");
}

const char* chat_role_name(chat_role r) {
    switch (r) {
    case chat_role::system: return "system";
    case chat_role::user: return "user";
    case chat_role::assistant: return "assistant";
    }
    return "unknown";
}

namespace {

constexpr int k_max_json_depth = 64;    // our records need 3 levels; deeper input is rejected while parsing
constexpr size_t k_detect_lines = 1000; // JSONL lines examined by format detection

const char* k_any_format_hint =
    "a dataset is an Alpaca JSON/JSONL file (instruction, input, output), chat JSONL (\"messages\" with role/content "
    "or ShareGPT \"conversations\" with from/value), JSONL with a \"text\" field, or plain text (documents separated "
    "by blank lines)";

std::string where(const std::string& path, size_t line) { return path + ":" + std::to_string(line); }

// Existence, kind and size checks shared by every reader; returns the size.
uintmax_t check_file(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const auto st = fs::status(path, ec);
    if (ec || !fs::exists(st))
        throw error(error_code::io, "dataset file " + path + " not found", "check the path of the dataset file");
    if (fs::is_directory(st))
        throw error(error_code::io, "dataset path " + path + " is a directory, not a file",
                    "choose the dataset file inside the directory");
    const uintmax_t size = fs::file_size(path, ec);
    if (ec) throw error(error_code::io, "cannot read the size of dataset file " + path, "check the file's permissions");
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw error(error_code::io, "cannot open dataset file " + path, "check the file's permissions");
    return size;
}

[[noreturn]] void throw_empty(const std::string& path) {
    throw error(error_code::format, "dataset file " + path + " is empty", k_any_format_hint);
}

// Reads a file line by line in 64 KiB chunks. A line longer than `limit` is not stored (only its length is
// counted), so a 10 MB line costs no more memory than the limit.
class line_reader {
public:
    line_reader(const std::string& path, size_t limit) : in_(path, std::ios::binary), limit_(limit), buf_(1 << 16) {
        if (!in_) throw error(error_code::io, "cannot open dataset file " + path, "check the file's permissions");
    }

    struct line_info {
        size_t number = 0;     // 1-based
        size_t length = 0;     // bytes, without the newline
        bool too_long = false; // text is empty then
    };

    // The next line without its "\n" (and "\r"); false at the end of the file.
    bool next(std::string& text, line_info& info) {
        text.clear();
        info = {};
        bool any = false;
        for (;;) {
            if (pos_ == end_ && !fill()) {
                if (!any) return false;
                break;
            }
            any = true;
            const char* start = buf_.data() + pos_;
            const void* nl = std::memchr(start, '\n', end_ - pos_);
            const size_t n = nl ? size_t(static_cast<const char*>(nl) - start) : end_ - pos_;
            info.length += n;
            if (!info.too_long) {
                if (text.size() + n > limit_) {
                    info.too_long = true;
                    std::string().swap(text);
                } else {
                    text.append(start, n);
                }
            }
            pos_ += n;
            if (nl) {
                ++pos_;
                break;
            }
        }
        info.number = ++line_;
        if (!info.too_long && !text.empty() && text.back() == '\r') text.pop_back();
        if (info.number == 1 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3); // UTF-8 byte order mark
        return true;
    }

private:
    bool fill() {
        if (!in_) return false;
        in_.read(buf_.data(), std::streamsize(buf_.size()));
        pos_ = 0;
        end_ = size_t(in_.gcount());
        return end_ > 0;
    }
    std::ifstream in_;
    size_t limit_;
    std::vector<char> buf_;
    size_t pos_ = 0, end_ = 0, line_ = 0;
};

bool is_blank(std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; });
}

std::string trim(std::string_view s) {
    const char* ws = " \t\r\n\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    const size_t e = s.find_last_not_of(ws);
    return std::string(s.substr(b, e - b + 1));
}

// A record's text parsed as JSON, or the problem. `line` is where the text starts; a parse error inside a
// multi-line array element is reported at its own line.
struct parsed_json {
    std::optional<json> value;
    std::string problem;
    size_t line = 0;
};

parsed_json parse_json_text(std::string_view text, size_t line, size_t first_column = 1) {
    parsed_json r;
    r.line = line;
    const size_t bad = data::invalid_utf8_offset(text);
    if (bad != std::string_view::npos) {
        r.problem = "invalid UTF-8 at byte " + std::to_string(bad + 1) + " of the record";
        return r;
    }
    // The one JSON entry point (qls/json_input.h): depth limited while parsing, and every nlohmann failure
    // (syntax, number overflow such as 1e999, ...) comes back as a problem, so the record counts as malformed.
    json_limits limits;
    limits.max_bytes = text.size(); // the line reader already bounds a record's size
    limits.max_depth = k_max_json_depth;
    json_parse_result parsed = try_parse_json(text, limits);
    if (parsed.ok) {
        r.value = std::move(parsed.value);
    } else if (!parsed.syntax) {
        r.problem = parsed.problem.find("nested deeper") != std::string::npos ? parsed.problem
                                                                              : "invalid JSON: " + parsed.problem;
    } else {
        // parsed.problem: "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ... "
        std::string detail = parsed.problem;
        const size_t p = detail.find("column ");
        if (p != std::string::npos) {
            const size_t colon = detail.find(": ", p);
            if (colon != std::string::npos) detail = detail.substr(colon + 2);
        }
        const size_t upto = std::min<size_t>(parsed.byte > 0 ? parsed.byte - 1 : 0, text.size());
        const size_t nl_before = size_t(std::count(text.begin(), text.begin() + std::ptrdiff_t(upto), '\n'));
        r.line = line + nl_before;
        const size_t last_nl = text.rfind('\n', upto > 0 ? upto - 1 : 0);
        const size_t column = nl_before == 0 || last_nl == std::string_view::npos ? first_column + upto
                                                                                  : upto - last_nl;
        r.problem = "invalid JSON at column " + std::to_string(column) + ": " + detail;
    }
    return r;
}

// The format an object's fields identify, or auto_detect when none.
dataset_format classify(const json& j) {
    if (!j.is_object()) return dataset_format::auto_detect;
    if (j.contains("messages")) return dataset_format::chat_messages;
    if (j.contains("conversations")) return dataset_format::chat_sharegpt;
    if (j.contains("instruction") || j.contains("output")) return dataset_format::alpaca;
    if (j.contains("text")) return dataset_format::text_jsonl;
    return dataset_format::auto_detect;
}

std::string json_type(const json& j) { return j.type_name(); }

bool blank_string(const std::string& s) { return trim(s).empty(); }

// Reads obj[key] as a string. Returns the problem, or "" on success. Absent and null count as missing.
std::string string_field(const json& obj, const char* key, bool required, std::string& out,
                         const std::string& what = {}) {
    const std::string name = (what.empty() ? std::string() : what + " ") + "field \"" + key + "\"";
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
        if (required)
            return (what.empty() ? std::string("the record") : what) + " is missing the field \"" + key + "\"";
        out.clear();
        return {};
    }
    if (!it->is_string()) return name + " must be a string, got " + json_type(*it);
    out = it->get<std::string>();
    if (required && blank_string(out)) return name + " is empty";
    return {};
}

const char* format_hint(dataset_format f) {
    switch (f) {
    case dataset_format::alpaca:
        return "each Alpaca record is an object with non-empty \"instruction\" and \"output\" strings and an optional "
               "\"input\" string";
    case dataset_format::chat_messages:
        return "each record is {\"messages\": [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": \"...\"}, ...]}: "
               "an optional system message first, then user and assistant turns alternating, ending with an "
               "assistant turn";
    case dataset_format::chat_sharegpt:
        return "each record is {\"conversations\": [{\"from\": \"system\"|\"human\"|\"gpt\", \"value\": \"...\"}, ...]}: "
               "an optional system turn first, then human and gpt turns alternating, ending with a gpt turn";
    case dataset_format::text_jsonl: return "each record is an object with a non-empty \"text\" string";
    default: return k_any_format_hint;
    }
}

// Checks the turn order: [system], user, assistant, user, assistant, ..., ending with assistant.
std::string check_conversation(const std::vector<chat_message>& m, const char* user_name, const char* assistant_name) {
    size_t first = 0;
    if (!m.empty() && m[0].role == chat_role::system) first = 1;
    if (first == m.size()) return "the conversation has no user or assistant turn";
    for (size_t k = first; k < m.size(); ++k) {
        const chat_role expected = (k - first) % 2 == 0 ? chat_role::user : chat_role::assistant;
        if (m[k].role == expected) continue;
        if (m[k].role == chat_role::system)
            return "turn " + std::to_string(k + 1) + " is a system turn; a system turn is only allowed first";
        return "turn " + std::to_string(k + 1) + " is a" +
               (m[k].role == chat_role::user ? std::string(" ") + user_name : std::string("n ") + assistant_name) +
               " turn where a" +
               (expected == chat_role::user ? std::string(" ") + user_name : std::string("n ") + assistant_name) +
               " turn was expected (turns must alternate, starting with " + user_name + ")";
    }
    if (m.back().role != chat_role::assistant)
        return std::string("the conversation does not end with an ") + assistant_name + " turn (nothing to train on)";
    return {};
}

// Converts one JSON value to a record of format f. Returns the problem, or "" on success.
std::string to_record(const json& j, dataset_format f, data_record& r) {
    if (!j.is_object()) return "expected a JSON object, got " + json_type(j);
    switch (f) {
    case dataset_format::alpaca: {
        r.type = data_record::kind::instruction;
        if (auto p = string_field(j, "instruction", true, r.instruction); !p.empty()) return p;
        if (auto p = string_field(j, "input", false, r.input); !p.empty()) return p;
        if (auto p = string_field(j, "output", true, r.output); !p.empty()) return p;
        if (blank_string(r.input)) r.input.clear();
        return {};
    }
    case dataset_format::text_jsonl: {
        r.type = data_record::kind::text;
        return string_field(j, "text", true, r.text);
    }
    case dataset_format::chat_messages:
    case dataset_format::chat_sharegpt: {
        const bool openai = f == dataset_format::chat_messages;
        const char* list_key = openai ? "messages" : "conversations";
        const char* role_key = openai ? "role" : "from";
        const char* content_key = openai ? "content" : "value";
        r.type = data_record::kind::chat;
        auto it = j.find(list_key);
        if (it == j.end() || it->is_null()) return std::string("the record is missing the field \"") + list_key + "\"";
        if (!it->is_array()) return std::string("field \"") + list_key + "\" must be an array, got " + json_type(*it);
        if (it->empty()) return std::string("field \"") + list_key + "\" is an empty array";
        r.messages.clear();
        r.messages.reserve(it->size());
        size_t k = 0;
        for (const json& m : *it) {
            ++k;
            const std::string turn = "turn " + std::to_string(k);
            if (!m.is_object()) return turn + " must be an object, got " + json_type(m);
            std::string role, content;
            if (auto p = string_field(m, role_key, true, role, turn); !p.empty()) return p;
            chat_message msg;
            if (role == "system") msg.role = chat_role::system;
            else if (openai ? role == "user" : (role == "human" || role == "user")) msg.role = chat_role::user;
            else if (openai ? role == "assistant" : (role == "gpt" || role == "assistant"))
                msg.role = chat_role::assistant;
            else
                return turn + " has the unknown " + role_key + " \"" + role + "\" (expected " +
                       (openai ? "system, user or assistant)" : "system, human or gpt)");
            auto c = m.find(content_key);
            if (openai && c != m.end() && c->is_array())
                return turn + " has an array of content parts; only a string \"content\" is supported";
            if (auto p = string_field(m, content_key, true, content, turn); !p.empty()) return p;
            msg.content = std::move(content);
            r.messages.push_back(std::move(msg));
        }
        return check_conversation(r.messages, openai ? "user" : "human", openai ? "assistant" : "gpt");
    }
    default: break;
    }
    return "internal: no JSON reader for format " + std::string(dataset_format_name(f));
}

// ---- JSON arrays ---------------------------------------------------------------------------------------------

std::string read_whole(const std::string& path) {
    std::string s = read_file_text(path, "check the dataset file's permissions");
    if (s.compare(0, 3, "\xEF\xBB\xBF") == 0) s.erase(0, 3);
    return s;
}

// Splits the top-level JSON array of `text` into element texts by scanning brackets and strings (each element is
// then parsed on its own, so a bad element is reported at its line and the rest still load).
struct array_element {
    std::string_view text;
    size_t line = 0;     // where it starts
    size_t column = 1;   // 1-based column of its first byte
    std::string problem; // structural problem (unterminated...), the text is not parsed then
};

class array_scanner {
public:
    explicit array_scanner(std::string_view s) : s_(s) {
        skip_ws();
        QLS_ASSERT(pos_ < s_.size() && s_[pos_] == '[');
        ++pos_;
    }

    // The next element; false when the array (and the file) is done. Trailing text after ']' and a missing ']'
    // come back as elements with a problem.
    bool next(array_element& e) {
        e = {};
        if (done_) return false;
        skip_ws();
        if (closed_) {
            done_ = true;
            if (pos_ < s_.size()) {
                e.line = line_;
                e.problem = "unexpected text after the closing ']' of the JSON array";
                return true;
            }
            return false;
        }
        if (pos_ >= s_.size()) {
            done_ = true;
            e.line = line_;
            e.problem = "the JSON array is not closed (missing ']' at the end of the file)";
            return true;
        }
        if (s_[pos_] == ']' && count_ == 0) {
            ++pos_;
            closed_ = true;
            return next(e);
        }
        const size_t begin = pos_, begin_line = line_;
        const size_t line_start = s_.rfind('\n', begin == 0 ? 0 : begin - 1);
        e.column = line_start == std::string_view::npos || begin == 0 ? begin + 1 : begin - line_start;
        int depth = 0;
        bool in_string = false, escaped = false;
        for (; pos_ < s_.size(); ++pos_) {
            const char c = s_[pos_];
            if (c == '\n') ++line_;
            if (in_string) {
                if (escaped) escaped = false;
                else if (c == '\\') escaped = true;
                else if (c == '"') in_string = false;
                continue;
            }
            if (c == '"') in_string = true;
            else if (c == '{' || c == '[') ++depth;
            else if ((c == '}' || c == ']') && depth > 0) --depth;
            else if (depth == 0 && (c == ',' || c == ']')) break;
        }
        ++count_;
        e.line = begin_line;
        std::string_view raw = s_.substr(begin, pos_ - begin);
        while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' || raw.back() == '\t'))
            raw.remove_suffix(1);
        e.text = raw;
        if (pos_ >= s_.size()) {
            done_ = true;
            e.problem = depth > 0 || in_string ? "the JSON array ends inside this element (a '}' or '\"' is missing)"
                                               : "the JSON array is not closed (missing ']' at the end of the file)";
            return true;
        }
        if (s_[pos_] == ']') closed_ = true;
        ++pos_; // past ',' or ']'
        if (raw.empty()) e.problem = "empty element in the JSON array (two commas in a row or a trailing comma)";
        return true;
    }

private:
    void skip_ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n')) {
            if (s_[pos_] == '\n') ++line_;
            ++pos_;
        }
    }
    std::string_view s_;
    size_t pos_ = 0, line_ = 1, count_ = 0;
    bool closed_ = false, done_ = false;
};

// The first non-whitespace byte of the file (after a UTF-8 BOM), or -1 when there is none.
int first_byte(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char buf[4096];
    bool first_chunk = true;
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        size_t n = size_t(in.gcount()), i = 0;
        if (first_chunk && n >= 3 && std::memcmp(buf, "\xEF\xBB\xBF", 3) == 0) i = 3;
        first_chunk = false;
        for (; i < n; ++i)
            // JSON's whitespace only (RFC 8259 §2), as array_scanner skips it; a NUL is a byte like any other
            if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\r' && buf[i] != '\n')
                return static_cast<unsigned char>(buf[i]);
    }
    return -1;
}

bool has_extension(const std::string& path, std::initializer_list<const char*> exts) {
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    for (const char* e : exts)
        if (ext == e) return true;
    return false;
}

[[noreturn]] void throw_unknown_json(const std::string& path, const std::string& why) {
    throw error(error_code::format, "cannot tell the format of dataset file " + path + ": " + why,
                std::string(k_any_format_hint) + "; or choose the format explicitly");
}

// Detection on array content already in memory.
dataset_format detect_array(const std::string& path, std::string_view content, size_t max_record_bytes) {
    array_scanner sc(content);
    array_element e;
    std::string first_problem;
    bool any_json = false;
    size_t seen = 0;
    while (seen < k_detect_lines && sc.next(e)) {
        ++seen;
        if (!e.problem.empty() || e.text.size() > max_record_bytes) continue;
        parsed_json p = parse_json_text(e.text, e.line, e.column);
        if (!p.value) {
            if (first_problem.empty()) first_problem = where(path, p.line) + ": " + p.problem;
            continue;
        }
        any_json = true;
        const dataset_format f = classify(*p.value);
        if (f != dataset_format::auto_detect) return f;
    }
    if (seen == 0)
        throw error(error_code::format, "dataset file " + path + " is an empty JSON array", k_any_format_hint);
    if (!any_json && !has_extension(path, {".json", ".jsonl"})) return dataset_format::plain_text;
    throw_unknown_json(path, any_json ? "its records have none of the fields instruction/output, messages, "
                                        "conversations or text"
                                      : "its first records are not valid JSON (" + first_problem + ")");
}

// Detection for a file that does not start with '[': JSONL lines or plain text.
dataset_format detect_lines(const std::string& path, int first, size_t max_record_bytes) {
    if (first != '{') return dataset_format::plain_text;
    line_reader rd(path, max_record_bytes);
    std::string text;
    line_reader::line_info info;
    std::string first_problem;
    bool any_json = false;
    size_t seen = 0;
    while (seen < k_detect_lines && rd.next(text, info)) {
        if (info.too_long || is_blank(text)) continue;
        ++seen;
        parsed_json p = parse_json_text(text, info.number);
        if (!p.value) {
            if (seen == 1) {
                // A pretty-printed single object (e.g. {"data": [...]}) is neither JSONL nor an array of records;
                // without this check one of its inner lines could pass for a record.
                std::ifstream in(path, std::ios::binary);
                json_parse_result whole = try_parse_json(in);
                const bool one_object = whole.ok && whole.value.is_object();
                if (one_object)
                    throw_unknown_json(path, "it is one JSON object, not JSONL (one record per line) or an array of "
                                             "records; put the records in a top-level array or one per line");
            }
            if (first_problem.empty()) first_problem = where(path, p.line) + ": " + p.problem;
            continue;
        }
        any_json = true;
        const dataset_format f = classify(*p.value);
        if (f != dataset_format::auto_detect) return f;
    }
    if (!any_json && !has_extension(path, {".json", ".jsonl"})) return dataset_format::plain_text;
    throw_unknown_json(path, any_json ? "its records have none of the fields instruction/output, messages, "
                                        "conversations or text"
                                      : "its first lines are not valid JSON (" + first_problem + ")");
}

// Appends the record of format f that one parsed JSON value read at `at` (file:line) holds. A value that did not
// parse is reported at parse_at, one that is not such a record at `at`; neither is appended.
void append_record(const parsed_json& p, const std::string& at, const std::string& parse_at, dataset_format f,
                   data::problem_sink& sink, std::vector<data_record>& out) {
    if (!p.value) {
        sink.report(parse_at, p.problem, format_hint(f));
        return;
    }
    data_record r;
    r.source = at;
    if (std::string problem = to_record(*p.value, f, r); !problem.empty()) {
        sink.report(at, problem, format_hint(f));
        return;
    }
    out.push_back(std::move(r));
}

void read_array(const std::string& path, std::string_view content, dataset_format f, const data_options& opt,
                data::problem_sink& sink, std::vector<data_record>& out) {
    array_scanner sc(content);
    array_element e;
    size_t index = 0;
    while (sc.next(e)) {
        ++index;
        const std::string at = where(path, e.line);
        if (!e.problem.empty()) {
            sink.report(at, e.problem, format_hint(f));
            continue;
        }
        if (e.text.size() > opt.max_record_bytes) {
            sink.report(at,
                        "array element " + std::to_string(index) + " is " + std::to_string(e.text.size()) +
                            " bytes, over the " + std::to_string(opt.max_record_bytes) + "-byte record limit",
                        "split the record or raise the record size limit");
            continue;
        }
        const parsed_json p = parse_json_text(e.text, e.line, e.column);
        append_record(p, at, where(path, p.line), f, sink, out);
    }
}

void read_jsonl(const std::string& path, dataset_format f, const data_options& opt, data::problem_sink& sink,
                std::vector<data_record>& out) {
    line_reader rd(path, opt.max_record_bytes);
    std::string text;
    line_reader::line_info info;
    while (rd.next(text, info)) {
        const std::string at = where(path, info.number);
        if (info.too_long) {
            sink.report(at,
                        "line of " + std::to_string(info.length) + " bytes is over the " +
                            std::to_string(opt.max_record_bytes) + "-byte record limit",
                        "split the record or raise the record size limit");
            continue;
        }
        if (is_blank(text)) continue;
        append_record(parse_json_text(text, info.number), at, at, f, sink, out);
    }
}

// Plain text: paragraphs separated by blank lines; without any blank line between two non-empty lines, one
// document per non-empty line. Internal newlines of a paragraph are kept; documents are trimmed.
void read_plain(const std::string& path, const data_options& opt, data::problem_sink& sink,
                std::vector<data_record>& out) {
    bool paragraphs = false;
    {
        line_reader rd(path, opt.max_record_bytes);
        std::string text;
        line_reader::line_info info;
        bool seen_content = false, blank_after_content = false;
        while (rd.next(text, info)) {
            const bool blank = !info.too_long && is_blank(text);
            if (blank) {
                blank_after_content = seen_content;
                continue;
            }
            if (blank_after_content) {
                paragraphs = true;
                break;
            }
            seen_content = true;
        }
    }
    line_reader rd(path, opt.max_record_bytes);
    std::string text, doc;
    line_reader::line_info info;
    size_t doc_line = 0, doc_bytes = 0;
    std::string problem, problem_at; // the first problem inside the current document
    auto flush = [&] {
        if (doc_line == 0) return;
        const std::string at = where(path, doc_line);
        if (!problem.empty()) {
            sink.report(problem_at,
                        problem + (problem_at == at ? ""
                                                    : " (the document starting at line " + std::to_string(doc_line) +
                                                          " is skipped)"),
                        "plain text must be UTF-8 with documents of at most the record size limit");
        } else if (doc_bytes > opt.max_record_bytes) {
            sink.report(at,
                        "document of " + std::to_string(doc_bytes) + " bytes is over the " +
                            std::to_string(opt.max_record_bytes) + "-byte record limit",
                        "split it with blank lines or raise the record size limit");
        } else {
            data_record r;
            r.type = data_record::kind::text;
            r.text = trim(doc);
            r.source = at;
            out.push_back(std::move(r));
        }
        doc.clear();
        doc_line = 0;
        doc_bytes = 0;
        problem.clear();
    };
    while (rd.next(text, info)) {
        const bool blank = !info.too_long && is_blank(text);
        if (blank) {
            flush();
            continue;
        }
        if (doc_line == 0) doc_line = info.number;
        doc_bytes += (doc_bytes > 0 ? 1 : 0) + info.length;
        if (problem.empty()) {
            if (info.too_long) {
                problem = "line of " + std::to_string(info.length) + " bytes is over the " +
                          std::to_string(opt.max_record_bytes) + "-byte record limit";
                problem_at = where(path, info.number);
            } else if (size_t bad = data::invalid_utf8_offset(text); bad != std::string_view::npos) {
                problem = "invalid UTF-8 at byte " + std::to_string(bad + 1) + " of the line";
                problem_at = where(path, info.number);
            } else if (doc_bytes <= opt.max_record_bytes) {
                if (!doc.empty()) doc += '\n';
                doc += text;
            }
        }
        if (!paragraphs) flush();
    }
    flush();
}

} // namespace

dataset_format detect_format(const std::string& path, size_t max_record_bytes) {
    if (check_file(path) == 0) throw_empty(path);
    const int first = first_byte(path);
    if (first < 0) throw_empty(path);
    if (first == '[') {
        const std::string content = read_whole(path);
        return detect_array(path, content, max_record_bytes);
    }
    return detect_lines(path, first, max_record_bytes);
}

namespace data {

dataset_format read_records_into(const std::string& path, const data_options& opt, problem_sink& sink,
                                 std::vector<data_record>& out) {
    if (opt.max_record_bytes < 64)
        throw error(error_code::invalid_argument, "the record size limit must be at least 64 bytes");
    if (check_file(path) == 0) throw_empty(path);
    const int first = first_byte(path);
    if (first < 0) throw_empty(path);
    dataset_format format;
    if (first == '[' && opt.format != dataset_format::plain_text) {
        const std::string content = read_whole(path);
        format = opt.format == dataset_format::auto_detect ? detect_array(path, content, opt.max_record_bytes)
                                                           : opt.format;
        if (format == dataset_format::plain_text) read_plain(path, opt, sink, out);
        else read_array(path, content, format, opt, sink, out);
    } else {
        format = opt.format == dataset_format::auto_detect ? detect_lines(path, first, opt.max_record_bytes)
                                                           : opt.format;
        if (format == dataset_format::plain_text) read_plain(path, opt, sink, out);
        else read_jsonl(path, format, opt, sink, out);
    }
    return format;
}

void throw_no_examples(const std::string& path, dataset_format format, size_t skipped, const std::string& first_warning,
                       const std::string& hint) {
    if (skipped == 0)
        throw error(error_code::format, "dataset file " + path + " contains no examples", k_any_format_hint);
    throw error(error_code::format,
                "no usable examples in dataset file " + path + " (read as " + dataset_format_name(format) + "): all " +
                    std::to_string(skipped) + " records were rejected; the first: " + first_warning,
                hint.empty()
                    ? std::string("fix the reported records, or choose the right format; ") + format_hint(format)
                    : hint);
}

} // namespace data

record_set read_records(const std::string& path, const data_options& opt) {
    record_set rs;
    data::problem_sink sink(opt.on_bad_record);
    rs.format = data::read_records_into(path, opt, sink, rs.records);
    rs.skipped = sink.skipped();
    rs.warnings = sink.take_warnings();
    if (rs.records.empty())
        data::throw_no_examples(path, rs.format, rs.skipped, rs.warnings.empty() ? std::string() : rs.warnings.front());
    return rs;
}

} // namespace qls
