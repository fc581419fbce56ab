#include "astroflow/sky_match.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <stdexcept>

namespace astroflow {

namespace {

constexpr double kPi = 3.14159265358979323846;

struct Cell {
  std::int64_t x = 0, y = 0, z = 0;
  auto operator<=>(const Cell&) const = default;
};

/// Union-find with path halving; the root is always the smallest index of its set, which keeps
/// the outcome independent of the order links are found in.
class DisjointSets {
 public:
  explicit DisjointSets(std::size_t n) : parent_(n) {
    std::iota(parent_.begin(), parent_.end(), std::size_t{0});
  }
  std::size_t find(std::size_t i) {
    while (parent_[i] != i) {
      parent_[i] = parent_[parent_[i]];
      i = parent_[i];
    }
    return i;
  }
  void unite(std::size_t a, std::size_t b) {
    a = find(a);
    b = find(b);
    if (a == b) return;
    if (b < a) std::swap(a, b);
    parent_[b] = a;
  }

 private:
  std::vector<std::size_t> parent_;
};

double column_value(const Column* c, std::size_t row) {
  return c == nullptr ? std::nan("") : c->as_double(row);
}

}  // namespace

KeepRule parse_keep_rule(std::string_view text) {
  if (text == "best_snr") return KeepRule::kBestSnr;
  if (text == "farthest_from_edge") return KeepRule::kFarthestFromEdge;
  throw std::invalid_argument("keep: expected best_snr or farthest_from_edge, got '" +
                              std::string(text) + "'");
}

std::string_view to_string(KeepRule rule) {
  return rule == KeepRule::kBestSnr ? "best_snr" : "farthest_from_edge";
}

double edge_distance_pix(double x_image, double y_image, int width_pix, int height_pix) {
  // Pixel i (1-based) covers [i - 0.5, i + 0.5], so the image spans [0.5, N + 0.5].
  return std::min(
      {x_image - 0.5, width_pix + 0.5 - x_image, y_image - 0.5, height_pix + 0.5 - y_image});
}

std::vector<std::size_t> image_ids_from_columns(const Catalog& catalog) {
  const Column* file = catalog.find("FILE");
  const Column* hdu = catalog.find("HDU");
  std::vector<std::size_t> ids(catalog.rows(), 0);
  std::map<std::pair<std::string, std::string>, std::size_t> seen;
  for (std::size_t i = 0; i < catalog.rows(); ++i) {
    auto key = std::make_pair(file ? file->as_text(i) : std::string(),
                              hdu ? hdu->as_text(i) : std::string());
    ids[i] = seen.emplace(std::move(key), seen.size()).first->second;
  }
  return ids;
}

SkyMatchResult flag_sky_duplicates(Catalog& catalog, const SkyMatchOptions& options,
                                   const std::vector<std::size_t>& image_of_row,
                                   const std::vector<double>& edge_distance) {
  const std::size_t n = catalog.rows();
  if (!(options.radius_arcsec > 0))
    throw std::invalid_argument("sky match radius must be > 0 arcsec");
  if (image_of_row.size() != n)
    throw std::invalid_argument("sky match: image_of_row has " +
                                std::to_string(image_of_row.size()) + " entries for " +
                                std::to_string(n) + " rows");
  const Column* ra = catalog.find("ALPHA_J2000");
  const Column* dec = catalog.find("DELTA_J2000");
  if (ra == nullptr || dec == nullptr)
    throw std::invalid_argument("sky match needs the ALPHA_J2000 and DELTA_J2000 columns");
  if (options.keep == KeepRule::kFarthestFromEdge && edge_distance.size() != n)
    throw std::invalid_argument(
        "sky match: keep farthest_from_edge needs one edge distance per row");

  // Unit vectors; a chord of 2 sin(r/2) corresponds to an angular separation r.
  const double r_rad = options.radius_arcsec / 3600.0 * kPi / 180.0;
  const double chord = 2.0 * std::sin(r_rad / 2.0);
  const double chord2 = chord * chord;
  std::vector<std::array<double, 3>> xyz(n);
  std::vector<bool> valid(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    const double a = ra->as_double(i) * kPi / 180.0;
    const double d = dec->as_double(i) * kPi / 180.0;
    if (!std::isfinite(a) || !std::isfinite(d)) continue;
    xyz[i] = {std::cos(d) * std::cos(a), std::cos(d) * std::sin(a), std::sin(d)};
    valid[i] = true;
  }
  auto cell_of = [&](std::size_t i) {
    return Cell{static_cast<std::int64_t>(std::floor(xyz[i][0] / chord)),
                static_cast<std::int64_t>(std::floor(xyz[i][1] / chord)),
                static_cast<std::int64_t>(std::floor(xyz[i][2] / chord))};
  };
  // Sorted (cell, row) pairs form the grid; equal_range finds a cell's rows.
  std::vector<std::pair<Cell, std::size_t>> grid;
  grid.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    if (valid[i]) grid.emplace_back(cell_of(i), i);
  std::sort(grid.begin(), grid.end());

  DisjointSets sets(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!valid[i]) continue;
    const Cell c = cell_of(i);
    for (std::int64_t dx = -1; dx <= 1; ++dx)
      for (std::int64_t dy = -1; dy <= 1; ++dy)
        for (std::int64_t dz = -1; dz <= 1; ++dz) {
          const Cell nc{c.x + dx, c.y + dy, c.z + dz};
          auto lo = std::lower_bound(grid.begin(), grid.end(), std::make_pair(nc, std::size_t{0}));
          for (auto it = lo; it != grid.end() && it->first == nc; ++it) {
            const std::size_t j = it->second;
            if (j <= i || image_of_row[j] == image_of_row[i]) continue;
            const double ddx = xyz[i][0] - xyz[j][0];
            const double ddy = xyz[i][1] - xyz[j][1];
            const double ddz = xyz[i][2] - xyz[j][2];
            if (ddx * ddx + ddy * ddy + ddz * ddz <= chord2) sets.unite(i, j);
          }
        }
  }

