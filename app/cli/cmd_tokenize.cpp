// qlora tokenize: the ids (and pieces) a model's tokenizer gives a text as a prompt; needs only the tokenizer files.
#include "args.h"
#include "commands.h"

#include "qls/hf_checkpoint.h"
#include "qls/model_source.h"
#include "qls/tokenizer.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

namespace qlora_cli {

int cmd_tokenize(int argc, char** argv) {
    args a(argc, argv, 2, {"model", "text"}, {"json"});
    if (!a.positional().empty()) throw usage_error("unexpected argument '" + a.positional()[0] + "'");
    auto model = a.get("model");
    if (!model)
        throw usage_error("--model PATH is required",
                          "a directory with tokenizer.json or tokenizer.model (and tokenizer_config.json), or a .gguf "
                          "file");
    auto text = a.get("text");
    if (!text) throw usage_error("--text TEXT is required");

    std::string which;
    std::error_code ec;
    const std::filesystem::path path(*model);
    const bool gguf = path.extension() == ".gguf" && !std::filesystem::is_directory(path, ec);
    // a directory needs only its tokenizer files: no weights, no config.json (so no vocabulary-size check)
    qls::tokenizer tok = gguf ? qls::open_gguf_source(*model)->load_tokenizer(&which)
                              : qls::load_tokenizer_in(*model, &which);
    const std::vector<int> ids = tok.encode_prompt(*text);

    if (a.has("json")) {
        nlohmann::json j;
        j["tokenizer"] = which;
        j["kind"] = tok.kind();
        j["ids"] = ids;
        nlohmann::json pieces = nlohmann::json::array();
        for (int id : ids) pieces.push_back(tok.piece(id));
        j["pieces"] = std::move(pieces);
        j["count"] = ids.size();
        std::printf("%s\n", j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return 0;
    }
    std::printf("tokenizer %s\n", which.c_str());
    std::printf("%zu tokens\n", ids.size());
    for (int id : ids) {
        const std::string p = tok.piece(id);
        std::printf("%8d  %s%s\n", id,
                    nlohmann::json(p).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str(),
                    tok.is_special(id) ? "  (special)" : "");
    }
    return 0;
}

} // namespace qlora_cli
