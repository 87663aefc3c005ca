// safetensors reader (memory-mapped, fully validated) and writer (atomic); format: https://github.com/huggingface/safetensors#format
#pragma once

#include "qls/tensor.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qls {

// One tensor's header record. begin/end are byte offsets relative to the start of the data section
// (the byte after the 8-byte length and the JSON header), as in the file.
struct safetensors_entry {
    std::string name;
    qls::dtype type = qls::dtype::f32;
    shape_t shape;
    uint64_t begin = 0;
    uint64_t end = 0;
};

// An open, validated safetensors file. Opening checks: the file has at least 8 bytes; the header length
// lies inside the file; the header is a JSON object; every entry has a known dtype, a shape of
// non-negative integers and data_offsets [begin, end] with begin <= end, end inside the data section and
// end - begin == numel * dtype size; no two entries' byte ranges overlap. Any failure throws qls::error
// naming the file (and the tensor) and the problem. Copies share the mapping.
class safetensors_file {
public:
    static safetensors_file open(const std::string& path);

    const std::string& path() const;
    const std::vector<safetensors_entry>& entries() const;      // sorted by begin offset
    const safetensors_entry* find(std::string_view name) const; // nullptr when absent
    const std::map<std::string, std::string>& metadata() const; // "__metadata__"

    // Raw bytes of a tensor inside the mapping (read-only; valid while any copy of this object lives).
    const std::byte* bytes(const safetensors_entry& e) const;
    // Copy of a tensor in its stored dtype / converted to f32. Throws if the name is absent.
    tensor read(std::string_view name) const;
    tensor read_f32(std::string_view name) const; // any dtype converted to f32 (integers too)
    // A model weight as f32: the tensor must have a floating-point dtype (F32, F16, BF16, F64) and hold only finite
    // values; otherwise a qls::error naming the file and the tensor.
    tensor read_weight_f32(std::string_view name) const;
    // The same checks, converting straight from the mapping into out (numel floats, the caller's buffer): no
    // intermediate copy of the tensor. Afterwards the tensor's pages are dropped from this process's resident set
    // (madvise MADV_DONTNEED on the read-only mapping; the page cache keeps them), so streaming a checkpoint through
    // this call never holds more than one tensor of the file resident.
    void read_weight_f32_into(std::string_view name, float* out) const;
    // Drops a tensor's whole pages from this process's resident set (advice; the bytes stay readable, faulted back
    // in from the page cache or the file on the next access).
    void release_pages(const safetensors_entry& e) const;

private:
    struct impl;
    std::shared_ptr<const impl> impl_;
};

// Writes tensors (contiguous, any dtype) with optional "__metadata__" atomically: the bytes go to
// `path + ".tmp"`, are fsynced, then renamed over `path`, and the directory is fsynced. The header is
// padded with spaces to a multiple of 8 bytes. Like the reference writer (safetensors.numpy.save_file),
// tensors are ordered by dtype — I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL — then by name (byte-wise
// ascending), whatever the order given, and their data follow in that order without gaps; metadata keys are
// written sorted. The output is byte-identical to save_file for the same tensors and at most one metadata
// key (save_file writes several keys in a random order). An empty map writes no "__metadata__".
void safetensors_save(const std::string& path, const std::vector<std::pair<std::string, tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

} // namespace qls
