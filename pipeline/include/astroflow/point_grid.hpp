// A grid hash of 2-D points for neighbour searches within a fixed radius: the catalog matcher
// (match_positions), the crowding metric of `evaluate detect`, and the `detect` stage's
// neighbour rules (the stellar locus's crowded rows, the crowded-star tier).
#pragma once

#include <cmath>
#include <cstddef>
#include <unordered_map>
#include <vector>

namespace astroflow {

/// Points by index in cells `size` wide (> 0): the 3 x 3 cells around a position hold every
/// point within `size` of it.
class PointGrid {
 public:
  explicit PointGrid(double size) : size_(size) {}
  void add(std::size_t i, double x, double y) { cells_[key(cell(x), cell(y))].push_back(i); }
  /// Calls f(i) for every point in the 3 x 3 cells around (x, y): all within `size`, and some
  /// farther, which the caller tests.
  template <class F>
  void for_each_near(double x, double y, F&& f) const {
    for (long long ox = -1; ox <= 1; ++ox) {
      for (long long oy = -1; oy <= 1; ++oy) {
        const auto it = cells_.find(key(cell(x) + ox, cell(y) + oy));
        if (it == cells_.end()) continue;
        for (std::size_t i : it->second) f(i);
      }
    }
  }

 private:
  [[nodiscard]] long long cell(double v) const {
    return static_cast<long long>(std::floor(v / size_));
  }
  static long long key(long long cx, long long cy) { return (cx << 32) ^ (cy & 0xffffffffLL); }
  double size_;
  std::unordered_map<long long, std::vector<std::size_t>> cells_;
};

}  // namespace astroflow
