// run.json ⇄ train_config, with validation that names the field, and the learning-rate schedules.
#include "qls/train_config.h"

#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/json_input.h"
#include "qls/memory_plan.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <numbers>
#include <set>

namespace qls {

using json = nlohmann::json;
namespace fs = std::filesystem;

const char* lr_schedule_name(lr_schedule s) {
    switch (s) {
    case lr_schedule::constant: return "constant";
    case lr_schedule::linear: return "linear";
    case lr_schedule::cosine: return "cosine";
    }
    return "?";
}

namespace {

// Reads one JSON section, naming "section.key" in every message and refusing keys it does not know.
struct section {
    const json* obj;
    std::string source, prefix;
    std::set<std::string> known;

    [[noreturn]] void fail(const std::string& key, const std::string& what, const std::string& hint = {}) const {
        throw error(error_code::config, source + ": " + prefix + key + ": " + what,
                    hint.empty() ? "see the run.json format in README.md" : hint);
    }
    const json* get(const std::string& key) {
        known.insert(key);
        if (!obj || !obj->contains(key) || (*obj)[key].is_null()) return nullptr;
        return &(*obj)[key];
    }
    void str(const std::string& key, std::string& out) {
        if (const json* v = get(key)) {
            if (!v->is_string()) fail(key, "must be a string, found " + std::string(v->type_name()));
            out = v->get<std::string>();
        }
    }
    void boolean(const std::string& key, bool& out) {
        if (const json* v = get(key)) {
            if (!v->is_boolean()) fail(key, "must be true or false, found " + json_shown(*v));
            out = v->get<bool>();
        }
    }
    // An integer read in 64 bits and range-checked against [lo, hi] (the field's meaning) and the destination
    // type, never truncated: 4294967312 is not 16.
    template <class I>
    void integer(const std::string& key, I& out, int64_t lo, uint64_t hi = std::numeric_limits<uint64_t>::max()) {
        const json* v = get(key);
        if (!v) return;
        if (!v->is_number_integer()) fail(key, "must be an integer, found " + json_shown(*v));
        using lim = std::numeric_limits<I>;
        const int64_t min = std::max<int64_t>(lo, lim::is_signed ? int64_t(lim::min()) : 0);
        const uint64_t max = std::min<uint64_t>(hi, uint64_t(lim::max()));
        bool ok = false;
        if (v->is_number_unsigned()) {
            const uint64_t u = v->get<uint64_t>();
            ok = u <= max && (min <= 0 || u >= uint64_t(min));
            if (ok) out = I(u);
        } else {
            const int64_t x = v->get<int64_t>();
            ok = x >= min && (x < 0 || uint64_t(x) <= max);
            if (ok) out = I(x);
        }
        if (!ok)
            fail(key, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max) + ", found " +
                          json_shown(*v));
    }
    template <class F> void number(const std::string& key, F& out) {
        if (const json* v = get(key)) {
            if (!v->is_number()) fail(key, "must be a number, found " + json_shown(*v));
            const F x = F(v->get<double>());
            if (!std::isfinite(x)) fail(key, "must be a finite number, found " + json_shown(*v));
            out = x;
        }
    }
    void finish() const {
        if (!obj) return;
        for (auto it = obj->begin(); it != obj->end(); ++it)
            if (!known.count(it.key()))
                fail(it.key(), "is not a known setting",
                     "check the spelling; the keys of each section are listed in README.md");
    }
};

constexpr uint64_t k_max_seq_len = uint64_t(1) << 24;    // tokens per sequence
constexpr uint64_t k_max_batch = uint64_t(1) << 20;      // micro_batch, grad_accum
constexpr uint64_t k_max_page_size = uint64_t(64) << 20; // device.page_size: 64 MiB

// Relative paths are relative to the config file's directory; the result is absolute, so a run's saved config.json
// (and `qlora resume`) works from any working directory.
std::string resolve(const std::string& base, const std::string& p) {
    if (p.empty()) return p;
    fs::path r = fs::path(p).is_absolute() || base.empty() ? fs::path(p) : fs::path(base) / p;
    return fs::absolute(r).lexically_normal().string();
}

} // namespace

int train_config::warmup_steps_for(int64_t total_steps) const {
    if (warmup_steps >= 0) return warmup_steps;
    return int(std::ceil(warmup_ratio * double(total_steps)));
}

