// cuda_train_backend — qls::train_backend (train_backend.h) over gpu_trainer: the CUDA backend as the trainer sees it.
// A thin adapter: no kernel work of its own; every call is one gpu_trainer call.
#include "qls/error.h"
#include "qls/gpu_train.h"
#include "qls/peft.h" // defines: peft_tensor_name (the optimizer state's parameter names)
#include "qls/train_backend.h"

#include <memory>
#include <utility>

namespace qls {

namespace {

class cuda_train_backend final : public train_backend {
public:
    cuda_train_backend(int index, std::unique_ptr<gpu_trainer> gpu, lora_weights<float> init)
        : index_(index), gpu_(std::move(gpu)), host_(std::move(init)) {}

    const char* kind() const override { return "cuda"; }
    std::string name() const override { return "cuda:" + std::to_string(index_) + " (" + gpu_->device_name() + ")"; }

    // Dropout is always on in training, as the trainer has always run the GPU step (lora_dropout_keep, this seed).
    double forward_backward(const train_batch& b, uint64_t dropout_seed) override {
        return gpu_->forward_backward(b, true, dropout_seed);
    }
    double forward_loss(const train_batch& b) override { return gpu_->forward_loss(b); }
    train_update optimizer_step(float lr, int grad_accum, float max_grad_norm) override {
        const gpu_update_result u = gpu_->optimizer_step(lr, grad_accum, max_grad_norm);
        return train_update{u.grad_norm, u.finite};
    }

    // The host mirror, refreshed from the device on each call into its own buffers (one host copy of the adapters,
    // values and gradients of the adapted targets); the config and every adapter's shape are those of `init`.
    const lora_weights<float>& adapters() const override {
        gpu_->download_lora_into(host_);
        return host_;
    }
    void discard_gradients() override { gpu_->zero_grad(); }
    void set_adapters(const lora_weights<float>& w) override { gpu_->upload_lora(w); }

    std::vector<std::pair<std::string, tensor>> optimizer_state() const override {
        return gpu_->serialize_optimizer_state(&peft_tensor_name);
    }
    void load_optimizer_state(const std::vector<std::pair<std::string, tensor>>& state) override {
        gpu_->load_optimizer_state(state, &peft_tensor_name);
    }

    backend_memory memory() const override {
        const gpu_memory_stats s = gpu_->memory();
        backend_memory m;
        m.used_bytes = s.device_used_bytes;
        m.peak_bytes = s.device_used_peak_bytes;
        m.total_bytes = s.device_total_bytes;
        m.arena_bytes = s.arena_bytes;
        m.paging_h2d_bytes = s.paging_h2d_bytes;
        m.paging_d2h_bytes = s.paging_d2h_bytes;
        m.resident_pages = s.resident_pages;
        m.total_pages = s.total_pages;
        m.offload_h2d_bytes = s.offload_h2d_bytes;
        m.offload_d2h_bytes = s.offload_d2h_bytes;
        return m;
    }

private:
    int index_;
    std::unique_ptr<gpu_trainer> gpu_;
    mutable lora_weights<float> host_; // adapters(): the device's adapters as of the last call
};

} // namespace

// The plan fixes B, T, checkpointing, the optimizer and the page size; `init` fixes the LoRA config.
// opt.page_pool_bytes is not used: the CUDA page pool is the plan's optimizer_paged region of the arena.
namespace {

gpu_train_options cuda_options(int device_index, const lora_weights<float>& init, const memory_plan& plan,
                               const train_backend_options& opt) {
    gpu_train_options o;
    o.lora = init.config;
    o.batch = plan.settings.batch;
    o.seq = plan.settings.seq;
    o.optimizer = plan.settings.optimizer;
    o.adamw = opt.adamw;
    o.gradient_checkpointing = plan.settings.gradient_checkpointing;
    o.page_size = plan.settings.page_size;
    o.device = device_index;
    return o;
}

// The streaming way: the arena exists before the load; the loader fills it through the trainer's load sink.
class cuda_backend_builder final : public train_backend_builder {
public:
    cuda_backend_builder(int index, std::unique_ptr<gpu_trainer> gpu, lora_weights<float> init)
        : index_(index), gpu_(std::move(gpu)), init_(std::move(init)) {}
    weight_sink* sink() override { return &gpu_->load_sink(); }
    std::unique_ptr<train_backend> finish(const llama_model&) override {
        if (!gpu_) throw error(error_code::internal, "the CUDA backend was already finished", "build a new backend");
        gpu_->finish_load(init_);
        return std::make_unique<cuda_train_backend>(index_, std::move(gpu_), std::move(init_));
    }

private:
    int index_;
    std::unique_ptr<gpu_trainer> gpu_;
    lora_weights<float> init_;
};

} // namespace

std::unique_ptr<train_backend> make_cuda_train_backend(int device_index, const llama_model& model,
                                                       const lora_weights<float>& init, const memory_plan& plan,
                                                       const train_backend_options& opt) {
    std::unique_ptr<gpu_trainer> gpu = gpu_trainer::from_model(model, init, plan,
                                                               cuda_options(device_index, init, plan, opt));
    return std::make_unique<cuda_train_backend>(device_index, std::move(gpu), init);
}

std::unique_ptr<train_backend_builder> begin_cuda_train_backend(int device_index, const model_config& cfg,
                                                                lora_weights<float> init, const memory_plan& plan,
                                                                const train_backend_options& opt) {
    std::unique_ptr<gpu_trainer> gpu = gpu_trainer::for_streaming(cfg, init.config, plan,
                                                                  cuda_options(device_index, init, plan, opt));
    return std::make_unique<cuda_backend_builder>(device_index, std::move(gpu), std::move(init));
}

} // namespace qls
