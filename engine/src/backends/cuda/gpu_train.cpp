// The CUDA training step behind qls::gpu_trainer (qls/gpu_train.h): planned arena, NF4 weights, forward, backward with
// recomputation, chunked loss, AdamW over resident or paged states with copies on their own stream.
//
// Shapes (llama.h legend): N = B*T rows, C hidden, H MLP hidden, Q = NH*HS, KV = NKV*HS, V vocabulary, r LoRA rank.
// Activations bf16, residual gradient and normed-input gradients fp32, LoRA masters and gradients fp32.
#include "qls/gpu_train.h"

#include "qls/dtype.h"
#include "qls/error.h"
#include "qls/pager.h"
#include "qls/quant.h"
#include "qls_kernels/adamw.h"
#include "qls_kernels/attention.h"
#include "qls_kernels/check.h"
#include "qls_kernels/cross_entropy.h"
#include "qls_kernels/elementwise.h"
#include "qls_kernels/embedding.h"
#include "qls_kernels/gemm.h"
#include "qls_kernels/nf4.h"
#include "qls_kernels/nf4_codebook.h"
#include "qls_kernels/rmsnorm.h"
#include "qls_kernels/rope.h"
#include "qls_kernels/swiglu.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>

namespace qls {

namespace {

using bf16 = __nv_bfloat16;
namespace K = qls_kernels;

constexpr size_t k_align = 256;
constexpr int k_reduction_floats = 1024 + 2;   // plan item workspace.reductions: partials, loss sum, grad norm²

// Converts a kernel-layer failure to the engine's error type at the backend boundary.
template <class F> auto device_call(const char* what, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const K::cuda_failure& e) {
        throw error(error_code::device, std::string(what) + ": " + e.what(),
                    "check `qlora devices`; a device error mid-run usually means the driver or card needs attention");
    } catch (const std::invalid_argument& e) {
        throw error(error_code::unsupported, std::string(what) + ": " + e.what(), "");
    }
}

std::string module_of(lora_target t) {
    const int i = int(t);
    return std::string(i < 4 ? "self_attn." : "mlp.") + lora_target_name(t);
}
std::string layer_prefix() { return "model.layers.*."; }

// ---- the arena: one cudaMalloc carved into the plan's device items, in table order ---------------------------------
class arena {
public:
    explicit arena(const memory_plan& plan) {
        size_t off = 0;
        for (const plan_item& it : plan.items) {
            if (it.placement != plan_placement::device) continue;
            off = (off + k_align - 1) / k_align * k_align;
            slots_[it.name] = slot{off, it.bytes_each, it.count, it.category};
            category_[size_t(it.category)] += it.bytes;
            off += it.bytes;
        }
        total_ = off;
        cudaError_t st = cudaMalloc(&base_, std::max<size_t>(total_, 1));
        if (st != cudaSuccess) {
            cudaGetLastError();
            throw error(error_code::out_of_memory,
                        "cannot allocate the training arena of " + std::to_string(to_gib(total_)) +
                            " GiB on the GPU (" + cudaGetErrorString(st) + ")",
                        "lower the budget, the sequence length or the batch, or close other programs using the GPU");
        }
        QLS_CUDA_CHECK(cudaMemset(base_, 0, total_));
    }
    ~arena() { cudaFree(base_); }
    arena(const arena&) = delete;
    arena& operator=(const arena&) = delete;

    bool has(const std::string& name) const { return slots_.count(name) != 0; }
    void* get(const std::string& name, int64_t index = 0) const {
        auto it = slots_.find(name);
        if (it == slots_.end()) throw error(error_code::internal, "arena: the plan has no device item '" + name + "'");
        if (index < 0 || index >= it->second.count)
            throw error(error_code::internal, "arena: index " + std::to_string(index) + " out of range for " + name);
        return static_cast<char*>(base_) + it->second.offset + size_t(index) * it->second.bytes_each;
    }
    template <class T> T* as(const std::string& name, int64_t index = 0) const {
        return static_cast<T*>(get(name, index));
    }
    // [begin, end) of every device item of one category (items of a category are consecutive in the table).
    std::pair<char*, size_t> category_range(plan_category c) const {
        size_t lo = SIZE_MAX, hi = 0;
        for (const auto& [name, s] : slots_)
            if (s.category == c) {
                lo = std::min(lo, s.offset);
                hi = std::max(hi, s.offset + s.bytes_each * size_t(s.count));
            }
        if (lo == SIZE_MAX) return {nullptr, 0};
        for (const auto& [name, s] : slots_)
            if (s.category != c && s.offset >= lo && s.offset < hi)
                throw error(error_code::internal, "arena: category range of " + std::string(plan_category_name(c)) +
                                                      " is not contiguous (" + name + " inside)");
        return {static_cast<char*>(base_) + lo, hi - lo};
    }
    size_t total() const { return total_; }
    uint64_t category_bytes(plan_category c) const { return category_[size_t(c)]; }

private:
    struct slot {
        size_t offset, bytes_each;
        int64_t count;
        plan_category category;
    };
    std::map<std::string, slot> slots_;
    uint64_t category_[plan_category_count] = {};
    void* base_ = nullptr;
    size_t total_ = 0;
};

// ---- paged optimizer memory: device slots from the arena's optimizer region, pinned host copies, a copy stream ------
class cuda_page_memory final : public page_memory {
public:
    cuda_page_memory(char* region, size_t bytes, cudaStream_t compute, cudaStream_t copy)
        : region_(region), cap_(bytes), compute_(compute), copy_(copy) {
        QLS_CUDA_CHECK(cudaEventCreateWithFlags(&ev_, cudaEventDisableTiming));
    }
    ~cuda_page_memory() override {
        cudaStreamSynchronize(copy_);
        cudaEventDestroy(ev_);
    }
    void* allocate_device(size_t bytes) override {
        const size_t need = (bytes + k_align - 1) / k_align * k_align;
        if (used_ + need > cap_)
            throw error(error_code::out_of_memory, "page pool: the optimizer region of the arena is full",
                        "raise the budget");
        void* p = region_ + used_;
        used_ += need;
        return p;
    }
    void free_device(void*) noexcept override {} // the arena owns the region
    void* allocate_host(size_t bytes) override {
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
    void free_host(void* p) noexcept override { cudaFreeHost(p); }
    // Both directions first wait for the compute work issued so far: a slot being refilled or written back may still
    // be read or written by an update kernel.
    void copy_h2d(void* dst, const void* src, size_t bytes) override {
        after_compute();
        QLS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy_));
    }
    void copy_d2h(void* dst, const void* src, size_t bytes) override {
        after_compute();
        QLS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, copy_));
    }
    void synchronize() override { QLS_CUDA_CHECK(cudaStreamSynchronize(copy_)); }
    bool device_is_host_addressable() const override { return false; }
    size_t device_bytes_allocated() const override { return used_; }
    std::string name() const override { return "cuda"; }
    // The compute stream waits for every copy issued so far (before an update reads fetched pages).
    void compute_waits_for_copies() {
        QLS_CUDA_CHECK(cudaEventRecord(ev_, copy_));
        QLS_CUDA_CHECK(cudaStreamWaitEvent(compute_, ev_, 0));
    }
    size_t pinned_bytes() const { return pinned_; }

