#include "astroflow/stellar_locus.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "astroflow/robust_stats.hpp"

namespace astroflow {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

Concentration aperture_concentration(const cv::Mat& image, const cv::Mat& rms, double x, double y,
                                     double r_in, double r_out, int supersample) {
  Concentration out{kNaN, kNaN};
  const int x0 = static_cast<int>(std::floor(x - r_out));
  const int x1 = static_cast<int>(std::ceil(x + r_out));
  const int y0 = static_cast<int>(std::floor(y - r_out));
  const int y1 = static_cast<int>(std::ceil(y + r_out));
  if (x0 < 0 || y0 < 0 || x1 >= image.cols || y1 >= image.rows) return out;
  const int ss = std::max(1, supersample);
  // Fraction of a pixel (centre px, py) inside radius r: whole pixels by the distance of their
  // nearest and farthest corners, border pixels by sub-pixel centres.
  auto fraction = [&](double px, double py, double r) {
    const double dx = std::abs(px - x);
    const double dy = std::abs(py - y);
    const double far = std::hypot(dx + 0.5, dy + 0.5);
    if (far <= r) return 1.0;
    const double near = std::hypot(std::max(0.0, dx - 0.5), std::max(0.0, dy - 0.5));
    if (near >= r) return 0.0;
    int inside = 0;
    for (int j = 0; j < ss; ++j) {
      const double sy = py - 0.5 + (j + 0.5) / ss - y;
      for (int i = 0; i < ss; ++i) {
        const double sx = px - 0.5 + (i + 0.5) / ss - x;
        inside += sx * sx + sy * sy < r * r ? 1 : 0;
      }
    }
    return static_cast<double>(inside) / (ss * ss);
  };
  double f_in = 0.0;
  double f_out = 0.0;
  double v_in = 0.0;
  double v_out = 0.0;
  for (int py = y0; py <= y1; ++py) {
    const float* v = image.ptr<float>(py);
    const float* s = rms.ptr<float>(py);
    for (int px = x0; px <= x1; ++px) {
      const double w_out = fraction(px, py, r_out);
      if (w_out <= 0.0) continue;
      if (!std::isfinite(v[px]) || !std::isfinite(s[px])) return out;
      const double w_in = fraction(px, py, r_in);
      const double var = static_cast<double>(s[px]) * s[px];
      f_in += w_in * v[px];
      f_out += w_out * v[px];
      v_in += w_in * w_in * var;
      v_out += w_out * w_out * var;
    }
  }
  if (!(f_in > 0.0) || !(f_out > 0.0)) return out;
  out.c = f_in / f_out;
  // F_in's pixels are part of F_out's: cov(F_in, F_out) = sum w_in w_out var, and with w_out = 1
  // wherever w_in > 0 (r_in < r_out) that is v_in.
  const double rel = v_in / (f_in * f_in) + v_out / (f_out * f_out) - 2.0 * v_in / (f_in * f_out);
  out.sigma = out.c * std::sqrt(std::max(0.0, rel));
  return out;
}

StellarLocus fit_stellar_locus(const std::vector<double>& c, const std::vector<bool>& calibrate,
                               std::size_t min_stars, double sigma_floor) {
  StellarLocus locus;
  std::vector<double> v;
  for (std::size_t k = 0; k < c.size() && k < calibrate.size(); ++k) {
    if (calibrate[k] && std::isfinite(c[k])) v.push_back(c[k]);
  }
  locus.stars = v.size();
  if (v.empty() || v.size() < min_stars) return locus;
  locus.centre = median_of(v);
  locus.sigma = std::max(mad_sigma(v), sigma_floor * locus.centre);
  locus.calibrated = locus.sigma > 0.0;
  return locus;
}

double locus_star_probability(double p, const Concentration& conc, const StellarLocus& locus,
                              double outlier) {
  if (!locus.calibrated || !std::isfinite(conc.c)) return p;
  const double s = std::sqrt(locus.sigma * locus.sigma +
                             (std::isfinite(conc.sigma) ? conc.sigma * conc.sigma : 0.0));
  const double z = (locus.centre - conc.c) / s;
  if (!(z > 0.0)) return p;
  const double e = std::clamp(outlier, 0.0, 1.0);
  const double g = (1.0 - e) * std::exp(-0.5 * z * z) + e;
  const double d = p * g + (1.0 - p);
  return d > 0.0 ? p * g / d : p;
}

}  // namespace astroflow
