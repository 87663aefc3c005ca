// The sampling loop that generate() (generate.cpp) and generate_chat() (chat.cpp) share.
#pragma once

#include "qls/generate.h"
#include "qls/tokenizer.h"

#include <functional>
#include <string>
#include <vector>

namespace qls {

struct decoded_text {
    std::vector<int> new_ids; // the sampled tokens, the stop token excluded
    std::string text;         // every piece emitted (the prompt's first when asked)
    stop_reason reason = stop_reason::max_tokens;
};

// Refuses (error invalid_argument) a negative max_new_tokens and what validate_sampling refuses.
void check_decode_options(int max_new_tokens, const sampling_options& sampling);

// Resets dec to the prompt and max_new_tokens more positions (at most ctx, at least 1), feeds prompt_ids, then
// samples up to max_new_tokens tokens. Stops before a token for which is_stop is true (eos), when on_text has
// returned false (cancelled), or when the cache is full (context_full). The text goes through a detokenizer and
// reaches on_text piece by piece; with emit_prompt the prompt's own text comes first.
decoded_text decode_loop(decoder& dec, const tokenizer& tok, const std::vector<int>& prompt_ids, int max_new_tokens,
                         int ctx, const sampling_options& sampling, bool emit_prompt,
                         const std::function<bool(int id)>& is_stop,
                         const std::function<bool(const std::string&)>& on_text);

} // namespace qls
