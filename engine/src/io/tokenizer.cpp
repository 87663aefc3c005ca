// tokenizer and detokenizer: the facade over SentencePiece (tokenizer.model, or a GGUF "llama" vocabulary built into a
// ModelProto) and tokenizer.json pipelines (io/tokenizer_pipeline.cpp), plus UTF-8-safe streaming decode.
#include "qls/tokenizer.h"
#include "io/tokenizer_internal.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/json_input.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace qls {

struct tokenizer::impl {
    // exactly one of these: a SentencePiece model, or a tokenizer.json pipeline
    std::unique_ptr<sentencepiece::SentencePieceProcessor> sp;
    std::shared_ptr<const tok::hf_pipeline> hf;
    std::string path;
    int vocab = 0;
    // SentencePiece: the control and unknown pieces (as text) encode_prompt recognizes, longest first, and the
    // BOS/EOS policy (tokenizer_config.json beside tokenizer.model, or the GGUF metadata).
    std::vector<std::pair<std::string, int>> sp_specials;
    bool sp_add_bos = true, sp_add_eos = false;
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

// Reads add_bos_token / add_eos_token of a tokenizer_config.json beside a tokenizer.model (transformers'
// LlamaTokenizer defaults: BOS yes, EOS no).
void read_sp_policy(const std::string& model_path, bool& add_bos, bool& add_eos) {
    const std::string cfg_path = path_join(std::filesystem::path(model_path).parent_path().string(),
                                           "tokenizer_config.json");
    if (!path_is_file(cfg_path)) return;
    const nlohmann::json cfg = parse_json_input(read_file_text(cfg_path), cfg_path,
                                                "download tokenizer_config.json again from the model repository");
    if (!cfg.is_object()) return;
    auto flag = [&](const char* key, bool& out) {
        auto it = cfg.find(key);
        if (it == cfg.end() || it->is_null()) return;
        if (!it->is_boolean())
            throw error(error_code::config, cfg_path + ": " + key + " must be true or false, found " + json_shown(*it),
                        "fix tokenizer_config.json");
        out = it->get<bool>();
    };
    flag("add_bos_token", add_bos);
    flag("add_eos_token", add_eos);
}

// ---- a SentencePiece ModelProto from a GGUF vocabulary (sentencepiece_model.proto field numbers) --------
void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(char(0x80 | (v & 0x7F)));
        v >>= 7;
    }
    out.push_back(char(v));
}
void put_key(std::string& out, int field, int wire) { put_varint(out, uint64_t(field) << 3 | uint64_t(wire)); }
void put_bytes(std::string& out, int field, const std::string& b) {
    put_key(out, field, 2);
    put_varint(out, b.size());
    out += b;
}
void put_int(std::string& out, int field, int64_t v) { // int32 fields: negative values as 10-byte varints
    put_key(out, field, 0);
    put_varint(out, uint64_t(v));
}
void put_float(std::string& out, int field, float f) {
    put_key(out, field, 5);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    for (int k = 0; k < 4; ++k) out.push_back(char((u >> (8 * k)) & 0xFF));
}

