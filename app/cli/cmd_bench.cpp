// qlora bench: QLoRA training steps of a synthetic model of a named shape on the GPU — tokens/s, memory, paging, plan —
// or, with --generate, single-stream generation (tokens/s of the CUDA decoder over an NF4 model of that shape).
#include "args.h"
#include "commands.h"

#include "qls/device.h"     // defines: probe_gpu, cuda_device_of
#include "qls/generate.h"   // defines: decoder
#include "qls/gpu_checks.h" // defines: run_attention_bench (library qls_gpu_checks)
#include "qls/gpu_train.h"
#include "qls/lora.h" // defines: parse_lora_targets, lora_targets_string
#include "qls/memory_plan.h"
#include "qls/optim.h"    // defines: parse_optimizer_kind, optimizer_kind_flag
#include "qls/run_plan.h" // defines: plan_run, plan_settings_on

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace qlora_cli {

namespace {

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// "C,H,L,NH,NKV,V" (head size C / NH)
qls::model_config explicit_dims(const std::string& s) {
    std::vector<int> v;
    size_t pos = 0;
    while (pos <= s.size()) {
        const size_t comma = s.find(',', pos);
        const std::string part = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        try {
            v.push_back(std::stoi(part));
        } catch (...) {
            throw usage_error("--dims: '" + part + "' is not a number", "e.g. --dims 4096,11008,32,32,32,32000");
        }
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    if (v.size() != 6 || std::any_of(v.begin(), v.end(), [](int x) { return x <= 0; }) || v[0] % v[3] != 0 ||
        v[3] % v[4] != 0)
        throw usage_error("--dims takes six positive numbers C,H,L,NH,NKV,V with NH dividing C and NKV dividing NH",
                          "e.g. --dims 4096,11008,32,32,32,32000 (Llama-2-7B)");
    qls::model_config c;
    c.hidden_size = v[0];
    c.intermediate_size = v[1];
    c.num_layers = v[2];
    c.num_heads = v[3];
    c.num_kv_heads = v[4];
    c.vocab_size = v[5];
    c.head_dim = v[0] / v[3];
    c.max_position_embeddings = 1 << 20;
    c.rms_norm_eps = 1e-5;
    return c;
}

struct batch_set {
    std::vector<int> tokens, targets;
};

// Random token windows (uniform ids; every position has a target), deterministic in seed.
std::vector<batch_set> make_batches(int count, int B, int T, int V, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> tok(0, V - 1);
    std::vector<batch_set> out(static_cast<size_t>(count));
    for (auto& b : out) {
        b.tokens.resize(size_t(B) * T);
        b.targets.resize(size_t(B) * T);
        for (int r = 0; r < B; ++r) {
            std::vector<int> seq(size_t(T) + 1);
            for (int& x : seq) x = tok(rng);
            for (int t = 0; t < T; ++t) {
                b.tokens[size_t(r) * T + t] = seq[size_t(t)];
                b.targets[size_t(r) * T + t] = seq[size_t(t) + 1];
            }
        }
    }
    return out;
}

struct run_result {
    std::vector<double> step_ms, losses;
    std::vector<uint64_t> h2d, d2h;
    qls::gpu_memory_stats mem;
    qls::memory_plan plan;
    std::string device;
    qls::lora_weights<float> lora;
    std::vector<std::pair<std::string, double>> profile; // ms per step by phase
};

// The run's plan through the one plan path (run_plan.h): these settings on the GPU as it is now (size, free memory);
// budget_bytes 0 = no budget of one's own (the plan then allows 95% of what the GPU has free).
qls::memory_plan plan_on_gpu(const qls::model_config& cfg, const qls::gpu_train_options& o, uint64_t budget_bytes) {
    const qls::compute_device d = qls::cuda_device_of(qls::probe_gpu(o.device));
    qls::plan_settings s;
    s.lora = o.lora;
    s.batch = o.batch;
    s.seq = o.seq;
    s.optimizer = o.optimizer;
    s.gradient_checkpointing = o.gradient_checkpointing;
    s.budget_bytes = budget_bytes;
    s.page_size = o.page_size;
    return qls::plan_run(cfg, qls::plan_settings_on(s, d));
}

run_result run_steps(const qls::model_config& cfg, const qls::gpu_train_options& o, uint64_t budget_bytes, int warmup,
                     int steps, uint64_t seed, bool keep_lora, int profile_steps = 0) {
    run_result r;
    auto g = qls::gpu_trainer::synthetic(cfg, plan_on_gpu(cfg, o, budget_bytes), o, seed);
    r.plan = g->plan();
    r.device = g->device_name();
    const auto batches = make_batches(std::min(warmup + steps, 8), o.batch, o.seq, cfg.vocab_size, seed + 1);
    uint64_t h2d0 = 0, d2h0 = 0;
    for (int s = 0; s < warmup + steps; ++s) {
        const batch_set& bs = batches[size_t(s) % batches.size()];
        qls::gpu_batch b;
        b.tokens = bs.tokens.data();
        b.targets = bs.targets.data();
        const auto t0 = std::chrono::steady_clock::now();
        const double loss = g->forward_backward(b, o.lora.dropout > 0, seed + uint64_t(s));
        g->optimizer_step(2e-4f, 1, 0.3f);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const qls::gpu_memory_stats m = g->memory();
        if (s >= warmup) {
            r.step_ms.push_back(ms);
            r.losses.push_back(loss);
            r.h2d.push_back(m.paging_h2d_bytes - h2d0);
            r.d2h.push_back(m.paging_d2h_bytes - d2h0);
        }
        h2d0 = m.paging_h2d_bytes;
        d2h0 = m.paging_d2h_bytes;
    }
    r.mem = g->memory();
    if (keep_lora) r.lora = g->download_lora();
    if (profile_steps > 0) {
        // Extra steps with a synchronization after every phase: where the time goes (not the timed steps above).
        g->set_profiling(true);
        for (int s = 0; s < profile_steps; ++s) {
            const batch_set& bs = batches[size_t(s) % batches.size()];
            qls::gpu_batch b;
            b.tokens = bs.tokens.data();
            b.targets = bs.targets.data();
            g->forward_backward(b, o.lora.dropout > 0, seed + uint64_t(s));
            g->optimizer_step(2e-4f, 1, 0.3f);
        }
        for (auto& [phase, ms] : g->profile()) r.profile.emplace_back(phase, ms / profile_steps);
    }
    return r;
}

double mean_u64(const std::vector<uint64_t>& v) {
    double s = 0;
    for (uint64_t x : v) s += double(x);
    return v.empty() ? 0 : s / double(v.size());
}

// Single-stream generation on a synthetic NF4 model: `prompt` tokens fed one by one, then `new_tokens` steps, each
// step timed on the host around decoder::step (which includes the logits' copy to the host, as generate() needs it).
// One untimed run first (graph capture, clocks); the median over `runs` runs.
int bench_generate(const qls::model_config& cfg, const std::string& shape_name, int rank,
                   const std::vector<qls::lora_target>& targets, int prompt, int new_tokens, int runs, uint64_t seed,
                   int device, bool json) {
    const auto t_load = std::chrono::steady_clock::now();
    std::unique_ptr<qls::decoder> dec = qls::make_cuda_decoder_synthetic(cfg, rank, targets, seed, device);
    const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
    std::mt19937_64 rng(seed + 7);
    std::uniform_int_distribution<int> tok(0, cfg.vocab_size - 1);
    std::vector<double> decode_tps, prefill_tps, step_ms;
    for (int run = 0; run <= runs; ++run) {
        dec->reset(prompt + new_tokens);
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<float>* logits = nullptr;
        for (int i = 0; i < prompt; ++i) logits = &dec->step(tok(rng));
        const auto t1 = std::chrono::steady_clock::now();
        std::vector<double> ms;
        for (int i = 0; i < new_tokens; ++i) {
            // greedy, as generate() with temperature 0 picks it on the host
            int next = 0;
            for (int j = 1; j < int(logits->size()); ++j)
                if ((*logits)[size_t(j)] > (*logits)[size_t(next)]) next = j;
            const auto s0 = std::chrono::steady_clock::now();
            logits = &dec->step(next);
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count());
        }
        const auto t2 = std::chrono::steady_clock::now();
        if (run == 0) continue; // warm-up
        prefill_tps.push_back(prompt / std::chrono::duration<double>(t1 - t0).count());
        decode_tps.push_back(new_tokens / std::chrono::duration<double>(t2 - t1).count());
        step_ms.push_back(median(ms));
    }
    const qls::cuda_decoder_memory mem = qls::cuda_decoder_memory_of(*dec);
    const qls::gpu_probe after = qls::probe_gpu(device);
    nlohmann::json out = {{"mode", "generate"},
                          {"device", dec->device_label()},
                          {"shape", shape_name},
                          {"weights", "nf4-dq"},
                          {"rank", rank},
                          {"targets", rank > 0 ? qls::lora_targets_string(targets) : ""},
                          {"prompt_tokens", prompt},
                          {"new_tokens", new_tokens},
                          {"runs", runs},
                          {"decode_tokens_per_s_median", median(decode_tps)},
                          {"prefill_tokens_per_s_median", median(prefill_tps)},
                          {"step_ms_median", median(step_ms)},
                          {"setup_s", setup_s},
                          {"weights_gib", qls::to_gib(mem.weight_bytes)},
                          {"kv_cache_gib", qls::to_gib(mem.cache_bytes)},
                          {"device_used_gib", qls::to_gib(after.total_bytes - after.free_bytes)}};
    if (json) std::printf("%s\n", out.dump().c_str());
    else
        std::printf("%s  %s  NF4 generate  rank %d\n  %.1f tokens/s decoding (step %.2f ms, median of %d runs of %d "
                    "tokens after %d prompt tokens)\n  weights %.2f GiB, KV cache %.3f GiB, card in use %.2f GiB\n",
                    dec->device_label().c_str(), shape_name.c_str(), rank, median(decode_tps), median(step_ms), runs,
                    new_tokens, prompt, qls::to_gib(mem.weight_bytes), qls::to_gib(mem.cache_bytes),
                    qls::to_gib(after.total_bytes - after.free_bytes));
    return 0;
}

} // namespace

int cmd_bench(int argc, char** argv) {
    args a(argc, argv, 2, {"shape",   "dims",          "seq",        "batch", "rank",   "alpha",   "dropout",
                           "targets", "optimizer",     "budget-gib", "steps", "warmup", "seed",    "paging-check",
                           "profile", "prompt-tokens", "new-tokens", "runs",  "heads",  "head-dim"},
           {"no-checkpointing", "json", "generate", "attention"});
    if (!a.positional().empty()) throw usage_error("unexpected argument '" + a.positional()[0] + "'");
    if (a.has("attention")) {
        // The attention kernels alone: causal forward and backward, B = 1, both paths (QLS_ATTENTION=wmma|fa2 picks
        // one for training), printed as JSON with TFLOP/s by FlashAttention-2's count (see run_attention_bench).
        const int T = a.get_int("seq", 4096), NH = a.get_int("heads", 32), HS = a.get_int("head-dim", 128);
        const int iters = a.get_int("steps", 20);
        if (T < 1 || NH < 1 || HS < 8 || HS % 8 != 0 || HS > 128 || iters < 1)
            throw usage_error("--seq and --heads must be at least 1, --head-dim a multiple of 8 up to 128, --steps "
                              "at least 1");
        const qls::gpu_probe probe = qls::probe_gpu();
        if (!probe.available) {
            std::fprintf(stderr, "qlora bench --attention: %s (the attention bench runs only on a GPU)\n",
                         probe.message.c_str());
            return 1;
        }
        const auto rows = qls::run_attention_bench(T, NH, HS, iters, uint64_t(a.get_int64("seed", 1234)));
        nlohmann::json out = {{"bench", "attention"},
                              {"device", probe.name},
                              {"batch", 1},
                              {"seq", T},
                              {"heads", NH},
                              {"head_dim", HS},
                              {"causal", true},
                              {"iters", iters},
                              {"flops_forward", "4*B*NH*T^2*D/2"},
                              {"flops_backward", "2.5*forward"}};
        for (const auto& r : rows)
            out["paths"][r.path] = {{"forward_ms", r.forward_ms},
                                    {"backward_ms", r.backward_ms},
                                    {"forward_tflops", r.forward_tflops},
                                    {"backward_tflops", r.backward_tflops},
                                    {"forward_rel_diff_vs_wmma", r.forward_rel_diff_vs_wmma}};
        std::printf("%s\n", out.dump(2).c_str());
        return 0;
    }
    if (a.has("shape") == a.has("dims"))
        throw usage_error("give exactly one of --shape 7b|13b|33b|65b|70b or --dims C,H,L,NH,NKV,V");
    const qls::model_config cfg = a.has("shape") ? qls::shape_config(*a.get("shape")) : explicit_dims(*a.get("dims"));
    const std::string shape_name = a.has("shape") ? *a.get("shape") : "dims " + *a.get("dims");

    qls::gpu_train_options o;
    o.seq = a.get_int("seq", 2048);
    o.batch = a.get_int("batch", 1);
    if (o.seq < 2 || o.batch < 1) throw usage_error("--seq must be at least 2 and --batch at least 1");
    o.lora.rank = a.get_int("rank", 64);
    o.lora.alpha = float(a.get_double("alpha", 16.0));
    o.lora.dropout = float(a.get_double("dropout", 0.0));
    if (a.has("targets")) o.lora.targets = qls::parse_lora_targets(*a.get("targets"));
    o.optimizer = qls::parse_optimizer_kind(a.get_or("optimizer", "paged-adamw-8bit"));
    o.gradient_checkpointing = !a.has("no-checkpointing");
    const uint64_t budget = a.has("budget-gib") ? qls::gib_to_bytes(a.get_double("budget-gib", 0)) : 0;
    const int steps = a.get_int("steps", 10), warmup = a.get_int("warmup", 3);
    if (steps < 1 || warmup < 0) throw usage_error("--steps must be at least 1 and --warmup at least 0");
    const uint64_t seed = uint64_t(a.get_int64("seed", 1234));
    const bool json = a.has("json");

    const qls::gpu_probe probe = qls::probe_gpu();
    if (!probe.available) {
        std::fprintf(stderr, "qlora bench: %s\n", probe.message.c_str());
        return 1;
    }

    if (a.has("generate")) {
        // Single-stream generation: no adapter unless --rank is given (the peer, transformers + bnb generate, runs
        // the bare NF4 model).
        const int rank = a.has("rank") ? o.lora.rank : 0;
        if (rank < 0) throw usage_error("--rank must be >= 0");
        const int prompt = a.get_int("prompt-tokens", 16), new_tokens = a.get_int("new-tokens", 128),
                  runs = a.get_int("runs", 5);
        if (prompt < 1 || new_tokens < 1 || runs < 1)
            throw usage_error("--prompt-tokens, --new-tokens and --runs must be at least 1");
        qls::model_config gc = cfg;
        if (gc.model_type.empty()) gc.model_type = "llama"; // --dims: the LLaMA layer the decoder runs
        gc.max_position_embeddings = std::max(gc.max_position_embeddings, prompt + new_tokens);
        return bench_generate(gc, shape_name, rank, o.lora.targets, prompt, new_tokens, runs, seed, probe.index, json);
    }

    nlohmann::json out;
    if (a.has("paging-check")) {
        // The same steps twice: every state resident, then under a budget 1 GiB below that run's arena, which forces
        // the optimizer states through the pager. The adapters must come out bit for bit the same.
        const int n = a.get_int("paging-check", 20);
        run_result base = run_steps(cfg, o, 0, 0, n, seed, true);
        const uint64_t lim_budget = base.mem.arena_bytes - (1ull << 30);
        run_result paged = run_steps(cfg, o, lim_budget, 0, n, seed, true);
        size_t tensors = 0, differ = 0;
        for (size_t l = 0; l < base.lora.layers.size(); ++l)
            for (size_t t = 0; t < base.lora.layers[l].size(); ++t) {
                const auto& x = base.lora.layers[l][t];
                const auto& y = paged.lora.layers[l][t];
                if (x.a.empty()) continue;
                tensors += 2;
                differ += x.a.size() != y.a.size() || std::memcmp(x.a.data(), y.a.data(), x.a.size() * 4) != 0;
                differ += x.b.size() != y.b.size() || std::memcmp(x.b.data(), y.b.data(), x.b.size() * 4) != 0;
            }
        out = {{"mode", "paging-check"},
               {"device", base.device},
               {"shape", shape_name},
               {"optimizer", qls::optimizer_kind_flag(o.optimizer)},
               {"steps", n},
               {"unpaged_arena_gib", qls::to_gib(base.mem.arena_bytes)},
               {"budget_gib", qls::to_gib(lim_budget)},
               {"paged_arena_gib", qls::to_gib(paged.mem.arena_bytes)},
               {"verdict", qls::plan_verdict_name(paged.plan.verdict)},
               {"pool_pages", paged.mem.pool_pages},
               {"total_pages", paged.mem.total_pages},
               {"paging_h2d_bytes_per_step", mean_u64(paged.h2d)},
               {"paging_d2h_bytes_per_step", mean_u64(paged.d2h)},
               {"pinned_host_gib", qls::to_gib(paged.mem.pinned_host_bytes)},
               {"unpaged_ms_median", median(base.step_ms)},
               {"paged_ms_median", median(paged.step_ms)},
               {"lora_tensors", tensors},
               {"lora_tensors_differing", differ},
               {"bit_identical", differ == 0}};
        if (json) std::printf("%s\n", out.dump().c_str());
        else std::printf("%s\n", out.dump(2).c_str());
        return differ == 0 ? 0 : 1;
    }

    run_result r = run_steps(cfg, o, budget, warmup, steps, seed, false, a.get_int("profile", 0));
    const double ms = median(r.step_ms);
    const double tps = double(o.batch) * o.seq / (ms / 1000.0);
    const uint64_t predicted_card = r.plan.card_bytes_needed();
    const uint64_t measured_card = r.mem.device_used_peak_bytes;
    out = {{"mode", "bench"},
           {"device", r.device},
           {"shape", shape_name},
           {"seq", o.seq},
           {"batch", o.batch},
           {"rank", o.lora.rank},
           {"targets", qls::lora_targets_string(o.lora.targets)},
           {"optimizer", qls::optimizer_kind_flag(o.optimizer)},
           {"checkpointing", o.gradient_checkpointing},
           {"budget_gib", budget ? qls::to_gib(budget) : 0.0},
           {"steps", steps},
           {"warmup", warmup},
           {"step_ms_median", ms},
           {"tokens_per_s_median", tps},
           {"loss_first", r.losses.front()},
           {"loss_last", r.losses.back()},
           {"arena_gib", qls::to_gib(r.mem.arena_bytes)},
           {"plan_peak_gib", qls::to_gib(r.plan.peak_bytes())},
           {"device_used_before_gib", qls::to_gib(r.mem.device_used_before_bytes)},
           {"device_used_peak_gib", qls::to_gib(measured_card)},
           {"plan_card_gib", qls::to_gib(predicted_card)},
           {"plan_card_error_pct", 100.0 * (double(predicted_card) - double(measured_card)) / double(measured_card)},
           {"verdict", qls::plan_verdict_name(r.plan.verdict)},
           {"paging_h2d_bytes_per_step", mean_u64(r.h2d)},
           {"paging_d2h_bytes_per_step", mean_u64(r.d2h)},
           {"pool_pages", r.mem.pool_pages},
           {"total_pages", r.mem.total_pages}};
    nlohmann::json cats;
    for (int c = 0; c < qls::plan_category_count; ++c)
        cats[qls::plan_category_name(qls::plan_category(c))] = qls::to_gib(r.mem.category_bytes[c]);
    out["arena_by_category_gib"] = cats;
    if (!r.profile.empty()) {
        nlohmann::json prof;
        for (const auto& [phase, ms] : r.profile) prof[phase] = ms;
        out["profile_ms_per_step"] = prof;
    }
    if (json) {
        std::printf("%s\n", out.dump().c_str());
    } else {
        std::printf("%s  %s  seq %d  batch %d  rank %d  %s%s\n", r.device.c_str(), shape_name.c_str(), o.seq, o.batch,
                    o.lora.rank, qls::optimizer_kind_flag(o.optimizer),
                    o.gradient_checkpointing ? "  checkpointing" : "");
        std::printf("  step %.1f ms (median of %d)   %.0f tokens/s   loss %.3f -> %.3f\n", ms, steps, tps,
                    r.losses.front(), r.losses.back());
        std::printf("  arena %.2f GiB (plan %.2f)   card in use %.2f GiB (plan %.2f, %+.1f%%)\n",
                    qls::to_gib(r.mem.arena_bytes), qls::to_gib(r.plan.peak_bytes()), qls::to_gib(measured_card),
                    qls::to_gib(predicted_card), out["plan_card_error_pct"].get<double>());
        if (r.mem.pool_pages)
            std::printf("  paging %.1f MiB/step in, %.1f MiB/step out (%llu of %llu pages fit the pool)\n",
                        mean_u64(r.h2d) / 1048576.0, mean_u64(r.d2h) / 1048576.0, (unsigned long long)r.mem.pool_pages,
                        (unsigned long long)r.mem.total_pages);
    }
    // The plan is the product's promise about memory: a prediction more than 10% off the card's measured use is a
    // failure of this run (exit status 1), not just a number in the report.
    const double err = out["plan_card_error_pct"].get<double>();
    if (std::fabs(err) > 10.0) {
        std::fprintf(stderr, "qlora bench: the memory plan is %+.1f%% off the measured device use (limit 10%%)\n", err);
        return 1;
    }
    return 0;
}

} // namespace qlora_cli
