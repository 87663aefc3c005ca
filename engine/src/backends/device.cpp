// The GPU probe: the CUDA runtime's answer when the build has the CUDA backend, a clear "CPU only" otherwise.
#include "qls/device.h"

#include "qls/error.h"

#ifdef QLS_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qls {

gpu_probe probe_gpu() {
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
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        p.message = "the CUDA device could not be queried: using the CPU reference backend";
        cudaGetLastError();
        return p;
    }
    p.device_count = count;
    p.name = prop.name;
    p.cc_major = prop.major;
    p.cc_minor = prop.minor;
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(0) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        p.free_bytes = free_b;
        p.total_bytes = total_b;
    }
    p.available = true;
    p.message = "CUDA GPU: " + p.name + " (compute " + std::to_string(p.cc_major) + "." + std::to_string(p.cc_minor) +
                ", " + std::to_string(p.total_bytes >> 20) + " MiB)";
#else
    p.message = "this build has no CUDA backend (configured without nvcc): using the CPU reference backend";
#endif
    return p;
}

#ifndef QLS_HAVE_CUDA
std::vector<gpu_check_row> run_gpu_op_checks(uint64_t) {
    throw error(error_code::device, "this build has no CUDA backend, so there is nothing to check on a GPU",
                "install the CUDA toolkit (nvcc) and rebuild; QLS_WITH_CUDA=AUTO turns the backend on");
}
std::vector<gpu_check_row> run_gpu_finetune_check(const std::string&, const std::string&, int, uint64_t) {
    throw error(error_code::device, "this build has no CUDA backend, so there is nothing to check on a GPU",
                "install the CUDA toolkit (nvcc) and rebuild; QLS_WITH_CUDA=AUTO turns the backend on");
}
#endif

} // namespace qls
