// Tests of the background plugin, loaded through the host's PluginRegistry as in a run.
//
// Images are made here: a known smooth background plus seeded Gaussian noise (cv::RNG, whose
// algorithm is fixed by OpenCV) plus a few bright Gaussian sources.
#include <gtest/gtest.h>

#include <astroflow/plugin_registry.hpp>
#include <cmath>
#include <map>
#include <memory>
#include <opencv2/core.hpp>
#include <string>

#include "plugin_stage.hpp"

namespace {

using astroflow::Batch;
using astroflow::Frame;
using astroflow::OptionValue;

std::unique_ptr<astroflow::StageInstance> make_stage(
    astroflow::PluginRegistry& registry, const std::string& name,
    const std::map<std::string, OptionValue>& overrides = {}) {
  return astroflow::test::open_builtin_stage(registry, name, overrides);
}

double true_background(int x, int y) {
  // A tilted plane plus a gentle curvature, in counts.
  const double u = x / 512.0;
  const double v = y / 512.0;
  return 1000.0 + 40.0 * u - 25.0 * v + 15.0 * u * v;
}

constexpr double kNoiseSigma = 10.0;

Frame make_frame(int w, int h, std::uint64_t seed, bool with_sources) {
  Frame f;
  f.path = "sim.fits";
  f.science.create(h, w, CV_32F);
  cv::RNG rng(seed);
  rng.fill(f.science, cv::RNG::NORMAL, 0.0, kNoiseSigma);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x)
      f.science.at<float>(y, x) += static_cast<float>(true_background(x, y));
  }
  if (with_sources) {
    // A dozen compact sources covering ~1.5% of the pixels, as in a sparse field.
    for (int i = 0; i < 12; ++i) {
      const double xc = rng.uniform(20.0, w - 20.0);
      const double yc = rng.uniform(20.0, h - 20.0);
      const double flux = rng.uniform(2e3, 2e4);
      const double s = 2.0;
      for (int y = static_cast<int>(yc) - 12; y <= static_cast<int>(yc) + 12; ++y) {
        for (int x = static_cast<int>(xc) - 12; x <= static_cast<int>(xc) + 12; ++x) {
          const double r2 = (x - xc) * (x - xc) + (y - yc) * (y - yc);
          f.science.at<float>(y, x) +=
              static_cast<float>(flux / (2 * CV_PI * s * s) * std::exp(-0.5 * r2 / (s * s)));
        }
      }
    }
  }
  return f;
}

struct Errors {
  double mean = 0;  // signed: the bias
  double mean_abs = 0;
  double max_abs = 0;
};

Errors background_errors(const cv::Mat& bkg) {
  Errors e;
  for (int y = 0; y < bkg.rows; ++y) {
    for (int x = 0; x < bkg.cols; ++x) {
      const double s = bkg.at<float>(y, x) - true_background(x, y);
      const double d = std::fabs(s);
      e.mean += s;
      e.mean_abs += d;
      e.max_abs = std::max(e.max_abs, d);
    }
  }
  e.mean /= static_cast<double>(bkg.total());
  e.mean_abs /= static_cast<double>(bkg.total());
  return e;
}

TEST(Background, RecoversGradientAndRms) {
  astroflow::PluginRegistry registry;
  auto stage = make_stage(registry, "background");
  Batch batch;
  batch.frames.push_back(make_frame(512, 448, 7, true));
  const cv::Mat before = batch.frames[0].science.clone();
  stage->process(batch);
  const Frame& f = batch.frames[0];
  ASSERT_FALSE(f.failed()) << (f.issues.empty() ? "" : f.issues[0].reason);
  ASSERT_EQ(f.planes.count("background"), 1U);
  ASSERT_EQ(f.planes.count("rms"), 1U);
  const cv::Mat& bkg = f.planes.at("background");
  const cv::Mat& rms = f.planes.at("rms");
  EXPECT_EQ(bkg.type(), CV_32FC1);
  EXPECT_EQ(rms.type(), CV_32FC1);
  ASSERT_EQ(bkg.size(), before.size());

  // Tolerances: for Gaussian noise the mode estimate 2.5 med - 1.5 mean has a standard error
  // of sqrt(6.25 pi/2 + 2.25 - 7.5) sigma / sqrt(N) = 2.14 sigma / 64 = 0.033 sigma per 64x64
  // mesh, so that is the scale of the local error; the bias over the image must be smaller.
  // The corners, extrapolated from the outer nodes, are the worst places.
  const Errors e = background_errors(bkg);
  EXPECT_LT(std::fabs(e.mean), 0.01 * kNoiseSigma) << "bias";
  EXPECT_LT(e.mean_abs, 0.05 * kNoiseSigma);
  EXPECT_LT(e.max_abs, 0.30 * kNoiseSigma);

  // Clipping at 3 sigma to convergence removes ~1.5% of a Gaussian's variance, within 3%.
  const double mean_rms = cv::mean(rms)[0];
  EXPECT_NEAR(mean_rms, kNoiseSigma, 0.03 * kNoiseSigma);
  double min_rms = 0;
  double max_rms = 0;
  cv::minMaxLoc(rms, &min_rms, &max_rms);
  EXPECT_GT(min_rms, 0.95 * kNoiseSigma);
  EXPECT_LT(max_rms, 1.03 * kNoiseSigma);

  // subtract (default true): science = input - background, and the header says so.
  cv::Mat expected = before - bkg;
  EXPECT_LT(cv::norm(f.science, expected, cv::NORM_INF), 1e-3);
  EXPECT_EQ(f.header.get_string("BKG_SUB").value_or(""), "T");
}

