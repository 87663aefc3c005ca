// train_backend — the narrow interface the trainer drives: a micro-batch's forward/backward, the optimizer step, the
// adapters and optimizer state (checkpoints) and telemetry. The CPU reference and the CUDA backend sit behind it.
//
// The trainer's step (trainer.cpp, TRAINING SECTION) is, for every backend:
//   for each of grad_accum micro-batches: loss += forward_backward(batch, dropout seed)   (adapter grads +=)
//   optimizer_step(lr, grad_accum, max_grad_norm)   (grads /= grad_accum, clip, AdamW, grads = 0)
// Backends never plan memory: they receive the run's one memory_plan (memory_plan.h, plan_run) and live inside it.
// Style: ggml's backend interface (reference/anchors-aesthetics.md §2, §7.3): one comment per entry, optional
// entries have a default and say so.
#pragma once

#include "qls/device.h"      // defines: compute_device
#include "qls/llama.h"       // defines: llama_model
#include "qls/lora.h"        // defines: lora_weights, lora_config
#include "qls/memory_plan.h" // defines: memory_plan
#include "qls/optim.h"       // defines: optimizer, optimizer_kind, adamw_hparams
#include "qls/tensor.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qls {

// One micro-batch on the host: B*T int32 each. positions/segments may be nullptr (0..T-1; one segment per row).
struct train_batch {
    const int* tokens = nullptr;
    const int* targets = nullptr; // -1 = no loss
    const int* positions = nullptr;
    const int* segments = nullptr;
};

struct train_update {
    double grad_norm = 0; // of the accumulated gradients divided by grad_accum, before clipping
    bool applied = true;  // false: the norm was NaN/Inf and nothing was updated
};

// Telemetry: what the backend measures (the plan says what it predicted). Counters are cumulative since creation.
struct backend_memory {
    uint64_t used_bytes = 0;       // CUDA: the card in use now (cudaMemGetInfo, every process); CPU: our buffers
    uint64_t peak_bytes = 0;       // the largest used_bytes sampled so far
    uint64_t total_bytes = 0;      // the device's size (0 on the CPU backend)
    uint64_t arena_bytes = 0;      // CUDA: our one planned allocation (0 on the CPU backend)
    uint64_t paging_h2d_bytes = 0; // paged optimizer states, cumulative
    uint64_t paging_d2h_bytes = 0;
    uint64_t resident_pages = 0, total_pages = 0;
    uint64_t offload_h2d_bytes = 0; // offloaded gradient checkpoints, cumulative (CUDA)
    uint64_t offload_d2h_bytes = 0;
};

// What a backend needs besides the model and the plan (the plan fixes B, T, rank, targets, checkpointing, optimizer).
struct train_backend_options {
    adamw_hparams adamw{0.9f, 0.999f, 1e-8f, 0.0f};
    size_t page_pool_bytes = 0; // paged kinds: device pool for states; 0 = what the plan gives
};

class train_backend {
public:
    virtual ~train_backend() = default;

    // "cpu" or "cuda"
    virtual const char* kind() const = 0;
    // For people: "cpu" or "cuda:0 (NVIDIA H200)".
    virtual std::string name() const = 0;

    // Forward and backward of one micro-batch: the adapters' gradients +=; returns the mean loss over its counted
    // targets (0 when none). Dropout on the adapters' inputs uses `dropout_seed` (lora_dropout_keep).
    virtual double forward_backward(const train_batch& b, uint64_t dropout_seed) = 0;
    // Forward only, dropout off, no gradients: the mean loss (evaluation).
    virtual double forward_loss(const train_batch& b) = 0;
    // grads /= grad_accum (the mean over micro-batches, as HF Trainer), clip to max_grad_norm (0: off; torch
    // clip_grad_norm_), AdamW at lr, then grads = 0. A NaN/Inf norm updates nothing (applied = false).
    virtual train_update optimizer_step(float lr, int grad_accum, float max_grad_norm) = 0;
    // grads = 0 without an update: a step abandoned part way (a stop inside accumulation, a NaN loss).
    virtual void discard_gradients() = 0;

