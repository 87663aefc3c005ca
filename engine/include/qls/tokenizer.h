// tokenizer — the SentencePiece tokenizer.model of a LLaMA checkpoint (BPE/unigram, byte fallback), via libsentencepiece.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qls {

class tokenizer {
public:
    // Loads a SentencePiece model file; throws qls::error naming the file when missing or not a model.
    static tokenizer load(const std::string& path);

    std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos = false) const;
    // Text of the ids; BOS/EOS/control ids produce nothing; the leading space of the first piece is dropped.
    std::string decode(const std::vector<int>& ids) const;
    std::string piece(int id) const; // raw piece, e.g. "▁Once" or "<0x0A>"

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
