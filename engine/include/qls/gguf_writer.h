// gguf_writer — writing GGUF files (llama.cpp's model format) tensor by tensor, and quantizing f32 rows into ggml
// blocks (F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K) for them.
//
// Layout written (ggml docs/gguf.md, version 3, little-endian): "GGUF", u32 3, u64 tensor_count, u64 kv_count; the
// metadata entries in insertion order (u64-length key, u32 value type, value; arrays: u32 element type, u64 count,
// elements); the tensor infos in the order given (name, u32 n_dims, u64 dims ne0 first, u32 ggml type, u64 offset
// from the data section); zero padding to the alignment; the data section, each tensor at an aligned offset and
// followed by zero padding to the next. The file is written as PATH.tmp beside PATH, fsynced and renamed over PATH at
// finish(), so PATH holds either what it held before or the whole new file.
#pragma once

#include "qls/gguf.h"
#include "qls/lora.h"
#include "qls/model_config.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qls {

// Metadata entries in insertion order; setting a key again replaces its value in place.
class gguf_metadata {
public:
    void set_u8(std::string_view key, uint8_t v);
    void set_i8(std::string_view key, int8_t v);
    void set_u16(std::string_view key, uint16_t v);
    void set_i16(std::string_view key, int16_t v);
    void set_u32(std::string_view key, uint32_t v);
    void set_i32(std::string_view key, int32_t v);
    void set_u64(std::string_view key, uint64_t v);
    void set_i64(std::string_view key, int64_t v);
    void set_f32(std::string_view key, float v);
    void set_f64(std::string_view key, double v);
    void set_bool(std::string_view key, bool v);
    void set_string(std::string_view key, std::string_view v);
    void set_string_array(std::string_view key, const std::vector<std::string>& v);
    void set_i32_array(std::string_view key, const std::vector<int32_t>& v);
    void set_f32_array(std::string_view key, const std::vector<float>& v);
    // Copies one entry of an open file, whatever its type (arrays of any element type, nested arrays refused).
    void copy_from(const gguf_file& f, std::string_view key);
    bool has(std::string_view key) const;
    void erase(std::string_view key);
    size_t size() const { return entries_.size(); }
    std::vector<std::string> keys() const;
    // The serialized entries (what follows the header), and their byte count.
    std::string serialize() const;

private:
    struct entry {
        std::string key;
        std::string value; // u32 type + encoded value
    };
    void put(std::string_view key, std::string value);
    std::vector<entry> entries_;
};

// One tensor of a file to write. dims as GGUF lists them, ne0 (fastest) first: a row-major [out][in] matrix is
// {in, out}.
struct gguf_tensor_spec {
    std::string name;
    std::vector<int64_t> dims;
    ggml_type type = ggml_type::f32;
};

// Bytes the tensor's data takes: numel / block_size · type_size. Throws error{invalid_argument} naming the tensor when
// a dimension is not positive, ne0 is not a multiple of the type's block size, the type is unknown, or the size
// overflows.
uint64_t gguf_tensor_bytes(const gguf_tensor_spec& t);

// The size of the whole file these would make (header, metadata, infos, padding, data).
uint64_t gguf_file_size(const gguf_metadata& md, const std::vector<gguf_tensor_spec>& tensors, uint64_t alignment = 32);

// Streams one GGUF file: the constructor writes header, metadata and tensor infos to PATH.tmp; write() takes every
// tensor's bytes in the order given (a tensor may come in several pieces); finish() pads, fsyncs and renames.
// Destroyed before finish() (an error, a cancel), it removes PATH.tmp and leaves PATH untouched. Host memory: none
// beyond the metadata. Errors (error_code::io) name the path and the system's reason (ENOSPC: "no space left on
// device"; EFBIG: "file too large") with a hint.
class gguf_stream_writer {
public:
    gguf_stream_writer(std::string path, const gguf_metadata& md, std::vector<gguf_tensor_spec> tensors,
                       uint64_t alignment = 32);
    ~gguf_stream_writer();
    gguf_stream_writer(const gguf_stream_writer&) = delete;
    gguf_stream_writer& operator=(const gguf_stream_writer&) = delete;

    const std::vector<gguf_tensor_spec>& tensors() const { return tensors_; }
    uint64_t file_size() const { return file_size_; }
    uint64_t bytes_written() const { return written_; }
    // The next bytes of the current tensor; throws error{invalid_argument} past the end of the last tensor.
    void write(std::string_view bytes);
    void finish();

private:
    void put(const void* p, size_t n);
    void pad_to(uint64_t offset);
    std::string path_, tmp_;
    int fd_ = -1;
    std::vector<gguf_tensor_spec> tensors_;
    std::vector<uint64_t> offsets_, sizes_;
    uint64_t alignment_ = 32, data_start_ = 0, file_size_ = 0, written_ = 0;
    size_t current_ = 0;        // tensor being written
    uint64_t current_done_ = 0; // its bytes so far
    bool finished_ = false;
};

// ---- quantization (ggml-quants.c quantize_row_*_ref) ------------------------------------------------------------

// Whether gguf_quantize writes this type: F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K.
bool gguf_can_quantize(ggml_type t);
// Quantizes n floats (a multiple of the type's block size, one or more whole rows) into out
// (n / block_size · type_size bytes), as ggml-quants.c's reference quantizers (quantize_row_q8_0_ref, _q4_0_ref,
// _q5_0_ref, _q4_K_ref, _q6_K_ref; no importance matrix) and ggml.c's f32 → f16 / bf16 (round to nearest even).
// Q8_0, Q4_0 and Q5_0 are bit-identical with gguf-py's quants.py (itself checked against ggml). Throws
// error{unsupported} naming `what` for other types.
void gguf_quantize(ggml_type t, const float* src, int64_t n, std::byte* out, const std::string& what);

