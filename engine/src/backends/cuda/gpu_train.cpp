// gpu_train — qls::gpu_trainer (qls/gpu_train.h) on the CUDA backend: setup inside the run's memory_plan (one arena,
// streams, cuBLAS, the optimizer), the public entry points and memory telemetry. The step itself is in gpu_step.cpp,
// the optimizer in gpu_optimizer.cpp; gpu_train_impl.h says where everything else lives.
//
// Threads: a trainer may be created on one thread and used on another, so every public entry point first makes the
// trainer's GPU (gpu_train_options::device) current on the calling thread.
#include "gpu_train_impl.h"

#include "qls/architecture.h"          // defines: architecture_for (the family's layer ops)
#include "qls/model_config.h"          // defines: rope_inv_freq, rope_inv_freq_local
#include "qls_kernels/attention.h"     // defines: attention_max_head_size
#include "qls_kernels/attention_fa2.h" // defines: attention_path_from_env

namespace qls {

namespace {

// The plan must have been made for this run: the model's dimensions and every setting that shapes the arena.
void check_plan_matches(const memory_plan& p, const model_config& c, const gpu_train_options& o) {
    const model_config& pc = p.config;
    const plan_settings& s = p.settings;
    const char* what = nullptr;
    if (pc.hidden_size != c.hidden_size || pc.intermediate_size != c.intermediate_size ||
        pc.num_layers != c.num_layers || pc.num_heads != c.num_heads || pc.num_kv_heads != c.num_kv_heads ||
        pc.head_dim != c.head_dim || pc.vocab_size != c.vocab_size || pc.tie_word_embeddings != c.tie_word_embeddings)
        what = "the model's dimensions";
    else if (pc.model_type != c.model_type || pc.qkv_bias != c.qkv_bias || pc.o_bias != c.o_bias ||
             pc.mlp_bias != c.mlp_bias || pc.has_local_rope != c.has_local_rope || pc.any_sliding() != c.any_sliding())
        what = "the model's family or layer tensors"; // biases, q/k and post norms are plan items
    else if (s.batch != o.batch) what = "batch";
    else if (s.seq != o.seq) what = "seq";
    else if (s.lora.rank != o.lora.rank) what = "rank";
    else if (s.lora.targets != o.lora.targets) what = "targets";
    else if ((s.lora.dropout > 0.0f) != (o.lora.dropout > 0.0f)) what = "dropout (on or off)";
    else if (s.optimizer != o.optimizer) what = "optimizer";
    else if (s.gradient_checkpointing != o.gradient_checkpointing) what = "gradient checkpointing";
    else if (s.page_size != o.page_size) what = "page size";
    if (what)
        throw error(error_code::invalid_argument,
                    std::string("gpu_trainer: the memory plan was made for another run (") + what + " differs)",
                    "plan the run with plan_run for exactly these settings");
}

} // namespace

// ---- setup ------------------------------------------------------------------------------------------------------------

void gpu_trainer::impl::init(const model_config& c, const memory_plan& p, const gpu_train_options& o) {
    cfg = c;
    opt = o;
    validate_lora(opt.lora);
    int dev_count = 0;
    if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
        cudaGetLastError();
        throw error(error_code::device, "no CUDA GPU is available for the CUDA backend",
                    "run `qlora devices` to see why; use the CPU backend (device.backend \"cpu\")");
    }
    if (opt.device < 0 || opt.device >= dev_count)
        throw error(error_code::device,
                    "CUDA device " + std::to_string(opt.device) + " does not exist (this machine has " +
                        std::to_string(dev_count) + ")",
                    "run `qlora devices`; device.gpu counts from 0");
    cudaDeviceProp prop{};
    QLS_CUDA_CHECK(cudaGetDeviceProperties(&prop, opt.device));
    device = prop.name;
    use_device();
    QLS_CUDA_CHECK(cudaFree(nullptr)); // create the context now, so "before" includes it
    size_t free_b = 0, total_b = 0;
    QLS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    used_before = total_b - free_b;

    B = opt.batch;
    T = opt.seq;
    N = B * T;
    C = cfg.hidden_size;
    H = cfg.intermediate_size;
    NH = cfg.num_heads;
    NKV = cfg.num_kv_heads;
    HS = cfg.head_dim;
    Q = NH * HS;
    KV = NKV * HS;
    V = cfg.vocab_size;
    L = cfg.num_layers;
    r = opt.lora.rank;
    lora_scale = opt.lora.scale();
    targets = opt.lora.targets;
    ckpt = opt.gradient_checkpointing;
    paged = optimizer_kind_is_paged(opt.optimizer);
    eightbit = optimizer_kind_is_8bit(opt.optimizer);
    const architecture& arch = architecture_for(cfg);
    qk_norm = arch.qk_norm;
    sandwich = arch.sandwich_norms;
    geglu = arch.mlp == mlp_kind::geglu_tanh;
    // the default scale stays the kernels' own 1/sqrtf(HS), so LLaMA's scores are computed exactly as before
    attn_scale = cfg.query_pre_attn_scalar > 0 ? float(cfg.attention_scale()) : 0.0f;
    if (HS % 8 != 0 || HS > K::attention_max_head_size)
        throw error(error_code::unsupported,
                    "head size " + std::to_string(HS) + " is not supported by the CUDA attention kernels",
                    "the CUDA backend takes head sizes that are multiples of 8 up to 128; use the CPU backend");

