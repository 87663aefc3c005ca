// hf_checkpoint — a Hugging Face model directory: config.json plus single or sharded safetensors.
#pragma once

#include "qls/model_config.h"
#include "qls/safetensors.h"
#include "qls/tokenizer.h"

#include <map>
#include <string>
#include <vector>

namespace qls {

class hf_checkpoint {
public:
    // Opens DIR/config.json and DIR/model.safetensors, or DIR/model.safetensors.index.json and every shard
    // its weight_map names (each shard validated on open). Errors name the missing or malformed file.
    static hf_checkpoint open(const std::string& dir);

    const std::string& dir() const { return dir_; }
    const model_config& config() const { return config_; }
    std::vector<std::string> tensor_names() const; // sorted
    bool has(const std::string& name) const;
    // The file that holds a tensor and its entry; throws naming the tensor if absent.
    const safetensors_file& file_of(const std::string& name) const;
    const safetensors_entry& entry(const std::string& name) const;
    // Reads a tensor as f32 after checking its shape equals `expected` (derived from config.json);
    // a mismatch throws error_code::shape_mismatch naming the file, tensor, both shapes and the config.
    tensor read_f32(const std::string& name, const shape_t& expected) const;
    // The same into out (numel(expected) floats), converted straight from the mapping (safetensors read_weight_f32_into).
    void read_f32_into(const std::string& name, const shape_t& expected, float* out) const;
    // A BF16-stored weight's bits into out (numel(expected) uint16), the same shape check first; false when the tensor
    // is stored in another dtype (read_f32_into then).
    bool read_bf16_into(const std::string& name, const shape_t& expected, uint16_t* out) const;

private:
    void check_shape(const std::string& name, const shape_t& expected) const;

    std::string dir_;
    model_config config_;
    std::vector<safetensors_file> files_;
    std::map<std::string, size_t> where_; // tensor name -> index in files_
};

// The tokenizer of a directory, as transformers' AutoTokenizer picks it (the fast tokenizer first): DIR/tokenizer.json
// when present, else DIR/tokenizer.model (SentencePiece). `which` (optional) receives what was used, e.g.
// "tokenizer.json (byte-level BPE); tokenizer.model is also there and is not used". No vocabulary check.
tokenizer load_tokenizer_in(const std::string& dir, std::string* which = nullptr);

// load_tokenizer_in(ckpt.dir()) with its vocabulary checked against config.json's vocab_size V. Rule: a tokenizer
// with more ids than V is an error (its ids would index past the embedding); a tokenizer with fewer ids is accepted
// only when V exceeds it by at most 128 (checkpoints often pad the embedding rows to a multiple of 64/128, or reserve
// a few added tokens); any larger gap is an error, since the tokenizer then almost certainly belongs to another
// model. Errors name both files and both sizes.
tokenizer load_tokenizer_for(const hf_checkpoint& ckpt, std::string* which = nullptr);

} // namespace qls
