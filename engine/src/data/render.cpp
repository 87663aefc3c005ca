// Prompt templates (Alpaca, Llama-2 chat, ChatML, raw, the model's own Jinja template): a record becomes template
// pieces, each piece is tokenized on its own and the ids are concatenated with a per-token loss mask (responses +
// EOS by default).
#include "qls/chat_template.h"
#include "qls/dataset.h"
#include "qls/error.h"

#include <string_view>

namespace qls {

const char* chat_template_name(chat_template t) {
    switch (t) {
    case chat_template::auto_select: return "auto";
    case chat_template::alpaca: return "alpaca";
    case chat_template::llama2_chat: return "llama2";
    case chat_template::chatml: return "chatml";
    case chat_template::raw: return "raw";
    case chat_template::model: return "model";
    }
    return "unknown";
}

chat_template parse_chat_template(const std::string& name) {
    for (chat_template t : {chat_template::auto_select, chat_template::alpaca, chat_template::llama2_chat,
                            chat_template::chatml, chat_template::raw, chat_template::model})
        if (name == chat_template_name(t)) return t;
    throw error(error_code::invalid_argument, "unknown prompt template \"" + name + "\"",
                "use one of auto, alpaca, llama2, chatml, raw, model");
}

size_t data_example::loss_tokens() const {
    size_t n = 0;
    for (uint8_t m : loss) n += m != 0;
    return n;
}

namespace {

const char* k_template_hint =
    "alpaca datasets take the alpaca, llama2, chatml or model template; chat datasets (messages, sharegpt) take "
    "llama2, chatml or model (the model's own chat template); text and plain datasets take raw";

// Stanford Alpaca prompt, github.com/tatsu-lab/stanford_alpaca README ("prompt" section; train.py PROMPT_DICT
// has the same text). The README shows the response on the line after "### Response:", so the prompt ends in "\n".
constexpr std::string_view k_alpaca_with_input =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n";
constexpr std::string_view k_alpaca_no_input =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n";

// Meta's Llama-2 chat format, github.com/meta-llama/llama llama/generation.py: B_INST, E_INST = "[INST]", "[/INST]";
// B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"; each exchange is encoded as
// bos + f"{B_INST} {(prompt).strip()} {E_INST} {(answer).strip()} " + eos, the system block prefixed to the first
// user message.
constexpr std::string_view k_b_inst = "[INST]", k_e_inst = "[/INST]", k_b_sys = "<<SYS>>\n", k_e_sys = "\n<</SYS>>\n\n";

// OpenAI ChatML, github.com/openai/openai-python chatml.md: "<|im_start|>{role}\n{content}<|im_end|>\n" per message.
constexpr std::string_view k_im_start = "<|im_start|>", k_im_end = "<|im_end|>";

// A piece of a rendered template: text to tokenize on its own, or one special id (BOS/EOS).
struct piece {
    std::string text;
    int id = -1;
    bool response = false;
};

std::string strip(std::string_view s) {
    const char* ws = " \t\r\n\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    return std::string(s.substr(b, s.find_last_not_of(ws) - b + 1));
}

int special_id(const tokenizer& tok, bool bos) {
    const int id = bos ? tok.bos_id() : tok.eos_id();
    if (id < 0)
        throw error(error_code::unsupported, tok.path() + " defines no " + (bos ? "BOS" : "EOS") + " token",
                    "the prompt templates need a tokenizer with BOS and EOS tokens");
    return id;
}

// The conversation of a record under a chat template: Alpaca records become one exchange.
std::vector<chat_message> conversation_of(const data_record& r) {
    if (r.type == data_record::kind::chat) return r.messages;
    std::string user = r.instruction;
    if (!r.input.empty()) user += "\n\n" + r.input;
    return {chat_message{chat_role::user, std::move(user)}, chat_message{chat_role::assistant, r.output}};
}

std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
    std::string p(input.empty() ? k_alpaca_no_input : k_alpaca_with_input);
    p += "### Instruction:\n" + instruction + "\n\n";
    if (!input.empty()) p += "### Input:\n" + input + "\n\n";
    p += "### Response:\n";
    return p;
}

// Llama-2 pieces of a conversation ([system], user, assistant, ...). When the conversation ends with a user
// message (generation), the last exchange stops after "[/INST]".
void llama2_pieces(const std::vector<chat_message>& m, int bos, int eos, std::vector<piece>& out) {
    size_t k = 0;
    std::string system;
    bool has_system = false;
    if (!m.empty() && m[0].role == chat_role::system) {
        system = strip(m[0].content);
        has_system = true;
        k = 1;
    }
    bool first = true;
    for (; k < m.size(); ++k) {
        if (m[k].role == chat_role::user) {
            out.push_back({{}, bos, false});
            std::string prompt(k_b_inst);
            prompt += ' ';
            if (first && has_system) prompt += std::string(k_b_sys) + system + std::string(k_e_sys);
            prompt += strip(m[k].content) + " " + std::string(k_e_inst);
            out.push_back({std::move(prompt), -1, false});
            first = false;
        } else if (m[k].role == chat_role::assistant) {
            out.push_back({strip(m[k].content) + " ", -1, true});
            out.push_back({{}, eos, true});
        } else {
            throw error(error_code::invalid_argument, "a system message is only allowed first in a conversation");
        }
    }
}

// ChatML pieces: BOS, then the messages; each assistant message is a response followed by EOS.
void chatml_pieces(const std::vector<chat_message>& m, int bos, int eos, bool generation, std::vector<piece>& out) {
    out.push_back({{}, bos, false});
    std::string prompt;
    for (const chat_message& msg : m) {
        prompt += std::string(k_im_start) + chat_role_name(msg.role) + "\n";
        if (msg.role != chat_role::assistant) {
            prompt += msg.content + std::string(k_im_end) + "\n";
            continue;
        }
        out.push_back({std::move(prompt), -1, false});
        prompt.clear();
        out.push_back({msg.content + std::string(k_im_end) + "\n", -1, true});
        out.push_back({{}, eos, true});
    }
    if (generation) prompt += std::string(k_im_start) + "assistant\n";
    if (!prompt.empty()) out.push_back({std::move(prompt), -1, false});
}

// ---- the model's own template -------------------------------------------------------------------------------

nlohmann::ordered_json messages_json(const std::vector<chat_message>& m, size_t count) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (size_t k = 0; k < count && k < m.size(); ++k)
        out.push_back({{"role", chat_role_name(m[k].role)}, {"content", m[k].content}});
    return out;
}

