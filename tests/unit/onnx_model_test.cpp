// OnnxModel, the ONNX graph reader and the pre/post-processing helpers.
//
// The model fixture is a tiny seeded classifier written at test time by
//   /usr/bin/python3 models/common/make_tiny_model.py <dir>
// (Debian's python3-torch). Without torch the model tests are skipped; the preprocessing and
// batching tests (fake backend) always run.
#include "astroflow/onnx_model.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <random>
#include <sstream>

#include "astroflow/preprocess.hpp"
#include "tiny_model.hpp"

namespace fs = std::filesystem;
using astroflow::OnnxModel;
using astroflow::OnnxModelError;
using astroflow::OnnxModelOptions;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << "fixture text lacks '" << from << "'";
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

using astroflow::test::RawArray;
using astroflow::test::read_raw;

cv::Mat as_blob(RawArray& a) {
  return cv::Mat(static_cast<int>(a.shape.size()), a.shape.data(), CV_32F, a.values.data());
}

class TinyModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("astroflow-onnx-test-" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    available_ = astroflow::test::make_tiny_model(*dir_ / "tiny", 16, 7, *dir_ / "make.log");
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  void SetUp() override {
    if (!available_) GTEST_SKIP() << "python3-torch unavailable; see " << (*dir_ / "make.log");
  }
  // A fresh copy of the fixture that a test may break.
  static fs::path copy_fixture(const std::string& name) {
    const fs::path dst = *dir_ / name;
    fs::remove_all(dst);
    fs::copy(*dir_ / "tiny", dst, fs::copy_options::recursive);
    return dst;
  }
  static fs::path tiny() { return *dir_ / "tiny"; }

  static fs::path* dir_;
  static bool available_;
};
fs::path* TinyModel::dir_ = nullptr;
bool TinyModel::available_ = false;

TEST_F(TinyModel, GraphInfoReadsDeclaredShapeAndOpset) {
  const auto info = astroflow::read_onnx_graph_info((tiny() / "model.onnx").string());
  EXPECT_EQ(info.input_name, "input");
  ASSERT_EQ(info.input_shape.size(), 4u);
  EXPECT_EQ(info.input_shape[0], -1);  // dynamic batch axis
  EXPECT_EQ(info.input_shape[1], 1);
  EXPECT_EQ(info.input_shape[2], 16);
  EXPECT_EQ(info.input_shape[3], 16);
  EXPECT_EQ(info.opset, 13);
  ASSERT_EQ(info.output_names.size(), 1u);
  ASSERT_EQ(info.output_shapes[0].size(), 2u);
  EXPECT_EQ(info.output_shapes[0][1], 3);
}

TEST_F(TinyModel, MatchesTorchReferenceThroughOnnxOrCardPath) {
  const auto ref = nlohmann::json::parse(read_text(tiny() / "reference.json"));
  RawArray in = read_raw(tiny(), ref.at("input"));
  RawArray expected = read_raw(tiny(), ref.at("output"));
  for (const std::string path : {"model.onnx", "model.yaml"}) {
    OnnxModel model = OnnxModel::load((tiny() / path).string());
    EXPECT_EQ(model.card().class_names, (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_DOUBLE_EQ(model.card().temperature, 1.5);
    const cv::Mat out = model.run_rows(as_blob(in));
    ASSERT_EQ(out.rows, 5);
    ASSERT_EQ(out.cols, 3);
    for (int i = 0; i < 5; ++i) {
      for (int j = 0; j < 3; ++j) {
        EXPECT_NEAR(out.at<float>(i, j), expected.values[static_cast<std::size_t>(i * 3 + j)], 1e-4)
            << path << " row " << i;
      }
    }
  }
}

TEST_F(TinyModel, ChunkedAndPaddedBatchesGiveTheSameRows) {
  const auto ref = nlohmann::json::parse(read_text(tiny() / "reference.json"));
  RawArray in = read_raw(tiny(), ref.at("input"));
  OnnxModel whole = OnnxModel::load((tiny() / "model.onnx").string(), {32, false, true});
  const cv::Mat a = whole.run_rows(as_blob(in));
  for (const bool pad : {false, true}) {
    OnnxModel chunked = OnnxModel::load((tiny() / "model.onnx").string(), {2, pad, true});
    const cv::Mat b = chunked.run_rows(as_blob(in));
    ASSERT_EQ(b.rows, a.rows);
    EXPECT_LE(cv::norm(a, b, cv::NORM_INF), 1e-5) << "pad_last_batch=" << pad;
  }
}

TEST_F(TinyModel, WrongSha256InCardIsFatalAndNamesTheModel) {
  const fs::path d = copy_fixture("badsha");
  const std::string card = read_text(d / "model.yaml");
  const auto pos = card.find("sha256: ") + 8;
  std::string broken = card;
  broken.replace(pos, 64, std::string(64, '0'));
  write_text(d / "model.yaml", broken);
  try {
    (void)OnnxModel::load((d / "model.onnx").string());
    FAIL() << "expected OnnxModelError";
  } catch (const OnnxModelError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find((d / "model.onnx").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("sha256"), std::string::npos) << msg;
  }
}

TEST_F(TinyModel, ModifiedOnnxFileIsFatal) {
  const fs::path d = copy_fixture("tampered");
  std::ofstream(d / "model.onnx", std::ios::binary | std::ios::app) << '\0';
  EXPECT_THROW((void)OnnxModel::load((d / "model.onnx").string()), OnnxModelError);
}

TEST_F(TinyModel, CardShapeDifferentFromGraphIsFatal) {
  const fs::path d = copy_fixture("badshape");
  write_text(d / "model.yaml",
             replace_once(read_text(d / "model.yaml"), "[-1, 1, 16, 16]", "[-1, 1, 32, 32]"));
  try {
    (void)OnnxModel::load((d / "model.yaml").string());
    FAIL() << "expected OnnxModelError";
  } catch (const OnnxModelError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.onnx"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[N, 1, 32, 32]"), std::string::npos) << msg;
  }
}

