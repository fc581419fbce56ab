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

/// Calls write(tmp_path), then fsyncs and renames tmp_path onto final_path. On any exception
/// the temporary file is removed and the exception propagates. Creates parent folders.
void write_atomically(const std::string& final_path,
                      const std::function<void(const std::string& tmp_path)>& write);

/// Convenience: write a whole text/binary buffer atomically.
void write_file_atomically(const std::string& final_path, std::string_view contents);

/// Hex sha256 of a file's bytes (OpenSSL). Throws std::runtime_error naming the file.
[[nodiscard]] std::string sha256_file(const std::string& path);
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

}  // namespace astroflow
