// gguf — the GGUF reader: memory-maps the file and validates its whole structure before anything is allocated from
// it; typed metadata accessors; tensor data straight from the mapping. Format: ggml docs/gguf.md (see qls/gguf.h).
#include "qls/gguf.h"

#include "qls/error.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qls {

namespace {

const char* const hint_corrupt =
    "the file is damaged or was not written completely: download it again, or convert the model again with "
    "llama.cpp's convert_hf_to_gguf.py";

constexpr int k_max_array_depth = 4;         // arrays of arrays this deep at most (real files nest none)
constexpr uint32_t k_max_dims = 4;           // GGML_MAX_DIMS
constexpr uint64_t k_default_alignment = 32; // GGUF_DEFAULT_ALIGNMENT
// Far above any real file (llama.cpp names are < 64 bytes; models have thousands of tensors and tens of metadata
// keys), far below what would make the parsed tables large: a corrupt count or length is refused before it is used.
constexpr uint64_t k_max_name_bytes = 1 << 16;
constexpr uint64_t k_max_tensors = 1 << 20;
constexpr uint64_t k_max_kvs = 1 << 20;

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
    throw error(error_code::format, path + ": " + problem, hint_corrupt);
}

std::string quoted(std::string_view s, size_t max = 80) {
    std::string r = "'";
    for (char c : s.substr(0, max)) r += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
    if (s.size() > max) r += "...";
    return r + "'";
}

// Bytes of a scalar value type; 0 for string/array; -1 for an id outside 0-12.
int scalar_size(uint32_t t) {
    switch (gguf_value_type(t)) {
    case gguf_value_type::u8:
    case gguf_value_type::i8:
    case gguf_value_type::boolean: return 1;
    case gguf_value_type::u16:
    case gguf_value_type::i16: return 2;
    case gguf_value_type::u32:
    case gguf_value_type::i32:
    case gguf_value_type::f32: return 4;
    case gguf_value_type::u64:
    case gguf_value_type::i64:
    case gguf_value_type::f64: return 8;
    case gguf_value_type::string:
    case gguf_value_type::array: return 0;
    }
    return -1;
}

// The fewest bytes one value of type t can occupy (a string: its u64 length; an array: type + count).
uint64_t min_value_size(uint32_t t) {
    if (t == uint32_t(gguf_value_type::string)) return 8;
    if (t == uint32_t(gguf_value_type::array)) return 12;
    return uint64_t(scalar_size(t));
}

bool is_integer(gguf_value_type t) {
    switch (t) {
    case gguf_value_type::u8:
    case gguf_value_type::i8:
    case gguf_value_type::u16:
    case gguf_value_type::i16:
    case gguf_value_type::u32:
    case gguf_value_type::i32:
    case gguf_value_type::u64:
    case gguf_value_type::i64: return true;
    default: return false;
    }
}

struct mapping {
    const uint8_t* data = nullptr;
    size_t size = 0;
    mapping() = default;
    mapping(const mapping&) = delete;
    mapping& operator=(const mapping&) = delete;
    ~mapping() {
        if (data && size) ::munmap(const_cast<uint8_t*>(data), size);
    }
};

std::shared_ptr<mapping> map_file(const std::string& path) {
    const char* hint = "check that the path is right and that the file is readable";
    int fd;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw error(error_code::io, path + ": cannot open: " + std::strerror(errno), hint);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        throw error(error_code::io, path + ": cannot stat: " + std::strerror(e), hint);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw error(error_code::io, path + ": is not a regular file", "choose a .gguf file");
    }
    auto m = std::make_shared<mapping>();
    m->size = size_t(st.st_size);
    if (m->size < 24) {
        ::close(fd);
        fail(path, "file is " + std::to_string(m->size) +
                       " bytes, shorter than a GGUF header (24 bytes); it is truncated or not a GGUF file");
    }
    void* p = ::mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int e = errno;
    ::close(fd);
    if (p == MAP_FAILED)
        throw error(error_code::io,
                    path + ": cannot memory-map " + std::to_string(m->size) + " bytes: " + std::strerror(e),
                    "check that the file is on a local disk and that enough address space is available");
    m->data = static_cast<const uint8_t*>(p);
    return m;
}