std::string render_model(const model_chat_template& mt, const std::vector<chat_message>& m, size_t count, bool agp,
                         std::vector<generation_span>* spans = nullptr) {
    chat_request req;
    req.add_generation_prompt = agp;
    req.variables = mt.variables;
    template_output out = render_chat(mt.tmpl, messages_json(m, count), req);
    if (spans) *spans = std::move(out.generation);
    return std::move(out.text);
}

[[noreturn]] void not_a_prefix(const model_chat_template& mt, size_t message, const char* what) {
    throw error(error_code::unsupported,
                mt.tmpl.origin() + ": the chat template renders the conversation up to message " +
                    std::to_string(message + 1) + " differently " + what +
                    ", so the assistant turns cannot be located for the loss mask",
                "the template rewrites earlier turns once more messages follow (e.g. it drops the reasoning of "
                "earlier assistant turns); use a template with {% generation %} blocks, or the chatml or llama2 "
                "template");
}

bool starts_with(const std::string& s, const std::string& prefix) {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// Pieces of a conversation under the model's template. Responses are the {% generation %} spans when the template
// has them; otherwise each assistant turn i is the text render(messages[:i+1]) adds to
// render(messages[:i], add_generation_prompt=True), and every rendering must extend the previous one.
// generation=true (a generation prompt): the whole conversation with add_generation_prompt, no response.
void model_pieces(const std::vector<chat_message>& m, const model_chat_template& mt, bool generation,
                  std::vector<piece>& out) {
    if (generation) {
        out.push_back({render_model(mt, m, m.size(), true), -1, false});
        return;
    }
    if (mt.tmpl.has_generation_blocks()) {
        std::vector<generation_span> spans;
        const std::string text = render_model(mt, m, m.size(), false, &spans);
        size_t at = 0;
        for (const generation_span& s : spans) {
            if (s.begin < at || s.end > text.size()) continue; // nested or overlapping blocks: counted once
            out.push_back({text.substr(at, s.begin - at), -1, false});
            out.push_back({text.substr(s.begin, s.end - s.begin), -1, true});
            at = s.end;
        }
        out.push_back({text.substr(at), -1, false});
        return;
    }
    std::string done; // the rendered text accounted for so far
    for (size_t i = 0; i < m.size(); ++i) {
        if (m[i].role != chat_role::assistant) continue;
        const std::string prompt = render_model(mt, m, i, true);
        if (!starts_with(prompt, done)) not_a_prefix(mt, i, "once the next turn is cued");
        const std::string with_reply = render_model(mt, m, i + 1, false);
        if (!starts_with(with_reply, prompt)) not_a_prefix(mt, i, "once the assistant's reply follows");
        out.push_back({prompt.substr(done.size()), -1, false});
        out.push_back({with_reply.substr(prompt.size()), -1, true});
        done = with_reply;
    }
    const std::string full = render_model(mt, m, m.size(), false);
    if (!starts_with(full, done)) not_a_prefix(mt, m.size() - 1, "in the whole conversation");
    out.push_back({full.substr(done.size()), -1, false});
}

// The template writes BOS/EOS as text (bos_token, eos_token): cut them out of every text piece as their ids.
std::vector<piece> special_ids(std::vector<piece> in, const model_chat_template& mt, const tokenizer& tok) {
    std::vector<std::pair<std::string, int>> specials;
    for (const auto& [key, id] :
         {std::pair<const char*, int>{"bos_token", tok.bos_id()}, {"eos_token", tok.eos_id()}}) {
        auto it = mt.variables.find(key);
        if (it != mt.variables.end() && it->is_string() && !it->get<std::string>().empty() && id >= 0)
            specials.emplace_back(it->get<std::string>(), id);
    }
    if (specials.empty()) return in;
    std::vector<piece> out;
    for (piece& p : in) {
        if (p.id >= 0) {
            out.push_back(std::move(p));
            continue;
        }
        size_t at = 0;
        while (true) {
            size_t best = std::string::npos, len = 0;
            int id = -1;
            for (const auto& [text, sid] : specials) {
                const size_t f = p.text.find(text, at);
                if (f < best || (f == best && f != std::string::npos && text.size() > len)) {
                    best = f;
                    len = text.size();
                    id = sid;
                }
            }
            if (best == std::string::npos) break;
            out.push_back({p.text.substr(at, best - at), -1, p.response});
            out.push_back({{}, id, p.response});
            at = best + len;
        }
        out.push_back({p.text.substr(at), -1, p.response});
    }
    return out;
}

[[noreturn]] void mismatch(chat_template t, const char* what) {
    throw error(error_code::config, std::string("the ") + chat_template_name(t) + " template cannot render " + what,
                k_template_hint);
}

data_example tokenize(const std::vector<piece>& pieces, const tokenizer& tok, bool train_on_prompt) {
    data_example ex;
    for (const piece& p : pieces) {
        if (p.id >= 0) {
            ex.ids.push_back(p.id);
            ex.loss.push_back(p.response || train_on_prompt);
            continue;
        }
        if (p.text.empty()) continue;
        const std::vector<int> ids = tok.encode(p.text, false);
        ex.ids.insert(ex.ids.end(), ids.begin(), ids.end());
        ex.loss.insert(ex.loss.end(), ids.size(), uint8_t(p.response || train_on_prompt));
    }
    if (!ex.loss.empty()) ex.loss[0] = 0; // nothing predicts the first token
    return ex;
}

} // namespace

