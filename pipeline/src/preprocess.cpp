#include "astroflow/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <opencv2/imgproc.hpp>
#include <stdexcept>

#include "astroflow/error.hpp"

namespace astroflow {
namespace {

double median_of(std::vector<double>& v) {
  const std::size_t n = v.size();
  const std::size_t mid = n / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  const double hi = v[mid];
  if (n % 2 == 1) return hi;
  // For an even count the lower middle is the largest value below `mid`.
  const double lo = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid));
  return 0.5 * (lo + hi);
}

}  // namespace

ClippedStats sigma_clipped_stats(const cv::Mat& image, double nsigma, int iterations) {
  if (image.type() != CV_32FC1) throw std::invalid_argument("sigma_clipped_stats: need CV_32FC1");
  std::vector<double> kept;
  kept.reserve(image.total());
  for (int y = 0; y < image.rows; ++y) {
    const float* row = image.ptr<float>(y);
    for (int x = 0; x < image.cols; ++x) {
      if (std::isfinite(row[x])) kept.push_back(row[x]);
    }
  }
  ClippedStats s;
  if (kept.empty()) return s;
  // Buffers reused across iterations: this runs once per stamp of every CNN stage.
  std::vector<double> scratch;
  std::vector<double> next;
  scratch.reserve(kept.size());
  next.reserve(kept.size());
  for (int it = 0; it <= iterations; ++it) {
    scratch.assign(kept.begin(), kept.end());
    s.median = median_of(scratch);
    const double mean =
        std::accumulate(kept.begin(), kept.end(), 0.0) / static_cast<double>(kept.size());
    double ss = 0.0;
    for (double v : kept) ss += (v - mean) * (v - mean);
    s.stddev = std::sqrt(ss / static_cast<double>(kept.size()));
    s.n_used = kept.size();
    if (it == iterations || s.stddev == 0.0) break;
    const double limit = nsigma * s.stddev;
    next.clear();
    for (double v : kept) {
      if (std::abs(v - s.median) <= limit) next.push_back(v);
    }
    if (next.size() == kept.size() || next.empty()) break;
    kept.swap(next);
  }
  return s;
}

cv::Mat extract_stamp(const cv::Mat& image, double x0_pix, double y0_pix, int size) {
  if (image.type() != CV_32FC1) throw std::invalid_argument("extract_stamp: need CV_32FC1");
  if (size <= 0) throw std::invalid_argument("extract_stamp: size must be > 0");
  cv::Mat stamp(size, size, CV_32FC1, cv::Scalar(std::numeric_limits<float>::quiet_NaN()));
  if (!std::isfinite(x0_pix) || !std::isfinite(y0_pix)) return stamp;
  const long cx = std::lround(x0_pix);
  const long cy = std::lround(y0_pix);
  const long left = cx - size / 2;
  const long top = cy - size / 2;
  const long x_lo = std::max(0L, left);
  const long y_lo = std::max(0L, top);
  const long x_hi = std::min(static_cast<long>(image.cols), left + size);
  const long y_hi = std::min(static_cast<long>(image.rows), top + size);
  if (x_lo >= x_hi || y_lo >= y_hi) return stamp;
  const cv::Rect src(static_cast<int>(x_lo), static_cast<int>(y_lo), static_cast<int>(x_hi - x_lo),
                     static_cast<int>(y_hi - y_lo));
  const cv::Rect dst(static_cast<int>(x_lo - left), static_cast<int>(y_lo - top), src.width,
                     src.height);
  image(src).copyTo(stamp(dst));
  return stamp;
}

NormalisedStamp normalise_stamp(const cv::Mat& stamp, const Normalisation& norm, cv::Mat& out) {
  if (stamp.type() != CV_32FC1) throw std::invalid_argument("normalise_stamp: need CV_32FC1");
  NormalisedStamp r;
  std::size_t n_nan = 0;
  for (int y = 0; y < stamp.rows; ++y) {
    const float* row = stamp.ptr<float>(y);
    for (int x = 0; x < stamp.cols; ++x) n_nan += std::isfinite(row[x]) ? 0 : 1;
  }
  if (n_nan == stamp.total()) throw FrameError("no finite pixel in the stamp");
  r.nan_fraction = static_cast<double>(n_nan) / static_cast<double>(stamp.total());

  r.background = 0.0;
  r.rms = 1.0;
  if (norm.background == "median_clip") {
    const ClippedStats s = sigma_clipped_stats(stamp, norm.clip_sigma, norm.clip_iterations);
    r.background = s.median;
    r.rms = s.stddev;
  }
  if (!(r.rms > 0.0) || !std::isfinite(r.rms)) r.rms = 1.0;

  out.create(stamp.rows, stamp.cols, CV_32FC1);
  const double inv = 1.0 / (norm.scale * r.rms);
  // Decided once per stamp, not per pixel (string comparisons were a fifth of the cost).
  const bool none = norm.method == "none";
  const bool asinh = norm.method == "asinh";
  for (int y = 0; y < stamp.rows; ++y) {
    const float* in = stamp.ptr<float>(y);
    float* o = out.ptr<float>(y);
    for (int x = 0; x < stamp.cols; ++x) {
      const double v = std::isfinite(in[x]) ? static_cast<double>(in[x]) : r.background;
      if (none) {
        o[x] = static_cast<float>(v);
      } else {
        const double t = (v - r.background) * inv;
        o[x] = static_cast<float>(asinh ? std::asinh(t) : t);
      }
    }
  }
  return r;
}

