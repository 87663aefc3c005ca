// run_export — exporting a run's checkpoint as a PEFT adapter, a merged Hugging Face model, a LoRA adapter GGUF or a
// merged GGUF (llama.cpp, Ollama): the one path behind `qlora export` and the studio's Export page.
//
// Stages (reported through export_callbacks::on_stage, in this order):
//   peft:   reading_config → reading_adapter → writing_adapter → done
//   merged: reading_config → reading_adapter → loading_base (checking the base's weights, planning the shards) →
//           merging (reported again after every tensor written: tensors_done / tensors_total, bytes) → done
//   gguf_adapter: reading_config → reading_adapter → writing_adapter → done
//   gguf:   reading_config → reading_adapter → loading_base → merging (per tensor; file_size known from the first
//           report on) → done
// The GGUF exports write a folder holding the .gguf file and an Ollama Modelfile; export_result lists the files with
// their sizes and the commands that run them in llama.cpp and Ollama.
// The merged export streams the base tensor by tensor (qls::export_merged), so its host memory is about one tensor
// in f32, not the model.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qls {

enum class export_format { peft, merged, gguf_adapter, gguf };
const char* export_format_name(export_format f); // "peft", "merged", "gguf-adapter", "gguf"
// The format a name gives ("peft", "merged", "gguf-adapter", "gguf"); throws error{invalid_argument} otherwise.
export_format export_format_from_name(const std::string& s);

struct export_request {
    std::string model_dir;      // the base model the run trained (a Hugging Face folder)
    std::string checkpoint_dir; // runs/<name>/checkpoints/step-N: adapter_config.json + adapter_model.safetensors
    std::string output_dir;     // the folder to write; must not be one of the inputs
    export_format format = export_format::peft;
    bool quantize_nf4 = true; // merged: fold the adapter into the dequantized NF4 base, as it trained
    bool double_quant = true;
    bool overwrite = false; // write into an output folder that already holds files (`qlora export --force`)
    uint64_t max_shard_bytes = 5'000'000'000ull; // merged: bytes of tensor data per shard at most
    std::string gguf_quant = "f16";              // gguf: f16, bf16, q8_0, q4_0, q4_k_m
    std::string adapter_dtype = "f32";           // gguf_adapter: f32 or f16
    // gguf: what the adapter is merged into: "nf4" (the NF4-dequantized base, as the run trained; the default when
    // quantize_nf4), "original" (the base's own weights: what llama.cpp's --lora computes on the base), or "none"
    // (the base alone, e.g. as the base GGUF for an adapter GGUF).
    std::string gguf_merge;
    std::string name; // the model's name in the GGUF (general.name) and the Ollama commands; "" = from the folders
};

enum class export_stage { reading_config, reading_adapter, writing_adapter, loading_base, merging, done };

struct export_progress {
    export_stage stage = export_stage::reading_config;
    int index = 0;                 // 0 .. count; index == count at done
    int count = 0;                 // export_stage_count(format)
    size_t adapter_parameters = 0; // known from merging on
    bool nf4_base = false;         // merging: the base weights are the dequantized NF4 ones
    // merging: tensors written so far of all, and their bytes (tensor data of the output)
    int64_t tensors_done = 0;
    int64_t tensors_total = 0;
    uint64_t bytes_done = 0;
    uint64_t bytes_total = 0;
    uint64_t file_size = 0; // gguf: the size of the file being written, known before its first tensor
};

struct export_callbacks {
    std::function<void(const export_progress&)> on_stage; // called on the exporting thread
    // Set from any thread to stop: checked before every tensor of a merged export and before the export starts;
    // run_export then throws qls::error(error_code::cancelled) and leaves no output folder and no temporary one.
    const std::atomic<bool>* cancel = nullptr;
};

struct export_file {
    std::string path; // absolute
    uint64_t bytes = 0;
};

struct export_result {
    std::string output_dir; // absolute
    export_format format = export_format::peft;
    size_t adapter_parameters = 0;
    std::vector<export_file> files;    // gguf formats: the .gguf file and the Modelfile
    std::vector<std::string> commands; // gguf formats: shell commands that run the export in llama.cpp and Ollama
};

int export_stage_count(export_format f); // 3 (peft, gguf_adapter) or 4 (merged, gguf)

// The folder an export writes by default: runs/<name>/exports/<format>-step-N for a run's checkpoint, else
// <checkpoint>-<format> beside it.
std::string default_export_dir(const std::string& checkpoint_dir, export_format f);

// Refuses what the engine would otherwise report later or less directly: no checkpoint, a folder that is missing or
// holds no adapter, no base model or one without config.json, no output folder, an output that is an input, an
// output folder that already holds files (unless r.overwrite), an unknown GGUF quantization, adapter dtype or merge
// mode. Throws qls::error naming the folder, with a hint saying
// what to choose.
void check_export_request(const export_request& r);

// True when `output_dir` exists and is not an empty folder: exporting there replaces or removes what it holds, so
// run_export refuses it unless the request says overwrite (the studio asks first; the CLI takes --force).
bool export_would_overwrite(const std::string& output_dir);

// check_export_request, then reads the base config and the adapter and writes the export. Throws qls::error (the
// engine's message names the damaged file) or std::bad_alloc.
export_result run_export(const export_request& r, const export_callbacks& cb = {});

// `qlora export RUN_DIR`: the request for a run from its config.json (base model, NF4 as trained), its newest or the
// chosen checkpoint (find_checkpoint) and the output ("" = default_export_dir).
export_request export_request_for_run(const std::string& run_dir, export_format f, const std::string& checkpoint = {},
                                      const std::string& output_dir = {});

} // namespace qls
