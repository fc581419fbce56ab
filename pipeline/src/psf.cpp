#include "astroflow/psf.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "astroflow/preprocess.hpp"

namespace astroflow {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Sharper than this is a hot pixel or a cosmic ray, not a sampled PSF.
constexpr double kMinStarFwhmPix = 0.8;
// The PSF FWHM from which clean_sharp_pixels also takes two-pixel-wide features.
constexpr double kMinPairFwhmPix = 2.0;
// Half-size of the box for a row's local sky when the frame has no background plane.
constexpr int kSkyHalf = 15;

}  // namespace

double adaptive_fwhm_pix(const cv::Mat& image, double x, double y) {
  double sw = 1.5;  // the weight's sigma, iterated to the source's
  double xc = x;
  double yc = y;
  for (int iter = 0; iter < 40; ++iter) {
    const int half = static_cast<int>(std::ceil(4.0 * sw));
    const int ix = static_cast<int>(std::lround(xc));
    const int iy = static_cast<int>(std::lround(yc));
    if (ix - half < 0 || iy - half < 0 || ix + half >= image.cols || iy + half >= image.rows)
      return kNaN;
    double s = 0, sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    const double inv = 1.0 / (2.0 * sw * sw);
    for (int py = iy - half; py <= iy + half; ++py) {
      const float* row = image.ptr<float>(py);
      const double dy = py - yc;
      for (int px = ix - half; px <= ix + half; ++px) {
        const double v = row[px];
        if (!std::isfinite(v)) return kNaN;
        const double dx = px - xc;
        const double w = std::exp(-(dx * dx + dy * dy) * inv) * v;
        s += w;
        sx += w * dx;
        sy += w * dy;
        sxx += w * dx * dx;
        syy += w * dy * dy;
        sxy += w * dx * dy;
      }
    }
    if (!(s > 0.0)) return kNaN;
    const double mx = sx / s;
    const double my = sy / s;
    const double mxx = sxx / s - mx * mx;
    const double myy = syy / s - my * my;
    const double mxy = sxy / s - mx * my;
    const double det = mxx * myy - mxy * mxy;
    if (!(det > 0.0)) return kNaN;
    // A Gaussian of sigma^2 under a Gaussian weight of sw^2 has weighted moment
    // m = sigma^2 sw^2 / (sigma^2 + sw^2); solved for sigma^2.
    const double m = std::sqrt(det);
    const double sw2 = sw * sw;
    const double next = m < 0.95 * sw2 ? std::sqrt(m * sw2 / (sw2 - m)) : 2.0 * sw;
    xc += std::clamp(mx, -1.0, 1.0);
    yc += std::clamp(my, -1.0, 1.0);
    if (std::hypot(xc - x, yc - y) > 3.0 || next > 20.0) return kNaN;
    const bool converged = std::abs(next - sw) < 1e-3 * sw;
    sw = std::max(next, 0.3);
    if (converged) return kFwhmPerSigma * sw;
  }
  return kNaN;
}

