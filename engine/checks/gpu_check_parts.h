// gpu_check_parts — private to engine/checks: the pieces of `qlora check-gpu` that several checks share (the fine-tune
// beside the CPU, the greedy decoders side by side).
#pragma once

#include "qls/generate.h" // defines: decoder
#include "qls/gpu_checks.h"
#include "qls/llama.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qls {

// A short LoRA fine-tune (rank 8, alpha 16, 32-bit AdamW at lr 3e-3, B x T windows of `ids`, `steps` steps) of
// `model` (loaded NF4: its params hold the exact dequantization) on GPU `device` beside the same steps on the CPU
// reference: first the LoRA gradients of one batch with a random B (one row per adapter tensor kind), then one row
// per step (the two losses, within 1%), then the run with gradient checkpointing off, equal bit for bit. `label`
// (empty for none) prefixes every row's shape. ids.size() must exceed T + 1 (and B*T + 1).
std::vector<gpu_check_row> gpu_finetune_rows(const llama_model& model, const std::vector<int>& ids, int B, int T,
                                             int steps, uint64_t seed, const std::string& label, int device);

// Greedy decoding on the CPU, the GPU fed the CPU's tokens (teacher forcing), `n` new tokens after `prompt`: a
// generate_greedy row (same tokens, or a disagreement that is a near tie) and a generate_logits row (within 2^-5
// of the CPU's largest logit).
std::vector<gpu_check_row> gpu_compare_decoders(decoder& cpu, decoder& gpu, const std::vector<int>& prompt, int n,
                                                const std::string& label);

} // namespace qls
