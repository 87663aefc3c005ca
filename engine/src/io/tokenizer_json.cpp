// tokenizer_json — reads a Hugging Face tokenizer.json (format of tokenizers 0.23's serde: models/bpe/serialization.rs,
// normalizers/, pre_tokenizers/, processors/template.rs, decoders/) and tokenizer_config.json's BOS/EOS policy into a
// tok::hf_pipeline; also builds the pipeline of a GGUF "gpt2" vocabulary (llama.cpp src/llama-vocab.cpp).
#include "io/tokenizer_internal.h"
#include "qls/error.h"
#include "qls/json_input.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace qls::tok {

using json = nlohmann::json;

namespace {

constexpr const char* k_hint = "the tokenizer file is damaged or was not written by Hugging Face tokenizers; "
                               "download tokenizer.json again from the model repository";
constexpr int k_max_nesting = 16; // Sequence inside Sequence

// The GPT-2 pre-tokenizer regex (pre_tokenizers/byte_level.rs).
const char* const k_gpt2_regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Rust regex \w+|[^\w\s]+ (pre_tokenizers/whitespace.rs) in PCRE2 terms: \w = Alphabetic, M, Nd, Pc, Join_Control;
// \s = White_Space.
const char* const k_whitespace_regex =
    R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\s\x{85}]+)";

struct reader {
    const std::string& origin;

