// make_demo_model — the recipe for resources/demo/model: trains a SentencePiece tokenizer on the Pip corpus and writes a seeded random LLaMA.
//
// Usage: make_demo_model CORPUS OUT_DIR   (the CMake target demo_model runs it on the repository's files)
//
// What it writes into OUT_DIR, a Hugging Face LLaMA directory the engine and transformers both read:
//   tokenizer.model          SentencePiece BPE, 512 pieces, byte fallback; the settings llama2.c's tinystories.py
//                            train_vocab uses for its small vocabularies (identity normalization, split digits,
//                            whitespace-only pieces allowed, character coverage 1.0), single-threaded so that the
//                            same corpus gives the same model
//   config.json              the dimensions below (LlamaForCausalLM, tied embeddings, float32)
//   model.safetensors        normal(0, 0.02) weights (qls::llama_model::random, HF's initializer_range), unit norms
//   tokenizer_config.json, generation_config.json   what transformers' LlamaTokenizer and generate() expect
// Everything is a pure function of the corpus and k_seed (on the same C++ standard library: std::normal_distribution
// is not specified bit for bit), so the committed files can be regenerated and compared.
#include "qls/error.h"
#include "qls/llama.h"
#include "qls/model_config.h"
#include "qls/safetensors.h"
#include "qls/tokenizer.h"

#include <nlohmann/json.hpp>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr uint64_t k_seed = 20261127;
constexpr int k_vocab = 512;

// Small enough that a LoRA run on it trains visibly on one CPU core in seconds, shaped like a real LLaMA
// (grouped-query attention, SwiGLU MLP wider than the residual stream).
qls::model_config demo_config() {
    qls::model_config c;
    c.hidden_size = 64;        // C
    c.intermediate_size = 176; // H
    c.num_layers = 4;          // L
    c.num_heads = 4;           // NH
    c.num_kv_heads = 2;        // NKV
    c.head_dim = 16;           // HS = C / NH
    c.vocab_size = k_vocab;    // V
    c.max_position_embeddings = 512;
    c.rms_norm_eps = 1e-5;
    c.rope.theta = 10000.0;
    c.tie_word_embeddings = true;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
    c.torch_dtype = "float32";
    return c;
}

void write_text(const fs::path& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) throw qls::error(qls::error_code::io, path.string() + ": cannot write", "check the directory is writable");
}

std::string train_tokenizer(const fs::path& corpus) {
    const std::unordered_map<std::string, std::string> args = {
        {"input", corpus.string()},
        {"input_format", "text"},
        {"model_type", "bpe"},
        {"vocab_size", std::to_string(k_vocab)},
        {"self_test_sample_size", "0"},
        {"character_coverage", "1.0"},
        {"num_threads", "1"},
        {"split_digits", "true"},
        {"allow_whitespace_only_pieces", "true"},
        {"byte_fallback", "true"},
        {"unk_surface", " \xE2\x81\x87 "},
        {"normalization_rule_name", "identity"},
        {"remove_extra_whitespaces", "false"},
        {"add_dummy_prefix", "true"},
        {"unk_id", "0"},
        {"bos_id", "1"},
        {"eos_id", "2"},
        {"pad_id", "-1"},
        {"model_prefix", ""},
    };
    std::string proto;
    const auto status = sentencepiece::SentencePieceTrainer::Train(args, nullptr, &proto);
    if (!status.ok())
        throw qls::error(qls::error_code::format,
                         corpus.string() + ": SentencePiece training failed: " + status.ToString(),
                         "the corpus must be UTF-8 text with one or more lines");
    return proto;
}

std::string config_json(const qls::model_config& c) {
    nlohmann::ordered_json j;
    j["architectures"] = {"LlamaForCausalLM"};
    j["model_type"] = "llama";
    j["hidden_act"] = "silu";
    j["hidden_size"] = c.hidden_size;
    j["intermediate_size"] = c.intermediate_size;
    j["num_hidden_layers"] = c.num_layers;
    j["num_attention_heads"] = c.num_heads;
    j["num_key_value_heads"] = c.num_kv_heads;
    j["head_dim"] = c.head_dim;
    j["vocab_size"] = c.vocab_size;
    j["max_position_embeddings"] = c.max_position_embeddings;
    j["rms_norm_eps"] = c.rms_norm_eps;
    j["rope_theta"] = c.rope.theta;
    j["tie_word_embeddings"] = c.tie_word_embeddings;
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["bos_token_id"] = c.bos_token_id;
    j["eos_token_id"] = c.eos_token_ids.front();
    j["torch_dtype"] = c.torch_dtype;
    j["initializer_range"] = 0.02;
    return j.dump(2) + "\n";
}

