// gpu_checks — the GPU self-checks behind `qlora check-gpu`: every CUDA op against the CPU reference, and a short
// fine-tune of a real model on the GPU beside the CPU. Library qls_gpu_checks (engine/checks), linked by the qlora CLI
// only, not part of the shipped engine; in a build without CUDA every entry point throws qls::error{device}.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qls {

// One row of `qlora check-gpu`: an op at one shape, GPU against the CPU reference on fresh random inputs.
struct gpu_check_row {
    std::string op;    // "nf4_dequantize", "rmsnorm_forward"
    std::string shape; // "[4096, 4096]"
    double max_abs_error = 0;
    double max_rel_error = 0; // max |gpu - cpu| / max |cpu|
    double tolerance = 0;     // on max_rel_error
    bool passed = false;
};

// Runs every GPU op the CUDA backend has against the CPU reference at several shapes, inputs drawn from `seed`.
// Throws qls::error(device) when there is no usable GPU or the build has no CUDA backend.
std::vector<gpu_check_row> run_gpu_op_checks(uint64_t seed);

// A short LoRA fine-tune (rank 8, 32-bit AdamW, B 4 x T 64 windows of `text_file`) of the model in `model_dir`
// (NF4 base) on the GPU beside the same steps on the CPU reference: one row per step, the two losses in `shape`,
// passed when the GPU loss is within 1% of the CPU's. Throws qls::error(device) without a GPU or CUDA build.
std::vector<gpu_check_row> run_gpu_finetune_check(const std::string& model_dir, const std::string& text_file, int steps,
                                                  uint64_t seed);

// The GPU quantizer and the decoding kernels on fresh random inputs: gpu_nf4_quantizer against nf4_quantize byte for
// byte (fp32 and bf16 input, odd sizes, partial blocks, an all-zero block, a NaN, values on the NF4 thresholds), the
// fused NF4 GEMV and the bf16/fp32 GEMVs against cpu::matmul_forward (tolerance 1e-4 relative); the newer families'
// decode ops (per-head RMSNorm, GeGLU, bias add and scale, windowed and scaled attention) against the CPU's (1e-5).
std::vector<gpu_check_row> run_gpu_decode_op_checks(uint64_t seed);

// GPU generation on the model in `model_dir` (NF4, as the CUDA path loads it: no f32 projections): the loader with
// gpu_nf4_quantizer gives the CPU loader's bytes; the CUDA decoder's greedy tokens (fed the CPU's tokens) equal the
// CPU decoder's for 60 steps, or a disagreement is a near tie (the CPU's logit margin below 2^-8 of its largest
// logit, printed), without and with a rank-8 adapter (merged on the CPU, applied beside the NF4 GEMVs on the GPU);
// logits within 2^-5; an unquantized model decoded on the GPU equals its NF4 load.
std::vector<gpu_check_row> run_gpu_generate_check(const std::string& model_dir, uint64_t seed);

// The newer families on the GPU: for each folder of `families_dir` holding a config.json (tests/data/families: the
// tiny Llama 3, Mistral, Qwen2, Qwen3 and Gemma 3 models), greedy generation on the CUDA decoder beside the CPU's
// (without and with a rank-8 adapter; the rows of run_gpu_generate_check), then the LoRA gradients of one batch and a
// `steps`-step fine-tune beside the CPU reference with checkpointing on and off (the rows of run_gpu_finetune_check,
// the family's name first in each row's shape). A fixture whose head size the CUDA attention does not take is
// trained as its family and config with head_dim 8 and random weights (" hs8" in the rows).
std::vector<gpu_check_row> run_gpu_family_checks(const std::string& families_dir, int steps, uint64_t seed);

// `qlora bench --attention`: causal attention forward and backward (B = 1, NKV = NH, random N(0, 1) bf16 inputs) of
// T tokens, NH heads of HS, timed over `iters` launches after 3 warm-up ones, on the WMMA kernels and, where they
// cover HS, the FlashAttention-2 kernels. Throws qls::error(device) without a GPU or CUDA build.
struct attention_bench_row {
    std::string path; // "wmma" or "fa2"
    double forward_ms = 0, backward_ms = 0;
    double forward_tflops = 0, backward_tflops = 0; // FLOPs: 4·B·NH·T²·HS/2 forward (causal), 2.5× that backward
    double forward_rel_diff_vs_wmma = 0;            // max |out - out_wmma| / max |out_wmma| on the same inputs
};
std::vector<attention_bench_row> run_attention_bench(int T, int NH, int HS, int iters, uint64_t seed);

// The source tree's tests/data/families when the build knows it (QLS_SOURCE_FAMILIES_DIR), else "".
std::string default_families_dir();

} // namespace qls