    [[noreturn]] void fail(const std::string& where, const std::string& problem,
                           error_code code = error_code::format) const {
        throw error(code, origin + ": " + where + " " + problem, k_hint);
    }
    const json& need(const json& obj, const char* key, const std::string& where) const {
        if (!obj.is_object()) fail(where, "must be a JSON object, found " + json_shown(obj));
        auto it = obj.find(key);
        if (it == obj.end()) fail(where, std::string("has no \"") + key + "\"");
        return *it;
    }
    std::string str(const json& obj, const char* key, const std::string& where) const {
        const json& v = need(obj, key, where);
        if (!v.is_string()) fail(where + "." + key, "must be a string, found " + json_shown(v));
        return v.get<std::string>();
    }
    std::optional<std::string> opt_str(const json& obj, const char* key, const std::string& where) const {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return std::nullopt;
        if (!it->is_string()) fail(where + "." + key, "must be a string or null, found " + json_shown(*it));
        return it->get<std::string>();
    }
    bool flag(const json& obj, const char* key, const std::string& where, bool fallback) const {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return fallback;
        if (!it->is_boolean()) fail(where + "." + key, "must be true or false, found " + json_shown(*it));
        return it->get<bool>();
    }
    int64_t integer(const json& v, const std::string& where, int64_t lo, int64_t hi) const {
        if (!v.is_number_integer()) fail(where, "must be an integer, found " + json_shown(v));
        const int64_t x = v.is_number_unsigned() ? int64_t(std::min<uint64_t>(v.get<uint64_t>(), uint64_t(INT64_MAX)))
                                                 : v.get<int64_t>();
        if (x < lo || x > hi)
            fail(where,
                 "is " + std::to_string(x) + ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return x;
    }
    std::string type_of(const json& obj, const std::string& where) const { return str(obj, "type", where); }
    // {"String": s} or {"Regex": r}: sets literal or compiles the regex
    void pattern(const json& obj, const std::string& where, std::string& literal,
                 std::shared_ptr<const regex>& re) const {
        const json& p = need(obj, "pattern", where);
        if (p.is_object() && p.contains("Regex") && p["Regex"].is_string())
            re = std::make_shared<regex>(p["Regex"].get<std::string>(), origin);
        else if (p.is_object() && p.contains("String") && p["String"].is_string())
            literal = p["String"].get<std::string>();
        else fail(where + ".pattern", "must be {\"String\": ...} or {\"Regex\": ...}, found " + json_shown(p));
    }
    split_behavior behavior(const json& obj, const std::string& where) const {
        auto it = obj.find("behavior");
        if (it == obj.end()) return split_behavior::isolated;
        const std::string b = it->is_string() ? it->get<std::string>() : std::string();
        if (b == "Removed") return split_behavior::removed;
        if (b == "Isolated") return split_behavior::isolated;
        if (b == "MergedWithPrevious") return split_behavior::merged_with_previous;
        if (b == "MergedWithNext") return split_behavior::merged_with_next;
        if (b == "Contiguous") return split_behavior::contiguous;
        fail(where + ".behavior", "is " + json_shown(*it) +
                                      "; expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
    }
    prepend_scheme scheme(const json& obj, const std::string& where) const {
        auto it = obj.find("prepend_scheme");
        if (it == obj.end() || it->is_null()) // files before tokenizers 0.19: add_prefix_space
            return flag(obj, "add_prefix_space", where, true) ? prepend_scheme::always : prepend_scheme::never;
        const std::string s = it->is_string() ? it->get<std::string>() : std::string();
        if (s == "always") return prepend_scheme::always;
        if (s == "first") return prepend_scheme::first;
        if (s == "never") return prepend_scheme::never;
        fail(where + ".prepend_scheme", "is " + json_shown(*it) + "; expected \"always\", \"first\" or \"never\"");
    }
    char32_t one_char(const std::string& s, const std::string& where) const {
        size_t i = 0;
        if (s.empty()) fail(where, "is empty; expected one character");
        const char32_t c = next_char(s, i);
        if (i != s.size()) fail(where, "is \"" + s + "\"; expected one character");
        return c;
    }
    [[noreturn]] void unknown(const std::string& what, const std::string& type, const char* supported) const {
        throw error(error_code::unsupported, origin + ": " + what + " type \"" + type + "\" is not supported",
                    std::string("supported: ") + supported + "; use a model whose tokenizer uses those");
    }
    void check_steps(size_t n, const std::string& where) const {
        if (n > max_pipeline_steps)
            fail(where, "has more than " + std::to_string(max_pipeline_steps) + " steps", error_code::format);
    }
    void check_nesting(int depth, const std::string& where) const {
        if (depth > k_max_nesting) fail(where, "nests Sequences too deeply");
    }
    // The type of a pipeline step at Sequence depth `depth`, the pipeline holding n steps so far (both bounded).
    std::string step_type(const json& j, const std::string& where, int depth, size_t n) const {
        check_nesting(depth, where);
        check_steps(n, where);
        return type_of(j, where);
    }
    // Each element of a Sequence's `key` array handed to item(element, where it is).
    template <class item_parser>
    void sequence(const json& j, const char* key, const std::string& where, item_parser item) const {
        const json& list = need(j, key, where);
        if (!list.is_array()) fail(where + "." + key, "must be an array");
        for (size_t i = 0; i < list.size(); ++i) item(list[i], where + "." + key + "[" + std::to_string(i) + "]");
    }
};

void parse_normalizer(const reader& r, const json& j, const std::string& where, int depth,
                      std::vector<normalizer_step>& out) {
    if (j.is_null()) return;
    const std::string t = r.step_type(j, where, depth, out.size());
    if (t == "Sequence")
        return r.sequence(j, "normalizers", where, [&](const json& item, const std::string& at) {
            parse_normalizer(r, item, at, depth + 1, out);
        });
    normalizer_step st{};
    if (t == "NFC") st.kind = normalizer_step::nfc;
    else if (t == "NFD") st.kind = normalizer_step::nfd;
    else if (t == "NFKC") st.kind = normalizer_step::nfkc;
    else if (t == "NFKD") st.kind = normalizer_step::nfkd;
    else if (t == "Lowercase") st.kind = normalizer_step::lowercase;
    else if (t == "StripAccents") st.kind = normalizer_step::strip_accents;
    else if (t == "ByteLevel") st.kind = normalizer_step::byte_level;
    else if (t == "Prepend") {
        st.kind = normalizer_step::prepend;
        st.a = r.str(j, "prepend", where);
    } else if (t == "Replace") {
        st.kind = normalizer_step::replace;
        r.pattern(j, where, st.a, st.re);
        st.b = r.str(j, "content", where);
    } else if (t == "Strip") {
        st.kind = normalizer_step::strip;
        st.left = r.flag(j, "strip_left", where, true);
        st.right = r.flag(j, "strip_right", where, true);
    } else
        r.unknown("normalizer", t,
                  "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, StripAccents, ByteLevel, Sequence");
    out.push_back(std::move(st));
}

void parse_pre_tokenizer(const reader& r, const json& j, const std::string& where, int depth,
                         std::vector<pre_tokenizer_step>& out) {
    if (j.is_null()) return;
    const std::string t = r.step_type(j, where, depth, out.size());
    if (t == "Sequence")
        return r.sequence(j, "pretokenizers", where, [&](const json& item, const std::string& at) {
            parse_pre_tokenizer(r, item, at, depth + 1, out);
        });
    pre_tokenizer_step st{};
    if (t == "Split") {
        st.kind = pre_tokenizer_step::split;
        r.pattern(j, where, st.literal, st.re);
        st.behavior = r.behavior(j, where);
        st.invert = r.flag(j, "invert", where, false);
    } else if (t == "ByteLevel") {
        st.kind = pre_tokenizer_step::byte_level;
        st.add_prefix_space = r.flag(j, "add_prefix_space", where, true);
        if (r.flag(j, "use_regex", where, true)) st.re = std::make_shared<regex>(k_gpt2_regex, r.origin);
    } else if (t == "Digits") {
        st.kind = pre_tokenizer_step::digits;
        st.individual_digits = r.flag(j, "individual_digits", where, false);
    } else if (t == "Metaspace") {
        st.kind = pre_tokenizer_step::metaspace;
        st.replacement_utf8 = r.str(j, "replacement", where);
        st.replacement = r.one_char(st.replacement_utf8, where + ".replacement");
        st.scheme = r.scheme(j, where);
        st.split_on_replacement = r.flag(j, "split", where, true);
    } else if (t == "Whitespace") {
        st.kind = pre_tokenizer_step::whitespace;
        st.re = std::make_shared<regex>(k_whitespace_regex, r.origin);
    } else if (t == "WhitespaceSplit") st.kind = pre_tokenizer_step::whitespace_split;
    else if (t == "Punctuation") {
        st.kind = pre_tokenizer_step::punctuation;
        st.behavior = r.behavior(j, where);
    } else
        r.unknown("pre-tokenizer", t,
                  "Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit, Punctuation, Sequence");
    out.push_back(std::move(st));
}

void parse_decoder(const reader& r, const json& j, const std::string& where, int depth,
                   std::vector<decoder_step>& out) {
    if (j.is_null()) return;
    const std::string t = r.step_type(j, where, depth, out.size());
    if (t == "Sequence")
        return r.sequence(j, "decoders", where,
                          [&](const json& item, const std::string& at) { parse_decoder(r, item, at, depth + 1, out); });
    decoder_step d{};
    if (t == "ByteLevel") d.kind = decoder_step::byte_level;
    else if (t == "ByteFallback") d.kind = decoder_step::byte_fallback;
    else if (t == "Fuse") d.kind = decoder_step::fuse;
    else if (t == "Metaspace") {
        d.kind = decoder_step::metaspace;
        d.replacement = r.one_char(r.str(j, "replacement", where), where + ".replacement");
        d.scheme = r.scheme(j, where);
    } else if (t == "Strip") {
        d.kind = decoder_step::strip;
        d.a = r.str(j, "content", where);
        r.one_char(d.a, where + ".content");
        d.start = size_t(r.integer(r.need(j, "start", where), where + ".start", 0, 1 << 20));
        d.stop = size_t(r.integer(r.need(j, "stop", where), where + ".stop", 0, 1 << 20));
    } else if (t == "Replace") {
        d.kind = decoder_step::replace;
        r.pattern(j, where, d.a, d.re);
        d.b = r.str(j, "content", where);
    } else if (t == "BPEDecoder") {
        d.kind = decoder_step::bpe_suffix;
        d.a = r.opt_str(j, "suffix", where).value_or("</w>");
    } else r.unknown("decoder", t, "ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, BPEDecoder, Sequence");
    out.push_back(std::move(d));
}

// The ids a post-processor puts before and after a single sequence (processors/template.rs, roberta.rs, bert.rs).
// Returns false when it adds nothing by its own configuration (ByteLevel, null).
bool parse_post_processor(const reader& r, const json& j, const std::string& where, int depth,
                          const std::unordered_map<std::string, int>& ids_by_token, std::vector<int>& prefix,
                          std::vector<int>& suffix) {
    if (j.is_null()) return false;
    r.check_nesting(depth, where);
    const std::string t = r.type_of(j, where);
    if (t == "ByteLevel") return false;
    if (t == "Sequence") {
        bool any = false;
        r.sequence(j, "processors", where, [&](const json& item, const std::string& at) {
            std::vector<int> p, s;
            if (parse_post_processor(r, item, at, depth + 1, ids_by_token, p, s)) {
                any = true;
                prefix.insert(prefix.begin(), p.begin(), p.end());
                suffix.insert(suffix.end(), s.begin(), s.end());
            }
        });
        return any;
    }
    if (t == "RobertaProcessing" || t == "BertProcessing") {
        auto pair_id = [&](const char* key) {
            const json& v = r.need(j, key, where);
            if (!v.is_array() || v.size() != 2 || !v[0].is_string())
                r.fail(where + "." + key, "must be [token, id], found " + json_shown(v));
            return int(r.integer(v[1], where + "." + key + "[1]", 0, int64_t(max_vocab)));
        };
        prefix.push_back(pair_id("cls"));
        suffix.push_back(pair_id("sep"));
        return true;
    }
    if (t == "TemplateProcessing") {
        const json& single = r.need(j, "single", where);
        const json& specials = r.need(j, "special_tokens", where);
        if (!single.is_array()) r.fail(where + ".single", "must be an array");
        if (!specials.is_object()) r.fail(where + ".special_tokens", "must be an object");
        bool seen_sequence = false;
        for (size_t i = 0; i < single.size(); ++i) {
            const std::string w = where + ".single[" + std::to_string(i) + "]";
            const json& item = single[i];
            if (item.is_object() && item.contains("Sequence")) {
                seen_sequence = true;
                continue;
            }
            if (!item.is_object() || !item.contains("SpecialToken"))
                r.fail(w, "must be {\"SpecialToken\": ...} or {\"Sequence\": ...}, found " + json_shown(item));
            const std::string name = r.str(item["SpecialToken"], "id", w + ".SpecialToken");
            auto it = specials.find(name);
            if (it == specials.end()) r.fail(w, "names \"" + name + "\", which special_tokens does not define");
            const json& ids = r.need(*it, "ids", where + ".special_tokens." + name);
            if (!ids.is_array()) r.fail(where + ".special_tokens." + name + ".ids", "must be an array");
            for (const json& id : ids) {
                const int v = int(r.integer(id, where + ".special_tokens." + name + ".ids", 0, int64_t(max_vocab)));
                (seen_sequence ? suffix : prefix).push_back(v);
            }
        }
        (void)ids_by_token;
        return true;
    }
    r.unknown("post-processor", t, "TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence");
}

void parse_bpe(const reader& r, const json& m, bpe_model& out) {
    const std::string where = "model";
    if (!m.is_object()) r.fail(where, "must be a JSON object, found " + json_shown(m));
    if (m.contains("type")) {
        const std::string t = r.type_of(m, where);
        if (t != "BPE") r.unknown("model", t, "BPE");
    } else if (!m.contains("merges")) {
        r.fail(where, "has no \"type\" and no \"merges\"; only BPE models are supported", error_code::unsupported);
    }
    if (m.contains("dropout") && !m["dropout"].is_null()) {
        if (!m["dropout"].is_number()) r.fail(where + ".dropout", "must be a number or null");
        if (m["dropout"].get<double>() > 0.0)
            throw error(error_code::unsupported,
                        r.origin + ": model.dropout is " + json_shown(m["dropout"]) +
                            ": BPE dropout makes encoding random",
                        "set \"dropout\": null in tokenizer.json (dropout is for training a tokenizer)");
    }
    out.unk_token = r.opt_str(m, "unk_token", where);
    out.fuse_unk = r.flag(m, "fuse_unk", where, false);
    out.byte_fallback = r.flag(m, "byte_fallback", where, false);
    out.ignore_merges = r.flag(m, "ignore_merges", where, false);
    out.continuing_subword_prefix = r.opt_str(m, "continuing_subword_prefix", where).value_or("");
    out.end_of_word_suffix = r.opt_str(m, "end_of_word_suffix", where).value_or("");

    const json& vocab = r.need(m, "vocab", where);
    if (!vocab.is_object()) r.fail(where + ".vocab", "must be an object {token: id}, found " + json_shown(vocab));
    if (vocab.size() > max_vocab)
        r.fail(where + ".vocab", "has " + std::to_string(vocab.size()) + " tokens; at most " +
                                     std::to_string(max_vocab) + " are accepted");
    out.vocab.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (it.key().size() > max_token_bytes)
            r.fail(where + ".vocab", "has a token of " + std::to_string(it.key().size()) + " bytes; at most " +
                                         std::to_string(max_token_bytes) + " are accepted");
        out.vocab[it.key()] = int(r.integer(it.value(), where + ".vocab[\"" + it.key().substr(0, 40) + "\"]", 0,
                                            int64_t(max_vocab) - 1));
    }

    const json& merges = r.need(m, "merges", where);
    if (!merges.is_array()) r.fail(where + ".merges", "must be an array, found " + json_shown(merges));
    if (merges.size() > max_merges)
        r.fail(where + ".merges", "has " + std::to_string(merges.size()) + " rules; at most " +
                                      std::to_string(max_merges) + " are accepted");
    out.merges.reserve(merges.size());
    const size_t prefix_len = out.continuing_subword_prefix.size();
    for (size_t i = 0; i < merges.size(); ++i) {
        const std::string w = where + ".merges[" + std::to_string(i) + "]";
        std::string a, b;
        const json& e = merges[i];
        if (e.is_string()) { // "a b" (models/bpe/serialization.rs: exactly one space)
            const std::string s = e.get<std::string>();
            const size_t sp = s.find(' ');
            if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                r.fail(w, "is " + json_shown(e) + "; a merge is two tokens separated by one space");
            a = s.substr(0, sp);
            b = s.substr(sp + 1);
        } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
            a = e[0].get<std::string>();
            b = e[1].get<std::string>();
        } else r.fail(w, "is " + json_shown(e) + "; a merge is \"a b\" or [\"a\", \"b\"]");
        auto ia = out.vocab.find(a), ib = out.vocab.find(b);
        if (ia == out.vocab.end()) r.fail(w, "names \"" + a.substr(0, 60) + "\", which is not in model.vocab");
        if (ib == out.vocab.end()) r.fail(w, "names \"" + b.substr(0, 60) + "\", which is not in model.vocab");
        const std::string merged = a + (prefix_len && b.compare(0, prefix_len, out.continuing_subword_prefix) == 0
                                            ? b.substr(prefix_len)
                                            : b);
        auto im = out.vocab.find(merged);
        if (im == out.vocab.end())
            r.fail(w, "merges into \"" + merged.substr(0, 60) + "\", which is not in model.vocab");
        out.merges[(uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second)] = {int(i), im->second};
    }
}

