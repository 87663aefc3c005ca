// Qt Test suite for the CPU reference ops (engine/src/backends/cpu/ops.h): hand-computed forward values, finite-difference gradient checks in double, float-vs-double agreement, and the += gradient convention.
#include "backends/cpu/ops.h"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace qls;
using vec = std::vector<double>;

namespace {

// Shapes deliberately not round, so that a swapped index or stride shows up.
constexpr int kB = 2, kT = 5, kNH = 4, kNKV = 2, kHS = 6, kC = 10, kV = 13, kIC = 7, kOC = 9;
constexpr int kN = kB * kT;
constexpr int kH = 7; // SwiGLU hidden size

// Finite differences: central differences with step h = 1e-6 in double. The truncation error is O(h^2) ~ 1e-12
// and, because the loss difference is formed output-by-output (sum_k (out+_k - out-_k) R_k, see fd_check) and
// the actual step (x+h) - (x-h) is used, the rounding error stays around 1e-10 relative. An analytic gradient
// element passes when |a - n| / max(1e-8, |a| + |n|) < 1e-6; a wrong formula gives errors of order 1.
constexpr double kFdStep = 1e-6;
constexpr double kFdTol = 1e-6;

vec rand_vec(std::mt19937_64& rng, size_t n, double lo = -1.0, double hi = 1.0) {
    std::uniform_real_distribution<double> u(lo, hi);
    vec v(n);
    for (double& x : v) x = u(rng);
    return v;
}

// HF LlamaRotaryEmbedding: inv_freq[i] = 1 / theta^(2i / HS), computed in float.
std::vector<float> hf_inv_freq(int HS, float theta = 10000.0f) {
    std::vector<float> f(size_t(HS / 2));
    for (int i = 0; i < HS / 2; i++) f[size_t(i)] = 1.0f / std::pow(theta, float(2 * i) / float(HS));
    return f;
}

struct fd_report {
    double worst = 0.0; // worst relative error
    long index = -1;
    double analytic = 0.0, numeric = 0.0;
    std::string error; // a size mismatch
};

// Checks analytic == dL/dx for L = sum_k forward()[k] * R[k], where forward() reads x (perturbed in place).
fd_report fd_check(vec& x, const vec& analytic, const vec& R, const std::function<vec()>& forward) {
    fd_report rep;
    if (analytic.size() != x.size()) {
        rep.error = "analytic gradient has " + std::to_string(analytic.size()) + " elements, input has " +
                    std::to_string(x.size());
        rep.worst = INFINITY;
        return rep;
    }
    for (size_t i = 0; i < x.size(); i++) {
        const double x0 = x[i];
        x[i] = x0 + kFdStep;
        const double xp = x[i];
        const vec op = forward();
        x[i] = x0 - kFdStep;
        const double xm = x[i];
        const vec om = forward();
        x[i] = x0;
        if (op.size() != R.size()) {
            rep.error = "output has " + std::to_string(op.size()) + " elements, projection has " +
                        std::to_string(R.size());
            rep.worst = INFINITY;
            return rep;
        }
        double diff = 0.0;
        for (size_t k = 0; k < op.size(); k++) diff += (op[k] - om[k]) * R[k];
        const double num = diff / (xp - xm);
        const double a = analytic[i];
        const double rel = std::abs(a - num) / std::max(1e-8, std::abs(a) + std::abs(num));
        if (rep.index < 0 || rel > rep.worst) {
            rep.worst = rel;
            rep.index = long(i);
            rep.analytic = a;
            rep.numeric = num;
        }
    }
    return rep;
}

std::string describe(const char* label, const fd_report& r) {
    if (!r.error.empty()) return std::string(label) + ": " + r.error;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s: worst relative error %.3e at element %ld (analytic %.12g, numeric %.12g)",
                  label, r.worst, r.index, r.analytic, r.numeric);
    return buf;
}

} // namespace

// Runs one finite-difference check and fails the test with the worst element when it is over the tolerance.
#define QLS_CHECK_GRAD(label, x, analytic, R, forward)            \
    do {                                                          \
        const fd_report rep_ = fd_check(x, analytic, R, forward); \
        const std::string msg_ = describe(label, rep_);           \
        if (rep_.worst < kFdTol) qInfo("%s", msg_.c_str());       \
        QVERIFY2(rep_.worst < kFdTol, msg_.c_str());              \
    } while (0)

// Element-wise |a - b| <= tol * max(1, |b|) for two vectors of the same size, with the worst element on failure.
#define QLS_COMPARE_VEC(label, a, b, tol)                                                                             \
    do {                                                                                                              \
        QVERIFY2((a).size() == (b).size(), (std::string(label) + ": size mismatch").c_str());                         \
        double worst_ = 0.0;                                                                                          \
        size_t at_ = 0;                                                                                               \
        for (size_t i_ = 0; i_ < (a).size(); i_++) {                                                                  \
            const double e_ = std::abs(double((a)[i_]) - double((b)[i_])) / std::max(1.0, std::abs(double((b)[i_]))); \
            if (e_ > worst_ || std::isnan(e_)) {                                                                      \
                worst_ = std::isnan(e_) ? INFINITY : e_;                                                              \
                at_ = i_;                                                                                             \
            }                                                                                                         \
        }                                                                                                             \
        QVERIFY2(worst_ <= (tol),                                                                                     \
                 (std::string(label) + ": element " + std::to_string(at_) + " is " +                                  \
                  std::to_string(double((a)[at_])) + ", expected " + std::to_string(double((b)[at_])))                \
                     .c_str());                                                                                       \
    } while (0)

