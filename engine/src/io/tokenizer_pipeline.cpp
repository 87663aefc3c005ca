// tokenizer_pipeline — runs a tokenizer.json as Hugging Face tokenizers 0.23 does: added tokens
// (tokenizer/added_vocabulary.rs), normalizers, pre-tokenizers (tokenizer/normalizer.rs split, pattern.rs), the BPE
// model (models/bpe/model.rs merge_word, word.rs merge_all) and the decoders.
#include "io/tokenizer_internal.h"
#include "qls/error.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <queue>

namespace qls::tok {

namespace {

struct piece {
    std::string text;
    int id = -1;           // an added token's id, or -1 for text still to tokenize
    bool at_start = false; // begins at offset 0 of the original text (Metaspace prepend_scheme "first")
};

// ---- byte-level alphabet (GPT-2 bytes_to_unicode; pre_tokenizers/byte_level.rs) --------------------------
struct byte_alphabet {
    char32_t to_char[256];
    int to_byte[324];
    std::string utf8[256];
    byte_alphabet() {
        std::fill(std::begin(to_byte), std::end(to_byte), -1);
        int n = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            to_char[b] = printable ? char32_t(b) : char32_t(256 + n++);
            to_byte[to_char[b]] = b;
            append_utf8(utf8[b], to_char[b]);
        }
    }
};
const byte_alphabet& alphabet() {
    static const byte_alphabet a;
    return a;
}

// ---- pattern.rs find_matches and normalizer.rs split --------------------------------------------------------
struct span {
    size_t b, e;
    bool m;
};

std::vector<span> spans_from_matches(const std::vector<std::pair<size_t, size_t>>& matches, size_t n) {
    std::vector<span> out;
    if (n == 0) return {{0, 0, false}};
    size_t prev = 0;
    for (auto [b, e] : matches) {
        if (prev != b) out.push_back({prev, b, false});
        out.push_back({b, e, true});
        prev = e;
    }
    if (prev != n) out.push_back({prev, n, false});
    return out;
}

template <class Pred> std::vector<span> spans_from_chars(std::string_view s, Pred pred) {
    if (s.empty()) return {{0, 0, false}};
    std::vector<span> out;
    size_t last = 0, i = 0;
    while (i < s.size()) {
        const size_t b = i;
        const char32_t c = next_char(s, i);
        if (pred(c)) {
            if (last < b) out.push_back({last, b, false});
            out.push_back({b, i, true});
            last = i;
        }
    }
    if (s.size() > last) out.push_back({last, s.size(), false});
    return out;
}

std::vector<std::pair<size_t, size_t>> literal_matches(std::string_view s, const std::string& lit) {
    std::vector<std::pair<size_t, size_t>> out;
    if (lit.empty()) return out;
    for (size_t p = s.find(lit); p != std::string_view::npos; p = s.find(lit, p + lit.size()))
        out.emplace_back(p, p + lit.size());
    return out;
}

// normalizer.rs NormalizedString::split: the spans kept for a delimiter behaviour (empty ones dropped later).
std::vector<std::pair<size_t, size_t>> apply_behavior(std::vector<span> m, split_behavior behavior, bool invert) {
    if (invert)
        for (span& s : m) s.m = !s.m;
    std::vector<std::pair<size_t, size_t>> out;
    switch (behavior) {
    case split_behavior::isolated:
        for (const span& s : m) out.emplace_back(s.b, s.e);
        break;
    case split_behavior::removed:
        for (const span& s : m)
            if (!s.m) out.emplace_back(s.b, s.e);
        break;
    case split_behavior::contiguous: {
        bool prev = false;
        for (const span& s : m) {
            if (s.m == prev && !out.empty()) out.back().second = s.e;
            else out.emplace_back(s.b, s.e);
            prev = s.m;
        }
        break;
    }
    case split_behavior::merged_with_previous: {
        bool prev = false;
        for (const span& s : m) {
            if (s.m && !prev && !out.empty()) out.back().second = s.e;
            else out.emplace_back(s.b, s.e);
            prev = s.m;
        }
        break;
    }
    case split_behavior::merged_with_next: {
        bool prev = false;
        for (size_t k = m.size(); k-- > 0;) {
            const span& s = m[k];
            if (s.m && !prev && !out.empty()) out.back().first = s.b;
            else out.emplace_back(s.b, s.e);
            prev = s.m;
        }
        std::reverse(out.begin(), out.end());
        break;
    }
    }
    return out;
}

// Replaces `p` by its non-empty parts [b, e); the part at offset 0 keeps the at_start mark.
void emit_parts(const piece& p, const std::vector<std::pair<size_t, size_t>>& parts, std::vector<piece>& out) {
    for (auto [b, e] : parts)
        if (e > b) out.push_back({p.text.substr(b, e - b), -1, p.at_start && b == 0});
}

// ---- normalizers --------------------------------------------------------------------------------------------
std::string utf8proc_normalize(const std::string& s, int options, const std::string& origin) {
    utf8proc_uint8_t* dst = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                            utf8proc_ssize_t(s.size()), &dst, utf8proc_option_t(options));
    if (n < 0)
        throw error(error_code::invalid_argument, origin + ": cannot normalize the text: " + utf8proc_errmsg(n),
                    "check the input text");
    std::string out(reinterpret_cast<const char*>(dst), size_t(n));
    std::free(dst);
    return out;
}

