// The CPU reference training backend: llama_pass<float> and qls::optimizer over host memory, behind train_backend.
//
// Memory it reports (the CPU has no device to measure): adapters and their gradients, the optimizer's states (or the
// page pool of a paged kind) and the pass's buffers — the CPU's share of what the plan calls device memory.
#include "qls/train_backend.h"

#include "qls/error.h"
#include "qls/peft.h"

#include <algorithm>
#include <cmath>

namespace qls {

namespace {

class cpu_train_backend final : public train_backend {
public:
    cpu_train_backend(const llama_model& model, const lora_weights<float>& init, const memory_plan& plan,
                      const train_backend_options& opt)
        : config_(model.config), lora_(init) {
        const plan_settings& s = plan.settings;
        lora_.zero_grad();
        std::vector<optim_param> params;
        for (int l = 0; l < config_.num_layers; ++l)
            for (lora_target t : lora_.config.targets) {
                lora_adapter<float>& ad = lora_.at(l, t);
                params.push_back({peft_tensor_name(l, t, false), ad.a.data(), ad.da.data(), ad.a.size()});
                params.push_back({peft_tensor_name(l, t, true), ad.b.data(), ad.db.data(), ad.b.size()});
                grads_.push_back(ad.da.data());
                sizes_.push_back(ad.da.size());
                grads_.push_back(ad.db.data());
                sizes_.push_back(ad.db.size());
            }
        optimizer_config oc;
        oc.kind = s.optimizer;
        oc.hparams = opt.adamw;
        oc.paging.page_size = s.page_size;
        if (optimizer_kind_is_paged(s.optimizer)) {
            // the pool for optimizer pages: what the plan leaves for it, or the configured size
            const uint64_t pool = opt.page_pool_bytes ? opt.page_pool_bytes
                                                      : plan.category_bytes(plan_category::optimizer_paged);
            oc.paging.device_budget_bytes = std::max<uint64_t>(pool, s.page_size);
        }
        optim_ = std::make_unique<optimizer>(std::move(params), oc);
        model.require_f32_projections("the CPU training backend"); // it and its memory telemetry read them
        pass_ = std::make_unique<llama_pass<float>>(config_, model.params, model.inv_freq, s.batch, s.seq, &lora_);
        pass_->set_checkpointing(s.gradient_checkpointing);
    }

    const char* kind() const override { return "cpu"; }
    std::string name() const override { return "cpu"; }

    double forward_backward(const train_batch& b, uint64_t dropout_seed) override {
        pass_->set_dropout(true, dropout_seed);
        const float loss = pass_->forward(b.tokens, b.targets, b.positions, b.segments);
        pass_->backward();
        return loss;
    }

    double forward_loss(const train_batch& b) override {
        pass_->set_dropout(false, 0);
        return pass_->forward(b.tokens, b.targets, b.positions, b.segments);
    }

    train_update optimizer_step(float lr, int grad_accum, float max_grad_norm) override {
        if (grad_accum < 1) throw error(error_code::invalid_argument, "grad_accum must be at least 1");
        // mean over micro-batches, as HF Trainer does (loss / gradient_accumulation_steps per micro-batch)
        const float inv = 1.0f / float(grad_accum);
        for (size_t i = 0; i < grads_.size(); ++i)
            for (size_t j = 0; j < sizes_[i]; ++j) grads_[i][j] *= inv;
        train_update u;
        if (max_grad_norm > 0) {
            u.grad_norm = clip_grad_norm(grads_, sizes_, max_grad_norm);
        } else {
            double sq = 0;
            for (size_t i = 0; i < grads_.size(); ++i)
                for (size_t j = 0; j < sizes_[i]; ++j) sq += double(grads_[i][j]) * grads_[i][j];
            u.grad_norm = std::sqrt(sq);
        }
        u.applied = std::isfinite(u.grad_norm);
        if (u.applied) {
            optim_->step(lr);
            // a finite norm can still give NaN/Inf adapters (a damaged optimizer state, an overflowing update):
            // reported as not applied, so the trainer stops instead of training on (and saving) garbage
            u.applied = adapters_finite();
        }
        lora_.zero_grad();
        return u;
    }

    void discard_gradients() override { lora_.zero_grad(); }

    const lora_weights<float>& adapters() const override { return lora_; }

    void set_adapters(const lora_weights<float>& w) override {
        // copy values in place: the optimizer and the pass hold pointers into lora_
        for (int l = 0; l < config_.num_layers; ++l)
            for (lora_target t : lora_.config.targets) {
                lora_adapter<float>& dst = lora_.at(l, t);
                const lora_adapter<float>& src = w.at(l, t);
                if (src.a.size() != dst.a.size() || src.b.size() != dst.b.size())
                    throw error(error_code::shape_mismatch, "set_adapters: adapter shapes differ from the run's");
                std::copy(src.a.begin(), src.a.end(), dst.a.begin());
                std::copy(src.b.begin(), src.b.end(), dst.b.begin());
            }
    }

    std::vector<std::pair<std::string, tensor>> optimizer_state() const override { return optim_->serialize_state(); }
    void load_optimizer_state(const std::vector<std::pair<std::string, tensor>>& state) override {
        optim_->load_state(state);
    }

    backend_memory memory() const override {
        backend_memory m;
        const pager* pg = optim_->state_pager();
        const size_t optimizer_bytes = pg ? pg->capacity_pages() * pg->page_size() : optim_->state_bytes();
        m.used_bytes = 2 * lora_.parameter_count() * sizeof(float) + optimizer_bytes + pass_->activation_bytes();
        peak_ = std::max(peak_, m.used_bytes);
        m.peak_bytes = peak_;
        if (pg) {
            m.paging_h2d_bytes = pg->stats().bytes_h2d;
            m.paging_d2h_bytes = pg->stats().bytes_d2h;
            m.resident_pages = pg->resident_pages();
            m.total_pages = pg->page_count();
        }
        return m;
    }

    const optimizer* host_optimizer() const override { return optim_.get(); }

private:
    bool adapters_finite() const {
        for (int l = 0; l < config_.num_layers; ++l)
            for (lora_target t : lora_.config.targets) {
                const lora_adapter<float>& ad = lora_.at(l, t);
                for (const std::vector<float>* v : {&ad.a, &ad.b})
                    for (float x : *v)
                        if (!std::isfinite(x)) return false;
            }
        return true;
    }

    model_config config_;
    lora_weights<float> lora_;  // the live adapters: optim_ and pass_ point into them
    std::vector<float*> grads_; // dA, dB of every adapter, in optimizer order
    std::vector<size_t> sizes_;
    std::unique_ptr<optimizer> optim_;
    std::unique_ptr<llama_pass<float>> pass_;
    mutable uint64_t peak_ = 0;
};

} // namespace

std::unique_ptr<train_backend> make_cpu_train_backend(const llama_model& model, const lora_weights<float>& init,
                                                      const memory_plan& plan, const train_backend_options& opt) {
    return std::make_unique<cpu_train_backend>(model, init, plan, opt);
}

} // namespace qls
