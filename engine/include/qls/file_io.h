// Whole-file reads, atomic writes (temporary file, fsync, rename, fsync the folder), folder publishing, path joins.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace qls {

// dir + "/" + name, without doubling a trailing '/' of dir; just name when dir is empty.
std::string path_join(const std::string& dir, const std::string& name);

// True when path names a regular file (following links); false for anything else or any error. Never throws.
bool path_is_file(const std::string& path);

// The whole file as bytes (binary, no newline translation). Throws error_code::io "cannot open PATH: <errno text>"
// or "cannot read PATH: ..." (also for a folder) with `hint`, or with "check that the file exists and is readable"
// when hint is empty.
std::string read_file_text(const std::string& path, const std::string& hint = {});

// Flushes a file or a folder (is_dir) to disk: open, fsync, close. Best effort: returns false when the path cannot be
// opened or fsync fails for a reason other than the file system not supporting it (EINVAL, EROFS); never throws.
bool fsync_path(const std::string& path, bool is_dir);

// Replaces path with `bytes` atomically: they go to path + ".tmp" (created 0644, truncated), which is fsynced,
// closed and renamed over path; then path's folder is fsynced, so after a crash path holds either the old or the new
// contents, never a mix. The folder must exist. On failure the temporary file is removed and path is untouched; the
// error (error_code::io) reads "cannot write 'PATH': <what failed>: <errno text>" and says what to check.
void write_file_atomic(const std::string& path, std::string_view bytes);
// The same with the contents given as consecutive pieces (a header, then tensor data), written without a copy.
void write_file_atomic(const std::string& path, std::span<const std::string_view> parts);

// Publishes a folder written in full under a temporary name (a sibling, e.g. "run/checkpoints/.tmp-step-8") as
// final_dir: staged_dir is fsynced, renamed to final_dir and final_dir's parent is fsynced. An existing final_dir is
// replaced only once the new one is in place: it is first renamed to ".tmp-old-<name>" beside it, then removed (and
// put back if the rename of staged_dir fails). Throws error_code::io "FINAL_DIR: cannot move STAGED_DIR into place:
// <reason>".
void publish_dir_atomic(const std::string& staged_dir, const std::string& final_dir);

} // namespace qls
