// qls::jinja_template (parse, render), render_chat (transformers' apply_chat_template context) and the chat template
// discovery of a Hugging Face directory (transformers tokenization_utils_base / processing_utils: chat_template.jinja,
// then tokenizer_config.json "chat_template", then chat_template.json).
#include "qls/chat_template.h"

#include "jinja_internal.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/json_input.h"

#include <filesystem>

namespace qls {

jinja_template jinja_template::parse(std::string text, std::string origin, const template_limits& limits) {
    if (text.size() > limits.max_output_bytes)
        throw error(error_code::format,
                    origin + ": the chat template is " + std::to_string(text.size()) + " bytes, more than the " +
                        std::to_string(limits.max_output_bytes) + " allowed",
                    "a real chat template is a few kilobytes; check that the right file is used");
    jinja_template t;
    const std::vector<jinja::token> tokens = jinja::lex(text, origin);
    t.program_ = jinja::parse(tokens, origin, limits.max_nesting);
    t.limits_ = limits;
    return t;
}

std::string jinja_template::render(const nlohmann::ordered_json& context, const render_options& opt) const {
    return render_tracked(context, opt).text;
}

template_output jinja_template::render_tracked(const nlohmann::ordered_json& context, const render_options& opt) const {
    QLS_ASSERT(program_);
    return jinja::execute(*program_, context, opt, limits_);
}

const std::string& jinja_template::origin() const {
    QLS_ASSERT(program_);
    return program_->origin;
}

bool jinja_template::has_generation_blocks() const { return program_ && program_->has_generation; }

template_output render_chat(const jinja_template& t, const nlohmann::ordered_json& messages, const chat_request& req,
                            const render_options& opt) {
    if (!messages.is_array())
        throw error(error_code::invalid_argument, "render_chat: messages must be a JSON array",
                    "pass the conversation as [{\"role\": ..., \"content\": ...}, ...]");
    // transformers render_jinja_template: template.render(messages=chat, tools=tool_schemas, documents=documents,
    // add_generation_prompt=..., **template_kwargs) where template_kwargs holds the special tokens and extras.
    nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
    ctx["messages"] = messages;
    ctx["tools"] = req.tools;
    ctx["documents"] = req.documents;
    ctx["add_generation_prompt"] = req.add_generation_prompt;
    if (!req.variables.is_null() && !req.variables.is_object())
        throw error(error_code::invalid_argument, "render_chat: variables must be a JSON object",
                    "pass special tokens and extra template variables as {\"bos_token\": \"<s>\", ...}");
    if (req.variables.is_object())
        for (auto it = req.variables.begin(); it != req.variables.end(); ++it) ctx[it.key()] = it.value();
    return t.render_tracked(ctx, opt);
}

namespace {

const char* k_config_hint = "tokenizer_config.json should hold \"chat_template\" as a string or a list of "
                            "{\"name\", \"template\"} objects; re-download the model's tokenizer files";

// Reads a tokenizer file after checking its size (a chat template is kilobytes, tokenizer_config.json at most a
// few megabytes with its added-token table).
std::string read_bounded(const std::string& path, uintmax_t max_bytes) {
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(path, ec);
    if (!ec && size > max_bytes)
        throw error(error_code::format,
                    path + ": " + std::to_string(size) + " bytes, more than the " + std::to_string(max_bytes) +
                        " a tokenizer file may have",
                    "check that the model directory holds the right files; re-download the tokenizer files");
    return read_file_text(path);
}

constexpr uintmax_t k_max_template_file = uintmax_t(16) << 20, k_max_config_file = uintmax_t(64) << 20;

nlohmann::json read_json(const std::string& path) {
    return parse_json_input(read_bounded(path, k_max_config_file), path, "re-download the model's tokenizer files");
}

} // namespace

std::optional<chat_template_text> find_chat_template(const std::string& dir) {
    const std::string jinja_path = path_join(dir, "chat_template.jinja");
    if (path_is_file(jinja_path)) return chat_template_text{read_bounded(jinja_path, k_max_template_file), jinja_path};

    const std::string config_path = path_join(dir, "tokenizer_config.json");
    if (path_is_file(config_path)) {
        const nlohmann::json cfg = read_json(config_path);
        if (!cfg.is_object()) throw error(error_code::format, config_path + ": not a JSON object", k_config_hint);
        if (auto it = cfg.find("chat_template"); it != cfg.end() && !it->is_null()) {
            if (it->is_string()) return chat_template_text{it->get<std::string>(), config_path};
            if (!it->is_array())
                throw error(error_code::format,
                            config_path + ": \"chat_template\" is " + json_shown(*it) +
                                ", not a string or a list of named templates",
                            k_config_hint);
            // A list of named templates: transformers uses the one named "default".
            std::string names;
            for (const auto& entry : *it) {
                if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
                    !entry["name"].is_string() || !entry["template"].is_string())
                    throw error(error_code::format,
                                config_path + ": an entry of \"chat_template\" is " + json_shown(entry) +
                                    ", not {\"name\": ..., \"template\": ...}",
                                k_config_hint);
                const std::string name = entry["name"].get<std::string>();
                if (name == "default")
                    return chat_template_text{entry["template"].get<std::string>(),
                                              config_path + " (chat_template \"default\")"};
                names += (names.empty() ? "" : ", ") + name;
            }
            throw error(error_code::format,
                        config_path + ": \"chat_template\" lists named templates (" + names +
                            ") but none is \"default\"",
                        "name one of them \"default\" in tokenizer_config.json, or write the template to use into "
                        "chat_template.jinja beside it");
        }
    }

