// `qlora check-gpu`: each CUDA kernel against the CPU reference on fresh random inputs at several shapes.
#include "qls/gpu_checks.h"

#include "qls/device.h" // defines: probe_gpu

#include "backends/cpu/ops.h"
#include "qls/dtype.h"
#include "qls/error.h"
#include "qls/lora.h"
#include "qls/optim.h"
#include "qls/quant.h"
#include "qls/tensor.h"
#include "qls_kernels/adamw.h"
#include "qls_kernels/attention.h"
#include "qls_kernels/attention_fa2.h"
#include "qls_kernels/check.h"
#include "qls_kernels/cross_entropy.h"
#include "qls_kernels/elementwise.h"
#include "qls_kernels/embedding.h"
#include "qls_kernels/family_ops.h"
#include "qls_kernels/gemm.h"
#include "qls_kernels/nf4.h"
#include "qls_kernels/rmsnorm.h"
#include "qls_kernels/rope.h"
#include "qls_kernels/swiglu.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <random>
#include <tuple>

namespace qls {

namespace {

// Device buffer owned for the duration of one check.
struct dbuf {
    void* p = nullptr;
    explicit dbuf(size_t bytes) { QLS_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 1))); }
    ~dbuf() { cudaFree(p); }
    dbuf(dbuf&& o) noexcept : p(o.p) { o.p = nullptr; }
    dbuf(const dbuf&) = delete;
    dbuf& operator=(const dbuf&) = delete;
    template <class T> T* as() const { return static_cast<T*>(p); }
};

template <class T> dbuf upload(const std::vector<T>& v) {
    dbuf d(v.size() * sizeof(T));
    QLS_CUDA_CHECK(cudaMemcpy(d.p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

std::vector<uint16_t> download_bf16(const dbuf& d, size_t n) {
    std::vector<uint16_t> v(n);
    QLS_CUDA_CHECK(cudaMemcpy(v.data(), d.p, n * 2, cudaMemcpyDeviceToHost));
    return v;
}

// A bf16 device result as floats.
std::vector<float> download_bf16_as_f32(const dbuf& d, size_t n) {
    std::vector<uint16_t> got = download_bf16(d, n);
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = bf16_to_f32(got[i]);
    return v;
}

// n values drawn from N(mean, stddev), rounded to bf16: `bits` goes to the GPU, `vals` (the same numbers as floats)
// to the CPU op, so both see identical inputs.
void random_bf16(size_t n, float mean, float stddev, std::mt19937_64& rng, std::vector<uint16_t>& bits,
                 std::vector<float>& vals) {
    std::normal_distribution<float> nd(mean, stddev);
    bits.resize(n);
    vals.resize(n);
    for (size_t i = 0; i < n; ++i) {
        bits[i] = f32_to_bf16(nd(rng));
        vals[i] = bf16_to_f32(bits[i]);
    }
}

void finish(gpu_check_row& r, const std::vector<float>& gpu, const std::vector<float>& cpu) {
    double ref = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
        r.max_abs_error = std::max(r.max_abs_error, double(std::fabs(gpu[i] - cpu[i])));
        ref = std::max(ref, double(std::fabs(cpu[i])));
    }
    r.max_rel_error = ref > 0 ? r.max_abs_error / ref : r.max_abs_error;
    r.passed = r.max_rel_error <= r.tolerance && std::isfinite(r.max_rel_error);
}

std::vector<float> download_f32(const dbuf& d, size_t n) {
    std::vector<float> v(n);
    QLS_CUDA_CHECK(cudaMemcpy(v.data(), d.p, n * 4, cudaMemcpyDeviceToHost));
    return v;
}

// Folds a second output's result into row r (ops with two outputs: one row, the worse of the two, each output's
// error relative to its own largest value).
void merge(gpu_check_row& r, const gpu_check_row& other) {
    r.max_abs_error = std::max(r.max_abs_error, other.max_abs_error);
    r.max_rel_error = std::max(r.max_rel_error, other.max_rel_error);
    r.passed = r.passed && other.passed;
}

// The compare block every check ends with: waits for the launched kernels, then row `op` at `shape` with tolerance
// `tol` (on the error relative to the CPU's largest value), the device result (cpu.size() bf16 or fp32 values)
// against the CPU's.
gpu_check_row compare_bf16(std::string op, std::string shape, double tol, const dbuf& dev,
                           const std::vector<float>& cpu) {
    QLS_CUDA_CHECK(cudaDeviceSynchronize());
    gpu_check_row r{std::move(op), std::move(shape), 0, 0, tol, false};
    finish(r, download_bf16_as_f32(dev, cpu.size()), cpu);
    return r;
}
gpu_check_row compare_f32(std::string op, std::string shape, double tol, const dbuf& dev,
                          const std::vector<float>& cpu) {
    QLS_CUDA_CHECK(cudaDeviceSynchronize());
    gpu_check_row r{std::move(op), std::move(shape), 0, 0, tol, false};
    finish(r, download_f32(dev, cpu.size()), cpu);
    return r;
}
// Folds a further bf16 output of the same op into row r: its error relative to its own largest value, r's tolerance.
void merge_bf16(gpu_check_row& r, const dbuf& dev, const std::vector<float>& cpu) {
    gpu_check_row b = r;
    b.max_abs_error = b.max_rel_error = 0;
    finish(b, download_bf16_as_f32(dev, cpu.size()), cpu);
    merge(r, b);
}

// NF4 + double-quant dequantization: the GPU must equal the CPU's dequantization rounded to bf16, bit for bit.
gpu_check_row check_nf4(int64_t rows, int64_t cols, std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> w(size_t(rows * cols));
    for (float& x : w) x = nd(rng);
    nf4_tensor q = nf4_quantize(w.data(), rows, cols, true);
    std::vector<float> cpu(w.size());
    nf4_dequantize(q, cpu.data());
    for (float& x : cpu) x = bf16_to_f32(f32_to_bf16(x));
    dbuf packed = upload(q.packed), codes = upload(q.absmax_codes), scale = upload(q.absmax_scale);
    std::vector<float> map(q.nested_map.begin(), q.nested_map.end());
    dbuf nmap = upload(map);
    dbuf out(w.size() * 2);
    qls_kernels::nf4_dequantize_dq(out.as<__nv_bfloat16>(), packed.as<uint8_t>(), codes.as<uint8_t>(),
                                   scale.as<float>(), q.absmax_offset, nmap.as<float>(), q.numel(), q.blocksize,
                                   q.nested_blocksize, nullptr);
    return compare_bf16("nf4_dequantize", shape_str({rows, cols}), 0.0, out, cpu);
}

// RMSNorm forward, bf16 in/out with fp32 math, against the fp32 CPU op on the same bf16-rounded inputs.
// Tolerance: the output is rounded to bf16 (8 significant bits): relative error <= 2^-8 of the largest value.
gpu_check_row check_rmsnorm(int N, int C, std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<uint16_t> xb(static_cast<size_t>(N) * C), wb(static_cast<size_t>(C));
    std::vector<float> x(xb.size()), wt(wb.size());
    for (size_t i = 0; i < xb.size(); ++i) {
        xb[i] = f32_to_bf16(nd(rng));
        x[i] = bf16_to_f32(xb[i]);
    }
    for (size_t i = 0; i < wb.size(); ++i) {
        wb[i] = f32_to_bf16(1.0f + 0.1f * nd(rng));
        wt[i] = bf16_to_f32(wb[i]);
    }
    std::vector<float> cpu(x.size()), rstd(static_cast<size_t>(N));
    cpu::rmsnorm_forward(cpu.data(), rstd.data(), x.data(), wt.data(), N, C, 1e-5f);
    dbuf dx = upload(xb), dw = upload(wb), dout(x.size() * 2), drstd(size_t(N) * 4);
    qls_kernels::rmsnorm_forward(dout.as<__nv_bfloat16>(), drstd.as<float>(), dx.as<__nv_bfloat16>(),
                                 dw.as<__nv_bfloat16>(), N, C, 1e-5f, nullptr);
    return compare_bf16("rmsnorm_forward", shape_str({N, C}), 1.0 / 256.0, dout, cpu);
}

// RMSNorm backward (dinp only, written with =), bf16 in/out with fp32 math, against the fp32 CPU op (dinp zeroed
// first, since the CPU op accumulates) on the same bf16-rounded dout, inp, weight and the same fp32 rstd.
// Tolerance 2^-8: the output is rounded to bf16 (<= 2^-9 of each value); the fp32 row sum adds ~1e-6 at most.
// in_place: dinp is dout's buffer, as the CUDA step's per-head q/k norm backward calls it (each warp reads its row's
// dout for the dot product before any lane writes).
gpu_check_row check_rmsnorm_backward(int N, int C, std::mt19937_64& rng, bool in_place = false) {
    const size_t nc = static_cast<size_t>(N) * C;
    std::vector<uint16_t> xb, wb, db;
    std::vector<float> x, wt, dy;
    random_bf16(nc, 0.0f, 1.0f, rng, xb, x);
    random_bf16(static_cast<size_t>(C), 1.0f, 0.1f, rng, wb, wt);
    random_bf16(nc, 0.0f, 1.0f, rng, db, dy);
    std::vector<float> y(nc), rstd(static_cast<size_t>(N)), cpu(nc, 0.0f);
    cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), wt.data(), N, C, 1e-5f);
    cpu::rmsnorm_backward(cpu.data(), static_cast<float*>(nullptr), dy.data(), x.data(), wt.data(), rstd.data(), N, C);
    dbuf dx = upload(xb), dw = upload(wb), ddy = upload(db), drstd = upload(rstd), ddinp(nc * 2);
    const dbuf& result = in_place ? ddy : ddinp;
    qls_kernels::rmsnorm_backward(result.as<__nv_bfloat16>(), ddy.as<__nv_bfloat16>(), dx.as<__nv_bfloat16>(),
                                  dw.as<__nv_bfloat16>(), drstd.as<float>(), N, C, nullptr);
    return compare_bf16(in_place ? "rmsnorm_backward in place" : "rmsnorm_backward", shape_str({N, C}), 1.0 / 256.0,
                        result, cpu);
}

