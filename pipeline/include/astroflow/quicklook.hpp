// Quick-look PNGs for the run report: an asinh-stretched image with the detections drawn.
//
// Orientation: north-up conventions put FITS row 1 at the bottom (as DS9 shows it), so the
// PNG is flipped vertically: its top row is the image's last row.
// Stretch: (v - median) / (k * sigma_MAD), then asinh, scaled so the 99.5th percentile is white;
// NaN pixels are black. Statistics use at most ~65k sampled pixels, so cost is independent of
// size beyond one pass. Images larger than max_size_pix on either axis are shrunk (INTER_AREA).
// Overlays: segmentation outlines (cv::findContours on segmap > 0) in green, and an ellipse of
// semi-axes ellipse_scale * (A_IMAGE, B_IMAGE) at angle THETA_IMAGE for each catalog row in red.
#pragma once

#include <opencv2/core/mat.hpp>
#include <string>

#include "astroflow/catalog.hpp"

namespace astroflow {

struct QuicklookOptions {
  int max_size_pix = 1024;       ///< longest side of the PNG
  double ellipse_scale = 3.0;    ///< ellipse semi-axes in units of A_IMAGE/B_IMAGE
  double softening_sigma = 3.0;  ///< asinh softening, in units of the sky noise
  double black_sigma = 0.0;      ///< black level: this many sky sigmas below the median
};

/// The quick-look as CV_8UC3 (BGR). `segmap` (CV_32S, same size as science) may be empty;
/// catalog rows without X_IMAGE/Y_IMAGE/A_IMAGE/B_IMAGE/THETA_IMAGE are skipped.
/// Throws std::invalid_argument when science is empty or not CV_32FC1.
[[nodiscard]] cv::Mat render_quicklook(const cv::Mat& science, const Catalog& catalog,
                                       const cv::Mat& segmap, const QuicklookOptions& options = {});

/// Two images of one size side by side (left | 4-pixel grey gap | right), both with the stretch
/// of `left` (so a denoised image is shown in the units of its raw input; the pipeline's raw |
/// denoised quick-look uses softening 1 sigma and black 2 sigma below the median, which shows
/// the sky noise), each shrunk to at
/// most max_size_pix and flipped like render_quicklook, with a label in the top-left corner of
/// each panel. CV_8UC3 (BGR). Throws std::invalid_argument on empty, non-CV_32FC1 or unequal
/// images.
[[nodiscard]] cv::Mat render_side_by_side(const cv::Mat& left, const cv::Mat& right,
                                          const std::string& left_label,
                                          const std::string& right_label,
                                          const QuicklookOptions& options = {});

/// PNG-encodes and writes atomically. Throws std::runtime_error naming the path.
void write_png(const std::string& path, const cv::Mat& image);

}  // namespace astroflow
