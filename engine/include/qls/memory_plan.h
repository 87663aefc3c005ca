// memory_plan — one table of every tensor a QLoRA training step allocates on the device, summed into the predicted peak.
//
// The same table has three uses (reference/anchors-aesthetics.md §7.4, llm.c's TensorSpec table):
//   1. the CUDA backend allocates one arena per placement from it and carves views out of it, in table order;
//   2. the UI and `qlora plan` draw it before a run starts (per category, with the verdict and suggestions);
//   3. the tests check it against bitsandbytes' storage and, on a GPU, against the measured peak.
// The plan is static, like llm.c's: every item is a distinct allocation that lives for the whole run (no aliasing
// between phases), so the sum of the items IS the arena the backend allocates and therefore the predicted peak.
//
// Dimension legend: B batch, T sequence, N = B*T tokens, C hidden, H MLP hidden, NH query heads, NKV key/value heads,
// HS head size, Q = NH*HS, KV = NKV*HS, V vocabulary, L layers, r LoRA rank.
#pragma once

#include "qls/lora.h" // defines: lora_config, lora_target, lora_in_out, parse_lora_targets
#include "qls/model_config.h"
#include "qls/optim.h" // defines: optimizer_kind, optimizer_kind_flag, adamw_8bit_block
#include "qls/pager.h" // defines: pager_config (the page size of paged optimizer states)

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qls {

// ---- host memory -------------------------------------------------------------------------------------------------

// The machine's RAM as /proc/meminfo states it (MemTotal, MemAvailable); 0 = unknown (no host check).
struct host_memory {
    uint64_t total_bytes = 0;
    uint64_t available_bytes = 0;
};
// Reads MemTotal and MemAvailable (kB) from `meminfo` (tests pass their own file); {0, 0} when it cannot be read.
host_memory read_host_memory(const std::string& meminfo = "/proc/meminfo");

// This process's host memory as /proc/self/status states it (proc(5)): VmRSS (resident now), VmHWM (the resident
// peak so far) and RssAnon (anonymous resident now, i.e. not file pages); 0 for a field that cannot be read. The run
// log sets them beside the plan's host peak, so every run checks the plan.
struct process_memory {
    uint64_t resident_bytes = 0;
    uint64_t peak_resident_bytes = 0;
    uint64_t anonymous_bytes = 0;
};
process_memory read_process_memory(const std::string& status = "/proc/self/status");

// Whether each layer's gradient checkpoint lives in pinned host memory instead of the device (gradient checkpointing
// only): auto = only when the plan does not fit the limit otherwise (after optimizer paging); on = always; off = never.
// Offloaded, the device keeps a ring of checkpoint_ring_slots checkpoints: the forward copies each layer's input to
// the host on a copy stream while the next layers compute, and the backward brings each back one layer ahead.
enum class checkpoint_offload : uint8_t { auto_select, off, on };
const char* checkpoint_offload_name(checkpoint_offload o); // "auto", "off", "on"
// The inverse; throws qls::error naming "checkpoint_offload" and the three values.
checkpoint_offload parse_checkpoint_offload(const std::string& name);
constexpr int checkpoint_ring_slots = 3;

struct plan_settings {
    lora_config lora; // rank, alpha, dropout, targets (alpha does not change memory)
    int batch = 1;    // B
    int seq = 2048;   // T
    optimizer_kind optimizer = optimizer_kind::paged_adamw_8bit;
    bool gradient_checkpointing = true;
    uint64_t budget_bytes = 0; // device bytes our arena may use; 0 = no budget of your own (run_plan.h)
    uint64_t card_bytes = 0;   // total memory of the card (cudaMemGetInfo total); 0 = unknown
    uint64_t free_bytes = 0;   // free device memory when planned; with no budget the limit is 95% of it
    size_t page_size = pager_config{}.page_size; // bytes per optimizer-state page (paged kinds)
    // Host side: which backend computes ("cuda": the weights stream into the arena one tensor at a time; "cpu": the
    // whole model in f32 plus the pass's activations), whether the base is quantized to NF4, and the machine's RAM
    // (0 = unknown: the host need is stated but not checked).
    std::string backend = "cuda";
    bool quantize_nf4 = true;
    host_memory host;
    checkpoint_offload offload = checkpoint_offload::auto_select;
};

// Throws qls::error (invalid_argument) whose message starts with the field ("rank: ", "seq: ", "batch: ",
// "dropout: ", "targets: ", "optimizer: ") and whose hint names the valid values.
void validate_plan_settings(const plan_settings& s);

// ---- the table --------------------------------------------------------------------------------------------------

enum class plan_category : uint8_t {
    quantized_weights,  // NF4 packed + double-quantized absmax + nested absmax + maps, every decoder linear
    frozen_weights,     // bf16 embeddings and LM head, fp32 RMSNorm weights
    lora_weights,       // fp32 A, B
    lora_grads,         // fp32 dA, dB
    optimizer_resident, // AdamW states of the unpaged kinds, and the 8-bit qmaps
    optimizer_paged,    // paged kinds: every state tensor (in whole pages), or the device page pool when paging
    activations,        // checkpoints, saved activations and the backward's activation gradients
    logits_loss,        // tokens, targets, final norm, one chunk of fp32 logits, per-token losses
    workspace,          // dequantized weight double buffer, cuBLAS workspace, rope tables
    cuda_context,       // driver + cuBLAS module memory: not in the budget, but on the card
};
constexpr int plan_category_count = 10;
const char* plan_category_name(plan_category c);  // machine name: "quantized_weights", ...
const char* plan_category_label(plan_category c); // for people: "quantized weights (NF4+DQ)", ...

enum class plan_placement : uint8_t {
    device,         // our device arena: counted in the budget
    host,           // pinned host memory (paged optimizer states evicted because the budget is short)
    outside_budget, // device memory the driver takes (CUDA context): counts against the card, not the budget
};
const char* plan_placement_name(plan_placement p);

// What an item is, for code: the CUDA arena finds each tensor by its key (an array index), never by its name.
// Items the table builds once per linear (NF4 storage) or per adapter (LoRA tensors, their optimizer states, xa)
// carry the target in the key, and LoRA tensor items whether they belong to A (r, in) or B (out, r).
enum class plan_item_id : uint8_t {
    // quantized weights, per linear (key.target): model.layers.*.<module>.weight[.absmax|.nested_absmax|.maps]
    nf4_codes,
    nf4_absmax,
    nf4_nested_absmax,
    nf4_maps,
    // frozen weights
    embed_tokens,
    lm_head,
    attn_norm_weight,
    mlp_norm_weight,
    final_norm_weight,
    // per LoRA tensor (key.target, key.lora_b): the fp32 master, its gradient, its AdamW states (32-bit: exp_avg,
    // exp_avg_sq; 8-bit: state1, state2 codes and absmax1, absmax2)
    lora_weight,
    lora_grad,
    adam_exp_avg,
    adam_exp_avg_sq,
    adam_state1,
    adam_state2,
    adam_absmax1,
    adam_absmax2,
    // optimizer, one each: the unused tails of the paged states' last pages, the 8-bit qmaps, the device page pool
    adam_page_padding,
    adam_qmaps,
    adam_page_pool,
    // activations: act.layers.*.<x> (count L) or act.recompute.<x> (count 1, checkpointing); lora_xa per target
    act_checkpoint,
    act_residual_in,
    act_attn_norm_rstd,
    act_attn_norm_out,
    act_q,
    act_k,
    act_v,
    act_attn_lse,
    act_attn_out,
    act_residual_mid,
    act_mlp_norm_rstd,
    act_mlp_norm_out,
    act_mlp_gate,
    act_mlp_up,
    act_mlp_hidden,
    act_lora_xa,
    act_final_residual,
    // the backward's activation gradients (grad.*)
    grad_residual,
    grad_residual_bf16,
    grad_norm_out,
    grad_attn_out,
    grad_q,
    grad_k,
    grad_v,
    grad_attn_delta,
    grad_mlp_hidden,
    grad_mlp_up,
    grad_lora_xa,
    // logits and loss (loss.*)
    loss_tokens,
    loss_targets,
    loss_final_norm_out,
    loss_final_norm_rstd,
    loss_positions,
    loss_segments,
    loss_logits_chunk,
    loss_losses,
    loss_grad_final_norm_out,
    // workspace (workspace.*)
    ws_dequantized_weight,
    ws_cublas,
    ws_rope_inv_freq,
    ws_lora_bf16,
    ws_reductions,
    ws_lora_dropout_input,
    // the newer families' layers, present only when the model has them (architecture.h): frozen biases of the biased
    // linears (key.target) and the q/k and post norms; the q/k norms' inputs and 1/rms; the attention and MLP outputs
    // before their post norms and those norms' 1/rms; one (B,T,C) scratch for a post norm's output or input gradient;
    // the sliding layers' own RoPE frequencies
    proj_bias,
    q_norm_weight,
    k_norm_weight,
    post_attn_norm_weight,
    post_mlp_norm_weight,
    act_q_raw,
    act_k_raw,
    act_q_norm_rstd,
    act_k_norm_rstd,
    act_attn_proj_out,
    act_attn_post_rstd,
    act_mlp_proj_out,
    act_mlp_post_rstd,
    ws_post_norm,
    ws_rope_inv_freq_local,
    // offloaded gradient checkpoints: one per layer in pinned host memory (act_checkpoint is then the device ring)
    act_checkpoint_host,
    // outside the budget
    cuda_context,
};
constexpr int plan_item_id_count = int(plan_item_id::cuda_context) + 1;

struct plan_item_key {
    plan_item_id id = plan_item_id::cuda_context;
    lora_target target = lora_target::q; // per-linear and per-adapter items; q for the others
    bool lora_b = false;                 // LoRA tensor items: B; false: A (and every other item)

    // Dense index in [0, plan_item_key_count): arrays indexed by key.
    constexpr size_t index() const {
        return (size_t(id) * size_t(k_lora_target_count) + size_t(target)) * 2 + size_t(lora_b);
    }
    friend constexpr bool operator==(const plan_item_key&, const plan_item_key&) = default;
};
constexpr size_t plan_item_key_count = size_t(plan_item_id_count) * size_t(k_lora_target_count) * 2;

struct plan_item {
    plan_item_key key; // what it is, for code (the arena's lookup)
    std::string name;  // HF/PEFT-style tensor name; "*" stands for the layer index when count == L
    plan_category category;
    std::string dtype;          // "u8", "bf16", "f32", "i32" (packed NF4 is "u8" [(n+1)/2, 1], as bnb stores it)
    std::vector<int64_t> shape; // elements of ONE tensor
    uint64_t bytes_each = 0;    // bytes of one tensor
    int64_t count = 1;          // how many such tensors (e.g. L, one per layer)
    uint64_t bytes = 0;         // bytes_each * count
    plan_placement placement = plan_placement::device;
    bool pageable = false; // an optimizer state the pager may move to host
    std::string formula;   // how bytes_each follows from the shape, with the source
};

// One category of host memory a run needs at its peak (the model loads while nothing else of the run is allocated,
// but its staging buffers are counted on top: the loader's transient f32 and the result coexist).
struct host_item {
    std::string name;  // machine name: "pinned_pool", "load_staging", "cpu_model", "cpu_activations", ...
    std::string label; // for people
    uint64_t bytes = 0;
    std::string formula; // how it follows from the model and settings
};

// The host side of a run: every category, their sum, and the check against the machine's RAM.
struct host_plan {
    std::vector<host_item> items;
    uint64_t peak_bytes = 0;              // sum of the items
    host_memory machine;                  // from the settings (0: unknown)
    bool checked = false;                 // machine.total_bytes known
    bool fits = true;                     // peak_bytes <= MemAvailable (when checked)
    std::string explanation;              // one sentence with the numbers
    std::vector<std::string> suggestions; // what to change, when it does not fit
};

enum class plan_verdict : uint8_t { fits, fits_with_paging, does_not_fit };
const char* plan_verdict_name(plan_verdict v); // "fits", "fits_with_paging", "does_not_fit"

// One computed alternative when the plan does not fit: the settings that were tried and what they would need.
struct plan_suggestion {
    std::string text; // "sequence 1024 would fit (--seq 1024): predicted 21.3 GiB"
    plan_settings settings;
    uint64_t peak_bytes = 0;
    plan_verdict verdict = plan_verdict::fits;
};

struct memory_plan {
    model_config config;
    plan_settings settings;
    int loss_chunk_tokens = 0;   // rows of fp32 logits materialised at once by the chunked cross-entropy
    int64_t lora_parameters = 0; // trainable parameters
    std::vector<plan_item> items;

    // Device bytes of a category: items placed on the device (or outside the budget, for cuda_context).
    // Host-placed items are excluded; see host_bytes().
    uint64_t category_bytes(plan_category c) const;
    // Predicted peak of our device arena: every device-placed item (the budget is checked against this).
    uint64_t peak_bytes() const;
    // Pinned host bytes (paged optimizer states evicted to the host, offloaded checkpoints).
    uint64_t host_bytes() const;
    // Pinned host bytes of the offloaded checkpoints (0 when they stay on the device).
    uint64_t offloaded_checkpoint_bytes() const;
    bool checkpoints_offloaded() const { return offloaded_checkpoint_bytes() > 0; }
    // Device memory outside the budget (CUDA context and cuBLAS modules).
    uint64_t context_bytes() const;
    // What the card must hold: peak_bytes() + context_bytes().
    uint64_t card_bytes_needed() const { return peak_bytes() + context_bytes(); }

    uint64_t all_resident_bytes = 0; // the peak if every optimizer state stayed on the device
    uint64_t minimum_bytes = 0;      // the smallest peak this configuration can run in (paged states on host)
    uint64_t limit_bytes = 0;        // min(budget or 95% of free, card - context) over those given; 0 = no limit

    plan_verdict verdict = plan_verdict::fits;
    std::string explanation;                  // one sentence: fits or not, why, which categories dominate
    std::vector<plan_suggestion> suggestions; // computed, only when the device does not fit
    // Host memory beside the device: when host.fits is false the verdict is does_not_fit and the explanation is the
    // host's (device suggestions cannot help there; host.suggestions say what to change).
    host_plan host;
};

// Builds the table for a model and settings; validates the settings first (qls::error on bad values).
memory_plan make_memory_plan(const model_config& cfg, const plan_settings& s);

// The real dimensions of the named model shapes (config.json of the public checkpoints):
// "7b", "13b", "70b" = Llama-2 7B/13B/70B; "33b", "65b" = LLaMA-1 33B (often called 30B) and 65B; "llama3.1-8b",
// "qwen2.5-7b", "qwen3-8b", "mistral-nemo-12b", "gemma3-12b" = those models' published config.json.
// Throws qls::error naming the valid names.
model_config shape_config(std::string_view name);
std::vector<std::string> shape_names();

// One JSON object: model, settings, every item, category totals, peak, verdict, suggestions (machine-readable).
std::string memory_plan_json(const memory_plan& p, int indent = 2);

// Byte helpers for reports: 1 GiB = 2^30 bytes.
inline double to_gib(uint64_t bytes) { return double(bytes) / double(1ull << 30); }
inline double to_mib(uint64_t bytes) { return double(bytes) / double(1ull << 20); }
inline uint64_t gib_to_bytes(double gib) { return uint64_t(gib * double(1ull << 30) + 0.5); }

} // namespace qls
