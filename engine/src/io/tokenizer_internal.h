// tokenizer_internal.h — the pieces behind qls::tokenizer: UTF-8 helpers, the PCRE2 wrapper and the Hugging Face
// tokenizer.json pipeline (added tokens, normalizers, pre-tokenizers, BPE model, post-processor, decoders).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qls::tok {

// ---- UTF-8 ------------------------------------------------------------------------------------------------
// Valid UTF-8 of `in`: each maximal subpart of an ill-formed sequence becomes U+FFFD (Unicode 15 section 3.9,
// "U+FFFD Substitution of Maximal Subparts"), as Python's bytes.decode(errors="replace") and Rust's
// String::from_utf8_lossy do.
std::string sanitize_utf8(std::string_view in);
// Decodes the character at b[i] of valid UTF-8; advances i.
char32_t next_char(std::string_view b, size_t& i);
void append_utf8(std::string& out, char32_t c);
// Rust char predicates (core::char, Unicode data via utf8proc).
bool is_whitespace(char32_t c);     // White_Space property
bool is_numeric(char32_t c);        // general category Nd, Nl or No
bool is_punctuation(char32_t c);    // ASCII punctuation or general category P*
bool is_combining_mark(char32_t c); // general category M*
bool is_word_char(char32_t c);      // regex \w: Alphabetic, M, Nd, Pc, Join_Control (approximated by categories)

// ---- PCRE2 ------------------------------------------------------------------------------------------------
// A compiled pattern (PCRE2_UTF | PCRE2_UCP, JIT when available) with match limits; matching is thread-safe.
class regex {
public:
    // Throws qls::error naming `origin` and the pattern when it does not compile.
    regex(const std::string& pattern, const std::string& origin);
    ~regex();
    regex(const regex&) = delete;
    regex& operator=(const regex&) = delete;
    // All non-overlapping matches [begin, end) in `text` (valid UTF-8), left to right; after an empty match the
    // search resumes one character later. Throws when a match limit is hit.
    std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
    const std::string& pattern() const { return pattern_; }

private:
    void* code_ = nullptr; // pcre2_code_8
    void* mctx_ = nullptr; // pcre2_match_context_8
    bool jit_ = false;
    std::string pattern_, origin_;
};

// ---- the tokenizer.json pipeline ---------------------------------------------------------------------------
enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };
enum class prepend_scheme { always, first, never };

struct normalizer_step {
    enum kind_t { nfc, nfd, nfkc, nfkd, lowercase, prepend, replace, strip, strip_accents, byte_level } kind;
    std::string a, b;                 // prepend: a; replace: literal pattern a (when !re) -> content b
    std::shared_ptr<const regex> re;  // replace with a Regex pattern
    bool left = false, right = false; // strip
};

struct pre_tokenizer_step {
    enum kind_t { split, byte_level, digits, metaspace, whitespace, whitespace_split, punctuation } kind;
    std::shared_ptr<const regex> re; // split (Regex pattern), byte_level (use_regex), whitespace
    std::string literal;             // split with a String pattern
    split_behavior behavior = split_behavior::isolated;
    bool invert = false;
    bool add_prefix_space = false; // byte_level
    bool individual_digits = false;
    char32_t replacement = U'\u2581'; // metaspace
    std::string replacement_utf8 = "\u2581";
    prepend_scheme scheme = prepend_scheme::always;
    bool split_on_replacement = true;
};

struct decoder_step {
    enum kind_t { byte_level, metaspace, byte_fallback, fuse, strip, replace, bpe_suffix } kind;
    std::string a, b;                // replace: a -> b (literal when !re); strip: content a; bpe_suffix: a
    std::shared_ptr<const regex> re; // replace with a Regex pattern
    size_t start = 0, stop = 0;      // strip
    char32_t replacement = U'\u2581';
    prepend_scheme scheme = prepend_scheme::always;
};

struct added_token {
    std::string content;
    std::string match; // content as matched: normalized by the tokenizer's normalizer when `normalized`
    int id = -1;
    bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

struct bpe_model {
    std::unordered_map<std::string, int> vocab;
    // (left id << 32 | right id) -> (rank, merged id); models/bpe/model.rs MergeMap
    std::unordered_map<uint64_t, std::pair<int, int>> merges;
    std::optional<std::string> unk_token;
    int unk_id = -1;
    bool fuse_unk = false, byte_fallback = false, ignore_merges = false;
    std::string continuing_subword_prefix, end_of_word_suffix;
    int byte_ids[256]; // ids of "<0xHH>" pieces (byte_fallback), -1 when missing
};

struct hf_pipeline {
    std::string origin; // the file (or GGUF file) for messages
    std::vector<added_token> added;
    std::vector<int> raw_added, normalized_added; // indices into `added`, matched before / after normalization
    std::vector<normalizer_step> normalizers;
    std::vector<pre_tokenizer_step> pre_tokenizers;
    bpe_model model;
    std::vector<decoder_step> decoders;
    bool has_decoder = false;
    std::vector<int> prefix_ids, suffix_ids; // what encode_prompt puts around the text
    std::vector<std::string> id_to_token;    // model vocab + added tokens, "" for ids without a token
    std::vector<char> id_is_special;         // special added tokens
    std::vector<char> skip_in_decode;        // ids decode(skip_special) leaves out
    std::unordered_map<std::string, int> added_by_content;
    int bos = -1, eos = -1;
    std::string kind;

    // The ids of `text` (any bytes; invalid UTF-8 replaced first), added tokens recognized, no BOS/EOS.
    std::vector<int> encode(std::string_view text) const;
    // tokenizers' decode(ids, skip_special_tokens).
    std::string decode(const std::vector<int>& ids, bool skip_special) const;
    // Completes id_to_token, id_is_special, added_by_content, the added-token match lists and the byte pieces.
    void finish();

    std::vector<std::vector<int>> raw_by_byte_, normalized_by_byte_; // added-token indices by first byte
};

// Parses tokenizer.json text (and tokenizer_config.json beside it, when `config_text` is set).
std::shared_ptr<hf_pipeline> parse_tokenizer_json(std::string_view text, const std::string& origin,
                                                  const std::string* config_text, const std::string& config_origin);
// The byte-level BPE a GGUF "gpt2" vocabulary describes (pre names llama.cpp's pre-tokenizer).
std::shared_ptr<hf_pipeline> gguf_byte_level_bpe(const std::vector<std::string>& tokens,
                                                 const std::vector<std::string>& merges,
                                                 const std::vector<int32_t>& token_types, const std::string& pre,
                                                 const std::string& origin);

// Limits on sizes read from files, checked before allocating.
constexpr size_t max_vocab = size_t(4) << 20;  // tokens
constexpr size_t max_merges = size_t(4) << 20; // merge rules
constexpr size_t max_token_bytes = 4096;       // one token's text
constexpr size_t max_added_tokens = 1u << 20;  // added tokens
constexpr size_t max_pipeline_steps = 64;      // normalizers / pre-tokenizers / decoders (after flattening)

} // namespace qls::tok
