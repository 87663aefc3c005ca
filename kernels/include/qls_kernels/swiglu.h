// SwiGLU launchers (bf16 storage, fp32 math): the elementwise middle of the Llama MLP, on n = N*H elements.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qls_kernels {

// out (n) = silu(gate) * up, silu(x) = x * sigmoid(x). Mirrors cpu::swiglu_forward (engine/src/backends/cpu/ops.h).
// gate, up, out: (n) bf16, e.g. (N, H) flattened.
void swiglu_forward(__nv_bfloat16* out, const __nv_bfloat16* gate, const __nv_bfloat16* up, int64_t n,
                    cudaStream_t stream);

// dgate (n) = dout * up * silu'(gate), dup (n) = dout * silu(gate), silu'(x) = s (1 + x (1 - s)), s = sigmoid(x).
// Mirrors cpu::swiglu_backward, except that the gradients are WRITTEN (=), not accumulated (+=): the MLP's gate and
// up activations are used once, so there is nothing to sum into. Either gradient pointer may be nullptr: skipped.
// dout, gate, up, dgate, dup: (n) bf16.
void swiglu_backward(__nv_bfloat16* dgate, __nv_bfloat16* dup, const __nv_bfloat16* dout, const __nv_bfloat16* gate,
                     const __nv_bfloat16* up, int64_t n, cudaStream_t stream);

} // namespace qls_kernels