std::string replace_all(const std::string& s, const normalizer_step& st, const std::string& pattern,
                        const std::string& content, const std::shared_ptr<const regex>& re) {
    (void)st;
    const auto matches = re ? re->find_all(s) : literal_matches(s, pattern);
    if (matches.empty()) return s;
    std::string out;
    size_t prev = 0;
    for (auto [b, e] : matches) {
        out.append(s, prev, b - prev);
        out += content;
        prev = e;
    }
    out.append(s, prev, std::string::npos);
    return out;
}

std::string lowercase(const std::string& s) {
    // Rust char::to_lowercase char by char: the full mapping, whose only multi-character case is U+0130
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const char32_t c = next_char(s, i);
        if (c == 0x130) out += "i\xCC\x87";
        else append_utf8(out, char32_t(utf8proc_tolower(utf8proc_int32_t(c))));
    }
    return out;
}

std::string normalize(const hf_pipeline& p, std::string s) {
    for (const normalizer_step& st : p.normalizers) {
        switch (st.kind) {
        case normalizer_step::nfc: s = utf8proc_normalize(s, UTF8PROC_STABLE | UTF8PROC_COMPOSE, p.origin); break;
        case normalizer_step::nfd: s = utf8proc_normalize(s, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, p.origin); break;
        case normalizer_step::nfkc:
            s = utf8proc_normalize(s, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, p.origin);
            break;
        case normalizer_step::nfkd:
            s = utf8proc_normalize(s, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, p.origin);
            break;
        case normalizer_step::lowercase: s = lowercase(s); break;
        case normalizer_step::prepend:
            if (!s.empty()) s = st.a + s;
            break;
        case normalizer_step::replace: s = replace_all(s, st, st.a, st.b, st.re); break;
        case normalizer_step::strip: {
            size_t b = 0, e = s.size();
            if (st.left)
                while (b < e) {
                    size_t i = b;
                    if (!is_whitespace(next_char(s, i))) break;
                    b = i;
                }
            if (st.right)
                while (e > b) {
                    size_t k = e - 1;
                    while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
                    size_t i = k;
                    if (!is_whitespace(next_char(s, i))) break;
                    e = k;
                }
            s = s.substr(b, e - b);
            break;
        }
        case normalizer_step::strip_accents: {
            std::string out;
            for (size_t i = 0; i < s.size();) {
                const char32_t c = next_char(s, i);
                if (!is_combining_mark(c)) append_utf8(out, c);
            }
            s = std::move(out);
            break;
        }
        case normalizer_step::byte_level: {
            std::string out;
            for (unsigned char c : s) out += alphabet().utf8[c];
            s = std::move(out);
            break;
        }
        }
    }
    return s;
}

