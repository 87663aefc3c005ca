// Small file helpers of a run directory (atomic text writes, whole-file reads, fsync) shared by trainer.cpp and checkpoint.cpp.
#pragma once

#include <filesystem>
#include <string>

namespace qls::run_files {

// fsync a file or a directory (best effort: a path that cannot be opened is skipped).
void fsync_path(const std::filesystem::path& p, bool directory);
// Writes text to path atomically: path.tmp, fsync, rename, fsync the directory. qls::error{io} names the file.
void write_file_atomic(const std::filesystem::path& path, const std::string& text);
// The whole file; qls::error{io} naming it when it cannot be opened.
std::string read_text(const std::filesystem::path& p);

} // namespace qls::run_files