    // The adapters' current values on the host (CUDA: copied from the device on each call).
    virtual const lora_weights<float>& adapters() const = 0;
    // Replaces the adapters' values (resume); shapes must equal the run's.
    virtual void set_adapters(const lora_weights<float>& w) = 0;
    // The optimizer's state in qls::optimizer::serialize_state's format, named by peft_tensor_name, so a checkpoint
    // is the same whichever backend wrote it; load_optimizer_state restores it (qls::error{format} naming a tensor).
    virtual std::vector<std::pair<std::string, tensor>> optimizer_state() const = 0;
    virtual void load_optimizer_state(const std::vector<std::pair<std::string, tensor>>& state) = 0;

    virtual backend_memory memory() const = 0;
    // (optional) the CPU reference's host optimizer (tests look at its pager); nullptr on other backends.
    virtual const optimizer* host_optimizer() const { return nullptr; }
};

// The backend for `device` ("cpu", or "cuda" at device.index), set up inside `plan` with the model's frozen weights
// and adapters initialised to `init`. Throws qls::error (device) when the device cannot be used, (out_of_memory) when
// the plan's arena cannot be allocated.
// How the device's backend wants the base model on the host: the CPU reference computes with the f32 projections;
// the CUDA backend uploads the NF4 ones, so their f32 copy is not kept (llama_load_options::keep_f32_projections).
bool backend_keeps_f32_projections(const compute_device& device);
// Sets lo for loading the base model for the device's backend: keep_f32_projections as above, and on the CUDA backend
// each projection NF4-quantized on the GPU as it is read (the CPU quantizer's bytes, about ten times faster for a 7B
// model). The returned holder owns what lo refers to: keep it until the load is done, then drop it to free its memory.
std::shared_ptr<void> prepare_backend_load(const compute_device& device, llama_load_options& lo);
std::unique_ptr<train_backend> make_train_backend(const compute_device& device, const llama_model& model,
                                                  const lora_weights<float>& init, const memory_plan& plan,
                                                  const train_backend_options& opt);

// Two-phase creation, for a load that streams the weights straight into the backend: begin_train_backend sets the
// backend up inside `plan` before any weight is read (the CUDA backend allocates its arena), the load gives each
// frozen tensor to sink() (llama_load_options::sink) and keeps none, then finish() makes the backend. The trainer
// stays backend-agnostic: it only passes sink() to the loader.
class train_backend_builder {
public:
    virtual ~train_backend_builder() = default;
    // Where the loader puts the frozen weights; nullptr: the backend computes with the loaded llama_model (the CPU
    // reference), which the load then fills as usual.
    virtual weight_sink* sink() = 0;
    // The backend, once the load is done. `model`: the loaded model (every weight when sink() was nullptr; config and
    // rotary frequencies only otherwise). Throws qls::error naming a frozen tensor the load never delivered.
    virtual std::unique_ptr<train_backend> finish(const llama_model& model) = 0;
};
// `cfg` is the model's config (model_source::config(), known before the load); plan, opt as make_train_backend; init
// as there, taken by value: moved in, it travels to the backend without a second host copy of the adapters.
std::unique_ptr<train_backend_builder> begin_train_backend(const compute_device& device, const model_config& cfg,
                                                           lora_weights<float> init, const memory_plan& plan,
                                                           const train_backend_options& opt);

// The two implementations (make_train_backend picks one). The CUDA one throws qls::error{device} in a build without it.
std::unique_ptr<train_backend> make_cpu_train_backend(const llama_model& model, const lora_weights<float>& init,
                                                      const memory_plan& plan, const train_backend_options& opt);
std::unique_ptr<train_backend> make_cuda_train_backend(int device_index, const llama_model& model,
                                                       const lora_weights<float>& init, const memory_plan& plan,
                                                       const train_backend_options& opt);
std::unique_ptr<train_backend_builder> begin_cuda_train_backend(int device_index, const model_config& cfg,
                                                                lora_weights<float> init, const memory_plan& plan,
                                                                const train_backend_options& opt);

} // namespace qls