// ---- added tokens (added_vocabulary.rs find_matches) -------------------------------------------------------
bool ends_with_word(std::string_view s) {
    if (s.empty()) return false;
    size_t k = s.size() - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    return is_word_char(next_char(s, k));
}
bool starts_with_word(std::string_view s) {
    if (s.empty()) return false;
    size_t i = 0;
    return is_word_char(next_char(s, i));
}
size_t leftmost_space_at_end(std::string_view s) { // start of the whitespace run that ends s
    size_t e = s.size();
    while (e > 0) {
        size_t k = e - 1;
        while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        size_t i = k;
        if (!is_whitespace(next_char(s, i))) break;
        e = k;
    }
    return e;
}
size_t space_run_at_start(std::string_view s) {
    size_t b = 0;
    while (b < s.size()) {
        size_t i = b;
        if (!is_whitespace(next_char(s, i))) break;
        b = i;
    }
    return b;
}

// The leftmost added token of `which` in s at or after pos, the longest among those starting there
// (Aho-Corasick MatchKind::LeftmostLongest); returns the index into p.added or -1.
int find_added(const hf_pipeline& p, const std::vector<std::vector<int>>& by_byte, std::string_view s, size_t pos,
               size_t& at) {
    for (size_t i = pos; i < s.size(); ++i) {
        const auto& cands = by_byte[static_cast<unsigned char>(s[i])];
        for (int idx : cands) { // longest first
            const std::string& m = p.added[size_t(idx)].match;
            if (s.compare(i, m.size(), m) == 0) {
                at = i;
                return idx;
            }
        }
    }
    return -1;
}

void split_added(const hf_pipeline& p, const std::vector<std::vector<int>>& by_byte, bool any, const piece& in,
                 std::vector<piece>& out) {
    const std::string& s = in.text;
    if (!any || s.empty()) {
        if (!s.empty()) out.push_back(in);
        return;
    }
    size_t start_offset = 0, pos = 0;
    auto push_text = [&](size_t b, size_t e) {
        if (e > b) out.push_back({s.substr(b, e - b), -1, in.at_start && b == 0});
    };
    while (pos < s.size()) {
        size_t at = 0;
        const int idx = find_added(p, by_byte, s, pos, at);
        if (idx < 0) break;
        const added_token& t = p.added[size_t(idx)];
        size_t start = at, stop = at + t.match.size();
        pos = stop;
        if (t.single_word) {
            const bool start_space = start == 0 || !ends_with_word(std::string_view(s).substr(0, start));
            const bool stop_space = stop == s.size() || !starts_with_word(std::string_view(s).substr(stop));
            if (!start_space || !stop_space) continue;
        }
        if (t.lstrip) start = std::max(leftmost_space_at_end(std::string_view(s).substr(0, start)), start_offset);
        if (t.rstrip) stop += space_run_at_start(std::string_view(s).substr(stop));
        if (start_offset < start) push_text(start_offset, start);
        out.push_back({s.substr(start, stop - start), t.id, false});
        start_offset = stop;
    }
    if (start_offset < s.size()) push_text(start_offset, s.size());
}

