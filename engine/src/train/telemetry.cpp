// step_stats ⇄ one JSON line of metrics.jsonl.
#include "qls/telemetry.h"

#include "qls/error.h"
#include "qls/json_input.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <type_traits>

namespace qls {

std::string step_stats_to_json(const step_stats& s) {
    nlohmann::json j;
    j["step"] = s.step;
    j["total_steps"] = s.total_steps;
    j["epoch"] = s.epoch;
    j["loss"] = s.loss;
    j["lr"] = s.lr;
    j["grad_norm"] = s.grad_norm;
    j["tokens"] = s.tokens;
    j["tokens_total"] = s.tokens_total;
    j["tokens_per_s"] = s.tokens_per_s;
    j["step_time_s"] = s.step_time_s;
    j["eta_s"] = s.eta_s;
    nlohmann::json plan = nlohmann::json::object();
    for (const auto& [k, v] : s.plan_bytes) plan[k] = v;
    j["plan_bytes"] = plan;
    j["device_used_bytes"] = s.device_used_bytes;
    j["device_peak_bytes"] = s.device_peak_bytes;
    j["device_total_bytes"] = s.device_total_bytes;
    j["arena_bytes"] = s.arena_bytes;
    j["paging_h2d_bytes"] = s.paging_h2d_bytes;
    j["paging_d2h_bytes"] = s.paging_d2h_bytes;
    j["resident_pages"] = s.resident_pages;
    j["total_pages"] = s.total_pages;
    if (s.offload_h2d_bytes || s.offload_d2h_bytes) { // only runs that offload write them
        j["offload_h2d_bytes"] = s.offload_h2d_bytes;
        j["offload_d2h_bytes"] = s.offload_d2h_bytes;
    }
    if (s.eval_loss) j["eval_loss"] = *s.eval_loss;
    // losses are written with full precision so a resumed run can be compared bit for bit
    return j.dump();
}

step_stats step_stats_from_json(const std::string& line) {
    const json_parse_result pr = try_parse_json(line);
    if (!pr.ok)
        throw error(error_code::format, "metrics line is not valid JSON: " + pr.problem,
                    "the run's metrics.jsonl is damaged; the line is skipped");
    const nlohmann::json& j = pr.value;
    if (!j.is_object()) throw error(error_code::format, "metrics line is not a JSON object");
    step_stats s;
    auto num = [&](const char* k, auto& out) {
        using T = std::decay_t<decltype(out)>;
        if (!j.contains(k)) return;
        const nlohmann::json& v = j[k];
        if (!v.is_number()) throw error(error_code::format, std::string("metrics field '") + k + "' is not a number");
        if constexpr (std::is_integral_v<T>) {
            // an integer within T's range (converting a float, or a wider integer, out of range is undefined)
            const bool ok = v.is_number_unsigned()  ? v.get<uint64_t>() <= uint64_t(std::numeric_limits<T>::max())
                            : v.is_number_integer() ? (std::is_signed_v<T> || v.get<int64_t>() >= 0)
                                                    : false;
            if (!ok)
                throw error(error_code::format,
                            std::string("metrics field '") + k + "' is " + json_shown(v) +
                                ", not an integer in the range of the field",
                            "the run's metrics.jsonl is damaged; the line is skipped");
        }
        out = v.get<T>();
    };
    num("step", s.step);
    num("total_steps", s.total_steps);
    num("epoch", s.epoch);
    num("loss", s.loss);
    num("lr", s.lr);
    num("grad_norm", s.grad_norm);
    num("tokens", s.tokens);
    num("tokens_total", s.tokens_total);
    num("tokens_per_s", s.tokens_per_s);
    num("step_time_s", s.step_time_s);
    num("eta_s", s.eta_s);
    num("device_used_bytes", s.device_used_bytes);
    num("device_peak_bytes", s.device_peak_bytes);
    num("device_total_bytes", s.device_total_bytes);
    num("arena_bytes", s.arena_bytes);
    num("paging_h2d_bytes", s.paging_h2d_bytes);
    num("paging_d2h_bytes", s.paging_d2h_bytes);
    num("resident_pages", s.resident_pages);
    num("total_pages", s.total_pages);
    num("offload_h2d_bytes", s.offload_h2d_bytes);
    num("offload_d2h_bytes", s.offload_d2h_bytes);
    if (j.contains("plan_bytes") && j["plan_bytes"].is_object())
        for (auto it = j["plan_bytes"].begin(); it != j["plan_bytes"].end(); ++it)
            if (it.value().is_number_unsigned()) s.plan_bytes.emplace_back(it.key(), it.value().get<uint64_t>());
    if (j.contains("eval_loss") && j["eval_loss"].is_number()) s.eval_loss = j["eval_loss"].get<double>();
    return s;
}

} // namespace qls