// Hugging Face LlamaForCausalLM tensor names; shapes (out, in) as the model stores them.
std::vector<std::pair<std::string, qls::tensor>> hf_tensors(const qls::llama_model& m) {
    const qls::model_config& c = m.config;
    const int64_t C = c.hidden_size, H = c.intermediate_size, V = c.vocab_size;
    const int64_t Q = int64_t(c.num_heads) * c.head_dim, KV = int64_t(c.num_kv_heads) * c.head_dim;
    std::vector<std::pair<std::string, qls::tensor>> out;
    auto add = [&out](std::string name, const std::vector<float>& v, qls::shape_t shape) {
        out.emplace_back(std::move(name), qls::tensor::from_f32(v, std::move(shape)));
    };
    add("model.embed_tokens.weight", m.params.embed, {V, C});
    for (int l = 0; l < c.num_layers; ++l) {
        const auto& L = m.params.layers[size_t(l)];
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", L.attn_norm, {C});
        add(p + "self_attn.q_proj.weight", L.wq, {Q, C});
        add(p + "self_attn.k_proj.weight", L.wk, {KV, C});
        add(p + "self_attn.v_proj.weight", L.wv, {KV, C});
        add(p + "self_attn.o_proj.weight", L.wo, {C, Q});
        add(p + "post_attention_layernorm.weight", L.mlp_norm, {C});
        add(p + "mlp.gate_proj.weight", L.w_gate, {H, C});
        add(p + "mlp.up_proj.weight", L.w_up, {H, C});
        add(p + "mlp.down_proj.weight", L.w_down, {C, H});
    }
    add("model.norm.weight", m.params.final_norm, {C});
    if (!c.tie_word_embeddings) add("lm_head.weight", m.params.lm_head, {V, C});
    return out;
}

int make_demo_model(const fs::path& corpus, const fs::path& out_dir) {
    if (!fs::is_regular_file(corpus))
        throw qls::error(qls::error_code::io, corpus.string() + ": corpus not found",
                         "pass the Pip corpus, datasets/stories/pip_the_lighthouse_mouse.txt");
    fs::create_directories(out_dir);

    std::fprintf(stderr, "training the tokenizer on %s ...\n", corpus.string().c_str());
    write_text(out_dir / "tokenizer.model", train_tokenizer(corpus));

    const qls::model_config cfg = demo_config();
    write_text(out_dir / "config.json", config_json(cfg));
    // Parse what we wrote so that the recipe fails here, not in the studio, if the two ever disagree.
    const qls::model_config back = qls::load_model_config((out_dir / "config.json").string());
    qls::llama_model m = qls::llama_model::random(back, k_seed);
    qls::safetensors_save((out_dir / "model.safetensors").string(), hf_tensors(m), {{"format", "pt"}});

    write_text(out_dir / "tokenizer_config.json",
               "{\n  \"tokenizer_class\": \"LlamaTokenizer\",\n  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n"
               "  \"unk_token\": \"<unk>\",\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n"
               "  \"model_max_length\": " +
                   std::to_string(cfg.max_position_embeddings) + ",\n  \"legacy\": true\n}\n");
    write_text(out_dir / "generation_config.json",
               "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"do_sample\": false\n}\n");

    // Round trip through the loaders the studio uses.
    const qls::hf_checkpoint ck = qls::hf_checkpoint::open(out_dir.string());
    const qls::tokenizer tok = qls::load_tokenizer_for(ck);
    const qls::llama_model loaded = qls::llama_model::load(ck);
    std::fprintf(stderr, "wrote %s: %lld parameters, %d-piece tokenizer (BOS %d, EOS %d)\n", out_dir.string().c_str(),
                 loaded.config.parameter_count(), tok.vocab_size(), tok.bos_id(), tok.eos_id());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr,
                     "usage: make_demo_model CORPUS OUT_DIR\n"
                     "  e.g. make_demo_model datasets/stories/pip_the_lighthouse_mouse.txt resources/demo/model\n");
        return 2;
    }
    try {
        return make_demo_model(argv[1], argv[2]);
    } catch (const qls::error& e) {
        std::fprintf(stderr, "make_demo_model: %s\n", e.describe().c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_demo_model: %s\n", e.what());
    }
    return 1;
}
