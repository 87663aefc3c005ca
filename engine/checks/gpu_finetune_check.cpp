// `qlora check-gpu --model`: a short LoRA fine-tune of a real model on the GPU beside the same steps on the CPU reference.
#include "gpu_check_parts.h"
#include "qls/gpu_checks.h"

#include "qls/device.h" // defines: probe_gpu, cuda_device_of

#include "qls/dtype.h"
#include "qls/error.h"
#include "qls/gpu_train.h"
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/optim.h"
#include "qls/run_plan.h" // defines: plan_run, plan_settings_on
#include "qls/tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace qls {

namespace {

// Relative L2 error ||g - ref|| / ||ref|| of one adapter kind (every layer's tensor of target t, A or B,
// concatenated), and the layer whose own error is the worst.
struct kind_error {
    double rel = 0, max_abs = 0, worst = -1;
    size_t worst_layer = 0;
    bool any = false;
};
kind_error kind_error_of(const lora_weights<float>& ref, const lora_weights<float>& g, size_t t, int which) {
    kind_error k;
    double num = 0, den = 0;
    for (size_t l = 0; l < ref.layers.size(); ++l) {
        const std::vector<float>& c = which ? ref.layers[l][t].db : ref.layers[l][t].da;
        const std::vector<float>& x = which ? g.layers[l][t].db : g.layers[l][t].da;
        if (c.empty()) continue;
        k.any = true;
        double n1 = 0, d1 = 0;
        for (size_t i = 0; i < c.size() && i < x.size(); ++i) {
            const double e = double(x[i]) - double(c[i]);
            n1 += e * e;
            d1 += double(c[i]) * double(c[i]);
            k.max_abs = std::max(k.max_abs, std::fabs(e));
        }
        num += n1;
        den += d1;
        const double own = d1 > 0 ? std::sqrt(n1 / d1) : std::sqrt(n1);
        if (!(own <= k.worst)) {
            k.worst = own;
            k.worst_layer = l;
        }
    }
    k.rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    return k;
}

// The LoRA gradients of one batch, GPU against the CPU reference, one row per adapter kind (q.A, q.B, ..., down.B).
// The tolerance is calibrated on the model itself: `perturbed` holds the CPU's gradients with every weight rounded to
// bf16 (a 2^-9 relative change), and the GPU, which also rounds every activation and activation gradient to bf16,
// must stay within 5x that weight-rounding sensitivity (and within 1e-2 when the model is insensitive). On
// stories260K the sensitivity is 1.4e-2 to 2.2e-2 and the GPU lands at 2.4x to 3.3x it; a wrong term (one adapter's
// gradient computed from stale activations, say) gives errors of order 1.
std::vector<gpu_check_row> compare_grads(const lora_weights<float>& cpu, const lora_weights<float>& perturbed,
                                         const lora_weights<float>& gpu) {
    std::vector<gpu_check_row> rows;
    for (size_t t = 0; t < size_t(k_lora_target_count); ++t)
        for (int which = 0; which < 2; ++which) {
            const kind_error e = kind_error_of(cpu, gpu, t, which);
            if (!e.any) continue;
            const kind_error sens = kind_error_of(cpu, perturbed, t, which);
            gpu_check_row r;
            r.op = std::string("grad ") + lora_target_short_name(lora_target(t)) + (which ? ".B" : ".A");
            char shape[96];
            std::snprintf(shape, sizeof shape, "bf16 sens %.1e, L%zu %.1e", sens.rel, e.worst_layer, e.worst);
            r.shape = shape;
            r.max_abs_error = e.max_abs;
            r.max_rel_error = e.rel;
            r.tolerance = std::max(1e-2, 5.0 * sens.rel);
            r.passed = std::isfinite(e.rel) && e.rel <= r.tolerance;
            rows.push_back(r);
        }
    return rows;
}

// How many adapter tensors (each A and each B) of two trainers' adapters differ in any bit.
size_t differing_adapter_tensors(const lora_weights<float>& a, const lora_weights<float>& b) {
    size_t differ = 0;
    for (size_t l = 0; l < a.layers.size(); ++l)
        for (size_t t = 0; t < a.layers[l].size(); ++t)
            differ += size_t(a.layers[l][t].a != b.layers[l][t].a) + size_t(a.layers[l][t].b != b.layers[l][t].b);
    return differ;
}

// The streaming load against the old way, `steps` steps each on the same batches: the old way loads the whole
// model (NF4 projections, f32 norms and embeddings on the host) and uploads it (gpu_trainer::from_model); the
// streaming way allocates the arena first and the loader puts each tensor into it as it is read
// (gpu_trainer::for_streaming + llama_load_options::sink, the GPU quantizer as `qlora train` uses it). The arena must
// hold the same bytes, so every loss and every adapter after the steps must be equal bit for bit.
std::vector<gpu_check_row> stream_load_rows(const std::string& model_dir, const std::vector<int>& ids, int B, int T,
                                            int steps, uint64_t seed, int device) {
    llama_load_options lo;
    lo.quantize_nf4 = true;
    lo.double_quant = true;
    lo.keep_f32_projections = false;
    // both ways quantize on the GPU as `qlora train` does (prepare_backend_load), so only the upload path differs
    gpu_nf4_quantizer q(device);
    quantize_on(q, lo);
    const llama_model old_model = llama_model::load(model_dir, lo);
    const model_config& c = old_model.config;
    lora_config lc;
    lc.rank = 8;
    lc.alpha = 16.0f;
    lc.dropout = 0.0f;
    const lora_weights<float> init = lora_init(c, lc, seed);
    gpu_train_options go;
    go.lora = lc;
    go.batch = B;
    go.seq = T;
    go.optimizer = optimizer_kind::paged_adamw_8bit;
    go.gradient_checkpointing = true;
    go.device = device;
    auto plan_now = [&] {
        const compute_device d = cuda_device_of(probe_gpu(device));
        plan_settings s;
        s.lora = lc;
        s.batch = B;
        s.seq = T;
        s.optimizer = go.optimizer;
        s.gradient_checkpointing = true;
        s.page_size = go.page_size;
        return plan_run(c, plan_settings_on(s, d));
    };
    std::unique_ptr<gpu_trainer> old_way = gpu_trainer::from_model(old_model, init, plan_now(), go);
    std::unique_ptr<gpu_trainer> streamed = gpu_trainer::for_streaming(c, lc, plan_now(), go);
    {
        llama_load_options so = lo;
        so.sink = &streamed->load_sink();
        const llama_model empty = llama_model::load(model_dir, so);
        if (empty.has_f32_projections() || empty.quantized() || !empty.params.embed.empty())
            throw error(error_code::internal, "the streaming load kept weights on the host", "");
    }
    streamed->finish_load(init);
    double max_diff = 0;
    std::string losses;
    std::vector<int> tokens(size_t(B) * T), targets(size_t(B) * T);
    const size_t span = ids.size() - size_t(T) - 1;
    for (int st = 0; st < steps; ++st) {
        for (int b = 0; b < B; ++b) {
            const size_t off = (size_t(st) * size_t(B) + size_t(b)) * 97 % span;
            for (int t = 0; t < T; ++t) {
                tokens[size_t(b) * T + t] = ids[off + size_t(t)];
                targets[size_t(b) * T + t] = ids[off + size_t(t) + 1];
            }
        }
        gpu_batch gb;
        gb.tokens = tokens.data();
        gb.targets = targets.data();
        const double a = old_way->forward_backward(gb, false, 0), b = streamed->forward_backward(gb, false, 0);
        old_way->optimizer_step(3e-3f, 1, 0.3f);
        streamed->optimizer_step(3e-3f, 1, 0.3f);
        max_diff = std::max(max_diff, a == b ? 0.0 : std::isfinite(a - b) ? std::fabs(a - b) : 1e30);
        char buf[48];
        std::snprintf(buf, sizeof buf, "%s%.6f", st ? " " : "", b);
        losses += buf;
    }
    const lora_weights<float> wa = old_way->download_lora(), wb = streamed->download_lora();
    const size_t differ = differing_adapter_tensors(wa, wb);
    gpu_check_row r;
    r.op = "streaming load";
    r.shape = std::to_string(steps) + " steps, losses " + losses + "; " + std::to_string(differ) +
              " adapter tensors differ from the old load";
    r.max_abs_error = max_diff;
    r.max_rel_error = max_diff;
    r.tolerance = 0.0;
    r.passed = max_diff == 0.0 && differ == 0;
    return {r};
}

} // namespace

