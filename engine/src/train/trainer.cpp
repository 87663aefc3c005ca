// The training loop on the CUDA backend or the CPU reference, with atomic checkpoints, exact resume and per-step telemetry.
#include "qls/trainer.h"

#include "qls/device.h"
#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/peft.h"
#include "qls/run_plan.h"
#include "qls/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace qls {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int k_checkpoint_format = 1;

// splitmix64 finaliser: the per-(step, micro-batch) dropout seed.
uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void fsync_path(const fs::path& p, bool directory) {
    int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

// Writes text to path atomically: path.tmp, fsync, rename, fsync the directory.
void write_file_atomic(const fs::path& path, const std::string& text) {
    const fs::path tmp = path.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out)
            throw error(error_code::io, tmp.string() + ": cannot create the file",
                        "check that the run directory is writable and the disk is not full");
        out << text;
        out.flush();
        if (!out)
            throw error(error_code::io, tmp.string() + ": write failed", "check free disk space");
    }
    fsync_path(tmp, false);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw error(error_code::io, path.string() + ": cannot rename into place: " + ec.message());
    fsync_path(path.parent_path(), true);
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw error(error_code::io, p.string() + ": cannot open", "the run directory is incomplete");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

int64_t checkpoint_step(const fs::path& dir) {
    const std::string n = dir.filename().string();
    if (n.rfind("step-", 0) != 0) return -1;
    try {
        size_t used = 0;
        long long v = std::stoll(n.substr(5), &used);
        return used == n.size() - 5 ? v : -1;
    } catch (...) {
        return -1;
    }
}

std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const std::string& run_dir) {
    std::vector<std::pair<int64_t, fs::path>> v;
    const fs::path dir = fs::path(run_dir) / "checkpoints";
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return v;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        int64_t s = checkpoint_step(e.path());
        if (s >= 0 && fs::exists(e.path() / "trainer_state.json")) v.emplace_back(s, e.path());
    }
    std::sort(v.begin(), v.end());
    return v;
}

} // namespace

std::string latest_checkpoint(const std::string& run_dir) {
    auto v = list_checkpoints(run_dir);
    return v.empty() ? std::string() : v.back().second.string();
}

std::vector<step_stats> read_metrics(const std::string& run_dir) {
    std::vector<step_stats> out;
    std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        try {
            out.push_back(step_stats_from_json(line));
        } catch (const error&) {
            // a line cut short by a crash: skipped
        }
    }
    return out;
}

trainer::~trainer() = default;

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

