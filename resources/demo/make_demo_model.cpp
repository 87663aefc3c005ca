// make_demo_model — the recipe for resources/demo/model: a tokenizer trained on both story corpora and a small LLaMA pretrained from seeded random weights on the small-tales corpus with the engine's full-parameter training.
//
// Usage: make_demo_model PIP_CORPUS TALES_CORPUS TALES_VALIDATION OUT_DIR [--steps N] [--work DIR]
//        (the CMake target demo_model runs it on the repository's files; --steps shortens the pretraining, for checks)
//
// What it writes into OUT_DIR, a Hugging Face LLaMA directory the engine and transformers both read:
//   tokenizer.model          SentencePiece BPE, 512 pieces, byte fallback, trained on the Pip corpus and the tales
//                            corpus together; the settings llama2.c's tinystories.py train_vocab uses for its small
//                            vocabularies (identity normalization, split digits, whitespace-only pieces allowed,
//                            character coverage 1.0), single-threaded so that the same corpora give the same pieces
//   config.json              the dimensions below (LlamaForCausalLM, tied embeddings, float32)
//   model.safetensors        the pretrained weights: normal(0, 0.02) initialisation (qls::llama_model::random, HF's
//                            initializer_range, seed k_seed), then k_steps of full-parameter AdamW on the tales corpus
//                            (qls::run_full_training, settings in pretrain_config)
//   tokenizer_config.json, generation_config.json   what transformers' LlamaTokenizer and generate() expect
// The tales corpus has no Pip in it: the base model writes simple English stories about other characters, and only
// the demo's LoRA fine-tune on the Pip corpus teaches it Pip. Everything is a pure function of the corpora, k_seed and
// the steps (on the same C++ standard library: std::normal_distribution is not specified bit for bit; the CPU ops
// reduce in a fixed order whatever the thread count), so the committed files can be regenerated and compared.
#include "qls/error.h"
#include "qls/full_train.h"
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
constexpr int k_steps = 300; // pretraining steps of 4 x 256 tokens (about 1.3 epochs of the tales corpus)

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

