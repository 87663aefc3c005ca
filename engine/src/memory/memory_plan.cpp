// memory_plan — builds the one table of device tensors for a QLoRA step, sums it, and judges it against a budget.
//
// What this file is: the arithmetic of what OUR engine allocates (bf16 storage, fp32 accumulation, NF4+DQ frozen
// linears dequantized per GEMM, flash-style attention, chunked cross-entropy, LoRA in fp32, bitsandbytes-compatible
// optimizer states), tensor by tensor. What it is not: a model of PyTorch's caching allocator or of HF+PEFT.
// Every item carries its formula; every constant below names its source.
//
// Dimension legend (as in llama.h): B batch, T sequence, N = B*T, C hidden, H MLP hidden, NH query heads,
// NKV key/value heads, HS head size, Q = NH*HS, KV = NKV*HS, V vocabulary, L layers, r LoRA rank.
#include "qls/memory_plan.h"

#include "qls/architecture.h"

#include "qls/error.h" // defines: qls::error, QLS_ASSERT
#include "qls/llama.h" // defines: projection_has_bias
#include "qls/quant.h" // defines: nf4_storage_bytes

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>

namespace qls {

namespace {

// ---- constants, each with its source -------------------------------------------------------------------------------

// NF4 weight blocks of 64 consecutive elements of the row-major (out, in) weight, one absmax per block; double
// quantization stores that absmax as a uint8 code of the signed dynamic map, in blocks of 256 codes with one fp32
// absmax each, after subtracting the fp32 mean (the "offset").
// bitsandbytes functional.py quantize_4bit (blocksize=64, compress_statistics → quantize_blockwise(absmax - offset,
// blocksize=256)); anchors-qlora.md §2.2.
constexpr int64_t nf4_block = 64;
constexpr int64_t nf4_nested_block = 256;
constexpr int64_t nf4_quant_map_entries = 16;   // QuantState.code: the 16 NF4 values, fp32
constexpr int64_t nf4_nested_map_entries = 256; // state2.code: the signed 8-bit dynamic map, fp32
constexpr int64_t nf4_offset_entries = 1;       // state2 offset = absmax.mean(), fp32 scalar

// 8-bit blockwise optimizer states: uint8 code per element per state, one fp32 absmax per 256 elements per state;
// tensors with fewer than min_8bit_size = 4096 elements keep fp32 states (qls::optimizer, optim.h, which follows
// bitsandbytes optim/optimizer.py: blocksize 256, min_8bit_size 4096; anchors-qlora.md §1.3).
constexpr int64_t adam8_block = int64_t(adamw_8bit_block);
constexpr int64_t adam8_min_size = int64_t(adamw_min_8bit_size);
constexpr int64_t adam8_qmap_entries = 256; // qmap1 (signed) and qmap2 (unsigned) dynamic maps, fp32 each

// cuBLAS workspace: the cuBLAS docs recommend 32 MiB on Hopper, 4 MiB elsewhere
// (https://docs.nvidia.com/cuda/cublas/index.html#cublassetworkspace; PyTorch adopted it in PR #120925); we size for
// the largest so one plan serves every card.
constexpr uint64_t cublas_workspace_bytes = 32ull << 20;

// Device memory the driver takes that no allocator can use: measured on an NVIDIA H100 80GB HBM3, driver 580.159,
// CUDA 13 (lazy module loading, the default): cudaFree(0) leaves 527 MiB used of an idle card; cublasCreate adds
// 68 MiB (a first bf16 GEMM adds nothing more). 527 + 68 = 595 MiB. With CUDA_MODULE_LOADING=EAGER the same
// program uses 1,023 MiB. (cudaMemGetInfo before/after; torch reports 621 MiB for its own context.)
constexpr uint64_t cuda_context_bytes = 595ull << 20;

// The chunked cross-entropy materialises fp32 logits for at most this many bytes at once: rows = the largest
// multiple of 128 with rows*V*4 <= 128 MiB, clamped to [128, 4096] and to N. V = 32000 → 1024 rows (125 MiB);
// V = 128256 (Llama 3) → 256 rows. Never the full (B,T,V): at 7B, seq 2048 that alone would be 250 MiB, at 16k 2 GiB.
constexpr uint64_t loss_chunk_cap_bytes = 128ull << 20;
constexpr int64_t loss_chunk_align = 128, loss_chunk_min = 128, loss_chunk_max = 4096;

constexpr uint64_t gib = 1ull << 30;
// With no budget of one's own, a run may take this share of the device's free memory (run_plan.h).
constexpr double free_fraction = 0.95;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
uint64_t round_up(uint64_t a, uint64_t m) { return (a + m - 1) / m * m; }

uint64_t dtype_bytes(const std::string& dt) {
    if (dt == "u8") return 1;
    if (dt == "bf16") return 2;
    if (dt == "f32" || dt == "i32") return 4;
    QLS_ASSERT(false && "unknown plan dtype");
    return 0;
}

std::string fmt_gib(uint64_t b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f GiB", to_gib(b));
    return buf;
}
std::string fmt_pct(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f%%", x * 100.0);
    return buf;
}

// The (out, in) shape of each linear of a decoder block, as Hugging Face stores the weight (architecture.h).
struct linear_shape {
    int64_t out, in;
};
linear_shape linear_dims(const model_config& c, lora_target t) {
    const auto [out, in] = architecture_for(c).projection_shape(c, t);
    return {out, in};
}

// "self_attn.q_proj", ..., "mlp.down_proj": the module path within a layer (the activations' display names).
std::string target_module(const model_config& c, lora_target t) { return architecture_for(c).hf_projection[size_t(t)]; }

// ---- the table builder -----------------------------------------------------------------------------------------

struct table {
    std::vector<plan_item> items;

