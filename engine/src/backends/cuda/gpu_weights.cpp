// gpu_weights — what the CUDA trainer's arena holds before the first step: the frozen weights (a synthetic model made on
// the device, or a model's NF4 projections as quantized — on this GPU when the model was loaded unquantized — and the
// rest rounded to bf16, from a loaded llama_model or tensor by tensor from a streaming load) and the fp32 adapters.
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

// ---- frozen weights, one tensor at a time ---------------------------------------------------------------------------
// Both ways a model reaches the arena go through put_projection / put_base / put_bias: model_weights (a llama_model
// already in host memory) and the streaming load (the loader calls load_sink as it reads each tensor), so the arena
// holds the same bytes either way. `delivered` marks each frozen tensor of the plan as it arrives (weight_slot).

size_t gpu_trainer::impl::weight_slot(int l, int kind, int index) const {
    // global: 0 embed, 1 final_norm, 2 lm_head; per layer l: 3 + l·k_layer_slots + (base_tensor | 9 + bias | 16 + proj)
    if (l < 0) return size_t(index);
    const int first = kind == 0 ? 0 : k_base_tensor_count + (kind - 1) * k_lora_target_count;
    return 3 + size_t(l) * k_layer_slots + size_t(first + index);
}

void gpu_trainer::impl::mark_delivered(size_t slot, const std::string& what) {
    if (delivered.empty()) delivered.assign(3 + size_t(L) * k_layer_slots, 0);
    if (slot >= delivered.size())
        throw error(error_code::internal, what + " has no place among the frozen tensors the load tracks",
                    "report this; the CUDA trainer's weight bookkeeping is wrong");
    if (delivered[slot])
        throw error(error_code::internal, what + " was put into the GPU arena twice", "load the model again");
    delivered[slot] = 1;
}

void gpu_trainer::impl::put_projection(int l, lora_target t, const nf4_tensor& w) {
    const std::string what = "layer " + std::to_string(l) + " " + lora_target_name(t);
    if (l < 0 || l >= L)
        throw error(error_code::invalid_argument, what + ": no such layer (the plan has " + std::to_string(L) + ")",
                    "load the model again; its config.json and weights disagree");
    auto [in, out] = in_out(t);
    if (w.rows != out || w.cols != in)
        throw error(error_code::invalid_argument,
                    what + ": the NF4 weight is " + std::to_string(w.rows) + "x" + std::to_string(w.cols) +
                        ", the plan's is " + std::to_string(out) + "x" + std::to_string(in),
                    "load the model again; its config.json and weights disagree");
    if (!w.double_quant || w.blocksize != 64 || w.nested_blocksize != 256)
        throw error(error_code::unsupported,
                    what + ": the CUDA backend takes NF4 with double quantization, blocks of 64 (nested 256)",
                    "quantize at load time (model.double_quant true)");
    // the arena items' sizes (memory_plan.cpp, nf4.*): (n+1)/2 codes, n/64 absmax codes, n/64/256 nested absmax
    const int64_t n = int64_t(in) * out, nb = (n + 63) / 64, ns = (nb + 255) / 256;
    if (int64_t(w.packed.size()) != (n + 1) / 2 || int64_t(w.absmax_codes.size()) != nb ||
        int64_t(w.absmax_scale.size()) != ns)
        throw error(error_code::invalid_argument, what + ": the NF4 weight's codes or absmax have the wrong size",
                    "load the model again; the checkpoint's 4-bit tensors are damaged");
    mark_delivered(weight_slot(l, 2, int(t)), what);
    put(item<uint8_t>({plan_item_id::nf4_codes, t}, l), w.packed);
    put(item<uint8_t>({plan_item_id::nf4_absmax, t}, l), w.absmax_codes);
    put(item<float>({plan_item_id::nf4_nested_absmax, t}, l), w.absmax_scale);
    upload_maps(l, t, w.nested_map, w.absmax_offset);
}

