// CPU reference ops of a LLaMA model: plain single-threaded loops, one forward/backward pair per op (see ops.h).
//
// Style follows llm.c's train_gpt2.c: every op is a few nested loops over row-major buffers, with the shapes in
// the comments. Reductions (dot products, softmax sums, the RMS mean) accumulate in double even when T = float,
// so the float instantiation is as close as possible to the exactly rounded result.
#include "backends/cpu/ops.h"

#include "qls/error.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace qls::cpu {

// ---- embedding ----------------------------------------------------------------------------------------

template <class T> void embedding_forward(T* out, const int* tokens, const T* wte, int N, int C) {
    // out (N, C), tokens (N), wte (V, C): out[n, :] = wte[tokens[n], :]
    for (int n = 0; n < N; n++) {
        const T* w = wte + (long)tokens[n] * C;
        T* o = out + (long)n * C;
        for (int c = 0; c < C; c++) o[c] = w[c];
    }
}

template <class T> void embedding_backward(T* dwte, const T* dout, const int* tokens, int N, int C) {
    // dwte (V, C) += scatter of dout (N, C): a token seen twice receives the sum of both rows.
    if (!dwte) return;
    for (int n = 0; n < N; n++) {
        T* dw = dwte + (long)tokens[n] * C;
        const T* d = dout + (long)n * C;
        for (int c = 0; c < C; c++) dw[c] += d[c];
    }
}

// ---- RMSNorm ------------------------------------------------------------------------------------------
// Zhang & Sennrich 2019 (https://arxiv.org/abs/1910.07467), eq. 4: y = x / RMS(x) * g, RMS(x) = sqrt(mean(x^2)),
// with eps inside the square root as in HF LlamaRMSNorm:
//   variance = hidden_states.pow(2).mean(-1, keepdim=True)
//   hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
//   return self.weight * hidden_states

// weight_offset 1 gives Gemma's (1 + w) scaling (Gemma3RMSNorm: output * (1.0 + self.weight.float())); the factor
// (offset + w_c) is formed in T first, as torch forms (1.0 + weight) before the product.
template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int N, int C, T eps, T weight_offset) {
    // inp (N, C), weight (C) -> out (N, C), rstd (N)
    for (int n = 0; n < N; n++) {
        const T* x = inp + (long)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * (double)x[c];
        const double r = 1.0 / std::sqrt(ss / C + (double)eps);
        T* o = out + (long)n * C;
        for (int c = 0; c < C; c++) o[c] = (T)((double)x[c] * r * (double)(T)(weight_offset + weight[c]));
        rstd[n] = (T)r;
    }
}

template <class T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int N, int C,
                      T weight_offset) {
    // With w_c standing for (weight_offset + weight_c): dL/dweight_c = dL/dw_c, so the formulas below hold as written.
    // y_c = w_c x_c r with r = (mean(x^2) + eps)^(-1/2), so dr/dx_j = -r^3 x_j / C and
    //   dL/dx_j = r w_j dy_j - (r^3 / C) x_j sum_c (dy_c w_c x_c)
    //   dL/dw_c = sum_n dy_{n,c} x_{n,c} r_n
    for (int n = 0; n < N; n++) {
        const T* x = inp + (long)n * C;
        const T* dy = dout + (long)n * C;
        const double r = (double)rstd[n];
        if (dweight)
            for (int c = 0; c < C; c++) dweight[c] += (T)((double)dy[c] * (double)x[c] * r);
        if (dinp) {
            double dot = 0.0; // sum_c dy_c w_c x_c
            for (int c = 0; c < C; c++) dot += (double)dy[c] * (double)(T)(weight_offset + weight[c]) * (double)x[c];
            const double k = r * r * r * dot / C;
            T* dx = dinp + (long)n * C;
            for (int c = 0; c < C; c++)
                dx[c] += (T)(r * (double)(T)(weight_offset + weight[c]) * (double)dy[c] - k * (double)x[c]);
        }
    }
}

