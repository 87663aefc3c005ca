// qlora generate / info: load a Hugging Face model directory and sample from it, or describe it.
#include "args.h"
#include "commands.h"
#include "load_progress.h"

#include "qls/generate.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/peft.h"
#include "qls/tokenizer.h"

#include <chrono>
#include <cstdio>
#include <random>

namespace qlora_cli {

int cmd_generate(int argc, char** argv) {
    args a(argc, argv, 2, {"model", "adapter", "prompt", "max-new-tokens", "temperature", "top-p", "top-k", "seed"},
           {"nf4"});
    if (!a.positional().empty()) throw usage_error("unexpected argument '" + a.positional()[0] + "'");
    auto dir = a.get("model");
    if (!dir) throw usage_error("--model DIR is required", "point it at a Hugging Face model directory");

    qls::generate_options o;
    o.prompt = a.get_or("prompt", "");
    o.max_new_tokens = a.get_int("max-new-tokens", 256);
    o.sampling.temperature = float(a.get_double("temperature", 1.0));
    o.sampling.top_p = float(a.get_double("top-p", 0.9));
    o.sampling.top_k = a.get_int("top-k", 0);
    if (a.has("seed")) {
        long long s = a.get_int64("seed", 0);
        if (s < 0) throw usage_error("--seed must be >= 0");
        o.sampling.seed = uint64_t(s);
    } else {
        o.sampling.seed = uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
        if (o.sampling.temperature > 0) std::fprintf(stderr, "seed %llu\n", (unsigned long long)o.sampling.seed);
    }
    qls::validate_sampling(o.sampling);
    if (o.max_new_tokens < 0) throw usage_error("--max-new-tokens must be >= 0");

    qls::hf_checkpoint ckpt = qls::hf_checkpoint::open(*dir);
    qls::tokenizer tok = qls::load_tokenizer_for(ckpt);
    qls::llama_load_options lo;
    lo.quantize_nf4 = a.has("nf4");
    lo.control.on_progress = terminal_load_progress(*dir);
    qls::llama_model model = qls::llama_model::load(ckpt, lo);
    if (auto adapter = a.get("adapter")) {
        // base + adapter: W + scale·B·A merged into the weights, the same function as PEFT's merge_and_unload
        qls::lora_weights<float> lw = qls::load_peft(*adapter, model.config);
        for (int l = 0; l < model.config.num_layers; ++l)
            for (qls::lora_target t : qls::all_lora_targets())
                if (lw.at(l, t).enabled())
                    qls::lora_merge(model.projection(l, t).data(), lw.at(l, t), lw.config.scale());
    }

    qls::generate_result r = qls::generate(model, tok, o, [](const std::string& piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
    });
    std::fputc('\n', stdout);
    if (r.reason == qls::stop_reason::context_full)
        std::fprintf(stderr, "stopped: the model's context of %d positions is full\n",
                     model.config.max_position_embeddings);
    return 0;
}

int cmd_info(int argc, char** argv) {
    args a(argc, argv, 2, {"model"}, {});
    auto dir = a.get("model");
    if (!dir) throw usage_error("--model DIR is required");
    qls::hf_checkpoint ckpt = qls::hf_checkpoint::open(*dir);
    const qls::model_config& c = ckpt.config();
    std::printf("model        %s\n", dir->c_str());
    std::printf("architecture %s\n", c.model_type.c_str());
    std::printf("parameters   %lld\n", c.parameter_count());
    std::printf("layers       %d\n", c.num_layers);
    std::printf("hidden       %d (MLP %d)\n", c.hidden_size, c.intermediate_size);
    std::printf("heads        %d query, %d key/value, head size %d\n", c.num_heads, c.num_kv_heads, c.head_dim);
    std::printf("vocabulary   %d\n", c.vocab_size);
    std::printf("context      %d positions, rope theta %g (%s)\n", c.max_position_embeddings, c.rope.theta,
                c.rope.type.c_str());
    std::printf("embeddings   %s\n", c.tie_word_embeddings ? "tied to the LM head" : "separate LM head");
    std::printf("dtype        %s\n", c.torch_dtype.c_str());
    std::printf("tensors      %zu\n", ckpt.tensor_names().size());
    qls::tokenizer tok = qls::load_tokenizer_for(ckpt);
    std::printf("tokenizer    %s (%d pieces, BOS %d, EOS %d)\n", tok.path().c_str(), tok.vocab_size(), tok.bos_id(),
                tok.eos_id());
    return 0;
}

} // namespace qlora_cli
