// `qlora check-gpu` family rows: each tiny model of tests/data/families (Llama 3, Mistral, Qwen2, Qwen3, Gemma 3, made
// by make_families.py) decoded greedily and fine-tuned on the GPU beside the CPU reference.
#include "gpu_check_parts.h"
#include "qls/gpu_checks.h"

#include "qls/architecture.h" // defines: architecture_for
#include "qls/device.h"       // defines: probe_gpu
#include "qls/error.h"
#include "qls/gpu_train.h" // defines: make_cuda_decoder
#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/quant.h"             // defines: nf4_quantize, nf4_dequantize
#include "qls_kernels/attention.h" // defines: attention_max_head_size

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>

namespace qls {

namespace {

namespace fs = std::filesystem;

// The model the fine-tune rows train: the fixture itself when the CUDA attention kernels take its head size
// (multiples of 8 up to 128: the qwen3 and gemma3 fixtures), otherwise (llama3 and qwen2 have head_dim 4, mistral 6)
// the same family and config with head_dim 8 and random weights: norms and biases spread around their identity
// values (a norm or bias term computed wrongly shows), the projections NF4 with double quantization as the loader
// makes them (params hold the exact dequantization). `label` gains " hs8" then.
llama_model training_model(const llama_model& fixture, uint64_t seed, std::string& label) {
    const model_config& c = fixture.config;
    if (c.head_dim % 8 == 0 && c.head_dim <= qls_kernels::attention_max_head_size) return fixture;
    model_config c8 = c;
    c8.head_dim = 8;
    llama_model m = llama_model::random(c8, seed);
    const architecture& arch = architecture_for(c8);
    std::mt19937_64 rng(seed ^ 0x2545f4914f6cdd1dull);
    std::normal_distribution<float> nd(0.0f, 0.1f);
    auto spread = [&](std::vector<float>& v) {
        for (float& x : v) x += nd(rng);
    };
    m.nf4.resize(size_t(c8.num_layers));
    for (int l = 0; l < c8.num_layers; ++l) {
        llama_layer_params<float>& L = m.params.layers[size_t(l)];
        for (std::vector<float>* v :
             {&L.attn_norm, &L.mlp_norm, &L.q_norm, &L.k_norm, &L.post_attn_norm, &L.post_mlp_norm})
            spread(*v);
        for (std::vector<float>& b : L.bias) spread(b);
        for (lora_target t : arch.projections) {
            const auto [out, in] = arch.projection_shape(c8, t);
            std::vector<float>& w = m.projection(l, t);
            m.nf4[size_t(l)][size_t(t)] = nf4_quantize(w.data(), out, in, true);
            nf4_dequantize(m.nf4[size_t(l)][size_t(t)], w.data());
        }
    }
    spread(m.params.final_norm);
    label += " hs8";
    return m;
}

// Runs one part of a family's rows; an error there (a refusal, a device failure) becomes one failed row naming the
// family, the part and the message, so the other families' rows still print.
void guarded(std::vector<gpu_check_row>& rows, const std::string& name, const char* part,
             const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        std::printf("  %s: %s failed: %s\n", name.c_str(), part, e.what());
        gpu_check_row r;
        r.op = part;
        r.shape = name + ": " + e.what();
        r.max_abs_error = r.max_rel_error = std::numeric_limits<double>::infinity();
        r.passed = false;
        rows.push_back(r);
    }
}

} // namespace

std::vector<gpu_check_row> run_gpu_family_checks(const std::string& families_dir, int steps, uint64_t seed) {
    const gpu_probe p = probe_gpu();
    if (!p.available)
        throw error(error_code::device, p.message, "run check-gpu on a machine with an NVIDIA GPU and driver");
    std::error_code ec;
    std::vector<std::string> dirs;
    if (fs::is_directory(families_dir, ec))
        for (const fs::directory_entry& e : fs::directory_iterator(families_dir, ec))
            if (e.is_directory(ec) && fs::exists(e.path() / "config.json", ec)) dirs.push_back(e.path().string());
    std::sort(dirs.begin(), dirs.end());
    if (dirs.empty())
        throw error(error_code::io, families_dir + ": no family models (folders with a config.json) found there",
                    "pass --families with the source tree's tests/data/families (make_families.py writes them)");

    std::vector<gpu_check_row> rows;
    for (const std::string& dir : dirs) {
        const std::string name = fs::path(dir).filename().string();
        guarded(rows, name, "family load", [&] {
            const hf_checkpoint ckpt = hf_checkpoint::open(dir);
            llama_load_options lo;
            lo.quantize_nf4 = true;
            lo.double_quant = true;
            const llama_model model = llama_model::load(ckpt, lo); // params hold the exact NF4 dequantization
            const model_config& c = model.config;
            std::mt19937_64 rng(seed ^ std::hash<std::string>{}(name));
            std::uniform_int_distribution<int> tok(0, c.vocab_size - 1);

            // Greedy generation, the fixture's own weights: the CUDA decoder (NF4 only, no f32 projections) beside the
            // CPU decoder, without and with a rank-8 adapter part-way through training (B drawn: B = 0 hides the path).
            guarded(rows, name, "family generate", [&] {
                llama_model gpu_model = model;
                for (int l = 0; l < c.num_layers; ++l)
                    for (lora_target t : all_lora_targets()) std::vector<float>().swap(gpu_model.projection(l, t));
                std::vector<int> prompt(6);
                for (int& id : prompt) id = tok(rng);
                // the prompt and every new token inside the model's context (64 positions for the fixtures), and past
                // Gemma 3's sliding window of 4
                const int n = std::max(1, std::min(24, c.max_position_embeddings - int(prompt.size())));
                lora_config lc;
                lc.rank = 8;
                lc.alpha = 16.0f;
                lora_weights<float> adapter = lora_init(c, lc, seed);
                std::normal_distribution<float> nd(0.0f, 0.05f);
                for (auto& layer : adapter.layers)
                    for (auto& ad : layer)
                        for (float& b : ad.b) b = nd(rng);
                {
                    auto cd = make_cpu_decoder(model);
                    auto gd = make_cuda_decoder(gpu_model, nullptr, p.index);
                    for (const gpu_check_row& r : gpu_compare_decoders(*cd, *gd, prompt, n, name)) rows.push_back(r);
                }
                {
                    auto cd = make_cpu_decoder(model, &adapter);
                    auto gd = make_cuda_decoder(gpu_model, &adapter, p.index);
                    for (const gpu_check_row& r : gpu_compare_decoders(*cd, *gd, prompt, n, name + " +lora"))
                        rows.push_back(r);
                }
            });

            // The fine-tune: B 2 x T 32 windows of random token ids (T past the sliding window), `steps` steps.
            guarded(rows, name, "family finetune", [&] {
                std::string label = name;
                const llama_model tm = training_model(model, seed, label);
                const int B = 2, T = std::min(32, c.max_position_embeddings);
                std::vector<int> ids(size_t(B) * T * size_t(std::max(1, steps)) + size_t(T) + 2);
                for (int& id : ids) id = tok(rng);
                for (const gpu_check_row& r : gpu_finetune_rows(tm, ids, B, T, steps, seed, label, p.index))
                    rows.push_back(r);
            });
        });
    }
    return rows;
}

} // namespace qls
