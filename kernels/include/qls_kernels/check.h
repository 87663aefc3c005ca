// CUDA error checking for launchers: every CUDA runtime call and launch goes through QLS_CUDA_CHECK.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace qls_kernels {

// Thrown by QLS_CUDA_CHECK; the engine converts it to qls::error(device) at the backend boundary.
struct cuda_failure : std::runtime_error {
    cudaError_t status;
    cuda_failure(cudaError_t s, const std::string& what) : std::runtime_error(what), status(s) {}
};

[[noreturn]] inline void cuda_fail(cudaError_t s, const char* stmt, const char* func, const char* file, int line) {
    throw cuda_failure(s, std::string("CUDA error ") + cudaGetErrorName(s) + " (" + cudaGetErrorString(s) + ") in " +
                              func + " at " + file + ":" + std::to_string(line) + ": " + stmt);
}

} // namespace qls_kernels

#define QLS_CUDA_CHECK(stmt)                                                                                        \
    do {                                                                                                            \
        cudaError_t qls_status_ = (stmt);                                                                           \
        if (qls_status_ != cudaSuccess) ::qls_kernels::cuda_fail(qls_status_, #stmt, __func__, __FILE__, __LINE__); \
    } while (0)
