// The GPU probe: the CUDA runtime's answer when the build has the CUDA backend, a clear "CPU only" otherwise.
#include "qls/device.h"

#include "qls/error.h"

#ifdef QLS_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qls {

gpu_probe probe_gpu(int index) {
    gpu_probe p;
#ifdef QLS_HAVE_CUDA
    p.built_with_cuda = true;
    int count = 0;
    cudaError_t st = cudaGetDeviceCount(&count);
    if (st != cudaSuccess) {
        p.message = std::string("no CUDA GPU (") + cudaGetErrorString(st) + "): using the CPU reference backend";
        cudaGetLastError(); // clear the sticky-free error so later calls start clean
        return p;
    }
    if (count == 0) {
        p.message = "no CUDA GPU found: using the CPU reference backend";
        return p;
    }
    cudaDeviceProp prop{};
    if (index < 0 || index >= count) {
        p.device_count = count;
        p.message = "CUDA device " + std::to_string(index) + " does not exist (this machine has " +
                    std::to_string(count) + "): using the CPU reference backend";
        return p;
    }
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
        p.message = "the CUDA device could not be queried: using the CPU reference backend";
        cudaGetLastError();
        return p;
    }
    p.device_count = count;
    p.name = prop.name;
    p.cc_major = prop.major;
    p.cc_minor = prop.minor;
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(index) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        p.free_bytes = free_b;
        p.total_bytes = total_b;
    }
    p.available = true;
    p.index = index;
    p.message = "CUDA GPU " + std::to_string(index) + ": " + p.name + " (compute " + std::to_string(p.cc_major) + "." +
                std::to_string(p.cc_minor) + ", " + std::to_string(p.total_bytes >> 20) + " MiB)";
#else
    p.message = "this build has no CUDA backend (configured without nvcc): using the CPU reference backend";
#endif
    return p;
}

std::string compute_device::label() const {
    if (backend != "cuda") return backend;
    return "cuda:" + std::to_string(index) + (name.empty() ? "" : " (" + name + ")");
}

compute_device cuda_device_of(const gpu_probe& probe) {
    compute_device d;
    d.backend = "cuda";
    d.index = probe.index;
    d.name = probe.name;
    d.total_bytes = probe.total_bytes;
    d.free_bytes = probe.free_bytes;
    return d;
}

device_choice choose_train_device(const std::string& backend, int gpu_index, bool nf4_double_quant, int head_dim,
                                  const gpu_probe& probe) {
    device_choice c;
    if (backend == "cpu") return c;
    std::string why;
    if (!probe.available) why = probe.message;
    else if (probe.index != gpu_index)
        why = "the GPU probe was made for device " + std::to_string(probe.index) + ", not device.gpu " +
              std::to_string(gpu_index);
    else if (!nf4_double_quant)
        why = "the CUDA backend trains on an NF4 + double-quant base (model.quantize_nf4 and double_quant true)";
    else if (head_dim % 8 != 0 || head_dim > 128)
        why = "head size " + std::to_string(head_dim) + " is outside the CUDA attention kernels' range";
    if (why.empty()) {
        c.device = cuda_device_of(probe); // probe.index == gpu_index
        return c;
    }
    if (backend == "cuda")
        throw error(error_code::device, "device.backend \"cuda\": " + why,
                    "set device.backend to \"auto\" or \"cpu\" to train on the CPU reference backend");
    c.why = why;
    return c;
}

device_choice choose_train_device(const std::string& backend, int gpu_index, bool nf4_double_quant, int head_dim) {
    return choose_train_device(backend, gpu_index, nf4_double_quant, head_dim,
                               backend == "cpu" ? gpu_probe{} : probe_gpu(gpu_index));
}

} // namespace qls
