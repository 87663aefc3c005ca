// gpu_train_impl.h — private to engine/src/backends/cuda: gpu_trainer::impl (the CUDA training step's state), the
// arena carved from the run's memory_plan, the pager's CUDA page memory, and the helpers their files share.
//
// Where each part lives (one concern per file):
//   gpu_train.cpp            setup from the plan, the public gpu_trainer entry points, memory telemetry
//   gpu_weights.cpp          frozen weights (synthetic, a loaded model, or streamed by the loader) and the adapters
//   gpu_step.cpp             forward, backward with recomputation, the chunked-loss head
//   gpu_optimizer.cpp        AdamW: state setup, gradient norm and clipping, fused resident or paged launches
//   gpu_optimizer_state.cpp  optimizer state in and out (checkpoints)
//   cuda_arena.cpp           the one cudaMalloc, carved into the plan's device items by plan_item_key
//   cuda_paging.cpp          cuda_page_memory under the pager, and the backward's page prefetch
//   (cuda_train_backend.cpp, qls::train_backend over gpu_trainer, uses only the public gpu_train.h.)
//
// Shapes (llama.h legend): N = B*T rows, C hidden, H MLP hidden, Q = NH*HS, KV = NKV*HS, V vocabulary, r LoRA rank.
// Activations bf16, residual gradient and normed-input gradients fp32, LoRA masters and gradients fp32.
#pragma once