PsfEstimate estimate_psf_fwhm(const Frame& frame, std::size_t min_stars, std::size_t max_rows) {
  PsfEstimate out;
  const Catalog& cat = frame.catalog;
  const Column* xc = cat.find("X_IMAGE");
  const Column* yc = cat.find("Y_IMAGE");
  if (xc == nullptr || yc == nullptr || frame.science.empty()) return out;
  const Column* cls = cat.find("CLASS_STAR");
  if (cls == nullptr) return out;  // galaxies would pass for stars
  const Column* flags = cat.find("FLAGS");
  const Column* flux = cat.find("FLUX_AUTO");
  const Column* err = cat.find("FLUXERR_AUTO");
  // The background stage subtracts its plane and says so (BKG_SUB = T); it keeps the plane.
  const bool subtracted = frame.header.get_string("BKG_SUB").value_or("") == "T";
  const auto bg = frame.planes.find("background");
  const cv::Mat* background = bg == frame.planes.end() ? nullptr : &bg->second;
  constexpr double kMargin = 8.0;

  // 0-based position in the frame (X_IMAGE/Y_IMAGE are 1-based full-image positions).
  auto position = [&](std::size_t r) {
    return cv::Point2d(xc->as_double(r) - 1.0 - frame.tile.x0_pix,
                       yc->as_double(r) - 1.0 - frame.tile.y0_pix);
  };
  std::vector<std::size_t> rows;
  for (std::size_t r = 0; r < cat.rows(); ++r) {
    const auto [x, y] = position(r);
    if (!(x >= kMargin && y >= kMargin && x < frame.width() - kMargin &&
          y < frame.height() - kMargin))
      continue;
    if (!(cls->as_double(r) >= 0.5)) continue;
    if (flags != nullptr && (static_cast<long long>(flags->as_double(r)) & 4) != 0) continue;
    if (flux != nullptr && err != nullptr && !(flux->as_double(r) >= 30.0 * err->as_double(r)))
      continue;
    rows.push_back(r);
  }
  if (flux != nullptr) {
    std::stable_sort(rows.begin(), rows.end(), [&](std::size_t a, std::size_t b) {
      return flux->as_double(a) > flux->as_double(b);
    });
  }
  if (rows.size() > max_rows) rows.resize(max_rows);

  std::vector<double> fwhm;
  for (const std::size_t r : rows) {
    const auto [x, y] = position(r);
    const int ix = static_cast<int>(std::lround(x));
    const int iy = static_cast<int>(std::lround(y));
    const cv::Rect box =
        cv::Rect(ix - kSkyHalf, iy - kSkyHalf, 2 * kSkyHalf + 1, 2 * kSkyHalf + 1) &
        cv::Rect(0, 0, frame.width(), frame.height());
    cv::Mat local;
    frame.science(box).copyTo(local);
    if (subtracted) {
      // already background-subtracted
    } else if (background != nullptr) {
      local -= (*background)(box);
    } else {
      const ClippedStats st = sigma_clipped_stats(local);
      if (st.n_used == 0) continue;
      local -= st.median;
    }
    const double f = adaptive_fwhm_pix(local, x - box.x, y - box.y);
    if (std::isfinite(f) && f >= kMinStarFwhmPix) fwhm.push_back(f);
  }
  if (fwhm.size() < std::max<std::size_t>(1, min_stars)) return out;
  const auto mid = fwhm.begin() + static_cast<std::ptrdiff_t>(fwhm.size() / 2);
  std::nth_element(fwhm.begin(), mid, fwhm.end());
  out.fwhm_pix = *mid;
  out.stars = fwhm.size();
  return out;
}

double psf_match_sigma_pix(double frame_fwhm_arcsec, double target_fwhm_arcsec,
                           double pixel_scale_arcsec) {
  if (!(frame_fwhm_arcsec > 0.0) || !(target_fwhm_arcsec > 0.0) || !(pixel_scale_arcsec > 0.0))
    return 0.0;
  if (frame_fwhm_arcsec >= target_fwhm_arcsec) return 0.0;
  const double k =
      std::sqrt(target_fwhm_arcsec * target_fwhm_arcsec - frame_fwhm_arcsec * frame_fwhm_arcsec);
  return k / pixel_scale_arcsec / kFwhmPerSigma;
}

void gaussian_smooth_in_place(cv::Mat& stamp, double sigma_pix) {
  if (!(sigma_pix > 0.0) || stamp.empty()) return;
  const cv::Mat blank = fill_blanks_with_median(stamp);
  cv::GaussianBlur(stamp, stamp, cv::Size(0, 0), sigma_pix, sigma_pix, cv::BORDER_REFLECT);
  stamp.setTo(std::numeric_limits<float>::quiet_NaN(), blank);
}

