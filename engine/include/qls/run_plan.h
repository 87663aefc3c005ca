// run_plan — the one plan path: a run's settings and the device it uses in, its memory_plan out, computed once per run.
//
// Who reads the result: the Plan page and `qlora plan` draw it, the trainer refuses a run that does not fit with its
// verdict, the backend carves its arena from it (memory_plan.h), telemetry reports its categories per step. Nothing
// else calls make_memory_plan for a run.
//
// The budget (device.budget_gib, --budget-gib, plan_settings::budget_bytes) has one meaning everywhere:
//   > 0  the most device memory the run's arena may use;
//   0    no budget of your own: the limit is what the device has (95% of its free memory when the run is planned,
//        and its size less the CUDA context); on the CPU backend, and when planning without a device, no limit.
#pragma once

#include "qls/device.h"      // defines: compute_device
#include "qls/memory_plan.h" // defines: memory_plan, plan_settings, make_memory_plan
#include "qls/model_config.h"
#include "qls/train_config.h"

#include <cstdint>

namespace qls {

// A run's plan settings (GiB → bytes happens here and only here) on the device it will use: the device's size and
// free memory join the budget as limits (see above).
plan_settings plan_settings_for(const train_config& c, const compute_device& d);
// The same for settings given directly (`qlora plan`/`bench` flags): fills card_bytes and free_bytes from the device,
// the backend from the device, and the machine's RAM from /proc/meminfo unless s.host already gives it.
plan_settings plan_settings_on(plan_settings s, const compute_device& d);

// The plan of a run. Counted (plan_run_count), so a test can check that one run computes it once.
memory_plan plan_run(const model_config& model, const plan_settings& s);
uint64_t plan_run_count();

// Whether `p` was made for exactly this run: the model's dimensions and every setting but the device's free memory,
// which moves on its own between planning and starting.
bool plan_matches(const memory_plan& p, const model_config& model, const plan_settings& s);

} // namespace qls
