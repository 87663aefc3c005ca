// safetensors reader (mmap + full header validation) and atomic writer; format: https://github.com/huggingface/safetensors#format
//
// Layout (from the format spec): 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON (the header),
// then the data section. The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
// with offsets relative to the start of the data section, plus an optional "__metadata__" object of
// string -> string. Tensors are row-major and little-endian.
#include "qls/safetensors.h"

#include "io/safetensors_internal.h"
#include "qls/file_io.h"
#include "qls/json_input.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <set>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qls {

namespace {

using json = nlohmann::json;

// The reference implementation refuses headers above 100 MB (safetensors/src/tensor.rs MAX_HEADER_SIZE);
// no real checkpoint comes near it, so a larger value means a corrupt or foreign file.
constexpr uint64_t max_header_bytes = 100'000'000;

const char* const hint_corrupt =
    "the file is damaged or was not written completely: re-download it, or re-export it from the tool that "
    "produced it";

std::string errno_text(int e) { return std::strerror(e); }

[[noreturn]] void fail_format(const std::string& path, const std::string& problem, const char* hint = hint_corrupt) {
    throw error(error_code::format, path + ": " + problem, hint);
}

[[noreturn]] void fail_tensor(const std::string& path, const std::string& name, const std::string& problem) {
    fail_format(path, "tensor '" + name + "' " + problem);
}

// The dtypes the format defines (safetensors/src/tensor.rs, enum Dtype). Ones outside qls::dtype are valid
// safetensors but not something this application reads, which is a different message than a typo.
bool is_spec_dtype(std::string_view s) {
    static constexpr std::string_view spec[] = {"BOOL",    "F4",      "F6_E2M3", "F6_E3M2", "U8",  "I8",   "F8_E5M2",
                                                "F8_E4M3", "F8_E8M0", "I16",     "U16",     "F16", "BF16", "I32",
                                                "U32",     "F32",     "C64",     "F64",     "I64", "U64"};
    return std::find(std::begin(spec), std::end(spec), s) != std::end(spec);
}

std::string supported_dtype_list() {
    std::string r;
    for (dtype t : {dtype::f64, dtype::f32, dtype::f16, dtype::bf16, dtype::i64, dtype::i32, dtype::i16, dtype::i8,
                    dtype::u8, dtype::boolean})
        r += std::string(r.empty() ? "" : ", ") + dtype_name(t);
    return r;
}

// Rank of a dtype in the reference writer's Dtype enum (safetensors/src/tensor.rs): the writer orders tensors
// by this rank, descending ("descending dtype alignment"), then by name. Only the relative order matters.
int writer_rank(dtype t) {
    switch (t) {
    case dtype::boolean: return 0;
    case dtype::u8: return 1;
    case dtype::i8: return 2;
    case dtype::i16: return 3;
    case dtype::f16: return 4;
    case dtype::bf16: return 5;
    case dtype::i32: return 6;
    case dtype::f32: return 7;
    case dtype::f64: return 8;
    case dtype::i64: return 9;
    }
    return -1;
}

std::string json_brief(const json& j) { return json_shown(j, 80); }

// Read-only private mapping of a whole file; unmapped when the last safetensors_file copy goes away.
struct mapping {
    const std::byte* data = nullptr;
    size_t size = 0;
    mapping() = default;
    mapping(const mapping&) = delete;
    mapping& operator=(const mapping&) = delete;
    ~mapping() {
        if (data) ::munmap(const_cast<std::byte*>(data), size);
    }
};

struct fd_guard {
    int fd = -1;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

std::shared_ptr<const mapping> map_file(const std::string& path) {
    const char* hint = "check that the path is right and that the file is readable";
    fd_guard f;
    do {
        f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (f.fd < 0 && errno == EINTR);
    if (f.fd < 0) throw error(error_code::io, path + ": cannot open: " + errno_text(errno), hint);
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) throw error(error_code::io, path + ": cannot stat: " + errno_text(errno), hint);
    if (S_ISDIR(st.st_mode))
        throw error(error_code::io, path + ": is a directory, not a .safetensors file",
                    "pick the .safetensors file inside the folder");
    if (!S_ISREG(st.st_mode))
        throw error(error_code::io, path + ": is not a regular file", "pick a .safetensors file on disk");
    auto m = std::make_shared<mapping>();
    if (st.st_size < 8)
        fail_format(path, "file is only " + std::to_string(st.st_size) +
                              " bytes, shorter than the 8-byte header length; the file is truncated or not a "
                              "safetensors file");
    m->size = size_t(st.st_size);
    void* p = ::mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, f.fd, 0);
    if (p == MAP_FAILED)
        throw error(error_code::io,
                    path + ": cannot memory-map " + std::to_string(m->size) + " bytes: " + errno_text(errno),
                    "check that the file is on a local disk and that enough address space is available");
    m->data = static_cast<const std::byte*>(p);
    return m;
}

// Product of the dimensions with overflow checks; false when it (or any partial product) exceeds int64.
bool checked_numel(const shape_t& s, uint64_t& out) {
    uint64_t n = 1;
    for (int64_t d : s) {
        if (__builtin_mul_overflow(n, uint64_t(d), &n) || n > uint64_t(std::numeric_limits<int64_t>::max()))
            return false;
    }
    out = n;
    return true;
}

// A JSON value as a non-negative integer: "ok", or the reason it is not one.
enum class uint_check { ok, negative, not_integer };
uint_check as_uint(const json& v, uint64_t& out) {
    if (v.is_number_unsigned()) {
        out = v.get<uint64_t>();
        return uint_check::ok;
    }
    if (v.is_number_integer()) {
        int64_t x = v.get<int64_t>();
        if (x < 0) return uint_check::negative;
        out = uint64_t(x);
        return uint_check::ok;
    }
    if (v.is_number_float() && v.get<double>() < 0) return uint_check::negative;
    return uint_check::not_integer;
}

std::string offsets_str(uint64_t b, uint64_t e) { return "[" + std::to_string(b) + ", " + std::to_string(e) + "]"; }

} // namespace

