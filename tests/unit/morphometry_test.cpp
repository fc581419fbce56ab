// Tests of the CAS / Gini / M20 math of the example plugin (plugins/examples/morphometry_core.hpp)
// against values derived independently here: analytic profiles integrated numerically in this
// file, and pixel configurations whose statistics follow from the definitions by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <numbers>
#include <random>
#include <vector>

#include "../../plugins/examples/morphometry_core.hpp"

namespace {

using Profile = std::function<double(double)>;  // surface brightness at radius r (pixels)

// Sersic b_n for n = 4 (Ciotti & Bertin 1999 expansion; b_4 = 7.669).
constexpr double kB4 = 2.0 * 4.0 - 1.0 / 3.0 + 4.0 / (405.0 * 4.0) + 46.0 / (25515.0 * 16.0);

Profile exponential(double h_pix) {
  return [h_pix](double r) { return std::exp(-r / h_pix); };
}
Profile de_vaucouleurs(double re_pix) {
  return [re_pix](double r) { return std::exp(-kB4 * (std::pow(r / re_pix, 0.25) - 1.0)); };
}

// L(r) = 2 pi int_0^r I(s) s ds, composite Simpson in u = sqrt(s) (s = u^2, ds = 2u du), which
// tames the de Vaucouleurs cusp at the centre.
double enclosed(const Profile& p, double r) {
  if (r <= 0.0) return 0.0;
  const int n = 4000;
  const double umax = std::sqrt(r);
  const double du = umax / n;
  auto f = [&](double u) { return p(u * u) * u * u * 2.0 * u; };
  double sum = f(0.0) + f(umax);
  for (int i = 1; i < n; ++i) sum += f(i * du) * (i % 2 == 1 ? 4.0 : 2.0);
  return 2.0 * std::numbers::pi * sum * du / 3.0;
}

double bisect(const std::function<double(double)>& g, double lo, double hi) {
  // g(lo) and g(hi) of opposite sign
  const bool lo_negative = g(lo) < 0.0;
  for (int i = 0; i < 80; ++i) {
    const double mid = 0.5 * (lo + hi);
    ((g(mid) < 0.0) == lo_negative ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double analytic_eta(const Profile& p, double r) {
  const double annulus = (enclosed(p, 1.25 * r) - enclosed(p, 0.8 * r)) / (1.25 * 1.25 - 0.8 * 0.8);
  return annulus / enclosed(p, r);
}

double analytic_petrosian(const Profile& p, double r_max) {
  return bisect([&](double r) { return analytic_eta(p, r) - 0.2; }, 0.5, r_max);
}

double analytic_concentration(const Profile& p, double r_total) {
  const double total = enclosed(p, r_total);
  const double r20 = bisect([&](double r) { return enclosed(p, r) - 0.2 * total; }, 1e-6, r_total);
  const double r80 = bisect([&](double r) { return enclosed(p, r) - 0.8 * total; }, 1e-6, r_total);
  return 5.0 * std::log10(r80 / r20);
}

// Pixel value = mean of the profile over the pixel (8x8 sub-samples; 64x64 near the centre
// where the de Vaucouleurs cusp varies within a pixel).
cv::Mat render(const Profile& p, int size, double cx, double cy) {
  cv::Mat img(size, size, CV_32F);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const int n = std::hypot(x - cx, y - cy) < 4.0 ? 64 : 8;
      double sum = 0.0;
      for (int sy = 0; sy < n; ++sy) {
        for (int sx = 0; sx < n; ++sx) {
          sum += p(std::hypot(x - 0.5 + (sx + 0.5) / n - cx, y - 0.5 + (sy + 0.5) / n - cy));
        }
      }
      img.at<float>(y, x) = static_cast<float>(sum / (n * n));
    }
  }
  return img;
}

cv::Mat gaussian(int size, double cx, double cy, double sigma, double peak) {
  cv::Mat img(size, size, CV_32F);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      img.at<float>(y, x) = static_cast<float>(
          peak * std::exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * sigma * sigma)));
  return img;
}

}  // namespace

