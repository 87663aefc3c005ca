// Whole-file reads, atomic writes and directory publishing on POSIX file descriptors (EINTR-safe, errno in messages).
#include "qls/file_io.h"

#include "qls/error.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace qls {

namespace fs = std::filesystem;

namespace {

std::string errno_text(int e) { return std::strerror(e); }

const char* const k_read_hint = "check that the file exists and is readable";
const char* const k_write_hint =
    "check that the folder exists and is writable, that the path is not a folder, and that the disk is not full";

[[noreturn]] void fail_write(const std::string& path, const std::string& problem) {
    throw error(error_code::io, "cannot write '" + path + "': " + problem, k_write_hint);
}

int open_retry(const char* path, int flags, mode_t mode = 0) {
    int fd;
    do {
        fd = ::open(path, flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

// The folder holding path ("." for a bare name, "/" for a file at the root).
std::string parent_dir(const std::string& path) {
    auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

void write_all(int fd, std::string_view bytes, const std::string& path, const std::string& tmp) {
    const char* p = bytes.data();
    size_t n = bytes.size();
    while (n > 0) {
        ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            fail_write(path, "writing '" + tmp + "' failed: " + errno_text(errno));
        }
        p += w;
        n -= size_t(w);
    }
}

} // namespace

std::string path_join(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

bool path_is_file(const std::string& path) {
    std::error_code ec;
    return fs::is_regular_file(path, ec);
}

std::string read_file_text(const std::string& path, const std::string& hint) {
    const std::string h = hint.empty() ? k_read_hint : hint;
    const int fd = open_retry(path.c_str(), O_RDONLY);
    if (fd < 0) throw error(error_code::io, "cannot open " + path + ": " + errno_text(errno), h);
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } guard{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw error(error_code::io, "cannot read " + path + ": " + errno_text(errno), h);
    if (S_ISDIR(st.st_mode)) throw error(error_code::io, "cannot read " + path + ": it is a folder, not a file", h);
    std::string out;
    if (S_ISREG(st.st_mode)) out.reserve(size_t(st.st_size));
    char buf[1 << 16];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw error(error_code::io, "cannot read " + path + ": " + errno_text(errno), h);
        }
        if (n == 0) break;
        out.append(buf, size_t(n));
    }
    return out;
}

bool fsync_path(const std::string& path, bool is_dir) {
    const int fd = open_retry(path.c_str(), is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return false;
    const bool ok = ::fsync(fd) == 0 || errno == EINVAL || errno == EROFS;
    ::close(fd);
    return ok;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
    write_file_atomic(path, std::span<const std::string_view>(&bytes, 1));
}

void write_file_atomic(const std::string& path, std::span<const std::string_view> parts) {
    const std::string tmp = path + ".tmp";
    int fd = open_retry(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail_write(path, "cannot create temporary file '" + tmp + "': " + errno_text(errno));
    try {
        for (std::string_view part : parts) write_all(fd, part, path, tmp);
        if (::fsync(fd) != 0) fail_write(path, "fsync of '" + tmp + "' failed: " + errno_text(errno));
        const int rc = ::close(fd);
        fd = -1;
        if (rc != 0) fail_write(path, "closing '" + tmp + "' failed: " + errno_text(errno));
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            fail_write(path, "renaming '" + tmp + "' over it failed: " + errno_text(errno));
    } catch (...) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    // Make the rename durable. Some file systems cannot fsync a directory (EINVAL); the data are safe anyway.
    const std::string dir = parent_dir(path);
    fd = open_retry(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        fail_write(path, "the file was written but its folder '" + dir +
                             "' cannot be opened to sync it: " + errno_text(errno));
    const bool synced = ::fsync(fd) == 0 || errno == EINVAL || errno == EROFS;
    const int e = errno;
    ::close(fd);
    if (!synced) fail_write(path, "the file was written but syncing its folder '" + dir + "' failed: " + errno_text(e));
}

void publish_dir_atomic(const std::string& staged_dir, const std::string& final_dir) {
    const fs::path staged(staged_dir), target(final_dir);
    auto fail = [&](const std::error_code& ec) {
        throw error(error_code::io, final_dir + ": cannot move " + staged_dir + " into place: " + ec.message(),
                    "check that the folder is writable and the disk is not full");
    };
    fsync_path(staged_dir, true);
    std::error_code ec;
    if (fs::exists(target, ec)) {
        // the old folder stays whole until the new one is in place
        const fs::path old = target.parent_path() / (".tmp-old-" + target.filename().string());
        fs::remove_all(old, ec);
        fs::rename(target, old, ec);
        if (ec) fail(ec);
        fs::rename(staged, target, ec);
        if (ec) {
            std::error_code back;
            fs::rename(old, target, back);
            fail(ec);
        }
        fs::remove_all(old, ec);
    } else {
        fs::rename(staged, target, ec);
        if (ec) fail(ec);
    }
    std::string parent = target.parent_path().string();
    fsync_path(parent.empty() ? "." : parent, true);
}

} // namespace qls
