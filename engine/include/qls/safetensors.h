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
    // A BF16 weight as stored (numel uint16 bit patterns into out), with the same finite check and page release; false
    // (nothing read) when the tensor is stored in another dtype. The GPU quantizer takes these bits: half the bytes of
    // the f32 conversion to move, and no conversion on the host.
    bool read_weight_bf16_into(std::string_view name, uint16_t* out) const;
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

// ---- streaming writer (io/safetensors_writer.cpp) ---------------------------------------------------------------

// One tensor of a file written by safetensors_stream_writer: its name, dtype and shape; the data come later.
struct safetensors_tensor_spec {
    std::string name;
    qls::dtype type = qls::dtype::f32;
    shape_t shape;
    uint64_t nbytes() const; // numel * dtype_size
};

// Writes a safetensors file whose tensors are known up front by name, dtype and shape but whose data arrive one
// tensor at a time, so a file of any size is written holding one tensor in memory. The header is computed in the
// constructor (the order, the offsets and the padding of safetensors_save, so that the file is byte-identical to
// safetensors_save of the same tensors and metadata) and written to `path + ".tmp"`; write() appends the data of the
// next tensor of order(), whole or in pieces; finish() checks that every tensor was written, fsyncs, renames over `path` and fsyncs the
// folder. A writer destroyed before finish() (an error, a cancel) removes the temporary file and leaves `path` as it
// was. Errors (error_code::invalid_argument for a bad list or a write out of order, error_code::io for the disk) name
// the path and the tensor.
class safetensors_stream_writer {
public:
    safetensors_stream_writer(const std::string& path, std::vector<safetensors_tensor_spec> tensors,
                              const std::map<std::string, std::string>& metadata = {});
    ~safetensors_stream_writer();
    safetensors_stream_writer(const safetensors_stream_writer&) = delete;
    safetensors_stream_writer& operator=(const safetensors_stream_writer&) = delete;

    // The tensors in the order their data must be written (safetensors_save's: dtype rank, then name).
    const std::vector<safetensors_tensor_spec>& order() const { return order_; }
    // The name of the tensor write() expects next; empty once all are written.
    const std::string& next_name() const;
    // Appends data of the next tensor of order(): `name` must be that tensor. Its nbytes() may come in one call or in
    // consecutive pieces (a large tensor copied a chunk at a time); the tensor is complete once all of them were
    // written (a tensor of 0 bytes: with one call of empty bytes). More bytes than the tensor holds are refused.
    void write(const std::string& name, std::string_view bytes);
    void finish();
    uint64_t file_size() const { return file_size_; } // header + data, known from the start

private:
    std::string path_, tmp_;
    std::vector<safetensors_tensor_spec> order_;
    size_t next_ = 0;
    uint64_t next_written_ = 0; // bytes of order_[next_] written so far
    int fd_ = -1;
    uint64_t file_size_ = 0;
    bool finished_ = false;
};

} // namespace qls
