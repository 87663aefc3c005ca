// Qt Test suite for AdamW (32-bit and 8-bit blockwise, against the real bitsandbytes kernels), clip_grad_norm, the pager and the paged optimizer.
#include "qls/optim.h"
#include "qls/pager.h"
#include "qls/quant.h"
#include "qls/safetensors.h"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

std::string bnb_fixture() { return std::string(QLS_SOURCE_DIR) + "/tests/data/bnb/adamw8bit.safetensors"; }

std::vector<float> to_vec(const qls::tensor& t) {
    std::vector<float> v(size_t(t.numel()));
    std::memcpy(v.data(), t.f32(), v.size() * 4);
    return v;
}
std::vector<uint8_t> to_u8(const qls::tensor& t) {
    QLS_ASSERT(t.type() == qls::dtype::u8);
    std::vector<uint8_t> v(size_t(t.numel()));
    std::memcpy(v.data(), t.raw(), v.size());
    return v;
}

// "" when the call throws qls::error with `code` and a message containing every word, else what happened.
template <class F> QString failure_of(F&& f, qls::error_code code, std::initializer_list<std::string> words) {
    try {
        f();
    } catch (const qls::error& e) {
        const std::string msg = e.what();
        if (e.code() != code) return QString("wrong code %1: %2").arg(qls::error_code_name(e.code()), msg.c_str());
        for (const std::string& w : words)
            if (msg.find(w) == std::string::npos)
                return QString("message lacks \"%1\": %2").arg(w.c_str(), msg.c_str());
        return {};
    }
    return "no error";
}

// ---- a set of parameters with deterministic gradients ----------------------------------------------------------
struct param_set {
    std::vector<std::string> names;
    std::vector<std::vector<float>> data, grad;

    std::vector<qls::optim_param> params() {
        std::vector<qls::optim_param> r;
        for (size_t i = 0; i < names.size(); ++i)
            r.push_back({names[i], data[i].data(), grad[i].data(), data[i].size()});
        return r;
    }
    // Gradients of step `s`: normal, a different scale per tensor, every 37th element exactly 0.
    void fill_grads(int64_t s) {
        for (size_t i = 0; i < grad.size(); ++i) {
            std::mt19937 rng(uint32_t(7919 * s + 104729 * i + 17));
            std::normal_distribution<float> nd(0.0f, 1.0f);
            const float scale = std::pow(10.0f, -float(i % 4)); // 1, 0.1, 0.01, 0.001
            for (size_t k = 0; k < grad[i].size(); ++k) grad[i][k] = k % 37 == 5 ? 0.0f : nd(rng) * scale;
        }
    }
};

// Ten tensors of varied sizes, three of them under min_8bit_size (4096) and one not a multiple of 256.
param_set make_params() {
    const size_t sizes[] = {70000, 100, 4096, 12345, 4095, 20000, 1, 9000, 65536, 300};
    param_set ps;
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.0f, 0.5f);
    for (size_t i = 0; i < std::size(sizes); ++i) {
        ps.names.push_back("layer" + std::to_string(i) + ".lora_" + (i % 2 ? "B" : "A"));
        ps.data.emplace_back(sizes[i]);
        for (float& x : ps.data.back()) x = nd(rng);
        ps.grad.emplace_back(sizes[i], 0.0f);
    }
    return ps;
}

bool same_bytes(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * 4) != 0) return false;
    return true;
}

// "" when two serialized states hold the same names, dtypes, shapes and bytes in the same order.
QString state_diff(const std::vector<std::pair<std::string, qls::tensor>>& a,
                   const std::vector<std::pair<std::string, qls::tensor>>& b) {
    if (a.size() != b.size()) return QString("%1 vs %2 tensors").arg(a.size()).arg(b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        if (a[i].first != b[i].first) return QString("name %1 vs %2").arg(a[i].first.c_str(), b[i].first.c_str());
        const qls::tensor &x = a[i].second, &y = b[i].second;
        if (x.type() != y.type() || x.shape() != y.shape() || std::memcmp(x.raw(), y.raw(), x.nbytes()) != 0)
            return QString("tensor %1 differs").arg(a[i].first.c_str());
    }
    return {};
}

// page_memory that forwards to the CPU simulation and counts the bytes that really pass through copy_h2d/d2h.
struct copy_counts {
    uint64_t h2d = 0, d2h = 0, h2d_calls = 0, d2h_calls = 0;
};
class counting_memory final : public qls::page_memory {
public:
    explicit counting_memory(std::shared_ptr<copy_counts> c) : c_(std::move(c)), inner_(qls::make_cpu_page_memory()) {}
    void* allocate_device(size_t b) override { return inner_->allocate_device(b); }
    void free_device(void* p) noexcept override { inner_->free_device(p); }
    void* allocate_host(size_t b) override { return inner_->allocate_host(b); }
    void free_host(void* p) noexcept override { inner_->free_host(p); }
    void copy_h2d(void* d, const void* s, size_t b) override {
        c_->h2d += b;
        ++c_->h2d_calls;
        inner_->copy_h2d(d, s, b);
    }
    void copy_d2h(void* d, const void* s, size_t b) override {
        c_->d2h += b;
        ++c_->d2h_calls;
        inner_->copy_d2h(d, s, b);
    }
    void synchronize() override { inner_->synchronize(); }
    bool device_is_host_addressable() const override { return true; }
    size_t device_bytes_allocated() const override { return inner_->device_bytes_allocated(); }
    std::string name() const override { return "counting cpu"; }

private:
    std::shared_ptr<copy_counts> c_;
    std::unique_ptr<qls::page_memory> inner_;
};

size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

// Pages of one parameter's states (the working set of its update) for a given kind and page size.
size_t working_set_pages(size_t numel, bool eight, size_t page) {
    if (!eight || numel < qls::adamw_min_8bit_size) return 2 * ceil_div(numel * 4, page);
    return 2 * ceil_div(numel, page) + 2 * ceil_div(ceil_div(numel, 256) * 4, page);
}

// Tolerance for parameters against bnb. bnb builds its kernels with --use_fast_math, so its step size
// -lr·sqrt(1-β2^t)/(1-β1^t) comes from __powf (lg2/ex2.approx) and is off by ~3e-5 relative (measured: at most
// 2.99e-5 over the fixture's 3 steps); sqrt and the division are approximate too. No CPU reproduces those
// instructions bit for bit, so a parameter may differ from bnb's by one rounding of p plus 5e-5 of the Adam step
// taken (|p_new - p_old·(1 - lr·wd)|). States do not go through any approximate instruction and must match exactly.
QString param_mismatch(const std::vector<float>& ours, const std::vector<float>& bnb, const std::vector<float>& prev,
                       float decay, int k, size_t& identical) {
    for (size_t i = 0; i < ours.size(); ++i) {
        identical += ours[i] == bnb[i];
        const double step = std::fabs(double(ours[i]) - double(prev[i] * decay));
        const double ulp = std::nextafter(std::fabs(bnb[i]), INFINITY) - std::fabs(bnb[i]);
        const double diff = std::fabs(double(ours[i]) - bnb[i]);
        if (diff > ulp + 5e-5 * step)
            return QString("step %1 element %2: ours %3, bnb %4 (|diff| %5, Adam step %6)")
                .arg(k)
                .arg(i)
                .arg(ours[i], 0, 'g', 9)
                .arg(bnb[i], 0, 'g', 9)
                .arg(diff, 0, 'g', 3)
                .arg(step, 0, 'g', 3);
    }
    return {};
}

} // namespace