// ModelProto { pieces = 1 {piece = 1, score = 2, type = 3}; trainer_spec = 2 {model_type = 3 (BPE = 2),
// vocab_size = 4, byte_fallback = 35, unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43, unk_piece = 45,
// bos_piece = 46, eos_piece = 47, pad_piece = 48}; normalizer_spec = 3 {name = 1, add_dummy_prefix = 3,
// remove_extra_whitespaces = 4, escape_whitespaces = 5} }. As llama.cpp's SPM tokenizer: a space prefix, spaces as
// U+2581, runs of spaces kept, BPE over the scores.
std::string sentencepiece_proto(const gguf_vocab& v) {
    const size_t n = v.tokens.size();
    if (n == 0 || n > tok::max_vocab)
        throw error(error_code::format,
                    v.origin + ": tokenizer.ggml.tokens has " + std::to_string(n) + " tokens; expected 1 to " +
                        std::to_string(tok::max_vocab),
                    "the GGUF file is damaged; download it again");
    if (!v.scores.empty() && v.scores.size() != n)
        throw error(error_code::format,
                    v.origin + ": tokenizer.ggml.scores has " + std::to_string(v.scores.size()) + " entries for " +
                        std::to_string(n) + " tokens",
                    "the GGUF file is damaged; download it again");
    if (!v.token_types.empty() && v.token_types.size() != n)
        throw error(error_code::format,
                    v.origin + ": tokenizer.ggml.token_type has " + std::to_string(v.token_types.size()) +
                        " entries for " + std::to_string(n) + " tokens",
                    "the GGUF file is damaged; download it again");
    auto id_ok = [&](int id) { return id >= 0 && size_t(id) < n; };
    int unk = v.unk_id;
    bool byte_fallback = false;
    std::string proto;
    for (size_t i = 0; i < n; ++i) {
        if (v.tokens[i].empty() || v.tokens[i].size() > tok::max_token_bytes)
            throw error(error_code::format,
                        v.origin + ": tokenizer.ggml.tokens[" + std::to_string(i) + "] is empty or too long",
                        "the GGUF file is damaged; download it again");
        int type = v.token_types.empty() ? 1 : v.token_types[i];
        if (type < 1 || type > 6)
            throw error(error_code::format,
                        v.origin + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] is " + std::to_string(type) +
                            "; expected 1 to 6",
                        "the GGUF file is damaged; download it again");
        if (type == 2 && unk < 0) unk = int(i);
        if (int(i) == unk) type = 2;
        if (type == 6) byte_fallback = true;
        std::string piece;
        put_bytes(piece, 1, v.tokens[i]);
        put_float(piece, 2, v.scores.empty() ? 0.0f : v.scores[i]);
        put_int(piece, 3, type);
        put_bytes(proto, 1, piece);
    }
    if (!id_ok(unk))
        throw error(error_code::format, v.origin + ": the SentencePiece vocabulary has no unknown token",
                    "the GGUF file lacks tokenizer.ggml.unknown_token_id; convert the model again");
    std::string trainer;
    put_int(trainer, 3, 2); // BPE
    put_int(trainer, 4, int64_t(n));
    if (byte_fallback) put_int(trainer, 35, 1);
    put_int(trainer, 40, unk);
    put_int(trainer, 41, id_ok(v.bos_id) ? v.bos_id : -1);
    put_int(trainer, 42, id_ok(v.eos_id) ? v.eos_id : -1);
    put_int(trainer, 43, id_ok(v.pad_id) ? v.pad_id : -1);
    put_bytes(trainer, 45, v.tokens[size_t(unk)]);
    if (id_ok(v.bos_id)) put_bytes(trainer, 46, v.tokens[size_t(v.bos_id)]);
    if (id_ok(v.eos_id)) put_bytes(trainer, 47, v.tokens[size_t(v.eos_id)]);
    if (id_ok(v.pad_id)) put_bytes(trainer, 48, v.tokens[size_t(v.pad_id)]);
    put_bytes(proto, 2, trainer);
    std::string norm;
    put_bytes(norm, 1, "identity");
    put_int(norm, 3, 1);
    put_int(norm, 4, 0);
    put_int(norm, 5, 1);
    put_bytes(proto, 3, norm);
    return proto;
}