    plan_item& add(plan_item_key key, std::string name, plan_category cat, std::string dt, std::vector<int64_t> shape,
                   int64_t count, std::string formula) {
        plan_item it;
        it.key = key;
        it.name = std::move(name);
        it.category = cat;
        it.dtype = std::move(dt);
        it.shape = std::move(shape);
        uint64_t elems = 1;
        for (int64_t d : it.shape) elems *= uint64_t(d);
        it.bytes_each = elems * dtype_bytes(it.dtype);
        it.count = count;
        it.bytes = it.bytes_each * uint64_t(count);
        it.formula = std::move(formula);
        items.push_back(std::move(it));
        return items.back();
    }
};

int loss_chunk_rows(int64_t N, int64_t V) {
    int64_t rows = int64_t(loss_chunk_cap_bytes / (uint64_t(V) * 4)) / loss_chunk_align * loss_chunk_align;
    rows = std::clamp(rows, loss_chunk_min, loss_chunk_max);
    return int(std::min(rows, N));
}

struct build_info {
    int loss_chunk = 0;               // rows of the fp32 logits chunk
    int64_t lora_params = 0;          // trainable parameters
    uint64_t largest_working_set = 0; // paged kinds: bytes (whole pages) of the largest single update's states
};

// Builds every item. paged_to_host: the pageable optimizer states are placed in host memory and a device page pool
// of pool_bytes is added instead. offload: the layers' checkpoints are placed in pinned host memory and a device ring
// of checkpoint_ring_slots of them is added instead (gradient checkpointing only).
std::vector<plan_item> build_items(const model_config& cfg, const plan_settings& s, bool paged_to_host,
                                   uint64_t pool_bytes, build_info& info, bool offload) {
    table tb;
    const int64_t B = s.batch, T = s.seq, N = B * T, r = s.lora.rank;
    const int64_t C = cfg.hidden_size, H = cfg.intermediate_size, L = cfg.num_layers, V = cfg.vocab_size;
    const int64_t NH = cfg.num_heads, HS = cfg.head_dim;
    const int64_t Q = NH * HS, KV = int64_t(cfg.num_kv_heads) * HS;
    const architecture& arch = architecture_for(cfg); // tensor names, which projections exist

    // ---- quantized weights: all 7 linears of every layer are NF4 + double quant, LoRA target or not -------------
    // Per linear of n = out*in elements, exactly what bnb keeps on the device (Params4bit + QuantState):
    //   weight               u8  [(n+1)/2, 1]     two 4-bit codes per byte, element 2j in the high nibble
    //   weight.absmax        u8  [n/64]           the fp32 block absmax, double-quantized to an 8-bit code
    //   weight.nested_absmax f32 [n/64/256]       one fp32 absmax per 256 codes
    //   maps                 f32 [16 + 256 + 1]   quant_map (NF4 codebook), nested_quant_map (dynamic map), offset
    // ≈ 4 + 8/64 + 32/(64*256) = 4.127 bits per weight (anchors-qlora.md §2.2).
    for (lora_target t : arch.projections) {
        const linear_shape d = linear_dims(cfg, t);
        const int64_t n = d.out * d.in;
        const int64_t nb = ceil_div(n, nf4_block), nn = ceil_div(nb, nf4_nested_block);
        const std::string base = arch.hf_weight_any_layer(t);
        const std::string dims = "(" + std::to_string(d.out) + "x" + std::to_string(d.in) + ")";
        tb.add({plan_item_id::nf4_codes, t}, base, plan_category::quantized_weights, "u8", {ceil_div(n, 2), 1}, L,
               "NF4 packed: ceil(out*in/2) bytes " + dims + ", two 4-bit codes per byte (bnb quantize_4bit)");
        tb.add({plan_item_id::nf4_absmax, t}, base + ".absmax", plan_category::quantized_weights, "u8", {nb}, L,
               "double-quantized absmax: one uint8 code per 64-element block, ceil(out*in/64)");
        tb.add({plan_item_id::nf4_nested_absmax, t}, base + ".nested_absmax", plan_category::quantized_weights, "f32",
               {nn}, L, "nested absmax: one fp32 per 256 absmax codes, ceil(ceil(out*in/64)/256) * 4 bytes");
        tb.add({plan_item_id::nf4_maps, t}, base + ".quant_map+nested_quant_map+nested_offset",
               plan_category::quantized_weights, "f32",
               {nf4_quant_map_entries + nf4_nested_map_entries + nf4_offset_entries}, L,
               "bnb QuantState per tensor: 16 NF4 codes + 256-entry dynamic map + 1 offset, fp32");
    }

    // ---- frozen weights: what QLoRA keeps unquantized --------------------------------------------------------------
    // qlora.py: embed_tokens and lm_head cast to bf16 (anchors-qlora.md §2.4); the LM head is not quantized
    // (find_all_linear_names excludes it) and is used directly by the chunked loss GEMM. Our RMSNorm kernels read
    // bf16 weights (kernels/include/qls_kernels/rmsnorm.h), so the norms are bf16 too.
    tb.add({plan_item_id::embed_tokens}, arch.hf_name(base_tensor::embed), plan_category::frozen_weights, "bf16",
           {V, C}, 1, "token embeddings (V, C) bf16, looked up, never trained");
    if (!cfg.tie_word_embeddings)
        tb.add({plan_item_id::lm_head}, arch.hf_name(base_tensor::lm_head), plan_category::frozen_weights, "bf16",
               {V, C}, 1, "LM head (V, C) bf16 (kept unquantized as QLoRA does)");
    tb.add({plan_item_id::attn_norm_weight}, arch.hf_name_any_layer(base_tensor::attn_norm),
           plan_category::frozen_weights, "bf16", {C}, L, "RMSNorm weight (C) bf16");
    tb.add({plan_item_id::mlp_norm_weight}, arch.hf_name_any_layer(base_tensor::mlp_norm),
           plan_category::frozen_weights, "bf16", {C}, L, "RMSNorm weight (C) bf16");
    tb.add({plan_item_id::final_norm_weight}, arch.hf_name(base_tensor::final_norm), plan_category::frozen_weights,
           "bf16", {C}, 1, "final RMSNorm weight (C) bf16");
    // The newer families' frozen tensors (architecture.h), bf16 like the norms: the biases of the biased linears
    // (Qwen2 q/k/v; attention_bias / mlp_bias), the per-head q/k norms (HS) and the post norms (C) of Gemma 3. A
    // (1 + w) norm is stored as the bf16 of 1 + w, so the same kernels compute both kinds.
    for (lora_target t : arch.projections)
        if (projection_has_bias(cfg, t))
            tb.add({plan_item_id::proj_bias, t}, arch.hf_layer_prefix + "*." + arch.hf_projection[size_t(t)] + ".bias",
                   plan_category::frozen_weights, "bf16", {linear_dims(cfg, t).out}, L,
                   "bias (out) bf16, frozen, added after the NF4 GEMM and LoRA");
    if (arch.qk_norm) {
        tb.add({plan_item_id::q_norm_weight}, arch.hf_name_any_layer(base_tensor::q_norm),
               plan_category::frozen_weights, "bf16", {HS}, L, "per-head query RMSNorm weight (HS) bf16");
        tb.add({plan_item_id::k_norm_weight}, arch.hf_name_any_layer(base_tensor::k_norm),
               plan_category::frozen_weights, "bf16", {HS}, L, "per-head key RMSNorm weight (HS) bf16");
    }
    if (arch.sandwich_norms) {
        tb.add({plan_item_id::post_attn_norm_weight}, arch.hf_name_any_layer(base_tensor::post_attn_norm),
               plan_category::frozen_weights, "bf16", {C}, L, "RMSNorm weight after the attention output (C) bf16");
        tb.add({plan_item_id::post_mlp_norm_weight}, arch.hf_name_any_layer(base_tensor::post_mlp_norm),
               plan_category::frozen_weights, "bf16", {C}, L, "RMSNorm weight after the MLP output (C) bf16");
    }

    // ---- LoRA weights and grads, fp32 ------------------------------------------------------------------------------
    // Why fp32: the AdamW step changes a weight by about lr = 1e-4..2e-4 per step, while bf16 keeps 8 significant
    // bits (relative spacing 2^-8 ≈ 0.004), so bf16 masters would round most updates away; and B starts at zero,
    // where an accumulating fp32 master matters most. PEFT upcasts adapters to fp32 too (autocast_adapter_dtype=True,
    // anchors-qlora.md §3.5). A (r, in), B (out, r) as PEFT stores lora_A.weight / lora_B.weight.
    struct lora_tensor {
        std::string name;
        int64_t rows, cols;
        lora_target target;
        bool b; // B (out, r); false: A (r, in)
    };
    std::vector<lora_tensor> lora;
    for (lora_target t : s.lora.targets) {
        const linear_shape d = linear_dims(cfg, t);
        const std::string m = arch.hf_layer_prefix + "*." + arch.hf_projection[size_t(t)];
        lora.push_back({m + ".lora_A.weight", r, d.in, t, false});
        lora.push_back({m + ".lora_B.weight", d.out, r, t, true});
    }
    int64_t lora_params = 0;
    int64_t lora_layer_params = 0;
    for (const auto& lt : lora) lora_layer_params += lt.rows * lt.cols;
    lora_params = lora_layer_params * L;
    info.lora_params = lora_params;
    for (const auto& lt : lora)
        tb.add({plan_item_id::lora_weight, lt.target, lt.b}, lt.name, plan_category::lora_weights, "f32",
               {lt.rows, lt.cols}, L,
               "LoRA " + std::string(lt.name.find("lora_A") != std::string::npos ? "A (r, in)" : "B (out, r)") +
                   " fp32 master weight");
    for (const auto& lt : lora)
        tb.add({plan_item_id::lora_grad, lt.target, lt.b}, lt.name + ".grad", plan_category::lora_grads, "f32",
               {lt.rows, lt.cols}, L, "gradient of the LoRA weight, fp32, accumulated over micro-batches");

    // ---- optimizer states ------------------------------------------------------------------------------------------
    // Per LoRA tensor of n elements, what qls::optimizer (optim.h) allocates, in the bitsandbytes layout
    // (anchors-qlora.md §1.3):
    //   8-bit kinds and n >= 4096: state1, state2    u8  [n]            m, v as dynamic-map codes: 2 bytes/param
    //                              absmax1, absmax2  f32 [ceil(n/256)]  8 bytes per 256 params
    //   otherwise:                 exp_avg, exp_avg_sq f32 [n]          8 bytes/param
    // Unpaged kinds keep every state on the device. Paged kinds register every one of these tensors with the pager
    // (pager.h), which stores each in whole pages of page_size bytes, the last page padded: the padding is its own
    // item. (bitsandbytes pages only state1/state2 of tensors with n >= 1e5 and keeps the rest resident; our pager
    // pages all of them.) One update needs all pages of one parameter's states on the device at once.
    const bool is8 = optimizer_kind_is_8bit(s.optimizer), paged = optimizer_kind_is_paged(s.optimizer);
    const plan_category ocat = paged ? plan_category::optimizer_paged : plan_category::optimizer_resident;
    const uint64_t page = s.page_size;
    uint64_t padding = 0, working_set = 0;
    bool any8 = false;
    auto state = [&](plan_item_key key, const std::string& name, const char* dt, int64_t elems,
                     const std::string& formula) {
        plan_item& it = tb.add(key, name, ocat, dt, {elems}, L, formula);
        it.pageable = paged;
        const uint64_t padded = round_up(it.bytes_each, page);
        if (paged) padding += (padded - it.bytes_each) * uint64_t(L);
        return padded;
    };
    for (const auto& lt : lora) {
        const int64_t n = lt.rows * lt.cols;
        uint64_t ws = 0;
        if (is8 && n >= adam8_min_size) {
            any8 = true;
            ws += state({plan_item_id::adam_state1, lt.target, lt.b}, lt.name + ".state1", "u8", n,
                        "AdamW m as uint8 codes of the signed dynamic map: 1 byte/param");
            ws += state({plan_item_id::adam_state2, lt.target, lt.b}, lt.name + ".state2", "u8", n,
                        "AdamW v as uint8 codes of the unsigned dynamic map: 1 byte/param");
            ws += state({plan_item_id::adam_absmax1, lt.target, lt.b}, lt.name + ".absmax1", "f32",
                        ceil_div(n, adam8_block), "fp32 absmax of m per 256 params");
            ws += state({plan_item_id::adam_absmax2, lt.target, lt.b}, lt.name + ".absmax2", "f32",
                        ceil_div(n, adam8_block), "fp32 absmax of v per 256 params");
        } else {
            const std::string why = is8 ? " (fewer than 4096 elements stay 32-bit: min_8bit_size)" : "";
            ws += state({plan_item_id::adam_exp_avg, lt.target, lt.b}, lt.name + ".exp_avg", "f32", n,
                        "AdamW m fp32: 4 bytes/param" + why);
            ws += state({plan_item_id::adam_exp_avg_sq, lt.target, lt.b}, lt.name + ".exp_avg_sq", "f32", n,
                        "AdamW v fp32: 4 bytes/param" + why);
        }
        working_set = std::max(working_set, ws);
    }
    info.largest_working_set = paged ? working_set : 0;
    if (paged && padding > 0) {
        plan_item& pad = tb.add({plan_item_id::adam_page_padding}, "optimizer.page_padding", ocat, "u8",
                                {int64_t(padding)}, 1,
                                "the unused tail of each state tensor's last " + std::to_string(page) + "-byte page");
        pad.pageable = true;
    }
    if (any8)
        tb.add({plan_item_id::adam_qmaps}, "optimizer.qmap1+qmap2", plan_category::optimizer_resident, "f32",
               {2, adam8_qmap_entries}, 1,
               "signed (m) and unsigned (v) 256-entry dynamic quantization maps, shared by all tensors");
    if (paged_to_host) {
        for (auto& it : tb.items)
            if (it.pageable) it.placement = plan_placement::host;
        tb.add({plan_item_id::adam_page_pool}, "optimizer.page_pool", plan_category::optimizer_paged, "u8",
               {int64_t(pool_bytes)}, 1,
               "device page pool: what the budget leaves, at least two updates' working sets (one updating, the "
               "next prefetching on the copy stream)");
    }

    // ---- activations ------------------------------------------------------------------------------------------------
    // Our LLaMA block, forward (llama.cpp / llama.h order), and what each op saves for its backward:
    //   rmsnorm   x → ln1, rstd1             backward needs x (the residual input), rstd
    //   q,k,v     ln1 → q,k,v (+ LoRA)       LoRA dA needs ln1 (the adapter input); frozen weight needs nothing
    //   rope      q,k in place               backward is the inverse rotation: nothing saved
    //   attention q,k,v → atty, lse          flash-style: saves the log-sum-exp per row, never the (B,NH,T,T) scores
    //   o         atty → (+ LoRA)            LoRA dA needs atty
    //   residual  x + o → x_mid
    //   rmsnorm   x_mid → ln2, rstd2
    //   gate, up  ln2 → gate, up (+ LoRA)    SwiGLU backward needs gate and up; LoRA needs ln2
    //   swiglu    silu(gate)*up → hmid       down's LoRA dA needs hmid
    //   down      hmid → (+ LoRA), residual
    // Every adapter saves xa = dropout(x)·Aᵀ (B,T,r) for dB, and with dropout a 1-bit mask of its input.
    // With gradient checkpointing only each layer's input x is kept (one bf16 (B,T,C) per layer); during the
    // backward one layer at a time is recomputed into a single set of these buffers. Without it every layer keeps
    // its own set. bf16 storage for tensors, fp32 for per-row statistics (rstd, lse).
    const bool ckpt = s.gradient_checkpointing;
    const int64_t per = ckpt ? 1 : L;
    const std::string act = ckpt ? "act.recompute." : "act.layers.*.";
    const std::string how = ckpt ? " (one layer, recomputed from its checkpoint)" : " (saved for every layer)";
    if (ckpt && offload) {
        // Offloaded: layer l's input goes to host slot l on the copy stream while layers l+1, l+2 compute (the
        // device slot l % R is written again by layer l+R-1's output); the backward brings slot l-1 back while
        // layer l computes. R = 3 keeps one slot for the layer's input, one being written or fetched, one in flight.
        tb.add({plan_item_id::act_checkpoint}, "act.checkpoint_ring", plan_category::activations, "bf16", {B, T, C},
               std::min<int64_t>(L, checkpoint_ring_slots),
               "device ring of offloaded checkpoints: " + std::to_string(checkpoint_ring_slots) +
                   " layer inputs (B,T,C) bf16 (one computing, one copying to or from the host, one in flight)");
        tb.add({plan_item_id::act_checkpoint_host}, "act.layers.*.checkpoint", plan_category::activations, "bf16",
               {B, T, C}, L, "gradient checkpoint offloaded to pinned host memory: the layer's residual input (B,T,C)")
            .placement = plan_placement::host;
    } else if (ckpt)
        tb.add({plan_item_id::act_checkpoint}, "act.layers.*.checkpoint", plan_category::activations, "bf16", {B, T, C},
               L, "gradient checkpoint: the layer's residual input (B,T,C) bf16, one per layer");
    else
        tb.add({plan_item_id::act_residual_in}, "act.layers.*.residual_in", plan_category::activations, "bf16",
               {B, T, C}, L, "the layer's residual input (B,T,C) bf16, for the attention RMSNorm backward");
    tb.add({plan_item_id::act_attn_norm_rstd}, act + "attn_norm.rstd", plan_category::activations, "f32", {B, T}, per,
           "1/rms per token (B,T) fp32" + how);
    tb.add({plan_item_id::act_attn_norm_out}, act + "attn_norm.out", plan_category::activations, "bf16", {B, T, C}, per,
           "normed input of q,k,v (B,T,C) bf16" + how);
    tb.add({plan_item_id::act_q}, act + "q", plan_category::activations, "bf16", {B, T, Q}, per,
           "queries after RoPE (B,T,NH*HS)" + how);
    tb.add({plan_item_id::act_k}, act + "k", plan_category::activations, "bf16", {B, T, KV}, per,
           "keys after RoPE (B,T,NKV*HS)" + how);
    tb.add({plan_item_id::act_v}, act + "v", plan_category::activations, "bf16", {B, T, KV}, per,
           "values (B,T,NKV*HS)" + how);
    tb.add({plan_item_id::act_attn_lse}, act + "attn.lse", plan_category::activations, "f32", {B, NH, T}, per,
           "softmax log-sum-exp per query row (B,NH,T) fp32, flash-style: no (B,NH,T,T)" + how);
    tb.add({plan_item_id::act_attn_out}, act + "attn.out", plan_category::activations, "bf16", {B, T, Q}, per,
           "attention output, input of o_proj (B,T,NH*HS)" + how);
    tb.add({plan_item_id::act_residual_mid}, act + "residual_mid", plan_category::activations, "bf16", {B, T, C}, per,
           "residual after attention (B,T,C), input of the MLP RMSNorm" + how);
    tb.add({plan_item_id::act_mlp_norm_rstd}, act + "mlp_norm.rstd", plan_category::activations, "f32", {B, T}, per,
           "1/rms per token (B,T) fp32" + how);
    tb.add({plan_item_id::act_mlp_norm_out}, act + "mlp_norm.out", plan_category::activations, "bf16", {B, T, C}, per,
           "normed input of gate, up (B,T,C)" + how);
    tb.add({plan_item_id::act_mlp_gate}, act + "mlp.gate", plan_category::activations, "bf16", {B, T, H}, per,
           "gate_proj output (B,T,H)" + how);
    tb.add({plan_item_id::act_mlp_up}, act + "mlp.up", plan_category::activations, "bf16", {B, T, H}, per,
           "up_proj output (B,T,H)" + how);
    tb.add({plan_item_id::act_mlp_hidden}, act + "mlp.hidden", plan_category::activations, "bf16", {B, T, H}, per,
           "silu(gate)*up (B,T,H), input of down_proj" + how);
    if (arch.qk_norm) { // the per-head norms' backward needs their inputs and 1/rms per (token, head)
        tb.add({plan_item_id::act_q_raw}, act + "q_proj.out", plan_category::activations, "bf16", {B, T, Q}, per,
               "q_proj output before the per-head norm (B,T,NH*HS)" + how);
        tb.add({plan_item_id::act_k_raw}, act + "k_proj.out", plan_category::activations, "bf16", {B, T, KV}, per,
               "k_proj output before the per-head norm (B,T,NKV*HS)" + how);
        tb.add({plan_item_id::act_q_norm_rstd}, act + "q_norm.rstd", plan_category::activations, "f32", {B, T, NH}, per,
               "1/rms per token and query head (B,T,NH) fp32" + how);
        tb.add({plan_item_id::act_k_norm_rstd}, act + "k_norm.rstd", plan_category::activations, "f32",
               {B, T, int64_t(cfg.num_kv_heads)}, per, "1/rms per token and key head (B,T,NKV) fp32" + how);
    }
    if (arch.sandwich_norms) { // the post norms' backward needs their inputs and 1/rms
        tb.add({plan_item_id::act_attn_proj_out}, act + "o_proj.out", plan_category::activations, "bf16", {B, T, C},
               per, "o_proj output before the post-attention norm (B,T,C)" + how);
        tb.add({plan_item_id::act_attn_post_rstd}, act + "post_attn_norm.rstd", plan_category::activations, "f32",
               {B, T}, per, "1/rms per token (B,T) fp32" + how);
        tb.add({plan_item_id::act_mlp_proj_out}, act + "down_proj.out", plan_category::activations, "bf16", {B, T, C},
               per, "down_proj output before the post-MLP norm (B,T,C)" + how);
        tb.add({plan_item_id::act_mlp_post_rstd}, act + "post_mlp_norm.rstd", plan_category::activations, "f32", {B, T},
               per, "1/rms per token (B,T) fp32" + how);
    }
    for (lora_target t : s.lora.targets)
        tb.add({plan_item_id::act_lora_xa, t}, act + target_module(cfg, t) + ".lora_xa", plan_category::activations,
               "bf16", {B, T, r}, per, "LoRA x·Aᵀ (B,T,r) bf16, needed for dB" + how);
    // Dropout masks: none stored. lora_dropout_keep (lora.h) recomputes each keep-decision from (seed, layer,
    // target, element) with a counter-based hash in forward and backward; the adapter GEMM reads the dropped input
    // from one (B,T,max in) scratch buffer (workspace below).
    int64_t max_lora_in = 0;
    for (lora_target t : s.lora.targets) max_lora_in = std::max(max_lora_in, linear_dims(cfg, t).in);
    tb.add({plan_item_id::act_final_residual}, "act.final_residual", plan_category::activations, "bf16", {B, T, C}, 1,
           "output of the last layer (B,T,C), input of the final RMSNorm");

    // Backward scratch: one set, reused by every layer (activation gradients; the weights get no gradient).
    tb.add({plan_item_id::grad_residual}, "grad.residual", plan_category::activations, "f32", {B, T, C}, 1,
           "dL/d residual stream (B,T,C) fp32: accumulates 2L+1 contributions, bf16 would round each add");
    tb.add({plan_item_id::grad_residual_bf16}, "grad.residual_bf16", plan_category::activations, "bf16", {B, T, C}, 1,
           "grad.residual rounded to bf16 (B,T,C), the GEMM operand of the o_proj/down_proj backward");
    tb.add({plan_item_id::grad_norm_out}, "grad.norm_out", plan_category::activations, "f32", {B, T, C}, 1,
           "dL/d normed input (B,T,C) fp32: sum of the q,k,v (or gate,up) input grads, GEMM beta=1 in fp32");
    tb.add({plan_item_id::grad_attn_out}, "grad.attn_out", plan_category::activations, "bf16", {B, T, Q}, 1,
           "dL/d attention output (B,T,NH*HS)");
    tb.add({plan_item_id::grad_q}, "grad.q", plan_category::activations, "bf16", {B, T, Q}, 1, "dL/dq (B,T,NH*HS)");
    tb.add({plan_item_id::grad_k}, "grad.k", plan_category::activations, "bf16", {B, T, KV}, 1, "dL/dk (B,T,NKV*HS)");
    tb.add({plan_item_id::grad_v}, "grad.v", plan_category::activations, "bf16", {B, T, KV}, 1, "dL/dv (B,T,NKV*HS)");
    tb.add({plan_item_id::grad_attn_delta}, "grad.attn_delta", plan_category::activations, "f32", {B, NH, T}, 1,
           "rowsum(dO∘O) per query row (B,NH,T) fp32, flash backward");
    tb.add({plan_item_id::grad_mlp_hidden}, "grad.mlp_hidden", plan_category::activations, "bf16", {B, T, H}, 1,
           "dL/d hidden (B,T,H), overwritten in place by dL/d gate");
    tb.add({plan_item_id::grad_mlp_up}, "grad.mlp_up", plan_category::activations, "bf16", {B, T, H}, 1,
           "dL/d up (B,T,H)");
    tb.add({plan_item_id::grad_lora_xa}, "grad.lora_xa", plan_category::activations, "bf16", {B, T, r}, 1,
           "dL/d xa = scale·dout·B (B,T,r) fp32, reused by every adapter");

    // ---- logits and loss: chunked cross-entropy ------------------------------------------------------------------
    // final RMSNorm → for each chunk of `chunk` token rows: logits = lnf[chunk]·lm_headᵀ (fp32 out), fused
    // softmax + loss + dlogits in place (then bf16 in place for the GEMM), dlnf[chunk] = dlogits·lm_head.
    const int chunk = loss_chunk_rows(N, V);
    info.loss_chunk = chunk;
    tb.add({plan_item_id::loss_tokens}, "loss.tokens", plan_category::logits_loss, "i32", {B, T}, 1,
           "input token ids (B,T)");
    tb.add({plan_item_id::loss_targets}, "loss.targets", plan_category::logits_loss, "i32", {B, T}, 1,
           "target ids (B,T), -1 = no loss");
    tb.add({plan_item_id::loss_final_norm_out}, "loss.final_norm.out", plan_category::logits_loss, "bf16", {B, T, C}, 1,
           "final RMSNorm output (B,T,C)");
    tb.add({plan_item_id::loss_final_norm_rstd}, "loss.final_norm.rstd", plan_category::logits_loss, "f32", {B, T}, 1,
           "final RMSNorm 1/rms (B,T)");
    tb.add({plan_item_id::loss_positions}, "loss.positions", plan_category::logits_loss, "i32", {B, T}, 1,
           "RoPE position of each token (B,T)");
    tb.add({plan_item_id::loss_segments}, "loss.segments", plan_category::logits_loss, "i32", {B, T}, 1,
           "packed-example id of each token (B,T)");
    tb.add({plan_item_id::loss_logits_chunk}, "loss.logits_chunk", plan_category::logits_loss, "bf16", {chunk, V}, 1,
           "bf16 logits for " + std::to_string(chunk) +
               " token rows at a time (fp32 softmax in the fused kernel), reused in place for dlogits; never (B,T,V)");
    tb.add({plan_item_id::loss_losses}, "loss.losses", plan_category::logits_loss, "f32", {B, T}, 1,
           "per-token loss (B,T) fp32");
    tb.add({plan_item_id::loss_grad_final_norm_out}, "loss.grad_final_norm.out", plan_category::logits_loss, "f32",
           {B, T, C}, 1, "dL/d final norm output (B,T,C), filled chunk by chunk");

    // ---- workspace --------------------------------------------------------------------------------------------------
    // Training-size GEMMs dequantize the whole NF4 weight into bf16 and call cuBLAS (as bnb does for M > 1536,
    // anchors-qlora.md §2.3); two buffers let the next layer's dequantization overlap the current GEMM.
    int64_t max_out = 0, max_in = 0, max_n = 0;
    for (lora_target t : arch.projections) {
        const linear_shape d = linear_dims(cfg, t);
        if (d.out * d.in > max_n) {
            max_n = d.out * d.in;
            max_out = d.out;
            max_in = d.in;
        }
    }
    tb.add({plan_item_id::ws_dequantized_weight}, "workspace.dequantized_weight", plan_category::workspace, "bf16",
           {2, max_out, max_in}, 1, "bf16 copy of the largest linear (out, in), double-buffered for overlap");
    tb.add({plan_item_id::ws_cublas}, "workspace.cublas", plan_category::workspace, "u8",
           {int64_t(cublas_workspace_bytes)}, 1,
           "cuBLAS workspace, 32 MiB (cublasSetWorkspace recommendation for Hopper)");
    tb.add({plan_item_id::ws_rope_inv_freq}, "workspace.rope_inv_freq", plan_category::workspace, "f32", {HS / 2}, 1,
           "RoPE inverse frequencies (HS/2) fp32; the kernels take cos/sin of pos·inv_freq on the fly");
    tb.add({plan_item_id::ws_lora_bf16}, "workspace.lora_bf16", plan_category::workspace, "bf16", {lora_layer_params},
           1, "one layer's LoRA A and B rounded to bf16, the GEMM operands (re-cast per layer and pass)");
    tb.add({plan_item_id::ws_reductions}, "workspace.reductions", plan_category::workspace, "f32", {1024 + 2 + 16384},
           1,
           "partial sums of the gradient norm (1024), two scalars (loss sum, grad norm²) and the fused AdamW's "
           "descriptor table (16384 floats: 1638 tensors or pages per launch)");
    if (cfg.has_local_rope && cfg.any_sliding())
        tb.add({plan_item_id::ws_rope_inv_freq_local}, "workspace.rope_inv_freq_local", plan_category::workspace, "f32",
               {HS / 2}, 1, "the sliding layers' own RoPE inverse frequencies (HS/2) fp32 (Gemma 3 local base)");
    if (arch.sandwich_norms)
        tb.add({plan_item_id::ws_post_norm}, "workspace.post_norm", plan_category::workspace, "bf16", {B, T, C}, 1,
               "a post norm's output before the residual add, and in the backward its input gradient (B,T,C) bf16");
    if (s.lora.dropout > 0.0f)
        tb.add({plan_item_id::ws_lora_dropout_input}, "workspace.lora_dropout_input", plan_category::workspace, "bf16",
               {B, T, max_lora_in}, 1,
               "dropout(x)/(1-p) for the adapter GEMM, (B,T,max in) bf16, reused by every adapter");

    // ---- CUDA context: on the card, outside the budget -------------------------------------------------------------
    plan_item& ctx = tb.add({plan_item_id::cuda_context}, "cuda.context+cublas", plan_category::cuda_context, "u8",
                            {int64_t(cuda_context_bytes)}, 1,
                            "driver context 527 MiB + cublasCreate 68 MiB, measured on H100 (CUDA 13, lazy loading)");
    ctx.placement = plan_placement::outside_budget;
    return std::move(tb.items);
}

uint64_t sum_device(const std::vector<plan_item>& items) {
    uint64_t b = 0;
    for (const auto& it : items)
        if (it.placement == plan_placement::device) b += it.bytes;
    return b;
}

// The categories with the most device bytes, as "quantized weights 3.13 GiB (49%), LoRA weights 0.60 GiB (9%)".
std::string dominant(const memory_plan& p, int top) {
    std::vector<std::pair<uint64_t, plan_category>> v;
    for (int i = 0; i < plan_category_count; ++i) {
        auto c = plan_category(i);
        if (c == plan_category::cuda_context) continue;
        v.push_back({p.category_bytes(c), c});
    }
    std::stable_sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.first > b.first; });
    const uint64_t peak = std::max<uint64_t>(p.peak_bytes(), 1);
    std::string out;
    for (int i = 0; i < top && i < int(v.size()); ++i) {
        if (v[size_t(i)].first == 0) break;
        if (!out.empty()) out += ", ";
        out += std::string(plan_category_label(v[size_t(i)].second)) + " " + fmt_gib(v[size_t(i)].first) + " (" +
               fmt_pct(double(v[size_t(i)].first) / double(peak)) + ")";
    }
    return out;
}