// The numerical integrator reproduces the closed-form total-flux concentrations of the
// literature (exponential 2.80 from 1-(1+x)e^-x; de Vaucouleurs about 5.2-5.3).
TEST(MorphometryAnalytic, TotalFluxConcentrationsMatchLiterature) {
  const double c_exp = analytic_concentration(exponential(1.0), 60.0);
  // Closed form: r20 = 0.8244 h, r80 = 2.9943 h.
  EXPECT_NEAR(c_exp, 5.0 * std::log10(2.9943 / 0.8244), 0.002);
  const double c_dev = analytic_concentration(de_vaucouleurs(1.0), 2000.0);
  EXPECT_GT(c_dev, 5.1);
  EXPECT_LT(c_dev, 5.4);
}

// Exponential disk, h = 6 px: r_p within 1% and C over the 1.5 r_p aperture within 0.03.
TEST(MorphometryConcentration, ExponentialDiskMatchesAnalyticPetrosianValue) {
  const Profile p = exponential(6.0);
  const cv::Mat img = render(p, 121, 60.0, 60.0);
  const morphometry::Point c{60.0, 60.0};
  const double rp_true = analytic_petrosian(p, 50.0);
  const double rp = morphometry::petrosian_radius(img, c, 55.0);
  EXPECT_NEAR(rp, rp_true, 0.01 * rp_true);
  const double c_true = analytic_concentration(p, 1.5 * rp_true);
  EXPECT_NEAR(morphometry::concentration(img, c, 1.5 * rp).value, c_true, 0.03);
  EXPECT_LT(c_true, 2.80);  // the Petrosian aperture misses part of the outer light
}

// de Vaucouleurs, r_e = 16 px: C over 1.5 r_p within 0.05, and over a 8 r_e aperture within 0.05
// of the analytic value for that aperture (the cusp makes the central pixels the main error).
TEST(MorphometryConcentration, DeVaucouleursMatchesAnalytic) {
  const Profile p = de_vaucouleurs(16.0);
  const int size = 261;
  const double mid = 130.0;
  const cv::Mat img = render(p, size, mid, mid);
  const morphometry::Point c{mid, mid};
  const double rp_true = analytic_petrosian(p, 100.0);
  const double rp = morphometry::petrosian_radius(img, c, 104.0);
  EXPECT_NEAR(rp, rp_true, 0.01 * rp_true);
  EXPECT_NEAR(morphometry::concentration(img, c, 1.5 * rp).value,
              analytic_concentration(p, 1.5 * rp_true), 0.05);
  const double c_big = analytic_concentration(p, 8.0 * 16.0);
  EXPECT_NEAR(morphometry::concentration(img, c, 8.0 * 16.0).value, c_big, 0.05);
  EXPECT_GT(c_big, 4.5);
}

// Gini: equal pixels give 0, one bright pixel among zeros gives exactly 1, and the values
// 1, 2, ..., n give (n+1)n(n-1)/6 / (((n+1)/2) n (n-1)) = 1/3. Tolerance: rounding only.
TEST(MorphometryGini, KnownDistributions) {
  std::vector<double> disk;
  for (int y = -10; y <= 10; ++y)
    for (int x = -10; x <= 10; ++x)
      if (x * x + y * y <= 100) disk.push_back(3.5);
  EXPECT_NEAR(morphometry::gini(disk), 0.0, 1e-12);
  std::vector<double> spike(400, 0.0);
  spike[123] = 50.0;
  EXPECT_NEAR(morphometry::gini(spike), 1.0, 1e-12);
  std::vector<double> ramp;
  for (int i = 1; i <= 57; ++i) ramp.push_back(i);
  EXPECT_NEAR(morphometry::gini(ramp), 1.0 / 3.0, 1e-12);
  EXPECT_TRUE(std::isnan(morphometry::gini({})));
}

