// chat: a model's chat template from any model source, its end-of-turn ids, and one reply generated through it.
#include "qls/chat.h"

#include "model/decode_loop.h"
#include "qls/error.h"

#include <algorithm>

namespace qls {

std::shared_ptr<const model_chat_template> load_model_chat_template(const model_source& src, const tokenizer& tok) {
    if (src.format() != "gguf") return load_model_chat_template(src.path());
    std::optional<chat_template_text> text = src.chat_template();
    if (!text) return nullptr;
    auto m = std::make_shared<model_chat_template>();
    m->tmpl = jinja_template::parse(std::move(text->text), src.path() + " (" + text->origin + ")");
    // llama.cpp's common_chat_templates_init: bos_token / eos_token are the vocabulary's texts of those ids
    if (tok.bos_id() >= 0) m->variables["bos_token"] = tok.piece(tok.bos_id());
    if (tok.eos_id() >= 0) m->variables["eos_token"] = tok.piece(tok.eos_id());
    return m;
}

std::vector<int> end_of_turn_ids(const tokenizer& tok, const model_config& cfg) {
    std::vector<int> ids = cfg.eos_token_ids;
    if (tok.eos_id() >= 0) ids.push_back(tok.eos_id());
    for (const char* t : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
                          "<\xEF\xBD\x9C"
                          "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"}) {
        const int id = tok.token_id(t);
        if (id >= 0 && tok.is_special(id)) ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int id) { return id < 0 || id >= tok.vocab_size(); }),
              ids.end());
    return ids;
}

chat_reply generate_chat(decoder& dec, const tokenizer& tok, const model_chat_template& tmpl,
                         const std::vector<chat_message>& conversation, const chat_reply_options& opts,
                         const std::function<bool(const std::string&)>& on_text) {
    check_decode_options(opts.max_new_tokens, opts.sampling);
    const model_config& cfg = dec.config();
    chat_reply r;
    r.prompt_ids = render_generation_prompt(conversation, tok, chat_template::model, &tmpl);
    const int ctx = cfg.max_position_embeddings;
    if (int64_t(r.prompt_ids.size()) >= ctx)
        throw error(error_code::invalid_argument,
                    "the conversation is " + std::to_string(r.prompt_ids.size()) +
                        " tokens but the model's context is " + std::to_string(ctx) +
                        " positions (max_position_embeddings)",
                    "start a new chat, or shorten the messages");
    const std::vector<int> stops = end_of_turn_ids(tok, cfg);
    decoded_text d = decode_loop(
        dec, tok, r.prompt_ids, opts.max_new_tokens, ctx, opts.sampling, /*emit_prompt=*/false,
        [&](int id) { return std::binary_search(stops.begin(), stops.end(), id); }, on_text);
    r.new_ids = std::move(d.new_ids);
    r.text = std::move(d.text);
    r.reason = d.reason;
    return r;
}

} // namespace qls
