// GGUF exports for llama.cpp and Ollama (qls/gguf_writer.h): the LoRA adapter GGUF, the merged model GGUF with its
// tokenizer and chat template, llama-quant.cpp's per-tensor types, and the Ollama Modelfile.
//
// Sources: llama.cpp convert_lora_to_gguf.py (adapter keys and tensor names), convert_hf_to_gguf.py
// (LlamaModel.set_gguf_parameters / set_vocab / permute / generate_extra_tensors, TextModel._create_vocab_sentencepiece
// and get_vocab_base), src/llama-quant.cpp (llama_tensor_get_type), src/llama-adapter.cpp (how --lora applies
// alpha / r), Ollama docs/modelfile.md (FROM, ADAPTER, TEMPLATE, PARAMETER stop; Go text/template variables).
#include "qls/gguf_writer.h"

#include "qls/architecture.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/model_source.h"
#include "qls/quant.h"

#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

namespace qls {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// GGUF token types (gguf.md / gguf-py constants.py TokenType).
constexpr int32_t tok_normal = 1, tok_unknown = 2, tok_control = 3, tok_user_defined = 4, tok_unused = 5, tok_byte = 6;

// convert_hf_to_gguf.py LlamaModel.permute: the rows of a q (n_head heads) or k (n_head_kv) weight, (out, cols)
// row-major, reordered so each head's two rotary halves interleave: out row h·HS + 2i + j ← row h·HS + j·HS/2 + i.
void permute_rows(float* w, int64_t rows, int64_t cols, int n_head, const std::string& what) {
    if (n_head <= 0 || rows % (2 * int64_t(n_head)) != 0)
        throw error(error_code::shape_mismatch,
                    what + ": " + std::to_string(rows) + " rows do not split into " + std::to_string(n_head) +
                        " heads of an even size",
                    "the model's config does not match its weights");
    const int64_t hs = rows / n_head, half = hs / 2;
    std::vector<float> head(size_t(hs * cols));
    for (int64_t h = 0; h < n_head; ++h) {
        float* base = w + h * hs * cols;
        std::memcpy(head.data(), base, head.size() * sizeof(float));
        for (int64_t i = 0; i < half; ++i)
            for (int64_t j = 0; j < 2; ++j)
                std::memcpy(base + (2 * i + j) * cols, head.data() + (j * half + i) * cols,
                            size_t(cols) * sizeof(float));
    }
}

// The heads a projection's rows are permuted by in the GGUF layout, 0 when not permuted.
int permute_heads(const architecture& a, const model_config& m, lora_target t) {
    if (!a.gguf_permutes_qk) return 0;
    if (t == lora_target::q) return m.num_heads;
    if (t == lora_target::k) return m.num_kv_heads;
    return 0;
}

std::vector<int64_t> gguf_dims(const std::vector<int64_t>& hf_shape) { return {hf_shape.rbegin(), hf_shape.rend()}; }

std::string bytes_of(const float* x, int64_t n, ggml_type t, const std::string& what) {
    const ggml_type_traits tr = ggml_traits(uint32_t(t));
    std::string out(size_t(n / tr.block_size * tr.type_size), '\0');
    gguf_quantize(t, x, n, reinterpret_cast<std::byte*>(out.data()), what);
    return out;
}

// ---- tokenizer metadata ------------------------------------------------------------------------------------------

std::string token_text(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return {};
}

json read_json_file(const std::string& path) {
    const std::string text = read_file_text(path);
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw error(error_code::format, path + ": not a JSON object", "download the model's tokenizer files again");
    return j;
}

// tokenizer_config.json's add_bos_token / add_eos_token, as convert_hf_to_gguf's SpecialVocab copies them.
void add_bos_eos_flags(gguf_metadata& md, const std::string& dir) {
    const std::string p = path_join(dir, "tokenizer_config.json");
    if (!path_is_file(p)) return;
    const json c = read_json_file(p);
    if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean())
        md.set_bool("tokenizer.ggml.add_bos_token", c["add_bos_token"].get<bool>());
    if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean())
        md.set_bool("tokenizer.ggml.add_eos_token", c["add_eos_token"].get<bool>());
}

