// model_source — a model on disk as every loader sees it: a Hugging Face directory (config.json + safetensors shards,
// read tensor by tensor from memory-mapped files) or a GGUF file (llama.cpp's format, dequantized tensor by tensor).
//
// llama_model::load, the tokenizer and chat-template lookup, `qlora info` and the studio's Model page all go through
// this one interface, so a new on-disk format is one new implementation (io/<format>_source.cpp).
#pragma once

#include "qls/model_config.h"
#include "qls/quant.h"
#include "qls/tensor.h"
#include "qls/tokenizer.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qls {

class hf_checkpoint;

// One stored weight, named as Hugging Face names it (GGUF names are mapped through the architecture table).
struct weight_info {
    std::string name;          // "model.layers.0.self_attn.q_proj.weight"
    shape_t shape;             // Hugging Face layout: linear weights (out, in)
    std::string stored;        // how the file stores it: "BF16", "F16", "F32", "NF4", "Q4_1", "Q8_0", ...
    uint64_t stored_bytes = 0; // bytes it occupies in the file
};

// A chat template's text and where it was found: "tokenizer_config.json", "chat_template.jinja",
// "GGUF metadata tokenizer.chat_template".
struct chat_template_text {
    std::string text;
    std::string origin;
};

// Progress of a model load, reported after every tensor.
struct load_progress {
    int64_t tensors_done = 0;
    int64_t tensors_total = 0;
    uint64_t bytes_done = 0; // stored bytes read so far
    uint64_t bytes_total = 0;
    double seconds = 0; // since the load began
};

// What a caller hands a load: a progress callback (called on the loading thread) and a cancel flag, checked
// between tensors; a cancelled load throws qls::error(error_code::cancelled) and leaves nothing behind.
struct load_control {
    std::function<void(const load_progress&)> on_progress;
    const std::atomic<bool>* cancel = nullptr;
    // Test hook: sleep this long after each tensor (a slowed load for progress and cancel tests); 0 in every real use.
    int test_delay_ms_per_tensor = 0;
};

class model_source {
public:
    virtual ~model_source() = default;
    virtual const std::string& path() const = 0; // the directory or the .gguf file
    virtual std::string format() const = 0;      // "safetensors" or "gguf"
    virtual const model_config& config() const = 0;
    // Every stored weight the model has, in file order (the loader's progress totals come from here).
    virtual const std::vector<weight_info>& weights() const = 0;
    virtual bool has(const std::string& name) const = 0;
    // Reads one weight as f32 in Hugging Face layout into out (numel(expected) floats), after checking the stored
    // shape equals `expected`: converts BF16/F16/F32, or dequantizes GGUF blocks and undoes llama.cpp's q/k row
    // permutation. Throws qls::error naming the file and the tensor (absent, shape mismatch, NaN/Inf, unsupported).
    virtual void read_f32(const std::string& name, const shape_t& expected, float* out) const = 0;
    // The same weight's BF16 bits into out (resized to numel(expected)) when the source stores it as BF16 (the same
    // checks), for a quantizer that takes bf16; false, with out untouched, otherwise (the default: GGUF).
    virtual bool read_bf16(const std::string& name, const shape_t& expected, std::vector<uint16_t>& out) const {
        return false;
    }
    // A pre-quantized bitsandbytes NF4 weight stored under `name` (HF *-bnb-4bit checkpoints); nullopt when the
    // source stores that weight any other way.
    virtual std::optional<nf4_tensor> read_nf4(const std::string& name, int64_t rows, int64_t cols) const {
        return std::nullopt;
    }
    // Whether read_nf4 would return a value for `name`, without reading it. Default: weights() lists it as "NF4".
    virtual bool stores_nf4(const std::string& name) const {
        for (const weight_info& w : weights())
            if (w.name == name) return w.stored == "NF4";
        return false;
    }
    // The model's tokenizer, its vocabulary checked against config().vocab_size. `which` (optional) receives one
    // sentence naming what was used, e.g. "tokenizer.json (byte-level BPE); tokenizer.model is also there, not used".
    virtual tokenizer load_tokenizer(std::string* which = nullptr) const = 0;
    // The model's chat template, when it has one.
    virtual std::optional<chat_template_text> chat_template() const = 0;
};

// Opens PATH: a directory → a Hugging Face checkpoint; a file whose name ends in ".gguf" → GGUF. Errors name PATH.
std::unique_ptr<model_source> open_model_source(const std::string& path);
// The two implementations (io/hf_source.cpp, io/gguf_source.cpp).
std::unique_ptr<model_source> open_hf_source(const std::string& dir);
std::unique_ptr<model_source> open_hf_source(const hf_checkpoint& ckpt); // shares the open checkpoint's mappings
std::unique_ptr<model_source> open_gguf_source(const std::string& file);

} // namespace qls
