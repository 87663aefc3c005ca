// Jinja lexer: template text → tokens, with Jinja2 3.1's whitespace rules for trim_blocks=True, lstrip_blocks=True
// (jinja2/lexer.py: Lexer.tokeniter, OptionalLStrip, the root/block/variable/comment/raw rules).
#include "jinja_internal.h"

#include <cstring>

namespace qls::jinja {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// str.splitlines() + "\n".join(): every line break becomes "\n" and one trailing break is dropped
// (keep_trailing_newline=False). Python's splitlines breaks at \n \r \r\n \v \f \x1c \x1d \x1e U+0085 U+2028 U+2029.
std::string normalize_newlines(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    bool ended_with_break = false;
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = s[i];
        size_t len = 0;
        if (c == '\r') len = (i + 1 < s.size() && s[i + 1] == '\n') ? 2 : 1;
        else if (c == '\n' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e) len = 1;
        else if (c == 0xC2 && i + 1 < s.size() && (unsigned char)s[i + 1] == 0x85) len = 2;
        else if (c == 0xE2 && i + 2 < s.size() && (unsigned char)s[i + 1] == 0x80 &&
                 ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
            len = 3;
        if (len) {
            out += '\n';
            i += len;
            ended_with_break = true;
        } else {
            out += char(c);
            ++i;
            ended_with_break = false;
        }
    }
    if (ended_with_break) out.pop_back();
    return out;
}

class lexer {
public:
    lexer(const std::string& src, const std::string& origin) : s_(src), origin_(origin) {}

    std::vector<token> run() {
        bool line_starting = true;
        while (pos_ < s_.size()) {
            // Root state: text up to the next {{, {% or {#.
            size_t tag = std::string::npos;
            for (size_t p = s_.find('{', pos_); p != std::string::npos; p = s_.find('{', p + 1)) {
                if (p + 1 < s_.size() && (s_[p + 1] == '{' || s_[p + 1] == '%' || s_[p + 1] == '#')) {
                    tag = p;
                    break;
                }
            }
            if (tag == std::string::npos) {
                emit_data(s_.substr(pos_), pos_);
                pos_ = s_.size();
                break;
            }
            std::string text = s_.substr(pos_, tag - pos_);
            const char kind = s_[tag + 1];
            const char sign = tag + 2 < s_.size() && (s_[tag + 2] == '-' || s_[tag + 2] == '+') ? s_[tag + 2] : 0;
            if (sign == '-') {
                size_t e = text.size();
                while (e > 0 && is_space(text[e - 1])) --e;
                text.resize(e);
            } else if (sign != '+' && kind != '{') {
                // lstrip_blocks: drop the spaces between the line start and a block or comment tag.
                const size_t nl = text.rfind('\n');
                const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
                if (l_pos > 0 || line_starting) {
                    bool ws = l_pos < text.size();
                    for (size_t k = l_pos; k < text.size(); ++k)
                        if (!is_space(text[k])) ws = false;
                    if (ws) text.resize(l_pos);
                }
            }
            emit_data(text, pos_);
            pos_ = tag + 2 + (sign ? 1 : 0);
            if (kind == '#') {
                line_starting = comment(tag);
            } else if (kind == '%' && raw_begins()) {
                line_starting = raw(tag);
            } else {
                line_starting = tag_tokens(kind == '%', tag);
            }
        }
        token e;
        e.type = tok::eof;
        position(s_.size(), e.line, e.col);
        out_.push_back(e);
        return std::move(out_);
    }

private:
    [[noreturn]] void error_at(size_t at, const std::string& what) {
        int line, col;
        position(at, line, col);
        throw error(error_code::format,
                    origin_ + ":" + std::to_string(line) + ":" + std::to_string(col) +
                        ": template syntax error: " + what,
                    "fix the chat template (Jinja syntax as Hugging Face transformers accepts it)");
    }

    void position(size_t at, int& line, int& col) {
        // Incremental: positions are asked for in increasing order almost always.
        if (at < line_pos_) {
            line_pos_ = 0;
            line_ = 1;
            line_start_ = 0;
        }
        for (; line_pos_ < at && line_pos_ < s_.size(); ++line_pos_)
            if (s_[line_pos_] == '\n') {
                ++line_;
                line_start_ = line_pos_ + 1;
            }
        line = line_;
        col = int(at - line_start_) + 1;
    }

    void emit_data(std::string text, size_t at) {
        if (text.empty()) return;
        token t;
        t.type = tok::data;
        t.text = std::move(text);
        position(at, t.line, t.col);
        out_.push_back(std::move(t));
    }

