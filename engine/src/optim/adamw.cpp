// AdamW reference kernels reproducing bitsandbytes' CUDA kernels (32-bit and 8-bit blockwise), clip_grad_norm, and qls::optimizer over plain or paged states.
#include "qls/optim.h"

#include "qls/error.h"
#include "qls/quant.h"
#include "qls_kernels/adamw_math.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <set>

namespace qls {

namespace {

// ---- arithmetic as nvcc compiles bnb's kernels ------------------------------------------------------------
// bitsandbytes builds its CUDA code with --use_fast_math (CMakeLists.txt: string(APPEND CMAKE_CUDA_FLAGS
// " --use_fast_math")): a*b + c becomes one fused multiply-add, and powf, sqrtf and '/' become the approximate
// device instructions (lg2/ex2.approx, sqrt.approx, div.approx/full), denormals flush to zero.
//  - The fused multiply-adds decide the state bits, and they are reproduced here with std::fma exactly where the
//    device code has them. Which product nvcc fuses was settled against the fixture made with bnb 0.50.2 on an H100
//    (tests/data/bnb/adamw8bit.safetensors): in the 32-bit kernel fma(s1, beta1, (1-beta1)*g) and
//    fma(s2, beta2, (1-beta2)*(g*g)) give m and v bit for bit; in the 8-bit kernel the other product is fused —
//    fma((1-beta1), g, (code*absmax)*beta1) and fma((1-beta2)*g, g, (code*absmax)*beta2) — which gives every code
//    and every absmax bit for bit (the first form misses 11 of 24 absmax values).
//  - The approximate instructions only touch the parameter update (step size, sqrt(v), the division) and the
//    normalization state/absmax before requantizing. They have no bit-exact CPU equivalent; this code computes the
//    correctly rounded value they approximate. For the codes that matters only when state/absmax lies within ~2 ulp
//    of a midpoint between two codes: it happened nowhere in the fixture nor in the edge cases of tst_optim
//    (bnb_8bit_edge_cases: all-zero blocks, sign fix, NaN/Inf gradients, checked on the H100). The step size is the visible part: __powf(beta2, t) carries an
//    absolute error of about 1e-7, which puts sqrt(1 - beta2^t) off by ~3e-5 relative, so bnb's parameters differ
//    from these by up to ~3e-5 of the Adam step (plus one rounding of p); the tests state that tolerance.
//  - The parameter update's own fused forms (fma(step_size, q, p), fma(eps, c2, sqrt(v)), fma(-lr, wd, 1)) follow
//    the same contraction rule; the fixture cannot confirm them, the approximate instructions dominate there.
//  - Denormals are not flushed (they only arise after ~1e5 steps of zero gradient).
// This translation unit must not contract anything else: GCC contracts only with -ffp-contract=fast (not the default
// for -std=c++20) and only when FMA instructions are enabled; the pragmas below make that explicit.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

// The step constants and bnb's quantize_2D search: kernels/include/qls_kernels/adamw_math.h, shared with the kernels.
using qls_kernels::quantize_2d;

qls_kernels::adamw_step_constants consts_for(int64_t step, float lr, const adamw_hparams& h) {
    return qls_kernels::adamw_constants(step, lr, h.beta1, h.beta2, h.weight_decay);
}

void check_positive_finite(float v, const char* what) {
    if (!(std::isfinite(v) && v > 0))
        throw error(error_code::invalid_argument,
                    std::string(what) + " must be a positive finite number, got " + std::to_string(v));
}

} // namespace

// ---- 32-bit ---------------------------------------------------------------------------------------------
// bnb `kOptimizer32bit2State<T, ADAM>` with max_unorm = 0 (update_scale = 1), skip_zeros = false:
//   g = gnorm_scale*g
//   s1 = s1*beta1 + ((1.0f-beta1)*g)                       → fma(s1, beta1, (1-beta1)*g)
//   s2 = s2*beta2 + ((1.0f-beta2)*(g*g))                   → fma(s2, beta2, (1-beta2)*(g*g))
//   p  = p + (update_scale*step_size*(s1/(sqrtf(s2)+(eps*correction2))))
//                                                          → fma(step_size, s1/fma(eps, c2, sqrtf(s2)), p)
//   if (weight_decay > 0) p = p*(1.0f-(lr*weight_decay))
void adamw_update_32bit(float* p, const float* g, float* m, float* v, size_t n, int64_t step, float lr,
                        const adamw_hparams& h, float gnorm_scale) {
    QLS_ASSERT(step >= 1);
    const qls_kernels::adamw_step_constants c = consts_for(step, lr, h);
    const float b1 = h.beta1, b2 = h.beta2, omb1 = 1.0f - h.beta1, omb2 = 1.0f - h.beta2;
    const float eps = h.eps;
    const bool decay = h.weight_decay > 0.0f;
    for (size_t i = 0; i < n; ++i) {
        const float gv = gnorm_scale * g[i];
        const float s1 = std::fma(m[i], b1, omb1 * gv);
        const float s2 = std::fma(v[i], b2, omb2 * (gv * gv));
        float pv = std::fma(c.step_size, s1 / std::fma(eps, c.correction2, std::sqrt(s2)), p[i]);
        if (decay) pv = pv * c.decay;
        m[i] = s1;
        v[i] = s2;
        p[i] = pv;
    }
}

// ---- 8-bit blockwise ----------------------------------------------------------------------------------------
// bnb `kOptimizerStatic8bit2StateBlockwise<T, ADAM, 256, 1>`: one CUDA block of 256 threads per 256-element
// block. Loads past the end of the tensor read g = 0, state1 code 128, state2 code 0 and still take part in the
// block's absmax reduction (cub BlockReduce over all 256 threads); only valid elements are stored.
void adamw_update_8bit_blockwise(float* p, const float* g, uint8_t* state1, uint8_t* state2, float* absmax1,
                                 float* absmax2, size_t n, int64_t step, float lr, const adamw_hparams& h,
                                 const std::array<float, 256>& qmap1, const std::array<float, 256>& qmap2,
                                 float gnorm_scale) {
    QLS_ASSERT(step >= 1);
    const qls_kernels::adamw_step_constants c = consts_for(step, lr, h);
    const float b1 = h.beta1, b2 = h.beta2, omb1 = 1.0f - h.beta1, omb2 = 1.0f - h.beta2;
    const float eps = h.eps;
    const bool decay = h.weight_decay > 0.0f;
    const float* q1 = qmap1.data();
    const float* q2 = qmap2.data();
    constexpr size_t B = adamw_8bit_block;
    float s1[B], s2[B];
    bool finite[B];

    for (size_t base = 0, blk = 0; base < n; base += B, ++blk) {
        const size_t valid = std::min(B, n - base);
        const float a1 = absmax1[blk], a2 = absmax2[blk];
        float max1 = -FLT_MAX, max2 = -FLT_MAX;
        // 1. dequantize, update in fp32, block absmax.
        for (size_t j = 0; j < B; ++j) {
            const float graw = j < valid ? g[base + j] : 0.0f;
            const uint8_t c1 = j < valid ? state1[base + j] : uint8_t(128);
            const uint8_t c2 = j < valid ? state2[base + j] : uint8_t(0);
            finite[j] = std::isfinite(graw);
            if (finite[j]) {
                // s2 = code2[c2]*absmax2; g_val *= gnorm_scale;
                // s2 = (s2*beta2) + (((1.0f-beta2)*g_val*g_val))   → fma((1-beta2)*g, g, s2*beta2)
                // s1 = code1[c1]*absmax1;
                // s1 = (s1*beta1) + (((1.0f-beta1)*g_val))         → fma(1-beta1, g, s1*beta1)
                const float gv = graw * gnorm_scale;
                s2[j] = std::fma(omb2 * gv, gv, (q2[c2] * a2) * b2);
                s1[j] = std::fma(omb1, gv, (q1[c1] * a1) * b1);
            } else {
                s1[j] = 0.0f; // bnb: a NaN/Inf gradient zeroes this element's states and skips its update
                s2[j] = 0.0f;
            }
            max1 = std::fmax(max1, std::fabs(s1[j]));
            max2 = std::fmax(max2, std::fabs(s2[j]));
        }
        absmax1[blk] = max1;
        absmax2[blk] = max2;
        // 2. parameter update:
        //    p = p + (step_size*(__fdividef(s1, (sqrtf(s2)+(correction2*eps)))))  → fma(step_size, s1/fma(c2, eps, sqrtf(s2)), p)
        //    if (weight_decay > 0) p = p*(1.0f-(lr*weight_decay))
        for (size_t j = 0; j < valid; ++j) {
            if (!finite[j]) continue;
            float pv = std::fma(c.step_size, s1[j] / std::fma(c.correction2, eps, std::sqrt(s2[j])), p[base + j]);
            if (decay) pv = pv * c.decay;
            p[base + j] = pv;
        }
        // 3. requantize against the new absmax; keep m's sign (bnb: "make sure state1 term has still the same
        //    sign after quantization").
        for (size_t j = 0; j < valid; ++j) {
            uint8_t c1 = quantize_2d<true>(q1, s1[j] / max1);
            const uint8_t c2 = quantize_2d<false>(q2, s2[j] / max2);
            if (std::signbit(q1[c1]) != std::signbit(s1[j])) {
                if (s1[j] > 0.0f) c1 = uint8_t(c1 + 1);
                else c1 = uint8_t(c1 - 1);
            }
            state1[base + j] = c1;
            state2[base + j] = c2;
        }
    }
}

// ---- clipping -----------------------------------------------------------------------------------------------
// torch.nn.utils.clip_grad_norm_ (https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html):
// total_norm = ||(||g_1||, ..., ||g_k||)||_2; clip_coef = max_norm / (total_norm + 1e-6);
// grads *= clamp(clip_coef, max=1).
float clip_grad_norm(std::span<float* const> grads, std::span<const size_t> sizes, float max_norm) {
    if (grads.size() != sizes.size())
        throw error(error_code::invalid_argument, "clip_grad_norm: " + std::to_string(grads.size()) +
                                                      " gradients but " + std::to_string(sizes.size()) + " sizes");
    check_positive_finite(max_norm, "clip_grad_norm: max_norm");
    double sq = 0.0;
    for (size_t t = 0; t < grads.size(); ++t) {
        const float* gp = grads[t];
        for (size_t i = 0; i < sizes[t]; ++i) sq += double(gp[i]) * double(gp[i]);
    }
    const double norm = std::sqrt(sq);
    const double coef = double(max_norm) / (norm + 1e-6);
    if (coef < 1.0) { // also false for a NaN norm: like PyTorch's default error_if_nonfinite=False, no exception
        const float f = float(coef);
        for (size_t t = 0; t < grads.size(); ++t)
            for (size_t i = 0; i < sizes[t]; ++i) grads[t][i] *= f;
    }
    return float(norm);
}

// ---- optimizer ----------------------------------------------------------------------------------------------
const char* optimizer_kind_name(optimizer_kind k) {
    switch (k) {
    case optimizer_kind::adamw_32bit: return "adamw_32bit";
    case optimizer_kind::adamw_8bit: return "adamw_8bit";
    case optimizer_kind::paged_adamw_32bit: return "paged_adamw_32bit";
    case optimizer_kind::paged_adamw_8bit: return "paged_adamw_8bit";
    }
    return "unknown";
}
bool optimizer_kind_is_paged(optimizer_kind k) {
    return k == optimizer_kind::paged_adamw_32bit || k == optimizer_kind::paged_adamw_8bit;
}
bool optimizer_kind_is_8bit(optimizer_kind k) {
    return k == optimizer_kind::adamw_8bit || k == optimizer_kind::paged_adamw_8bit;
}

const char* optimizer_kind_flag(optimizer_kind k) {
    switch (k) {
    case optimizer_kind::paged_adamw_8bit: return "paged-adamw-8bit";
    case optimizer_kind::paged_adamw_32bit: return "paged-adamw-32bit";
    case optimizer_kind::adamw_8bit: return "adamw-8bit";
    case optimizer_kind::adamw_32bit: return "adamw-32bit";
    }
    return "?";
}

optimizer_kind parse_optimizer_kind(std::string_view name) {
    for (auto k : {optimizer_kind::paged_adamw_8bit, optimizer_kind::paged_adamw_32bit, optimizer_kind::adamw_8bit,
                   optimizer_kind::adamw_32bit})
        if (name == optimizer_kind_flag(k) || name == optimizer_kind_name(k)) return k;
    throw error(error_code::invalid_argument, "optimizer: unknown optimizer '" + std::string(name) + "'",
                "valid optimizers: paged-adamw-8bit, paged-adamw-32bit, adamw-8bit, adamw-32bit");
}

// The states of one parameter. fp32: m, v [numel]. 8-bit: state1, state2 [numel] codes, absmax1, absmax2
// [blocks]. Unpaged kinds hold them in the vectors; paged kinds in pager tensors ids[0..n_ids).
struct optimizer::slot {
    size_t index = 0;
    state_format fmt = state_format::fp32;
    size_t numel = 0;
    size_t blocks = 0;
    std::vector<float> m, v;
    std::vector<uint8_t> c1, c2;
    std::vector<float> a1, a2;
    pager::tensor_id ids[4] = {0, 0, 0, 0};
    size_t n_ids = 0;
};

optimizer::optimizer(std::vector<optim_param> params, optimizer_config config, std::unique_ptr<page_memory> memory)
    : config_(config), params_(std::move(params)) {
    std::set<std::string> names;
    for (const optim_param& p : params_) {
        if (p.name.empty()) throw error(error_code::invalid_argument, "optimizer: a parameter has no name");
        if (!names.insert(p.name).second)
            throw error(error_code::invalid_argument, "optimizer: parameter name '" + p.name + "' appears twice");
        if (!p.data || !p.grad || p.numel == 0)
            throw error(error_code::invalid_argument,
                        "optimizer: parameter '" + p.name + "' needs data, grad and a positive element count");
    }
    const adamw_hparams& h = config_.hparams;
    if (!(h.beta1 >= 0 && h.beta1 < 1 && h.beta2 >= 0 && h.beta2 < 1))
        throw error(error_code::invalid_argument, "optimizer: betas must lie in [0, 1)");
    if (!(h.eps > 0) || !(h.weight_decay >= 0))
        throw error(error_code::invalid_argument, "optimizer: eps must be positive and weight_decay non-negative");

    const bool eight = optimizer_kind_is_8bit(config_.kind);
    const bool paged = optimizer_kind_is_paged(config_.kind);
    if (eight) {
        qmap1_ = dynamic_map(true);
        qmap2_ = dynamic_map(false);
    }
    if (paged) {
        if (config_.paging.page_size == 0 || config_.paging.page_size % 1024 != 0)
            throw error(error_code::invalid_argument,
                        "optimizer: page size " + std::to_string(config_.paging.page_size) +
                            " is not a positive multiple of 1024 bytes",
                        "use a page size such as 65536 (64 KiB)");
        pager_ = std::make_unique<pager>(config_.paging, memory ? std::move(memory) : make_cpu_page_memory());
        if (!pager_->memory().device_is_host_addressable())
            throw error(error_code::unsupported,
                        "optimizer: the CPU AdamW kernels cannot run on " + pager_->memory().name() + " device memory");
    }

    slots_.resize(params_.size());
    size_t worst_pages = 0, worst = 0;
    for (size_t i = 0; i < params_.size(); ++i) {
        slot& s = slots_[i];
        const optim_param& p = params_[i];
        s.index = i;
        s.numel = p.numel;
        s.blocks = (p.numel + adamw_8bit_block - 1) / adamw_8bit_block;
        s.fmt = (eight && p.numel >= config_.min_8bit_size) ? state_format::blockwise_8bit : state_format::fp32;
        if (!paged) {
            if (s.fmt == state_format::fp32) {
                s.m.assign(s.numel, 0.0f);
                s.v.assign(s.numel, 0.0f);
            } else {
                s.c1.assign(s.numel, 0);
                s.c2.assign(s.numel, 0);
                s.a1.assign(s.blocks, 0.0f);
                s.a2.assign(s.blocks, 0.0f);
            }
            continue;
        }
        if (s.fmt == state_format::fp32) {
            s.ids[0] = pager_->add_tensor(p.name + ".exp_avg", s.numel * 4);
            s.ids[1] = pager_->add_tensor(p.name + ".exp_avg_sq", s.numel * 4);
            s.n_ids = 2;
        } else {
            s.ids[0] = pager_->add_tensor(p.name + ".state1", s.numel);
            s.ids[1] = pager_->add_tensor(p.name + ".state2", s.numel);
            s.ids[2] = pager_->add_tensor(p.name + ".absmax1", s.blocks * 4);
            s.ids[3] = pager_->add_tensor(p.name + ".absmax2", s.blocks * 4);
            s.n_ids = 4;
        }
        size_t pages = 0;
        for (size_t k = 0; k < s.n_ids; ++k) pages += pager_->page_count(s.ids[k]);
        if (pages > worst_pages) {
            worst_pages = pages;
            worst = i;
        }
    }
    if (paged && worst_pages > pager_->capacity_pages()) {
        const uint64_t need = uint64_t(worst_pages) * config_.paging.page_size;
        throw error(error_code::invalid_argument,
                    "optimizer: the device budget of " + std::to_string(config_.paging.device_budget_bytes) +
                        " bytes (" + std::to_string(pager_->capacity_pages()) + " pages of " +
                        std::to_string(config_.paging.page_size) +
                        " bytes) is smaller than the largest single update's working set: parameter '" +
                        params_[worst].name + "' needs " + std::to_string(worst_pages) +
                        " pages = " + std::to_string(need) + " bytes",
                    "raise the device budget to at least " + std::to_string(need) + " bytes");
    }
}

optimizer::~optimizer() = default;

state_format optimizer::format(size_t i) const { return slots_.at(i).fmt; }

size_t optimizer::state_bytes() const {
    size_t b = 0;
    for (const slot& s : slots_) b += s.fmt == state_format::fp32 ? 2 * 4 * s.numel : 2 * s.numel + 2 * 4 * s.blocks;
    return b;
}

void optimizer::step(float lr, float gnorm_scale) {
    if (!std::isfinite(lr) || lr < 0)
        throw error(error_code::invalid_argument, "optimizer: learning rate must be a non-negative finite number");
    ++step_; // bnb: state["step"] += 1 before the update, so the first update runs with step 1
    if (pager_) pager_->begin_step();
    for (slot& s : slots_) {
        if (pager_) update_paged(s, lr, gnorm_scale);
        else update_plain(s, lr, gnorm_scale);
    }
}

void optimizer::update_plain(slot& s, float lr, float gnorm_scale) {
    const optim_param& p = params_[s.index];
    if (s.fmt == state_format::fp32)
        adamw_update_32bit(p.data, p.grad, s.m.data(), s.v.data(), s.numel, step_, lr, config_.hparams, gnorm_scale);
    else
        adamw_update_8bit_blockwise(p.data, p.grad, s.c1.data(), s.c2.data(), s.a1.data(), s.a2.data(), s.numel, step_,
                                    lr, config_.hparams, qmap1_, qmap2_, gnorm_scale);
}

// The same kernels, one page-sized chunk at a time on the device copies of the pages. Chunks start on 256-element
// block boundaries (page_size % 1024 == 0), and both kernels are element- or block-local, so the arithmetic is
// exactly that of update_plain.
void optimizer::update_paged(slot& s, float lr, float gnorm_scale) {
    const optim_param& p = params_[s.index];
    pager& pg = *pager_;
    pg.acquire(std::span<const pager::tensor_id>(s.ids, s.n_ids));
    const size_t ps = pg.page_size();
    if (s.fmt == state_format::fp32) {
        const size_t per_page = ps / 4; // floats per page
        for (size_t k = 0; k * per_page < s.numel; ++k) {
            const size_t off = k * per_page, len = std::min(per_page, s.numel - off);
            adamw_update_32bit(p.data + off, p.grad + off, static_cast<float*>(pg.device_page(s.ids[0], k)),
                               static_cast<float*>(pg.device_page(s.ids[1], k)), len, step_, lr, config_.hparams,
                               gnorm_scale);
        }
    } else {
        const size_t codes_per_page = ps;      // uint8 codes per page
        const size_t absmax_per_page = ps / 4; // floats per absmax page; covers ps/4 blocks = 64 code pages
        for (size_t k = 0; k * codes_per_page < s.numel; ++k) {
            const size_t off = k * codes_per_page, len = std::min(codes_per_page, s.numel - off);
            const size_t blk = off / adamw_8bit_block;
            const size_t apage = blk / absmax_per_page, aoff = blk % absmax_per_page;
            adamw_update_8bit_blockwise(p.data + off, p.grad + off, static_cast<uint8_t*>(pg.device_page(s.ids[0], k)),
                                        static_cast<uint8_t*>(pg.device_page(s.ids[1], k)),
                                        static_cast<float*>(pg.device_page(s.ids[2], apage)) + aoff,
                                        static_cast<float*>(pg.device_page(s.ids[3], apage)) + aoff, len, step_, lr,
                                        config_.hparams, qmap1_, qmap2_, gnorm_scale);
        }
    }
    for (size_t k = 0; k < s.n_ids; ++k) pg.mark_dirty(s.ids[k]);
}

// ---- checkpoints -------------------------------------------------------------------------------------------
namespace {

void copy_out(tensor& t, const void* src) { std::memcpy(t.raw(), src, t.nbytes()); }

const tensor& find_state(const std::vector<std::pair<std::string, tensor>>& state, const std::string& name, dtype type,
                         const shape_t& shape) {
    for (const auto& [n, t] : state) {
        if (n != name) continue;
        if (t.type() != type || t.shape() != shape)
            throw error(error_code::format,
                        "optimizer state '" + name + "' is " + dtype_name(t.type()) + " " + shape_str(t.shape()) +
                            ", expected " + dtype_name(type) + " " + shape_str(shape),
                        "the checkpoint belongs to a different optimizer or parameter set");
        return t;
    }
    throw error(error_code::format, "optimizer state '" + name + "' is missing from the checkpoint",
                "the checkpoint belongs to a different optimizer kind or parameter set");
}

} // namespace

std::vector<std::pair<std::string, tensor>> optimizer::serialize_state() const {
    std::vector<std::pair<std::string, tensor>> out;
    tensor st(dtype::i64, {1});
    st.data<int64_t>()[0] = step_;
    out.emplace_back("optimizer.step", st);
    if (optimizer_kind_is_8bit(config_.kind)) {
        tensor q1(dtype::f32, {256}), q2(dtype::f32, {256});
        copy_out(q1, qmap1_.data());
        copy_out(q2, qmap2_.data());
        out.emplace_back("optimizer.qmap1", q1);
        out.emplace_back("optimizer.qmap2", q2);
    }
    for (const slot& s : slots_) {
        const std::string& name = params_[s.index].name;
        const int64_t n = int64_t(s.numel), nb = int64_t(s.blocks);
        std::vector<std::pair<std::string, tensor>> ts;
        if (s.fmt == state_format::fp32) {
            ts.emplace_back(name + ".exp_avg", tensor(dtype::f32, {n}));
            ts.emplace_back(name + ".exp_avg_sq", tensor(dtype::f32, {n}));
        } else {
            ts.emplace_back(name + ".state1", tensor(dtype::u8, {n}));
            ts.emplace_back(name + ".state2", tensor(dtype::u8, {n}));
            ts.emplace_back(name + ".absmax1", tensor(dtype::f32, {nb}));
            ts.emplace_back(name + ".absmax2", tensor(dtype::f32, {nb}));
        }
        for (size_t k = 0; k < ts.size(); ++k) {
            tensor& t = ts[k].second;
            if (pager_) {
                pager_->read(s.ids[k], t.raw(), t.nbytes());
            } else {
                const void* src = s.fmt == state_format::fp32
                                      ? static_cast<const void*>(k == 0 ? s.m.data() : s.v.data())
                                      : (k == 0   ? static_cast<const void*>(s.c1.data())
                                         : k == 1 ? static_cast<const void*>(s.c2.data())
                                         : k == 2 ? static_cast<const void*>(s.a1.data())
                                                  : static_cast<const void*>(s.a2.data()));
                copy_out(t, src);
            }
            out.push_back(std::move(ts[k]));
        }
    }
    return out;
}

void optimizer::load_state(const std::vector<std::pair<std::string, tensor>>& state) {
    // Validate everything before changing anything. (Copies of qls::tensor share storage: holding them by value
    // costs nothing and keeps GCC 13's -Wdangling-reference quiet about find_state's temporary arguments.)
    const tensor st = find_state(state, "optimizer.step", dtype::i64, {1});
    const int64_t step = st.data<int64_t>()[0];
    if (step < 0) throw error(error_code::format, "optimizer state 'optimizer.step' is negative");
    if (optimizer_kind_is_8bit(config_.kind)) {
        const tensor q1 = find_state(state, "optimizer.qmap1", dtype::f32, {256});
        const tensor q2 = find_state(state, "optimizer.qmap2", dtype::f32, {256});
        if (std::memcmp(q1.raw(), qmap1_.data(), 1024) != 0 || std::memcmp(q2.raw(), qmap2_.data(), 1024) != 0)
            throw error(error_code::format, "optimizer states 'optimizer.qmap1'/'optimizer.qmap2' differ from the "
                                            "dynamic maps this optimizer quantizes with");
    }
    std::vector<std::vector<const tensor*>> found(slots_.size());
    for (const slot& s : slots_) {
        const std::string& name = params_[s.index].name;
        const int64_t n = int64_t(s.numel), nb = int64_t(s.blocks);
        auto& f = found[s.index];
        if (s.fmt == state_format::fp32) {
            f.push_back(&find_state(state, name + ".exp_avg", dtype::f32, {n}));
            f.push_back(&find_state(state, name + ".exp_avg_sq", dtype::f32, {n}));
        } else {
            f.push_back(&find_state(state, name + ".state1", dtype::u8, {n}));
            f.push_back(&find_state(state, name + ".state2", dtype::u8, {n}));
            f.push_back(&find_state(state, name + ".absmax1", dtype::f32, {nb}));
            f.push_back(&find_state(state, name + ".absmax2", dtype::f32, {nb}));
        }
    }
    // Values: a state that would turn every parameter it touches into NaN is refused here, naming the tensor. fp32:
    // m finite, v finite and >= 0 (sqrt(v) in the update); 8-bit: the absmax scales finite and >= 0 (any code is
    // a valid index into the maps).
    for (const slot& s : slots_) {
        const std::string& name = params_[s.index].name;
        const auto& f = found[s.index];
        for (size_t k = 0; k < f.size(); ++k) {
            const tensor& t = *f[k];
            if (t.type() != dtype::f32) continue;
            const bool non_negative = s.fmt == state_format::blockwise_8bit || k == 1;
            const char* suffix = s.fmt == state_format::fp32 ? (k == 0 ? ".exp_avg" : ".exp_avg_sq")
                                 : k == 2                    ? ".absmax1"
                                                             : ".absmax2";
            const float* v = t.data<float>();
            for (size_t i = 0, n = size_t(t.numel()); i < n; ++i)
                if (!std::isfinite(v[i]) || (non_negative && v[i] < 0))
                    throw error(error_code::format,
                                "optimizer state '" + name + suffix + "' holds " +
                                    (std::isnan(v[i])   ? "NaN"
                                     : std::isinf(v[i]) ? "an infinite value"
                                                        : "a negative value") +
                                    " at index " + std::to_string(i),
                                "the optimizer state is damaged; resume from an earlier checkpoint");
        }
    }
    for (slot& s : slots_) {
        const auto& f = found[s.index];
        for (size_t k = 0; k < f.size(); ++k) {
            const tensor& t = *f[k];
            if (pager_) {
                pager_->write(s.ids[k], t.raw(), t.nbytes());
                continue;
            }
            void* dst = s.fmt == state_format::fp32 ? static_cast<void*>(k == 0 ? s.m.data() : s.v.data())
                        : k == 0                    ? static_cast<void*>(s.c1.data())
                        : k == 1                    ? static_cast<void*>(s.c2.data())
                        : k == 2                    ? static_cast<void*>(s.a1.data())
                                                    : static_cast<void*>(s.a2.data());
            std::memcpy(dst, t.raw(), t.nbytes());
        }
    }
    step_ = step;
}

} // namespace qls
