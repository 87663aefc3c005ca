// Fuzz target: adapter_config.json through load_peft (PEFT's target_modules list or regex, layers_to_transform,
// exclude_modules, rank and alpha, the unsupported-feature checks), beside a real adapter_model.safetensors of
// stories260K (tests/data/peft/reference_adapter).
#include "fuzz_util.h"
#include "qls/model_config.h"
#include "qls/peft.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const qls::model_config cfg = qls::load_model_config(std::string(QLS_TEST_MODEL_DIR) + "/config.json");
    static const bool staged = [] {
        qls_fuzz::copy_to_scratch(std::string(QLS_SOURCE_DIR) +
                                      "/tests/data/peft/reference_adapter/adapter_model.safetensors",
                                  "adapter/adapter_model.safetensors");
        return true;
    }();
    (void)staged;
    qls_fuzz::write_scratch("adapter/adapter_config.json", qls_fuzz::as_text(data, size));
    qls_fuzz::expect_only_user_errors([&] { (void)qls::load_peft(qls_fuzz::scratch_path("adapter"), cfg); });
    return 0;
}
