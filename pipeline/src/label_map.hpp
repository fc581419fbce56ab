// label_map: integer label images for the evaluate_* reports (private to libastroflow):
// segmentation maps (value = NUMBER or truth ID) and class maps, read from FITS.
#pragma once

#include <opencv2/core.hpp>
#include <string>

namespace astroflow {

/// `m` as CV_32S labels; NaN (blank) pixels of a floating-point map become -1 (ignored).
/// Throws FatalError "<what>: expected a single-plane image" for a multi-channel map.
[[nodiscard]] cv::Mat as_labels(const cv::Mat& m, const std::string& what);

/// The primary image of the FITS file at `path`, as read (not yet as_labels). Throws FatalError
/// naming the path when the file is missing or has no readable primary image.
[[nodiscard]] cv::Mat read_label_map(const std::string& path);

}  // namespace astroflow