// Everything both create() and resume() rebuild from the config: model, tokenizer, data, plan, adapters, optimizer.
void trainer::build(const train_callbacks& cb, const std::optional<memory_plan>& given_plan) {
    cb_ = cb;
    hf_checkpoint ckpt = hf_checkpoint::open(cfg_.model);
    tok_ = load_tokenizer_for(ckpt);
    llama_load_options lo;
    lo.quantize_nf4 = cfg_.quantize_nf4;
    lo.double_quant = cfg_.double_quant;
    model_ = llama_model::load(ckpt, lo);
    if (cfg_.seq_len > model_.config.max_position_embeddings)
        throw error(error_code::config,
                    "training.seq_len: " + std::to_string(cfg_.seq_len) + " is longer than the model's context of " +
                        std::to_string(model_.config.max_position_embeddings) + " positions",
                    "use training.seq_len <= " + std::to_string(model_.config.max_position_embeddings));
    // Backend: "cuda" requires a usable GPU; "auto" takes it when there is one and the model suits the kernels.
    backend_ = "cpu";
    if (cfg_.backend == "cuda" || cfg_.backend == "auto") {
        const gpu_probe gp = probe_gpu();
        std::string why;
        if (!gp.available) why = gp.message;
        else if (!cfg_.quantize_nf4 || !cfg_.double_quant)
            why = "the CUDA backend trains on an NF4 + double-quant base (model.quantize_nf4 and double_quant true)";
        else if (model_.config.head_dim % 8 != 0 || model_.config.head_dim > 128)
            why = "head size " + std::to_string(model_.config.head_dim) + " is outside the CUDA attention kernels' range";
        if (why.empty()) backend_ = "cuda";
        else if (cfg_.backend == "cuda")
            throw error(error_code::device, "device.backend \"cuda\": " + why,
                        "set device.backend to \"auto\" or \"cpu\" to train on the CPU reference backend");
        else
            log("backend: cpu (" + why + ")");
    }

    data_options dopt;
    dopt.format = parse_dataset_format(cfg_.dataset_format);
    dopt.tmpl = parse_chat_template(cfg_.prompt_template);
    dopt.seq_len = cfg_.seq_len;
    dopt.train_on_prompt = cfg_.train_on_prompt;
    dopt.on_bad_record = cfg_.skip_malformed ? bad_record_policy::skip : bad_record_policy::fail;
    validation_options vopt;
    vopt.file = cfg_.validation_file;
    vopt.fraction = cfg_.validation_fraction;
    vopt.seed = cfg_.seed;
    dataset_split split = load_dataset_split(cfg_.train_file, tok_, dopt, vopt);
    train_ = std::move(split.train);
    val_ = std::move(split.validation);
    for (const std::string& w : train_.warnings) log("data: " + w);
    for (const std::string& w : val_.warnings) log("validation data: " + w);

    compute_device dev;   // interim: the CPU's plan until the backends take the device (next step)
    const plan_settings ps = plan_settings_for(cfg_, dev);
    if (given_plan && plan_matches(*given_plan, model_.config, ps)) plan_ = *given_plan;
    else plan_ = plan_run(model_.config, ps);
    if (plan_.verdict == plan_verdict::does_not_fit) {
        std::string hint;
        for (const auto& sg : plan_.suggestions) hint += (hint.empty() ? "" : "; ") + sg.text;
        throw error(error_code::config, "this run does not fit the memory budget: " + plan_.explanation,
                    hint.empty() ? "raise device.budget_gib or lower training.seq_len / micro_batch" : hint);
    }

    lora_ = lora_init(model_.config, cfg_.lora, cfg_.seed);
    if (backend_ == "cuda") {
        gpu_train_options go;
        go.lora = cfg_.lora;
        go.batch = cfg_.micro_batch;
        go.seq = cfg_.seq_len;
        go.optimizer = cfg_.optimizer;
        go.adamw = cfg_.adamw;
        go.gradient_checkpointing = cfg_.gradient_checkpointing;
        go.page_size = cfg_.page_size;
        const gpu_probe gp = probe_gpu();
        const compute_device gd{"cuda", gp.index, gp.name, gp.total_bytes, gp.free_bytes};
        gpu_ = gpu_trainer::from_model(model_, lora_, plan_run(model_.config, plan_settings_for(cfg_, gd)), go);
        plan_ = gpu_->plan(); // the plan with the card's size, exactly what the arena holds
        log("backend: cuda (" + gpu_->device_name() + "), arena " + std::to_string(to_gib(plan_.peak_bytes())) +
            " GiB, " + plan_verdict_name(plan_.verdict));
    }
    std::vector<optim_param> params;
    for (int l = 0; l < model_.config.num_layers; ++l)
        for (lora_target t : cfg_.lora.targets) {
            lora_adapter<float>& ad = lora_.at(l, t);
            params.push_back({peft_tensor_name(l, t, false), ad.a.data(), ad.da.data(), ad.a.size()});
            params.push_back({peft_tensor_name(l, t, true), ad.b.data(), ad.db.data(), ad.b.size()});
        }
    optimizer_config oc;
    oc.kind = cfg_.optimizer;
    oc.hparams = cfg_.adamw;
    oc.paging.page_size = cfg_.page_size;
    if (optimizer_kind_is_paged(cfg_.optimizer)) {
        // The device pool for optimizer pages: what the plan leaves for it, or the configured size.
        uint64_t pool = cfg_.page_pool_bytes ? cfg_.page_pool_bytes : plan_.category_bytes(plan_category::optimizer_paged);
        oc.paging.device_budget_bytes = std::max<uint64_t>(pool, cfg_.page_size);
    }
    if (!gpu_) optim_ = std::make_unique<optimizer>(std::move(params), oc);

    batch_options bo;
    bo.B = cfg_.micro_batch;
    bo.T = cfg_.seq_len;
    bo.packing = cfg_.packing;
    bo.shuffle = true;
    bo.seed = cfg_.seed;
    bo.pad_id = 0;
    batches_ = std::make_unique<batcher>(train_.examples, bo);
    const int64_t per_epoch = int64_t(batches_->batches_per_epoch());
    total_steps_ = cfg_.max_steps > 0
                       ? cfg_.max_steps
                       : std::max<int64_t>(1, int64_t(std::ceil(cfg_.epochs * double(per_epoch) / cfg_.grad_accum)));

    if (!gpu_) {
        pass_ = std::make_unique<llama_pass<float>>(model_.config, model_.params, model_.inv_freq, cfg_.micro_batch,
                                                    cfg_.seq_len, &lora_);
        pass_->set_checkpointing(cfg_.gradient_checkpointing);
    }
}

