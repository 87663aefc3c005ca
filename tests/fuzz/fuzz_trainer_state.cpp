// Fuzz target: a checkpoint's trainer_state.json through trainer::resume. Once per process a real two-step run of
// stories260K (CPU, a small plain-text dataset) is trained with a checkpoint after each step; every input replaces
// the newest checkpoint's trainer_state.json and resumes the run. With QLS_FUZZ_WRITE_SEEDS=DIR set, the harness also
// writes that run's files as seeds into DIR (make_seeds.sh).
#include "fuzz_util.h"
#include "qls/train_config.h"
#include "qls/trainer.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Trains the run once; returns its folder.
std::string make_run() {
    const std::string data = qls_fuzz::write_scratch(
        "train.txt", "Pip lived in a lighthouse. Every night he watched the lamp turn.\n\n"
                     "One day a gull came to the window. Pip gave it a crumb and they became friends.\n\n"
                     "The sea was calm and the stars were bright. Pip slept well.\n");
    const std::string run_json = qls_fuzz::write_scratch("run.json", R"({
  "name": "fz", "runs_dir": "runs", "model": ")" + std::string(QLS_TEST_MODEL_DIR) +
                                                                         R"(",
  "data": { "train": "train.txt", "format": "plain" },
  "quantization": { "nf4": false },
  "lora": { "rank": 2, "alpha": 4, "targets": ["q", "v"] },
  "optimizer": { "kind": "paged-adamw-8bit", "lr": 0.001 },
  "training": { "seq_len": 32, "micro_batch": 1, "grad_accum": 2, "max_steps": 2, "checkpoint_every": 1,
                "keep_checkpoints": 3, "seed": 11 },
  "device": { "backend": "cpu" }
})");
    (void)data;
    std::unique_ptr<qls::trainer> t = qls::trainer::create(qls::load_train_config(run_json));
    t->run();
    const std::string run = t->run_dir();
    t.reset();
    if (const char* out = std::getenv("QLS_FUZZ_WRITE_SEEDS")) {
        namespace fs = std::filesystem;
        fs::create_directories(out);
        const std::string o(out);
        std::ofstream(o + "/trainer_state.json", std::ios::binary)
            << slurp(run + "/checkpoints/step-2/trainer_state.json");
        std::ofstream(o + "/run_folder", std::ios::binary)
            << slurp(run + "/config.json") << "\n%%%%\n"
            << slurp(run + "/metrics.jsonl") << "\n%%%%\nstep-1\nstep-2\n";
        std::istringstream lines(slurp(run + "/metrics.jsonl"));
        std::string line;
        for (int i = 1; std::getline(lines, line); ++i)
            std::ofstream(o + "/metrics_line_" + std::to_string(i), std::ios::binary) << line;
        std::ofstream(o + "/run_config.json", std::ios::binary) << slurp(run + "/config.json");
    }
    return run;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string run = make_run();
    const std::string state = run + "/checkpoints/step-2/trainer_state.json";
    {
        std::ofstream out(state, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
    }
    qls_fuzz::expect_only_user_errors([&] { (void)qls::trainer::resume(run); });
    return 0;
}
