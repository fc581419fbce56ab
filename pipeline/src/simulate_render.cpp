// Rendering primitives of the simulator: random numbers, Sérsic and Moffat profiles, artifacts,
// noise and the TAN WCS. See simulate.hpp for the conventions.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numbers>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

#include "astroflow/error.hpp"
#include "astroflow/simulate.hpp"

namespace astroflow {

namespace {

constexpr double kPi = std::numbers::pi;
constexpr double kDegToRad = kPi / 180.0;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Samples f (surface brightness per pix^2, image coordinates) over the pixels of the box
// [x0, x0 + w) x [y0, y0 + h) with k x k samples per pixel; returns the pixel fluxes (CV_64F).
template <typename F>
cv::Mat sample_box(int x0, int y0, int w, int h, int k, const F& f) {
  cv::Mat out(h, w, CV_64F, cv::Scalar(0));
  const double step = 1.0 / k;
  const double norm = 1.0 / (k * k);
  for (int j = 0; j < h; ++j) {
    auto* row = out.ptr<double>(j);
    for (int i = 0; i < w; ++i) {
      double sum = 0.0;
      for (int b = 0; b < k; ++b) {
        const double y = y0 + j - 0.5 + (b + 0.5) * step;
        for (int a = 0; a < k; ++a) sum += f(x0 + i - 0.5 + (a + 0.5) * step, y);
      }
      row[i] = sum * norm;
    }
  }
  return out;
}

// Adds scale * local (placed with its first pixel at (x0, y0)) to image, dropping what falls
// outside.
void add_clipped(cv::Mat& image, const cv::Mat& local, int x0, int y0, double scale) {
  const int xa = std::max(0, x0);
  const int ya = std::max(0, y0);
  const int xb = std::min(image.cols, x0 + local.cols);
  const int yb = std::min(image.rows, y0 + local.rows);
  for (int y = ya; y < yb; ++y) {
    auto* dst = image.ptr<float>(y);
    const auto* src = local.ptr<double>(y - y0);
    for (int x = xa; x < xb; ++x) dst[x] += static_cast<float>(scale * src[x - x0]);
  }
}

// A Sérsic component prepared for evaluation.
class SersicEval {
 public:
  explicit SersicEval(const SersicComponent& c)
      : xc_(c.x_pix),
        yc_(c.y_pix),
        cos_(std::cos(c.theta_deg * kDegToRad)),
        sin_(std::sin(c.theta_deg * kDegToRad)),
        inv_q_(1.0 / c.axis_ratio),
        inv_re2_(1.0 / (c.r_eff_pix * c.r_eff_pix)),
        b_(sersic_b(c.sersic_n)),
        half_inv_n_(0.5 / c.sersic_n),
        grad_scale_(b_ / (c.sersic_n * c.axis_ratio * c.r_eff_pix)),
        arm_amp_(c.arm_amplitude),
        arm_m_(c.arm_count),
        arm_inv_tan_(1.0 / std::tan(std::max(1.0, c.arm_pitch_deg) * kDegToRad)),
        arm_phase_(c.arm_phase_deg * kDegToRad) {
    const double n = c.sersic_n;
    const double enclosed =
        regularized_gamma_p(2.0 * n, b_ * std::pow(kSersicTruncationReff, 1.0 / n));
    // Untruncated total: 2 pi q re^2 n Gamma(2n) b^(-2n) A (A = central surface brightness).
    const double log_norm = std::log(2.0 * kPi * c.axis_ratio * c.r_eff_pix * c.r_eff_pix * n) +
                            std::lgamma(2.0 * n) - 2.0 * n * std::log(b_) + std::log(enclosed);
    amp_ = c.flux_counts * std::exp(-log_norm);
    negligible_ = 1e-3 * amp_ * std::exp(-b_);
  }

