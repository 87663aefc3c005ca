// GGUF writer (qls/gguf_writer.h): typed metadata, tensor infos, aligned tensor data streamed to PATH.tmp, then
// fsync and rename. Format: ggml docs/gguf.md (version 3); value type ids: enum gguf_metadata_value_type.
#include "qls/gguf_writer.h"

#include "qls/error.h"
#include "qls/file_io.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <unistd.h>

namespace qls {

namespace {

constexpr uint32_t k_gguf_version = 3;

// Appends a little-endian scalar (every platform we build for is little-endian, as GGUF is).
template <class T> void put_le(std::string& s, T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s.append(b, sizeof(T));
}

void put_str(std::string& s, std::string_view v) {
    put_le<uint64_t>(s, v.size());
    s.append(v);
}

std::string typed(gguf_value_type t) {
    std::string s;
    put_le<uint32_t>(s, uint32_t(t));
    return s;
}

template <class T> std::string scalar(gguf_value_type t, T v) {
    std::string s = typed(t);
    put_le<T>(s, v);
    return s;
}

[[noreturn]] void fail_io(const std::string& path, const std::string& what, int err) {
    std::string hint = "check that the folder exists and is writable";
    if (err == ENOSPC || err == EDQUOT) hint = "free disk space (or choose another drive) and export again";
    else if (err == EFBIG) hint = "the file system or a limit refuses a file this large; choose another drive";
    throw error(error_code::io, "cannot write '" + path + "': " + what + ": " + std::strerror(err), hint);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

std::string header_bytes(const gguf_metadata& md, const std::vector<gguf_tensor_spec>& tensors,
                         const std::vector<uint64_t>& offsets) {
    std::string h = "GGUF";
    put_le<uint32_t>(h, k_gguf_version);
    put_le<uint64_t>(h, tensors.size());
    put_le<uint64_t>(h, md.size());
    h += md.serialize();
    for (size_t i = 0; i < tensors.size(); ++i) {
        const gguf_tensor_spec& t = tensors[i];
        put_str(h, t.name);
        put_le<uint32_t>(h, uint32_t(t.dims.size()));
        for (int64_t d : t.dims) put_le<uint64_t>(h, uint64_t(d));
        put_le<uint32_t>(h, uint32_t(t.type));
        put_le<uint64_t>(h, offsets[i]);
    }
    return h;
}

// Offsets of every tensor from the data section's start, each aligned; returns the data section's size.
uint64_t layout(const std::vector<gguf_tensor_spec>& tensors, uint64_t alignment, std::vector<uint64_t>* offsets,
                std::vector<uint64_t>* sizes) {
    uint64_t at = 0;
    for (const gguf_tensor_spec& t : tensors) {
        const uint64_t n = gguf_tensor_bytes(t);
        if (offsets) offsets->push_back(at);
        if (sizes) sizes->push_back(n);
        at = align_up(at + n, alignment);
    }
    return at;
}

void check_alignment(uint64_t a, const gguf_metadata& md) {
    if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20))
        throw error(error_code::invalid_argument, "GGUF alignment " + std::to_string(a) + " is not a power of two",
                    "use the default alignment of 32 bytes");
    if (a != 32 && !md.has("general.alignment"))
        throw error(error_code::invalid_argument,
                    "a GGUF alignment other than 32 must be stated in the metadata key 'general.alignment'",
                    "set general.alignment (u32) to the alignment");
}

} // namespace

// ---- metadata ----------------------------------------------------------------------------------------------------

void gguf_metadata::put(std::string_view key, std::string value) {
    if (key.empty() || key.size() > 65535)
        throw error(error_code::invalid_argument,
                    "GGUF metadata key '" + std::string(key.substr(0, 64)) + "' must be 1 to 65535 bytes long",
                    "use a dotted key such as general.name");
    for (entry& e : entries_)
        if (e.key == key) {
            e.value = std::move(value);
            return;
        }
    entries_.push_back({std::string(key), std::move(value)});
}