// ---- bias ---------------------------------------------------------------------------------------------
// nn.Linear with bias=True: out = inp · weightᵀ + bias; the bias is added after the matmul (and before any LoRA term,
// which PEFT adds to the base layer's output).

template <class T> void bias_forward(T* out, const T* bias, int N, int OC) {
    // out (N, OC) += bias (OC) on every row
    for (int n = 0; n < N; n++) {
        T* o = out + (long)n * OC;
        for (int c = 0; c < OC; c++) o[c] += bias[c];
    }
}

template <class T> void bias_backward(T* dbias, const T* dout, int N, int OC) {
    // dbias (OC) += Σ_n dout (N, OC); the input gradient is dout itself (the caller's matmul_backward takes it)
    for (int c = 0; c < OC; c++) {
        double acc = 0.0;
        for (int n = 0; n < N; n++) acc += (double)dout[(long)n * OC + c];
        dbias[c] += (T)acc;
    }
}

// ---- scale --------------------------------------------------------------------------------------------
template <class T> void scale_inplace(T* x, T s, long n) {
    // x (n) *= s  (its own backward: dx *= s)
    for (long i = 0; i < n; i++) x[i] = (T)(x[i] * s);
}

// ---- linear (no bias) ---------------------------------------------------------------------------------
// PyTorch nn.Linear layout: weight (OC, IC), out = inp · weightᵀ.

// Blocking of the matmuls. A dot product out[n][o] = Σ_i x[n][i]·w[o][i] is summed in k_lanes double partial sums
// (lane j takes the i ≡ j mod k_lanes, ascending), combined in one fixed pairwise order, so the compiler can keep the
// lanes in vector registers while the result stays a pure function of the inputs: it depends neither on the row
// blocking nor on the thread count. k_rows rows of x share each pass over a weight row, so W is read once per
// k_rows rows instead of once per row.
constexpr int k_lanes = 8;
constexpr int k_rows = 4;

inline double lanes_sum(const double* a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

template <class T> void matmul_forward(T* out, const T* inp, const T* weight, int N, int IC, int OC) {
    // inp (N, IC), weight (OC, IC) -> out (N, OC); blocks of k_rows rows are independent, so OpenMP splits them
    const int blocks = (N + k_rows - 1) / k_rows;
#pragma omp parallel for schedule(static)
    for (int nb = 0; nb < blocks; nb++) {
        const int n0 = nb * k_rows;
        const int rows = std::min(k_rows, N - n0);
        const T* x[k_rows];
        for (int r = 0; r < k_rows; r++) x[r] = inp + (long)(n0 + std::min(r, rows - 1)) * IC; // pad: repeat the last
        for (int o = 0; o < OC; o++) {
            const T* w = weight + (long)o * IC;
            double acc[k_rows][k_lanes] = {};
            int i = 0;
            for (; i + k_lanes <= IC; i += k_lanes)
                for (int r = 0; r < k_rows; r++)
                    for (int j = 0; j < k_lanes; j++) acc[r][j] += (double)x[r][i + j] * (double)w[i + j];
            for (int j = 0; i + j < IC; j++)
                for (int r = 0; r < k_rows; r++) acc[r][j] += (double)x[r][i + j] * (double)w[i + j];
            for (int r = 0; r < rows; r++) out[(long)(n0 + r) * OC + o] = (T)lanes_sum(acc[r]);
        }
    }
}

template <class T>
void matmul_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int N, int IC, int OC) {
    // Every sum runs over its index in ascending order in one double accumulator per output element, so the result
    // does not depend on the loop order, the row blocking or the thread count.
    // dinp (N, IC) += dout (N, OC) · weight (OC, IC); k_rows rows share each pass over W
    if (dinp) {
        const int blocks = (N + k_rows - 1) / k_rows;
#pragma omp parallel
        {
            std::vector<double> acc((size_t)k_rows * IC);
#pragma omp for schedule(static)
            for (int nb = 0; nb < blocks; nb++) {
                const int n0 = nb * k_rows;
                const int rows = std::min(k_rows, N - n0);
                std::fill(acc.begin(), acc.end(), 0.0);
                for (int o = 0; o < OC; o++) {
                    const T* w = weight + (long)o * IC;
                    for (int r = 0; r < rows; r++) {
                        const double d = (double)dout[(long)(n0 + r) * OC + o];
                        double* a = acc.data() + (size_t)r * IC;
                        for (int i = 0; i < IC; i++) a[i] += d * (double)w[i];
                    }
                }
                for (int r = 0; r < rows; r++) {
                    T* dx = dinp + (long)(n0 + r) * IC;
                    const double* a = acc.data() + (size_t)r * IC;
                    for (int i = 0; i < IC; i++) dx[i] += (T)a[i];
                }
            }
        }
    }
    // dweight (OC, IC) += doutᵀ (OC, N) · inp (N, IC)
    if (dweight) {
#pragma omp parallel
        {
            std::vector<double> acc((size_t)IC);
#pragma omp for schedule(static)
            for (int o = 0; o < OC; o++) {
                std::fill(acc.begin(), acc.end(), 0.0);
                for (int n = 0; n < N; n++) {
                    const double d = (double)dout[(long)n * OC + o];
                    const T* x = inp + (long)n * IC;
                    for (int i = 0; i < IC; i++) acc[(size_t)i] += d * (double)x[i];
                }
                T* dw = dweight + (long)o * IC;
                for (int i = 0; i < IC; i++) dw[i] += (T)acc[(size_t)i];
            }
        }
    }
}

