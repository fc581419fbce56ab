// background: SExtractor-style mesh background and background-RMS maps.
//
// The image is cut into back_size x back_size meshes. Each mesh gets a sigma-clipped mode
// estimate and a clipped standard deviation; the mesh grid is median filtered and then
// interpolated back to full resolution with a bicubic kernel through the mesh centres. See
// README.md in this folder for the exact recipe and how it differs from SExtractor.
#include <algorithm>
#include <astroflow/plugin.hpp>
#include <astroflow/preprocess.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

namespace {

using astroflow::Frame;
using astroflow::FrameError;
using astroflow::Options;

// A mesh needs at least this fraction of finite pixels to be trusted; SExtractor's own limit
// for flagged pixels in a mesh is also one half.
constexpr double kMinValidFraction = 0.5;
constexpr double kClipSigma = 3.0;
constexpr int kMaxClipIterations = 100;

struct MeshStat {
  float level = 0.0F;
  float sigma = 0.0F;
  bool valid = false;
};

// Sigma-clipped statistics of one mesh (its finite pixels): clipped at kClipSigma around the
// median until nothing changes, keeping the last estimate when fewer than 3 pixels would be left
// (sigma_clipped_stats: one radix sort, then each pass is a binary search on the sorted run).
MeshStat clipped_stats(const cv::Mat& mesh, std::size_t min_count) {
  MeshStat out;
  const astroflow::ClippedStats c =
      astroflow::sigma_clipped_stats(mesh, kClipSigma, kMaxClipIterations, 3);
  if (c.n_finite < min_count || c.n_finite == 0) return out;
  // SExtractor's mode estimator; a strongly skewed (crowded) mesh falls back to the median.
  double level = 2.5 * c.median - 1.5 * c.mean;
  if (c.stddev > 0.0 && std::fabs(c.mean - c.median) / c.stddev > 0.3) level = c.median;
  out.level = static_cast<float>(level);
  out.sigma = static_cast<float>(c.stddev);
  out.valid = std::isfinite(level) && std::isfinite(c.stddev);
  return out;
}

// Replaces invalid meshes by the mean of their valid 8-neighbours, growing inwards until every
// mesh has a value. Returns false when no mesh was valid.
bool fill_invalid(cv::Mat& grid, std::vector<std::uint8_t>& valid) {
  const int rows = grid.rows;
  const int cols = grid.cols;
  if (std::none_of(valid.begin(), valid.end(), [](std::uint8_t v) { return v != 0; })) {
    return false;
  }
  while (std::any_of(valid.begin(), valid.end(), [](std::uint8_t v) { return v == 0; })) {
    std::vector<std::uint8_t> next = valid;
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        if (valid[static_cast<std::size_t>(r * cols + c)] != 0) continue;
        double sum = 0.0;
        int count = 0;
        for (int dr = -1; dr <= 1; ++dr) {
          for (int dc = -1; dc <= 1; ++dc) {
            const int rr = r + dr;
            const int cc = c + dc;
            if (rr < 0 || rr >= rows || cc < 0 || cc >= cols) continue;
            if (valid[static_cast<std::size_t>(rr * cols + cc)] == 0) continue;
            sum += grid.at<float>(rr, cc);
            ++count;
          }
        }
        if (count > 0) {
          grid.at<float>(r, c) = static_cast<float>(sum / count);
          next[static_cast<std::size_t>(r * cols + c)] = 1;
        }
      }
    }
    valid.swap(next);
  }
  return true;
}