class tst_optim : public QObject {
    Q_OBJECT

private slots:
    // ---------------------------------------------------------------- the update formula
    void hand_computed_steps() {
        // 3 elements, lr 0.1, wd 0. Step 1 by hand: m = (1-β1) g, v = (1-β2) g², c1 = 1-β1, c2 = sqrt(1-β2), so
        // m/c1 = g, sqrt(v)/c2 = |g| and p1 = p0 - lr·g/(|g| + eps) = p0 - 0.1·sign(g) (eps changes it by < 1e-8).
        // The hand values use the betas as the kernel sees them, float(0.9) and float(0.999): 1 - float(0.999) is
        // 1.3e-5 away from 0.001 in relative terms.
        const double B1 = double(0.9f), B2 = double(0.999f);
        std::vector<float> p = {1.0f, -2.0f, 0.5f}, m(3, 0.0f), v(3, 0.0f);
        const std::vector<float> g1 = {0.5f, 0.25f, -4.0f}, g2 = {-0.5f, 0.25f, 1.0f};
        qls::adamw_hparams h;
        h.weight_decay = 0.0f;
        qls::adamw_update_32bit(p.data(), g1.data(), m.data(), v.data(), 3, 1, 0.1f, h);
        const double p1_hand[] = {0.9, -2.1, 0.6};
        for (size_t i = 0; i < 3; ++i) {
            QVERIFY2(std::fabs(p[i] - p1_hand[i]) <= 1e-6,
                     qPrintable(QString("p1[%1] = %2").arg(i).arg(p[i], 0, 'g', 9)));
            const double mh = (1 - B1) * g1[i], vh = (1 - B2) * g1[i] * g1[i];
            QVERIFY(std::fabs(m[i] - mh) <= 1e-6 * std::fabs(mh));
            QVERIFY(std::fabs(v[i] - vh) <= 1e-6 * vh);
        }
        // Step 2 in double from the step-1 state: m2 = β1 m1 + (1-β1) g2, v2 = β2 v1 + (1-β2) g2²,
        // p2 = p1 - lr (m2 / (1 - β1²)) / (sqrt(v2 / (1 - β2²)) + eps).
        const std::vector<float> p1 = p, m1 = m, v1 = v;
        qls::adamw_update_32bit(p.data(), g2.data(), m.data(), v.data(), 3, 2, 0.1f, h);
        for (size_t i = 0; i < 3; ++i) {
            const double mm = B1 * m1[i] + (1 - B1) * g2[i], vv = B2 * v1[i] + (1 - B2) * double(g2[i]) * g2[i];
            const double expect = p1[i] - 0.1 * (mm / (1 - B1 * B1)) / (std::sqrt(vv / (1 - B2 * B2)) + 1e-8);
            QVERIFY2(std::fabs(p[i] - expect) <= 2e-7 * std::max(1.0, std::fabs(expect)),
                     qPrintable(QString("p2[%1] = %2, hand %3").arg(i).arg(p[i], 0, 'g', 9).arg(expect, 0, 'g', 9)));
            QVERIFY(std::fabs(m[i] - mm) <=
                    1e-6 * (B1 * std::fabs(m1[i]) + (1 - B1) * std::fabs(g2[i]))); // m2[0] cancels
            QVERIFY(std::fabs(v[i] - vv) <= 1e-6 * vv);
        }
        // The second element's two gradients agree in sign and size, so its step is again lr: p2 = -2.2.
        QVERIFY(std::fabs(p[1] - (-2.2)) <= 1e-6);
    }

    void bias_correction_at_step_1() {
        // With bias correction the first step moves every element by lr·g/(|g| + eps), i.e. lr in the direction
        // of -g whatever |g| is (without correction it would be lr·0.1·g/(0.0316·|g|) = 3.16·lr).
        const std::vector<float> g = {1e-4f, -1e-2f, 1.0f, -300.0f};
        for (bool eight : {false, true}) {
            const size_t n = 4096; // the 8-bit kernel needs no minimum here; use a full block set anyway
            std::vector<float> p(n, 0.25f), gg(n), m(n, 0.0f), v(n, 0.0f), a1(n / 256, 0.0f), a2(n / 256, 0.0f);
            std::vector<uint8_t> c1(n, 0), c2(n, 0);
            for (size_t i = 0; i < n; ++i) gg[i] = g[i % 4];
            qls::adamw_hparams h;
            h.weight_decay = 0.0f;
            const float lr = 0.01f;
            if (eight)
                qls::adamw_update_8bit_blockwise(p.data(), gg.data(), c1.data(), c2.data(), a1.data(), a2.data(), n, 1,
                                                 lr, h, qls::dynamic_map(true), qls::dynamic_map(false));
            else qls::adamw_update_32bit(p.data(), gg.data(), m.data(), v.data(), n, 1, lr, h);
            for (size_t i = 0; i < 8; ++i) {
                const double gi = gg[i];
                const double expect = 0.25 - lr * gi / (std::fabs(gi) + 1e-8);
                QVERIFY2(std::fabs(p[i] - expect) <= 2e-7, qPrintable(QString("%1 g=%2: p=%3, expected %4")
                                                                          .arg(eight ? "8-bit" : "32-bit")
                                                                          .arg(gi)
                                                                          .arg(p[i], 0, 'g', 9)
                                                                          .arg(expect, 0, 'g', 9)));
            }
        }
    }

