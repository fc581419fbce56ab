// Kron (AUTO) aperture photometry as SExtractor does it, shared by the stages that measure
// FLUX_AUTO (sources, detect).
//
// The first moment of the light (Kron 1980) inside an ellipse of 6 x (A, B, THETA) gives the Kron
// radius r_k; the AUTO aperture is the ellipse of max(2.5 r_k, 3.5) in units of (A, B). Pixels of
// other objects (segmap label neither 0 nor `number`) and blank pixels inside the window are
// replaced by their mirror image through the centre when that one is clean, otherwise dropped.
// The error adds the rms plane in quadrature and, with gain > 0, the Poisson term of the
// positive pixels.
#pragma once

#include <algorithm>
#include <cmath>
#include <opencv2/core/mat.hpp>
#include <utility>

namespace astroflow {

/// Semi-major and semi-minor rms axes (SExtractor's A_IMAGE, B_IMAGE) of a light distribution
/// with second central moments xx, yy, xy (pix^2): the square roots of the eigenvalues.
[[nodiscard]] inline std::pair<double, double> rms_axes(double xx, double yy, double xy) {
  const double mean = 0.5 * (xx + yy);
  const double diff = std::sqrt(0.25 * (xx - yy) * (xx - yy) + xy * xy);
  return {std::sqrt(std::max(0.0, mean + diff)), std::sqrt(std::max(0.0, mean - diff))};
}

/// A, B (rms axes, pix) and THETA (degrees, counter-clockwise from x) of second central moments
/// xx, yy, xy, after SExtractor's guard against a singular (e.g. one-pixel-wide) object: when
/// xx yy - xy^2 < 1/144, 1/12 is added to xx and yy.
struct MomentAxes {
  double a = 0.0;
  double b = 0.0;
  double theta_deg = 0.0;
};
[[nodiscard]] inline MomentAxes moment_axes(double xx, double yy, double xy) {
  if (xx * yy - xy * xy < 1.0 / 144.0) {
    xx += 1.0 / 12.0;
    yy += 1.0 / 12.0;
  }
  const auto [a, b] = rms_axes(xx, yy, xy);
  return {a, b, 0.5 * std::atan2(2.0 * xy, xx - yy) * 180.0 / CV_PI};
}

struct KronEllipse {
  double x_pix = 0.0;  ///< centre, 0-based, in the image given to kron_photometry
  double y_pix = 0.0;
  double a_pix = 1.0;  ///< profile RMS along the major axis (SExtractor A_IMAGE)
  double b_pix = 1.0;
  double theta_deg = 0.0;  ///< CCW from +x
};

struct KronResult {
  double kron_radius = 0.0;  ///< in units of A, B; 0 when the first moment is not positive
  double flux = 0.0;         ///< FLUX_AUTO, in the units of `image`
  double flux_err = 0.0;     ///< FLUXERR_AUTO
  bool crowded = false;      ///< another object's pixels fall inside the aperture
  bool cut = false;          ///< the aperture runs off the image or over blank pixels
};

/// `image`: background-subtracted CV_32F (NaN = blank); `rms`: CV_32F, same size; `segmap`:
/// CV_32S labels of the same size, or empty (then only blank pixels are mirrored). `number`:
/// this object's label in `segmap`. `gain` in e-/count, 0 for no Poisson term.
[[nodiscard]] KronResult kron_photometry(const KronEllipse& e, int number, const cv::Mat& image,
                                         const cv::Mat& rms, const cv::Mat& segmap, double gain);

}  // namespace astroflow
