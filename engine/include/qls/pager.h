// Paged optimizer-state store: fixed-size pages, a device page pool under a byte budget, LRU eviction to host copies, every byte moved counted.
#pragma once

// Why explicit pages and not Unified Memory: /work/shared/DESIGN.md ("Paging is explicit, not Unified Memory").
// bitsandbytes pages its optimizer states through cudaMallocManaged + cudaMemPrefetchAsync and leaves eviction
// to the driver (bitsandbytes csrc/pythonInterface.cpp `cget_managed_ptr`, `cprefetch`; bitsandbytes/optim/
// optimizer.py `prefetch_state`); here the engine decides what lives on the device and counts each copy.
//
// Model:
//  - A *state tensor* is a run of bytes registered with add_tensor(name, bytes). It spans
//    ceil(bytes / page_size) pages; page p of tensor t holds bytes [p*page_size, (p+1)*page_size) of it (the
//    last page is partly padding). Pages are numbered globally in registration order: tensor t owns the page
//    indices [first_page(t), first_page(t) + page_count(t)).
//  - Every page has a host copy (a page_size buffer from page_memory::allocate_host; zero-filled at
//    registration, so a new tensor reads as all zeros) and, while *resident*, a device slot from the device
//    page pool. The pool holds floor(device_budget_bytes / page_size) slots.
//  - acquire(tensors) makes every page of those tensors resident (the working set of one update). A missing
//    page is fetched host→device (page_size bytes counted in bytes_h2d). When no slot is free, the least
//    recently used resident page outside the working set is evicted: written back device→host (page_size
//    bytes counted in bytes_d2h) when it is dirty, dropped without a copy when it is clean.
//  - Dirty means the device slot is newer than the host copy: mark_dirty() after an update wrote to it. A clean
//    resident page's host copy is current by construction (it was fetched from it, written back by read(), or
//    written together with the slot by write()), so dropping it loses nothing.
//  - Every transfer moves a whole page (page_size bytes), partial last pages included, so the counters are
//    exactly page_size × pages moved.
//
// The device side is reached only through page_memory: the CPU implementation (make_cpu_page_memory) simulates
// the device pool with separate host allocations and checks that every copy goes between a device allocation
// and a host allocation; a CUDA implementation backs it with cudaMalloc, pinned host memory and a copy stream.

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace qls {

// Where the bytes of pages physically live. No CUDA types: a CUDA build implements this with cudaMalloc /
// cudaHostAlloc / cudaMemcpyAsync on a copy stream; the engine only ever sees void*.
class page_memory {
public:
    virtual ~page_memory() = default;

    // Device memory for `bytes` (the page pool is carved from such allocations). Throws qls::error{device}.
    virtual void* allocate_device(size_t bytes) = 0;
    virtual void free_device(void* p) noexcept = 0;
    // Host memory for `bytes`, zero-filled (pinned in a CUDA implementation). Throws qls::error{device}.
    virtual void* allocate_host(size_t bytes) = 0;
    virtual void free_host(void* p) noexcept = 0;
    // Copies between one device allocation and one host allocation (ranges must lie inside them). Asynchronous
    // copies are allowed; synchronize() waits for all issued so far.
    virtual void copy_h2d(void* device_dst, const void* host_src, size_t bytes) = 0;
    virtual void copy_d2h(void* host_dst, const void* device_src, size_t bytes) = 0;
    virtual void synchronize() = 0;
    // True when the CPU may read and write device memory directly (the CPU simulation); the CPU optimizer
    // needs this, a CUDA optimizer runs its kernels on the device pointers instead.
    virtual bool device_is_host_addressable() const = 0;
    // Bytes currently allocated on the device side (the pool), for memory accounting.
    virtual size_t device_bytes_allocated() const = 0;
    virtual std::string name() const = 0;
};

// The CPU implementation: "device" memory is a separate pool of plain host allocations. Copies check that the
// destination and source lie inside a live allocation of the right side, so a host pointer passed where a
// device pointer belongs (or a copy past the end of a page) throws qls::error{internal}.
std::unique_ptr<page_memory> make_cpu_page_memory();

struct pager_config {
    size_t page_size = 64 * 1024;            // bytes per page; > 0
    size_t device_budget_bytes = 256u << 20; // device pool budget; slots = floor(budget / page_size)
};

enum class page_state : uint8_t {
    host,     // evicted: only the host copy holds the page (it is current)
    resident, // in a device slot; the host copy is current as well (clean)
    dirty,    // in a device slot; the device copy is newer than the host copy
};

// Byte and page counters. Every field only grows; deltas come from pager::step_stats().
struct pager_stats {
    uint64_t bytes_h2d = 0;          // host → device (page fetches and writes into resident pages)
    uint64_t bytes_d2h = 0;          // device → host (write-backs of dirty pages, reads of dirty pages)
    uint64_t pages_fetched = 0;      // h2d page fetches by acquire()
    uint64_t pages_written_back = 0; // dirty pages copied d2h on eviction
    uint64_t pages_dropped = 0;      // clean pages evicted without a copy
    uint64_t acquires = 0;           // acquire() calls
};

pager_stats operator-(const pager_stats& a, const pager_stats& b);

class pager {
public:
    using tensor_id = size_t;

    // Throws qls::error{invalid_argument} when page_size is 0 or the budget holds no page.
    pager(pager_config config, std::unique_ptr<page_memory> memory);
    ~pager();
    pager(const pager&) = delete;
    pager& operator=(const pager&) = delete;

    // Registers a state tensor of `bytes` (> 0) bytes, all zeros, every page on the host. Returns its id (0, 1, ...).
    tensor_id add_tensor(std::string name, size_t bytes);

    // Makes all pages of `ids` resident, in the order given (tensor by tensor, page by page), evicting LRU pages
    // outside this working set when the pool is full. Afterwards the working set is the most recently used.
    // Throws qls::error{invalid_argument} naming the budget and the minimum needed when the working set has
    // more pages than the pool has slots.
    void acquire(std::span<const tensor_id> ids);
    // Marks every page of `id` dirty (it must be resident): call after an update wrote to the device copy.
    void mark_dirty(tensor_id id);

    // Device address of page `page` (0-based, within the tensor) of tensor `id`; the page must be resident.
    // Valid until the next acquire(), which may evict it.
    void* device_page(tensor_id id, size_t page) const;

    // Whole-tensor copies for checkpoints. write(): `bytes` must equal the tensor's size; every page's host copy
    // is overwritten (no transfer) and a resident page's slot gets the same bytes by copy_h2d (counted), so it
    // ends clean. read(): dirty pages are first written back (counted; they become clean and stay resident),
    // then everything is read from the host copies. Neither call changes which pages are resident.
    void write(tensor_id id, const void* src, size_t bytes);
    void read(tensor_id id, void* dst, size_t bytes);

    // ---- queries ----
    size_t page_size() const { return config_.page_size; }
    size_t device_budget_bytes() const { return config_.device_budget_bytes; }
    size_t capacity_pages() const { return capacity_; } // device slots
    size_t tensor_count() const { return tensors_.size(); }
    size_t page_count() const { return pages_.size(); } // all registered pages
    const std::string& tensor_name(tensor_id id) const;
    size_t tensor_bytes(tensor_id id) const;
    size_t first_page(tensor_id id) const; // global index of its page 0
    size_t page_count(tensor_id id) const; // ceil(bytes / page_size)
    page_state page_residency(size_t global_page) const;
    bool is_resident(size_t global_page) const { return page_residency(global_page) != page_state::host; }
    size_t resident_pages() const { return resident_count_; }
    // Device slots allocated so far (the pool grows on demand up to capacity_pages()); × page_size() = device bytes.
    size_t device_slots_allocated() const { return slot_base_.size(); }
    // Resident pages from least to most recently used (global indices).
    std::vector<size_t> lru_order() const;

    // ---- traffic ----
    const pager_stats& stats() const { return stats_; }
    uint64_t bytes_h2d() const { return stats_.bytes_h2d; }
    uint64_t bytes_d2h() const { return stats_.bytes_d2h; }
    // Starts a new accounting step; step_stats() is the traffic since the last begin_step() (since
    // construction when never called).
    void begin_step() { step_base_ = stats_; }
    pager_stats step_stats() const { return stats_ - step_base_; }

    page_memory& memory() { return *memory_; }

private:
    struct tensor_rec {
        std::string name;
        size_t bytes = 0;
        size_t first_page = 0;
        size_t pages = 0;
        void* host = nullptr; // pages * page_size bytes
    };
    struct page_rec {
        tensor_id owner = 0;
        page_state state = page_state::host;
        uint32_t slot = 0;                   // valid while resident
        uint64_t in_set = 0;                 // == acquire_epoch_ while in the current working set
        std::list<size_t>::iterator lru_pos; // valid while resident
    };

    void* host_page(size_t global_page) const;
    void* slot_ptr(uint32_t slot) const;
    uint32_t take_free_slot();
    void evict(size_t global_page);

    pager_config config_;
    std::unique_ptr<page_memory> memory_;
    size_t capacity_ = 0;
    std::vector<tensor_rec> tensors_;
    std::vector<page_rec> pages_;
    // The pool: slabs of device memory allocated on demand (never more than capacity_ slots in all).
    std::vector<std::pair<void*, size_t>> slabs_; // (base, slots)
    std::vector<void*> slot_base_;                // slot index -> address
    std::vector<uint32_t> free_slots_;
    std::list<size_t> lru_; // resident pages, front = least recently used
    size_t resident_count_ = 0;
    uint64_t acquire_epoch_ = 0;
    pager_stats stats_;
    pager_stats step_base_;
};

} // namespace qls
