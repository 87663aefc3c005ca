// chat — one assistant turn through a model's own chat template: the template of any model source, the tokens that
// end a turn, and a reply generated up to one of them (what `qlora generate --chat` and the Playground's chat run).
#pragma once

#include "qls/chat_template.h"
#include "qls/dataset.h"
#include "qls/generate.h"
#include "qls/model_source.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qls {

// The model's chat template with the special-token variables it reads, from any model source: a Hugging Face
// directory (chat_template.jinja / tokenizer_config.json, whose bos_token, eos_token ... are the variables) or a GGUF
// file (tokenizer.chat_template; bos_token / eos_token are the texts of the vocabulary's BOS and EOS tokens, as
// llama.cpp passes them). nullptr when the model has no template; a template that does not parse throws naming it.
std::shared_ptr<const model_chat_template> load_model_chat_template(const model_source& src, const tokenizer& tok);

// The ids that end an assistant turn: the tokenizer's EOS, the config's eos_token_id(s), and the special tokens
// llama.cpp treats as end of turn when the vocabulary has them (src/llama-vocab.cpp, special_eot_id:
// <|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>, <EOT>, <｜end▁of▁sentence｜>). Sorted, unique.
std::vector<int> end_of_turn_ids(const tokenizer& tok, const model_config& cfg);

struct chat_reply_options {
    int max_new_tokens = 512;
    sampling_options sampling;
};

struct chat_reply {
    std::vector<int> prompt_ids; // the rendered conversation with the generation prompt, as the model saw it
    std::vector<int> new_ids;    // the reply's tokens (the end-of-turn token excluded)
    std::string text;            // the reply's text
    stop_reason reason = stop_reason::max_tokens;
};

// Renders `conversation` ([system], user, assistant, ..., user) with the template's generation prompt into the same
// ids a training example's prefix has (render_generation_prompt), then samples with `dec` until an end-of-turn token
// (neither kept nor printed), max_new_tokens, or a full context. on_text (optional) receives the reply's text as it
// becomes final and may return false to stop (reason cancelled).
chat_reply generate_chat(decoder& dec, const tokenizer& tok, const model_chat_template& tmpl,
                         const std::vector<chat_message>& conversation, const chat_reply_options& opts,
                         const std::function<bool(const std::string&)>& on_text = {});

} // namespace qls
