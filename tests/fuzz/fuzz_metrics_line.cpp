// Fuzz target: one metrics.jsonl line through step_stats_from_json (the Monitor and Runs pages redraw runs from
// these). An accepted line must read back unchanged after step_stats_to_json, as a resumed run rewrites them.
#include "fuzz_util.h"
#include "qls/telemetry.h"

#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string line(qls_fuzz::as_text(data, size));
    qls_fuzz::expect_only_user_errors([&] {
        const qls::step_stats s = qls::step_stats_from_json(line);
        const std::string saved = qls::step_stats_to_json(s);
        std::string again;
        try {
            again = qls::step_stats_to_json(qls::step_stats_from_json(saved));
        } catch (const qls::error& e) {
            std::fprintf(stderr, "an accepted metrics line does not read back: %s\n%s\n", e.what(), saved.c_str());
            std::abort();
        }
        if (again != saved) {
            std::fprintf(stderr, "step_stats_to_json does not round-trip:\n%s\n---\n%s\n", saved.c_str(),
                         again.c_str());
            std::abort();
        }
    });
    return 0;
}