memory_plan build_plan(const model_config& cfg, const plan_settings& s, bool suggest);

// ---- suggestions -------------------------------------------------------------------------------------------------

bool fits(const memory_plan& p) { return p.verdict != plan_verdict::does_not_fit; }

std::string predicted(const memory_plan& p) {
    std::string t = "predicted " + fmt_gib(p.peak_bytes());
    if (p.verdict == plan_verdict::fits_with_paging) {
        const uint64_t ck = p.offloaded_checkpoint_bytes();
        if (p.host_bytes() > ck) t += ", " + fmt_gib(p.host_bytes() - ck) + " of states paged to host";
        if (ck > 0) t += ", " + fmt_gib(ck) + " of checkpoints offloaded to host";
    }
    return t;
}

void add_suggestion(memory_plan& p, const memory_plan& alt, std::string text) {
    plan_suggestion sg;
    sg.text = std::move(text) + ": " + predicted(alt);
    sg.settings = alt.settings;
    sg.peak_bytes = alt.peak_bytes();
    sg.verdict = alt.verdict;
    p.suggestions.push_back(std::move(sg));
}

void compute_suggestions(memory_plan& p) {
    const model_config& cfg = p.config;
    const plan_settings& s = p.settings;
    auto plan_with = [&](const plan_settings& t) { return build_plan(cfg, t, false); };
    bool single_fix = false;

    if (!s.gradient_checkpointing) {
        plan_settings t = s;
        t.gradient_checkpointing = true;
        memory_plan a = plan_with(t);
        if (fits(a)) {
            add_suggestion(p, a, "turn gradient checkpointing on (drop --no-checkpointing)");
            single_fix = true;
        }
    }
    if (s.optimizer != optimizer_kind::paged_adamw_8bit) {
        plan_settings t = s;
        t.optimizer = optimizer_kind::paged_adamw_8bit;
        memory_plan a = plan_with(t);
        if (fits(a)) {
            add_suggestion(p, a, "use 8-bit paged optimizer states (--optimizer paged-adamw-8bit)");
            single_fix = true;
        }
    }
    // Sequence: the plan grows monotonically with T, so bisect for the longest that fits, then round down to a
    // multiple of 64 (below 64: as is) so the suggestion is a length people use.
    if (s.seq > 1) {
        plan_settings t = s;
        int lo = 0, hi = s.seq - 1; // invariant: lo fits (or 0 = none), hi+1 does not
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            t.seq = mid;
            if (fits(plan_with(t))) lo = mid;
            else hi = mid - 1;
        }
        if (lo > 0) {
            int seq = lo >= 64 ? lo / 64 * 64 : lo;
            t.seq = seq;
            memory_plan a = plan_with(t);
            add_suggestion(p, a, "sequence " + std::to_string(seq) + " would fit (--seq " + std::to_string(seq) + ")");
            single_fix = true;
        }
    }
    if (s.batch > 1) {
        plan_settings t = s;
        for (int b = s.batch - 1; b >= 1; --b) {
            t.batch = b;
            memory_plan a = plan_with(t);
            if (fits(a)) {
                const std::string keep = s.batch % b == 0 ? "; accumulate " + std::to_string(s.batch / b) +
                                                                " micro-batches to keep " + std::to_string(s.batch) +
                                                                " sequences per optimizer step"
                                                          : "; use gradient accumulation for a larger effective batch";
                add_suggestion(p, a,
                               "batch " + std::to_string(b) + " would fit (--batch " + std::to_string(b) + keep + ")");
                single_fix = true;
                break;
            }
        }
    }
    if (s.lora.rank > 1) {
        plan_settings t = s;
        for (int rk = s.lora.rank / 2; rk >= 1; rk /= 2) {
            t.lora.rank = rk;
            memory_plan a = plan_with(t);
            if (fits(a)) {
                add_suggestion(p, a, "rank " + std::to_string(rk) + " would fit (--rank " + std::to_string(rk) + ")");
                single_fix = true;
                break;
            }
        }
    }
    {
        std::vector<lora_target> qv = {lora_target::q, lora_target::v};
        bool already = std::all_of(s.lora.targets.begin(), s.lora.targets.end(),
                                   [](lora_target t) { return t == lora_target::q || t == lora_target::v; });
        if (!already) {
            plan_settings t = s;
            t.lora.targets = qv;
            memory_plan a = plan_with(t);
            if (fits(a)) {
                add_suggestion(p, a,
                               "LoRA on q,v only would fit (--targets q,v; fewer adapters, usually lower quality)");
                single_fix = true;
            }
        }
    }
    if (!single_fix) {
        // No single change is enough: try everything together, down to the smallest run that still trains.
        plan_settings t = s;
        t.gradient_checkpointing = true;
        t.optimizer = optimizer_kind::paged_adamw_8bit;
        t.batch = 1;
        t.lora.rank = std::min(s.lora.rank, 8);
        t.seq = std::min(s.seq, 512);
        memory_plan a = plan_with(t);
        if (fits(a)) {
            add_suggestion(p, a,
                           "together: checkpointing on, paged-adamw-8bit, batch 1, rank " +
                               std::to_string(t.lora.rank) + ", sequence " + std::to_string(t.seq) + " would fit");
        } else {
            const uint64_t frozen = a.category_bytes(plan_category::quantized_weights) +
                                    a.category_bytes(plan_category::frozen_weights);
            plan_suggestion sg;
            sg.text = "even with checkpointing, paged-adamw-8bit, batch 1, rank " + std::to_string(t.lora.rank) +
                      " and sequence " + std::to_string(t.seq) + " it needs " + fmt_gib(a.peak_bytes()) +
                      " (the frozen model alone is " + fmt_gib(frozen) +
                      "): use a smaller model or a card with more memory";
            sg.settings = t;
            sg.peak_bytes = a.peak_bytes();
            sg.verdict = a.verdict;
            p.suggestions.push_back(std::move(sg));
        }
    }
    // Raising the limit always works: name the smallest budget (and card) that fits these exact settings.
    {
        plan_settings t = s;
        const uint64_t need = round_up(p.minimum_bytes, gib / 100); // to 0.01 GiB, so the flag value is enough
        char flag[48];
        std::string text;
        if (s.budget_bytes > 0 && s.budget_bytes < need) {
            std::snprintf(flag, sizeof flag, "%.2f", to_gib(need));
            text = "raise the budget to at least " + fmt_gib(need) + " (--budget-gib " + flag + ")";
            t.budget_bytes = need;
        }
        if (s.card_bytes > 0 && s.card_bytes < need + cuda_context_bytes) {
            const uint64_t card = round_up(need + cuda_context_bytes, gib / 100);
            std::snprintf(flag, sizeof flag, "%.2f", to_gib(card));
            text += std::string(text.empty() ? "use" : " and") + " a card of at least " + fmt_gib(card) +
                    " (--card-gib " + flag + "; " + fmt_gib(cuda_context_bytes) + " of it is CUDA context)";
            t.card_bytes = card;
        }
        if (!text.empty()) add_suggestion(p, plan_with(t), text);
    }
}

