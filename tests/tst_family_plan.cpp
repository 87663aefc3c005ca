// The memory plan of the newer families: a Qwen2 model's q/k/v biases and Gemma 3's q/k norms, post norms, their
// activations and the sliding layers' RoPE table are device items (the CUDA arena is carved from them), counted
// exactly: the plan of each family minus the plan of the same dimensions as plain LLaMA layers is the sum of those
// tensors' bytes, worked out here by hand from the shapes.
#include "testutil.h"

#include "qls/architecture.h"
#include "qls/device.h" // defines: choose_train_device, gpu_probe
#include "qls/memory_plan.h"
#include "qls/model_config.h"
#include "qls/run_plan.h" // defines: plan_matches

#include <QtTest>

using namespace qls;

namespace {

std::string fixture_config(const std::string& family) {
    return std::string(QLS_SOURCE_DIR) + "/tests/data/families/" + family + "/config.json";
}

// The same dimensions with LLaMA's layers: no biases, no q/k or post norms, no sliding windows or local RoPE, no
// embedding scale or attention scalar.
model_config as_llama(model_config c) {
    c.model_type = "llama";
    c.qkv_bias = c.o_bias = c.mlp_bias = false;
    c.sliding_window = 0;
    c.sliding_layers.clear();
    c.has_local_rope = false;
    c.embed_scale = 1.0;
    c.query_pre_attn_scalar = 0;
    c.hidden_act = "silu";
    return c;
}

plan_settings settings(int batch, int seq) {
    plan_settings s;
    s.batch = batch;
    s.seq = seq;
    s.lora.rank = 8;
    s.optimizer = optimizer_kind::adamw_32bit;
    return s;
}

const plan_item* find_item(const memory_plan& p, plan_item_id id, lora_target t = lora_target::q) {
    for (const plan_item& it : p.items)
        if (it.key.id == id && it.key.target == t) return &it;
    return nullptr;
}

uint64_t host_bytes(const memory_plan& p, const std::string& name) {
    for (const host_item& h : p.host.items)
        if (h.name == name) return h.bytes;
    return 0;
}

} // namespace

class tst_family_plan : public QObject {
    Q_OBJECT
private slots:
    // Qwen2: one bf16 bias (out) per layer for q, k and v, none for o and the MLP; nothing else differs from LLaMA.
    void qwen2BiasesAreDeviceItems() {
        const model_config c = load_model_config(fixture_config("qwen2"));
        QVERIFY(c.qkv_bias);
        const int64_t L = c.num_layers, Q = int64_t(c.num_heads) * c.head_dim,
                      KV = int64_t(c.num_kv_heads) * c.head_dim;
        for (bool ckpt : {true, false}) {
            plan_settings s = settings(2, 32);
            s.gradient_checkpointing = ckpt;
            const memory_plan p = make_memory_plan(c, s), base = make_memory_plan(as_llama(c), s);
            for (lora_target t : {lora_target::q, lora_target::k, lora_target::v}) {
                const plan_item* it = find_item(p, plan_item_id::proj_bias, t);
                QVERIFY(it);
                QCOMPARE(it->count, L);
                QCOMPARE(it->bytes_each, uint64_t(t == lora_target::q ? Q : KV) * 2);
                QVERIFY(it->category == plan_category::frozen_weights);
                QVERIFY(it->placement == plan_placement::device);
                QCOMPARE(QString::fromStdString(it->name),
                         QString("model.layers.*.self_attn.%1_proj.bias").arg(lora_target_short_name(t)));
            }
            for (lora_target t : {lora_target::o, lora_target::gate, lora_target::up, lora_target::down})
                QVERIFY(!find_item(p, plan_item_id::proj_bias, t));
            QVERIFY(!find_item(p, plan_item_id::q_norm_weight) && !find_item(p, plan_item_id::ws_post_norm));
            QCOMPARE(p.peak_bytes() - base.peak_bytes(), uint64_t(L * (Q + 2 * KV) * 2));
            QCOMPARE(p.items.size(), base.items.size() + 3);
            // a plan is reused only for a model with the same layer tensors (the CUDA arena is carved from it)
            QVERIFY(plan_matches(p, c, s));
            QVERIFY(!plan_matches(p, as_llama(c), s) && !plan_matches(base, c, s));
            // the load streams them into the arena: the host plan does not grow with them, and holds no frozen copy
            QCOMPARE(p.host.peak_bytes, base.host.peak_bytes);
            QCOMPARE(host_bytes(p, "nf4_model") + host_bytes(p, "frozen_f32"), uint64_t(0));
        }
        // the published Qwen2.5-7B shape (`qlora plan --shape qwen2.5-7b`) counts its 28 layers' biases
        const memory_plan q7 = make_memory_plan(shape_config("qwen2.5-7b"), settings(1, 2048));
        const plan_item* qb = find_item(q7, plan_item_id::proj_bias, lora_target::q);
        QVERIFY(qb);
        QCOMPARE(qb->count, int64_t(28));
        QCOMPARE(qb->bytes_each, uint64_t(3584) * 2);
        QCOMPARE(find_item(q7, plan_item_id::proj_bias, lora_target::k)->bytes_each, uint64_t(512) * 2);
    }