// ---- exports for llama.cpp and Ollama ---------------------------------------------------------------------------

class model_source;

// The LoRA adapter GGUF llama.cpp loads with --lora and Ollama with ADAPTER (convert_lora_to_gguf.py's layout;
// llama.cpp src/llama-adapter.cpp reads it): general.architecture of the base, general.type "adapter", adapter.type
// "lora", adapter.lora.alpha = scale·r (llama.cpp applies alpha / r, so this is our scale also for rsLoRA); for every
// adapted projection "<base GGUF name>.lora_a" (dims {in, r}: PEFT's lora_A [r, in]) and ".lora_b" (dims {r, out}:
// lora_B [out, r]). For an architecture whose GGUF stores q/k rows permuted (llama), the rows of q's and k's B are
// permuted the same way (convert_hf_to_gguf.py LlamaModel.permute with n_head, and n_head_kv for k), so that B·A
// adds to the base weight as llama.cpp stores it; this holds for a base read from a GGUF file too, whose weights
// the engine un-permutes on load (gguf_source), so the adapter trained in Hugging Face layout. type: f32 or f16.
// Written atomically; returns the file's size.
uint64_t write_gguf_adapter(const std::string& path, const lora_weights<float>& w, const model_config& m,
                            ggml_type type, const std::string& base_name);

// Quantization of a merged GGUF (llama.cpp's llama_ftype names).
enum class gguf_quant { f16, bf16, q8_0, q4_0, q4_k_m };
const char* gguf_quant_name(gguf_quant q); // "f16", "bf16", "q8_0", "q4_0", "q4_k_m"
// "f16" ... (case-insensitive, "Q4_K_M" too); throws error{invalid_argument} naming the choices.
gguf_quant gguf_quant_from_name(const std::string& s);

// The type llama.cpp's quantizer gives each tensor for a file type (src/llama-quant.cpp llama_tensor_get_type,
// without an importance matrix): 1-D tensors F32; f16/bf16/q8_0/q4_0: that type, except the output head (or a tied
// embedding) Q6_K for q4_0 and q4_k_m; q4_k_m: Q4_K, with Q6_K for attn_v and ffn_down in the layers
// use_more_bits picks (i < n/8, i >= 7n/8, or (i − n/8) % 3 == 2). A row length (ne0) that is not a multiple of
// the type's block falls back as llama-quant.cpp does: Q4_K → Q5_0, Q6_K → Q8_0, then F16 when even that does not
// divide. `layer` is the block index of per-layer tensors (−1 otherwise), n_layer the block count.
ggml_type gguf_tensor_type(gguf_quant q, const std::string& gguf_name, const std::vector<int64_t>& dims, int layer,
                           int n_layer, bool tied_embedding);

struct gguf_merged_progress {
    int64_t tensors_done = 0, tensors_total = 0;
    uint64_t bytes_done = 0, bytes_total = 0; // tensor data of the output file
    uint64_t file_size = 0;                   // the whole file, known before the first tensor is written
    bool nf4_base = false;
};

struct gguf_merged_options {
    gguf_quant quant = gguf_quant::f16;
    // Fold the adapter into the NF4-quantized-then-dequantized projections (as the run trained) instead of the
    // base's own weights.
    bool quantize_nf4 = false;
    bool double_quant = true;
    std::string name; // general.name
    std::function<void(const gguf_merged_progress&)> on_progress;
    const std::atomic<bool>* cancel = nullptr; // checked before every tensor: error_code::cancelled
};

// A merged model GGUF (convert_hf_to_gguf.py's layout for the llama architecture, then llama-quantize's types):
// the architecture's hyperparameters, the full tokenizer (tokenizer.ggml.model, .pre, .tokens, .scores,
// .token_type, .merges, special ids, add_bos/add_eos) and tokenizer.chat_template, and every weight with scale·B·A
// added to the adapted projections, q/k rows permuted as llama.cpp stores them. The base is any model_source: a
// Hugging Face folder (tokenizer.json or tokenizer.model) or a GGUF file (its tokenizer.* metadata copied).
// Streams tensor by tensor: host memory is about one tensor in f32 plus its quantized bytes. Atomic (PATH.tmp,
// renamed at the end); a failure or cancel leaves no file at `path`.
gguf_merged_progress write_gguf_merged(const std::string& path, const model_source& base, const lora_weights<float>& w,
                                       const gguf_merged_options& opt);

// The chat template as an Ollama Modelfile TEMPLATE (Go text/template) and its stop strings, for the template
// families recognized by their markers (ChatML <|im_start|>, Llama 3 <|start_header_id|>, Llama 2 / Mistral [INST],
// Gemma <start_of_turn>); nullopt-like empty template for any other template (its stop strings still the EOS).
struct ollama_template {
    std::string family; // "chatml", "llama3", "llama2", "gemma", or "" when not recognized
    std::string text;   // the TEMPLATE body, "" when not recognized
    std::vector<std::string> stops;
};
ollama_template ollama_template_for(const std::string& chat_template, const std::string& eos_token);

// The Modelfile text: FROM (from_path), ADAPTER when adapter_path is not empty, TEMPLATE and PARAMETER stop lines.
std::string ollama_modelfile(const std::string& from_path, const std::string& adapter_path, const ollama_template& t);

} // namespace qls
