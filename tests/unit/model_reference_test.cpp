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
#include <opencv2/core.hpp>
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

// A card with input.size_multiple promises a fully convolutional network: on a window larger than
// input.shape, OpenCV must give the outputs of the card-size window wherever the receptive field
// lies inside both. Checked on the reference input placed inside a larger window of noise.
TEST(ModelReference, SizeMultipleModelsAreFullyConvolutionalInOpenCv) {
  int checked = 0;
  for (const fs::path& dir : model_dirs()) {
    astroflow::OnnxModel model = astroflow::OnnxModel::load((dir / "model.yaml").string());
    const int m = model.card().size_multiple;
    if (m == 0) continue;
    SCOPED_TRACE(dir.string());
    const int h = static_cast<int>(model.card().height_pix());
    const int w = static_cast<int>(model.card().width_pix());
    // The big window: 2h x 2w + one multiple, noise, with the card-size window at (h/2, w/2).
    const int bh = 2 * h + m;
    const int bw = 2 * w + m;
    const int y0 = h / 2 / m * m;
    const int x0 = w / 2 / m * m;
    cv::Mat big_plane(bh, bw, CV_32F);
    cv::RNG rng(7);  // seeded
    rng.fill(big_plane, cv::RNG::NORMAL, 0.0, 1.0);
    cv::Mat small_plane = big_plane(cv::Rect(x0, y0, w, h)).clone();
    for (int k = 0; k < 12; ++k)  // a few bright sources
      small_plane.at<float>(20 + (k * 37) % (h - 40), 20 + (k * 53) % (w - 40)) += 30.0f + k;
    small_plane.copyTo(big_plane(cv::Rect(x0, y0, w, h)));
    const int big_dims[4] = {1, 1, bh, bw};
    const int small_dims[4] = {1, 1, h, w};
    const cv::Mat big(4, big_dims, CV_32F, big_plane.ptr<float>());
    const cv::Mat small(4, small_dims, CV_32F, small_plane.ptr<float>());
    const cv::Mat ob = model.run(big).at(0);
    const cv::Mat os = model.run(small).at(0);
    ASSERT_EQ(ob.dims, 4);
    const int oh = os.size[2];
    const int ow = os.size[3];
    const int sy = h / oh;  // output stride
    const int sx = w / ow;
    ASSERT_EQ(ob.size[2], bh / sy);
    ASSERT_EQ(ob.size[3], bw / sx);
    // Away from the small window's edges (its zero padding): the detect network's receptive
    // field reaches about 80 px (40 output cells) from a pixel; 48 cells leave the central
    // 32 x 32 cells of a 256 px window.
    const int margin = 3 * oh / 8;
    double worst = 0.0;
    for (int c = 0; c < os.size[1]; ++c)
      for (int y = margin; y < oh - margin; ++y)
        for (int x = margin; x < ow - margin; ++x) {
          const float a = os.ptr<float>(0, c)[y * ow + x];
          const float b = ob.ptr<float>(0, c)[(y + y0 / sy) * ob.size[3] + x + x0 / sx];
          worst = std::max(worst, static_cast<double>(std::abs(a - b)));
        }
    EXPECT_LE(worst, 1e-5);
    ++checked;
  }
  EXPECT_GE(checked, 1) << "no shipped card has input.size_multiple (models/detect has)";
}

}  // namespace