// ---- rotary position embedding ------------------------------------------------------------------------
// HF transformers modeling_llama.py:
//   freqs = (inv_freq_expanded.float() @ position_ids_expanded.float())   # float32: angle = pos * inv_freq
//   emb = torch.cat((freqs, freqs), dim=-1); cos = emb.cos(); sin = emb.sin()
//   rotate_half(x) = cat(-x[..., HS/2:], x[..., :HS/2])
//   q_embed = q * cos + rotate_half(q) * sin
// so element i < HS/2 pairs with i + HS/2 and both use angle pos * inv_freq[i]. The angle is formed in float
// exactly as HF does; its cos/sin are then taken in double (the float instantiation rounds them once at the end).

namespace {

// cos/sin of the rotation of pair i at position p, with the angle rounded to float as in HF.
inline void rope_angle(int p, float inv_freq, double& c, double& s) {
    const float angle = (float)p * inv_freq;
    c = std::cos((double)angle);
    s = std::sin((double)angle);
}

// x (N, NHX, HS) in place: every pair (x1, x2) = (x[i], x[i + HS/2]) of a head at position pos[n] rotated by
// [[c, -s'], [s', c]] with c = cos θ, s' = sign · sin θ, θ = pos[n] · inv_freq[i] (sign ±1 keeps it exact).
template <class T> void rotate_pairs(T* x, const int* pos, const float* inv_freq, int N, int NHX, int HS, double sign) {
    QLS_ASSERT(HS % 2 == 0);
    const int half = HS / 2;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            double c, s;
            rope_angle(pos[n], inv_freq[i], c, s);
            s *= sign;
            for (int h = 0; h < NHX; h++) {
                T* xh = x + ((long)n * NHX + h) * HS;
                const double x1 = (double)xh[i], x2 = (double)xh[i + half];
                xh[i] = (T)(x1 * c - x2 * s);
                xh[i + half] = (T)(x2 * c + x1 * s);
            }
        }
    }
}

} // namespace

template <class T> void rope_forward(T* x, const int* pos, const float* inv_freq, int N, int NHX, int HS) {
    // x (N, NHX, HS) in place; pos (N); inv_freq (HS/2)
    rotate_pairs(x, pos, inv_freq, N, NHX, HS, 1.0);
}