    void weight_decay_after_the_adam_step() {
        // bnb decays the already-updated parameter: p1 = (p0 - lr·ĝ)·(1 - lr·wd). With p0 = 1, g = 0.5, lr 0.1,
        // wd 0.5: (1 - 0.1)·0.95 = 0.855. Decaying first (torch.optim.AdamW's order) would give 0.95 - 0.1 = 0.85.
        qls::adamw_hparams h;
        h.weight_decay = 0.5f;
        float p = 1.0f, m = 0.0f, v = 0.0f;
        const float g = 0.5f;
        qls::adamw_update_32bit(&p, &g, &m, &v, 1, 1, 0.1f, h);
        QVERIFY2(std::fabs(p - 0.855) <= 1e-6, qPrintable(QString::number(p, 'g', 9)));

        // The same holds element by element in both kernels: with decay = the run without decay, times (1 - lr·wd).
        const size_t n = 5000;
        std::mt19937 rng(3);
        std::normal_distribution<float> nd;
        std::vector<float> p0(n), gg(n);
        for (size_t i = 0; i < n; ++i) {
            p0[i] = nd(rng);
            gg[i] = nd(rng);
        }
        for (bool eight : {false, true}) {
            std::vector<float> pa = p0, pb = p0;
            for (float wd : {0.0f, 0.5f}) {
                std::vector<float>& pp = wd == 0.0f ? pa : pb;
                std::vector<float> m(n, 0.0f), v(n, 0.0f), a1(ceil_div(n, 256), 0.0f), a2(ceil_div(n, 256), 0.0f);
                std::vector<uint8_t> c1(n, 0), c2(n, 0);
                qls::adamw_hparams hh;
                hh.weight_decay = wd;
                if (eight)
                    qls::adamw_update_8bit_blockwise(pp.data(), gg.data(), c1.data(), c2.data(), a1.data(), a2.data(),
                                                     n, 1, 0.1f, hh, qls::dynamic_map(true), qls::dynamic_map(false));
                else qls::adamw_update_32bit(pp.data(), gg.data(), m.data(), v.data(), n, 1, 0.1f, hh);
            }
            const float decay = std::fma(-0.1f, 0.5f, 1.0f); // (1.0f-(lr*weight_decay)), fused as nvcc does
            for (size_t i = 0; i < n; ++i)
                QVERIFY2(pb[i] == pa[i] * decay,
                         qPrintable(QString("%1 element %2").arg(eight ? "8-bit" : "32-bit").arg(i)));
        }
    }

    // ---------------------------------------------------------------- against bitsandbytes
    void bnb_qmaps_match_dynamic_map() {
        const auto f = qls::safetensors_file::open(bnb_fixture());
        const auto q1 = to_vec(f.read("qmap1")), q2 = to_vec(f.read("qmap2"));
        const auto d1 = qls::dynamic_map(true), d2 = qls::dynamic_map(false);
        QCOMPARE(q1.size(), size_t(256));
        QVERIFY(std::memcmp(q1.data(), d1.data(), 1024) == 0);
        QVERIFY(std::memcmp(q2.data(), d2.data(), 1024) == 0);
    }

    void bnb_adamw_32bit() {
        // bnb F.optimizer_update_32bit("adam", ...) = kOptimizer32bit2State, 3 steps on 1000 elements (4 blocks of
        // 256 with gradient scales 1e-3, 1e-1, 1, 3e-2; every 97th gradient 0), lr 1e-3, wd 0.01.
        const auto f = qls::safetensors_file::open(bnb_fixture());
        const auto& md = f.metadata();
        QCOMPARE(QString::fromStdString(md.at("lr")), QString("0.001"));
        QCOMPARE(QString::fromStdString(md.at("weight_decay")), QString("0.01"));
        QCOMPARE(QString::fromStdString(md.at("beta2")), QString("0.999"));
        QCOMPARE(QString::fromStdString(md.at("eps")), QString("1e-08"));
        const qls::adamw_hparams h; // defaults = the fixture's betas 0.9/0.999, eps 1e-8, wd 0.01
        const float decay = std::fma(-1e-3f, 0.01f, 1.0f);
        std::vector<float> p = to_vec(f.read("p0"));
        const size_t n = p.size();
        std::vector<float> m(n, 0.0f), v(n, 0.0f);
        size_t identical = 0;
        for (int k = 1; k <= 3; ++k) {
            const std::string ks = std::to_string(k);
            const auto g = to_vec(f.read("g" + ks));
            const std::vector<float> prev = p;
            qls::adamw_update_32bit(p.data(), g.data(), m.data(), v.data(), n, k, 1e-3f, h);
            // m and v: bit for bit (fp32 states see only exact multiply-adds).
            QVERIFY2(std::memcmp(m.data(), f.read("adam32.m." + ks).raw(), n * 4) == 0,
                     qPrintable("m differs at step " + QString::number(k)));
            QVERIFY2(std::memcmp(v.data(), f.read("adam32.v." + ks).raw(), n * 4) == 0,
                     qPrintable("v differs at step " + QString::number(k)));
            const auto bp = to_vec(f.read("adam32.p." + ks));
            QCOMPARE(param_mismatch(p, bp, prev, decay, k, identical), QString());
            p = bp; // continue from bnb's parameters (they do not feed back into m, v)
        }
        qInfo("32-bit vs bnb, 3 steps: m, v bit-identical; %zu of %zu parameters bit-identical, the rest within the "
              "fast-math tolerance",
              identical, 3 * n);
    }

    void bnb_adamw_8bit() {
        // bnb F.optimizer_update_8bit_blockwise("adam", ...) = kOptimizerStatic8bit2StateBlockwise; same inputs.
        // The last block is partial (232 of 256 elements).
        const auto f = qls::safetensors_file::open(bnb_fixture());
        const qls::adamw_hparams h;
        const float decay = std::fma(-1e-3f, 0.01f, 1.0f);
        std::vector<float> p = to_vec(f.read("p0"));
        const size_t n = p.size(), nb = ceil_div(n, 256);
        std::vector<uint8_t> c1(n, 0), c2(n, 0);
        std::vector<float> a1(nb, 0.0f), a2(nb, 0.0f);
        const auto q1 = qls::dynamic_map(true), q2 = qls::dynamic_map(false);
        size_t identical = 0;
        for (int k = 1; k <= 3; ++k) {
            const std::string ks = std::to_string(k);
            const auto g = to_vec(f.read("g" + ks));
            const std::vector<float> prev = p;
            qls::adamw_update_8bit_blockwise(p.data(), g.data(), c1.data(), c2.data(), a1.data(), a2.data(), n, k,
                                             1e-3f, h, q1, q2);
            const auto b1 = to_u8(f.read("adam8.state1." + ks)), b2 = to_u8(f.read("adam8.state2." + ks));
            for (size_t i = 0; i < n; ++i)
                if (c1[i] != b1[i] || c2[i] != b2[i])
                    QFAIL(qPrintable(QString("step %1 element %2: codes (%3, %4), bnb (%5, %6)")
                                         .arg(k)
                                         .arg(i)
                                         .arg(c1[i])
                                         .arg(c2[i])
                                         .arg(b1[i])
                                         .arg(b2[i])));
            QVERIFY2(std::memcmp(a1.data(), f.read("adam8.absmax1." + ks).raw(), nb * 4) == 0, "absmax1 differs");
            QVERIFY2(std::memcmp(a2.data(), f.read("adam8.absmax2." + ks).raw(), nb * 4) == 0, "absmax2 differs");
            const auto bp = to_vec(f.read("adam8.p." + ks));
            QCOMPARE(param_mismatch(p, bp, prev, decay, k, identical), QString());
            p = bp;
        }
        qInfo("8-bit vs bnb, 3 steps: codes and absmax bit-identical; %zu of %zu parameters bit-identical, the rest "
              "within the fast-math tolerance",
              identical, 3 * n);
    }