void gpu_trainer::impl::put_base(int l, base_tensor bt, const std::vector<float>& v) {
    const architecture& arch = architecture_for(cfg);
    const float off = arch.norm == norm_kind::rms_one_plus ? 1.0f : 0.0f;
    if (!base_tensor_per_layer(bt)) {
        const int64_t want = bt == base_tensor::final_norm ? int64_t(C) : int64_t(V) * C;
        const std::string what = arch.hf_name(bt);
        if (int64_t(v.size()) != want)
            throw error(error_code::invalid_argument,
                        what + " has " + std::to_string(v.size()) + " values, the plan's has " + std::to_string(want),
                        "load the model again; its config.json and weights disagree");
        const plan_item_key k = bt == base_tensor::embed     ? plan_item_key{plan_item_id::embed_tokens}
                                : bt == base_tensor::lm_head ? plan_item_key{plan_item_id::lm_head}
                                                             : plan_item_key{plan_item_id::final_norm_weight};
        if (!mem->has(k))
            throw error(error_code::invalid_argument, what + ": the run's plan has no place for it",
                        "plan the run for this model (tie_word_embeddings)");
        mark_delivered(weight_slot(-1, 0, bt == base_tensor::embed ? 0 : bt == base_tensor::final_norm ? 1 : 2), what);
        put(item<bf16>(k), bt == base_tensor::final_norm ? norm_to_bf16(v, off) : to_bf16(v));
        return;
    }
    const std::string what = "layer " + std::to_string(l) + " " + arch.hf_name_any_layer(bt);
    if (l < 0 || l >= L)
        throw error(error_code::invalid_argument, what + ": no such layer (the plan has " + std::to_string(L) + ")",
                    "load the model again; its config.json and weights disagree");
    plan_item_key k{plan_item_id::attn_norm_weight};
    switch (bt) {
    case base_tensor::attn_norm: k = {plan_item_id::attn_norm_weight}; break;
    case base_tensor::mlp_norm: k = {plan_item_id::mlp_norm_weight}; break;
    case base_tensor::q_norm: k = {plan_item_id::q_norm_weight}; break;
    case base_tensor::k_norm: k = {plan_item_id::k_norm_weight}; break;
    case base_tensor::post_attn_norm: k = {plan_item_id::post_attn_norm_weight}; break;
    case base_tensor::post_mlp_norm: k = {plan_item_id::post_mlp_norm_weight}; break;
    default: break;
    }
    const bool used = bt == base_tensor::attn_norm || bt == base_tensor::mlp_norm ||
                      ((bt == base_tensor::q_norm || bt == base_tensor::k_norm) && qk_norm) ||
                      ((bt == base_tensor::post_attn_norm || bt == base_tensor::post_mlp_norm) && sandwich);
    if (!used || !mem->has(k))
        throw error(error_code::invalid_argument, what + ": the run's plan has no place for it",
                    "plan the run for this model's family");
    // a tensor of the plan must come with the model in its planned size (the arena item's bytes)
    if (uint64_t(v.size()) * 2 * uint64_t(L) != mem->bytes(k))
        throw error(error_code::invalid_argument,
                    what + " has " + std::to_string(v.size()) + " values, not the planned size",
                    "load the model again; its config.json and weights disagree");
    mark_delivered(weight_slot(l, 0, int(bt)), what);
    put(item<bf16>(k, l), norm_to_bf16(v, off));
}

void gpu_trainer::impl::put_bias(int l, lora_target t, const std::vector<float>& v) {
    const std::string what = "layer " + std::to_string(l) + " " + lora_target_name(t) + " bias";
    const plan_item_key k{plan_item_id::proj_bias, t};
    if (l < 0 || l >= L || !mem->has(k))
        throw error(error_code::invalid_argument, what + ": the run's plan has no place for it",
                    "plan the run for this model (its config's bias settings)");
    if (uint64_t(v.size()) * 2 * uint64_t(L) != mem->bytes(k))
        throw error(error_code::invalid_argument,
                    what + " has " + std::to_string(v.size()) + " values, not the planned size",
                    "load the model again; its config.json and weights disagree");
    mark_delivered(weight_slot(l, 1, int(t)), what);
    put(item<bf16>(k, l), to_bf16(v));
}