TEST_F(TinyModel, ClassCountDifferentFromGraphIsFatal) {
  const fs::path d = copy_fixture("badclasses");
  write_text(d / "model.yaml",
             replace_once(read_text(d / "model.yaml"), "[a, b, c]", "[a, b, c, d]"));
  try {
    (void)OnnxModel::load((d / "model.yaml").string());
    FAIL() << "expected OnnxModelError";
  } catch (const OnnxModelError& e) {
    EXPECT_NE(std::string(e.what()).find("4 classes"), std::string::npos) << e.what();
  }
}

TEST_F(TinyModel, OpsetDifferentFromGraphIsFatal) {
  const fs::path d = copy_fixture("badopset");
  write_text(d / "model.yaml", replace_once(read_text(d / "model.yaml"), "opset: 13", "opset: 11"));
  EXPECT_THROW((void)OnnxModel::load((d / "model.yaml").string()), OnnxModelError);
}

TEST_F(TinyModel, MissingOnnxFileIsFatal) {
  const fs::path d = copy_fixture("missing");
  fs::remove(d / "model.onnx");
  try {
    (void)OnnxModel::load((d / "model.yaml").string());
    FAIL() << "expected OnnxModelError";
  } catch (const OnnxModelError& e) {
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
  }
}

TEST(OnnxGraphInfo, NonOnnxFileIsFatalNamingIt) {
  const fs::path p =
      fs::temp_directory_path() / ("astroflow-not-onnx-" + std::to_string(::getpid()));
  write_text(p, "name: this is YAML, not protobuf\n");
  try {
    (void)astroflow::read_onnx_graph_info(p.string());
    ADD_FAILURE() << "expected OnnxModelError";
  } catch (const OnnxModelError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
  }
  fs::remove(p);
}

// --- batching through the backend interface, without any runtime ------------------------------

// Output row i = {sum of sample i, batch size of the call that computed it}.
class RecordingBackend : public astroflow::InferenceBackend {
 public:
  explicit RecordingBackend(std::vector<int>* calls) : calls_(calls) {}
  std::vector<cv::Mat> run(const cv::Mat& blob) override {
    const int n = blob.size[0];
    calls_->push_back(n);
    const std::size_t per = blob.total() / static_cast<std::size_t>(n);
    cv::Mat out(n, 2, CV_32F);
    for (int i = 0; i < n; ++i) {
      const float* p = blob.ptr<float>() + static_cast<std::size_t>(i) * per;
      double s = 0;
      for (std::size_t k = 0; k < per; ++k) s += p[k];
      out.at<float>(i, 0) = static_cast<float>(s);
      out.at<float>(i, 1) = static_cast<float>(n);
    }
    return {out};
  }
  [[nodiscard]] std::string name() const override { return "recording"; }

 private:
  std::vector<int>* calls_;
};

astroflow::ModelCard fake_card() {
  astroflow::ModelCard c;
  c.input_shape = {-1, 1, 2, 2};
  c.class_names = {"x", "y"};
  c.output_semantics = "logits";
  return c;
}

