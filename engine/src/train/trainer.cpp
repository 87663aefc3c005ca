// The training loop over a train_backend (CPU reference or CUDA): setup, the step, evaluation and per-step telemetry.
#include "qls/trainer.h"

#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/hf_checkpoint.h"
#include "qls/model_source.h"
#include "qls/peft.h"
#include "qls/run_plan.h"
#include "train/run_common.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace qls {

namespace fs = std::filesystem;

namespace {

// splitmix64 finaliser: the per-(step, micro-batch) dropout seed.
uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

train_batch view(const batch& b) { return {b.tokens.data(), b.targets.data(), b.positions.data(), b.segments.data()}; }

} // namespace

trainer::~trainer() = default;

namespace {

// "host memory 2.10 GiB resident (1.52 GiB anonymous), peak 2.31 GiB; plan 1.98 GiB": this process now
// (/proc/self/status) beside the plan's host peak, so each run shows whether the plan's host side held.
std::string host_memory_text(const memory_plan& plan) {
    const process_memory m = read_process_memory();
    char b[192];
    std::snprintf(b, sizeof b, "host memory %.2f GiB resident (%.2f GiB anonymous), peak %.2f GiB; plan %.2f GiB",
                  to_gib(m.resident_bytes), to_gib(m.anonymous_bytes), to_gib(m.peak_resident_bytes),
                  to_gib(plan.host.peak_bytes));
    return b;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace

void trainer::log(const std::string& line) const {
    if (cb_.on_log) cb_.on_log(line);
}

void trainer::request_continue() {
    {
        std::lock_guard<std::mutex> lock(pause_mutex_);
        pause_ = false;
    }
    pause_cv_.notify_all();
}

const optimizer& trainer::optim() const {
    const optimizer* o = backend_->host_optimizer();
    if (!o)
        throw error(error_code::invalid_argument,
                    "the " + std::string(backend_->kind()) + " backend keeps its optimizer states on the device");
    return *o;
}

// Everything both create() and resume() rebuild from the config: model, tokenizer, device, data, plan, backend.
void trainer::build(const train_callbacks& cb, const std::optional<memory_plan>& given_plan) {
    cb_ = cb;
    built_at_ = std::chrono::steady_clock::now();
    if (cfg_.mode == "full")
        throw error(error_code::config,
                    "training.mode: \"full\" trains every weight with run_full_training (full_train.h), not the "
                    "LoRA trainer; a full run is not resumed: its checkpoints are whole models",
                    "run it with `qlora train --config run.json`, or start a new run from its last checkpoint");
    // The model through model_source: a Hugging Face directory or a GGUF file (weights, tokenizer, chat template).
    const std::unique_ptr<model_source> src = open_model_source(cfg_.model);
    tok_ = src->load_tokenizer();
    const double opened_s = seconds_since(built_at_);
    const model_config& mc = src->config();
    // the settings against the model (train_checks.cpp): the context refuses, the rest are notes
    for (const config_note& n : check_train_config_for_model(cfg_, mc))
        log("note: " + n.key + ": " + n.text + " (" + n.hint + ")");
    // The device first: it decides how the model is held on the host (the CPU backend computes with f32
    // projections; the CUDA backend uploads the NF4 ones and no f32 copy is kept).
    const device_choice dc = choose_train_device(cfg_.backend, cfg_.gpu, cfg_.quantize_nf4 && cfg_.double_quant,
                                                 mc.head_dim);
    device_ = dc.device;
    // The run's one plan, before anything large is allocated: the caller's when it was made for exactly this run.
    const plan_settings ps = plan_settings_for(cfg_, device_);
    plan_ = given_plan && plan_matches(*given_plan, mc, ps) ? *given_plan : plan_run(mc, ps);
    if (plan_.verdict == plan_verdict::does_not_fit) {
        std::string hint;
        for (const auto& sg : plan_.suggestions) hint += (hint.empty() ? "" : "; ") + sg.text;
        for (const auto& sg : plan_.host.suggestions) hint += (hint.empty() ? "" : "; ") + sg;
        throw error(error_code::config,
                    (plan_.host.fits ? "this run does not fit the memory budget: "
                                     : "this run does not fit the machine's memory: ") +
                        plan_.explanation,
                    hint.empty() ? "raise device.budget_gib or lower training.seq_len / micro_batch" : hint);
    }
    // One line: which device trains and why.
    log("device: " + device_.label() + " trains (" +
        (dc.why.empty() ? "device.backend \"" + cfg_.backend + "\"" : dc.why) + ")");

    llama_load_options lo;
    lo.quantize_nf4 = cfg_.quantize_nf4;
    lo.double_quant = cfg_.double_quant;
    load_progress loaded; // the loader's last report (bytes read, seconds): the run log's load line
    lo.control.on_progress = [&loaded, user = cb.on_load](const load_progress& p) {
        loaded = p;
        if (user) user(p);
    };
    lo.control.cancel = cb.cancel_load;
    lo.control.test_delay_ms_per_tensor = cb.load_test_delay_ms;
    // The backend is set up inside the plan before the weights are read: a backend with a sink (CUDA: the arena)
    // takes each frozen tensor as it is read and the host keeps none; the others compute with the loaded model.
    // The adapters' initial values go to the builder and on to the backend without a host copy being kept here.
    const double planned_s = seconds_since(built_at_);
    std::unique_ptr<train_backend_builder> builder =
        begin_train_backend(device_, mc, lora_init(mc, cfg_.lora, cfg_.seed), plan_, backend_options());
    const double set_up_s = seconds_since(built_at_);
    lo.sink = builder->sink();
    std::shared_ptr<void> load_helper = prepare_backend_load(device_, lo); // f32 copies kept or not; GPU quantizer
    model_ = llama_model::load(*src, lo);
    load_helper.reset(); // a GPU quantizer's scratch memory goes back before the first step
    const double loaded_s = seconds_since(built_at_);
    {
        const double gb = double(loaded.bytes_done) / 1e9;
        char b[128];
        std::snprintf(b, sizeof b, "weights: %.2f GB read in %.1f s (%.2f GB/s); ", gb, loaded.seconds,
                      loaded.seconds > 0 ? gb / loaded.seconds : 0.0);
        log(b + host_memory_text(plan_));
    }

    dataset_split split = load_run_data(cfg_, *src, tok_);
    for (const std::string& line : run_data_log_lines(cfg_, split)) log(line);
    train_ = std::move(split.train);
    val_ = std::move(split.validation);

    const double data_s = seconds_since(built_at_);
    backend_ = builder->finish(model_);
    {
        // where the start-up time went, phase by phase (seconds since the trainer started)
        char b[256];
        std::snprintf(b, sizeof b,
                      "start-up: model and tokenizer opened %.1f s, device and plan %.1f s, backend and adapters set "
                      "up %.1f s, weights %.1f s, data %.1f s, backend ready %.1f s",
                      opened_s, planned_s - opened_s, set_up_s - planned_s, loaded_s - set_up_s, data_s - loaded_s,
                      seconds_since(built_at_) - data_s);
        log(b);
    }
    char host[64];
    std::snprintf(host, sizeof host, "%.2f GiB host", to_gib(plan_.host.peak_bytes));
    log("backend: " + backend_->name() + ", planned " + std::to_string(to_gib(plan_.peak_bytes())) + " GiB device, " +
        host + ", " + plan_verdict_name(plan_.verdict));

    batches_ = std::make_unique<batcher>(train_.examples, run_batch_options(cfg_));
    total_steps_ = run_total_steps(cfg_, int64_t(batches_->batches_per_epoch()));
}

train_backend_options trainer::backend_options() const {
    train_backend_options bo;
    bo.adamw = cfg_.adamw;
    bo.page_pool_bytes = cfg_.page_pool_bytes;
    return bo;
}

// After an abandoned step the backend still holds that step's partial gradients: cleared, nothing applied.
void trainer::discard_gradients() {
    backend_->discard_gradients();
    stale_gradients_ = false;
}

std::string trainer::first_nonfinite_adapter() const {
    const lora_weights<float>& w = backend_->adapters();
    for (int l = 0; l < model_.config.num_layers; ++l)
        for (lora_target tg : cfg_.lora.targets) {
            const lora_adapter<float>& ad = w.at(l, tg);
            for (bool is_b : {false, true}) {
                const std::vector<float>& v = is_b ? ad.b : ad.a;
                for (float x : v)
                    if (!std::isfinite(x)) return peft_tensor_name(l, tg, is_b);
            }
        }
    return {};
}

std::unique_ptr<trainer> trainer::create(const train_config& cfg, const train_callbacks& cb,
                                         const std::optional<memory_plan>& plan) {
    validate_train_config(cfg);
    std::unique_ptr<trainer> t(new trainer());
    t->cfg_ = cfg;
    // absolute paths in the saved config.json, so `qlora resume` works from any working directory
    make_run_paths_absolute(t->cfg_);
    t->run_dir_ = (fs::path(t->cfg_.runs_dir) / cfg.name).string();
    if (!latest_checkpoint(t->run_dir_).empty())
        throw error(error_code::config, t->run_dir_ + ": this run already has checkpoints",
                    "continue it with `qlora resume " + t->run_dir_ + "`, or choose another name");
    t->build(cb, plan);
    create_run_dir(t->run_dir_, t->cfg_);
    t->log("run " + t->run_dir_ + ": " + std::to_string(t->train_.stats.examples) + " training examples, " +
           std::to_string(t->val_.stats.examples) + " validation examples, " + std::to_string(t->total_steps_) +
           " steps");
    return t;
}

std::unique_ptr<trainer> trainer::resume(const std::string& run_dir, const train_callbacks& cb) {
    const fs::path cfg_path = fs::path(run_dir) / "config.json";
    if (!fs::exists(cfg_path))
        throw error(error_code::io, cfg_path.string() + ": not found; this is not a run directory",
                    "pass the directory `qlora train` created under runs/");
    const std::string ckpt_dir = latest_checkpoint(run_dir);
    if (ckpt_dir.empty())
        throw error(error_code::io, run_dir + ": no complete checkpoint to resume from",
                    "start the run again with `qlora train --config " + cfg_path.string() + "`");
    std::unique_ptr<trainer> t(new trainer());
    // config.json holds absolute (resolved) paths, so no base directory is needed
    t->cfg_ = parse_train_config(read_file_text(cfg_path, "the run directory is incomplete"), cfg_path.string(), "");
    t->run_dir_ = run_dir;
    t->build(cb);
    t->restore(ckpt_dir);
    return t;
}

void trainer::append_metrics(const step_stats& s) { append_metrics_line(run_dir_, s); }

std::optional<double> trainer::evaluate() {
    auto before_batch = [this](size_t i, size_t n) {
        if (batch_hook) batch_hook(true, int(i));
        if (!stop_) return true;
        log("evaluation skipped: a stop was requested after " + std::to_string(i) + " of " + std::to_string(n) +
            " batches");
        return false;
    };
    return evaluate_mean_loss(val_.examples, batches_->options(), cfg_.eval_batches, before_batch,
                              [this](const batch& b) { return backend_->forward_loss(view(b)); });
}

// The step's telemetry: what the plan predicted per category beside what the backend measured.
step_stats trainer::telemetry(double loss, double lr, double grad_norm, int64_t tokens, double dt, double eta_s,
                              const backend_memory& before) const {
    step_stats st = step_progress_stats(*batches_, step_, total_steps_, loss, lr, grad_norm, tokens, tokens_total_, dt,
                                        eta_s);
    for (int c = 0; c < plan_category_count; ++c)
        st.plan_bytes.emplace_back(plan_category_name(plan_category(c)), plan_.category_bytes(plan_category(c)));
    const backend_memory m = backend_->memory();
    st.device_used_bytes = m.used_bytes;
    st.device_peak_bytes = m.peak_bytes;
    st.device_total_bytes = m.total_bytes;
    st.arena_bytes = m.arena_bytes;
    st.paging_h2d_bytes = m.paging_h2d_bytes - before.paging_h2d_bytes;
    st.paging_d2h_bytes = m.paging_d2h_bytes - before.paging_d2h_bytes;
    st.resident_pages = m.resident_pages;
    st.total_pages = m.total_pages;
    st.offload_h2d_bytes = m.offload_h2d_bytes - before.offload_h2d_bytes;
    st.offload_d2h_bytes = m.offload_d2h_bytes - before.offload_d2h_bytes;
    return st;
}

train_outcome trainer::run(const train_callbacks& cb) {
    if (cb.on_step || cb.on_log) cb_ = cb;
    using clock = std::chrono::steady_clock;
    stop_ = false;
    if (stale_gradients_) discard_gradients();
    double ema_step_s = 0;
    // The loss or the gradient norm (`value`) became NaN/Inf: nothing of this step is applied or saved.
    auto diverge = [&](bool is_loss, double value, double lr) {
        const std::string last = latest_checkpoint(run_dir_);
        divergence_ = divergence_text(std::string(is_loss ? "the loss" : "the gradient norm") + " became " +
                                          (std::isnan(value) ? "NaN" : "infinite"),
                                      step_ + 1, lr, last);
        log(divergence_);
        return train_outcome::diverged;
    };
    // The adapters hold NaN/Inf (`tensor`) after step `at`: nothing is saved, the run stops as diverged.
    auto diverge_adapters = [&](const std::string& tensor, int64_t at, double lr) {
        const std::string last = latest_checkpoint(run_dir_);
        divergence_ = "the adapters became NaN or infinite at step " + std::to_string(at) + " (" +
                      (tensor.empty() ? "" : tensor + ", ") + "learning rate " + std::to_string(lr) +
                      "); training stopped and no checkpoint was written" +
                      (last.empty() ? "" : "; the last good checkpoint is " + last) +
                      ". Lower optimizer.lr, keep optimizer.max_grad_norm on, or resume from an earlier checkpoint "
                      "if the optimizer state may be damaged";
        log(divergence_);
        return train_outcome::diverged;
    };
    // A checkpoint of the current step, unless the adapters are not finite (then the run diverged).
    auto checkpoint = [&](double lr) -> bool {
        const std::string bad = first_nonfinite_adapter();
        if (!bad.empty()) return diverge_adapters(bad, step_, lr), false;
        save_checkpoint();
        return true;
    };
    auto stopped = [&]() {
        if (!checkpoint(learning_rate_at(cfg_, std::max<int64_t>(0, step_ - 1), total_steps_)))
            return train_outcome::diverged;
        log("stopped at step " + std::to_string(step_));
        return train_outcome::stopped;
    };
    while (step_ < total_steps_) {
        if (pause_ && !stop_) {
            log("paused at step " + std::to_string(step_));
            std::unique_lock<std::mutex> lock(pause_mutex_);
            while (pause_ && !stop_) pause_cv_.wait_for(lock, std::chrono::milliseconds(100));
            if (!stop_) log("continuing at step " + std::to_string(step_));
        }
        if (stop_) return stopped();
        const auto t0 = clock::now();
        const backend_memory before = backend_->memory();
        const batcher_position step_start = batches_->position();
        // ---------------- TRAINING SECTION BEGIN ----------------
        const double lr = learning_rate_at(cfg_, step_, total_steps_);
        double loss_sum = 0;
        int losses = 0;
        int64_t tokens = 0;
        for (int micro = 0; micro < cfg_.grad_accum; ++micro) {
            if (batch_hook) batch_hook(false, micro);
            if (stop_) { // abandon the step: nothing applied, the data position back to its start
                batches_->set_position(step_start);
                stale_gradients_ = micro > 0;
                log("step " + std::to_string(step_ + 1) + " abandoned after " + std::to_string(micro) + " of " +
                    std::to_string(cfg_.grad_accum) + " micro-batches: a stop was requested");
                return stopped();
            }
            const batch b = batches_->next();
            for (int s : b.segments) tokens += s != 0;
            if (b.counted_targets == 0) continue; // an empty filler batch at the end of an epoch
            const uint64_t dropout_seed = mix(cfg_.seed ^ mix(uint64_t(step_) * 1024 + uint64_t(micro)));
            loss_sum += float(backend_->forward_backward(view(b), dropout_seed));
            ++losses;
        }
        const double loss = losses ? loss_sum / losses : 0.0; // the mean over micro-batches, as HF Trainer
        if (!std::isfinite(loss)) { // nothing applied: the data position back to the step's start, gradients dropped
            batches_->set_position(step_start);
            stale_gradients_ = true;
            return diverge(true, loss, lr);
        }
        const train_update u = backend_->optimizer_step(float(lr), cfg_.grad_accum, cfg_.max_grad_norm);
        if (!u.applied && !std::isfinite(u.grad_norm)) return diverge(false, u.grad_norm, lr);
        if (!u.applied) return diverge_adapters(first_nonfinite_adapter(), step_ + 1, lr); // the backend said so
        ++step_;
        // ---------------- TRAINING SECTION END ----------------
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        tokens_total_ += tokens;
        ema_step_s = ema_step_s == 0 ? dt : 0.9 * ema_step_s + 0.1 * dt;
        if (!first_step_logged_) { // time to the first step and the host memory then: the load's real cost
            first_step_logged_ = true;
            char b[96];
            std::snprintf(b, sizeof b, "step %lld done %.1f s after the trainer started (loading included); ",
                          (long long)step_, seconds_since(built_at_));
            log(b + host_memory_text(plan_));
        }
        step_stats st = telemetry(loss, lr, u.grad_norm, tokens, dt, ema_step_s * double(total_steps_ - step_), before);
        const bool last = step_ == total_steps_;
        if (step_is_due(cfg_.eval_every, step_, last)) {
            st.eval_loss = evaluate();
            if (st.eval_loss) log("step " + std::to_string(step_) + ": eval loss " + std::to_string(*st.eval_loss));
        }
        append_metrics(st);
        if (cb_.on_step) cb_.on_step(st);
        if (step_is_due(cfg_.checkpoint_every, step_, last))
            if (!checkpoint(lr)) return train_outcome::diverged;
    }
    log("at the end: " + host_memory_text(plan_));
    return train_outcome::completed;
}

} // namespace qls