// The reference ops in one template, so the float instantiation can be compared with the double one. Every
// forward output and every gradient of every op on fixed random inputs, labelled, as doubles.
struct op_inputs {
    std::vector<int> tokens, pos, segment, targets;
    std::vector<float> inv_freq;
    vec wte, x, w_norm, w_lin, x_lin, q, k, v, gate, up, logits, d_c, d_oc, d_q, d_h, d_lin;
};

op_inputs make_inputs(uint64_t seed) {
    std::mt19937_64 rng(seed);
    op_inputs in;
    in.tokens = {3, 0, 12, 3, 7, 7, 1, 3, 5, 11}; // repeats: 3 three times, 7 twice
    in.pos = {0, 1, 2, 3, 4, 0, 1, 2, 57, 1000};
    in.segment = {1, 1, 2, 2, 2, 5, 6, 6, 6, 9};
    in.targets = {4, -1, 0, 12, 7, 2, -1, 9, 3, 1};
    in.inv_freq = hf_inv_freq(kHS);
    in.wte = rand_vec(rng, size_t(kV) * kC);
    in.x = rand_vec(rng, size_t(kN) * kC);
    in.w_norm = rand_vec(rng, size_t(kC));
    in.w_lin = rand_vec(rng, size_t(kOC) * kIC);
    in.x_lin = rand_vec(rng, size_t(kN) * kIC);
    in.q = rand_vec(rng, size_t(kN) * kNH * kHS);
    in.k = rand_vec(rng, size_t(kN) * kNKV * kHS);
    in.v = rand_vec(rng, size_t(kN) * kNKV * kHS);
    in.gate = rand_vec(rng, size_t(kN) * kH, -4.0, 4.0);
    in.up = rand_vec(rng, size_t(kN) * kH);
    in.logits = rand_vec(rng, size_t(kN) * kV, -3.0, 3.0);
    in.d_c = rand_vec(rng, size_t(kN) * kC);
    in.d_oc = rand_vec(rng, size_t(kN) * kOC);
    in.d_q = rand_vec(rng, size_t(kN) * kNH * kHS);
    in.d_h = rand_vec(rng, size_t(kN) * kH);
    return in;
}

template <class T> std::vector<T> to(const vec& v) { return std::vector<T>(v.begin(), v.end()); }
template <class T> vec back(const std::vector<T>& v) { return vec(v.begin(), v.end()); }

template <class T> std::vector<std::pair<std::string, vec>> run_all_ops(const op_inputs& in) {
    std::vector<std::pair<std::string, vec>> r;
    const std::vector<T> wte = to<T>(in.wte), x = to<T>(in.x), w_norm = to<T>(in.w_norm), w_lin = to<T>(in.w_lin),
                         x_lin = to<T>(in.x_lin), q = to<T>(in.q), k = to<T>(in.k), v = to<T>(in.v),
                         gate = to<T>(in.gate), up = to<T>(in.up), logits = to<T>(in.logits), d_c = to<T>(in.d_c),
                         d_oc = to<T>(in.d_oc), d_q = to<T>(in.d_q), d_h = to<T>(in.d_h);
    {
        std::vector<T> out(size_t(kN) * kC), dwte(wte.size());
        cpu::embedding_forward(out.data(), in.tokens.data(), wte.data(), kN, kC);
        cpu::embedding_backward(dwte.data(), d_c.data(), in.tokens.data(), kN, kC);
        r.emplace_back("embedding out", back(out));
        r.emplace_back("embedding dwte", back(dwte));
    }
    {
        std::vector<T> out(x.size()), rstd(static_cast<size_t>(kN)), dx(x.size()), dw(w_norm.size());
        cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w_norm.data(), kN, kC, T(1e-5));
        cpu::rmsnorm_backward(dx.data(), dw.data(), d_c.data(), x.data(), w_norm.data(), rstd.data(), kN, kC);
        r.emplace_back("rmsnorm out", back(out));
        r.emplace_back("rmsnorm rstd", back(rstd));
        r.emplace_back("rmsnorm dinp", back(dx));
        r.emplace_back("rmsnorm dweight", back(dw));
    }
    {
        std::vector<T> out(size_t(kN) * kOC), dx(x_lin.size()), dw(w_lin.size());
        cpu::matmul_forward(out.data(), x_lin.data(), w_lin.data(), kN, kIC, kOC);
        cpu::matmul_backward(dx.data(), dw.data(), d_oc.data(), x_lin.data(), w_lin.data(), kN, kIC, kOC);
        r.emplace_back("matmul out", back(out));
        r.emplace_back("matmul dinp", back(dx));
        r.emplace_back("matmul dweight", back(dw));
    }
    {
        std::vector<T> xr = q, dx = d_q;
        cpu::rope_forward(xr.data(), in.pos.data(), in.inv_freq.data(), kN, kNH, kHS);
        cpu::rope_backward(dx.data(), in.pos.data(), in.inv_freq.data(), kN, kNH, kHS);
        r.emplace_back("rope out", back(xr));
        r.emplace_back("rope dx", back(dx));
    }
    for (const int* seg : {static_cast<const int*>(nullptr), in.segment.data()}) {
        const std::string tag = seg ? "attention+segment " : "attention ";
        std::vector<T> out(q.size()), att(size_t(kB) * kNH * kT * kT), dq(q.size()), dk(k.size()), dv(v.size());
        cpu::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), seg, kB, kT, kNH, kNKV, kHS);
        cpu::attention_backward(dq.data(), dk.data(), dv.data(), d_q.data(), att.data(), q.data(), k.data(), v.data(),
                                kB, kT, kNH, kNKV, kHS);
        r.emplace_back(tag + "out", back(out));
        r.emplace_back(tag + "att", back(att));
        r.emplace_back(tag + "dq", back(dq));
        r.emplace_back(tag + "dk", back(dk));
        r.emplace_back(tag + "dv", back(dv));
    }
    {
        std::vector<T> out(gate.size()), dg(gate.size()), du(up.size());
        cpu::swiglu_forward(out.data(), gate.data(), up.data(), long(gate.size()));
        cpu::swiglu_backward(dg.data(), du.data(), d_h.data(), gate.data(), up.data(), long(gate.size()));
        r.emplace_back("swiglu out", back(out));
        r.emplace_back("swiglu dgate", back(dg));
        r.emplace_back("swiglu dup", back(du));
    }
    {
        std::vector<T> out(x.size());
        cpu::residual_forward(out.data(), x.data(), d_c.data(), long(x.size()));
        r.emplace_back("residual out", back(out));
    }
    {
        std::vector<T> losses(static_cast<size_t>(kN)), dl(logits.size());
        const int count = cpu::cross_entropy_forward(losses.data(), logits.data(), in.targets.data(), kN, kV);
        cpu::cross_entropy_backward(dl.data(), logits.data(), in.targets.data(), kN, kV, T(1) / T(count));
        r.emplace_back("cross_entropy losses", back(losses));
        r.emplace_back("cross_entropy dlogits", back(dl));
    }
    return r;
}

