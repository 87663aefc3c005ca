// qlora train / resume / export: run a fine-tune from run.json with a progress bar, continue one, export its adapter.
#include "args.h"
#include "commands.h"
#include "load_progress.h"

#include "qls/full_train.h"
#include "qls/hf_checkpoint.h"
#include "qls/run_export.h"
#include "qls/trainer.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <unistd.h>

namespace qlora_cli {

namespace fs = std::filesystem;

static std::atomic<qls::trainer*> g_trainer{nullptr};
static std::atomic<int> g_interrupts{0};
static std::atomic<bool> g_full_stop{false}; // a full-parameter run's stop flag

// SIGINT/SIGTERM: the first asks the trainer to stop after the current step and save a checkpoint (an atomic
// store, safe in a handler); a second one falls back to the default action.
extern "C" void on_interrupt(int sig) {
    if (g_interrupts.fetch_add(1) >= 1) {
        std::signal(sig, SIG_DFL);
        std::raise(sig);
        return;
    }
    if (qls::trainer* t = g_trainer.load()) t->request_stop();
    g_full_stop = true;
}

static std::string format_duration(double s) {
    if (!(s >= 0) || s > 1e7) return "?";
    long v = long(s + 0.5);
    char buf[32];
    if (v >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", v / 3600, (v / 60) % 60);
    else if (v >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", v / 60, v % 60);
    else std::snprintf(buf, sizeof buf, "%lds", v);
    return buf;
}

static qls::train_callbacks terminal_callbacks(bool quiet) {
    const bool tty = isatty(fileno(stderr));
    qls::train_callbacks cb;
    cb.on_log = [tty](const std::string& line) { std::fprintf(stderr, "%s%s\n", tty ? "\r\033[K" : "", line.c_str()); };
    cb.on_step = [tty, quiet](const qls::step_stats& s) {
        if (quiet && !s.eval_loss) return;
        std::string eval = s.eval_loss ? "  eval " + std::to_string(*s.eval_loss).substr(0, 6) : "";
        if (tty) {
            const int width = 24;
            int filled = s.total_steps ? int(width * s.step / s.total_steps) : width;
            std::string bar(size_t(filled), '#');
            bar += std::string(size_t(width - filled), '.');
            std::fprintf(stderr, "\r\033[Kstep %lld/%lld [%s] loss %.4f  %.0f tok/s  ETA %s%s", (long long)s.step,
                         (long long)s.total_steps, bar.c_str(), s.loss, s.tokens_per_s,
                         format_duration(s.eta_s).c_str(), eval.c_str());
            if (s.step == s.total_steps || s.eval_loss) std::fputc('\n', stderr);
        } else {
            std::fprintf(stderr, "step %lld/%lld loss %.6f lr %.3g grad_norm %.4f %.0f tok/s ETA %s%s\n",
                         (long long)s.step, (long long)s.total_steps, s.loss, s.lr, s.grad_norm, s.tokens_per_s,
                         format_duration(s.eta_s).c_str(), eval.c_str());
        }
        std::fflush(stderr);
    };
    return cb;
}

// The setup's callbacks: the trainer's log lines (one of them says which device trains and why) and the model load's
// progress line.
static qls::train_callbacks setup_callbacks(bool quiet, const std::string& model) {
    qls::train_callbacks cb = terminal_callbacks(quiet);
    cb.on_load = terminal_load_progress(model);
    return cb;
}

static int run_trainer(qls::trainer& t, bool quiet) {
    g_trainer = &t;
    g_interrupts = 0;
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    qls::train_outcome r = t.run(terminal_callbacks(quiet));
    g_trainer = nullptr;
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    switch (r) {
    case qls::train_outcome::completed:
        std::printf("finished %lld steps; run %s; adapter %s\n", (long long)t.step(), t.run_dir().c_str(),
                    qls::latest_checkpoint(t.run_dir()).c_str());
        return 0;
    case qls::train_outcome::stopped:
        std::printf("stopped at step %lld and saved %s; continue with: qlora resume %s\n", (long long)t.step(),
                    qls::latest_checkpoint(t.run_dir()).c_str(), t.run_dir().c_str());
        return 0;
    case qls::train_outcome::diverged: std::fprintf(stderr, "qlora: %s\n", t.divergence_message().c_str()); return 3;
    }
    return 1;
}

// training.mode "full" (or --full): every weight trains on the CPU; checkpoints are whole models.
static int run_full(const qls::train_config& cfg, bool quiet) {
    g_full_stop = false;
    g_interrupts = 0;
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    qls::full_train_options opt;
    opt.stop = &g_full_stop;
    qls::train_callbacks cb = setup_callbacks(quiet, cfg.model);
    const qls::full_train_result r = qls::run_full_training(cfg, cb, opt);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    switch (r.outcome) {
    case qls::train_outcome::completed:
        std::printf("finished %lld steps; run %s; model %s\n", (long long)r.steps, r.run_dir.c_str(),
                    r.checkpoint.c_str());
        return 0;
    case qls::train_outcome::stopped:
        std::printf("stopped at step %lld and saved the model %s\n", (long long)r.steps, r.checkpoint.c_str());
        return 0;
    case qls::train_outcome::diverged: std::fprintf(stderr, "qlora: %s\n", r.message.c_str()); return 3;
    }
    return 1;
}

int cmd_train(int argc, char** argv) {
    args a(argc, argv, 2, {"config"}, {"quiet", "full"});
    auto path = a.get("config");
    if (!path) throw usage_error("--config run.json is required", "the run.json format is described in README.md");
    if (!a.positional().empty()) throw usage_error("unexpected argument '" + a.positional()[0] + "'");
    qls::train_config cfg = qls::load_train_config(*path);
    const bool quiet = a.has("quiet");
    if (a.has("full")) cfg.mode = "full";
    if (cfg.mode == "full") return run_full(cfg, quiet);
    auto t = qls::trainer::create(cfg, setup_callbacks(quiet, cfg.model));
    const qls::memory_plan& p = t->plan();
    std::fprintf(stderr,
                 "plan: %.1f MiB device, %.1f MiB host predicted (%s); %zu trainable LoRA parameters; %lld steps\n",
                 qls::to_mib(p.peak_bytes()), qls::to_mib(p.host.peak_bytes), qls::plan_verdict_name(p.verdict),
                 t->adapters().parameter_count(), (long long)t->total_steps());
    return run_trainer(*t, quiet);
}

int cmd_resume(int argc, char** argv) {
    args a(argc, argv, 2, {}, {"quiet"});
    if (a.positional().size() != 1) throw usage_error("usage: qlora resume RUN_DIR");
    auto t = qls::trainer::resume(a.positional()[0], setup_callbacks(a.has("quiet"), "the run's model"));
    return run_trainer(*t, a.has("quiet"));
}

int cmd_export(int argc, char** argv) {
    args a(argc, argv, 2, {"format", "checkpoint", "out", "quant", "dtype", "merge", "name"}, {"force"});
    const char* usage = "usage: qlora export RUN_DIR --format peft|merged|gguf-adapter|gguf [--checkpoint DIR] "
                        "[--out DIR] [--force] [--quant f16|bf16|q8_0|q4_0|q4_k_m] [--dtype f32|f16] "
                        "[--merge nf4|original|none] [--name NAME]";
    if (a.positional().size() != 1) throw usage_error(usage);
    const std::string run_dir = a.positional()[0];
    const std::string format = a.get_or("format", "peft");
    if (format != "peft" && format != "merged" && format != "gguf-adapter" && format != "gguf")
        throw usage_error("--format must be peft, merged, gguf-adapter or gguf, got '" + format + "'");
    const qls::export_format f = qls::export_format_from_name(format);
    if (f != qls::export_format::gguf && (a.has("quant") || a.has("merge")))
        throw usage_error("--quant and --merge apply to --format gguf");
    if (f != qls::export_format::gguf_adapter && a.has("dtype"))
        throw usage_error("--dtype applies to --format gguf-adapter");
    qls::export_request r = qls::export_request_for_run(run_dir, f, a.get_or("checkpoint", ""), a.get_or("out", ""));
    r.overwrite = a.has("force"); // an existing, non-empty output folder is replaced only when asked
    r.gguf_quant = a.get_or("quant", "f16");
    r.adapter_dtype = a.get_or("dtype", "f32");
    r.gguf_merge = a.get_or("merge", "");
    if (a.has("name")) r.name = a.get_or("name", "");
    qls::export_callbacks cb;
    int shown = -1; // last tenth of the tensors reported
    cb.on_stage = [&shown, f](const qls::export_progress& p) {
        if (p.stage != qls::export_stage::merging) return;
        if (p.tensors_done == 0) {
            if (f == qls::export_format::gguf)
                std::fprintf(stderr, "writing a %.1f MB GGUF: %lld tensors, %s%zu adapter parameters merged...\n",
                             double(p.file_size) / 1e6, (long long)p.tensors_total,
                             p.nf4_base ? "into the dequantized NF4 base, " : "", p.adapter_parameters);
            else
                std::fprintf(stderr, "merging %zu adapter parameters into %s base weights (%lld tensors, %.1f MB)...\n",
                             p.adapter_parameters, p.nf4_base ? "the dequantized NF4" : "the",
                             (long long)p.tensors_total, double(p.bytes_total) / 1e6);
        }
        const int tenth = p.tensors_total ? int(p.tensors_done * 10 / p.tensors_total) : 10;
        if (p.tensors_done > 0 && tenth != shown) {
            shown = tenth;
            std::fprintf(stderr, "  %lld/%lld tensors, %.1f/%.1f MB\n", (long long)p.tensors_done,
                         (long long)p.tensors_total, double(p.bytes_done) / 1e6, double(p.bytes_total) / 1e6);
        }
    };
    const qls::export_result res = qls::run_export(r, cb);
    for (const qls::export_file& file : res.files)
        std::fprintf(stderr, "wrote %s (%.2f MB)\n", file.path.c_str(), double(file.bytes) / 1e6);
    if (!res.commands.empty()) {
        std::fprintf(stderr, "run it:\n");
        for (const std::string& c : res.commands) std::fprintf(stderr, "  %s\n", c.c_str());
    }
    std::printf("%s\n", r.output_dir.c_str());
    return 0;
}

} // namespace qlora_cli