std::vector<gpu_check_row> run_gpu_finetune_check(const std::string& model_dir, const std::string& text_file, int steps,
                                                  uint64_t seed) {
    const gpu_probe p = probe_gpu();
    if (!p.available) throw error(error_code::device, p.message, "run check-gpu on a machine with an NVIDIA GPU");
    const hf_checkpoint ckpt = hf_checkpoint::open(model_dir);
    llama_load_options lo;
    lo.quantize_nf4 = true;
    lo.double_quant = true;
    const llama_model model = llama_model::load(ckpt, lo);
    const tokenizer tok = load_tokenizer_for(ckpt);
    std::ifstream in(text_file, std::ios::binary);
    if (!in) throw error(error_code::io, "cannot read " + text_file, "pass a text file with --text");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::vector<int> ids = tok.encode(ss.str(), true);
    const int B = 4, T = 64;
    if (ids.size() < size_t(B * T + 2))
        throw error(error_code::invalid_argument,
                    text_file + " is too short for the check (" + std::to_string(ids.size()) + " tokens)", "");
    std::vector<gpu_check_row> rows = gpu_finetune_rows(model, ids, B, T, steps, seed, "", p.index);
    for (gpu_check_row& r : stream_load_rows(model_dir, ids, B, T, 3, seed, p.index)) rows.push_back(r);
    return rows;
}