    // QLS_ATTENTION=wmma|fa2 picks the attention kernels; a misspelt value stops the run here, not mid-step
    try {
        (void)K::attention_path_from_env();
    } catch (const std::invalid_argument& e) {
        throw error(error_code::invalid_argument, e.what(), "set QLS_ATTENTION to wmma or fa2, or unset it");
    }

    check_plan_matches(p, cfg, opt);
    plan = p;
    if (plan.verdict == plan_verdict::does_not_fit)
        throw error(error_code::out_of_memory, "the run does not fit: " + plan.explanation,
                    plan.suggestions.empty() ? "lower the sequence length, the batch or the rank"
                                             : plan.suggestions.front().text);
    chunk = plan.loss_chunk_tokens;

    QLS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    QLS_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
    QLS_CUDA_CHECK(cudaEventCreate(&ev_start));
    QLS_CUDA_CHECK(cudaEventCreate(&ev_stop));
    mem = std::make_unique<cuda_arena>(plan);
    blas = std::make_unique<K::blas>(stream, mem->get({plan_item_id::ws_cublas}),
                                     mem->bytes({plan_item_id::ws_cublas}));
    has_dropout_scratch = mem->has({plan_item_id::ws_lora_dropout_input});
    init_offload();
    nested_offset.assign(size_t(L), {});

    // one layer's bf16 LoRA copies: per target A (r, in) then B (out, r)
    size_t off = 0;
    for (lora_target t : targets) {
        lora_bf16_offset.push_back(off);
        auto [in, out] = in_out(t);
        off += size_t(r) * size_t(in) + size_t(out) * size_t(r);
    }

    // rope inverse frequencies
    const std::vector<float> inv = rope_inv_freq(cfg);
    QLS_CUDA_CHECK(cudaMemcpy(item<float>({plan_item_id::ws_rope_inv_freq}), inv.data(), inv.size() * 4,
                              cudaMemcpyHostToDevice));
    if (mem->has({plan_item_id::ws_rope_inv_freq_local})) { // the sliding layers' own (HS/2), Gemma 3
        const std::vector<float> local = rope_inv_freq_local(cfg);
        QLS_CUDA_CHECK(cudaMemcpy(item<float>({plan_item_id::ws_rope_inv_freq_local}), local.data(), local.size() * 4,
                                  cudaMemcpyHostToDevice));
    }
    setup_optimizer();
}

gpu_trainer::impl::~impl() {
    if (stream) cudaSetDevice(opt.device); // the trainer may be destroyed on another thread than it ran on
    if (stream) cudaStreamSynchronize(stream);
    if (copy_stream) cudaStreamSynchronize(copy_stream);
    free_offload();
    pager_.reset();
    blas.reset();
    mem.reset();
    if (ev_start) cudaEventDestroy(ev_start);
    if (ev_stop) cudaEventDestroy(ev_stop);
    if (stream) cudaStreamDestroy(stream);
    if (copy_stream) cudaStreamDestroy(copy_stream);
}

void gpu_trainer::impl::sample_memory() {
    size_t free_b = 0, total_b = 0;
    QLS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    used_peak = std::max<uint64_t>(used_peak, total_b - free_b);
}

// ---- the public entry points ------------------------------------------------------------------------------------------

gpu_trainer::gpu_trainer() : p_(std::make_unique<impl>()) {}
gpu_trainer::~gpu_trainer() = default;

std::unique_ptr<gpu_trainer> gpu_trainer::synthetic(const model_config& cfg, const memory_plan& plan,
                                                    const gpu_train_options& opt, uint64_t seed) {
    return device_call("gpu_trainer::synthetic", [&] {
        std::unique_ptr<gpu_trainer> t(new gpu_trainer());
        t->p_->init(cfg, plan, opt);
        t->p_->random_weights(seed);
        t->p_->sample_memory();
        return t;
    });
}

std::unique_ptr<gpu_trainer> gpu_trainer::from_model(const llama_model& model, const lora_weights<float>& init,
                                                     const memory_plan& plan, const gpu_train_options& opt) {
    return device_call("gpu_trainer::from_model", [&] {
        gpu_train_options o = opt;
        o.lora = init.config;
        std::unique_ptr<gpu_trainer> t(new gpu_trainer());
        t->p_->init(model.config, plan, o);
        t->p_->model_weights(model);
        t->p_->upload_lora(init);
        t->p_->sample_memory();
        return t;
    });
}

std::unique_ptr<gpu_trainer> gpu_trainer::for_streaming(const model_config& cfg, const lora_config& lora,
                                                        const memory_plan& plan, const gpu_train_options& opt) {
    return device_call("gpu_trainer::for_streaming", [&] {
        gpu_train_options o = opt;
        o.lora = lora;
        std::unique_ptr<gpu_trainer> t(new gpu_trainer());
        t->p_->init(cfg, plan, o);
        t->p_->sink.p = t->p_.get();
        return t;
    });
}