TEST(OnnxModelBatching, SplitsIntoBatchSizeChunksAndKeepsRowOrder) {
  for (const bool pad : {false, true}) {
    std::vector<int> calls;
    OnnxModel m(fake_card(), std::make_unique<RecordingBackend>(&calls), {4, pad, true});
    const int sizes[4] = {10, 1, 2, 2};
    cv::Mat blob(4, sizes, CV_32F);
    for (int i = 0; i < 10; ++i) {
      for (int k = 0; k < 4; ++k) blob.ptr<float>()[i * 4 + k] = static_cast<float>(i);
    }
    const cv::Mat out = m.run_rows(blob);
    ASSERT_EQ(out.rows, 10);
    for (int i = 0; i < 10; ++i) EXPECT_FLOAT_EQ(out.at<float>(i, 0), 4.0f * i) << i;
    EXPECT_EQ(calls, (pad ? std::vector<int>{4, 4, 4} : std::vector<int>{4, 4, 2}));
  }
}

TEST(OnnxModelBatching, RejectsBlobOfWrongShape) {
  std::vector<int> calls;
  OnnxModel m(fake_card(), std::make_unique<RecordingBackend>(&calls), {});
  const int sizes[4] = {3, 1, 3, 3};
  const cv::Mat blob(4, sizes, CV_32F, cv::Scalar(0));
  EXPECT_THROW((void)m.run(blob), std::invalid_argument);
  EXPECT_TRUE(calls.empty());
}

// --- preprocessing ---------------------------------------------------------------------------

TEST(Preprocess, SigmaClipRemovesOutlierExactly) {
  cv::Mat img(10, 10, CV_32F, cv::Scalar(10.0f));
  img.at<float>(3, 4) = 1000.0f;
  img.at<float>(0, 0) = std::numeric_limits<float>::quiet_NaN();
  const auto s = astroflow::sigma_clipped_stats(img, 3.0, 5);
  EXPECT_DOUBLE_EQ(s.median, 10.0);
  EXPECT_DOUBLE_EQ(s.stddev, 0.0);
  EXPECT_EQ(s.n_used, 98u);  // 100 - NaN - outlier
}

TEST(Preprocess, SigmaClipRecoversGaussianNoise) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> noise(50.0f, 4.0f);
  cv::Mat img(128, 128, CV_32F);
  for (int y = 0; y < img.rows; ++y) {
    for (int x = 0; x < img.cols; ++x) img.at<float>(y, x) = noise(rng);
  }
  // A bright source covering 2% of the pixels must not bias the background.
  img(cv::Rect(60, 60, 18, 18)) += 500.0f;
  const auto s = astroflow::sigma_clipped_stats(img);
  EXPECT_NEAR(s.median, 50.0, 0.1);  // 3 sigma/sqrt(n) is 0.1
  EXPECT_NEAR(s.stddev, 4.0, 0.2);   // clipping at 3 sigma trims the std by ~1.4%
}

// The textbook algorithm the sorted/prefix-sum implementation replaces: filter, median by
// nth_element, two-pass variance, repeat.
astroflow::ClippedStats naive_clip(const cv::Mat& img, double nsigma, int iterations,
                                   std::size_t min_kept = 1) {
  std::vector<double> kept;
  for (int y = 0; y < img.rows; ++y) {
    for (int x = 0; x < img.cols; ++x) {
      if (std::isfinite(img.at<float>(y, x))) kept.push_back(img.at<float>(y, x));
    }
  }
  astroflow::ClippedStats s;
  s.n_finite = kept.size();
  for (int it = 0; it <= iterations && !kept.empty(); ++it) {
    std::vector<double> c = kept;
    std::sort(c.begin(), c.end());
    const std::size_t n = c.size();
    s.median = n % 2 == 1 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    double mean = 0.0;
    for (double v : kept) mean += v;
    mean /= static_cast<double>(n);
    s.mean = mean;
    double ss = 0.0;
    for (double v : kept) ss += (v - mean) * (v - mean);
    s.stddev = std::sqrt(ss / static_cast<double>(n));
    s.n_used = n;
    if (it == iterations || s.stddev == 0.0) break;
    std::vector<double> next;
    for (double v : kept) {
      if (std::abs(v - s.median) <= nsigma * s.stddev) next.push_back(v);
    }
    if (next.size() == kept.size() || next.empty() || next.size() < min_kept) break;
    kept = next;
  }
  return s;
}

