// The architecture table: every entry's names (HF, PEFT, GGUF) and shapes, checked against a real checkpoint, the
// PEFT naming and the LoRA shapes the rest of the engine uses.
#include "testutil.h"

#include "qls/architecture.h"
#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/peft.h"

#include <algorithm>
#include <set>

using namespace qls;

class TestArchitecture : public QObject {
    Q_OBJECT
private slots:
    void llamaNames() {
        const architecture& a = architecture_for("llama");
        QCOMPARE(QString::fromStdString(a.family), QString("llama"));
        QCOMPARE(&architecture_for("mistral"), &a);
        QCOMPARE(a.hf_name(base_tensor::embed), std::string("model.embed_tokens.weight"));
        QCOMPARE(a.hf_name(base_tensor::attn_norm, 3), std::string("model.layers.3.input_layernorm.weight"));
        QCOMPARE(a.hf_name(base_tensor::mlp_norm, 0), std::string("model.layers.0.post_attention_layernorm.weight"));
        QCOMPARE(a.hf_name(base_tensor::final_norm), std::string("model.norm.weight"));
        QCOMPARE(a.hf_name(base_tensor::lm_head), std::string("lm_head.weight"));
        QCOMPARE(a.hf_weight(2, lora_target::down), std::string("model.layers.2.mlp.down_proj.weight"));
        QCOMPARE(a.hf_weight_any_layer(lora_target::q), std::string("model.layers.*.self_attn.q_proj.weight"));
        QCOMPARE(a.peft_name(1, lora_target::v, true),
                 std::string("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"));
        // llama.cpp src/llama-arch.cpp LLM_ARCH_LLAMA
        QCOMPARE(a.gguf_name(base_tensor::embed), std::string("token_embd.weight"));
        QCOMPARE(a.gguf_name(base_tensor::final_norm), std::string("output_norm.weight"));
        QCOMPARE(a.gguf_name(base_tensor::lm_head), std::string("output.weight"));
        QCOMPARE(a.gguf_name(base_tensor::mlp_norm, 5), std::string("blk.5.ffn_norm.weight"));
        QCOMPARE(a.gguf_weight(5, lora_target::o), std::string("blk.5.attn_output.weight"));
        QCOMPARE(a.gguf_weight(0, lora_target::gate), std::string("blk.0.ffn_gate.weight"));
    }

    // The PEFT writer and the table name the same tensors.
    void peftNamesComeFromTheTable() {
        const architecture& a = architecture_for("llama");
        for (int l = 0; l < 3; ++l)
            for (lora_target t : a.projections)
                for (bool b : {false, true}) QCOMPARE(peft_tensor_name(l, t, b), a.peft_name(l, t, b));
    }

    // Every name the table gives for stories260K is a tensor of its checkpoint, with the table's shape.
    void namesAndShapesMatchARealCheckpoint() {
        QLS_REQUIRE_MODEL();
        const hf_checkpoint ck = hf_checkpoint::open(testutil::model_dir());
        const model_config& c = ck.config();
        const architecture& a = architecture_for(c);
        for (base_tensor t : {base_tensor::embed, base_tensor::final_norm}) {
            QVERIFY2(ck.has(a.hf_name(t)), a.hf_name(t).c_str());
            QCOMPARE(ck.read_f32(a.hf_name(t), a.base_shape(c, t)).numel(),
                     a.base_shape(c, t).size() == 2 ? int64_t(c.vocab_size) * c.hidden_size : int64_t(c.hidden_size));
        }
        for (int l = 0; l < c.num_layers; ++l) {
            for (base_tensor t : {base_tensor::attn_norm, base_tensor::mlp_norm})
                QVERIFY2(ck.has(a.hf_name(t, l)), a.hf_name(t, l).c_str());
            for (lora_target t : a.projections) {
                QVERIFY2(ck.has(a.hf_weight(l, t)), a.hf_weight(l, t).c_str());
                const auto [out, in] = a.projection_shape(c, t);
                ck.read_f32(a.hf_weight(l, t), {out, in}); // throws on a shape mismatch
                const auto [lin, lout] = lora_in_out(c, t);
                QCOMPARE(int64_t(lin), in);
                QCOMPARE(int64_t(lout), out);
            }
        }
    }

    // Adding a family must not steal another's model_type; every entry names all its tensors.
    void entriesAreComplete() {
        std::set<std::string> types;
        for (const architecture& a : architectures()) {
            QVERIFY(!a.family.empty());
            QVERIFY(!a.model_types.empty());
            QVERIFY(!a.projections.empty());
            for (const std::string& t : a.model_types) QVERIFY2(types.insert(t).second, t.c_str());
            // the global tensors and every per-layer tensor the family has are named; the ones it lacks are not
            std::vector<base_tensor> named = {base_tensor::embed, base_tensor::final_norm, base_tensor::lm_head};
            for (base_tensor t : a.layer_tensors()) named.push_back(t);
            for (int i = 0; i < k_base_tensor_count; ++i) {
                const bool has = std::find(named.begin(), named.end(), base_tensor(i)) != named.end();
                QCOMPARE(!a.hf_base[size_t(i)].empty(), has);
                QCOMPARE(!a.gguf_base[size_t(i)].empty(), has);
            }
            for (lora_target t : a.projections) {
                QVERIFY(!a.hf_projection[size_t(t)].empty());
                QVERIFY(!a.gguf_projection[size_t(t)].empty());
            }
        }
        QCOMPARE(QString::fromStdString(supported_model_types()), QString("llama, mistral, qwen2, qwen3, gemma3_text"));
    }

    // A family whose layers the LLaMA code does not compute is refused by name, not computed wrongly.
    void layersTheCodeLacksAreRefused() {
        architecture a = architecture_for("llama");
        require_llama_layers(a, "the CPU training pass"); // LLaMA itself passes
        a.family = "biased";
        a.projection_bias = true;
        try {
            require_llama_layers(a, "generation");
            QFAIL("a family with biases must be refused");
        } catch (const error& e) {
            QCOMPARE(int(e.code()), int(error_code::unsupported));
            const std::string m = e.what();
            QVERIFY2(m.find("generation") != std::string::npos && m.find("biased") != std::string::npos, m.c_str());
        }
    }

    void unknownTypeIsRefusedWithTheSupportedOnes() {
        QVERIFY(find_architecture("gpt2") == nullptr);
        try {
            architecture_for("gpt2");
            QFAIL("gpt2 must be refused");
        } catch (const error& e) {
            QCOMPARE(int(e.code()), int(error_code::unsupported));
            const std::string m = e.what();
            QVERIFY2(m.find("gpt2") != std::string::npos &&
                         m.find("llama, mistral, qwen2, qwen3, gemma3_text") != std::string::npos,
                     m.c_str());
        }
    }
};

QTEST_GUILESS_MAIN(TestArchitecture)
#include "tst_architecture.moc"