// M20: eight unit pixels at distance 5 from their centroid ((+-3,+-4), (+-4,+-3)): the brightest
// 20% (1.6 of 8) takes two pixels, so M20 = log10(2/8). A core of four pixels of flux 3 at
// distance 1 plus that ring: total 20, the first two core pixels reach 20%, M = 2*3*1 = 6 out
// of M_tot = 4*3*1 + 8*1*25 = 212, so M20 = log10(6/212). Tolerance: rounding only.
TEST(MorphometryM20, KnownConfigurations) {
  std::vector<morphometry::Pixel> ring;
  for (int sx : {-1, 1})
    for (int sy : {-1, 1}) {
      ring.push_back({20.0 + 3 * sx, 30.0 + 4 * sy, 1.0});
      ring.push_back({20.0 + 4 * sx, 30.0 + 3 * sy, 1.0});
    }
  EXPECT_NEAR(morphometry::m20(ring), std::log10(2.0 / 8.0), 1e-12);
  std::vector<morphometry::Pixel> cored = ring;
  cored.push_back({21.0, 30.0, 3.0});
  cored.push_back({19.0, 30.0, 3.0});
  cored.push_back({20.0, 31.0, 3.0});
  cored.push_back({20.0, 29.0, 3.0});
  cored.push_back({20.0, 30.0, 0.0});  // the centre pixel, empty: changes nothing
  EXPECT_NEAR(morphometry::m20(cored), std::log10(6.0 / 212.0), 1e-12);
}

// A symmetric profile has A = 0 at its centre; the search must find the centre from a guess
// 0.8 px away. Tolerances: A < 1e-3, centre within 0.02 px.
TEST(MorphometryAsymmetry, SymmetricProfileIsZero) {
  const cv::Mat img = gaussian(81, 40.5, 39.5, 4.0, 100.0);
  const morphometry::Asymmetry a = morphometry::asymmetry(img, {41.3, 38.9}, 20.0);
  EXPECT_LT(a.value, 1e-3);
  EXPECT_NEAR(a.centre.x, 40.5, 0.02);
  EXPECT_NEAR(a.centre.y, 39.5, 0.02);
}

// A symmetric galaxy plus one compact off-centre clump of flux F_c: the clump and its rotated
// image do not overlap, so sum|I - I_180| = 2 F_c and A = 2 F_c / sum(I in the aperture).
// Tolerance: 3% of the expected value (the centre search may trade a little of one for the other).
TEST(MorphometryAsymmetry, OffCentreClumpGivesTwiceItsFluxFraction) {
  cv::Mat galaxy = gaussian(101, 50.0, 50.0, 6.0, 100.0);
  const cv::Mat clump = gaussian(101, 60.0, 50.0, 1.0, 150.0);
  const cv::Mat img = galaxy + clump;
  const double r = 25.0;
  double clump_flux = 0.0;
  double aperture_flux = 0.0;
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x)
      if (std::hypot(x - 50.0, y - 50.0) <= r) {
        clump_flux += clump.at<float>(y, x);
        aperture_flux += img.at<float>(y, x);
      }
  const double expected = 2.0 * clump_flux / aperture_flux;
  ASSERT_GT(expected, 0.05);
  const morphometry::Asymmetry a = morphometry::asymmetry(img, {50.0, 50.0}, r);
  EXPECT_NEAR(a.value, expected, 0.03 * expected);
}

// Seeded white noise adds asymmetry; the background term (from noise-only pixels) removes it.
// Tolerance: |A| < 0.01 after correction while the raw value exceeds 0.05.
TEST(MorphometryAsymmetry, BackgroundTermRemovesNoiseAsymmetry) {
  cv::Mat img = gaussian(121, 60.0, 60.0, 5.0, 20.0);
  std::mt19937 rng(42);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x) img.at<float>(y, x) += noise(rng);
  cv::Mat background(img.size(), CV_8U, cv::Scalar(0));
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x)
      if (std::hypot(x - 60.0, y - 60.0) > 30.0) background.at<std::uint8_t>(y, x) = 1;
  const morphometry::Asymmetry a = morphometry::asymmetry(img, {60.0, 60.0}, 15.0, background);
  EXPECT_GT(a.raw, 0.05);
  EXPECT_NEAR(a.value, 0.0, 0.01);
}