    void bnb_8bit_codes_after_three_steps_without_resync() {
        // The states never see p, so our kernel alone, 3 steps from p0, must land on bnb's exact step-3 codes;
        // the parameters carry three steps' worth of the step-size tolerance.
        const auto f = qls::safetensors_file::open(bnb_fixture());
        const qls::adamw_hparams h;
        std::vector<float> p = to_vec(f.read("p0"));
        const size_t n = p.size(), nb = ceil_div(n, 256);
        std::vector<uint8_t> c1(n, 0), c2(n, 0);
        std::vector<float> a1(nb, 0.0f), a2(nb, 0.0f), travelled(n, 0.0f);
        for (int k = 1; k <= 3; ++k) {
            const auto g = to_vec(f.read("g" + std::to_string(k)));
            const std::vector<float> prev = p;
            qls::adamw_update_8bit_blockwise(p.data(), g.data(), c1.data(), c2.data(), a1.data(), a2.data(), n, k,
                                             1e-3f, h, qls::dynamic_map(true), qls::dynamic_map(false));
            for (size_t i = 0; i < n; ++i) travelled[i] += std::fabs(p[i] - prev[i]);
        }
        QVERIFY(c1 == to_u8(f.read("adam8.state1.3")));
        QVERIFY(c2 == to_u8(f.read("adam8.state2.3")));
        QVERIFY(std::memcmp(a1.data(), f.read("adam8.absmax1.3").raw(), nb * 4) == 0);
        QVERIFY(std::memcmp(a2.data(), f.read("adam8.absmax2.3").raw(), nb * 4) == 0);
        const auto bp = to_vec(f.read("adam8.p.3"));
        for (size_t i = 0; i < n; ++i) {
            const double ulp = std::nextafter(std::fabs(bp[i]), INFINITY) - std::fabs(bp[i]);
            QVERIFY2(std::fabs(double(p[i]) - bp[i]) <= 3 * ulp + 5e-5 * travelled[i],
                     qPrintable(QString("element %1: %2 vs bnb %3").arg(i).arg(p[i], 0, 'g', 9).arg(bp[i], 0, 'g', 9)));
        }
    }

    void bnb_8bit_edge_cases() {
        // Cases the fixture does not reach, checked against bnb 0.50.2 on an H100 (NVIDIA H100 80GB HBM3, CUDA 13):
        //   p = torch.linspace(-1, 1, 512); blocks of 256; step k = 1, 2 of F.optimizer_update_8bit_blockwise("adam",
        //   g_k, p, s1, s2, 0.9, 0.999, 0.0, 0.0, 1e-8, k, 1e-3, create_dynamic_map(True), create_dynamic_map(False),
        //   a1, a2, weight_decay=0.01) with g_k below. Expected values are what bnb returned.
        //  - block 0: an all-zero gradient (LoRA A's gradient at step 1, when B = 0): absmax 0, so the kernel
        //    quantizes 0/0 = NaN; the search ends at code 0, and for m the sign fix steps 0 → 255. Both dequantize to 0.
        //  - g = ∓1e-8, -3e-7 next to g = 1 in block 1: |m|/absmax below half the smallest code; a negative m rounds to
        //    the 0 code and the sign fix moves it to code 126 (the smallest negative value), a positive m stays at 127.
        //  - step 2: NaN, +Inf, -Inf gradients: m = v = 0 (codes 127 and 0), the parameter keeps its value.
        const size_t n = 512;
        std::vector<float> p(n);
        for (size_t i = 0; i < n; ++i) p[i] = -1.0f + 2.0f * float(i) / 511.0f;
        std::vector<uint8_t> c1(n, 0), c2(n, 0);
        std::vector<float> a1(2, 0.0f), a2(2, 0.0f);
        const auto q1 = qls::dynamic_map(true), q2 = qls::dynamic_map(false);
        const float inf = std::numeric_limits<float>::infinity();
        auto fnv1a = [](const std::vector<uint8_t>& b) {
            uint64_t h = 0xcbf29ce484222325ull;
            for (uint8_t x : b) h = (h ^ x) * 0x100000001b3ull;
            return h;
        };
        struct expect {
            uint8_t s1[8], s2[8];      // elements 256..263
            uint64_t s1_hash, s2_hash; // FNV-1a of all 512 codes
            float absmax1, absmax2;    // block 1
        };
        const expect want[2] = {
            {{255, 126, 127, 126, 201, 53, 192, 202},
             {255, 0, 0, 0, 100, 100, 66, 105},
             0x0b26f74652dee570ull,
             0x736b77a3395f3698ull,
             0x1.9999ap-4f,
             0x1.0624p-10f},
            {{255, 126, 127, 126, 127, 127, 127, 165},
             {255, 0, 0, 0, 0, 0, 0, 92},
             0x58e5a1e9660d5b2aull,
             0xd31dc313636d4b28ull,
             0x1.851ebep-3f,
             0x1.060272p-9f},
        };
        for (int k = 1; k <= 2; ++k) {
            std::vector<float> g(n, 0.0f);
            g[256] = 1.0f;
            g[257] = float(-1e-8);
            g[258] = float(1e-8);
            g[259] = k == 1 ? float(-3e-7) : float(2e-7);
            g[260] = k == 2 ? std::nanf("") : 0.25f;
            g[261] = k == 2 ? inf : -0.25f;
            g[262] = k == 2 ? -inf : 0.125f;
            for (size_t i = 263; i < n; ++i) g[i] = float(i) * (k == 1 ? float(1e-3) : float(-7e-4));
            const std::vector<float> before = p;
            qls::adamw_update_8bit_blockwise(p.data(), g.data(), c1.data(), c2.data(), a1.data(), a2.data(), n, k,
                                             1e-3f, qls::adamw_hparams{}, q1, q2);
            const expect& w = want[k - 1];
            QCOMPARE(a1[0], 0.0f);
            QCOMPARE(a2[0], 0.0f);
            for (size_t i = 0; i < 256; ++i) {
                QCOMPARE(int(c1[i]), 255);
                QCOMPARE(int(c2[i]), 0);
            }
            for (size_t j = 0; j < 8; ++j) {
                QCOMPARE(int(c1[256 + j]), int(w.s1[j]));
                QCOMPARE(int(c2[256 + j]), int(w.s2[j]));
            }
            QCOMPARE(a1[1], w.absmax1);
            QCOMPARE(a2[1], w.absmax2);
            QCOMPARE(fnv1a(c1), w.s1_hash);
            QCOMPARE(fnv1a(c2), w.s2_hash);
            if (k == 2)
                for (size_t i : {260, 261, 262}) QCOMPARE(p[i], before[i]);
        }
    }