private:
    void after_compute() {
        QLS_CUDA_CHECK(cudaEventRecord(ev_, compute_));
        QLS_CUDA_CHECK(cudaStreamWaitEvent(copy_, ev_, 0));
    }
    char* region_;
    size_t cap_, used_ = 0, pinned_ = 0;
    cudaStream_t compute_, copy_;
    cudaEvent_t ev_ = nullptr;
};

// One trainable LoRA tensor and its AdamW states (resident pointers or pager ids).
struct opt_tensor {
    int layer = 0;
    float* p = nullptr;
    float* g = nullptr;
    int64_t n = 0;
    bool eightbit = false;
    float *m = nullptr, *v = nullptr, *a1 = nullptr, *a2 = nullptr; // fp32 states or 8-bit absmax
    uint8_t *s1 = nullptr, *s2 = nullptr;                           // 8-bit codes
    std::vector<pager::tensor_id> ids;                              // paged: {m, v} or {s1, s2, a1, a2}
};

} // namespace

struct gpu_trainer::impl {
    model_config cfg;
    gpu_train_options opt;
    memory_plan plan;
    std::string device;
    int B = 0, T = 0, N = 0, C = 0, H = 0, NH = 0, NKV = 0, HS = 0, Q = 0, KV = 0, V = 0, L = 0, r = 0, chunk = 0;
    float lora_scale = 1.0f;
    bool ckpt = true, paged = false, eightbit = false;
    std::vector<lora_target> targets;
    std::vector<std::array<float, k_lora_target_count>> nested_offset; // [L][t]

    cudaStream_t stream = nullptr, copy_stream = nullptr;
    cudaEvent_t ev_start = nullptr, ev_stop = nullptr;
    bool step_open = false;
    float last_ms = 0;
    uint64_t used_before = 0, used_peak = 0;
    std::unique_ptr<arena> mem;
    std::unique_ptr<K::blas> blas;
    cuda_page_memory* page_mem = nullptr;   // owned by pager_
    std::unique_ptr<pager> pager_;
    std::vector<opt_tensor> params;          // registration (= update) order: layer L-1 first
    std::vector<std::vector<size_t>> params_of_layer;
    size_t prefetched_pages = 0;
    bool prefetch_stopped = false;
    int64_t step_count = 0;
    std::vector<size_t> lora_bf16_offset;    // per target index in `targets`: offset of A in workspace.lora_bf16
    int deq_slot = 0;
    bool has_dropout_scratch = false;
    bool profiling = false;
    std::map<std::string, double> prof;
    std::chrono::steady_clock::time_point prof_last;

    // Profiling: charge the time since the last tick to `phase` (after the stream has drained).
    void tick(const char* phase) {
        if (!profiling) return;
        QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
        const auto now = std::chrono::steady_clock::now();
        prof[phase] += std::chrono::duration<double, std::milli>(now - prof_last).count();
        prof_last = now;
    }

    ~impl() {
        if (stream) cudaStreamSynchronize(stream);
        if (copy_stream) cudaStreamSynchronize(copy_stream);
        pager_.reset();
        blas.reset();
        mem.reset();
        if (ev_start) cudaEventDestroy(ev_start);
        if (ev_stop) cudaEventDestroy(ev_stop);
        if (stream) cudaStreamDestroy(stream);
        if (copy_stream) cudaStreamDestroy(copy_stream);
    }

    // ---- named views ----------------------------------------------------------------------------------------------
    template <class T> T* item(const std::string& name, int64_t i = 0) const { return mem->as<T>(name, i); }
    std::string proj(int, lora_target t) const { return layer_prefix() + module_of(t) + ".weight"; }
    bf16* act(const std::string& what, int l) const {
        return ckpt ? item<bf16>("act.recompute." + what) : item<bf16>("act.layers.*." + what, l);
    }
    float* act_f32(const std::string& what, int l) const {
        return ckpt ? item<float>("act.recompute." + what) : item<float>("act.layers.*." + what, l);
    }
    bf16* resid_in(int l) const {
        if (l == L) return item<bf16>("act.final_residual");
        return ckpt ? item<bf16>("act.layers.*.checkpoint", l) : item<bf16>("act.layers.*.residual_in", l);
    }
    bool adapted(lora_target t) const { return std::find(targets.begin(), targets.end(), t) != targets.end(); }
    int target_index(lora_target t) const { return int(std::find(targets.begin(), targets.end(), t) - targets.begin()); }
    std::string lora_name(lora_target t, bool a) const {
        return layer_prefix() + module_of(t) + (a ? ".lora_A.weight" : ".lora_B.weight");
    }
    std::pair<int, int> in_out(lora_target t) const { return lora_in_out(cfg, t); }

    // ---- setup ----------------------------------------------------------------------------------------------------
    void init(const model_config& c, const gpu_train_options& o) {
        cfg = c;
        opt = o;
        validate_lora(opt.lora);
        int dev_count = 0;
        if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
            cudaGetLastError();
            throw error(error_code::device, "no CUDA GPU is available for the CUDA backend",
                        "run `qlora devices` to see why; use the CPU backend (device.backend \"cpu\")");
        }
        cudaDeviceProp prop{};
        QLS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        device = prop.name;
        QLS_CUDA_CHECK(cudaFree(nullptr)); // create the context now, so "before" includes it
        size_t free_b = 0, total_b = 0;
        QLS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        used_before = total_b - free_b;

