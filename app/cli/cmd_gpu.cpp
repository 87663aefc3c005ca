// qlora check-gpu / devices: what GPU this process sees, and every CUDA op against the CPU reference.
#include "args.h"
#include "commands.h"

#include "qls/device.h"     // defines: probe_gpu
#include "qls/gpu_checks.h" // defines: run_gpu_op_checks, run_gpu_finetune_check (library qls_gpu_checks)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace qlora_cli {

int cmd_devices(int argc, char** argv) {
    args a(argc, argv, 2, {}, {});
    const qls::gpu_probe p = qls::probe_gpu();
    std::printf("%s\n", p.message.c_str());
    return 0;
}

namespace {

// The parts of check-gpu, in the order they run; --only takes a comma-separated list of them (compute-sanitizer runs
// take one part a call: every kernel launch under memcheck costs tens of times its normal time).
constexpr const char* k_check_parts[] = {"ops", "decode", "generate", "finetune", "families"};

std::vector<std::string> checked_parts(const std::optional<std::string>& only) {
    std::vector<std::string> all(std::begin(k_check_parts), std::end(k_check_parts));
    if (!only) return all;
    std::vector<std::string> parts;
    size_t pos = 0;
    while (pos <= only->size()) {
        const size_t comma = only->find(',', pos);
        const std::string p = only->substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        if (std::find(all.begin(), all.end(), p) == all.end())
            throw usage_error("--only: '" + p + "' is not a part of check-gpu",
                              "use a comma-separated list of ops, decode, generate, finetune, families");
        if (std::find(parts.begin(), parts.end(), p) == parts.end()) parts.push_back(p);
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return parts;
}

} // namespace

int cmd_check_gpu(int argc, char** argv) {
    args a(argc, argv, 2, {"seed", "model", "text", "finetune-steps", "families", "only"}, {"no-families"});
    if (a.has("model") != a.has("text"))
        throw usage_error("--model DIR and --text FILE go together: the fine-tune check trains DIR on windows of FILE");
    const std::vector<std::string> parts = checked_parts(a.get("only"));
    auto wanted = [&parts](const char* p) { return std::find(parts.begin(), parts.end(), p) != parts.end(); };
    if ((wanted("generate") || wanted("finetune")) && a.has("only") && !a.has("model"))
        throw usage_error("--only generate and finetune check a model", "pass --model DIR --text FILE as well");
    const int steps = a.get_int("finetune-steps", 20);
    if (steps < 1) throw usage_error("--finetune-steps must be at least 1");
    const uint64_t seed = a.has("seed") ? uint64_t(a.get_int64("seed", 0))
                                        : uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
    const qls::gpu_probe p = qls::probe_gpu();
    std::printf("%s\n", p.message.c_str());
    if (!p.available) return 1;
    std::printf("inputs drawn with seed %llu\n\n", (unsigned long long)seed);
    std::vector<qls::gpu_check_row> rows;
    if (wanted("ops")) rows = qls::run_gpu_op_checks(seed);
    if (wanted("decode"))
        for (auto& r : qls::run_gpu_decode_op_checks(seed + 1)) rows.push_back(r);
    if (a.has("model")) {
        if (wanted("generate"))
            for (auto& r : qls::run_gpu_generate_check(*a.get("model"), seed)) rows.push_back(r);
        if (wanted("finetune"))
            for (auto& r : qls::run_gpu_finetune_check(*a.get("model"), *a.get("text"), steps, seed))
                rows.push_back(r);
    }
    // the newer families (tests/data/families of the source tree unless --families says otherwise)
    if (wanted("families") && !a.has("no-families")) {
        const std::string dir = a.has("families") ? *a.get("families") : qls::default_families_dir();
        if (dir.empty() || (!a.has("families") && !std::filesystem::is_directory(dir)))
            std::printf("family rows skipped: no family models at '%s' (pass --families DIR)\n\n", dir.c_str());
        else
            for (auto& r : qls::run_gpu_family_checks(dir, 5, seed)) rows.push_back(r);
    }
    std::printf("%-18s %-26s %12s %12s %10s  %s\n", "op", "shape", "max |err|", "rel err", "tolerance", "result");
    int failed = 0;
    for (const auto& r : rows) {
        std::printf("%-18s %-26s %12.3e %12.3e %10.3e  %s\n", r.op.c_str(), r.shape.c_str(), r.max_abs_error,
                    r.max_rel_error, r.tolerance, r.passed ? "ok" : "FAILED");
        failed += !r.passed;
    }
    std::printf("\n%zu checks, %d failed\n", rows.size(), failed);
    return failed ? 1 : 0;
}

} // namespace qlora_cli