  // Surface brightness at (x, y) and, in *log_grad, an upper bound of |grad ln I| (1/pix).
  double operator()(double x, double y, double* log_grad = nullptr) const {
    const double dx = x - xc_;
    const double dy = y - yc_;
    const double xp = dx * cos_ + dy * sin_;
    const double yp = (-dx * sin_ + dy * cos_) * inv_q_;
    const double rho2 = (xp * xp + yp * yp) * inv_re2_;
    if (rho2 >= kSersicTruncationReff * kSersicTruncationReff) {
      if (log_grad != nullptr) *log_grad = 0.0;
      return 0.0;
    }
    if (rho2 <= 0.0) {
      if (log_grad != nullptr) *log_grad = std::numeric_limits<double>::infinity();
      return amp_;
    }
    const double log_rho2 = std::log(rho2);
    const double t = std::exp(log_rho2 * half_inv_n_);  // rho^(1/n)
    double v = amp_ * std::exp(-b_ * t);
    if (log_grad != nullptr) *log_grad = grad_scale_ * t / std::sqrt(rho2);
    if (arm_amp_ > 0.0) {
      const double phi = std::atan2(yp, xp);
      v *= 1.0 + arm_amp_ * std::cos(arm_m_ * (phi - 0.5 * log_rho2 * arm_inv_tan_) - arm_phase_);
    }
    return v;
  }

  [[nodiscard]] double x() const { return xc_; }
  // Below 1e-3 of the brightness at r_eff a cell carries too little flux to be worth refining;
  // without this cut the steep outskirts of n < 1 profiles cost most of the time.
  [[nodiscard]] double negligible() const { return negligible_; }
  [[nodiscard]] double y() const { return yc_; }