// ---- pre-tokenizers -----------------------------------------------------------------------------------------
void pre_tokenize_one(const hf_pipeline& p, const pre_tokenizer_step& st, piece in, std::vector<piece>& out) {
    std::string_view s = in.text;
    switch (st.kind) {
    case pre_tokenizer_step::split: {
        auto m = st.re ? spans_from_matches(st.re->find_all(s), s.size())
                       : (st.literal.empty() ? std::vector<span>{{0, s.size(), false}}
                                             : spans_from_matches(literal_matches(s, st.literal), s.size()));
        emit_parts(in, apply_behavior(std::move(m), st.behavior, st.invert), out);
        return;
    }
    case pre_tokenizer_step::byte_level: {
        if (st.add_prefix_space && (in.text.empty() || in.text[0] != ' ')) in.text = " " + in.text;
        std::vector<piece> parts;
        if (st.re)
            emit_parts(in,
                       apply_behavior(spans_from_matches(st.re->find_all(in.text), in.text.size()),
                                      split_behavior::isolated, false),
                       parts);
        else if (!in.text.empty()) parts.push_back(in);
        for (piece& q : parts) {
            std::string mapped;
            mapped.reserve(q.text.size() * 2);
            for (unsigned char c : q.text) mapped += alphabet().utf8[c];
            q.text = std::move(mapped);
            out.push_back(std::move(q));
        }
        return;
    }
    case pre_tokenizer_step::digits:
        emit_parts(in,
                   apply_behavior(spans_from_chars(s, is_numeric),
                                  st.individual_digits ? split_behavior::isolated : split_behavior::contiguous, false),
                   out);
        return;
    case pre_tokenizer_step::metaspace: {
        std::string t;
        t.reserve(in.text.size() + 3);
        for (char c : in.text) {
            if (c == ' ') t += st.replacement_utf8;
            else t.push_back(c);
        }
        const bool starts = t.compare(0, st.replacement_utf8.size(), st.replacement_utf8) == 0;
        if (!starts && (st.scheme == prepend_scheme::always || (st.scheme == prepend_scheme::first && in.at_start)))
            t = st.replacement_utf8 + t;
        in.text = std::move(t);
        if (!st.split_on_replacement) {
            if (!in.text.empty()) out.push_back(std::move(in));
            return;
        }
        const char32_t r = st.replacement;
        emit_parts(in,
                   apply_behavior(spans_from_chars(in.text, [r](char32_t c) { return c == r; }),
                                  split_behavior::merged_with_next, false),
                   out);
        return;
    }
    case pre_tokenizer_step::whitespace:
        emit_parts(in, apply_behavior(spans_from_matches(st.re->find_all(s), s.size()), split_behavior::removed, true),
                   out);
        return;
    case pre_tokenizer_step::whitespace_split:
        emit_parts(in, apply_behavior(spans_from_chars(s, is_whitespace), split_behavior::removed, false), out);
        return;
    case pre_tokenizer_step::punctuation:
        emit_parts(in, apply_behavior(spans_from_chars(s, is_punctuation), st.behavior, false), out);
        return;
    }
    (void)p;
}

// ---- BPE (models/bpe/model.rs merge_word + word.rs merge_all) --------------------------------------------
struct symbol {
    int id;
    int prev, next;
    size_t len;
};

