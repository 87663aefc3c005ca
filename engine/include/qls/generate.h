// Text generation from a llama_model: prompt → tokens → KV-cache decoding with greedy/temperature/top-k/top-p sampling.
#pragma once

#include "qls/llama.h"
#include "qls/tokenizer.h"

#include <cstdint>
#include <functional>
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

// Generates; on_text (optional) receives each new piece of final text as it is produced (the prompt's text
// first) and may return false to stop. Stops at EOS (or a sampled BOS, which starts a new document),
// at max_new_tokens, or when the model's context is full.
generate_result generate(const llama_model& model, const tokenizer& tok, const generate_options& opts,
                         const std::function<bool(const std::string&)>& on_text = {});

} // namespace qls
