// Reading FITS images into Frames and writing FITS outputs, through CFITSIO.
//
// Reading: BITPIX 8/16/32/64/-32/-64 with BSCALE/BZERO and BLANK applied; blank and
// non-finite pixels become NaN; everything is float32. Tile-compressed (.fz) and gzip
// (.fits.gz) files read transparently (CFITSIO does it).
//
// Writing: every file is written under a temporary name in the destination folder, then
// renamed, so a reader never sees a half-written output (see atomic_file.hpp).
//
// Pixel layout: rows are not flipped; FITS pixel (x, y) (1-based) is science.at<float>(y-1, x-1).
//
// Errors: a file that cannot be read throws FrameError whose message starts with
// "path[HDU]: " and gives CFITSIO's reason.
#pragma once

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "astroflow/catalog.hpp"
#include "astroflow/frame.hpp"
#include "astroflow/header.hpp"

namespace astroflow {

struct FitsReadOptions {
  /// "auto" (every 2-D image HDU; for HST-style files with SCI extensions, the SCI ones),
  /// a 0-based index ("0", "2"), or "EXTNAME" / "EXTNAME,EXTVER" ("SCI", "SCI,2").
  std::string hdu = "auto";
  /// Optional companion extensions attached to each SCI HDU of the same EXTVER:
  /// e.g. weight_ext = "ERR" (stored as inverse variance 1/ERR^2), mask_ext = "DQ".
  /// An extension named WHT, WEIGHT, IVAR or INVVAR is taken as a weight map as it is.
  /// Unusable errors/weights (<= 0, NaN) give weight 0. A missing companion is a FrameError.
  std::string weight_ext;
  std::string mask_ext;
  /// With mask_ext: the mask bits that leave a pixel usable (the sum of their values, as
  /// AstroDrizzle's final_bits); science pixels whose mask has any other bit set become NaN, the
  /// blank pixels every stage leaves out, and a HISTORY card counts them. The mask plane itself
  /// is kept as read.
  std::int64_t mask_good_bits = 0;
  /// For 3-D cubes: the 0-based plane to take. -1: a cube is a per-file error.
  int cube_plane = -1;
};

/// One Frame per selected HDU, with header (non-structural cards), WCS and pixel scale set.
/// Throws FrameError when the file or the selected HDU cannot be read, is empty, is a table only,
/// or is a cube without a configured plane.
[[nodiscard]] std::vector<Frame> read_fits_frames(const std::string& path,
                                                  const FitsReadOptions& options,
                                                  std::size_t input_index = 0);

/// Writes one image HDU (primary). CV_32F -> BITPIX -32, CV_32S -> BITPIX 32, CV_8U -> 8,
/// CV_16S -> 16, CV_64F -> -64. `header` cards (e.g. the input's, with WCS) are copied;
/// `history` lines are appended as HISTORY cards. Atomic (temp + rename).
void write_fits_image(const std::string& path, const cv::Mat& pixels, const Header& header,
                      const std::vector<std::string>& history = {});

/// Writes a catalog as a FITS BINTABLE (TTYPE/TFORM/TUNIT) in extension 1, with an empty
/// primary HDU carrying `primary_header` cards. EXTNAME = extname. Atomic.
void write_fits_catalog(const std::string& path, const Catalog& catalog,
                        const Header& primary_header = {}, const std::string& extname = "CATALOG");

/// Reads back a BINTABLE written by write_fits_catalog (or SExtractor's FITS_1.0 / plain
/// BINTABLE catalogs) from the given 0-based HDU, or the first table HDU when hdu < 0.
[[nodiscard]] Catalog read_fits_catalog(const std::string& path, int hdu = -1);

/// Writes a CSV with a header row of column names. Atomic.
void write_csv_catalog(const std::string& path, const Catalog& catalog);

/// The bytes write_fits_image / write_fits_catalog / write_csv_catalog would write, built in
/// memory: for small per-input outputs that are hashed and written with one write(2)
/// (write_file_atomically). `label_path` names the file in error messages.
[[nodiscard]] std::string fits_image_bytes(const cv::Mat& pixels, const Header& header,
                                           const std::vector<std::string>& history,
                                           const std::string& label_path);
[[nodiscard]] std::string fits_catalog_bytes(const Catalog& catalog, const Header& primary_header,
                                             const std::string& extname,
                                             const std::string& label_path);
[[nodiscard]] std::string csv_catalog_text(const Catalog& catalog);

/// write_csv_catalog's text in pieces, for catalogs written chunk by chunk: the header row of
/// column names, then the rows of each chunk (same columns, same order).
void write_csv_header(std::ostream& os, const Catalog& schema);
void write_csv_rows(std::ostream& os, const Catalog& chunk);

/// A FITS catalog whose rows arrive in chunks, for catalogs too large to hold (the run's merged
/// catalog). The columns (names, types, units, descriptions) come from `schema`, whose rows are
/// ignored; a string column is string_widths[name] characters wide (at least 1). The table is
/// created for exactly `rows` rows, and close() throws unless that many were appended. The bytes
/// equal write_fits_catalog's of the whole catalog when the widths are its longest strings.
/// Writes `tmp_path` only; the caller renames it (write_atomically). Errors name `final_path`.
class FitsCatalogAppender {
 public:
  FitsCatalogAppender(const std::string& tmp_path, const std::string& final_path,
                      const Catalog& schema,
                      const std::map<std::string, std::size_t>& string_widths, std::size_t rows,
                      const Header& primary_header = {}, const std::string& extname = "CATALOG");
  FitsCatalogAppender(const FitsCatalogAppender&) = delete;
  FitsCatalogAppender& operator=(const FitsCatalogAppender&) = delete;
  ~FitsCatalogAppender();
  /// Appends the chunk's rows; its columns must be the schema's, in order (std::invalid_argument).
  void append(const Catalog& chunk);
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace astroflow