train_config parse_train_config(const std::string& text, const std::string& source, const std::string& base_dir) {
    const json root = parse_json_input(text, source, "fix the syntax (a missing comma or quote is the usual cause)");
    if (!root.is_object()) throw error(error_code::format, source + ": the top level must be a JSON object");
    train_config c;
    section top{&root, source, "", {}};
    top.str("name", c.name);
    top.str("runs_dir", c.runs_dir);
    top.str("model", c.model);
    auto sub = [&](const char* name) {
        const json* s = top.get(name);
        if (s && !s->is_object()) top.fail(name, "must be an object");
        return section{s, source, std::string(name) + ".", {}};
    };

    section data = sub("data");
    data.str("train", c.train_file);
    data.str("validation", c.validation_file);
    data.number("validation_fraction", c.validation_fraction);
    data.str("format", c.dataset_format);
    data.str("template", c.prompt_template);
    data.boolean("train_on_prompt", c.train_on_prompt);
    data.boolean("packing", c.packing);
    data.boolean("skip_malformed", c.skip_malformed);
    data.finish();

    section quant = sub("quantization");
    quant.boolean("nf4", c.quantize_nf4);
    quant.boolean("double_quant", c.double_quant);
    quant.finish();

    section lora = sub("lora");
    lora.integer("rank", c.lora.rank, std::numeric_limits<int>::min(), 1 << 16); // below 1: validate_lora says so
    lora.number("alpha", c.lora.alpha);
    lora.number("dropout", c.lora.dropout);
    lora.boolean("rslora", c.lora.use_rslora);
    if (const json* t = lora.get("targets")) {
        std::string csv;
        if (t->is_string()) csv = t->get<std::string>();
        else if (t->is_array()) {
            for (const json& e : *t) {
                if (!e.is_string()) lora.fail("targets", "must be a list of names like \"q\" or \"q_proj\"");
                csv += (csv.empty() ? "" : ",") + e.get<std::string>();
            }
        } else lora.fail("targets", "must be a list of projection names");
        try {
            c.lora.targets = parse_lora_targets(csv);
        } catch (const error& e) {
            lora.fail("targets", e.what(), e.hint());
        }
    }
    lora.finish();

    section opt = sub("optimizer");
    std::string kind = optimizer_kind_flag(c.optimizer);
    opt.str("kind", kind);
    try {
        c.optimizer = parse_optimizer_kind(kind);
    } catch (const error& e) {
        opt.fail("kind", e.what(), e.hint());
    }
    opt.number("lr", c.learning_rate);
    opt.number("beta1", c.adamw.beta1);
    opt.number("beta2", c.adamw.beta2);
    opt.number("eps", c.adamw.eps);
    opt.number("weight_decay", c.adamw.weight_decay);
    opt.number("max_grad_norm", c.max_grad_norm);
    std::string sched = lr_schedule_name(c.schedule);
    opt.str("schedule", sched);
    if (sched == "constant") c.schedule = lr_schedule::constant;
    else if (sched == "linear") c.schedule = lr_schedule::linear;
    else if (sched == "cosine") c.schedule = lr_schedule::cosine;
    else opt.fail("schedule", "is \"" + sched + "\"", "use constant, linear or cosine");
    opt.integer("warmup_steps", c.warmup_steps, -1); // -1: use warmup_ratio
    opt.number("warmup_ratio", c.warmup_ratio);
    opt.finish();

    section tr = sub("training");
    tr.str("mode", c.mode);
    if (c.mode != "lora" && c.mode != "full")
        tr.fail("mode", "is \"" + c.mode + "\"", "use \"lora\" (adapters on a frozen base) or \"full\" (every weight)");
    tr.integer("seq_len", c.seq_len, 2, k_max_seq_len);
    tr.integer("micro_batch", c.micro_batch, 1, k_max_batch);
    tr.integer("grad_accum", c.grad_accum, 1, k_max_batch);
    tr.integer("max_steps", c.max_steps, 0);
    tr.number("epochs", c.epochs);
    tr.integer("eval_every", c.eval_every, 0);
    tr.integer("eval_batches", c.eval_batches, 0);
    tr.integer("checkpoint_every", c.checkpoint_every, 0);
    tr.integer("keep_checkpoints", c.keep_checkpoints, 1);
    tr.boolean("gradient_checkpointing", c.gradient_checkpointing);
    tr.integer("seed", c.seed, 0);
    tr.finish();

    section dev = sub("device");
    dev.str("backend", c.backend);
    dev.str("checkpoint_offload", c.checkpoint_offload);
    dev.integer("gpu", c.gpu, 0, 1023);
    dev.number("budget_gib", c.budget_gib);
    dev.integer("page_pool_bytes", c.page_pool_bytes, 0);
    dev.integer("page_size", c.page_size, 1024, k_max_page_size);
    dev.finish();
    top.finish();

    c.model = resolve(base_dir, c.model);
    c.train_file = resolve(base_dir, c.train_file);
    c.validation_file = resolve(base_dir, c.validation_file);
    c.runs_dir = resolve(base_dir, c.runs_dir);
    try {
        validate_train_config(c);
    } catch (const error& e) {
        throw error(e.code(), source + ": " + e.what(), e.hint());
    }
    return c;
}

