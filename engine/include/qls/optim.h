// AdamW as bitsandbytes implements it (32-bit and 8-bit blockwise states), global-norm gradient clipping, and the optimizer that owns paged or unpaged states.
#pragma once

// The update, per element, with t = step (1-based) — bitsandbytes csrc/kernels.cu (csrc/cuda/optimizers.cu in
// newer trees) `kOptimizer32bit2State` (ADAM) and `kOptimizerStatic8bit2StateBlockwise`; /work/shared/reference/
// anchors-qlora.md §1.2:
//   g  = gnorm_scale · g
//   m  = β1·m + (1−β1)·g
//   v  = β2·v + (1−β2)·g²
//   step_size = −lr·sqrt(1−β2^t) / (1−β1^t)
//   p  = p + step_size · m / (sqrt(v) + eps·sqrt(1−β2^t))
//   p  = p · (1 − lr·wd)          (decoupled weight decay, applied after the Adam step, only when wd > 0)
//
// 8-bit blockwise states (bitsandbytes/optim/optimizer.py `Optimizer2State`, blocksize 256; anchors §1.3): m and
// v are uint8 codes into the signed / unsigned dynamic maps (qls::dynamic_map), one fp32 absmax per 256-element
// block per state. Per block: dequantize (code[c]·absmax) → update in fp32 → new absmax = max |state| over the
// block → requantize state/absmax to the nearest code (bnb's `quantize_2D` search) → for m, if the code's sign
// differs from m's, step the code one towards m's sign. A non-finite gradient element sets that element's m and
// v to 0 and leaves its parameter alone. Tensors with fewer than min_8bit_size (4096) elements keep fp32 states,
// as bnb's `min_8bit_size`.
//
// Rounding: the kernels reproduce the CUDA kernels' operation order and the fused multiply-adds nvcc forms, so the
// states (m, v; 8-bit codes and absmax) are bit-identical to bnb 0.50.2's. bnb compiles with --use_fast_math, and
// the parameter update goes through approximate device instructions (__powf in the bias correction, sqrt.approx,
// approximate division) that have no bit-exact CPU equivalent: parameters agree with bnb to one rounding plus
// ~3e-5 of the Adam step (tests/tst_optim.cpp; details in engine/src/optim/adamw.cpp).

#include "qls/pager.h"
#include "qls/tensor.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qls {

// bitsandbytes AdamW / PagedAdamW / AdamW8bit / PagedAdamW8bit defaults (bitsandbytes/optim/adamw.py).
struct adamw_hparams {
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 1e-2f;
};

inline constexpr size_t adamw_8bit_block = 256;     // elements per absmax block (bnb blocksize = 256)
inline constexpr size_t adamw_min_8bit_size = 4096; // bnb min_8bit_size

// ---- reference kernels (one tensor, or one page-aligned chunk of it) ----------------------------------------
// 32-bit states. p, g, m, v: [n]. step >= 1.
void adamw_update_32bit(float* p, const float* g, float* m, float* v, size_t n, int64_t step, float lr,
                        const adamw_hparams& h, float gnorm_scale = 1.0f);

// 8-bit blockwise states. p, g, state1 (m codes), state2 (v codes): [n]; absmax1, absmax2: [ceil(n / 256)]; the
// chunk starts on a block boundary. qmap1 = dynamic_map(true) (signed, for m), qmap2 = dynamic_map(false).
void adamw_update_8bit_blockwise(float* p, const float* g, uint8_t* state1, uint8_t* state2, float* absmax1,
                                 float* absmax2, size_t n, int64_t step, float lr, const adamw_hparams& h,
                                 const std::array<float, 256>& qmap1, const std::array<float, 256>& qmap2,
                                 float gnorm_scale = 1.0f);

// ---- gradient clipping ------------------------------------------------------------------------------------
// Global-norm clipping with torch.nn.utils.clip_grad_norm_ semantics
// (https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html, norm_type = 2): the total norm
// is the 2-norm of all gradients together (accumulated here in double); every gradient is multiplied by
// min(1, max_norm / (total_norm + 1e-6)). Nothing is touched when that factor is 1. Returns the total norm before
// clipping. grads[i] points at sizes[i] floats. Throws qls::error{invalid_argument} when the spans differ in
// length or max_norm is not a positive finite number.
float clip_grad_norm(std::span<float* const> grads, std::span<const size_t> sizes, float max_norm);