// Reads little-endian values from the mapping, refusing to step past its end.
class cursor {
public:
    cursor(const std::string& path, const uint8_t* base, uint64_t size) : path_(path), base_(base), size_(size) {}
    uint64_t pos() const { return pos_; }
    uint64_t left() const { return size_ - pos_; }
    void need(uint64_t n, const std::string& what) const {
        if (n > left())
            fail(path_, "truncated: " + what + " at byte " + std::to_string(pos_) + " needs " + std::to_string(n) +
                            " bytes, only " + std::to_string(left()) + " remain in the file");
    }
    template <class T> T get(const std::string& what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, base_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    void skip(uint64_t n, const std::string& what) {
        need(n, what);
        pos_ += n;
    }
    std::string_view string(const std::string& what) {
        const uint64_t len = get<uint64_t>(what + " length");
        if (len > left())
            fail(path_, what + " at byte " + std::to_string(pos_ - 8) + " claims " + std::to_string(len) +
                            " bytes, past the end of the file (" + std::to_string(left()) + " bytes remain)");
        std::string_view s(reinterpret_cast<const char*>(base_ + pos_), size_t(len));
        pos_ += len;
        return s;
    }

private:
    const std::string& path_;
    const uint8_t* base_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

struct kv_entry {
    std::string key;
    gguf_value_type type;
    gguf_value_type elem = gguf_value_type::u8; // arrays: element type
    uint64_t count = 0;                         // arrays: element count
    uint64_t pos = 0;                           // scalars/strings: value; arrays: first element
};

} // namespace

struct gguf_file::impl {
    std::string path;
    std::shared_ptr<mapping> map;
    uint32_t version = 0;
    uint64_t alignment = k_default_alignment;
    uint64_t data_start = 0;
    std::vector<kv_entry> kvs;
    std::map<std::string, size_t, std::less<>> by_key;
    std::vector<gguf_tensor_info> tensors;
    std::map<std::string, size_t, std::less<>> by_name;

    const uint8_t* at(uint64_t pos) const { return map->data + pos; }

    [[noreturn]] void fail_key(std::string_view key, const std::string& problem) const {
        throw error(error_code::format, path + ": metadata key '" + std::string(key) + "' " + problem,
                    "the file's metadata does not match what llama.cpp writes for this key; convert the model "
                    "again with llama.cpp's convert_hf_to_gguf.py");
    }
    const kv_entry& require(std::string_view key, const char* expected) const {
        auto it = by_key.find(key);
        if (it == by_key.end()) fail_key(key, std::string("is missing (expected ") + expected + ")");
        return kvs[it->second];
    }
    [[noreturn]] void wrong(const kv_entry& e, const char* expected) const {
        std::string t = gguf_value_type_name(e.type);
        if (e.type == gguf_value_type::array) t += " of " + std::string(gguf_value_type_name(e.elem));
        fail_key(e.key, std::string("must be ") + expected + ", found " + t);
    }
    template <class T> T raw(uint64_t pos) const {
        T v;
        std::memcpy(&v, at(pos), sizeof(T));
        return v;
    }
    // An integer value of type t at pos; false when it does not fit in int64 (a u64 above 2^63-1).
    bool int_at(gguf_value_type t, uint64_t pos, int64_t& out) const {
        switch (t) {
        case gguf_value_type::u8: out = raw<uint8_t>(pos); return true;
        case gguf_value_type::i8: out = raw<int8_t>(pos); return true;
        case gguf_value_type::u16: out = raw<uint16_t>(pos); return true;
        case gguf_value_type::i16: out = raw<int16_t>(pos); return true;
        case gguf_value_type::u32: out = raw<uint32_t>(pos); return true;
        case gguf_value_type::i32: out = raw<int32_t>(pos); return true;
        case gguf_value_type::i64: out = raw<int64_t>(pos); return true;
        case gguf_value_type::u64: {
            const uint64_t v = raw<uint64_t>(pos);
            if (v > uint64_t(std::numeric_limits<int64_t>::max())) return false;
            out = int64_t(v);
            return true;
        }
        default: return false;
        }
    }
    std::string_view string_at(uint64_t pos) const {
        return {reinterpret_cast<const char*>(at(pos + 8)), size_t(raw<uint64_t>(pos))};
    }