int clean_sharp_pixels(cv::Mat& stamp, double fwhm_pix, double sky, double sky_rms) {
  if (!(fwhm_pix > 0.0) || !(sky_rms > 0.0) || stamp.rows < 3 || stamp.cols < 3) return 0;
  // A Gaussian PSF of sigma s centred on a pixel gives a neighbour at distance L (1 along x or
  // y, sqrt 2 along a diagonal) exp(-L^2 / 2s^2) of the pixel's light above the sky; centred
  // between two pixels, it gives the pixels beyond the pair exp(-L^2 / s^2) of each. A pixel
  // whose neighbours along one direction both hold less than half that (or, with a bright
  // partner, the pixel beyond the pair and the one on its other side) is narrower than the PSF
  // across that direction: a cosmic-ray track one or two pixels wide, a hot pixel.
  const double s2 = (fwhm_pix / kFwhmPerSigma) * (fwhm_pix / kFwhmPerSigma);
  // Below 2 px FWHM a star centred between two pixels is itself a two-pixel feature.
  const bool pairs = fwhm_pix >= kMinPairFwhmPix;
  constexpr int kDir[4][2] = {{1, 0}, {0, 1}, {1, 1}, {1, -1}};
  // Per direction (squared step 1 along x and y, 2 along a diagonal): half the single-pixel
  // and the pair share.
  std::array<double, 4> single{};
  std::array<double, 4> pair{};
  for (std::size_t d = 0; d < 4; ++d) {
    const double l2 = d < 2 ? 1.0 : 2.0;
    single[d] = 0.5 * std::exp(-0.5 * l2 / s2);
    pair[d] = 0.5 * std::exp(-l2 / s2);
  }
  const cv::Mat in = stamp.clone();
  auto at = [&](int x, int y) {
    return x < 0 || y < 0 || x >= in.cols || y >= in.rows
               ? std::numeric_limits<double>::quiet_NaN()
               : static_cast<double>(in.at<float>(y, x)) - sky;
  };
  int cleaned = 0;
  for (int y = 1; y + 1 < in.rows; ++y) {
    for (int x = 1; x + 1 < in.cols; ++x) {
      const double v = at(x, y);
      if (!std::isfinite(v) || v < 5.0 * sky_rms) continue;
      // Interpolated across the first direction in which the pixel is that narrow.
      for (std::size_t d = 0; d < 4; ++d) {
        const int dx = kDir[d][0];
        const int dy = kDir[d][1];
        const double a = at(x + dx, y + dy);
        const double b = at(x - dx, y - dy);
        if (!std::isfinite(a) || !std::isfinite(b)) continue;
        double value = std::numeric_limits<double>::quiet_NaN();
        if (a < single[d] * v && b < single[d] * v) {
          value = 0.5 * (a + b);
        } else if (pairs) {
          // A partner on one side (sign +1: at +d), the pixel beyond it, the one on our side.
          for (const int sign : {1, -1}) {
            const double partner = sign > 0 ? a : b;
            const double near = sign > 0 ? b : a;
            const double beyond = at(x + 2 * sign * dx, y + 2 * sign * dy);
            if (std::isfinite(beyond) && near < pair[d] * v && beyond < pair[d] * partner) {
              value = near + (beyond - near) / 3.0;
              break;
            }
          }
        }
        if (std::isfinite(value)) {
          stamp.at<float>(y, x) = static_cast<float>(sky + value);
          ++cleaned;
          break;
        }
      }
    }
  }
  return cleaned;
}

void psf_match_stamp(cv::Mat& stamp, double sigma_pix, std::uint64_t seed, double fwhm_pix) {
  if (!(sigma_pix > 0.0) || stamp.empty()) return;
  const ClippedStats before = sigma_clipped_stats(stamp);
  clean_sharp_pixels(stamp, fwhm_pix, before.median, before.stddev);
  gaussian_smooth_in_place(stamp, sigma_pix);
  const ClippedStats after = sigma_clipped_stats(stamp);
  const double add = before.stddev * before.stddev - after.stddev * after.stddev;
  if (!(add > 0.0)) return;
  cv::RNG rng(seed);
  const double sd = std::sqrt(add);
  for (int y = 0; y < stamp.rows; ++y) {
    float* v = stamp.ptr<float>(y);
    for (int x = 0; x < stamp.cols; ++x) {
      if (std::isfinite(v[x])) v[x] += static_cast<float>(rng.gaussian(sd));
    }
  }
}

}  // namespace astroflow
