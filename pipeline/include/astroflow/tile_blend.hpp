// Overlapping-tile inference with smooth blending, shared by the CNN stages that map an image to
// images (denoise, segment) and by their tests.
//
// An image of any size is covered by tile x tile windows whose starts are spaced by
// tile - overlap (the last window is pulled back to end on the image edge, so it may overlap
// more). Each tile's output is weighted by a separable raised-cosine window that rises over the
// first `overlap` pixels and falls over the last `overlap` pixels of each side that is inside
// the image (sides on the image border keep weight 1, so border pixels are not down-weighted);
// the blend divides by the summed weights, so the weights sum to one at every pixel and an
// identity network returns its input exactly. A tile that sticks out of a small image is padded
// with zeros (the background in normalised units) and the padding is discarded. Outputs may have
// several channels (CV_32FC(k), e.g. per-class probabilities); each channel is blended alike.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <opencv2/core.hpp>
#include <utility>
#include <vector>

namespace astroflow {

/// Starts of the windows along one axis of length n (0-based); a single 0 when n <= tile.
inline std::vector<int> tile_starts(int n, int tile, int overlap) {
  std::vector<int> s;
  if (n <= tile) return {0};
  const int step = std::max(1, tile - overlap);
  for (int p = 0; p + tile < n; p += step) s.push_back(p);
  s.push_back(n - tile);
  s.erase(std::unique(s.begin(), s.end()), s.end());
  return s;
}

/// Largest window the CNN stages fit to a frame when the card allows any multiple
/// (input.size_multiple) and the stage's `tile` option is 0 (checked_network_tile): covers a
/// 2,112-pixel frame with 5 windows of 448 per axis (1.06x the pixels per axis, as 3 of 720 would)
/// and gives the threads 25 windows to share.
inline constexpr int kFittedWindowMax = 512;

/// The window length along an axis of length n for a fully convolutional network that takes any
/// multiple of `multiple`: the fewest windows of at most max_tile (starts spaced as tile_starts
/// spaces them), made as short as still covers n, rounded up to the multiple. Less padding and
/// less recomputed overlap than windows of max_tile: 5 windows of 448 for n = 2,112, max_tile
/// 512, overlap 32 (2,240 pixels computed, against 5 x 512 = 2,560). `multiple` 0 (a network
/// of fixed size): max_tile.
inline int balanced_tile(int n, int max_tile, int overlap, int multiple) {
  if (multiple <= 0) return max_tile;
  auto round_up = [multiple](int v) { return (v + multiple - 1) / multiple * multiple; };
  if (n <= max_tile) return round_up(std::max(n, 1));
  const int step_max = std::max(1, max_tile - overlap);
  const int count = (n - overlap + step_max - 1) / step_max;
  const int tile = (n - overlap + count - 1) / count + overlap;
  return std::min(max_tile, round_up(tile));
}

/// One axis of the window: raised cosine (0.5 - 0.5 cos(pi (k + 0.5) / overlap)) over the first
/// and last `overlap` samples unless that side lies on the image border.
inline std::vector<float> window_1d(int tile, int overlap, bool ramp_low, bool ramp_high) {
  std::vector<float> w(static_cast<std::size_t>(tile), 1.0f);
  const int ov = std::min(overlap, tile / 2);
  for (int k = 0; k < ov; ++k) {
    const auto v = static_cast<float>(0.5 - 0.5 * std::cos(M_PI * (k + 0.5) / ov));
    if (ramp_low) w[static_cast<std::size_t>(k)] = v;
    if (ramp_high) w[static_cast<std::size_t>(tile - 1 - k)] = v;
  }
  return w;
}

struct TileRect {
  int x0 = 0;  ///< 0-based start in the image
  int y0 = 0;
};

/// All windows of an image, in raster order.
inline std::vector<TileRect> tile_grid(int width, int height, int tile, int overlap) {
  std::vector<TileRect> out;
  for (int y : tile_starts(height, tile, overlap)) {
    for (int x : tile_starts(width, tile, overlap)) out.push_back({x, y});
  }
  return out;
}

/// Runs `infer` on batches of at most `batch` windows of tile_w x tile_h and blends the results.
/// `image`: CV_32F without NaN. `infer(const std::vector<cv::Mat>& tiles) -> std::vector<cv::Mat>`
/// maps tile_h x tile_w CV_32F inputs to outputs of the same size of type CV_32FC(k), the same
/// k for every window; the result is CV_32FC(k) of the image size.
template <typename Infer>
cv::Mat blend_tiles(const cv::Mat& image, int tile_w, int tile_h, int overlap, int batch,
                    Infer&& infer) {
  const int w = image.cols;
  const int h = image.rows;
  std::vector<TileRect> grid;
  for (int y : tile_starts(h, tile_h, overlap)) {
    for (int x : tile_starts(w, tile_w, overlap)) grid.push_back({x, y});
  }
  cv::Mat acc;
  int nch = 0;
  cv::Mat wsum(h, w, CV_64F, cv::Scalar(0));
  for (std::size_t first = 0; first < grid.size(); first += static_cast<std::size_t>(batch)) {
    const std::size_t last = std::min(grid.size(), first + static_cast<std::size_t>(batch));
    std::vector<cv::Mat> inputs;
    for (std::size_t i = first; i < last; ++i) {
      cv::Mat t(tile_h, tile_w, CV_32F, cv::Scalar(0));
      const int cw = std::min(tile_w, w - grid[i].x0);
      const int ch = std::min(tile_h, h - grid[i].y0);
      image(cv::Rect(grid[i].x0, grid[i].y0, cw, ch)).copyTo(t(cv::Rect(0, 0, cw, ch)));
      inputs.push_back(t);
    }
    const std::vector<cv::Mat> outputs = infer(inputs);
    for (std::size_t i = first; i < last; ++i) {
      const TileRect r = grid[i];
      const int cw = std::min(tile_w, w - r.x0);
      const int ch = std::min(tile_h, h - r.y0);
      const auto wy = window_1d(tile_h, overlap, r.y0 > 0, r.y0 + tile_h < h);
      const auto wx = window_1d(tile_w, overlap, r.x0 > 0, r.x0 + tile_w < w);
      const cv::Mat& o = outputs[i - first];
      CV_Assert(o.depth() == CV_32F && o.rows == tile_h && o.cols == tile_w);
      if (acc.empty()) {
        nch = o.channels();
        acc = cv::Mat(h, w, CV_64FC(nch), cv::Scalar::all(0));
      }
      CV_Assert(o.channels() == nch);
      for (int y = 0; y < ch; ++y) {
        const float* src = o.ptr<float>(y);
        double* a = acc.ptr<double>(r.y0 + y) + static_cast<std::ptrdiff_t>(r.x0) * nch;
        double* s = wsum.ptr<double>(r.y0 + y) + r.x0;
        for (int x = 0; x < cw; ++x) {
          const double wt = static_cast<double>(wy[static_cast<std::size_t>(y)]) *
                            wx[static_cast<std::size_t>(x)];
          for (int c = 0; c < nch; ++c) a[x * nch + c] += wt * src[x * nch + c];
          s[x] += wt;
        }
      }
    }
  }
  cv::Mat out(h, w, CV_32FC(nch));
  for (int y = 0; y < h; ++y) {
    const double* a = acc.ptr<double>(y);
    const double* s = wsum.ptr<double>(y);
    float* d = out.ptr<float>(y);
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < nch; ++c) d[x * nch + c] = static_cast<float>(a[x * nch + c] / s[x]);
    }
  }
  return out;
}

/// Square windows of tile x tile.
template <typename Infer>
cv::Mat blend_tiles(const cv::Mat& image, int tile, int overlap, int batch, Infer&& infer) {
  return blend_tiles(image, tile, tile, overlap, batch, std::forward<Infer>(infer));
}

}  // namespace astroflow
