// Fuzz target: run.json text through parse_train_config. An accepted configuration must also survive what a run does
// with it: written to the run's config.json (train_config_to_json) and read back on resume to the same JSON.
#include "fuzz_util.h"
#include "qls/train_config.h"

#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(qls_fuzz::as_text(data, size));
    qls_fuzz::expect_only_user_errors([&] {
        const qls::train_config c = qls::parse_train_config(text, "run.json", "/fuzz-base");
        const std::string saved = qls::train_config_to_json(c);
        std::string again;
        try {
            again = qls::train_config_to_json(qls::parse_train_config(saved, "config.json", "/fuzz-base"));
        } catch (const qls::error& e) {
            std::fprintf(stderr, "an accepted run.json does not read back after train_config_to_json: %s\n%s\n",
                         e.what(), saved.c_str());
            std::abort();
        }
        if (again != saved) {
            std::fprintf(stderr, "train_config_to_json does not round-trip:\n%s\n---\n%s\n", saved.c_str(),
                         again.c_str());
            std::abort();
        }
        (void)qls::learning_rate_at(c, 0, 100);
    });
    return 0;
}
