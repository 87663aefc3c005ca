// Fuzz target: model.safetensors.index.json through hf_checkpoint::open, in a model folder that holds config.json and
// two real shards (tensors named as a LLaMA checkpoint names them), then every mapped tensor looked up and read.
#include "fuzz_util.h"
#include "qls/hf_checkpoint.h"
#include "qls/safetensors.h"

#include <cstdio>

namespace {

const std::string& model_dir() {
    static const std::string dir = [] {
        qls_fuzz::copy_to_scratch(std::string(QLS_TEST_MODEL_DIR) + "/config.json", "model/config.json");
        using qls::tensor;
        qls::safetensors_save(qls_fuzz::scratch_path("model/model-00001-of-00002.safetensors"),
                              {{"model.embed_tokens.weight", tensor::from_f32({0.5f, -1.f, 2.f, 0.25f}, {2, 2})},
                               {"model.layers.0.self_attn.q_proj.weight", tensor::from_f32({1.f, 2.f}, {1, 2})}});
        qls::safetensors_save(qls_fuzz::scratch_path("model/model-00002-of-00002.safetensors"),
                              {{"model.norm.weight", tensor::from_f32({1.f, 1.f}, {2})},
                               {"lm_head.weight", tensor::from_f32({3.f, 4.f, 5.f, 6.f}, {2, 2})}});
        return qls_fuzz::scratch_path("model");
    }();
    return dir;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string& dir = model_dir();
    qls_fuzz::write_scratch("model/model.safetensors.index.json", qls_fuzz::as_text(data, size));
    qls_fuzz::expect_only_user_errors([&] {
        const qls::hf_checkpoint ck = qls::hf_checkpoint::open(dir);
        for (const std::string& name : ck.tensor_names()) {
            const qls::safetensors_entry& e = ck.entry(name);
            (void)ck.file_of(name).path();
            (void)ck.read_f32(name, e.shape);
        }
    });
    return 0;
}
