// open_model_source — picks the model_source for a path: a directory is a Hugging Face checkpoint, *.gguf a GGUF file.
#include "qls/model_source.h"

#include "qls/error.h"

#include <filesystem>

namespace qls {

std::unique_ptr<model_source> open_model_source(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const bool gguf_name = path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
    if (gguf_name && !fs::is_directory(path, ec)) return open_gguf_source(path);
    if (!fs::exists(path, ec))
        throw error(error_code::io, "model " + path + " does not exist",
                    "choose a Hugging Face model directory (config.json, *.safetensors, tokenizer) or a .gguf file");
    if (!fs::is_directory(path, ec))
        throw error(error_code::unsupported, "model " + path + " is a file but not a .gguf file",
                    "choose a Hugging Face model directory (config.json, *.safetensors, tokenizer) or a .gguf file");
    return open_hf_source(path);
}

} // namespace qls
