// tokenizer_unicode — UTF-8 repair and decoding, the Rust char predicates tokenizers relies on (via utf8proc), and
// the PCRE2 wrapper that runs tokenizer.json's regexes.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "io/tokenizer_internal.h"
#include "qls/error.h"

#include <pcre2.h>
#include <utf8proc.h>

namespace qls::tok {

std::string sanitize_utf8(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    const auto* b = reinterpret_cast<const unsigned char*>(in.data());
    const size_t n = in.size();
    size_t i = 0;
    while (i < n) {
        const unsigned char c = b[i];
        if (c < 0x80) {
            out.push_back(char(c));
            ++i;
            continue;
        }
        size_t need = 0;
        unsigned char lo = 0x80, hi = 0xBF; // allowed range of the second byte (Unicode Table 3-7)
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        }
        if (need == 0) { // a byte that never starts a character: one U+FFFD
            out += "\xEF\xBF\xBD";
            ++i;
            continue;
        }
        size_t k = 1;
        for (; k <= need && i + k < n; ++k) {
            const unsigned char d = b[i + k];
            const bool ok = k == 1 ? (d >= lo && d <= hi) : (d >= 0x80 && d <= 0xBF);
            if (!ok) break;
        }
        if (k == need + 1) {
            out.append(in.substr(i, need + 1));
            i += need + 1;
        } else { // the maximal subpart b[i, i + k) is replaced by one U+FFFD
            out += "\xEF\xBF\xBD";
            i += k;
        }
    }
    return out;
}

char32_t next_char(std::string_view s, size_t& i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
        ++i;
        return c;
    }
    const int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    char32_t v = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (int k = 1; k < len && i + k < s.size(); ++k) v = (v << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += len;
    return v;
}

void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(char(c));
    } else if (c < 0x800) {
        out.push_back(char(0xC0 | (c >> 6)));
        out.push_back(char(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(char(0xE0 | (c >> 12)));
        out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(char(0x80 | (c & 0x3F)));
    } else {
        out.push_back(char(0xF0 | (c >> 18)));
        out.push_back(char(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(char(0x80 | (c & 0x3F)));
    }
}

namespace {
utf8proc_category_t category(char32_t c) { return utf8proc_category(utf8proc_int32_t(c)); }
} // namespace

bool is_whitespace(char32_t c) {
    // Unicode PropList.txt White_Space, as Rust's char::is_whitespace
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_numeric(char32_t c) {
    const auto k = category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

bool is_punctuation(char32_t c) {
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    const auto k = category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

bool is_combining_mark(char32_t c) {
    const auto k = category(c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME;
}

bool is_word_char(char32_t c) {
    const auto k = category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || is_combining_mark(c) ||
           k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC || c == 0x200C ||
           c == 0x200D;
}

// ---- regex -------------------------------------------------------------------------------------------------
// Limits: match_limit bounds backtracking steps per match, depth_limit the backtracking depth, heap_limit (KiB) the
// interpreter's heap; a pattern that exceeds them fails with an error instead of running away.
regex::regex(const std::string& pattern, const std::string& origin) : pattern_(pattern), origin_(origin) {
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    if (!code) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(err, buf, sizeof buf);
        std::string shown = pattern.size() > 200 ? pattern.substr(0, 200) + "..." : pattern;
        throw error(error_code::format,
                    origin + ": the regex \"" + shown + "\" does not compile: " + reinterpret_cast<char*>(buf) +
                        " at offset " + std::to_string(off),
                    "the tokenizer file is damaged or was written for another tokenizer library; download it again");
    }
    code_ = code;
    jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    pcre2_match_context* mctx = pcre2_match_context_create(nullptr);
    pcre2_set_match_limit(mctx, 10'000'000);
    pcre2_set_depth_limit(mctx, 100'000);
    pcre2_set_heap_limit(mctx, 64 * 1024); // KiB
    mctx_ = mctx;
}

regex::~regex() {
    pcre2_match_context_free(static_cast<pcre2_match_context*>(mctx_));
    pcre2_code_free(static_cast<pcre2_code*>(code_));
}

std::vector<std::pair<size_t, size_t>> regex::find_all(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> out;
    auto* code = static_cast<pcre2_code*>(code_);
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    if (!md) throw error(error_code::out_of_memory, "cannot allocate regex match data");
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    while (pos <= text.size()) {
        // the text was made valid UTF-8 before (sanitize_utf8), so PCRE2 need not check it again
        auto* mctx = static_cast<pcre2_match_context*>(mctx_);
        int rc = jit_ ? pcre2_jit_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, mctx)
                      : pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, mctx);
        // the JIT's machine stack (32 KiB by default) can be too small where the interpreter's heap is not
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            pcre2_match_data_free(md);
            PCRE2_UCHAR buf[256];
            pcre2_get_error_message(rc, buf, sizeof buf);
            throw error(error_code::invalid_argument,
                        origin_ + ": the regex \"" + pattern_.substr(0, 200) +
                            "\" failed on the text: " + reinterpret_cast<char*>(buf),
                        "the text makes the tokenizer's pattern backtrack too much; shorten or split the text");
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t b = ov[0], e = ov[1];
        out.emplace_back(b, e);
        if (e > b) {
            pos = e;
        } else { // empty match: resume after the next character
            if (e >= text.size()) break;
            size_t next = e;
            next_char(text, next);
            pos = next;
        }
    }
    pcre2_match_data_free(md);
    return out;
}

} // namespace qls::tok