struct safetensors_file::impl {
    std::string path;
    std::shared_ptr<const mapping> map;
    const std::byte* data_section = nullptr; // first byte after the header
    uint64_t data_size = 0;
    std::vector<safetensors_entry> entries; // sorted by (begin, end, name)
    std::map<std::string, size_t, std::less<>> by_name;
    std::map<std::string, std::string> metadata;

    const safetensors_entry& require(std::string_view name) const {
        auto it = by_name.find(name);
        if (it == by_name.end())
            throw error(error_code::format,
                        path + ": no tensor named '" + std::string(name) + "' (the file has " +
                            std::to_string(entries.size()) + " tensors)",
                        "the checkpoint does not match what the model expects: check that it is the right file "
                        "for this architecture");
        return entries[it->second];
    }
};

safetensors_file safetensors_file::open(const std::string& path) {
    auto im = std::make_shared<impl>();
    im->path = path;
    im->map = map_file(path);
    const std::byte* base = im->map->data;
    const uint64_t file_size = im->map->size;

    // 8 bytes: the header size N, unsigned little-endian 64-bit (spec, "Format").
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint64_t(std::to_integer<uint8_t>(base[i]));
    if (n > max_header_bytes && n <= file_size - 8)
        fail_format(path, "header length " + std::to_string(n) + " bytes exceeds the " +
                              std::to_string(max_header_bytes) + "-byte limit; this is not a valid safetensors file");
    if (n > file_size - 8)
        fail_format(path, "header length " + std::to_string(n) + " bytes runs past the end of the file (" +
                              std::to_string(file_size) + " bytes); the file is truncated or not a safetensors file");
    im->data_section = base + 8 + n;
    im->data_size = file_size - 8 - n;

    // N bytes: a UTF-8 JSON object. Top-level keys must be unique (the reference parser rejects duplicates),
    // which nlohmann would otherwise resolve silently to the last one. The JSON must fill the N bytes: only
    // trailing spaces (the reference writer's padding) may follow it; a NUL and junk after it are refused.
    const std::string_view header(reinterpret_cast<const char*>(base + 8), size_t(n));
    json_limits limits;
    limits.max_bytes = max_header_bytes;
    limits.unique_top_level_keys = true;
    json_parse_result parsed = try_parse_json(header, limits);
    if (!parsed.ok) {
        if (!parsed.duplicate_key.empty())
            fail_format(path, "header lists '" + parsed.duplicate_key + "' more than once; the file is corrupt");
        fail_format(path, "header is not valid JSON (" + parsed.problem + "); the file is corrupt");
    }
    const json j = std::move(parsed.value);
    if (!j.is_object())
        fail_format(path, "header is JSON but not an object (it is " + std::string(j.type_name()) +
                              "); this is not a safetensors file");

    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& name = it.key();
        const json& v = it.value();
        if (name == "__metadata__") {
            // Spec: a special key for storing free form text-to-text map.
            if (!v.is_object())
                fail_format(path,
                            "__metadata__ is not an object of strings (it is " + std::string(v.type_name()) + ")");
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m->is_string())
                    fail_format(path, "__metadata__ entry '" + m.key() + "' is not a string (it is " +
                                          std::string(m->type_name()) + ")");
                im->metadata.emplace(m.key(), m->get<std::string>());
            }
            continue;
        }
        if (!v.is_object())
            fail_tensor(path, name, "header entry is not an object (it is " + std::string(v.type_name()) + ")");

        safetensors_entry e;
        e.name = name;

        auto dt = v.find("dtype");
        if (dt == v.end()) fail_tensor(path, name, "has no \"dtype\"");
        if (!dt->is_string()) fail_tensor(path, name, "\"dtype\" is not a string: " + json_brief(*dt));
        const std::string& dts = dt->get_ref<const std::string&>();
        auto t = dtype_from_name(dts);
        if (!t) {
            if (is_spec_dtype(dts))
                throw error(error_code::unsupported,
                            path + ": tensor '" + name + "' has dtype '" + dts + "', which QLoRA Studio does not read",
                            "supported dtypes are " + supported_dtype_list() +
                                "; convert the checkpoint (for example to BF16) and try again");
            fail_tensor(path, name, "has unknown dtype '" + dts + "' (known: " + supported_dtype_list() + ")");
        }
        e.type = *t;

        auto sh = v.find("shape");
        if (sh == v.end()) fail_tensor(path, name, "has no \"shape\"");
        if (!sh->is_array()) fail_tensor(path, name, "\"shape\" is not an array: " + json_brief(*sh));
        for (const json& d : *sh) {
            uint64_t x = 0;
            switch (as_uint(d, x)) {
            case uint_check::negative: fail_tensor(path, name, "has a negative dimension in shape " + json_brief(*sh));
            case uint_check::not_integer:
                fail_tensor(path, name, "has a non-integer dimension in shape " + json_brief(*sh));
            case uint_check::ok: break;
            }
            if (x > uint64_t(std::numeric_limits<int64_t>::max()))
                fail_tensor(path, name, "shape " + json_brief(*sh) + " has a dimension too large to be real");
            e.shape.push_back(int64_t(x));
        }
        uint64_t numel = 0, nbytes = 0;
        if (!checked_numel(e.shape, numel) || __builtin_mul_overflow(numel, uint64_t(dtype_size(e.type)), &nbytes))
            fail_tensor(path, name, "shape " + shape_str(e.shape) + " overflows a 64-bit element count");

        auto off = v.find("data_offsets");
        if (off == v.end()) fail_tensor(path, name, "has no \"data_offsets\"");
        if (!off->is_array() || off->size() != 2)
            fail_tensor(path, name, "data_offsets must be two integers [begin, end], got " + json_brief(*off));
        uint64_t b = 0, en = 0;
        if (as_uint((*off)[0], b) != uint_check::ok || as_uint((*off)[1], en) != uint_check::ok)
            fail_tensor(path, name, "data_offsets " + json_brief(*off) + " are not two non-negative integers");
        if (b > en) fail_tensor(path, name, "data_offsets " + offsets_str(b, en) + " have begin after end");
        if (en > im->data_size)
            fail_tensor(path, name,
                        "data_offsets " + offsets_str(b, en) + " end past the end of the data section (" +
                            std::to_string(im->data_size) + " bytes); the file is truncated or corrupt");
        if (en - b != nbytes)
            fail_tensor(path, name,
                        "data_offsets " + offsets_str(b, en) + " span " + std::to_string(en - b) + " bytes but shape " +
                            shape_str(e.shape) + " of " + dtype_name(e.type) + " needs " + std::to_string(nbytes) +
                            " bytes (size mismatch)");
        e.begin = b;
        e.end = en;
        im->entries.push_back(std::move(e));
    }

    std::sort(im->entries.begin(), im->entries.end(), [](const safetensors_entry& a, const safetensors_entry& b) {
        if (a.begin != b.begin) return a.begin < b.begin;
        if (a.end != b.end) return a.end < b.end;
        return a.name < b.name;
    });
    // No two tensors may share bytes. Sorted by begin, a range overlaps an earlier one exactly when it starts
    // before the furthest end seen so far. Empty tensors own no bytes and cannot overlap anything.
    const safetensors_entry* furthest = nullptr;
    for (const auto& e : im->entries) {
        if (e.begin == e.end) continue;
        if (furthest && e.begin < furthest->end)
            fail_format(path, "tensors '" + furthest->name + "' " + offsets_str(furthest->begin, furthest->end) +
                                  " and '" + e.name + "' " + offsets_str(e.begin, e.end) +
                                  " overlap in the data section; the file is corrupt");
        if (!furthest || e.end > furthest->end) furthest = &e;
    }
    for (size_t i = 0; i < im->entries.size(); ++i) im->by_name.emplace(im->entries[i].name, i);

    safetensors_file f;
    f.impl_ = std::move(im);
    return f;
}

