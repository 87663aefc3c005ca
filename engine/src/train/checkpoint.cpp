// A run's checkpoints: listing them, writing one atomically (adapter, optimizer state, trainer state) and restoring one.
#include "qls/trainer.h"

#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/json_input.h"
#include "qls/peft.h"
#include "qls/safetensors.h"
#include "train/run_common.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>

namespace qls {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int k_checkpoint_format = 1;
const char* const k_incomplete_hint = "the run directory is incomplete";

std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const std::string& run_dir) {
    std::vector<std::pair<int64_t, fs::path>> v;
    const fs::path dir = fs::path(run_dir) / "checkpoints";
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return v;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const int64_t s = checkpoint_step_of(e.path().filename().string());
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
    // a checkpoint is a state to resume from: NaN/Inf adapters are never written as one
    const std::string bad = first_nonfinite_adapter();
    if (!bad.empty())
        throw error(error_code::internal,
                    "step " + std::to_string(step_) + ": adapter " + bad +
                        " holds NaN or infinite values; no checkpoint was written",
                    "the run diverged: resume from the last good checkpoint with a lower optimizer.lr");
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

namespace {

// trainer_state.json of a checkpoint, read and checked against the run before anything is changed.
struct saved_state {
    int64_t step = 0, tokens_total = 0;
    batcher_position pos;
};

[[noreturn]] void bad_field(const fs::path& file, const std::string& field, const std::string& why,
                            const fs::path& ck) {
    throw error(error_code::format, file.string() + ": field '" + field + "' " + why,
                "delete the checkpoint folder " + ck.string() + " to resume from the one before it");
}

const json& field_of(const json& obj, const char* name, const std::string& path, const fs::path& file,
                     const fs::path& ck) {
    if (!obj.is_object() || !obj.contains(name)) bad_field(file, path, "is missing", ck);
    return obj.at(name);
}

int64_t int_field(const json& obj, const char* name, const std::string& path, int64_t lo, int64_t hi,
                  const fs::path& file, const fs::path& ck) {
    const json& v = field_of(obj, name, path, file, ck);
    if (!v.is_number_integer()) bad_field(file, path, "is " + v.dump() + ", not an integer", ck);
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
        bad_field(file, path, "is " + v.dump() + ", out of range", ck);
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi)
        bad_field(file, path, "is " + std::to_string(x) + ", outside " + std::to_string(lo) + ".." + std::to_string(hi),
                  ck);
    return x;
}

uint64_t uint_field(const json& obj, const char* name, const std::string& path, const fs::path& file,
                    const fs::path& ck) {
    const json& v = field_of(obj, name, path, file, ck);
    if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
        bad_field(file, path, "is " + v.dump() + ", not a non-negative integer", ck);
    return v.get<uint64_t>();
}

// Every float of the optimizer state must be finite; second moments and absmax scales are never negative.
void check_optimizer_tensor(const std::string& name, const tensor& t, const fs::path& file, const fs::path& ck) {
    auto ends_with = [&](const char* suffix) {
        const std::string s(suffix);
        return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (name == "optimizer.step" || t.type() != dtype::f32) return;
    const bool non_negative = ends_with(".exp_avg_sq") || ends_with(".absmax1") || ends_with(".absmax2");
    const float* v = t.data<float>();
    for (size_t i = 0, n = size_t(t.numel()); i < n; ++i)
        if (!std::isfinite(v[i]) || (non_negative && v[i] < 0))
            throw error(error_code::format,
                        file.string() + ": tensor '" + name + "' holds " +
                            (std::isnan(v[i])   ? "NaN"
                             : std::isinf(v[i]) ? "an infinite value"
                                                : "a negative value") +
                            " at index " + std::to_string(i),
                        "the optimizer state is damaged: delete the checkpoint folder " + ck.string() +
                            " to resume from the one before it");
}

} // namespace

// Step, data position, adapters and optimizer state of checkpoint `ckpt_dir`; metrics.jsonl cut back to that step.
// Everything is read and checked first; the trainer and the run directory change only once all of it is valid.
void trainer::restore(const std::string& ckpt_dir) {
    const fs::path ck(ckpt_dir);
    const fs::path file = ck / "trainer_state.json";
    const std::string delete_hint = "delete the checkpoint folder " + ck.string() + " to resume from the one before it";
    const json st = parse_json_input(read_file_text(file, k_incomplete_hint), file.string(), delete_hint);
    if (!st.is_object()) throw error(error_code::format, file.string() + ": not a JSON object", delete_hint);

    // ---- trainer_state.json, field by field, against this run
    const json& fmt = field_of(st, "format", "format", file, ck);
    if (!fmt.is_number_integer() || fmt.get<int64_t>() != k_checkpoint_format)
        throw error(error_code::unsupported,
                    file.string() + ": field 'format' is " + fmt.dump() + "; this build reads checkpoint format " +
                        std::to_string(k_checkpoint_format),
                    delete_hint);
    saved_state s;
    s.step = int_field(st, "step", "step", 0, total_steps_, file, ck);
    if (const int64_t dir_step = checkpoint_step_of(ck.filename().string()); dir_step >= 0 && dir_step != s.step)
        bad_field(file, "step", "is " + std::to_string(s.step) + " but the folder is " + ck.filename().string(), ck);
    int_field(st, "total_steps", "total_steps", 1, INT64_MAX, file, ck);
    const int64_t tokens_per_step = int64_t(cfg_.grad_accum) * cfg_.micro_batch * cfg_.seq_len;
    s.tokens_total = int_field(st, "tokens_total", "tokens_total", 0, s.step * tokens_per_step, file, ck);
    const uint64_t seed = uint_field(st, "seed", "seed", file, ck);
    if (seed != cfg_.seed)
        bad_field(file, "seed", "is " + std::to_string(seed) + " but the run's seed is " + std::to_string(cfg_.seed),
                  ck);
    const json& bj = field_of(st, "batcher", "batcher", file, ck);
    if (!bj.is_object()) bad_field(file, "batcher", "is " + bj.dump() + ", not an object", ck);
    const uint64_t per_epoch = batches_->batches_per_epoch();
    s.pos.epoch = uint_field(bj, "epoch", "batcher.epoch", file, ck);
    s.pos.cursor = uint_field(bj, "cursor", "batcher.cursor", file, ck);
    s.pos.seed = uint_field(bj, "seed", "batcher.seed", file, ck);
    if (s.pos.cursor >= per_epoch)
        bad_field(file, "batcher.cursor",
                  "is " + std::to_string(s.pos.cursor) + ", past the " + std::to_string(per_epoch) +
                      " batches of an epoch",
                  ck);
    if (s.pos.seed != batches_->options().seed)
        bad_field(file, "batcher.seed",
                  "is " + std::to_string(s.pos.seed) + " but the run shuffles with seed " +
                      std::to_string(batches_->options().seed),
                  ck);
    // every step consumes grad_accum batches from the start of epoch 0
    const uint64_t consumed = uint64_t(s.step) * uint64_t(cfg_.grad_accum);
    if (s.pos.epoch != consumed / per_epoch || s.pos.cursor != consumed % per_epoch)
        bad_field(file, "batcher",
                  "is epoch " + std::to_string(s.pos.epoch) + ", cursor " + std::to_string(s.pos.cursor) +
                      " but step " + std::to_string(s.step) + " ends at epoch " + std::to_string(consumed / per_epoch) +
                      ", cursor " + std::to_string(consumed % per_epoch),
                  ck);

    // ---- adapters: the run's shapes, finite values
    lora_weights<float> saved = load_peft(ck.string(), model_.config);
    const fs::path adapter_file = ck / "adapter_model.safetensors";
    for (int l = 0; l < model_.config.num_layers; ++l)
        for (lora_target tg : cfg_.lora.targets) {
            const auto& dst = backend_->adapters().at(l, tg);
            const auto& src = saved.at(l, tg);
            if (src.a.size() != dst.a.size() || src.b.size() != dst.b.size())
                throw error(error_code::format, ck.string() + ": adapter shapes differ from the run's configuration",
                            delete_hint);
            for (bool is_b : {false, true})
                for (float x : is_b ? src.b : src.a)
                    if (!std::isfinite(x))
                        throw error(error_code::format,
                                    adapter_file.string() + ": tensor '" + peft_tensor_name(l, tg, is_b) +
                                        "' holds NaN or infinite values",
                                    delete_hint);
        }

    // ---- optimizer state: finite, non-negative second moments and scales, the same step count
    const fs::path optim_file = ck / "optimizer.safetensors";
    safetensors_file of = safetensors_file::open(optim_file.string());
    std::vector<std::pair<std::string, tensor>> state;
    for (const auto& e : of.entries()) state.emplace_back(e.name, of.read(e.name));
    for (const auto& [name, t] : state) {
        check_optimizer_tensor(name, t, optim_file, ck);
        if (name == "optimizer.step" && t.type() == dtype::i64 && t.numel() == 1 && t.data<int64_t>()[0] != s.step)
            throw error(error_code::format,
                        optim_file.string() + ": tensor 'optimizer.step' is " + std::to_string(t.data<int64_t>()[0]) +
                            " but trainer_state.json's step is " + std::to_string(s.step),
                        delete_hint);
    }

    // ---- all valid: apply (the backend's own checks name a tensor of a shape or dtype it does not take)
    backend_->set_adapters(saved);
    backend_->load_optimizer_state(state);
    batches_->set_position(s.pos);
    step_ = s.step;
    tokens_total_ = s.tokens_total;

    // metrics.jsonl: drop lines after the checkpoint (steps that will be trained again) and any damaged tail
    std::string kept;
    for (const step_stats& m : read_metrics(run_dir_))
        if (m.step <= step_) kept += step_stats_to_json(m) + "\n";
    write_file_atomic(fs::path(run_dir_) / "metrics.jsonl", kept);
    // leftovers of an interrupted checkpoint write
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::path(run_dir_) / "checkpoints", ec))
        if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path(), ec);
    log("resumed " + run_dir_ + " at step " + std::to_string(step_) + " from " + ck.filename().string());
}

} // namespace qls