void gpu_trainer::impl::require_all_weights() const {
    // Every frozen tensor the plan holds, in the loader's order: what a streaming load must have delivered.
    const architecture& arch = architecture_for(cfg);
    auto missing = [&](size_t slot) { return delivered.empty() || !delivered[slot]; };
    auto fail = [](const std::string& what) {
        throw error(error_code::invalid_argument,
                    what + " never reached the GPU arena (the load delivered no such tensor)",
                    "load the model again; the checkpoint lacks a tensor its config.json calls for");
    };
    if (missing(weight_slot(-1, 0, 0))) fail(arch.hf_name(base_tensor::embed));
    for (int l = 0; l < L; ++l) {
        for (base_tensor bt : arch.layer_tensors())
            if (missing(weight_slot(l, 0, int(bt)))) fail(arch.hf_name(bt, l));
        for (int ti = 0; ti < k_lora_target_count; ++ti)
            if (mem->has({plan_item_id::proj_bias, lora_target(ti)}) && missing(weight_slot(l, 1, ti)))
                fail(arch.hf_bias(l, lora_target(ti)));
        for (lora_target t : arch.projections)
            if (missing(weight_slot(l, 2, int(t)))) fail(arch.hf_weight(l, t));
    }
    if (missing(weight_slot(-1, 0, 1))) fail(arch.hf_name(base_tensor::final_norm));
    if (mem->has({plan_item_id::lm_head}) && missing(weight_slot(-1, 0, 2))) fail(arch.hf_name(base_tensor::lm_head));
}

void gpu_trainer::impl::load_sink::put_projection(int layer, lora_target t, const nf4_tensor& w) {
    device_call("gpu_trainer: streaming load", [&] {
        p->use_device();
        p->put_projection(layer, t, w);
    });
}
void gpu_trainer::impl::load_sink::put_base(int layer, base_tensor t, const std::vector<float>& v) {
    device_call("gpu_trainer: streaming load", [&] {
        p->use_device();
        p->put_base(layer, t, v);
    });
}
void gpu_trainer::impl::load_sink::put_bias(int layer, lora_target t, const std::vector<float>& v) {
    device_call("gpu_trainer: streaming load", [&] {
        p->use_device();
        p->put_bias(layer, t, v);
    });
}

void gpu_trainer::impl::model_weights(const llama_model& m) {
    // Every family of the table (architecture.h): its norms, biases and post norms are uploaded here, its layer ops
    // are in gpu_step.cpp. The same calls and order as the streaming loader (llama.cpp load).
    const architecture& arch = architecture_for(m.config);
    // The projections come from m.nf4 only: params' projection vectors may be empty (a model loaded for the GPU keeps
    // no f32 copy of a frozen weight). A model loaded unquantized is quantized here, on this GPU, one projection at a
    // time, to the bytes the CPU loader would make (gpu_nf4_quantizer).
    std::unique_ptr<gpu_nf4_quantizer> quantizer;
    put_base(-1, base_tensor::embed, m.params.embed);
    for (int l = 0; l < L; ++l) {
        const llama_layer_params<float>& lp = m.params.layers.at(size_t(l));
        // layer_tensor has no const overload; the vector is only read
        for (base_tensor bt : arch.layer_tensors())
            put_base(l, bt, layer_tensor(const_cast<llama_layer_params<float>&>(lp), bt));
        for (lora_target t : arch.projections)
            if (mem->has({plan_item_id::proj_bias, t})) put_bias(l, t, lp.bias[size_t(t)]);
        for (lora_target t : arch.projections) {
            if (m.quantized()) {
                put_projection(l, t, m.nf4[size_t(l)][size_t(t)]);
                continue;
            }
            const std::vector<float>& f = m.projection(l, t);
            auto [in, out] = in_out(t);
            if (f.size() != size_t(in) * size_t(out))
                throw error(error_code::invalid_argument,
                            "layer " + std::to_string(l) + " " + lora_target_name(t) +
                                ": the model has neither an NF4 nor an f32 weight for this projection",
                            "load the model again");
            if (!quantizer) quantizer = std::make_unique<gpu_nf4_quantizer>(opt.device);
            const nf4_tensor local = quantizer->quantize(f.data(), out, in, true);
            use_device();
            put_projection(l, t, local);
        }
    }
    put_base(-1, base_tensor::final_norm, m.params.final_norm);
    if (mem->has({plan_item_id::lm_head})) put_base(-1, base_tensor::lm_head, m.params.lm_head);
    require_all_weights();
}

void gpu_trainer::impl::upload_lora(const lora_weights<float>& w) {
    for (int l = 0; l < L; ++l)
        for (lora_target t : targets) {
            const lora_adapter<float>& ad = w.at(l, t);
            put(lora_w(t, true, l), ad.a);
            put(lora_w(t, false, l), ad.b);
        }
}

void gpu_trainer::impl::download_into(lora_weights<float>& w) const {
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
}

} // namespace qls
