// gpu_weights — what the CUDA trainer's arena holds before the first step: the frozen weights (a synthetic model made on
// the device, or a loaded model's NF4 projections as quantized — on this GPU when the model was loaded unquantized —
// and the rest rounded to bf16) and the fp32 adapters.
#include "gpu_train_impl.h"

#include "qls/architecture.h"         // defines: architecture_for (which projections, which layer ops)
#include "qls/dtype.h"                // defines: f32_to_bf16
#include "qls/quant.h"                // defines: dynamic_map
#include "qls_kernels/elementwise.h"  // defines: fill_*
#include "qls_kernels/nf4_codebook.h" // defines: nf4_code

#include <cmath>

namespace qls {

namespace {

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
    std::vector<uint16_t> o(v.size());
    for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
    return o;
}

// A norm weight as the kernels read it: w, or for a (1 + w) norm (Gemma3RMSNorm) the bf16 of the fp32 sum 1 + w,
// so one RMSNorm kernel computes both kinds.
std::vector<uint16_t> norm_to_bf16(const std::vector<float>& w, float offset) {
    if (offset == 0.0f) return to_bf16(w);
    std::vector<uint16_t> o(w.size());
    for (size_t i = 0; i < w.size(); ++i) o[i] = f32_to_bf16(offset + w[i]);
    return o;
}

} // namespace