memory_plan build_device_plan(const model_config& cfg, const plan_settings& s, bool suggest) {
    validate_plan_settings(s);
    if (cfg.hidden_size <= 0 || cfg.intermediate_size <= 0 || cfg.num_layers <= 0 || cfg.num_heads <= 0 ||
        cfg.num_kv_heads <= 0 || cfg.head_dim <= 0 || cfg.vocab_size <= 0)
        throw error(error_code::config,
                    "model config has a non-positive dimension (hidden, intermediate, layers, "
                    "heads, kv heads, head_dim or vocab)",
                    "load it with load_model_config, which checks every field, or use shape_config");

    memory_plan p;
    p.config = cfg;
    p.settings = s;

    // 1. Everything resident: the plan when the budget allows. Checkpoints offloaded to the host from the start when
    //    the settings say so; otherwise only when nothing else fits (4.).
    // (the CUDA backend only: the CPU backend keeps its activations in host memory anyway)
    const bool cuda = s.backend == "cuda";
    const bool can_offload = cuda && s.gradient_checkpointing && cfg.num_layers > checkpoint_ring_slots &&
                             s.offload != checkpoint_offload::off;
    bool offload = cuda && s.gradient_checkpointing && s.offload == checkpoint_offload::on;
    build_info info;
    std::vector<plan_item> resident = build_items(cfg, s, false, 0, info, offload);
    p.loss_chunk_tokens = info.loss_chunk;
    p.lora_parameters = info.lora_params;
    p.all_resident_bytes = sum_device(resident);

    // 2. The smallest device footprint: every pageable state on the host, a pool of two updates' working sets on
    //    the device (qls::optimizer's hard minimum is one; the second lets the next fetch overlap the update).
    uint64_t pageable = 0;
    for (const auto& it : resident)
        if (it.pageable) pageable += it.bytes;
    const uint64_t min_pool = pageable > 0 ? std::min(pageable, 2 * info.largest_working_set) : 0;
    // the same with the checkpoints offloaded, when they may be and are not already
    uint64_t rest = p.all_resident_bytes - pageable;
    std::vector<plan_item> offloaded;
    uint64_t offloaded_rest = rest;
    if (can_offload && !offload) {
        build_info unused;
        offloaded = build_items(cfg, s, false, 0, unused, true);
        offloaded_rest = sum_device(offloaded) - pageable;
    }
    p.minimum_bytes = std::min(rest, offloaded_rest) + min_pool;

    // 3. The limit: our budget, and the card less what the driver takes; the tighter of those given.
    uint64_t limit = 0;
    if (s.budget_bytes > 0) limit = s.budget_bytes;
    else if (s.free_bytes > 0) limit = uint64_t(double(s.free_bytes) * free_fraction);
    if (s.card_bytes > 0) {
        uint64_t card_limit = s.card_bytes > cuda_context_bytes ? s.card_bytes - cuda_context_bytes : 1;
        limit = limit == 0 ? card_limit : std::min(limit, card_limit);
    }
    p.limit_bytes = limit;

    std::string limit_text;
    if (s.budget_bytes > 0 && (s.card_bytes == 0 || s.budget_bytes <= limit))
        limit_text = "the " + fmt_gib(limit) + " budget";
    else if (s.budget_bytes == 0 && s.free_bytes > 0 &&
             (s.card_bytes == 0 || limit < s.card_bytes - cuda_context_bytes))
        limit_text = "the " + fmt_gib(limit) + " the device has free (95% of " + fmt_gib(s.free_bytes) + ")";
    else if (s.card_bytes > 0)
        limit_text = "the " + fmt_gib(limit) + " a " + fmt_gib(s.card_bytes) + " card leaves after " +
                     fmt_gib(cuda_context_bytes) + " of CUDA context";
    auto offload_text = [&p] {
        return fmt_gib(p.offloaded_checkpoint_bytes()) + " of layer checkpoints live in pinned host memory behind a " +
               std::to_string(checkpoint_ring_slots) + "-layer device ring";
    };

    if (limit == 0 || p.all_resident_bytes <= limit) {
        p.items = std::move(resident);
        p.verdict = plan_verdict::fits;
        const std::string off = p.checkpoints_offloaded() ? " (checkpoints offloaded as asked: " + offload_text() + ")"
                                                          : std::string();
        if (limit == 0)
            p.explanation = "predicted " + fmt_gib(p.peak_bytes()) +
                            " (no budget given: pass a budget or a card size to check the fit)" + off +
                            "; largest: " + dominant(p, 2);
        else
            p.explanation = "fits: predicted " + fmt_gib(p.peak_bytes()) + " of " + limit_text + " (" +
                            fmt_pct(double(p.peak_bytes()) / double(limit)) + ")" + off + "; largest: " +
                            dominant(p, 2);
        return p;
    }
    // 4. Paging the optimizer states first (the checkpoints stay on the device), then offloading the checkpoints
    //    (alone, then with paging): each step moves more traffic over PCIe, so the plan takes the first that fits.
    auto paged_plan = [&](uint64_t rest_bytes, bool with_offload) {
        const uint64_t pool = std::max(min_pool, (limit - rest_bytes) / s.page_size * s.page_size);
        build_info unused;
        p.items = build_items(cfg, s, true, pool, unused, with_offload);
        p.verdict = plan_verdict::fits_with_paging;
        p.explanation = "fits with paging: keeping every optimizer state " +
                        std::string(with_offload ? "and checkpoint " : "") + "on the device would need " +
                        fmt_gib(p.all_resident_bytes) + ", over " + limit_text + "; " +
                        fmt_gib(p.host_bytes() - p.offloaded_checkpoint_bytes()) +
                        " of paged optimizer states live in pinned host memory behind a " + fmt_gib(pool) +
                        " device page pool" + (with_offload ? "; " + offload_text() : std::string()) +
                        "; largest: " + dominant(p, 2);
        return p;
    };
    if (pageable > 0 && rest + min_pool <= limit) return paged_plan(rest, offload);
    if (!offloaded.empty()) {
        const uint64_t offloaded_all = offloaded_rest + pageable;
        if (offloaded_all <= limit) {
            p.items = std::move(offloaded);
            p.verdict = plan_verdict::fits_with_paging;
            p.explanation = "fits with checkpoint offload: keeping every layer's checkpoint on the device would need " +
                            fmt_gib(p.all_resident_bytes) + ", over " + limit_text + "; " + offload_text() +
                            "; largest: " + dominant(p, 2);
            return p;
        }
        if (pageable > 0 && offloaded_rest + min_pool <= limit) return paged_plan(offloaded_rest, true);
        offload = true;
    }
    // Does not fit: show the smallest footprint (paged states on host when the optimizer pages, checkpoints
    // offloaded when they may be).
    {
        build_info unused;
        p.items = build_items(cfg, s, pageable > 0, pageable > 0 ? min_pool : 0, unused, offload);
    }
    p.verdict = plan_verdict::does_not_fit;
    const bool with_paging = pageable > 0;
    p.explanation = "does not fit: needs at least " + fmt_gib(p.peak_bytes()) +
                    (with_paging && offload  ? " with paged states and checkpoints on host"
                     : with_paging           ? " with paged states on host"
                     : offload               ? " with checkpoints on host"
                                             : "") +
                    ", over " + limit_text + " by " + fmt_gib(p.peak_bytes() - limit) + "; largest: " + dominant(p, 2);
    if (suggest) compute_suggestions(p);
    return p;
}