class tst_ops : public QObject {
    Q_OBJECT

private slots:
    // ---- forward values --------------------------------------------------------------------------------

    void embedding_values() {
        // wte (4, 3): row r = [10r, 10r+1, 10r+2]
        const vec wte = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32};
        const std::vector<int> tokens = {2, 0, 2, 3};
        vec out(4 * 3, -1.0);
        cpu::embedding_forward(out.data(), tokens.data(), wte.data(), 4, 3);
        const vec expect = {20, 21, 22, 0, 1, 2, 20, 21, 22, 30, 31, 32};
        QLS_COMPARE_VEC("embedding", out, expect, 0.0);
    }

    void rmsnorm_values() {
        // x = [1, 2, 3, 4]: mean(x^2) = 30 / 4 = 7.5, rstd = 1 / sqrt(7.5 + eps); 1/sqrt(7.5) = 0.36514837167011072
        const vec x = {1, 2, 3, 4}, w = {1, 0.5, 2, -1};
        vec out(4), rstd(1);
        cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), 1, 4, 0.0);
        QVERIFY(std::abs(rstd[0] - 0.36514837167011072) < 1e-15);
        const double r = 0.36514837167011072;
        QLS_COMPARE_VEC("rmsnorm eps=0", out, (vec{1 * r, 1 * r, 6 * r, -4 * r}), 1e-15);
        // with eps = 0.5: rstd = 1 / sqrt(8) exactly
        cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), 1, 4, 0.5);
        const double r2 = 1.0 / std::sqrt(8.0);
        QVERIFY(std::abs(rstd[0] - r2) < 1e-15);
        QLS_COMPARE_VEC("rmsnorm eps=0.5", out, (vec{r2, r2, 6 * r2, -4 * r2}), 1e-15);
        // the output has RMS 1 when weight = 1 and eps = 0
        const vec ones(4, 1.0);
        cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), ones.data(), 1, 4, 0.0);
        double ms = 0;
        for (double o : out) ms += o * o;
        QVERIFY(std::abs(ms / 4 - 1.0) < 1e-14);
    }

    void matmul_values() {
        // inp (2, 3), weight (2, 3): out = inp · weightᵀ (2, 2)
        const vec inp = {1, 2, 3, 4, 5, 6}, w = {1, 0, -1, 0.5, 1, 2};
        vec out(4);
        cpu::matmul_forward(out.data(), inp.data(), w.data(), 2, 3, 2);
        // row 0: [1-3, 0.5+2+6] ; row 1: [4-6, 2+5+12]
        QLS_COMPARE_VEC("matmul", out, (vec{-2, 8.5, -2, 19}), 0.0);
    }

    void rope_values() {
        // pairs (i, i + HS/2): HS = 4, inv_freq = [1, 0.25] (exact in float, so the angles are exact).
        const std::vector<float> inv = {1.0f, 0.25f};
        const vec x0 = {1, 2, 3, 4};
        for (int p : {0, 1, 3}) {
            vec x = x0;
            cpu::rope_forward(x.data(), &p, inv.data(), 1, 1, 4);
            const double c0 = std::cos(p * 1.0), s0 = std::sin(p * 1.0), c1 = std::cos(p * 0.25),
                         s1 = std::sin(p * 0.25);
            const vec expect = {1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1};
            const std::string label = "rope pos " + std::to_string(p);
            QLS_COMPARE_VEC(label.c_str(), x, expect, 1e-15);
        }
        // position 0 is the identity (bit-exact) and every position preserves the norm of each pair.
        std::mt19937_64 rng(11);
        const std::vector<float> hf = hf_inv_freq(kHS);
        const std::vector<int> pos = {0, 1, 2, 17, 300, 4095};
        const vec xin = rand_vec(rng, pos.size() * kNH * kHS);
        vec x = xin;
        cpu::rope_forward(x.data(), pos.data(), hf.data(), int(pos.size()), kNH, kHS);
        for (int h = 0; h < kNH * kHS; h++) QCOMPARE(x[size_t(h)], xin[size_t(h)]);
        for (size_t n = 0; n < pos.size(); n++)
            for (int h = 0; h < kNH; h++)
                for (int i = 0; i < kHS / 2; i++) {
                    const size_t a = (n * kNH + size_t(h)) * kHS + size_t(i), b = a + kHS / 2;
                    const double before = xin[a] * xin[a] + xin[b] * xin[b], after = x[a] * x[a] + x[b] * x[b];
                    QVERIFY(std::abs(before - after) < 1e-14);
                }
        // The angle is pos * inv_freq rounded to float as in HF. At pos 4095 the float rounding of the angle of
        // pair 1 moves cos by more than 1e-6, so this distinguishes the float angle from a double one.
        {
            const int p = 4095;
            vec y = {0, 1, 0, 0, 0, 0}; // x[1] = 1: pair (1, 4)
            cpu::rope_forward(y.data(), &p, hf.data(), 1, 1, kHS);
            const float angle_f = float(p) * hf[1];
            const double angle_d = double(p) * double(hf[1]);
            QVERIFY(std::abs(std::cos(double(angle_f)) - std::cos(angle_d)) > 1e-6);
            QVERIFY(std::abs(y[1] - std::cos(double(angle_f))) < 1e-15);
            QVERIFY(std::abs(y[4] - std::sin(double(angle_f))) < 1e-15);
        }
        // rope_backward undoes rope_forward (the rotation is orthogonal).
        vec z = x;
        cpu::rope_backward(z.data(), pos.data(), hf.data(), int(pos.size()), kNH, kHS);
        QLS_COMPARE_VEC("rope inverse", z, xin, 1e-14);
    }

    void attention_single_token_returns_v() {
        // T = 1: the only visible key is itself, probability 1, out = v of the head's kv head (h / (NH/NKV)).
        std::mt19937_64 rng(5);
        const vec q = rand_vec(rng, size_t(kB) * kNH * kHS), k = rand_vec(rng, size_t(kB) * kNKV * kHS),
                  v = rand_vec(rng, size_t(kB) * kNKV * kHS);
        vec out(q.size()), att(size_t(kB) * kNH);
        cpu::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), nullptr, kB, 1, kNH, kNKV, kHS);
        for (double a : att) QCOMPARE(a, 1.0);
        vec expect(out.size());
        for (int b = 0; b < kB; b++)
            for (int h = 0; h < kNH; h++)
                for (int i = 0; i < kHS; i++)
                    expect[size_t((b * kNH + h) * kHS + i)] = v[size_t((b * kNKV + h / (kNH / kNKV)) * kHS + i)];
        QLS_COMPARE_VEC("attention T=1", out, expect, 1e-15);
    }

    void attention_hand_computed() {
        // B = 1, T = 2, one head, HS = 2. q1 = [1, 0], k0 = [1, 0], k1 = [0, 3] -> row 1 scores
        // s0 = 1 / sqrt(2), s1 = 0; p0 = e^s0 / (e^s0 + 1); out1 = p0 v0 + (1 - p0) v1. Row 0: out0 = v0.
        const vec q = {5, -7, 1, 0}, k = {1, 0, 0, 3}, v = {2, -1, 4, 6};
        vec out(4), att(4, -1.0);
        cpu::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), nullptr, 1, 2, 1, 1, 2);
        const double e = std::exp(1.0 / std::sqrt(2.0)), p0 = e / (e + 1.0), p1 = 1.0 / (e + 1.0);
        QLS_COMPARE_VEC("attention att", att, (vec{1, 0, p0, p1}), 1e-15);
        QLS_COMPARE_VEC("attention out", out, (vec{2, -1, p0 * 2 + p1 * 4, p0 * -1 + p1 * 6}), 1e-15);
        // large scores: subtracting the row max keeps the softmax finite
        // (row 1 scores 4000/sqrt2 and 8000/sqrt2: exp() of either overflows without the shift)
        const vec qb = {0, 0, 4000, 0}, kb = {1, 0, 2, 0};
        cpu::attention_forward(out.data(), att.data(), qb.data(), kb.data(), v.data(), nullptr, 1, 2, 1, 1, 2);
        for (double a : att) QVERIFY(std::isfinite(a));
        QCOMPARE(att[3], 1.0); // exp(4000 (1 - 2) / sqrt 2) underflows to 0 next to exp(0) = 1
        QCOMPARE(att[2], 0.0);
    }

    void attention_causal_mask() {
        const op_inputs in = make_inputs(21);
        vec out(in.q.size()), att(size_t(kB) * kNH * kT * kT, -1.0);
        cpu::attention_forward(out.data(), att.data(), in.q.data(), in.k.data(), in.v.data(), nullptr, kB, kT, kNH,
                               kNKV, kHS);
        // rows sum to 1 and entries above the diagonal are exactly 0
        for (int bh = 0; bh < kB * kNH; bh++)
            for (int t = 0; t < kT; t++) {
                double sum = 0;
                for (int j = 0; j < kT; j++) {
                    const double a = att[size_t((bh * kT + t) * kT + j)];
                    if (j > t) QCOMPARE(a, 0.0);
                    else QVERIFY(a > 0.0);
                    sum += a;
                }
                QVERIFY(std::abs(sum - 1.0) < 1e-14);
            }
        // changing the last token's k and v does not change any earlier output (bit-exact), but does change
        // the last one
        vec k2 = in.k, v2 = in.v;
        for (int b = 0; b < kB; b++)
            for (int i = 0; i < kNKV * kHS; i++) {
                k2[size_t((b * kT + kT - 1) * kNKV * kHS + i)] += 0.7;
                v2[size_t((b * kT + kT - 1) * kNKV * kHS + i)] -= 0.9;
            }
        vec out2(out.size()), att2(att.size());
        cpu::attention_forward(out2.data(), att2.data(), in.q.data(), k2.data(), v2.data(), nullptr, kB, kT, kNH, kNKV,
                               kHS);
        for (int b = 0; b < kB; b++)
            for (int t = 0; t < kT; t++)
                for (int i = 0; i < kNH * kHS; i++) {
                    const size_t at = size_t((b * kT + t) * kNH * kHS + i);
                    if (t < kT - 1) QCOMPARE(out2[at], out[at]);
                    else QVERIFY(std::abs(out2[at] - out[at]) > 1e-6);
                }
    }

    void attention_segment_mask() {
        // batch 0: segments [1 1 2 2 2]. Tokens 2..4 (segment 2) see nothing of segment 1: their outputs equal
        // attention over the sub-sequence 2..4 alone, and do not change when tokens 0..1 change.
        const op_inputs in = make_inputs(22);
        const std::vector<int> seg = {1, 1, 2, 2, 2, 4, 4, 4, 4, 4};
        vec out(in.q.size()), att(size_t(kB) * kNH * kT * kT);
        cpu::attention_forward(out.data(), att.data(), in.q.data(), in.k.data(), in.v.data(), seg.data(), kB, kT, kNH,
                               kNKV, kHS);
        for (int h = 0; h < kNH; h++)
            for (int t = 2; t < kT; t++)
                for (int j = 0; j < 2; j++) QCOMPARE(att[size_t(((0 * kNH + h) * kT + t) * kT + j)], 0.0);

        // the 3-token sub-sequence alone
        const int S = 3, q0 = 2;
        vec qs(size_t(S) * kNH * kHS), ks(size_t(S) * kNKV * kHS), vs(size_t(S) * kNKV * kHS);
        std::copy_n(in.q.begin() + q0 * kNH * kHS, qs.size(), qs.begin());
        std::copy_n(in.k.begin() + q0 * kNKV * kHS, ks.size(), ks.begin());
        std::copy_n(in.v.begin() + q0 * kNKV * kHS, vs.size(), vs.begin());
        vec outs(qs.size()), atts(size_t(kNH) * S * S);
        cpu::attention_forward(outs.data(), atts.data(), qs.data(), ks.data(), vs.data(), nullptr, 1, S, kNH, kNKV,
                               kHS);
        const vec got(out.begin() + q0 * kNH * kHS, out.begin() + (q0 + S) * kNH * kHS);
        QLS_COMPARE_VEC("segment 2 == standalone", got, outs, 1e-15);

        // changing segment 1 (tokens 0, 1) leaves segment 2 untouched (bit-exact) and changes token 1
        vec k2 = in.k, v2 = in.v;
        for (int i = 0; i < 2 * kNKV * kHS; i++) {
            k2[size_t(i)] += 0.5;
            v2[size_t(i)] += 0.5;
        }
        vec out2(out.size()), att2(att.size());
        cpu::attention_forward(out2.data(), att2.data(), in.q.data(), k2.data(), v2.data(), seg.data(), kB, kT, kNH,
                               kNKV, kHS);
        for (int t = 0; t < kT; t++)
            for (int i = 0; i < kNH * kHS; i++) {
                const size_t at = size_t(t * kNH * kHS + i);
                if (t >= 2) QCOMPARE(out2[at], out[at]);
                else QVERIFY(std::abs(out2[at] - out[at]) > 1e-6);
            }
        // batch 1 is a single segment: identical to no mask
        vec outn(out.size()), attn(att.size());
        cpu::attention_forward(outn.data(), attn.data(), in.q.data(), in.k.data(), in.v.data(), nullptr, kB, kT, kNH,
                               kNKV, kHS);
        const vec b1(out.begin() + kT * kNH * kHS, out.end()), b1n(outn.begin() + kT * kNH * kHS, outn.end());
        QLS_COMPARE_VEC("single segment == causal", b1, b1n, 0.0);
    }

    void swiglu_values() {
        // silu(x) = x / (1 + e^-x): silu(1) * 2 = 2 / (1 + e^-1) = 1.4621171572600098
        const vec gate = {0.0, 1.0, -1.0, 50.0, -800.0}, up = {3.0, 2.0, 1.0, 0.5, 1.0};
        vec out(5);
        cpu::swiglu_forward(out.data(), gate.data(), up.data(), 5);
        QCOMPARE(out[0], 0.0);
        QVERIFY(std::abs(out[1] - 1.4621171572600098) < 1e-15);
        QVERIFY(std::abs(out[2] - (-1.0 / (1.0 + std::exp(1.0)))) < 1e-15); // -0.2689414213699951
        QVERIFY(std::abs(out[3] - 25.0) < 1e-12);
        QVERIFY(std::isfinite(out[4]) && std::abs(out[4]) < 1e-300); // exp overflow in sigmoid handled
        // gradient at 0: silu'(0) = 1/2, silu(0) = 0
        vec dg(1, 0.0), du(1, 0.0);
        const vec d = {1.0};
        cpu::swiglu_backward(dg.data(), du.data(), d.data(), gate.data(), up.data(), 1);
        QCOMPARE(dg[0], 1.5);
        QCOMPARE(du[0], 0.0);
    }

    void residual_values() {
        const vec a = {1, -2, 3.5}, b = {0.25, 2, -1};
        vec out(3);
        cpu::residual_forward(out.data(), a.data(), b.data(), 3);
        QLS_COMPARE_VEC("residual", out, (vec{1.25, 0, 2.5}), 0.0);
    }

    void cross_entropy_values() {
        // uniform logits: loss = log V for every counted row; the ignored row has loss 0 and a zero gradient row
        const int V = kV;
        vec logits(size_t(3) * V, 0.37), losses(3, -1.0), dl(size_t(3) * V, 0.0);
        const std::vector<int> targets = {4, -1, 12};
        QCOMPARE(cpu::cross_entropy_forward(losses.data(), logits.data(), targets.data(), 3, V), 2);
        QVERIFY(std::abs(losses[0] - std::log(double(V))) < 1e-14);
        QCOMPARE(losses[1], 0.0);
        QVERIFY(std::abs(losses[2] - std::log(double(V))) < 1e-14);
        cpu::cross_entropy_backward(dl.data(), logits.data(), targets.data(), 3, V, 0.5);
        for (int i = 0; i < V; i++) {
            QCOMPARE(dl[size_t(V + i)], 0.0);
            QVERIFY(std::abs(dl[size_t(i)] - 0.5 * (1.0 / V - (i == 4 ? 1.0 : 0.0))) < 1e-15);
        }
        // logits [0, ln 2, ln 3]: softmax = [1, 2, 3] / 6, loss of target 0 = ln 6, of target 2 = ln 2
        const vec l3 = {0, std::log(2.0), std::log(3.0), 0, std::log(2.0), std::log(3.0)};
        const std::vector<int> t3 = {0, 2};
        vec loss3(2);
        QCOMPARE(cpu::cross_entropy_forward(loss3.data(), l3.data(), t3.data(), 2, 3), 2);
        QVERIFY(std::abs(loss3[0] - std::log(6.0)) < 1e-15);
        QVERIFY(std::abs(loss3[1] - std::log(2.0)) < 1e-15);
        // large logits stay finite (the row max is subtracted)
        const vec big = {1000, 0, -1000};
        const int t0 = 1;
        vec lb(1), db(3, 0.0);
        cpu::cross_entropy_forward(lb.data(), big.data(), &t0, 1, 3);
        QVERIFY(std::abs(lb[0] - 1000.0) < 1e-12);
        cpu::cross_entropy_backward(db.data(), big.data(), &t0, 1, 3, 1.0);
        QLS_COMPARE_VEC("cross_entropy big dlogits", db, (vec{1, -1, 0}), 1e-15);
        // all targets ignored: count 0
        const std::vector<int> none = {-1, -1};
        QCOMPARE(cpu::cross_entropy_forward(loss3.data(), l3.data(), none.data(), 2, 3), 0);
        QCOMPARE(loss3[0], 0.0);
        QCOMPARE(loss3[1], 0.0);
    }

    // ---- finite-difference gradient checks (double) ------------------------------------------------------

    void embedding_grad() {
        op_inputs in = make_inputs(101);
        vec dwte(in.wte.size(), 0.0);
        cpu::embedding_backward(dwte.data(), in.d_c.data(), in.tokens.data(), kN, kC);
        QLS_CHECK_GRAD("embedding dwte", in.wte, dwte, in.d_c, [&] {
            vec out(size_t(kN) * kC);
            cpu::embedding_forward(out.data(), in.tokens.data(), in.wte.data(), kN, kC);
            return out;
        });
    }

    void rmsnorm_grad() {
        op_inputs in = make_inputs(102);
        const double eps = 1e-5;
        vec out(in.x.size()), rstd(static_cast<size_t>(kN)), dx(in.x.size(), 0.0), dw(in.w_norm.size(), 0.0);
        cpu::rmsnorm_forward(out.data(), rstd.data(), in.x.data(), in.w_norm.data(), kN, kC, eps);
        cpu::rmsnorm_backward(dx.data(), dw.data(), in.d_c.data(), in.x.data(), in.w_norm.data(), rstd.data(), kN, kC);
        const auto fwd = [&] {
            vec o(in.x.size()), r(static_cast<size_t>(kN));
            cpu::rmsnorm_forward(o.data(), r.data(), in.x.data(), in.w_norm.data(), kN, kC, eps);
            return o;
        };
        QLS_CHECK_GRAD("rmsnorm dinp", in.x, dx, in.d_c, fwd);
        QLS_CHECK_GRAD("rmsnorm dweight", in.w_norm, dw, in.d_c, fwd);
    }

    void matmul_grad() {
        op_inputs in = make_inputs(103);
        vec dx(in.x_lin.size(), 0.0), dw(in.w_lin.size(), 0.0);
        cpu::matmul_backward(dx.data(), dw.data(), in.d_oc.data(), in.x_lin.data(), in.w_lin.data(), kN, kIC, kOC);
        const auto fwd = [&] {
            vec o(size_t(kN) * kOC);
            cpu::matmul_forward(o.data(), in.x_lin.data(), in.w_lin.data(), kN, kIC, kOC);
            return o;
        };
        QLS_CHECK_GRAD("matmul dinp", in.x_lin, dx, in.d_oc, fwd);
        QLS_CHECK_GRAD("matmul dweight", in.w_lin, dw, in.d_oc, fwd);
    }

    void rope_grad() {
        op_inputs in = make_inputs(104);
        // q-shaped (NHX = NH) and k-shaped (NHX = NKV) tensors
        for (const int nhx : {kNH, kNKV}) {
            vec x(in.q.begin(), in.q.begin() + long(kN) * nhx * kHS);
            vec dx(in.d_q.begin(), in.d_q.begin() + long(kN) * nhx * kHS);
            const vec R = dx;
            cpu::rope_backward(dx.data(), in.pos.data(), in.inv_freq.data(), kN, nhx, kHS);
            QLS_CHECK_GRAD(nhx == kNH ? "rope dx (NH)" : "rope dx (NKV)", x, dx, R, [&] {
                vec o = x;
                cpu::rope_forward(o.data(), in.pos.data(), in.inv_freq.data(), kN, nhx, kHS);
                return o;
            });
        }
    }

    void attention_grad_data() {
        QTest::addColumn<bool>("with_segment");
        QTest::addColumn<int>("nkv");
        QTest::newRow("gqa causal") << false << kNKV;
        QTest::newRow("gqa segment") << true << kNKV;
        QTest::newRow("mha causal") << false << kNH;
        QTest::newRow("mqa segment") << true << 1;
    }

    void attention_grad() {
        QFETCH(bool, with_segment);
        QFETCH(int, nkv);
        std::mt19937_64 rng(105);
        const op_inputs in = make_inputs(105);
        const int* seg = with_segment ? in.segment.data() : nullptr;
        vec q = in.q, dout = in.d_q;
        vec k = rand_vec(rng, size_t(kN) * nkv * kHS), v = rand_vec(rng, size_t(kN) * nkv * kHS);
        vec out(q.size()), att(size_t(kB) * kNH * kT * kT), dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
        cpu::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), seg, kB, kT, kNH, nkv, kHS);
        cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), att.data(), q.data(), k.data(), v.data(),
                                kB, kT, kNH, nkv, kHS);
        const auto fwd = [&] {
            vec o(q.size()), a(att.size());
            cpu::attention_forward(o.data(), a.data(), q.data(), k.data(), v.data(), seg, kB, kT, kNH, nkv, kHS);
            return o;
        };
        QLS_CHECK_GRAD("attention dq", q, dq, dout, fwd);
        QLS_CHECK_GRAD("attention dk", k, dk, dout, fwd);
        QLS_CHECK_GRAD("attention dv", v, dv, dout, fwd);
        if (with_segment) {
            // the segment mask really cuts gradients: the last token of batch 0 (segment 2) gives no gradient
            // to the k/v of tokens 0, 1 (segment 1), unlike the causal-only case.
            vec dk_last(k.size(), 0.0), dv_last(v.size(), 0.0), d_last(dout.size(), 0.0);
            for (int i = 0; i < kNH * kHS; i++) d_last[size_t((kT - 1) * kNH * kHS + i)] = 1.0;
            cpu::attention_backward<double>(nullptr, dk_last.data(), dv_last.data(), d_last.data(), att.data(),
                                            q.data(), k.data(), v.data(), kB, kT, kNH, nkv, kHS);
            for (int i = 0; i < 2 * nkv * kHS; i++) {
                QCOMPARE(dk_last[size_t(i)], 0.0);
                QCOMPARE(dv_last[size_t(i)], 0.0);
            }
            double seg2 = 0;
            for (int i = 2 * nkv * kHS; i < kT * nkv * kHS; i++) seg2 += std::abs(dv_last[size_t(i)]);
            QVERIFY(seg2 > 0.0);
        }
    }

    void swiglu_grad() {
        op_inputs in = make_inputs(106);
        const long n = long(in.gate.size());
        vec dg(in.gate.size(), 0.0), du(in.up.size(), 0.0);
        cpu::swiglu_backward(dg.data(), du.data(), in.d_h.data(), in.gate.data(), in.up.data(), n);
        const auto fwd = [&] {
            vec o(static_cast<size_t>(n));
            cpu::swiglu_forward(o.data(), in.gate.data(), in.up.data(), n);
            return o;
        };
        QLS_CHECK_GRAD("swiglu dgate", in.gate, dg, in.d_h, fwd);
        QLS_CHECK_GRAD("swiglu dup", in.up, du, in.d_h, fwd);
    }

    void residual_grad() {
        // ops.h: the backward of out = a + b is "both inputs receive dout".
        op_inputs in = make_inputs(107);
        std::mt19937_64 rng(7);
        vec a = in.x, b = rand_vec(rng, in.x.size());
        const auto fwd = [&] {
            vec o(a.size());
            cpu::residual_forward(o.data(), a.data(), b.data(), long(a.size()));
            return o;
        };
        QLS_CHECK_GRAD("residual da", a, in.d_c, in.d_c, fwd);
        QLS_CHECK_GRAD("residual db", b, in.d_c, in.d_c, fwd);
    }

    void cross_entropy_grad() {
        op_inputs in = make_inputs(108);
        vec losses(static_cast<size_t>(kN));
        const int count = cpu::cross_entropy_forward(losses.data(), in.logits.data(), in.targets.data(), kN, kV);
        QCOMPARE(count, 8);               // two of the ten targets are -1
        const double dloss = 1.0 / count; // mean loss
        vec dl(in.logits.size(), 0.0);
        cpu::cross_entropy_backward(dl.data(), in.logits.data(), in.targets.data(), kN, kV, dloss);
        const vec R(size_t(kN), dloss); // L = dloss * sum(losses)
        QLS_CHECK_GRAD("cross_entropy dlogits", in.logits, dl, R, [&] {
            vec l(static_cast<size_t>(kN));
            cpu::cross_entropy_forward(l.data(), in.logits.data(), in.targets.data(), kN, kV);
            return l;
        });
        // each counted row of the gradient sums to 0; ignored rows are exactly 0
        for (int n = 0; n < kN; n++) {
            double s = 0;
            for (int i = 0; i < kV; i++) s += dl[size_t(n * kV + i)];
            QVERIFY(std::abs(s) < 1e-15);
            if (in.targets[size_t(n)] == -1)
                for (int i = 0; i < kV; i++) QCOMPARE(dl[size_t(n * kV + i)], 0.0);
        }
    }

    // ---- float vs double ---------------------------------------------------------------------------------

    void float_matches_double() {
        // Every output and gradient of the float instantiation against the double one on the same inputs, as
        // max |f - d| / max |d| per tensor < 1e-5 (float has ~6e-8 unit roundoff; reductions are in double).
        const op_inputs in = make_inputs(200);
        const auto f = run_all_ops<float>(in);
        const auto d = run_all_ops<double>(in);
        QCOMPARE(f.size(), d.size());
        double worst = 0;
        std::string worst_name;
        for (size_t t = 0; t < f.size(); t++) {
            const vec& a = f[t].second;
            const vec& b = d[t].second;
            QCOMPARE(a.size(), b.size());
            double maxd = 0, maxerr = 0;
            for (size_t i = 0; i < a.size(); i++) {
                maxd = std::max(maxd, std::abs(b[i]));
                maxerr = std::max(maxerr, std::abs(a[i] - b[i]));
            }
            QVERIFY2(maxd > 0, (d[t].first + " is all zero").c_str());
            const double rel = maxerr / maxd;
            QVERIFY2(rel < 1e-5, (d[t].first + ": float vs double relative error " + std::to_string(rel)).c_str());
            if (rel > worst) {
                worst = rel;
                worst_name = d[t].first;
            }
        }
        qInfo("float vs double: worst relative error %.3e (%s)", worst, worst_name.c_str());
    }

    // ---- the += gradient convention ----------------------------------------------------------------------

    void backward_accumulates() {
        // For every backward: from buffers pre-filled with G0, two calls give G0 + 2 g, where g is one call
        // from zero; nullptr gradients are skipped and do not change the others.
        const op_inputs in = make_inputs(300);
        std::mt19937_64 rng(301);
        const auto check = [&](const char* label, const std::function<void(std::vector<double*>)>& backward,
                               std::vector<size_t> sizes) {
            std::vector<vec> g, acc;
            for (size_t s : sizes) {
                g.emplace_back(s, 0.0);
                acc.push_back(rand_vec(rng, s));
            }
            const std::vector<vec> g0 = acc;
            std::vector<double*> pg, pacc;
            for (size_t i = 0; i < sizes.size(); i++) {
                pg.push_back(g[i].data());
                pacc.push_back(acc[i].data());
            }
            backward(pg);
            backward(pacc);
            backward(pacc);
            for (size_t i = 0; i < sizes.size(); i++) {
                double gmax = 0;
                for (double x : g[i]) gmax = std::max(gmax, std::abs(x));
                if (gmax == 0) return std::string(label) + ": gradient " + std::to_string(i) + " is all zero";
                for (size_t e = 0; e < sizes[i]; e++)
                    if (std::abs(acc[i][e] - (g0[i][e] + 2 * g[i][e])) > 1e-13)
                        return std::string(label) + ": gradient " + std::to_string(i) + " element " +
                               std::to_string(e) + " did not accumulate";
                // only this gradient requested: same values as when all are requested
                vec only(sizes[i], 0.0);
                std::vector<double*> ponly(sizes.size(), nullptr);
                ponly[i] = only.data();
                backward(ponly);
                if (only != g[i]) return std::string(label) + ": gradient " + std::to_string(i) + " alone differs";
            }
            return std::string();
        };
        std::string err;
        vec rstd(static_cast<size_t>(kN)), tmp(in.x.size());
        cpu::rmsnorm_forward(tmp.data(), rstd.data(), in.x.data(), in.w_norm.data(), kN, kC, 1e-5);
        vec att(size_t(kB) * kNH * kT * kT), out(in.q.size());
        cpu::attention_forward(out.data(), att.data(), in.q.data(), in.k.data(), in.v.data(), in.segment.data(), kB, kT,
                               kNH, kNKV, kHS);
        err = check("embedding",
                    [&](std::vector<double*> p) {
                        cpu::embedding_backward(p[0], in.d_c.data(), in.tokens.data(), kN, kC);
                    },
                    {in.wte.size()});
        QVERIFY2(err.empty(), err.c_str());
        err = check("rmsnorm",
                    [&](std::vector<double*> p) {
                        cpu::rmsnorm_backward(p[0], p[1], in.d_c.data(), in.x.data(), in.w_norm.data(), rstd.data(), kN,
                                              kC);
                    },
                    {in.x.size(), in.w_norm.size()});
        QVERIFY2(err.empty(), err.c_str());
        err = check("matmul",
                    [&](std::vector<double*> p) {
                        cpu::matmul_backward(p[0], p[1], in.d_oc.data(), in.x_lin.data(), in.w_lin.data(), kN, kIC,
                                             kOC);
                    },
                    {in.x_lin.size(), in.w_lin.size()});
        QVERIFY2(err.empty(), err.c_str());
        err = check("attention",
                    [&](std::vector<double*> p) {
                        cpu::attention_backward(p[0], p[1], p[2], in.d_q.data(), att.data(), in.q.data(), in.k.data(),
                                                in.v.data(), kB, kT, kNH, kNKV, kHS);
                    },
                    {in.q.size(), in.k.size(), in.v.size()});
        QVERIFY2(err.empty(), err.c_str());
        err = check("swiglu",
                    [&](std::vector<double*> p) {
                        cpu::swiglu_backward(p[0], p[1], in.d_h.data(), in.gate.data(), in.up.data(),
                                             long(in.gate.size()));
                    },
                    {in.gate.size(), in.up.size()});
        QVERIFY2(err.empty(), err.c_str());
        err = check("cross_entropy",
                    [&](std::vector<double*> p) {
                        cpu::cross_entropy_backward(p[0], in.logits.data(), in.targets.data(), kN, kV, 0.125);
                    },
                    {in.logits.size()});
        QVERIFY2(err.empty(), err.c_str());
    }
};

QTEST_APPLESS_MAIN(tst_ops)
#include "tst_ops.moc"
