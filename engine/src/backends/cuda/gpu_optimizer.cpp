// gpu_optimizer — AdamW on the CUDA backend: the states of every LoRA tensor (resident in the arena, or paged through
// the pager), the gradient norm and clipping, and fused multi-tensor update launches (per parameter's pages when paged).
//
// Update order = registration order: layer L-1 first (the backward ends there, so its pages are the first prefetched).
#include "gpu_train_impl.h"

#include "qls/quant.h"               // defines: dynamic_map
#include "qls_kernels/elementwise.h" // defines: sum_squares

#include <cmath>

namespace qls {

namespace {

// The pager's name of a LoRA tensor (for its messages): "model.layers.*.self_attn.q_proj.lora_A.weight".
std::string lora_name(lora_target t, bool a) {
    const std::string module = std::string(int(t) < 4 ? "self_attn." : "mlp.") + lora_target_name(t);
    return "model.layers.*." + module + (a ? ".lora_A.weight" : ".lora_B.weight");
}

} // namespace

void gpu_trainer::impl::setup_optimizer() {
    std::vector<float> q1, q2;
    if (mem->has({plan_item_id::adam_qmaps})) {
        const auto m1 = dynamic_map(true), m2 = dynamic_map(false);
        float* d = item<float>({plan_item_id::adam_qmaps});
        QLS_CUDA_CHECK(cudaMemcpy(d, m1.data(), 1024, cudaMemcpyHostToDevice));
        QLS_CUDA_CHECK(cudaMemcpy(d + 256, m2.data(), 1024, cudaMemcpyHostToDevice));
    }
    if (paged) {
        auto [region, bytes] = mem->category_range(plan_category::optimizer_paged);
        auto pm = std::make_unique<cuda_page_memory>(region, bytes, stream, copy_stream);
        page_mem = pm.get();
        pager_config pc;
        pc.page_size = opt.page_size;
        pc.device_budget_bytes = bytes;
        pager_ = std::make_unique<pager>(pc, std::move(pm));
    }
    params_of_layer.assign(size_t(L), {});
    for (int l = L - 1; l >= 0; --l)
        for (lora_target t : targets)
            for (bool a : {true, false}) {
                cuda_opt_tensor ot;
                ot.layer = l;
                const std::string name = lora_name(t, a);
                ot.p = item<float>({plan_item_id::lora_weight, t, !a}, l);
                ot.g = item<float>({plan_item_id::lora_grad, t, !a}, l);
                auto [in, out] = in_out(t);
                ot.n = a ? int64_t(r) * in : int64_t(out) * r;
                ot.eightbit = eightbit && ot.n >= int64_t(adamw_min_8bit_size);
                const std::string at = "[" + std::to_string(l) + "]";
                if (!paged) {
                    if (ot.eightbit) {
                        ot.s1 = item<uint8_t>({plan_item_id::adam_state1, t, !a}, l);
                        ot.s2 = item<uint8_t>({plan_item_id::adam_state2, t, !a}, l);
                        ot.a1 = item<float>({plan_item_id::adam_absmax1, t, !a}, l);
                        ot.a2 = item<float>({plan_item_id::adam_absmax2, t, !a}, l);
                    } else {
                        ot.m = item<float>({plan_item_id::adam_exp_avg, t, !a}, l);
                        ot.v = item<float>({plan_item_id::adam_exp_avg_sq, t, !a}, l);
                    }
                } else if (ot.eightbit) {
                    const size_t nb = size_t((ot.n + adamw_8bit_block - 1) / adamw_8bit_block);
                    ot.ids = {pager_->add_tensor(name + at + ".state1", size_t(ot.n)),
                              pager_->add_tensor(name + at + ".state2", size_t(ot.n)),
                              pager_->add_tensor(name + at + ".absmax1", nb * 4),
                              pager_->add_tensor(name + at + ".absmax2", nb * 4)};
                } else {
                    ot.ids = {pager_->add_tensor(name + at + ".exp_avg", size_t(ot.n) * 4),
                              pager_->add_tensor(name + at + ".exp_avg_sq", size_t(ot.n) * 4)};
                }
                params_of_layer[size_t(l)].push_back(params.size());
                params.push_back(std::move(ot));
            }
}

gpu_update_result gpu_trainer::impl::step(float lr, int grad_accum, float max_grad_norm) {
    if (grad_accum < 1) throw error(error_code::invalid_argument, "grad_accum must be at least 1");
    auto [gbase, gbytes] = mem->category_range(plan_category::lora_grads);
    float* red = item<float>({plan_item_id::ws_reductions});
    K::sum_squares(red + 1025, red, reinterpret_cast<float*>(gbase), int64_t(gbytes / 4), stream);
    float sq = 0;
    QLS_CUDA_CHECK(cudaMemcpyAsync(&sq, red + 1025, 4, cudaMemcpyDeviceToHost, stream));
    QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
    gpu_update_result res;
    res.grad_norm = std::sqrt(double(sq)) / grad_accum;
    res.finite = std::isfinite(res.grad_norm);
    if (res.finite) {
        // torch clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1; the 1/grad_accum mean folded in
        float scale = 1.0f / float(grad_accum);
        if (max_grad_norm > 0) {
            const double coef = double(max_grad_norm) / (res.grad_norm + 1e-6);
            if (coef < 1.0) scale = float(double(scale) * coef);
        }
        tick("other");
        ++step_count;
        update(lr, scale);
        tick("optimizer");
    }
    QLS_CUDA_CHECK(cudaMemsetAsync(gbase, 0, gbytes, stream));
    if (step_open) {
        QLS_CUDA_CHECK(cudaEventRecord(ev_stop, stream));
        QLS_CUDA_CHECK(cudaEventSynchronize(ev_stop));
        QLS_CUDA_CHECK(cudaEventElapsedTime(&last_ms, ev_start, ev_stop));
        step_open = false;
    } else {
        QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    prefetched_pages = 0;
    prefetch_stopped = false;
    sample_memory();
    return res;
}

K::adamw_config gpu_trainer::impl::kcfg() const {
    K::adamw_config c;
    c.beta1 = opt.adamw.beta1;
    c.beta2 = opt.adamw.beta2;
    c.eps = opt.adamw.eps;
    c.weight_decay = opt.adamw.weight_decay;
    return c;
}

// Descriptor table for the multi-tensor launches: workspace.reductions after the 1026 scalars.
template <class D> D* gpu_trainer::impl::descriptor_table(size_t count) {
    const size_t cap = (mem->bytes({plan_item_id::ws_reductions}) - k_reduction_floats * 4) / sizeof(D);
    if (count > cap)
        throw error(error_code::internal,
                    "AdamW descriptor table holds " + std::to_string(cap) + ", need " + std::to_string(count));
    return reinterpret_cast<D*>(item<float>({plan_item_id::ws_reductions}) + k_reduction_floats);
}

void gpu_trainer::impl::launch_fp32(const std::vector<K::adamw_tensor>& d, float lr, float scale) {
    if (d.empty()) return;
    K::adamw_tensor* table = descriptor_table<K::adamw_tensor>(d.size());
    // pageable source: copied to staging before the call returns, so `d` may go right after (CUDA runtime API,
    // "API synchronization behavior", memcpy from pageable host memory)
    QLS_CUDA_CHECK(cudaMemcpyAsync(table, d.data(), d.size() * sizeof(K::adamw_tensor), cudaMemcpyHostToDevice,
                                   stream));
    int64_t max_n = 0;
    for (const auto& t : d) max_n = std::max(max_n, t.n);
    K::adamw_update_32bit_multi(table, int(d.size()), max_n, step_count, lr, kcfg(), scale, stream);
}

void gpu_trainer::impl::launch_8bit(const std::vector<K::adamw8_tensor>& d, float lr, float scale, const float* q1,
                                    const float* q2) {
    if (d.empty()) return;
    K::adamw8_tensor* table = descriptor_table<K::adamw8_tensor>(d.size());
    QLS_CUDA_CHECK(cudaMemcpyAsync(table, d.data(), d.size() * sizeof(K::adamw8_tensor), cudaMemcpyHostToDevice,
                                   stream));
    int64_t max_n = 0;
    for (const auto& t : d) max_n = std::max(max_n, t.n);
    K::adamw_update_8bit_blockwise_multi(table, int(d.size()), max_n, step_count, lr, kcfg(), q1, q2, scale, stream);
}

// Unpaged: one fused launch per state format over every tensor. Paged: per parameter (its pages are resident
// only between its acquire and the next), one fused launch over its pages.
void gpu_trainer::impl::update(float lr, float scale) {
    const float* q1 = mem->has({plan_item_id::adam_qmaps}) ? item<float>({plan_item_id::adam_qmaps}) : nullptr;
    const float* q2 = q1 ? q1 + 256 : nullptr;
    if (!paged) {
        std::vector<K::adamw_tensor> d;
        std::vector<K::adamw8_tensor> d8;
        for (const cuda_opt_tensor& t : params) {
            if (t.eightbit) d8.push_back({t.p, t.g, t.s1, t.s2, t.a1, t.a2, t.n});
            else d.push_back({t.p, t.g, t.m, t.v, t.n});
        }
        launch_fp32(d, lr, scale);
        launch_8bit(d8, lr, scale, q1, q2);
        return;
    }
    const size_t ps = pager_->page_size();
    for (const cuda_opt_tensor& t : params) {
        pager_->acquire(t.ids);
        page_mem->compute_waits_for_copies();
        if (t.eightbit) {
            // a page of codes is ps elements (ps/256 blocks); its absmax lives in absmax page (p*ps/256*4)/ps
            const int64_t per_page = int64_t(ps);
            const size_t pages = pager_->page_count(t.ids[0]);
            std::vector<K::adamw8_tensor> d8;
            for (size_t pg = 0; pg < pages; ++pg) {
                const int64_t e0 = int64_t(pg) * per_page;
                const int64_t n = std::min(per_page, t.n - e0);
                const size_t ab = size_t(e0 / adamw_8bit_block) * 4; // byte offset of this chunk's absmax
                auto* s1 = static_cast<uint8_t*>(pager_->device_page(t.ids[0], pg));
                auto* s2 = static_cast<uint8_t*>(pager_->device_page(t.ids[1], pg));
                auto* a1 = reinterpret_cast<float*>(static_cast<char*>(pager_->device_page(t.ids[2], ab / ps)) +
                                                    ab % ps);
                auto* a2 = reinterpret_cast<float*>(static_cast<char*>(pager_->device_page(t.ids[3], ab / ps)) +
                                                    ab % ps);
                d8.push_back({t.p + e0, t.g + e0, s1, s2, a1, a2, n});
            }
            launch_8bit(d8, lr, scale, q1, q2);
        } else {
            const int64_t per_page = int64_t(ps / 4);
            std::vector<K::adamw_tensor> d;
            const size_t pages = pager_->page_count(t.ids[0]);
            for (size_t pg = 0; pg < pages; ++pg) {
                const int64_t e0 = int64_t(pg) * per_page;
                d.push_back({t.p + e0, t.g + e0, static_cast<float*>(pager_->device_page(t.ids[0], pg)),
                             static_cast<float*>(pager_->device_page(t.ids[1], pg)), std::min(per_page, t.n - e0)});
            }
            launch_fp32(d, lr, scale);
        }
        for (auto id : t.ids) pager_->mark_dirty(id);
    }
}

} // namespace qls
