// The arithmetic of the `segment` stage, header-only so that the stage and its test share one
// implementation (the test also runs the network in one pass to measure tile seams).
//
// Conventions:
//  * Images are 0-based (pixel (x, y) at column x, row y); catalog positions are FITS 1-based
//    X_IMAGE / Y_IMAGE, converted by the caller.
//  * The network output (models/segment/model.yaml) is N x 6 x H x W: 5 class logits
//    (background, spheroid, disk, irregular, point_source) then the inner distance in [0, 1].
//    `to_pixel_channels` turns one sample into a CV_32FC6 tile: the 5 softmax probabilities and
//    the distance, which is what the tiles are blended in (probabilities, not logits, so the
//    blend of two tiles is itself a probability vector).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <opencv2/core.hpp>
#include <queue>
#include <tuple>
#include <vector>

namespace astroflow::segment {

inline constexpr int kClassCount = 5;    ///< background, spheroid, disk, irregular, point_source
inline constexpr int kChannelCount = 6;  ///< the classes, then the inner distance

/// One sample of the network output (6 planes of h x w floats, contiguous) -> CV_32FC6 with the
/// class softmax applied per pixel.
inline cv::Mat to_pixel_channels(const float* planes, int h, int w) {
  cv::Mat out(h, w, CV_32FC(kChannelCount));
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  for (int y = 0; y < h; ++y) {
    float* o = out.ptr<float>(y);
    for (int x = 0; x < w; ++x) {
      const std::size_t p = static_cast<std::size_t>(y) * w + x;
      float z[kClassCount];
      float zmax = -1e30f;
      for (int c = 0; c < kClassCount; ++c) {
        z[c] = planes[c * plane + p];
        zmax = std::max(zmax, z[c]);
      }
      float sum = 0.0f;
      for (int c = 0; c < kClassCount; ++c) sum += (z[c] = std::exp(z[c] - zmax));
      for (int c = 0; c < kClassCount; ++c) o[x * kChannelCount + c] = z[c] / sum;
      o[x * kChannelCount + kClassCount] = planes[kClassCount * plane + p];
    }
  }
  return out;
}

/// Per-pixel class (argmax of the probabilities; ties to the lower class) as CV_8U; pixels
/// marked in `blank` (CV_8U, may be empty) are 0.
inline cv::Mat class_map(const cv::Mat& channels, const cv::Mat& blank) {
  cv::Mat out(channels.size(), CV_8U, cv::Scalar(0));
  for (int y = 0; y < channels.rows; ++y) {
    const float* c = channels.ptr<float>(y);
    std::uint8_t* o = out.ptr<std::uint8_t>(y);
    const std::uint8_t* b = blank.empty() ? nullptr : blank.ptr<std::uint8_t>(y);
    for (int x = 0; x < channels.cols; ++x) {
      if (b != nullptr && b[x] != 0) continue;
      const float* p = c + x * kChannelCount;
      o[x] = static_cast<std::uint8_t>(std::max_element(p, p + kClassCount) - p);
    }
  }
  return out;
}

struct Marker {
  int x = 0;  ///< 0-based pixel
  int y = 0;
  std::int32_t label = 0;  ///< the catalog NUMBER
};

/// Marker-seeded watershed (priority flood, 4-connected) on the elevation 1 - distance,
/// restricted to foreground pixels: P(background) < 1 - fg_threshold, i.e. the summed source
/// probability >= fg_threshold, and not blank. Each marker labels its own pixel (even when the
/// network sees no source there, so every catalog row keeps at least one pixel); a pixel taken
/// by an earlier marker is kept by it. Flooding goes lowest elevation first, ties in the order
/// the pixels were reached, so the result is deterministic. Foreground that no marker reaches
/// stays 0. Returns CV_32S labels.
inline cv::Mat marker_watershed(const cv::Mat& channels, const cv::Mat& blank,
                                const std::vector<Marker>& markers, float fg_threshold) {
  const int w = channels.cols;
  const int h = channels.rows;
  cv::Mat labels(h, w, CV_32S, cv::Scalar(0));
  cv::Mat fg(h, w, CV_8U, cv::Scalar(0));
  cv::Mat elev(h, w, CV_32F);
  for (int y = 0; y < h; ++y) {
    const float* c = channels.ptr<float>(y);
    const std::uint8_t* b = blank.empty() ? nullptr : blank.ptr<std::uint8_t>(y);
    std::uint8_t* f = fg.ptr<std::uint8_t>(y);
    float* e = elev.ptr<float>(y);
    for (int x = 0; x < w; ++x) {
      const float* p = c + x * kChannelCount;
      f[x] = (b == nullptr || b[x] == 0) && 1.0f - p[0] >= fg_threshold ? 1 : 0;
      e[x] = 1.0f - p[kClassCount];
    }
  }
  using Item = std::tuple<float, std::uint64_t, int>;  // elevation, arrival order, pixel index
  std::priority_queue<Item, std::vector<Item>, std::greater<>> queue;
  std::uint64_t order = 0;
  auto* lab = labels.ptr<std::int32_t>();
  const auto* fgp = fg.ptr<std::uint8_t>();
  const auto* ep = elev.ptr<float>();
  for (const Marker& m : markers) {
    if (m.x < 0 || m.y < 0 || m.x >= w || m.y >= h || m.label <= 0) continue;
    const int i = m.y * w + m.x;
    if (lab[i] != 0) continue;
    lab[i] = m.label;
    queue.emplace(ep[i], order++, i);
  }
  while (!queue.empty()) {
    const int i = std::get<2>(queue.top());
    queue.pop();
    const int x = i % w;
    const int y = i / w;
    const int nb[4] = {x > 0 ? i - 1 : -1, x + 1 < w ? i + 1 : -1, y > 0 ? i - w : -1,
                       y + 1 < h ? i + w : -1};
    for (int j : nb) {
      if (j < 0 || lab[j] != 0 || fgp[j] == 0) continue;
      lab[j] = lab[i];
      queue.emplace(ep[j], order++, j);
    }
  }
  return labels;
}

}  // namespace astroflow::segment
