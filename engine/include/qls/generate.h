// Text generation: prompt → tokens → a KV-cache decoder (CPU or CUDA, behind qls::decoder) → greedy/temperature/top-k/
// top-p sampling.
#pragma once

#include "qls/device.h"
#include "qls/llama.h"
#include "qls/lora.h"
#include "qls/tokenizer.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace qls {

struct sampling_options {
    float temperature = 1.0f; // 0 → greedy (argmax)
    int top_k = 0;            // 0 → off; else keep the k most likely tokens
    float top_p = 0.9f;       // 1 → off; else nucleus: smallest set whose probability reaches top_p
    uint64_t seed = 0;        // sampling is a pure function of (model, prompt, options, seed)
};

// Checks ranges; throws qls::error(invalid_argument) naming the option and its valid range.
void validate_sampling(const sampling_options& o);

// A reproducible sampler: std::mt19937_64 with an explicit 53-bit uniform so results do not depend
// on the standard library's distribution implementations.
class sampler {
public:
    explicit sampler(const sampling_options& o);
    // Picks the next token from logits (V). Greedy ties go to the lowest id.
    int sample(const std::vector<float>& logits);

private:
    double uniform(); // [0, 1) from the top 53 bits of one 64-bit draw
    sampling_options o_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int>> candidates_;
};

enum class stop_reason { eos, max_tokens, context_full, cancelled };

struct generate_options {
    std::string prompt;
    int max_new_tokens = 256;
    sampling_options sampling;
};

struct generate_result {
    std::vector<int> prompt_ids; // BOS + prompt tokens
    std::vector<int> new_ids;    // generated tokens (the stop token excluded)
    std::string text;            // prompt text + generated text, as llama2.c prints it (no BOS, no leading space)
    stop_reason reason = stop_reason::max_tokens;
};

// A KV-cache decoder, batch 1: feed one token at a time, get the logits (V) of the next. The CPU implementation is
// llama_decoder (llama.h); the CUDA one (make_cuda_decoder, gpu_train.h) keeps NF4 weights and its cache on the GPU.
class decoder {
public:
    virtual ~decoder() = default;
    // Empties the cache and sizes it for max_positions (at least 1, capped by config().max_position_embeddings): what
    // a generation needs (prompt + new tokens), never the whole configured context.
    virtual void reset(int max_positions) = 0;
    // Appends token at the next position and returns the logits (V) for the token that follows it. Throws
    // qls::error (invalid_argument) for a token outside the vocabulary or a full cache.
    virtual const std::vector<float>& step(int token) = 0;
    virtual int position() const = 0;
    virtual int capacity() const = 0;
    virtual const model_config& config() const = 0;
    virtual std::string device_label() const = 0; // "cpu", "cuda:0 (NVIDIA H200)"
};

// The CPU decoder over `model`'s f32 params (llama_decoder). With an adapter it decodes a private copy of the model
// with the adapter merged into the projections (lora_merge, as PEFT's merge_and_unload); without one it reads
// `model`, which must outlive it. Throws qls::error (invalid_argument) when the model holds no f32 projections (a
// model loaded for the GPU only).
std::unique_ptr<decoder> make_cpu_decoder(const llama_model& model, const lora_weights<float>* adapter = nullptr);
// The decoder for `device` (choose_train_device, device.h): "cuda" → make_cuda_decoder(model, adapter, device.index)
// (NF4 weights, the adapter applied beside them), anything else → make_cpu_decoder. `model` must outlive it.
std::unique_ptr<decoder> make_decoder(const llama_model& model, const compute_device& device,
                                      const lora_weights<float>* adapter = nullptr);

// Generates with `dec` (reset first to prompt + max_new_tokens positions); on_text (optional) receives each new piece of final text as it is produced (the prompt's text
// first) and may return false to stop. Stops at EOS (or a sampled BOS, which starts a new document),
// at max_new_tokens, or when the model's context is full.
generate_result generate(decoder& dec, const tokenizer& tok, const generate_options& opts,
                         const std::function<bool(const std::string&)>& on_text = {});
// The same on the CPU decoder of `model`.
generate_result generate(const llama_model& model, const tokenizer& tok, const generate_options& opts,
                         const std::function<bool(const std::string&)>& on_text = {});

} // namespace qls