    // Validates one value of type t at the cursor (walking strings and nested arrays) and steps over it.
    void walk_value(cursor& c, uint32_t t, const std::string& key, int depth) const {
        const int sz = scalar_size(t);
        if (sz < 0)
            fail(path, "metadata key " + quoted(key) + " has value type " + std::to_string(t) +
                           ", which GGUF does not define (value types are 0-12)");
        if (sz > 0) {
            c.skip(uint64_t(sz), "value of metadata key " + quoted(key));
            return;
        }
        if (t == uint32_t(gguf_value_type::string)) {
            (void)c.string("string value of metadata key " + quoted(key));
            return;
        }
        if (depth >= k_max_array_depth)
            fail(path, "metadata key " + quoted(key) + " nests arrays more than " + std::to_string(k_max_array_depth) +
                           " deep; no GGUF writer produces this");
        const uint32_t et = c.get<uint32_t>("array element type of metadata key " + quoted(key));
        if (scalar_size(et) < 0)
            fail(path, "metadata key " + quoted(key) + " is an array of value type " + std::to_string(et) +
                           ", which GGUF does not define (value types are 0-12)");
        const uint64_t n = c.get<uint64_t>("array length of metadata key " + quoted(key));
        const uint64_t min = min_value_size(et);
        if (n > c.left() / min)
            fail(path, "metadata key " + quoted(key) + " claims " + std::to_string(n) + " array elements of " +
                           gguf_value_type_name(gguf_value_type(et)) + ", more than the " + std::to_string(c.left()) +
                           " bytes left in the file can hold; the file is truncated or corrupt");
        if (scalar_size(et) > 0) {
            c.skip(n * uint64_t(scalar_size(et)), "array of metadata key " + quoted(key));
            return;
        }
        for (uint64_t i = 0; i < n; ++i) walk_value(c, et, key, depth + 1);
    }
};

const char* gguf_value_type_name(gguf_value_type t) {
    switch (t) {
    case gguf_value_type::u8: return "uint8";
    case gguf_value_type::i8: return "int8";
    case gguf_value_type::u16: return "uint16";
    case gguf_value_type::i16: return "int16";
    case gguf_value_type::u32: return "uint32";
    case gguf_value_type::i32: return "int32";
    case gguf_value_type::f32: return "float32";
    case gguf_value_type::boolean: return "bool";
    case gguf_value_type::string: return "string";
    case gguf_value_type::array: return "array";
    case gguf_value_type::u64: return "uint64";
    case gguf_value_type::i64: return "int64";
    case gguf_value_type::f64: return "float64";
    }
    return "unknown";
}

int64_t gguf_tensor_info::numel() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d; // checked when the file was opened
    return n;
}