void softmax_rows(cv::Mat& logits, double temperature) {
  if (logits.type() != CV_32FC1) throw std::invalid_argument("softmax_rows: need CV_32FC1");
  if (!(temperature > 0.0)) throw std::invalid_argument("softmax_rows: temperature must be > 0");
  for (int i = 0; i < logits.rows; ++i) {
    float* row = logits.ptr<float>(i);
    double mx = -std::numeric_limits<double>::infinity();
    for (int j = 0; j < logits.cols; ++j) mx = std::max(mx, row[j] / temperature);
    double sum = 0.0;
    std::vector<double> e(static_cast<std::size_t>(logits.cols));
    for (int j = 0; j < logits.cols; ++j) {
      e[static_cast<std::size_t>(j)] = std::exp(row[j] / temperature - mx);
      sum += e[static_cast<std::size_t>(j)];
    }
    for (int j = 0; j < logits.cols; ++j) {
      row[j] = static_cast<float>(e[static_cast<std::size_t>(j)] / sum);
    }
  }
}

std::vector<Peak> find_peaks(const cv::Mat& heatmap, float threshold, int radius) {
  if (heatmap.type() != CV_32FC1) throw std::invalid_argument("find_peaks: need CV_32FC1");
  if (radius < 0) throw std::invalid_argument("find_peaks: radius must be >= 0");
  cv::Mat local_max;
  const cv::Mat kernel = cv::Mat::ones(2 * radius + 1, 2 * radius + 1, CV_8U);
  cv::dilate(heatmap, local_max, kernel, cv::Point(-1, -1), 1, cv::BORDER_CONSTANT,
             cv::Scalar(-std::numeric_limits<float>::infinity()));
  std::vector<Peak> candidates;
  for (int y = 0; y < heatmap.rows; ++y) {
    const float* h = heatmap.ptr<float>(y);
    const float* m = local_max.ptr<float>(y);
    for (int x = 0; x < heatmap.cols; ++x) {
      if (h[x] >= threshold && h[x] == m[x]) candidates.push_back({x, y, h[x]});
    }
  }
  // Raster order is the secondary key, so a plateau yields its first pixel.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Peak& a, const Peak& b) { return a.value > b.value; });
  std::vector<Peak> peaks;
  for (const Peak& c : candidates) {
    const bool suppressed = std::any_of(peaks.begin(), peaks.end(), [&](const Peak& p) {
      return std::abs(p.x_pix - c.x_pix) <= radius && std::abs(p.y_pix - c.y_pix) <= radius;
    });
    if (!suppressed) peaks.push_back(c);
  }
  return peaks;
}

cv::Mat normalise_by_planes(const cv::Mat& science, const cv::Mat& background, const cv::Mat& rms,
                            bool subtracted, cv::Mat& blank) {
  if (background.size() != science.size() || rms.size() != science.size() ||
      science.type() != CV_32F || background.type() != CV_32F || rms.type() != CV_32F) {
    throw FrameError("background/rms planes do not match the science plane");
  }
  cv::Mat norm(science.size(), CV_32F);
  blank = cv::Mat(science.size(), CV_8U, cv::Scalar(0));
  for (int y = 0; y < science.rows; ++y) {
    const float* s = science.ptr<float>(y);
    const float* b = background.ptr<float>(y);
    const float* r = rms.ptr<float>(y);
    float* n = norm.ptr<float>(y);
    unsigned char* m = blank.ptr<unsigned char>(y);
    for (int x = 0; x < science.cols; ++x) {
      const float base = subtracted ? 0.0f : b[x];
      if (std::isfinite(s[x]) && std::isfinite(base) && std::isfinite(r[x]) && r[x] > 0.0f) {
        n[x] = (s[x] - base) / r[x];
      } else {
        n[x] = 0.0f;
        m[x] = 1;
      }
    }
  }
  return norm;
}

cv::Mat normalise_frame_by_planes(const Frame& frame, const std::string& stage, cv::Mat& blank) {
  const auto bkg = frame.planes.find("background");
  const auto rms = frame.planes.find("rms");
  if (bkg == frame.planes.end() || rms == frame.planes.end()) {
    throw FrameError(stage +
                     " needs the planes 'background' and 'rms' (run the background stage first)");
  }
  const bool subtracted = frame.header.get_string("BKG_SUB").value_or("") == "T";
  return normalise_by_planes(frame.science, bkg->second, rms->second, subtracted, blank);
}

int checked_network_tile(const ModelCard& card, const std::string& stage_name, int tile,
                         int overlap) {
  const int card_tile = static_cast<int>(card.height_pix());
  if (tile == 0) tile = card_tile;
  if (tile != card_tile) {
    throw FatalError("stage '" + stage_name + "': option tile = " + std::to_string(tile) + " but " +
                     card.card_path + " was exported for " + std::to_string(card_tile) +
                     " px tiles (use tile: 0 or " + std::to_string(card_tile) + ")");
  }
  if (overlap * 2 > tile) {
    throw FatalError("stage '" + stage_name + "': option overlap = " + std::to_string(overlap) +
                     " exceeds half the tile (" + std::to_string(tile) + ")");
  }
  return tile;
}

}  // namespace astroflow