// A SentencePiece tokenizer.model (convert_hf_to_gguf.py _create_vocab_sentencepiece): every piece with its score
// and type, padded to the model's vocabulary with "[PAD<i>]" unused tokens.
void sentencepiece_vocab(gguf_metadata& md, const std::string& dir, const model_config& m) {
    const std::string path = path_join(dir, "tokenizer.model");
    sentencepiece::SentencePieceProcessor sp;
    const auto st = sp.Load(path);
    if (!st.ok())
        throw error(error_code::format, path + ": not a SentencePiece model (" + st.ToString() + ")",
                    "download the model's tokenizer.model again");
    const int n = sp.GetPieceSize();
    if (n > m.vocab_size)
        throw error(error_code::shape_mismatch,
                    path + " has " + std::to_string(n) + " pieces, more than the model's vocabulary of " +
                        std::to_string(m.vocab_size),
                    "the tokenizer belongs to another model");
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (int i = 0; i < n; ++i) {
        tokens.push_back(sp.IdToPiece(i));
        scores.push_back(sp.GetScore(i));
        types.push_back(sp.IsUnknown(i)   ? tok_unknown
                        : sp.IsControl(i) ? tok_control
                        : sp.IsUnused(i)  ? tok_unused
                        : sp.IsByte(i)    ? tok_byte
                                          : tok_normal);
    }
    for (int i = n; i < m.vocab_size; ++i) {
        tokens.push_back("[PAD" + std::to_string(i) + "]");
        scores.push_back(-1000.f);
        types.push_back(tok_unused);
    }
    md.set_string("tokenizer.ggml.model", "llama");
    md.set_string("tokenizer.ggml.pre", "default");
    md.set_string_array("tokenizer.ggml.tokens", tokens);
    md.set_f32_array("tokenizer.ggml.scores", scores);
    md.set_i32_array("tokenizer.ggml.token_type", types);
    if (sp.bos_id() >= 0) md.set_u32("tokenizer.ggml.bos_token_id", uint32_t(sp.bos_id()));
    if (sp.eos_id() >= 0) md.set_u32("tokenizer.ggml.eos_token_id", uint32_t(sp.eos_id()));
    if (sp.unk_id() >= 0) md.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(sp.unk_id()));
    if (sp.pad_id() >= 0) md.set_u32("tokenizer.ggml.padding_token_id", uint32_t(sp.pad_id()));
    add_bos_eos_flags(md, dir);
}

// tokenizer.ggml.pre for a tokenizer.json pre-tokenizer, by the splitting it does (llama.cpp names the same
// splitting by a hash of its output in convert_hf_to_gguf.py get_vocab_base_pre; the regexes are the ones
// tokenizer_json.cpp runs for those names).
std::string bpe_pre_name(const json& pre, const std::string& path) {
    static const std::map<std::string, std::string> by_regex = {
        {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
         "llama-bpe"},
        {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
         "qwen2"},
        {R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
         "tekken"},
    };
    std::vector<json> steps;
    if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
        pre["pretokenizers"].is_array())
        for (const json& p : pre["pretokenizers"]) steps.push_back(p);
    else if (pre.is_object()) steps.push_back(pre);
    auto byte_level_regex = [](const json& p) {
        return p.value("type", "") == "ByteLevel" && p.value("use_regex", true);
    };
    if (steps.size() == 1 && byte_level_regex(steps[0])) return "gpt-2";
    if (steps.size() == 2 && steps[0].value("type", "") == "Digits" && steps[0].value("individual_digits", false) &&
        byte_level_regex(steps[1]))
        return "smollm";
    if (steps.size() == 2 && steps[0].value("type", "") == "Split" && steps[1].value("type", "") == "ByteLevel" &&
        steps[0].contains("pattern") && steps[0]["pattern"].is_object()) {
        const std::string re = steps[0]["pattern"].value("Regex", "");
        if (auto it = by_regex.find(re); it != by_regex.end()) return it->second;
    }
    throw error(error_code::unsupported,
                path + ": its pre_tokenizer is not one llama.cpp names (Llama 3, Qwen2, Tekken, SmolLM, GPT-2 splits)",
                "export the adapter (PEFT) instead, or convert the merged Hugging Face export with llama.cpp's "
                "convert_hf_to_gguf.py");
}