    void nonfinite_gradient_rule_8bit() {
        // bnb 8-bit blockwise kernel: a NaN/Inf gradient element gets m = v = 0 and its parameter is not updated.
        const size_t n = 4096;
        std::vector<float> p(n), g(n);
        std::mt19937 rng(5);
        std::normal_distribution<float> nd;
        for (size_t i = 0; i < n; ++i) {
            p[i] = nd(rng);
            g[i] = nd(rng);
        }
        std::vector<uint8_t> c1(n, 0), c2(n, 0);
        std::vector<float> a1(16, 0.0f), a2(16, 0.0f);
        const auto q1 = qls::dynamic_map(true), q2 = qls::dynamic_map(false);
        qls::adamw_hparams h;
        qls::adamw_update_8bit_blockwise(p.data(), g.data(), c1.data(), c2.data(), a1.data(), a2.data(), n, 1, 1e-3f, h,
                                         q1, q2);
        const std::vector<float> p1 = p;
        const size_t bad[] = {3, 700, 2049};
        g[3] = std::numeric_limits<float>::quiet_NaN();
        g[700] = std::numeric_limits<float>::infinity();
        g[2049] = -std::numeric_limits<float>::infinity();
        qls::adamw_update_8bit_blockwise(p.data(), g.data(), c1.data(), c2.data(), a1.data(), a2.data(), n, 2, 1e-3f, h,
                                         q1, q2);
        for (size_t i : bad) {
            QCOMPARE(p[i], p1[i]);
            QCOMPARE(q1[c1[i]] * a1[i / 256], 0.0f);
            QCOMPARE(q2[c2[i]] * a2[i / 256], 0.0f);
        }
        size_t moved = 0;
        for (size_t i = 0; i < n; ++i) {
            QVERIFY(std::isfinite(p[i]));
            moved += p[i] != p1[i];
        }
        QCOMPARE(moved, n - 3);
    }

    void small_tensors_keep_fp32_states() {
        // bnb min_8bit_size = 4096: a 4095-element tensor keeps fp32 m, v in the 8-bit optimizer; 4096 goes 8-bit.
        std::vector<float> a(4095), b(4096), ga(4095), gb(4096);
        std::mt19937 rng(9);
        std::normal_distribution<float> nd;
        for (float& x : a) x = nd(rng);
        for (float& x : b) x = nd(rng);
        std::vector<float> a32 = a;
        qls::optimizer_config c8;
        c8.kind = qls::optimizer_kind::adamw_8bit;
        qls::optimizer o8({{"a", a.data(), ga.data(), a.size()}, {"b", b.data(), gb.data(), b.size()}}, c8);
        QVERIFY(o8.format(0) == qls::state_format::fp32);
        QVERIFY(o8.format(1) == qls::state_format::blockwise_8bit);
        QCOMPARE(o8.state_bytes(), size_t(4095 * 8 + 4096 * 2 + 16 * 8));
        qls::optimizer_config c32;
        c32.kind = qls::optimizer_kind::adamw_32bit;
        qls::optimizer o32({{"a", a32.data(), ga.data(), a32.size()}}, c32);
        for (int s = 1; s <= 3; ++s) {
            for (float& x : ga) x = nd(rng);
            for (float& x : gb) x = nd(rng);
            o8.step(1e-3f);
            o32.step(1e-3f);
        }
        QVERIFY(std::memcmp(a.data(), a32.data(), a.size() * 4) == 0); // same fp32 arithmetic as the 32-bit optimizer
        const auto st = o8.serialize_state();
        auto has = [&](const std::string& n) {
            return std::any_of(st.begin(), st.end(), [&](const auto& e) { return e.first == n; });
        };
        QVERIFY(has("a.exp_avg") && has("a.exp_avg_sq") && !has("a.state1"));
        QVERIFY(has("b.state1") && has("b.absmax2") && !has("b.exp_avg"));
        QVERIFY(has("optimizer.qmap1") && has("optimizer.step"));
    }

    // ---------------------------------------------------------------- clipping
    void clip_grad_norm_scales_over_the_limit() {
        std::vector<float> a = {3.0f, 4.0f}, b = {12.0f};
        float* gp[] = {a.data(), b.data()};
        const size_t sz[] = {2, 1};
        const float norm = qls::clip_grad_norm(gp, sz, 1.3f);
        QCOMPARE(norm, 13.0f);
        const float coef = float(1.3 / (13.0 + 1e-6)); // max_norm / (total_norm + 1e-6)
        QCOMPARE(a[0], 3.0f * coef);
        QCOMPARE(a[1], 4.0f * coef);
        QCOMPARE(b[0], 12.0f * coef);
        QVERIFY(std::fabs(a[0] - 0.3f) < 1e-6f && std::fabs(b[0] - 1.2f) < 1e-6f);
        // The clipped norm is max_norm (up to the 1e-6 guard).
        std::vector<float> a2 = a, b2 = b;
        float* gp2[] = {a2.data(), b2.data()};
        const float again = qls::clip_grad_norm(gp2, sz, 100.0f);
        QVERIFY(std::fabs(again - 1.3f) < 1e-6f);
    }

    void clip_grad_norm_leaves_small_gradients_alone() {
        std::vector<float> a = {3.0f, -4.0f, 0.1f}, b = {1e-20f};
        const std::vector<float> a0 = a, b0 = b;
        float* gp[] = {a.data(), b.data()};
        const size_t sz[] = {3, 1};
        const float norm = qls::clip_grad_norm(gp, sz, 6.0f);
        QVERIFY(std::fabs(norm - std::sqrt(25.01)) < 1e-6);
        QVERIFY(std::memcmp(a.data(), a0.data(), 12) == 0 && b[0] == b0[0]);
    }

    void clip_grad_norm_accumulates_in_double() {
        // 4096 then 2^24 ones: the squares sum to 2^24 + 2^24 = 2^25. A float running sum sticks at 2^24 (adding 1
        // to 2^24 rounds back), which would give a norm of 4096 instead of sqrt(2^25) = 5792.6.
        const size_t n = (size_t(1) << 24) + 1;
        std::vector<float> g(n, 1.0f);
        g[0] = 4096.0f;
        float* gp[] = {g.data()};
        const size_t sz[] = {n};
        const float norm = qls::clip_grad_norm(gp, sz, 1e9f);
        QCOMPARE(norm, float(std::sqrt(33554432.0)));
        QCOMPARE(g[1], 1.0f); // under the limit: untouched
    }

    void clip_grad_norm_rejects_bad_arguments() {
        std::vector<float> a = {1.0f};
        float* gp[] = {a.data()};
        const size_t sz[] = {1, 1};
        QCOMPARE(failure_of([&] { qls::clip_grad_norm(gp, sz, 1.0f); }, qls::error_code::invalid_argument,
                            {"1 gradients", "2 sizes"}),
                 QString());
        QCOMPARE(failure_of([&] { qls::clip_grad_norm(gp, std::span<const size_t>(sz, 1), 0.0f); },
                            qls::error_code::invalid_argument, {"max_norm"}),
                 QString());
        QCOMPARE(failure_of([&] { qls::clip_grad_norm(gp, std::span<const size_t>(sz, 1), std::nanf("")); },
                            qls::error_code::invalid_argument, {"max_norm"}),
                 QString());
    }