TEST(Background, NaNPixelsAreIgnoredAndBlankMeshesFilled) {
  astroflow::PluginRegistry registry;
  auto stage = make_stage(registry, "background", {{"subtract", OptionValue(false)}});
  Batch batch;
  batch.frames.push_back(make_frame(512, 512, 11, false));
  Frame& in = batch.frames[0];
  // A blank block covering meshes (2..3, 2..3) entirely, and scattered blank pixels.
  in.science(cv::Rect(128, 128, 128, 128)).setTo(std::numeric_limits<float>::quiet_NaN());
  cv::RNG rng(3);
  for (int i = 0; i < 2000; ++i) {
    in.science.at<float>(rng.uniform(0, 512), rng.uniform(0, 512)) =
        std::numeric_limits<float>::quiet_NaN();
  }
  const cv::Mat before = in.science.clone();
  stage->process(batch);
  const Frame& f = batch.frames[0];
  ASSERT_FALSE(f.failed());
  const cv::Mat& bkg = f.planes.at("background");
  EXPECT_TRUE(cv::checkRange(bkg)) << "background must be finite everywhere";
  EXPECT_TRUE(cv::checkRange(f.planes.at("rms")));
  const Errors e = background_errors(bkg);
  EXPECT_LT(std::fabs(e.mean), 0.01 * kNoiseSigma) << "bias";
  EXPECT_LT(e.mean_abs, 0.05 * kNoiseSigma);
  // Inside the blank block the value is interpolated from neighbouring meshes: the gradient is
  // nearly linear there, so it stays close.
  EXPECT_LT(e.max_abs, 0.30 * kNoiseSigma);
  // subtract: false leaves the science plane untouched (NaN compares unequal, so compare masks).
  cv::Mat diff;
  cv::absdiff(f.science, before, diff);
  cv::patchNaNs(diff, 0.0);
  EXPECT_EQ(cv::countNonZero(diff), 0);
  EXPECT_FALSE(f.header.contains("BKG_SUB"));
}

TEST(Background, MeshSizeOptionIsHonoured) {
  // With a background that varies on a 100 px scale, 32 px meshes follow it and 256 px meshes
  // cannot: the error must shrink with the mesh size.
  auto run = [](int mesh) {
    astroflow::PluginRegistry registry;
    auto stage = make_stage(registry, "background",
                            {{"back_size", OptionValue(std::int64_t{mesh})},
                             {"back_filtersize", OptionValue(std::int64_t{1})}});
    Batch batch;
    Frame f;
    f.science.create(512, 512, CV_32F);
    cv::RNG rng(5);
    rng.fill(f.science, cv::RNG::NORMAL, 0.0, 1.0);
    for (int y = 0; y < 512; ++y) {
      for (int x = 0; x < 512; ++x) {
        f.science.at<float>(y, x) += static_cast<float>(5.0 * std::sin(2 * CV_PI * x / 200.0));
      }
    }
    batch.frames.push_back(std::move(f));
    stage->process(batch);
    const cv::Mat& bkg = batch.frames[0].planes.at("background");
    double err = 0;
    for (int y = 0; y < 512; ++y) {
      for (int x = 0; x < 512; ++x) {
        err += std::fabs(bkg.at<float>(y, x) - 5.0 * std::sin(2 * CV_PI * x / 200.0));
      }
    }
    return err / (512.0 * 512.0);
  };
  const double fine = run(32);
  const double coarse = run(256);
  // 32 px meshes: mode noise 2.14 / 32 = 0.067 sigma per mesh; 256 px meshes (2 x 2 nodes)
  // cannot follow a 200 px period and are off by about the amplitude's mean, 2 / pi * 5.
  EXPECT_LT(fine, 0.15) << "coarse " << coarse;
  EXPECT_GT(coarse, 1.5);
}

TEST(Background, AllBlankFrameIsFlaggedNotFatal) {
  astroflow::PluginRegistry registry;
  auto stage = make_stage(registry, "background");
  Batch batch;
  Frame blank;
  blank.science = cv::Mat(64, 64, CV_32F, cv::Scalar(std::numeric_limits<float>::quiet_NaN()));
  batch.frames.push_back(std::move(blank));
  batch.frames.push_back(make_frame(128, 128, 1, false));
  stage->process(batch);
  EXPECT_TRUE(batch.frames[0].failed());
  EXPECT_FALSE(batch.frames[1].failed());
  EXPECT_EQ(batch.frames[1].planes.count("background"), 1U);
}

TEST(Background, BadOptionsAreFatal) {
  astroflow::PluginRegistry registry;
  EXPECT_THROW(
      make_stage(registry, "background", {{"back_filtersize", OptionValue(std::int64_t{4})}}),
      astroflow::FatalError);
}

}  // namespace
