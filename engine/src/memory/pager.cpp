// The paged optimizer-state store (qls::pager) and the CPU page_memory that simulates the device pool with host allocations.
#include "qls/pager.h"

#include "qls/error.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>

namespace qls {

namespace {

std::string bytes_str(uint64_t b) {
    std::string s = std::to_string(b) + " bytes";
    if (b >= (1u << 20)) s += " (" + std::to_string(b >> 20) + " MiB)";
    else if (b >= 1024) s += " (" + std::to_string(b >> 10) + " KiB)";
    return s;
}

// ---- CPU simulation of device memory ----------------------------------------------------------------
class cpu_page_memory final : public page_memory {
public:
    ~cpu_page_memory() override {
        for (auto& [p, n] : device_) std::free(const_cast<std::byte*>(p));
        for (auto& [p, n] : host_) std::free(const_cast<std::byte*>(p));
    }

    void* allocate_device(size_t bytes) override { return alloc(device_, bytes, "device"); }
    void free_device(void* p) noexcept override { release(device_, p); }
    void* allocate_host(size_t bytes) override { return alloc(host_, bytes, "host"); }
    void free_host(void* p) noexcept override { release(host_, p); }

    void copy_h2d(void* device_dst, const void* host_src, size_t bytes) override {
        check_inside(device_, device_dst, bytes, "copy_h2d destination", "device");
        check_inside(host_, host_src, bytes, "copy_h2d source", "host");
        std::memcpy(device_dst, host_src, bytes);
    }
    void copy_d2h(void* host_dst, const void* device_src, size_t bytes) override {
        check_inside(host_, host_dst, bytes, "copy_d2h destination", "host");
        check_inside(device_, device_src, bytes, "copy_d2h source", "device");
        std::memcpy(host_dst, device_src, bytes);
    }
    void synchronize() override {}
    bool device_is_host_addressable() const override { return true; }
    size_t device_bytes_allocated() const override {
        size_t n = 0;
        for (auto& [p, b] : device_) n += b;
        return n;
    }
    std::string name() const override { return "cpu (simulated device pool)"; }

private:
    using allocs = std::map<const std::byte*, size_t>;

    static void* alloc(allocs& a, size_t bytes, const char* side) {
        // 64-byte aligned like the engine's tensors; size rounded up as aligned_alloc requires.
        size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
        void* p = std::aligned_alloc(64, rounded);
        if (!p)
            throw error(error_code::device,
                        std::string("cannot allocate ") + bytes_str(bytes) + " of simulated " + side + " memory");
        std::memset(p, 0, rounded);
        a.emplace(static_cast<const std::byte*>(p), bytes);
        return p;
    }
    static void release(allocs& a, void* p) noexcept {
        auto it = a.find(static_cast<const std::byte*>(p));
        if (it == a.end()) return;
        a.erase(it);
        std::free(p);
    }
    static void check_inside(const allocs& a, const void* p, size_t bytes, const char* what, const char* side) {
        auto b = static_cast<const std::byte*>(p);
        auto it = a.upper_bound(b);
        if (it != a.begin()) {
            --it;
            if (b >= it->first && b + bytes <= it->first + it->second) return;
        }
        throw error(error_code::internal, std::string(what) + ": " + std::to_string(bytes) +
                                              " bytes at this address are not inside one " + side + " allocation");
    }