 private:
  double xc_, yc_, cos_, sin_, inv_q_, inv_re2_, b_, half_inv_n_, grad_scale_;
  double arm_amp_;
  int arm_m_;
  double arm_inv_tan_, arm_phase_;
  double amp_ = 0.0;
  double negligible_ = 0.0;
};

// Largest change of ln I across a cell that is integrated with one sample.
constexpr double kRefineLogStep = 0.25;

// Mean surface brightness over the square cell of side `size` centred on (x, y). Recursively
// splits 3x3 where ln I changes by more than kRefineLogStep across the cell, and always around the
// centre, whose cusp holds a large share of the flux for high n.
double integrate_cell(const SersicEval& f, double x, double y, double size, int depth) {
  double log_grad = 0.0;
  const double v = f(x, y, &log_grad);
  const bool has_centre = std::abs(x - f.x()) <= size && std::abs(y - f.y()) <= size;
  if (depth >= 9 || (!has_centre && (log_grad * size < kRefineLogStep || v < f.negligible())))
    return v;
  const double sub = size / 3.0;
  double sum = 0.0;
  for (int b = -1; b <= 1; ++b)
    for (int a = -1; a <= 1; ++a)
      sum += integrate_cell(f, x + a * sub, y + b * sub, sub, depth + 1);
  return sum / 9.0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SimRng

SimRng SimRng::stream(std::uint64_t seed, std::uint64_t stream_id, std::uint64_t index) {
  std::uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ splitmix64(stream_id + 0x632BE59BD9B4E019ULL));
  h = splitmix64(h ^ splitmix64(index + 0x8CB92BA72F3D8DD7ULL));
  return SimRng(h);
}

double SimRng::uniform() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double SimRng::log_uniform(double lo, double hi) {
  return std::exp(uniform(std::log(lo), std::log(hi)));
}

std::uint64_t SimRng::below(std::uint64_t n) {
  // Reject the top partial block so every residue is equally likely.
  const std::uint64_t limit =
      std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % n;
  std::uint64_t x = 0;
  do {
    x = engine_();
  } while (x >= limit);
  return x % n;
}

double SimRng::normal() {
  if (has_cached_normal_) {
    has_cached_normal_ = false;
    return cached_normal_;
  }
  const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  cached_normal_ = r * std::sin(2.0 * kPi * u2);
  has_cached_normal_ = true;
  return r * std::cos(2.0 * kPi * u2);
}

double SimRng::poisson(double mean) {
  if (!(mean > 0.0)) return 0.0;
  if (mean < 12.0) {
    const double limit = std::exp(-mean);
    double product = uniform();
    double k = 0.0;
    while (product > limit) {
      product *= uniform();
      k += 1.0;
    }
    return k;
  }
  // W. Hörmann (1993), "The transformed rejection method for generating Poisson random
  // variables", algorithm PTRS.
  const double slam = std::sqrt(mean);
  const double loglam = std::log(mean);
  const double b = 0.931 + 2.53 * slam;
  const double a = -0.059 + 0.02483 * b;
  const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
  const double vr = 0.9277 - 3.6224 / (b - 2.0);
  for (;;) {
    const double u = uniform() - 0.5;
    const double v = uniform();
    const double us = 0.5 - std::abs(u);
    const double k = std::floor((2.0 * a / us + b) * u + mean + 0.43);
    if (us >= 0.07 && v <= vr) return k;
    if (k < 0.0 || (us < 0.013 && v > us)) continue;
    if (std::log(v) + std::log(inv_alpha) - std::log(a / (us * us) + b) <=
        -mean + k * loglam - std::lgamma(k + 1.0))
      return k;
  }
}

// ---------------------------------------------------------------------------------------------
// Profiles

double regularized_gamma_p(double a, double x) {
  if (x <= 0.0) return 0.0;
  const double log_prefactor = -x + a * std::log(x) - std::lgamma(a);
  if (x < a + 1.0) {
    // Series: P = x^a e^-x / Gamma(a + 1) * sum x^k / ((a + 1)...(a + k)).
    double term = 1.0 / a;
    double sum = term;
    for (int k = 1; k < 10000; ++k) {
      term *= x / (a + k);
      sum += term;
      if (term < sum * 1e-16) break;
    }
    return sum * std::exp(log_prefactor);
  }
  // Continued fraction for Q (modified Lentz).
  const double tiny = 1e-300;
  double b = x + 1.0 - a;
  double c = 1.0 / tiny;
  double d = 1.0 / b;
  double h = d;
  for (int i = 1; i < 10000; ++i) {
    const double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (std::abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1.0) < 1e-16) break;
  }
  return 1.0 - std::exp(log_prefactor) * h;
}

double sersic_b(double sersic_n) {
  const double n = sersic_n;
  const double a = 2.0 * n;
  // Ciotti & Bertin (1999) asymptotic expansion as the start, then Newton on P(2n, b) = 1/2.
  double b = 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n);
  if (b <= 0.0) b = 0.5;
  for (int i = 0; i < 50; ++i) {
    const double f = regularized_gamma_p(a, b) - 0.5;
    const double df = std::exp((a - 1.0) * std::log(b) - b - std::lgamma(a));
    const double step = f / df;
    b = std::max(b - step, 0.5 * b);
    if (std::abs(step) < 1e-13 * b) break;
  }
  return b;
}

double sersic_enclosed_fraction(double sersic_n, double radius_over_reff) {
  if (radius_over_reff <= 0.0) return 0.0;
  return regularized_gamma_p(2.0 * sersic_n,
                             sersic_b(sersic_n) * std::pow(radius_over_reff, 1.0 / sersic_n));
}

double MoffatPsf::alpha_pix() const {
  return fwhm_pix / (2.0 * std::sqrt(std::pow(2.0, 1.0 / beta) - 1.0));
}

double MoffatPsf::intensity(double r_pix) const {
  const double radius = truncation_radius_pix();
  if (r_pix > radius) return 0.0;
  const double alpha = alpha_pix();
  const double enclosed = 1.0 - std::pow(1.0 + radius * radius / (alpha * alpha), 1.0 - beta);
  const double amp = (beta - 1.0) / (kPi * alpha * alpha * enclosed);
  return amp * std::pow(1.0 + r_pix * r_pix / (alpha * alpha), -beta);
}