void gguf_metadata::set_u8(std::string_view k, uint8_t v) { put(k, scalar(gguf_value_type::u8, v)); }
void gguf_metadata::set_i8(std::string_view k, int8_t v) { put(k, scalar(gguf_value_type::i8, v)); }
void gguf_metadata::set_u16(std::string_view k, uint16_t v) { put(k, scalar(gguf_value_type::u16, v)); }
void gguf_metadata::set_i16(std::string_view k, int16_t v) { put(k, scalar(gguf_value_type::i16, v)); }
void gguf_metadata::set_u32(std::string_view k, uint32_t v) { put(k, scalar(gguf_value_type::u32, v)); }
void gguf_metadata::set_i32(std::string_view k, int32_t v) { put(k, scalar(gguf_value_type::i32, v)); }
void gguf_metadata::set_u64(std::string_view k, uint64_t v) { put(k, scalar(gguf_value_type::u64, v)); }
void gguf_metadata::set_i64(std::string_view k, int64_t v) { put(k, scalar(gguf_value_type::i64, v)); }
void gguf_metadata::set_f32(std::string_view k, float v) { put(k, scalar(gguf_value_type::f32, v)); }
void gguf_metadata::set_f64(std::string_view k, double v) { put(k, scalar(gguf_value_type::f64, v)); }
void gguf_metadata::set_bool(std::string_view k, bool v) { put(k, scalar(gguf_value_type::boolean, uint8_t(v))); }

void gguf_metadata::set_string(std::string_view k, std::string_view v) {
    std::string s = typed(gguf_value_type::string);
    put_str(s, v);
    put(k, std::move(s));
}

void gguf_metadata::set_string_array(std::string_view k, const std::vector<std::string>& v) {
    std::string s = typed(gguf_value_type::array);
    put_le<uint32_t>(s, uint32_t(gguf_value_type::string));
    put_le<uint64_t>(s, v.size());
    for (const std::string& x : v) put_str(s, x);
    put(k, std::move(s));
}

void gguf_metadata::set_i32_array(std::string_view k, const std::vector<int32_t>& v) {
    std::string s = typed(gguf_value_type::array);
    put_le<uint32_t>(s, uint32_t(gguf_value_type::i32));
    put_le<uint64_t>(s, v.size());
    for (int32_t x : v) put_le<int32_t>(s, x);
    put(k, std::move(s));
}

void gguf_metadata::set_f32_array(std::string_view k, const std::vector<float>& v) {
    std::string s = typed(gguf_value_type::array);
    put_le<uint32_t>(s, uint32_t(gguf_value_type::f32));
    put_le<uint64_t>(s, v.size());
    for (float x : v) put_le<float>(s, x);
    put(k, std::move(s));
}

