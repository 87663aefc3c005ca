// Exporting a checkpoint (qls/run_export.h): request checks, base config + adapter, then export_peft, the streaming
// export_merged, or a GGUF (adapter or merged model) with its Ollama Modelfile and run commands.
#include "qls/run_export.h"

#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/gguf_writer.h"
#include "qls/hf_checkpoint.h"
#include "qls/model_source.h"
#include "qls/peft.h"
#include "qls/run_catalog.h"
#include "qls/train_config.h"

#include <cctype>
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

// Throws error{cancelled} when cb's cancel flag is set: nothing of the export to r.output_dir has been written.
void throw_if_cancelled(const export_request& r, const export_callbacks& cb) {
    if (cb.cancel && cb.cancel->load())
        throw error(error_code::cancelled, "export to " + r.output_dir + " cancelled; nothing was written",
                    "export again to write it");
}

// The folder name of an export of `checkpoint` in a run's exports/: "<format>-step-N".
std::string export_folder_name(export_format f, const fs::path& checkpoint) {
    return std::string(export_format_name(f)) + "-" + checkpoint.filename().string();
}

} // namespace

const char* export_format_name(export_format f) {
    switch (f) {
    case export_format::peft: return "peft";
    case export_format::merged: return "merged";
    case export_format::gguf_adapter: return "gguf-adapter";
    case export_format::gguf: return "gguf";
    }
    return "peft";
}

export_format export_format_from_name(const std::string& s) {
    for (export_format f :
         {export_format::peft, export_format::merged, export_format::gguf_adapter, export_format::gguf})
        if (s == export_format_name(f)) return f;
    throw error(error_code::invalid_argument, "unknown export format '" + s + "'",
                "choose peft, merged, gguf-adapter or gguf");
}

int export_stage_count(export_format f) { return f == export_format::merged || f == export_format::gguf ? 4 : 3; }