cv::Mat psf_kernel(const MoffatPsf& psf, int oversample) {
  const int os = std::max(1, oversample);
  const int half = static_cast<int>(std::ceil(psf.truncation_radius_pix() * os));
  const int size = 2 * half + 1;
  cv::Mat kernel(size, size, CV_64F, cv::Scalar(0));
  for (int j = 0; j < size; ++j)
    for (int i = 0; i < size; ++i)
      kernel.at<double>(j, i) = psf.intensity(
          std::hypot(static_cast<double>(i - half), static_cast<double>(j - half)) / os);
  kernel /= cv::sum(kernel)[0];
  cv::Mat out;
  kernel.convertTo(out, CV_32F);
  return out;
}

cv::Mat render_galaxy(const std::vector<SersicComponent>& components, const MoffatPsf& psf,
                      int width, int height, int oversample) {
  const int os = std::max(1, oversample);
  const int pad = static_cast<int>(std::ceil(psf.truncation_radius_pix()));
  const int gw = (width + 2 * pad) * os;
  const int gh = (height + 2 * pad) * os;
  const double cell = 1.0 / os;
  cv::Mat grid(gh, gw, CV_32F, cv::Scalar(0));
  for (const auto& c : components) {
    if (!(c.flux_counts > 0.0)) continue;
    const SersicEval f(c);
    const double reach = kSersicTruncationReff * c.r_eff_pix + 1.0;
    // Grid index i has its centre at x = (i + 0.5) / os - 0.5 - pad.
    const auto to_index = [&](double v) { return (v + 0.5 + pad) * os - 0.5; };
    const int i0 = std::max(0, static_cast<int>(std::floor(to_index(c.x_pix - reach))));
    const int i1 = std::min(gw - 1, static_cast<int>(std::ceil(to_index(c.x_pix + reach))));
    const int j0 = std::max(0, static_cast<int>(std::floor(to_index(c.y_pix - reach))));
    const int j1 = std::min(gh - 1, static_cast<int>(std::ceil(to_index(c.y_pix + reach))));
    const double area = cell * cell;
    for (int j = j0; j <= j1; ++j) {
      auto* row = grid.ptr<float>(j);
      const double y = (j + 0.5) * cell - 0.5 - pad;
      for (int i = i0; i <= i1; ++i) {
        const double x = (i + 0.5) * cell - 0.5 - pad;
        row[i] += static_cast<float>(integrate_cell(f, x, y, cell, 0) * area);
      }
    }
  }
  cv::Mat convolved;
  cv::filter2D(grid, convolved, CV_32F, psf_kernel(psf, os), cv::Point(-1, -1), 0,
               cv::BORDER_CONSTANT);
  cv::Mat out(height, width, CV_32F, cv::Scalar(0));
  for (int y = 0; y < height; ++y) {
    auto* dst = out.ptr<float>(y);
    for (int b = 0; b < os; ++b) {
      const auto* src = convolved.ptr<float>((y + pad) * os + b);
      for (int x = 0; x < width; ++x) {
        const float* s = src + (x + pad) * os;
        float sum = 0.0F;
        for (int a = 0; a < os; ++a) sum += s[a];
        dst[x] += sum;
      }
    }
  }
  return out;
}