    const std::string json_path = path_join(dir, "chat_template.json");
    if (path_is_file(json_path)) {
        const nlohmann::json j = read_json(json_path);
        if (!j.is_object() || !j.contains("chat_template") || !j["chat_template"].is_string())
            throw error(error_code::format, json_path + ": no \"chat_template\" string in it",
                        "chat_template.json should be {\"chat_template\": \"...\"}");
        return chat_template_text{j["chat_template"].get<std::string>(), json_path};
    }
    return std::nullopt;
}

nlohmann::ordered_json read_special_tokens(const std::string& dir) {
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    const std::string config_path = path_join(dir, "tokenizer_config.json");
    if (!path_is_file(config_path)) return out;
    const nlohmann::json cfg = read_json(config_path);
    if (!cfg.is_object()) throw error(error_code::format, config_path + ": not a JSON object", k_config_hint);
    // A special token is a string or an AddedToken dict {"content": "<s>", "lstrip": ..., ...}.
    auto token_text = [&](const nlohmann::json& v, const std::string& key) -> std::optional<std::string> {
        if (v.is_null()) return std::nullopt;
        if (v.is_string()) return v.get<std::string>();
        if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
        throw error(error_code::format,
                    config_path + ": \"" + key + "\" is " + json_shown(v) + ", not a string or {\"content\": ...}",
                    "re-download the model's tokenizer files");
    };
    for (const char* key :
         {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
        auto it = cfg.find(key);
        if (it == cfg.end()) continue;
        if (auto t = token_text(*it, key)) out[key] = *t;
    }
    if (auto it = cfg.find("additional_special_tokens"); it != cfg.end() && it->is_array()) {
        nlohmann::ordered_json list = nlohmann::ordered_json::array();
        for (const auto& v : *it)
            if (auto t = token_text(v, "additional_special_tokens")) list.push_back(*t);
        out["additional_special_tokens"] = std::move(list);
    }
    return out;
}

std::shared_ptr<const model_chat_template> load_model_chat_template(const std::string& dir) {
    std::optional<chat_template_text> text = find_chat_template(dir);
    if (!text) return nullptr;
    auto m = std::make_shared<model_chat_template>();
    m->tmpl = jinja_template::parse(std::move(text->text), text->origin);
    m->variables = read_special_tokens(dir);
    return m;
}

} // namespace qls