void gguf_metadata::copy_from(const gguf_file& f, std::string_view key) {
    const gguf_value_type t = f.type(key);
    auto ints_as = [&](gguf_value_type et, std::string& s) {
        const std::vector<int64_t> v = f.get_int_array(key);
        put_le<uint32_t>(s, uint32_t(et));
        put_le<uint64_t>(s, v.size());
        for (int64_t x : v) {
            switch (et) {
            case gguf_value_type::u8: put_le<uint8_t>(s, uint8_t(x)); break;
            case gguf_value_type::i8: put_le<int8_t>(s, int8_t(x)); break;
            case gguf_value_type::u16: put_le<uint16_t>(s, uint16_t(x)); break;
            case gguf_value_type::i16: put_le<int16_t>(s, int16_t(x)); break;
            case gguf_value_type::u32: put_le<uint32_t>(s, uint32_t(x)); break;
            case gguf_value_type::i32: put_le<int32_t>(s, int32_t(x)); break;
            case gguf_value_type::u64: put_le<uint64_t>(s, uint64_t(x)); break;
            case gguf_value_type::i64: put_le<int64_t>(s, x); break;
            case gguf_value_type::boolean: put_le<uint8_t>(s, uint8_t(x != 0)); break;
            default: break;
            }
        }
    };
    switch (t) {
    case gguf_value_type::u8: set_u8(key, uint8_t(f.get_int(key))); return;
    case gguf_value_type::i8: set_i8(key, int8_t(f.get_int(key))); return;
    case gguf_value_type::u16: set_u16(key, uint16_t(f.get_int(key))); return;
    case gguf_value_type::i16: set_i16(key, int16_t(f.get_int(key))); return;
    case gguf_value_type::u32: set_u32(key, f.get_uint32(key)); return;
    case gguf_value_type::i32: set_i32(key, int32_t(f.get_int(key))); return;
    case gguf_value_type::u64: set_u64(key, uint64_t(f.get_int(key))); return;
    case gguf_value_type::i64: set_i64(key, f.get_int(key)); return;
    case gguf_value_type::f32: set_f32(key, float(f.get_float(key))); return;
    case gguf_value_type::f64: set_f64(key, f.get_float(key)); return;
    case gguf_value_type::boolean: set_bool(key, f.get_bool(key)); return;
    case gguf_value_type::string: set_string(key, f.get_string(key)); return;
    case gguf_value_type::array: {
        const gguf_value_type et = f.array_type(key);
        if (et == gguf_value_type::string) return set_string_array(key, f.get_string_array(key));
        if (et == gguf_value_type::f32) return set_f32_array(key, f.get_float_array(key));
        if (et == gguf_value_type::f64) {
            std::string s = typed(gguf_value_type::array);
            const std::vector<float> v = f.get_float_array(key);
            put_le<uint32_t>(s, uint32_t(et));
            put_le<uint64_t>(s, v.size());
            for (float x : v) put_le<double>(s, x);
            return put(key, std::move(s));
        }
        if (et == gguf_value_type::array)
            throw error(error_code::unsupported,
                        f.path() + ": metadata key '" + std::string(key) +
                            "' is an array of arrays, which the writer does not copy",
                        "the key is not one llama.cpp reads; export without it");
        std::string s = typed(gguf_value_type::array);
        ints_as(et, s);
        return put(key, std::move(s));
    }
    }
    throw error(error_code::format, f.path() + ": metadata key '" + std::string(key) + "' has an unknown type",
                "the file is damaged");
}

bool gguf_metadata::has(std::string_view key) const {
    return std::any_of(entries_.begin(), entries_.end(), [&](const entry& e) { return e.key == key; });
}

void gguf_metadata::erase(std::string_view key) {
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [&](const entry& e) { return e.key == key; }),
                   entries_.end());
}

std::vector<std::string> gguf_metadata::keys() const {
    std::vector<std::string> k;
    for (const entry& e : entries_) k.push_back(e.key);
    return k;
}

std::string gguf_metadata::serialize() const {
    std::string s;
    for (const entry& e : entries_) {
        put_str(s, e.key);
        s += e.value;
    }
    return s;
}

// ---- tensors -----------------------------------------------------------------------------------------------------

uint64_t gguf_tensor_bytes(const gguf_tensor_spec& t) {
    const ggml_type_traits tr = ggml_traits(uint32_t(t.type));
    const std::string hint = "give every dimension a positive size, the first a multiple of the type's block size";
    if (!tr.known)
        throw error(error_code::invalid_argument,
                    "tensor '" + t.name + "': ggml type " + std::to_string(uint32_t(t.type)) + " is unknown", hint);
    if (t.dims.empty() || t.dims.size() > 4)
        throw error(error_code::invalid_argument,
                    "tensor '" + t.name + "' has " + std::to_string(t.dims.size()) + " dimensions; GGUF allows 1 to 4",
                    hint);
    uint64_t numel = 1;
    for (int64_t d : t.dims) {
        if (d <= 0)
            throw error(error_code::invalid_argument, "tensor '" + t.name + "' has a dimension of " + std::to_string(d),
                        hint);
        if (numel > std::numeric_limits<uint64_t>::max() / 2 / uint64_t(d))
            throw error(error_code::invalid_argument, "tensor '" + t.name + "' is too large", hint);
        numel *= uint64_t(d);
    }
    if (t.dims[0] % tr.block_size != 0)
        throw error(error_code::invalid_argument,
                    "tensor '" + t.name + "': its row length " + std::to_string(t.dims[0]) + " is not a multiple of " +
                        tr.name + "'s block size " + std::to_string(tr.block_size),
                    hint);
    return numel / uint64_t(tr.block_size) * uint64_t(tr.type_size);
}

