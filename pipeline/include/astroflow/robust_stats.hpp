// Robust statistics shared by the stages and the evaluators.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace astroflow {

/// The median (mean of the two middle values for an even count); NaN when empty.
[[nodiscard]] inline double median_of(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  if (v.size() % 2 == 1) return *mid;
  return 0.5 * (*mid + *std::max_element(v.begin(), mid));
}

/// 1.4826 x the median absolute deviation: the standard deviation of Gaussian data.
[[nodiscard]] inline double mad_sigma(const std::vector<double>& v) {
  const double m = median_of(v);
  std::vector<double> d;
  d.reserve(v.size());
  for (double x : v) d.push_back(std::abs(x - m));
  return 1.4826 * median_of(std::move(d));
}

}  // namespace astroflow