gguf_file gguf_file::open(const std::string& path) {
    auto im = std::make_shared<impl>();
    im->path = path;
    im->map = map_file(path);
    const uint64_t size = im->map->size;
    cursor c(path, im->map->data, size);

    // Header: magic "GGUF", u32 version, u64 tensor_count, u64 kv_count (gguf.md "File Structure").
    if (std::memcmp(im->map->data, "GGUF", 4) != 0)
        fail(path, "does not start with the GGUF magic bytes \"GGUF\"; it is not a GGUF file");
    c.skip(4, "magic");
    im->version = c.get<uint32_t>("version");
    if (im->version == 1)
        throw error(error_code::unsupported, path + ": GGUF version 1 is not supported (versions 2 and 3 are)",
                    "convert the model again with a current llama.cpp (convert_hf_to_gguf.py)");
    if (im->version != 2 && im->version != 3)
        fail(path, "GGUF version " + std::to_string(im->version) + " is unknown (versions 2 and 3 are read)" +
                       (im->version > 0xFFFF ? "; the file may be big-endian, which is not supported" : ""));
    const uint64_t n_tensors = c.get<uint64_t>("tensor count");
    const uint64_t n_kv = c.get<uint64_t>("metadata count");
    // Smallest encodings: a tensor info is name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8);
    // a metadata entry is key length (8) + type (4) + a 1-byte value.
    if (n_tensors > c.left() / 32)
        fail(path, "header claims " + std::to_string(n_tensors) + " tensors, more than a file of " +
                       std::to_string(size) + " bytes can describe; the file is truncated or corrupt");
    if (n_kv > c.left() / 13)
        fail(path, "header claims " + std::to_string(n_kv) + " metadata entries, more than a file of " +
                       std::to_string(size) + " bytes can hold; the file is truncated or corrupt");

    // Metadata.
    if (n_tensors > k_max_tensors)
        fail(path, "header claims " + std::to_string(n_tensors) + " tensors, more than the " +
                       std::to_string(k_max_tensors) + " any model has; the file is corrupt");
    if (n_kv > k_max_kvs)
        fail(path, "header claims " + std::to_string(n_kv) + " metadata entries, more than the " +
                       std::to_string(k_max_kvs) + " any model has; the file is corrupt");
    for (uint64_t i = 0; i < n_kv; ++i) {
        const std::string what = "metadata entry " + std::to_string(i);
        kv_entry e;
        const std::string_view key = c.string("key of " + what);
        if (key.size() > k_max_name_bytes)
            fail(path, what + " has a key of " + std::to_string(key.size()) + " bytes; keys are short names");
        e.key = std::string(key);
        if (e.key.empty()) fail(path, what + " has an empty key");
        if (im->by_key.count(e.key)) fail(path, "metadata key " + quoted(e.key) + " appears more than once");
        const uint32_t t = c.get<uint32_t>("value type of metadata key " + quoted(e.key));
        if (scalar_size(t) < 0)
            fail(path, "metadata key " + quoted(e.key) + " has value type " + std::to_string(t) +
                           ", which GGUF does not define (value types are 0-12)");
        e.type = gguf_value_type(t);
        if (e.type == gguf_value_type::array) {
            const uint64_t start = c.pos();
            im->walk_value(c, t, e.key, 0);
            std::memcpy(&e.elem, im->at(start), 4);
            std::memcpy(&e.count, im->at(start + 4), 8);
            e.pos = start + 12;
        } else {
            e.pos = c.pos();
            im->walk_value(c, t, e.key, 0);
        }
        im->by_key.emplace(e.key, im->kvs.size());
        im->kvs.push_back(std::move(e));
    }

    // general.alignment: a power of two (gguf.md: "must be a multiple of 8"; ggml checks power of two).
    if (auto it = im->by_key.find("general.alignment"); it != im->by_key.end()) {
        const kv_entry& e = im->kvs[it->second];
        int64_t a = 0;
        if (!is_integer(e.type) || !im->int_at(e.type, e.pos, a)) im->wrong(e, "an unsigned integer (uint32)");
        if (a <= 0 || (a & (a - 1)) != 0 || a > (1 << 20))
            im->fail_key(e.key, "is " + std::to_string(a) + "; the alignment must be a power of two (32 by default)");
        im->alignment = uint64_t(a);
    }

    // Tensor infos.
    for (uint64_t i = 0; i < n_tensors; ++i) {
        gguf_tensor_info t;
        const std::string_view name = c.string("name of tensor " + std::to_string(i));
        if (name.size() > k_max_name_bytes)
            fail(path, "tensor " + std::to_string(i) + " has a name of " + std::to_string(name.size()) +
                           " bytes; tensor names are short");
        t.name = std::string(name);
        const std::string tn = "tensor " + quoted(t.name);
        if (t.name.empty()) fail(path, "tensor " + std::to_string(i) + " has an empty name");
        if (im->by_name.count(t.name)) fail(path, tn + " appears more than once");
        const uint32_t n_dims = c.get<uint32_t>("dimension count of " + tn);
        if (n_dims < 1 || n_dims > k_max_dims)
            fail(path, tn + " has " + std::to_string(n_dims) + " dimensions; GGUF tensors have 1 to 4");
        uint64_t numel = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t ne = c.get<uint64_t>("dimension " + std::to_string(d) + " of " + tn);
            if (ne == 0 || ne > uint64_t(std::numeric_limits<int64_t>::max()))
                fail(path, tn + " has dimension " + std::to_string(d) + " = " + std::to_string(ne) +
                               "; dimensions must be positive");
            if (__builtin_mul_overflow(numel, ne, &numel) || numel > uint64_t(std::numeric_limits<int64_t>::max()))
                fail(path, tn + ": the product of its dimensions overflows a 64-bit integer");
            t.dims.push_back(int64_t(ne));
        }
        const uint32_t type = c.get<uint32_t>("type of " + tn);
        const ggml_type_traits tr = ggml_traits(type);
        if (!tr.known)
            fail(path, tn + " has ggml type " + std::to_string(type) +
                           ", which is not a type GGUF defines (the file is corrupt or from a newer tool)");
        t.type = ggml_type(type);
        if (t.dims[0] % tr.block_size != 0)
            fail(path, tn + " has a first dimension of " + std::to_string(t.dims[0]) + ", not a multiple of the " +
                           tr.name + " block size " + std::to_string(tr.block_size));
        if (__builtin_mul_overflow(numel / uint64_t(tr.block_size), uint64_t(tr.type_size), &t.bytes))
            fail(path, tn + ": its size in bytes overflows a 64-bit integer");
        t.offset = c.get<uint64_t>("data offset of " + tn);
        if (t.offset % im->alignment != 0)
            fail(path, tn + " has data offset " + std::to_string(t.offset) + ", not a multiple of the alignment " +
                           std::to_string(im->alignment));
        im->by_name.emplace(t.name, im->tensors.size());
        im->tensors.push_back(std::move(t));
    }

    // Data section: after the tensor infos, padded to the alignment.
    const uint64_t pad = (im->alignment - c.pos() % im->alignment) % im->alignment;
    im->data_start = c.pos() + pad;
    if (!im->tensors.empty() && im->data_start > size)
        fail(path, "truncated: the tensor data section should start at byte " + std::to_string(im->data_start) +
                       " but the file has " + std::to_string(size) + " bytes");
    const uint64_t data_size = im->data_start <= size ? size - im->data_start : 0;
    std::vector<size_t> order(im->tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (const gguf_tensor_info& t : im->tensors)
        if (t.offset > data_size || t.bytes > data_size - t.offset)
            fail(path, "tensor " + quoted(t.name) + " has data at [" + std::to_string(t.offset) + ", " +
                           std::to_string(t.offset) + " + " + std::to_string(t.bytes) +
                           ") of the data section, past the end of the file (the data section has " +
                           std::to_string(data_size) + " bytes); the file is truncated");
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return im->tensors[a].offset < im->tensors[b].offset; });
    for (size_t i = 1; i < order.size(); ++i) {
        const gguf_tensor_info& a = im->tensors[order[i - 1]];
        const gguf_tensor_info& b = im->tensors[order[i]];
        if (a.offset + a.bytes > b.offset)
            fail(path, "tensors " + quoted(a.name) + " (bytes " + std::to_string(a.offset) + "-" +
                           std::to_string(a.offset + a.bytes) + ") and " + quoted(b.name) + " (from byte " +
                           std::to_string(b.offset) + ") overlap in the data section");
    }
    gguf_file f;
    f.impl_ = std::move(im);
    return f;
}