chat_template resolve_template(chat_template requested, dataset_format format, bool model_template_available) {
    const bool text = format == dataset_format::text_jsonl || format == dataset_format::plain_text;
    const bool chat = format == dataset_format::chat_messages || format == dataset_format::chat_sharegpt;
    const bool alpaca = format == dataset_format::alpaca;
    if (!text && !chat && !alpaca)
        throw error(error_code::invalid_argument, "resolve_template needs a detected dataset format, got auto");
    const std::string what = std::string("\"") + dataset_format_name(format) + "\" datasets";
    switch (requested) {
    case chat_template::auto_select:
        if (chat && model_template_available) return chat_template::model;
        return alpaca ? chat_template::alpaca : chat ? chat_template::llama2_chat : chat_template::raw;
    case chat_template::alpaca:
        if (!alpaca) mismatch(requested, what.c_str());
        return requested;
    case chat_template::llama2_chat:
    case chat_template::chatml:
        if (text) mismatch(requested, what.c_str());
        return requested;
    case chat_template::raw:
        if (!text) mismatch(requested, what.c_str());
        return requested;
    case chat_template::model:
        if (text) mismatch(requested, what.c_str());
        if (!model_template_available)
            throw error(error_code::config, "the model template was asked for, but the model has no chat template",
                        "the model directory needs chat_template.jinja or a \"chat_template\" in "
                        "tokenizer_config.json; otherwise choose the llama2 or chatml template");
        return requested;
    }
    return requested;
}

