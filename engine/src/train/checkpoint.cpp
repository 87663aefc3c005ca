// A run's checkpoints: listing them, writing one atomically (adapter, optimizer state, trainer state) and restoring one.
#include "qls/trainer.h"

#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/peft.h"
#include "qls/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace qls {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int k_checkpoint_format = 1;
const char* const k_incomplete_hint = "the run directory is incomplete";

int64_t checkpoint_step(const fs::path& dir) {
    const std::string n = dir.filename().string();
    if (n.rfind("step-", 0) != 0) return -1;
    try {
        size_t used = 0;
        long long v = std::stoll(n.substr(5), &used);
        return used == n.size() - 5 ? v : -1;
    } catch (...) {
        return -1;
    }
}

std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const std::string& run_dir) {
    std::vector<std::pair<int64_t, fs::path>> v;
    const fs::path dir = fs::path(run_dir) / "checkpoints";
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return v;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        int64_t s = checkpoint_step(e.path());
        if (s >= 0 && fs::exists(e.path() / "trainer_state.json")) v.emplace_back(s, e.path());
    }
    std::sort(v.begin(), v.end());
    return v;
}

} // namespace

std::string latest_checkpoint(const std::string& run_dir) {
    auto v = list_checkpoints(run_dir);
    return v.empty() ? std::string() : v.back().second.string();
}

std::vector<step_stats> read_metrics(const std::string& run_dir) {
    std::vector<step_stats> out;
    std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        try {
            out.push_back(step_stats_from_json(line));
        } catch (const error&) {
            // a line cut short by a crash: skipped
        }
    }
    return out;
}

std::string trainer::save_checkpoint() {
    const fs::path dir = fs::path(run_dir_) / "checkpoints";
    const std::string name = "step-" + std::to_string(step_);
    const fs::path tmp = dir / (".tmp-" + name);
    const fs::path final_dir = dir / name;
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) throw error(error_code::io, tmp.string() + ": cannot create: " + ec.message(), "check free disk space");
    auto written = [&](const fs::path& p) {
        if (checkpoint_write_hook) checkpoint_write_hook(p.string());
    };
    export_peft(tmp.string(), backend_->adapters(), model_.config, cfg_.model);
    written(tmp / "adapter_model.safetensors");
    safetensors_save((tmp / "optimizer.safetensors").string(), backend_->optimizer_state());
    written(tmp / "optimizer.safetensors");
    const batcher_position pos = batches_->position();
    json st = {{"format", k_checkpoint_format},
               {"step", step_},
               {"total_steps", total_steps_},
               {"tokens_total", tokens_total_},
               {"seed", cfg_.seed},
               {"batcher", {{"epoch", pos.epoch}, {"cursor", pos.cursor}, {"seed", pos.seed}}}};
    write_file_atomic(tmp / "trainer_state.json", st.dump(2));
    written(tmp / "trainer_state.json");
    // step-N exists when a stopped run is saved again at the same step: it is replaced only once the new one is whole
    publish_dir_atomic(tmp, final_dir);
    auto all = list_checkpoints(run_dir_);
    for (size_t i = 0; i + size_t(cfg_.keep_checkpoints) < all.size(); ++i) fs::remove_all(all[i].second, ec);
    log("checkpoint " + final_dir.string());
    return final_dir.string();
}

// Step, data position, adapters and optimizer state of checkpoint `ckpt_dir`; metrics.jsonl cut back to that step.
void trainer::restore(const std::string& ckpt_dir) {
    const fs::path ck(ckpt_dir);
    json st;
    try {
        st = json::parse(read_file_text(ck / "trainer_state.json", k_incomplete_hint));
    } catch (const json::exception& e) {
        throw error(error_code::format, (ck / "trainer_state.json").string() + ": not valid JSON: " + e.what(),
                    "delete this checkpoint directory to resume from the one before it");
    }
    try {
        if (st.at("format").get<int>() != k_checkpoint_format)
            throw error(error_code::unsupported, (ck / "trainer_state.json").string() + ": unknown checkpoint format");
        step_ = st.at("step").get<int64_t>();
        tokens_total_ = st.at("tokens_total").get<int64_t>();
        batcher_position pos;
        pos.epoch = st.at("batcher").at("epoch").get<uint64_t>();
        pos.cursor = st.at("batcher").at("cursor").get<uint64_t>();
        pos.seed = st.at("batcher").at("seed").get<uint64_t>();
        batches_->set_position(pos);
    } catch (const json::exception& e) {
        throw error(error_code::format,
                    (ck / "trainer_state.json").string() + ": missing or mistyped field: " + e.what(),
                    "delete this checkpoint directory to resume from the one before it");
    }
    // adapters: the saved values replace the initial ones (shapes must be the run's)
    lora_weights<float> saved = load_peft(ck.string(), model_.config);
    for (int l = 0; l < model_.config.num_layers; ++l)
        for (lora_target tg : cfg_.lora.targets) {
            const auto& dst = backend_->adapters().at(l, tg);
            const auto& src = saved.at(l, tg);
            if (src.a.size() != dst.a.size() || src.b.size() != dst.b.size())
                throw error(error_code::format, ck.string() + ": adapter shapes differ from the run's configuration");
        }
    backend_->set_adapters(saved);
    safetensors_file of = safetensors_file::open((ck / "optimizer.safetensors").string());
    std::vector<std::pair<std::string, tensor>> state;
    for (const auto& e : of.entries()) state.emplace_back(e.name, of.read(e.name));
    backend_->load_optimizer_state(state);

    // metrics.jsonl: drop lines after the checkpoint (steps that will be trained again) and any damaged tail
    std::string kept;
    for (const step_stats& s : read_metrics(run_dir_))
        if (s.step <= step_) kept += step_stats_to_json(s) + "\n";
    write_file_atomic(fs::path(run_dir_) / "metrics.jsonl", kept);
    // leftovers of an interrupted checkpoint write
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::path(run_dir_) / "checkpoints", ec))
        if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path(), ec);
    log("resumed " + run_dir_ + " at step " + std::to_string(step_) + " from " + ck.filename().string());
}

} // namespace qls
