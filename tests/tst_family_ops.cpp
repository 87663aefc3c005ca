// Qt Test suite for the CPU reference ops the newer families add (engine/src/backends/cpu/ops.h): bias add, (1 + w)
// RMSNorm, per-head q/k RMSNorm, GeGLU with tanh GELU, sliding-window attention with its own scale, the embedding
// scale. Hand-computed forward values and finite-difference gradient checks in double.
#include "backends/cpu/ops.h"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace qls;
using vec = std::vector<double>;

namespace {

// Shapes deliberately not round, so that a swapped index or stride shows up.
constexpr int kB = 2, kT = 7, kNH = 4, kNKV = 2, kHS = 6, kC = 10, kOC = 9;
constexpr int kN = kB * kT;

// Central differences, h = 1e-6 in double; an element passes when |a - n| / max(1e-8, |a| + |n|) < 1e-5. The masked
// softmax leaves some gradient elements tiny (1e-4 and below), where the rounding of the difference quotient reaches
// a few 1e-6 relative; a wrong formula gives errors of order 1.
constexpr double kFdStep = 1e-6;
constexpr double kFdTol = 1e-5;

vec rand_vec(std::mt19937_64& rng, size_t n, double lo = -1.0, double hi = 1.0) {
    std::uniform_real_distribution<double> u(lo, hi);
    vec v(n);
    for (double& x : v) x = u(rng);
    return v;
}

// Worst relative error of `analytic` against dL/dx for L = Σ_k forward()[k] R[k] (forward reads x, perturbed in place).
double fd_worst(vec& x, const vec& analytic, const vec& R, const std::function<vec()>& forward) {
    if (analytic.size() != x.size()) return INFINITY;
    double worst = 0.0;
    for (size_t i = 0; i < x.size(); i++) {
        const double x0 = x[i];
        x[i] = x0 + kFdStep;
        const double xp = x[i];
        const vec op = forward();
        x[i] = x0 - kFdStep;
        const double xm = x[i];
        const vec om = forward();
        x[i] = x0;
        if (op.size() != R.size()) return INFINITY;
        double diff = 0.0;
        for (size_t k = 0; k < op.size(); k++) diff += (op[k] - om[k]) * R[k];
        const double num = diff / (xp - xm);
        worst = std::max(worst, std::abs(analytic[i] - num) / std::max(1e-8, std::abs(analytic[i]) + std::abs(num)));
    }
    return worst;
}

#define QLS_FD_OK(worst) QVERIFY2((worst) < kFdTol, qPrintable(QString("worst relative error %1").arg(worst)))

} // namespace

class TestFamilyOps : public QObject {
    Q_OBJECT
private slots:
    void biasAddsPerRowAndItsGradientIsTheColumnSum() {
        vec out = {1, 2, 3, 4, 5, 6}; // (2, 3)
        const vec b = {10, 20, 30};
        cpu::bias_forward(out.data(), b.data(), 2, 3);
        QCOMPARE(out, (vec{11, 22, 33, 14, 25, 36}));
        std::mt19937_64 rng(1);
        vec bias = rand_vec(rng, kOC), x = rand_vec(rng, size_t(kN) * kOC), R = rand_vec(rng, size_t(kN) * kOC);
        vec db(size_t(kOC), 0.0);
        cpu::bias_backward(db.data(), R.data(), kN, kOC);
        QLS_FD_OK(fd_worst(bias, db, R, [&] {
            vec o = x;
            cpu::bias_forward(o.data(), bias.data(), kN, kOC);
            return o;
        }));
    }

