// gpu_train — the QLoRA training step on the CUDA backend: NF4 base dequantized into cuBLAS GEMMs, LoRA, flash-style
// attention, chunked loss, gradient checkpointing, AdamW (paged or not), all memory carved from one planned arena.
//
// No CUDA types here (DESIGN.md: "no CUDA types in public headers"). In a build without CUDA every entry point throws
// qls::error{device} saying so.
//
// Memory: the trainer never plans. It receives the run's memory_plan (plan_run, run_plan.h), which lists every device
// tensor the step uses; it allocates ONE arena of plan.peak_bytes() and carves each item out of it in table order,
// found by its plan_item_key, so the plan's prediction is the arena by construction and the measured device use adds
// only the CUDA context (plan item cuda.context+cublas).
// Paged optimizer kinds keep their states in the pager (pager.h) over CUDA page memory: device slots from the
// arena's optimizer region, pinned host copies, copies on a separate stream; pages of layer l are prefetched while
// the backward pass works on the layers below it.
// Threads: every entry point makes the trainer's GPU (gpu_train_options::device) current on the calling thread, so a
// trainer may be created on one thread and used on another.
#pragma once

#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/memory_plan.h"
#include "qls/optim.h"
#include "qls/quant.h" // defines: nf4_tensor
#include "qls/tensor.h"
#include "qls/train_backend.h" // defines: train_batch

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qls {

struct gpu_train_options {
    lora_config lora;
    int batch = 1;  // B
    int seq = 2048; // T
    optimizer_kind optimizer = optimizer_kind::paged_adamw_8bit;
    adamw_hparams adamw{0.9f, 0.999f, 1e-8f, 0.0f};
    bool gradient_checkpointing = true;
    size_t page_size = 64 * 1024; // optimizer-state page (paged kinds)
    int device = 0;               // the CUDA device index (`qlora devices`)
};
// lora (rank, targets, dropout on or off), batch, seq, optimizer, gradient_checkpointing and page_size must be those
// the memory plan was made with (qls::error{invalid_argument} otherwise); the budget lives in the plan.

// One micro-batch on the host (train_backend.h): B*T int32 each; positions/segments may be nullptr.
using gpu_batch = train_batch;

struct gpu_update_result {
    double grad_norm = 0; // of the accumulated gradients divided by grad_accum, before clipping
    bool finite = true;   // false: NaN/Inf gradient, nothing was updated
};

struct gpu_memory_stats {
    uint64_t arena_bytes = 0;                          // our one allocation (= plan.peak_bytes())
    uint64_t category_bytes[plan_category_count] = {}; // arena bytes per plan category
    uint64_t device_total_bytes = 0;                   // cudaMemGetInfo total
    uint64_t device_used_bytes = 0;                    // total - free, now (every process on the card)
    uint64_t device_used_peak_bytes = 0;   // the largest device_used_bytes sampled after setup and after each step
    uint64_t device_used_before_bytes = 0; // total - free before this trainer allocated anything (context included)
    uint64_t paging_h2d_bytes = 0;         // cumulative
    uint64_t paging_d2h_bytes = 0;
    uint64_t resident_pages = 0, total_pages = 0, pool_pages = 0;
    uint64_t pinned_host_bytes = 0; // host copies of paged states
    // offloaded checkpoints (memory_plan.h checkpoint_offload), cumulative: copied out in the forward, back in the
    // backward
    uint64_t offload_h2d_bytes = 0, offload_d2h_bytes = 0;
};

class gpu_trainer {
public:
    // A synthetic model of config `cfg`: NF4 + double-quant projections with random codes made on the device, random
    // bf16 embeddings and LM head, unit norms; LoRA A ~ PEFT's kaiming-uniform bound, B = 0. `plan` is the run's
    // (plan_run for cfg and opt's settings on this device). Throws qls::error (device) without a GPU, (out_of_memory)
    // when the plan's verdict is does_not_fit (message: the plan's explanation) or its arena cannot be allocated.
    static std::unique_ptr<gpu_trainer> synthetic(const model_config& cfg, const memory_plan& plan,
                                                  const gpu_train_options& opt, uint64_t seed);
    // A loaded model (its NF4 projections exactly as quantized, read from model.nf4 only: params' projection vectors
    // may be empty, as a loader that keeps no f32 copy of a frozen weight leaves them; a model loaded unquantized is
    // quantized on this GPU by gpu_nf4_quantizer; norms, embeddings and LM head rounded to bf16) and
    // adapters initialised from `init` (which fixes the LoRA config: opt.lora is replaced by init.config), inside
    // `plan` as synthetic.
    static std::unique_ptr<gpu_trainer> from_model(const llama_model& model, const lora_weights<float>& init,
                                                   const memory_plan& plan, const gpu_train_options& opt);
    // The streaming way (the same arena bytes as from_model): the arena of `plan` is allocated before any weight is
    // read; the loader puts each frozen tensor into it through load_sink() (llama_load_options::sink) and keeps no
    // host copy; finish_load then checks that every frozen tensor of the plan arrived (qls::error{invalid_argument}
    // naming the first missing one) and uploads the adapters `init` (whose config must be `lora`).
    static std::unique_ptr<gpu_trainer> for_streaming(const model_config& cfg, const lora_config& lora,
                                                      const memory_plan& plan, const gpu_train_options& opt);
    weight_sink& load_sink();
    void finish_load(const lora_weights<float>& init);
    ~gpu_trainer();
    gpu_trainer(const gpu_trainer&) = delete;
    gpu_trainer& operator=(const gpu_trainer&) = delete;

    // Forward and backward of one micro-batch: LoRA gradients +=; returns the mean loss over its counted targets
    // (0 when none). dropout: the adapters' dropout with this step's seed (lora_dropout_keep), as the CPU pass.
    double forward_backward(const gpu_batch& batch, bool dropout, uint64_t dropout_seed);
    // Forward only (no gradients, no dropout): the mean loss, for evaluation.
    double forward_loss(const gpu_batch& batch);
    // AdamW over the accumulated gradients divided by grad_accum, clipped to max_grad_norm (0: no clipping), then
    // zeroes the gradients. A NaN/Inf gradient norm skips the update (finite = false).
    gpu_update_result optimizer_step(float lr, int grad_accum, float max_grad_norm);
    // Zeroes the accumulated gradients without an update (an abandoned step).
    void zero_grad();

    // Device → host copies of the adapters (same config and shapes as `init` / the synthetic LoRA), with their
    // gradients accumulated since the last optimizer_step in da, db.
    lora_weights<float> download_lora() const;
    // The same into w, reusing its buffers (no second host copy of the adapters while they are read back).
    void download_lora_into(lora_weights<float>& w) const;
    // Host → device copy of the adapters (resume); shapes must match.
    void upload_lora(const lora_weights<float>& w);
    // The optimizer's state in qls::optimizer::serialize_state's format ("optimizer.step", the 8-bit qmaps,
    // "<param>.exp_avg"/"<param>.exp_avg_sq" or "<param>.state1/.state2/.absmax1/.absmax2"), where
    // param_name(layer, target, is_b) names each LoRA tensor, so a checkpoint is the same whichever backend wrote it.
    // load_optimizer_state restores exactly that (qls::error{format} naming a missing or misshapen tensor).
    using param_namer = std::string (*)(int layer, lora_target t, bool is_b);
    std::vector<std::pair<std::string, tensor>> serialize_optimizer_state(param_namer name) const;
    void load_optimizer_state(const std::vector<std::pair<std::string, tensor>>& state, param_namer name);
    gpu_memory_stats memory() const;
    const memory_plan& plan() const;
    const model_config& config() const;
    std::string device_name() const;
    // Milliseconds of the last forward_backward + optimizer_step pair on the device (CUDA events).
    double last_step_ms() const;
    // Profiling: when on, the stream is synchronized after each phase and the wall time is added to that phase's
    // total ("attention.fwd", "gemm.base.fwd", ...), in milliseconds since profiling was turned on. Slows steps down.
    void set_profiling(bool on);
    std::vector<std::pair<std::string, double>> profile() const;

private:
    gpu_trainer();
    struct impl;
    std::unique_ptr<impl> p_;
};

// ---- NF4 quantization on the GPU ------------------------------------------------------------------------------------

// Quantizes weights on GPU `device` to NF4 (+ double quantization), byte-identical to the CPU's nf4_quantize (quant.h):
// the codes and block absmax are made by a kernel (qls_kernels/nf4_quantize.h, correctly rounded reciprocal and
// products), the absmax mean (the nested offset) on the host in nf4_quantize's order (a double sum, rounded once,
// times fl(1/nblocks)), and the nested 8-bit codes by a second kernel. One scratch buffer, grown to the largest
// weight seen, is reused. Throws qls::error (invalid_argument) for a bad shape or blocksize, as nf4_quantize does,
// and (device) without a GPU or CUDA build.
// The loader takes it through llama_load_options::nf4_quantizer (llama.h), so each projection is quantized on the GPU
// as it is read.
class gpu_nf4_quantizer {
public:
    explicit gpu_nf4_quantizer(int device = 0);
    ~gpu_nf4_quantizer();
    gpu_nf4_quantizer(const gpu_nf4_quantizer&) = delete;
    gpu_nf4_quantizer& operator=(const gpu_nf4_quantizer&) = delete;
    // w: [rows, cols] row-major on the host, fp32 or bf16 bits.
    nf4_tensor quantize(const float* w, int64_t rows, int64_t cols, bool double_quant, int blocksize = 64);
    nf4_tensor quantize_bf16(const uint16_t* w, int64_t rows, int64_t cols, bool double_quant, int blocksize = 64);

private:
    struct impl;
    std::unique_ptr<impl> p_;
};

// Points lo.nf4_quantizer at q, which must outlive the load: each projection is quantized on q's GPU as it is read.
inline void quantize_on(gpu_nf4_quantizer& q, llama_load_options& lo) {
    lo.nf4_quantizer = [&q](const float* w, int64_t rows, int64_t cols, bool dq) {
        return q.quantize(w, rows, cols, dq);
    };
    lo.nf4_quantizer_bf16 = [&q](const uint16_t* w, int64_t rows, int64_t cols, bool dq) {
        return q.quantize_bf16(w, rows, cols, dq);
    };
}

// ---- single-stream generation on the GPU ------------------------------------------------------------------------------

class decoder; // generate.h

// A CUDA decoder (qls::decoder, generate.h) over `model`: the seven projections as NF4 with double quantization, read
// from model.nf4 (never from params' projection vectors, which may be empty), or — for a model loaded unquantized —
// quantized on the GPU from those vectors (gpu_nf4_quantizer: the same bytes the CPU loader would make); the
// embedding and a separate LM head as bf16, norms and rotary frequencies fp32; the adapter (optional) kept apart in
// fp32 and applied as x·Aᵀ·Bᵀ·scale beside each NF4 GEMV (never merged into the quantized weights). Each step is one
// CUDA graph: fused NF4 GEMVs (qls_kernels/decode.h), fp32 activations, fp32 KV cache sized by reset(). Throws
// qls::error (unsupported) for an NF4 weight without double quantization or a non-LLaMA layer, (out_of_memory) when
// the weights or cache do not fit, (device) without a GPU or CUDA build.
std::unique_ptr<decoder> make_cuda_decoder(const llama_model& model, const lora_weights<float>* adapter, int device);
// The same decoder over a synthetic model of config `cfg` made on the device (random NF4 codes with block maxima
// in [0.02, 0.04], random bf16 embeddings and head, unit norms) with rank-`rank` adapters (0: none) on `targets`,
// for `qlora bench --generate`; nothing of the model is on the host.
std::unique_ptr<decoder> make_cuda_decoder_synthetic(const model_config& cfg, int rank,
                                                     const std::vector<lora_target>& targets, uint64_t seed,
                                                     int device);
// Device bytes the decoder holds: its weights (incl. adapters) and its KV cache (by the last reset).
struct cuda_decoder_memory {
    uint64_t weight_bytes = 0, cache_bytes = 0;
};
cuda_decoder_memory cuda_decoder_memory_of(const decoder& d);

} // namespace qls
