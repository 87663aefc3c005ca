// `qlora check-gpu`: each CUDA kernel against the CPU reference on fresh random inputs at several shapes.
#include "qls/device.h"

#include "backends/cpu/ops.h"
#include "qls/dtype.h"
#include "qls/error.h"
#include "qls/quant.h"
#include "qls/tensor.h"
#include "qls_kernels/check.h"
#include "qls_kernels/nf4.h"
#include "qls_kernels/rmsnorm.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>

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

void finish(gpu_check_row& r, const std::vector<float>& gpu, const std::vector<float>& cpu) {
    double ref = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
        r.max_abs_error = std::max(r.max_abs_error, double(std::fabs(gpu[i] - cpu[i])));
        ref = std::max(ref, double(std::fabs(cpu[i])));
    }
    r.max_rel_error = ref > 0 ? r.max_abs_error / ref : r.max_abs_error;
    r.passed = r.max_rel_error <= r.tolerance && std::isfinite(r.max_rel_error);
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
    QLS_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<uint16_t> got = download_bf16(out, w.size());
    std::vector<float> gpu(w.size());
    for (size_t i = 0; i < w.size(); ++i) gpu[i] = bf16_to_f32(got[i]);
    gpu_check_row r{"nf4_dequantize", shape_str({rows, cols}), 0, 0, 0.0, false};
    finish(r, gpu, cpu);
    return r;
}

// RMSNorm forward, bf16 in/out with fp32 math, against the fp32 CPU op on the same bf16-rounded inputs.
// Tolerance: the output is rounded to bf16 (8 significant bits): relative error <= 2^-8 of the largest value.
gpu_check_row check_rmsnorm(int N, int C, std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<uint16_t> xb(static_cast<size_t>(N) * C), wb(static_cast<size_t>(C));
    std::vector<float> x(xb.size()), wt(wb.size());
    for (size_t i = 0; i < xb.size(); ++i) { xb[i] = f32_to_bf16(nd(rng)); x[i] = bf16_to_f32(xb[i]); }
    for (size_t i = 0; i < wb.size(); ++i) { wb[i] = f32_to_bf16(1.0f + 0.1f * nd(rng)); wt[i] = bf16_to_f32(wb[i]); }
    std::vector<float> cpu(x.size()), rstd(static_cast<size_t>(N));
    cpu::rmsnorm_forward(cpu.data(), rstd.data(), x.data(), wt.data(), N, C, 1e-5f);
    dbuf dx = upload(xb), dw = upload(wb), dout(x.size() * 2), drstd(size_t(N) * 4);
    qls_kernels::rmsnorm_forward(dout.as<__nv_bfloat16>(), drstd.as<float>(), dx.as<__nv_bfloat16>(),
                                 dw.as<__nv_bfloat16>(), N, C, 1e-5f, nullptr);
    QLS_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<uint16_t> got = download_bf16(dout, x.size());
    std::vector<float> gpu(x.size());
    for (size_t i = 0; i < x.size(); ++i) gpu[i] = bf16_to_f32(got[i]);
    gpu_check_row r{"rmsnorm_forward", shape_str({N, C}), 0, 0, 1.0 / 256.0, false};
    finish(r, gpu, cpu);
    return r;
}

} // namespace

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
    } catch (const qls_kernels::cuda_failure& e) {
        throw error(error_code::device, e.what(), "check the driver (nvidia-smi) and that no other process holds the GPU");
    }
    return rows;
}

} // namespace qls