// The control and unknown pieces of a SentencePiece model, longest first (encode_prompt matches them in text).
std::vector<std::pair<std::string, int>> sp_special_pieces(const sentencepiece::SentencePieceProcessor& sp) {
    std::vector<std::pair<std::string, int>> out;
    for (int id = 0; id < sp.GetPieceSize(); ++id)
        if (sp.IsControl(id) || sp.IsUnknown(id)) {
            std::string p = sp.IdToPiece(id);
            if (!p.empty()) out.emplace_back(std::move(p), id);
        }
    std::stable_sort(out.begin(), out.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    return out;
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
    m->sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    sentencepiece::util::Status status;
    try {
        status = m->sp->Load(path);
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
    m->vocab = m->sp->GetPieceSize();
    if (m->vocab <= 0)
        throw error(error_code::format, path + " is a SentencePiece model without pieces",
                    "copy tokenizer.model again from the original model repository");
    m->sp_specials = sp_special_pieces(*m->sp);
    read_sp_policy(path, m->sp_add_bos, m->sp_add_eos);
    tokenizer t;
    t.impl_ = std::move(m);
    return t;
}

tokenizer tokenizer::load_json(const std::string& path) {
    const std::string hint = "download tokenizer.json again from the model repository";
    const std::string text = read_file_text(path, hint);
    const std::string cfg_path = path_join(std::filesystem::path(path).parent_path().string(), "tokenizer_config.json");
    std::optional<std::string> cfg;
    if (path_is_file(cfg_path)) cfg = read_file_text(cfg_path, "check tokenizer_config.json's permissions");
    auto m = std::make_shared<impl>();
    m->path = path;
    m->hf = tok::parse_tokenizer_json(text, path, cfg ? &*cfg : nullptr, cfg_path);
    m->vocab = int(m->hf->id_to_token.size());
    tokenizer t;
    t.impl_ = std::move(m);
    return t;
}

tokenizer tokenizer::from_gguf(const gguf_vocab& v) {
    auto m = std::make_shared<impl>();
    m->path = v.origin;
    if (v.model == "gpt2") {
        auto p = tok::gguf_byte_level_bpe(v.tokens, v.merges, v.token_types, v.pre, v.origin);
        const int n = int(p->id_to_token.size());
        auto id_or_none = [n](int id) { return id >= 0 && id < n ? id : -1; };
        p->bos = id_or_none(v.bos_id);
        p->eos = id_or_none(v.eos_id);
        // llama.cpp adds BOS to a BPE vocabulary only when tokenizer.ggml.add_bos_token says so
        if (v.add_bos.value_or(false) && p->bos >= 0) p->prefix_ids = {p->bos};
        if (v.add_eos.value_or(false) && p->eos >= 0) p->suffix_ids = {p->eos};
        m->vocab = n;
        m->hf = std::move(p);
    } else if (v.model == "llama") {
        m->sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
        const auto status = m->sp->LoadFromSerializedProto(sentencepiece_proto(v));
        if (!status.ok())
            throw error(error_code::format,
                        v.origin + ": the SentencePiece vocabulary in the GGUF metadata is not usable (" +
                            status.ToString() + ")",
                        "the GGUF file is damaged; download it again");
        m->vocab = m->sp->GetPieceSize();
        m->sp_specials = sp_special_pieces(*m->sp);
        m->sp_add_bos = v.add_bos.value_or(true); // llama.cpp's default for SPM vocabularies
        m->sp_add_eos = v.add_eos.value_or(false);
    } else {
        throw error(error_code::unsupported, v.origin + ": tokenizer.ggml.model \"" + v.model + "\" is not supported",
                    "supported: \"gpt2\" (byte-level BPE) and \"llama\" (SentencePiece)");
    }
    tokenizer t;
    t.impl_ = std::move(m);
    return t;
}

std::vector<int> tokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
    std::vector<int> ids;
    if (impl_->hf) {
        ids = impl_->hf->encode(text);
    } else {
        const auto status = impl_->sp->Encode(std::string(text), &ids);
        if (!status.ok())
            throw error(error_code::invalid_argument,
                        "cannot tokenize text with " + impl_->path + ": " + status.ToString());
    }
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

std::vector<int> tokenizer::encode_prompt(std::string_view text) const {
    if (impl_->hf) {
        const tok::hf_pipeline& p = *impl_->hf;
        std::vector<int> ids = p.prefix_ids;
        const std::vector<int> body = p.encode(text);
        ids.insert(ids.end(), body.begin(), body.end());
        ids.insert(ids.end(), p.suffix_ids.begin(), p.suffix_ids.end());
        return ids;
    }
    // SentencePiece: control pieces written in the text ("<s>", "</s>") become their ids, the text between them is
    // encoded on its own (as transformers' LlamaTokenizer splits on its special tokens).
    std::vector<int> ids;
    if (impl_->sp_add_bos && bos_id() >= 0) ids.push_back(bos_id());
    const std::string s = tok::sanitize_utf8(text);
    size_t start = 0, pos = 0;
    auto encode_part = [&](size_t b, size_t e) {
        if (e <= b) return;
        std::vector<int> part;
        const auto status = impl_->sp->Encode(s.substr(b, e - b), &part);
        if (!status.ok())
            throw error(error_code::invalid_argument,
                        "cannot tokenize text with " + impl_->path + ": " + status.ToString());
        ids.insert(ids.end(), part.begin(), part.end());
    };
    while (pos < s.size()) {
        int hit = -1;
        size_t len = 0;
        for (const auto& [piece, id] : impl_->sp_specials)
            if (s.compare(pos, piece.size(), piece) == 0) {
                hit = id;
                len = piece.size();
                break;
            }
        if (hit < 0) {
            ++pos;
            continue;
        }
        encode_part(start, pos);
        ids.push_back(hit);
        pos += len;
        start = pos;
    }
    encode_part(start, s.size());
    if (impl_->sp_add_eos && eos_id() >= 0) ids.push_back(eos_id());
    return ids;
}

int tokenizer::token_id(std::string_view token) const {
    if (impl_->hf) {
        const std::string t(token);
        auto a = impl_->hf->added_by_content.find(t);
        if (a != impl_->hf->added_by_content.end()) return a->second;
        auto v = impl_->hf->model.vocab.find(t);
        return v == impl_->hf->model.vocab.end() ? -1 : v->second;
    }
    const int id = impl_->sp->PieceToId(std::string(token));
    return id >= 0 && impl_->sp->IdToPiece(id) == token ? id : -1;
}

bool tokenizer::is_special(int id) const {
    if (id < 0 || id >= impl_->vocab) bad_id(impl_->path, id, impl_->vocab);
    return impl_->hf ? impl_->hf->id_is_special[size_t(id)] != 0 : impl_->sp->IsControl(id);
}

std::string tokenizer::decode(const std::vector<int>& ids) const {
    if (impl_->hf) return impl_->hf->decode(ids, true);
    // Control ids (<s>, </s>, <pad>) are dropped first, so the dummy-prefix space of the first text piece is
    // removed even after a BOS; DecodeIds turns runs of byte-fallback pieces (<0x0A>, ...) back into bytes
    // (invalid UTF-8 becomes U+FFFD per byte).
    std::vector<int> kept;
    kept.reserve(ids.size());
    for (int id : ids) {
        if (id < 0 || id >= impl_->vocab) bad_id(impl_->path, id, impl_->vocab);
        if (!impl_->sp->IsControl(id)) kept.push_back(id);
    }
    std::string text;
    const auto status = impl_->sp->Decode(kept, &text);
    if (!status.ok())
        throw error(error_code::invalid_argument, "cannot decode ids with " + impl_->path + ": " + status.ToString());
    return text;
}

std::string tokenizer::piece(int id) const {
    if (id < 0 || id >= impl_->vocab) bad_id(impl_->path, id, impl_->vocab);
    return impl_->hf ? impl_->hf->id_to_token[size_t(id)] : impl_->sp->IdToPiece(id);
}

int tokenizer::vocab_size() const { return impl_->vocab; }
std::string tokenizer::kind() const { return impl_->hf ? impl_->hf->kind : "SentencePiece"; }
int tokenizer::bos_id() const { return impl_->hf ? impl_->hf->bos : impl_->sp->bos_id(); }
int tokenizer::eos_id() const { return impl_->hf ? impl_->hf->eos : impl_->sp->eos_id(); }
int tokenizer::unk_id() const { return impl_->hf ? impl_->hf->model.unk_id : impl_->sp->unk_id(); }
const std::string& tokenizer::path() const { return impl_->path; }
// ---- detokenizer -----------------------------------------------------------------------------------
// Decodes all ids so far and emits what lies beyond the text already emitted. Ids at the end that are
// byte-fallback pieces forming an unfinished UTF-8 character are held back (SentencePiece would render them as
// U+FFFD), as are byte-level BPE ids whose text ends in an unfinished character, and any incomplete UTF-8 sequence
// at the end of the decoded text.
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
    // Byte-level BPE: a character split over tokens decodes to U+FFFD until its last byte arrives; hold back up to
    // three trailing ids while dropping them removes a trailing U+FFFD.
    static const std::string replacement = "\xEF\xBF\xBD";
    auto ends_bad = [](const std::string& t) { return t.size() >= 3 && t.compare(t.size() - 3, 3, replacement) == 0; };
    if (hold_ids == 0 && ends_bad(text) && tok_->kind() == "byte-level BPE")
        for (size_t k = 1; k <= 3 && k < ids_.size(); ++k) {
            std::string shorter = tok_->decode(std::vector<int>(ids_.begin(), ids_.end() - std::ptrdiff_t(k)));
            if (!ends_bad(shorter)) {
                text = std::move(shorter);
                break;
            }
        }
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
