// Non-parametric galaxy morphology: CAS (Conselice 2003) and Gini/M20 (Lotz et al. 2004).
//
// Header-only and independent of the astroflow SDK (OpenCV core/imgproc only), so that the
// out-of-tree example plugin and the in-tree unit test share one implementation.
//
// Conventions:
//  * Images are CV_32FC1, background-subtracted, with blank pixels and other sources already
//    set to 0 by the caller.
//  * Coordinates are 0-based pixel coordinates with the centre of pixel (i, j) at (x=j, y=i),
//    i.e. FITS X_IMAGE - 1, Y_IMAGE - 1.
//  * A pixel is a uniform square: aperture sums weight each pixel by the fraction of its area
//    inside the circle (sub-sampled kSubsample x kSubsample).
//  * Functions return NaN when a quantity is undefined (no positive flux, radius not found).
//
// Definitions (each function states its own):
//  * Petrosian radius r_p: eta(r) = mean SB in the annulus [0.8 r, 1.25 r] divided by the mean SB
//    inside r; r_p is the smallest r where eta drops to 0.2.
//  * Concentration C = 5 log10(r80 / r20), r20/r80 enclosing 20%/80% of the flux inside the total
//    aperture (1.5 r_p in `measure`).
//  * Asymmetry A = min over centres of sum|I - I_180| / sum|I| over pixels within 1.5 r_p of the
//    centre, minus the background term when background pixels are given.
//  * Smoothness S = sum|I - I_S| / sum|I| over 0.25 r_p < r <= 1.5 r_p, I_S the boxcar of width
//    0.25 r_p (nearest integer, made odd), minus the background term (Lotz et al. 2004 eq. 8).
//  * Gini over the footprint pixels' |values| (Lotz et al. 2004 eq. 6).
//  * M20 = log10(sum M_i / M_tot) over the brightest footprint pixels, adding pixels while their
//    cumulative flux is below 20% of the total (so the pixel that crosses 20% is included).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