    // Gemma 3: q/k norms (HS) and post norms (C) per layer; with q/k norms the projections' outputs and the norms'
    // 1/rms per (token, head) are activations, with post norms the attention and MLP outputs and their 1/rms; one
    // (B,T,C) scratch for a post norm; the sliding layers' own RoPE table (HS/2 fp32).
    void gemma3NormsAreDeviceItems() {
        const model_config c = load_model_config(fixture_config("gemma3"));
        QVERIFY(c.has_local_rope && c.any_sliding());
        const int64_t L = c.num_layers, C = c.hidden_size, HS = c.head_dim, NH = c.num_heads, NKV = c.num_kv_heads;
        const int64_t Q = NH * HS, KV = NKV * HS;
        const int B = 2, T = 32;
        const int64_t N = int64_t(B) * T;
        for (bool ckpt : {true, false}) {
            plan_settings s = settings(B, T);
            s.gradient_checkpointing = ckpt;
            const memory_plan p = make_memory_plan(c, s), base = make_memory_plan(as_llama(c), s);
            const int64_t per = ckpt ? 1 : L; // activations: one recomputed set, or one per layer
            const uint64_t frozen = uint64_t(L) * (2 * HS + 2 * C) * 2;
            const uint64_t acts = uint64_t(per) * (N * Q * 2 + N * KV * 2 + N * NH * 4 + N * NKV * 4 + // q/k norms
                                                   2 * (N * C * 2 + N * 4));                           // post norms
            const uint64_t ws = uint64_t(N * C * 2) + uint64_t(HS / 2) * 4;
            QCOMPARE(p.peak_bytes() - base.peak_bytes(), frozen + acts + ws);
            QCOMPARE(p.host.peak_bytes, base.host.peak_bytes); // streamed into the arena, not kept on the host
            const plan_item* qn = find_item(p, plan_item_id::q_norm_weight);
            QVERIFY(qn);
            QCOMPARE(QString::fromStdString(qn->name), QString("model.layers.*.self_attn.q_norm.weight"));
            QCOMPARE(qn->shape, (std::vector<int64_t>{HS}));
            const plan_item* pm = find_item(p, plan_item_id::post_mlp_norm_weight);
            QVERIFY(pm);
            QCOMPARE(QString::fromStdString(pm->name), QString("model.layers.*.post_feedforward_layernorm.weight"));
            QCOMPARE(find_item(p, plan_item_id::act_q_raw)->count, per);
            QVERIFY(find_item(p, plan_item_id::act_mlp_post_rstd)->category == plan_category::activations);
            QCOMPARE(find_item(p, plan_item_id::ws_rope_inv_freq_local)->bytes, uint64_t(HS / 2) * 4);
            QVERIFY(!find_item(p, plan_item_id::proj_bias)); // Gemma 3's config has attention_bias false
        }
        // Qwen3: the q/k norms and their activations, no post norms or local RoPE
        const model_config q3 = load_model_config(fixture_config("qwen3"));
        const memory_plan p3 = make_memory_plan(q3, settings(B, T));
        QVERIFY(find_item(p3, plan_item_id::k_norm_weight) && find_item(p3, plan_item_id::act_k_norm_rstd));
        QVERIFY(!find_item(p3, plan_item_id::post_attn_norm_weight) && !find_item(p3, plan_item_id::ws_post_norm) &&
                !find_item(p3, plan_item_id::ws_rope_inv_freq_local));
        // the published Gemma-3-12B shape counts its 48 layers' four extra norms
        const memory_plan g12 = make_memory_plan(shape_config("gemma3-12b"), settings(1, 2048));
        QCOMPARE(find_item(g12, plan_item_id::post_attn_norm_weight)->count, int64_t(48));
        QCOMPARE(find_item(g12, plan_item_id::k_norm_weight)->bytes_each, uint64_t(256) * 2);
    }

    // device.backend "auto" with a GPU: CUDA for every family it computes (the Qwen3 and Gemma 3 fixtures, head size 8),
    // the CPU with the reason when the CUDA attention cannot take the head size (the Llama 3 fixture's 4, Mistral's 6).
    void autoPicksCudaWhereItComputes() {
        gpu_probe gp;
        gp.available = true;
        gp.name = "Test GPU";
        gp.total_bytes = 80ull << 30;
        gp.free_bytes = 79ull << 30;
        for (const char* f : {"qwen3", "gemma3", "llama3", "mistral"}) {
            const model_config c = load_model_config(fixture_config(f));
            const device_choice d = choose_train_device("auto", 0, true, c.head_dim, gp);
            const bool cuda = c.head_dim % 8 == 0;
            QCOMPARE(QString::fromStdString(d.device.backend), QString(cuda ? "cuda" : "cpu"));
            QVERIFY2(cuda ? d.why.empty() : d.why.find("head size " + std::to_string(c.head_dim)) != std::string::npos,
                     d.why.c_str());
        }
    }

    // A LLaMA model's plan has none of these items (its arena is what it was).
    void llamaHasNoFamilyItems() {
        const memory_plan p = make_memory_plan(load_model_config(fixture_config("llama3")), settings(2, 32));
        for (const plan_item& it : p.items)
            QVERIFY2(it.key.id < plan_item_id::proj_bias || it.key.id == plan_item_id::cuda_context, it.name.c_str());
    }
};

QTEST_APPLESS_MAIN(tst_family_plan)
#include "tst_family_plan.moc"
