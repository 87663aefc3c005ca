// chat_template — a model's Jinja chat template rendered as Hugging Face transformers renders it, and where a
// Hugging Face directory keeps it.
//
// The engine implements the Jinja2 3.1 language subset chat templates use, configured as transformers'
// utils/chat_template_utils.py does: trim_blocks, lstrip_blocks, the loopcontrols extension (break/continue), the
// AssistantTracker extension ({% generation %} ... {% endgeneration %} records the assistant spans), an immutable
// sandbox (list.append and other mutating methods are refused), the globals raise_exception(msg) and
// strftime_now(fmt), and HF's tojson filter = json.dumps(x, ensure_ascii=False, indent, separators, sort_keys).
// Values behave as in Python: 1.0 prints "1.0", True "True", None "None", lists and dicts print as repr, strings
// index by code point, Undefined prints "" and fails on attribute access.
//
// Every failure is a qls::error naming the template's origin and line (and column for syntax errors); nesting,
// macro recursion, loop work and the output size are bounded so no template or input can crash or hang it.
#pragma once

#include "qls/model_source.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qls {

namespace jinja {
struct program;
}

// Bounds on one template and one rendering.
struct template_limits {
    int max_nesting = 128;                      // blocks inside blocks, expressions inside expressions (parse time)
    int max_call_depth = 64;                    // macro calls inside macro calls (render time)
    size_t max_output_bytes = size_t(16) << 20; // the rendered text and any string built on the way
    uint64_t max_steps = 4'000'000;             // statements executed + loop iterations + calls
};

// A span of the rendered text written inside {% generation %}: [begin, end) in bytes.
struct generation_span {
    size_t begin = 0, end = 0;
    bool operator==(const generation_span&) const = default;
};

struct template_output {
    std::string text;
    std::vector<generation_span> generation; // in the order the blocks finished
};

struct render_options {
    // strftime_now's clock: the local time to format (Python's datetime.now()). Unset: the system's local time.
    std::function<std::tm()> now;
};

class jinja_template {
public:
    // Parses `text`; origin names it in every message ("…/tokenizer_config.json", "chat_template.jinja").
    // Throws qls::error (format) "origin:line:col: problem" on a syntax error or an unknown filter/test.
    static jinja_template parse(std::string text, std::string origin, const template_limits& limits = {});

    // Renders with `context` (an object: its keys are the template's variables). Throws qls::error naming the
    // origin and line: invalid_argument when the template calls raise_exception (its message is kept verbatim),
    // format for every other runtime error (undefined attribute, type error, limit exceeded).
    std::string render(const nlohmann::ordered_json& context, const render_options& opt = {}) const;
    template_output render_tracked(const nlohmann::ordered_json& context, const render_options& opt = {}) const;

    const std::string& origin() const;
    bool has_generation_blocks() const; // the template marks assistant output with {% generation %}

private:
    std::shared_ptr<const jinja::program> program_;
    template_limits limits_;
};

// What apply_chat_template passes besides the messages.
struct chat_request {
    nlohmann::ordered_json tools = nullptr;     // a list of tool schemas, or null ("tools" is always defined)
    nlohmann::ordered_json documents = nullptr; // RAG documents, or null
    bool add_generation_prompt = false;
    // Special tokens (bos_token, eos_token, unk_token, pad_token, ...) as strings, plus any extra template
    // variables (enable_thinking, date_string, ...). Keys here override nothing above.
    nlohmann::ordered_json variables = nlohmann::ordered_json::object();
};

// The context transformers' render_jinja_template builds: messages, tools, documents, add_generation_prompt, then
// every entry of req.variables; rendered with the generation spans.
template_output render_chat(const jinja_template& t, const nlohmann::ordered_json& messages, const chat_request& req,
                            const render_options& opt = {});

// The chat template of a Hugging Face directory, as transformers finds it: chat_template.jinja, else
// tokenizer_config.json's "chat_template" (a string, or a list of {"name", "template"} whose "default" entry is
// used), else chat_template.json's "chat_template". nullopt when none is there; a malformed file throws naming it.
std::optional<chat_template_text> find_chat_template(const std::string& dir);

// The special tokens of tokenizer_config.json (bos_token, eos_token, unk_token, pad_token, sep_token, cls_token,
// mask_token and additional_special_tokens), each a string or an AddedToken {"content": ...}, as template
// variables (strings; additional_special_tokens a list of strings). An empty object when the file is absent.
nlohmann::ordered_json read_special_tokens(const std::string& dir);

// A model's chat template ready for the dataset renderer (dataset.h chat_template::model): the parsed template and
// the variables apply_chat_template adds (the special tokens of tokenizer_config.json).
struct model_chat_template {
    jinja_template tmpl;
    nlohmann::ordered_json variables = nlohmann::ordered_json::object();
};

// find_chat_template + parse + read_special_tokens for a Hugging Face directory; nullptr when it has no template.
// Throws qls::error naming the file when the template does not parse or tokenizer_config.json is malformed.
std::shared_ptr<const model_chat_template> load_model_chat_template(const std::string& dir);

} // namespace qls
