#include "astroflow/kron_aperture.hpp"

#include <algorithm>
#include <cmath>
#include <opencv2/core.hpp>

namespace astroflow {

namespace {
// Kron's first moment is taken within 6 isophotal radii, as SExtractor does.
constexpr double kKronWindow = 6.0;
constexpr double kKronFactor = 2.5;
constexpr double kKronMinRadius = 3.5;
}  // namespace

KronResult kron_photometry(const KronEllipse& e, int number, const cv::Mat& image,
                           const cv::Mat& rms, const cv::Mat& segmap, double gain) {
  KronResult res;
  const int w = image.cols;
  const int h = image.rows;
  const double a = std::max(e.a_pix, 1e-3);
  const double b = std::max(e.b_pix, 1e-3);
  const double th = e.theta_deg * CV_PI / 180.0;
  const double c = std::cos(th);
  const double s = std::sin(th);
  const double cxx = c * c / (a * a) + s * s / (b * b);
  const double cyy = s * s / (a * a) + c * c / (b * b);
  const double cxy = 2.0 * c * s * (1.0 / (a * a) - 1.0 / (b * b));
  const float* img = image.ptr<float>();
  const float* sig = rms.ptr<float>();
  const int* seg = segmap.empty() ? nullptr : segmap.ptr<int>();
  bool crowded = false;
  bool cut = false;

  // value at (x, y) for this object: own or background pixels as they are, others mirrored.
  auto sample = [&](int x, int y, double& v, double& var) -> bool {
    if (x < 0 || y < 0 || x >= w || y >= h) {
      cut = true;
      return false;
    }
    const int p = y * w + x;
    const int owner = seg != nullptr ? seg[p] : 0;
    if ((owner == 0 || owner == number) && std::isfinite(img[p])) {
      v = img[p];
      var = static_cast<double>(sig[p]) * sig[p];
      return true;
    }
    if (owner != 0 && owner != number) crowded = true;
    if (!std::isfinite(img[p])) cut = true;
    const int mx = static_cast<int>(std::lround(2.0 * e.x_pix - x));
    const int my = static_cast<int>(std::lround(2.0 * e.y_pix - y));
    if (mx < 0 || my < 0 || mx >= w || my >= h) return false;
    const int q = my * w + mx;
    const int mirror_owner = seg != nullptr ? seg[q] : 0;
    if ((mirror_owner == 0 || mirror_owner == number) && std::isfinite(img[q])) {
      v = img[q];
      var = static_cast<double>(sig[q]) * sig[q];
      return true;
    }
    return false;
  };
  auto for_ellipse = [&](double r_max, auto&& fn) {
    // Half-extents of the ellipse r <= r_max (r in units of A, B) along x and y.
    const double hx = r_max * std::sqrt(a * a * c * c + b * b * s * s);
    const double hy = r_max * std::sqrt(a * a * s * s + b * b * c * c);
    const int x0 = static_cast<int>(std::floor(e.x_pix - hx));
    const int x1 = static_cast<int>(std::ceil(e.x_pix + hx));
    const int y0 = static_cast<int>(std::floor(e.y_pix - hy));
    const int y1 = static_cast<int>(std::ceil(e.y_pix + hy));
    const double r2max = r_max * r_max;
    for (int y = y0; y <= y1; ++y) {
      const double dy = y - e.y_pix;
      for (int x = x0; x <= x1; ++x) {
        const double dx = x - e.x_pix;
        const double r2 = cxx * dx * dx + cyy * dy * dy + cxy * dx * dy;
        if (r2 <= r2max) fn(x, y, r2);
      }
    }
  };

  double sr = 0.0;
  double sv = 0.0;
  for_ellipse(kKronWindow, [&](int x, int y, double r2) {
    double v = 0.0;
    double var = 0.0;
    if (!sample(x, y, v, var)) return;
    sr += std::sqrt(r2) * v;
    sv += v;
  });
  res.kron_radius = (sv > 0.0 && sr > 0.0) ? sr / sv : 0.0;
  const double r_ap = std::max(kKronFactor * res.kron_radius, kKronMinRadius);
  crowded = false;
  cut = false;
  double flux = 0.0;
  double var_sum = 0.0;
  double poisson = 0.0;
  for_ellipse(r_ap, [&](int x, int y, double) {
    double v = 0.0;
    double var = 0.0;
    if (!sample(x, y, v, var)) return;
    flux += v;
    var_sum += var;
    if (v > 0.0) poisson += v;
  });
  res.flux = flux;
  res.flux_err = std::sqrt(var_sum + (gain > 0.0 ? poisson / gain : 0.0));
  res.crowded = crowded;
  res.cut = cut;
  return res;
}

}  // namespace astroflow
