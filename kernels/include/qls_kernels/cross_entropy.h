// Fused cross-entropy launcher (bf16 logits, fp32 math): losses (N) fp32 and dlogits (N, V) bf16 in one kernel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace qls_kernels {

// Per row n of logits (N, V) bf16, with y = targets[n] (int32, in [0, V) or -1 = ignored):
//   losses[n]     = logsumexp(logits[n]) - logits[n, y]                   (fp32; 0 when y == -1)
//   dlogits[n, :] = dloss * (softmax(logits[n]) - onehot(y))               (bf16; all zero when y == -1)
// Mirrors cpu::cross_entropy_forward plus cpu::cross_entropy_backward, except that dlogits is WRITTEN (=), not
// accumulated (+=), and ignored rows are zeroed rather than left alone. dloss is the gradient of the total loss
// with respect to each row's loss (1 / count for a mean over the counted targets of the whole batch).
// dlogits may equal logits (written in place: every row is read fully before any of it is overwritten); either
// output may be nullptr to skip it. One block per row, fp32 online max/sum (one pass), then a second pass writes
// dlogits. Meant to be called on chunks of rows so that no full fp32 copy of the logits exists.
void cross_entropy_forward_backward(float* losses, __nv_bfloat16* dlogits, const __nv_bfloat16* logits,
                                    const int* targets, int N, int V, float dloss, cudaStream_t stream);

} // namespace qls_kernels