// ---- weights ------------------------------------------------------------------------------------------------------
void gpu_trainer::impl::random_weights(uint64_t seed) {
    const auto nested = dynamic_map(true);
    uint64_t s = seed;
    auto next = [&] { return s = s * 6364136223846793005ull + 1442695040888963407ull; };
    for (int l = 0; l < L; ++l)
        for (int ti = 0; ti < k_lora_target_count; ++ti) {
            const lora_target t = lora_target(ti);
            auto [in, out] = in_out(t);
            const int64_t n = int64_t(in) * out, nb = (n + 63) / 64, ns = (nb + 255) / 256;
            K::fill_random_bytes(item<uint8_t>({plan_item_id::nf4_codes, t}, l), (n + 1) / 2, next(), stream);
            K::fill_random_bytes(item<uint8_t>({plan_item_id::nf4_absmax, t}, l), nb, next(), stream);
            // absmax = nested_map[code] * 0.01 + 0.03: block maxima in [0.02, 0.04], weights of std ~0.012
            K::fill_f32(item<float>({plan_item_id::nf4_nested_absmax, t}, l), ns, 0.01f, stream);
            upload_maps(l, t, nested, 0.03f);
        }
    const int64_t ve = int64_t(V) * C;
    K::fill_random_normal_bf16(item<bf16>({plan_item_id::embed_tokens}), ve, next(), 0.02f, stream);
    if (mem->has({plan_item_id::lm_head}))
        K::fill_random_normal_bf16(item<bf16>({plan_item_id::lm_head}), ve, next(), 0.02f, stream);
    for (int l = 0; l < L; ++l) {
        K::fill_bf16(item<bf16>({plan_item_id::attn_norm_weight}, l), C, 1.0f, stream);
        K::fill_bf16(item<bf16>({plan_item_id::mlp_norm_weight}, l), C, 1.0f, stream);
        // the newer families' tensors: identity norms (w = 1, or 1 + w with w = 0) and small random biases
        if (qk_norm) {
            K::fill_bf16(item<bf16>({plan_item_id::q_norm_weight}, l), HS, 1.0f, stream);
            K::fill_bf16(item<bf16>({plan_item_id::k_norm_weight}, l), HS, 1.0f, stream);
        }
        if (sandwich) {
            K::fill_bf16(item<bf16>({plan_item_id::post_attn_norm_weight}, l), C, 1.0f, stream);
            K::fill_bf16(item<bf16>({plan_item_id::post_mlp_norm_weight}, l), C, 1.0f, stream);
        }
        for (int ti = 0; ti < k_lora_target_count; ++ti)
            if (mem->has({plan_item_id::proj_bias, lora_target(ti)}))
                K::fill_random_normal_bf16(item<bf16>({plan_item_id::proj_bias, lora_target(ti)}, l),
                                           in_out(lora_target(ti)).second, next(), 0.02f, stream);
    }
    K::fill_bf16(item<bf16>({plan_item_id::final_norm_weight}), C, 1.0f, stream);
    // LoRA: A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT kaiming_uniform_(a=sqrt(5))), B = 0 (the arena starts zeroed)
    for (int l = 0; l < L; ++l)
        for (lora_target t : targets) {
            auto [in, out] = in_out(t);
            K::fill_random_uniform_f32(lora_w(t, true, l), int64_t(r) * in, next(), 1.0f / std::sqrt(float(in)),
                                       stream);
        }
    QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void gpu_trainer::impl::upload_maps(int l, lora_target t, const std::array<float, 256>& nested, float offset) {
    float maps[273];
    for (int i = 0; i < 16; ++i) maps[i] = K::nf4_code[i];
    for (int i = 0; i < 256; ++i) maps[16 + i] = nested[size_t(i)];
    maps[272] = offset;
    QLS_CUDA_CHECK(cudaMemcpy(item<float>({plan_item_id::nf4_maps, t}, l), maps, sizeof maps, cudaMemcpyHostToDevice));
    nested_offset[size_t(l)][size_t(t)] = offset;
}

template <class E> void gpu_trainer::impl::put(void* dst, const std::vector<E>& v) {
    QLS_CUDA_CHECK(cudaMemcpy(dst, v.data(), v.size() * sizeof(E), cudaMemcpyHostToDevice));
}

void gpu_trainer::impl::model_weights(const llama_model& m) {
    // Every family of the table (architecture.h): its norms, biases and post norms are uploaded here, its layer ops
    // are in gpu_step.cpp.
    const architecture& arch = architecture_for(m.config);
    const float off = arch.norm == norm_kind::rms_one_plus ? 1.0f : 0.0f;
    // The projections come from m.nf4 only: params' projection vectors may be empty (a model loaded for the GPU keeps
    // no f32 copy of a frozen weight). A model loaded unquantized is quantized here, on this GPU, one projection at a
    // time, to the bytes the CPU loader would make (gpu_nf4_quantizer).
    std::unique_ptr<gpu_nf4_quantizer> quantizer;
    for (int l = 0; l < L; ++l) {
        for (lora_target t : arch.projections) {
            nf4_tensor local;
            if (!m.quantized()) {
                const std::vector<float>& f = m.projection(l, t);
                auto [in, out] = in_out(t);
                if (f.size() != size_t(in) * size_t(out))
                    throw error(error_code::invalid_argument,
                                "layer " + std::to_string(l) + " " + lora_target_name(t) +
                                    ": the model has neither an NF4 nor an f32 weight for this projection",
                                "load the model again");
                if (!quantizer) quantizer = std::make_unique<gpu_nf4_quantizer>(opt.device);
                local = quantizer->quantize(f.data(), out, in, true);
                use_device();
            }
            const nf4_tensor& w = m.quantized() ? m.nf4[size_t(l)][size_t(t)] : local;
            if (!w.double_quant || w.blocksize != 64 || w.nested_blocksize != 256)
                throw error(error_code::unsupported,
                            "layer " + std::to_string(l) + " " + lora_target_name(t) +
                                ": the CUDA backend takes NF4 with double quantization, blocks of 64 (nested 256)",
                            "quantize at load time (model.double_quant true)");
            put(item<uint8_t>({plan_item_id::nf4_codes, t}, l), w.packed);
            put(item<uint8_t>({plan_item_id::nf4_absmax, t}, l), w.absmax_codes);
            put(item<float>({plan_item_id::nf4_nested_absmax, t}, l), w.absmax_scale);
            upload_maps(l, t, w.nested_map, w.absmax_offset);
        }
        const llama_layer_params<float>& lp = m.params.layers[size_t(l)];
        // a tensor of the plan must come with the model in its planned size (the arena item's bytes)
        auto put_exact = [&](plan_item_key k, const std::vector<uint16_t>& v, const std::string& what) {
            if (uint64_t(v.size()) * 2 * uint64_t(L) != mem->bytes(k))
                throw error(error_code::invalid_argument,
                            "layer " + std::to_string(l) + ": the model's " + what + " has " +
                                std::to_string(v.size()) + " values, not the planned size",
                            "load the model again; its config.json and weights disagree");
            put(item<bf16>(k, l), v);
        };
        put_exact({plan_item_id::attn_norm_weight}, norm_to_bf16(lp.attn_norm, off), "attention norm");
        put_exact({plan_item_id::mlp_norm_weight}, norm_to_bf16(lp.mlp_norm, off), "MLP norm");
        if (qk_norm) {
            put_exact({plan_item_id::q_norm_weight}, norm_to_bf16(lp.q_norm, off), "q norm");
            put_exact({plan_item_id::k_norm_weight}, norm_to_bf16(lp.k_norm, off), "k norm");
        }
        if (sandwich) {
            put_exact({plan_item_id::post_attn_norm_weight}, norm_to_bf16(lp.post_attn_norm, off),
                      "post-attention norm");
            put_exact({plan_item_id::post_mlp_norm_weight}, norm_to_bf16(lp.post_mlp_norm, off), "post-MLP norm");
        }
        for (lora_target t : arch.projections)
            if (mem->has({plan_item_id::proj_bias, t}))
                put_exact({plan_item_id::proj_bias, t}, to_bf16(lp.bias[size_t(t)]),
                          std::string(lora_target_name(t)) + " bias");
    }
    put(item<bf16>({plan_item_id::embed_tokens}), to_bf16(m.params.embed));
    if (mem->has({plan_item_id::lm_head})) put(item<bf16>({plan_item_id::lm_head}), to_bf16(m.params.lm_head));
    put(item<bf16>({plan_item_id::final_norm_weight}), norm_to_bf16(m.params.final_norm, off));
}

void gpu_trainer::impl::upload_lora(const lora_weights<float>& w) {
    for (int l = 0; l < L; ++l)
        for (lora_target t : targets) {
            const lora_adapter<float>& ad = w.at(l, t);
            put(lora_w(t, true, l), ad.a);
            put(lora_w(t, false, l), ad.b);
        }
}

lora_weights<float> gpu_trainer::impl::download() const {
    lora_weights<float> w;
    w.config = opt.lora;
    w.layers.resize(size_t(L));
    QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int l = 0; l < L; ++l)
        for (lora_target t : targets) {
            lora_adapter<float>& ad = w.at(l, t);
            auto [in, out] = in_out(t);
            ad.in = in;
            ad.out = out;
            ad.rank = r;
            ad.a.resize(size_t(r) * in);
            ad.b.resize(size_t(out) * r);
            ad.da.resize(ad.a.size());
            ad.db.resize(ad.b.size());
            QLS_CUDA_CHECK(cudaMemcpy(ad.a.data(), lora_w(t, true, l), ad.a.size() * 4, cudaMemcpyDeviceToHost));
            QLS_CUDA_CHECK(cudaMemcpy(ad.b.data(), lora_w(t, false, l), ad.b.size() * 4, cudaMemcpyDeviceToHost));
            QLS_CUDA_CHECK(cudaMemcpy(ad.da.data(), lora_g(t, true, l), ad.da.size() * 4, cudaMemcpyDeviceToHost));
            QLS_CUDA_CHECK(cudaMemcpy(ad.db.data(), lora_g(t, false, l), ad.db.size() * 4, cudaMemcpyDeviceToHost));
        }
    return w;
}

} // namespace qls
