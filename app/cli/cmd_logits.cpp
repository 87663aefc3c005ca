// qlora logits: the CPU forward's logits of a model (a Hugging Face directory or a .gguf file), optionally with a PEFT
// adapter merged in, for given token ids, written to a safetensors file, so that other implementations
// (packaging/gpu/check-merged-in-transformers.py, tests/oracles/peft_logits_check.py) can be compared with ours.
#include "args.h"
#include "commands.h"

#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/model_source.h"
#include "qls/peft.h"
#include "qls/safetensors.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace qlora_cli {

// Writes OUT with "tokens" I64 [1, T] and "logits" F32 [1, T, V]: llama_pass's forward of the model (f32 weights as
// stored, dequantized for GGUF; with --adapter DIR the PEFT adapter merged in as W + scale·B·A, as `qlora generate`
// does on the CPU) on the token ids, one sequence, positions 0..T-1.
int cmd_logits(int argc, char** argv) {
    args a(argc, argv, 2, {"model", "tokens", "out", "adapter"}, {});
    if (!a.positional().empty()) throw usage_error("unexpected argument '" + a.positional()[0] + "'");
    const auto dir = a.get("model");
    const auto list = a.get("tokens");
    const auto out = a.get("out");
    if (!dir || !list || !out)
        throw usage_error("usage: qlora logits --model DIR|FILE.gguf --tokens ID,ID,... --out FILE.safetensors "
                          "[--adapter PEFT_DIR]");
    const std::unique_ptr<qls::model_source> src = qls::open_model_source(*dir);
    qls::llama_model m = qls::llama_model::load(*src);
    if (const auto adapter_dir = a.get("adapter")) {
        // W + scale·B·A merged into the f32 weights, PEFT's merge_and_unload (in place, as generate on the CPU)
        const qls::lora_weights<float> lw = qls::load_peft(*adapter_dir, m.config);
        for (int l = 0; l < m.config.num_layers; ++l)
            for (qls::lora_target t : qls::all_lora_targets())
                if (lw.at(l, t).enabled()) qls::lora_merge(m.projection(l, t).data(), lw.at(l, t), lw.config.scale());
    }
    std::vector<int> toks;
    std::stringstream ss(*list);
    for (std::string item; std::getline(ss, item, ',');) {
        char* end = nullptr;
        const long v = std::strtol(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || v < 0 || v >= m.config.vocab_size)
            throw usage_error("--tokens: '" + item + "' is not a token id of this model (0.." +
                              std::to_string(m.config.vocab_size - 1) + ")");
        toks.push_back(int(v));
    }
    if (toks.empty() || toks.size() > 4096) throw usage_error("--tokens: give 1 to 4096 token ids");
    const int T = int(toks.size());
    qls::llama_pass<float> pass(m.config, m.params, m.inv_freq, 1, T);
    pass.forward(toks.data(), nullptr);
    qls::tensor tokens(qls::dtype::i64, {1, T});
    for (int i = 0; i < T; ++i) tokens.data<int64_t>()[i] = toks[size_t(i)];
    qls::safetensors_save(*out, {{"tokens", tokens},
                                 {"logits", qls::tensor::from_f32(pass.logits(), {1, T, m.config.vocab_size})}});
    std::printf("%s\n", out->c_str());
    return 0;
}

} // namespace qlora_cli