TEST(Preprocess, SigmaClipAgreesWithTheTextbookAlgorithm) {
  // Odd and even counts, negative values, NaN and infinite pixels, ties (integer counts), a
  // bright source and a single-valued image; sizes that exercise all four radix passes.
  std::mt19937 rng(4321);
  for (int trial = 0; trial < 60; ++trial) {
    const int w = 5 + trial % 17;
    const int h = 3 + trial % 11;
    std::normal_distribution<float> noise(trial % 3 == 0 ? -20.0f : 3.0f, 1.0f + trial % 5);
    cv::Mat img(h, w, CV_32F);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        float v = noise(rng);
        if (trial % 4 == 1) v = std::round(v);  // many ties
        if (trial % 7 == 2) v = 42.0f;          // constant
        img.at<float>(y, x) = v;
      }
    }
    if (trial % 2 == 0) img.at<float>(h / 2, w / 2) = 1e4f;
    if (trial % 5 == 0) img.at<float>(0, 0) = std::numeric_limits<float>::quiet_NaN();
    if (trial % 6 == 0) img.at<float>(h - 1, 0) = std::numeric_limits<float>::infinity();
    for (int iterations : {0, 1, 5, 100}) {
      for (std::size_t min_kept : {std::size_t{1}, std::size_t{3}, std::size_t{40}}) {
        const auto got = astroflow::sigma_clipped_stats(img, 2.5, iterations, min_kept);
        const auto want = naive_clip(img, 2.5, iterations, min_kept);
        EXPECT_DOUBLE_EQ(got.median, want.median) << trial << " " << iterations;
        EXPECT_NEAR(got.mean, want.mean, 1e-9 * (1.0 + std::abs(want.mean))) << trial;
        EXPECT_NEAR(got.stddev, want.stddev, 1e-9 * (1.0 + want.stddev)) << trial;
        EXPECT_EQ(got.n_used, want.n_used) << trial << " " << iterations << " " << min_kept;
        EXPECT_EQ(got.n_finite, want.n_finite) << trial;
      }
    }
  }
}

TEST(Preprocess, AsinhInPlaceMatchesStdAsinh) {
  cv::Mat t(1, 2001, CV_32F);
  for (int i = 0; i < t.cols; ++i) t.at<float>(0, i) = static_cast<float>((i - 1000) * 0.37);
  t.at<float>(0, 0) = -1e4f;
  t.at<float>(0, 1) = 1e-6f;
  cv::Mat want(t.size(), CV_32F);
  for (int i = 0; i < t.cols; ++i) want.at<float>(0, i) = std::asinh(t.at<float>(0, i));
  astroflow::asinh_in_place(t);
  EXPECT_LE(cv::norm(t, want, cv::NORM_INF), 5e-7);
  EXPECT_EQ(t.at<float>(0, 1000), 0.0f);
  EXPECT_LT(t.at<float>(0, 999), 0.0f);
}

TEST(Preprocess, NormaliseWithoutBackgroundIsPlainAsinhAndFillsNaN) {
  cv::Mat img =
      (cv::Mat_<float>(2, 2) << 0.0f, 6.0f, -30.0f, std::numeric_limits<float>::quiet_NaN());
  astroflow::Normalisation n;
  n.background = "none";
  n.scale = 3.0;
  cv::Mat out;
  const auto r = astroflow::normalise_stamp(img, n, out);
  EXPECT_DOUBLE_EQ(r.nan_fraction, 0.25);
  EXPECT_FLOAT_EQ(out.at<float>(0, 0), 0.0f);
  EXPECT_FLOAT_EQ(out.at<float>(0, 1), static_cast<float>(std::log(2.0 + std::sqrt(5.0))));
  EXPECT_FLOAT_EQ(out.at<float>(1, 0), static_cast<float>(-std::asinh(10.0)));
  EXPECT_FLOAT_EQ(out.at<float>(1, 1), 0.0f);
}

TEST(Preprocess, AllNaNStampIsAFrameError) {
  cv::Mat img(8, 8, CV_32F, cv::Scalar(std::numeric_limits<float>::quiet_NaN()));
  cv::Mat out;
  EXPECT_THROW(astroflow::normalise_stamp(img, {}, out), astroflow::FrameError);
}

