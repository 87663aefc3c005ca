// What compute device this process can use: the CUDA GPU probe (never throws, never crashes without a driver) and the
// choice of a run's device. (The GPU-vs-CPU checks behind `qlora check-gpu` are not in the engine: qls/gpu_checks.h.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qls {

struct gpu_probe {
    bool built_with_cuda = false; // this build contains the CUDA backend
    bool available = false;       // a usable CUDA device was found
    int device_count = 0;
    int index = 0; // the device probed
    std::string name;
    int cc_major = 0, cc_minor = 0;
    uint64_t total_bytes = 0, free_bytes = 0;
    std::string message; // one line for people: the device, or why the CPU backend is used
};

// Asks the CUDA runtime about GPU `index` (cudaGetDeviceCount returns an error, not a crash, on machines without a
// driver). free_bytes is measured after the CUDA context exists, so it is what a run can still allocate.
gpu_probe probe_gpu(int index = 0);

// The device a run trains on, as the plan and the backend see it.
struct compute_device {
    std::string backend = "cpu"; // "cpu" | "cuda"
    int index = 0;               // CUDA device index
    std::string name = "CPU";    // "NVIDIA H200"
    uint64_t total_bytes = 0;    // device memory (0: the CPU backend, no device memory to plan against)
    uint64_t free_bytes = 0;     // free when probed (0: unknown)
    std::string label() const;   // "cpu" or "cuda:0 (NVIDIA H200)"
};
// The probed GPU as a CUDA compute_device (index, name, total and free bytes).
compute_device cuda_device_of(const gpu_probe& probe);

// Which device a run uses: device.backend "cuda" needs a usable GPU `gpu_index` and a model the kernels take (NF4 +
// double quant, head size a multiple of 8 up to 128) and throws qls::error{device} naming the reason otherwise;
// "auto" takes the GPU when it can and otherwise the CPU, with `why` saying why; "cpu" is the CPU.
struct device_choice {
    compute_device device;
    std::string why; // set when "auto" fell back to the CPU
};
device_choice choose_train_device(const std::string& backend, int gpu_index, bool nf4_double_quant, int head_dim,
                                  const gpu_probe& probe);
// The same, probing GPU gpu_index first unless backend is "cpu".
device_choice choose_train_device(const std::string& backend, int gpu_index, bool nf4_double_quant, int head_dim);

} // namespace qls