namespace morphometry {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
inline constexpr int kSubsample = 10;
inline constexpr double kPetrosianEta = 0.2;

struct Point {
  double x = 0.0;  ///< 0-based column
  double y = 0.0;  ///< 0-based row
};

/// Flux inside a circle of radius r_pix centred on c; pixels outside the image count as 0.
[[nodiscard]] inline double aperture_flux(const cv::Mat& img, Point c, double r_pix) {
  if (!(r_pix > 0.0)) return 0.0;
  constexpr double kHalfDiagonal = std::numbers::sqrt2 / 2.0;
  const int x0 = std::max(0, static_cast<int>(std::floor(c.x - r_pix - 1.0)));
  const int x1 = std::min(img.cols - 1, static_cast<int>(std::ceil(c.x + r_pix + 1.0)));
  const int y0 = std::max(0, static_cast<int>(std::floor(c.y - r_pix - 1.0)));
  const int y1 = std::min(img.rows - 1, static_cast<int>(std::ceil(c.y + r_pix + 1.0)));
  const double r2 = r_pix * r_pix;
  double sum = 0.0;
  for (int y = y0; y <= y1; ++y) {
    const float* row = img.ptr<float>(y);
    for (int x = x0; x <= x1; ++x) {
      const double v = row[x];
      if (v == 0.0) continue;
      const double d = std::hypot(x - c.x, y - c.y);
      if (d + kHalfDiagonal <= r_pix) {
        sum += v;
      } else if (d - kHalfDiagonal < r_pix) {
        int inside = 0;
        for (int sy = 0; sy < kSubsample; ++sy) {
          const double dy = y - 0.5 + (sy + 0.5) / kSubsample - c.y;
          for (int sx = 0; sx < kSubsample; ++sx) {
            const double dx = x - 0.5 + (sx + 0.5) / kSubsample - c.x;
            if (dx * dx + dy * dy <= r2) ++inside;
          }
        }
        sum += v * inside / (kSubsample * kSubsample);
      }
    }
  }
  return sum;
}

/// eta(r) = <I>_annulus[0.8r, 1.25r] / <I>_(<r).
[[nodiscard]] inline double petrosian_eta(const cv::Mat& img, Point c, double r_pix) {
  const double within = aperture_flux(img, c, r_pix);
  if (!(within > 0.0)) return kNaN;
  const double annulus = aperture_flux(img, c, 1.25 * r_pix) - aperture_flux(img, c, 0.8 * r_pix);
  const double annulus_area = (1.25 * 1.25 - 0.8 * 0.8) * r_pix * r_pix;
  return (annulus / annulus_area) / (within / (r_pix * r_pix));
}

/// Smallest r (<= r_max_pix) where eta(r) falls to `eta`: scanned in 0.5 px steps, then bisected.
[[nodiscard]] inline double petrosian_radius(const cv::Mat& img, Point c, double r_max_pix,
                                             double eta = kPetrosianEta) {
  double lo = 0.5;
  for (double r = 1.0; r <= r_max_pix; r += 0.5) {
    const double e = petrosian_eta(img, c, r);
    if (std::isnan(e)) return kNaN;
    if (e <= eta) {
      double hi = r;
      for (int i = 0; i < 40; ++i) {
        const double mid = 0.5 * (lo + hi);
        (petrosian_eta(img, c, mid) > eta ? lo : hi) = mid;
      }
      return 0.5 * (lo + hi);
    }
    lo = r;
  }
  return kNaN;
}

/// Radius whose aperture holds `flux` (bisection in [0, r_max_pix]; flux must be reachable).
[[nodiscard]] inline double radius_enclosing(const cv::Mat& img, Point c, double flux,
                                             double r_max_pix) {
  double lo = 0.0;
  double hi = r_max_pix;
  for (int i = 0; i < 50; ++i) {
    const double mid = 0.5 * (lo + hi);
    (aperture_flux(img, c, mid) < flux ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

struct Concentration {
  double value = kNaN;
  double r20_pix = kNaN;
  double r80_pix = kNaN;
};

/// C = 5 log10(r80/r20) with the fractions taken of the flux inside r_total_pix.
[[nodiscard]] inline Concentration concentration(const cv::Mat& img, Point c, double r_total_pix) {
  Concentration out;
  const double total = aperture_flux(img, c, r_total_pix);
  if (!(total > 0.0)) return out;
  out.r20_pix = radius_enclosing(img, c, 0.2 * total, r_total_pix);
  out.r80_pix = radius_enclosing(img, c, 0.8 * total, r_total_pix);
  if (out.r20_pix > 0.0) out.value = 5.0 * std::log10(out.r80_pix / out.r20_pix);
  return out;
}

/// Bilinear sample; outside the image is 0.
[[nodiscard]] inline double sample_bilinear(const cv::Mat& img, double x, double y) {
  const int xi = static_cast<int>(std::floor(x));
  const int yi = static_cast<int>(std::floor(y));
  const double fx = x - xi;
  const double fy = y - yi;
  auto at = [&](int yy, int xx) -> double {
    if (xx < 0 || yy < 0 || xx >= img.cols || yy >= img.rows) return 0.0;
    return img.at<float>(yy, xx);
  };
  return (1 - fy) * ((1 - fx) * at(yi, xi) + fx * at(yi, xi + 1)) +
         fy * ((1 - fx) * at(yi + 1, xi) + fx * at(yi + 1, xi + 1));
}

struct AsymmetrySums {
  double abs_residual = 0.0;  ///< sum |I - I_180|
  double abs_flux = 0.0;      ///< sum |I|
  int pixels = 0;
};

/// Sums over pixels whose centre lies within r_pix of c, rotating by 180 degrees about c.
[[nodiscard]] inline AsymmetrySums asymmetry_sums(const cv::Mat& img, Point c, double r_pix) {
  AsymmetrySums s;
  const int x0 = std::max(0, static_cast<int>(std::floor(c.x - r_pix)));
  const int x1 = std::min(img.cols - 1, static_cast<int>(std::ceil(c.x + r_pix)));
  const int y0 = std::max(0, static_cast<int>(std::floor(c.y - r_pix)));
  const int y1 = std::min(img.rows - 1, static_cast<int>(std::ceil(c.y + r_pix)));
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      if (std::hypot(x - c.x, y - c.y) > r_pix) continue;
      const double v = img.at<float>(y, x);
      s.abs_residual += std::abs(v - sample_bilinear(img, 2.0 * c.x - x, 2.0 * c.y - y));
      s.abs_flux += std::abs(v);
      ++s.pixels;
    }
  }
  return s;
}

/// Mean |B - B_180| per pixel over background pixels (mask != 0). The rotation is about the
/// image centre shifted by the sub-pixel offset of `source_centre`, so the bilinear weights (which
/// smooth the rotated noise) are the same as for the source and the noise terms cancel. Only
/// pixels whose rotated partner is interpolated from background pixels alone are used.
/// NaN with fewer than 16 usable pixels.
[[nodiscard]] inline double background_asymmetry_per_pixel(const cv::Mat& img,
                                                           const cv::Mat& background,
                                                           Point source_centre = {}) {
  if (background.empty()) return kNaN;
  const double qx = 0.5 * (img.cols - 1) + (source_centre.x - std::round(source_centre.x));
  const double qy = 0.5 * (img.rows - 1) + (source_centre.y - std::round(source_centre.y));
  auto is_background = [&](int x, int y) {
    return x >= 0 && y >= 0 && x < img.cols && y < img.rows &&
           background.at<std::uint8_t>(y, x) != 0;
  };
  double sum = 0.0;
  int n = 0;
  for (int y = 0; y < img.rows; ++y) {
    for (int x = 0; x < img.cols; ++x) {
      if (!is_background(x, y)) continue;
      const double xr = 2.0 * qx - x;
      const double yr = 2.0 * qy - y;
      const int xf = static_cast<int>(std::floor(xr));
      const int yf = static_cast<int>(std::floor(yr));
      const bool x_exact = xr == xf;
      const bool y_exact = yr == yf;
      if (!is_background(xf, yf) || (!x_exact && !is_background(xf + 1, yf)) ||
          (!y_exact && !is_background(xf, yf + 1)) ||
          (!x_exact && !y_exact && !is_background(xf + 1, yf + 1)))
        continue;
      sum += std::abs(img.at<float>(y, x) - sample_bilinear(img, xr, yr));
      ++n;
    }
  }
  return n >= 16 ? sum / n : kNaN;
}

struct Asymmetry {
  double value = kNaN;           ///< raw minimum minus the background term
  double raw = kNaN;             ///< minimum of sum|I - I_180| / sum|I|
  double background_term = 0.0;  ///< subtracted (0 without background pixels)
  Point centre;                  ///< the centre that minimises the raw asymmetry
};

/// Minimises the raw asymmetry over the rotation centre by a pattern search from `guess`
/// (steps 1 px down to 0.001 px), with the aperture of radius r_pix following the centre.
[[nodiscard]] inline Asymmetry asymmetry(const cv::Mat& img, Point guess, double r_pix,
                                         const cv::Mat& background = {}) {
  Asymmetry out;
  auto raw_at = [&](Point c) {
    const AsymmetrySums s = asymmetry_sums(img, c, r_pix);
    return s.abs_flux > 0.0 ? s.abs_residual / s.abs_flux : kNaN;
  };
  Point best = guess;
  double best_a = raw_at(best);
  if (std::isnan(best_a)) return out;
  for (double step = 1.0; step >= 0.001; step *= 0.5) {
    for (bool moved = true; moved;) {
      moved = false;
      for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
          if (dx == 0 && dy == 0) continue;
          const Point p{best.x + dx * step, best.y + dy * step};
          const double a = raw_at(p);
          if (a < best_a - 1e-12) {
            best_a = a;
            best = p;
            moved = true;
          }
        }
      }
    }
  }
  out.raw = best_a;
  out.centre = best;
  const double bg = background_asymmetry_per_pixel(img, background, best);
  if (!std::isnan(bg)) {
    const AsymmetrySums s = asymmetry_sums(img, best, r_pix);
    out.background_term = bg * s.pixels / s.abs_flux;
  }
  out.value = out.raw - out.background_term;
  return out;
}

