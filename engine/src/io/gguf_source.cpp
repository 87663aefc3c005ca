// gguf_source — the model_source of a GGUF file (being written; until then a clear refusal).
#include "qls/error.h"
#include "qls/model_source.h"

namespace qls {

std::unique_ptr<model_source> open_gguf_source(const std::string& file) {
    throw error(error_code::unsupported, file + ": GGUF models cannot be read by this build",
                "convert the model to a Hugging Face directory (config.json + safetensors)");
}

} // namespace qls