const std::string& gguf_file::path() const { return impl_->path; }
uint32_t gguf_file::version() const { return impl_->version; }
uint64_t gguf_file::alignment() const { return impl_->alignment; }
uint64_t gguf_file::file_size() const { return impl_->map->size; }

bool gguf_file::has(std::string_view key) const { return impl_->by_key.count(key) != 0; }

std::vector<std::string> gguf_file::keys() const {
    std::vector<std::string> r;
    for (const kv_entry& e : impl_->kvs) r.push_back(e.key);
    return r;
}

gguf_value_type gguf_file::type(std::string_view key) const { return impl_->require(key, "a value").type; }

gguf_value_type gguf_file::array_type(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "an array");
    if (e.type != gguf_value_type::array) impl_->wrong(e, "an array");
    return e.elem;
}

uint64_t gguf_file::array_size(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "an array");
    if (e.type != gguf_value_type::array) impl_->wrong(e, "an array");
    return e.count;
}

std::string gguf_file::get_string(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "a string");
    if (e.type != gguf_value_type::string) impl_->wrong(e, "a string");
    return std::string(impl_->string_at(e.pos));
}

int64_t gguf_file::get_int(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "an integer");
    int64_t v = 0;
    if (!is_integer(e.type)) impl_->wrong(e, "an integer");
    if (!impl_->int_at(e.type, e.pos, v)) impl_->fail_key(key, "is an integer above 2^63 - 1");
    return v;
}