    void push(tok type, std::string text, size_t at) {
        token t;
        t.type = type;
        t.text = std::move(text);
        position(at, t.line, t.col);
        out_.push_back(std::move(t));
    }

    // After a tag's closing delimiter: "-" strips all following whitespace; otherwise trim_blocks removes one
    // newline after a block or comment tag ("+" keeps it). Returns whether the consumed text ended with "\n".
    bool close(bool block_like, char sign, size_t end) {
        pos_ = end;
        if (sign == '-') {
            const size_t before = pos_;
            while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
            return pos_ > before && s_[pos_ - 1] == '\n';
        }
        if (sign != '+' && block_like && pos_ < s_.size() && s_[pos_] == '\n') {
            ++pos_;
            return true;
        }
        return false;
    }

    bool comment(size_t start) {
        for (size_t p = pos_; p + 1 < s_.size(); ++p) {
            if (s_[p] == '#' && s_[p + 1] == '}') {
                const char sign = p > pos_ && (s_[p - 1] == '-' || s_[p - 1] == '+') ? s_[p - 1] : 0;
                return close(true, sign, p + 2);
            }
        }
        error_at(start, "unterminated comment ({# without #})");
    }

    // {% raw %} ... {% endraw %}: the text in between is data, untouched.
    bool raw_begins() {
        size_t p = pos_;
        while (p < s_.size() && is_space(s_[p])) ++p;
        if (s_.compare(p, 3, "raw") != 0) return false;
        p += 3;
        while (p < s_.size() && is_space(s_[p])) ++p;
        if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) ++p;
        return s_.compare(p, 2, "%}") == 0;
    }

    bool raw(size_t start) {
        size_t p = s_.find("%}", pos_);
        const char sign = s_[p - 1] == '-' ? '-' : 0;
        close(true, sign, p + 2);
        // Find {%[-+]? endraw [-+]?%}.
        for (size_t q = s_.find("{%", pos_); q != std::string::npos; q = s_.find("{%", q + 1)) {
            size_t r = q + 2;
            char lsign = 0;
            if (r < s_.size() && (s_[r] == '-' || s_[r] == '+')) lsign = s_[r++];
            while (r < s_.size() && is_space(s_[r])) ++r;
            if (s_.compare(r, 6, "endraw") != 0) continue;
            r += 6;
            while (r < s_.size() && is_space(s_[r])) ++r;
            char rsign = 0;
            if (r < s_.size() && (s_[r] == '-' || s_[r] == '+')) rsign = s_[r++];
            if (s_.compare(r, 2, "%}") != 0) continue;
            std::string text = s_.substr(pos_, q - pos_);
            if (lsign == '-') {
                size_t e = text.size();
                while (e > 0 && is_space(text[e - 1])) --e;
                text.resize(e);
            }
            emit_data(text, pos_);
            return close(true, rsign, r + 2);
        }
        error_at(start, "unterminated raw block ({% raw %} without {% endraw %})");
    }