void add_moffat(cv::Mat& image, const MoffatPsf& psf, double x_pix, double y_pix,
                double flux_counts) {
  const double radius = psf.truncation_radius_pix() + 1.0;
  const int x0 = std::max(0, static_cast<int>(std::floor(x_pix - radius)));
  const int x1 = std::min(image.cols - 1, static_cast<int>(std::ceil(x_pix + radius)));
  const int y0 = std::max(0, static_cast<int>(std::floor(y_pix - radius)));
  const int y1 = std::min(image.rows - 1, static_cast<int>(std::ceil(y_pix + radius)));
  // The core is sampled 5x5 per pixel; beyond 2 FWHM the profile is smooth enough for 2x2.
  const double core2 = std::pow(2.0 * psf.fwhm_pix + 1.0, 2);
  // intensity() recomputes its normalisation; hoist it out of the sample loop.
  const double peak = psf.intensity(0.0);
  const double inv_alpha2 = 1.0 / (psf.alpha_pix() * psf.alpha_pix());
  const double trunc2 = psf.truncation_radius_pix() * psf.truncation_radius_pix();
  const double beta = psf.beta;
  for (int y = y0; y <= y1; ++y) {
    auto* row = image.ptr<float>(y);
    for (int x = x0; x <= x1; ++x) {
      const double d2 = (x - x_pix) * (x - x_pix) + (y - y_pix) * (y - y_pix);
      const int k = d2 < core2 ? 5 : 2;
      double sum = 0.0;
      for (int b = 0; b < k; ++b) {
        const double dy = y - 0.5 + (b + 0.5) / k - y_pix;
        for (int a = 0; a < k; ++a) {
          const double dx = x - 0.5 + (a + 0.5) / k - x_pix;
          const double r2 = dx * dx + dy * dy;
          if (r2 <= trunc2) sum += std::exp(-beta * std::log1p(r2 * inv_alpha2));
        }
      }
      row[x] += static_cast<float>(flux_counts * peak * sum / (k * k));
    }
  }
}

void add_diffraction_spikes(cv::Mat& image, double x_pix, double y_pix, double flux_counts,
                            double theta_deg, double length_pix, double width_pix) {
  const double reach = length_pix + 4.0 * width_pix;
  const double c = std::cos(theta_deg * kDegToRad);
  const double s = std::sin(theta_deg * kDegToRad);
  const double inv_2w2 = 1.0 / (2.0 * width_pix * width_pix);
  // Analytic total of the profile below (two axes, each running both ways), so only the pixels
  // inside the image need evaluating: a star far off the image costs nothing.
  const double along = 2.0 * 2.0 * (1.0 - 1.0 / (1.0 + length_pix / 2.0));
  const double total = 2.0 * along * std::sqrt(2.0 * kPi) * width_pix;
  const auto arm = [&](double t, double across) {
    t = std::abs(t);
    if (t > length_pix) return 0.0;
    const double fall = 1.0 / ((1.0 + t / 2.0) * (1.0 + t / 2.0));
    return fall * std::exp(-across * across * inv_2w2);
  };
  const auto spikes = [&](double x, double y) {
    const double dx = x - x_pix;
    const double dy = y - y_pix;
    const double u = dx * c + dy * s;
    const double v = -dx * s + dy * c;
    return arm(u, v) + arm(v, u);
  };
  const int x0 = std::max(0, static_cast<int>(std::floor(x_pix - reach)));
  const int y0 = std::max(0, static_cast<int>(std::floor(y_pix - reach)));
  const int x1 = std::min(image.cols, static_cast<int>(std::ceil(x_pix + reach)) + 1);
  const int y1 = std::min(image.rows, static_cast<int>(std::ceil(y_pix + reach)) + 1);
  if (x1 <= x0 || y1 <= y0) return;
  const cv::Mat local = sample_box(x0, y0, x1 - x0, y1 - y0, 2, spikes);
  add_clipped(image, local, x0, y0, flux_counts / total);
}

CosmicRayTrack draw_cosmic_ray(SimRng& rng, double x0, double y0, double gain_e_per_count) {
  CosmicRayTrack t;
  t.x0 = x0;
  t.y0 = y0;
  const double u = rng.uniform();
  const double len = 1.0 + 24.0 * u * u;
  const double phi = rng.uniform(0.0, 2.0 * std::numbers::pi);
  t.x1 = x0 + len * std::cos(phi);
  t.y1 = y0 + len * std::sin(phi);
  t.flux_counts = rng.uniform(300.0, 3000.0) * len / gain_e_per_count;
  return t;
}