template <class T> void rope_backward(T* dx, const int* pos, const float* inv_freq, int N, int NHX, int HS) {
    // The forward map is the rotation R(θ) = [[c, -s], [s, c]] on each pair; its Jacobian transpose is R(-θ),
    // so the gradient is rotated back in place: dx1 = dy1 c + dy2 s, dx2 = dy2 c - dy1 s.
    rotate_pairs(dx, pos, inv_freq, N, NHX, HS, -1.0);
}

// ---- causal grouped-query attention -------------------------------------------------------------------
// softmax(q kᵀ / sqrt(HS) + mask) v per head; grouped-query attention shares kv head h / (NH/NKV) among
// NH/NKV consecutive query heads, as HF repeat_kv does (kv head j is repeated n_rep times: query heads
// j*n_rep .. j*n_rep + n_rep - 1 read it).

template <class T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, const int* segment, int B, int Tn, int NH,
                       int NKV, int HS, int window, double scale) {
    // q (B, T, NH, HS), k/v (B, T, NKV, HS) -> out (B, T, NH, HS), att (B, NH, T, T)
    // window > 0: key j is visible from t only when j > t - window (transformers masking_utils sliding_window_overlay:
    // kv_idx > q_idx - sliding_window), i.e. the last `window` positions including t.
    QLS_ASSERT(NKV > 0 && NH % NKV == 0);
    const int rep = NH / NKV; // HF repeat_kv's n_rep
    if (scale <= 0) scale = 1.0 / std::sqrt((double)HS);
    std::vector<double> score((size_t)Tn); // scores of one row, in double
    std::vector<char> visible((size_t)Tn); // 1 where j <= t and the segment matches
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < Tn; t++) {
            for (int h = 0; h < NH; h++) {
                const int hk = h / rep;
                const T* qt = q + (((long)b * Tn + t) * NH + h) * HS;
                T* att_row = att + (((long)b * NH + h) * Tn + t) * Tn;

                // pass 1: scaled scores q_t·k_j / sqrt(HS) of the visible keys and their max. j = t is always
                // visible, so every row has at least one entry and maxval is finite.
                double maxval = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    visible[j] = (!segment || segment[(long)b * Tn + j] == segment[(long)b * Tn + t]) &&
                                 (window <= 0 || j > t - window);
                    if (!visible[j]) continue;
                    const T* kj = k + (((long)b * Tn + j) * NKV + hk) * HS;
                    double dot = 0.0;
                    for (int i = 0; i < HS; i++) dot += (double)qt[i] * (double)kj[i];
                    score[j] = dot * scale;
                    if (score[j] > maxval) maxval = score[j];
                }

                // pass 2: softmax over the visible keys; subtracting the row max keeps exp() <= 1 (softmax is
                // shift invariant). Masked keys get probability exactly 0.
                double sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    score[j] = visible[j] ? std::exp(score[j] - maxval) : 0.0;
                    sum += score[j];
                }
                const double inv_sum = 1.0 / sum;
                for (int j = 0; j <= t; j++) att_row[j] = (T)(score[j] * inv_sum);
                for (int j = t + 1; j < Tn; j++) att_row[j] = (T)0; // causal mask: above the diagonal

                // pass 3: out_t = sum_j att[t, j] v_j
                T* ot = out + (((long)b * Tn + t) * NH + h) * HS;
                for (int i = 0; i < HS; i++) {
                    double acc = 0.0;
                    for (int j = 0; j <= t; j++)
                        acc += score[j] * inv_sum * (double)v[(((long)b * Tn + j) * NKV + hk) * HS + i];
                    ot[i] = (T)acc;
                }
            }
        }
    }
}

