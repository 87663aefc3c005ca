// tokenizer — a model's tokenizer: SentencePiece tokenizer.model (via libsentencepiece), Hugging Face tokenizer.json
// (byte-level BPE and the rest tokenizers does), or the vocabulary a GGUF file carries.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qls {

// A tokenizer as a GGUF file's metadata describes it (tokenizer.ggml.*; ggml docs/gguf.md).
struct gguf_vocab {
    std::string model;                // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    std::string pre;                  // tokenizer.ggml.pre: "llama-bpe", "qwen2", "smollm", "tekken", "gpt-2", ...
    std::vector<std::string> tokens;  // tokenizer.ggml.tokens
    std::vector<float> scores;        // tokenizer.ggml.scores (SentencePiece); may be empty
    std::vector<int32_t> token_types; // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
    std::vector<std::string> merges;  // tokenizer.ggml.merges ("a b"), gpt2 only
    int bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
    std::optional<bool> add_bos, add_eos; // tokenizer.ggml.add_bos_token / add_eos_token
    std::string origin;                   // the file, for messages
};

class tokenizer {
public:
    // Loads a SentencePiece model file; throws qls::error naming the file when missing or not a model.
    static tokenizer load(const std::string& path);
    // Loads a Hugging Face tokenizer.json (with tokenizer_config.json beside it when present: BOS/EOS policy,
    // added tokens); throws qls::error naming the file and the problem. Encodes as tokenizers 0.23 does: BPE models
    // (byte-level or with byte fallback), the normalizers, pre-tokenizers and decoders real files use.
    static tokenizer load_json(const std::string& path);
    // Builds the tokenizer a GGUF file's metadata describes; throws naming v.origin. "gpt2": byte-level BPE with
    // the pre-tokenizer `pre` names (llama-bpe/llama3, qwen2, smollm, starcoder, refact, tekken, gpt-2, default,
    // deepseek-llm), control (3) and user-defined (4) tokens as added tokens, BOS only when add_bos is true. "llama":
    // SentencePiece BPE over tokens/scores/types, BOS unless add_bos is false.
    static tokenizer from_gguf(const gguf_vocab& v);

    // "SentencePiece", "byte-level BPE", "BPE with byte fallback", "BPE"
    std::string kind() const;
    // The ids the model sees for `text` as a prompt: special tokens written in the text are recognized, BOS/EOS
    // added exactly when the tokenizer's own configuration adds them (tokenizer.json: the post-processor's single
    // template, else tokenizer_config.json's add_bos_token / add_eos_token; tokenizer.model: tokenizer_config.json,
    // BOS by default). Invalid UTF-8 in `text` is first replaced by U+FFFD per maximal subpart, as Python's
    // bytes.decode(errors="replace").
    std::vector<int> encode_prompt(std::string_view text) const;
    // The id of a token written out (e.g. "<|im_end|>"), or -1 when the vocabulary has no such token.
    int token_id(std::string_view token) const;
    bool is_special(int id) const; // control / special added tokens (decode writes nothing for them)

    // The ids of `text` with BOS/EOS only as asked (tokenizer.json: added tokens in the text recognized).
    std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos = false) const;
    // Text of the ids; BOS/EOS/control ids produce nothing; the leading space of the first piece is dropped.
    std::string decode(const std::vector<int>& ids) const;
    std::string piece(int id) const; // raw piece, e.g. "▁Once", "<0x0A>" or "Ġworld"

    int vocab_size() const;
    int bos_id() const;
    int eos_id() const;
    int unk_id() const;
    const std::string& path() const;

private:
    struct impl;
    std::shared_ptr<const impl> impl_;
};

// Turns a growing id sequence into text deltas for streaming output. Text is held back while the
// decoded tail is an incomplete UTF-8 sequence (byte-fallback pieces of one character arrive one by one).
class detokenizer {
public:
    explicit detokenizer(const tokenizer& tok) : tok_(&tok) {}
    std::string push(int id); // returns the new text that is now final
    std::string flush();      // whatever is left at the end
private:
    const tokenizer* tok_;
    std::vector<int> ids_;
    size_t emitted_ = 0;
};

} // namespace qls
