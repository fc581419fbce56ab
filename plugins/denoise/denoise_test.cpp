// Tests of the denoise plugin: the tile blending on its own (identity and per-tile offsets),
// then the built module with the shipped model, loaded through the host's PluginRegistry as in
// a run, on seeded synthetic data.
#include <gtest/gtest.h>

#include <algorithm>
#include <astroflow/evaluate_denoise.hpp>
#include <astroflow/fits_io.hpp>
#include <astroflow/onnx_model.hpp>
#include <astroflow/plugin_registry.hpp>
#include <astroflow/simulate.hpp>
#include <astroflow/tile_blend.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <string>

#include "plugin_stage.hpp"

using astroflow::Frame;
using astroflow::OptionValue;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::string model_path() {
  return std::string(ASTROFLOW_SOURCE_DIR) + "/models/denoise/model.onnx";
}

std::unique_ptr<astroflow::StageInstance> make_stage(
    astroflow::PluginRegistry& registry, const std::string& name,
    const std::map<std::string, OptionValue>& overrides = {}) {
  return astroflow::test::open_builtin_stage(registry, name, overrides);
}

cv::Mat gaussian_noise(int h, int w, double mean, double sigma, unsigned seed) {
  cv::Mat m(h, w, CV_32F);
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(static_cast<float>(mean), static_cast<float>(sigma));
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) m.at<float>(y, x) = n(rng);
  }
  return m;
}

/// A truth table with the columns evaluate_denoise needs and no rows.
astroflow::Catalog empty_truth() {
  astroflow::Catalog c;
  c.add_column<double>("X_IMAGE");
  c.add_column<double>("Y_IMAGE");
  c.add_column<std::string>("TYPE");
  c.add_column<double>("R_EFF");
  c.add_column<double>("SNR");
  return c;
}

TEST(DenoiseBlend, IdentityNetworkReturnsItsInputForAnySize) {
  for (const cv::Size size : {cv::Size(517, 300), cv::Size(64, 64), cv::Size(40, 23)}) {
    SCOPED_TRACE(std::to_string(size.width) + "x" + std::to_string(size.height));
    const cv::Mat in = gaussian_noise(size.height, size.width, 3.0, 1.0, 7);
    int calls = 0;
    const cv::Mat out = astroflow::blend_tiles(in, 64, 16, 5, [&](const std::vector<cv::Mat>& t) {
      ++calls;
      EXPECT_LE(t.size(), 5u);
      return t;
    });
    ASSERT_EQ(out.size(), in.size());
    EXPECT_LE(cv::norm(out, in, cv::NORM_INF), 1e-5);  // weights normalised to sum one
    EXPECT_GE(calls, 1);
  }
}

TEST(DenoiseBlend, TilesCoverTheImageWithTheRequestedOverlap) {
  const auto s = astroflow::tile_starts(1000, 256, 32);
  ASSERT_GE(s.size(), 2u);
  EXPECT_EQ(s.front(), 0);
  EXPECT_EQ(s.back(), 1000 - 256);
  for (std::size_t i = 1; i < s.size(); ++i) EXPECT_GE(s[i - 1] + 256 - s[i], 32);
}

TEST(DenoiseBlend, PerTileOffsetsBlendWithoutAStep) {
  // A network that adds 1 on odd tiles and 0 on even ones: a hard cut would leave steps of 1;
  // the raised-cosine window spreads each over the overlap (slope <= pi / (2 * 32) per pixel).
  const cv::Mat in(300, 400, CV_32F, cv::Scalar(0));
  int index = 0;
  const cv::Mat out = astroflow::blend_tiles(in, 128, 32, 1, [&](const std::vector<cv::Mat>& t) {
    std::vector<cv::Mat> o{t[0] + static_cast<float>(index++ % 2)};
    return o;
  });
  double worst = 0.0;
  for (int y = 1; y < out.rows; ++y) {
    for (int x = 1; x < out.cols; ++x) {
      const double dx = std::abs(out.at<float>(y, x) - out.at<float>(y, x - 1));
      const double dy = std::abs(out.at<float>(y, x) - out.at<float>(y - 1, x));
      worst = std::max({worst, dx, dy});
    }
  }
  EXPECT_GT(worst, 0.01);  // the offsets did reach the output
  EXPECT_LE(worst, M_PI / (2 * 32) + 1e-3);
}

