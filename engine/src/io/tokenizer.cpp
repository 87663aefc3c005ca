// tokenizer and detokenizer: SentencePiece tokenizer.model via libsentencepiece, plus UTF-8-safe streaming decode.
#include "qls/tokenizer.h"
#include "qls/error.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace qls {

struct tokenizer::impl {
    sentencepiece::SentencePieceProcessor sp;
    std::string path;
    int vocab = 0;
};

namespace {

[[noreturn]] void bad_id(const std::string& path, int id, int vocab) {
    throw error(error_code::invalid_argument,
                "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ") of " +
                    path,
                "the ids come from a different tokenizer or model");
}

// The byte value of a byte-fallback piece "<0xHH>", or -1 for any other piece.
int byte_piece_value(const std::string& piece) {
    if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    int hi = hex(piece[3]), lo = hex(piece[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Length of the trailing part of `b` that is a proper prefix of a valid UTF-8 sequence (a character that is
// not finished yet); 0 when b ends on a character boundary or in bytes that can never become valid.
// Valid sequences per RFC 3629 section 4 (second-byte ranges for E0, ED, F0, F4).
size_t incomplete_utf8_tail(const std::string& b) {
    const size_t n = b.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        unsigned char lead = static_cast<unsigned char>(b[n - back]);
        if ((lead & 0xC0) == 0x80) continue; // continuation byte: look further back for the lead
        size_t need = lead >= 0xC2 && lead <= 0xDF   ? 2
                      : lead >= 0xE0 && lead <= 0xEF ? 3
                      : lead >= 0xF0 && lead <= 0xF4 ? 4
                                                     : 0;
        if (need == 0 || back >= need) return 0; // ASCII, invalid lead, or a complete sequence
        if (back >= 2) {
            unsigned char second = static_cast<unsigned char>(b[n - back + 1]);
            unsigned char lo = 0x80, hi = 0xBF;
            if (lead == 0xE0) lo = 0xA0;
            if (lead == 0xED) hi = 0x9F;
            if (lead == 0xF0) lo = 0x90;
            if (lead == 0xF4) hi = 0x8F;
            if (second < lo || second > hi) return 0;
        }
        return back;
    }
    return 0;
}

} // namespace

tokenizer tokenizer::load(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        throw error(error_code::io, "tokenizer file " + path + " not found",
                    "copy tokenizer.model from the original model repository");
    {
        std::ifstream probe(path, std::ios::binary);
        if (!probe) throw error(error_code::io, "cannot open tokenizer file " + path, "check the file's permissions");
    }
    auto m = std::make_shared<impl>();
    m->path = path;
    sentencepiece::util::Status status;
    try {
        status = m->sp.Load(path);
    } catch (const std::exception& e) {
        // libsentencepiece throws from inside Load for some malformed models (its trie builder, darts_clone, refuses
        // a piece that starts with a NUL byte: "failed to insert key: zero-length key").
        throw error(error_code::format, path + " is not a usable SentencePiece model (" + e.what() + ")",
                    "tokenizer.model must be the SentencePiece model of the checkpoint; copy it again from the "
                    "original model repository");
    }
    if (!status.ok())
        throw error(error_code::format, path + " is not a SentencePiece model (" + status.ToString() + ")",
                    "tokenizer.model must be the SentencePiece model of the checkpoint; copy it again from the "
                    "original model repository");
    m->vocab = m->sp.GetPieceSize();
    if (m->vocab <= 0)
        throw error(error_code::format, path + " is a SentencePiece model without pieces",
                    "copy tokenizer.model again from the original model repository");
    tokenizer t;
    t.impl_ = std::move(m);
    return t;
}

std::vector<int> tokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
    std::vector<int> ids;
    const auto status = impl_->sp.Encode(std::string(text), &ids);
    if (!status.ok())
        throw error(error_code::invalid_argument,
                    "cannot tokenize text with " + impl_->path + ": " + status.ToString());
    if (add_bos) {
        if (bos_id() < 0)
            throw error(error_code::invalid_argument, impl_->path + " defines no BOS token",
                        "encode without add_bos for this tokenizer");
        ids.insert(ids.begin(), bos_id());
    }
    if (add_eos) {
        if (eos_id() < 0)
            throw error(error_code::invalid_argument, impl_->path + " defines no EOS token",
                        "encode without add_eos for this tokenizer");
        ids.push_back(eos_id());
    }
    return ids;
}

std::string tokenizer::decode(const std::vector<int>& ids) const {
    // Control ids (<s>, </s>, <pad>) are dropped first, so the dummy-prefix space of the first text piece is
    // removed even after a BOS; DecodeIds turns runs of byte-fallback pieces (<0x0A>, ...) back into bytes
    // (invalid UTF-8 becomes U+FFFD per byte).
    std::vector<int> kept;
    kept.reserve(ids.size());
    for (int id : ids) {
        if (id < 0 || id >= impl_->vocab) bad_id(impl_->path, id, impl_->vocab);
        if (!impl_->sp.IsControl(id)) kept.push_back(id);
    }
    std::string text;
    const auto status = impl_->sp.Decode(kept, &text);
    if (!status.ok())
        throw error(error_code::invalid_argument, "cannot decode ids with " + impl_->path + ": " + status.ToString());
    return text;
}

std::string tokenizer::piece(int id) const {
    if (id < 0 || id >= impl_->vocab) bad_id(impl_->path, id, impl_->vocab);
    return impl_->sp.IdToPiece(id);
}

int tokenizer::vocab_size() const { return impl_->vocab; }
std::string tokenizer::kind() const { return "SentencePiece"; }
int tokenizer::bos_id() const { return impl_->sp.bos_id(); }
int tokenizer::eos_id() const { return impl_->sp.eos_id(); }
int tokenizer::unk_id() const { return impl_->sp.unk_id(); }
const std::string& tokenizer::path() const { return impl_->path; }

// ---- detokenizer -----------------------------------------------------------------------------------
// Decodes all ids so far and emits what lies beyond the text already emitted. Ids at the end that are
// byte-fallback pieces forming an unfinished UTF-8 character are held back (SentencePiece would render them as
// U+FFFD), as is any incomplete UTF-8 sequence at the end of the decoded text.
std::string detokenizer::push(int id) {
    ids_.push_back(id);
    std::string tail_bytes; // the byte values of the trailing run of byte-fallback ids
    size_t run = 0;
    for (size_t i = ids_.size(); i-- > 0;) {
        int b = byte_piece_value(tok_->piece(ids_[i]));
        if (b < 0) break;
        tail_bytes.insert(tail_bytes.begin(), char(b));
        ++run;
    }
    const size_t hold_ids = incomplete_utf8_tail(tail_bytes);
    QLS_ASSERT(hold_ids <= run);
    std::string text = hold_ids == 0
                           ? tok_->decode(ids_)
                           : tok_->decode(std::vector<int>(ids_.begin(), ids_.end() - std::ptrdiff_t(hold_ids)));
    text.resize(text.size() - incomplete_utf8_tail(text));
    if (text.size() <= emitted_) return {};
    std::string delta = text.substr(emitted_);
    emitted_ = text.size();
    return delta;
}

std::string detokenizer::flush() {
    std::string text = tok_->decode(ids_);
    std::string delta = text.size() > emitted_ ? text.substr(emitted_) : std::string();
    emitted_ = std::max(emitted_, text.size());
    return delta;
}

} // namespace qls
