// The one plan path (qls/run_plan.h): a run's settings on its device → its memory_plan, counted.
#include "qls/run_plan.h"

#include <atomic>

namespace qls {

namespace {
std::atomic<uint64_t> g_plan_runs{0};
} // namespace

plan_settings plan_settings_on(plan_settings s, const compute_device& d) {
    s.backend = d.backend == "cuda" ? "cuda" : "cpu";
    if (s.host.total_bytes == 0) s.host = read_host_memory(); // the settings' own (a test's) wins
    if (d.backend == "cuda") {
        s.card_bytes = d.total_bytes;
        s.free_bytes = d.free_bytes;
    } else {
        // the CPU backend has no device memory to plan against: only a budget of one's own limits it
        s.card_bytes = 0;
        s.free_bytes = 0;
    }
    return s;
}

plan_settings plan_settings_for(const train_config& c, const compute_device& d) {
    plan_settings s;
    s.lora = c.lora;
    s.batch = c.micro_batch;
    s.seq = c.seq_len;
    s.optimizer = c.optimizer;
    s.gradient_checkpointing = c.gradient_checkpointing;
    s.budget_bytes = c.budget_gib > 0 ? gib_to_bytes(c.budget_gib) : 0;
    s.page_size = c.page_size;
    s.quantize_nf4 = c.quantize_nf4;
    s.offload = parse_checkpoint_offload(c.checkpoint_offload);
    return plan_settings_on(s, d);
}

memory_plan plan_run(const model_config& model, const plan_settings& s) {
    ++g_plan_runs;
    return make_memory_plan(model, s);
}

uint64_t plan_run_count() { return g_plan_runs.load(); }

namespace {
// The family and the config fields that add plan items (biases, q/k and post norms, the sliding layers' RoPE).
bool same_layer_tensors(const model_config& a, const model_config& m) {
    return a.model_type == m.model_type && a.qkv_bias == m.qkv_bias && a.o_bias == m.o_bias &&
           a.mlp_bias == m.mlp_bias && a.has_local_rope == m.has_local_rope && a.any_sliding() == m.any_sliding();
}
} // namespace

bool plan_matches(const memory_plan& p, const model_config& m, const plan_settings& s) {
    const model_config& a = p.config;
    const plan_settings& b = p.settings;
    return a.hidden_size == m.hidden_size && a.intermediate_size == m.intermediate_size &&
           a.num_layers == m.num_layers && a.num_heads == m.num_heads && a.num_kv_heads == m.num_kv_heads &&
           a.head_dim == m.head_dim && a.vocab_size == m.vocab_size && a.tie_word_embeddings == m.tie_word_embeddings &&
           same_layer_tensors(a, m) && b.lora.rank == s.lora.rank && b.lora.alpha == s.lora.alpha &&
           b.lora.dropout == s.lora.dropout && b.lora.use_rslora == s.lora.use_rslora &&
           b.lora.targets == s.lora.targets && b.batch == s.batch && b.seq == s.seq && b.optimizer == s.optimizer &&
           b.gradient_checkpointing == s.gradient_checkpointing && b.budget_bytes == s.budget_bytes &&
           b.card_bytes == s.card_bytes && b.page_size == s.page_size && b.backend == s.backend &&
           b.quantize_nf4 == s.quantize_nf4 && b.offload == s.offload;
}

} // namespace qls
