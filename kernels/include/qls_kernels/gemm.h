// Row-major GEMM through cuBLAS (bf16 operands, fp32 accumulation, bf16 or fp32 output), every call checked.
#pragma once
#include <cstddef>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qls_kernels {

// One cuBLAS handle bound to a stream and a caller-owned workspace (cublasSetWorkspace), so cuBLAS allocates
// nothing itself and the memory plan counts every byte. Not copyable.
class blas {
public:
    blas(cudaStream_t stream, void* workspace, size_t workspace_bytes);
    ~blas();
    blas(const blas&) = delete;
    blas& operator=(const blas&) = delete;

    // C (M, N) = alpha · op(A) · op(B) + beta · C, all row-major: op(A) (M, K), op(B) (K, N); A stored (M, K) with
    // row length lda, or (K, M) when trans_a; likewise B. C is bf16 (c_f32 false) or fp32 (c_f32 true), row length
    // ldc. The cuBLAS column-major call computes Cᵀ = op(B)ᵀ op(A)ᵀ (cuBLAS docs, "cublasGemmEx"), compute type
    // CUBLAS_COMPUTE_32F.
    void gemm(bool trans_a, bool trans_b, int M, int N, int K, const __nv_bfloat16* A, int lda, const __nv_bfloat16* B,
              int ldb, void* C, bool c_f32, int ldc, float alpha, float beta);

    cudaStream_t stream() const { return stream_; }

private:
    void* handle_ = nullptr; // cublasHandle_t (kept out of this header)
    cudaStream_t stream_;
};

} // namespace qls_kernels
