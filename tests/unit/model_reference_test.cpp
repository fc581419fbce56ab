// Every shipped model (models/*/ with a model.yaml and reference.json) against the torch
// reference saved by its recipe:
//  * the C++ normalisation of the reference's raw stamps equals the numpy one the network was
//    trained with (models/common/preprocess.py), and
//  * OpenCV dnn's output equals torch's output on the same input.
// Tolerance: the reference's "tolerance" (1e-4 absolute, scaled by max(1, |value|)). This guards
// against OpenCV fusions that are silently wrong (ONNX-NOTES.md: `x**2 + c`, OpenCV issue 22649).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "astroflow/onnx_model.hpp"
#include "astroflow/preprocess.hpp"
#include "tiny_model.hpp"

namespace fs = std::filesystem;

namespace {

using astroflow::test::RawArray;
using astroflow::test::read_raw;

std::vector<fs::path> model_dirs() {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(fs::path(ASTROFLOW_SOURCE_DIR) / "models")) {
    if (e.is_directory() && fs::exists(e.path() / "model.yaml") &&
        fs::exists(e.path() / "reference.json")) {
      dirs.push_back(e.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

TEST(ModelReference, ClassifyModelIsShipped) {
  const auto dirs = model_dirs();
  EXPECT_TRUE(std::find(dirs.begin(), dirs.end(),
                        fs::path(ASTROFLOW_SOURCE_DIR) / "models" / "classify") != dirs.end())
      << "models/classify/{model.yaml,reference.json} missing; run models/classify/train.sh";
}

TEST(ModelReference, OpenCvMatchesTorchForEveryShippedModel) {
  for (const fs::path& dir : model_dirs()) {
    SCOPED_TRACE(dir.string());
    std::ifstream in(dir / "reference.json");
    std::stringstream ss;
    ss << in.rdbuf();
    const auto ref = nlohmann::json::parse(ss.str());
    const double tol = ref.value("tolerance", 1e-4);

    astroflow::OnnxModel model = astroflow::OnnxModel::load((dir / "model.yaml").string());
    RawArray input = read_raw(dir, ref.at("input"));
    RawArray expected = read_raw(dir, ref.at("output"));
    ASSERT_EQ(input.shape.size(), 4u);

    const cv::Mat blob(4, input.shape.data(), CV_32F, input.values.data());
    const std::vector<cv::Mat> outs = model.run(blob);
    ASSERT_FALSE(outs.empty());
    ASSERT_EQ(outs[0].total(), expected.values.size());
    const float* got = outs[0].ptr<float>();
    double worst = 0.0;
    for (std::size_t i = 0; i < expected.values.size(); ++i) {
      const double e = expected.values[i];
      worst = std::max(worst, std::abs(got[i] - e) / std::max(1.0, std::abs(e)));
    }
    EXPECT_LE(worst, tol) << "OpenCV dnn differs from torch by " << worst;

    if (ref.contains("raw")) {
      RawArray raw = read_raw(dir, ref.at("raw"));
      ASSERT_EQ(raw.shape.size(), 3u);
      const int n = raw.shape[0];
      const int h = raw.shape[1];
      const int w = raw.shape[2];
      ASSERT_EQ(static_cast<std::size_t>(n) * h * w, input.values.size())
          << "single-band models only";
      double worst_norm = 0.0;
      for (int k = 0; k < n; ++k) {
        const cv::Mat stamp(h, w, CV_32F, raw.values.data() + static_cast<std::size_t>(k) * h * w);
        cv::Mat norm;
        (void)astroflow::normalise_stamp(stamp, model.card().normalisation, norm);
        const float* want = input.values.data() + static_cast<std::size_t>(k) * h * w;
        for (int p = 0; p < h * w; ++p) {
          const double d =
              std::abs(norm.ptr<float>()[p] - want[p]) / std::max(1.0f, std::abs(want[p]));
          worst_norm = std::max(worst_norm, d);
        }
      }
      EXPECT_LE(worst_norm, tol) << "C++ normalisation differs from the training recipe's";
    }
  }
}

}  // namespace