const std::string& safetensors_file::path() const { return impl_->path; }
const std::vector<safetensors_entry>& safetensors_file::entries() const { return impl_->entries; }
const std::map<std::string, std::string>& safetensors_file::metadata() const { return impl_->metadata; }

const safetensors_entry* safetensors_file::find(std::string_view name) const {
    auto it = impl_->by_name.find(name);
    return it == impl_->by_name.end() ? nullptr : &impl_->entries[it->second];
}

const std::byte* safetensors_file::bytes(const safetensors_entry& e) const {
    QLS_ASSERT(e.begin <= e.end && e.end <= impl_->data_size);
    return impl_->data_section + e.begin;
}

tensor safetensors_file::read(std::string_view name) const {
    const safetensors_entry& e = impl_->require(name);
    tensor t(e.type, e.shape);
    QLS_ASSERT(t.nbytes() == e.end - e.begin);
    if (t.nbytes()) std::memcpy(t.raw(), bytes(e), t.nbytes());
    return t;
}

tensor safetensors_file::read_f32(std::string_view name) const {
    const safetensors_entry& e = impl_->require(name);
    tensor out(dtype::f32, e.shape);
    const size_t esize = dtype_size(e.type);
    const size_t n = size_t(out.numel());
    QLS_ASSERT(n * esize == e.end - e.begin);
    const std::byte* src = bytes(e);
    if (e.type == dtype::f32) {
        if (n) std::memcpy(out.raw(), src, n * 4);
        return out;
    }
    // The mapped bytes need not be aligned for the stored type (only the data section start is, when the
    // writer padded the header), so convert through an aligned bounce buffer in chunks.
    constexpr size_t chunk = 16384;
    std::vector<uint64_t> bounce(chunk); // 8-byte elements: aligned and large enough for any dtype
    for (size_t i = 0; i < n; i += chunk) {
        size_t m = std::min(chunk, n - i);
        std::memcpy(bounce.data(), src + i * esize, m * esize);
        convert_to_f32(out.f32() + i, bounce.data(), e.type, m);
    }
    return out;
}