uint32_t gguf_file::get_uint32(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "an unsigned integer (uint32)");
    if (!is_integer(e.type)) impl_->wrong(e, "an unsigned integer (uint32)");
    int64_t v = 0;
    if (!impl_->int_at(e.type, e.pos, v) || v < 0 || v > int64_t(UINT32_MAX))
        impl_->fail_key(key, "must be an integer from 0 to 2^32 - 1, found " + show(key));
    return uint32_t(v);
}

double gguf_file::get_float(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "a number (float32)");
    if (e.type == gguf_value_type::f32) return double(impl_->raw<float>(e.pos));
    if (e.type == gguf_value_type::f64) return impl_->raw<double>(e.pos);
    int64_t v = 0;
    if (is_integer(e.type) && impl_->int_at(e.type, e.pos, v)) return double(v);
    impl_->wrong(e, "a number (float32)");
}

bool gguf_file::get_bool(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "a bool");
    if (e.type != gguf_value_type::boolean) impl_->wrong(e, "a bool");
    const uint8_t b = impl_->raw<uint8_t>(e.pos);
    if (b > 1) impl_->fail_key(key, "is a bool stored as " + std::to_string(b) + " (only 0 and 1 are valid)");
    return b != 0;
}

std::vector<std::string> gguf_file::get_string_array(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "an array of strings");
    if (e.type != gguf_value_type::array || e.elem != gguf_value_type::string) impl_->wrong(e, "an array of strings");
    std::vector<std::string> r;
    r.reserve(size_t(e.count)); // bounded by the file size when it was opened
    uint64_t pos = e.pos;
    for (uint64_t i = 0; i < e.count; ++i) {
        std::string_view s = impl_->string_at(pos);
        r.emplace_back(s);
        pos += 8 + s.size();
    }
    return r;
}

std::vector<int64_t> gguf_file::get_int_array(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "an array of integers");
    if (e.type != gguf_value_type::array || !is_integer(e.elem)) impl_->wrong(e, "an array of integers");
    std::vector<int64_t> r(size_t(e.count));
    const uint64_t sz = uint64_t(scalar_size(uint32_t(e.elem)));
    for (uint64_t i = 0; i < e.count; ++i)
        if (!impl_->int_at(e.elem, e.pos + i * sz, r[size_t(i)]))
            impl_->fail_key(key, "element " + std::to_string(i) + " is an integer above 2^63 - 1");
    return r;
}

std::vector<float> gguf_file::get_float_array(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "an array of float32");
    if (e.type != gguf_value_type::array || (e.elem != gguf_value_type::f32 && e.elem != gguf_value_type::f64))
        impl_->wrong(e, "an array of float32");
    std::vector<float> r(size_t(e.count));
    for (uint64_t i = 0; i < e.count; ++i)
        r[size_t(i)] = e.elem == gguf_value_type::f32 ? impl_->raw<float>(e.pos + i * 4)
                                                      : float(impl_->raw<double>(e.pos + i * 8));
    return r;
}

std::string gguf_file::show(std::string_view key) const {
    const kv_entry& e = impl_->require(key, "a value");
    if (e.type == gguf_value_type::array)
        return "[" + std::to_string(e.count) + " " + gguf_value_type_name(e.elem) + " values]";
    if (e.type == gguf_value_type::string) {
        std::string_view s = impl_->string_at(e.pos);
        return "\"" + std::string(s.substr(0, 60)) + (s.size() > 60 ? "...\"" : "\"");
    }
    if (e.type == gguf_value_type::boolean) return impl_->raw<uint8_t>(e.pos) ? "true" : "false";
    if (e.type == gguf_value_type::f32) return std::to_string(impl_->raw<float>(e.pos));
    if (e.type == gguf_value_type::f64) return std::to_string(impl_->raw<double>(e.pos));
    int64_t v = 0;
    if (impl_->int_at(e.type, e.pos, v)) return std::to_string(v);
    return std::to_string(impl_->raw<uint64_t>(e.pos));
}