// A byte-level BPE tokenizer.json (convert_hf_to_gguf.py get_vocab_base + _set_vocab_gpt2): tokens by id, added
// tokens control (special or <...>-looking) or user-defined, merges "a b", the pre-tokenizer's name, special ids.
void bpe_vocab(gguf_metadata& md, const std::string& dir, const model_config& m) {
    const std::string path = path_join(dir, "tokenizer.json");
    const json t = read_json_file(path);
    if (!t.contains("model") || !t["model"].is_object() || t["model"].value("type", "") != "BPE" ||
        !t["model"].contains("vocab") || !t["model"]["vocab"].is_object())
        throw error(error_code::unsupported, path + ": only BPE tokenizer.json models are exported to GGUF",
                    "export the adapter (PEFT) instead");
    const json& model = t["model"];
    const std::string pre = bpe_pre_name(t.value("pre_tokenizer", json()), path);
    std::vector<std::string> tokens(size_t(m.vocab_size));
    std::vector<int32_t> types(size_t(m.vocab_size), tok_unused);
    std::vector<bool> set(size_t(m.vocab_size), false);
    auto place = [&](const std::string& tok, int64_t id, int32_t type) {
        if (id < 0 || id >= m.vocab_size)
            throw error(error_code::shape_mismatch,
                        path + ": token '" + tok + "' has id " + std::to_string(id) + ", outside the vocabulary of " +
                            std::to_string(m.vocab_size),
                        "the tokenizer belongs to another model");
        tokens[size_t(id)] = tok;
        types[size_t(id)] = type;
        set[size_t(id)] = true;
    };
    for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it)
        if (it.value().is_number_integer()) place(it.key(), it.value().get<int64_t>(), tok_normal);
    if (t.contains("added_tokens") && t["added_tokens"].is_array())
        for (const json& a : t["added_tokens"]) {
            if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer()) continue;
            const std::string c = a.value("content", "");
            const bool looks_special = (c.size() >= 2 && c.front() == '<' && c.back() == '>') ||
                                       (c.size() >= 2 && c.front() == '[' && c.back() == ']');
            place(c, a["id"].get<int64_t>(),
                  a.value("special", false) || looks_special ? tok_control : tok_user_defined);
        }
    for (size_t i = 0; i < tokens.size(); ++i)
        if (!set[i]) tokens[i] = "[PAD" + std::to_string(i) + "]";
    std::vector<std::string> merges;
    if (model.contains("merges") && model["merges"].is_array())
        for (const json& mg : model["merges"]) {
            if (mg.is_string()) merges.push_back(mg.get<std::string>());
            else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string())
                merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
        }
    md.set_string("tokenizer.ggml.model", "gpt2");
    md.set_string("tokenizer.ggml.pre", pre);
    md.set_string_array("tokenizer.ggml.tokens", tokens);
    md.set_i32_array("tokenizer.ggml.token_type", types);
    md.set_string_array("tokenizer.ggml.merges", merges);
    // special ids: tokenizer_config.json's bos/eos/unk/pad token texts, else config.json's ids
    std::map<std::string, int> id_of;
    for (size_t i = 0; i < tokens.size(); ++i) id_of.emplace(tokens[i], int(i));
    const std::string cfg_path = path_join(dir, "tokenizer_config.json");
    const json c = path_is_file(cfg_path) ? read_json_file(cfg_path) : json::object();
    auto special = [&](const char* field, const char* key, int fallback) {
        const std::string text = c.contains(field) ? token_text(c[field]) : std::string();
        if (auto it = id_of.find(text); !text.empty() && it != id_of.end()) md.set_u32(key, uint32_t(it->second));
        else if (fallback >= 0 && fallback < m.vocab_size) md.set_u32(key, uint32_t(fallback));
    };
    special("bos_token", "tokenizer.ggml.bos_token_id", m.bos_token_id);
    special("eos_token", "tokenizer.ggml.eos_token_id", m.eos_token_ids.empty() ? -1 : m.eos_token_ids.front());
    special("unk_token", "tokenizer.ggml.unknown_token_id", -1);
    special("pad_token", "tokenizer.ggml.padding_token_id", -1);
    add_bos_eos_flags(md, dir);
}