// SwiGLU forward and backward on (N, H), bf16 in/out with fp32 math, against the fp32 CPU ops on the same
// bf16-rounded inputs (gate ~ N(0, 2) to reach both tails of the sigmoid). The GPU backward writes (=), so the
// CPU gradients start at zero. Tolerance 2^-8: the outputs are rounded to bf16 (<= 2^-9 of each value); expf and the
// fp32 products add a few fp32 ulps (~1e-6). The backward row is the worse of dgate and dup, each relative to its
// own largest value.
gpu_check_row check_swiglu_forward(int N, int H, std::mt19937_64& rng) {
    const size_t n = static_cast<size_t>(N) * H;
    std::vector<uint16_t> gb, ub;
    std::vector<float> g, u;
    random_bf16(n, 0.0f, 2.0f, rng, gb, g);
    random_bf16(n, 0.0f, 1.0f, rng, ub, u);
    std::vector<float> cpu(n);
    cpu::swiglu_forward(cpu.data(), g.data(), u.data(), long(n));
    dbuf dg = upload(gb), du = upload(ub), dout(n * 2);
    qls_kernels::swiglu_forward(dout.as<__nv_bfloat16>(), dg.as<__nv_bfloat16>(), du.as<__nv_bfloat16>(), int64_t(n),
                                nullptr);
    return compare_bf16("swiglu_forward", shape_str({N, H}), 1.0 / 256.0, dout, cpu);
}

gpu_check_row check_swiglu_backward(int N, int H, std::mt19937_64& rng) {
    const size_t n = static_cast<size_t>(N) * H;
    std::vector<uint16_t> gb, ub, db;
    std::vector<float> g, u, d;
    random_bf16(n, 0.0f, 2.0f, rng, gb, g);
    random_bf16(n, 0.0f, 1.0f, rng, ub, u);
    random_bf16(n, 0.0f, 1.0f, rng, db, d);
    std::vector<float> cpu_dg(n, 0.0f), cpu_du(n, 0.0f);
    cpu::swiglu_backward(cpu_dg.data(), cpu_du.data(), d.data(), g.data(), u.data(), long(n));
    dbuf dgate = upload(gb), dup = upload(ub), ddout = upload(db), out_dg(n * 2), out_du(n * 2);
    qls_kernels::swiglu_backward(out_dg.as<__nv_bfloat16>(), out_du.as<__nv_bfloat16>(), ddout.as<__nv_bfloat16>(),
                                 dgate.as<__nv_bfloat16>(), dup.as<__nv_bfloat16>(), int64_t(n), nullptr);
    gpu_check_row r = compare_bf16("swiglu_backward", shape_str({N, H}), 1.0 / 256.0, out_dg, cpu_dg);
    merge_bf16(r, out_du, cpu_du);
    return r;
}

// The newer families' ops (family_ops.h) against the CPU ops on the same bf16-rounded inputs. Tolerance 2^-8 as for
// SwiGLU: bf16 outputs (<= 2^-9 of each value) plus a few fp32 ulps of tanhf / rsqrtf.
// GeGLU with tanh GELU (Gemma 3), forward and backward (the worse of dgate and dup).
gpu_check_row check_geglu(int N, int H, std::mt19937_64& rng) {
    const size_t n = static_cast<size_t>(N) * H;
    std::vector<uint16_t> gb, ub, db;
    std::vector<float> g, u, d;
    random_bf16(n, 0.0f, 2.0f, rng, gb, g);
    random_bf16(n, 0.0f, 1.0f, rng, ub, u);
    random_bf16(n, 0.0f, 1.0f, rng, db, d);
    std::vector<float> cpu(n), cpu_dg(n, 0.0f), cpu_du(n, 0.0f);
    cpu::geglu_forward(cpu.data(), g.data(), u.data(), long(n));
    cpu::geglu_backward(cpu_dg.data(), cpu_du.data(), d.data(), g.data(), u.data(), long(n));
    dbuf dg = upload(gb), du = upload(ub), ddout = upload(db), out(n * 2), out_dg(n * 2), out_du(n * 2);
    qls_kernels::geglu_forward(out.as<__nv_bfloat16>(), dg.as<__nv_bfloat16>(), du.as<__nv_bfloat16>(), int64_t(n),
                               nullptr);
    qls_kernels::geglu_backward(out_dg.as<__nv_bfloat16>(), out_du.as<__nv_bfloat16>(), ddout.as<__nv_bfloat16>(),
                                dg.as<__nv_bfloat16>(), du.as<__nv_bfloat16>(), int64_t(n), nullptr);
    gpu_check_row r = compare_bf16("geglu_forward+backward", shape_str({N, H}), 1.0 / 256.0, out, cpu);
    for (const auto& [dev, ref] :
         {std::pair<const dbuf*, const std::vector<float>*>{&out_dg, &cpu_dg}, {&out_du, &cpu_du}}) {
        merge_bf16(r, *dev, *ref);
    }
    return r;
}

// Bias add of a biased linear's output (Qwen2 q/k/v) and the embedding scale (Gemma 3, sqrt(C)).
gpu_check_row check_bias_and_scale(int N, int OC, std::mt19937_64& rng) {
    const size_t n = static_cast<size_t>(N) * OC;
    std::vector<uint16_t> xb, bb;
    std::vector<float> x, b;
    random_bf16(n, 0.0f, 1.0f, rng, xb, x);
    random_bf16(static_cast<size_t>(OC), 0.0f, 0.5f, rng, bb, b);
    std::vector<float> cpu = x;
    cpu::bias_forward(cpu.data(), b.data(), N, OC);
    const float s = std::sqrt(float(OC));
    cpu::scale_inplace(cpu.data(), s, long(n));
    dbuf dx = upload(xb), dbias = upload(bb);
    qls_kernels::bias_add(dx.as<__nv_bfloat16>(), dbias.as<__nv_bfloat16>(), N, OC, nullptr);
    qls_kernels::scale_inplace(dx.as<__nv_bfloat16>(), s, int64_t(n), nullptr);
    // two bf16 roundings (after the add and after the scale)
    return compare_bf16("bias_add+scale", shape_str({N, OC}), 1.0 / 128.0, dx, cpu);
}

