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

#include <cstdint>
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

// Writes a Hugging Face model directory: every weight of `base` in its stored dtype, except that the seven projections
// of each layer are taken from model.params (f32; for a quantized base these are the dequantized values) with
// scale·B·A added where w holds an adapter (qls::lora_merge), then rounded to the tensor's stored dtype (for an
// unquantized base, untouched projections round-trip bit-exactly through f32). One model.safetensors, or shards of at
// most max_shard_bytes (default 5e9 bytes, transformers 4.x's "5GB"; transformers 5 defaults to "50GB") named
// model-0000k-of-0000n.safetensors with model.safetensors.index.json, as transformers' save_pretrained lays them
// out; metadata {"format": "pt"}. Weight files of a previous export in out_dir that the new layout does not use are
// removed. config.json is copied byte for byte, and tokenizer.model, tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, added_tokens.json and generation_config.json where the base has them. out_dir must not be
// the base's own directory.
void export_merged(const std::string& out_dir, const hf_checkpoint& base, const llama_model& model,
                   const lora_weights<float>& w, uint64_t max_shard_bytes = 5'000'000'000ull);

} // namespace qls