// The tokenizer and chat template of the base as GGUF metadata.
void tokenizer_metadata(gguf_metadata& md, const model_source& base) {
    const model_config& m = base.config();
    if (base.format() == "gguf") {
        const gguf_file f = gguf_file::open(base.path());
        for (const std::string& k : f.keys())
            if (k.rfind("tokenizer.", 0) == 0) md.copy_from(f, k);
        return;
    }
    const std::string dir = base.path();
    if (path_is_file(path_join(dir, "tokenizer.json"))) bpe_vocab(md, dir, m);
    else if (path_is_file(path_join(dir, "tokenizer.model"))) sentencepiece_vocab(md, dir, m);
    else
        throw error(error_code::io, dir + ": no tokenizer.json or tokenizer.model",
                    "a GGUF model carries its tokenizer; copy the model's tokenizer files into the folder");
    // BOS / EOS as the model's tokenizer adds them to a prompt, when tokenizer_config.json does not say (a
    // tokenizer.json post-processor's template; llama.cpp's own default would differ by tokenizer type)
    if (!md.has("tokenizer.ggml.add_bos_token") || !md.has("tokenizer.ggml.add_eos_token")) {
        const tokenizer tok = base.load_tokenizer();
        const std::vector<int> ids = tok.encode_prompt("a");
        if (!md.has("tokenizer.ggml.add_bos_token"))
            md.set_bool("tokenizer.ggml.add_bos_token", !ids.empty() && ids.front() == tok.bos_id());
        if (!md.has("tokenizer.ggml.add_eos_token"))
            md.set_bool("tokenizer.ggml.add_eos_token", !ids.empty() && ids.back() == tok.eos_id());
    }
    if (const auto ct = base.chat_template()) md.set_string("tokenizer.chat_template", ct->text);
}

// Llama 3's rope scaling as llama.cpp reads it: rope_freqs.weight, HS/2 factors dividing the rotary frequencies
// (convert_hf_to_gguf.py LlamaModel.generate_extra_tensors).
std::vector<float> llama3_rope_factors(const model_config& m) {
    const rope_config& r = m.rope;
    const double low_wavelen = r.original_max_position_embeddings / r.low_freq_factor;
    const double high_wavelen = r.original_max_position_embeddings / r.high_freq_factor;
    std::vector<float> f;
    for (int i = 0; i < m.head_dim / 2; ++i) {
        const float freq = 1.0f / std::pow(float(r.theta), float(2 * i) / float(m.head_dim));
        const double wavelen = 2 * M_PI / double(freq);
        double v = 1.0;
        if (wavelen > low_wavelen) {
            v = r.factor;
        } else if (!(wavelen < high_wavelen)) {
            const double smooth = (r.original_max_position_embeddings / wavelen - r.low_freq_factor) /
                                  (r.high_freq_factor - r.low_freq_factor);
            v = 1 / ((1 - smooth) / r.factor + smooth);
        }
        f.push_back(float(v));
    }
    return f;
}

// llama.h enum llama_ftype of a merged file.
uint32_t file_type_of(gguf_quant q) {
    switch (q) {
    case gguf_quant::f16: return 1;
    case gguf_quant::bf16: return 32;
    case gguf_quant::q8_0: return 7;
    case gguf_quant::q4_0: return 2;
    case gguf_quant::q4_k_m: return 15;
    }
    return 1;
}

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

} // namespace

// ---- adapter -----------------------------------------------------------------------------------------------------