// The grid with `pad` extra nodes on each side, linearly extrapolated from the two outermost
// nodes (copied when the grid is one node wide). Used so that the median filter window and
// the bicubic kernel stay centred at the edge nodes: a plain gradient then passes both
// unchanged, where clipping the window at the edge would pull the outer nodes inwards.
cv::Mat extend_grid(const cv::Mat& grid, int pad) {
  const int rows = grid.rows;
  const int cols = grid.cols;
  cv::Mat ext(rows + 2 * pad, cols + 2 * pad, CV_32F);
  grid.copyTo(ext(cv::Rect(pad, pad, cols, rows)));
  for (int r = pad; r < rows + pad; ++r) {
    float* e = ext.ptr<float>(r);
    const float d0 = cols > 1 ? e[pad] - e[pad + 1] : 0.0F;
    const float d1 = cols > 1 ? e[pad + cols - 1] - e[pad + cols - 2] : 0.0F;
    for (int k = 1; k <= pad; ++k) {
      e[pad - k] = e[pad] + static_cast<float>(k) * d0;
      e[pad + cols - 1 + k] = e[pad + cols - 1] + static_cast<float>(k) * d1;
    }
  }
  for (int c = 0; c < cols + 2 * pad; ++c) {
    const float top = ext.at<float>(pad, c);
    const float bottom = ext.at<float>(pad + rows - 1, c);
    const float d0 = rows > 1 ? top - ext.at<float>(pad + 1, c) : 0.0F;
    const float d1 = rows > 1 ? bottom - ext.at<float>(pad + rows - 2, c) : 0.0F;
    for (int k = 1; k <= pad; ++k) {
      ext.at<float>(pad - k, c) = top + static_cast<float>(k) * d0;
      ext.at<float>(pad + rows - 1 + k, c) = bottom + static_cast<float>(k) * d1;
    }
  }
  return ext;
}

// Median over a size x size window of the mesh grid (SExtractor's BACK_FILTERSIZE), computed
// on the linearly extended grid so edge nodes get a full window.
cv::Mat median_filter_grid(const cv::Mat& grid, int size) {
  if (size <= 1) return grid.clone();
  const int half = size / 2;
  const cv::Mat ext = extend_grid(grid, half);
  cv::Mat out(grid.size(), CV_32F);
  std::vector<float> window;
  for (int r = 0; r < grid.rows; ++r) {
    for (int c = 0; c < grid.cols; ++c) {
      window.clear();
      for (int rr = r; rr < r + size; ++rr) {
        for (int cc = c; cc < c + size; ++cc) window.push_back(ext.at<float>(rr, cc));
      }
      auto mid = window.begin() + static_cast<std::ptrdiff_t>(window.size() / 2);
      std::nth_element(window.begin(), mid, window.end());
      out.at<float>(r, c) = *mid;  // size is odd: the window has an odd count
    }
  }
  return out;
}

// Mesh node (i, j) sits at the centre of a full mesh, (i + 0.5) * mesh - 0.5 in 0-based pixel
// coordinates, with uniform spacing (SExtractor's convention: the last, partial mesh is treated
// as if it were full). cv::resize to (cols * mesh) maps destination pixel x to source
// (x + 0.5) / mesh - 0.5, which puts node i exactly there. The grid is first extended by one
// extrapolated node per side so the half mesh between the outer nodes and the image edge follows
// the gradient instead of cv::resize's flat border; the extension is cropped away afterwards.
cv::Mat interpolate_grid(const cv::Mat& grid, int mesh_pix, cv::Size image_size) {
  const cv::Mat ext = extend_grid(grid, 1);
  cv::Mat big;
  cv::resize(ext, big, cv::Size(ext.cols * mesh_pix, ext.rows * mesh_pix), 0, 0, cv::INTER_CUBIC);
  return big(cv::Rect(mesh_pix, mesh_pix, image_size.width, image_size.height)).clone();
}

class BackgroundStage final : public astroflow::Stage {
 public:
  void configure(const Options& options) override {
    mesh_pix_ = static_cast<int>(options.get_int("back_size"));
    filter_size_ = static_cast<int>(options.get_int("back_filtersize"));
    subtract_ = options.get_bool("subtract");
    if (mesh_pix_ < 4) {
      throw astroflow::FatalError("background: back_size must be at least 4 pixels, got " +
                                  std::to_string(mesh_pix_));
    }
    if (filter_size_ < 1 || filter_size_ % 2 == 0) {
      throw astroflow::FatalError("background: back_filtersize must be odd and >= 1, got " +
                                  std::to_string(filter_size_));
    }
  }

