// qls_gpu_checks in a build without the CUDA backend: `qlora check-gpu` has nothing to check and says so.
#include "qls/gpu_checks.h"

#include "qls/error.h"

namespace qls {

std::vector<gpu_check_row> run_gpu_op_checks(uint64_t) {
    throw error(error_code::device, "this build has no CUDA backend, so there is nothing to check on a GPU",
                "install the CUDA toolkit (nvcc) and rebuild; QLS_WITH_CUDA=AUTO turns the backend on");
}
std::vector<gpu_check_row> run_gpu_finetune_check(const std::string&, const std::string&, int, uint64_t) {
    throw error(error_code::device, "this build has no CUDA backend, so there is nothing to check on a GPU",
                "install the CUDA toolkit (nvcc) and rebuild; QLS_WITH_CUDA=AUTO turns the backend on");
}

std::vector<gpu_check_row> run_gpu_decode_op_checks(uint64_t) {
    throw error(error_code::device, "this build has no CUDA backend, so there is nothing to check on a GPU",
                "install the CUDA toolkit (nvcc) and rebuild; QLS_WITH_CUDA=AUTO turns the backend on");
}
std::vector<gpu_check_row> run_gpu_generate_check(const std::string&, uint64_t) {
    throw error(error_code::device, "this build has no CUDA backend, so there is nothing to check on a GPU",
                "install the CUDA toolkit (nvcc) and rebuild; QLS_WITH_CUDA=AUTO turns the backend on");
}

std::vector<attention_bench_row> run_attention_bench(int, int, int, int, uint64_t) {
    throw error(error_code::device, "this build has no CUDA backend, so there is no GPU attention to time",
                "install the CUDA toolkit (nvcc) and rebuild; QLS_WITH_CUDA=AUTO turns the backend on");
}

std::vector<gpu_check_row> run_gpu_family_checks(const std::string&, int, uint64_t) {
    throw error(error_code::device, "this build has no CUDA backend, so there is nothing to check on a GPU",
                "install the CUDA toolkit (nvcc) and rebuild; QLS_WITH_CUDA=AUTO turns the backend on");
}

} // namespace qls
