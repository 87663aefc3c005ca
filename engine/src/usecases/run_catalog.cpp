// The run catalog (qls/run_catalog.h): run directories read from their files, loosely, never throwing.
#include "qls/run_catalog.h"

#include "qls/error.h"
#include "qls/json_input.h"
#include "train/run_common.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace qls {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int64_t modified_ms_of(const fs::path& p) {
    std::error_code ec;
    const auto t = fs::last_write_time(p, ec);
    if (ec) return 0;
    const auto sys = std::chrono::file_clock::to_sys(t);
    return std::chrono::duration_cast<std::chrono::milliseconds>(sys.time_since_epoch()).count();
}

// The last complete lines of a file (reads at most its final 256 KiB).
std::vector<std::string> tail_lines(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    const std::streamoff chunk = 256 * 1024;
    const bool partial = size > chunk;
    in.seekg(partial ? size - chunk : 0);
    std::stringstream ss;
    ss << in.rdbuf();
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(ss, line)) lines.push_back(line);
    if (partial && !lines.empty()) lines.erase(lines.begin()); // cut in the middle
    return lines;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

} // namespace

run_info read_run(const std::string& run_dir) {
    run_info r;
    const fs::path dir = fs::absolute(fs::path(run_dir)).lexically_normal();
    r.dir = dir.string();
    if (r.dir.size() > 1 && r.dir.back() == '/') r.dir.pop_back();
    r.name = fs::path(r.dir).filename().string();
    fs::path cfg = fs::path(r.dir) / "config.json";
    if (!fs::exists(cfg)) cfg = fs::path(r.dir) / "run.json";
    r.config_file = cfg.string();
    std::ifstream in(cfg, std::ios::binary);
    if (!in) {
        r.problem = r.dir + ": no config.json, so this is not a run directory";
        return r;
    }
    std::stringstream text;
    text << in.rdbuf();
    try {
        const json_parse_result pr = try_parse_json(text.str());
        if (!pr.ok) throw std::runtime_error(pr.problem);
        const json& o = pr.value;
        if (!o.is_object()) throw std::runtime_error("not a JSON object");
        if (o.contains("model") && o["model"].is_string()) r.model = o["model"].get<std::string>();
        if (o.contains("data") && o["data"].is_object() && o["data"].contains("train") &&
            o["data"]["train"].is_string())
            r.train_file = o["data"]["train"].get<std::string>();
        if (o.contains("quantization") && o["quantization"].is_object() && o["quantization"].contains("nf4") &&
            o["quantization"]["nf4"].is_boolean())
            r.quantize_nf4 = o["quantization"]["nf4"].get<bool>();
        if (o.contains("device") && o["device"].is_object() && o["device"].contains("budget_gib") &&
            o["device"]["budget_gib"].is_number())
            r.budget_gib = o["device"]["budget_gib"].get<double>();
    } catch (const std::exception& e) {
        r.problem = cfg.string() + ": not valid JSON (" + e.what() + ")";
    }
    r.modified_ms = modified_ms_of(cfg);
    const fs::path metrics = fs::path(r.dir) / "metrics.jsonl";
    if (fs::exists(metrics)) r.modified_ms = std::max(r.modified_ms, modified_ms_of(metrics));
    const std::vector<std::string> lines = tail_lines(metrics);
    bool have_last = false;
    for (auto it = lines.crbegin(); it != lines.crend(); ++it) {
        if (blank(*it)) continue;
        const json_parse_result pr = try_parse_json(*it);
        const json& o = pr.value;
        if (!pr.ok || !o.is_object()) continue; // a line cut short by a crash
        // a step count as written (an integer); anything else, or out of int64's range, reads as 0
        auto integer = [&o](const char* key) -> int64_t {
            if (!o.contains(key)) return 0;
            const json& v = o[key];
            if (v.is_number_unsigned()) {
                const uint64_t u = v.get<uint64_t>();
                return u <= uint64_t(std::numeric_limits<int64_t>::max()) ? int64_t(u) : 0;
            }
            return v.is_number_integer() ? v.get<int64_t>() : 0;
        };
        if (!have_last) {
            have_last = true;
            r.last_step = integer("step");
            r.total_steps = integer("total_steps");
            if (o.contains("loss") && o["loss"].is_number()) r.last_loss = o["loss"].get<double>();
        }
        if (o.contains("eval_loss") && o["eval_loss"].is_number()) {
            r.last_eval_loss = o["eval_loss"].get<double>();
            break;
        }
    }
    const fs::path checkpoints = fs::path(r.dir) / "checkpoints";
    std::error_code ec;
    if (fs::is_directory(checkpoints, ec)) {
        for (const auto& e : fs::directory_iterator(checkpoints, ec)) {
            const int64_t step = checkpoint_step_of(e.path().filename().string());
            if (step >= 0 && e.is_directory(ec) && fs::exists(e.path() / "trainer_state.json"))
                r.checkpoint_steps.push_back(step);
        }
    }
    std::sort(r.checkpoint_steps.begin(), r.checkpoint_steps.end());
    if (!r.checkpoint_steps.empty())
        r.latest_checkpoint = (checkpoints / ("step-" + std::to_string(r.checkpoint_steps.back()))).string();
    return r;
}

std::vector<run_info> list_runs(const std::string& runs_dir) {
    std::vector<run_info> out;
    std::error_code ec;
    if (runs_dir.empty() || !fs::is_directory(runs_dir, ec)) return out;
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(runs_dir, ec))
        if (e.is_directory(ec) && (fs::exists(e.path() / "config.json") || fs::exists(e.path() / "run.json")))
            dirs.push_back(e.path()); // other folders (exports, scratch) are not runs
    std::sort(dirs.begin(), dirs.end());
    for (const fs::path& d : dirs) out.push_back(read_run(d.string()));
    return out;
}

std::string checkpoint_run_dir(const std::string& checkpoint_dir) {
    if (checkpoint_dir.empty()) return {};
    fs::path ck = fs::absolute(fs::path(checkpoint_dir)).lexically_normal();
    if (ck.filename().empty()) ck = ck.parent_path(); // a trailing '/'
    const fs::path parent = ck.parent_path();
    return parent.filename() == "checkpoints" ? parent.parent_path().string() : std::string();
}

std::string find_checkpoint(const std::string& run_dir, const std::string& choice) {
    std::string ck = choice;
    if (ck.empty()) {
        // the newest, named under run_dir as given (as latest_checkpoint does)
        const run_info r = read_run(run_dir);
        if (!r.checkpoint_steps.empty())
            ck = (fs::path(run_dir) / "checkpoints" / ("step-" + std::to_string(r.checkpoint_steps.back()))).string();
    } else if (!fs::exists(ck)) {
        ck = (fs::path(run_dir) / "checkpoints" / ck).string();
    }
    if (ck.empty() || !fs::exists(fs::path(ck) / "adapter_model.safetensors"))
        throw error(error_code::io, run_dir + ": no checkpoint with an adapter to export",
                    "train the run first (checkpoints/step-N/ holds the adapters)");
    return ck;
}

} // namespace qls