void add_sharp_track(cv::Mat& image, double x0, double y0, double x1, double y1,
                     double flux_counts) {
  const double length = std::hypot(x1 - x0, y1 - y0);
  const int steps = std::max(1, static_cast<int>(std::ceil(length * 10.0)));
  const double per_step = flux_counts / steps;
  for (int k = 0; k < steps; ++k) {
    const double t = (k + 0.5) / steps;
    const double x = x0 + t * (x1 - x0);
    const double y = y0 + t * (y1 - y0);
    const int ix = static_cast<int>(std::floor(x));
    const int iy = static_cast<int>(std::floor(y));
    const double fx = x - ix;
    const double fy = y - iy;
    const double w[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
    const int px[4] = {ix, ix + 1, ix, ix + 1};
    const int py[4] = {iy, iy, iy + 1, iy + 1};
    for (int q = 0; q < 4; ++q) {
      if (px[q] < 0 || py[q] < 0 || px[q] >= image.cols || py[q] >= image.rows) continue;
      image.at<float>(py[q], px[q]) += static_cast<float>(per_step * w[q]);
    }
  }
}

void add_trail(cv::Mat& image, const MoffatPsf& psf, double x0, double y0, double x1, double y1,
               double flux_counts) {
  const double alpha = psf.alpha_pix();
  const double reach = psf.truncation_radius_pix();
  const double length = std::hypot(x1 - x0, y1 - y0);
  const double ux = length > 0 ? (x1 - x0) / length : 1.0;
  const double uy = length > 0 ? (y1 - y0) / length : 0.0;
  // The Moffat line-spread function (the PSF integrated along the trail), unnormalised.
  const double expo = 0.5 - psf.beta;
  const auto lsf = [&](double d) {
    if (d > reach) return 0.0;
    return std::pow(1.0 + d * d / (alpha * alpha), expo);
  };
  const auto trail = [&](double x, double y) {
    const double t = std::clamp((x - x0) * ux + (y - y0) * uy, 0.0, length);
    return lsf(std::hypot(x - (x0 + t * ux), y - (y0 + t * uy)));
  };
  // Total of `trail` over the plane: the body (length x the LSF integrated across, by Simpson's
  // rule) plus the two half-disc caps, which integrate in closed form for beta > 1.5.
  constexpr int kSteps = 2000;
  double across = 0.0;
  for (int k = 0; k <= kSteps; ++k) {
    const double wgt = (k == 0 || k == kSteps) ? 1.0 : (k % 2 == 1 ? 4.0 : 2.0);
    across += wgt * lsf(reach * k / kSteps);
  }
  across *= 2.0 * (reach / kSteps) / 3.0;  // both sides of the line
  const double caps = kPi * alpha * alpha *
                      (1.0 - std::pow(1.0 + reach * reach / (alpha * alpha), expo + 1.0)) /
                      (psf.beta - 1.5);
  const double total = length * across + caps;
  const int bx0 = std::max(0, static_cast<int>(std::floor(std::min(x0, x1) - reach)));
  const int by0 = std::max(0, static_cast<int>(std::floor(std::min(y0, y1) - reach)));
  const int bx1 = std::min(image.cols, static_cast<int>(std::ceil(std::max(x0, x1) + reach)) + 1);
  const int by1 = std::min(image.rows, static_cast<int>(std::ceil(std::max(y0, y1) + reach)) + 1);
  if (bx1 <= bx0 || by1 <= by0 || !(total > 0.0)) return;
  const cv::Mat local = sample_box(bx0, by0, bx1 - bx0, by1 - by0, 3, trail);
  add_clipped(image, local, bx0, by0, flux_counts / total);
}

Moments measure_moments(const cv::Mat& image, double x_pix, double y_pix, double radius_pix) {
  Moments m;
  const int x0 = std::max(0, static_cast<int>(std::floor(x_pix - radius_pix)));
  const int x1 = std::min(image.cols - 1, static_cast<int>(std::ceil(x_pix + radius_pix)));
  const int y0 = std::max(0, static_cast<int>(std::floor(y_pix - radius_pix)));
  const int y1 = std::min(image.rows - 1, static_cast<int>(std::ceil(y_pix + radius_pix)));
  const double r2 = radius_pix * radius_pix;
  double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, sf = 0;
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      const double dx = x - x_pix;
      const double dy = y - y_pix;
      if (dx * dx + dy * dy > r2) continue;
      const double v = image.at<float>(y, x);
      sf += v;
      sx += v * dx;
      sy += v * dy;
      sxx += v * dx * dx;
      syy += v * dy * dy;
      sxy += v * dx * dy;
    }
  m.flux = sf;
  if (sf == 0.0) {
    m.x_pix = x_pix;
    m.y_pix = y_pix;
    return m;
  }
  const double cx = sx / sf;
  const double cy = sy / sf;
  m.x_pix = x_pix + cx;
  m.y_pix = y_pix + cy;
  m.ixx = sxx / sf - cx * cx;
  m.iyy = syy / sf - cy * cy;
  m.ixy = sxy / sf - cx * cy;
  return m;
}