TEST(DenoiseEvaluate, WholeLineStepFindsASeamAnywhere) {
  // denoised = truth + noise of 0.3 sigma, plus a step of 0.2 sigma from column 301 on (off any
  // 256/32 tile edge): the whole-line statistic finds it, the noise floor stays far below.
  const cv::Mat truth(400, 600, CV_32F, cv::Scalar(0));
  const cv::Mat noisy = gaussian_noise(400, 600, 0.0, 1.0, 5);
  cv::Mat smooth = gaussian_noise(400, 600, 0.0, 0.3, 6);
  astroflow::DenoiseEvalOptions eo;
  eo.tile_pix = 0;
  const auto flat = astroflow::evaluate_denoise(noisy, smooth, truth, empty_truth(), eo);
  smooth(cv::Rect(301, 0, 299, 400)) += 0.2f;
  const auto step = astroflow::evaluate_denoise(noisy, smooth, truth, empty_truth(), eo);
  EXPECT_LT(flat.max_line_step_sigma, 0.1);
  EXPECT_LT(flat.median_line_step_sigma, 0.03);
  EXPECT_NEAR(step.max_line_step_sigma, 0.2, 0.05);
}

TEST(DenoisePlugin, ConstantPlusNoiseHasNoSeamAndKeepsUnits) {
  astroflow::PluginRegistry registry;
  auto stage = make_stage(registry, "denoise", {{"model", model_path()}});
  const double level = 100.0;
  const double sigma = 2.0;
  astroflow::Batch batch;
  Frame f;
  f.path = "const.fits";
  f.science = gaussian_noise(600, 700, level, sigma, 11);
  f.planes["background"] = cv::Mat(600, 700, CV_32F, cv::Scalar(level));
  f.planes["rms"] = cv::Mat(600, 700, CV_32F, cv::Scalar(sigma));
  batch.frames.push_back(std::move(f));
  stage->process(batch);
  const Frame& out = batch.frames[0];
  ASSERT_FALSE(out.failed()) << (out.issues.empty() ? "" : out.issues[0].reason);
  ASSERT_EQ(out.planes.count("denoised"), 1u);
  const cv::Mat& d = out.planes.at("denoised");
  EXPECT_EQ(d.size(), out.science.size());
  EXPECT_EQ(d.type(), CV_32F);
  // Units: the input's (background added back), not normalised ones.
  EXPECT_NEAR(cv::mean(d)[0], level, 0.1 * sigma);

  const cv::Mat truth(600, 700, CV_32F, cv::Scalar(level));
  astroflow::DenoiseEvalOptions eo;
  eo.tile_pix = 256;
  eo.overlap_pix = 32;
  const cv::Mat zero(600, 700, CV_32F, cv::Scalar(0));
  const auto e =
      astroflow::evaluate_denoise(out.science - truth, d - truth, zero, empty_truth(), eo);
  EXPECT_LT(e.max_seam_jump_sigma, 0.1);
  EXPECT_GT(e.noise_reduction, 2.0);
}

TEST(DenoisePlugin, BlankPixelsStayBlankAndSubtractedFramesStayAtZero) {
  astroflow::PluginRegistry registry;
  auto stage =
      make_stage(registry, "denoise", {{"model", model_path()}, {"replace_science", true}});
  astroflow::Batch batch;
  Frame f;
  f.path = "nan.fits";
  f.science = gaussian_noise(300, 280, 0.0, 1.0, 3);
  f.science(cv::Rect(40, 50, 60, 30)).setTo(kNaN);
  std::mt19937 rng(5);
  for (int i = 0; i < 500; ++i) f.science.at<float>(rng() % 300, rng() % 280) = kNaN;
  f.header.set("BKG_SUB", true, "background already subtracted");
  f.planes["background"] = cv::Mat(300, 280, CV_32F, cv::Scalar(50.0));
  f.planes["rms"] = cv::Mat(300, 280, CV_32F, cv::Scalar(1.0));
  const cv::Mat input = f.science.clone();
  batch.frames.push_back(std::move(f));
  stage->process(batch);
  const Frame& out = batch.frames[0];
  ASSERT_FALSE(out.failed());
  const cv::Mat& d = out.planes.at("denoised");
  int mismatches = 0;
  for (int y = 0; y < d.rows; ++y) {
    for (int x = 0; x < d.cols; ++x) {
      if (std::isnan(input.at<float>(y, x)) != std::isnan(d.at<float>(y, x))) ++mismatches;
    }
  }
  EXPECT_EQ(mismatches, 0);
  // BKG_SUB = T: the background plane is not added back.
  cv::Mat finite_mask = d == d;
  EXPECT_NEAR(cv::mean(d, finite_mask)[0], 0.0, 0.1);
  // replace_science: later stages see the denoised pixels.
  EXPECT_EQ(cv::norm(out.science, d, cv::NORM_INF, finite_mask), 0.0);
}

