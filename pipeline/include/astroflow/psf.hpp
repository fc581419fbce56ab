// The PSF of a frame, and bringing a sharper image to a model's PSF.
//
// A CNN trained on images of one seeing meets a much sharper PSF as something new: the classify
// models were trained on PSFs of FWHM 0.15-0.24 arcsec, and on stamps of 0.06-0.1 arcsec
// models/classify's accuracy falls from 0.95 to 0.80 (0.94 with psf_match; docs/models.md,
// "PSF matching"). psf_match_sigma_pix() gives the Gaussian that brings such an image to a PSF
// the model knows, the PSF homogenisation of multi-band photometry, and psf_match_stamp()
// applies it, cleaning cosmic-ray hits first and putting the noise back. A broader PSF cannot
// be undone and is only reported.
#pragma once

#include <cstddef>
#include <cstdint>
#include <opencv2/core/mat.hpp>

#include "astroflow/frame.hpp"

namespace astroflow {

/// FWHM of a Gaussian over its sigma: 2 sqrt(2 ln 2).
inline constexpr double kFwhmPerSigma = 2.3548200450309493;

/// Adaptive (Gaussian-weighted, weight matched to the source) second moments of the source at
/// the 0-based position (x, y) of a background-subtracted CV_32F image: the weight's sigma is
/// iterated to the source's sigma (for a Gaussian source they agree at convergence, as in the
/// adaptive moments of HSM and SExtractor's windowed measurements). Returns the FWHM of the
/// Gaussian of the same determinant radius, in pixels, or NaN when the moments do not converge
/// (too few positive pixels, an off-image position, NaN pixels in reach). It is the FWHM of a
/// Gaussian, within 3% for a point-sampled Gaussian of FWHM >= 2 px (1.63 px for 1.5 px:
/// undersampled); a Moffat profile's wings make it larger than the Moffat's FWHM (by 20% at
/// beta 3 and FWHM 2 px, 14% at 3.5 px; tests/unit/psf_test.cpp).
[[nodiscard]] double adaptive_fwhm_pix(const cv::Mat& image, double x, double y);

struct PsfEstimate {
  double fwhm_pix = 0.0;  ///< median adaptive FWHM of the stars measured; 0: no estimate
  std::size_t stars = 0;  ///< point-like rows measured
};

/// The PSF FWHM of a frame from its catalogue's point-like rows: CLASS_STAR >= 0.5 (without
/// that column, e.g. after the sources stage, there is no estimate), FLAGS bit 4 (saturated) clear
/// (when FLAGS exists), FLUX_AUTO/FLUXERR_AUTO
/// >= 30 (when both exist), at least 8 pixels inside the frame. X_IMAGE/Y_IMAGE are full-image
/// positions (1-based; a tile's offset is taken off). The science plane is taken as it is when
/// the header says BKG_SUB = T (the background stage subtracted its plane), less the
/// background plane when there is one, else less each row's local sigma-clipped median. Each
/// row is measured in a 31 x 31 box, so PSFs broader than about 8 px FWHM give no estimate. Needs
/// `min_stars` measured rows; fewer gives fwhm_pix 0. Rows are taken brightest first (FLUX_AUTO),
/// at most max_rows.
[[nodiscard]] PsfEstimate estimate_psf_fwhm(const Frame& frame, std::size_t min_stars = 10,
                                            std::size_t max_rows = 2000);

/// Sigma, in the frame's pixels, of the Gaussian that brings a PSF of frame_fwhm_arcsec to
/// target_fwhm_arcsec on pixels of pixel_scale_arcsec (Gaussian widths add in quadrature); 0
/// when the frame's PSF is not sharper than the target or an argument is not positive.
[[nodiscard]] double psf_match_sigma_pix(double frame_fwhm_arcsec, double target_fwhm_arcsec,
                                         double pixel_scale_arcsec);

/// Convolves a CV_32F stamp in place with a normalised Gaussian of sigma_pix (none for 0). NaN
/// pixels are filled with the stamp's sigma-clipped median for the convolution and stay NaN;
/// the border is reflected. Callers cut the stamp with a margin of 3 sigma when its edge matters.
void gaussian_smooth_in_place(cv::Mat& stamp, double sigma_pix);

/// PSF matching of one stamp: clean_sharp_pixels for a PSF of fwhm_pix (none for 0; smoothed, a
/// cosmic-ray hit would become a blob the size of the PSF), gaussian_smooth_in_place, then white
/// noise (cv::RNG(seed)) that brings the sky's sigma-clipped rms back to the stamp's before
/// smoothing, so the network sees the noise it was trained with rather than a nearly noiseless
/// sky.
void psf_match_stamp(cv::Mat& stamp, double sigma_pix, std::uint64_t seed, double fwhm_pix = 0.0);

/// Pixels narrower than a PSF of fwhm_pix can make (cosmic-ray hits, hot pixels): at least
/// 5 sky_rms above `sky`, and along one of the four directions (x, y, the diagonals) either
/// both neighbours hold less than half of what a Gaussian PSF centred on the pixel gives them,
/// or (for PSFs of FWHM >= 2 px, where a star cannot be that narrow) one neighbour is a bright
/// partner and the pixels on both sides of the pair hold less than half of what a PSF centred
/// between the two gives them. Each is interpolated across that direction. Returns how many.
int clean_sharp_pixels(cv::Mat& stamp, double fwhm_pix, double sky, double sky_rms);

}  // namespace astroflow