uint64_t write_gguf_adapter(const std::string& path, const lora_weights<float>& w, const model_config& m,
                            ggml_type type, const std::string& base_name) {
    if (type != ggml_type::f32 && type != ggml_type::f16)
        throw error(error_code::invalid_argument, path + ": an adapter GGUF is written as F32 or F16",
                    "choose --dtype f32 or f16");
    const architecture& a = architecture_for(m);
    if (int(w.layers.size()) != m.num_layers)
        throw error(error_code::shape_mismatch,
                    path + ": the adapter has " + std::to_string(w.layers.size()) + " layers, the model " +
                        std::to_string(m.num_layers),
                    "export the adapter with the model it was trained on");
    gguf_metadata md;
    md.set_string("general.architecture", a.gguf_arch);
    md.set_string("general.type", "adapter");
    if (!base_name.empty()) md.set_string("general.name", base_name);
    md.set_string("adapter.type", "lora");
    // llama.cpp scales B·A by alpha / r (llama-adapter.cpp get_scale); alpha = scale·r gives our scale for plain
    // and rsLoRA alike.
    md.set_f32("adapter.lora.alpha", w.config.scale() * float(w.config.rank));
    struct item {
        int layer;
        lora_target t;
    };
    std::vector<item> items;
    std::vector<gguf_tensor_spec> specs;
    for (int l = 0; l < m.num_layers; ++l)
        for (lora_target t : a.projections) {
            const lora_adapter<float>& ad = w.at(l, t);
            if (!ad.enabled()) continue;
            const auto [in, out] = lora_in_out(m, t);
            if (ad.in != in || ad.out != out || ad.a.size() != size_t(ad.rank) * size_t(in) ||
                ad.b.size() != size_t(out) * size_t(ad.rank))
                throw error(error_code::shape_mismatch,
                            path + ": the adapter of layer " + std::to_string(l) + " " + lora_target_name(t) +
                                " does not fit the model's (" + std::to_string(out) + ", " + std::to_string(in) +
                                ") projection",
                            "export the adapter with the model it was trained on");
            const std::string base = a.gguf_weight(l, t);
            items.push_back({l, t});
            specs.push_back({base + ".lora_a", {in, ad.rank}, type});
            specs.push_back({base + ".lora_b", {ad.rank, out}, type});
        }
    if (items.empty())
        throw error(error_code::invalid_argument, path + ": the adapter holds no LoRA weights",
                    "export a checkpoint of a run that trains at least one projection");
    gguf_stream_writer out(path, md, specs);
    std::vector<float> b;
    for (const item& it : items) {
        const lora_adapter<float>& ad = w.at(it.layer, it.t);
        const std::string base = a.gguf_weight(it.layer, it.t);
        out.write(bytes_of(ad.a.data(), int64_t(ad.a.size()), type, base + ".lora_a"));
        b = ad.b;
        if (const int heads = permute_heads(a, m, it.t))
            permute_rows(b.data(), ad.out, ad.rank, heads, path + ": " + base + ".lora_b");
        out.write(bytes_of(b.data(), int64_t(b.size()), type, base + ".lora_b"));
    }
    out.finish();
    return out.file_size();
}

// ---- merged model ------------------------------------------------------------------------------------------------

const char* gguf_quant_name(gguf_quant q) {
    switch (q) {
    case gguf_quant::f16: return "f16";
    case gguf_quant::bf16: return "bf16";
    case gguf_quant::q8_0: return "q8_0";
    case gguf_quant::q4_0: return "q4_0";
    case gguf_quant::q4_k_m: return "q4_k_m";
    }
    return "f16";
}

gguf_quant gguf_quant_from_name(const std::string& s) {
    std::string l = s;
    std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    for (gguf_quant q : {gguf_quant::f16, gguf_quant::bf16, gguf_quant::q8_0, gguf_quant::q4_0, gguf_quant::q4_k_m})
        if (l == gguf_quant_name(q)) return q;
    throw error(error_code::invalid_argument,
                "unknown GGUF quantization '" + s + "' (the choices: f16, bf16, q8_0, q4_0, q4_k_m)",
                "choose one of them; q4_k_m is llama.cpp's usual 4-bit choice");
}