void parse_added(const reader& r, const json& list, std::vector<added_token>& out) {
    if (list.is_null()) return;
    if (!list.is_array()) r.fail("added_tokens", "must be an array, found " + json_shown(list));
    if (list.size() > max_added_tokens)
        r.fail("added_tokens", "has " + std::to_string(list.size()) + " entries; at most " +
                                   std::to_string(max_added_tokens) + " are accepted");
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string w = "added_tokens[" + std::to_string(i) + "]";
        const json& t = list[i];
        added_token a;
        a.id = int(r.integer(r.need(t, "id", w), w + ".id", 0, int64_t(max_vocab) - 1));
        a.content = r.str(t, "content", w);
        if (a.content.empty() || a.content.size() > max_token_bytes)
            r.fail(w + ".content", "must be 1 to " + std::to_string(max_token_bytes) + " bytes long");
        a.single_word = r.flag(t, "single_word", w, false);
        a.lstrip = r.flag(t, "lstrip", w, false);
        a.rstrip = r.flag(t, "rstrip", w, false);
        a.special = r.flag(t, "special", w, false);
        a.normalized = r.flag(t, "normalized", w, !a.special);
        out.push_back(std::move(a));
    }
}

std::optional<std::string> config_token(const reader& r, const json& cfg, const char* key) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
        return (*it)["content"].get<std::string>();
    r.fail(key, "must be a token string, {\"content\": ...} or null, found " + json_shown(*it));
}