template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* att, const T* q, const T* k, const T* v, int B,
                        int Tn, int NH, int NKV, int HS, double scale) {
    // dout (B, T, NH, HS), att (B, NH, T, T) -> dq (B, T, NH, HS) +=, dk/dv (B, T, NKV, HS) +=
    // With P = att (row t), S = scaled scores, O = P V:
    //   dP[t, j] = dout_t · v_j                         dv_j += P[t, j] dout_t
    //   dS[t, j] = P[t, j] (dP[t, j] - sum_j' P[t, j'] dP[t, j'])     (softmax Jacobian)
    //   dq_t += dS[t, j] k_j / sqrt(HS)                 dk_j += dS[t, j] q_t / sqrt(HS)
    // Masked keys have P exactly 0, hence dS = 0 and no gradient: the segment and sliding-window masks need no
    // second look. Query heads sharing a kv head all accumulate into it (the backward of HF repeat_kv is a sum).
    // scale: the forward's (0: 1 / sqrt(HS)).
    QLS_ASSERT(NKV > 0 && NH % NKV == 0);
    const int rep = NH / NKV;
    if (scale <= 0) scale = 1.0 / std::sqrt((double)HS);
    std::vector<double> dp((size_t)Tn); // dP of one row
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < Tn; t++) {
            for (int h = 0; h < NH; h++) {
                const int hk = h / rep;
                const long qoff = (((long)b * Tn + t) * NH + h) * HS;
                const T* qt = q + qoff;
                const T* dout_t = dout + qoff;
                const T* att_row = att + (((long)b * NH + h) * Tn + t) * Tn;

                // dP and the row sum sum_j P dP
                double pdp = 0.0;
                for (int j = 0; j <= t; j++) {
                    const T* vj = v + (((long)b * Tn + j) * NKV + hk) * HS;
                    double acc = 0.0;
                    for (int i = 0; i < HS; i++) acc += (double)dout_t[i] * (double)vj[i];
                    dp[j] = acc;
                    pdp += (double)att_row[j] * acc;
                }

                for (int j = 0; j <= t; j++) {
                    const double p = (double)att_row[j];
                    if (p == 0.0) continue; // masked (or underflowed): contributes nothing
                    const long kvoff = (((long)b * Tn + j) * NKV + hk) * HS;
                    if (dv)
                        for (int i = 0; i < HS; i++) dv[kvoff + i] += (T)(p * (double)dout_t[i]);
                    const double ds = p * (dp[j] - pdp) * scale; // dS / sqrt(HS), shared by dq and dk
                    if (dq)
                        for (int i = 0; i < HS; i++) dq[qoff + i] += (T)(ds * (double)k[kvoff + i]);
                    if (dk)
                        for (int i = 0; i < HS; i++) dk[kvoff + i] += (T)(ds * (double)qt[i]);
                }
            }
        }
    }
}

// ---- SwiGLU -------------------------------------------------------------------------------------------
// Shazeer 2020 (https://arxiv.org/abs/2002.05202), eq. 5: FFN_SwiGLU = (Swish_1(x W) ⊗ x V) W2; here the
// elementwise middle: out = silu(gate) * up with silu(x) = Swish_1(x) = x sigmoid(x) (HF act_fn = SiLU,
// down_proj(act_fn(gate_proj(x)) * up_proj(x))).

namespace {

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); } // exp overflow -> inf -> 0: still right

} // namespace

template <class T> void swiglu_forward(T* out, const T* gate, const T* up, long n) {
    // gate, up, out (n)
    for (long i = 0; i < n; i++) {
        const double g = (double)gate[i];
        out[i] = (T)(g * sigmoid(g) * (double)up[i]);
    }
}

template <class T> void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, long n) {
    // d silu(x)/dx = s + x s (1 - s) = s (1 + x (1 - s)), s = sigmoid(x)
    for (long i = 0; i < n; i++) {
        const double g = (double)gate[i];
        const double s = sigmoid(g);
        const double d = (double)dout[i];
        if (dgate) dgate[i] += (T)(d * (double)up[i] * s * (1.0 + g * (1.0 - s)));
        if (dup) dup[i] += (T)(d * g * s);
    }
}

