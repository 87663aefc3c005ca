// The set-up, evaluation and telemetry the LoRA trainer and full-parameter training share (run_common.h).
#include "train/run_common.h"

#include "qls/chat.h"
#include "qls/chat_template.h"
#include "qls/error.h"
#include "qls/file_io.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

namespace qls {

namespace fs = std::filesystem;

int64_t checkpoint_step_of(const std::string& n) {
    if (n.rfind("step-", 0) != 0 || n.size() == 5 || n.size() > 5 + 19) return -1;
    int64_t v = 0;
    for (size_t i = 5; i < n.size(); ++i) {
        if (n[i] < '0' || n[i] > '9') return -1;
        if (__builtin_mul_overflow(v, int64_t(10), &v) || __builtin_add_overflow(v, int64_t(n[i] - '0'), &v)) return -1;
    }
    return v;
}

void make_run_paths_absolute(train_config& cfg) {
    for (std::string* p : {&cfg.model, &cfg.train_file, &cfg.validation_file, &cfg.runs_dir})
        if (!p->empty()) *p = fs::absolute(*p).lexically_normal().string();
}

void check_seq_len_fits(const train_config& cfg, const model_config& mc) {
    if (mc.max_position_embeddings > 0 && cfg.seq_len > mc.max_position_embeddings)
        throw error(error_code::config,
                    "training.seq_len: " + std::to_string(cfg.seq_len) + " is longer than the model's context of " +
                        std::to_string(mc.max_position_embeddings) + " positions",
                    "use training.seq_len <= " + std::to_string(mc.max_position_embeddings) +
                        " (max_position_embeddings in the model's config.json)");
}

dataset_split load_run_data(const train_config& cfg, const model_source& src, const tokenizer& tok) {
    data_options dopt;
    dopt.format = parse_dataset_format(cfg.dataset_format);
    dopt.tmpl = parse_chat_template(cfg.prompt_template);
    if (dopt.tmpl == chat_template::model || dopt.tmpl == chat_template::auto_select)
        dopt.model_template = load_model_chat_template(src, tok); // null when the model has none
    dopt.seq_len = cfg.seq_len;
    dopt.train_on_prompt = cfg.train_on_prompt;
    dopt.on_bad_record = cfg.skip_malformed ? bad_record_policy::skip : bad_record_policy::fail;
    validation_options vopt;
    vopt.file = cfg.validation_file;
    vopt.fraction = cfg.validation_fraction;
    vopt.seed = cfg.seed;
    return load_dataset_split(cfg.train_file, tok, dopt, vopt);
}

std::vector<std::string> run_data_log_lines(const train_config& cfg, const dataset_split& split) {
    std::vector<std::string> lines;
    for (const std::string& w : split.train.warnings) lines.push_back("data: " + w);
    for (const std::string& w : split.validation.warnings) lines.push_back("validation data: " + w);
    const dataset_stats& st = split.train.stats;
    for (const config_note& n : check_train_config_for_data(cfg, int64_t(st.examples), int64_t(st.tokens)).notes)
        lines.push_back("note: " + n.key + ": " + n.text + " (" + n.hint + ")");
    return lines;
}

batch_options run_batch_options(const train_config& cfg) {
    batch_options bt;
    bt.B = cfg.micro_batch;
    bt.T = cfg.seq_len;
    bt.packing = cfg.packing;
    bt.shuffle = true;
    bt.seed = cfg.seed;
    bt.pad_id = 0;
    return bt;
}

int64_t run_total_steps(const train_config& cfg, int64_t per_epoch) {
    return cfg.max_steps > 0
               ? cfg.max_steps
               : std::max<int64_t>(1, int64_t(std::ceil(cfg.epochs * double(per_epoch) / cfg.grad_accum)));
}

void create_run_dir(const std::string& run_dir, const train_config& cfg) {
    std::error_code ec;
    fs::create_directories(fs::path(run_dir) / "checkpoints", ec);
    if (ec)
        throw error(error_code::io, run_dir + ": cannot create the run directory: " + ec.message(),
                    "check that runs_dir is writable");
    write_file_atomic((fs::path(run_dir) / "config.json").string(), train_config_to_json(cfg));
    write_file_atomic((fs::path(run_dir) / "metrics.jsonl").string(), "");
}

void append_metrics_line(const std::string& run_dir, const step_stats& s) {
    std::ofstream out(fs::path(run_dir) / "metrics.jsonl", std::ios::app | std::ios::binary);
    out << step_stats_to_json(s) << '\n';
    out.flush();
}

std::optional<double> evaluate_mean_loss(const std::vector<data_example>& examples, batch_options bo, int eval_batches,
                                         const std::function<bool(size_t i, size_t n)>& before_batch,
                                         const std::function<double(const batch& b)>& loss) {
    if (examples.empty()) return std::nullopt;
    bo.shuffle = false;
    batcher vb(examples, bo);
    size_t n = vb.batches_per_epoch();
    if (eval_batches > 0) n = std::min(n, size_t(eval_batches));
    double sum = 0;
    int64_t count = 0;
    for (size_t i = 0; i < n; ++i) {
        if (before_batch && !before_batch(i, n)) return std::nullopt;
        const batch b = vb.next();
        if (b.counted_targets == 0) continue;
        sum += loss(b) * b.counted_targets;
        count += b.counted_targets;
    }
    if (count == 0) return std::nullopt;
    return sum / double(count);
}

step_stats step_progress_stats(const batcher& batches, int64_t step, int64_t total, double loss, double lr,
                               double grad_norm, int64_t tokens, int64_t tokens_total, double dt, double eta_s) {
    step_stats st;
    st.step = step;
    st.total_steps = total;
    const batcher_position pos = batches.position();
    st.epoch = double(pos.epoch) + double(pos.cursor) / double(std::max<size_t>(1, batches.batches_per_epoch()));
    st.loss = loss;
    st.lr = lr;
    st.grad_norm = grad_norm;
    st.tokens = tokens;
    st.tokens_total = tokens_total;
    st.step_time_s = dt;
    st.tokens_per_s = dt > 0 ? double(tokens) / dt : 0;
    st.eta_s = eta_s;
    return st;
}

std::string divergence_text(const std::string& what, int64_t step, double lr, const std::string& last_checkpoint) {
    return what + " at step " + std::to_string(step) + " (learning rate " + std::to_string(lr) +
           "); training stopped without applying it" +
           (last_checkpoint.empty() ? "" : "; the last good checkpoint is " + last_checkpoint) +
           ". Lower optimizer.lr, keep optimizer.max_grad_norm on, or check the data";
}

} // namespace qls