ggml_type gguf_tensor_type(gguf_quant q, const std::string& name, const std::vector<int64_t>& dims, int layer,
                           int n_layer, bool tied_embedding) {
    if (dims.size() < 2) return ggml_type::f32; // norms (llama-quant.cpp quantizes 2-D tensors only)
    ggml_type t = ggml_type::f16;
    switch (q) {
    case gguf_quant::f16: return ggml_type::f16;
    case gguf_quant::bf16: return ggml_type::bf16;
    case gguf_quant::q8_0: t = ggml_type::q8_0; break;
    case gguf_quant::q4_0: t = ggml_type::q4_0; break;
    case gguf_quant::q4_k_m: t = ggml_type::q4_k; break;
    }
    const bool head = name == "output.weight" || (tied_embedding && name == "token_embd.weight");
    if (head) {
        // the output head: Q8_0 when its rows do not fit the type's block, else Q6_K unless the file is Q8_0
        if (dims[0] % ggml_traits(uint32_t(t)).block_size != 0) t = ggml_type::q8_0;
        else if (t != ggml_type::q8_0) t = ggml_type::q6_k;
    } else if (q == gguf_quant::q4_k_m && layer >= 0 &&
               (name.find("attn_v.weight") != std::string::npos || name.find("ffn_down") != std::string::npos) &&
               use_more_bits(layer, n_layer)) {
        t = ggml_type::q6_k;
    }
    // rows that do not fit a K-quant's 256-element super-block (llama-quant.cpp's incompatible-tensor fallback)
    if ((t == ggml_type::q4_k || t == ggml_type::q6_k) && dims[0] % 256 != 0)
        t = t == ggml_type::q4_k ? ggml_type::q5_0 : ggml_type::q8_0;
    if (dims[0] % ggml_traits(uint32_t(t)).block_size != 0) t = ggml_type::f16;
    return t;
}