// ---- host memory -------------------------------------------------------------------------------------------------

// Host memory besides our buffers: the process's code, libraries and allocator slack (a CPU training process of a
// tiny model peaks near 40 MiB resident), and for CUDA the driver's and runtime's host allocations (about 0.5-1 GiB
// for a context with cuBLAS loaded). Estimates, stated as such in the items' formulas.
constexpr uint64_t host_runtime_cpu = 64ull << 20;
constexpr uint64_t host_runtime_cuda = 1ull << 30;

// The resident memory of this process now (VmRSS of /proc/self/status, proc(5)); 0 when it cannot be read. A build
// with the CUDA backend maps its kernels and runtime (about 200 MiB resident even with no GPU), so the CPU backend's
// runtime item is what the planning process measures, never less than the estimate.
uint64_t current_rss_bytes() { return read_process_memory().resident_bytes; }

void add_host_item(host_plan& h, const char* name, const char* label, uint64_t bytes, std::string formula) {
    if (bytes == 0) return;
    h.items.push_back({name, label, bytes, std::move(formula)});
    h.peak_bytes += bytes;
}

// The host side of a plan whose device side is built (host_plan in memory_plan.h).
void plan_host(memory_plan& p) {
    const model_config& c = p.config;
    const plan_settings& s = p.settings;
    host_plan& h = p.host;
    h.machine = s.host;
    const bool cpu = s.backend == "cpu";
    const uint64_t C = uint64_t(c.hidden_size), V = uint64_t(c.vocab_size), L = uint64_t(c.num_layers);
    const uint64_t nf4_bytes = p.category_bytes(plan_category::quantized_weights);
    // The largest decoder projection: llama_model::load(model_source) holds one transient f32 tensor at a time.
    uint64_t largest = 0;
    for (lora_target t : architecture_for(c).projections) {
        const linear_shape d = linear_dims(c, t);
        largest = std::max(largest, uint64_t(d.in) * uint64_t(d.out));
    }
    if (cpu) {
        const uint64_t params = uint64_t(c.parameter_count());
        add_host_item(h, "cpu_model", "model weights in f32 (CPU backend)", params * sizeof(float),
                      std::to_string(params) + " parameters x 4 bytes: the CPU backend computes in f32");
        if (s.quantize_nf4)
            add_host_item(h, "nf4_model", "NF4 copy of the projections", nf4_bytes,
                          "the quantized projections the f32 weights are the dequantization of");
        // llama_pass<float> buffers: per saved layer (L, or 1 recomputed with checkpointing) the norms, q/k/v,
        // attention probabilities (B, NH, T, T), attention output, MLP gate/up/hidden and each adapter's inputs;
        // the L+1 layer inputs; the final norm, the full (B, T, V) f32 logits and dx0.
        const uint64_t N = uint64_t(s.batch) * uint64_t(s.seq), T = uint64_t(s.seq);
        const uint64_t Q = uint64_t(c.num_heads) * uint64_t(c.head_dim);
        const uint64_t KV = uint64_t(c.num_kv_heads) * uint64_t(c.head_dim), H = uint64_t(c.intermediate_size);
        uint64_t lora_in = 0;
        for (lora_target t : s.lora.targets) lora_in += uint64_t(linear_dims(c, t).in) + uint64_t(s.lora.rank);
        const uint64_t per_layer = N * (3 * C + 2 + 2 * Q + 2 * KV + uint64_t(c.num_heads) * T + 3 * H + lora_in);
        const uint64_t saved = s.gradient_checkpointing ? 1 : L;
        const uint64_t acts = (saved * per_layer + (L + 1) * N * C + 2 * N * C + 2 * N + N * V) * sizeof(float);
        add_host_item(h, "cpu_activations", "activations and logits (CPU pass, f32)", acts,
                      "f32: " + std::to_string(saved) + " saved layer(s) of N*(3C+2Q+2KV+NH*T+3H+adapter inputs), " +
                          "(L+1) layer inputs of N*C, full logits N*V");
        const uint64_t train_state = p.category_bytes(plan_category::lora_weights) +
                                     p.category_bytes(plan_category::lora_grads) +
                                     p.category_bytes(plan_category::optimizer_resident) +
                                     p.category_bytes(plan_category::optimizer_paged) + p.host_bytes();
        add_host_item(h, "cpu_train_state", "LoRA weights, gradients and optimizer states", train_state,
                      "the device table's LoRA and optimizer categories, held on the host by the CPU backend");
        const uint64_t rss = current_rss_bytes();
        if (rss > host_runtime_cpu)
            add_host_item(h, "runtime", "process and libraries (measured)", rss,
                          "this process's resident memory when planning (VmRSS): code, libraries, the CUDA runtime "
                          "when built in");
        else add_host_item(h, "runtime", "process and libraries (estimate)", host_runtime_cpu, "estimate: 64 MiB");
    } else {
        add_host_item(h, "pinned_pool", "pinned pool for paged optimizer states",
                      p.host_bytes() - p.offloaded_checkpoint_bytes(),
                      "paged optimizer states evicted to pinned host memory (the plan's host placement)");
        if (p.checkpoints_offloaded())
            add_host_item(h, "checkpoint_offload", "offloaded layer checkpoints (pinned)",
                          p.offloaded_checkpoint_bytes(),
                          "L x (B,T,C) bf16: every layer's input, copied out in the forward and back in the backward");
        // The streaming load (llama_load_options::sink, train_backend_builder): the arena is allocated before the
        // weights are read and each tensor goes to its arena item as it is read, so no whole-model NF4 or f32 copy
        // of a frozen weight is on the host; only the staging of one tensor (below).
        add_host_item(h, "runtime", "CUDA runtime, driver and libraries (estimate)", host_runtime_cuda,
                      "estimate: 1 GiB of host allocations for a CUDA context with cuBLAS");
        // The adapters on the host: their initial values travel to the backend, which keeps them as its host mirror
        // (cuda_train_backend::adapters, refreshed in place for each checkpoint), values and gradients in fp32.
        add_host_item(h, "lora_host", "LoRA adapters and gradients (fp32 host mirror)",
                      p.category_bytes(plan_category::lora_weights) + p.category_bytes(plan_category::lora_grads),
                      "the device's LoRA weights and gradients, once on the host: initial values, then checkpoints");
        // A checkpoint reads every optimizer state back to write it (gpu_trainer::serialize_optimizer_state).
        const uint64_t states = p.category_bytes(plan_category::optimizer_resident) +
                                p.category_bytes(plan_category::optimizer_paged) +
                                (p.host_bytes() - p.offloaded_checkpoint_bytes());
        add_host_item(h, "checkpoint_state", "optimizer states read back for a checkpoint", states,
                      "the optimizer states on the device and in the pinned pool, copied out while a checkpoint "
                      "is written");
    }
    if (cpu) {
        // The loader's staging: one projection's f32 read from the file and, quantizing, its NF4 before it joins
        // the model.
        const uint64_t staging = largest * sizeof(float) +
                                 (s.quantize_nf4 ? uint64_t(nf4_storage_bytes(int64_t(largest), true)) : 0);
        add_host_item(h, "load_staging", "load staging (largest tensor f32 + NF4)", staging,
                      std::to_string(largest) + " elements x 4 bytes" + (s.quantize_nf4 ? " + their NF4 storage" : ""));
    } else {
        // Streaming staging (llama.cpp load with a sink), one tensor at a time, the larger of:
        //  a projection: its mapped bf16 file pages (2 bytes), the loader's f32 scratch (4) and its NF4 storage;
        //  the embedding or LM head (V x C, read after the projections' scratch is freed): mapped bf16 pages (2),
        //  the f32 read (4) and its bf16 upload copy (2) (gpu_weights.cpp put_base).
        const uint64_t proj = largest * 6 + uint64_t(nf4_storage_bytes(int64_t(largest), true));
        const uint64_t head = V * C * 8;
        add_host_item(h, "load_staging", "load staging (one tensor at a time)", std::max(proj, head),
                      proj >= head
                          ? std::to_string(largest) + " elements (largest projection) x (2 + 4) bytes + "
                                                      "its NF4 storage"
                          : "V*C = " + std::to_string(V * C) + " elements (embedding / LM head) x (2 + 4 + 2) bytes");
    }

    h.checked = h.machine.total_bytes > 0;
    if (!h.checked) {
        h.explanation = "host memory: needs " + fmt_gib(h.peak_bytes) + " (the machine's RAM is unknown)";
        return;
    }
    const uint64_t avail = h.machine.available_bytes > 0 ? h.machine.available_bytes : h.machine.total_bytes;
    h.fits = h.peak_bytes <= avail;
    std::vector<const host_item*> order;
    for (const host_item& i : h.items) order.push_back(&i);
    std::sort(order.begin(), order.end(), [](const host_item* a, const host_item* b) { return a->bytes > b->bytes; });
    std::string parts;
    for (size_t i = 0; i < order.size() && i < 3; ++i)
        parts += (i ? ", " : "") + order[i]->label + " " + fmt_gib(order[i]->bytes);
    h.explanation = std::string(h.fits ? "host memory fits: needs " : "host memory does not fit: needs ") +
                    fmt_gib(h.peak_bytes) + " (" + parts + ") of " + fmt_gib(avail) + " available (" +
                    fmt_gib(h.machine.total_bytes) + " RAM)";
    if (h.fits) return;
    if (cpu) {
        h.suggestions.push_back("train on a CUDA GPU (device.backend \"cuda\"): the weights then stream into the "
                                "GPU's memory as they are read and the host holds one tensor at a time instead of "
                                "the f32 model");
        h.suggestions.push_back("choose a smaller model: the CPU backend holds every weight in f32 (" +
                                fmt_gib(uint64_t(c.parameter_count()) * 4) + " for this one)");
        if (!s.gradient_checkpointing) h.suggestions.push_back("turn gradient checkpointing on");
        if (s.batch > 1 || s.seq > 512) h.suggestions.push_back("lower training.seq_len or micro_batch");
    } else {
        if (p.host_bytes() > p.offloaded_checkpoint_bytes())
            h.suggestions.push_back("give the optimizer more device memory (raise device.budget_gib) so fewer states "
                                    "page to the host");
        h.suggestions.push_back("close other programs to free RAM, or use a machine with more than " +
                                fmt_gib(h.peak_bytes) + " of RAM");
    }
}

