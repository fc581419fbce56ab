// SExtractor's multi-threshold deblender (Bertin & Arnouts 1996, sect. 3.3) and the Gaussian
// detection filter, shared by the stages that find sources on isophotes (sources, and detect's
// isophotal rescue).
#pragma once

#include <opencv2/core/mat.hpp>
#include <vector>

namespace astroflow {

/// Normalised (sum = 1) 1-D Gaussian of the given FWHM, sampled at pixel centres, truncated at
/// about 0.7 FWHM: 5 taps for FWHM 3, the size of SExtractor's gauss_3.0_5x5.conv.
[[nodiscard]] cv::Mat gaussian_kernel_1d(double fwhm_pix);

/// One object of a deblended component: pixels as 0-based linear indices into the image.
struct DeblendedObject {
  std::vector<int> pix;
  bool blended = false;  ///< split from a component holding more than one object
};

/// Runs on the connected components of the filtered (detection) image `filtered` (CV_32F,
/// continuous); it keeps a reference to it.
class Deblender {
 public:
  Deblender(const cv::Mat& filtered, int min_area_pix, int nthresh, double mincont)
      : filt_(filtered), min_area_(min_area_pix), nthresh_(nthresh), mincont_(mincont) {}

  /// Splits `component` (detected above `base_threshold`) into one or more objects.
  [[nodiscard]] std::vector<DeblendedObject> run(const std::vector<int>& component,
                                                 double base_threshold) const;

 private:
  [[nodiscard]] double value(int p) const { return static_cast<double>(filt_.ptr<float>()[p]); }
  void split(const std::vector<int>& pix, int level, std::vector<std::vector<int>>& cores) const;
  [[nodiscard]] std::vector<DeblendedObject> assign(
      const std::vector<int>& component, const std::vector<std::vector<int>>& cores) const;

  const cv::Mat& filt_;
  int min_area_;
  int nthresh_;
  double mincont_;
  mutable std::vector<double> levels_;
  mutable double min_flux_ = 0.0;
};

}  // namespace astroflow
