// TileGrid: how a large image is cut into overlapping tiles, and which part of each tile
// "owns" the pixels and sources of the overlaps.
//
// Tiles start every (tile_size - overlap) pixels and have the configured size, except the last
// one along an axis, which is cut at the image edge; so neighbours always share exactly
// `overlap` pixels. Ownership: that shared band is split at its middle and each tile owns its
// side (a side without a neighbour extends to the image edge). In pixel-edge coordinates
// (0-based pixel i spans [i, i + 1)) a tile starting at s with length w owns
// [s + overlap/2, s + w - overlap/2) along each axis: the rule of the sources plugin's
// TILE_OWNED column (plugins/sources). A source is kept by the stitcher only when its centroid
// lies in the region its tile owns, so a source seen twice in an overlap is kept exactly once.
//
// Coordinates convention for stages: a stage that reports positions of a tile (X_IMAGE, ...)
// reports them in FULL-image FITS coordinates, using Frame::tile.x0_pix/y0_pix, as the sources
// plugin does; the stitcher does not move them. Planes (e.g. segmap) are tile-sized.
#pragma once

#include <vector>

#include "astroflow/frame.hpp"

namespace astroflow {

/// One tile along one axis: pixels [start, start + length) of the full image, owning the pixels
/// [owned_begin_pix, owned_end_pix) (0-based) and the positions in pixel-edge coordinates
/// [owned_begin_edge, owned_end_edge) (infinite on a side without a neighbour).
struct TileSpan {
  int start_pix = 0;
  int length_pix = 0;
  int owned_begin_pix = 0;
  int owned_end_pix = 0;
  double owned_begin_edge = 0.0;
  double owned_end_edge = 0.0;
};

class TileGrid {
 public:
  /// Throws FatalError when tile_size <= overlap or tile_size < 1.
  TileGrid(int full_width_pix, int full_height_pix, int tile_size_pix, int overlap_pix);

  /// True when the image is larger than one tile on either axis.
  [[nodiscard]] bool needs_tiling() const { return count() > 1; }
  [[nodiscard]] int count() const { return static_cast<int>(xs_.size() * ys_.size()); }
  [[nodiscard]] const TileSpan& x_span(int tile_index) const;
  [[nodiscard]] const TileSpan& y_span(int tile_index) const;
  [[nodiscard]] int full_width_pix() const { return width_; }
  [[nodiscard]] int full_height_pix() const { return height_; }

  /// Does tile `tile_index` own a centroid at FITS 1-based full-image coordinates (x, y)?
  /// (FITS x is pixel-edge coordinate x - 0.5.)
  [[nodiscard]] bool owns(int tile_index, double x_full_fits, double y_full_fits) const;

  /// The frame of one tile: a deep copy of the science/weight/mask/planes rectangle, header and
  /// WCS shifted to the tile origin (Wcs::shifted), tile info filled in. The catalog is copied
  /// as is (normally empty at this point).
  [[nodiscard]] Frame cut(const Frame& full, int tile_index) const;

  /// Splits one axis; exposed for tests.
  [[nodiscard]] static std::vector<TileSpan> split_axis(int full_pix, int tile_pix,
                                                        int overlap_pix);

 private:
  int width_;
  int height_;
  int overlap_;
  std::vector<TileSpan> xs_;
  std::vector<TileSpan> ys_;
};

}  // namespace astroflow