    // Tokens inside {{ ... }} or {% ... %}, up to the closing delimiter (skipped while brackets are open, as
    // Jinja's balancing stack does).
    bool tag_tokens(bool block, size_t start) {
        push(block ? tok::block_begin : tok::var_begin, block ? "{%" : "{{", start);
        std::vector<char> balance;
        const char closer = block ? '%' : '}';
        while (true) {
            while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
            if (pos_ >= s_.size())
                error_at(start, std::string("unterminated ") + (block ? "block tag ({% without %})" : "{{ without }}"));
            const char c = s_[pos_];
            if (balance.empty()) {
                char sign = 0;
                size_t p = pos_;
                if ((c == '-' || c == '+') && p + 2 < s_.size() + 0 && s_[p + 1] == closer && s_[p + 2] == '}') {
                    sign = c;
                    ++p;
                }
                if (p + 1 < s_.size() && s_[p] == closer && s_[p + 1] == '}' && (sign != '+' || block)) {
                    push(block ? tok::block_end : tok::var_end, "", pos_);
                    return close(block, sign, p + 2);
                }
            }
            const size_t at = pos_;
            if (c == '\'' || c == '"') {
                push(tok::string, string_literal(), at);
                continue;
            }
            if (std::isdigit((unsigned char)c)) {
                number(at);
                continue;
            }
            if (std::isalpha((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80) {
                size_t e = pos_;
                while (e < s_.size() &&
                       (std::isalnum((unsigned char)s_[e]) || s_[e] == '_' || (unsigned char)s_[e] >= 0x80))
                    ++e;
                push(tok::name, s_.substr(pos_, e - pos_), at);
                pos_ = e;
                continue;
            }
            static const char* const two[] = {"//", "**", "==", "!=", ">=", "<="};
            std::string op;
            for (const char* t : two)
                if (s_.compare(pos_, 2, t) == 0) op = t;
            if (op.empty()) {
                if (!std::strchr("+-*/%~[](){}<>=.:|,;", c))
                    error_at(at, std::string("unexpected character '") + c + "'");
                op = std::string(1, c);
            }
            if (op == "(" || op == "[" || op == "{") balance.push_back(op[0]);
            else if (op == ")" || op == "]" || op == "}") {
                const char want = op == ")" ? '(' : op == "]" ? '[' : '{';
                if (balance.empty() || balance.back() != want) error_at(at, "unexpected '" + op + "'");
                balance.pop_back();
            }
            push(tok::op, op, at);
            pos_ += op.size();
        }
    }

    void number(size_t at) {
        size_t e = pos_;
        auto digits = [&] {
            while (e < s_.size() && (std::isdigit((unsigned char)s_[e]) ||
                                     (s_[e] == '_' && e + 1 < s_.size() && std::isdigit((unsigned char)s_[e + 1]))))
                ++e;
        };
        digits();
        bool is_float = false;
        if (e + 1 < s_.size() && s_[e] == '.' && std::isdigit((unsigned char)s_[e + 1])) {
            is_float = true;
            ++e;
            digits();
        }
        if (e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
            size_t f = e + 1;
            if (f < s_.size() && (s_[f] == '+' || s_[f] == '-')) ++f;
            if (f < s_.size() && std::isdigit((unsigned char)s_[f])) {
                is_float = true;
                e = f;
                digits();
            }
        }
        std::string text;
        for (size_t k = pos_; k < e; ++k)
            if (s_[k] != '_') text += s_[k];
        push(is_float ? tok::floating : tok::integer, text, at);
        pos_ = e;
    }

    static void append_utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) out += char(cp);
        else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }

    // A string literal decoded as Python's "unicode-escape" codec does (Jinja2 lexer: value[1:-1] →
    // .encode("ascii", "backslashreplace").decode("unicode-escape")): \\ \' \" \n \t \r \a \b \f \v \ooo \xhh \uhhhh
    // \Uhhhhhhhh, backslash-newline is removed, any other backslash is kept.
    std::string string_literal() {
        const size_t start = pos_;
        const char q = s_[pos_++];
        std::string out;
        while (true) {
            if (pos_ >= s_.size()) error_at(start, "unterminated string literal");
            const char c = s_[pos_];
            if (c == q) {
                ++pos_;
                return out;
            }
            if (c != '\\') {
                out += c;
                ++pos_;
                continue;
            }
            if (pos_ + 1 >= s_.size()) error_at(start, "unterminated string literal");
            const char e = s_[pos_ + 1];
            pos_ += 2;
            switch (e) {
            case '\n': break;
            case '\\': out += '\\'; break;
            case '\'': out += '\''; break;
            case '"': out += '"'; break;
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case 'r': out += '\r'; break;
            case 'a': out += '\a'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'v': out += '\v'; break;
            case 'x':
            case 'u':
            case 'U': {
                const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                uint32_t cp = 0;
                for (int k = 0; k < n; ++k) {
                    if (pos_ >= s_.size() || !std::isxdigit((unsigned char)s_[pos_]))
                        error_at(pos_ - 2 - k, std::string("truncated \\") + e + " escape in a string literal");
                    const char h = s_[pos_++];
                    cp = cp * 16 + uint32_t(std::isdigit((unsigned char)h) ? h - '0' : (std::tolower(h) - 'a' + 10));
                }
                if (cp > 0x10FFFF) error_at(start, "\\U escape out of the Unicode range in a string literal");
                append_utf8(out, cp);
                break;
            }
            default:
                if (e >= '0' && e <= '7') {
                    uint32_t cp = uint32_t(e - '0');
                    for (int k = 0; k < 2 && pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '7'; ++k)
                        cp = cp * 8 + uint32_t(s_[pos_++] - '0');
                    append_utf8(out, cp);
                } else {
                    out += '\\';
                    out += e;
                }
            }
        }
    }

    const std::string& s_;
    const std::string& origin_;
    size_t pos_ = 0;
    std::vector<token> out_;
    size_t line_pos_ = 0, line_start_ = 0;
    int line_ = 1;
};

} // namespace

std::vector<token> lex(const std::string& source, const std::string& origin) {
    const std::string s = normalize_newlines(source);
    return lexer(s, origin).run();
}

} // namespace qls::jinja