TEST(DenoisePlugin, FluxRestoreKeepsTheInputsApertureFluxAndTheRawPlane) {
  // A faint Gaussian source (total flux 150, sigma 4 px: peak 1.5 sigma) in unit noise. Adding
  // back the residual's low-pass makes the output's aperture flux follow the input's, where the
  // plain output's differs from it by whatever the network took away.
  auto run = [](double restore) {
    astroflow::PluginRegistry registry;
    auto stage = make_stage(
        registry, "denoise",
        {{"model", model_path()}, {"flux_restore_sigma", restore}, {"replace_science", true}});
    astroflow::Batch batch;
    Frame f;
    f.path = "blob.fits";
    f.science = gaussian_noise(256, 256, 0.0, 1.0, 21);
    for (int y = 0; y < 256; ++y) {
      for (int x = 0; x < 256; ++x) {
        const double r2 = (x - 128.0) * (x - 128.0) + (y - 128.0) * (y - 128.0);
        f.science.at<float>(y, x) +=
            static_cast<float>(150.0 / (2 * M_PI * 16) * std::exp(-r2 / 32));
      }
    }
    f.science.at<float>(60, 60) += 300.0f;  // a cosmic-ray hit: removed, and not put back
    f.planes["background"] = cv::Mat(256, 256, CV_32F, cv::Scalar(0.0));
    f.planes["rms"] = cv::Mat(256, 256, CV_32F, cv::Scalar(1.0));
    batch.frames.push_back(std::move(f));
    stage->process(batch);
    return std::move(batch.frames[0]);
  };
  const Frame plain = run(0.0);
  const Frame restored = run(2.0);
  ASSERT_FALSE(plain.failed());
  ASSERT_FALSE(restored.failed());
  const cv::Mat& input = restored.planes.at("science_raw");  // replace_science keeps the raw
  EXPECT_EQ(cv::norm(input, plain.planes.at("science_raw"), cv::NORM_INF), 0.0);
  cv::Mat aperture(256, 256, CV_8U, cv::Scalar(0));
  cv::circle(aperture, cv::Point(128, 128), 12, cv::Scalar(1), -1);
  auto flux = [&](const cv::Mat& m) {
    return cv::mean(m, aperture)[0] * cv::countNonZero(aperture);
  };
  const double in_flux = flux(input);
  const double plain_off = flux(plain.planes.at("denoised")) - in_flux;
  const double restored_off = flux(restored.planes.at("denoised")) - in_flux;
  EXPECT_GT(std::abs(plain_off), 10.0);  // the network moved flux (measured 37 of 150)
  // measured -4.9
  EXPECT_LT(std::abs(restored_off), 0.3 * std::abs(plain_off)) << plain_off << " " << restored_off;
  // The hit's residual (about 300) is left out of the low-pass: without flux_restore_clip it
  // would come back as a blob of about 300 / (2 pi) = 48 sigma.
  const cv::Rect hit(57, 57, 7, 7);
  EXPECT_LT(
      cv::norm(restored.planes.at("denoised")(hit), plain.planes.at("denoised")(hit), cv::NORM_INF),
      1.0);
  // Still a denoiser: the background noise stays well below the input's.
  cv::Mat corner_in = input(cv::Rect(0, 0, 64, 64));
  cv::Mat corner_out = restored.planes.at("denoised")(cv::Rect(0, 0, 64, 64));
  cv::Scalar m_in, s_in, m_out, s_out;
  cv::meanStdDev(corner_in, m_in, s_in);
  cv::meanStdDev(corner_out, m_out, s_out);
  EXPECT_LT(s_out[0], 0.5 * s_in[0]);
}