std::string default_export_dir(const std::string& checkpoint_dir, export_format f) {
    if (checkpoint_dir.empty()) return {};
    const fs::path ck = clean_absolute(checkpoint_dir);
    const std::string run = checkpoint_run_dir(ck.string());
    if (run.empty()) return (ck.parent_path() / (ck.filename().string() + "-" + export_format_name(f))).string();
    return (fs::path(run) / "exports" / export_folder_name(f, ck)).string();
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
    if (r.format == export_format::gguf) {
        (void)gguf_quant_from_name(r.gguf_quant);
        if (!r.gguf_merge.empty() && r.gguf_merge != "nf4" && r.gguf_merge != "original" && r.gguf_merge != "none")
            throw error(error_code::invalid_argument, "unknown merge mode '" + r.gguf_merge + "'",
                        "choose nf4 (as the run trained), original (the base's own weights) or none (the base alone)");
    }
    if (r.format == export_format::gguf_adapter && r.adapter_dtype != "f32" && r.adapter_dtype != "f16")
        throw error(error_code::invalid_argument, "unknown adapter GGUF dtype '" + r.adapter_dtype + "'",
                    "choose f32 or f16");
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

namespace {

// Removes a folder tree unless released: the staging folder of a GGUF export that did not finish.
struct staged_dir {
    std::string dir;
    ~staged_dir() {
        if (dir.empty()) return;
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

// Reports stage s, the index-th of p.count, to cb.
void report_stage(export_progress& p, const export_callbacks& cb, export_stage s, int index) {
    p.stage = s;
    p.index = index;
    if (cb.on_stage) cb.on_stage(p);
}

// The merging stage after a tensor written: mp is the merged writer's report (merged_export_progress, or
// gguf_merged_progress, which also gives the file's size).
template <class merge_progress>
void report_merging(export_progress& p, const export_callbacks& cb, const merge_progress& mp) {
    p.nf4_base = mp.nf4_base;
    p.tensors_done = mp.tensors_done;
    p.tensors_total = mp.tensors_total;
    p.bytes_done = mp.bytes_done;
    p.bytes_total = mp.bytes_total;
    if constexpr (requires { mp.file_size; }) p.file_size = mp.file_size;
    report_stage(p, cb, export_stage::merging, 3);
}

std::string shell_quote(const std::string& s) {
    if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=+,") ==
                          std::string::npos)
        return s;
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// An Ollama model name from a free text: lower case letters, digits, '-', '_' and '.'.
std::string ollama_name(const std::string& s) {
    std::string n;
    for (char c : s) {
        const char l = char(std::tolower(static_cast<unsigned char>(c)));
        n += (std::isalnum(static_cast<unsigned char>(l)) || l == '-' || l == '_' || l == '.') ? l : '-';
    }
    return n.empty() ? "qlora-export" : n;
}

// The GGUF exports: the .gguf and the Modelfile written into a staging folder beside the output, then published.
void export_gguf(const export_request& r, const model_source& src, const lora_weights<float>& lw, export_progress& p,
                 const export_callbacks& cb, export_result& res) {
    const fs::path target = clean_absolute(r.output_dir);
    const fs::path parent = target.parent_path();
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec)
        throw error(error_code::io, "cannot create the folder " + parent.string() + ": " + ec.message(),
                    "check that the parent folder exists and is writable, or choose another output folder");
    const std::string staging = (parent / (".tmp-" + target.filename().string())).string();
    fs::remove_all(staging, ec);
    fs::create_directory(staging, ec);
    if (ec)
        throw error(error_code::io, "cannot create the folder " + staging + ": " + ec.message(),
                    "check that " + parent.string() + " is writable, or choose another output folder");
    staged_dir guard{staging};

    const std::string run = checkpoint_run_dir(clean_absolute(r.checkpoint_dir).string());
    const std::string name = ollama_name(!r.name.empty() ? r.name
                                         : !run.empty()  ? fs::path(run).filename().string()
                                                         : fs::path(r.model_dir).filename().string());
    const model_config& m = src.config();
    std::string gguf_file, eos;
    if (r.format == export_format::gguf_adapter) {
        gguf_file = "adapter-" + r.adapter_dtype + ".gguf";
        report_stage(p, cb, export_stage::writing_adapter, 2);
        write_gguf_adapter((fs::path(staging) / gguf_file).string(), lw, m,
                           r.adapter_dtype == "f16" ? ggml_type::f16 : ggml_type::f32, name);
    } else {
        const gguf_quant q = gguf_quant_from_name(r.gguf_quant);
        const std::string merge = r.gguf_merge.empty() ? (r.quantize_nf4 ? "nf4" : "original") : r.gguf_merge;
        gguf_file = std::string("model-") + gguf_quant_name(q) + ".gguf";
        gguf_merged_options o;
        o.quant = q;
        o.quantize_nf4 = merge == "nf4";
        o.double_quant = r.double_quant;
        o.name = name;
        o.cancel = cb.cancel;
        o.on_progress = [&](const gguf_merged_progress& mp) { report_merging(p, cb, mp); };
        const lora_weights<float> none;
        write_gguf_merged((fs::path(staging) / gguf_file).string(), src, merge == "none" ? none : lw, o);
    }
    // the Modelfile: the adapter on its base (a GGUF file, or the Hugging Face folder, which Ollama imports), or the
    // merged model; the template from the base's chat template
    std::string eos_token;
    try {
        const tokenizer tok = src.load_tokenizer();
        if (tok.eos_id() >= 0) eos_token = tok.piece(tok.eos_id());
    } catch (const error&) {
        // no usable tokenizer: the Modelfile has no end-of-text stop; the GGUF writer already required one for
        // the merged model
    }
    const auto ct = src.chat_template();
    const ollama_template t = ollama_template_for(ct ? ct->text : std::string(), eos_token);
    const std::string base_abs = clean_absolute(r.model_dir).string();
    const bool adapter = r.format == export_format::gguf_adapter;
    const std::string modelfile = adapter ? ollama_modelfile(base_abs, "./" + gguf_file, t)
                                          : ollama_modelfile("./" + gguf_file, "", t);
    write_file_atomic((fs::path(staging) / "Modelfile").string(), modelfile);
    throw_if_cancelled(r, cb);
    publish_dir_atomic(staging, target.string());
    guard.dir.clear();

    const std::string g = (target / gguf_file).string(), mf = (target / "Modelfile").string();
    for (const std::string& f : {g, mf}) res.files.push_back({f, uint64_t(fs::file_size(f, ec))});
    const std::string prompt = t.family.empty() ? " -p 'Once upon a time'" : " -cnv";
    if (adapter) {
        std::string base_gguf = base_abs;
        if (!is_gguf_path(r.model_dir)) {
            base_gguf = (target.parent_path() / "base-f16" / "model-f16.gguf").string();
            res.commands.push_back("# llama.cpp needs the base as GGUF; write it once:");
            res.commands.push_back("qlora export " + shell_quote(run.empty() ? "RUN_DIR" : run) +
                                   " --format gguf --merge none --quant f16 --out " +
                                   shell_quote(target.parent_path().string() + "/base-f16"));
        }
        res.commands.push_back("llama-cli -m " + shell_quote(base_gguf) + " --lora " + shell_quote(g) + prompt);
        res.commands.push_back("llama-server -m " + shell_quote(base_gguf) + " --lora " + shell_quote(g));
    } else {
        res.commands.push_back("llama-cli -m " + shell_quote(g) + prompt);
        res.commands.push_back("llama-server -m " + shell_quote(g));
    }
    res.commands.push_back("ollama create " + name + " -f " + shell_quote(mf));
    res.commands.push_back("ollama run " + name);
}

} // namespace

export_result run_export(const export_request& r, const export_callbacks& cb) {
    check_export_request(r);
    throw_if_cancelled(r, cb);
    const bool merged = r.format == export_format::merged;
    const bool gguf = r.format == export_format::gguf || r.format == export_format::gguf_adapter;
    export_progress p;
    p.count = export_stage_count(r.format);
    auto stage = [&](export_stage s, int index) { report_stage(p, cb, s, index); };
    stage(export_stage::reading_config, 0);
    // the base's config through model_source (a Hugging Face folder or a GGUF file); the merged export below also
    // needs the Hugging Face shards themselves
    const std::unique_ptr<model_source> src = open_model_source(r.model_dir);
    stage(export_stage::reading_adapter, 1);
    const lora_weights<float> lw = load_peft(r.checkpoint_dir, src->config());
    p.adapter_parameters = lw.parameter_count();
    export_result res;
    if (gguf) {
        if (r.format == export_format::gguf) stage(export_stage::loading_base, 2);
        export_gguf(r, *src, lw, p, cb, res);
    } else if (!merged) {
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
        mo.on_progress = [&](const merged_export_progress& mp) { report_merging(p, cb, mp); };
        export_merged(r.output_dir, base, lw, mo);
    }
    stage(export_stage::done, p.count);
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
                       : (fs::path(run_dir) / "exports" / export_folder_name(f, r.checkpoint_dir)).string();
    r.name = fs::path(clean_absolute(run_dir)).filename().string();
    return r;
}

} // namespace qls
