#include "fits_file.hpp"

#include <cstdlib>
#include <filesystem>
#include <utility>

#include "astroflow/error.hpp"

namespace astroflow {

FitsFile::FitsFile(fitsfile* fptr, std::string label_path)
    : fptr_(fptr), label_path_(std::move(label_path)) {}

FitsFile FitsFile::open_read(const std::string& path) {
  fitsfile* fptr = nullptr;
  int status = 0;
  fits_open_diskfile(&fptr, path.c_str(), READONLY, &status);
  FitsFile f(fptr, path);
  if (status != 0) {
    f.fptr_ = nullptr;  // CFITSIO frees the handle itself when the open fails
    f.check(status, "cannot open as a FITS file (not FITS, or a damaged header)");
  }
  return f;
}

FitsFile FitsFile::create(const std::string& path, std::string label_path) {
  fitsfile* fptr = nullptr;
  int status = 0;
  fits_create_diskfile(&fptr, path.c_str(), &status);
  FitsFile f(fptr, std::move(label_path));
  if (status != 0) {
    f.fptr_ = nullptr;
    f.check(status, "cannot create the FITS file " + path);
  }
  return f;
}

FitsFile FitsFile::create_in_memory(void** buffer, std::size_t* size, std::string label_path) {
  fitsfile* fptr = nullptr;
  int status = 0;
  // Grows by 8 FITS blocks at a time: a one-row catalog with a copied header fits the first.
  fits_create_memfile(&fptr, buffer, size, 8 * 2880, std::realloc, &status);
  FitsFile f(fptr, std::move(label_path));
  if (status != 0) {
    f.fptr_ = nullptr;
    f.check(status, "cannot create an in-memory FITS file");
  }
  return f;
}

FitsFile::FitsFile(FitsFile&& other) noexcept
    : fptr_(std::exchange(other.fptr_, nullptr)),
      label_path_(std::move(other.label_path_)),
      hdu_label_(std::move(other.hdu_label_)) {}

FitsFile& FitsFile::operator=(FitsFile&& other) noexcept {
  if (this != &other) {
    if (fptr_ != nullptr) {
      int status = 0;
      fits_close_file(fptr_, &status);
    }
    fptr_ = std::exchange(other.fptr_, nullptr);
    label_path_ = std::move(other.label_path_);
    hdu_label_ = std::move(other.hdu_label_);
  }
  return *this;
}

FitsFile::~FitsFile() {
  if (fptr_ != nullptr) {
    int status = 0;
    fits_close_file(fptr_, &status);
  }
}

std::string FitsFile::cfitsio_message(int status) {
  char text[FLEN_STATUS] = {};
  fits_get_errstatus(status, text);
  std::string out = "CFITSIO status " + std::to_string(status) + " (" + text + ")";
  char line[FLEN_ERRMSG] = {};
  std::string stack;
  // Bounded: CFITSIO keeps at most a few dozen messages.
  for (int i = 0; i < 64 && fits_read_errmsg(line) != 0; ++i) {
    std::string_view l(line);
    while (!l.empty() && l.back() == ' ') l.remove_suffix(1);
    if (l.empty()) continue;
    if (!stack.empty()) stack += "; ";
    stack += l;
  }
  if (!stack.empty()) out += ": " + stack;
  return out;
}

void FitsFile::check(int status, std::string_view what, std::source_location where) const {
  if (status == 0) return;
  const std::string file = std::filesystem::path(where.file_name()).filename().string();
  throw FrameError(label() + ": " + std::string(what) + ": " + cfitsio_message(status) + " [" +
                   file + ":" + std::to_string(where.line()) + "]");
}

int FitsFile::move_to(int hdu_index0, std::source_location where) {
  int type = 0;
  int status = 0;
  fits_movabs_hdu(fptr_, hdu_index0 + 1, &type, &status);
  if (status != 0) {
    set_hdu_label(std::to_string(hdu_index0));
    check(status, "cannot move to HDU " + std::to_string(hdu_index0), where);
  }
  return type;
}

void FitsFile::close(std::source_location where) {
  if (fptr_ == nullptr) return;
  int status = 0;
  fits_close_file(std::exchange(fptr_, nullptr), &status);
  check(status, "cannot finish writing (close/flush)", where);
}

}  // namespace astroflow
