#include "astroflow/stitcher.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <unordered_map>
#include <variant>

namespace astroflow {
namespace {

void set_numbers(Catalog& cat, const std::vector<std::int64_t>& numbers) {
  Column* c = cat.find("NUMBER");
  if (c == nullptr || c->type() == ColumnType::kString) {
    if (c != nullptr) c->name = "NUMBER_STAGE";  // keep a string NUMBER, but out of the way
    auto& v = cat.add_column<std::int32_t>("NUMBER", "", "running object number");
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int32_t>(numbers[i]);
    return;
  }
  std::visit(
      [&numbers](auto& v) {
        using T = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (!std::is_same_v<T, std::string>) {
          for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(numbers[i]);
        }
      },
      c->values);
}

/// Old label of each row: the NUMBER column, or row + 1 when there is none.
std::vector<std::int64_t> old_labels(const Catalog& cat) {
  std::vector<std::int64_t> out(cat.rows());
  const Column* c = cat.find("NUMBER");
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (c != nullptr && c->type() != ColumnType::kString) {
      out[i] = static_cast<std::int64_t>(std::llround(c->as_double(i)));
    } else {
      out[i] = static_cast<std::int64_t>(i + 1);
    }
  }
  return out;
}

double coord(const Catalog& cat, std::string_view name, std::size_t row) {
  const Column* c = cat.find(name);
  return c == nullptr ? std::numeric_limits<double>::quiet_NaN() : c->as_double(row);
}

void remap_segmap(cv::Mat& seg, const std::unordered_map<std::int64_t, std::int32_t>& map,
                  const cv::Rect& region) {
  for (int y = region.y; y < region.y + region.height; ++y) {
    auto* row = seg.ptr<std::int32_t>(y);
    for (int x = region.x; x < region.x + region.width; ++x) {
      if (row[x] == 0) continue;
      auto it = map.find(row[x]);
      row[x] = it == map.end() ? 0 : it->second;
    }
  }
}

}  // namespace

void renumber_sources(Frame& frame) {
  const std::vector<std::int64_t> old = old_labels(frame.catalog);
  std::unordered_map<std::int64_t, std::int32_t> map;
  std::vector<std::int64_t> numbers(old.size());
  for (std::size_t i = 0; i < old.size(); ++i) {
    numbers[i] = static_cast<std::int64_t>(i + 1);
    map.emplace(old[i], static_cast<std::int32_t>(i + 1));  // first row wins on a repeated label
  }
  if (!frame.catalog.empty() || frame.catalog.has("NUMBER")) set_numbers(frame.catalog, numbers);
  auto seg = frame.planes.find("segmap");
  if (seg != frame.planes.end() && seg->second.type() == CV_32SC1)
    remap_segmap(seg->second, map, cv::Rect(0, 0, seg->second.cols, seg->second.rows));
}