memory_plan build_plan(const model_config& cfg, const plan_settings& s, bool suggest) {
    memory_plan p = build_device_plan(cfg, s, suggest);
    plan_host(p);
    if (!p.host.fits) {
        p.verdict = plan_verdict::does_not_fit;
        p.explanation = p.host.explanation;
    }
    return p;
}

} // namespace

// ---- names ---------------------------------------------------------------------------------------------------------

const char* plan_category_name(plan_category c) {
    static const char* names[] = {"quantized_weights",  "frozen_weights",  "lora_weights", "lora_grads",
                                  "optimizer_resident", "optimizer_paged", "activations",  "logits_loss",
                                  "workspace",          "cuda_context"};
    return names[int(c)];
}
const char* plan_category_label(plan_category c) {
    static const char* labels[] =
        {"quantized weights (NF4+DQ)",  "frozen weights (bf16/fp32)", "LoRA weights (fp32)",
         "LoRA grads (fp32)",           "optimizer states, resident", "optimizer states, paged",
         "activations + checkpoints",   "logits + loss (chunked)",    "workspace",
         "CUDA context (not in budget)"};
    return labels[int(c)];
}
const char* plan_placement_name(plan_placement p) {
    switch (p) {
    case plan_placement::device: return "device";
    case plan_placement::host: return "host";
    case plan_placement::outside_budget: return "outside_budget";
    }
    return "?";
}
const char* plan_verdict_name(plan_verdict v) {
    switch (v) {
    case plan_verdict::fits: return "fits";
    case plan_verdict::fits_with_paging: return "fits_with_paging";
    case plan_verdict::does_not_fit: return "does_not_fit";
    }
    return "?";
}