weight_sink& gpu_trainer::load_sink() { return p_->sink; }

void gpu_trainer::finish_load(const lora_weights<float>& init) {
    device_call("gpu_trainer::finish_load", [&] {
        p_->use_device();
        p_->require_all_weights();
        p_->upload_lora(init);
        p_->sample_memory();
    });
}

double gpu_trainer::forward_backward(const gpu_batch& batch, bool dropout, uint64_t dropout_seed) {
    return device_call("gpu_trainer::forward_backward", [&] {
        p_->use_device();
        return p_->run(batch, true, dropout, dropout_seed);
    });
}

double gpu_trainer::forward_loss(const gpu_batch& batch) {
    return device_call("gpu_trainer::forward_loss", [&] {
        p_->use_device();
        return p_->run(batch, false, false, 0);
    });
}

gpu_update_result gpu_trainer::optimizer_step(float lr, int grad_accum, float max_grad_norm) {
    return device_call("gpu_trainer::optimizer_step", [&] {
        p_->use_device();
        return p_->step(lr, grad_accum, max_grad_norm);
    });
}

void gpu_trainer::zero_grad() {
    device_call("gpu_trainer::zero_grad", [&] {
        p_->use_device();
        // the lora_grads category is one contiguous range of the arena (as optimizer_step clears it)
        auto [gbase, gbytes] = p_->mem->category_range(plan_category::lora_grads);
        QLS_CUDA_CHECK(cudaMemsetAsync(gbase, 0, gbytes, p_->stream));
        QLS_CUDA_CHECK(cudaStreamSynchronize(p_->stream));
        p_->step_open = false;
    });
}

lora_weights<float> gpu_trainer::download_lora() const {
    lora_weights<float> w;
    download_lora_into(w);
    return w;
}

void gpu_trainer::download_lora_into(lora_weights<float>& w) const {
    device_call("gpu_trainer::download_lora", [&] {
        p_->use_device();
        p_->download_into(w);
    });
}

void gpu_trainer::upload_lora(const lora_weights<float>& w) {
    device_call("gpu_trainer::upload_lora", [&] {
        p_->use_device();
        for (int l = 0; l < p_->L; ++l)
            for (lora_target t : p_->targets) {
                const lora_adapter<float>& ad = w.at(l, t);
                auto [in, out] = p_->in_out(t);
                if (ad.a.size() != size_t(p_->r) * size_t(in) || ad.b.size() != size_t(out) * size_t(p_->r))
                    throw error(error_code::shape_mismatch, "upload_lora: adapter shapes differ from the trainer's");
            }
        QLS_CUDA_CHECK(cudaStreamSynchronize(p_->stream));
        p_->upload_lora(w);
    });
}

void gpu_trainer::set_profiling(bool on) {
    device_call("gpu_trainer::set_profiling", [&] {
        p_->use_device();
        QLS_CUDA_CHECK(cudaStreamSynchronize(p_->stream));
        p_->profiling = on;
        p_->prof.clear();
        p_->prof_last = std::chrono::steady_clock::now();
    });
}

// Host-side values: no device work, so no use_device().
const memory_plan& gpu_trainer::plan() const { return p_->plan; }
const model_config& gpu_trainer::config() const { return p_->cfg; }
std::string gpu_trainer::device_name() const { return p_->device; }
double gpu_trainer::last_step_ms() const { return p_->last_ms; }
std::vector<std::pair<std::string, double>> gpu_trainer::profile() const {
    return std::vector<std::pair<std::string, double>>(p_->prof.begin(), p_->prof.end());
}

gpu_memory_stats gpu_trainer::memory() const {
    return device_call("gpu_trainer::memory", [&] {
        p_->use_device();
        gpu_memory_stats s;
        s.arena_bytes = p_->mem->total();
        for (int c = 0; c < plan_category_count; ++c) s.category_bytes[c] = p_->mem->category_bytes(plan_category(c));
        size_t free_b = 0, total_b = 0;
        QLS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        s.device_total_bytes = total_b;
        s.device_used_bytes = total_b - free_b;
        s.device_used_peak_bytes = std::max<uint64_t>(p_->used_peak, s.device_used_bytes);
        s.device_used_before_bytes = p_->used_before;
        if (p_->pager_) {
            s.paging_h2d_bytes = p_->pager_->bytes_h2d();
            s.paging_d2h_bytes = p_->pager_->bytes_d2h();
            s.resident_pages = p_->pager_->resident_pages();
            s.total_pages = p_->pager_->page_count();
            s.pool_pages = p_->pager_->capacity_pages();
            s.pinned_host_bytes = p_->page_mem->pinned_bytes();
        }
        s.offload_h2d_bytes = p_->offload_h2d_bytes;
        s.offload_d2h_bytes = p_->offload_d2h_bytes;
        return s;
    });
}

} // namespace qls