// Smoothness of a level-L image with a +-a checkerboard: a w x w boxcar (w odd) leaves +-a/w^2,
// so every pixel's residual is a(1 - 1/w^2); S = sum of that / sum|I| over the annulus.
// A linear ramp is unchanged by the boxcar: S = 0. Tolerance: float rounding (1e-5).
TEST(MorphometrySmoothness, CheckerboardAndRamp) {
  const double level = 10.0;
  const double amp = 2.0;
  const double rp = 20.0;  // boxcar 0.25 * 20 = 5 px
  ASSERT_EQ(morphometry::smoothing_width(rp), 5);
  cv::Mat img(101, 101, CV_32F);
  cv::Mat ramp(101, 101, CV_32F);
  for (int y = 0; y < 101; ++y)
    for (int x = 0; x < 101; ++x) {
      img.at<float>(y, x) = static_cast<float>(level + ((x + y) % 2 == 0 ? amp : -amp));
      ramp.at<float>(y, x) = static_cast<float>(5.0 + 0.1 * x + 0.05 * y);
    }
  double residual = 0.0;
  double flux = 0.0;
  for (int y = 0; y < 101; ++y)
    for (int x = 0; x < 101; ++x) {
      const double d = std::hypot(x - 50.0, y - 50.0);
      if (d <= 0.25 * rp || d > 1.5 * rp) continue;
      residual += amp * (1.0 - 1.0 / 25.0);
      flux += img.at<float>(y, x);
    }
  EXPECT_NEAR(morphometry::smoothness(img, {50.0, 50.0}, rp), residual / flux, 1e-5);
  EXPECT_NEAR(morphometry::smoothness(ramp, {50.0, 50.0}, rp), 0.0, 1e-5);
}

// Continuous Gini of a circular profile over a disk of radius R: pixels sorted by value are
// sorted by radius, so the Lorenz curve is L(p) = (L(R) - L(R sqrt(1-p))) / L(R) and
// G = 1 - 2 int_0^1 L(p) dp (Simpson).
double analytic_gini(const Profile& p, double r_max) {
  const double total = enclosed(p, r_max);
  const int n = 400;
  auto lorenz = [&](double q) { return (total - enclosed(p, r_max * std::sqrt(1.0 - q))) / total; };
  double sum = lorenz(0.0) + lorenz(1.0);
  for (int i = 1; i < n; ++i) sum += lorenz(static_cast<double>(i) / n) * (i % 2 == 1 ? 4 : 2);
  return 1.0 - 2.0 * sum / (3.0 * n);
}

// Continuous M20 of a circular profile over a disk of radius R: the brightest 20% of the flux
// lies inside r20 (of the flux within R), so M20 = log10(M(<r20) / M(<R)) with
// M(<r) = 2 pi int_0^r I(s) s^3 ds.
double analytic_m20(const Profile& p, double r_max) {
  auto second_moment = [&](double r) {
    const int n = 4000;
    const double ds = r / n;
    auto f = [&](double s) { return p(s) * s * s * s; };
    double sum = f(0.0) + f(r);
    for (int i = 1; i < n; ++i) sum += f(i * ds) * (i % 2 == 1 ? 4.0 : 2.0);
    return sum * ds / 3.0;
  };
  const double total = enclosed(p, r_max);
  const double r20 = bisect([&](double r) { return enclosed(p, r) - 0.2 * total; }, 1e-6, r_max);
  return std::log10(second_moment(r20) / second_moment(r_max));
}

// The whole chain on a noiseless exponential disk (h = 5 px, footprint radius 40 px): r_p and C
// as the analytic values (1%, 0.03), A ~ 0 (< 1e-3), Gini within 0.01 and M20 within 0.03 dex of
// the continuous-profile values (pixelisation is the difference).
TEST(MorphometryMeasure, ExponentialDiskEndToEnd) {
  const Profile p = exponential(5.0);
  const cv::Mat img = render(p, 121, 60.0, 60.0);
  cv::Mat footprint(img.size(), CV_8U, cv::Scalar(0));
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x)
      if (std::hypot(x - 60.0, y - 60.0) <= 40.0) footprint.at<std::uint8_t>(y, x) = 1;
  const morphometry::Morphology m = morphometry::measure(img, footprint, {}, {59.0, 61.0});
  const double rp_true = analytic_petrosian(p, 50.0);
  EXPECT_NEAR(m.r_petro_pix, rp_true, 0.01 * rp_true);
  EXPECT_NEAR(m.concentration, analytic_concentration(p, 1.5 * rp_true), 0.03);
  EXPECT_LT(m.asymmetry, 1e-3);
  EXPECT_NEAR(m.centre.x, 60.0, 0.02);
  EXPECT_NEAR(m.gini, analytic_gini(p, 40.0), 0.01);
  EXPECT_NEAR(m.m20, analytic_m20(p, 40.0), 0.03);
  EXPECT_GE(m.smoothness, 0.0);
  EXPECT_LT(m.smoothness, 0.05);
}
