// Full-parameter training on the CPU (full_train.h): llama_pass<float> with weight gradients, AdamW over every base
// weight, Hugging Face model folders as checkpoints.
#include "qls/full_train.h"

#include "qls/architecture.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/model_source.h"
#include "qls/optim.h"
#include "qls/safetensors.h"
#include "qls/telemetry.h"
#include "train/run_common.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

namespace qls {

namespace fs = std::filesystem;

namespace {

// Every weight of a LLaMA model with its Hugging Face name and shape, in one fixed order: (name, weight, shape).
struct named_weight {
    std::string name;
    std::vector<float>* data;
    shape_t shape;
};

std::vector<named_weight> named_weights(llama_params<float>& p, const model_config& c) {
    const architecture& arch = architecture_for(c);
    std::vector<named_weight> out;
    out.push_back({arch.hf_name(base_tensor::embed), &p.embed, arch.base_shape(c, base_tensor::embed)});
    for (int l = 0; l < c.num_layers; ++l) {
        llama_layer_params<float>& L = p.layers[size_t(l)];
        out.push_back({arch.hf_name(base_tensor::attn_norm, l), &L.attn_norm,
                       arch.base_shape(c, base_tensor::attn_norm)});
        for (lora_target t : arch.projections) {
            std::vector<float>* w = nullptr;
            switch (t) {
            case lora_target::q: w = &L.wq; break;
            case lora_target::k: w = &L.wk; break;
            case lora_target::v: w = &L.wv; break;
            case lora_target::o: w = &L.wo; break;
            case lora_target::gate: w = &L.w_gate; break;
            case lora_target::up: w = &L.w_up; break;
            case lora_target::down: w = &L.w_down; break;
            }
            const auto [out_dim, in_dim] = arch.projection_shape(c, t);
            out.push_back({arch.hf_weight(l, t), w, {out_dim, in_dim}});
        }
        out.push_back({arch.hf_name(base_tensor::mlp_norm, l), &L.mlp_norm, arch.base_shape(c, base_tensor::mlp_norm)});
    }
    out.push_back({arch.hf_name(base_tensor::final_norm), &p.final_norm, arch.base_shape(c, base_tensor::final_norm)});
    if (!c.tie_word_embeddings)
        out.push_back({arch.hf_name(base_tensor::lm_head), &p.lm_head, arch.base_shape(c, base_tensor::lm_head)});
    return out;
}

// Zero-filled buffers of the shapes of p.
llama_params<float> zeros_like(const llama_params<float>& p) {
    auto z = [](const std::vector<float>& v) { return std::vector<float>(v.size(), 0.0f); };
    llama_params<float> g;
    g.embed = z(p.embed);
    for (const auto& L : p.layers) {
        // LLaMA's tensors only: check_full_training refuses the families with more (biases, q/k norms, post norms)
        llama_layer_params<float>& gl = g.layers.emplace_back();
        gl.attn_norm = z(L.attn_norm);
        gl.wq = z(L.wq);
        gl.wk = z(L.wk);
        gl.wv = z(L.wv);
        gl.wo = z(L.wo);
        gl.mlp_norm = z(L.mlp_norm);
        gl.w_gate = z(L.w_gate);
        gl.w_up = z(L.w_up);
        gl.w_down = z(L.w_down);
    }
    g.final_norm = z(p.final_norm);
    g.lm_head = z(p.lm_head);
    return g;
}

// Full checkpoints of a run: checkpoints/step-N folders holding model.safetensors, by step.
std::vector<std::pair<int64_t, fs::path>> full_checkpoints(const fs::path& run_dir) {
    std::vector<std::pair<int64_t, fs::path>> v;
    std::error_code ec;
    const fs::path dir = run_dir / "checkpoints";
    if (!fs::is_directory(dir, ec)) return v;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const int64_t step = checkpoint_step_of(e.path().filename().string());
        if (step >= 0 && fs::exists(e.path() / "model.safetensors")) v.emplace_back(step, e.path());
    }
    std::sort(v.begin(), v.end());
    return v;
}

const char* const k_model_side_files[] = {"config.json",           "tokenizer.model",         "tokenizer.json",
                                          "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                                          "chat_template.jinja",   "generation_config.json"};

} // namespace

void check_full_training(const train_config& cfg, const model_config& mc) {
    if (cfg.backend == "cuda")
        throw error(error_code::config,
                    "device.backend: full-parameter training (training.mode \"full\") runs on the CPU only",
                    "set device.backend to \"cpu\" or \"auto\", or train LoRA adapters (training.mode \"lora\") on "
                    "the GPU");
    try { // the weight gradients cover the LLaMA layer: embeddings, RMSNorms, the seven projections and the head
        require_llama_layers(mc, "full-parameter training (training.mode \"full\")");
    } catch (const error& e) {
        throw error(error_code::config, e.what(),
                    "fine-tune this model with LoRA adapters (training.mode \"lora\", the default), which trains "
                    "every supported family");
    }
    if (mc.parameter_count() > k_full_train_max_parameters)
        throw error(error_code::config,
                    "training.mode: the model has " + std::to_string(mc.parameter_count()) +
                        " parameters; full-parameter training on the CPU takes models of at most " +
                        std::to_string(k_full_train_max_parameters),
                    "fine-tune this model with LoRA (training.mode \"lora\", the default)");
    if (fs::path(cfg.model).extension() == ".gguf" || !fs::is_directory(cfg.model))
        throw error(error_code::config,
                    cfg.model + ": full-parameter training needs a Hugging Face model folder (config.json and "
                                "safetensors), not a single file",
                    "convert the model to a Hugging Face folder, or train LoRA adapters on it");
}

void save_hf_model(const std::string& out_dir, const llama_model& m, const std::string& source_dir) {
    const fs::path out(out_dir);
    const fs::path staged = out.parent_path() / (".tmp-" + out.filename().string());
    std::error_code ec;
    fs::remove_all(staged, ec);
    fs::create_directories(staged, ec);
    if (ec)
        throw error(error_code::io, staged.string() + ": cannot create the folder: " + ec.message(),
                    "check that the run folder is writable");
    llama_model& mm = const_cast<llama_model&>(m); // named_weights hands out pointers; nothing is written through them
    std::vector<std::pair<std::string, tensor>> tensors;
    for (const named_weight& w : named_weights(mm.params, m.config))
        tensors.emplace_back(w.name, tensor::from_f32(*w.data, w.shape));
    safetensors_save((staged / "model.safetensors").string(), tensors, {{"format", "pt"}});
    for (const char* f : k_model_side_files) {
        const fs::path src = fs::path(source_dir) / f;
        if (!fs::is_regular_file(src, ec)) continue;
        fs::copy_file(src, staged / f, fs::copy_options::overwrite_existing, ec);
        if (ec)
            throw error(error_code::io, src.string() + ": cannot copy into " + staged.string() + ": " + ec.message(),
                        "check that the run folder is writable and has free space");
    }
    publish_dir_atomic(staged.string(), out.string());
}

full_train_result run_full_training(const train_config& cfg_in, const train_callbacks& cb,
                                    const full_train_options& opt) {
    using clock = std::chrono::steady_clock;
    validate_train_config(cfg_in);
    if (cfg_in.mode != "full")
        throw error(error_code::internal, "run_full_training: training.mode is \"" + cfg_in.mode + "\", not \"full\"");
    train_config cfg = cfg_in;
    make_run_paths_absolute(cfg);
    auto log = [&cb](const std::string& line) {
        if (cb.on_log) cb.on_log(line);
    };

    // model, tokenizer, checks
    const std::unique_ptr<model_source> src = open_model_source(cfg.model);
    const model_config& mc = src->config();
    check_full_training(cfg, mc);
    check_seq_len_fits(cfg, mc);
    const std::string weight0 = architecture_for(mc).hf_weight(0, architecture_for(mc).projections.front());
    if (src->stores_nf4(weight0))
        throw error(error_code::config,
                    cfg.model + ": the checkpoint is quantized to 4 bits (bitsandbytes); full-parameter training needs "
                                "float weights",
                    "train LoRA adapters on it (training.mode \"lora\") or use the unquantized model");
    const tokenizer tok = src->load_tokenizer();
    llama_load_options lo;
    lo.control.on_progress = cb.on_load;
    lo.control.cancel = cb.cancel_load;
    llama_model model = llama_model::load(*src, lo);
    log("device: cpu trains (full-parameter training runs on the CPU)");

    // data, as the LoRA trainer reads it
    dataset_split split = load_run_data(cfg, *src, tok);
    for (const std::string& line : run_data_log_lines(cfg, split)) log(line);
    batcher batches(split.train.examples, run_batch_options(cfg));
    const int64_t total = run_total_steps(cfg, int64_t(batches.batches_per_epoch()));

    // the run folder
    full_train_result res;
    res.run_dir = (fs::path(cfg.runs_dir) / cfg.name).string();
    if (!full_checkpoints(res.run_dir).empty() || !latest_checkpoint(res.run_dir).empty())
        throw error(error_code::config, res.run_dir + ": this run already has checkpoints",
                    "choose another name, or start from its last checkpoint as the model of a new run");
    create_run_dir(res.run_dir, cfg);

    // gradients and the optimizer over every weight
    llama_params<float> grads = zeros_like(model.params);
    std::vector<optim_param> params;
    std::vector<float*> gptr;
    std::vector<size_t> gsize;
    {
        std::vector<named_weight> w = named_weights(model.params, mc);
        std::vector<named_weight> g = named_weights(grads, mc);
        for (size_t i = 0; i < w.size(); ++i) {
            params.push_back({w[i].name, w[i].data->data(), g[i].data->data(), w[i].data->size()});
            gptr.push_back(g[i].data->data());
            gsize.push_back(g[i].data->size());
        }
    }
    size_t n_params = 0;
    for (size_t s : gsize) n_params += s;
    optimizer_config oc;
    oc.kind = cfg.optimizer;
    oc.hparams = cfg.adamw;
    oc.paging.page_size = cfg.page_size;
    // the CPU has no device: a paged kind keeps every state page resident (two fp32 states per weight, page-rounded)
    if (optimizer_kind_is_paged(cfg.optimizer))
        oc.paging.device_budget_bytes = 8 * n_params + 4 * params.size() * cfg.page_size + cfg.page_size;
    optimizer optim(std::move(params), oc);
    llama_pass<float> pass(mc, model.params, model.inv_freq, cfg.micro_batch, cfg.seq_len);
    pass.set_checkpointing(cfg.gradient_checkpointing);
    pass.set_weight_grads(&grads);
    auto zero_grads = [&] {
        for (size_t i = 0; i < gptr.size(); ++i) std::fill(gptr[i], gptr[i] + gsize[i], 0.0f);
    };
    log("run " + res.run_dir + ": full-parameter training of " + std::to_string(n_params) + " weights, " +
        std::to_string(split.train.stats.examples) + " training examples, " +
        std::to_string(split.validation.stats.examples) + " validation examples, " + std::to_string(total) + " steps");

    auto evaluate = [&]() {
        return evaluate_mean_loss(split.validation.examples, batches.options(), cfg.eval_batches, nullptr,
                                  [&pass](const batch& b) {
                                      return double(pass.forward(b.tokens.data(), b.targets.data(), b.positions.data(),
                                                                 b.segments.data()));
                                  });
    };
    auto checkpoint = [&](int64_t step) {
        const fs::path dir = fs::path(res.run_dir) / "checkpoints" / ("step-" + std::to_string(step));
        save_hf_model(dir.string(), model, cfg.model);
        res.checkpoint = dir.string();
        log("saved " + dir.string());
        auto all = full_checkpoints(res.run_dir);
        std::error_code ec;
        for (size_t i = 0; i + size_t(cfg.keep_checkpoints) < all.size(); ++i) fs::remove_all(all[i].second, ec);
    };

    int64_t tokens_total = 0;
    double ema_step_s = 0;
    for (int64_t step = 0; step < total; ++step) {
        if (opt.stop && opt.stop->load()) {
            checkpoint(step);
            res.outcome = train_outcome::stopped;
            log("stopped at step " + std::to_string(step));
            return res;
        }
        const auto t0 = clock::now();
        const double lr = learning_rate_at(cfg, step, total);
        double loss_sum = 0;
        int losses = 0;
        int64_t tokens = 0;
        for (int micro = 0; micro < cfg.grad_accum; ++micro) {
            const batch b = batches.next();
            for (int s : b.segments) tokens += s != 0;
            if (b.counted_targets == 0) continue;
            loss_sum += double(pass.forward(b.tokens.data(), b.targets.data(), b.positions.data(), b.segments.data()));
            pass.backward();
            ++losses;
        }
        const double loss = losses ? loss_sum / losses : 0.0;
        // grads /= grad_accum (HF Trainer's mean over micro-batches), clip, AdamW
        const float inv = 1.0f / float(cfg.grad_accum);
        for (size_t i = 0; i < gptr.size(); ++i)
            for (size_t j = 0; j < gsize[i]; ++j) gptr[i][j] *= inv;
        double norm = 0;
        if (cfg.max_grad_norm > 0) norm = clip_grad_norm(gptr, gsize, cfg.max_grad_norm);
        else {
            for (size_t i = 0; i < gptr.size(); ++i)
                for (size_t j = 0; j < gsize[i]; ++j) norm += double(gptr[i][j]) * gptr[i][j];
            norm = std::sqrt(norm);
        }
        if (!std::isfinite(loss) || !std::isfinite(norm)) {
            res.outcome = train_outcome::diverged;
            res.message = divergence_text(std::string(std::isfinite(loss) ? "the gradient norm" : "the loss") +
                                              " became NaN or infinite",
                                          step + 1, lr, res.checkpoint);
            log(res.message);
            return res;
        }
        optim.step(float(lr));
        zero_grads();
        res.steps = step + 1;
        res.last_loss = loss;
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        tokens_total += tokens;
        ema_step_s = ema_step_s == 0 ? dt : 0.9 * ema_step_s + 0.1 * dt;
        step_stats st = step_progress_stats(batches, res.steps, total, loss, lr, norm, tokens, tokens_total, dt,
                                            ema_step_s * double(total - res.steps));
        // host memory of the run: weights, gradients, optimizer states and the pass's buffers
        st.device_used_bytes = 2 * n_params * sizeof(float) + optim.state_bytes() + pass.activation_bytes();
        st.device_peak_bytes = st.device_used_bytes;
        const bool last = res.steps == total;
        if (step_is_due(cfg.eval_every, res.steps, last)) {
            st.eval_loss = evaluate();
            if (st.eval_loss) {
                res.eval_loss = st.eval_loss;
                log("step " + std::to_string(res.steps) + ": eval loss " + std::to_string(*st.eval_loss));
            }
        }
        append_metrics_line(res.run_dir, st);
        if (cb.on_step) cb.on_step(st);
        if (step_is_due(cfg.checkpoint_every, res.steps, last)) checkpoint(res.steps);
    }
    res.outcome = train_outcome::completed;
    return res;
}

} // namespace qls