    // Gemma3RMSNorm: x · rsqrt(mean(x²) + eps) · (1 + w); w = 0 is the plain normalisation.
    void onePlusWeightRmsnorm() {
        const vec x = {3, 4}, w = {0, 1};
        vec out(2), rstd(1);
        cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), 1, 2, 0.0, 1.0);
        const double r = 1.0 / std::sqrt(12.5);
        QVERIFY(std::abs(out[0] - 3 * r) < 1e-15 && std::abs(out[1] - 8 * r) < 1e-15);
        std::mt19937_64 rng(2);
        vec in = rand_vec(rng, size_t(kN) * kC), wt = rand_vec(rng, kC, -0.5, 0.5), R = rand_vec(rng, in.size());
        auto fwd = [&] {
            vec o(in.size()), rs(static_cast<size_t>(kN));
            cpu::rmsnorm_forward(o.data(), rs.data(), in.data(), wt.data(), kN, kC, 1e-6, 1.0);
            return o;
        };
        vec o(in.size()), rs(static_cast<size_t>(kN));
        cpu::rmsnorm_forward(o.data(), rs.data(), in.data(), wt.data(), kN, kC, 1e-6, 1.0);
        vec din(in.size(), 0.0), dw(size_t(kC), 0.0);
        cpu::rmsnorm_backward(din.data(), dw.data(), R.data(), in.data(), wt.data(), rs.data(), kN, kC, 1.0);
        QLS_FD_OK(fd_worst(in, din, R, fwd));
        QLS_FD_OK(fd_worst(wt, dw, R, fwd));
    }

    // Qwen3/Gemma 3 q_norm: one RMSNorm per head over HS, i.e. the op over (N*NH) rows of HS; each head is normalised
    // on its own (changing one head leaves the others' outputs unchanged).
    void perHeadNormIsRowwiseOverHeadSize() {
        std::mt19937_64 rng(3);
        const int rows = kN * kNH;
        vec q = rand_vec(rng, size_t(rows) * kHS), w = rand_vec(rng, kHS, 0.5, 1.5), R = rand_vec(rng, q.size());
        auto fwd = [&] {
            vec o(q.size()), rs(static_cast<size_t>(rows));
            cpu::rmsnorm_forward(o.data(), rs.data(), q.data(), w.data(), rows, kHS, 1e-6);
            return o;
        };
        const vec before = fwd();
        for (int i = 0; i < kHS; ++i) q[size_t(kHS) + size_t(i)] *= 3.0; // head 1 of token 0
        const vec after = fwd();
        for (int i = 0; i < kHS; ++i) QCOMPARE(after[size_t(i)], before[size_t(i)]); // head 0 untouched
        for (int i = 0; i < kHS; ++i) // RMSNorm is scale invariant: head 1 too (up to eps = 1e-6 against mean(x²))
            QVERIFY(std::abs(after[size_t(kHS + i)] - before[size_t(kHS + i)]) < 1e-4);
        vec o(q.size()), rs(static_cast<size_t>(rows));
        cpu::rmsnorm_forward(o.data(), rs.data(), q.data(), w.data(), rows, kHS, 1e-6);
        vec dq(q.size(), 0.0), dw(size_t(kHS), 0.0);
        cpu::rmsnorm_backward(dq.data(), dw.data(), R.data(), q.data(), w.data(), rs.data(), rows, kHS);
        QLS_FD_OK(fd_worst(q, dq, R, fwd));
        QLS_FD_OK(fd_worst(w, dw, R, fwd));
    }

    // torch.nn.functional.gelu(x, approximate="tanh"): gelu(1) = 0.8411919906082768, gelu(-2) = -0.04540230591222
    void gegluTanhValuesAndGradients() {
        const vec g = {1.0, -2.0, 0.0}, u = {1.0, 1.0, 5.0};
        vec out(3);
        cpu::geglu_forward(out.data(), g.data(), u.data(), 3);
        QVERIFY(std::abs(out[0] - 0.8411919906082768) < 1e-12);
        QVERIFY(std::abs(out[1] + 0.04540230591222) < 1e-12);
        QCOMPARE(out[2], 0.0);
        std::mt19937_64 rng(4);
        const long n = 40;
        vec gate = rand_vec(rng, size_t(n), -4, 4), up = rand_vec(rng, size_t(n)), R = rand_vec(rng, size_t(n));
        auto fwd = [&] {
            vec o(static_cast<size_t>(n));
            cpu::geglu_forward(o.data(), gate.data(), up.data(), n);
            return o;
        };
        vec dg(size_t(n), 0.0), du(size_t(n), 0.0);
        cpu::geglu_backward(dg.data(), du.data(), R.data(), gate.data(), up.data(), n);
        QLS_FD_OK(fd_worst(gate, dg, R, fwd));
        QLS_FD_OK(fd_worst(up, du, R, fwd));
    }

    // A sliding window of W: query t sees keys t-W+1 .. t (transformers sliding_window_overlay); every other
    // probability is exactly 0, and the gradients through the masked attention match finite differences.
    void slidingWindowAttention() {
        std::mt19937_64 rng(5);
        const int W = 3;
        const double scale = 1.0 / std::sqrt(24.0); // query_pre_attn_scalar 24, not HS
        const size_t nq = size_t(kN) * kNH * kHS, nk = size_t(kN) * kNKV * kHS;
        vec q = rand_vec(rng, nq), k = rand_vec(rng, nk), v = rand_vec(rng, nk), R = rand_vec(rng, nq);
        std::vector<int> seg(static_cast<size_t>(kN));
        for (int b = 0; b < kB; ++b)
            for (int t = 0; t < kT; ++t) seg[size_t(b * kT + t)] = t < 5 ? 0 : 1; // two packed examples per row
        vec att(size_t(kB) * kNH * kT * kT);
        auto fwd = [&] {
            vec o(nq);
            cpu::attention_forward(o.data(), att.data(), q.data(), k.data(), v.data(), seg.data(), kB, kT, kNH, kNKV,
                                   kHS, W, scale);
            return o;
        };
        const vec out = fwd();
        for (int b = 0; b < kB; ++b)
            for (int h = 0; h < kNH; ++h)
                for (int t = 0; t < kT; ++t) {
                    double sum = 0;
                    for (int j = 0; j < kT; ++j) {
                        const double p = att[((size_t(b) * kNH + h) * kT + t) * kT + j];
                        const bool visible = j <= t && j > t - W && seg[size_t(b * kT + j)] == seg[size_t(b * kT + t)];
                        if (!visible) QCOMPARE(p, 0.0);
                        else QVERIFY(p > 0.0);
                        sum += p;
                    }
                    QVERIFY(std::abs(sum - 1.0) < 1e-12);
                }
        // The scale enters the softmax: with scale s the first visible pair's ratio is exp(s (q·k_j - q·k_j')).
        {
            const int t = 2, h = 0; // b 0; keys 0..2 visible (W = 3)
            auto dot = [&](int j) {
                double d = 0;
                for (int i = 0; i < kHS; ++i)
                    d += q[size_t((t * kNH + h) * kHS + i)] * k[size_t((j * kNKV + 0) * kHS + i)];
                return d;
            };
            const double p0 = att[size_t(t) * kT + 0], p1 = att[size_t(t) * kT + 1];
            QVERIFY(std::abs(std::log(p0 / p1) - scale * (dot(0) - dot(1))) < 1e-12);
        }
        vec dq(nq, 0.0), dk(nk, 0.0), dv(nk, 0.0);
        cpu::attention_backward(dq.data(), dk.data(), dv.data(), R.data(), att.data(), q.data(), k.data(), v.data(), kB,
                                kT, kNH, kNKV, kHS, scale);
        QLS_FD_OK(fd_worst(q, dq, R, fwd));
        QLS_FD_OK(fd_worst(k, dk, R, fwd));
        QLS_FD_OK(fd_worst(v, dv, R, fwd));
        // Without a window every earlier key of the segment is visible again.
        vec o(nq);
        cpu::attention_forward(o.data(), att.data(), q.data(), k.data(), v.data(), seg.data(), kB, kT, kNH, kNKV, kHS,
                               0, scale);
        QVERIFY(att[size_t(4) * kT + 0] > 0.0); // t 4 sees key 0 (window 3 hid it)
    }

    void embeddingScale() {
        vec x = {1, -2, 0.5};
        cpu::scale_inplace(x.data(), 4.0, 3);
        QCOMPARE(x, (vec{4, -8, 2}));
    }
};

QTEST_GUILESS_MAIN(TestFamilyOps)
#include "tst_family_ops.moc"