  // Score of each row under the keep rule; higher is better, NaN ranks last.
  const Column* flux = catalog.find("FLUX_AUTO");
  const Column* fluxerr = catalog.find("FLUXERR_AUTO");
  if (options.keep == KeepRule::kBestSnr && (flux == nullptr || fluxerr == nullptr))
    throw std::invalid_argument("sky match: keep best_snr needs FLUX_AUTO and FLUXERR_AUTO");
  std::vector<double> score(n);
  for (std::size_t i = 0; i < n; ++i) {
    double s = options.keep == KeepRule::kBestSnr ? column_value(flux, i) / column_value(fluxerr, i)
                                                  : edge_distance[i];
    score[i] = std::isfinite(s) ? s : -HUGE_VAL;
  }

  std::vector<std::size_t> best(n);
  std::map<std::size_t, std::vector<std::size_t>> images_of_root;
  for (std::size_t i = 0; i < n; ++i) best[i] = i;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t r = sets.find(i);
    // Rows are visited in order, so a tie keeps the earlier row.
    if (score[i] > score[best[r]]) best[r] = i;
    // The root (the smallest row of its set) adds its own image below.
    if (r != i) images_of_root[r].push_back(image_of_row[i]);
  }
  auto& n_obs = catalog.add_column<std::int32_t>(
      "N_OBS", "", "number of images on which the object was measured");
  auto& dup = catalog.add_column<std::int64_t>(
      "DUPLICATE_OF", "", "0 for the kept measurement, else the 1-based row of the kept one");
  SkyMatchResult result;
  for (auto& [root, imgs] : images_of_root) {
    imgs.push_back(image_of_row[root]);
    std::sort(imgs.begin(), imgs.end());
    imgs.erase(std::unique(imgs.begin(), imgs.end()), imgs.end());
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t r = sets.find(i);
    const auto it = images_of_root.find(r);
    n_obs[i] = it == images_of_root.end() ? 1 : static_cast<std::int32_t>(it->second.size());
    const std::size_t keep = best[r];
    dup[i] = keep == i ? 0 : static_cast<std::int64_t>(keep) + 1;
    if (keep == i)
      ++result.objects;
    else
      ++result.duplicates;
  }
  return result;
}

}  // namespace astroflow