gguf_merged_progress write_gguf_merged(const std::string& path, const model_source& base, const lora_weights<float>& w,
                                       const gguf_merged_options& opt) {
    const model_config& m = base.config();
    const architecture& a = architecture_for(m);
    const bool has_adapter = !w.layers.empty();
    if (has_adapter && int(w.layers.size()) != m.num_layers)
        throw error(error_code::shape_mismatch,
                    path + ": the adapter has " + std::to_string(w.layers.size()) + " layers, the model " +
                        std::to_string(m.num_layers),
                    "export the adapter with the model it was trained on");
    if (m.rope.type != "default" && m.rope.type != "linear" && m.rope.type != "llama3")
        throw error(error_code::unsupported,
                    base.path() + ": rope scaling \"" + m.rope.type + "\" has no GGUF form in this export",
                    "export the adapter (PEFT) instead");

    // ---- metadata (convert_hf_to_gguf.py LlamaModel.set_gguf_parameters)
    gguf_metadata md;
    const std::string& ar = a.gguf_arch;
    md.set_string("general.architecture", ar);
    md.set_string("general.type", "model");
    md.set_string("general.name", opt.name.empty() ? fs::path(base.path()).filename().string() : opt.name);
    md.set_u32(ar + ".block_count", uint32_t(m.num_layers));
    md.set_u32(ar + ".context_length", uint32_t(m.max_position_embeddings));
    md.set_u32(ar + ".embedding_length", uint32_t(m.hidden_size));
    md.set_u32(ar + ".feed_forward_length", uint32_t(m.intermediate_size));
    md.set_u32(ar + ".attention.head_count", uint32_t(m.num_heads));
    md.set_u32(ar + ".attention.head_count_kv", uint32_t(m.num_kv_heads));
    md.set_f32(ar + ".rope.freq_base", float(m.rope.theta));
    md.set_f32(ar + ".attention.layer_norm_rms_epsilon", float(m.rms_norm_eps));
    if (m.head_dim * m.num_heads != m.hidden_size) {
        md.set_u32(ar + ".attention.key_length", uint32_t(m.head_dim));
        md.set_u32(ar + ".attention.value_length", uint32_t(m.head_dim));
    }
    md.set_u32(ar + ".rope.dimension_count", uint32_t(m.head_dim));
    if (m.rope.type == "linear") {
        md.set_string(ar + ".rope.scaling.type", "linear");
        md.set_f32(ar + ".rope.scaling.factor", float(m.rope.factor));
    }
    md.set_u32(ar + ".vocab_size", uint32_t(m.vocab_size));
    md.set_u32("general.file_type", file_type_of(opt.quant));
    md.set_u32("general.quantization_version", 2);
    tokenizer_metadata(md, base);

    // ---- the tensors: GGUF name, Hugging Face name, shape, type
    struct planned {
        std::string gguf, hf;
        shape_t shape; // Hugging Face layout
        int layer = -1;
        bool projection = false;
        lora_target t = lora_target::q;
    };
    std::vector<planned> plan;
    const bool tied = m.tie_word_embeddings;
    plan.push_back({a.gguf_name(base_tensor::embed), a.hf_name(base_tensor::embed),
                    a.base_shape(m, base_tensor::embed)});
    for (int l = 0; l < m.num_layers; ++l) {
        plan.push_back({a.gguf_name(base_tensor::attn_norm, l), a.hf_name(base_tensor::attn_norm, l),
                        a.base_shape(m, base_tensor::attn_norm), l});
        for (lora_target t : a.projections) {
            const auto [out, in] = a.projection_shape(m, t);
            plan.push_back({a.gguf_weight(l, t), a.hf_weight(l, t), {out, in}, l, true, t});
            if (t == lora_target::o)
                plan.push_back({a.gguf_name(base_tensor::mlp_norm, l), a.hf_name(base_tensor::mlp_norm, l),
                                a.base_shape(m, base_tensor::mlp_norm), l});
        }
    }
    plan.push_back({a.gguf_name(base_tensor::final_norm), a.hf_name(base_tensor::final_norm),
                    a.base_shape(m, base_tensor::final_norm)});
    if (!tied)
        plan.push_back({a.gguf_name(base_tensor::lm_head), a.hf_name(base_tensor::lm_head),
                        a.base_shape(m, base_tensor::lm_head)});
    std::vector<gguf_tensor_spec> specs;
    for (const planned& p : plan) {
        const std::vector<int64_t> dims = gguf_dims(p.shape);
        specs.push_back({p.gguf, dims, gguf_tensor_type(opt.quant, p.gguf, dims, p.layer, m.num_layers, tied)});
    }
    std::vector<float> rope_factors;
    if (m.rope.type == "llama3") {
        rope_factors = llama3_rope_factors(m);
        specs.push_back({"rope_freqs.weight", {int64_t(rope_factors.size())}, ggml_type::f32});
    }

    gguf_merged_progress progress;
    progress.tensors_total = int64_t(specs.size());
    for (const gguf_tensor_spec& s : specs) progress.bytes_total += gguf_tensor_bytes(s);
    progress.file_size = gguf_file_size(md, specs);
    progress.nf4_base = opt.quantize_nf4 && has_adapter;
    auto check_cancel = [&] {
        if (opt.cancel && opt.cancel->load())
            throw error(error_code::cancelled, "GGUF export to " + path + " cancelled; nothing was written",
                        "export again to write the model");
    };
    check_cancel();
    if (opt.on_progress) opt.on_progress(progress);

    gguf_stream_writer out(path, md, specs);
    std::vector<float> f32;
    const float scale = has_adapter ? w.config.scale() : 0.f;
    for (size_t i = 0; i < plan.size(); ++i) {
        check_cancel();
        const planned& p = plan[i];
        const int64_t n = shape_numel(p.shape);
        f32.resize(size_t(n));
        if (p.projection && base.stores_nf4(p.hf)) {
            nf4_dequantize(*base.read_nf4(p.hf, p.shape[0], p.shape[1]), f32.data());
        } else {
            base.read_f32(p.hf, p.shape, f32.data());
            if (p.projection && progress.nf4_base)
                nf4_dequantize(nf4_quantize(f32.data(), p.shape[0], p.shape[1], opt.double_quant), f32.data());
        }
        if (p.projection && has_adapter) {
            const lora_adapter<float>& ad = w.at(p.layer, p.t);
            if (ad.enabled()) lora_merge(f32.data(), ad, scale);
        }
        if (p.projection)
            if (const int heads = permute_heads(a, m, p.t))
                permute_rows(f32.data(), p.shape[0], p.shape[1], heads, base.path() + ": " + p.hf);
        const std::string bytes = bytes_of(f32.data(), n, specs[i].type, path + ": " + p.gguf);
        out.write(bytes);
        ++progress.tensors_done;
        progress.bytes_done += bytes.size();
        if (opt.on_progress) opt.on_progress(progress);
    }
    if (!rope_factors.empty()) {
        out.write({reinterpret_cast<const char*>(rope_factors.data()), rope_factors.size() * 4});
        ++progress.tensors_done;
        progress.bytes_done += rope_factors.size() * 4;
        if (opt.on_progress) opt.on_progress(progress);
    }
    check_cancel();
    out.finish();
    return progress;
}

