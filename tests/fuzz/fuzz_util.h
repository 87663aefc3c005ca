// What every fuzz target shares: the qls::error policy, a private scratch folder for parsers that read files, and
// splitting one input into several files.
#pragma once

#include "qls/error.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

namespace qls_fuzz {

// A fixed day (2026-12-05) for chat templates that print the date (render_options::now), so an input renders the
// same way on every run.
inline std::tm fixed_date() {
    std::tm tm{};
    tm.tm_year = 126;
    tm.tm_mon = 11;
    tm.tm_mday = 5;
    return tm;
}

// Runs one parse. A qls::error is the expected answer to bad input, except error_code::internal (a failed invariant,
// which input must never reach): that aborts, and so does any other exception, so libFuzzer reports both.
template <class F> void expect_only_user_errors(F&& f) {
    try {
        f();
    } catch (const qls::error& e) {
        if (e.code() == qls::error_code::internal) {
            std::fprintf(stderr, "qls::error internal on fuzz input: %s\n", e.what());
            std::abort();
        }
    }
}

// A folder of this process's own, on tmpfs when there is one (/dev/shm), removed at exit. Parsers that take a path
// read the input from files written here.
inline const std::string& scratch_dir() {
    // Never destroyed, so the exit handler that removes the folder can still read it.
    static const std::string* const dir = [] {
        namespace fs = std::filesystem;
        std::error_code ec;
        fs::path base = fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
        fs::path d = base / ("qls-fuzz-" + std::to_string(::getpid()));
        fs::remove_all(d, ec);
        fs::create_directories(d);
        return new std::string(d.string());
    }();
    static const bool cleanup = [] {
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(*dir, ec);
        });
        return true;
    }();
    (void)cleanup;
    return *dir;
}

// scratch_dir()/rel (parent folders created).
inline std::string scratch_path(const std::string& rel) {
    const std::filesystem::path p = std::filesystem::path(scratch_dir()) / rel;
    std::filesystem::create_directories(p.parent_path());
    return p.string();
}

// Writes bytes to scratch_dir()/rel and returns the path.
inline std::string write_scratch(const std::string& rel, std::string_view bytes) {
    const std::string p = scratch_path(rel);
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    if (!out) {
        std::fprintf(stderr, "fuzz harness: cannot write %s\n", p.c_str());
        std::abort();
    }
    return p;
}

// Copies a file of the source tree (seed data the harness needs beside the input) into the scratch folder.
inline std::string copy_to_scratch(const std::string& from, const std::string& rel) {
    const std::string p = scratch_path(rel);
    std::filesystem::copy_file(from, p, std::filesystem::copy_options::overwrite_existing);
    return p;
}

// Splits an input into `n` parts at the separator line "\n%%%%\n" (in the dictionaries, so mutations keep the
// layout); missing parts are empty, extra separators stay in the last part.
inline std::vector<std::string_view> split_parts(std::string_view in, size_t n) {
    static constexpr std::string_view sep = "\n%%%%\n";
    std::vector<std::string_view> parts;
    while (parts.size() + 1 < n) {
        const size_t k = in.find(sep);
        if (k == std::string_view::npos) break;
        parts.push_back(in.substr(0, k));
        in.remove_prefix(k + sep.size());
    }
    parts.push_back(in);
    parts.resize(n);
    return parts;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
    return std::string_view(reinterpret_cast<const char*>(data), size);
}

} // namespace qls_fuzz
