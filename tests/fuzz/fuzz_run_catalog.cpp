// Fuzz target: a run folder as the Runs page and `qlora export`/`resume` find it: read_run, list_runs,
// find_checkpoint and read_metrics. The input holds three parts split by "\n%%%%\n": config.json, metrics.jsonl and
// the names of folders under checkpoints/ (one a line, each given a trainer_state.json).
#include "fuzz_util.h"
#include "qls/run_catalog.h"
#include "qls/trainer.h"

#include <filesystem>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    namespace fs = std::filesystem;
    const std::vector<std::string_view> parts = qls_fuzz::split_parts(qls_fuzz::as_text(data, size), 3);
    const std::string runs = qls_fuzz::scratch_path("runs");
    const std::string run = runs + "/r";
    std::error_code ec;
    fs::remove_all(runs, ec);
    qls_fuzz::write_scratch("runs/r/config.json", parts[0]);
    qls_fuzz::write_scratch("runs/r/metrics.jsonl", parts[1]);
    std::string_view names = parts[2];
    for (int made = 0; !names.empty() && made < 8; ++made) {
        const size_t nl = names.find('\n');
        const std::string name(names.substr(0, nl));
        names.remove_prefix(nl == std::string_view::npos ? names.size() : nl + 1);
        // a folder name (no separators, no NUL, not "." or ".."), as a file system holds them
        if (name.empty() || name.size() > 64 || name == "." || name == ".." ||
            name.find_first_of(std::string("/\0", 2)) != std::string::npos)
            continue;
        qls_fuzz::write_scratch("runs/r/checkpoints/" + name + "/trainer_state.json", "{}");
    }
    qls_fuzz::expect_only_user_errors([&] {
        const qls::run_info r = qls::read_run(run);
        (void)qls::list_runs(runs);
        (void)qls::checkpoint_run_dir(r.latest_checkpoint);
        (void)qls::read_metrics(run);
        (void)qls::latest_checkpoint(run);
    });
    qls_fuzz::expect_only_user_errors([&] { (void)qls::find_checkpoint(run); });
    return 0;
}