struct merge_item {
    int pos, rank, new_id;
    bool operator<(const merge_item& o) const { // std::priority_queue pops the largest: lowest rank, then pos
        return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
};

void bpe(const bpe_model& m, const std::string& w, std::vector<int>& ids) {
    if (w.empty()) return;
    if (m.ignore_merges) {
        auto it = m.vocab.find(w);
        if (it != m.vocab.end()) {
            ids.push_back(it->second);
            return;
        }
    }
    std::vector<symbol> sym;
    auto add = [&](int id, size_t len) {
        const int n = int(sym.size());
        if (n > 0) sym[size_t(n - 1)].next = n;
        sym.push_back({id, n - 1, -1, len});
    };
    bool have_unk = false;
    int unk_id = -1;
    size_t unk_len = 0;
    std::string s;
    for (size_t i = 0; i < w.size();) {
        const size_t b = i;
        next_char(w, i);
        const bool first = b == 0, last = i >= w.size();
        const size_t byte_len = i - b;
        s.assign(w, b, byte_len);
        if (!first && !m.continuing_subword_prefix.empty()) s = m.continuing_subword_prefix + s;
        if (last && !m.end_of_word_suffix.empty()) s += m.end_of_word_suffix;
        auto it = m.vocab.find(s);
        if (it != m.vocab.end()) {
            if (have_unk) {
                add(unk_id, unk_len);
                have_unk = false;
            }
            add(it->second, byte_len);
            continue;
        }
        if (m.byte_fallback) {
            bool all = true;
            for (unsigned char c : s) all = all && m.byte_ids[c] >= 0;
            if (all) {
                for (unsigned char c : s) add(m.byte_ids[c], 1);
                continue;
            }
        }
        if (m.unk_token) {
            if (have_unk && m.fuse_unk) {
                unk_len += byte_len;
            } else {
                if (have_unk) add(unk_id, unk_len);
                if (m.unk_id < 0)
                    throw error(error_code::format,
                                "the BPE model's unk_token \"" + *m.unk_token + "\" is not in its vocab",
                                "add the unknown token to the vocabulary");
                have_unk = true;
                unk_id = m.unk_id;
                unk_len = byte_len;
            }
        }
    }
    if (have_unk) add(unk_id, unk_len);

    std::priority_queue<merge_item> queue;
    auto lookup = [&](int a, int b) -> const std::pair<int, int>* {
        auto it = m.merges.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
        return it == m.merges.end() ? nullptr : &it->second;
    };
    for (size_t k = 0; k + 1 < sym.size(); ++k)
        if (const auto* mg = lookup(sym[k].id, sym[k + 1].id)) queue.push({int(k), mg->first, mg->second});
    while (!queue.empty()) {
        const merge_item top = queue.top();
        queue.pop();
        symbol& cur = sym[size_t(top.pos)];
        if (cur.len == 0 || cur.next == -1) continue;
        const int next_pos = cur.next;
        const symbol right = sym[size_t(next_pos)];
        const auto* mg = lookup(cur.id, right.id);
        if (!mg || mg->second != top.new_id) continue; // an expired entry
        cur.id = top.new_id;
        cur.len += right.len;
        cur.next = right.next;
        sym[size_t(next_pos)].len = 0;
        if (right.next > -1 && size_t(right.next) < sym.size()) sym[size_t(right.next)].prev = top.pos;
        if (cur.prev >= 0)
            if (const auto* pm = lookup(sym[size_t(cur.prev)].id, cur.id))
                queue.push({cur.prev, pm->first, pm->second});
        if (cur.next >= 0 && size_t(cur.next) < sym.size())
            if (const auto* nm = lookup(cur.id, sym[size_t(cur.next)].id)) queue.push({top.pos, nm->first, nm->second});
    }
    for (const symbol& x : sym)
        if (x.len != 0) ids.push_back(x.id);
}

// ---- decoders -------------------------------------------------------------------------------------------
int byte_of_piece(const std::string& t) { // "<0xHH>" -> HH, else -1 (decoders/byte_fallback.rs)
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(t[3]), lo = hex(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::vector<std::string> decode_step(const decoder_step& d, std::vector<std::string> toks) {
    switch (d.kind) {
    case decoder_step::byte_level: {
        std::string bytes;
        for (const std::string& t : toks) {
            std::string mapped;
            bool ok = true;
            for (size_t i = 0; i < t.size() && ok;) {
                const char32_t c = next_char(t, i);
                const int b = c < 324 ? alphabet().to_byte[c] : -1;
                if (b < 0) ok = false;
                else mapped.push_back(char(b));
            }
            bytes += ok ? mapped : t;
        }
        return {sanitize_utf8(bytes)};
    }
    case decoder_step::metaspace: { // decoders: every replacement becomes a space, except in the first token
                                    // (dropped there unless prepend_scheme is "never")
        std::string r;
        append_utf8(r, d.replacement);
        for (size_t i = 0; i < toks.size(); ++i) {
            const bool drop = i == 0 && d.scheme != prepend_scheme::never;
            std::string out;
            for (size_t p = 0; p < toks[i].size();) {
                if (toks[i].compare(p, r.size(), r) == 0) {
                    if (!drop) out += ' ';
                    p += r.size();
                } else out.push_back(toks[i][p++]);
            }
            toks[i] = std::move(out);
        }
        return toks;
    }
    case decoder_step::byte_fallback: {
        std::vector<std::string> out;
        std::string pending;
        size_t n_pending = 0;
        auto flush = [&] {
            if (n_pending == 0) return;
            if (sanitize_utf8(pending) == pending) out.push_back(pending);
            else
                for (size_t k = 0; k < n_pending; ++k) out.emplace_back("\xEF\xBF\xBD");
            pending.clear();
            n_pending = 0;
        };
        for (std::string& t : toks) {
            const int b = byte_of_piece(t);
            if (b >= 0) {
                pending.push_back(char(b));
                ++n_pending;
            } else {
                flush();
                out.push_back(std::move(t));
            }
        }
        flush();
        return out;
    }
    case decoder_step::fuse: {
        std::string all;
        for (const std::string& t : toks) all += t;
        return {all};
    }
    case decoder_step::strip: {
        for (std::string& t : toks) {
            std::vector<std::pair<size_t, size_t>> chars; // byte ranges of the characters
            for (size_t i = 0; i < t.size();) {
                const size_t b = i;
                next_char(t, i);
                chars.emplace_back(b, i);
            }
            auto is_content = [&](size_t k) {
                return t.compare(chars[k].first, chars[k].second - chars[k].first, d.a) == 0;
            };
            size_t start_cut = 0, stop_cut = chars.size();
            for (size_t k = 0; k < chars.size() && k < d.start && is_content(k); ++k) start_cut = k + 1;
            for (size_t k = 0; k < chars.size() && k < d.stop && is_content(chars.size() - 1 - k); ++k)
                stop_cut = chars.size() - 1 - k;
            if (stop_cut < start_cut) stop_cut = start_cut;
            const size_t b = start_cut < chars.size() ? chars[start_cut].first : t.size();
            const size_t e = stop_cut < chars.size() ? chars[stop_cut].first : t.size();
            t = t.substr(b, e - b);
        }
        return toks;
    }
    case decoder_step::replace: {
        for (std::string& t : toks) {
            const auto matches = d.re ? d.re->find_all(t) : literal_matches(t, d.a);
            std::string out;
            size_t prev = 0;
            for (auto [b, e] : matches) {
                out.append(t, prev, b - prev);
                out += d.b;
                prev = e;
            }
            out.append(t, prev, std::string::npos);
            t = std::move(out);
        }
        return toks;
    }
    case decoder_step::bpe_suffix: {
        for (size_t i = 0; i < toks.size(); ++i) {
            std::string out;
            const std::string rep = i + 1 == toks.size() ? "" : " ";
            const auto matches = literal_matches(toks[i], d.a);
            size_t prev = 0;
            for (auto [b, e] : matches) {
                out.append(toks[i], prev, b - prev);
                out += rep;
                prev = e;
            }
            out.append(toks[i], prev, std::string::npos);
            toks[i] = std::move(out);
        }
        return toks;
    }
    }
    return toks;
}

} // namespace

std::vector<int> hf_pipeline::encode(std::string_view raw) const {
    const std::string text = sanitize_utf8(raw);
    std::vector<int> ids;
    if (text.empty()) return ids;
    // 1. added tokens matched on the raw text (those with normalized = false)
    std::vector<piece> stage1;
    split_added(*this, raw_by_byte_, !raw_added.empty(), {text, -1, true}, stage1);
    // 2. the rest normalized, then the added tokens with normalized = true matched on the normalized text
    std::vector<piece> pieces;
    for (piece& p : stage1) {
        if (p.id >= 0) {
            pieces.push_back(std::move(p));
            continue;
        }
        p.text = normalize(*this, std::move(p.text));
        split_added(*this, normalized_by_byte_, !normalized_added.empty(), p, pieces);
    }
    // 3. pre-tokenizers, one after the other, on the pieces that are not added tokens
    for (const pre_tokenizer_step& st : pre_tokenizers) {
        std::vector<piece> next;
        next.reserve(pieces.size());
        for (piece& p : pieces) {
            if (p.id >= 0) next.push_back(std::move(p));
            else pre_tokenize_one(*this, st, std::move(p), next);
        }
        pieces = std::move(next);
    }
    // 4. the model
    for (const piece& p : pieces) {
        if (p.id >= 0) ids.push_back(p.id);
        else bpe(model, p.text, ids);
    }
    return ids;
}

std::string hf_pipeline::decode(const std::vector<int>& ids, bool skip_special) const {
    std::vector<std::string> toks;
    toks.reserve(ids.size());
    for (int id : ids) {
        if (id < 0 || size_t(id) >= id_to_token.size())
            throw error(error_code::invalid_argument,
                        "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                            std::to_string(id_to_token.size()) + ") of " + origin,
                        "the ids come from a different tokenizer or model");
        if (skip_special && skip_in_decode[size_t(id)]) continue;
        if (id_to_token[size_t(id)].empty()) continue; // an id without a token (a hole in the vocab)
        toks.push_back(id_to_token[size_t(id)]);
    }
    if (!has_decoder) {
        std::string out;
        for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
        return out;
    }
    for (const decoder_step& d : decoders) toks = decode_step(d, std::move(toks));
    std::string out;
    for (const std::string& t : toks) out += t;
    return out;
}

void hf_pipeline::finish() {
    int max_id = -1;
    for (const auto& [t, id] : model.vocab) max_id = std::max(max_id, id);
    for (const added_token& a : added) max_id = std::max(max_id, a.id);
    id_to_token.assign(size_t(max_id + 1), std::string());
    id_is_special.assign(size_t(max_id + 1), 0);
    for (const auto& [t, id] : model.vocab) id_to_token[size_t(id)] = t;
    raw_added.clear();
    normalized_added.clear();
    for (size_t i = 0; i < added.size(); ++i) {
        added_token& a = added[i];
        // added_vocabulary.rs refresh_added_tokens: normalized tokens are matched by their normalized content, and
        // id_to_token gives that normalized content too (tokenizers 0.23: "[Tk10]" decodes as "[tk10]" under a
        // Lowercase normalizer)
        a.match = a.normalized ? normalize(*this, a.content) : a.content;
        id_to_token[size_t(a.id)] = a.normalized && !a.match.empty() ? a.match : a.content;
        if (a.special) id_is_special[size_t(a.id)] = 1;
        added_by_content[a.content] = a.id;
        if (a.match.empty()) continue;
        (a.normalized ? normalized_added : raw_added).push_back(int(i));
    }
    // decode(skip_special_tokens) skips a token whose text is a special token's content (tokenizer/mod.rs
    // decode: added_vocabulary.is_special_token(token)); a normalized special token's text is its normalized content
    std::unordered_map<std::string, int> special_contents;
    for (const added_token& a : added)
        if (a.special) special_contents[a.content] = a.id;
    skip_in_decode.assign(id_to_token.size(), 0);
    for (size_t id = 0; id < id_to_token.size(); ++id)
        skip_in_decode[id] = special_contents.count(id_to_token[id]) ? 1 : 0;
    auto index = [&](const std::vector<int>& which, std::vector<std::vector<int>>& by_byte) {
        by_byte.assign(256, {});
        for (int i : which) by_byte[static_cast<unsigned char>(added[size_t(i)].match[0])].push_back(i);
        for (auto& v : by_byte)
            std::stable_sort(v.begin(), v.end(), [&](int x, int y) {
                return added[size_t(x)].match.size() > added[size_t(y)].match.size();
            });
    };
    index(raw_added, raw_by_byte_);
    index(normalized_added, normalized_by_byte_);
    std::fill(std::begin(model.byte_ids), std::end(model.byte_ids), -1);
    char name[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        auto it = model.vocab.find(name);
        if (it != model.vocab.end()) model.byte_ids[b] = it->second;
    }
    model.unk_id = -1;
    if (model.unk_token) {
        auto it = model.vocab.find(*model.unk_token);
        if (it != model.vocab.end()) model.unk_id = it->second;
    }
}

} // namespace qls::tok
