#include "astroflow/tiler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "astroflow/error.hpp"

namespace astroflow {

std::vector<TileSpan> TileGrid::split_axis(int full_pix, int tile_pix, int overlap_pix) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<TileSpan> spans;
  const int step = tile_pix - overlap_pix;
  for (int start = 0;; start += step) {
    const int length = std::min(tile_pix, full_pix - start);
    spans.push_back(TileSpan{start, length, 0, 0, -kInf, kInf});
    if (start + length >= full_pix) break;
  }
  const double half = 0.5 * overlap_pix;
  const int half_down = overlap_pix / 2;
  const int half_up = overlap_pix - half_down;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    TileSpan& s = spans[i];
    const bool lower_neighbour = i > 0;
    const bool upper_neighbour = i + 1 < spans.size();
    // A pixel belongs to the tile that owns its centre (edge coordinate i + 0.5).
    s.owned_begin_pix = lower_neighbour ? s.start_pix + half_down : 0;
    s.owned_end_pix = upper_neighbour ? s.start_pix + s.length_pix - half_up : full_pix;
    s.owned_begin_edge = lower_neighbour ? s.start_pix + half : -kInf;
    s.owned_end_edge = upper_neighbour ? s.start_pix + s.length_pix - half : kInf;
  }
  return spans;
}

TileGrid::TileGrid(int full_width_pix, int full_height_pix, int tile_size_pix, int overlap_pix)
    : width_(full_width_pix), height_(full_height_pix), overlap_(overlap_pix) {
  if (tile_size_pix < 1 || overlap_pix < 0 || overlap_pix >= tile_size_pix)
    throw FatalError("run.tile_size (" + std::to_string(tile_size_pix) +
                     ") must be positive and larger than run.tile_overlap (" +
                     std::to_string(overlap_pix) + ")");
  xs_ = split_axis(full_width_pix, tile_size_pix, overlap_pix);
  ys_ = split_axis(full_height_pix, tile_size_pix, overlap_pix);
}

const TileSpan& TileGrid::x_span(int tile_index) const {
  return xs_.at(static_cast<std::size_t>(tile_index) % xs_.size());
}
const TileSpan& TileGrid::y_span(int tile_index) const {
  return ys_.at(static_cast<std::size_t>(tile_index) / xs_.size());
}

bool TileGrid::owns(int tile_index, double x_full_fits, double y_full_fits) const {
  const TileSpan& xs = x_span(tile_index);
  const TileSpan& ys = y_span(tile_index);
  const double u = x_full_fits - 0.5;
  const double v = y_full_fits - 0.5;
  return u >= xs.owned_begin_edge && u < xs.owned_end_edge && v >= ys.owned_begin_edge &&
         v < ys.owned_end_edge;
}

Frame TileGrid::cut(const Frame& full, int tile_index) const {
  const TileSpan& xs = x_span(tile_index);
  const TileSpan& ys = y_span(tile_index);
  const cv::Rect rect(xs.start_pix, ys.start_pix, xs.length_pix, ys.length_pix);
  Frame t;
  t.path = full.path;
  t.hdu_index = full.hdu_index;
  t.hdu_name = full.hdu_name;
  t.hdu_version = full.hdu_version;
  t.input_index = full.input_index;
  t.science = full.science(rect).clone();
  if (!full.weight.empty()) t.weight = full.weight(rect).clone();
  if (!full.mask.empty()) t.mask = full.mask(rect).clone();
  for (const auto& [name, plane] : full.planes) {
    if (plane.rows == full.science.rows && plane.cols == full.science.cols)
      t.planes[name] = plane(rect).clone();
  }
  t.header = full.header;
  if (full.wcs) {
    t.wcs = full.wcs->shifted(xs.start_pix, ys.start_pix);
    t.wcs->write_to(t.header);
  }
  t.pixel_scale_arcsec = full.pixel_scale_arcsec;
  t.catalog = full.catalog;
  t.provenance = full.provenance;
  t.flags = full.flags;
  t.issues = full.issues;
  t.tile.x0_pix = xs.start_pix;
  t.tile.y0_pix = ys.start_pix;
  t.tile.full_width_pix = width_;
  t.tile.full_height_pix = height_;
  t.tile.index = tile_index;
  t.tile.count = count();
  t.tile.overlap_pix = overlap_;
  return t;
}

}  // namespace astroflow
