#include "astroflow/quicklook.hpp"

#include <algorithm>
#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "astroflow/atomic_file.hpp"

namespace astroflow {

namespace {

double quantile(std::vector<float>& v, double q) {
  if (v.empty()) return 0.0;
  const auto k = static_cast<std::ptrdiff_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[static_cast<std::size_t>(k)];
}

}  // namespace

cv::Mat render_quicklook(const cv::Mat& science, const Catalog& catalog, const cv::Mat& segmap,
                         const QuicklookOptions& options) {
  if (science.empty() || science.type() != CV_32FC1)
    throw std::invalid_argument("quicklook: science plane is empty or not CV_32FC1");

  // Robust statistics on a regular sample of finite pixels.
  const std::size_t total = science.total();
  const std::size_t step = std::max<std::size_t>(1, total / 65536);
  std::vector<float> sample;
  sample.reserve(total / step + 1);
  for (std::size_t i = 0; i < total; i += step) {
    const float v =
        science.at<float>(static_cast<int>(i / science.cols), static_cast<int>(i % science.cols));
    if (std::isfinite(v)) sample.push_back(v);
  }
  const double median = quantile(sample, 0.5);
  std::vector<float> dev(sample.size());
  for (std::size_t i = 0; i < sample.size(); ++i)
    dev[i] = static_cast<float>(std::abs(sample[i] - median));
  double sigma = 1.4826 * quantile(dev, 0.5);
  const double top = quantile(sample, 0.995);
  if (!(sigma > 0)) sigma = std::max(1e-12, std::abs(top - median));
  const double soft = options.softening_sigma * sigma;
  const double white = std::asinh(std::max(top - median, soft) / soft);

  cv::Mat gray(science.size(), CV_8UC1);
  for (int y = 0; y < science.rows; ++y) {
    const float* in = science.ptr<float>(y);
    auto* out = gray.ptr<unsigned char>(y);
    for (int x = 0; x < science.cols; ++x) {
      const double v = in[x];
      if (!std::isfinite(v)) {
        out[x] = 0;
        continue;
      }
      const double s = std::asinh((v - median) / soft) / white;
      out[x] = static_cast<unsigned char>(std::lround(255.0 * std::clamp(s, 0.0, 1.0)));
    }
  }

  const int longest = std::max(science.cols, science.rows);
  const double scale =
      longest > options.max_size_pix ? static_cast<double>(options.max_size_pix) / longest : 1.0;
  cv::Mat small;
  if (scale < 1.0) {
    cv::resize(gray, small,
               cv::Size(std::max(1, static_cast<int>(std::lround(science.cols * scale))),
                        std::max(1, static_cast<int>(std::lround(science.rows * scale)))),
               0, 0, cv::INTER_AREA);
  } else {
    small = gray;
  }
  cv::Mat bgr;
  cv::cvtColor(small, bgr, cv::COLOR_GRAY2BGR);
  const double sx = static_cast<double>(bgr.cols) / science.cols;
  const double sy = static_cast<double>(bgr.rows) / science.rows;

  if (!segmap.empty() && segmap.size() == science.size() && segmap.type() == CV_32SC1) {
    cv::Mat objects = segmap > 0;
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(objects, contours, cv::RETR_LIST, cv::CHAIN_APPROX_SIMPLE);
    // Contours follow pixel centres at full resolution; scale them onto the shrunk image.
    for (auto& c : contours)
      for (cv::Point& p : c)
        p = cv::Point(static_cast<int>(std::lround((p.x + 0.5) * sx - 0.5)),
                      static_cast<int>(std::lround((p.y + 0.5) * sy - 0.5)));
    cv::drawContours(bgr, contours, -1, cv::Scalar(0, 200, 0), 1, cv::LINE_AA);
  }

  const Column* xc = catalog.find("X_IMAGE");
  const Column* yc = catalog.find("Y_IMAGE");
  const Column* ac = catalog.find("A_IMAGE");
  const Column* bc = catalog.find("B_IMAGE");
  const Column* tc = catalog.find("THETA_IMAGE");
  if (xc != nullptr && yc != nullptr && ac != nullptr && bc != nullptr && tc != nullptr) {
    // Fixed-point drawing (4 fractional bits) keeps sub-pixel centres on small stamps.
    constexpr int kShift = 4;
    constexpr double kOne = 1 << kShift;
    for (std::size_t i = 0; i < catalog.rows(); ++i) {
      const double x = (xc->as_double(i) - 0.5) * sx - 0.5;  // 1-based FITS -> 0-based array
      const double y = (yc->as_double(i) - 0.5) * sy - 0.5;
      const double a = options.ellipse_scale * ac->as_double(i) * sx;
      const double b = options.ellipse_scale * bc->as_double(i) * sy;
      const double theta = tc->as_double(i);
      if (!std::isfinite(x) || !std::isfinite(y) || !(a > 0) || !(b > 0) || !std::isfinite(theta))
        continue;
      // Array rows grow with FITS y, so THETA (CCW from +x with y up) is the angle from +x
      // towards +row here; the vertical flip below turns it into the on-sky orientation.
      cv::ellipse(bgr,
                  cv::Point(static_cast<int>(std::lround(x * kOne)),
                            static_cast<int>(std::lround(y * kOne))),
                  cv::Size(static_cast<int>(std::lround(std::max(a, 1.0) * kOne)),
                           static_cast<int>(std::lround(std::max(b, 1.0) * kOne))),
                  theta, 0, 360, cv::Scalar(40, 40, 255), 1, cv::LINE_AA, kShift);
    }
  }
  cv::Mat flipped;
  cv::flip(bgr, flipped, 0);
  return flipped;
}

void write_png(const std::string& path, const cv::Mat& image) {
  std::vector<unsigned char> bytes;
  if (!cv::imencode(".png", image, bytes))
    throw std::runtime_error(path + ": PNG encoding failed (OpenCV imencode)");
  write_file_atomically(
      path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace astroflow