tensor safetensors_file::read_weight_f32(std::string_view name) const {
    const safetensors_entry& e = impl_->require(name);
    tensor t(dtype::f32, e.shape);
    read_weight_f32_into(name, t.f32());
    return t;
}

namespace {

// Whether an f32 / bf16 bit pattern is NaN or infinite (exponent all ones), branch-free so the check vectorizes.
inline uint32_t nonfinite_f32_bits(uint32_t b) { return (b & 0x7f800000u) == 0x7f800000u; }
inline uint32_t nonfinite_bf16_bits(uint16_t b) { return (b & 0x7f80u) == 0x7f80u; }

// Runs body(first, count) over [0, n) in chunks of `chunk` elements on every core (OpenMP), and returns the index of
// the first chunk for which body returned true, or SIZE_MAX. body must not throw. A 7B checkpoint's 13 GB of bf16
// become 26 GB of f32: one core converts a few GB/s, so the load's conversion is spread over the machine.
template <class Body> size_t first_flagged_chunk(size_t n, size_t chunk, Body body) {
    const int64_t nchunks = int64_t((n + chunk - 1) / chunk);
    std::vector<uint8_t> flagged(size_t(nchunks), 0);
#pragma omp parallel for schedule(static) if (nchunks > 4)
    for (int64_t c = 0; c < nchunks; ++c) {
        const size_t i = size_t(c) * chunk;
        flagged[size_t(c)] = body(i, std::min(chunk, n - i)) ? 1 : 0;
    }
    for (int64_t c = 0; c < nchunks; ++c)
        if (flagged[size_t(c)]) return size_t(c);
    return SIZE_MAX;
}

constexpr size_t k_convert_chunk = 16384; // elements; the bounce buffer (8 bytes each) stays in the L1/L2 cache

[[noreturn]] void fail_nonfinite(const std::string& path, const std::string& tensor, bool nan, size_t element) {
    fail_format(path,
                "tensor '" + tensor + "' holds " + (nan ? "NaN" : "an infinite value") + " at element " +
                    std::to_string(element) + " (as f32); a model weight must be finite",
                "the weights are corrupt, or were saved from a run that diverged; use a good copy of them");
}

} // namespace

