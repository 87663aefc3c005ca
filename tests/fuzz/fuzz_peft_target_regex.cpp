// Fuzz target: the regular expression of a PEFT adapter's string target_modules (PCRE2 with match, depth and length
// limits), matched by load_peft against every module key of stories260K. The input is the pattern; byte 0 picks
// target_modules or exclude_modules. Everything else is the real adapter of tests/data/peft/reference_adapter.
#include "fuzz_util.h"
#include "qls/model_config.h"
#include "qls/peft.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const qls::model_config cfg = qls::load_model_config(std::string(QLS_TEST_MODEL_DIR) + "/config.json");
    static const nlohmann::json base = [] {
        const std::string dir = std::string(QLS_SOURCE_DIR) + "/tests/data/peft/reference_adapter/";
        qls_fuzz::copy_to_scratch(dir + "adapter_model.safetensors", "adapter/adapter_model.safetensors");
        std::ifstream in(dir + "adapter_config.json");
        std::stringstream ss;
        ss << in.rdbuf();
        return nlohmann::json::parse(ss.str());
    }();
    if (size < 1) return 0;
    const std::string pattern(qls_fuzz::as_text(data + 1, size - 1));
    nlohmann::json c = base;
    if (data[0] & 1) c["exclude_modules"] = pattern;
    else c["target_modules"] = pattern;
    // a pattern that is not UTF-8 is written with U+FFFD in its place (JSON text is UTF-8)
    qls_fuzz::write_scratch("adapter/adapter_config.json",
                            c.dump(1, ' ', false, nlohmann::json::error_handler_t::replace));
    qls_fuzz::expect_only_user_errors([&] { (void)qls::load_peft(qls_fuzz::scratch_path("adapter"), cfg); });
    return 0;
}