// ---- validation ----------------------------------------------------------------------------------------------------

void validate_plan_settings(const plan_settings& s) {
    const lora_config& l = s.lora;
    if (l.rank <= 0)
        throw error(error_code::invalid_argument,
                    "rank: LoRA rank must be a positive integer (got " + std::to_string(l.rank) + ")",
                    "valid ranks are 1 and up; QLoRA uses 64, common choices are 8, 16, 32, 64");
    if (s.seq <= 0)
        throw error(error_code::invalid_argument,
                    "seq: sequence length must be a positive integer (got " + std::to_string(s.seq) + ")",
                    "valid sequence lengths are 1 and up, e.g. 512, 2048, 4096");
    if (s.batch <= 0)
        throw error(error_code::invalid_argument,
                    "batch: batch size must be a positive integer (got " + std::to_string(s.batch) + ")",
                    "valid batch sizes are 1 and up; use gradient accumulation for larger effective batches");
    if (!(l.dropout >= 0.0f && l.dropout < 1.0f))
        throw error(error_code::invalid_argument,
                    "dropout: LoRA dropout must be in [0, 1) (got " + std::to_string(l.dropout) + ")",
                    "valid dropouts are 0 <= p < 1; QLoRA uses 0.1 for 7B/13B and 0.05 for 33B/65B, 0 turns it off");
    if (!(l.alpha > 0.0f) || !std::isfinite(l.alpha))
        throw error(error_code::invalid_argument,
                    "alpha: LoRA alpha must be a positive number (got " + std::to_string(l.alpha) + ")",
                    "valid alphas are > 0; QLoRA uses 16 with rank 64");
    if (s.offload == checkpoint_offload::on && !s.gradient_checkpointing)
        throw error(error_code::invalid_argument,
                    "checkpoint_offload: \"on\" offloads the gradient checkpoints, and gradient checkpointing is off",
                    "turn gradient checkpointing on, or leave checkpoint_offload at \"auto\"");
    const std::string valid_targets = "valid targets: a comma-separated subset of q,k,v,o,gate,up,down, each once";
    if (l.targets.empty()) throw error(error_code::invalid_argument, "targets: no LoRA target given", valid_targets);
    for (size_t i = 0; i < l.targets.size(); ++i) {
        if (int(l.targets[i]) < 0 || int(l.targets[i]) >= k_lora_target_count)
            throw error(error_code::invalid_argument, "targets: invalid LoRA target value", valid_targets);
        for (size_t j = 0; j < i; ++j)
            if (l.targets[i] == l.targets[j])
                throw error(error_code::invalid_argument,
                            std::string("targets: '") + lora_target_short_name(l.targets[i]) + "' is listed twice",
                            valid_targets);
    }
    switch (s.optimizer) {
    case optimizer_kind::paged_adamw_8bit:
    case optimizer_kind::paged_adamw_32bit:
    case optimizer_kind::adamw_8bit:
    case optimizer_kind::adamw_32bit: break;
    default:
        throw error(error_code::invalid_argument, "optimizer: invalid optimizer value",
                    "valid optimizers: paged-adamw-8bit, paged-adamw-32bit, adamw-8bit, adamw-32bit");
    }
    if (s.page_size == 0 || s.page_size % 1024 != 0)
        throw error(error_code::invalid_argument,
                    "page_size: optimizer page size must be a positive multiple of 1024 bytes (got " +
                        std::to_string(s.page_size) + ")",
                    "the pager's default is 65536 (64 KiB)");
}

// ---- the plan --------------------------------------------------------------------------------------------------------

uint64_t memory_plan::category_bytes(plan_category c) const {
    uint64_t b = 0;
    for (const auto& it : items)
        if (it.category == c && it.placement != plan_placement::host) b += it.bytes;
    return b;
}
uint64_t memory_plan::peak_bytes() const { return sum_device(items); }
uint64_t memory_plan::host_bytes() const {
    uint64_t b = 0;
    for (const auto& it : items)
        if (it.placement == plan_placement::host) b += it.bytes;
    return b;
}
uint64_t memory_plan::offloaded_checkpoint_bytes() const {
    uint64_t b = 0;
    for (const auto& it : items)
        if (it.key.id == plan_item_id::act_checkpoint_host) b += it.bytes;
    return b;
}
checkpoint_offload parse_checkpoint_offload(const std::string& name) {
    for (checkpoint_offload o : {checkpoint_offload::auto_select, checkpoint_offload::off, checkpoint_offload::on})
        if (name == checkpoint_offload_name(o)) return o;
    throw error(error_code::invalid_argument, "checkpoint_offload: \"" + name + "\" is not auto, on or off",
                "use auto (offload only when the run does not fit otherwise), on or off");
}
const char* checkpoint_offload_name(checkpoint_offload o) {
    switch (o) {
    case checkpoint_offload::auto_select: return "auto";
    case checkpoint_offload::off: return "off";
    case checkpoint_offload::on: return "on";
    }
    return "?";
}
uint64_t memory_plan::context_bytes() const {
    uint64_t b = 0;
    for (const auto& it : items)
        if (it.placement == plan_placement::outside_budget) b += it.bytes;
    return b;
}

memory_plan make_memory_plan(const model_config& cfg, const plan_settings& s) { return build_plan(cfg, s, true); }