    // ---------------------------------------------------------------- pager
    void pager_lru_and_byte_counts_by_hand() {
        // Page 1 KiB, budget 3 pages. Tensors: A 1000 B (1 page), B 2048 B (2), C 1 B (1), D 1500 B (2), E 3072 B (3).
        constexpr size_t P = 1024;
        qls::pager pg({P, 3 * P}, qls::make_cpu_page_memory());
        QCOMPARE(pg.capacity_pages(), size_t(3));
        const auto A = pg.add_tensor("A", 1000), B = pg.add_tensor("B", 2048), C = pg.add_tensor("C", 1),
                   D = pg.add_tensor("D", 1500), E = pg.add_tensor("E", 3072);
        QCOMPARE(pg.page_count(), size_t(9));
        const size_t a0 = pg.first_page(A), b0 = pg.first_page(B), b1 = b0 + 1, c0 = pg.first_page(C),
                     d0 = pg.first_page(D), d1 = d0 + 1, e0 = pg.first_page(E);
        QCOMPARE(b0, size_t(1));
        QCOMPARE(e0, size_t(6));
        using ps = qls::page_state;
        using order = std::vector<size_t>;
        auto acq = [&](std::initializer_list<qls::pager::tensor_id> ids) {
            pg.acquire(std::vector<qls::pager::tensor_id>(ids));
        };

        acq({A}); // fetch A0                                           h2d 1
        acq({B}); // fetch B0 B1                                        h2d 3
        QCOMPARE(pg.lru_order(), (order{a0, b0, b1}));
        // Write a pattern into B's device pages and mark them dirty (an update wrote them).
        for (size_t k = 0; k < 2; ++k) std::memset(pg.device_page(B, k), int(0x50 + k), P);
        pg.mark_dirty(B);
        QVERIFY(pg.page_residency(b0) == ps::dirty && pg.page_residency(a0) == ps::resident);
        acq({C}); // evict A0 (clean: dropped), fetch C0                h2d 4, d2h 0
        QVERIFY(pg.page_residency(a0) == ps::host && pg.page_residency(c0) == ps::resident);
        QCOMPARE(pg.lru_order(), (order{b0, b1, c0}));
        QCOMPARE(pg.bytes_h2d(), uint64_t(4 * P));
        QCOMPARE(pg.bytes_d2h(), uint64_t(0));
        QCOMPARE(pg.stats().pages_dropped, uint64_t(1));
        acq({A}); // evict B0 (dirty: written back), fetch A0           h2d 5, d2h 1
        QVERIFY(pg.page_residency(b0) == ps::host && pg.page_residency(b1) == ps::dirty);
        QCOMPARE(pg.lru_order(), (order{b1, c0, a0}));
        pg.mark_dirty(A);
        pg.begin_step();
        acq({C}); // hit: C0 becomes most recent, nothing moves
        QCOMPARE(pg.lru_order(), (order{b1, a0, c0}));
        QCOMPARE(pg.step_stats().bytes_h2d + pg.step_stats().bytes_d2h, uint64_t(0));
        acq({D}); // evict B1 (dirty) fetch D0, evict A0 (dirty) fetch D1   h2d 7, d2h 3
        QCOMPARE(pg.lru_order(), (order{c0, d0, d1}));
        QCOMPARE(pg.step_stats().bytes_h2d, uint64_t(2 * P));
        QCOMPARE(pg.step_stats().bytes_d2h, uint64_t(2 * P));
        acq({E}); // evict C0 D0 D1 (all clean), fetch E0 E1 E2          h2d 10, d2h 3
        QCOMPARE(pg.lru_order(), (order{e0, e0 + 1, e0 + 2}));
        QCOMPARE(pg.resident_pages(), size_t(3));
        acq({A, B}); // evict E0 E1 E2 (clean), fetch A0 B0 B1            h2d 13, d2h 3
        QCOMPARE(pg.lru_order(), (order{a0, b0, b1}));
        QCOMPARE(pg.bytes_h2d(), uint64_t(13 * P));
        QCOMPARE(pg.bytes_d2h(), uint64_t(3 * P));
        QCOMPARE(pg.stats().pages_fetched, uint64_t(13));
        QCOMPARE(pg.stats().pages_written_back, uint64_t(3));
        QCOMPARE(pg.stats().pages_dropped, uint64_t(7));
        QCOMPARE(pg.step_stats().bytes_h2d, uint64_t(8 * P));
        for (size_t g = 0; g < pg.page_count(); ++g) QCOMPARE(pg.is_resident(g), g == a0 || g == b0 || g == b1);
        // B's written-back bytes came home and were fetched again intact.
        for (size_t k = 0; k < 2; ++k) {
            const auto* d = static_cast<const uint8_t*>(pg.device_page(B, k));
            QVERIFY(std::all_of(d, d + P, [&](uint8_t x) { return x == 0x50 + k; }));
        }
        // read(): the resident clean copy; D was never written: zeros.
        std::vector<uint8_t> bb(2048), dd(1500, 0xff);
        pg.read(B, bb.data(), bb.size());
        QVERIFY(std::all_of(bb.begin(), bb.begin() + 1024, [](uint8_t x) { return x == 0x50; }));
        QVERIFY(std::all_of(bb.begin() + 1024, bb.end(), [](uint8_t x) { return x == 0x51; }));
        pg.read(D, dd.data(), dd.size());
        QVERIFY(std::all_of(dd.begin(), dd.end(), [](uint8_t x) { return x == 0; }));
        QCOMPARE(pg.bytes_h2d(), uint64_t(13 * P)); // reading clean or host pages moves nothing
        QCOMPARE(pg.bytes_d2h(), uint64_t(3 * P));
    }

    void pager_read_write_count_real_moves() {
        constexpr size_t P = 1024;
        qls::pager pg({P, 2 * P}, qls::make_cpu_page_memory());
        const auto X = pg.add_tensor("X", 2 * P), Y = pg.add_tensor("Y", 100);
        pg.acquire(std::vector<qls::pager::tensor_id>{X});
        std::memset(pg.device_page(X, 1), 7, P);
        pg.mark_dirty(X);
        std::vector<uint8_t> buf(2 * P);
        pg.read(X, buf.data(), buf.size());        // page 1 is dirty: one write-back; both stay resident, now clean
        QCOMPARE(pg.bytes_d2h(), uint64_t(2 * P)); // the dirty flag covers the whole tensor: 2 pages written back
        QVERIFY(pg.page_residency(pg.first_page(X)) == qls::page_state::resident);
        QCOMPARE(buf[P], uint8_t(7));
        pg.read(X, buf.data(), buf.size()); // clean now: nothing moves
        QCOMPARE(pg.bytes_d2h(), uint64_t(2 * P));
        std::vector<uint8_t> src(100, 9);
        pg.write(Y, src.data(), src.size()); // Y is on the host: host copy only, no transfer
        QCOMPARE(pg.bytes_h2d(), uint64_t(2 * P));
        src.assign(2 * P, 3);
        pg.write(X, src.data(), src.size()); // X is resident: both pages go h2d and stay clean
        QCOMPARE(pg.bytes_h2d(), uint64_t(4 * P));
        QCOMPARE(static_cast<const uint8_t*>(pg.device_page(X, 0))[5], uint8_t(3));
        pg.acquire(std::vector<qls::pager::tensor_id>{Y}); // evicts X page 0: clean, dropped
        QCOMPARE(pg.bytes_d2h(), uint64_t(2 * P));
        QCOMPARE(static_cast<const uint8_t*>(pg.device_page(Y, 0))[99], uint8_t(9));
        QCOMPARE(failure_of([&] { pg.write(Y, src.data(), 5); }, qls::error_code::shape_mismatch, {"'Y'", "100 bytes"}),
                 QString());
    }