// RMSNorm with a weight offset, forward and input gradient: offset 1 is Gemma's (1 + w) (weights near 0), offset 0
// over rows of HS the per-head q/k norm of Qwen3 (weights near 1).
gpu_check_row check_rmsnorm_offset(int N, int C, float offset, std::mt19937_64& rng) {
    const size_t nc = static_cast<size_t>(N) * C;
    std::vector<uint16_t> xb, wb, db;
    std::vector<float> x, w, d;
    random_bf16(nc, 0.0f, 1.0f, rng, xb, x);
    random_bf16(static_cast<size_t>(C), 1.0f - offset, 0.1f, rng, wb, w);
    random_bf16(nc, 0.0f, 1.0f, rng, db, d);
    std::vector<float> cpu(nc), rstd(static_cast<size_t>(N)), cpu_dx(nc, 0.0f);
    cpu::rmsnorm_forward(cpu.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f, offset);
    cpu::rmsnorm_backward(cpu_dx.data(), static_cast<float*>(nullptr), d.data(), x.data(), w.data(), rstd.data(), N, C,
                          offset);
    dbuf dx = upload(xb), dw = upload(wb), dd = upload(db), out(nc * 2), drstd(static_cast<size_t>(N) * 4), ddx(nc * 2);
    qls_kernels::rmsnorm_offset_forward(out.as<__nv_bfloat16>(), drstd.as<float>(), dx.as<__nv_bfloat16>(),
                                        dw.as<__nv_bfloat16>(), N, C, 1e-6f, offset, nullptr);
    qls_kernels::rmsnorm_offset_backward(ddx.as<__nv_bfloat16>(), dd.as<__nv_bfloat16>(), dx.as<__nv_bfloat16>(),
                                         dw.as<__nv_bfloat16>(), drstd.as<float>(), N, C, offset, nullptr);
    gpu_check_row r = compare_bf16(offset != 0 ? "rmsnorm_1plus_w fwd+bwd" : "rmsnorm_per_head fwd+bwd",
                                   shape_str({N, C}), 1.0 / 256.0, out, cpu);
    merge_bf16(r, ddx, cpu_dx);
    return r;
}

// RoPE forward or backward in place on (N, NHX, HS), positions uniform in [0, 4095] (the last row at 4095),
// inv_freq = 10000^(-2i/HS) (Llama), against the fp32 CPU op on the same bf16-rounded x.
// Both sides compute the same fp32 angle float(pos) * inv_freq (up to 4095 rad); the GPU takes cosf/sinf of it
// (<= 2 ulp over the full range, CUDA Programming Guide, so <= 2^-23 absolute), the CPU cos/sin in double. That
// difference moves an output by <= (|x1| + |x2|) * 2^-22 <= 2^-20 of the largest value; the bf16 output rounding
// (<= 2^-9 of each value) dominates. Tolerance 2^-8.
gpu_check_row check_rope(bool backward, int N, int NHX, int HS, std::mt19937_64& rng) {
    const size_t n = static_cast<size_t>(N) * NHX * HS;
    std::vector<uint16_t> xb;
    std::vector<float> cpu;
    random_bf16(n, 0.0f, 1.0f, rng, xb, cpu);
    std::uniform_int_distribution<int> pd(0, 4095);
    std::vector<int> pos(static_cast<size_t>(N));
    for (int& p : pos) p = pd(rng);
    pos.back() = 4095;
    std::vector<float> inv_freq(static_cast<size_t>(HS / 2));
    for (int i = 0; i < HS / 2; ++i) inv_freq[i] = 1.0f / std::pow(10000.0f, float(2 * i) / float(HS));
    if (backward) cpu::rope_backward(cpu.data(), pos.data(), inv_freq.data(), N, NHX, HS);
    else cpu::rope_forward(cpu.data(), pos.data(), inv_freq.data(), N, NHX, HS);
    dbuf dx = upload(xb), dpos = upload(pos), dfreq = upload(inv_freq);
    if (backward)
        qls_kernels::rope_backward(dx.as<__nv_bfloat16>(), dpos.as<int>(), dfreq.as<float>(), N, NHX, HS, nullptr);
    else qls_kernels::rope_forward(dx.as<__nv_bfloat16>(), dpos.as<int>(), dfreq.as<float>(), N, NHX, HS, nullptr);
    return compare_bf16(backward ? "rope_backward" : "rope_forward", shape_str({N, NHX, HS}), 1.0 / 256.0, dx, cpu);
}

// Embedding forward: a gather of bf16 rows, so the GPU must equal the CPU op bit for bit (tolerance 0).
gpu_check_row check_embedding(int N, int V, int C, std::mt19937_64& rng) {
    std::vector<uint16_t> wb;
    std::vector<float> wte;
    random_bf16(static_cast<size_t>(V) * C, 0.0f, 0.02f, rng, wb, wte);
    std::uniform_int_distribution<int> td(0, V - 1);
    std::vector<int> tokens(static_cast<size_t>(N));
    for (int& t : tokens) t = td(rng);
    tokens.front() = 0;
    tokens.back() = V - 1;
    const size_t nc = static_cast<size_t>(N) * C;
    std::vector<float> cpu(nc);
    cpu::embedding_forward(cpu.data(), tokens.data(), wte.data(), N, C);
    dbuf dw = upload(wb), dt = upload(tokens), dout(nc * 2);
    qls_kernels::embedding_forward(dout.as<__nv_bfloat16>(), dt.as<int>(), dw.as<__nv_bfloat16>(), N, C, nullptr);
    return compare_bf16("embedding_forward", shape_str({N, V, C}), 0.0, dout, cpu);
}

// Fused cross-entropy on (N, V): bf16 logits ~ N(0, 2), targets uniform in [0, V) with ~10% set to -1 (the first
// row's target is 0, the last V - 1, where N allows), dloss = 1 / count. CPU: cpu::cross_entropy_forward and
// cpu::cross_entropy_backward (double math, fp32 results; dlogits zeroed first since it accumulates) on the same
// bf16-rounded logits. The GPU writes dlogits in place of the logits.
// Tolerances: losses 1e-5 relative to the largest loss: the GPU sums exp in fp32 in another order (online rescaling
// per thread, then a tree), expf/logf are within 2 ulp, so logsumexp is off by ~V_thread * 2^-24 relative (<~ 1e-6
// for 64 terms per thread) and the loss (~log V + a few) by less; 1e-5 leaves a 10x margin. dlogits 2^-8: the bf16
// output rounding (<= 2^-9 of each value) dominates the ~1e-6 of the fp32 softmax. One row: the worse of the two.
std::vector<gpu_check_row> check_cross_entropy(int N, int V, std::mt19937_64& rng) {
    const size_t nv = static_cast<size_t>(N) * V;
    std::vector<uint16_t> zb;
    std::vector<float> z;
    random_bf16(nv, 0.0f, 2.0f, rng, zb, z);
    std::uniform_int_distribution<int> td(0, V - 1);
    std::bernoulli_distribution ignore(0.1);
    std::vector<int> targets(static_cast<size_t>(N));
    for (int& t : targets) t = ignore(rng) ? -1 : td(rng);
    if (N > 1) {
        targets.front() = 0;
        targets.back() = V - 1;
    }
    std::vector<float> cpu_loss(static_cast<size_t>(N)), cpu_dz(nv, 0.0f);
    const int count = cpu::cross_entropy_forward(cpu_loss.data(), z.data(), targets.data(), N, V);
    const float dloss = count > 0 ? 1.0f / float(count) : 0.0f;
    cpu::cross_entropy_backward(cpu_dz.data(), z.data(), targets.data(), N, V, dloss);
    dbuf dz = upload(zb), dt = upload(targets), dl(static_cast<size_t>(N) * 4);
    qls_kernels::cross_entropy_forward_backward(dl.as<float>(), dz.as<__nv_bfloat16>(), dz.as<__nv_bfloat16>(),
                                                dt.as<int>(), N, V, dloss, nullptr);
    QLS_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> gpu_loss(static_cast<size_t>(N));
    QLS_CUDA_CHECK(cudaMemcpy(gpu_loss.data(), dl.p, gpu_loss.size() * 4, cudaMemcpyDeviceToHost));
    // two rows, each with its own error and tolerance: the fp32 losses and the bf16 dlogits
    gpu_check_row r{"ce_losses", shape_str({N, V}), 0, 0, 1e-5, false};
    finish(r, gpu_loss, cpu_loss);
    gpu_check_row r_dz{"ce_dlogits", shape_str({N, V}), 0, 0, 1.0 / 256.0, false};
    finish(r_dz, download_bf16_as_f32(dz, nv), cpu_dz);
    return {r, r_dz};
}

