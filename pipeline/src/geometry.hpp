// Small plane-geometry helpers shared inside libastroflow (not part of the public API).
#pragma once

#include <algorithm>
#include <cmath>

namespace astroflow::detail {

// Distance from the point (px, py) to the segment a-b (a point when a == b).
inline double segment_distance(double px, double py, double ax, double ay, double bx, double by) {
  const double vx = bx - ax;
  const double vy = by - ay;
  const double len2 = vx * vx + vy * vy;
  const double t =
      len2 > 0.0 ? std::clamp(((px - ax) * vx + (py - ay) * vy) / len2, 0.0, 1.0) : 0.0;
  return std::hypot(px - (ax + t * vx), py - (ay + t * vy));
}

}  // namespace astroflow::detail