// ---- Ollama ------------------------------------------------------------------------------------------------------

ollama_template ollama_template_for(const std::string& ct, const std::string& eos_token) {
    ollama_template r;
    auto has = [&](const char* s) { return ct.find(s) != std::string::npos; };
    // Go text/template bodies as Ollama's own library templates write them (ollama template/*.gotmpl: chatml,
    // llama3-instruct, llama2-chat / mistral-instruct, gemma-instruct).
    if (has("<|im_start|>")) {
        r.family = "chatml";
        r.text =
            "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";
        r.stops = {"<|im_start|>", "<|im_end|>"};
    } else if (has("<|start_header_id|>")) {
        r.family = "llama3";
        r.text = "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
                 "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n";
        r.stops = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    } else if (has("<start_of_turn>")) {
        r.family = "gemma";
        r.text = "{{- range .Messages }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}{{ .Role }}"
                 "{{ end }}\n{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n";
        r.stops = {"<start_of_turn>", "<end_of_turn>"};
    } else if (has("[INST]")) {
        r.family = "llama2";
        r.text = "{{- if .System }}[INST] <<SYS>>\n{{ .System }}\n<</SYS>>\n\n{{ end }}{{- range .Messages }}"
                 "{{- if eq .Role \"user\" }}[INST] {{ .Content }} [/INST]{{ else if eq .Role \"assistant\" }} "
                 "{{ .Content }}</s>{{ end }}{{ end }}";
        r.stops = {"[INST]", "[/INST]"};
    }
    if (!eos_token.empty() && std::find(r.stops.begin(), r.stops.end(), eos_token) == r.stops.end())
        r.stops.push_back(eos_token);
    return r;
}

std::string ollama_modelfile(const std::string& from_path, const std::string& adapter_path, const ollama_template& t) {
    auto quoted = [](const std::string& s) {
        std::string q = "\"";
        for (char c : s) {
            if (c == '"' || c == '\\') q += '\\';
            q += c;
        }
        return q + "\"";
    };
    std::string s = "# Ollama Modelfile (ollama create NAME -f Modelfile)\n";
    s += "FROM " + from_path + "\n";
    if (!adapter_path.empty()) s += "ADAPTER " + adapter_path + "\n";
    if (!t.text.empty()) s += "TEMPLATE \"\"\"" + t.text + "\"\"\"\n";
    else
        s += "# no TEMPLATE: the model has no chat template of a family this export translates (ChatML, Llama 2/3, "
             "Gemma); Ollama then sends the prompt as it is\n";
    for (const std::string& stop : t.stops) s += "PARAMETER stop " + quoted(stop) + "\n";
    return s;
}

} // namespace qls