TEST(DenoisePlugin, ShippedModelReducesNoiseOnAHeldOutField) {
  // Seed 7301: not among the train (5001-5006), validation (6001-6002) or test (7001-7002)
  // fields of models/denoise/fields.txt.
  astroflow::FieldOptions fo;
  fo.seed = 7301;
  fo.width_pix = 512;
  fo.height_pix = 512;
  const astroflow::FieldSimulation sim = astroflow::simulate_field(fo);

  astroflow::PluginRegistry registry;
  auto bkg = make_stage(registry, "background", {});
  auto den = make_stage(registry, "denoise", {{"model", model_path()}});
  astroflow::Batch batch;
  Frame f;
  f.path = "field.fits";
  f.science = sim.image.clone();
  batch.frames.push_back(std::move(f));
  bkg->process(batch);
  den->process(batch);
  const Frame& out = batch.frames[0];
  ASSERT_FALSE(out.failed()) << (out.issues.empty() ? "" : out.issues[0].reason);
  astroflow::DenoiseEvalOptions eo;
  eo.psf_fwhm_pix = sim.psf.fwhm_pix;
  const auto e =
      astroflow::evaluate_denoise(sim.image, out.planes.at("denoised"), sim.model, sim.truth, eo);
  std::cout << astroflow::format_denoise_report(e);
  // Measured with the shipped model: 4.57x, +12.0 dB, seam 0.039 sigma; asserted with margin.
  EXPECT_GE(e.noise_reduction, 3.0);
  EXPECT_GE(e.psnr_gain_db, 8.0);
  EXPECT_GT(e.ssim_denoised, e.ssim_noisy);
  EXPECT_LT(e.max_seam_jump_sigma, 0.1);
}

// Not a regression test: with DENOISE_EVAL_DIR set to the data folder of models/denoise/train.sh
// it evaluates the held-out test fields (test/<name>.fits) and times the stage against bare
// inference on the same tiles; the numbers go to models/denoise/README.md.
TEST(DenoiseEval, HeldOutTestFields) {
  const char* dir = std::getenv("DENOISE_EVAL_DIR");
  if (dir == nullptr) GTEST_SKIP() << "DENOISE_EVAL_DIR not set";
  for (const std::string name : {"te1", "te2"}) {
    const std::string base = std::string(dir) + "/test/" + name;
    astroflow::FitsReadOptions ro;
    ro.hdu = "0";
    auto frames = astroflow::read_fits_frames(base + ".fits", ro);
    ASSERT_EQ(frames.size(), 1u);
    const cv::Mat noisy = frames[0].science.clone();
    astroflow::PluginRegistry registry;
    auto bkg = make_stage(registry, "background", {});
    auto den = make_stage(registry, "denoise", {{"model", model_path()}});
    astroflow::Batch batch;
    batch.frames.push_back(std::move(frames[0]));
    bkg->process(batch);
    const auto t0 = std::chrono::steady_clock::now();
    den->process(batch);
    const double stage_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const cv::Mat d = batch.frames[0].planes.at("denoised");
    astroflow::write_fits_image(base + ".denoised.fits", d, batch.frames[0].header);
    astroflow::DenoiseEvalOptions eo;
    const auto e = astroflow::evaluate_denoise_files(
        base + ".fits", base + ".denoised.fits", base + ".model.fits", base + ".truth.fits", eo);
    // Bare inference on the same number of 256x256 tiles (no normalisation, no blending).
    const std::size_t n_tiles = astroflow::tile_grid(noisy.cols, noisy.rows, 256, 32).size();
    astroflow::OnnxModel m = astroflow::OnnxModel::load(model_path(), {8, false, true});
    const int dims[4] = {static_cast<int>(n_tiles), 1, 256, 256};
    cv::Mat blob(4, dims, CV_32F, cv::Scalar(0));
    const auto t1 = std::chrono::steady_clock::now();
    (void)m.run(blob);
    const double bare_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    const double mpix = noisy.total() / 1e6;
    std::cout << "== " << name << " (" << noisy.cols << "x" << noisy.rows << ")\n"
              << astroflow::format_denoise_report(e) << "stage " << mpix / stage_s
              << " Mpix/s, bare inference on " << n_tiles << " tiles " << mpix / bare_s
              << " Mpix/s (threads: " << cv::getNumThreads() << ")\n";
  }
}

}  // namespace