#include "qls/error.h"
#include "qls/gpu_train.h"
#include "qls/memory_plan.h" // defines: memory_plan, plan_item_key, plan_item_id
#include "qls/pager.h"       // defines: pager, page_memory
#include "qls_kernels/adamw.h"
#include "qls_kernels/check.h" // defines: QLS_CUDA_CHECK, cuda_failure
#include "qls_kernels/gemm.h"  // defines: blas

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace qls {

using bf16 = __nv_bfloat16;
namespace K = qls_kernels;

constexpr size_t k_arena_align = 256;
constexpr int k_reduction_floats = 1024 + 2; // plan item workspace.reductions: partials, loss sum, grad norm²

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

// ---- the arena: one cudaMalloc carved into the plan's device items, in table order (cuda_arena.cpp) ----------------
class cuda_arena {
public:
    // Allocates every plan item placed on the device, each aligned to k_arena_align, zeroed. Throws
    // qls::error{out_of_memory} when the card cannot give it, {internal} when two items share a key.
    explicit cuda_arena(const memory_plan& plan);
    ~cuda_arena();
    cuda_arena(const cuda_arena&) = delete;
    cuda_arena& operator=(const cuda_arena&) = delete;

    bool has(plan_item_key k) const { return slots_[k.index()].count > 0; }
    // Tensor `index` (of the item's count, e.g. the layer) of item k; qls::error{internal} when the plan lacks it.
    void* get(plan_item_key k, int64_t index = 0) const;
    template <class T> T* as(plan_item_key k, int64_t index = 0) const { return static_cast<T*>(get(k, index)); }
    // Bytes of item k, all its tensors (the plan item's `bytes`).
    uint64_t bytes(plan_item_key k) const;
    // [begin, end) of every device item of one category (items of a category are consecutive in the table).
    std::pair<char*, size_t> category_range(plan_category c) const;
    size_t total() const { return total_; }
    uint64_t category_bytes(plan_category c) const { return category_[size_t(c)]; }

private:
    struct slot {
        size_t offset = 0, bytes_each = 0;
        int64_t count = 0; // 0: not in the arena
        plan_category category = plan_category::workspace;
        std::string name; // the plan item's name, for errors
    };
    const slot& at(plan_item_key k) const;
    std::vector<slot> slots_; // [plan_item_key_count], by plan_item_key::index()
    uint64_t category_[plan_category_count] = {};
    void* base_ = nullptr;
    size_t total_ = 0;
};

// ---- paged optimizer memory: device slots from the arena's optimizer region, pinned host copies, a copy stream ------
class cuda_page_memory final : public page_memory {
public:
    cuda_page_memory(char* region, size_t bytes, cudaStream_t compute, cudaStream_t copy);
    ~cuda_page_memory() override;
    void* allocate_device(size_t bytes) override;
    void free_device(void*) noexcept override {} // the arena owns the region
    void* allocate_host(size_t bytes) override;
    void free_host(void* p) noexcept override { cudaFreeHost(p); }
    // Both directions first wait for the compute work issued so far: a slot being refilled or written back may still
    // be read or written by an update kernel.
    void copy_h2d(void* dst, const void* src, size_t bytes) override;
    void copy_d2h(void* dst, const void* src, size_t bytes) override;
    void synchronize() override;
    bool device_is_host_addressable() const override { return false; }
    size_t device_bytes_allocated() const override { return used_; }
    std::string name() const override { return "cuda"; }
    // The compute stream waits for every copy issued so far (before an update reads fetched pages).
    void compute_waits_for_copies();
    size_t pinned_bytes() const { return pinned_; }

private:
    void after_compute();
    char* region_;
    size_t cap_, used_ = 0, pinned_ = 0;
    cudaStream_t compute_, copy_;
    cudaEvent_t ev_ = nullptr;
};

// One trainable LoRA tensor and its AdamW states (resident pointers or pager ids).
struct cuda_opt_tensor {
    int layer = 0;
    float* p = nullptr;
    float* g = nullptr;
    int64_t n = 0;
    bool eightbit = false;
    float *m = nullptr, *v = nullptr, *a1 = nullptr, *a2 = nullptr; // fp32 states or 8-bit absmax
    uint8_t *s1 = nullptr, *s2 = nullptr;                           // 8-bit codes
    std::vector<pager::tensor_id> ids;                              // paged: {m, v} or {s1, s2, a1, a2}
};

struct gpu_trainer::impl {
    model_config cfg;
    gpu_train_options opt;
    memory_plan plan;
    std::string device;
    int B = 0, T = 0, N = 0, C = 0, H = 0, NH = 0, NKV = 0, HS = 0, Q = 0, KV = 0, V = 0, L = 0, r = 0, chunk = 0;
    float lora_scale = 1.0f;
    bool ckpt = true, paged = false, eightbit = false;
    // The family's layer (architecture.h): per-head q/k norms, post norms, GeGLU instead of SwiGLU; the attention
    // scale when the config sets one (0: the kernels' HS^-0.5, the LLaMA default). (1 + w) norms need no flag: their
    // weights are uploaded as 1 + w.
    bool qk_norm = false, sandwich = false, geglu = false;
    float attn_scale = 0.0f;
    std::vector<lora_target> targets;
    std::vector<std::array<float, k_lora_target_count>> nested_offset; // [L][t]

    cudaStream_t stream = nullptr, copy_stream = nullptr;
    cudaEvent_t ev_start = nullptr, ev_stop = nullptr;
    bool step_open = false;
    float last_ms = 0;
    uint64_t used_before = 0, used_peak = 0;
    std::unique_ptr<cuda_arena> mem;
    std::unique_ptr<K::blas> blas;
    cuda_page_memory* page_mem = nullptr; // owned by pager_
    std::unique_ptr<pager> pager_;
    std::vector<cuda_opt_tensor> params; // registration (= update) order: layer L-1 first
    std::vector<std::vector<size_t>> params_of_layer;
    size_t prefetched_pages = 0;
    bool prefetch_stopped = false;
    int64_t step_count = 0;
    std::vector<size_t> lora_bf16_offset; // per target index in `targets`: offset of A in workspace.lora_bf16
    int deq_slot = 0;
    bool has_dropout_scratch = false;
    bool use_segments = false; // the current batch has segment ids
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

    ~impl();
    // Makes this trainer's GPU current on the calling thread: the first thing every public entry point does.
    void use_device() const { QLS_CUDA_CHECK(cudaSetDevice(opt.device)); }

    // ---- views of the arena, by plan item key ------------------------------------------------------------------------
    template <class T> T* item(plan_item_key k, int64_t i = 0) const { return mem->as<T>(k, i); }
    // One layer's activation: act.recompute.<x> with checkpointing (one set, reused), act.layers.*.<x>[l] without.
    bf16* act(plan_item_key k, int l) const { return item<bf16>(k, ckpt ? 0 : l); }
    float* act_f32(plan_item_key k, int l) const { return item<float>(k, ckpt ? 0 : l); }
    // (B, T, C) input of layer l; l == L: the last layer's output. Offloaded checkpoints: slot l % R of the device ring.
    bf16* resid_in(int l) const {
        if (l == L) return item<bf16>({plan_item_id::act_final_residual});
        if (offload) return item<bf16>({plan_item_id::act_checkpoint}, l % checkpoint_ring_slots);
        return ckpt ? item<bf16>({plan_item_id::act_checkpoint}, l) : item<bf16>({plan_item_id::act_residual_in}, l);
    }

    // ---- offloaded checkpoints (gpu_offload.cpp) ------------------------------------------------------------------
    // The plan placed every layer's checkpoint in pinned host memory (act_checkpoint_host) and a ring of R =
    // checkpoint_ring_slots device slots (act_checkpoint). Forward: layer l's input (slot l % R) is copied to host
    // slot l on offload_stream while the next layers compute; before a layer writes its output into a slot, the main
    // stream waits for that slot's copy out. Backward (layers L-1 … 0): while layer l computes, host slot l-1 comes
    // back into its ring slot, after the layer that last read it (l+2) is done. Every wait is an event, so the result
    // is the resident path's bit for bit.
    bool offload = false;
    bf16* host_ckpt = nullptr;             // [L][N*C] pinned
    cudaStream_t offload_stream = nullptr; // the checkpoints' copies, beside the pager's copy_stream
    std::array<cudaEvent_t, checkpoint_ring_slots> ev_filled{}, ev_saved{}, ev_loaded{}, ev_read{};
    std::array<int, checkpoint_ring_slots> slot_layer{}; // which layer's input a ring slot holds (-1: none)
    uint64_t offload_d2h_bytes = 0, offload_h2d_bytes = 0; // cumulative
    void init_offload();
    void free_offload();
    void offload_before_forward(int l, bool save); // slot l % R holds layer l's input; saves it; frees slot (l+1) % R
    void offload_before_backward(int l);           // brings layer l's input back if needed, prefetches l-1
    void offload_after_backward(int l);            // layer l is done reading its slot
    // LoRA master (A (r, in) or B (out, r)) and its gradient of layer l
    float* lora_w(lora_target t, bool a, int l) const { return item<float>({plan_item_id::lora_weight, t, !a}, l); }
    float* lora_g(lora_target t, bool a, int l) const { return item<float>({plan_item_id::lora_grad, t, !a}, l); }
    bool adapted(lora_target t) const { return std::find(targets.begin(), targets.end(), t) != targets.end(); }
    int target_index(lora_target t) const {
        return int(std::find(targets.begin(), targets.end(), t) - targets.begin());
    }
    std::pair<int, int> in_out(lora_target t) const { return lora_in_out(cfg, t); }
    // The frozen bias (out) of projection t of layer l, or nullptr when the model has none.
    const bf16* bias_of(int l, lora_target t) const {
        return mem->has({plan_item_id::proj_bias, t}) ? item<bf16>({plan_item_id::proj_bias, t}, l) : nullptr;
    }
    // (HS/2) RoPE inverse frequencies of layer l: the sliding layers' own when the model has them (Gemma 3).
    const float* rope_freq(int l) const {
        if (cfg.layer_sliding(l) && mem->has({plan_item_id::ws_rope_inv_freq_local}))
            return item<float>({plan_item_id::ws_rope_inv_freq_local});
        return item<float>({plan_item_id::ws_rope_inv_freq});
    }

    // ---- setup (gpu_train.cpp) --------------------------------------------------------------------------------------
    void init(const model_config& c, const memory_plan& p, const gpu_train_options& o);
    void sample_memory();

    // ---- weights (gpu_weights.cpp) ------------------------------------------------------------------------------------
    void random_weights(uint64_t seed);
    void upload_maps(int l, lora_target t, const std::array<float, 256>& nested, float offset);
    template <class E> void put(void* dst, const std::vector<E>& v);
    void model_weights(const llama_model& m);
    // One frozen tensor into its arena item (checked against the plan's shape), bf16 for norms, biases, embeddings and
    // LM head: model_weights and the streaming load both come through these (llama.h weight_sink's calls).
    void put_projection(int l, lora_target t, const nf4_tensor& w);
    void put_base(int l, base_tensor bt, const std::vector<float>& v);
    void put_bias(int l, lora_target t, const std::vector<float>& v);
    // qls::error{invalid_argument} naming the first frozen tensor of the plan that was never put.
    void require_all_weights() const;
    // Which frozen tensors have arrived: [3 + L·k_layer_slots] flags, by weight_slot (kind 0 base_tensor, 1 bias,
    // 2 projection; l = -1 for embed 0, final_norm 1, lm_head 2). Empty until the first put.
    static constexpr int k_layer_slots = k_base_tensor_count + 2 * k_lora_target_count;
    std::vector<uint8_t> delivered;
    size_t weight_slot(int l, int kind, int index) const;
    void mark_delivered(size_t slot, const std::string& what);
    // The loader's view (llama_load_options::sink): each call makes this GPU current and converts CUDA failures.
    struct load_sink final : weight_sink {
        impl* p = nullptr;
        void put_projection(int layer, lora_target t, const nf4_tensor& w) override;
        void put_base(int layer, base_tensor t, const std::vector<float>& v) override;
        void put_bias(int layer, lora_target t, const std::vector<float>& v) override;
    };
    load_sink sink;
    void upload_lora(const lora_weights<float>& w);
    void download_into(lora_weights<float>& w) const; // w's config, layers and buffers set to the device's adapters

    // ---- the step (gpu_step.cpp) ----------------------------------------------------------------------------------------
    const bf16* dequantize(int l, lora_target t);
    int64_t max_weight_elems() const;
    bf16* lora_bf16(lora_target t, bool a) const;
    void cast_layer_lora(int l);
    bf16* xa_buf(int l, lora_target t) const { return act({plan_item_id::act_lora_xa, t}, l); }
    bool dropout_on(bool dropout) const { return dropout && opt.lora.dropout > 0.0f; }
    void linear_forward(int l, lora_target t, const bf16* x, bf16* y, bool accumulate, bool dropout, uint64_t seed);
    void linear_backward(int l, lora_target t, const bf16* dy, const bf16* x, void* dx, bool dx_f32, bool accumulate,
                         bool dropout, uint64_t seed);
    void lora_xa_only(int l, lora_target t, const bf16* x, bool dropout, uint64_t seed);
    void layer_forward(int l, bool dropout, uint64_t seed, bool recompute);
    void layer_backward(int l, bool dropout, uint64_t seed);
    double head(bool backward, int counted);
    int upload_batch(const gpu_batch& b);
    double run(const gpu_batch& b, bool backward, bool dropout, uint64_t seed);

    // ---- paging (cuda_paging.cpp) -------------------------------------------------------------------------------------
    void prefetch_layer(int l);

    // ---- optimizer (gpu_optimizer.cpp) --------------------------------------------------------------------------------
    void setup_optimizer();
    gpu_update_result step(float lr, int grad_accum, float max_grad_norm);
    K::adamw_config kcfg() const;
    template <class D> D* descriptor_table(size_t count);
    void launch_fp32(const std::vector<K::adamw_tensor>& d, float lr, float scale);
    void launch_8bit(const std::vector<K::adamw8_tensor>& d, float lr, float scale, const float* q1, const float* q2);
    void update(float lr, float scale);

    // ---- optimizer state I/O (gpu_optimizer_state.cpp) ----------------------------------------------------------------
    std::vector<std::pair<std::string, tensor>> state_tensors(const cuda_opt_tensor& t) const;
    static size_t state_index(const std::string& suffix);
    void* resident_state(const cuda_opt_tensor& t, size_t idx) const;
    void read_state(const cuda_opt_tensor& t, const std::string& suffix, tensor& dst);
    void write_state(const cuda_opt_tensor& t, const std::string& suffix, const tensor& src);
};

} // namespace qls