[[noreturn]] void no_model_template() {
    throw error(error_code::invalid_argument, "the model template was asked for, but no model chat template was given",
                "load it with load_model_chat_template(model_dir) and pass it in data_options::model_template");
}

data_example render_example(const data_record& rec, const tokenizer& tok, chat_template tmpl, bool train_on_prompt,
                            const model_chat_template* model) {
    if (tmpl == chat_template::model) {
        if (!model) no_model_template();
        if (rec.type == data_record::kind::text) mismatch(tmpl, "text records");
        std::vector<piece> pieces;
        model_pieces(conversation_of(rec), *model, false, pieces);
        data_example ex = tokenize(special_ids(std::move(pieces), *model, tok), tok, train_on_prompt);
        ex.source = rec.source;
        return ex;
    }
    const int bos = special_id(tok, true), eos = special_id(tok, false);
    std::vector<piece> pieces;
    switch (tmpl) {
    case chat_template::model: break;
    case chat_template::auto_select:
        throw error(error_code::invalid_argument, "render_example needs a resolved template (see resolve_template)");
    case chat_template::alpaca:
        if (rec.type != data_record::kind::instruction)
            mismatch(tmpl, rec.type == data_record::kind::chat ? "chat records" : "text records");
        pieces = {{{}, bos, false},
                  {alpaca_prompt(rec.instruction, rec.input), -1, false},
                  {rec.output, -1, true},
                  {{}, eos, true}};
        break;
    case chat_template::llama2_chat:
        if (rec.type == data_record::kind::text) mismatch(tmpl, "text records");
        llama2_pieces(conversation_of(rec), bos, eos, pieces);
        break;
    case chat_template::chatml:
        if (rec.type == data_record::kind::text) mismatch(tmpl, "text records");
        chatml_pieces(conversation_of(rec), bos, eos, false, pieces);
        break;
    case chat_template::raw:
        if (rec.type != data_record::kind::text)
            mismatch(tmpl, rec.type == data_record::kind::chat ? "chat records" : "instruction records");
        pieces = {{{}, bos, false}, {rec.text, -1, true}, {{}, eos, true}};
        break;
    }
    data_example ex = tokenize(pieces, tok, train_on_prompt);
    ex.source = rec.source;
    return ex;
}

std::vector<int> render_generation_prompt(const std::vector<chat_message>& conversation, const tokenizer& tok,
                                          chat_template tmpl, const model_chat_template* model) {
    if (conversation.empty() || conversation.back().role != chat_role::user)
        throw error(error_code::invalid_argument,
                    "a generation prompt needs a conversation ending with a user message");
    const size_t first = conversation[0].role == chat_role::system ? 1 : 0;
    for (size_t k = first; k < conversation.size(); ++k)
        if (conversation[k].role != ((k - first) % 2 == 0 ? chat_role::user : chat_role::assistant))
            throw error(error_code::invalid_argument,
                        "message " + std::to_string(k + 1) + " of the generation prompt is a " +
                            chat_role_name(conversation[k].role) +
                            " message; after an optional system message, user and assistant messages must alternate");
    if (tmpl == chat_template::model) {
        if (!model) no_model_template();
        std::vector<piece> pieces;
        model_pieces(conversation, *model, true, pieces);
        return tokenize(special_ids(std::move(pieces), *model, tok), tok, false).ids;
    }
    const int bos = special_id(tok, true), eos = special_id(tok, false);
    std::vector<piece> pieces;
    switch (tmpl) {
    case chat_template::model: break;
    case chat_template::auto_select:
        throw error(error_code::invalid_argument, "render_generation_prompt needs a resolved template, not auto");
    case chat_template::alpaca:
        if (conversation.size() != 1)
            throw error(error_code::invalid_argument,
                        "the alpaca template takes a single instruction (one user message), got " +
                            std::to_string(conversation.size()) + " messages",
                        "use the llama2 or chatml template for conversations");
        pieces = {{{}, bos, false}, {alpaca_prompt(conversation[0].content, {}), -1, false}};
        break;
    case chat_template::llama2_chat: llama2_pieces(conversation, bos, eos, pieces); break;
    case chat_template::chatml: chatml_pieces(conversation, bos, eos, true, pieces); break;
    case chat_template::raw: {
        std::string text;
        for (const chat_message& m : conversation) text += m.content;
        pieces = {{{}, bos, false}, {std::move(text), -1, false}};
        break;
    }
    }
    return tokenize(pieces, tok, false).ids;
}

} // namespace qls