ApertureSum aperture_sum(const cv::Mat& image, double x_pix, double y_pix, double radius_pix) {
  ApertureSum out;
  const int x0 = std::max(0, static_cast<int>(std::floor(x_pix - radius_pix)));
  const int x1 = std::min(image.cols - 1, static_cast<int>(std::ceil(x_pix + radius_pix)));
  const int y0 = std::max(0, static_cast<int>(std::floor(y_pix - radius_pix)));
  const int y1 = std::min(image.rows - 1, static_cast<int>(std::ceil(y_pix + radius_pix)));
  const double r2 = radius_pix * radius_pix;
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x)
      if ((x - x_pix) * (x - x_pix) + (y - y_pix) * (y - y_pix) <= r2) {
        out.flux += image.at<float>(y, x);
        ++out.pixels;
      }
  return out;
}

double integrated_snr(double flux_counts, int pixels, double sky_counts, double gain_e_per_count,
                      double read_noise_e) {
  const double sigma2 = (sky_counts * gain_e_per_count + read_noise_e * read_noise_e) /
                        (gain_e_per_count * gain_e_per_count);
  const double var = std::max(0.0, flux_counts) / gain_e_per_count + pixels * sigma2;
  return var > 0.0 ? flux_counts / std::sqrt(var) : 0.0;
}

double flux_for_snr(double snr, int pixels, double sky_counts, double gain_e_per_count,
                    double read_noise_e) {
  // Solves F^2 - (s^2 / g) F - s^2 N sigma^2 = 0 for the positive root.
  const double sigma2 = (sky_counts * gain_e_per_count + read_noise_e * read_noise_e) /
                        (gain_e_per_count * gain_e_per_count);
  const double s2 = snr * snr;
  const double p = s2 / gain_e_per_count;
  return 0.5 * (p + std::sqrt(p * p + 4.0 * s2 * pixels * sigma2));
}

namespace {

float noisy_value(double mean_counts, double gain, double read_noise_e, SimRng& rng) {
  const double electrons = rng.poisson(std::max(0.0, mean_counts) * gain);
  return static_cast<float>((electrons + read_noise_e * rng.normal()) / gain);
}

}  // namespace

void add_noise(cv::Mat& image, const cv::Mat& sky, double sky_counts, double gain_e_per_count,
               double read_noise_e, std::uint64_t seed, std::uint64_t stream_id) {
  tbb::parallel_for(tbb::blocked_range<int>(0, image.rows), [&](const tbb::blocked_range<int>& r) {
    for (int y = r.begin(); y != r.end(); ++y) {
      SimRng rng = SimRng::stream(seed, stream_id, static_cast<std::uint64_t>(y));
      auto* row = image.ptr<float>(y);
      const float* sky_row = sky.empty() ? nullptr : sky.ptr<float>(y);
      for (int x = 0; x < image.cols; ++x) {
        const double s = sky_row != nullptr ? sky_row[x] : sky_counts;
        row[x] = noisy_value(row[x] + s, gain_e_per_count, read_noise_e, rng);
      }
    }
  });
}

