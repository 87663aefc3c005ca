// gpu_optimizer_state — the CUDA optimizer's state in and out, in qls::optimizer::serialize_state's format and names, so
// a checkpoint is the same whichever backend wrote it (resident states by cudaMemcpy, paged ones through the pager).
#include "gpu_train_impl.h"

namespace qls {

// ---- optimizer state I/O (checkpoints) -----------------------------------------------------------------------------
// The serialized tensors of one parameter, zero-filled, in qls::optimizer's order and shapes.
std::vector<std::pair<std::string, tensor>> gpu_trainer::impl::state_tensors(const cuda_opt_tensor& t) const {
    std::vector<std::pair<std::string, tensor>> v;
    if (t.eightbit) {
        const int64_t nb = (t.n + int64_t(adamw_8bit_block) - 1) / int64_t(adamw_8bit_block);
        v.emplace_back(".state1", tensor(dtype::u8, {t.n}));
        v.emplace_back(".state2", tensor(dtype::u8, {t.n}));
        v.emplace_back(".absmax1", tensor(dtype::f32, {nb}));
        v.emplace_back(".absmax2", tensor(dtype::f32, {nb}));
    } else {
        v.emplace_back(".exp_avg", tensor(dtype::f32, {t.n}));
        v.emplace_back(".exp_avg_sq", tensor(dtype::f32, {t.n}));
    }
    return v;
}

// Index of a suffix in state_tensors order (= the pager ids order) and its device pointer when resident.
size_t gpu_trainer::impl::state_index(const std::string& suffix) {
    static const char* names[] = {".state1", ".state2", ".absmax1", ".absmax2", ".exp_avg", ".exp_avg_sq"};
    for (size_t i = 0; i < 6; ++i)
        if (suffix == names[i]) return i < 4 ? i : i - 4;
    QLS_ASSERT(false && "unknown optimizer state suffix");
    return 0;
}

void* gpu_trainer::impl::resident_state(const cuda_opt_tensor& t, size_t idx) const {
    if (t.eightbit) {
        void* ptrs[] = {t.s1, t.s2, t.a1, t.a2};
        return ptrs[idx];
    }
    void* ptrs[] = {t.m, t.v};
    return ptrs[idx];
}

void gpu_trainer::impl::read_state(const cuda_opt_tensor& t, const std::string& suffix, tensor& dst) {
    const size_t idx = state_index(suffix);
    if (paged) pager_->read(t.ids[idx], dst.raw(), dst.nbytes());
    else QLS_CUDA_CHECK(cudaMemcpy(dst.raw(), resident_state(t, idx), dst.nbytes(), cudaMemcpyDeviceToHost));
}

void gpu_trainer::impl::write_state(const cuda_opt_tensor& t, const std::string& suffix, const tensor& src) {
    const size_t idx = state_index(suffix);
    if (paged) {
        pager_->write(t.ids[idx], src.raw(), src.nbytes());
        page_mem->synchronize();
    } else {
        QLS_CUDA_CHECK(cudaMemcpy(resident_state(t, idx), src.raw(), src.nbytes(), cudaMemcpyHostToDevice));
    }
}

// ---- the public entry points -------------------------------------------------------------------------------------

std::vector<std::pair<std::string, tensor>> gpu_trainer::serialize_optimizer_state(param_namer name) const {
    return device_call("gpu_trainer::serialize_optimizer_state", [&] {
        impl& q = *p_;
        q.use_device();
        QLS_CUDA_CHECK(cudaStreamSynchronize(q.stream));
        std::vector<std::pair<std::string, tensor>> out;
        tensor st(dtype::i64, {1});
        st.data<int64_t>()[0] = q.step_count;
        out.emplace_back("optimizer.step", st);
        if (q.mem->has({plan_item_id::adam_qmaps})) {
            tensor q1(dtype::f32, {256}), q2(dtype::f32, {256});
            const float* d = q.item<float>({plan_item_id::adam_qmaps});
            QLS_CUDA_CHECK(cudaMemcpy(q1.data<float>(), d, 1024, cudaMemcpyDeviceToHost));
            QLS_CUDA_CHECK(cudaMemcpy(q2.data<float>(), d + 256, 1024, cudaMemcpyDeviceToHost));
            out.emplace_back("optimizer.qmap1", q1);
            out.emplace_back("optimizer.qmap2", q2);
        }
        // registration order is layer L-1 first; the checkpoint lists layers in ascending order like the CPU's
        for (int l = 0; l < q.L; ++l)
            for (size_t pi : q.params_of_layer[size_t(l)]) {
                const cuda_opt_tensor& t = q.params[pi];
                const size_t k = (pi - q.params_of_layer[size_t(l)].front());
                const lora_target tg = q.targets[k / 2];
                const std::string pn = name(l, tg, k % 2 == 1);
                for (auto& [suffix, tn] : q.state_tensors(t)) {
                    q.read_state(t, suffix, tn);
                    out.emplace_back(pn + suffix, std::move(tn));
                }
            }
        return out;
    });
}

void gpu_trainer::load_optimizer_state(const std::vector<std::pair<std::string, tensor>>& state, param_namer name) {
    device_call("gpu_trainer::load_optimizer_state", [&] {
        impl& q = *p_;
        q.use_device();
        auto find = [&](const std::string& n) -> const tensor* {
            for (const auto& [k, v] : state)
                if (k == n) return &v;
            return nullptr;
        };
        const tensor* st = find("optimizer.step");
        if (!st || st->type() != dtype::i64 || st->numel() != 1)
            throw error(error_code::format, "optimizer state: optimizer.step is missing or not I64 [1]",
                        "the checkpoint is damaged; resume from an earlier one");
        QLS_CUDA_CHECK(cudaStreamSynchronize(q.stream));
        for (int l = 0; l < q.L; ++l)
            for (size_t pi : q.params_of_layer[size_t(l)]) {
                const cuda_opt_tensor& t = q.params[pi];
                const size_t k = (pi - q.params_of_layer[size_t(l)].front());
                const std::string pn = name(l, q.targets[k / 2], k % 2 == 1);
                for (auto& [suffix, want] : q.state_tensors(t)) {
                    const tensor* got = find(pn + suffix);
                    if (!got || got->type() != want.type() || got->shape() != want.shape())
                        throw error(error_code::format,
                                    "optimizer state: " + pn + suffix + " is missing or has the wrong dtype/shape",
                                    "resume with the optimizer kind the run was started with");
                    q.write_state(t, suffix, *got);
                }
            }
        q.step_count = st->data<int64_t>()[0];
        QLS_CUDA_CHECK(cudaDeviceSynchronize());
    });
}

} // namespace qls
