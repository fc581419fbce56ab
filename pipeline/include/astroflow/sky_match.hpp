// Cross-image merging: the same object measured on overlapping images (dithers, tile overlaps)
// is found by sky position and one measurement is chosen as the primary.
//
// Matching: rows of different images whose ALPHA_J2000/DELTA_J2000 lie within radius_arcsec of
// each other are linked, and linked rows form one object (friends of friends, so a chain of
// close pairs becomes one object; choose a radius well below the source separation). Rows of
// the same image are never linked directly: two close sources on one image are a deblend, not a
// duplicate. The index is a grid of cubes on the unit sphere with the matching chord as the
// cube side, so only the 27 neighbouring cells are searched per row: O(N log N), correct
// across RA = 0/360 and at the poles.
//
// Columns written (added, or overwritten when present):
//   N_OBS         int32  number of distinct images the object was measured on (1 = unique)
//   DUPLICATE_OF  int64  0 for the kept measurement; else the 1-based row of the kept one
// Rows with a non-finite position are never matched (N_OBS = 1).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "astroflow/catalog.hpp"

namespace astroflow {

enum class KeepRule {
  kBestSnr,           ///< highest FLUX_AUTO / FLUXERR_AUTO (non-finite S/N ranks last)
  kFarthestFromEdge,  ///< largest distance to its image's edge
};

/// "best_snr" / "farthest_from_edge"; throws std::invalid_argument otherwise.
[[nodiscard]] KeepRule parse_keep_rule(std::string_view text);
[[nodiscard]] std::string_view to_string(KeepRule rule);

struct SkyMatchOptions {
  double radius_arcsec = 0.3;
  KeepRule keep = KeepRule::kBestSnr;
};

struct SkyMatchResult {
  std::size_t objects = 0;     ///< distinct objects (rows with DUPLICATE_OF == 0)
  std::size_t duplicates = 0;  ///< rows with DUPLICATE_OF != 0
};

/// Flags duplicates in `catalog` (see the file comment). `image_of_row[i]` identifies the image
/// of row i. `edge_distance_pix[i]` is needed for kFarthestFromEdge (and ignored otherwise).
/// Ties keep the earlier row, so the result does not depend on anything but row order.
/// Throws std::invalid_argument when a needed column or vector is missing or has the wrong
/// length.
SkyMatchResult flag_sky_duplicates(Catalog& catalog, const SkyMatchOptions& options,
                                   const std::vector<std::size_t>& image_of_row,
                                   const std::vector<double>& edge_distance_pix = {});

/// Image ids from a merged catalog's FILE and HDU columns (same FILE and HDU = same image).
[[nodiscard]] std::vector<std::size_t> image_ids_from_columns(const Catalog& catalog);

/// Distance of (X_IMAGE, Y_IMAGE) (1-based) to the nearest edge of a width x height image.
[[nodiscard]] double edge_distance_pix(double x_image, double y_image, int width_pix,
                                       int height_pix);

}  // namespace astroflow