std::unique_ptr<trainer> trainer::create(const train_config& cfg, const train_callbacks& cb,
                                         const std::optional<memory_plan>& plan) {
    validate_train_config(cfg);
    std::unique_ptr<trainer> t(new trainer());
    t->cfg_ = cfg;
    // absolute paths in the saved config.json, so `qlora resume` works from any working directory
    for (std::string* p : {&t->cfg_.model, &t->cfg_.train_file, &t->cfg_.validation_file, &t->cfg_.runs_dir})
        if (!p->empty()) *p = fs::absolute(*p).lexically_normal().string();
    t->run_dir_ = (fs::path(t->cfg_.runs_dir) / cfg.name).string();
    if (!latest_checkpoint(t->run_dir_).empty())
        throw error(error_code::config,
                    t->run_dir_ + ": this run already has checkpoints",
                    "continue it with `qlora resume " + t->run_dir_ + "`, or choose another name");
    t->build(cb, plan);
    std::error_code ec;
    fs::create_directories(fs::path(t->run_dir_) / "checkpoints", ec);
    if (ec)
        throw error(error_code::io, t->run_dir_ + ": cannot create the run directory: " + ec.message(),
                    "check that runs_dir is writable");
    write_file_atomic(fs::path(t->run_dir_) / "config.json", train_config_to_json(t->cfg_));
    write_file_atomic(fs::path(t->run_dir_) / "metrics.jsonl", "");
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
    t->cfg_ = parse_train_config(read_text(cfg_path), cfg_path.string(), "");
    t->run_dir_ = run_dir;
    t->build(cb);

    const fs::path ck(ckpt_dir);
    json st;
    try {
        st = json::parse(read_text(ck / "trainer_state.json"));
    } catch (const json::exception& e) {
        throw error(error_code::format, (ck / "trainer_state.json").string() + ": not valid JSON: " + e.what(),
                    "delete this checkpoint directory to resume from the one before it");
    }
    try {
        if (st.at("format").get<int>() != k_checkpoint_format)
            throw error(error_code::unsupported, (ck / "trainer_state.json").string() + ": unknown checkpoint format");
        t->step_ = st.at("step").get<int64_t>();
        t->tokens_total_ = st.at("tokens_total").get<int64_t>();
        batcher_position pos;
        pos.epoch = st.at("batcher").at("epoch").get<uint64_t>();
        pos.cursor = st.at("batcher").at("cursor").get<uint64_t>();
        pos.seed = st.at("batcher").at("seed").get<uint64_t>();
        t->batches_->set_position(pos);
    } catch (const json::exception& e) {
        throw error(error_code::format, (ck / "trainer_state.json").string() + ": missing or mistyped field: " + e.what(),
                    "delete this checkpoint directory to resume from the one before it");
    }
    // adapters: copy the saved values into the live weights (the optimizer holds pointers to them)
    lora_weights<float> saved = load_peft(ck.string(), t->model_.config);
    for (int l = 0; l < t->model_.config.num_layers; ++l)
        for (lora_target tg : t->cfg_.lora.targets) {
            auto& dst = t->lora_.at(l, tg);
            const auto& src = saved.at(l, tg);
            if (src.a.size() != dst.a.size() || src.b.size() != dst.b.size())
                throw error(error_code::format, ck.string() + ": adapter shapes differ from the run's configuration");
            std::copy(src.a.begin(), src.a.end(), dst.a.begin());
            std::copy(src.b.begin(), src.b.end(), dst.b.begin());
        }
    safetensors_file of = safetensors_file::open((ck / "optimizer.safetensors").string());
    std::vector<std::pair<std::string, tensor>> state;
    for (const auto& e : of.entries()) state.emplace_back(e.name, of.read(e.name));
    if (t->gpu_) {
        t->gpu_->upload_lora(t->lora_);
        t->gpu_->load_optimizer_state(state, &peft_tensor_name);
    } else {
        t->optim_->load_state(state);
    }

    // metrics.jsonl: drop lines after the checkpoint (steps that will be trained again) and any damaged tail
    std::string kept;
    for (const step_stats& s : read_metrics(run_dir))
        if (s.step <= t->step_) kept += step_stats_to_json(s) + "\n";
    write_file_atomic(fs::path(run_dir) / "metrics.jsonl", kept);
    // leftovers of an interrupted checkpoint write
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::path(run_dir) / "checkpoints", ec))
        if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path(), ec);
    t->log("resumed " + run_dir + " at step " + std::to_string(t->step_) + " from " + ck.filename().string());
    return t;
}

