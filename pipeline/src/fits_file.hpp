// FitsFile: move-only owner of one CFITSIO fitsfile* (private to libastroflow).
//
// Every CFITSIO call goes through check(), which turns a non-zero status into a FrameError whose
// message starts with "path[HDU]: ", says in words what was being done, and carries CFITSIO's
// status text, its error-message stack and the call site.
#pragma once

#include <fitsio.h>

#include <source_location>
#include <string>
#include <string_view>

namespace astroflow {

class FitsFile {
 public:
  /// Opens an existing file read-only without CFITSIO's extended file-name syntax (so names
  /// with brackets are literal); gzip and tile-compressed files are still decoded.
  static FitsFile open_read(const std::string& path);
  /// Creates a new file; fails if it exists. `label_path` is the path used in messages (the
  /// final name of an atomic write, not the temporary one).
  static FitsFile create(const std::string& path, std::string label_path);
  /// Creates a new file in memory (fits_create_memfile). CFITSIO keeps `buffer` and `size` and
  /// reallocates *buffer as the file grows, so both must outlive the handle; after close() the
  /// file's bytes start at *buffer, which the caller frees with std::free.
  static FitsFile create_in_memory(void** buffer, std::size_t* size, std::string label_path);

  FitsFile(FitsFile&& other) noexcept;
  FitsFile& operator=(FitsFile&& other) noexcept;
  FitsFile(const FitsFile&) = delete;
  FitsFile& operator=(const FitsFile&) = delete;
  /// Closes without reporting errors; writers call close() to see flush errors.
  ~FitsFile();

  [[nodiscard]] fitsfile* get() const { return fptr_; }
  [[nodiscard]] const std::string& path() const { return label_path_; }

  /// The HDU part of "path[HDU]" in messages, e.g. "0" or "SCI,2".
  void set_hdu_label(std::string hdu) { hdu_label_ = std::move(hdu); }
  [[nodiscard]] std::string label() const { return label_path_ + "[" + hdu_label_ + "]"; }

  /// Throws FrameError when status != 0. `what` says in words what was attempted.
  void check(int status, std::string_view what,
             std::source_location where = std::source_location::current()) const;

  /// Moves to the 0-based HDU; returns its CFITSIO type (IMAGE_HDU, BINARY_TBL, ASCII_TBL).
  int move_to(int hdu_index0, std::source_location where = std::source_location::current());

  /// Flushes and closes; throws like check() when CFITSIO reports an error.
  void close(std::source_location where = std::source_location::current());

  /// CFITSIO's status text plus whatever its error-message stack holds. CFITSIO keeps that stack
  /// process-wide, so under concurrency it can hold lines from another file's failure too.
  [[nodiscard]] static std::string cfitsio_message(int status);

 private:
  FitsFile(fitsfile* fptr, std::string label_path);
  fitsfile* fptr_ = nullptr;
  std::string label_path_;
  std::string hdu_label_ = "0";
};

}  // namespace astroflow