// ---- the optimizer ----------------------------------------------------------------------------------------
enum class optimizer_kind {
    adamw_32bit,       // bnb AdamW (optim_bits=32): fp32 m, v in plain memory
    adamw_8bit,        // bnb AdamW8bit: 8-bit blockwise m, v in plain memory
    paged_adamw_32bit, // bnb PagedAdamW32bit: fp32 m, v in the pager
    paged_adamw_8bit,  // bnb PagedAdamW8bit: codes and absmax in the pager
};
const char* optimizer_kind_name(optimizer_kind k); // "adamw_32bit", "paged_adamw_8bit", ...
bool optimizer_kind_is_paged(optimizer_kind k);
bool optimizer_kind_is_8bit(optimizer_kind k);
// The CLI spelling of an optimizer kind: "paged-adamw-8bit", "paged-adamw-32bit", "adamw-8bit", "adamw-32bit".
const char* optimizer_kind_flag(optimizer_kind k);
// Accepts the CLI spelling or optimizer_kind_name's ("paged_adamw_8bit"); throws qls::error naming the valid values.
optimizer_kind parse_optimizer_kind(std::string_view name);

// One trainable parameter: data and grad point at numel floats that the caller owns and keeps alive.
struct optim_param {
    std::string name;
    float* data = nullptr;
    const float* grad = nullptr;
    size_t numel = 0;
};

struct optimizer_config {
    optimizer_kind kind = optimizer_kind::paged_adamw_8bit;
    adamw_hparams hparams;
    size_t min_8bit_size = adamw_min_8bit_size;
    // Paged kinds only. page_size must be a multiple of 1024 bytes, so that a page of fp32 state holds whole
    // 256-element blocks and a page of absmax covers whole pages of codes (the update runs page by page).
    pager_config paging;
};

enum class state_format { fp32, blockwise_8bit };

class optimizer {
public:
    // Registers the parameters (names unique and non-empty, numel > 0) and zero-initialised states (bnb: zeros
    // for m, v; zero codes and absmax for 8-bit). `memory` backs the pager of the paged kinds (default: the CPU
    // simulation). Throws qls::error{invalid_argument} for a bad parameter list or page size, and — paged kinds —
    // when the device budget is smaller than the largest single update's working set (message: the budget, the
    // parameter and the minimum needed).
    optimizer(std::vector<optim_param> params, optimizer_config config, std::unique_ptr<page_memory> memory = nullptr);
    ~optimizer();
    optimizer(const optimizer&) = delete;
    optimizer& operator=(const optimizer&) = delete;

    // One AdamW step over every parameter in registration order: step count += 1, then for each parameter
    // (paged kinds: acquire its state pages first) update p from its grad. gnorm_scale multiplies every gradient
    // element (bnb's gnorm_scale).
    void step(float lr, float gnorm_scale = 1.0f);

    int64_t step_count() const { return step_; }
    const optimizer_config& config() const { return config_; }
    size_t param_count() const { return params_.size(); }
    const optim_param& param(size_t i) const { return params_.at(i); }
    state_format format(size_t i) const;
    // Bytes of optimizer state (codes + absmax, or m + v), not counting page padding.
    size_t state_bytes() const;
    // The pager of a paged kind (nullptr for unpaged kinds).
    const pager* state_pager() const { return pager_.get(); }
    // The quantization maps of the 8-bit kinds: dynamic_map(true) for m, dynamic_map(false) for v.
    const std::array<float, 256>& qmap1() const { return qmap1_; }
    const std::array<float, 256>& qmap2() const { return qmap2_; }

    // Checkpoint state as named tensors:
    //   "optimizer.step"                    I64 [1]
    //   "optimizer.qmap1", "optimizer.qmap2" F32 [256]          (8-bit kinds)
    //   fp32 state:   "<param>.exp_avg", "<param>.exp_avg_sq"    F32 [numel]
    //   8-bit state:  "<param>.state1", "<param>.state2"         U8 [numel]
    //                 "<param>.absmax1", "<param>.absmax2"       F32 [ceil(numel / 256)]
    // Paged and unpaged kinds of the same bit width write the same tensors, so either loads the other's state.
    std::vector<std::pair<std::string, tensor>> serialize_state() const;
    // Restores exactly what serialize_state() wrote (extra tensors are ignored). Throws qls::error{format} naming
    // the tensor when one is missing or has the wrong dtype or shape, or when the qmaps differ from ours.
    void load_state(const std::vector<std::pair<std::string, tensor>>& state);

private:
    struct slot;
    void update_plain(slot& s, float lr, float gnorm_scale);
    void update_paged(slot& s, float lr, float gnorm_scale);

    optimizer_config config_;
    std::vector<optim_param> params_;
    std::vector<slot> slots_;
    std::unique_ptr<pager> pager_;
    std::array<float, 256> qmap1_{};
    std::array<float, 256> qmap2_{};
    int64_t step_ = 0;
};

} // namespace qls
