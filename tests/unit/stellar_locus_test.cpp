// Light concentration and the stellar locus (stellar_locus.hpp) on seeded synthetic images.
#include <gtest/gtest.h>

#include <astroflow/stellar_locus.hpp>
#include <cmath>
#include <cstdio>
#include <opencv2/core.hpp>
#include <random>
#include <vector>

namespace {

// A circular Gaussian of width sigma centred on (x, y), each pixel its integral (so that the
// enclosed flux within r is exactly 1 - exp(-r^2 / 2 sigma^2) of the total).
cv::Mat gaussian(int size, double x, double y, double sigma, double flux) {
  cv::Mat img(size, size, CV_32F, cv::Scalar(0));
  auto cdf = [&](double u) { return 0.5 * std::erfc(-u / (std::sqrt(2.0) * sigma)); };
  for (int py = 0; py < size; ++py) {
    for (int px = 0; px < size; ++px) {
      const double fx = cdf(px + 0.5 - x) - cdf(px - 0.5 - x);
      const double fy = cdf(py + 0.5 - y) - cdf(py - 0.5 - y);
      img.at<float>(py, px) = static_cast<float>(flux * fx * fy);
    }
  }
  return img;
}

double enclosed(double r, double sigma) {
  return 1.0 - std::exp(-r * r / (2.0 * sigma * sigma));
}

}  // namespace

TEST(StellarLocus, ConcentrationOfAGaussianIsTheAnalyticRatioAtAnySubPixelPhase) {
  const double sigma = 1.2;  // FWHM 2.8 px
  const cv::Mat rms(41, 41, CV_32F, cv::Scalar(1.0));
  const double expected = enclosed(2.0, sigma) / enclosed(6.0, sigma);
  double lo = 1.0;
  double hi = 0.0;
  double lo1 = 1.0;
  double hi1 = 0.0;
  for (double phase : {0.0, 0.13, 0.25, 0.37, 0.5}) {
    const cv::Mat img = gaussian(41, 20.0 + phase, 20.0 + 0.5 * phase, sigma, 1000.0);
    const auto c =
        astroflow::aperture_concentration(img, rms, 20.0 + phase, 20.0 + 0.5 * phase, 2.0, 6.0);
    // Sub-pixels share their pixel's mean brightness, which on a profile this peaked puts a few
    // per cent of the light of the central pixels outside r_in: the same for every star of one
    // PSF, so the locus (the stars' own median) absorbs it.
    EXPECT_NEAR(c.c, expected, 0.06) << phase;
    lo = std::min(lo, c.c);
    hi = std::max(hi, c.c);
    // Whole pixels only (pixel centre inside the circle): the ratio jumps with the phase.
    const auto c1 =
        astroflow::aperture_concentration(img, rms, 20.0 + phase, 20.0 + 0.5 * phase, 2.0, 6.0, 1);
    lo1 = std::min(lo1, c1.c);
    hi1 = std::max(hi1, c1.c);
  }
  std::printf("phase spread %.4f (whole pixels %.4f)\n", hi - lo, hi1 - lo1);
  EXPECT_LT(hi - lo, 0.025);
  EXPECT_GT(hi1 - lo1, 5.0 * (hi - lo));
}

TEST(StellarLocus, AnExtendedObjectIsLessConcentratedThanThePsf) {
  const cv::Mat rms(41, 41, CV_32F, cv::Scalar(1.0));
  const auto star = astroflow::aperture_concentration(gaussian(41, 20.3, 19.8, 1.2, 500.0), rms,
                                                      20.3, 19.8, 2.0, 6.0);
  const auto wide = astroflow::aperture_concentration(gaussian(41, 20.3, 19.8, 1.8, 500.0), rms,
                                                      20.3, 19.8, 2.0, 6.0);
  EXPECT_LT(wide.c, star.c - 0.1);
}

TEST(StellarLocus, TheConcentrationErrorMatchesTheScatterOverNoiseRealisations) {
  const cv::Mat clean = gaussian(41, 20.2, 20.4, 1.3, 300.0);
  const cv::Mat rms(41, 41, CV_32F, cv::Scalar(1.5));
  std::mt19937 rng(9201);
  std::normal_distribution<float> noise(0.0f, 1.5f);
  std::vector<double> cs;
  double reported = 0.0;
  for (int i = 0; i < 400; ++i) {
    cv::Mat img = clean.clone();
    for (auto it = img.begin<float>(); it != img.end<float>(); ++it) *it += noise(rng);
    const auto c = astroflow::aperture_concentration(img, rms, 20.2, 20.4, 2.0, 6.0);
    ASSERT_TRUE(std::isfinite(c.c));
    cs.push_back(c.c);
    reported += c.sigma / 400.0;
  }
  double mean = 0.0;
  for (double c : cs) mean += c / static_cast<double>(cs.size());
  double var = 0.0;
  for (double c : cs) var += (c - mean) * (c - mean) / static_cast<double>(cs.size() - 1);
  EXPECT_NEAR(reported, std::sqrt(var), 0.15 * std::sqrt(var));
}