std::string trainer::save_checkpoint() {
    const fs::path dir = fs::path(run_dir_) / "checkpoints";
    const std::string name = "step-" + std::to_string(step_);
    const fs::path tmp = dir / (".tmp-" + name);
    const fs::path final_dir = dir / name;
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) throw error(error_code::io, tmp.string() + ": cannot create: " + ec.message(), "check free disk space");
    auto written = [&](const fs::path& p) {
        if (checkpoint_write_hook) checkpoint_write_hook(p.string());
    };
    sync_lora_from_gpu();
    export_peft(tmp.string(), lora_, model_.config, cfg_.model);
    written(tmp / "adapter_model.safetensors");
    safetensors_save((tmp / "optimizer.safetensors").string(),
                     gpu_ ? gpu_->serialize_optimizer_state(&peft_tensor_name) : optim_->serialize_state());
    written(tmp / "optimizer.safetensors");
    const batcher_position pos = batches_->position();
    json st = {{"format", k_checkpoint_format},
               {"step", step_},
               {"total_steps", total_steps_},
               {"tokens_total", tokens_total_},
               {"seed", cfg_.seed},
               {"batcher", {{"epoch", pos.epoch}, {"cursor", pos.cursor}, {"seed", pos.seed}}}};
    write_file_atomic(tmp / "trainer_state.json", st.dump(2));
    written(tmp / "trainer_state.json");
    fsync_path(tmp, true);
    // step-N exists when a stopped run is saved again at the same step: replace it only after the new one is whole
    if (fs::exists(final_dir)) {
        const fs::path old = dir / (".tmp-old-" + name);
        fs::remove_all(old, ec);
        fs::rename(final_dir, old, ec);
        fs::rename(tmp, final_dir, ec);
        fs::remove_all(old);
    } else {
        fs::rename(tmp, final_dir, ec);
    }
    if (ec) throw error(error_code::io, final_dir.string() + ": cannot move the checkpoint into place: " + ec.message());
    fsync_path(dir, true);
    auto all = list_checkpoints(run_dir_);
    for (size_t i = 0; i + size_t(cfg_.keep_checkpoints) < all.size(); ++i) fs::remove_all(all[i].second, ec);
    log("checkpoint " + final_dir.string());
    return final_dir.string();
}

// The host copy of the adapters (lora_) follows the device's after each GPU step only when asked: checkpoints, the
// adapters() accessor's users (export, playground) call this first.
void trainer::sync_lora_from_gpu() {
    if (!gpu_) return;
    const lora_weights<float> w = gpu_->download_lora();
    for (int l = 0; l < model_.config.num_layers; ++l)
        for (lora_target t : cfg_.lora.targets) {
            auto& dst = lora_.at(l, t);
            const auto& src = w.at(l, t);
            std::copy(src.a.begin(), src.a.end(), dst.a.begin());
            std::copy(src.b.begin(), src.b.end(), dst.b.begin());
        }
}

void trainer::append_metrics(const step_stats& s) {
    std::ofstream out(fs::path(run_dir_) / "metrics.jsonl", std::ios::app | std::ios::binary);
    out << step_stats_to_json(s) << '\n';
    out.flush();
}