void add_noise(cv::Mat& image, double sky_counts, double gain_e_per_count, double read_noise_e,
               SimRng& rng) {
  for (int y = 0; y < image.rows; ++y) {
    auto* row = image.ptr<float>(y);
    for (int x = 0; x < image.cols; ++x)
      row[x] = noisy_value(row[x] + sky_counts, gain_e_per_count, read_noise_e, rng);
  }
}

// ---------------------------------------------------------------------------------------------
// WCS

namespace {
struct CdMatrix {
  double cd11, cd12, cd21, cd22;  // degrees per pixel
};
CdMatrix cd_matrix(const TanWcsParams& w) {
  const double s = w.pixel_scale_arcsec / 3600.0;
  const double c = std::cos(w.position_angle_deg * kDegToRad);
  const double n = std::sin(w.position_angle_deg * kDegToRad);
  return {-s * c, s * n, s * n, s * c};
}
}  // namespace

void write_tan_wcs(Header& header, const TanWcsParams& wcs) {
  const CdMatrix cd = cd_matrix(wcs);
  header.set("WCSAXES", 2LL, "number of WCS axes");
  header.set("CTYPE1", std::string_view("RA---TAN"), "gnomonic projection");
  header.set("CTYPE2", std::string_view("DEC--TAN"), "gnomonic projection");
  header.set("CRPIX1", wcs.crpix1, "reference pixel (1-based)");
  header.set("CRPIX2", wcs.crpix2, "reference pixel (1-based)");
  header.set("CRVAL1", wcs.crval1_deg, "[deg] RA at the reference pixel");
  header.set("CRVAL2", wcs.crval2_deg, "[deg] Dec at the reference pixel");
  header.set("CD1_1", cd.cd11, "[deg/pix]");
  header.set("CD1_2", cd.cd12, "[deg/pix]");
  header.set("CD2_1", cd.cd21, "[deg/pix]");
  header.set("CD2_2", cd.cd22, "[deg/pix]");
  header.set("CUNIT1", std::string_view("deg"), "");
  header.set("CUNIT2", std::string_view("deg"), "");
  header.set("RADESYS", std::string_view("ICRS"), "reference frame");
}

std::pair<double, double> tan_pixel_to_sky(const TanWcsParams& wcs, double x, double y) {
  const CdMatrix cd = cd_matrix(wcs);
  const double dx = x - wcs.crpix1;
  const double dy = y - wcs.crpix2;
  const double xi = (cd.cd11 * dx + cd.cd12 * dy) * kDegToRad;
  const double eta = (cd.cd21 * dx + cd.cd22 * dy) * kDegToRad;
  const double a0 = wcs.crval1_deg * kDegToRad;
  const double d0 = wcs.crval2_deg * kDegToRad;
  const double denom = std::cos(d0) - eta * std::sin(d0);
  double ra = (a0 + std::atan2(xi, denom)) / kDegToRad;
  const double dec =
      std::atan2(std::sin(d0) + eta * std::cos(d0), std::sqrt(xi * xi + denom * denom)) / kDegToRad;
  ra = std::fmod(ra, 360.0);
  if (ra < 0.0) ra += 360.0;
  return {ra, dec};
}

std::pair<int, int> parse_image_size(std::string_view text, std::string_view option) {
  const auto fail = [&]() {
    return FatalError(std::string(option) + ": expected W or WxH with positive integers, got '" +
                      std::string(text) + "'");
  };
  const auto parse = [&](std::string_view part) {
    int v = 0;
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (ec != std::errc() || ptr != part.data() + part.size() || v <= 0 || v > 65536) throw fail();
    return v;
  };
  const auto cross = text.find_first_of("xX");
  if (cross == std::string_view::npos) {
    const int v = parse(text);
    return {v, v};
  }
  return {parse(text.substr(0, cross)), parse(text.substr(cross + 1))};
}

}  // namespace astroflow