        B = opt.batch; T = opt.seq; N = B * T;
        C = cfg.hidden_size; H = cfg.intermediate_size; NH = cfg.num_heads; NKV = cfg.num_kv_heads;
        HS = cfg.head_dim; Q = NH * HS; KV = NKV * HS; V = cfg.vocab_size; L = cfg.num_layers;
        r = opt.lora.rank;
        lora_scale = opt.lora.scale();
        targets = opt.lora.targets;
        ckpt = opt.gradient_checkpointing;
        paged = optimizer_kind_is_paged(opt.optimizer);
        eightbit = optimizer_kind_is_8bit(opt.optimizer);
        if (HS % 8 != 0 || HS > K::attention_max_head_size)
            throw error(error_code::unsupported,
                        "head size " + std::to_string(HS) + " is not supported by the CUDA attention kernels",
                        "the CUDA backend takes head sizes that are multiples of 8 up to 128; use the CPU backend");

        plan_settings ps;
        ps.lora = opt.lora;
        ps.batch = B;
        ps.seq = T;
        ps.optimizer = opt.optimizer;
        ps.gradient_checkpointing = ckpt;
        ps.page_size = opt.page_size;
        ps.card_bytes = total_b;
        ps.budget_bytes = opt.budget_bytes ? opt.budget_bytes : uint64_t(double(free_b) * 0.95);
        plan = make_memory_plan(cfg, ps);
        if (plan.verdict == plan_verdict::does_not_fit)
            throw error(error_code::out_of_memory, "the run does not fit: " + plan.explanation,
                        plan.suggestions.empty() ? "lower the sequence length, the batch or the rank"
                                                 : plan.suggestions.front().text);
        chunk = plan.loss_chunk_tokens;

