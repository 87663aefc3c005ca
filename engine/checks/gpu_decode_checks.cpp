// `qlora check-gpu` rows for the GPU quantizer and GPU generation: gpu_nf4_quantizer against nf4_quantize byte for
// byte, the decoding GEMVs against the CPU matmul, and greedy tokens of the CUDA decoder against the CPU decoder.
#include "gpu_check_parts.h"
#include "qls/gpu_checks.h"

#include "backends/cpu/ops.h"
#include "qls/device.h" // defines: probe_gpu
#include "qls/dtype.h"  // defines: f32_to_bf16, bf16_to_f32
#include "qls/error.h"
#include "qls/generate.h"  // defines: decoder, make_cpu_decoder
#include "qls/gpu_train.h" // defines: gpu_nf4_quantizer, make_cuda_decoder
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/quant.h"
#include "qls/tensor.h" // defines: shape_str
#include "qls/tokenizer.h"
#include "qls_kernels/check.h"
#include "qls_kernels/decode.h"
#include "qls_kernels/nf4_codebook.h" // defines: nf4_threshold

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>

namespace qls {

namespace {

struct dbuf {
    void* p = nullptr;
    explicit dbuf(size_t bytes) { QLS_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 16))); }
    ~dbuf() { cudaFree(p); }
    dbuf(const dbuf&) = delete;
    dbuf& operator=(const dbuf&) = delete;
    template <class T> T* as() const { return static_cast<T*>(p); }
};

