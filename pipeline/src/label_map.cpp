#include "label_map.hpp"

#include <cmath>
#include <filesystem>
#include <vector>

#include "astroflow/error.hpp"
#include "astroflow/fits_io.hpp"

namespace astroflow {

cv::Mat as_labels(const cv::Mat& m, const std::string& what) {
  if (m.channels() != 1) throw FatalError(what + ": expected a single-plane image");
  if (m.type() == CV_32S) return m;
  cv::Mat f;
  m.convertTo(f, CV_64F);
  cv::Mat out(m.size(), CV_32S);
  for (int y = 0; y < f.rows; ++y) {
    const auto* src = f.ptr<double>(y);
    auto* dst = out.ptr<int>(y);
    for (int x = 0; x < f.cols; ++x) {
      dst[x] = std::isfinite(src[x]) ? static_cast<int>(std::lround(src[x])) : -1;
    }
  }
  return out;
}

cv::Mat read_label_map(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw FatalError(path + ": file not found");
  FitsReadOptions ro;
  ro.hdu = "0";
  std::vector<Frame> f = read_fits_frames(path, ro);
  if (f.empty() || f[0].failed()) throw FatalError(path + ": cannot read the primary image");
  return f[0].science;
}

}  // namespace astroflow