/// Boxcar width for smoothness: 0.25 r_p rounded to the nearest integer, then made odd so the
/// kernel stays centred on the pixel.
[[nodiscard]] inline int smoothing_width(double r_petro_pix) {
  int w = static_cast<int>(std::lround(0.25 * r_petro_pix));
  if (w % 2 == 0) ++w;
  return std::max(w, 1);
}

/// S over the annulus 0.25 r_p < d <= 1.5 r_p around c. Background term: mean |B - B_S| over
/// background pixels whose whole boxcar is background, times the pixel count, over sum|I|.
[[nodiscard]] inline double smoothness(const cv::Mat& img, Point c, double r_petro_pix,
                                       const cv::Mat& background = {}) {
  if (!(r_petro_pix > 0.0)) return kNaN;
  const int w = smoothing_width(r_petro_pix);
  cv::Mat smooth;
  cv::blur(img, smooth, cv::Size(w, w), cv::Point(-1, -1), cv::BORDER_CONSTANT);
  const double r_in = 0.25 * r_petro_pix;
  const double r_out = 1.5 * r_petro_pix;
  double residual = 0.0;
  double flux = 0.0;
  int n = 0;
  for (int y = 0; y < img.rows; ++y) {
    for (int x = 0; x < img.cols; ++x) {
      const double d = std::hypot(x - c.x, y - c.y);
      if (d <= r_in || d > r_out) continue;
      residual += std::abs(img.at<float>(y, x) - smooth.at<float>(y, x));
      flux += std::abs(img.at<float>(y, x));
      ++n;
    }
  }
  if (!(flux > 0.0)) return kNaN;
  double s = residual / flux;
  if (!background.empty()) {
    cv::Mat full_box;
    cv::erode(background, full_box, cv::Mat::ones(w, w, CV_8U), cv::Point(-1, -1), 1,
              cv::BORDER_CONSTANT, cv::Scalar(0));
    double bsum = 0.0;
    int bn = 0;
    for (int y = 0; y < img.rows; ++y) {
      for (int x = 0; x < img.cols; ++x) {
        if (full_box.at<std::uint8_t>(y, x) == 0) continue;
        bsum += std::abs(img.at<float>(y, x) - smooth.at<float>(y, x));
        ++bn;
      }
    }
    if (bn >= 16) s -= (bsum / bn) * n / flux;
  }
  return s;
}

