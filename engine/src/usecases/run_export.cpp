// Exporting a checkpoint (qls/run_export.h): request checks, base config + adapter, then export_peft or the streaming
// export_merged.
#include "qls/run_export.h"

#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/model_source.h"
#include "qls/peft.h"
#include "qls/run_catalog.h"
#include "qls/train_config.h"

#include <filesystem>

namespace qls {

namespace fs = std::filesystem;

namespace {

// A base model given as a GGUF file (open_model_source's rule: a name ending in ".gguf").
bool is_gguf_path(const std::string& p) { return p.size() > 5 && p.compare(p.size() - 5, 5, ".gguf") == 0; }

fs::path clean_absolute(const std::string& p) {
    fs::path a = fs::absolute(fs::path(p)).lexically_normal();
    if (a.filename().empty() && a.has_parent_path() && a != a.root_path()) a = a.parent_path(); // a trailing '/'
    return a;
}

} // namespace

const char* export_format_name(export_format f) { return f == export_format::merged ? "merged" : "peft"; }

int export_stage_count(export_format f) { return f == export_format::merged ? 4 : 3; }

std::string default_export_dir(const std::string& checkpoint_dir, export_format f) {
    if (checkpoint_dir.empty()) return {};
    const fs::path ck = clean_absolute(checkpoint_dir);
    const std::string kind = export_format_name(f);
    const std::string run = checkpoint_run_dir(ck.string());
    if (run.empty()) return (ck.parent_path() / (ck.filename().string() + "-" + kind)).string();
    return (fs::path(run) / "exports" / (kind + "-" + ck.filename().string())).string();
}

void check_export_request(const export_request& r) {
    const std::string adapter_hint =
        "choose a checkpoint folder of a run (runs/<name>/checkpoints/step-N), which holds "
        "adapter_config.json and adapter_model.safetensors";
    if (r.checkpoint_dir.empty()) throw error(error_code::invalid_argument, "No checkpoint chosen.", adapter_hint);
    std::error_code ec;
    if (!fs::is_directory(r.checkpoint_dir, ec))
        throw error(error_code::io, r.checkpoint_dir + ": no such folder.", adapter_hint);
    for (const char* name : {"adapter_config.json", "adapter_model.safetensors"})
        if (!fs::exists(fs::path(r.checkpoint_dir) / name, ec))
            throw error(error_code::io, r.checkpoint_dir + " is not a checkpoint: it holds no " + name + ".",
                        adapter_hint);
    const std::string model_hint = "choose the base model the run was trained on (a Hugging Face folder with "
                                   "config.json and model.safetensors, or a .gguf file)";
    if (r.model_dir.empty()) throw error(error_code::invalid_argument, "No base model chosen.", model_hint);
    if (is_gguf_path(r.model_dir)) {
        if (!fs::is_regular_file(r.model_dir, ec))
            throw error(error_code::io, r.model_dir + ": no such GGUF file.", model_hint);
        // the merged export streams Hugging Face safetensors shards of the base; a GGUF base has none
        if (r.format == export_format::merged)
            throw error(error_code::unsupported,
                        r.model_dir + " is a GGUF file; a merged export needs the base as a Hugging Face folder.",
                        "export the adapter (PEFT format) instead, or train on the Hugging Face form of the model");
    } else if (!fs::exists(fs::path(r.model_dir) / "config.json", ec)) {
        throw error(error_code::io, r.model_dir + ": no config.json, so this is not a model folder.", model_hint);
    }
    if (r.output_dir.empty())
        throw error(error_code::invalid_argument, "No output folder chosen.", "enter or browse for a folder to write");
    const fs::path out = clean_absolute(r.output_dir);
    for (const std::string& in : {r.checkpoint_dir, r.model_dir})
        if (out == clean_absolute(in))
            throw error(error_code::invalid_argument,
                        "The output folder " + r.output_dir + " is an input of the export.",
                        "choose a new folder, e.g. the run's exports/ folder");
    if (!r.overwrite && export_would_overwrite(out.string()))
        throw error(error_code::invalid_argument,
                    "The output folder " + out.string() +
                        " already exists and is not empty; exporting would replace "
                        "or delete what it holds.",
                    "choose a new folder, or pass --force (the studio: confirm overwriting) to replace its contents");
}

bool export_would_overwrite(const std::string& output_dir) {
    if (output_dir.empty()) return false;
    std::error_code ec;
    const fs::path p = clean_absolute(output_dir);
    if (!fs::exists(fs::symlink_status(p, ec))) return false;
    if (!fs::is_directory(p, ec)) return true; // a file (or link to one) where the folder would go
    return !fs::is_empty(p, ec) || ec;
}

export_result run_export(const export_request& r, const export_callbacks& cb) {
    check_export_request(r);
    if (cb.cancel && cb.cancel->load())
        throw error(error_code::cancelled, "export to " + r.output_dir + " cancelled; nothing was written",
                    "export again to write it");
    const bool merged = r.format == export_format::merged;
    export_progress p;
    p.count = export_stage_count(r.format);
    auto stage = [&](export_stage s, int index) {
        p.stage = s;
        p.index = index;
        if (cb.on_stage) cb.on_stage(p);
    };
    stage(export_stage::reading_config, 0);
    // the base's config through model_source (a Hugging Face folder or a GGUF file); the merged export below also
    // needs the Hugging Face shards themselves
    const std::unique_ptr<model_source> src = open_model_source(r.model_dir);
    stage(export_stage::reading_adapter, 1);
    const lora_weights<float> lw = load_peft(r.checkpoint_dir, src->config());
    p.adapter_parameters = lw.parameter_count();
    if (!merged) {
        stage(export_stage::writing_adapter, 2);
        export_peft(r.output_dir, lw, src->config(), r.model_dir);
    } else {
        const hf_checkpoint base = hf_checkpoint::open(r.model_dir);
        // loading_base: the base's weights are checked and the shards planned; then merging reports every tensor
        stage(export_stage::loading_base, 2);
        merged_export_options mo;
        mo.quantize_nf4 = r.quantize_nf4;
        mo.double_quant = r.double_quant;
        mo.max_shard_bytes = r.max_shard_bytes;
        mo.cancel = cb.cancel;
        mo.on_progress = [&](const merged_export_progress& mp) {
            p.stage = export_stage::merging;
            p.index = 3;
            p.nf4_base = mp.nf4_base;
            p.tensors_done = mp.tensors_done;
            p.tensors_total = mp.tensors_total;
            p.bytes_done = mp.bytes_done;
            p.bytes_total = mp.bytes_total;
            if (cb.on_stage) cb.on_stage(p);
        };
        export_merged(r.output_dir, base, lw, mo);
    }
    stage(export_stage::done, p.count);
    export_result res;
    res.output_dir = clean_absolute(r.output_dir).string();
    res.format = r.format;
    res.adapter_parameters = lw.parameter_count();
    return res;
}

export_request export_request_for_run(const std::string& run_dir, export_format f, const std::string& checkpoint,
                                      const std::string& output_dir) {
    export_request r;
    r.format = f;
    r.checkpoint_dir = find_checkpoint(run_dir, checkpoint);
    const train_config cfg = load_train_config((fs::path(run_dir) / "config.json").string());
    r.model_dir = cfg.model;
    r.quantize_nf4 = cfg.quantize_nf4;
    r.double_quant = cfg.double_quant;
    r.output_dir = !output_dir.empty()
                       ? output_dir
                       : (fs::path(run_dir) / "exports" /
                          (std::string(export_format_name(f)) + "-" + fs::path(r.checkpoint_dir).filename().string()))
                             .string();
    return r;
}

} // namespace qls