// Gradients for step s of the AdamW checks: N(0, 1e-2), with a NaN and an Inf in step 2 for tensors of >= 255
// elements (the 8-bit kernel's non-finite path; the 32-bit one would carry them into p, so it gets none).
std::vector<float> adamw_grad(size_t n, int step, bool non_finite, std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 1e-2f);
    std::vector<float> g(n);
    for (float& x : g) x = nd(rng);
    if (non_finite && step == 2 && n >= 255) {
        g[n / 3] = std::numeric_limits<float>::quiet_NaN();
        g[n / 2] = std::numeric_limits<float>::infinity();
    }
    return g;
}

constexpr size_t adamw_check_sizes[] = {1, 255, 4097, 10000, 65537};

// AdamW 32-bit: the 5 tensors above in ONE multi-tensor launch per step, 3 steps (lr 1e-3, 2e-3, 1e-3;
// gnorm_scale 1, 0.5, 1; bnb default betas/eps, wd 0.01), params ~ N(0, 0.02), states from zero; against
// qls::adamw_update_32bit per tensor. The kernel does the CPU's operations in the CPU's order with correctly rounded
// intrinsics and the CPU's host-computed step constants, so p, m and v are expected bit-identical. Tolerance 2^-23
// (one fp32 ulp of the largest value) relative to each array's largest |value|; one row: the worst of p, m, v
// over all tensors.
gpu_check_row check_adamw_32bit(std::mt19937_64& rng) {
    const adamw_hparams h;
    const qls_kernels::adamw_config cfg{h.beta1, h.beta2, h.eps, h.weight_decay};
    std::normal_distribution<float> nd(0.0f, 0.02f);
    const size_t T = std::size(adamw_check_sizes);
    std::vector<std::vector<float>> p(T), m(T), v(T);
    std::vector<dbuf> dp, dg, dm, dv;
    std::vector<qls_kernels::adamw_tensor> desc;
    int64_t max_n = 0;
    for (size_t t = 0; t < T; ++t) {
        const size_t n = adamw_check_sizes[t];
        p[t].resize(n);
        for (float& x : p[t]) x = nd(rng);
        m[t].assign(n, 0.0f);
        v[t].assign(n, 0.0f);
        dp.push_back(upload(p[t]));
        dm.push_back(upload(m[t]));
        dv.push_back(upload(v[t]));
        dg.emplace_back(n * 4);
        desc.push_back({dp[t].as<float>(), dg[t].as<float>(), dm[t].as<float>(), dv[t].as<float>(), int64_t(n)});
        max_n = std::max<int64_t>(max_n, int64_t(n));
    }
    dbuf ddesc = upload(desc);
    const float lrs[3] = {1e-3f, 2e-3f, 1e-3f}, scales[3] = {1.0f, 0.5f, 1.0f};
    for (int step = 1; step <= 3; ++step) {
        for (size_t t = 0; t < T; ++t) {
            std::vector<float> g = adamw_grad(adamw_check_sizes[t], step, false, rng);
            QLS_CUDA_CHECK(cudaMemcpy(dg[t].p, g.data(), g.size() * 4, cudaMemcpyHostToDevice));
            adamw_update_32bit(p[t].data(), g.data(), m[t].data(), v[t].data(), g.size(), step, lrs[step - 1], h,
                               scales[step - 1]);
        }
        qls_kernels::adamw_update_32bit_multi(ddesc.as<qls_kernels::adamw_tensor>(), int(T), max_n, step, lrs[step - 1],
                                              cfg, scales[step - 1], nullptr);
        QLS_CUDA_CHECK(cudaDeviceSynchronize());
    }
    gpu_check_row r{"adamw_32bit_multi (p, m, v)",
                    "5 tensors [1, 255, 4097, 10000, 65537] x 3 steps",
                    0,
                    0,
                    1.0 / 8388608.0,
                    true};
    for (size_t t = 0; t < T; ++t) {
        const size_t n = adamw_check_sizes[t];
        const std::vector<float>* cpu[3] = {&p[t], &m[t], &v[t]};
        const dbuf* gpu[3] = {&dp[t], &dm[t], &dv[t]};
        for (int k = 0; k < 3; ++k) {
            gpu_check_row sub{r.op, r.shape, 0, 0, r.tolerance, false};
            finish(sub, download_f32(*gpu[k], n), *cpu[k]);
            merge(r, sub);
        }
    }
    return r;
}

// AdamW 8-bit blockwise on one tensor of n elements (run for each of the sizes above, partial last blocks
// included), 3 steps from zero codes and absmax, a NaN and an Inf gradient in step 2; against
// qls::adamw_update_8bit_blockwise with qmap1 = dynamic_map(true), qmap2 = dynamic_map(false). Codes come from the
// same quantize_2D search on the same fp32 values, absmax from an exact max, and p from the CPU's operations in its
// order: codes and absmax must be identical (tolerance 0; the row's error counts a code mismatch as its code
// distance over 255), p within 2^-23 of the largest |p| (expected 0). One row: the worst of p, codes, absmax.
gpu_check_row check_adamw_8bit(size_t n, std::mt19937_64& rng) {
    const adamw_hparams h;
    const qls_kernels::adamw_config cfg{h.beta1, h.beta2, h.eps, h.weight_decay};
    const std::array<float, 256> qm1 = dynamic_map(true), qm2 = dynamic_map(false);
    const size_t nb = (n + adamw_8bit_block - 1) / adamw_8bit_block;
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> p(n), a1(nb, 0.0f), a2(nb, 0.0f);
    for (float& x : p) x = nd(rng);
    std::vector<uint8_t> c1(n, 0), c2(n, 0);
    dbuf dp = upload(p), dg(n * 4), dc1 = upload(c1), dc2 = upload(c2), da1 = upload(a1), da2 = upload(a2);
    dbuf dq1 = upload(std::vector<float>(qm1.begin(), qm1.end())),
         dq2 = upload(std::vector<float>(qm2.begin(), qm2.end()));
    const float lrs[3] = {1e-3f, 2e-3f, 1e-3f}, scales[3] = {1.0f, 0.5f, 1.0f};
    for (int step = 1; step <= 3; ++step) {
        std::vector<float> g = adamw_grad(n, step, true, rng);
        QLS_CUDA_CHECK(cudaMemcpy(dg.p, g.data(), n * 4, cudaMemcpyHostToDevice));
        adamw_update_8bit_blockwise(p.data(), g.data(), c1.data(), c2.data(), a1.data(), a2.data(), n, step,
                                    lrs[step - 1], h, qm1, qm2, scales[step - 1]);
        qls_kernels::adamw_update_8bit_blockwise(dp.as<float>(), dg.as<float>(), dc1.as<uint8_t>(), dc2.as<uint8_t>(),
                                                 da1.as<float>(), da2.as<float>(), int64_t(n), step, lrs[step - 1], cfg,
                                                 dq1.as<float>(), dq2.as<float>(), scales[step - 1], nullptr);
        QLS_CUDA_CHECK(cudaDeviceSynchronize());
    }
    gpu_check_row r{"adamw_8bit_blockwise (p; codes, absmax exact)",
                    shape_str({int64_t(n)}),
                    0,
                    0,
                    1.0 / 8388608.0,
                    false};
    finish(r, download_f32(dp, n), p);
    for (int k = 0; k < 2; ++k) {
        std::vector<uint8_t> got(n);
        QLS_CUDA_CHECK(cudaMemcpy(got.data(), (k == 0 ? dc1 : dc2).p, n, cudaMemcpyDeviceToHost));
        const std::vector<uint8_t>& want = k == 0 ? c1 : c2;
        gpu_check_row sub{r.op, r.shape, 0, 0, 0.0, true};
        for (size_t i = 0; i < n; ++i) {
            const double d = std::fabs(double(got[i]) - double(want[i]));
            sub.max_abs_error = std::max(sub.max_abs_error, d);
            sub.max_rel_error = std::max(sub.max_rel_error, d / 255.0);
        }
        sub.passed = sub.max_abs_error == 0;
        merge(r, sub);
        gpu_check_row sa{r.op, r.shape, 0, 0, 0.0, false};
        finish(sa, download_f32(k == 0 ? da1 : da2, nb), k == 0 ? a1 : a2);
        merge(r, sa);
    }
    return r;
}