    allocs device_;
    allocs host_;
};

} // namespace

std::unique_ptr<page_memory> make_cpu_page_memory() { return std::make_unique<cpu_page_memory>(); }

pager_stats operator-(const pager_stats& a, const pager_stats& b) {
    pager_stats d;
    d.bytes_h2d = a.bytes_h2d - b.bytes_h2d;
    d.bytes_d2h = a.bytes_d2h - b.bytes_d2h;
    d.pages_fetched = a.pages_fetched - b.pages_fetched;
    d.pages_written_back = a.pages_written_back - b.pages_written_back;
    d.pages_dropped = a.pages_dropped - b.pages_dropped;
    d.acquires = a.acquires - b.acquires;
    return d;
}

// ---- pager -------------------------------------------------------------------------------------------
pager::pager(pager_config config, std::unique_ptr<page_memory> memory) : config_(config), memory_(std::move(memory)) {
    QLS_ASSERT(memory_ != nullptr);
    if (config_.page_size == 0) throw error(error_code::invalid_argument, "pager: page size must be positive");
    capacity_ = config_.device_budget_bytes / config_.page_size;
    if (capacity_ == 0)
        throw error(error_code::invalid_argument,
                    "pager: a device budget of " + bytes_str(config_.device_budget_bytes) + " holds no page of " +
                        bytes_str(config_.page_size),
                    "raise the device budget to at least one page");
    if (capacity_ > UINT32_MAX) capacity_ = UINT32_MAX;
}

pager::~pager() {
    for (auto& t : tensors_)
        if (t.host) memory_->free_host(t.host);
    for (auto& [base, n] : slabs_) memory_->free_device(base);
}

pager::tensor_id pager::add_tensor(std::string name, size_t bytes) {
    if (bytes == 0) throw error(error_code::invalid_argument, "pager: state tensor '" + name + "' has no bytes");
    tensor_rec t;
    t.name = std::move(name);
    t.bytes = bytes;
    t.first_page = pages_.size();
    t.pages = (bytes + config_.page_size - 1) / config_.page_size;
    t.host = memory_->allocate_host(t.pages * config_.page_size); // zero-filled: the tensor reads as zeros
    const tensor_id id = tensors_.size();
    tensors_.push_back(std::move(t));
    for (size_t p = 0; p < tensors_.back().pages; ++p) {
        page_rec r;
        r.owner = id;
        pages_.push_back(r);
    }
    return id;
}

const std::string& pager::tensor_name(tensor_id id) const { return tensors_.at(id).name; }
size_t pager::tensor_bytes(tensor_id id) const { return tensors_.at(id).bytes; }
size_t pager::first_page(tensor_id id) const { return tensors_.at(id).first_page; }
size_t pager::page_count(tensor_id id) const { return tensors_.at(id).pages; }

page_state pager::page_residency(size_t global_page) const { return pages_.at(global_page).state; }

std::vector<size_t> pager::lru_order() const { return {lru_.begin(), lru_.end()}; }

void* pager::host_page(size_t g) const {
    const tensor_rec& t = tensors_[pages_[g].owner];
    return static_cast<std::byte*>(t.host) + (g - t.first_page) * config_.page_size;
}

void* pager::slot_ptr(uint32_t slot) const { return slot_base_[slot]; }

uint32_t pager::take_free_slot() {
    if (free_slots_.empty() && slot_base_.size() < capacity_) {
        // Grow the pool by a slab: up to 16 MiB at a time, never past the budget.
        const size_t slab_target = std::max<size_t>(1, (size_t(16) << 20) / config_.page_size);
        const size_t n = std::min(capacity_ - slot_base_.size(), slab_target);
        void* base = memory_->allocate_device(n * config_.page_size);
        slabs_.emplace_back(base, n);
        for (size_t i = 0; i < n; ++i) {
            free_slots_.push_back(uint32_t(slot_base_.size()));
            slot_base_.push_back(static_cast<std::byte*>(base) + i * config_.page_size);
        }
        std::reverse(free_slots_.end() - ptrdiff_t(n), free_slots_.end()); // hand out low slots first
    }
    if (free_slots_.empty()) return UINT32_MAX;
    uint32_t s = free_slots_.back();
    free_slots_.pop_back();
    return s;
}

void pager::evict(size_t g) {
    page_rec& r = pages_[g];
    QLS_ASSERT(r.state != page_state::host);
    if (r.state == page_state::dirty) {
        memory_->copy_d2h(host_page(g), slot_ptr(r.slot), config_.page_size);
        stats_.bytes_d2h += config_.page_size;
        ++stats_.pages_written_back;
    } else {
        ++stats_.pages_dropped; // clean: the host copy is current, nothing moves
    }
    lru_.erase(r.lru_pos);
    free_slots_.push_back(r.slot);
    r.state = page_state::host;
    --resident_count_;
}

void pager::acquire(std::span<const tensor_id> ids) {
    ++acquire_epoch_;
    ++stats_.acquires;
    // The working set, counted once per page even when a tensor is named twice.
    size_t need = 0;
    for (tensor_id id : ids) {
        const tensor_rec& t = tensors_.at(id);
        for (size_t g = t.first_page; g < t.first_page + t.pages; ++g)
            if (pages_[g].in_set != acquire_epoch_) {
                pages_[g].in_set = acquire_epoch_;
                ++need;
            }
    }
    if (need > capacity_) {
        std::string names;
        for (tensor_id id : ids) names += (names.empty() ? "'" : ", '") + tensors_[id].name + "'";
        throw error(error_code::invalid_argument,
                    "pager: the device budget of " + bytes_str(config_.device_budget_bytes) + " (" +
                        std::to_string(capacity_) + " pages of " + bytes_str(config_.page_size) +
                        ") is smaller than the working set of one update: " + names + " need " + std::to_string(need) +
                        " pages = " + bytes_str(uint64_t(need) * config_.page_size),
                    "raise the device budget to at least " + bytes_str(uint64_t(need) * config_.page_size));
    }
    // 1. Touch the pages already resident, so that nothing in the working set is the LRU victim.
    for (tensor_id id : ids) {
        const tensor_rec& t = tensors_[id];
        for (size_t g = t.first_page; g < t.first_page + t.pages; ++g)
            if (pages_[g].state != page_state::host) lru_.splice(lru_.end(), lru_, pages_[g].lru_pos);
    }
    // 2. Fetch the missing ones in order, evicting from the LRU front (never in the working set: every working-set
    //    page resident so far sits behind all other resident pages, and need <= capacity leaves one outside).
    for (tensor_id id : ids) {
        const tensor_rec& t = tensors_[id];
        for (size_t g = t.first_page; g < t.first_page + t.pages; ++g) {
            page_rec& r = pages_[g];
            if (r.state != page_state::host) continue;
            uint32_t slot = take_free_slot();
            if (slot == UINT32_MAX) {
                QLS_ASSERT(!lru_.empty() && pages_[lru_.front()].in_set != acquire_epoch_);
                evict(lru_.front());
                slot = take_free_slot();
                QLS_ASSERT(slot != UINT32_MAX);
            }
            memory_->copy_h2d(slot_ptr(slot), host_page(g), config_.page_size);
            stats_.bytes_h2d += config_.page_size;
            ++stats_.pages_fetched;
            r.slot = slot;
            r.state = page_state::resident;
            r.lru_pos = lru_.insert(lru_.end(), g);
            ++resident_count_;
        }
    }
    memory_->synchronize();
}

void pager::mark_dirty(tensor_id id) {
    const tensor_rec& t = tensors_.at(id);
    for (size_t g = t.first_page; g < t.first_page + t.pages; ++g) {
        QLS_ASSERT(pages_[g].state != page_state::host);
        pages_[g].state = page_state::dirty;
    }
}

void* pager::device_page(tensor_id id, size_t page) const {
    const tensor_rec& t = tensors_.at(id);
    QLS_ASSERT(page < t.pages);
    const page_rec& r = pages_[t.first_page + page];
    QLS_ASSERT(r.state != page_state::host);
    return slot_ptr(r.slot);
}

void pager::write(tensor_id id, const void* src, size_t bytes) {
    const tensor_rec& t = tensors_.at(id);
    if (bytes != t.bytes)
        throw error(error_code::shape_mismatch, "pager: writing " + std::to_string(bytes) +
                                                    " bytes into state tensor '" + t.name + "' of " +
                                                    std::to_string(t.bytes) + " bytes");
    const auto* s = static_cast<const std::byte*>(src);
    for (size_t p = 0; p < t.pages; ++p) {
        const size_t g = t.first_page + p;
        const size_t off = p * config_.page_size;
        const size_t n = std::min(config_.page_size, t.bytes - off);
        // Stage through the host copy: it becomes the full page image (padding stays zero) and is the copy source
        // page_memory accepts (pinned host memory in a CUDA build).
        auto* h = static_cast<std::byte*>(host_page(g));
        std::memcpy(h, s + off, n);
        page_rec& r = pages_[g];
        if (r.state != page_state::host) {
            memory_->copy_h2d(slot_ptr(r.slot), h, config_.page_size);
            stats_.bytes_h2d += config_.page_size;
            r.state = page_state::resident; // device and host copies now agree
        }
    }
    memory_->synchronize();
}

void pager::read(tensor_id id, void* dst, size_t bytes) {
    const tensor_rec& t = tensors_.at(id);
    if (bytes != t.bytes)
        throw error(error_code::shape_mismatch, "pager: reading " + std::to_string(bytes) +
                                                    " bytes from state tensor '" + t.name + "' of " +
                                                    std::to_string(t.bytes) + " bytes");
    for (size_t p = 0; p < t.pages; ++p) {
        const size_t g = t.first_page + p;
        page_rec& r = pages_[g];
        if (r.state == page_state::dirty) {
            memory_->copy_d2h(host_page(g), slot_ptr(r.slot), config_.page_size);
            stats_.bytes_d2h += config_.page_size;
            r.state = page_state::resident; // clean now: a later eviction drops it without a copy
        }
    }
    memory_->synchronize();
    std::memcpy(dst, t.host, t.bytes);
}

} // namespace qls