template <class T> std::unique_ptr<dbuf> upload(const std::vector<T>& v) {
    auto d = std::make_unique<dbuf>(v.size() * sizeof(T));
    QLS_CUDA_CHECK(cudaMemcpy(d->p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

std::vector<float> download_f32(const dbuf& d, size_t n) {
    std::vector<float> v(n);
    QLS_CUDA_CHECK(cudaMemcpy(v.data(), d.p, n * 4, cudaMemcpyDeviceToHost));
    return v;
}

void finish(gpu_check_row& r, const std::vector<float>& gpu, const std::vector<float>& cpu) {
    double ref = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
        r.max_abs_error = std::max(r.max_abs_error, double(std::fabs(gpu[i] - cpu[i])));
        if (!std::isfinite(gpu[i])) r.max_abs_error = std::numeric_limits<double>::infinity();
        ref = std::max(ref, double(std::fabs(cpu[i])));
    }
    r.max_rel_error = ref > 0 ? r.max_abs_error / ref : r.max_abs_error;
    r.passed = r.max_rel_error <= r.tolerance && std::isfinite(r.max_rel_error);
}

// Bytes (and fp32 bit patterns) where two NF4 tensors differ; 0 when byte-identical.
size_t nf4_differences(const nf4_tensor& a, const nf4_tensor& b) {
    size_t d = 0;
    auto count = [&](const auto& x, const auto& y) {
        if (x.size() != y.size()) return d += std::max(x.size(), y.size()), void();
        for (size_t i = 0; i < x.size(); ++i) d += std::memcmp(&x[i], &y[i], sizeof(x[i])) != 0;
    };
    count(a.packed, b.packed);
    count(a.absmax, b.absmax);
    count(a.absmax_codes, b.absmax_codes);
    count(a.absmax_scale, b.absmax_scale);
    d += f32_bits(a.absmax_offset) != f32_bits(b.absmax_offset);
    d += a.double_quant != b.double_quant || a.nested_blocksize != b.nested_blocksize;
    d += std::memcmp(a.nested_map.data(), b.nested_map.data(), sizeof a.nested_map) != 0;
    return d;
}

// Weights ~ N(0, 0.02) with the corners the encoder must get right: an all-zero block, a NaN (ignored by the block
// max, code 0), an element equal to its block's absmax, and values on NF4 thresholds of a unit-absmax block.
std::vector<float> quant_input(int64_t n, std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> w(static_cast<size_t>(n));
    for (float& x : w) x = nd(rng);
    if (n >= 192) {
        std::fill(w.begin(), w.begin() + 64, 0.0f); // block 0: all zero
        w[70] = std::numeric_limits<float>::quiet_NaN();
        w[128] = 1.0f; // block 2: absmax 1, so w * s == w and the thresholds below are hit exactly
        for (int k = 0; k < 15 && 129 + k < 192; ++k) w[size_t(129 + k)] = qls_kernels::nf4_threshold[k];
    }
    return w;
}

gpu_check_row check_nf4_quantize(gpu_nf4_quantizer& gq, int64_t rows, int64_t cols, bool bf16_in, bool dq,
                                 std::mt19937_64& rng) {
    std::vector<float> w = quant_input(rows * cols, rng);
    std::vector<uint16_t> wb;
    if (bf16_in) {
        wb.resize(w.size());
        for (size_t i = 0; i < w.size(); ++i) {
            wb[i] = f32_to_bf16(w[i]);
            w[i] = bf16_to_f32(wb[i]);
        }
    }
    const nf4_tensor cpu = nf4_quantize(w.data(), rows, cols, dq);
    const nf4_tensor gpu = bf16_in ? gq.quantize_bf16(wb.data(), rows, cols, dq)
                                   : gq.quantize(w.data(), rows, cols, dq);
    gpu_check_row r;
    r.op = std::string(bf16_in ? "nf4_quantize_bf16" : "nf4_quantize") + (dq ? "" : " (no dq)");
    r.shape = shape_str({rows, cols});
    const size_t d = nf4_differences(cpu, gpu);
    r.max_abs_error = double(d); // differing bytes
    r.max_rel_error = double(d);
    r.tolerance = 0;
    r.passed = d == 0;
    return r;
}

// y = W x (+ y0) with W NF4 (the fused GEMV) against cpu::matmul_forward over the CPU's dequantization.
gpu_check_row check_nf4_gemv(int rows, int cols, bool accumulate, std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 0.02f), nx(0.0f, 1.0f);
    std::vector<float> w(size_t(rows) * cols), x(static_cast<size_t>(cols)), y0(static_cast<size_t>(rows));
    for (float& v : w) v = nd(rng);
    for (float& v : x) v = nx(rng);
    for (float& v : y0) v = nx(rng);
    const nf4_tensor q = nf4_quantize(w.data(), rows, cols, true);
    std::vector<float> deq(w.size()), cpu(static_cast<size_t>(rows));
    nf4_dequantize(q, deq.data());
    cpu::matmul_forward(cpu.data(), x.data(), deq.data(), 1, cols, rows);
    if (accumulate)
        for (int i = 0; i < rows; ++i) cpu[size_t(i)] += y0[size_t(i)];
    auto packed = upload(q.packed), codes = upload(q.absmax_codes), scale = upload(q.absmax_scale);
    std::vector<float> map(q.nested_map.begin(), q.nested_map.end());
    auto dmap = upload(map), dx = upload(x), dy = upload(y0);
    qls_kernels::nf4_gemv(dy->as<float>(), dx->as<float>(), packed->as<uint8_t>(), codes->as<uint8_t>(),
                          scale->as<float>(), q.absmax_offset, dmap->as<float>(), rows, cols, q.blocksize,
                          q.nested_blocksize, accumulate, nullptr);
    QLS_CUDA_CHECK(cudaDeviceSynchronize());
    gpu_check_row r{accumulate ? "nf4_gemv (+= y)" : "nf4_gemv", shape_str({rows, cols}), 0, 0, 1e-4, false};
    finish(r, download_f32(*dy, size_t(rows)), cpu);
    return r;
}

// logits = W x with W bf16 (the LM head) and y = alpha W x + y0 in fp32 (LoRA), against the CPU matmul.
std::vector<gpu_check_row> check_dense_gemv(int rows, int cols, std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 0.02f), nx(0.0f, 1.0f);
    std::vector<float> w(size_t(rows) * cols), x(static_cast<size_t>(cols)), y0(static_cast<size_t>(rows)),
        cpu(static_cast<size_t>(rows));
    for (float& v : w) v = bf16_to_f32(f32_to_bf16(nd(rng)));
    for (float& v : x) v = nx(rng);
    for (float& v : y0) v = nx(rng);
    std::vector<uint16_t> wb(w.size());
    for (size_t i = 0; i < w.size(); ++i) wb[i] = f32_to_bf16(w[i]);
    cpu::matmul_forward(cpu.data(), x.data(), w.data(), 1, cols, rows);
    auto dwb = upload(wb), dw = upload(w), dx = upload(x), dy = upload(y0);
    qls_kernels::bf16_gemv(dy->as<float>(), dx->as<float>(), dwb->as<__nv_bfloat16>(), rows, cols, nullptr);
    QLS_CUDA_CHECK(cudaDeviceSynchronize());
    gpu_check_row a{"bf16_gemv", shape_str({rows, cols}), 0, 0, 1e-4, false};
    finish(a, download_f32(*dy, size_t(rows)), cpu);
    const float alpha = 0.37f;
    QLS_CUDA_CHECK(cudaMemcpy(dy->p, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
    qls_kernels::f32_gemv(dy->as<float>(), dx->as<float>(), dw->as<float>(), rows, cols, alpha, true, nullptr);
    QLS_CUDA_CHECK(cudaDeviceSynchronize());
    for (int i = 0; i < rows; ++i) cpu[size_t(i)] = y0[size_t(i)] + alpha * cpu[size_t(i)];
    gpu_check_row b{"f32_gemv (a*Wx+y)", shape_str({rows, cols}), 0, 0, 1e-4, false};
    finish(b, download_f32(*dy, size_t(rows)), cpu);
    return {a, b};
}

// The decoder's ops of the newer families (fp32, decode.h) against the CPU ops: the per-head RMSNorm with (1 + w)
// weights (one block per head, in place as the decoder calls it), GeGLU, the bias/residual add and the embedding
// scale, and attention over a KV cache limited to a sliding window with Gemma's query_pre_attn_scalar^-0.5 scale (the
// CPU decoder's loop, llama.cpp llama_decoder::step, in double here). Tolerance 1e-5 relative: double math on both
// sides for the norm and GeGLU; fp32 dot products and softmax in the attention (~1e-6).
std::vector<gpu_check_row> check_decode_family_ops(std::mt19937_64& rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto draw = [&](size_t n, float mean, float sd) {
        std::vector<float> v(n);
        for (float& x : v) x = mean + sd * nd(rng);
        return v;
    };
    std::vector<gpu_check_row> rows;
    { // per-head norm: q (NH, HS) rows, weight 1 + w with w ~ N(0, 0.1)
        const int NH = 8, HS = 128;
        const std::vector<float> x = draw(size_t(NH) * HS, 0.0f, 1.0f), w = draw(size_t(HS), 1.0f, 0.1f);
        std::vector<float> cpu(x.size()), rstd(static_cast<size_t>(NH));
        cpu::rmsnorm_forward(cpu.data(), rstd.data(), x.data(), w.data(), NH, HS, 1e-6f);
        auto dx = upload(x), dw = upload(w);
        qls_kernels::decode_rmsnorm_rows(dx->as<float>(), dx->as<float>(), dw->as<float>(), NH, HS, 1e-6f, nullptr);
        QLS_CUDA_CHECK(cudaDeviceSynchronize());
        gpu_check_row r{"decode_rmsnorm_rows", shape_str({NH, HS}), 0, 0, 1e-5, false};
        finish(r, download_f32(*dx, x.size()), cpu);
        rows.push_back(r);
    }
    { // GeGLU (tanh GELU) over one MLP row
        const int n = 3000;
        const std::vector<float> g = draw(size_t(n), 0.0f, 2.0f), u = draw(size_t(n), 0.0f, 1.0f);
        std::vector<float> cpu(static_cast<size_t>(n));
        cpu::geglu_forward(cpu.data(), g.data(), u.data(), long(n));
        auto dg = upload(g), du = upload(u);
        dbuf dh(size_t(n) * 4);
        qls_kernels::decode_geglu(dh.as<float>(), dg->as<float>(), du->as<float>(), n, nullptr);
        QLS_CUDA_CHECK(cudaDeviceSynchronize());
        gpu_check_row r{"decode_geglu", shape_str({n}), 0, 0, 1e-5, false};
        finish(r, download_f32(dh, size_t(n)), cpu);
        rows.push_back(r);
    }
    { // y = (y + b) * s: a bias add (cpu::bias_forward) then the embedding scale (cpu::scale_inplace)
        const int n = 1000;
        const std::vector<float> y = draw(size_t(n), 0.0f, 1.0f), b = draw(size_t(n), 0.0f, 0.1f);
        const float sc = std::sqrt(3840.0f);
        std::vector<float> cpu = y;
        cpu::bias_forward(cpu.data(), b.data(), 1, n);
        cpu::scale_inplace(cpu.data(), sc, long(n));
        auto dy = upload(y), db = upload(b);
        qls_kernels::decode_add(dy->as<float>(), db->as<float>(), n, nullptr);
        qls_kernels::decode_scale(dy->as<float>(), sc, n, nullptr);
        QLS_CUDA_CHECK(cudaDeviceSynchronize());
        gpu_check_row r{"decode_add+scale", shape_str({n}), 0, 0, 1e-6, false};
        finish(r, download_f32(*dy, size_t(n)), cpu);
        rows.push_back(r);
    }
    // attention at position pos over a cache of max_pos rows: a window shorter than the history, one longer (every
    // row), the window's first row at 0 exactly
    for (auto [pos, window] : {std::pair<int, int>{50, 17}, {50, 512}, {16, 17}}) {
        const int NH = 8, NKV = 4, HS = 64, max_pos = 64, KV = NKV * HS;
        const float scale = 1.0f / std::sqrt(168.0f);
        const std::vector<float> q = draw(size_t(NH) * HS, 0.0f, 1.0f), kc = draw(size_t(max_pos) * KV, 0.0f, 1.0f),
                                 vc = draw(size_t(max_pos) * KV, 0.0f, 1.0f);
        std::vector<float> cpu(q.size());
        const int j0 = std::max(0, pos - window + 1);
        for (int h = 0; h < NH; ++h) {
            const int kvh = h / (NH / NKV);
            std::vector<double> sc(size_t(pos) + 1);
            double mx = -INFINITY, sum = 0;
            for (int j = j0; j <= pos; ++j) {
                double d = 0;
                for (int i = 0; i < HS; ++i) d += double(q[size_t(h) * HS + i]) * kc[size_t(j) * KV + kvh * HS + i];
                sc[size_t(j)] = d * scale;
                mx = std::max(mx, sc[size_t(j)]);
            }
            for (int j = j0; j <= pos; ++j) sum += std::exp(sc[size_t(j)] - mx);
            for (int i = 0; i < HS; ++i) {
                double acc = 0;
                for (int j = j0; j <= pos; ++j)
                    acc += std::exp(sc[size_t(j)] - mx) / sum * vc[size_t(j) * KV + kvh * HS + i];
                cpu[size_t(h) * HS + i] = float(acc);
            }
        }
        const qls_kernels::decode_state st{0, pos};
        auto dq = upload(q), dk = upload(kc), dv = upload(vc);
        auto dst = upload(std::vector<qls_kernels::decode_state>{st});
        dbuf out(q.size() * 4), scores(size_t(NH) * max_pos * 4);
        qls_kernels::decode_attention(out.as<float>(), scores.as<float>(), dq->as<float>(), dk->as<float>(),
                                      dv->as<float>(), dst->as<qls_kernels::decode_state>(), NH, NKV, HS, max_pos,
                                      nullptr, window, scale);
        QLS_CUDA_CHECK(cudaDeviceSynchronize());
        gpu_check_row r{"decode_attention",
                        shape_str({NH, NKV, HS}) + " pos " + std::to_string(pos) + " window " + std::to_string(window),
                        0,
                        0,
                        1e-5,
                        false};
        finish(r, download_f32(out, q.size()), cpu);
        rows.push_back(r);
    }
    return rows;
}

int argmax(const std::vector<float>& v) {
    int best = 0;
    for (int i = 1; i < int(v.size()); ++i)
        if (v[size_t(i)] > v[size_t(best)]) best = i;
    return best;
}

} // namespace

// Greedy decoding on the CPU, the GPU fed the CPU's tokens (teacher forcing), `n` new tokens: the token each picks
// at every step, and at a disagreement the CPU's logit margin between the two picks.
std::vector<gpu_check_row> gpu_compare_decoders(decoder& cpu, decoder& gpu, const std::vector<int>& prompt, int n,
                                                const std::string& label) {
    cpu.reset(int(prompt.size()) + n);
    gpu.reset(int(prompt.size()) + n);
    const std::vector<float>* lc = nullptr;
    const std::vector<float>* lg = nullptr;
    for (int id : prompt) {
        lc = &cpu.step(id);
        lg = &gpu.step(id);
    }
    double max_abs = 0, max_logit = 0, worst_margin = 0;
    int mismatches = 0, first = -1;
    std::string tokens;
    for (int i = 0; i < n; ++i) {
        for (size_t j = 0; j < lc->size(); ++j) {
            const double e = std::fabs(double((*lg)[j]) - double((*lc)[j]));
            max_abs = std::isfinite(e) ? std::max(max_abs, e) : std::numeric_limits<double>::infinity();
            max_logit = std::max(max_logit, double(std::fabs((*lc)[j])));
        }
        const int tc = argmax(*lc), tg = argmax(*lg);
        if (tc != tg) {
            const double margin = double((*lc)[size_t(tc)]) - double((*lc)[size_t(tg)]);
            std::printf("  %s: step %d: CPU picks %d, GPU %d; CPU logit margin %.3e (max |logit| %.3e, relative "
                        "%.3e; bf16 rounding 2^-8 = %.3e)\n",
                        label.c_str(), i, tc, tg, margin, max_logit, margin / std::max(max_logit, 1e-30), 1.0 / 256);
            ++mismatches;
            if (first < 0) first = i;
            worst_margin = std::max(worst_margin, margin / std::max(max_logit, 1e-30));
        }
        if (i + 1 == n) break;
        lc = &cpu.step(tc);
        lg = &gpu.step(tc);
    }
    std::printf("  %s: %d greedy tokens, %d disagreements%s\n", label.c_str(), n, mismatches,
                first < 0 ? "" : (", first at step " + std::to_string(first)).c_str());
    gpu_check_row g;
    g.op = "generate_greedy";
    g.shape = label + ", " + std::to_string(n) + " tok";
    g.max_abs_error = mismatches;   // tokens that differ
    g.max_rel_error = worst_margin; // the CPU's margin at a disagreement, relative to its largest logit
    g.tolerance = 1.0 / 256;        // below bf16 rounding: the disagreement is a near tie
    g.passed = std::isfinite(max_abs) && (mismatches == 0 || (first >= 50 || worst_margin < g.tolerance));
    gpu_check_row l;
    l.op = "generate_logits";
    l.shape = label + ", " + std::to_string(n) + " steps";
    l.max_abs_error = max_abs;
    l.max_rel_error = max_logit > 0 ? max_abs / max_logit : max_abs;
    l.tolerance = 1.0 / 32; // bf16 embedding and head (2^-9 per weight) through every layer, with margin
    l.passed = std::isfinite(l.max_rel_error) && l.max_rel_error <= l.tolerance;
    return {g, l};
}

std::vector<gpu_check_row> run_gpu_decode_op_checks(uint64_t seed) {
    const gpu_probe p = probe_gpu();
    if (!p.available)
        throw error(error_code::device, p.message, "run check-gpu on a machine with an NVIDIA GPU and driver");
    std::mt19937_64 rng(seed);
    std::vector<gpu_check_row> rows;
    try {
        gpu_nf4_quantizer gq(p.index);
        // odd n (a half-filled last byte), partial NF4 blocks, several nested blocks with a partial last one,
        // rows not a multiple of the block, and Llama-2-7B's projections
        for (auto [r, c] : {std::pair<int64_t, int64_t>{1, 33},
                            {3, 43},
                            {7, 100},
                            {96, 200},
                            {300, 1001},
                            {172, 64},
                            {4096, 4096},
                            {11008, 4096}})
            rows.push_back(check_nf4_quantize(gq, r, c, false, true, rng));
        for (auto [r, c] : {std::pair<int64_t, int64_t>{3, 43}, {300, 1001}, {4096, 11008}})
            rows.push_back(check_nf4_quantize(gq, r, c, true, true, rng));
        rows.push_back(check_nf4_quantize(gq, 96, 200, false, false, rng));
        // (rows, cols): the general path (cols not a multiple of 64: stories260K's down_proj), the fast path at
        // small and Llama-2-7B sizes
        for (auto [r, c, acc] : {std::tuple<int, int, bool>{7, 100, false},
                                 {64, 172, true},
                                 {33, 128, false},
                                 {4096, 4096, true},
                                 {11008, 4096, false},
                                 {4096, 11008, true}})
            rows.push_back(check_nf4_gemv(r, c, acc, rng));
        for (auto [r, c] : {std::pair<int, int>{512, 64}, {37, 100}, {32000, 4096}})
            for (const gpu_check_row& x : check_dense_gemv(r, c, rng)) rows.push_back(x);
        for (const gpu_check_row& x : check_decode_family_ops(rng)) rows.push_back(x);
    } catch (const qls_kernels::cuda_failure& e) {
        throw error(error_code::device, e.what(),
                    "check the driver (nvidia-smi) and that no other process holds the GPU");
    }
    return rows;
}

std::vector<gpu_check_row> run_gpu_generate_check(const std::string& model_dir, uint64_t seed) {
    const gpu_probe p = probe_gpu();
    if (!p.available)
        throw error(error_code::device, p.message, "run check-gpu on a machine with an NVIDIA GPU and driver");
    const hf_checkpoint ckpt = hf_checkpoint::open(model_dir);
    const tokenizer tok = load_tokenizer_for(ckpt);
    llama_load_options lo;
    lo.quantize_nf4 = true;
    lo.double_quant = true;
    const llama_model model = llama_model::load(ckpt, lo); // CPU quantizer; params hold the exact dequantization
    std::vector<gpu_check_row> rows;

    // The loader with the GPU quantizer: every projection byte-identical to the CPU loader's.
    {
        gpu_nf4_quantizer gq(p.index);
        llama_load_options go = lo;
        go.nf4_quantizer = [&](const float* w, int64_t r, int64_t c, bool dq) { return gq.quantize(w, r, c, dq); };
        const llama_model g = llama_model::load(ckpt, go);
        size_t d = 0;
        for (int l = 0; l < model.config.num_layers; ++l)
            for (lora_target t : all_lora_targets())
                d += nf4_differences(model.nf4[size_t(l)][size_t(t)], g.nf4[size_t(l)][size_t(t)]);
        gpu_check_row r{"load_nf4_on_gpu",
                        model.config.model_type + " " + std::to_string(model.config.num_layers) + "x7 projections",
                        double(d),
                        double(d),
                        0,
                        d == 0};
        rows.push_back(r);
    }

    // The GPU decoder gets the model as the CUDA path loads it: NF4 only, the f32 projection vectors empty.
    llama_model gpu_model = model;
    for (int l = 0; l < gpu_model.config.num_layers; ++l)
        for (lora_target t : all_lora_targets()) std::vector<float>().swap(gpu_model.projection(l, t));

    // An adapter part-way through training: A by PEFT's init, B drawn (B = 0 would hide the LoRA path).
    lora_config lc;
    lc.rank = 8;
    lc.alpha = 16.0f;
    lora_weights<float> adapter = lora_init(model.config, lc, seed);
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    for (auto& layer : adapter.layers)
        for (auto& ad : layer)
            for (float& b : ad.b) b = nd(rng);

    const std::vector<int> prompt = tok.encode("Once upon a time", true);
    const int n = 60;
    const std::string name = model.config.model_type + " " + std::to_string(model.config.hidden_size) + "d";
    {
        auto c = make_cpu_decoder(model);
        auto g = make_cuda_decoder(gpu_model, nullptr, p.index);
        for (const gpu_check_row& r : gpu_compare_decoders(*c, *g, prompt, n, name)) rows.push_back(r);
    }
    {
        auto c = make_cpu_decoder(model, &adapter);               // merged into a copy of the f32 weights
        auto g = make_cuda_decoder(gpu_model, &adapter, p.index); // applied beside the NF4 GEMVs
        for (const gpu_check_row& r : gpu_compare_decoders(*c, *g, prompt, n, name + " +lora r8")) rows.push_back(r);
    }
    {
        // A model loaded unquantized (f32 projections only): the decoder quantizes it on the GPU, so it must decode
        // exactly as the NF4 model above.
        const llama_model f32_model = llama_model::load(ckpt);
        auto a = make_cuda_decoder(f32_model, nullptr, p.index);
        auto b = make_cuda_decoder(gpu_model, nullptr, p.index);
        a->reset(int(prompt.size()) + 8);
        b->reset(int(prompt.size()) + 8);
        std::vector<float> la, lb;
        for (int id : prompt) {
            la = a->step(id);
            lb = b->step(id);
        }
        gpu_check_row r{"generate_f32_model", name + " quantized on GPU", 0, 0, 0, false};
        finish(r, la, lb);
        rows.push_back(r);
    }
    return rows;
}

} // namespace qls
