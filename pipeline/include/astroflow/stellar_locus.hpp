// Star/galaxy separation by light concentration against the frame's own stellar locus.
//
// The concentration of a source is the ratio of the fluxes in two circular apertures around
// its centre, c = F(r < r_in) / F(r < r_out). Every point source of a frame has the PSF's c,
// whatever its flux, while an extended object has a lower one. The locus is measured on the
// frame's confident stars (the median c and its robust scatter), and a source whose c lies
// below it by z standard deviations has its star probability p updated by Bayes' rule with a
// Gaussian likelihood for a star and a flat one for a galaxy:
//   p' = p g / (p g + 1 - p),  g = exp(-z^2 / 2)  (z > 0 only; a source as concentrated as the
// PSF or more, e.g. a cosmic ray, keeps p).
// With an outlier share e the star likelihood is the mixture (1 - e) g + e: a star's c can be
// lowered by light the catalog does not hold (an undetected neighbour in a crowded field), and a
// Gaussian alone would let one such star outweigh any network probability.
// This is the size-magnitude stellar locus that survey pipelines use (SDSS's PSF - model
// magnitude, the concentration index of star/galaxy cuts), with the PSF taken from the frame
// rather than from a header, so that it follows the seeing of each image.
#pragma once

#include <cstddef>
#include <opencv2/core/mat.hpp>
#include <vector>

namespace astroflow {

struct Concentration {
  double c = 0.0;      ///< F(r < r_in) / F(r < r_out); NaN when not measurable
  double sigma = 0.0;  ///< its standard error from the rms plane
};

/// The concentration of the light around (x, y) (0-based pixel centres) in `image`
/// (background-subtracted CV_32F, NaN = blank) with the per-pixel noise of `rms` (CV_32F).
/// Pixels on an aperture's border are split into supersample x supersample sub-pixels, so
/// that c does not depend on where the centre falls within its pixel. NaN when the outer
/// aperture leaves the image or holds a blank pixel, or when either flux is not positive.
[[nodiscard]] Concentration aperture_concentration(const cv::Mat& image, const cv::Mat& rms,
                                                   double x, double y, double r_in, double r_out,
                                                   int supersample = 5);

struct StellarLocus {
  bool calibrated = false;  ///< enough calibration stars
  std::size_t stars = 0;    ///< calibration stars used
  double centre = 0.0;      ///< median concentration of the calibration stars
  double sigma = 0.0;       ///< max(1.4826 MAD, sigma_floor x centre)
};

/// The locus of the concentrations `c` of the rows with `calibrate` set (finite c only);
/// calibrated when at least min_stars of them.
[[nodiscard]] StellarLocus fit_stellar_locus(const std::vector<double>& c,
                                             const std::vector<bool>& calibrate,
                                             std::size_t min_stars, double sigma_floor);

/// The star probability p updated by the concentration (c, its error sigma_c) against the
/// locus; p itself when the locus is not calibrated or c is not finite. `outlier` (0-1) is the
/// share of stars whose c something unseen corrupts (an undetected neighbour, a cosmic ray):
/// the star likelihood is then (1 - outlier) g + outlier, so p' >= 1/2 whatever c when
/// p >= 1 / (1 + outlier).
[[nodiscard]] double locus_star_probability(double p, const Concentration& conc,
                                            const StellarLocus& locus, double outlier = 0.0);

}  // namespace astroflow
