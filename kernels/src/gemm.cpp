// cuBLAS wrapper for row-major bf16 GEMMs with fp32 accumulation (see gemm.h).
#include "qls_kernels/gemm.h"
#include "qls_kernels/check.h"

#include <cublas_v2.h>

#include <string>

namespace qls_kernels {

namespace {

[[noreturn]] void blas_fail(cublasStatus_t s, const char* stmt, int line) {
    throw cuda_failure(cudaErrorUnknown, std::string("cuBLAS error ") + cublasGetStatusName(s) + " (" +
                                             cublasGetStatusString(s) + ") at gemm.cpp:" + std::to_string(line) + ": " +
                                             stmt);
}

#define QLS_CUBLAS_CHECK(stmt)                                                     \
    do {                                                                           \
        cublasStatus_t qls_bs_ = (stmt);                                           \
        if (qls_bs_ != CUBLAS_STATUS_SUCCESS) blas_fail(qls_bs_, #stmt, __LINE__); \
    } while (0)

cublasHandle_t h(void* p) { return static_cast<cublasHandle_t>(p); }

} // namespace

blas::blas(cudaStream_t stream, void* workspace, size_t workspace_bytes) : stream_(stream) {
    cublasHandle_t handle = nullptr;
    QLS_CUBLAS_CHECK(cublasCreate(&handle));
    handle_ = handle;
    QLS_CUBLAS_CHECK(cublasSetStream(handle, stream));
    QLS_CUBLAS_CHECK(cublasSetWorkspace(handle, workspace, workspace_bytes));
    QLS_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
}

blas::~blas() {
    if (handle_) cublasDestroy(h(handle_));
}

void blas::gemm(bool trans_a, bool trans_b, int M, int N, int K, const __nv_bfloat16* A, int lda,
                const __nv_bfloat16* B, int ldb, void* C, bool c_f32, int ldc, float alpha, float beta) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    QLS_CUBLAS_CHECK(cublasGemmEx(h(handle_), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  N, M, K, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C,
                                  c_f32 ? CUDA_R_32F : CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

} // namespace qls_kernels