const std::vector<gguf_tensor_info>& gguf_file::tensors() const { return impl_->tensors; }

const gguf_tensor_info* gguf_file::find_tensor(std::string_view name) const {
    auto it = impl_->by_name.find(name);
    return it == impl_->by_name.end() ? nullptr : &impl_->tensors[it->second];
}

const std::byte* gguf_file::tensor_data(const gguf_tensor_info& t) const {
    return reinterpret_cast<const std::byte*>(impl_->at(impl_->data_start + t.offset));
}

void gguf_file::dequantize(const gguf_tensor_info& t, float* out) const {
    gguf_dequantize(t.type, tensor_data(t), t.numel(), out, impl_->path + ": tensor '" + t.name + "'");
}

// ---- tokenizer metadata ---------------------------------------------------------------------------------------

gguf_vocab read_gguf_vocab(const gguf_file& f) {
    // Keys: ggml docs/gguf.md "Tokenizer"; llama.cpp src/llama-vocab.cpp reads the same ones.
    gguf_vocab v;
    v.origin = f.path();
    v.model = f.get_string("tokenizer.ggml.model");
    if (f.has("tokenizer.ggml.pre")) v.pre = f.get_string("tokenizer.ggml.pre");
    // Bounds before the lists are copied out (vocabularies reach ~262k tokens, merges ~500k).
    for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"})
        if (f.has(key) && f.type(key) == gguf_value_type::array && f.array_size(key) > (uint64_t(1) << 23))
            throw error(error_code::format,
                        f.path() + ": metadata key '" + key + "' lists " + std::to_string(f.array_size(key)) +
                            " entries, more than the 8388608 a tokenizer may have",
                        hint_corrupt);
    v.tokens = f.get_string_array("tokenizer.ggml.tokens");
    const size_t n = v.tokens.size();
    auto bad_len = [&](const char* key, size_t got) {
        throw error(error_code::format,
                    f.path() + ": metadata key '" + key + "' has " + std::to_string(got) +
                        " entries but tokenizer.ggml.tokens has " + std::to_string(n),
                    hint_corrupt);
    };
    if (n == 0)
        throw error(error_code::format, f.path() + ": metadata key 'tokenizer.ggml.tokens' is an empty list",
                    hint_corrupt);
    if (f.has("tokenizer.ggml.scores")) {
        v.scores = f.get_float_array("tokenizer.ggml.scores");
        if (v.scores.size() != n) bad_len("tokenizer.ggml.scores", v.scores.size());
    }
    if (f.has("tokenizer.ggml.token_type")) {
        const std::vector<int64_t> types = f.get_int_array("tokenizer.ggml.token_type");
        if (types.size() != n) bad_len("tokenizer.ggml.token_type", types.size());
        v.token_types.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            if (types[i] < 0 || types[i] > 6)
                throw error(error_code::format,
                            f.path() + ": metadata key 'tokenizer.ggml.token_type' gives token " + std::to_string(i) +
                                " type " + std::to_string(types[i]) + " (types are 0-6)",
                            hint_corrupt);
            v.token_types.push_back(int32_t(types[i]));
        }
    }
    if (f.has("tokenizer.ggml.merges")) v.merges = f.get_string_array("tokenizer.ggml.merges");
    auto id = [&](const char* key, int& out) {
        if (!f.has(key)) return;
        const uint32_t x = f.get_uint32(key);
        if (x >= n)
            throw error(error_code::format,
                        f.path() + ": metadata key '" + key + "' is " + std::to_string(x) +
                            ", outside the vocabulary of " + std::to_string(n) + " tokens",
                        hint_corrupt);
        out = int(x);
    };
    id("tokenizer.ggml.bos_token_id", v.bos_id);
    id("tokenizer.ggml.eos_token_id", v.eos_id);
    id("tokenizer.ggml.unknown_token_id", v.unk_id);
    id("tokenizer.ggml.padding_token_id", v.pad_id);
    if (f.has("tokenizer.ggml.add_bos_token")) v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
    if (f.has("tokenizer.ggml.add_eos_token")) v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token");
    return v;
}

} // namespace qls