        QLS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        QLS_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
        QLS_CUDA_CHECK(cudaEventCreate(&ev_start));
        QLS_CUDA_CHECK(cudaEventCreate(&ev_stop));
        mem = std::make_unique<arena>(plan);
        const plan_item* ws = nullptr;
        for (const auto& it : plan.items)
            if (it.name == "workspace.cublas") ws = &it;
        QLS_ASSERT(ws != nullptr);
        blas = std::make_unique<K::blas>(stream, mem->get("workspace.cublas"), ws->bytes);
        has_dropout_scratch = mem->has("workspace.lora_dropout_input");
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
        QLS_CUDA_CHECK(cudaMemcpy(item<float>("workspace.rope_inv_freq"), inv.data(), inv.size() * 4,
                                  cudaMemcpyHostToDevice));
        setup_optimizer();
    }

    void setup_optimizer() {
        std::vector<float> q1, q2;
        if (mem->has("optimizer.qmap1+qmap2")) {
            const auto m1 = dynamic_map(true), m2 = dynamic_map(false);
            float* d = item<float>("optimizer.qmap1+qmap2");
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
                    opt_tensor ot;
                    ot.layer = l;
                    const std::string name = lora_name(t, a);
                    ot.p = item<float>(name, l);
                    ot.g = item<float>(name + ".grad", l);
                    auto [in, out] = in_out(t);
                    ot.n = a ? int64_t(r) * in : int64_t(out) * r;
                    ot.eightbit = eightbit && ot.n >= int64_t(adamw_min_8bit_size);
                    const std::string at = "[" + std::to_string(l) + "]";
                    if (!paged) {
                        if (ot.eightbit) {
                            ot.s1 = item<uint8_t>(name + ".state1", l);
                            ot.s2 = item<uint8_t>(name + ".state2", l);
                            ot.a1 = item<float>(name + ".absmax1", l);
                            ot.a2 = item<float>(name + ".absmax2", l);
                        } else {
                            ot.m = item<float>(name + ".exp_avg", l);
                            ot.v = item<float>(name + ".exp_avg_sq", l);
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

    void sample_memory() {
        size_t free_b = 0, total_b = 0;
        QLS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        used_peak = std::max<uint64_t>(used_peak, total_b - free_b);
    }

    // ---- building blocks --------------------------------------------------------------------------------------------
    const bf16* dequantize(int l, lora_target t) {
        auto [in, out] = in_out(t);
        const int64_t n = int64_t(in) * out;
        const std::string base = proj(l, t);
        bf16* dst = item<bf16>("workspace.dequantized_weight") + size_t(deq_slot) * size_t(max_weight_elems());
        deq_slot ^= 1;
        const float* maps = item<float>(base + ".quant_map+nested_quant_map+nested_offset", l);
        K::nf4_dequantize_dq(dst, item<uint8_t>(base, l), item<uint8_t>(base + ".absmax", l),
                             item<float>(base + ".nested_absmax", l), nested_offset[size_t(l)][size_t(t)], maps + 16, n,
                             64, 256, stream);
        tick("nf4.dequantize");
        return dst;
    }
    int64_t max_weight_elems() const {
        int64_t m = 0;
        for (int t = 0; t < k_lora_target_count; ++t) {
            auto [in, out] = lora_in_out(cfg, lora_target(t));
            m = std::max(m, int64_t(in) * out);
        }
        return m;
    }
    bf16* lora_bf16(lora_target t, bool a) const {
        const int ti = target_index(t);
        auto [in, out] = in_out(t);
        bf16* base = item<bf16>("workspace.lora_bf16") + lora_bf16_offset[size_t(ti)];
        return a ? base : base + size_t(r) * size_t(in);
    }
    void cast_layer_lora(int l) {
        for (lora_target t : targets) {
            auto [in, out] = in_out(t);
            K::cast_f32_to_bf16(lora_bf16(t, true), item<float>(lora_name(t, true), l), int64_t(r) * in, stream);
            K::cast_f32_to_bf16(lora_bf16(t, false), item<float>(lora_name(t, false), l), int64_t(out) * r, stream);
        }
    }
    bf16* xa_buf(int l, lora_target t) const { return act(module_of(t) + ".lora_xa", l); }
    bool dropout_on(bool dropout) const { return dropout && opt.lora.dropout > 0.0f; }

    // y (N, out) [=, or += when accumulate] x (N, in) · Wᵀ + s · (drop(x) · Aᵀ) · Bᵀ ; saves xa (N, r)
    void linear_forward(int l, lora_target t, const bf16* x, bf16* y, bool accumulate, bool dropout, uint64_t seed) {
        auto [in, out] = in_out(t);
        const bf16* w = dequantize(l, t);
        blas->gemm(false, true, N, out, in, x, in, w, in, y, false, out, 1.0f, accumulate ? 1.0f : 0.0f);
        tick("gemm.base.fwd");
        if (!adapted(t)) return;
        const bf16* xd = x;
        if (dropout_on(dropout)) {
            bf16* scratch = item<bf16>("workspace.lora_dropout_input");
            K::lora_dropout(scratch, nullptr, x, int64_t(N) * in, seed, l, int(t), opt.lora.dropout, false, stream);
            xd = scratch;
        }
        bf16* xa = xa_buf(l, t);
        blas->gemm(false, true, N, r, in, xd, in, lora_bf16(t, true), in, xa, false, r, 1.0f, 0.0f);
        blas->gemm(false, true, N, out, r, xa, r, lora_bf16(t, false), r, y, false, out, lora_scale, 1.0f);
        tick("gemm.lora.fwd");
    }

    // dx (N, in) [bf16 or fp32; = or +=] dy (N, out) · W + drop'(s · dy · B · A); dA += dxaᵀ drop(x); dB += s dyᵀ xa
    void linear_backward(int l, lora_target t, const bf16* dy, const bf16* x, void* dx, bool dx_f32, bool accumulate,
                         bool dropout, uint64_t seed) {
        auto [in, out] = in_out(t);
        const bf16* w = dequantize(l, t);
        blas->gemm(false, false, N, in, out, dy, out, w, in, dx, dx_f32, in, 1.0f, accumulate ? 1.0f : 0.0f);
        tick("gemm.base.bwd");
        if (!adapted(t)) return;
        const bf16* xa = xa_buf(l, t);
        bf16* dxa = item<bf16>("grad.lora_xa");
        float* dA = item<float>(lora_name(t, true) + ".grad", l);
        float* dB = item<float>(lora_name(t, false) + ".grad", l);
        blas->gemm(true, false, out, r, N, dy, out, xa, r, dB, true, r, lora_scale, 1.0f);
        blas->gemm(false, false, N, r, out, dy, out, lora_bf16(t, false), r, dxa, false, r, lora_scale, 0.0f);
        const bool drop = dropout_on(dropout);
        bf16* scratch = drop ? item<bf16>("workspace.lora_dropout_input") : nullptr;
        const bf16* xd = x;
        if (drop) {
            K::lora_dropout(scratch, nullptr, x, int64_t(N) * in, seed, l, int(t), opt.lora.dropout, false, stream);
            xd = scratch;
        }
        blas->gemm(true, false, r, in, N, dxa, r, xd, in, dA, true, in, 1.0f, 1.0f);
        if (!drop) {
            blas->gemm(false, false, N, in, r, dxa, r, lora_bf16(t, true), in, dx, dx_f32, in, 1.0f, 1.0f);
        } else {
            blas->gemm(false, false, N, in, r, dxa, r, lora_bf16(t, true), in, scratch, false, in, 1.0f, 0.0f);
            K::lora_dropout(dx_f32 ? nullptr : static_cast<bf16*>(dx), dx_f32 ? static_cast<float*>(dx) : nullptr,
                            scratch, int64_t(N) * in, seed, l, int(t), opt.lora.dropout, true, stream);
        }
        tick("gemm.lora.bwd");
    }

    // xa (N, r) = drop(x) · Aᵀ of one adapter, without the base projection.
    void lora_xa_only(int l, lora_target t, const bf16* x, bool dropout, uint64_t seed) {
        if (!adapted(t)) return;
        auto [in, out] = in_out(t);
        const bf16* xd = x;
        if (dropout_on(dropout)) {
            bf16* scratch = item<bf16>("workspace.lora_dropout_input");
            K::lora_dropout(scratch, nullptr, x, int64_t(N) * in, seed, l, int(t), opt.lora.dropout, false, stream);
            xd = scratch;
        }
        blas->gemm(false, true, N, r, in, xd, in, lora_bf16(t, true), in, xa_buf(l, t), false, r, 1.0f, 0.0f);
        tick("gemm.lora.fwd");
    }

    // Layer l forward from resid_in(l); writes resid_in(l + 1) unless recompute.
    void layer_forward(int l, bool dropout, uint64_t seed, bool recompute) {
        const bf16* x = resid_in(l);
        const int* pos = item<int>("loss.positions");
        const int* seg = use_segments ? item<int>("loss.segments") : nullptr;
        const float* inv = item<float>("workspace.rope_inv_freq");
        const float eps = float(cfg.rms_norm_eps);
        cast_layer_lora(l);
        tick("lora.cast");
        bf16* xn = act("attn_norm.out", l);
        K::rmsnorm_forward(xn, act_f32("attn_norm.rstd", l), x, item<bf16>(layer_prefix() + "input_layernorm.weight", l),
                           N, C, eps, stream);
        bf16 *q = act("q", l), *k = act("k", l), *v = act("v", l);
        linear_forward(l, lora_target::q, xn, q, false, dropout, seed);
        linear_forward(l, lora_target::k, xn, k, false, dropout, seed);
        linear_forward(l, lora_target::v, xn, v, false, dropout, seed);
        K::rope_forward(q, pos, inv, N, NH, HS, stream);
        K::rope_forward(k, pos, inv, N, NKV, HS, stream);
        bf16* att = act("attn.out", l);
        tick("norm+rope");
        K::attention_forward(att, act_f32("attn.lse", l), q, k, v, seg, B, T, NH, NKV, HS, stream);
        tick("attention.fwd");
        bf16* mid = act("residual_mid", l);
        QLS_CUDA_CHECK(cudaMemcpyAsync(mid, x, size_t(N) * C * 2, cudaMemcpyDeviceToDevice, stream));
        linear_forward(l, lora_target::o, att, mid, true, dropout, seed);
        bf16* xn2 = act("mlp_norm.out", l);
        K::rmsnorm_forward(xn2, act_f32("mlp_norm.rstd", l), mid,
                           item<bf16>(layer_prefix() + "post_attention_layernorm.weight", l), N, C, eps, stream);
        bf16 *gate = act("mlp.gate", l), *up = act("mlp.up", l), *hid = act("mlp.hidden", l);
        linear_forward(l, lora_target::gate, xn2, gate, false, dropout, seed);
        linear_forward(l, lora_target::up, xn2, up, false, dropout, seed);
        K::swiglu_forward(hid, gate, up, int64_t(N) * H, stream);
        if (recompute) {
            // the backward needs down's xa (for dB) but not its output: the next checkpoint already holds it
            lora_xa_only(l, lora_target::down, hid, dropout, seed);
            return;
        }
        bf16* y = resid_in(l + 1);
        QLS_CUDA_CHECK(cudaMemcpyAsync(y, mid, size_t(N) * C * 2, cudaMemcpyDeviceToDevice, stream));
        linear_forward(l, lora_target::down, hid, y, true, dropout, seed);
    }

    void layer_backward(int l, bool dropout, uint64_t seed) {
        if (ckpt) layer_forward(l, dropout, seed, true);
        else cast_layer_lora(l);
        tick("other");
        prefetch_layer(l);
        tick("paging.prefetch");
        const int* pos = item<int>("loss.positions");
        const int* seg = use_segments ? item<int>("loss.segments") : nullptr;
        const float* inv = item<float>("workspace.rope_inv_freq");
        float* dres = item<float>("grad.residual");
        bf16* dres_bf = item<bf16>("grad.residual_bf16");
        float* dnorm = item<float>("grad.norm_out");
        // MLP
        K::cast_f32_to_bf16(dres_bf, dres, int64_t(N) * C, stream);
        bf16* dh = item<bf16>("grad.mlp_hidden");
        bf16* dup = item<bf16>("grad.mlp_up");
        linear_backward(l, lora_target::down, dres_bf, act("mlp.hidden", l), dh, false, false, dropout, seed);
        K::swiglu_backward(dh, dup, dh, act("mlp.gate", l), act("mlp.up", l), int64_t(N) * H, stream);
        const bf16* xn2 = act("mlp_norm.out", l);
        linear_backward(l, lora_target::gate, dh, xn2, dnorm, true, false, dropout, seed);
        linear_backward(l, lora_target::up, dup, xn2, dnorm, true, true, dropout, seed);
        K::rmsnorm_backward_accumulate(dres, dnorm, act("residual_mid", l),
                                       item<bf16>(layer_prefix() + "post_attention_layernorm.weight", l),
                                       act_f32("mlp_norm.rstd", l), N, C, stream);
        // attention
        K::cast_f32_to_bf16(dres_bf, dres, int64_t(N) * C, stream);
        bf16* datt = item<bf16>("grad.attn_out");
        linear_backward(l, lora_target::o, dres_bf, act("attn.out", l), datt, false, false, dropout, seed);
        bf16 *dq = item<bf16>("grad.q"), *dk = item<bf16>("grad.k"), *dv = item<bf16>("grad.v");
        K::attention_backward(dq, dk, dv, item<float>("grad.attn_delta"), datt, act("attn.out", l),
                              act_f32("attn.lse", l), act("q", l), act("k", l), act("v", l), seg, B, T, NH, NKV, HS,
                              stream);
        tick("attention.bwd");
        K::rope_backward(dq, pos, inv, N, NH, HS, stream);
        K::rope_backward(dk, pos, inv, N, NKV, HS, stream);
        const bf16* xn = act("attn_norm.out", l);
        linear_backward(l, lora_target::q, dq, xn, dnorm, true, false, dropout, seed);
        linear_backward(l, lora_target::k, dk, xn, dnorm, true, true, dropout, seed);
        linear_backward(l, lora_target::v, dv, xn, dnorm, true, true, dropout, seed);
        K::rmsnorm_backward_accumulate(dres, dnorm, resid_in(l),
                                       item<bf16>(layer_prefix() + "input_layernorm.weight", l),
                                       act_f32("attn_norm.rstd", l), N, C, stream);
    }

    // Final norm, chunked logits + fused cross-entropy (+ dlnf when backward), then dres = d final_residual.
    double head(bool backward, int counted) {
        const float eps = float(cfg.rms_norm_eps);
        bf16* lnf = item<bf16>("loss.final_norm.out");
        float* rstdf = item<float>("loss.final_norm.rstd");
        const bf16* wf = item<bf16>("model.norm.weight");
        K::rmsnorm_forward(lnf, rstdf, resid_in(L), wf, N, C, eps, stream);
        const bf16* lm = mem->has("lm_head.weight") ? item<bf16>("lm_head.weight") : item<bf16>("model.embed_tokens.weight");
        bf16* logits = item<bf16>("loss.logits_chunk");
        float* losses = item<float>("loss.losses");
        const int* tgt = item<int>("loss.targets");
        float* dlnf = item<float>("loss.grad_final_norm.out");
        const float dloss = counted > 0 ? 1.0f / float(counted) : 0.0f;
        for (int c0 = 0; c0 < N; c0 += chunk) {
            const int rows = std::min(chunk, N - c0);
            blas->gemm(false, true, rows, V, C, lnf + size_t(c0) * C, C, lm, C, logits, false, V, 1.0f, 0.0f);
            K::cross_entropy_forward_backward(losses + c0, backward ? logits : nullptr, logits, tgt + c0, rows, V, dloss,
                                              stream);
            if (backward)
                blas->gemm(false, false, rows, C, V, logits, V, lm, C, dlnf + size_t(c0) * C, true, C, 1.0f, 0.0f);
        }
        float* red = item<float>("workspace.reductions");
        K::sum_f32(red + 1024, losses, N, stream);
        if (backward) {
            float* dres = item<float>("grad.residual");
            QLS_CUDA_CHECK(cudaMemsetAsync(dres, 0, size_t(N) * C * 4, stream));
            K::rmsnorm_backward_accumulate(dres, dlnf, resid_in(L), wf, rstdf, N, C, stream);
        }
        float sum = 0;
        QLS_CUDA_CHECK(cudaMemcpyAsync(&sum, red + 1024, 4, cudaMemcpyDeviceToHost, stream));
        QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
        return counted > 0 ? double(sum) / counted : 0.0;
    }

    bool use_segments = false;

    int upload_batch(const gpu_batch& b) {
        if (!b.tokens || !b.targets)
            throw error(error_code::invalid_argument, "gpu_trainer: a batch needs tokens and targets");
        int counted = 0;
        for (int i = 0; i < N; ++i) {
            if (b.tokens[i] < 0 || b.tokens[i] >= V)
                throw error(error_code::invalid_argument,
                            "token id " + std::to_string(b.tokens[i]) + " at position " + std::to_string(i) +
                                " is outside the vocabulary (" + std::to_string(V) + ")",
                            "the tokenizer and the model must match");
            if (b.targets[i] >= V || b.targets[i] < -1)
                throw error(error_code::invalid_argument, "target id " + std::to_string(b.targets[i]) + " is invalid");
            counted += b.targets[i] >= 0;
        }
        QLS_CUDA_CHECK(cudaMemcpyAsync(item<int>("loss.tokens"), b.tokens, size_t(N) * 4, cudaMemcpyHostToDevice, stream));
        QLS_CUDA_CHECK(cudaMemcpyAsync(item<int>("loss.targets"), b.targets, size_t(N) * 4, cudaMemcpyHostToDevice, stream));
        std::vector<int> pos;
        const int* pp = b.positions;
        if (!pp) {
            pos.resize(size_t(N));
            for (int i = 0; i < N; ++i) pos[size_t(i)] = i % T;
            pp = pos.data();
        }
        QLS_CUDA_CHECK(cudaMemcpyAsync(item<int>("loss.positions"), pp, size_t(N) * 4, cudaMemcpyHostToDevice, stream));
        use_segments = b.segments != nullptr;
        if (use_segments)
            QLS_CUDA_CHECK(cudaMemcpyAsync(item<int>("loss.segments"), b.segments, size_t(N) * 4,
                                           cudaMemcpyHostToDevice, stream));
        QLS_CUDA_CHECK(cudaStreamSynchronize(stream)); // pageable sources: keep `pos` alive until copied
        return counted;
    }

    double run(const gpu_batch& b, bool backward, bool dropout, uint64_t seed) {
        if (!step_open && backward) {
            QLS_CUDA_CHECK(cudaEventRecord(ev_start, stream));
            step_open = true;
        }
        const int counted = upload_batch(b);
        K::embedding_forward(resid_in(0), item<int>("loss.tokens"), item<bf16>("model.embed_tokens.weight"), N, C,
                             stream);
        for (int l = 0; l < L; ++l) layer_forward(l, backward && dropout, seed, false);
        tick("other");
        const double loss = head(backward, counted);
        tick("head (final norm, logits, loss)");
        if (backward)
            for (int l = L - 1; l >= 0; --l) layer_backward(l, dropout, seed);
        sample_memory();
        return loss;
    }

    // Paged kinds: fetch layer l's state pages on the copy stream while the backward continues below it, as long as
    // they fit beside the pages already fetched for this step (so a prefetch never evicts another one).
    void prefetch_layer(int l) {
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

    gpu_update_result step(float lr, int grad_accum, float max_grad_norm) {
        if (grad_accum < 1) throw error(error_code::invalid_argument, "grad_accum must be at least 1");
        auto [gbase, gbytes] = mem->category_range(plan_category::lora_grads);
        float* red = item<float>("workspace.reductions");
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

    K::adamw_config kcfg() const {
        K::adamw_config c;
        c.beta1 = opt.adamw.beta1;
        c.beta2 = opt.adamw.beta2;
        c.eps = opt.adamw.eps;
        c.weight_decay = opt.adamw.weight_decay;
        return c;
    }

    // Descriptor table for the multi-tensor launches: workspace.reductions after the 1026 scalars.
    template <class D> D* descriptor_table(size_t count) {
        const size_t cap = (plan_item_bytes("workspace.reductions") - k_reduction_floats * 4) / sizeof(D);
        if (count > cap)
            throw error(error_code::internal, "AdamW descriptor table holds " + std::to_string(cap) + ", need " +
                                                  std::to_string(count));
        return reinterpret_cast<D*>(item<float>("workspace.reductions") + k_reduction_floats);
    }
    size_t plan_item_bytes(const std::string& name) const {
        for (const auto& it : plan.items)
            if (it.name == name) return it.bytes;
        return 0;
    }
    void launch_fp32(const std::vector<K::adamw_tensor>& d, float lr, float scale) {
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

    void launch_8bit(const std::vector<K::adamw8_tensor>& d, float lr, float scale, const float* q1, const float* q2) {
        if (d.empty()) return;
        K::adamw8_tensor* table = descriptor_table<K::adamw8_tensor>(d.size());
        QLS_CUDA_CHECK(cudaMemcpyAsync(table, d.data(), d.size() * sizeof(K::adamw8_tensor), cudaMemcpyHostToDevice,
                                       stream));
        int64_t max_n = 0;
        for (const auto& t : d) max_n = std::max(max_n, t.n);
        K::adamw_update_8bit_blockwise_multi(table, int(d.size()), max_n, step_count, lr, kcfg(), q1, q2, scale,
                                             stream);
    }

    // Unpaged: one fused launch per state format over every tensor. Paged: per parameter (its pages are resident
    // only between its acquire and the next), one fused launch over its pages.
    void update(float lr, float scale) {
        const float* q1 = mem->has("optimizer.qmap1+qmap2") ? item<float>("optimizer.qmap1+qmap2") : nullptr;
        const float* q2 = q1 ? q1 + 256 : nullptr;
        if (!paged) {
            std::vector<K::adamw_tensor> d;
            std::vector<K::adamw8_tensor> d8;
            for (const opt_tensor& t : params) {
                if (t.eightbit) d8.push_back({t.p, t.g, t.s1, t.s2, t.a1, t.a2, t.n});
                else d.push_back({t.p, t.g, t.m, t.v, t.n});
            }
            launch_fp32(d, lr, scale);
            launch_8bit(d8, lr, scale, q1, q2);
            return;
        }
        const size_t ps = pager_->page_size();
        for (const opt_tensor& t : params) {
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
                    auto* a1 = reinterpret_cast<float*>(static_cast<char*>(pager_->device_page(t.ids[2], ab / ps)) + ab % ps);
                    auto* a2 = reinterpret_cast<float*>(static_cast<char*>(pager_->device_page(t.ids[3], ab / ps)) + ab % ps);
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
                                 static_cast<float*>(pager_->device_page(t.ids[1], pg)),
                                 std::min(per_page, t.n - e0)});
                }
                launch_fp32(d, lr, scale);
            }
            for (auto id : t.ids) pager_->mark_dirty(id);
        }
    }

    // ---- optimizer state I/O (checkpoints) -----------------------------------------------------------------------------
    // The serialized tensors of one parameter, zero-filled, in qls::optimizer's order and shapes.
    std::vector<std::pair<std::string, tensor>> state_tensors(const opt_tensor& t) const {
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
    static size_t state_index(const std::string& suffix) {
        static const char* names[] = {".state1", ".state2", ".absmax1", ".absmax2", ".exp_avg", ".exp_avg_sq"};
        for (size_t i = 0; i < 6; ++i)
            if (suffix == names[i]) return i < 4 ? i : i - 4;
        QLS_ASSERT(false && "unknown optimizer state suffix");
        return 0;
    }
    void* resident_state(const opt_tensor& t, size_t idx) const {
        if (t.eightbit) {
            void* ptrs[] = {t.s1, t.s2, t.a1, t.a2};
            return ptrs[idx];
        }
        void* ptrs[] = {t.m, t.v};
        return ptrs[idx];
    }
    void read_state(const opt_tensor& t, const std::string& suffix, tensor& dst) {
        const size_t idx = state_index(suffix);
        if (paged) pager_->read(t.ids[idx], dst.raw(), dst.nbytes());
        else QLS_CUDA_CHECK(cudaMemcpy(dst.raw(), resident_state(t, idx), dst.nbytes(), cudaMemcpyDeviceToHost));
    }
    void write_state(const opt_tensor& t, const std::string& suffix, const tensor& src) {
        const size_t idx = state_index(suffix);
        if (paged) {
            pager_->write(t.ids[idx], src.raw(), src.nbytes());
            page_mem->synchronize();
        } else {
            QLS_CUDA_CHECK(cudaMemcpy(resident_state(t, idx), src.raw(), src.nbytes(), cudaMemcpyHostToDevice));
        }
    }

    // ---- weights ------------------------------------------------------------------------------------------------------
    void random_weights(uint64_t seed) {
        const auto nested = dynamic_map(true);
        uint64_t s = seed;
        auto next = [&] { return s = s * 6364136223846793005ull + 1442695040888963407ull; };
        for (int l = 0; l < L; ++l)
            for (int ti = 0; ti < k_lora_target_count; ++ti) {
                const lora_target t = lora_target(ti);
                auto [in, out] = in_out(t);
                const int64_t n = int64_t(in) * out, nb = (n + 63) / 64, ns = (nb + 255) / 256;
                const std::string base = proj(l, t);
                K::fill_random_bytes(item<uint8_t>(base, l), (n + 1) / 2, next(), stream);
                K::fill_random_bytes(item<uint8_t>(base + ".absmax", l), nb, next(), stream);
                // absmax = nested_map[code] * 0.01 + 0.03: block maxima in [0.02, 0.04], weights of std ~0.012
                K::fill_f32(item<float>(base + ".nested_absmax", l), ns, 0.01f, stream);
                upload_maps(l, t, nested, 0.03f);
            }
        const int64_t ve = int64_t(V) * C;
        K::fill_random_normal_bf16(item<bf16>("model.embed_tokens.weight"), ve, next(), 0.02f, stream);
        if (mem->has("lm_head.weight"))
            K::fill_random_normal_bf16(item<bf16>("lm_head.weight"), ve, next(), 0.02f, stream);
        for (int l = 0; l < L; ++l) {
            K::fill_bf16(item<bf16>(layer_prefix() + "input_layernorm.weight", l), C, 1.0f, stream);
            K::fill_bf16(item<bf16>(layer_prefix() + "post_attention_layernorm.weight", l), C, 1.0f, stream);
        }
        K::fill_bf16(item<bf16>("model.norm.weight"), C, 1.0f, stream);
        // LoRA: A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT kaiming_uniform_(a=sqrt(5))), B = 0 (the arena starts zeroed)
        for (int l = 0; l < L; ++l)
            for (lora_target t : targets) {
                auto [in, out] = in_out(t);
                K::fill_random_uniform_f32(item<float>(lora_name(t, true), l), int64_t(r) * in, next(),
                                           1.0f / std::sqrt(float(in)), stream);
            }
        QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
    }

    void upload_maps(int l, lora_target t, const std::array<float, 256>& nested, float offset) {
        float maps[273];
        for (int i = 0; i < 16; ++i) maps[i] = K::nf4_code[i];
        for (int i = 0; i < 256; ++i) maps[16 + i] = nested[size_t(i)];
        maps[272] = offset;
        QLS_CUDA_CHECK(cudaMemcpy(item<float>(proj(l, t) + ".quant_map+nested_quant_map+nested_offset", l), maps,
                                  sizeof maps, cudaMemcpyHostToDevice));
        nested_offset[size_t(l)][size_t(t)] = offset;
    }

    template <class T> void put(void* dst, const std::vector<T>& v) {
        QLS_CUDA_CHECK(cudaMemcpy(dst, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    static std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
        std::vector<uint16_t> o(v.size());
        for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
        return o;
    }

    void model_weights(const llama_model& m) {
        if (!m.quantized())
            throw error(error_code::unsupported, "the CUDA backend trains on an NF4 base; this model was loaded unquantized",
                        "load it with NF4 quantization (model.quantize_nf4 true)");
        for (int l = 0; l < L; ++l)
            for (int ti = 0; ti < k_lora_target_count; ++ti) {
                const lora_target t = lora_target(ti);
                const nf4_tensor& w = m.nf4[size_t(l)][size_t(ti)];
                if (!w.double_quant || w.blocksize != 64 || w.nested_blocksize != 256)
                    throw error(error_code::unsupported,
                                "layer " + std::to_string(l) + " " + lora_target_name(t) +
                                    ": the CUDA backend takes NF4 with double quantization, blocks of 64 (nested 256)",
                                "quantize at load time (model.double_quant true)");
                const std::string base = proj(l, t);
                put(item<uint8_t>(base, l), w.packed);
                put(item<uint8_t>(base + ".absmax", l), w.absmax_codes);
                put(item<float>(base + ".nested_absmax", l), w.absmax_scale);
                upload_maps(l, t, w.nested_map, w.absmax_offset);
                const llama_layer_params<float>& lp = m.params.layers[size_t(l)];
                if (ti == 0) {
                    put(item<bf16>(layer_prefix() + "input_layernorm.weight", l), to_bf16(lp.attn_norm));
                    put(item<bf16>(layer_prefix() + "post_attention_layernorm.weight", l), to_bf16(lp.mlp_norm));
                }
            }
        put(item<bf16>("model.embed_tokens.weight"), to_bf16(m.params.embed));
        if (mem->has("lm_head.weight")) put(item<bf16>("lm_head.weight"), to_bf16(m.params.lm_head));
        put(item<bf16>("model.norm.weight"), to_bf16(m.params.final_norm));
    }

    void upload_lora(const lora_weights<float>& w) {
        for (int l = 0; l < L; ++l)
            for (lora_target t : targets) {
                const lora_adapter<float>& ad = w.at(l, t);
                put(item<float>(lora_name(t, true), l), ad.a);
                put(item<float>(lora_name(t, false), l), ad.b);
            }
    }

    lora_weights<float> download() const {
        lora_weights<float> w;
        w.config = opt.lora;
        w.layers.resize(size_t(L));
        QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
        for (int l = 0; l < L; ++l)
            for (lora_target t : targets) {
                lora_adapter<float>& ad = w.at(l, t);
                auto [in, out] = in_out(t);
                ad.in = in;
                ad.out = out;
                ad.rank = r;
                ad.a.resize(size_t(r) * in);
                ad.b.resize(size_t(out) * r);
                ad.da.resize(ad.a.size());
                ad.db.resize(ad.b.size());
                QLS_CUDA_CHECK(cudaMemcpy(ad.a.data(), item<float>(lora_name(t, true), l), ad.a.size() * 4,
                                          cudaMemcpyDeviceToHost));
                QLS_CUDA_CHECK(cudaMemcpy(ad.b.data(), item<float>(lora_name(t, false), l), ad.b.size() * 4,
                                          cudaMemcpyDeviceToHost));
                QLS_CUDA_CHECK(cudaMemcpy(ad.da.data(), item<float>(lora_name(t, true) + ".grad", l),
                                          ad.da.size() * 4, cudaMemcpyDeviceToHost));
                QLS_CUDA_CHECK(cudaMemcpy(ad.db.data(), item<float>(lora_name(t, false) + ".grad", l),
                                          ad.db.size() * 4, cudaMemcpyDeviceToHost));
            }
        return w;
    }
};

gpu_trainer::gpu_trainer() : p_(std::make_unique<impl>()) {}

void gpu_trainer::upload_lora(const lora_weights<float>& w) {
    device_call("gpu_trainer::upload_lora", [&] {
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

std::vector<std::pair<std::string, tensor>> gpu_trainer::serialize_optimizer_state(param_namer name) const {
    return device_call("gpu_trainer::serialize_optimizer_state", [&] {
        impl& q = *p_;
        QLS_CUDA_CHECK(cudaStreamSynchronize(q.stream));
        std::vector<std::pair<std::string, tensor>> out;
        tensor st(dtype::i64, {1});
        st.data<int64_t>()[0] = q.step_count;
        out.emplace_back("optimizer.step", st);
        if (q.mem->has("optimizer.qmap1+qmap2")) {
            tensor q1(dtype::f32, {256}), q2(dtype::f32, {256});
            const float* d = q.item<float>("optimizer.qmap1+qmap2");
            QLS_CUDA_CHECK(cudaMemcpy(q1.data<float>(), d, 1024, cudaMemcpyDeviceToHost));
            QLS_CUDA_CHECK(cudaMemcpy(q2.data<float>(), d + 256, 1024, cudaMemcpyDeviceToHost));
            out.emplace_back("optimizer.qmap1", q1);
            out.emplace_back("optimizer.qmap2", q2);
        }
        // registration order is layer L-1 first; the checkpoint lists layers in ascending order like the CPU's
        for (int l = 0; l < q.L; ++l)
            for (size_t pi : q.params_of_layer[size_t(l)]) {
                const opt_tensor& t = q.params[pi];
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
                const opt_tensor& t = q.params[pi];
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
gpu_trainer::~gpu_trainer() = default;

std::unique_ptr<gpu_trainer> gpu_trainer::synthetic(const model_config& cfg, const gpu_train_options& opt,
                                                    uint64_t seed) {
    return device_call("gpu_trainer::synthetic", [&] {
        std::unique_ptr<gpu_trainer> t(new gpu_trainer());
        t->p_->init(cfg, opt);
        t->p_->random_weights(seed);
        t->p_->sample_memory();
        return t;
    });
}

std::unique_ptr<gpu_trainer> gpu_trainer::from_model(const llama_model& model, const lora_weights<float>& init,
                                                     const gpu_train_options& opt) {
    return device_call("gpu_trainer::from_model", [&] {
        gpu_train_options o = opt;
        o.lora = init.config;
        std::unique_ptr<gpu_trainer> t(new gpu_trainer());
        t->p_->init(model.config, o);
        t->p_->model_weights(model);
        t->p_->upload_lora(init);
        t->p_->sample_memory();
        return t;
    });
}

double gpu_trainer::forward_backward(const gpu_batch& batch, bool dropout, uint64_t dropout_seed) {
    return device_call("gpu_trainer::forward_backward", [&] { return p_->run(batch, true, dropout, dropout_seed); });
}
double gpu_trainer::forward_loss(const gpu_batch& batch) {
    return device_call("gpu_trainer::forward_loss", [&] { return p_->run(batch, false, false, 0); });
}
gpu_update_result gpu_trainer::optimizer_step(float lr, int grad_accum, float max_grad_norm) {
    return device_call("gpu_trainer::optimizer_step", [&] { return p_->step(lr, grad_accum, max_grad_norm); });
}
lora_weights<float> gpu_trainer::download_lora() const {
    return device_call("gpu_trainer::download_lora", [&] { return p_->download(); });
}
const memory_plan& gpu_trainer::plan() const { return p_->plan; }
void gpu_trainer::set_profiling(bool on) {
    device_call("gpu_trainer::set_profiling", [&] {
        QLS_CUDA_CHECK(cudaStreamSynchronize(p_->stream));
        p_->profiling = on;
        p_->prof.clear();
        p_->prof_last = std::chrono::steady_clock::now();
    });
}
std::vector<std::pair<std::string, double>> gpu_trainer::profile() const {
    return std::vector<std::pair<std::string, double>>(p_->prof.begin(), p_->prof.end());
}
const model_config& gpu_trainer::config() const { return p_->cfg; }
std::string gpu_trainer::device_name() const { return p_->device; }
double gpu_trainer::last_step_ms() const { return p_->last_ms; }

gpu_memory_stats gpu_trainer::memory() const {
    return device_call("gpu_trainer::memory", [&] {
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
        return s;
    });
}

} // namespace qls