// ---- GeGLU (tanh GELU) --------------------------------------------------------------------------------
// Shazeer 2020 eq. 4 (GEGLU) with GELU's tanh approximation (Hendrycks & Gimpel 2016, https://arxiv.org/abs/1606.08415;
// torch gelu(approximate="tanh"), HF "gelu_pytorch_tanh"): gelu(x) = 0.5 x (1 + tanh(k (x + 0.044715 x³))),
// k = sqrt(2/π). Gemma3MLP: down_proj(act_fn(gate_proj(x)) * up_proj(x)).

namespace {

constexpr double k_gelu_k = 0.7978845608028654; // sqrt(2 / pi)
constexpr double k_gelu_c = 0.044715;

} // namespace

template <class T> void geglu_forward(T* out, const T* gate, const T* up, long n) {
    // gate, up, out (n)
    for (long i = 0; i < n; i++) {
        const double g = (double)gate[i];
        const double th = std::tanh(k_gelu_k * (g + k_gelu_c * g * g * g));
        out[i] = (T)(0.5 * g * (1.0 + th) * (double)up[i]);
    }
}

template <class T> void geglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, long n) {
    // d gelu/dx = 0.5 (1 + th) + 0.5 x (1 - th²) k (1 + 3 · 0.044715 x²), th = tanh(k (x + 0.044715 x³))
    for (long i = 0; i < n; i++) {
        const double g = (double)gate[i];
        const double th = std::tanh(k_gelu_k * (g + k_gelu_c * g * g * g));
        const double d = (double)dout[i];
        const double dgelu = 0.5 * (1.0 + th) + 0.5 * g * (1.0 - th * th) * k_gelu_k * (1.0 + 3.0 * k_gelu_c * g * g);
        if (dgate) dgate[i] += (T)(d * (double)up[i] * dgelu);
        if (dup) dup[i] += (T)(d * 0.5 * g * (1.0 + th));
    }
}

// ---- residual -----------------------------------------------------------------------------------------