    void pager_budget_too_small() {
        qls::pager pg({1024, 3 * 1024 + 1000}, qls::make_cpu_page_memory());
        const auto A = pg.add_tensor("A", 1000), E = pg.add_tensor("E", 3 * 1024);
        QCOMPARE(failure_of(
                     [&] {
                         pg.acquire(std::vector<qls::pager::tensor_id>{A, E});
                     },
                     qls::error_code::invalid_argument,
                     {"4072 bytes", "3 pages", "4 pages", "4096 bytes", "'A'", "'E'"}),
                 QString());
        QCOMPARE(failure_of(
                     [] {
                         qls::pager p({4096, 4095}, qls::make_cpu_page_memory());
                     },
                     qls::error_code::invalid_argument, {"4095 bytes", "holds no page"}),
                 QString());
        // The optimizer checks its largest update up front: a 70000-element 8-bit tensor needs 2·18 + 2·1 pages of 4 KiB.
        std::vector<float> p(70000), g(70000);
        qls::optimizer_config c;
        c.kind = qls::optimizer_kind::paged_adamw_8bit;
        c.paging = {4096, 37 * 4096};
        QCOMPARE(failure_of(
                     [&] {
                         qls::optimizer o({{"big", p.data(), g.data(), p.size()}}, c);
                     },
                     qls::error_code::invalid_argument, {"151552 bytes", "'big'", "38 pages", "155648 bytes"}),
                 QString());
        c.paging = {4096, 38 * 4096};
        qls::optimizer ok({{"big", p.data(), g.data(), p.size()}}, c);
        ok.step(1e-3f);
        QCOMPARE(ok.state_pager()->resident_pages(), size_t(38));
        c.paging = {1000, 1 << 20};
        QCOMPARE(failure_of(
                     [&] {
                         qls::optimizer o({{"big", p.data(), g.data(), p.size()}}, c);
                     },
                     qls::error_code::invalid_argument, {"page size 1000"}),
                 QString());
    }

    void cpu_page_memory_checks_sides() {
        auto mem = qls::make_cpu_page_memory();
        void* d = mem->allocate_device(256);
        void* h = mem->allocate_host(256);
        QCOMPARE(mem->device_bytes_allocated(), size_t(256));
        QCOMPARE(failure_of([&] { mem->copy_h2d(h, d, 16); }, qls::error_code::internal, {"copy_h2d destination"}),
                 QString());
        QCOMPARE(failure_of([&] { mem->copy_d2h(h, d, 257); }, qls::error_code::internal, {"copy_d2h"}), QString());
        std::memset(h, 1, 256);
        mem->copy_h2d(d, h, 256);
        QCOMPARE(static_cast<uint8_t*>(d)[255], uint8_t(1));
        mem->free_device(d);
        mem->free_host(h);
        QCOMPARE(mem->device_bytes_allocated(), size_t(0));
    }

    // ---------------------------------------------------------------- paged vs unpaged optimizer
    void paged_matches_unpaged_bit_for_bit_data() {
        QTest::addColumn<bool>("eight");
        QTest::newRow("32-bit") << false;
        QTest::newRow("8-bit") << true;
    }
    void paged_matches_unpaged_bit_for_bit() {
        QFETCH(bool, eight);
        constexpr size_t P = 4096;
        param_set plain = make_params(), paged = make_params();
        // The smallest budget the largest update allows; with all states at least twice that size, the cyclic
        // parameter order makes LRU miss on every page of every update.
        size_t total = 0, worst = 0;
        for (const auto& d : plain.data) {
            const size_t w = working_set_pages(d.size(), eight, P);
            total += w;
            worst = std::max(worst, w);
        }
        QVERIFY2(total >= 2 * worst, "parameter set too small to force evictions on every update");
        qls::optimizer_config cu, cp;
        cu.kind = eight ? qls::optimizer_kind::adamw_8bit : qls::optimizer_kind::adamw_32bit;
        cp.kind = eight ? qls::optimizer_kind::paged_adamw_8bit : qls::optimizer_kind::paged_adamw_32bit;
        cp.paging = {P, worst * P};
        auto counts = std::make_shared<copy_counts>();
        qls::optimizer ou(plain.params(), cu);
        qls::optimizer op(paged.params(), cp, std::make_unique<counting_memory>(counts));
        const qls::pager& pg = *op.state_pager();
        QCOMPARE(pg.page_count(), total);
        QCOMPARE(pg.capacity_pages(), worst);
        for (int64_t s = 1; s <= 50; ++s) {
            plain.fill_grads(s);
            paged.fill_grads(s);
            const float lr = 1e-3f * (1.0f + 0.01f * float(s)); // a schedule, as a trainer would pass
            ou.step(lr, 0.75f);
            op.step(lr, 0.75f);
            const qls::pager_stats st = pg.step_stats();
            // Every page is fetched once per step; every eviction writes back (all states were updated): on step 1
            // the first `worst` pages found free slots, afterwards every fetch evicts.
            QCOMPARE(st.pages_fetched, uint64_t(total));
            QCOMPARE(st.bytes_h2d, uint64_t(total * P));
            const uint64_t evictions = s == 1 ? total - worst : total;
            QCOMPARE(st.pages_written_back, evictions);
            QCOMPARE(st.bytes_d2h, evictions * P);
            QCOMPARE(st.pages_dropped, uint64_t(0));
            QCOMPARE(st.acquires, uint64_t(plain.names.size()));
        }
        QVERIFY2(same_bytes(plain.data, paged.data), "paged and unpaged parameters differ");
        QCOMPARE(state_diff(ou.serialize_state(), op.serialize_state()), QString());
        // The pager's counters are exactly the bytes that went through page_memory (serialize_state's
        // read-backs included), and every copy was one whole page.
        QCOMPARE(pg.bytes_h2d(), counts->h2d);
        QCOMPARE(pg.bytes_d2h(), counts->d2h);
        QCOMPARE(counts->h2d, counts->h2d_calls * P);
        QCOMPARE(counts->d2h, counts->d2h_calls * P);
        QVERIFY(counts->h2d > 0 && counts->d2h > 0);
        QCOMPARE(pg.bytes_h2d(), uint64_t(50 * total * P));
        // The device pool never exceeded the budget.
        QCOMPARE(pg.device_slots_allocated(), worst);
        // The parameters moved, and differently per tensor (a guard against a no-op optimizer).
        param_set fresh = make_params();
        for (size_t i = 0; i < fresh.data.size(); ++i) QVERIFY(fresh.data[i] != plain.data[i]);
    }