std::vector<gpu_check_row> gpu_finetune_rows(const llama_model& model, const std::vector<int>& ids, int B, int T,
                                             int steps, uint64_t seed, const std::string& label, int device) {
    // The GPU trainers get the model as the CUDA path loads it: NF4 projections only, no f32 copies (the CPU
    // reference keeps its f32 params). Uploading from this copy proves the backend never reads those vectors.
    llama_model gpu_model = model;
    for (int l = 0; l < gpu_model.config.num_layers; ++l)
        for (lora_target t : all_lora_targets()) std::vector<float>().swap(gpu_model.projection(l, t));
    const std::string prefix = label.empty() ? "" : label + ": ";

    lora_config lc;
    lc.rank = 8;
    lc.alpha = 16.0f;
    lc.dropout = 0.0f; // dropout masks agree by construction; off here so the comparison sees only arithmetic
    const lora_weights<float> init = lora_init(model.config, lc, seed);
    const float lr = 3e-3f;
    const adamw_hparams hp{0.9f, 0.999f, 1e-8f, 0.0f};

    // CPU reference: llama_pass<float> + 32-bit AdamW over the same batches
    lora_weights<float> cw = init;
    llama_pass<float> pass(model.config, model.params, model.inv_freq, B, T, &cw);
    std::vector<optim_param> params;
    for (int l = 0; l < model.config.num_layers; ++l)
        for (lora_target t : lc.targets) {
            lora_adapter<float>& ad = cw.at(l, t);
            const std::string n = std::to_string(l) + "." + lora_target_name(t);
            params.push_back({n + ".A", ad.a.data(), ad.da.data(), ad.a.size()});
            params.push_back({n + ".B", ad.b.data(), ad.db.data(), ad.b.size()});
        }
    optimizer_config oc;
    oc.kind = optimizer_kind::adamw_32bit;
    oc.hparams = hp;
    optimizer cpu_opt(params, oc);

    gpu_train_options go;
    go.batch = B;
    go.seq = T;
    go.optimizer = optimizer_kind::adamw_32bit;
    go.adamw = hp;
    go.gradient_checkpointing = true;
    go.device = device;
    // Each trainer gets the run's plan through the one plan path (run_plan.h), on the device as it is right then.
    auto plan_for = [&](const gpu_train_options& o, checkpoint_offload offload = checkpoint_offload::auto_select) {
        const compute_device d = cuda_device_of(probe_gpu(device));
        plan_settings s;
        s.lora = init.config;
        s.batch = o.batch;
        s.seq = o.seq;
        s.optimizer = o.optimizer;
        s.gradient_checkpointing = o.gradient_checkpointing;
        s.page_size = o.page_size;
        s.offload = offload;
        return plan_run(model.config, plan_settings_on(s, d));
    };
    std::unique_ptr<gpu_trainer> gpu = gpu_trainer::from_model(gpu_model, init, plan_for(go), go);
    // the same run with every layer's activations kept (no recomputation): must give the same bits
    gpu_train_options keep = go;
    keep.gradient_checkpointing = false;
    std::unique_ptr<gpu_trainer> gpu_keep = gpu_trainer::from_model(gpu_model, init, plan_for(keep), keep);
    double keep_max_diff = 0;
    // and with every layer's checkpoint offloaded to pinned host memory behind the device ring: only copies differ
    const memory_plan offload_plan = plan_for(go, checkpoint_offload::on);
    if (!offload_plan.checkpoints_offloaded())
        throw error(error_code::internal, "the plan did not offload the checkpoints it was told to", "");
    std::unique_ptr<gpu_trainer> gpu_offload = gpu_trainer::from_model(gpu_model, init, offload_plan, go);
    double offload_max_diff = 0;

    std::vector<gpu_check_row> rows;
    std::vector<int> tokens(size_t(B) * T), targets(size_t(B) * T);
    const size_t span = ids.size() - size_t(T) - 1;

    {
        // Gradients of one batch with B drawn at random (like an adapter part-way through training; a zero B would
        // make every dA zero): every adapter's dA and dB, GPU against the CPU pass.
        lora_weights<float> gw = init;
        uint64_t h = seed ^ 0x5bd1e995ull;
        for (auto& layer : gw.layers)
            for (auto& ad : layer)
                for (float& x : ad.b) {
                    h = h * 6364136223846793005ull + 1442695040888963407ull;
                    x = (float(h >> 40) / 16777216.0f - 0.5f) * 0.04f;
                }
        for (int b = 0; b < B; ++b)
            for (int t = 0; t < T; ++t) {
                tokens[size_t(b) * T + t] = ids[size_t(b) * T + size_t(t)];
                targets[size_t(b) * T + t] = ids[size_t(b) * T + size_t(t) + 1];
            }
        lora_weights<float> cg = gw;
        llama_pass<float> gpass(model.config, model.params, model.inv_freq, B, T, &cg);
        cg.zero_grad();
        gpass.forward(tokens.data(), targets.data());
        gpass.backward();
        // the same pass with every weight rounded to bf16: the gradients' own sensitivity to bf16 rounding
        llama_params<float> rounded = model.params;
        auto round_all = [](std::vector<float>& v) {
            for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
        };
        round_all(rounded.embed);
        round_all(rounded.final_norm);
        round_all(rounded.lm_head);
        for (auto& lp : rounded.layers) {
            for (std::vector<float>* v :
                 {&lp.attn_norm, &lp.wq, &lp.wk, &lp.wv, &lp.wo, &lp.mlp_norm, &lp.w_gate, &lp.w_up, &lp.w_down})
                round_all(*v);
            // the newer families' tensors (empty for LLaMA): biases, q/k norms, post norms
            for (std::vector<float>* v : {&lp.q_norm, &lp.k_norm, &lp.post_attn_norm, &lp.post_mlp_norm}) round_all(*v);
            for (std::vector<float>& b : lp.bias) round_all(b);
        }
        lora_weights<float> pg = gw;
        llama_pass<float> ppass(model.config, rounded, model.inv_freq, B, T, &pg);
        pg.zero_grad();
        ppass.forward(tokens.data(), targets.data());
        ppass.backward();
        std::unique_ptr<gpu_trainer> gg = gpu_trainer::from_model(gpu_model, gw, plan_for(go), go);
        gpu_batch gb;
        gb.tokens = tokens.data();
        gb.targets = targets.data();
        gg->forward_backward(gb, false, 0);
        for (gpu_check_row& r : compare_grads(cg, pg, gg->download_lora())) {
            r.shape = prefix + r.shape;
            rows.push_back(r);
        }
    }

    for (int s = 0; s < steps; ++s) {
        for (int b = 0; b < B; ++b) {
            const size_t off = (size_t(s) * B + size_t(b)) * size_t(T) % span;
            for (int t = 0; t < T; ++t) {
                tokens[size_t(b) * T + t] = ids[off + size_t(t)];
                targets[size_t(b) * T + t] = ids[off + size_t(t) + 1];
            }
        }
        cw.zero_grad();
        const double cpu_loss = pass.forward(tokens.data(), targets.data());
        pass.backward();
        gpu_batch gb;
        gb.tokens = tokens.data();
        gb.targets = targets.data();
        const double gpu_loss = gpu->forward_backward(gb, false, 0);
        cpu_opt.step(lr);
        gpu->optimizer_step(lr, 1, 0.0f);
        const double keep_loss = gpu_keep->forward_backward(gb, false, 0);
        gpu_keep->optimizer_step(lr, 1, 0.0f);
        keep_max_diff = std::max(keep_max_diff, std::fabs(keep_loss - gpu_loss));
        const double offload_loss = gpu_offload->forward_backward(gb, false, 0);
        gpu_offload->optimizer_step(lr, 1, 0.0f);
        offload_max_diff = std::max(offload_max_diff, std::fabs(offload_loss - gpu_loss));
        gpu_check_row r;
        r.op = "finetune step " + std::to_string(s + 1);
        char shape[96];
        std::snprintf(shape, sizeof shape, "cpu %.4f gpu %.4f", cpu_loss, gpu_loss);
        r.shape = prefix + shape;
        r.max_abs_error = std::fabs(gpu_loss - cpu_loss);
        r.max_rel_error = r.max_abs_error / std::max(1e-12, std::fabs(cpu_loss));
        // bf16 activations and weights against the fp32 reference: 1% of the loss
        r.tolerance = 1e-2;
        r.passed = std::isfinite(gpu_loss) && r.max_rel_error <= r.tolerance;
        rows.push_back(r);
    }
    {
        // gradient checkpointing recomputes each layer with the same kernels on the same inputs: the losses and the
        // adapters after every step must equal the run that kept all activations, bit for bit
        const lora_weights<float> a = gpu->download_lora(), b = gpu_keep->download_lora();
        const size_t differ = differing_adapter_tensors(a, b);
        gpu_check_row r;
        r.op = "checkpointing off";
        r.shape = prefix + std::to_string(differ) + " adapter tensors differ";
        r.max_abs_error = keep_max_diff;
        r.max_rel_error = keep_max_diff;
        r.tolerance = 0.0;
        r.passed = keep_max_diff == 0.0 && differ == 0;
        rows.push_back(r);
    }
    {
        // offloaded checkpoints: the same kernels read the same bytes, brought back from the host: bit for bit again
        const lora_weights<float> a = gpu->download_lora(), b = gpu_offload->download_lora();
        const size_t differ = differing_adapter_tensors(a, b);
        gpu_check_row r;
        r.op = "checkpoint offload";
        r.shape = prefix + std::to_string(differ) + " adapter tensors differ, " +
                  std::to_string(offload_plan.offloaded_checkpoint_bytes() >> 10) + " KiB on the host";
        r.max_abs_error = offload_max_diff;
        r.max_rel_error = offload_max_diff;
        r.tolerance = 0.0;
        r.passed = offload_max_diff == 0.0 && differ == 0;
        rows.push_back(r);
    }
    return rows;
}

} // namespace qls