/// Gini coefficient of |values| (0: all equal; 1: all flux in one pixel).
[[nodiscard]] inline double gini(std::vector<double> values) {
  const std::size_t n = values.size();
  if (n < 2) return kNaN;
  for (double& v : values) v = std::abs(v);
  std::sort(values.begin(), values.end());
  double total = 0.0;
  double weighted = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    total += values[i];
    weighted += (2.0 * static_cast<double>(i + 1) - static_cast<double>(n) - 1.0) * values[i];
  }
  if (!(total > 0.0)) return kNaN;
  const double mean = total / static_cast<double>(n);
  return weighted / (mean * static_cast<double>(n) * static_cast<double>(n - 1));
}

struct Pixel {
  double x = 0.0;
  double y = 0.0;
  double flux = 0.0;
};

/// M20 of the pixels with positive flux, about the centre that minimises M_tot (the
/// flux-weighted centroid).
[[nodiscard]] inline double m20(std::vector<Pixel> pixels) {
  std::erase_if(pixels, [](const Pixel& p) { return !(p.flux > 0.0); });
  if (pixels.size() < 2) return kNaN;
  double total = 0.0;
  double sx = 0.0;
  double sy = 0.0;
  for (const Pixel& p : pixels) {
    total += p.flux;
    sx += p.flux * p.x;
    sy += p.flux * p.y;
  }
  const double xc = sx / total;
  const double yc = sy / total;
  auto moment = [&](const Pixel& p) {
    return p.flux * ((p.x - xc) * (p.x - xc) + (p.y - yc) * (p.y - yc));
  };
  double m_tot = 0.0;
  for (const Pixel& p : pixels) m_tot += moment(p);
  std::sort(pixels.begin(), pixels.end(),
            [](const Pixel& a, const Pixel& b) { return a.flux > b.flux; });
  double cumulative = 0.0;
  double m_bright = 0.0;
  for (const Pixel& p : pixels) {
    if (cumulative >= 0.2 * total) break;
    m_bright += moment(p);
    cumulative += p.flux;
  }
  if (!(m_tot > 0.0) || !(m_bright > 0.0)) return kNaN;
  return std::log10(m_bright / m_tot);
}

struct Morphology {
  double concentration = kNaN;
  double asymmetry = kNaN;
  double smoothness = kNaN;
  double gini = kNaN;
  double m20 = kNaN;
  double r_petro_pix = kNaN;
  double r20_pix = kNaN;
  double r80_pix = kNaN;
  Point centre;  ///< asymmetry centre, used for C and S
};

/// All five statistics for one source. `footprint` (CV_8U, != 0 inside) selects the Gini/M20
/// pixels and the first centroid; `background` (CV_8U, may be empty) enables the background
/// terms of A and S. `guess` is used when the footprint holds no positive flux.
[[nodiscard]] inline Morphology measure(const cv::Mat& img, const cv::Mat& footprint,
                                        const cv::Mat& background, Point guess) {
  Morphology m;
  std::vector<double> values;
  std::vector<Pixel> pixels;
  double fsum = 0.0;
  double fx = 0.0;
  double fy = 0.0;
  for (int y = 0; y < img.rows; ++y) {
    for (int x = 0; x < img.cols; ++x) {
      if (footprint.at<std::uint8_t>(y, x) == 0) continue;
      const double v = img.at<float>(y, x);
      values.push_back(v);
      pixels.push_back({static_cast<double>(x), static_cast<double>(y), v});
      if (v > 0.0) {
        fsum += v;
        fx += v * x;
        fy += v * y;
      }
    }
  }
  m.gini = gini(values);
  m.m20 = m20(pixels);
  const Point centroid = fsum > 0.0 ? Point{fx / fsum, fy / fsum} : guess;
  const double r_max = 0.5 * std::max(img.cols, img.rows);
  m.r_petro_pix = petrosian_radius(img, centroid, r_max);
  if (std::isnan(m.r_petro_pix)) return m;
  const Asymmetry a = asymmetry(img, centroid, 1.5 * m.r_petro_pix, background);
  m.asymmetry = a.value;
  m.centre = std::isnan(a.raw) ? centroid : a.centre;
  const Concentration c = concentration(img, m.centre, 1.5 * m.r_petro_pix);
  m.concentration = c.value;
  m.r20_pix = c.r20_pix;
  m.r80_pix = c.r80_pix;
  m.smoothness = smoothness(img, m.centre, m.r_petro_pix, background);
  return m;
}

}  // namespace morphometry
