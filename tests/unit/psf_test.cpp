// The PSF helpers of classify's psf_match (astroflow/psf.hpp): the adaptive-moment FWHM and the
// frame estimate against the simulator's known PSF, the matching kernel, and the stamp
// smoothing with its noise put back.
#include <gtest/gtest.h>

#include <astroflow/preprocess.hpp>
#include <astroflow/psf.hpp>
#include <astroflow/simulate.hpp>
#include <cmath>
#include <cstdio>
#include <limits>
#include <opencv2/core.hpp>

namespace {

// A simulated 1024² field (seed 9217: used by no other choice) as the frame classify sees in
// sources mode: its truth rows as the catalog, CLASS_STAR 1 for the stars, 0 for the rest
// (no CLASS_STAR column without `class_star`).
astroflow::Frame field_frame(double fwhm_pix, double beta, bool class_star = true) {
  astroflow::FieldOptions fo;
  fo.seed = 9217;
  fo.width_pix = 1024;
  fo.height_pix = 1024;
  fo.n_stars = 150;
  fo.psf_fwhm_pix = fwhm_pix;
  fo.psf_beta = beta;
  const astroflow::FieldSimulation sim = astroflow::simulate_field(fo);
  astroflow::Frame f;
  f.path = "field.fits";
  f.science = sim.image.clone();
  const auto& type = sim.truth.get<std::string>("TYPE");
  f.catalog.add_column<double>("X_IMAGE", "pix");
  f.catalog.add_column<double>("Y_IMAGE", "pix");
  f.catalog.resize(sim.truth.rows());
  f.catalog.get<double>("X_IMAGE") = sim.truth.get<double>("X_IMAGE");
  f.catalog.get<double>("Y_IMAGE") = sim.truth.get<double>("Y_IMAGE");
  if (class_star) {
    auto& cls = f.catalog.add_column<float>("CLASS_STAR", "");
    for (std::size_t i = 0; i < type.size(); ++i) cls[i] = type[i] == "star" ? 1.0f : 0.0f;
  }
  return f;
}

// A Gaussian star of FWHM fwhm_pix and the given peak at (x, y) on unit white noise (seed 9217).
cv::Mat star_on_noise(int size, double fwhm_pix, double peak, double x0, double y0) {
  cv::Mat img(size, size, CV_32F);
  cv::RNG rng(9217);
  rng.fill(img, cv::RNG::NORMAL, 0.0, 1.0);
  const double s = fwhm_pix / astroflow::kFwhmPerSigma;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      img.at<float>(y, x) += static_cast<float>(
          peak * std::exp(-((x - x0) * (x - x0) + (y - y0) * (y - y0)) / (2 * s * s)));
  return img;
}

}  // namespace

TEST(Psf, AdaptiveMomentsGiveTheFwhmOfASampledGaussian) {
  for (const double fwhm : {2.0, 2.5, 4.0, 7.0}) {
    const double s = fwhm / astroflow::kFwhmPerSigma;
    cv::Mat img(64, 64, CV_32F);
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x)
        img.at<float>(y, x) = static_cast<float>(
            std::exp(-((x - 31.3) * (x - 31.3) + (y - 32.6) * (y - 32.6)) / (2 * s * s)));
    EXPECT_NEAR(astroflow::adaptive_fwhm_pix(img, 31.0, 33.0), fwhm, 0.03 * fwhm) << fwhm;
  }
  cv::Mat flat(32, 32, CV_32F, cv::Scalar(0.0f));
  EXPECT_TRUE(std::isnan(astroflow::adaptive_fwhm_pix(flat, 16, 16)));  // nothing to measure
}

TEST(Psf, TheFrameEstimateFollowsTheSimulatedMoffatFwhm) {
  for (const double fwhm : {2.0, 3.5}) {
    const astroflow::Frame f = field_frame(fwhm, 3.0);
    const astroflow::PsfEstimate e = astroflow::estimate_psf_fwhm(f);
    std::printf("Moffat FWHM %.2f px (beta 3): estimate %.3f px from %zu stars\n", fwhm, e.fwhm_pix,
                e.stars);
    EXPECT_GE(e.stars, 30u);
    // The adaptive moments see a Moffat's wings: a Gaussian FWHM 5-25% above the Moffat's.
    EXPECT_GE(e.fwhm_pix, 1.05 * fwhm);
    EXPECT_LE(e.fwhm_pix, 1.25 * fwhm);
  }
}

TEST(Psf, TheEstimateTakesTheBackgroundOffOnce) {
  // The same field raw (local sky per row), with a background plane, and after the background
  // stage (science less the plane, BKG_SUB = T, the plane kept): the same PSF each time.
  const astroflow::Frame raw = field_frame(2.5, 3.0);
  astroflow::Frame with_plane = field_frame(2.5, 3.0);
  const astroflow::ClippedStats sky = astroflow::sigma_clipped_stats(raw.science);
  with_plane.planes["background"] =
      cv::Mat(raw.science.size(), CV_32F, cv::Scalar(static_cast<float>(sky.median)));
  astroflow::Frame subtracted = field_frame(2.5, 3.0);
  subtracted.planes["background"] = with_plane.planes["background"].clone();
  subtracted.science -= subtracted.planes["background"];
  subtracted.header.set("BKG_SUB", true);
  const double a = astroflow::estimate_psf_fwhm(raw).fwhm_pix;
  const double b = astroflow::estimate_psf_fwhm(with_plane).fwhm_pix;
  const double c = astroflow::estimate_psf_fwhm(subtracted).fwhm_pix;
  EXPECT_GT(a, 0.0);
  EXPECT_NEAR(b, a, 0.02 * a);
  EXPECT_NEAR(c, b, 1e-6 * b);
}