train_config load_train_config(const std::string& path) {
    const std::string text = read_file_text(
        path, "check the path of the run configuration; `qlora train --config run.json` expects a JSON file (format "
              "in README.md)");
    std::string base = fs::path(path).parent_path().string();
    return parse_train_config(text, path, base.empty() ? "." : base);
}

void validate_train_config(const train_config& c) {
    auto bad = [](const std::string& field, const std::string& what, const std::string& hint) {
        throw error(error_code::config, field + ": " + what, hint);
    };
    if (c.name.empty() || c.name.find('/') != std::string::npos || c.name == "." || c.name == "..")
        bad("name", "must be a plain directory name, got \"" + c.name + "\"", "for example \"pip-stories\"");
    if (c.model.empty()) bad("model", "is required", "the Hugging Face model directory or the .gguf file to fine-tune");
    {
        // a Hugging Face directory or a GGUF file (what open_model_source opens). A path that does not exist (yet) is
        // reported by the trainer when it opens the model, so configs can be written and checked before the download.
        std::error_code ec;
        const fs::file_status st = fs::status(c.model, ec);
        const bool gguf = c.model.size() > 5 && c.model.compare(c.model.size() - 5, 5, ".gguf") == 0;
        if (fs::exists(st) && !fs::is_directory(st) && !(gguf && fs::is_regular_file(st)))
            bad("model", "\"" + c.model + "\" is neither a model directory nor a .gguf file",
                "name a Hugging Face model directory (config.json + *.safetensors) or a GGUF file ending in .gguf");
    }
    if (c.train_file.empty()) bad("data.train", "is required", "a dataset file (JSON, JSONL or text)");
    if (!(c.validation_fraction >= 0 && c.validation_fraction < 1))
        bad("data.validation_fraction", "must be in [0, 1), got " + std::to_string(c.validation_fraction),
            "for example 0.05");
    if (c.lora.rank < 1)
        bad("lora.rank", "LoRA rank must be at least 1 (got " + std::to_string(c.lora.rank) + ")",
            "the QLoRA paper uses rank 64; 8-64 is typical");
    try {
        validate_lora(c.lora);
    } catch (const error& e) {
        throw error(e.code(), std::string("lora: ") + e.what(), e.hint());
    }
    if (!(c.learning_rate > 0) || !std::isfinite(c.learning_rate))
        bad("optimizer.lr", "must be a positive number, got " + std::to_string(c.learning_rate),
            "the QLoRA paper uses 2e-4 for 7B/13B and 1e-4 for 33B/65B");
    if (!(c.adamw.beta1 >= 0 && c.adamw.beta1 < 1)) bad("optimizer.beta1", "must be in [0, 1)", "0.9 is usual");
    if (!(c.adamw.beta2 >= 0 && c.adamw.beta2 < 1)) bad("optimizer.beta2", "must be in [0, 1)", "0.999 is usual");
    if (!(c.adamw.eps > 0)) bad("optimizer.eps", "must be positive", "1e-8 is usual");
    if (!(c.adamw.weight_decay >= 0)) bad("optimizer.weight_decay", "must be >= 0", "the QLoRA paper uses 0");
    if (!(c.max_grad_norm >= 0))
        bad("optimizer.max_grad_norm", "must be >= 0 (0 disables clipping)", "0.3 in the QLoRA paper");
    if (!(c.warmup_ratio >= 0 && c.warmup_ratio < 1))
        bad("optimizer.warmup_ratio", "must be in [0, 1)", "0.03 in the QLoRA paper");
    if (c.seq_len < 2 || uint64_t(c.seq_len) > k_max_seq_len)
        bad("training.seq_len",
            "must be from 2 to " + std::to_string(k_max_seq_len) + ", got " + std::to_string(c.seq_len),
            "512 or 2048 are typical");
    if (c.micro_batch < 1)
        bad("training.micro_batch", "must be at least 1, got " + std::to_string(c.micro_batch), "start with 1");
    if (c.grad_accum < 1)
        bad("training.grad_accum", "must be at least 1, got " + std::to_string(c.grad_accum),
            "the QLoRA paper uses 16");
    if (c.max_steps < 0) bad("training.max_steps", "must be >= 0", "0 means: train for `epochs`");
    if (c.max_steps == 0 && !(c.epochs > 0))
        bad("training.epochs", "must be positive when max_steps is 0", "1 to 3 epochs are typical");
    if (c.eval_every < 0) bad("training.eval_every", "must be >= 0", "0 evaluates only at the end");
    if (c.eval_batches < 0) bad("training.eval_batches", "must be >= 0", "0 evaluates the whole validation set");
    if (c.checkpoint_every < 0) bad("training.checkpoint_every", "must be >= 0", "0 saves only at the end and on stop");
    if (c.keep_checkpoints < 1) bad("training.keep_checkpoints", "must be at least 1", "3 keeps the last three");
    if (c.backend != "auto" && c.backend != "cpu" && c.backend != "cuda")
        bad("device.backend", "is \"" + c.backend + "\"", "use auto, cpu or cuda");
    if (c.checkpoint_offload != "auto" && c.checkpoint_offload != "on" && c.checkpoint_offload != "off")
        bad("device.checkpoint_offload", "is \"" + c.checkpoint_offload + "\"",
            "use auto (offload only when the run does not fit otherwise), on or off");
    if (c.checkpoint_offload == "on" && !c.gradient_checkpointing)
        bad("device.checkpoint_offload", "is \"on\" but training.gradient_checkpointing is false",
            "turn gradient checkpointing on (the offloaded tensors are its checkpoints), or use auto");
    if (c.gpu < 0)
        bad("device.gpu", "must be >= 0, got " + std::to_string(c.gpu), "0 is the first GPU (`qlora devices`)");
    if (!(c.budget_gib >= 0))
        bad("device.budget_gib", "must be >= 0", "0 means no budget of your own: 95% of the device's free memory");
    if (c.page_size == 0 || c.page_size % 1024 != 0 || c.page_size > k_max_page_size)
        bad("device.page_size",
            "must be a positive multiple of 1024 bytes, at most " + std::to_string(k_max_page_size) +
                " (64 MiB), got " + std::to_string(c.page_size),
            "65536 is the default");
}