 protected:
  void process_frame(Frame& frame) override {
    const cv::Mat& sci = frame.science;
    if (sci.empty() || sci.type() != CV_32FC1) {
      throw FrameError("background: science plane is empty or not CV_32FC1");
    }
    const int w = sci.cols;
    const int h = sci.rows;
    const int nx = (w + mesh_pix_ - 1) / mesh_pix_;
    const int ny = (h + mesh_pix_ - 1) / mesh_pix_;
    cv::Mat level(ny, nx, CV_32F, cv::Scalar(0));
    cv::Mat sigma(ny, nx, CV_32F, cv::Scalar(0));
    std::vector<std::uint8_t> valid(static_cast<std::size_t>(nx) * ny, 0);

    cv::parallel_for_(cv::Range(0, ny), [&](const cv::Range& range) {
      for (int j = range.start; j < range.end; ++j) {
        for (int i = 0; i < nx; ++i) {
          const int x0 = i * mesh_pix_;
          const int y0 = j * mesh_pix_;
          const int x1 = std::min(w, x0 + mesh_pix_);
          const int y1 = std::min(h, y0 + mesh_pix_);
          const auto area = static_cast<std::size_t>((x1 - x0) * (y1 - y0));
          const auto min_count = std::max<std::size_t>(
              3,
              static_cast<std::size_t>(std::ceil(kMinValidFraction * static_cast<double>(area))));
          const MeshStat s = clipped_stats(sci(cv::Rect(x0, y0, x1 - x0, y1 - y0)), min_count);
          level.at<float>(j, i) = s.level;
          sigma.at<float>(j, i) = s.sigma;
          valid[static_cast<std::size_t>(j * nx + i)] = s.valid ? 1 : 0;
        }
      }
    });

    std::vector<std::uint8_t> valid_sigma = valid;
    if (!fill_invalid(level, valid) || !fill_invalid(sigma, valid_sigma)) {
      frame.flags |= astroflow::kFrameAllBlank;
      throw FrameError("background: no mesh of " + std::to_string(mesh_pix_) + "x" +
                       std::to_string(mesh_pix_) + " pix has enough finite pixels");
    }
    level = median_filter_grid(level, filter_size_);
    sigma = median_filter_grid(sigma, filter_size_);

    cv::Mat back = interpolate_grid(level, mesh_pix_, sci.size());
    cv::Mat rms = interpolate_grid(sigma, mesh_pix_, sci.size());
    // Bicubic overshoot can dip below zero between a zero-noise mesh and a noisy one.
    cv::max(rms, 0.0, rms);

    if (subtract_) {
      // NaN - x stays NaN, so blank pixels remain blank.
      cv::subtract(frame.science, back, frame.science);
      frame.header.set("BKG_SUB", true, "astroflow background plane subtracted");
    }
    frame.header.set("BKG_MESH", static_cast<long long>(mesh_pix_), "[pix] background mesh");
    frame.planes["background"] = std::move(back);
    frame.planes["rms"] = std::move(rms);
    stamp(frame);
  }

 private:
  int mesh_pix_ = 64;
  int filter_size_ = 3;
  bool subtract_ = true;
};

}  // namespace

ASTROFLOW_PLUGIN(BackgroundStage, "background", "1.0.0", "MIT",
                 "SExtractor-style mesh background and RMS maps (planes background, rms)",
                 /*needs=*/"plane:science", /*provides=*/"plane:background,plane:rms",
                 astroflow::OptionSchema()
                     .add_int("back_size", 64, "mesh size in pixels (SExtractor BACK_SIZE)", 4,
                              4096)
                     .add_int("back_filtersize", 3,
                              "median filter size of the mesh grid, odd (BACK_FILTERSIZE)", 1, 15)
                     .add_bool("subtract", true,
                               "subtract the background from the science plane (sets header "
                               "BKG_SUB = T)"))