// The fused multi-tensor 8-bit AdamW (one launch over every tensor) against the CPU's per-tensor update, 3 steps:
// codes and absmax exact, parameters within the fast-math bound of the single-tensor check.
gpu_check_row check_adamw_8bit_multi(std::mt19937_64& rng) {
    const adamw_hparams h;
    const qls_kernels::adamw_config cfg{h.beta1, h.beta2, h.eps, h.weight_decay};
    const std::array<float, 256> qm1 = dynamic_map(true), qm2 = dynamic_map(false);
    const size_t T = std::size(adamw_check_sizes);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<std::vector<float>> p(T), a1(T), a2(T);
    std::vector<std::vector<uint8_t>> c1(T), c2(T);
    std::vector<dbuf> dp, dg, dc1, dc2, da1, da2;
    std::vector<qls_kernels::adamw8_tensor> desc;
    size_t max_n = 0;
    for (size_t t = 0; t < T; ++t) {
        const size_t n = adamw_check_sizes[t], nb = (n + adamw_8bit_block - 1) / adamw_8bit_block;
        max_n = std::max(max_n, n);
        p[t].resize(n);
        for (float& x : p[t]) x = nd(rng);
        a1[t].assign(nb, 0.0f);
        a2[t].assign(nb, 0.0f);
        c1[t].assign(n, 0);
        c2[t].assign(n, 0);
        dp.push_back(upload(p[t]));
        dg.emplace_back(n * 4);
        dc1.push_back(upload(c1[t]));
        dc2.push_back(upload(c2[t]));
        da1.push_back(upload(a1[t]));
        da2.push_back(upload(a2[t]));
        desc.push_back({dp[t].as<float>(), dg[t].as<float>(), dc1[t].as<uint8_t>(), dc2[t].as<uint8_t>(),
                        da1[t].as<float>(), da2[t].as<float>(), int64_t(n)});
    }
    dbuf ddesc = upload(desc);
    dbuf dq1 = upload(std::vector<float>(qm1.begin(), qm1.end())),
         dq2 = upload(std::vector<float>(qm2.begin(), qm2.end()));
    const float lrs[3] = {1e-3f, 2e-3f, 1e-3f}, scales[3] = {1.0f, 0.5f, 1.0f};
    for (int step = 1; step <= 3; ++step) {
        for (size_t t = 0; t < T; ++t) {
            const size_t n = adamw_check_sizes[t];
            std::vector<float> g = adamw_grad(n, step, true, rng);
            QLS_CUDA_CHECK(cudaMemcpy(dg[t].p, g.data(), n * 4, cudaMemcpyHostToDevice));
            adamw_update_8bit_blockwise(p[t].data(), g.data(), c1[t].data(), c2[t].data(), a1[t].data(), a2[t].data(),
                                        n, step, lrs[step - 1], h, qm1, qm2, scales[step - 1]);
        }
        qls_kernels::adamw_update_8bit_blockwise_multi(ddesc.as<qls_kernels::adamw8_tensor>(), int(T), int64_t(max_n),
                                                       step, lrs[step - 1], cfg, dq1.as<float>(), dq2.as<float>(),
                                                       scales[step - 1], nullptr);
        QLS_CUDA_CHECK(cudaDeviceSynchronize());
    }
    gpu_check_row r{"adamw_8bit_multi (p; codes, absmax exact)",
                    std::to_string(T) + " tensors in one launch",
                    0,
                    0,
                    1.0 / 8388608.0,
                    true};
    for (size_t t = 0; t < T; ++t) {
        const size_t n = adamw_check_sizes[t], nb = a1[t].size();
        gpu_check_row pr{r.op, r.shape, 0, 0, r.tolerance, false};
        finish(pr, download_f32(dp[t], n), p[t]);
        merge(r, pr);
        for (int k = 0; k < 2; ++k) {
            std::vector<uint8_t> got(n);
            QLS_CUDA_CHECK(cudaMemcpy(got.data(), (k == 0 ? dc1 : dc2)[t].p, n, cudaMemcpyDeviceToHost));
            gpu_check_row sub{r.op, r.shape, 0, 0, 0.0, true};
            for (size_t i = 0; i < n; ++i)
                if (got[i] != (k == 0 ? c1 : c2)[t][i]) {
                    sub.passed = false;
                    sub.max_abs_error = std::max(sub.max_abs_error, 1.0);
                }
            merge(r, sub);
            gpu_check_row sa{r.op, r.shape, 0, 0, 0.0, false};
            finish(sa, download_f32((k == 0 ? da1 : da2)[t], nb), k == 0 ? a1[t] : a2[t]);
            merge(r, sa);
        }
    }
    return r;
}

