#include "astroflow/quicklook.hpp"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
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

struct Stretch {
  double median = 0.0;  ///< the black level (median - black_sigma sky sigmas)
  double soft = 1.0;
  double white = 1.0;
};

// Robust statistics on a regular sample of finite pixels.
Stretch stretch_of(const cv::Mat& science, const QuicklookOptions& options) {
  const std::size_t total = science.total();
  const std::size_t step = std::max<std::size_t>(1, total / 65536);
  std::vector<float> sample;
  sample.reserve(total / step + 1);
  for (std::size_t i = 0; i < total; i += step) {
    const float v =
        science.at<float>(static_cast<int>(i / science.cols), static_cast<int>(i % science.cols));
    if (std::isfinite(v)) sample.push_back(v);
  }
  Stretch st;
  st.median = quantile(sample, 0.5);
  std::vector<float> dev(sample.size());
  for (std::size_t i = 0; i < sample.size(); ++i)
    dev[i] = static_cast<float>(std::abs(sample[i] - st.median));
  double sigma = 1.4826 * quantile(dev, 0.5);
  const double top = quantile(sample, 0.995);
  if (!(sigma > 0)) sigma = std::max(1e-12, std::abs(top - st.median));
  st.median -= options.black_sigma * sigma;
  st.soft = options.softening_sigma * sigma;
  st.white = std::asinh(std::max(top - st.median, st.soft) / st.soft);
  return st;
}

// The stretched 8-bit image, shrunk so its longest side is at most max_size_pix.
cv::Mat stretched_gray(const cv::Mat& science, const Stretch& st, const QuicklookOptions& options) {
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
      const double s = std::asinh((v - st.median) / st.soft) / st.white;
      out[x] = static_cast<unsigned char>(std::lround(255.0 * std::clamp(s, 0.0, 1.0)));
    }
  }
  const int longest = std::max(science.cols, science.rows);
  const double scale =
      longest > options.max_size_pix ? static_cast<double>(options.max_size_pix) / longest : 1.0;
  if (scale >= 1.0) return gray;
  cv::Mat small;
  cv::resize(gray, small,
             cv::Size(std::max(1, static_cast<int>(std::lround(science.cols * scale))),
                      std::max(1, static_cast<int>(std::lround(science.rows * scale)))),
             0, 0, cv::INTER_AREA);
  return small;
}

}  // namespace

cv::Mat render_quicklook(const cv::Mat& science, const Catalog& catalog, const cv::Mat& segmap,
                         const QuicklookOptions& options) {
  if (science.empty() || science.type() != CV_32FC1)
    throw std::invalid_argument("quicklook: science plane is empty or not CV_32FC1");
  const cv::Mat small = stretched_gray(science, stretch_of(science, options), options);
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

cv::Mat render_side_by_side(const cv::Mat& left, const cv::Mat& right,
                            const std::string& left_label, const std::string& right_label,
                            const QuicklookOptions& options) {
  if (left.empty() || left.type() != CV_32FC1 || right.size() != left.size() ||
      right.type() != CV_32FC1) {
    throw std::invalid_argument("quicklook: side-by-side images must be CV_32FC1 of one size");
  }
  const Stretch st = stretch_of(left, options);
  const cv::Mat a = stretched_gray(left, st, options);
  const cv::Mat b = stretched_gray(right, st, options);
  constexpr int kGap = 4;
  cv::Mat both(a.rows, 2 * a.cols + kGap, CV_8UC1, cv::Scalar(128));
  // Flipped apart so FITS row 1 is at the bottom of each panel, as in render_quicklook.
  cv::flip(a, both(cv::Rect(0, 0, a.cols, a.rows)), 0);
  cv::flip(b, both(cv::Rect(a.cols + kGap, 0, b.cols, b.rows)), 0);
  cv::Mat bgr;
  cv::cvtColor(both, bgr, cv::COLOR_GRAY2BGR);
  const double font = std::clamp(a.cols / 600.0, 0.35, 1.2);
  const int pad = std::max(2, static_cast<int>(std::lround(14 * font)));
  const cv::Scalar label_colour(0, 220, 255);
  cv::putText(bgr, left_label, cv::Point(pad / 2, 2 * pad), cv::FONT_HERSHEY_SIMPLEX, font,
              label_colour, 1, cv::LINE_AA);
  cv::putText(bgr, right_label, cv::Point(a.cols + kGap + pad / 2, 2 * pad),
              cv::FONT_HERSHEY_SIMPLEX, font, label_colour, 1, cv::LINE_AA);
  return bgr;
}

namespace {

void append_png_bytes(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::vector<unsigned char>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + length);
}

// libpng reports errors by longjmp: no object with a destructor lives between setjmp and the
// calls that may jump, so nothing is skipped. Returns false on a libpng error.
bool encode_png(const unsigned char* pixels, std::size_t step, int width, int height, int channels,
                std::vector<unsigned char>* out) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr || setjmp(png_jmpbuf(png)) != 0) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, out, append_png_bytes, nullptr);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  if (channels == 3) png_set_bgr(png);  // OpenCV's colour order
  for (int y = 0; y < height; ++y)
    png_write_row(png, const_cast<png_bytep>(pixels + static_cast<std::size_t>(y) * step));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

void write_png(const std::string& path, const cv::Mat& image) {
  // libpng directly: OpenCV's imgcodecs would load about 120 more shared libraries (GDAL, GDCM,
  // ...) into every astroflow process, 0.08 s of start-up each, for this one call.
  if (image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3) || image.empty())
    throw std::invalid_argument(path + ": write_png needs an 8-bit grey or BGR image");
  std::vector<unsigned char> bytes;
  if (!encode_png(image.data, image.step[0], image.cols, image.rows, image.channels(), &bytes))
    throw std::runtime_error(path + ": PNG encoding failed (libpng)");
  write_file_atomically(
      path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace astroflow
