// Streaming safetensors writer: the header from (name, dtype, shape) up front, then the data tensor by tensor, then
// fsync and rename; format: https://github.com/huggingface/safetensors#format
#include "io/safetensors_internal.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <unistd.h>

namespace qls {

namespace {

const char* const k_write_hint =
    "check that the folder exists and is writable, that the path is not a folder, and that the disk is not full";

[[noreturn]] void fail_io(const std::string& path, const std::string& problem) {
    throw error(error_code::io, "cannot write '" + path + "': " + problem, k_write_hint);
}

} // namespace

uint64_t safetensors_tensor_spec::nbytes() const { return uint64_t(shape_numel(shape)) * dtype_size(type); }

safetensors_stream_writer::safetensors_stream_writer(const std::string& path, std::vector<safetensors_tensor_spec> ts,
                                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tmp_(path + ".tmp"), order_(std::move(ts)) {
    std::set<std::string_view> names;
    for (const safetensors_tensor_spec& t : order_) {
        if (t.name == "__metadata__")
            throw error(error_code::invalid_argument,
                        "cannot write '" + path + "': '__metadata__' is reserved and cannot name a tensor",
                        "rename the tensor");
        if (!names.insert(t.name).second)
            throw error(error_code::invalid_argument,
                        "cannot write '" + path + "': tensor '" + t.name + "' is listed twice",
                        "list every tensor once");
        for (int64_t d : t.shape)
            if (d < 0)
                throw error(error_code::invalid_argument,
                            "cannot write '" + path + "': tensor '" + t.name + "' has the negative shape " +
                                shape_str(t.shape),
                            "give every dimension as a size of 0 or more");
    }
    std::stable_sort(order_.begin(), order_.end(),
                     [](const safetensors_tensor_spec& a, const safetensors_tensor_spec& b) {
                         return safetensors_detail::written_before(a.type, a.name, b.type, b.name);
                     });

    // The header exactly as safetensors_save writes it, the tensors in order() with consecutive data_offsets.
    std::vector<safetensors_detail::header_tensor> listed;
    listed.reserve(order_.size());
    uint64_t data_bytes = 0;
    for (const safetensors_tensor_spec& t : order_) {
        listed.push_back({t.name, t.type, &t.shape, t.nbytes()});
        data_bytes += t.nbytes();
    }
    const std::string header = safetensors_detail::header_json(path, listed, metadata,
                                                               "name tensors and metadata with UTF-8 text");
    file_size_ = 8 + header.size() + data_bytes;

    do {
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) fail_io(path_, "cannot create temporary file '" + tmp_ + "': " + std::strerror(errno));
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t(header.size()) >> (8 * i));
    try {
        const std::string_view parts[] = {{reinterpret_cast<const char*>(len), sizeof len}, header};
        for (std::string_view p : parts) {
            while (!p.empty()) {
                const ssize_t w = ::write(fd_, p.data(), std::min<size_t>(p.size(), size_t(1) << 30));
                if (w < 0 && errno == EINTR) continue;
                if (w < 0) fail_io(path_, "writing '" + tmp_ + "' failed: " + std::strerror(errno));
                p.remove_prefix(size_t(w));
            }
        }
    } catch (...) {
        ::close(fd_);
        fd_ = -1;
        ::unlink(tmp_.c_str());
        throw;
    }
}

safetensors_stream_writer::~safetensors_stream_writer() {
    if (finished_) return;
    if (fd_ >= 0) ::close(fd_);
    ::unlink(tmp_.c_str());
}

const std::string& safetensors_stream_writer::next_name() const {
    static const std::string none;
    return next_ < order_.size() ? order_[next_].name : none;
}

void safetensors_stream_writer::write(const std::string& name, std::string_view bytes) {
    if (fd_ < 0 || finished_)
        throw error(error_code::invalid_argument, "cannot write '" + path_ + "': the file is already finished",
                    "write each tensor listed to the writer once, in its order(), with numel x dtype size bytes");
    if (next_ >= order_.size())
        throw error(error_code::invalid_argument,
                    "cannot write '" + path_ + "': tensor '" + name + "' comes after every listed tensor was written",
                    "write each tensor listed to the writer once, in its order(), with numel x dtype size bytes");
    const safetensors_tensor_spec& t = order_[next_];
    if (name != t.name)
        throw error(error_code::invalid_argument,
                    "cannot write '" + path_ + "': tensor '" + name + "' written where '" + t.name + "' is next",
                    "write the tensors in the writer's order()");
    if (bytes.size() > t.nbytes() - next_written_)
        throw error(error_code::invalid_argument,
                    "cannot write '" + path_ + "': tensor '" + name + "' (" + dtype_name(t.type) + " " +
                        shape_str(t.shape) + ") needs " + std::to_string(t.nbytes()) + " bytes; " +
                        std::to_string(next_written_) + " were written and " + std::to_string(bytes.size()) +
                        " more would exceed them",
                    "write each tensor listed to the writer once, in its order(), with numel x dtype size bytes");
    next_written_ += bytes.size();
    while (!bytes.empty()) {
        const ssize_t w = ::write(fd_, bytes.data(), std::min<size_t>(bytes.size(), size_t(1) << 30));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) fail_io(path_, "writing tensor '" + name + "' to '" + tmp_ + "' failed: " + std::strerror(errno));
        bytes.remove_prefix(size_t(w));
    }
    if (next_written_ == t.nbytes()) {
        ++next_;
        next_written_ = 0;
    }
}

void safetensors_stream_writer::finish() {
    if (finished_) return;
    if (next_ != order_.size())
        throw error(error_code::invalid_argument,
                    "cannot write '" + path_ + "': tensor '" + order_[next_].name + "' (" +
                        std::to_string(next_written_) + " of " + std::to_string(order_[next_].nbytes()) +
                        " bytes written) and " + std::to_string(order_.size() - next_ - 1) + " more were never written",
                    "write each tensor listed to the writer once, in its order(), with numel x dtype size bytes");
    if (::fsync(fd_) != 0) fail_io(path_, "fsync of '" + tmp_ + "' failed: " + std::strerror(errno));
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail_io(path_, "closing '" + tmp_ + "' failed: " + std::strerror(errno));
    if (::rename(tmp_.c_str(), path_.c_str()) != 0)
        fail_io(path_, "renaming '" + tmp_ + "' over it failed: " + std::strerror(errno));
    finished_ = true;
    const size_t slash = path_.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
    if (!fsync_path(dir, true)) fail_io(path_, "the file was written but syncing its folder '" + dir + "' failed");
}

} // namespace qls