// The small ops of the training step against their CPU definitions: LoRA dropout (the shared counter hash: the mask
// and the scaled values exactly), the fp32-accumulating RMSNorm input gradient, the deterministic sum of squares.
std::vector<gpu_check_row> check_step_ops(int N, int C, std::mt19937_64& rng) {
    using bf = __nv_bfloat16;
    std::vector<gpu_check_row> rows;
    const size_t nc = size_t(N) * C;
    const std::string shape = shape_str({N, C});
    std::vector<uint16_t> xb, wb, db;
    std::vector<float> x, w, dy;
    random_bf16(nc, 0.0f, 1.0f, rng, xb, x);
    random_bf16(size_t(C), 1.0f, 0.1f, rng, wb, w);
    random_bf16(nc, 0.0f, 1.0f, rng, db, dy);
    dbuf gx = upload(xb), gw = upload(wb);
    { // dropout p = 0.1 at (seed, layer 3, target up): out = keep ? x / 0.9 : 0, rounded to bf16
        const uint64_t seed = rng();
        std::vector<float> cpu(nc);
        for (size_t i = 0; i < nc; ++i)
            cpu[i] = lora_dropout_keep(seed, 3, lora_target::up, i, 0.1f)
                         ? bf16_to_f32(f32_to_bf16(x[i] * (1.0f / 0.9f)))
                         : 0.0f;
        dbuf out(nc * 2);
        qls_kernels::lora_dropout(out.as<bf>(), nullptr, gx.as<bf>(), int64_t(nc), seed, 3, int(lora_target::up), 0.1f,
                                  false, nullptr);
        rows.push_back(compare_bf16("lora_dropout", shape, 0.0, out, cpu));
    }
    { // RMSNorm input gradient accumulated into fp32 (dres += ...), dout fp32
        std::vector<float> y(nc), rstd(static_cast<size_t>(N)), cpu(nc);
        cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        for (float& v : cpu) v = nd(rng);
        std::vector<float> start = cpu;
        cpu::rmsnorm_backward(cpu.data(), static_cast<float*>(nullptr), dy.data(), x.data(), w.data(), rstd.data(), N,
                              C);
        dbuf dres = upload(start), ddy = upload(dy), drstd = upload(rstd);
        qls_kernels::rmsnorm_backward_accumulate(dres.as<float>(), ddy.as<float>(), gx.as<bf>(), gw.as<bf>(),
                                                 drstd.as<float>(), N, C, nullptr);
        rows.push_back(compare_f32("rmsnorm_bwd_accum", shape, 1e-5, dres, cpu));
    }
    { // sum of squares (the gradient norm) against a double sum
        double ref = 0;
        for (float v : dy) ref += double(v) * double(v);
        dbuf ddy = upload(dy), partial(size_t(qls_kernels::sum_squares_partials()) * 4), out(4);
        qls_kernels::sum_squares(out.as<float>(), partial.as<float>(), ddy.as<float>(), int64_t(nc), nullptr);
        QLS_CUDA_CHECK(cudaDeviceSynchronize());
        gpu_check_row r{"sum_squares", shape, 0, 0, 1e-6, false};
        finish(r, download_f32(out, 1), {float(ref)});
        rows.push_back(r);
    }
    return rows;
}

// The row-major cuBLAS wrapper in the three forms the step uses (y = x Wᵀ into bf16, dx = dy W into fp32 with
// beta = 1, dW = dyᵀ x into fp32) against a double-precision product of the same bf16 operands.
// Tolerances: bf16 output 2^-8 (its rounding); fp32 output 1e-4 (fp32 accumulation over K terms).
std::vector<gpu_check_row> check_gemm(int M, int N, int K, std::mt19937_64& rng) {
    using bf = __nv_bfloat16;
    std::vector<gpu_check_row> rows;
    std::vector<uint16_t> xb, wb, yb;
    std::vector<float> x, w, dy;
    random_bf16(size_t(M) * K, 0.0f, 1.0f, rng, xb, x);  // x (M, K)
    random_bf16(size_t(N) * K, 0.0f, 1.0f, rng, wb, w);  // W (N, K)
    random_bf16(size_t(M) * N, 0.0f, 1.0f, rng, yb, dy); // dy (M, N)
    dbuf gx = upload(xb), gw = upload(wb), gdy = upload(yb), ws(32u << 20);
    qls_kernels::blas blas(nullptr, ws.p, 32u << 20);
    const std::string shape = shape_str({M, N, K});
    { // y (M, N) = x Wᵀ, bf16 out
        std::vector<float> cpu(size_t(M) * N);
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) {
                double acc = 0;
                for (int k = 0; k < K; ++k) acc += double(x[size_t(i) * K + k]) * w[size_t(j) * K + k];
                cpu[size_t(i) * N + j] = float(acc);
            }
        dbuf out(size_t(M) * N * 2);
        blas.gemm(false, true, M, N, K, gx.as<bf>(), K, gw.as<bf>(), K, out.p, false, N, 1.0f, 0.0f);
        rows.push_back(compare_bf16("gemm x·Wᵀ bf16", shape, 1.0 / 256.0, out, cpu));
    }
    { // dx (M, K) += dy W, fp32 out, beta = 1
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> cpu(size_t(M) * K);
        for (float& v : cpu) v = nd(rng);
        dbuf out = upload(cpu);
        for (int i = 0; i < M; ++i)
            for (int k = 0; k < K; ++k) {
                double acc = cpu[size_t(i) * K + k];
                for (int j = 0; j < N; ++j) acc += double(dy[size_t(i) * N + j]) * w[size_t(j) * K + k];
                cpu[size_t(i) * K + k] = float(acc);
            }
        blas.gemm(false, false, M, K, N, gdy.as<bf>(), N, gw.as<bf>(), K, out.p, true, K, 1.0f, 1.0f);
        rows.push_back(compare_f32("gemm dy·W += f32", shape, 1e-4, out, cpu));
    }
    { // dW (N, K) = dyᵀ x, fp32 out
        std::vector<float> cpu(size_t(N) * K);
        for (int j = 0; j < N; ++j)
            for (int k = 0; k < K; ++k) {
                double acc = 0;
                for (int i = 0; i < M; ++i) acc += double(dy[size_t(i) * N + j]) * x[size_t(i) * K + k];
                cpu[size_t(j) * K + k] = float(acc);
            }
        dbuf out(size_t(N) * K * 4);
        blas.gemm(true, false, N, K, M, gdy.as<bf>(), N, gx.as<bf>(), K, out.p, true, K, 1.0f, 0.0f);
        rows.push_back(compare_f32("gemm dyᵀ·x f32", shape, 1e-4, out, cpu));
    }
    return rows;
}

} // namespace