uint64_t gguf_file_size(const gguf_metadata& md, const std::vector<gguf_tensor_spec>& tensors, uint64_t alignment) {
    check_alignment(alignment, md);
    std::vector<uint64_t> offsets;
    const uint64_t data = layout(tensors, alignment, &offsets, nullptr);
    return align_up(header_bytes(md, tensors, offsets).size(), alignment) + data;
}

gguf_stream_writer::gguf_stream_writer(std::string path, const gguf_metadata& md, std::vector<gguf_tensor_spec> tensors,
                                       uint64_t alignment)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), tensors_(std::move(tensors)), alignment_(alignment) {
    check_alignment(alignment, md);
    for (size_t i = 0; i < tensors_.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            if (tensors_[i].name == tensors_[j].name)
                throw error(error_code::invalid_argument,
                            "cannot write '" + path_ + "': tensor '" + tensors_[i].name + "' is listed twice",
                            "give every tensor a unique name");
    const uint64_t data = layout(tensors_, alignment_, &offsets_, &sizes_);
    const std::string h = header_bytes(md, tensors_, offsets_);
    data_start_ = align_up(h.size(), alignment_);
    file_size_ = data_start_ + data;
    do {
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) fail_io(path_, "cannot create the temporary file '" + tmp_ + "'", errno);
    try {
        put(h.data(), h.size());
        pad_to(data_start_);
    } catch (...) {
        ::close(fd_);
        fd_ = -1;
        ::unlink(tmp_.c_str());
        throw;
    }
    // zero-size tensor lists finish at once; otherwise position on the first tensor
}

gguf_stream_writer::~gguf_stream_writer() {
    if (finished_) return;
    if (fd_ >= 0) ::close(fd_);
    ::unlink(tmp_.c_str());
}

void gguf_stream_writer::put(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
        const ssize_t w = ::write(fd_, c, std::min<size_t>(n, size_t(1) << 30));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) fail_io(path_, "writing '" + tmp_ + "' failed", errno);
        c += w;
        n -= size_t(w);
        written_ += uint64_t(w);
    }
}

void gguf_stream_writer::pad_to(uint64_t offset) {
    static const char zeros[64] = {};
    while (written_ < offset) put(zeros, size_t(std::min<uint64_t>(offset - written_, sizeof zeros)));
}

void gguf_stream_writer::write(std::string_view bytes) {
    const std::string hint = "write every listed tensor once, in order, with exactly gguf_tensor_bytes bytes";
    if (fd_ < 0 || finished_)
        throw error(error_code::invalid_argument, "cannot write '" + path_ + "': the file is already finished", hint);
    if (current_ >= tensors_.size())
        throw error(error_code::invalid_argument,
                    "cannot write '" + path_ + "': every listed tensor was already written", hint);
    if (bytes.size() > sizes_[current_] - current_done_)
        throw error(error_code::invalid_argument,
                    "cannot write '" + path_ + "': tensor '" + tensors_[current_].name + "' needs " +
                        std::to_string(sizes_[current_]) + " bytes; " + std::to_string(current_done_) +
                        " were written and " + std::to_string(bytes.size()) + " more would exceed them",
                    hint);
    put(bytes.data(), bytes.size());
    current_done_ += bytes.size();
    if (current_done_ == sizes_[current_]) {
        const uint64_t next = current_ + 1 < tensors_.size() ? data_start_ + offsets_[current_ + 1] : file_size_;
        pad_to(next);
        ++current_;
        current_done_ = 0;
    }
}

void gguf_stream_writer::finish() {
    if (finished_) return;
    if (current_ != tensors_.size())
        throw error(error_code::invalid_argument,
                    "cannot write '" + path_ + "': tensor '" + tensors_[current_].name + "' and " +
                        std::to_string(tensors_.size() - current_ - 1) + " more were not written in full",
                    "write every listed tensor once, in order");
    if (::fsync(fd_) != 0) fail_io(path_, "fsync of '" + tmp_ + "' failed", errno);
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail_io(path_, "closing '" + tmp_ + "' failed", errno);
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail_io(path_, "renaming '" + tmp_ + "' over it failed", errno);
    finished_ = true;
    const size_t slash = path_.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
    fsync_path(dir, true);
}

} // namespace qls
