// The run's settings against its model (context, projection sizes) and its training data (sequence, steps, epochs).
#include "qls/architecture.h"
#include "qls/error.h"
#include "qls/model_config.h"
#include "qls/train_config.h"
#include "run_common.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace qls {

namespace {

std::string num(int64_t v) { return std::to_string(v); }

// 0.27, 2.67, 26.7, 267: two significant decimals below 10, fewer above
std::string epochs_text(double e) {
    char buf[32];
    std::snprintf(buf, sizeof buf, e < 10 ? "%.2f" : e < 100 ? "%.1f" : "%.0f", e);
    return buf;
}

} // namespace

std::vector<config_note> check_train_config_for_model(const train_config& c, const model_config& m) {
    check_seq_len_fits(c, m); // refuses: training.seq_len over max_position_embeddings
    std::vector<config_note> notes;
    // Each targeted projection the family has, by its smaller (out, in) dimension (architecture.h's shapes):
    // B (out × r) · A (r × in) has rank at most min(out, in), so a larger r there adds parameters and memory, no
    // capacity.
    const architecture* arch = find_architecture(m.model_type);
    if (!arch || c.lora.rank < 1) return notes;
    std::vector<std::string> over;
    int64_t smallest = 0;
    size_t targeted = 0;
    for (lora_target t : c.lora.targets) {
        if (!arch->has_projection(t)) continue;
        ++targeted;
        const auto [out, in] = arch->projection_shape(m, t);
        const int64_t d = std::min(out, in);
        if (d <= 0 || c.lora.rank <= d) continue;
        over.push_back(std::string(lora_target_name(t)) + " (" + num(d) + ")");
        smallest = smallest == 0 ? d : std::min(smallest, d);
    }
    if (over.empty()) return notes;
    auto listed = [&over] {
        std::string s;
        for (size_t i = 0; i < over.size(); ++i) s += (i == 0 ? "" : i + 1 == over.size() ? " and " : ", ") + over[i];
        return s;
    };
    notes.push_back({"lora.rank",
                     num(c.lora.rank) + " is larger than the smaller dimension of " + listed() +
                         ": an adapter there cannot use more than that rank, the rest only costs memory",
                     "use lora.rank <= " + num(smallest) +
                         (over.size() < targeted
                              ? ", or leave " + std::string(over.size() > 1 ? "those" : "it") + " out of lora.targets"
                              : std::string())});
    return notes;
}

train_data_fit check_train_config_for_data(const train_config& c, int64_t examples, int64_t tokens) {
    train_data_fit f;
    const int64_t seq = std::max(1, c.seq_len);
    f.rows_per_step = int64_t(std::max(1, c.micro_batch)) * int64_t(std::max(1, c.grad_accum));
    if (examples > 0) {
        if (tokens < seq)
            throw error(error_code::config,
                        "training.seq_len: the training data holds " + num(tokens) + " tokens in all, fewer than one " +
                            "sequence of " + num(seq),
                        "use training.seq_len <= " + num(std::max<int64_t>(2, tokens)) + ", or more training data");
        f.rows_per_epoch = c.packing ? (tokens + seq - 1) / seq : examples;
        // the trainer's count (trainer.cpp): micro-batches of an epoch × epochs ÷ accumulation, at least 1
        const int64_t micro_per_epoch = (f.rows_per_epoch + c.micro_batch - 1) / std::max(1, c.micro_batch);
        f.steps = c.max_steps > 0 ? c.max_steps
                                  : std::max<int64_t>(1, int64_t(std::ceil(c.epochs * double(micro_per_epoch) /
                                                                           double(std::max(1, c.grad_accum)))));
        f.epochs = double(f.steps) * double(f.rows_per_step) / double(f.rows_per_epoch);
        if (f.rows_per_step > f.rows_per_epoch)
            f.notes.push_back({"training.micro_batch",
                               "one step takes micro_batch × grad_accum = " + num(f.rows_per_step) +
                                   " rows but the data fills " + num(f.rows_per_epoch) +
                                   " rows an epoch: each step repeats examples",
                               "lower training.micro_batch or training.grad_accum, or add data"});
        else if (c.max_steps > 0 && f.epochs > 1) {
            const int64_t one_epoch = std::max<int64_t>(1, f.rows_per_epoch / f.rows_per_step);
            f.notes.push_back({"training.max_steps",
                               num(f.steps) + " steps = " + epochs_text(f.epochs) + " epochs of your data (" +
                                   num(f.rows_per_epoch) + " rows an epoch, " + num(f.rows_per_step) + " rows a step)",
                               f.epochs > 20
                                   ? "over 20 passes, the adapter will memorise the data: fewer steps or more "
                                     "data (training.max_steps " +
                                         num(one_epoch) + " is one epoch)"
                                   : "training.max_steps " + num(one_epoch) + " is one epoch"});
        }
    } else if (c.max_steps > 0) {
        f.steps = c.max_steps; // the data is not known yet: only the intervals against the steps
    }
    if (f.steps > 0 && c.eval_every > f.steps)
        f.notes.push_back({"training.eval_every",
                           "every " + num(c.eval_every) + " steps, but the run has " + num(f.steps) +
                               " steps: it evaluates only at the end",
                           "use training.eval_every <= " + num(f.steps) + ", or 0 for only at the end"});
    if (f.steps > 0 && c.checkpoint_every > f.steps)
        f.notes.push_back({"training.checkpoint_every",
                           "every " + num(c.checkpoint_every) + " steps, but the run has " + num(f.steps) +
                               " steps: it saves only at the end",
                           "use training.checkpoint_every <= " + num(f.steps) + ", or 0 for only at the end"});
    return f;
}

} // namespace qls
