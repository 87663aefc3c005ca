// CPU reference ops: plain loops, one forward/backward pair per op, in float (the spec) and double (gradient checks).
//
// This is the specification every other backend is compared with. It is written to be read, not to be fast:
// no SIMD, no blocking, OpenMP at most on an outer loop.
//
// Dimension legend (row-major, last index fastest):
//   N  = rows (B*T tokens)      C  = hidden size          OC/IC = out/in features of a linear layer
//   B  = batch   T = time       NH = query heads          NKV   = key/value heads (NH % NKV == 0)
//   HS = head size              H  = MLP hidden size      V     = vocabulary size
// Gradient convention (llm.c): parameter gradients (dweight) are accumulated with +=, so micro-batches can
// accumulate; input gradients (dinp) are also accumulated with += so a tensor used twice (residual stream)
// gets the sum. Callers zero buffers before the first use. Any gradient pointer may be nullptr: skipped.
#pragma once

namespace qls::cpu {

// ---- embedding ----------------------------------------------------------------------------------------
// out (N, C) = wte[tokens[n]] ; tokens (N) ; wte (V, C)
template <class T> void embedding_forward(T* out, const int* tokens, const T* wte, int N, int C);
// dwte (V, C) += scatter of dout (N, C) by tokens
template <class T> void embedding_backward(T* dwte, const T* dout, const int* tokens, int N, int C);

// ---- RMSNorm ------------------------------------------------------------------------------------------
// out (N, C) = inp * rstd * weight ; rstd (N) = 1 / sqrt(mean(inp^2) + eps), saved for backward.
// Reference: Zhang & Sennrich 2019, https://arxiv.org/abs/1910.07467; HF LlamaRMSNorm.
// weight_offset 1: out = inp * rstd * (1 + weight) (Gemma3RMSNorm). Per-head q/k norms (Qwen3, Gemma 3) are this op
// over N*NH rows of HS.
template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int N, int C, T eps, T weight_offset = T(0));
// dinp (N, C) += ; dweight (C) += ; from dout (N, C), inp (N, C), weight (C), rstd (N)
template <class T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int N, int C,
                      T weight_offset = T(0));

// ---- bias ---------------------------------------------------------------------------------------------
// out (N, OC) += bias (OC) per row (nn.Linear bias=True); dbias (OC) += column sums of dout (N, OC).
template <class T> void bias_forward(T* out, const T* bias, int N, int OC);
template <class T> void bias_backward(T* dbias, const T* dout, int N, int OC);

// ---- scale --------------------------------------------------------------------------------------------
// x (n) *= s: Gemma's embedding scale sqrt(C) in forward, and the same on the gradient in backward.
template <class T> void scale_inplace(T* x, T s, long n);

// ---- linear (no bias) ---------------------------------------------------------------------------------
// out (N, OC) = inp (N, IC) · weight (OC, IC)ᵀ
template <class T> void matmul_forward(T* out, const T* inp, const T* weight, int N, int IC, int OC);
// dinp (N, IC) += dout · weight ; dweight (OC, IC) += doutᵀ · inp
template <class T>
void matmul_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int N, int IC, int OC);

// ---- LoRA adapter on a linear layer --------------------------------------------------------------------
// xa (N, r) = xd (N, IC) · A (r, IC)ᵀ ; out (N, OC) += scale · xa · B (OC, r)ᵀ
// xd is the adapter's input after dropout (the caller applies the mask; PEFT: lora_B(lora_A(dropout(x))) * scaling).
template <class T>
void lora_forward(T* out, T* xa, const T* xd, const T* A, const T* B, int N, int IC, int OC, int r, T scale);
// dB (OC, r) += scale · doutᵀ · xa ; dxa = scale · dout · B ; dA (r, IC) += dxaᵀ · xd ; dxd (N, IC) += dxa · A
template <class T>
void lora_backward(T* dxd, T* dA, T* dB, const T* dout, const T* xd, const T* xa, const T* A, const T* B, int N, int IC,
                   int OC, int r, T scale);

// ---- rotary position embedding (HF rotate_half convention) --------------------------------------------
// x (N, NHX, HS) rotated in place by angle pos[n] * inv_freq[i] for the pair (i, i + HS/2):
//   x'[i]        = x[i] cos - x[i+HS/2] sin
//   x'[i+HS/2]   = x[i+HS/2] cos + x[i] sin
// pos (N) ; inv_freq (HS/2). Reference: HF transformers apply_rotary_pos_emb / rotate_half.
template <class T> void rope_forward(T* x, const int* pos, const float* inv_freq, int N, int NHX, int HS);
// The inverse rotation applied in place to the gradient dx (N, NHX, HS).
template <class T> void rope_backward(T* dx, const int* pos, const float* inv_freq, int N, int NHX, int HS);

// ---- causal grouped-query attention -------------------------------------------------------------------
// q (B, T, NH, HS), k/v (B, T, NKV, HS) -> out (B, T, NH, HS); query head h reads kv head h / (NH/NKV).
// att (B, NH, T, T) holds the softmax probabilities, saved for backward (row t, entries j <= t used).
// Score(t, j) = q_t·k_j / sqrt(HS); masked unless j <= t and (segment == nullptr or segment[b,j] == segment[b,t]).
// segment (B, T) optional: packed examples never attend across boundaries.
// window > 0: sliding-window layers also mask j <= t - window. scale > 0 replaces 1/sqrt(HS) (Gemma 3:
// query_pre_attn_scalar^-0.5).
template <class T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, const int* segment, int B, int Tn, int NH,
                       int NKV, int HS, int window = 0, double scale = 0);
// dq (B,T,NH,HS) +=, dk/dv (B,T,NKV,HS) += from dout (B,T,NH,HS) and the saved att (masked entries are 0, so the
// window needs no parameter here); scale as in the forward.
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* att, const T* q, const T* k, const T* v, int B,
                        int Tn, int NH, int NKV, int HS, double scale = 0);

// ---- SwiGLU -------------------------------------------------------------------------------------------
// out (N*H) = silu(gate) * up, silu(x) = x * sigmoid(x). Reference: Shazeer 2020, https://arxiv.org/abs/2002.05202
template <class T> void swiglu_forward(T* out, const T* gate, const T* up, long n);
// dgate += dout * up * silu'(gate) ; dup += dout * silu(gate) ; silu'(x) = s (1 + x (1 - s)), s = sigmoid(x)
template <class T> void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, long n);

// ---- GeGLU with tanh GELU (Gemma 3) ------------------------------------------------------------------
// out (n) = gelu_tanh(gate) * up, gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))
template <class T> void geglu_forward(T* out, const T* gate, const T* up, long n);
// dgate += dout * up * gelu_tanh'(gate) ; dup += dout * gelu_tanh(gate)
template <class T> void geglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, long n);

// ---- residual -----------------------------------------------------------------------------------------
// out (n) = a + b  (backward: both inputs receive dout)
template <class T> void residual_forward(T* out, const T* a, const T* b, long n);

// ---- cross-entropy ------------------------------------------------------------------------------------
// losses (N) = -log softmax(logits (N, V))[targets[n]] ; targets == -1 are ignored (loss 0).
// Returns the number of counted targets.
template <class T> int cross_entropy_forward(T* losses, const T* logits, const int* targets, int N, int V);
// dlogits (N, V) += dloss * (softmax(logits) - onehot(target)) for counted rows; dloss is the gradient of
// the total loss with respect to each row's loss (e.g. 1 / count for a mean).
template <class T> void cross_entropy_backward(T* dlogits, const T* logits, const int* targets, int N, int V, T dloss);

} // namespace qls::cpu
