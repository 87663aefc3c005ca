// Token embedding launcher (bf16): a row gather from the embedding table.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qls_kernels {

// out (N, C) bf16 = wte[tokens[n], :] ; tokens (N) int32, each in [0, V) (not checked here: the caller validates
// token ids, as for the CPU op) ; wte (V, C) bf16. A plain copy, bit-identical to cpu::embedding_forward.
void embedding_forward(__nv_bfloat16* out, const int* tokens, const __nv_bfloat16* wte, int N, int C,
                       cudaStream_t stream);

} // namespace qls_kernels
