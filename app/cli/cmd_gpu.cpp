// qlora check-gpu / devices: what GPU this process sees, and every CUDA op against the CPU reference.
#include "args.h"
#include "commands.h"

#include "qls/device.h"     // defines: probe_gpu
#include "qls/gpu_checks.h" // defines: run_gpu_op_checks, run_gpu_finetune_check (library qls_gpu_checks)

#include <chrono>
#include <cstdio>
#include <filesystem>

namespace qlora_cli {

int cmd_devices(int argc, char** argv) {
    args a(argc, argv, 2, {}, {});
    const qls::gpu_probe p = qls::probe_gpu();
    std::printf("%s\n", p.message.c_str());
    return 0;
}

int cmd_check_gpu(int argc, char** argv) {
    args a(argc, argv, 2, {"seed", "model", "text", "finetune-steps", "families"}, {"no-families"});
    if (a.has("model") != a.has("text"))
        throw usage_error("--model DIR and --text FILE go together: the fine-tune check trains DIR on windows of FILE");
    const uint64_t seed = a.has("seed") ? uint64_t(a.get_int64("seed", 0))
                                        : uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
    const qls::gpu_probe p = qls::probe_gpu();
    std::printf("%s\n", p.message.c_str());
    if (!p.available) return 1;
    std::printf("inputs drawn with seed %llu\n\n", (unsigned long long)seed);
    auto rows = qls::run_gpu_op_checks(seed);
    for (auto& r : qls::run_gpu_decode_op_checks(seed + 1)) rows.push_back(r);
    if (a.has("model")) {
        for (auto& r : qls::run_gpu_generate_check(*a.get("model"), seed)) rows.push_back(r);
        const int steps = a.get_int("finetune-steps", 20);
        if (steps < 1) throw usage_error("--finetune-steps must be at least 1");
        for (auto& r : qls::run_gpu_finetune_check(*a.get("model"), *a.get("text"), steps, seed)) rows.push_back(r);
    }
    // the newer families (tests/data/families of the source tree unless --families says otherwise)
    if (!a.has("no-families")) {
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