void safetensors_file::read_weight_f32_into(std::string_view name, float* out) const {
    const safetensors_entry& e = impl_->require(name);
    if (e.type != dtype::f32 && e.type != dtype::f16 && e.type != dtype::bf16 && e.type != dtype::f64)
        fail_format(impl_->path,
                    "tensor '" + e.name + "' has dtype " + dtype_name(e.type) +
                        ", but a floating-point weight (F32, F16, BF16 or F64) is expected here",
                    "the file does not hold this model's weights as saved by transformers or PEFT; export it again");
    const size_t esize = dtype_size(e.type);
    const size_t n = size_t(e.end - e.begin) / esize;
    const std::byte* src = bytes(e);
    // The mapped bytes need not be aligned for the stored type (only the data section start is, when the writer
    // padded the header), so each chunk goes through a small aligned bounce buffer and is converted into out
    // directly; the finite check runs on the chunk just written. Chunks run in parallel.
    const size_t bad = first_flagged_chunk(n, k_convert_chunk, [&](size_t i, size_t m) {
        float* dst = out + i;
        if (e.type == dtype::f32) {
            std::memcpy(dst, src + i * esize, m * esize);
        } else {
            thread_local std::vector<uint64_t> bounce(k_convert_chunk); // 8-byte elements: any dtype fits, aligned
            std::memcpy(bounce.data(), src + i * esize, m * esize);
            convert_to_f32(dst, bounce.data(), e.type, m);
        }
        uint32_t any = 0;
        for (size_t j = 0; j < m; ++j) {
            uint32_t b;
            std::memcpy(&b, dst + j, 4);
            any |= nonfinite_f32_bits(b);
        }
        return any != 0;
    });
    if (bad != SIZE_MAX)
        for (size_t j = bad * k_convert_chunk; j < n; ++j)
            if (!std::isfinite(out[j])) fail_nonfinite(impl_->path, e.name, std::isnan(out[j]), j);
    release_pages(e);
}

bool safetensors_file::read_weight_bf16_into(std::string_view name, uint16_t* out) const {
    const safetensors_entry& e = impl_->require(name);
    if (e.type != dtype::bf16) return false;
    const size_t n = size_t(e.end - e.begin) / 2;
    const std::byte* src = bytes(e);
    // Copied as stored (memcpy: the mapping need not be 2-byte aligned), checked finite on the copy, in parallel.
    const size_t bad = first_flagged_chunk(n, k_convert_chunk * 4, [&](size_t i, size_t m) {
        std::memcpy(out + i, src + i * 2, m * 2);
        uint32_t any = 0;
        for (size_t j = 0; j < m; ++j) any |= nonfinite_bf16_bits(out[i + j]);
        return any != 0;
    });
    if (bad != SIZE_MAX)
        for (size_t j = bad * k_convert_chunk * 4; j < n; ++j)
            if (nonfinite_bf16_bits(out[j])) fail_nonfinite(impl_->path, e.name, (out[j] & 0x7fu) != 0, j);
    release_pages(e);
    return true;
}

