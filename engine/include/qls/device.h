// What compute device this process can use: the CUDA GPU probe (never throws, never crashes without a driver) and
// the GPU-vs-CPU op checks behind `qlora check-gpu`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qls {

struct gpu_probe {
    bool built_with_cuda = false;   // this build contains the CUDA backend
    bool available = false;         // a usable CUDA device was found
    int device_count = 0;
    std::string name;               // device 0
    int cc_major = 0, cc_minor = 0;
    uint64_t total_bytes = 0, free_bytes = 0;
    std::string message;            // one line for people: the device, or why the CPU backend is used
};

// Asks the CUDA runtime (cudaGetDeviceCount returns an error, not a crash, on machines without a driver).
gpu_probe probe_gpu();

// One row of `qlora check-gpu`: an op at one shape, GPU against the CPU reference on fresh random inputs.
struct gpu_check_row {
    std::string op;          // "nf4_dequantize", "rmsnorm_forward"
    std::string shape;       // "[4096, 4096]"
    double max_abs_error = 0;
    double max_rel_error = 0;  // max |gpu - cpu| / max |cpu|
    double tolerance = 0;      // on max_rel_error
    bool passed = false;
};

// Runs every GPU op the CUDA backend has against the CPU reference at several shapes, inputs drawn from `seed`.
// Throws qls::error(device) when there is no usable GPU or the build has no CUDA backend.
std::vector<gpu_check_row> run_gpu_op_checks(uint64_t seed);

// A short LoRA fine-tune (rank 8, 32-bit AdamW, B 4 x T 64 windows of `text_file`) of the model in `model_dir`
// (NF4 base) on the GPU beside the same steps on the CPU reference: one row per step, the two losses in `shape`,
// passed when the GPU loss is within 1% of the CPU's. Throws qls::error(device) without a GPU or CUDA build.
std::vector<gpu_check_row> run_gpu_finetune_check(const std::string& model_dir, const std::string& text_file,
                                                  int steps, uint64_t seed);

} // namespace qls