TEST(StellarLocus, NoConcentrationOffTheImageOrOverBlankPixels) {
  cv::Mat img = gaussian(41, 20.0, 20.0, 1.2, 500.0);
  const cv::Mat rms(41, 41, CV_32F, cv::Scalar(1.0));
  EXPECT_TRUE(std::isnan(astroflow::aperture_concentration(img, rms, 4.0, 20.0, 2.0, 6.0).c));
  EXPECT_TRUE(std::isfinite(astroflow::aperture_concentration(img, rms, 20.0, 20.0, 2.0, 6.0).c));
  img.at<float>(24, 22) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(astroflow::aperture_concentration(img, rms, 20.0, 20.0, 2.0, 6.0).c));
}

TEST(StellarLocus, TheLocusIsTheMedianOfTheCalibrationRowsWithAFlooredRobustScatter) {
  const std::vector<double> c = {0.40, 0.41, 0.44, 0.42, 0.43, 0.10, NAN, 0.20};
  const std::vector<bool> cal = {true, true, true, true, true, false, true, false};
  const astroflow::StellarLocus l = astroflow::fit_stellar_locus(c, cal, 5, 0.0);
  ASSERT_TRUE(l.calibrated);
  EXPECT_EQ(l.stars, 5U);
  EXPECT_DOUBLE_EQ(l.centre, 0.42);
  EXPECT_NEAR(l.sigma, 1.4826 * 0.01, 1e-12);
  EXPECT_NEAR(astroflow::fit_stellar_locus(c, cal, 5, 0.05).sigma, 0.05 * 0.42, 1e-12);
  EXPECT_FALSE(astroflow::fit_stellar_locus(c, cal, 6, 0.05).calibrated);
}

// A calibrated locus at c = 0.4 with scatter 0.03.
astroflow::StellarLocus locus_at_0_4() {
  astroflow::StellarLocus l;
  l.calibrated = true;
  l.centre = 0.4;
  l.sigma = 0.03;
  l.stars = 10;
  return l;
}

TEST(StellarLocus, OnlyASourceBelowTheLocusLosesStarProbability) {
  astroflow::StellarLocus l = locus_at_0_4();
  // Three sigma (locus and measurement in quadrature: 0.05) below: p g / (p g + 1 - p).
  const double g = std::exp(-4.5);
  EXPECT_NEAR(astroflow::locus_star_probability(0.7, {0.25, 0.04}, l), 0.7 * g / (0.7 * g + 0.3),
              1e-12);
  EXPECT_DOUBLE_EQ(astroflow::locus_star_probability(0.7, {0.4, 0.01}, l), 0.7);
  EXPECT_DOUBLE_EQ(astroflow::locus_star_probability(0.7, {0.6, 0.01}, l), 0.7);  // cosmic ray
  EXPECT_DOUBLE_EQ(astroflow::locus_star_probability(0.7, {NAN, 0.01}, l), 0.7);
  l.calibrated = false;
  EXPECT_DOUBLE_EQ(astroflow::locus_star_probability(0.7, {0.1, 0.01}, l), 0.7);
}

TEST(StellarLocus, TheOutlierShareBoundsHowFarTheLocusLowersAConfidentStar) {
  const astroflow::StellarLocus l = locus_at_0_4();
  // Three sigma below: the likelihood is (1 - e) g + e.
  const double g = 0.75 * std::exp(-4.5) + 0.25;
  EXPECT_NEAR(astroflow::locus_star_probability(0.7, {0.25, 0.04}, l, 0.25),
              0.7 * g / (0.7 * g + 0.3), 1e-12);
  // Far below (z = 13): g -> e, so p' >= 1/2 exactly when p >= 1 / (1 + e) = 0.8.
  EXPECT_NEAR(astroflow::locus_star_probability(0.85, {0.0, 0.0}, l, 0.25),
              0.85 * 0.25 / (0.85 * 0.25 + 0.15), 1e-9);
  EXPECT_GT(astroflow::locus_star_probability(0.81, {0.0, 0.0}, l, 0.25), 0.5);
  EXPECT_LT(astroflow::locus_star_probability(0.79, {0.0, 0.0}, l, 0.25), 0.5);
  EXPECT_LT(astroflow::locus_star_probability(0.85, {0.0, 0.0}, l, 0.0), 1e-30);
  // On or above the locus nothing changes, whatever e.
  EXPECT_DOUBLE_EQ(astroflow::locus_star_probability(0.7, {0.45, 0.01}, l, 0.25), 0.7);
}