int lookup(const hf_pipeline& p, const std::string& token) {
    auto a = p.added_by_content.find(token);
    if (a != p.added_by_content.end()) return a->second;
    auto v = p.model.vocab.find(token);
    return v == p.model.vocab.end() ? -1 : v->second;
}

void set_kind(hf_pipeline& p) {
    bool byte_level = false;
    for (const auto& st : p.pre_tokenizers) byte_level = byte_level || st.kind == pre_tokenizer_step::byte_level;
    p.kind = byte_level ? "byte-level BPE" : p.model.byte_fallback ? "BPE with byte fallback" : "BPE";
}

} // namespace

std::shared_ptr<hf_pipeline> parse_tokenizer_json(std::string_view text, const std::string& origin,
                                                  const std::string* config_text, const std::string& config_origin) {
    json_limits limits;
    limits.max_bytes = size_t(512) << 20;
    const json root = parse_json_input(text, origin, k_hint, limits);
    reader r{origin};
    if (!root.is_object()) r.fail("the top level", "must be a JSON object, found " + json_shown(root));
    auto p = std::make_shared<hf_pipeline>();
    p->origin = origin;
    parse_bpe(r, r.need(root, "model", "the top level"), p->model);
    if (root.contains("added_tokens")) parse_added(r, root["added_tokens"], p->added);
    if (root.contains("normalizer")) parse_normalizer(r, root["normalizer"], "normalizer", 0, p->normalizers);
    if (root.contains("pre_tokenizer"))
        parse_pre_tokenizer(r, root["pre_tokenizer"], "pre_tokenizer", 0, p->pre_tokenizers);
    if (root.contains("decoder") && !root["decoder"].is_null()) {
        p->has_decoder = true;
        parse_decoder(r, root["decoder"], "decoder", 0, p->decoders);
    }
    p->finish();

    json cfg = json::object();
    if (config_text) {
        cfg = parse_json_input(*config_text, config_origin,
                               "download tokenizer_config.json again from the model repository, or remove it");
        if (!cfg.is_object())
            throw error(error_code::format, config_origin + ": the top level must be a JSON object",
                        "download tokenizer_config.json again from the model repository, or remove it");
    }
    reader rc{config_origin};
    const auto bos_token = config_token(rc, cfg, "bos_token");
    const auto eos_token = config_token(rc, cfg, "eos_token");
    if (bos_token) p->bos = lookup(*p, *bos_token);
    if (eos_token) p->eos = lookup(*p, *eos_token);

    // BOS/EOS policy: the post-processor's single template when it has one (what a fast tokenizer applies), else
    // tokenizer_config.json's add_bos_token / add_eos_token.
    const bool templated = root.contains("post_processor") &&
                           parse_post_processor(r, root["post_processor"], "post_processor", 0, p->added_by_content,
                                                p->prefix_ids, p->suffix_ids);
    if (!templated) {
        if (rc.flag(cfg, "add_bos_token", config_origin, false)) {
            if (p->bos < 0)
                throw error(error_code::config,
                            config_origin + ": add_bos_token is true but bos_token names no token of " + origin,
                            "set bos_token to the model's BOS token, or add_bos_token to false");
            p->prefix_ids.push_back(p->bos);
        }
        if (rc.flag(cfg, "add_eos_token", config_origin, false)) {
            if (p->eos < 0)
                throw error(error_code::config,
                            config_origin + ": add_eos_token is true but eos_token names no token of " + origin,
                            "set eos_token to the model's EOS token, or add_eos_token to false");
            p->suffix_ids.push_back(p->eos);
        }
    }
    if (p->bos < 0 && !p->prefix_ids.empty()) p->bos = p->prefix_ids.front();
    if (p->eos < 0 && !p->suffix_ids.empty()) p->eos = p->suffix_ids.back();
    for (int id : p->prefix_ids)
        if (size_t(id) >= p->id_to_token.size())
            r.fail("post_processor", "adds id " + std::to_string(id) + ", outside the vocabulary");
    for (int id : p->suffix_ids)
        if (size_t(id) >= p->id_to_token.size())
            r.fail("post_processor", "adds id " + std::to_string(id) + ", outside the vocabulary");
    set_kind(*p);
    return p;
}

