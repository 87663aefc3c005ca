// qlora plan: predict the device memory of a QLoRA run (a run.json on its device, or a model's config.json or a named
// shape with flags) and say whether it fits; through plan_run, the path every run plans by (run_plan.h).
#include "args.h"
#include "commands.h"

#include "qls/lora.h" // defines: parse_lora_targets, lora_targets_string
#include "qls/memory_plan.h"
#include "qls/model_config.h"
#include "qls/optim.h"    // defines: parse_optimizer_kind, optimizer_kind_flag
#include "qls/run_plan.h" // defines: plan_run, plan_settings_for
#include "qls/train_config.h"

#include <cstdio>
#include <string>

namespace qlora_cli {

namespace {

// The engine names the offending field first ("rank: ...", "checkpoint_offload: ..."), and its field names are our
// flag names with '_' for '-', so a bad value becomes a usage error naming the flag.
[[noreturn]] void rethrow_as_flag_error(const qls::error& e) {
    std::string what = e.what();
    for (size_t i = 0; i < what.size() && what[i] != ':'; ++i)
        if (what[i] == '_') what[i] = '-';
    throw usage_error("--" + what, e.hint());
}

double positive_gib(const args& a, const std::string& flag) {
    double g = a.get_double(flag, 0.0);
    if (!(g > 0.0) || g > 1.0e6)
        throw usage_error("--" + flag + " must be a positive number of GiB (got " + *a.get(flag) + ")",
                          "e.g. --" + flag + " 24 for a 24 GiB card");
    return g;
}

// --ram-gib N: plan against a machine with N GiB of RAM, all of it available.
qls::host_memory ram_flag(const args& a) {
    qls::host_memory h;
    h.total_bytes = h.available_bytes = qls::gib_to_bytes(positive_gib(a, "ram-gib"));
    return h;
}

void print_table(const qls::memory_plan& p) {
    const uint64_t peak = p.peak_bytes();
    std::printf("%-30s %10s %11s %7s\n", "category", "GiB", "MiB", "share");
    for (int i = 0; i < qls::plan_category_count; ++i) {
        const auto c = qls::plan_category(i);
        if (c == qls::plan_category::cuda_context) continue;
        const uint64_t b = p.category_bytes(c);
        std::printf("%-30s %10.3f %11.1f %6.1f%%\n", qls::plan_category_label(c), qls::to_gib(b), qls::to_mib(b),
                    peak ? 100.0 * double(b) / double(peak) : 0.0);
    }
    std::printf("%s\n", std::string(61, '-').c_str());
    std::printf("%-30s %10.3f %11.1f\n", "total (device peak)", qls::to_gib(peak), qls::to_mib(peak));
    const uint64_t paged = p.host_bytes() - p.offloaded_checkpoint_bytes();
    if (paged > 0)
        std::printf("%-30s %10.3f %11.1f\n", "paged states in host memory", qls::to_gib(paged), qls::to_mib(paged));
    if (p.checkpoints_offloaded())
        std::printf("%-30s %10.3f %11.1f\n", "checkpoints in host memory", qls::to_gib(p.offloaded_checkpoint_bytes()),
                    qls::to_mib(p.offloaded_checkpoint_bytes()));
    std::printf("%-30s %10.3f %11.1f\n", qls::plan_category_label(qls::plan_category::cuda_context),
                qls::to_gib(p.context_bytes()), qls::to_mib(p.context_bytes()));
    std::printf("%-30s %10.3f %11.1f\n", "card must hold", qls::to_gib(p.card_bytes_needed()),
                qls::to_mib(p.card_bytes_needed()));
    if (p.settings.budget_bytes > 0)
        std::printf("%-30s %10.3f %11.1f\n", "budget", qls::to_gib(p.settings.budget_bytes),
                    qls::to_mib(p.settings.budget_bytes));
    if (p.settings.card_bytes > 0)
        std::printf("%-30s %10.3f %11.1f\n", "card", qls::to_gib(p.settings.card_bytes),
                    qls::to_mib(p.settings.card_bytes));
    if (p.settings.budget_bytes == 0 && p.settings.card_bytes == 0) std::printf("%-30s %10s\n", "budget", "none");
}

void print_items(const qls::memory_plan& p) {
    std::printf("\n%-80s %-18s %-5s %-22s %5s %11s %s\n", "tensor", "category", "dtype", "shape (each)", "count", "MiB",
                "placement");
    for (const auto& it : p.items) {
        std::string shape = "(";
        for (size_t i = 0; i < it.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(it.shape[i]);
        shape += ")";
        std::printf("%-80s %-18s %-5s %-22s %5lld %11.2f %s\n", it.name.c_str(), qls::plan_category_name(it.category),
                    it.dtype.c_str(), shape.c_str(), (long long)it.count, qls::to_mib(it.bytes),
                    qls::plan_placement_name(it.placement));
    }
}

// Host memory beside the device: every category, the total and the machine's RAM.
void print_host(const qls::memory_plan& p) {
    const qls::host_plan& h = p.host;
    std::printf("\nhost memory (%s backend)\n", p.settings.backend.c_str());
    for (const qls::host_item& i : h.items)
        std::printf("  %-44s %10.3f GiB  %s\n", i.label.c_str(), qls::to_gib(i.bytes), i.formula.c_str());
    std::printf("  %-44s %10.3f GiB\n", "total (host peak)", qls::to_gib(h.peak_bytes));
    if (h.checked)
        std::printf("  %-44s %10.3f GiB available of %.3f GiB (/proc/meminfo MemAvailable, MemTotal)\n", "machine",
                    qls::to_gib(h.machine.available_bytes), qls::to_gib(h.machine.total_bytes));
    else std::printf("  %-44s unknown\n", "machine");
}

// The table, the verdict, what would make it fit and (items) every tensor.
void print_report(const qls::memory_plan& p, bool items) {
    print_table(p);
    print_host(p);
    std::printf("\nverdict: %s\n", p.explanation.c_str());
    if (!p.host.fits) std::printf("device: %s\n", p.suggestions.empty() ? "fits" : "does not fit either");
    if (!p.suggestions.empty() || !p.host.suggestions.empty()) {
        std::printf("to make it fit:\n");
        for (const auto& sg : p.suggestions) std::printf("  - %s\n", sg.text.c_str());
        for (const auto& sg : p.host.suggestions) std::printf("  - %s\n", sg.c_str());
    }
    if (items) print_items(p);
}

} // namespace

int cmd_plan(int argc, char** argv) {
    args a(argc, argv, 2,
           {"model", "shape", "config", "seq", "batch", "rank", "alpha", "dropout", "targets", "optimizer",
            "budget-gib", "card-gib", "backend", "ram-gib", "checkpoint-offload"},
           {"no-checkpointing", "json", "items"});
    if (!a.positional().empty()) throw usage_error("unexpected argument '" + a.positional()[0] + "'");
    if (int(a.has("model")) + int(a.has("shape")) + int(a.has("config")) != 1)
        throw usage_error(
            "give exactly one of --config run.json, --model DIR or --shape 7b|13b|33b|65b|70b|llama3.1-8b|qwen2.5-7b|qwen3-8b|mistral-nemo-12b|gemma3-12b",
            "--config plans that run on the device it would use; --model reads DIR/config.json; "
            "--shape uses the published dimensions of that model");
    if (auto run = a.get("config")) {
        // Exactly the plan `qlora train --config` makes: the run's settings on the device it would train on.
        for (const char* f : {"seq", "batch", "rank", "alpha", "dropout", "targets", "optimizer", "budget-gib",
                              "card-gib", "no-checkpointing", "backend", "checkpoint-offload"})
            if (a.has(f))
                throw usage_error(std::string("--") + f + " cannot be combined with --config",
                                  "change the run's setting in " + *run + " instead");
        const qls::train_config rc = qls::load_train_config(*run);
        const qls::model_config mc = qls::load_model_config(rc.model + "/config.json");
        const qls::device_choice dc = qls::choose_train_device(rc.backend, rc.gpu, rc.quantize_nf4 && rc.double_quant,
                                                               mc.head_dim);
        qls::plan_settings ps = qls::plan_settings_for(rc, dc.device);
        if (a.has("ram-gib")) ps.host = ram_flag(a);
        const qls::memory_plan p = qls::plan_run(mc, ps);
        if (a.has("json")) {
            std::printf("%s\n", qls::memory_plan_json(p, 2).c_str());
            return 0;
        }
        std::printf("run     %s on %s%s\n", run->c_str(), dc.device.label().c_str(),
                    dc.why.empty() ? "" : (" (" + dc.why + ")").c_str());
        print_report(p, a.has("items"));
        return 0;
    }

    qls::model_config cfg;
    std::string source;
    if (auto shape = a.get("shape")) {
        try {
            cfg = qls::shape_config(*shape);
        } catch (const qls::error& e) {
            rethrow_as_flag_error(e);
        }
        source = "shape " + *shape;
    } else {
        std::string dir = *a.get("model");
        std::string path = dir.size() >= 5 && dir.compare(dir.size() - 5, 5, ".json") == 0 ? dir : dir + "/config.json";
        cfg = qls::load_model_config(path); // config.json only: no weights are read
        source = path;
    }

    qls::plan_settings s;
    s.seq = a.get_int("seq", 2048);
    s.batch = a.get_int("batch", 1);
    s.lora.rank = a.get_int("rank", 64);
    s.lora.alpha = float(a.get_double("alpha", s.lora.alpha)); // lora_config defaults: alpha 16, dropout 0.1
    s.lora.dropout = float(a.get_double("dropout", s.lora.dropout));
    s.gradient_checkpointing = !a.has("no-checkpointing");
    const std::string offload = a.get_or("checkpoint-offload", "auto");
    try {
        s.offload = qls::parse_checkpoint_offload(offload);
    } catch (const qls::error& e) {
        throw usage_error("--checkpoint-offload: \"" + offload + "\" is not auto, on or off", e.hint());
    }
    if (a.has("budget-gib")) s.budget_bytes = qls::gib_to_bytes(positive_gib(a, "budget-gib"));
    if (a.has("card-gib")) s.card_bytes = qls::gib_to_bytes(positive_gib(a, "card-gib"));
    // Host memory: the backend that would compute (the device table is the CUDA one either way) and this machine's
    // RAM, or --ram-gib to plan for another machine.
    s.backend = a.get_or("backend", "cuda");
    if (s.backend != "cuda" && s.backend != "cpu")
        throw usage_error("--backend must be cuda or cpu (got " + s.backend + ")",
                          "cuda: the model stays NF4 on the host; cpu: the CPU backend holds it in f32");
    s.host = a.has("ram-gib") ? ram_flag(a) : qls::read_host_memory();
    try {
        if (auto t = a.get("targets")) s.lora.targets = qls::parse_lora_targets(*t);
        if (auto o = a.get("optimizer")) s.optimizer = qls::parse_optimizer_kind(*o);
        qls::validate_plan_settings(s);
    } catch (const qls::error& e) {
        if (e.code() != qls::error_code::invalid_argument) throw;
        rethrow_as_flag_error(e);
    }

    const qls::memory_plan p = qls::plan_run(cfg, s); // no device: only --budget-gib / --card-gib limit it
    if (a.has("json")) {
        std::printf("%s\n", qls::memory_plan_json(p, 2).c_str());
        return 0;
    }

    const double params = double(cfg.parameter_count());
    std::printf(
        "model   %s: hidden %d, MLP %d, %d layers, %d query / %d key-value heads, vocab %d (%.2f %s parameters)\n",
        source.c_str(), cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads,
        cfg.vocab_size, params >= 1e9 ? params / 1e9 : params / 1e6, params >= 1e9 ? "B" : "M");
    std::printf("run     batch %d x sequence %d, LoRA rank %d alpha %g dropout %g on %s (%.1f M trainable), %s, "
                "gradient checkpointing %s\n",
                s.batch, s.seq, s.lora.rank, double(s.lora.alpha), double(s.lora.dropout),
                qls::lora_targets_string(s.lora.targets).c_str(), double(p.lora_parameters) / 1e6,
                qls::optimizer_kind_flag(s.optimizer), s.gradient_checkpointing ? "on" : "off");
    std::printf("loss    chunked cross-entropy: fp32 logits for %d tokens at a time, never the full (B,T,V)\n\n",
                p.loss_chunk_tokens);
    print_report(p, a.has("items"));
    return 0;
}

} // namespace qlora_cli