// SentencePiece stores the input file names in the model (trainer_spec.input): the corpora are copied into `dir`
// under their own names and read from there, so that the tokenizer's bytes do not depend on where the recipe runs.
std::string train_tokenizer(const fs::path& pip, const fs::path& tales, const fs::path& dir) {
    fs::create_directories(dir);
    fs::copy_file(pip, dir / pip.filename(), fs::copy_options::overwrite_existing);
    fs::copy_file(tales, dir / tales.filename(), fs::copy_options::overwrite_existing);
    const fs::path cwd = fs::current_path();
    fs::current_path(dir);
    struct restore_cwd {
        fs::path p;
        ~restore_cwd() { fs::current_path(p); }
    } restore{cwd};
    const std::unordered_map<std::string, std::string> args = {
        {"input", pip.filename().string() + "," + tales.filename().string()},
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
                         pip.string() + ", " + tales.string() + ": SentencePiece training failed: " + status.ToString(),
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

// The pretraining run: every weight, AdamW, a cosine schedule, plain text documents (one story per paragraph).
qls::train_config pretrain_config(const fs::path& init, const fs::path& tales, const fs::path& tales_val,
                                  const fs::path& runs, int steps) {
    qls::train_config c;
    c.mode = "full";
    c.name = "pretrain";
    c.runs_dir = runs.string();
    c.model = init.string();
    c.train_file = tales.string();
    c.validation_file = tales_val.string();
    c.dataset_format = "plain";
    c.prompt_template = "raw";
    c.train_on_prompt = true;
    c.packing = true;
    c.optimizer = qls::optimizer_kind::adamw_32bit;
    c.learning_rate = 4e-3f;
    c.adamw = {0.9f, 0.99f, 1e-8f, 0.0f};
    c.max_grad_norm = 1.0f;
    c.schedule = qls::lr_schedule::cosine;
    c.warmup_steps = std::min(40, steps / 10);
    c.seq_len = 256; // the longest tale is 224 tokens: no story is cut
    c.micro_batch = 4;
    c.grad_accum = 1;
    c.max_steps = steps;
    c.eval_every = 100;
    c.eval_batches = 8;
    c.checkpoint_every = 0;
    c.keep_checkpoints = 1;
    c.gradient_checkpointing = false;
    c.seed = k_seed;
    c.backend = "cpu";
    return c;
}

int make_demo_model(const fs::path& pip, const fs::path& tales, const fs::path& tales_val, const fs::path& out_dir,
                    int steps, fs::path work) {
    for (const fs::path& p : {pip, tales, tales_val})
        if (!fs::is_regular_file(p))
            throw qls::error(qls::error_code::io, p.string() + ": corpus not found",
                             "pass datasets/stories/pip_the_lighthouse_mouse.txt, datasets/tales/small_tales.txt and "
                             "datasets/tales/small_tales.val.txt (python3 datasets/tales/make_tales.py writes the "
                             "last two)");
    if (work.empty()) work = out_dir.parent_path() / (".work-" + out_dir.filename().string());
    work = fs::absolute(work);
    fs::remove_all(work);
    const fs::path init = work / "init";
    fs::create_directories(init);
    fs::create_directories(out_dir);

    std::fprintf(stderr, "training the tokenizer on %s and %s ...\n", pip.string().c_str(), tales.string().c_str());
    write_text(init / "tokenizer.model", train_tokenizer(fs::absolute(pip), fs::absolute(tales), work / "corpora"));
    const qls::model_config cfg = demo_config();
    write_text(init / "config.json", config_json(cfg));
    // Parse what we wrote so that the recipe fails here, not in the studio, if the two ever disagree.
    const qls::model_config back = qls::load_model_config((init / "config.json").string());
    qls::llama_model m = qls::llama_model::random(back, k_seed);
    qls::safetensors_save((init / "model.safetensors").string(), hf_tensors(m), {{"format", "pt"}});
    write_text(init / "tokenizer_config.json",
               "{\n  \"tokenizer_class\": \"LlamaTokenizer\",\n  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n"
               "  \"unk_token\": \"<unk>\",\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n"
               "  \"model_max_length\": " +
                   std::to_string(cfg.max_position_embeddings) + ",\n  \"legacy\": true\n}\n");
    write_text(init / "generation_config.json",
               "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"do_sample\": false\n}\n");

    std::fprintf(stderr, "pretraining every weight for %d steps on %s ...\n", steps, tales.string().c_str());
    qls::train_callbacks cb;
    cb.on_log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    cb.on_step = [](const qls::step_stats& s) {
        if (s.step % 50 == 0 || s.eval_loss)
            std::fprintf(stderr, "step %lld/%lld loss %.4f%s %.0f tok/s\n", (long long)s.step, (long long)s.total_steps,
                         s.loss, s.eval_loss ? (" eval " + std::to_string(*s.eval_loss)).c_str() : "", s.tokens_per_s);
    };
    const qls::full_train_result r = qls::run_full_training(pretrain_config(init, tales, tales_val, work / "runs",
                                                                            steps),
                                                            cb);
    if (r.outcome != qls::train_outcome::completed)
        throw qls::error(qls::error_code::internal, "the pretraining did not complete: " + r.message);
    for (const char* f :
         {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json", "generation_config.json"})
        fs::copy_file(fs::path(r.checkpoint) / f, out_dir / f, fs::copy_options::overwrite_existing);
    fs::remove_all(work);

    // Round trip through the loaders the studio uses.
    const qls::hf_checkpoint ck = qls::hf_checkpoint::open(out_dir.string());
    const qls::tokenizer tok = qls::load_tokenizer_for(ck);
    const qls::llama_model loaded = qls::llama_model::load(ck);
    std::fprintf(stderr, "wrote %s: %lld parameters, %d-piece tokenizer (BOS %d, EOS %d), train loss %.4f, eval %.4f\n",
                 out_dir.string().c_str(), loaded.config.parameter_count(), tok.vocab_size(), tok.bos_id(),
                 tok.eos_id(), r.last_loss, r.eval_loss.value_or(0.0));
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    std::vector<std::string> pos;
    int steps = k_steps;
    std::string work;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if ((a == "--steps" || a == "--work") && i + 1 < argc) {
            const std::string v = argv[++i];
            if (a == "--work") work = v;
            else {
                try {
                    steps = std::stoi(v);
                } catch (...) {
                    steps = 0;
                }
                if (steps < 1 || steps > 1000000) {
                    std::fprintf(stderr, "make_demo_model: --steps must be a number from 1 to 1000000, got '%s'\n",
                                 v.c_str());
                    return 2;
                }
            }
        } else pos.push_back(a);
    }
    if (pos.size() != 4) {
        std::fprintf(
            stderr,
            "usage: make_demo_model PIP_CORPUS TALES_CORPUS TALES_VALIDATION OUT_DIR [--steps N] [--work DIR]\n"
            "  e.g. make_demo_model datasets/stories/pip_the_lighthouse_mouse.txt datasets/tales/small_tales.txt "
            "datasets/tales/small_tales.val.txt resources/demo/model\n");
        return 2;
    }
    try {
        return make_demo_model(pos[0], pos[1], pos[2], pos[3], steps, work);
    } catch (const qls::error& e) {
        std::fprintf(stderr, "make_demo_model: %s\n", e.describe().c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_demo_model: %s\n", e.what());
    }
    return 1;
}