// Flash-style attention forward and backward (bf16 q, k, v, dout; fp32 softmax; bf16 P in the tensor-core products)
// against the fp32 CPU op, which materialises the (B, NH, T, T) probabilities, on the same bf16-rounded inputs.
// segment: packed examples (three segments per row) or none. Each output's error is relative to its largest value.
// Tolerance 2^-6: beyond the output's bf16 rounding (2^-9), P and dS are rounded to bf16 before their products
// (FlashAttention-2 does the same), which adds up to ~2^-8 relative over a row's sum.
// window > 0 / scale > 0: a sliding-window layer with its own softmax scale (Gemma 3), both in the CPU and the GPU op.
std::vector<gpu_check_row> check_attention(int B, int T, int NH, int NKV, int HS, bool segments, std::mt19937_64& rng,
                                           int window = 0, float scale = 0.0f) {
    const size_t nq = size_t(B) * T * NH * HS, nk = size_t(B) * T * NKV * HS;
    std::vector<uint16_t> qb, kb, vb, db;
    std::vector<float> q, k, v, dout;
    random_bf16(nq, 0.0f, 1.0f, rng, qb, q);
    random_bf16(nk, 0.0f, 1.0f, rng, kb, k);
    random_bf16(nk, 0.0f, 1.0f, rng, vb, v);
    random_bf16(nq, 0.0f, 1.0f, rng, db, dout);
    std::vector<int> seg;
    if (segments) {
        seg.resize(size_t(B) * T);
        for (int b = 0; b < B; ++b)
            for (int t = 0; t < T; ++t) seg[size_t(b) * T + t] = t < T / 3 ? 0 : (t < (2 * T) / 3 ? 1 : 2);
    }
    const int* segp = segments ? seg.data() : nullptr;
    std::vector<float> out(nq), att(size_t(B) * NH * T * T), dq(nq, 0.0f), dk(nk, 0.0f), dv(nk, 0.0f);
    cpu::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), segp, B, T, NH, NKV, HS, window,
                           double(scale));
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), att.data(), q.data(), k.data(), v.data(), B,
                            T, NH, NKV, HS, double(scale));
    dbuf gq = upload(qb), gk = upload(kb), gv = upload(vb), gd = upload(db);
    dbuf gseg(std::max<size_t>(seg.size(), 1) * 4);
    if (segments) QLS_CUDA_CHECK(cudaMemcpy(gseg.p, seg.data(), seg.size() * 4, cudaMemcpyHostToDevice));
    dbuf gout(nq * 2), glse(size_t(B) * NH * T * 4), gdq(nq * 2), gdk(nk * 2), gdv(nk * 2),
        gdelta(size_t(B) * NH * T * 4);
    using bf = __nv_bfloat16;
    const int* gsegp = segments ? gseg.as<int>() : nullptr;
    std::string shape = shape_str({B, T, NH, NKV, HS}) + (segments ? " packed" : "");
    if (window > 0) shape += " window " + std::to_string(window);
    if (scale > 0) shape += " scale " + std::to_string(scale);
    // both kernel paths on the same inputs against the same CPU result: the WMMA kernels ("attention_*") and, for the
    // head sizes they cover, the FlashAttention-2 kernels ("attention_fa2_*"); outputs are cleared between the two
    std::vector<gpu_check_row> rows;
    for (const bool fa2 : {false, true}) {
        if (fa2 && !qls_kernels::attention_fa2_supported(HS)) break;
        for (auto [d, bytes] : {std::pair<dbuf*, size_t>{&gout, nq * 2},
                                {&glse, size_t(B) * NH * T * 4},
                                {&gdq, nq * 2},
                                {&gdk, nk * 2},
                                {&gdv, nk * 2},
                                {&gdelta, size_t(B) * NH * T * 4}})
            QLS_CUDA_CHECK(cudaMemset(d->p, 0, bytes));
        if (fa2) {
            qls_kernels::attention_fa2_forward(gout.as<bf>(), glse.as<float>(), gq.as<bf>(), gk.as<bf>(), gv.as<bf>(),
                                               gsegp, B, T, NH, NKV, HS, nullptr, window, scale);
            qls_kernels::attention_fa2_backward(gdq.as<bf>(), gdk.as<bf>(), gdv.as<bf>(), gdelta.as<float>(),
                                                gd.as<bf>(), gout.as<bf>(), glse.as<float>(), gq.as<bf>(), gk.as<bf>(),
                                                gv.as<bf>(), gsegp, B, T, NH, NKV, HS, nullptr, window, scale);
        } else {
            qls_kernels::attention_forward(gout.as<bf>(), glse.as<float>(), gq.as<bf>(), gk.as<bf>(), gv.as<bf>(),
                                           gsegp, B, T, NH, NKV, HS, nullptr, window, scale);
            qls_kernels::attention_backward(gdq.as<bf>(), gdk.as<bf>(), gdv.as<bf>(), gdelta.as<float>(), gd.as<bf>(),
                                            gout.as<bf>(), glse.as<float>(), gq.as<bf>(), gk.as<bf>(), gv.as<bf>(),
                                            gsegp, B, T, NH, NKV, HS, nullptr, window, scale);
        }
        const std::string p = fa2 ? "attention_fa2_" : "attention_";
        rows.push_back(compare_bf16(p + "forward", shape, 1.0 / 64.0, gout, out));
        rows.push_back(compare_bf16(p + "bwd_dq", shape, 1.0 / 64.0, gdq, dq));
        rows.push_back(compare_bf16(p + "bwd_dk", shape, 1.0 / 64.0, gdk, dk));
        rows.push_back(compare_bf16(p + "bwd_dv", shape, 1.0 / 64.0, gdv, dv));
    }
    return rows;
}

std::vector<attention_bench_row> run_attention_bench(int T, int NH, int HS, int iters, uint64_t seed) {
    if (T < 1 || NH < 1 || HS < 8 || HS % 8 != 0 || HS > qls_kernels::attention_max_head_size || iters < 1)
        throw error(error_code::invalid_argument,
                    "attention bench: T=" + std::to_string(T) + " NH=" + std::to_string(NH) +
                        " HS=" + std::to_string(HS) + " is not a shape the attention kernels take",
                    "give --seq >= 1, --heads >= 1 and --head-dim a multiple of 8 up to 128");
    const gpu_probe p = probe_gpu();
    if (!p.available)
        throw error(error_code::device, p.message,
                    "run the attention bench on a machine with an NVIDIA GPU and driver");
    const int B = 1, NKV = NH;
    const size_t n = size_t(B) * T * NH * HS, nrow = size_t(B) * NH * T;
    std::mt19937_64 rng(seed);
    std::vector<uint16_t> qb, kb, vb, db;
    std::vector<float> tmp;
    random_bf16(n, 0.0f, 1.0f, rng, qb, tmp);
    random_bf16(n, 0.0f, 1.0f, rng, kb, tmp);
    random_bf16(n, 0.0f, 1.0f, rng, vb, tmp);
    random_bf16(n, 0.0f, 1.0f, rng, db, tmp);
    using bf = __nv_bfloat16;
    std::vector<attention_bench_row> rows;
    std::vector<uint16_t> first_out;
    try {
        dbuf gq = upload(qb), gk = upload(kb), gv = upload(vb), gd = upload(db);
        dbuf gout(n * 2), glse(nrow * 4), gdq(n * 2), gdk(n * 2), gdv(n * 2), gdelta(nrow * 4);
        cudaEvent_t e0, e1;
        QLS_CUDA_CHECK(cudaEventCreate(&e0));
        QLS_CUDA_CHECK(cudaEventCreate(&e1));
        // FLOPs as FlashAttention-2 counts them (benchmarks/benchmark_flash_attention.py, flops()): forward
        // 4·B·NH·T²·D, halved for the causal mask; the backward does 2.5× the forward's (5 matmuls to 2, with the
        // recomputed S counted in).
        const double fwd_flops = 4.0 * B * NH * double(T) * double(T) * HS / 2.0, bwd_flops = 2.5 * fwd_flops;
        for (const bool fa2 : {false, true}) {
            if (fa2 && !qls_kernels::attention_fa2_supported(HS)) break;
            auto fwd = [&] {
                if (fa2)
                    qls_kernels::attention_fa2_forward(gout.as<bf>(), glse.as<float>(), gq.as<bf>(), gk.as<bf>(),
                                                       gv.as<bf>(), nullptr, B, T, NH, NKV, HS, nullptr);
                else
                    qls_kernels::attention_forward(gout.as<bf>(), glse.as<float>(), gq.as<bf>(), gk.as<bf>(),
                                                   gv.as<bf>(), nullptr, B, T, NH, NKV, HS, nullptr);
            };
            auto bwd = [&] {
                if (fa2)
                    qls_kernels::attention_fa2_backward(gdq.as<bf>(), gdk.as<bf>(), gdv.as<bf>(), gdelta.as<float>(),
                                                        gd.as<bf>(), gout.as<bf>(), glse.as<float>(), gq.as<bf>(),
                                                        gk.as<bf>(), gv.as<bf>(), nullptr, B, T, NH, NKV, HS, nullptr);
                else
                    qls_kernels::attention_backward(gdq.as<bf>(), gdk.as<bf>(), gdv.as<bf>(), gdelta.as<float>(),
                                                    gd.as<bf>(), gout.as<bf>(), glse.as<float>(), gq.as<bf>(),
                                                    gk.as<bf>(), gv.as<bf>(), nullptr, B, T, NH, NKV, HS, nullptr);
            };
            auto time_ms = [&](auto&& f) {
                for (int i = 0; i < 3; ++i) f(); // warm-up: first-launch and shared-memory attribute costs
                QLS_CUDA_CHECK(cudaEventRecord(e0));
                for (int i = 0; i < iters; ++i) f();
                QLS_CUDA_CHECK(cudaEventRecord(e1));
                QLS_CUDA_CHECK(cudaEventSynchronize(e1));
                float ms = 0;
                QLS_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
                return double(ms) / iters;
            };
            attention_bench_row r;
            r.path = fa2 ? "fa2" : "wmma";
            r.forward_ms = time_ms(fwd);
            r.backward_ms = time_ms(bwd);
            r.forward_tflops = fwd_flops / (r.forward_ms * 1e-3) / 1e12;
            r.backward_tflops = bwd_flops / (r.backward_ms * 1e-3) / 1e12;
            // the two paths on the same inputs: the largest output difference relative to the largest output
            std::vector<uint16_t> o(n);
            QLS_CUDA_CHECK(cudaMemcpy(o.data(), gout.p, n * 2, cudaMemcpyDeviceToHost));
            if (first_out.empty()) first_out = o;
            double md = 0, mx = 0;
            for (size_t i = 0; i < n; ++i) {
                const double a = bf16_to_f32(first_out[i]), b = bf16_to_f32(o[i]);
                md = std::max(md, std::fabs(a - b));
                mx = std::max(mx, std::fabs(a));
            }
            r.forward_rel_diff_vs_wmma = mx > 0 ? md / mx : md;
            rows.push_back(r);
        }
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
    } catch (const qls_kernels::cuda_failure& e) {
        throw error(error_code::device, e.what(),
                    "check the driver (nvidia-smi) and that no other process holds the GPU");
    }
    return rows;
}

