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

} // namespace qls