Frame stitch_tiles(Frame shell, std::vector<Frame> tiles, const TileGrid& grid) {
  std::sort(tiles.begin(), tiles.end(),
            [](const Frame& a, const Frame& b) { return a.tile.index < b.tile.index; });
  Frame out = std::move(shell);
  out.tile = TileInfo{};
  out.catalog = Catalog{};
  out.planes.clear();
  const int w = grid.full_width_pix();
  const int h = grid.full_height_pix();

  // Pixels: paste each tile's owned rectangle.
  auto owned_rects = [&](const Frame& t, cv::Rect& in_tile, cv::Rect& in_full) {
    const TileSpan& xs = grid.x_span(t.tile.index);
    const TileSpan& ys = grid.y_span(t.tile.index);
    in_full =
        cv::Rect(xs.owned_begin_pix, ys.owned_begin_pix, xs.owned_end_pix - xs.owned_begin_pix,
                 ys.owned_end_pix - ys.owned_begin_pix);
    in_tile = cv::Rect(xs.owned_begin_pix - xs.start_pix, ys.owned_begin_pix - ys.start_pix,
                       in_full.width, in_full.height);
  };
  auto paste = [&](cv::Mat& dst, const cv::Mat& src, const Frame& t) {
    if (src.empty()) return;
    if (dst.empty()) dst = cv::Mat::zeros(h, w, src.type());
    if (src.type() != dst.type()) return;
    cv::Rect in_tile, in_full;
    owned_rects(t, in_tile, in_full);
    src(in_tile).copyTo(dst(in_full));
  };
  // One plane at a time over all tiles, each tile's copy released once pasted: the full-size
  // plane grows as the tiles' copies go, so stitching adds about one plane to the peak memory
  // instead of every plane at once.
  auto tile_sized = [&](const Frame& t, const cv::Mat& m) {
    return m.cols == grid.x_span(t.tile.index).length_pix &&
           m.rows == grid.y_span(t.tile.index).length_pix;
  };
  out.science = cv::Mat();
  out.weight = cv::Mat();
  out.mask = cv::Mat();
  for (cv::Mat Frame::*member : {&Frame::science, &Frame::weight, &Frame::mask}) {
    for (Frame& t : tiles) {
      paste(out.*member, t.*member, t);
      (t.*member).release();
    }
  }
  std::vector<std::string> names;
  for (const Frame& t : tiles) {
    for (const auto& [name, plane] : t.planes) {
      if (name != "segmap" && std::find(names.begin(), names.end(), name) == names.end())
        names.push_back(name);  // segmap is relabelled below
    }
  }
  for (const std::string& name : names) {
    for (Frame& t : tiles) {
      auto it = t.planes.find(name);
      if (it == t.planes.end()) continue;
      if (tile_sized(t, it->second)) paste(out.planes[name], it->second, t);
      t.planes.erase(it);
    }
  }

  // Catalog: keep owned rows, in tile order.
  struct Kept {
    double x, y;
    std::int32_t number;
  };
  std::vector<Kept> kept_rows;
  std::vector<std::unordered_map<std::int64_t, std::int32_t>> label_maps(tiles.size());
  struct Dropped {
    std::size_t tile;
    std::int64_t label;
    double x, y;
  };
  std::vector<Dropped> dropped;
  std::vector<std::int64_t> numbers;
  for (std::size_t ti = 0; ti < tiles.size(); ++ti) {
    Frame& t = tiles[ti];
    Catalog cat = t.catalog;  // positions are already full-image (see tiler.hpp)
    const std::vector<std::int64_t> labels = old_labels(cat);
    std::vector<bool> keep(cat.rows(), true);
    for (std::size_t r = 0; r < cat.rows(); ++r) {
      const double x = coord(cat, "X_IMAGE", r);
      const double y = coord(cat, "Y_IMAGE", r);
      if (std::isfinite(x) && std::isfinite(y) && !grid.owns(t.tile.index, x, y)) {
        keep[r] = false;
        dropped.push_back(Dropped{ti, labels[r], x, y});
        continue;
      }
      const auto number = static_cast<std::int32_t>(kept_rows.size() + 1);
      kept_rows.push_back(Kept{x, y, number});
      label_maps[ti].emplace(labels[r], number);
      numbers.push_back(number);
    }
    cat.filter(keep);
    out.catalog.append(cat);
  }
  for (const Dropped& d : dropped) {
    double best = 3.0 * 3.0;
    std::int32_t best_number = 0;
    for (const Kept& k : kept_rows) {
      const double d2 = (k.x - d.x) * (k.x - d.x) + (k.y - d.y) * (k.y - d.y);
      if (d2 <= best) {
        best = d2;
        best_number = k.number;
      }
    }
    if (best_number != 0) label_maps[d.tile].emplace(d.label, best_number);
  }
  if (!numbers.empty() || out.catalog.has("NUMBER")) set_numbers(out.catalog, numbers);

  // Segmap: relabel each tile's owned rectangle, then paste.
  for (std::size_t ti = 0; ti < tiles.size(); ++ti) {
    auto it = tiles[ti].planes.find("segmap");
    if (it == tiles[ti].planes.end() || it->second.type() != CV_32SC1) continue;
    cv::Rect in_tile, in_full;
    owned_rects(tiles[ti], in_tile, in_full);
    cv::Mat seg = it->second;
    remap_segmap(seg, label_maps[ti], in_tile);
    paste(out.planes["segmap"], seg, tiles[ti]);
    tiles[ti].planes.erase(it);
  }

  // Flags, issues and provenance.
  for (const Frame& t : tiles) {
    out.flags |= t.flags;
    for (const FrameIssue& issue : t.issues) {
      out.issues.push_back(FrameIssue{issue.stage, "tile " + std::to_string(t.tile.index + 1) +
                                                       "/" + std::to_string(t.tile.count) + ": " +
                                                       issue.reason});
    }
  }
  if (!tiles.empty()) out.provenance = tiles.front().provenance;
  return out;
}

}  // namespace astroflow