void safetensors_file::release_pages(const safetensors_entry& e) const {
    // Whole pages inside the tensor's byte range only: a neighbour sharing a boundary page keeps it.
    const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
    const uintptr_t lo = uintptr_t(bytes(e)), hi = lo + uintptr_t(e.end - e.begin);
    const uintptr_t a = (lo + page - 1) / page * page, b = hi / page * page;
    // Advice only: a failure leaves the pages resident, which is still correct.
    if (b > a) (void)::madvise(reinterpret_cast<void*>(a), size_t(b - a), MADV_DONTNEED);
}

// ---- writer ------------------------------------------------------------------------------------------

void safetensors_save(const std::string& path, const std::vector<std::pair<std::string, tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
    // Same order as the reference writer (safetensors/src/tensor.rs, prepare()): descending dtype rank, then
    // name ascending byte-wise; data follow in that order with no gaps. This makes the output byte-identical
    // to safetensors.numpy.save_file for the same tensors (and for metadata with at most one key: the
    // reference keeps metadata in a HashMap, whose order is random; ours is sorted by key).
    std::vector<const std::pair<std::string, tensor>*> order;
    std::set<std::string_view> names;
    for (const auto& nt : tensors) {
        if (nt.first == "__metadata__")
            throw error(error_code::invalid_argument,
                        "cannot write '" + path + "': '__metadata__' is reserved and cannot name a tensor");
        if (!names.insert(nt.first).second)
            throw error(error_code::invalid_argument,
                        "cannot write '" + path + "': tensor '" + nt.first + "' is listed twice");
        if (nt.second.empty())
            throw error(error_code::invalid_argument,
                        "cannot write '" + path + "': tensor '" + nt.first + "' has no storage");
        order.push_back(&nt);
    }
    std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) {
        return safetensors_detail::written_before(a->second.type(), a->first, b->second.type(), b->first);
    });
    std::vector<safetensors_detail::header_tensor> listed;
    listed.reserve(order.size());
    for (const auto* nt : order)
        listed.push_back({nt->first, nt->second.type(), &nt->second.shape(), nt->second.nbytes()});
    const std::string header = safetensors_detail::header_json(path, listed, metadata, {});
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t(header.size()) >> (8 * i));

    std::vector<std::string_view> parts;
    parts.reserve(order.size() + 2);
    parts.emplace_back(reinterpret_cast<const char*>(len), sizeof len);
    parts.emplace_back(header);
    for (const auto* nt : order) parts.emplace_back(static_cast<const char*>(nt->second.raw()), nt->second.nbytes());
    write_file_atomic(path, parts);
}

namespace safetensors_detail {

bool written_before(dtype a, std::string_view name_a, dtype b, std::string_view name_b) {
    const int ra = writer_rank(a), rb = writer_rank(b);
    if (ra != rb) return ra > rb;
    return name_a < name_b;
}

std::string header_json(const std::string& path, const std::vector<header_tensor>& tensors,
                        const std::map<std::string, std::string>& metadata, const std::string& utf8_hint) {
    // Compact, keys in the order given (nlohmann only escapes the strings; serde_json and it agree on escapes:
    // \" \\ \b \f \n \r \t, other control characters as \u00xx, UTF-8 passed through).
    std::string header = "{";
    try {
        auto str = [](std::string_view s) {
            return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::strict);
        };
        if (!metadata.empty()) {
            header += "\"__metadata__\":{";
            bool first = true;
            for (const auto& [k, v] : metadata) {
                header += (first ? "" : ",") + str(k) + ":" + str(v);
                first = false;
            }
            header += "}";
        }
        uint64_t offset = 0;
        bool first = metadata.empty();
        for (const header_tensor& t : tensors) {
            header += (first ? "" : ",") + str(t.name) + ":{\"dtype\":\"" + dtype_name(t.type) + "\",\"shape\":[";
            first = false;
            for (size_t i = 0; i < t.shape->size(); ++i) header += (i ? "," : "") + std::to_string((*t.shape)[i]);
            const uint64_t end = offset + t.nbytes;
            header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
            offset = end;
        }
    } catch (const json::exception& e) {
        throw error(error_code::invalid_argument,
                    "cannot write '" + path + "': a tensor name or metadata string is not valid UTF-8 (" + e.what() +
                        ")",
                    utf8_hint);
    }
    header += "}";
    // Spec: the header may be padded with trailing spaces (0x20); the reference pads to a multiple of 8.
    header.append((8 - header.size() % 8) % 8, ' ');
    return header;
}

} // namespace safetensors_detail

} // namespace qls