namespace {

// Reads the "Name: N kB" lines of a proc(5) file into the fields named (bytes; a field not found stays as it was);
// a longer line is read in pieces, which match nothing. False when the file cannot be opened.
bool read_proc_kb(const std::string& path, std::initializer_list<std::pair<const char*, uint64_t*>> fields) {
    std::FILE* f = std::fopen(path.c_str(), "r");
    if (!f) return false;
    char line[256];
    while (std::fgets(line, sizeof line, f)) {
        char name[64];
        unsigned long long kb = 0;
        if (std::sscanf(line, "%63[^:]: %llu kB", name, &kb) != 2 || kb >= (1ull << 44)) continue;
        for (const auto& [want, out] : fields)
            if (std::strcmp(name, want) == 0) *out = kb * 1024;
    }
    std::fclose(f);
    return true;
}

} // namespace

host_memory read_host_memory(const std::string& meminfo) {
    host_memory m; // "MemTotal:       24683784 kB"
    read_proc_kb(meminfo, {{"MemTotal", &m.total_bytes}, {"MemAvailable", &m.available_bytes}});
    return m;
}

process_memory read_process_memory(const std::string& status) {
    process_memory m; // "VmRSS:\t  123456 kB"
    read_proc_kb(status, {{"VmRSS", &m.resident_bytes},
                          {"VmHWM", &m.peak_resident_bytes},
                          {"RssAnon", &m.anonymous_bytes}});
    return m;
}

// ---- named shapes ----------------------------------------------------------------------------------------------------

std::vector<std::string> shape_names() {
    return {"7b",        "13b", "33b", "65b", "70b", "llama3.1-8b", "qwen2.5-7b", "qwen3-8b", "mistral-nemo-12b",
            "gemma3-12b"};
}

model_config shape_config(std::string_view name) {
    // config.json of meta-llama/Llama-2-{7b,13b,70b}-hf and huggyllama/llama-{30b,65b} (LLaMA-1 33B is sold as 30B).
    // All: head_dim 128, vocab 32000, rope theta 10000, separate LM head, bos 1, eos 2.
    struct dims {
        const char* name;
        int C, H, L, NH, NKV, ctx;
        double eps;
    };
    static const dims table[] = {
        {"7b", 4096, 11008, 32, 32, 32, 4096, 1e-5},  // Llama-2-7B
        {"13b", 5120, 13824, 40, 40, 40, 4096, 1e-5}, // Llama-2-13B
        {"33b", 6656, 17920, 60, 52, 52, 2048, 1e-6}, // LLaMA-1 33B ("30b")
        {"65b", 8192, 22016, 80, 64, 64, 2048, 1e-5}, // LLaMA-1 65B
        {"70b", 8192, 28672, 80, 64, 8, 4096, 1e-5},  // Llama-2-70B, grouped-query attention (8 KV heads)
    };
    for (const dims& d : table) {
        if (name != d.name) continue;
        model_config c;
        c.model_type = "llama";
        c.hidden_size = d.C;
        c.intermediate_size = d.H;
        c.num_layers = d.L;
        c.num_heads = d.NH;
        c.num_kv_heads = d.NKV;
        c.head_dim = d.C / d.NH;
        c.vocab_size = 32000;
        c.max_position_embeddings = d.ctx;
        c.rms_norm_eps = d.eps;
        c.rope.theta = 10000.0;
        c.tie_word_embeddings = false;
        c.bos_token_id = 1;
        c.eos_token_ids = {2};
        c.torch_dtype = "float16";
        return c;
    }
    // The newer families: their config.json as published, parsed like a file (every family rule applies).
    // meta-llama/Llama-3.1-8B, Qwen/Qwen2.5-7B, Qwen/Qwen3-8B, mistralai/Mistral-Nemo-Base-2407,
    // google/gemma-3-12b-pt (text_config).
    static const std::pair<const char*, const char*> configs[] = {
        {"llama3.1-8b",
         R"({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
             "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
             "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192},
             "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": 128001,
             "torch_dtype": "bfloat16"})"},
        {"qwen2.5-7b",
         R"({"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
             "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
             "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
             "use_sliding_window": false, "sliding_window": 131072, "max_window_layers": 28,
             "tie_word_embeddings": false, "bos_token_id": 151643, "eos_token_id": 151643,
             "torch_dtype": "bfloat16"})"},
        {"qwen3-8b",
         R"({"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
             "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
             "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
             "attention_bias": false, "use_sliding_window": false, "tie_word_embeddings": false,
             "bos_token_id": 151643, "eos_token_id": 151645, "torch_dtype": "bfloat16"})"},
        {"mistral-nemo-12b",
         R"({"model_type": "mistral", "hidden_size": 5120, "intermediate_size": 14336, "num_hidden_layers": 40,
             "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072,
             "max_position_embeddings": 1024000, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
             "sliding_window": null, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2,
             "torch_dtype": "bfloat16"})"},
        {"gemma3-12b",
         R"({"model_type": "gemma3_text", "hidden_size": 3840, "intermediate_size": 15360, "num_hidden_layers": 48,
             "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "vocab_size": 262208,
             "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
             "rope_local_base_freq": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
             "query_pre_attn_scalar": 256, "sliding_window": 1024, "sliding_window_pattern": 6,
             "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": null,
             "attn_logit_softcapping": null, "tie_word_embeddings": true, "bos_token_id": 2, "eos_token_id": 1,
             "torch_dtype": "bfloat16"})"},
    };
    for (const auto& [n, json_text] : configs)
        if (name == n) return parse_model_config(json_text, std::string("the ") + n + " shape");
    std::string valid;
    for (const std::string& n : shape_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw error(error_code::invalid_argument, "shape: unknown model shape '" + std::string(name) + "'",
                "valid shapes: " + valid);
}

// ---- JSON --------------------------------------------------------------------------------------------------------

std::string memory_plan_json(const memory_plan& p, int indent) {
    using ojson = nlohmann::ordered_json;
    auto settings_json = [](const plan_settings& s) {
        ojson j;
        j["rank"] = s.lora.rank;
        j["alpha"] = std::round(double(s.lora.alpha) * 1e6) / 1e6; // float → the decimal the user typed
        j["dropout"] = std::round(double(s.lora.dropout) * 1e6) / 1e6;
        j["targets"] = ojson::array();
        for (lora_target t : s.lora.targets) j["targets"].push_back(lora_target_short_name(t));
        j["batch"] = s.batch;
        j["seq"] = s.seq;
        j["optimizer"] = optimizer_kind_flag(s.optimizer);
        j["gradient_checkpointing"] = s.gradient_checkpointing;
        j["budget_bytes"] = s.budget_bytes;
        j["card_bytes"] = s.card_bytes;
        if (s.free_bytes > 0) j["free_bytes"] = s.free_bytes;
        j["page_size"] = s.page_size;
        j["checkpoint_offload"] = checkpoint_offload_name(s.offload);
        return j;
    };
    ojson j;
    const model_config& c = p.config;
    j["model"] = {{"hidden_size", c.hidden_size},
                  {"intermediate_size", c.intermediate_size},
                  {"num_layers", c.num_layers},
                  {"num_heads", c.num_heads},
                  {"num_kv_heads", c.num_kv_heads},
                  {"head_dim", c.head_dim},
                  {"vocab_size", c.vocab_size},
                  {"max_position_embeddings", c.max_position_embeddings},
                  {"tie_word_embeddings", c.tie_word_embeddings},
                  {"parameters", c.parameter_count()}};
    j["settings"] = settings_json(p.settings);
    j["loss_chunk_tokens"] = p.loss_chunk_tokens;
    j["lora_parameters"] = p.lora_parameters;
    j["items"] = ojson::array();
    for (const auto& it : p.items) {
        ojson o;
        o["name"] = it.name;
        o["category"] = plan_category_name(it.category);
        o["dtype"] = it.dtype;
        o["shape"] = it.shape;
        o["count"] = it.count;
        o["bytes_each"] = it.bytes_each;
        o["bytes"] = it.bytes;
        o["placement"] = plan_placement_name(it.placement);
        o["pageable"] = it.pageable;
        o["formula"] = it.formula;
        j["items"].push_back(std::move(o));
    }
    ojson cats = ojson::object();
    for (int i = 0; i < plan_category_count; ++i)
        cats[plan_category_name(plan_category(i))] = p.category_bytes(plan_category(i));
    j["categories"] = cats;
    j["peak_bytes"] = p.peak_bytes();
    j["host_bytes"] = p.host_bytes();
    j["offloaded_checkpoint_bytes"] = p.offloaded_checkpoint_bytes();
    j["cuda_context_bytes"] = p.context_bytes();
    j["card_bytes_needed"] = p.card_bytes_needed();
    j["all_resident_bytes"] = p.all_resident_bytes;
    j["minimum_bytes"] = p.minimum_bytes;
    j["limit_bytes"] = p.limit_bytes;
    {
        ojson h;
        h["backend"] = p.settings.backend;
        h["items"] = ojson::array();
        for (const host_item& i : p.host.items)
            h["items"].push_back({{"name", i.name}, {"label", i.label}, {"bytes", i.bytes}, {"formula", i.formula}});
        h["peak_bytes"] = p.host.peak_bytes;
        h["mem_total_bytes"] = p.host.machine.total_bytes;
        h["mem_available_bytes"] = p.host.machine.available_bytes;
        h["checked"] = p.host.checked;
        h["fits"] = p.host.fits;
        h["explanation"] = p.host.explanation;
        h["suggestions"] = p.host.suggestions;
        j["host"] = std::move(h);
    }
    j["verdict"] = plan_verdict_name(p.verdict);
    j["explanation"] = p.explanation;
    j["suggestions"] = ojson::array();
    for (const auto& sg : p.suggestions)
        j["suggestions"].push_back({{"text", sg.text},
                                    {"peak_bytes", sg.peak_bytes},
                                    {"verdict", plan_verdict_name(sg.verdict)},
                                    {"settings", settings_json(sg.settings)}});
    return j.dump(indent);
}

} // namespace qls
