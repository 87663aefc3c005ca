// gguf — a validated, memory-mapped reader of GGUF files (llama.cpp's model format) and f32 dequantization of its
// common block types.
//
// Format (ggml docs/gguf.md): "GGUF", u32 version (2 or 3), u64 tensor_count, u64 kv_count; kv_count metadata
// entries (u64-length key string, u32 value type 0-12, value); tensor_count tensor infos (name, u32 n_dims, n_dims
// u64 dims listed fastest-first (ne0 first), u32 ggml type, u64 offset); padding to general.alignment (default 32);
// the data section, every tensor at its offset from the start of the section. All little-endian.
#pragma once

#include "qls/tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qls {

// GGUF metadata value types (gguf.md, enum gguf_metadata_value_type).
enum class gguf_value_type : uint32_t {
    u8 = 0,
    i8 = 1,
    u16 = 2,
    i16 = 3,
    u32 = 4,
    i32 = 5,
    f32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    u64 = 10,
    i64 = 11,
    f64 = 12,
};
// "uint32", "string", "array", ... as gguf.md names them
const char* gguf_value_type_name(gguf_value_type t);

// ggml tensor types (ggml.h enum ggml_type; ids 4, 5, 31-33 and 36-38 were removed from the format).
enum class ggml_type : uint32_t {
    f32 = 0,
    f16 = 1,
    q4_0 = 2,
    q4_1 = 3,
    q5_0 = 6,
    q5_1 = 7,
    q8_0 = 8,
    q8_1 = 9,
    q2_k = 10,
    q3_k = 11,
    q4_k = 12,
    q5_k = 13,
    q6_k = 14,
    q8_k = 15,
    iq2_xxs = 16,
    iq2_xs = 17,
    iq3_xxs = 18,
    iq1_s = 19,
    iq4_nl = 20,
    iq3_s = 21,
    iq2_s = 22,
    iq4_xs = 23,
    i8 = 24,
    i16 = 25,
    i32 = 26,
    i64 = 27,
    f64 = 28,
    iq1_m = 29,
    bf16 = 30,
    tq1_0 = 34,
    tq2_0 = 35,
    mxfp4 = 39,
};

// Block layout of a ggml type: `block_size` elements are stored in `type_size` bytes (ggml.c type_traits;
// gguf-py constants.py GGML_QUANT_SIZES). known == false for an id the format does not define.
struct ggml_type_traits {
    bool known = false;
    const char* name = "?"; // "Q4_K", as llama.cpp prints it
    int64_t block_size = 0;
    int64_t type_size = 0;
    bool dequantizable = false; // gguf_dequantize handles it: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q4_K Q5_K Q6_K
};
ggml_type_traits ggml_traits(uint32_t type_id);

// Dequantizes n elements (a multiple of the type's block size) stored as `type` at src into out (n floats).
// Bit-exact with ggml-quants.c dequantize_row_* and gguf-py quants.py dequantize. Throws error{unsupported}
// naming `what` for types other than the nine above.
void gguf_dequantize(ggml_type type, const std::byte* src, int64_t n, float* out, const std::string& what);

// One tensor as the file describes it.
struct gguf_tensor_info {
    std::string name;
    std::vector<int64_t> dims; // GGUF order, ne0 (fastest) first: a row-major [out][in] matrix has dims {in, out}
    ggml_type type = ggml_type::f32;
    uint64_t offset = 0; // from the start of the data section
    uint64_t bytes = 0;  // numel / block_size * type_size
    int64_t numel() const;
};

class gguf_file {
public:
    // Maps and validates the whole file structure (header, every metadata entry, every tensor info, alignment,
    // bounds, overlaps). Throws qls::error naming the path, the key or tensor, and the problem.
    static gguf_file open(const std::string& path);

    const std::string& path() const;
    uint32_t version() const;
    uint64_t alignment() const;
    uint64_t file_size() const;

    // ---- metadata ----------------------------------------------------------------------------------------------
    bool has(std::string_view key) const;
    std::vector<std::string> keys() const;                  // in file order
    gguf_value_type type(std::string_view key) const;       // throws when absent
    gguf_value_type array_type(std::string_view key) const; // element type of an array value
    uint64_t array_size(std::string_view key) const;        // element count of an array value
    // Typed getters; each throws error{format} naming the file and the key when absent ("missing"), or when the
    // value has another type ("must be <expected>, found <type>"). get_int accepts every integer type whose value
    // fits in int64; get_float accepts f32 and f64 (and integers); get_uint32 checks 0 <= v < 2^32.
    std::string get_string(std::string_view key) const;
    int64_t get_int(std::string_view key) const;
    uint32_t get_uint32(std::string_view key) const;
    double get_float(std::string_view key) const;
    bool get_bool(std::string_view key) const;
    std::vector<std::string> get_string_array(std::string_view key) const;
    std::vector<int64_t> get_int_array(std::string_view key) const;
    std::vector<float> get_float_array(std::string_view key) const;
    // A short display of a value ("3", "\"llama\"", "[49152 strings]") for `qlora info` and messages.
    std::string show(std::string_view key) const;

    // ---- tensors -----------------------------------------------------------------------------------------------
    const std::vector<gguf_tensor_info>& tensors() const; // in file order
    const gguf_tensor_info* find_tensor(std::string_view name) const;
    const std::byte* tensor_data(const gguf_tensor_info& t) const; // inside the mapping
    // Dequantizes the whole tensor (numel floats) straight from the mapping, rows in parallel.
    void dequantize(const gguf_tensor_info& t, float* out) const;

    struct impl;

private:
    std::shared_ptr<const impl> impl_;
};

// The tokenizer a GGUF file's metadata describes (tokenizer.ggml.*), checked: tokens present, scores and token
// types (when present) as long as the token list, special ids inside it. origin = the file's path.
gguf_vocab read_gguf_vocab(const gguf_file& f);

} // namespace qls