    void paged_budget_that_fits_everything_moves_each_page_once() {
        param_set ps = make_params();
        qls::optimizer_config c;
        c.kind = qls::optimizer_kind::paged_adamw_8bit;
        c.paging = {64 * 1024, 64u << 20};
        qls::optimizer o(ps.params(), c);
        for (int64_t s = 1; s <= 5; ++s) {
            ps.fill_grads(s);
            o.step(1e-3f);
            const auto st = o.state_pager()->step_stats();
            QCOMPARE(st.bytes_h2d, s == 1 ? uint64_t(o.state_pager()->page_count() * 64 * 1024) : uint64_t(0));
            QCOMPARE(st.bytes_d2h, uint64_t(0));
        }
        QCOMPARE(o.state_pager()->resident_pages(), o.state_pager()->page_count());
        // The pool grows on demand, in slabs of 16 MiB (256 slots of 64 KiB): the 64 MiB budget (1024 slots) is not
        // allocated for the few pages of state in use.
        const qls::pager& pg = *o.state_pager();
        QVERIFY(pg.page_count() <= 256);
        QCOMPARE(pg.device_slots_allocated(), size_t(256));
        QCOMPARE(pg.capacity_pages(), size_t(1024));
    }

    // ---------------------------------------------------------------- checkpoints
    void save_load_round_trip_data() {
        QTest::addColumn<bool>("eight");
        QTest::newRow("32-bit") << false;
        QTest::newRow("8-bit") << true;
    }
    void save_load_round_trip() {
        QFETCH(bool, eight);
        constexpr size_t P = 4096;
        const auto unpaged_kind = eight ? qls::optimizer_kind::adamw_8bit : qls::optimizer_kind::adamw_32bit;
        const auto paged_kind = eight ? qls::optimizer_kind::paged_adamw_8bit : qls::optimizer_kind::paged_adamw_32bit;
        size_t worst = 0;
        {
            param_set tmp = make_params();
            for (const auto& d : tmp.data) worst = std::max(worst, working_set_pages(d.size(), eight, P));
        }
        auto cfg = [&](qls::optimizer_kind k) {
            qls::optimizer_config c;
            c.kind = k;
            c.paging = {P, (worst + 5) * P};
            return c;
        };
        auto lr = [](int64_t s) { return 2e-3f / float(s); };

        // Uninterrupted: 40 steps.
        param_set ref = make_params();
        qls::optimizer oref(ref.params(), cfg(paged_kind));
        for (int64_t s = 1; s <= 40; ++s) {
            ref.fill_grads(s);
            oref.step(lr(s));
        }
        const auto ref_state = oref.serialize_state();

        // Paged run: 20 steps, save; 7 more steps (states and residency change, some pages dirty); load the
        // step-20 state and parameters back into the same optimizer and continue to 40.
        param_set run = make_params();
        qls::optimizer o(run.params(), cfg(paged_kind));
        for (int64_t s = 1; s <= 20; ++s) {
            run.fill_grads(s);
            o.step(lr(s));
        }
        const auto saved = o.serialize_state();
        const auto saved_params = run.data;
        for (int64_t s = 21; s <= 27; ++s) {
            run.fill_grads(s);
            o.step(lr(s));
        }
        size_t dirty = 0, host = 0;
        for (size_t g = 0; g < o.state_pager()->page_count(); ++g) {
            dirty += o.state_pager()->page_residency(g) == qls::page_state::dirty;
            host += o.state_pager()->page_residency(g) == qls::page_state::host;
        }
        QVERIFY(dirty > 0 && host > 0);
        QVERIFY(state_diff(o.serialize_state(), saved) != QString()); // the 7 extra steps changed the states
        o.load_state(saved);
        QCOMPARE(o.step_count(), int64_t(20));
        QCOMPARE(state_diff(o.serialize_state(), saved), QString()); // whatever the residency, the same values
        for (size_t i = 0; i < run.data.size(); ++i)
            std::memcpy(run.data[i].data(), saved_params[i].data(), saved_params[i].size() * 4);
        for (int64_t s = 21; s <= 40; ++s) {
            run.fill_grads(s);
            o.step(lr(s));
        }
        QVERIFY2(same_bytes(run.data, ref.data),
                 "reload into a running paged optimizer differs from the uninterrupted run");
        QCOMPARE(state_diff(o.serialize_state(), ref_state), QString());

        // A fresh paged optimizer and a fresh unpaged one resume from the same checkpoint and end identical too.
        for (auto kind : {paged_kind, unpaged_kind}) {
            param_set resumed = make_params();
            for (size_t i = 0; i < resumed.data.size(); ++i)
                std::memcpy(resumed.data[i].data(), saved_params[i].data(), saved_params[i].size() * 4);
            qls::optimizer o2(resumed.params(), cfg(kind));
            o2.load_state(saved);
            for (int64_t s = 21; s <= 40; ++s) {
                resumed.fill_grads(s);
                o2.step(lr(s));
            }
            QVERIFY2(same_bytes(resumed.data, ref.data), qls::optimizer_kind_name(kind));
            QCOMPARE(state_diff(o2.serialize_state(), ref_state), QString());
        }
    }

    void load_state_rejects_mismatches() {
        param_set ps = make_params();
        qls::optimizer_config c;
        c.kind = qls::optimizer_kind::adamw_8bit;
        qls::optimizer o(ps.params(), c);
        ps.fill_grads(1);
        o.step(1e-3f);
        auto st = o.serialize_state();
        auto drop = st;
        drop.erase(std::find_if(drop.begin(), drop.end(),
                                [](const auto& e) { return e.first == "layer3.lora_B.absmax2"; }));
        QCOMPARE(failure_of([&] { o.load_state(drop); }, qls::error_code::format,
                            {"'layer3.lora_B.absmax2'", "missing"}),
                 QString());
        auto wrong = st;
        for (auto& [n, t] : wrong)
            if (n == "layer1.lora_B.exp_avg") t = qls::tensor(qls::dtype::f32, {99});
        QCOMPARE(failure_of([&] { o.load_state(wrong); }, qls::error_code::format,
                            {"'layer1.lora_B.exp_avg'", "[99]", "[100]"}),
                 QString());
        // A 32-bit optimizer's checkpoint lacks the 8-bit tensors.
        param_set p32 = make_params();
        qls::optimizer_config c32;
        c32.kind = qls::optimizer_kind::adamw_32bit;
        qls::optimizer o32(p32.params(), c32);
        QCOMPARE(failure_of([&] { o.load_state(o32.serialize_state()); }, qls::error_code::format,
                            {"'optimizer.qmap1'"}),
                 QString());
        QCOMPARE(o.step_count(), int64_t(1)); // failed loads change nothing
        QCOMPARE(state_diff(o.serialize_state(), st), QString());
    }
};

QTEST_APPLESS_MAIN(tst_optim)
#include "tst_optim.moc"
