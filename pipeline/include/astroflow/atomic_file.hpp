// Crash-safe output: write under a temporary name in the destination folder, fsync, rename.
// A reader (or a resumed run) therefore sees either the old file, no file, or the whole file.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace astroflow {

/// Temporary path in the same folder as `final_path`, unique per process and call
/// (".<name>.tmp.<pid>.<counter>"). Hidden so that input scans skip it.
[[nodiscard]] std::string temporary_path_for(const std::string& final_path);

/// When the new file is made durable (on disk after a power loss or kernel crash).
enum class Durability {
  kNow,       ///< fsync the file before the rename and its folder after it
  kDeferred,  ///< no fsync: the caller calls sync_filesystem() before relying on the file
};

/// Calls write(tmp_path), then (Durability::kNow) fsyncs and renames tmp_path onto final_path.
/// Either way no reader ever sees a partial final_path. On any exception the temporary file is
/// removed and the exception propagates. Creates parent folders.
void write_atomically(const std::string& final_path,
                      const std::function<void(const std::string& tmp_path)>& write,
                      Durability durability = Durability::kNow);

/// Convenience: write a whole text/binary buffer atomically, with one write(2).
void write_file_atomically(const std::string& final_path, std::string_view contents,
                           Durability durability = Durability::kNow);

/// syncfs(2) of the filesystem holding `dir`: every file written, renamed or removed there
/// before the call is durable when it returns. One call makes a whole group of
/// Durability::kDeferred writes durable (the group commit of the run's manifest). Throws
/// std::runtime_error naming `dir`.
void sync_filesystem(const std::string& dir);

/// Hex sha256 of a file's bytes (OpenSSL). Throws std::runtime_error naming the file.
[[nodiscard]] std::string sha256_file(const std::string& path);
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

}  // namespace astroflow