std::optional<double> trainer::evaluate() {
    if (val_.examples.empty()) return std::nullopt;
    batch_options bo = batches_->options();
    bo.shuffle = false;
    batcher vb(val_.examples, bo);
    size_t n = vb.batches_per_epoch();
    if (cfg_.eval_batches > 0) n = std::min(n, size_t(cfg_.eval_batches));
    if (pass_) pass_->set_dropout(false, 0);
    double sum = 0;
    int64_t count = 0;
    for (size_t i = 0; i < n; ++i) {
        batch b = vb.next();
        if (b.counted_targets == 0) continue;
        double loss;
        if (gpu_) {
            gpu_batch gb{b.tokens.data(), b.targets.data(), b.positions.data(), b.segments.data()};
            loss = gpu_->forward_loss(gb);
        } else {
            loss = pass_->forward(b.tokens.data(), b.targets.data(), b.positions.data(), b.segments.data());
        }
        sum += loss * b.counted_targets;
        count += b.counted_targets;
    }
    if (count == 0) return std::nullopt;
    return sum / double(count);
}

train_outcome trainer::run(const train_callbacks& cb) {
    if (cb.on_step || cb.on_log) cb_ = cb;
    using clock = std::chrono::steady_clock;
    stop_ = false;
    std::vector<float*> grads;
    std::vector<size_t> sizes;
    for (int l = 0; l < model_.config.num_layers; ++l)
        for (lora_target t : cfg_.lora.targets) {
            auto& ad = lora_.at(l, t);
            grads.push_back(ad.da.data()); sizes.push_back(ad.da.size());
            grads.push_back(ad.db.data()); sizes.push_back(ad.db.size());
        }
    const size_t lora_bytes = lora_.parameter_count() * sizeof(float);
    double ema_step_s = 0;
    size_t peak = 0;
    // The loss or the gradient norm (`value`) became NaN/Inf: nothing of this step is applied or saved.
    auto diverge = [&](bool is_loss, double value, double lr) {
        const std::string last = latest_checkpoint(run_dir_);
        divergence_ = std::string(is_loss ? "the loss" : "the gradient norm") + " became " +
                      (std::isnan(value) ? "NaN" : "infinite") + " at step " + std::to_string(step_ + 1) +
                      " (learning rate " + std::to_string(lr) + "); training stopped without applying it" +
                      (last.empty() ? "" : "; the last good checkpoint is " + last) +
                      ". Lower optimizer.lr, keep optimizer.max_grad_norm on, or check the data";
        log(divergence_);
        return train_outcome::diverged;
    };
    while (step_ < total_steps_) {
        if (pause_ && !stop_) {
            log("paused at step " + std::to_string(step_));
            std::unique_lock<std::mutex> lock(pause_mutex_);
            while (pause_ && !stop_) pause_cv_.wait_for(lock, std::chrono::milliseconds(100));
            if (!stop_) log("continuing at step " + std::to_string(step_));
        }
        if (stop_) {
            save_checkpoint();
            log("stopped at step " + std::to_string(step_));
            return train_outcome::stopped;
        }
        // ---------------- TRAINING SECTION BEGIN ----------------
        const auto t0 = clock::now();
        const double lr = learning_rate_at(cfg_, step_, total_steps_);
        const pager_stats paging_before = optim_ && optim_->state_pager() ? optim_->state_pager()->stats() : pager_stats{};
        const gpu_memory_stats gpu_before = gpu_ ? gpu_->memory() : gpu_memory_stats{};
        if (!gpu_) lora_.zero_grad();
        double loss_sum = 0;
        int losses = 0;
        int64_t tokens = 0;
        for (int micro = 0; micro < cfg_.grad_accum; ++micro) {
            batch b = batches_->next();
            for (int s : b.segments) tokens += s != 0;
            if (b.counted_targets == 0) continue; // an empty filler batch at the end of an epoch
            const uint64_t dropout_seed = mix(cfg_.seed ^ mix(uint64_t(step_) * 1024 + uint64_t(micro)));
            float loss;
            if (gpu_) {
                gpu_batch gb{b.tokens.data(), b.targets.data(), b.positions.data(), b.segments.data()};
                loss = float(gpu_->forward_backward(gb, true, dropout_seed));
            } else {
                pass_->set_dropout(true, dropout_seed);
                loss = pass_->forward(b.tokens.data(), b.targets.data(), b.positions.data(), b.segments.data());
                pass_->backward();
            }
            loss_sum += loss;
            ++losses;
        }
        const double loss = losses ? loss_sum / losses : 0.0;
        double norm = 0;
        if (gpu_) {
            // the device scales by 1/grad_accum, clips, and skips the update on a NaN/Inf norm
            if (!std::isfinite(loss)) {
                return diverge(true, loss, lr);
            }
            const gpu_update_result u = gpu_->optimizer_step(float(lr), cfg_.grad_accum, cfg_.max_grad_norm);
            norm = u.grad_norm;
            if (!u.finite) return diverge(false, norm, lr);
        } else {
        // mean over micro-batches, as HF Trainer does (loss / gradient_accumulation_steps per micro-batch)
        const float inv = 1.0f / float(cfg_.grad_accum);
        for (size_t i = 0; i < grads.size(); ++i)
            for (size_t j = 0; j < sizes[i]; ++j) grads[i][j] *= inv;
        if (cfg_.max_grad_norm > 0) {
            norm = clip_grad_norm(grads, sizes, cfg_.max_grad_norm);
        } else {
            for (size_t i = 0; i < grads.size(); ++i)
                for (size_t j = 0; j < sizes[i]; ++j) norm += double(grads[i][j]) * grads[i][j];
            norm = std::sqrt(norm);
        }
        if (!std::isfinite(loss) || !std::isfinite(norm)) {
            return !std::isfinite(loss) ? diverge(true, loss, lr) : diverge(false, norm, lr);
        }
        optim_->step(float(lr));
        }
        ++step_;
        // ---------------- TRAINING SECTION END ----------------
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        tokens_total_ += tokens;
        ema_step_s = ema_step_s == 0 ? dt : 0.9 * ema_step_s + 0.1 * dt;

        step_stats st;
        st.step = step_;
        st.total_steps = total_steps_;
        const batcher_position pos = batches_->position();
        st.epoch = double(pos.epoch) + double(pos.cursor) / double(std::max<size_t>(1, batches_->batches_per_epoch()));
        st.loss = loss;
        st.lr = lr;
        st.grad_norm = norm;
        st.tokens = tokens;
        st.tokens_total = tokens_total_;
        st.step_time_s = dt;
        st.tokens_per_s = dt > 0 ? double(tokens) / dt : 0;
        st.eta_s = ema_step_s * double(total_steps_ - step_);
        for (int c = 0; c < plan_category_count; ++c)
            st.plan_bytes.emplace_back(plan_category_name(plan_category(c)), plan_.category_bytes(plan_category(c)));
        const pager* pg = optim_ ? optim_->state_pager() : nullptr;
        if (gpu_) {
            // measured: the card in use (cudaMemGetInfo: context, arena and anything else on it) and our arena
            const gpu_memory_stats m = gpu_->memory();
            st.device_used_bytes = m.device_used_bytes;
            st.device_peak_bytes = m.device_used_peak_bytes;
            st.device_total_bytes = m.device_total_bytes;
            st.arena_bytes = m.arena_bytes;
            st.paging_h2d_bytes = m.paging_h2d_bytes - gpu_before.paging_h2d_bytes;
            st.paging_d2h_bytes = m.paging_d2h_bytes - gpu_before.paging_d2h_bytes;
            st.resident_pages = m.resident_pages;
            st.total_pages = m.total_pages;
        } else {
            const size_t optimizer_device = pg ? pg->capacity_pages() * pg->page_size() : optim_->state_bytes();
            st.device_used_bytes = 2 * lora_bytes + optimizer_device + pass_->activation_bytes();
            peak = std::max<size_t>(peak, st.device_used_bytes);
            st.device_peak_bytes = peak;
        }
        if (pg) {
            const pager_stats d = pg->stats() - paging_before;
            st.paging_h2d_bytes = d.bytes_h2d;
            st.paging_d2h_bytes = d.bytes_d2h;
            st.resident_pages = pg->resident_pages();
            st.total_pages = pg->page_count();
        }
        const bool last = step_ == total_steps_;
        if ((cfg_.eval_every > 0 && step_ % cfg_.eval_every == 0) || last) {
            st.eval_loss = evaluate();
            if (st.eval_loss) log("step " + std::to_string(step_) + ": eval loss " + std::to_string(*st.eval_loss));
        }
        append_metrics(st);
        if (cb_.on_step) cb_.on_step(st);
        if ((cfg_.checkpoint_every > 0 && step_ % cfg_.checkpoint_every == 0) || last) save_checkpoint();
    }
    return train_outcome::completed;
}

} // namespace qls