// ---- GGUF "gpt2" vocabularies ---------------------------------------------------------------------------
namespace {

// The pre-tokenizer of a GGUF tokenizer.ggml.pre, as the Hugging Face tokenizer.json of those models has it
// (regexes from the models' files; llama.cpp src/llama-vocab.cpp llm_tokenizer_bpe lists the same per pre type).
struct pre_entry {
    std::vector<std::string> regexes; // each a Split(Isolated) before ByteLevel(use_regex = false)
    bool digits_then_gpt2 = false;    // Digits(individual) + ByteLevel(use_regex = true)
    bool gpt2 = false;                // ByteLevel(use_regex = true)
    bool ignore_merges = false;
    bool nfc = false;
};

const char* const k_llama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const k_qwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const k_tekken =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::optional<pre_entry> pre_for(const std::string& pre) {
    pre_entry e;
    if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "falcon3" || pre == "dbrx" ||
        pre == "smaug-bpe") {
        e.regexes = {k_llama3};
        e.ignore_merges = pre != "dbrx" && pre != "smaug-bpe";
    } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
        e.regexes = {k_qwen2};
        e.nfc = true;
    } else if (pre == "tekken") {
        e.regexes = {k_tekken};
        e.ignore_merges = true;
    } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell" || pre == "exaone") {
        e.digits_then_gpt2 = true;
    } else if (pre == "gpt-2" || pre == "phi-2" || pre == "jina-es" || pre == "jina-de" || pre == "roberta-bpe") {
        e.gpt2 = true;
    } else if (pre == "default") {
        // llama.cpp LLAMA_VOCAB_PRE_TYPE_DEFAULT
        e.regexes = {R"([\p{P}\$\+<=>\^~\|]+)",
                     R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))", R"(\p{N}+)",
                     R"([0-9][0-9][0-9])"};
    } else if (pre == "deepseek-llm") {
        e.regexes = {"[\r\n]",
                     "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
                     "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
                     "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
                     "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
                     "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
                     "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
                     "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
                     "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
                     "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"
                     "\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
                     "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
                     "\U0001e900-\U0001e943]+",
                     "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
                     "\\s+$",
                     "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
                     "\\p{N}+"};
    } else {
        return std::nullopt;
    }
    return e;
}

} // namespace