std::vector<gpu_check_row> run_gpu_op_checks(uint64_t seed) {
    const gpu_probe p = probe_gpu();
    if (!p.available)
        throw error(error_code::device, p.message, "run check-gpu on a machine with an NVIDIA GPU and driver");
    std::mt19937_64 rng(seed);
    std::vector<gpu_check_row> rows;
    try {
        // shapes: tiny, odd (partial NF4 and nested blocks), and Llama-2-7B's projections
        for (auto [r, c] : {std::pair<int64_t, int64_t>{3, 43}, {96, 200}, {4096, 4096}, {11008, 4096}, {4096, 11008}})
            rows.push_back(check_nf4(r, c, rng));
        for (auto [n, c] : {std::pair<int, int>{1, 64}, {7, 100}, {2048, 4096}, {513, 5120}})
            rows.push_back(check_rmsnorm(n, c, rng));
        for (auto [n, c] : {std::pair<int, int>{1, 64}, {7, 100}, {2048, 4096}, {513, 5120}})
            rows.push_back(check_rmsnorm_backward(n, c, rng));
        // (N, H): tiny, odd, Llama-2-7B's MLP at 2048 tokens, odd rows with Llama-2-13B's H
        for (auto [n, h] : {std::pair<int, int>{1, 64}, {7, 100}, {2048, 11008}, {513, 13824}}) {
            rows.push_back(check_swiglu_forward(n, h, rng));
            rows.push_back(check_swiglu_backward(n, h, rng));
        }
        // the newer families' ops: (N, H) of Gemma-3-12B's MLP and an odd one; Qwen2.5-7B's q (3584) with its bias;
        // Gemma's (1 + w) norm at C = 3840; per-head q/k norms: N*NH rows of HS 128 (Qwen3) and 256 (Gemma 3)
        for (auto [n, h] : {std::pair<int, int>{7, 100}, {512, 15360}}) rows.push_back(check_geglu(n, h, rng));
        for (auto [n, oc] : {std::pair<int, int>{7, 100}, {2048, 3584}})
            rows.push_back(check_bias_and_scale(n, oc, rng));
        for (auto [n, c] : {std::pair<int, int>{7, 100}, {513, 3840}})
            rows.push_back(check_rmsnorm_offset(n, c, 1.0f, rng));
        for (auto [n, c] : {std::pair<int, int>{7 * 32, 128}, {2048 * 16, 256}})
            rows.push_back(check_rmsnorm_offset(n, c, 0.0f, rng));
        // (N, NHX, HS): queries (NH = 32) and keys (NKV = 8) of a GQA model with HS = 128, plus an odd small case
        for (auto [n, nhx, hs] :
             {std::tuple<int, int, int>{7, 32, 128}, {7, 8, 128}, {2048, 32, 128}, {2048, 8, 128}, {5, 3, 64}}) {
            rows.push_back(check_rope(false, n, nhx, hs, rng));
            rows.push_back(check_rope(true, n, nhx, hs, rng));
        }
        // (N, V, C): odd small table, Llama-2-7B's table at 2048 tokens
        for (auto [n, v, c] : {std::tuple<int, int, int>{7, 50, 100}, {2048, 32000, 4096}})
            rows.push_back(check_embedding(n, v, c, rng));
        // (N, V): one row, a small odd chunk, a 1024-row chunk; V: small, Llama-2's 32000, odd 32001
        for (int n : {1, 7, 1024})
            for (int v : {512, 32000, 32001})
                for (const gpu_check_row& r : check_cross_entropy(n, v, rng)) rows.push_back(r);
        // (B, T, NH, NKV, HS): stories260K's heads (HS 8), odd T with GQA and packing, Llama-2-7B's heads at 1024
        for (auto [b, t, nh, nkv, hs, sg] : {std::tuple<int, int, int, int, int, bool>{1, 64, 8, 4, 8, false},
                                             {2, 100, 4, 2, 16, true},
                                             {1, 257, 8, 1, 64, false},
                                             {2, 130, 4, 4, 128, true},
                                             {1, 1024, 32, 32, 128, false}})
            for (const gpu_check_row& r : check_attention(b, t, nh, nkv, hs, sg, rng)) rows.push_back(r);
        // sliding windows (Gemma 3): smaller than a 64-key tile, a whole tile, across tiles with packing; the last
        // one with Gemma's query_pre_attn_scalar^-0.5 scale
        for (auto [b, t, nh, nkv, hs, sg, w] :
             {std::tuple<int, int, int, int, int, bool, int>{1, 200, 4, 2, 64, false, 17},
              {2, 130, 4, 4, 128, true, 64},
              {1, 300, 8, 4, 128, false, 100}})
            for (const gpu_check_row& r :
                 check_attention(b, t, nh, nkv, hs, sg, rng, w, w == 100 ? 1.0f / std::sqrt(168.0f) : 0.0f))
                rows.push_back(r);
        // the FlashAttention-2 kernels' own cases (every row above with HS 64 or 128 runs them too): T not a multiple
        // of the 64-row tile, GQA 4:1, packed segments, windows smaller and larger than a tile, a custom scale
        for (auto [b, t, nh, nkv, hs, sg, w] :
             {std::tuple<int, int, int, int, int, bool, int>{1, 333, 16, 4, 64, false, 0},
              {2, 190, 8, 2, 128, true, 0},
              {1, 1000, 32, 8, 128, false, 0},
              {2, 257, 8, 2, 64, true, 40},
              {1, 450, 16, 4, 128, true, 150},
              {1, 77, 4, 1, 128, false, 0}})
            for (const gpu_check_row& r :
                 check_attention(b, t, nh, nkv, hs, sg, rng, w, w == 150 ? 1.0f / std::sqrt(256.0f) : 0.0f))
                rows.push_back(r);
        rows.push_back(check_adamw_32bit(rng));
        rows.push_back(check_adamw_8bit_multi(rng));
        for (auto [n, c] : {std::pair<int, int>{7, 100}, {2048, 4096}})
            for (const gpu_check_row& r : check_step_ops(n, c, rng)) rows.push_back(r);
        // (M, N, K): odd small, a LoRA-shaped one (rank 64), a 7B projection at 128 tokens
        for (auto [m, n, k] : {std::tuple<int, int, int>{7, 33, 100}, {256, 64, 4096}, {128, 4096, 4096}})
            for (const gpu_check_row& r : check_gemm(m, n, k, rng)) rows.push_back(r);
        for (size_t n : adamw_check_sizes) rows.push_back(check_adamw_8bit(n, rng));
        // the per-head q/k norm backward as the CUDA step calls it, in place over N*NH rows of HS: the tiny family
        // models' HS 8, Qwen3's 128
        for (auto [n, c] : {std::pair<int, int>{64 * 4, 8}, {2048 * 8, 128}})
            rows.push_back(check_rmsnorm_backward(n, c, rng, true));
    } catch (const qls_kernels::cuda_failure& e) {
        throw error(error_code::device, e.what(),
                    "check the driver (nvidia-smi) and that no other process holds the GPU");
    }
    return rows;
}

} // namespace qls
