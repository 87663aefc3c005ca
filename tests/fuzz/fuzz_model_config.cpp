// Fuzz target: config.json text through parse_model_config, then what the loader derives from an accepted config
// (parameter count, RoPE frequencies).
#include "fuzz_util.h"
#include "qls/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    qls_fuzz::expect_only_user_errors([&] {
        const qls::model_config c = qls::parse_model_config(qls_fuzz::as_text(data, size), "config.json");
        (void)c.parameter_count();
        (void)qls::rope_inv_freq(c);
    });
    return 0;
}