std::shared_ptr<hf_pipeline> gguf_byte_level_bpe(const std::vector<std::string>& tokens,
                                                 const std::vector<std::string>& merges,
                                                 const std::vector<int32_t>& token_types, const std::string& pre,
                                                 const std::string& origin) {
    const auto entry = pre_for(pre);
    if (!entry)
        throw error(error_code::unsupported,
                    origin + ": tokenizer.ggml.pre \"" + pre + "\" names a pre-tokenizer this build does not know",
                    "supported: llama-bpe/llama3, qwen2, smollm, starcoder, refact, tekken, gpt-2, default, "
                    "deepseek-llm; use the model's Hugging Face directory (tokenizer.json) instead");
    if (tokens.empty() || tokens.size() > max_vocab)
        throw error(error_code::format,
                    origin + ": tokenizer.ggml.tokens has " + std::to_string(tokens.size()) +
                        " tokens; expected 1 to " + std::to_string(max_vocab),
                    "the GGUF file is damaged; download it again");
    if (!token_types.empty() && token_types.size() != tokens.size())
        throw error(error_code::format,
                    origin + ": tokenizer.ggml.token_type has " + std::to_string(token_types.size()) + " entries for " +
                        std::to_string(tokens.size()) + " tokens",
                    "the GGUF file is damaged; download it again");
    json j;
    j["version"] = "1.0";
    json vocab = json::object();
    json added = json::array();
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i].size() > max_token_bytes)
            throw error(error_code::format, origin + ": tokenizer.ggml.tokens[" + std::to_string(i) + "] is too long",
                        "the GGUF file is damaged; download it again");
        vocab[tokens[i]] = int(i);
        const int type = token_types.empty() ? 1 : token_types[i];
        if (type == 3 || type == 4) // control -> special added token; user-defined -> added token
            added.push_back({{"id", int(i)},
                             {"content", tokens[i]},
                             {"single_word", false},
                             {"lstrip", false},
                             {"rstrip", false},
                             {"normalized", type == 4},
                             {"special", type == 3}});
    }
    json m = {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", entry->ignore_merges},
              {"vocab", std::move(vocab)},
              {"merges", merges}};
    j["model"] = std::move(m);
    j["added_tokens"] = std::move(added);
    j["normalizer"] = entry->nfc ? json{{"type", "NFC"}} : json(nullptr);
    json pretoks = json::array();
    for (const std::string& re : entry->regexes)
        pretoks.push_back(
            {{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}});
    if (entry->digits_then_gpt2) pretoks.push_back({{"type", "Digits"}, {"individual_digits", true}});
    pretoks.push_back({{"type", "ByteLevel"},
                       {"add_prefix_space", false},
                       {"trim_offsets", false},
                       {"use_regex", entry->gpt2 || entry->digits_then_gpt2}});
    j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", std::move(pretoks)}};
    j["post_processor"] = nullptr;
    j["decoder"] = {{"type", "ByteLevel"}};
    return parse_tokenizer_json(j.dump(), origin, nullptr, origin);
}

} // namespace qls::tok