std::string train_config_to_json(const train_config& c) {
    json j;
    j["name"] = c.name;
    j["runs_dir"] = c.runs_dir;
    j["model"] = c.model;
    j["data"] = {{"train", c.train_file},
                 {"validation", c.validation_file},
                 {"validation_fraction", c.validation_fraction},
                 {"format", c.dataset_format},
                 {"template", c.prompt_template},
                 {"train_on_prompt", c.train_on_prompt},
                 {"packing", c.packing},
                 {"skip_malformed", c.skip_malformed}};
    j["quantization"] = {{"nf4", c.quantize_nf4}, {"double_quant", c.double_quant}};
    json targets = json::array();
    for (lora_target t : c.lora.targets) targets.push_back(lora_target_short_name(t));
    j["lora"] = {{"rank", c.lora.rank},
                 {"alpha", c.lora.alpha},
                 {"dropout", c.lora.dropout},
                 {"rslora", c.lora.use_rslora},
                 {"targets", targets}};
    j["optimizer"] = {{"kind", optimizer_kind_flag(c.optimizer)},
                      {"lr", c.learning_rate},
                      {"beta1", c.adamw.beta1},
                      {"beta2", c.adamw.beta2},
                      {"eps", c.adamw.eps},
                      {"weight_decay", c.adamw.weight_decay},
                      {"max_grad_norm", c.max_grad_norm},
                      {"schedule", lr_schedule_name(c.schedule)},
                      {"warmup_steps", c.warmup_steps},
                      {"warmup_ratio", c.warmup_ratio}};
    j["training"] = {{"mode", c.mode},
                     {"seq_len", c.seq_len},
                     {"micro_batch", c.micro_batch},
                     {"grad_accum", c.grad_accum},
                     {"max_steps", c.max_steps},
                     {"epochs", c.epochs},
                     {"eval_every", c.eval_every},
                     {"eval_batches", c.eval_batches},
                     {"checkpoint_every", c.checkpoint_every},
                     {"keep_checkpoints", c.keep_checkpoints},
                     {"gradient_checkpointing", c.gradient_checkpointing},
                     {"seed", c.seed}};
    j["device"] = {{"backend", c.backend},
                   {"checkpoint_offload", c.checkpoint_offload},
                   {"gpu", c.gpu},
                   {"budget_gib", c.budget_gib},
                   {"page_pool_bytes", c.page_pool_bytes},
                   {"page_size", c.page_size}};
    return j.dump(2);
}

double learning_rate_at(const train_config& c, int64_t step, int64_t total) {
    const int64_t warmup = c.warmup_steps_for(total);
    const double lr = c.learning_rate;
    // transformers/optimization.py: during warmup lr · step / warmup (0 at step 0)
    if (step < warmup) return lr * double(step) / double(std::max<int64_t>(1, warmup));
    switch (c.schedule) {
    case lr_schedule::constant: return lr;
    case lr_schedule::linear:
        return lr * std::max(0.0, double(total - step) / double(std::max<int64_t>(1, total - warmup)));
    case lr_schedule::cosine: {
        const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
        return lr * std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
    }
    }
    return lr;
}

} // namespace qls