template <class T> void residual_forward(T* out, const T* a, const T* b, long n) {
    // out (n) = a + b; the backward is "both inputs receive dout", which callers do by accumulating dout
    // into both input gradients (no separate function).
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// ---- cross-entropy ------------------------------------------------------------------------------------
// loss = -log softmax(z)[y] = logsumexp(z) - z_y, with logsumexp(z) = m + log sum exp(z - m), m = max z.
// d loss / dz = softmax(z) - onehot(y).

namespace {

// max and sum exp(z - max) of one row, in double.
template <class T> void row_softmax_stats(const T* z, int V, double& maxval, double& sum) {
    maxval = -INFINITY;
    for (int i = 0; i < V; i++)
        if ((double)z[i] > maxval) maxval = (double)z[i];
    sum = 0.0;
    for (int i = 0; i < V; i++) sum += std::exp((double)z[i] - maxval);
}

} // namespace

template <class T> int cross_entropy_forward(T* losses, const T* logits, const int* targets, int N, int V) {
    // logits (N, V), targets (N) in [0, V) or -1 -> losses (N); returns the number of targets != -1
    int count = 0;
    for (int n = 0; n < N; n++) {
        const int y = targets[n];
        if (y == -1) {
            losses[n] = (T)0;
            continue;
        }
        QLS_ASSERT(y >= 0 && y < V);
        const T* z = logits + (long)n * V;
        double maxval, sum;
        row_softmax_stats(z, V, maxval, sum);
        losses[n] = (T)(maxval + std::log(sum) - (double)z[y]);
        count++;
    }
    return count;
}

template <class T> void cross_entropy_backward(T* dlogits, const T* logits, const int* targets, int N, int V, T dloss) {
    // dlogits (N, V) += dloss * (softmax(logits) - onehot(target)); rows with target -1 are untouched.
    if (!dlogits) return;
    for (int n = 0; n < N; n++) {
        const int y = targets[n];
        if (y == -1) continue;
        QLS_ASSERT(y >= 0 && y < V);
        const T* z = logits + (long)n * V;
        double maxval, sum;
        row_softmax_stats(z, V, maxval, sum);
        T* dz = dlogits + (long)n * V;
        for (int i = 0; i < V; i++) {
            const double p = std::exp((double)z[i] - maxval) / sum;
            dz[i] += (T)((double)dloss * (p - (i == y ? 1.0 : 0.0)));
        }
    }
}

// ---- LoRA ----------------------------------------------------------------------------------------------
// Composed of the linear op: the adapter is two skinny matmuls around a scale (PEFT LoraLayer.forward).

template <class T>
void lora_forward(T* out, T* xa, const T* xd, const T* A, const T* B, int N, int IC, int OC, int r, T scale) {
    matmul_forward(xa, xd, A, N, IC, r); // xa (N, r)
    std::vector<T> tmp((size_t)N * OC);
    matmul_forward(tmp.data(), xa, B, N, r, OC); // (N, OC)
    for (size_t i = 0; i < tmp.size(); i++) out[i] += scale * tmp[i];
}

template <class T>
void lora_backward(T* dxd, T* dA, T* dB, const T* dout, const T* xd, const T* xa, const T* A, const T* B, int N, int IC,
                   int OC, int r, T scale) {
    std::vector<T> sdout((size_t)N * OC);
    for (size_t i = 0; i < sdout.size(); i++) sdout[i] = scale * dout[i];
    std::vector<T> dxa((size_t)N * r, T(0));
    matmul_backward(dxa.data(), dB, sdout.data(), xa, B, N, r, OC); // dxa = s·dout·B ; dB += s·doutᵀ·xa
    matmul_backward(dxd, dA, dxa.data(), xd, A, N, IC, r);          // dxd += dxa·A ; dA += dxaᵀ·xd
}

// ---- explicit instantiations: float (the spec) and double (gradient checks) ---------------------------

#define QLS_CPU_OPS_INSTANTIATE(T)                                                                                     \
    template void embedding_forward<T>(T*, const int*, const T*, int, int);                                            \
    template void embedding_backward<T>(T*, const T*, const int*, int, int);                                           \
    template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int, int, T, T);                                      \
    template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int, int, T);                    \
    template void bias_forward<T>(T*, const T*, int, int);                                                             \
    template void bias_backward<T>(T*, const T*, int, int);                                                            \
    template void scale_inplace<T>(T*, T, long);                                                                       \
    template void geglu_forward<T>(T*, const T*, const T*, long);                                                      \
    template void geglu_backward<T>(T*, T*, const T*, const T*, const T*, long);                                       \
    template void matmul_forward<T>(T*, const T*, const T*, int, int, int);                                            \
    template void matmul_backward<T>(T*, T*, const T*, const T*, const T*, int, int, int);                             \
    template void lora_forward<T>(T*, T*, const T*, const T*, const T*, int, int, int, int, T);                        \
    template void lora_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int, int, int, int,   \
                                   T);                                                                                 \
    template void rope_forward<T>(T*, const int*, const float*, int, int, int);                                        \
    template void rope_backward<T>(T*, const int*, const float*, int, int, int);                                       \
    template void attention_forward<T>(T*, T*, const T*, const T*, const T*, const int*, int, int, int, int, int, int, \
                                       double);                                                                        \
    template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int, int, int,   \
                                        int, int, double);                                                             \
    template void swiglu_forward<T>(T*, const T*, const T*, long);                                                     \
    template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, long);                                      \
    template void residual_forward<T>(T*, const T*, const T*, long);                                                   \
    template int cross_entropy_forward<T>(T*, const T*, const int*, int, int);                                         \
    template void cross_entropy_backward<T>(T*, const T*, const int*, int, int, T);

QLS_CPU_OPS_INSTANTIATE(float)
QLS_CPU_OPS_INSTANTIATE(double)

#undef QLS_CPU_OPS_INSTANTIATE

} // namespace qls::cpu
