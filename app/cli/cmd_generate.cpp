// qlora generate / info: load a model (a Hugging Face directory or a GGUF file) and sample from it — a text
// continuation, or one chat reply through the model's own template — or describe it.
#include "args.h"
#include "commands.h"
#include "load_progress.h"

#include "qls/architecture.h"
#include "qls/chat.h"
#include "qls/device.h" // defines: choose_train_device
#include "qls/error.h"
#include "qls/generate.h"
#include "qls/train_backend.h" // defines: prepare_backend_load
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/model_source.h"
#include "qls/peft.h"
#include "qls/tokenizer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <random>

namespace qlora_cli {

int cmd_generate(int argc, char** argv) {
    args a(argc, argv, 2,
           {"model", "adapter", "prompt", "chat", "system", "max-new-tokens", "temperature", "top-p", "top-k", "seed",
            "device", "gpu"},
           {"nf4"});
    if (!a.positional().empty()) throw usage_error("unexpected argument '" + a.positional()[0] + "'");
    auto dir = a.get("model");
    if (!dir)
        throw usage_error("--model PATH is required", "point it at a Hugging Face model directory or a .gguf file");
    if (a.has("chat") && a.has("prompt"))
        throw usage_error("--chat and --prompt exclude each other",
                          "--chat TEXT answers one user message through the model's chat template; --prompt TEXT "
                          "continues the text as written");
    if (a.has("system") && !a.has("chat")) throw usage_error("--system needs --chat");

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

    const std::string backend = a.get_or("device", "auto");
    if (backend != "auto" && backend != "cpu" && backend != "cuda")
        throw usage_error("--device must be auto, cpu or cuda (got '" + backend + "')");
    const int gpu = a.get_int("gpu", 0);
    if (gpu < 0) throw usage_error("--gpu must be >= 0");

    const std::unique_ptr<qls::model_source> src = qls::open_model_source(*dir);
    qls::tokenizer tok = src->load_tokenizer();
    std::shared_ptr<const qls::model_chat_template> tmpl;
    if (a.has("chat")) {
        tmpl = qls::load_model_chat_template(*src, tok);
        if (!tmpl)
            throw qls::error(qls::error_code::unsupported, *dir + " has no chat template",
                             "use --prompt TEXT for a text continuation, or a model with a chat template "
                             "(tokenizer_config.json's chat_template, chat_template.jinja, or GGUF "
                             "tokenizer.chat_template)");
    }
    // The device: the GPU when there is a usable one (auto) or when asked (cuda), as a training run chooses it. The GPU
    // decoder runs the NF4 base (double quantization), quantized on the GPU as the model loads.
    const qls::device_choice choice = [&] {
        try {
            return qls::choose_train_device(backend, gpu, true, src->config().head_dim);
        } catch (const qls::error& e) {
            if (e.code() != qls::error_code::device) throw;
            throw qls::error(e.code(), std::string("--device cuda: ") + e.what(),
                             "pass --device auto (the GPU when there is one, else the CPU) or --device cpu");
        }
    }();
    const bool on_gpu = choice.device.backend == "cuda";
    qls::llama_load_options lo;
    lo.quantize_nf4 = a.has("nf4") || on_gpu;
    // as a run loads: the CUDA decoder reads only the NF4 projections, quantized on its GPU as they are read
    std::shared_ptr<void> load_helper = qls::prepare_backend_load(choice.device, lo);
    lo.control.on_progress = terminal_load_progress(*dir);
    qls::llama_model model = qls::llama_model::load(*src, lo);
    load_helper.reset();
    std::fprintf(stderr, "generating on %s%s\n", choice.device.label().c_str(), on_gpu ? " (NF4 base)" : "");
    if (!choice.why.empty()) std::fprintf(stderr, "  (%s)\n", choice.why.c_str());
    std::optional<qls::lora_weights<float>> adapter;
    if (auto path = a.get("adapter")) {
        adapter = qls::load_peft(*path, model.config);
        if (!on_gpu) {
            // base + adapter on the CPU: W + scale·B·A merged into the weights, the same function as PEFT's
            // merge_and_unload (in place: no second copy of the model)
            for (int l = 0; l < model.config.num_layers; ++l)
                for (qls::lora_target t : qls::all_lora_targets())
                    if (adapter->at(l, t).enabled())
                        qls::lora_merge(model.projection(l, t).data(), adapter->at(l, t), adapter->config.scale());
            adapter.reset();
        }
    }
    // On the GPU the adapter stays apart from the NF4 weights and is applied beside them (x·Aᵀ·Bᵀ·scale).
    std::unique_ptr<qls::decoder> dec = qls::make_decoder(model, choice.device, adapter ? &*adapter : nullptr);

    const auto t0 = std::chrono::steady_clock::now();
    auto print = [](const std::string& piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
    };
    qls::generate_result r;
    if (tmpl) {
        // one user turn (after an optional system message) with the generation prompt; only the reply is printed
        std::vector<qls::chat_message> conversation;
        if (auto sys = a.get("system")) conversation.push_back({qls::chat_role::system, *sys});
        conversation.push_back({qls::chat_role::user, *a.get("chat")});
        qls::chat_reply_options co;
        co.max_new_tokens = o.max_new_tokens;
        co.sampling = o.sampling;
        qls::chat_reply cr = qls::generate_chat(*dec, tok, *tmpl, conversation, co, print);
        r.prompt_ids = std::move(cr.prompt_ids);
        r.new_ids = std::move(cr.new_ids);
        r.reason = cr.reason;
    } else {
        r = qls::generate(*dec, tok, o, print);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fputc('\n', stdout);
    if (r.reason == qls::stop_reason::context_full)
        std::fprintf(stderr, "stopped: the model's context of %d positions is full\n",
                     model.config.max_position_embeddings);
    std::fprintf(stderr, "%zu prompt + %zu new tokens in %.2f s (%.1f tokens/s) on %s\n", r.prompt_ids.size(),
                 r.new_ids.size(), secs, double(r.prompt_ids.size() + r.new_ids.size()) / std::max(secs, 1e-9),
                 dec->device_label().c_str());
    return 0;
}

int cmd_info(int argc, char** argv) {
    args a(argc, argv, 2, {"model"}, {});
    auto dir = a.get("model");
    if (!dir) throw usage_error("--model PATH is required", "a Hugging Face model directory or a .gguf file");
    const std::unique_ptr<qls::model_source> src = qls::open_model_source(*dir);
    const qls::model_config& c = src->config();
    std::printf("model        %s\n", dir->c_str());
    std::printf("format       %s\n", src->format().c_str());
    std::printf("family       %s\n", qls::architecture_for(c).family.c_str());
    std::printf("architecture %s\n", c.model_type.c_str());
    std::string specifics;
    for (const std::string& x : qls::family_specifics(c)) specifics += (specifics.empty() ? "" : "; ") + x;
    std::printf("specifics    %s\n", specifics.empty() ? "none (the LLaMA layout)" : specifics.c_str());
    std::string targets;
    for (const std::string& t : qls::peft_target_modules(qls::architecture_for(c)))
        targets += (targets.empty() ? "" : ", ") + t;
    std::printf("LoRA targets %s\n", targets.c_str());
    std::printf("parameters   %lld\n", c.parameter_count());
    std::printf("layers       %d\n", c.num_layers);
    std::printf("hidden       %d (MLP %d)\n", c.hidden_size, c.intermediate_size);
    std::printf("heads        %d query, %d key/value, head size %d\n", c.num_heads, c.num_kv_heads, c.head_dim);
    std::printf("vocabulary   %d\n", c.vocab_size);
    std::printf("context      %d positions, rope theta %g (%s)\n", c.max_position_embeddings, c.rope.theta,
                c.rope.type.c_str());
    std::printf("embeddings   %s\n", c.tie_word_embeddings ? "tied to the LM head" : "separate LM head");
    std::printf("dtype        %s\n", c.torch_dtype.c_str());
    std::printf("tensors      %zu\n", src->weights().size());
    if (src->format() == "gguf") {
        // How the file stores its weights: "Q4_1 x210, F32 x61, Q8_0 x1".
        std::map<std::string, int> stored;
        for (const qls::weight_info& w : src->weights()) ++stored[w.stored];
        std::vector<std::pair<int, std::string>> by_count;
        for (const auto& [type, n] : stored) by_count.emplace_back(-n, type);
        std::sort(by_count.begin(), by_count.end());
        std::string line;
        for (const auto& [n, type] : by_count) line += (line.empty() ? "" : ", ") + type + " x" + std::to_string(-n);
        std::printf("stored as    %s\n", line.c_str());
    }
    // The tokenizer: what it is and where it came from (load_tokenizer's `which`). A model whose tokenizer cannot
    // be loaded is still described, and the command then fails.
    int rc = 0;
    try {
        std::string which;
        const qls::tokenizer tok = src->load_tokenizer(&which);
        std::printf("tokenizer    %s (%d pieces, BOS %d, EOS %d)\n", tok.path().c_str(), tok.vocab_size(), tok.bos_id(),
                    tok.eos_id());
        std::printf("tok. kind    %s\n", which.c_str());
    } catch (const qls::error& e) {
        std::printf("tokenizer    not usable: %s\n", e.what());
        rc = 1;
    }
    const std::optional<qls::chat_template_text> tmpl = src->chat_template();
    if (tmpl) std::printf("template     %s (%zu characters)\n", tmpl->origin.c_str(), tmpl->text.size());
    else std::printf("template     none\n");
    return rc;
}

} // namespace qlora_cli
