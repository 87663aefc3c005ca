// PEFT LoRA adapter directories (adapter_config.json + adapter_model.safetensors, read and written) and the merged
// Hugging Face model export (base weights + scale·B·A folded into the targeted projections).
//
// Format references (huggingface/peft): src/peft/config.py (PeftConfigMixin.save_pretrained writes
// json.dumps(asdict(config), indent=2, sort_keys=True), sets as lists), src/peft/tuners/lora/config.py (LoraConfig
// fields and defaults), src/peft/utils/save_and_load.py (get_peft_model_state_dict: tensor names without the adapter
// name), src/peft/peft_model.py (save_pretrained: safe_save_file(..., metadata={"format": "pt"})),
// src/peft/tuners/lora/layer.py (lora_A = Linear(in, r) → weight [r, in]; lora_B = Linear(r, out) → weight [out, r]).
#pragma once

#include "qls/hf_checkpoint.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/model_config.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace qls {

// "base_model.model.model.layers.{layer}.self_attn.q_proj.lora_A.weight" (mlp.gate_proj / up_proj / down_proj for the
// MLP targets; lora_B when `b`). Shapes: lora_A [r, in], lora_B [out, r] with (in, out) = lora_in_out(m, t).
std::string peft_tensor_name(int layer, lora_target t, bool b);

// The adapter_config.json text export_peft writes: every key the PEFT version we checked against (see peft_write.cpp)
// writes for a LoraConfig, sorted, indented by 2 like json.dumps(..., indent=2, sort_keys=True); target_modules are
// the PEFT module names sorted (PEFT itself writes a set as a list in hash order); layers_to_transform lists the
// layers holding adapters when that is not all of them.
std::string peft_adapter_config_json(const lora_weights<float>& w, const model_config& m,
                                     const std::string& base_model_name_or_path);

// Writes out_dir/adapter_model.safetensors (F32 tensors named by peft_tensor_name, metadata {"format": "pt"}) and
// out_dir/adapter_config.json, each atomically (temporary file, fsync, rename); creates out_dir. The adapters must
// match the model (layer count, in/out features) and share the rank of w.config; the layers holding adapters must
// hold one for every target of w.config (PEFT's layers_to_transform × target_modules). F32 because that is what PEFT
// saves by default: its adapters are created in float32 and get_peft_model(autocast_adapter_dtype=True) keeps them
// float32 over a float16/bfloat16 base (peft/tuners/tuners_utils.py, _cast_adapter_dtype). Errors name the path.
void export_peft(const std::string& out_dir, const lora_weights<float>& w, const model_config& m,
                 const std::string& base_model_name_or_path);

// Reads a PEFT LoRA adapter directory for model m. Checks: adapter_config.json exists and is a JSON object;
// peft_type "LORA"; task_type CAUSAL_LM or absent; r and lora_alpha positive numbers (PEFT defaults 8 and 8 when
// absent); lora_dropout in [0, 1); target_modules name LLaMA projections (a list of q_proj ... down_proj, optionally
// with a module-path prefix such as "self_attn.q_proj", or "all-linear"); features this engine cannot represent
// (DoRA, bias other than "none", rank_pattern/alpha_pattern, modules_to_save, fan_in_fan_out, ...) are refused by
// name; adapter_model.safetensors holds exactly the expected lora_A/lora_B tensors for every (layer, target), with the
// shapes this model implies, in F32/F16/BF16 (converted to f32). Restores r, alpha, dropout, use_rslora, targets and
// layers_to_transform. Every failure is a qls::error naming the file, the field or tensor and what to do.
lora_weights<float> load_peft(const std::string& dir, const model_config& m);

// Progress of a merged export, reported once the export is planned (tensors_done 0) and after every tensor written.
struct merged_export_progress {
    int64_t tensors_done = 0;
    int64_t tensors_total = 0;
    uint64_t bytes_done = 0; // bytes of tensor data written so far
    uint64_t bytes_total = 0;
    bool nf4_base = false; // the projections merged into are the dequantized NF4 ones
};

struct merged_export_options {
    // The run trained on an NF4 base quantized at load time: the projections are quantized then dequantized
    // (nf4_quantize / nf4_dequantize, as llama_model::load does with quantize_nf4) before the adapter is added.
    // A pre-quantized bitsandbytes checkpoint is NF4 whatever this says.
    bool quantize_nf4 = false;
    bool double_quant = true;
    // Shards of at most this many bytes of tensor data (5e9, transformers 4.x's max_shard_size "5GB"; a tensor
    // larger than the limit gets a shard of its own).
    uint64_t max_shard_bytes = 5'000'000'000ull;
    std::function<void(const merged_export_progress&)> on_progress; // called on the exporting thread
    const std::atomic<bool>* cancel = nullptr;                      // checked before every tensor
};

// Writes a Hugging Face model directory, streaming: for every weight of `base`, in the order of
// <Family>ForCausalLM.state_dict(), the weight is read, the seven projections of each layer get scale·B·A added
// where w holds an adapter (qls::lora_merge) after being read as llama_model::load reads them (f32; NF4-quantized
// and dequantized when opt.quantize_nf4; dequantized from a pre-quantized bitsandbytes checkpoint), and it is written
// to the current shard. Projections are written in their stored dtype (for an unquantized base, untouched projections
// round-trip bit-exactly through f32); those of a bitsandbytes checkpoint in the dtype of its embedding, without
// their quantization-state tensors. Every other weight is copied byte for byte. Host memory holds one tensor in f32,
// its output bytes and the adapter; the base's pages are released after each tensor.
// Layout: one model.safetensors, or shards named model-0000k-of-0000n.safetensors with
// model.safetensors.index.json, as transformers' save_pretrained lays them out; metadata {"format": "pt"}.
// config.json is copied byte for byte (a bitsandbytes checkpoint's without its "quantization_config"), and
// tokenizer.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json, added_tokens.json,
// chat_template.jinja and generation_config.json where the base has them.
// The folder is written as ".tmp-<name>" beside out_dir and published with publish_dir_atomic at the end, so out_dir
// holds either what it held before or the whole export. When out_dir already holds files, the new export's files
// and the weight files of an earlier export are replaced and anything else there is kept. A failure or a cancel
// (error_code::cancelled) leaves out_dir untouched and no temporary folder. out_dir must not be the base's own
// directory.
merged_export_progress export_merged(const std::string& out_dir, const hf_checkpoint& base,
                                     const lora_weights<float>& w, const merged_export_options& opt = {});

} // namespace qls