TEST(Preprocess, SoftmaxWithTemperature) {
  cv::Mat l = (cv::Mat_<float>(2, 3) << 0.0f, static_cast<float>(std::log(2.0)),
               static_cast<float>(std::log(3.0)), 0.0f, static_cast<float>(2 * std::log(2.0)),
               static_cast<float>(2 * std::log(3.0)));
  cv::Mat row0 = l.row(0).clone();
  astroflow::softmax_rows(row0, 1.0);
  cv::Mat row1 = l.row(1).clone();
  astroflow::softmax_rows(row1, 2.0);
  for (const cv::Mat* r : {&row0, &row1}) {
    EXPECT_NEAR(r->at<float>(0, 0), 1.0 / 6, 1e-6);
    EXPECT_NEAR(r->at<float>(0, 1), 2.0 / 6, 1e-6);
    EXPECT_NEAR(r->at<float>(0, 2), 3.0 / 6, 1e-6);
  }
  // A per-class bias multiplies class j's odds by exp(b_j): (1, 2, 3) * (3, 1, 0.5) -> (3, 2, 1.5).
  cv::Mat row2 = l.row(1).clone();
  astroflow::softmax_rows(row2, 2.0, {std::log(3.0), 0.0, std::log(0.5)});
  EXPECT_NEAR(row2.at<float>(0, 0), 3.0 / 6.5, 1e-6);
  EXPECT_NEAR(row2.at<float>(0, 1), 2.0 / 6.5, 1e-6);
  EXPECT_NEAR(row2.at<float>(0, 2), 1.5 / 6.5, 1e-6);
  EXPECT_THROW(astroflow::softmax_rows(row2, 1.0, {0.0, 1.0}), std::invalid_argument);
}

TEST(Preprocess, BlankMaskFindsEveryNonFinitePixel) {
  // 96 columns: every pixel lies in OpenCV's vectorised part of a row, where `m != m` misses
  // NaN (OpenCV 4.6), as well as rows of 5 (scalar only).
  for (const int cols : {96, 5}) {
    cv::Mat m(4, cols, CV_32F, cv::Scalar(1.0f));
    m.at<float>(0, 0) = std::numeric_limits<float>::quiet_NaN();
    m.at<float>(1, 3) = std::numeric_limits<float>::infinity();
    m.at<float>(3, cols - 1) = std::numeric_limits<float>::quiet_NaN();
    const cv::Mat b = astroflow::blank_mask(m);
    EXPECT_EQ(cv::countNonZero(b), 3) << cols;
    EXPECT_EQ(b.at<std::uint8_t>(0, 0), 255);
    EXPECT_EQ(b.at<std::uint8_t>(1, 3), 255);
    EXPECT_EQ(b.at<std::uint8_t>(3, cols - 1), 255);
    EXPECT_EQ(b.at<std::uint8_t>(2, 2), 0);
  }
}

TEST(Preprocess, ExtractStampPadsWithNaNAtEdges) {
  cv::Mat img(6, 8, CV_32F);
  for (int y = 0; y < 6; ++y) {
    for (int x = 0; x < 8; ++x) img.at<float>(y, x) = static_cast<float>(100 * y + x);
  }
  const cv::Mat s = astroflow::extract_stamp(img, 0.2, 1.0, 4);  // centre (0,1) -> pixel (2,2)
  EXPECT_TRUE(std::isnan(s.at<float>(0, 0)));
  EXPECT_TRUE(std::isnan(s.at<float>(3, 1)));
  EXPECT_FLOAT_EQ(s.at<float>(2, 2), 100.0f);
  EXPECT_TRUE(std::isnan(s.at<float>(0, 3)));  // row above the image
  EXPECT_FLOAT_EQ(s.at<float>(1, 2), 0.0f);
  EXPECT_FLOAT_EQ(s.at<float>(3, 3), 201.0f);
  const cv::Mat outside = astroflow::extract_stamp(img, 100.0, 100.0, 4);
  EXPECT_EQ(cv::countNonZero(outside == outside), 0);  // every pixel NaN
}

TEST(Preprocess, FindPeaksReturnsSeparatedMaximaStrongestFirst) {
  cv::Mat h(20, 30, CV_32F, cv::Scalar(0));
  auto blob = [&](int cx, int cy, float amp) {
    for (int y = 0; y < h.rows; ++y) {
      for (int x = 0; x < h.cols; ++x) {
        h.at<float>(y, x) += amp * std::exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / 4.0f);
      }
    }
  };
  blob(5, 6, 0.6f);
  blob(22, 14, 0.9f);
  blob(15, 3, 0.2f);  // below the threshold
  h.at<float>(10, 10) = 0.5f;
  h.at<float>(10, 11) = 0.5f;  // two adjacent maxima within the radius give one peak
  const auto peaks = astroflow::find_peaks(h, 0.3f, 2);
  ASSERT_EQ(peaks.size(), 3u);
  EXPECT_EQ(peaks[0].x_pix, 22);
  EXPECT_EQ(peaks[0].y_pix, 14);
  EXPECT_EQ(peaks[1].x_pix, 5);
  EXPECT_EQ(peaks[1].y_pix, 6);
  EXPECT_EQ(peaks[2].x_pix, 10);
  EXPECT_EQ(peaks[2].y_pix, 10);
}

}  // namespace
