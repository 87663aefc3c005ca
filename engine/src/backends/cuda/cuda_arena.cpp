// cuda_arena — the CUDA trainer's one device allocation: plan.peak_bytes() from a single cudaMalloc, carved into the
// plan's device items in table order (each aligned to 256 bytes) and looked up by plan_item_key, never by name.
#include "gpu_train_impl.h"

namespace qls {

cuda_arena::cuda_arena(const memory_plan& plan) : slots_(plan_item_key_count) {
    size_t off = 0;
    for (const plan_item& it : plan.items) {
        if (it.placement != plan_placement::device) continue;
        slot& s = slots_[it.key.index()];
        if (s.count > 0)
            throw error(error_code::internal, "arena: plan items '" + s.name + "' and '" + it.name + "' share a key");
        off = (off + k_arena_align - 1) / k_arena_align * k_arena_align;
        s = slot{off, it.bytes_each, it.count, it.category, it.name};
        category_[size_t(it.category)] += it.bytes;
        off += it.bytes;
    }
    total_ = off;
    cudaError_t st = cudaMalloc(&base_, std::max<size_t>(total_, 1));
    if (st != cudaSuccess) {
        cudaGetLastError();
        throw error(error_code::out_of_memory,
                    "cannot allocate the training arena of " + std::to_string(to_gib(total_)) + " GiB on the GPU (" +
                        cudaGetErrorString(st) + ")",
                    "lower the budget, the sequence length or the batch, or close other programs using the GPU");
    }
    QLS_CUDA_CHECK(cudaMemset(base_, 0, total_));
}

cuda_arena::~cuda_arena() { cudaFree(base_); }

const cuda_arena::slot& cuda_arena::at(plan_item_key k) const {
    const slot& s = slots_[k.index()];
    if (s.count == 0)
        throw error(error_code::internal, "arena: the plan has no device item of id " + std::to_string(int(k.id)) +
                                              " (target " + lora_target_short_name(k.target) +
                                              (k.lora_b ? ", B)" : ")"));
    return s;
}

void* cuda_arena::get(plan_item_key k, int64_t index) const {
    const slot& s = at(k);
    if (index < 0 || index >= s.count)
        throw error(error_code::internal, "arena: index " + std::to_string(index) + " out of range for " + s.name);
    return static_cast<char*>(base_) + s.offset + size_t(index) * s.bytes_each;
}

uint64_t cuda_arena::bytes(plan_item_key k) const {
    const slot& s = at(k);
    return uint64_t(s.bytes_each) * uint64_t(s.count);
}

std::pair<char*, size_t> cuda_arena::category_range(plan_category c) const {
    size_t lo = SIZE_MAX, hi = 0;
    for (const slot& s : slots_)
        if (s.count > 0 && s.category == c) {
            lo = std::min(lo, s.offset);
            hi = std::max(hi, s.offset + s.bytes_each * size_t(s.count));
        }
    if (lo == SIZE_MAX) return {nullptr, 0};
    for (const slot& s : slots_)
        if (s.count > 0 && s.category != c && s.offset >= lo && s.offset < hi)
            throw error(error_code::internal, "arena: category range of " + std::string(plan_category_name(c)) +
                                                  " is not contiguous (" + s.name + " inside)");
    return {static_cast<char*>(base_) + lo, hi - lo};
}

} // namespace qls