TEST(Psf, TooFewPointLikeRowsGiveNoEstimate) {
  astroflow::Frame f = field_frame(2.5, 3.0);
  auto& cls = f.catalog.get<float>("CLASS_STAR");
  for (float& c : cls) c = 0.0f;  // no star
  EXPECT_EQ(astroflow::estimate_psf_fwhm(f).fwhm_pix, 0.0);
  const astroflow::Frame no_column = field_frame(2.5, 3.0, false);  // stars and galaxies alike
  EXPECT_EQ(astroflow::estimate_psf_fwhm(no_column).fwhm_pix, 0.0);
}

TEST(Psf, TheMatchingKernelAddsInQuadrature) {
  // 0.05" to 0.195" on 0.025"/pix: sqrt(0.195² - 0.05²) / 0.025 px of FWHM.
  const double sigma = astroflow::psf_match_sigma_pix(0.05, 0.195, 0.025);
  EXPECT_NEAR(sigma * astroflow::kFwhmPerSigma, std::sqrt(0.195 * 0.195 - 0.05 * 0.05) / 0.025,
              1e-9);
  EXPECT_EQ(astroflow::psf_match_sigma_pix(0.2, 0.195, 0.025), 0.0);  // already broader
  EXPECT_EQ(astroflow::psf_match_sigma_pix(0.0, 0.195, 0.025), 0.0);  // unknown PSF
}

TEST(Psf, MatchingWidensAStarAndPutsTheSkyNoiseBack) {
  // A star of FWHM 2 px on unit white noise, matched to FWHM 5 px: the star's measured FWHM
  // becomes about 5 px, the sky's rms stays 1, blank pixels stay blank.
  cv::Mat img = star_on_noise(96, 2.0, 5000.0, 48.0, 48.0);
  img.at<float>(5, 5) = std::numeric_limits<float>::quiet_NaN();
  const double sigma = std::sqrt(5.0 * 5.0 - 2.0 * 2.0) / astroflow::kFwhmPerSigma;
  cv::Mat matched = img.clone();
  astroflow::psf_match_stamp(matched, sigma, 1);
  EXPECT_TRUE(std::isnan(matched.at<float>(5, 5)));
  EXPECT_TRUE(std::isfinite(matched.at<float>(5, 8)));  // the blank pixel did not spread
  EXPECT_NEAR(astroflow::adaptive_fwhm_pix(matched, 48, 48), 5.0, 0.25);
  const cv::Mat sky = matched(cv::Rect(0, 60, 96, 36));
  const astroflow::ClippedStats st = astroflow::sigma_clipped_stats(sky);
  EXPECT_NEAR(st.stddev, 1.0, 0.1);
  cv::Mat smoothed_only = img.clone();
  astroflow::gaussian_smooth_in_place(smoothed_only, sigma);
  EXPECT_LT(astroflow::sigma_clipped_stats(smoothed_only(cv::Rect(0, 60, 96, 36))).stddev, 0.5);
}

TEST(Psf, SharpPixelsGoAndStarsStay) {
  // A star of FWHM 2.2 px and two-pixel-wide tracks (diagonal, along x) of 40 rms per pixel on
  // unit noise (seed 9217): the track pixels are interpolated across the track, the star is
  // left alone.
  cv::Mat img = star_on_noise(64, 2.2, 800.0, 20.3, 40.6);
  const cv::Mat star = img(cv::Rect(14, 34, 13, 13)).clone();
  for (int k = 0; k < 12; ++k) {
    img.at<float>(10 + k, 40 + k) += 40.0f;
    img.at<float>(10 + k, 41 + k) += 40.0f;
    img.at<float>(52, 30 + k) += 40.0f;  // and one along x, two pixels wide
    img.at<float>(53, 30 + k) += 40.0f;
  }
  cv::Mat cleaned = img.clone();
  const int n = astroflow::clean_sharp_pixels(cleaned, 2.2, 0.0, 1.0);
  EXPECT_GE(n, 40);  // of the 48 track pixels
  EXPECT_LE(n, 48);
  double along_x = 0.0;
  for (int k = 0; k < 12; ++k) along_x += cleaned.at<float>(52, 30 + k);
  EXPECT_LT(along_x / 12.0, 10.0);
  EXPECT_EQ(cv::norm(cleaned(cv::Rect(14, 34, 13, 13)), star, cv::NORM_INF), 0.0);
  double track = 0.0;
  for (int k = 0; k < 12; ++k) track += cleaned.at<float>(10 + k, 40 + k);
  EXPECT_LT(track / 12.0, 10.0);                                        // from about 40
  EXPECT_EQ(astroflow::clean_sharp_pixels(cleaned, 0.0, 0.0, 1.0), 0);  // no PSF, no cleaning
}
