// Fuzz target: the quant-state JSON of a bitsandbytes 4-bit checkpoint (weight.quant_state.bitsandbytes__nf4, a U8
// tensor) through read_bnb_nf4 and nf4_dequantize. The other tensors are bitsandbytes' own (case b, 64 x 128, of
// tests/data/bnb/nf4.safetensors); byte 0 picks the plain or the double-quantized state dict, the rest is the JSON.
#include "fuzz_util.h"
#include "qls/hf_checkpoint.h"
#include "qls/quant.h"
#include "qls/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace {

using state_dict = std::vector<std::pair<std::string, qls::tensor>>;
const std::string kWeight = "model.layers.0.mlp.down_proj.weight";

// bnb's state dict "sd.b.<mode>.weight*" renamed to kWeight*, without its quant state.
state_dict fixture(bool dq) {
    const qls::safetensors_file f = qls::safetensors_file::open(std::string(QLS_SOURCE_DIR) +
                                                                "/tests/data/bnb/nf4.safetensors");
    const std::string prefix = std::string("sd.b.") + (dq ? "dq" : "plain") + ".weight";
    state_dict out;
    for (const auto& e : f.entries())
        if (e.name.rfind(prefix, 0) == 0 && e.name.find(".quant_state.") == std::string::npos)
            out.emplace_back(kWeight + e.name.substr(prefix.size()), f.read(e.name));
    out.emplace_back("model.norm.weight", qls::tensor::from_f32(std::vector<float>(64, 1.0f), {64}));
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const state_dict plain = fixture(false), dq = fixture(true);
    static const bool staged = [] {
        const nlohmann::json c = {{"model_type", "llama"},  {"hidden_size", 64},        {"intermediate_size", 128},
                                  {"num_hidden_layers", 1}, {"num_attention_heads", 1}, {"head_dim", 2},
                                  {"vocab_size", 16},       {"rms_norm_eps", 1e-5},     {"rope_theta", 10000.0}};
        qls_fuzz::write_scratch("model/config.json", c.dump(2));
        return true;
    }();
    (void)staged;
    if (size < 1) return 0;
    state_dict sd = (data[0] & 1) ? dq : plain;
    qls::tensor state(qls::dtype::u8, {int64_t(size - 1)});
    if (size > 1) std::memcpy(state.raw(), data + 1, size - 1);
    sd.emplace_back(kWeight + ".quant_state.bitsandbytes__nf4", std::move(state));
    qls::safetensors_save(qls_fuzz::scratch_path("model/model.safetensors"), sd);
    qls_fuzz::expect_only_user_errors([&] {
        const qls::hf_checkpoint ck = qls::hf_checkpoint::open(qls_fuzz::scratch_path("model"));
        const qls::nf4_tensor t = qls::read_bnb_nf4(ck, kWeight, 64, 128);
        std::vector<float> w(size_t(t.numel()));
        qls::nf4_dequantize(t, w.data());
    });
    return 0;
}
