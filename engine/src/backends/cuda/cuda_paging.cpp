// cuda_paging — paged AdamW states on the CUDA backend: the pager's page_memory (device slots from the arena's
// optimizer region, pinned host copies, copies on their own stream ordered against the compute stream by events) and
// the backward's prefetch of the next layer's pages.
#include "gpu_train_impl.h"

#include <cstring>

namespace qls {

// ---- cuda_page_memory -----------------------------------------------------------------------------------------------

cuda_page_memory::cuda_page_memory(char* region, size_t bytes, cudaStream_t compute, cudaStream_t copy)
    : region_(region), cap_(bytes), compute_(compute), copy_(copy) {
    QLS_CUDA_CHECK(cudaEventCreateWithFlags(&ev_, cudaEventDisableTiming));
}

cuda_page_memory::~cuda_page_memory() {
    cudaStreamSynchronize(copy_);
    cudaEventDestroy(ev_);
}

void* cuda_page_memory::allocate_device(size_t bytes) {
    const size_t need = (bytes + k_arena_align - 1) / k_arena_align * k_arena_align;
    if (used_ + need > cap_)
        throw error(error_code::out_of_memory, "page pool: the optimizer region of the arena is full",
                    "raise the budget");
    void* p = region_ + used_;
    used_ += need;
    return p;
}

void* cuda_page_memory::allocate_host(size_t bytes) {
    void* p = nullptr;
    cudaError_t st = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (st != cudaSuccess) {
        cudaGetLastError();
        throw error(error_code::out_of_memory,
                    "cannot pin " + std::to_string(bytes) + " bytes of host memory for paged optimizer states (" +
                        cudaGetErrorString(st) + ")",
                    "free host memory, or choose an unpaged optimizer if the states fit on the GPU");
    }
    std::memset(p, 0, bytes);
    pinned_ += bytes;
    return p;
}

void cuda_page_memory::copy_h2d(void* dst, const void* src, size_t bytes) {
    after_compute();
    QLS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy_));
}

void cuda_page_memory::copy_d2h(void* dst, const void* src, size_t bytes) {
    after_compute();
    QLS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, copy_));
}

void cuda_page_memory::synchronize() { QLS_CUDA_CHECK(cudaStreamSynchronize(copy_)); }

void cuda_page_memory::compute_waits_for_copies() {
    QLS_CUDA_CHECK(cudaEventRecord(ev_, copy_));
    QLS_CUDA_CHECK(cudaStreamWaitEvent(compute_, ev_, 0));
}

void cuda_page_memory::after_compute() {
    QLS_CUDA_CHECK(cudaEventRecord(ev_, compute_));
    QLS_CUDA_CHECK(cudaStreamWaitEvent(copy_, ev_, 0));
}

// ---- prefetch during the backward -----------------------------------------------------------------------------------

// Paged kinds: fetch layer l's state pages on the copy stream while the backward continues below it, as long as
// they fit beside the pages already fetched for this step (so a prefetch never evicts another one).
void gpu_trainer::impl::prefetch_layer(int l) {
    if (!paged || prefetch_stopped) return;
    std::vector<pager::tensor_id> ids;
    size_t pages = 0;
    for (size_t pi : params_of_layer[size_t(l)])
        for (auto id : params[pi].ids) {
            ids.push_back(id);
            pages += pager_->page_count(id);
        }
    if (prefetched_pages + pages > pager_->capacity_pages()) {
        prefetch_stopped = true;
        return;
    }
    pager_->acquire(ids);
    prefetched_pages += pages;
}

} // namespace qls
