// evaluate_denoise: scores a denoised image against the simulator's noiseless truth
// (`astroflow simulate field` writes <name>.fits, <name>.model.fits and <name>.truth.fits).
//
// Inputs: the noisy image, the denoised image and the noiseless model (all CV_32F, same size),
// and the truth table (columns X_IMAGE, Y_IMAGE 1-based, TYPE, R_EFF, SNR). Blank pixels (NaN
// in noisy or denoised) are ignored everywhere.
//
// Sky: the model has no sky, the noisy image has it, and the denoised image has it unless the
// background stage subtracted it first. Each image therefore first loses a smooth sky estimated
// from its residual against the truth (median of image - truth in `sky_mesh_pix` meshes,
// bilinear between mesh centres). This removes only scales >= the mesh; an offset or bias the
// denoiser makes inside an aperture is still measured.
//
// Metrics (sigma = the noise RMS of the noisy image, 1.4826 MAD of noisy - truth):
//  * background pixels: truth < 0.1 sigma, and not within 2 px of a pixel where
//    |noisy - truth| > 6 sigma (cosmic rays, hot pixels: they are not in the truth);
//  * noise_reduction = RMS(noisy - truth) / RMS(denoised - truth) over background pixels;
//  * PSNR = 20 log10(peak / RMSE) over all non-artifact pixels, peak = max(truth); the gain in
//    dB does not depend on the peak;
//  * SSIM: Gaussian window (sigma 1.5 px), images clipped to [-3 sigma, 30 sigma] and
//    L = 33 sigma, so faint structure, not star cores, decides it;
//  * aperture flux: for each truth source fully inside the image, the sum within 1.5 R_EFF
//    (galaxies) or 1.5 FWHM (stars) around the truth position, relative to the same aperture
//    on the truth image: bias = median(F_img / F_truth - 1), scatter = 1.4826 MAD, per S/N bin;
//  * star FWHM: for stars with SNR >= star_snr_min, 2.3548 sqrt((Ixx + Iyy) / 2) from
//    flux-weighted second moments within 2 FWHM; change = median(FWHM_den / FWHM_truth - 1);
//  * whole-line steps: the same difference averaged over every interior column and row (any
//    seam, wherever its tile grid lies), largest and median over the lines;
//  * seams: for the tile grid of the denoise stage (tile, overlap), along every tile edge
//    column/row p, the mean over background pixels of one tile-length segment of
//    r[p] - r[p - 1], r = denoised - truth, in units of sigma; the largest |value| is reported,
//    beside the same statistic at columns/rows a quarter tile away from any edge (the noise
//    floor of the estimator).
//
// Failure: size mismatch or missing truth columns throw FatalError.
#pragma once

#include <cstddef>
#include <limits>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "astroflow/catalog.hpp"

namespace astroflow {

struct DenoiseEvalOptions {
  double psf_fwhm_pix = 3.0;  ///< the field's PSF (header PSFFWHM)
  int sky_mesh_pix = 64;
  std::vector<double> snr_edges = {5, 10, 20, 50, 100, std::numeric_limits<double>::infinity()};
  double star_snr_min = 50.0;
  int tile_pix = 256;  ///< of the denoise stage, for the seam metric; 0: skip seams
  int overlap_pix = 32;
};

struct FluxBiasBin {
  double snr_min = 0.0;
  double snr_max = 0.0;
  std::size_t count = 0;
  double median_bias_noisy = 0.0;  ///< fraction
  double median_bias_denoised = 0.0;
  double scatter_noisy = 0.0;  ///< 1.4826 MAD of the fractional error
  double scatter_denoised = 0.0;
};

/// One truth source's aperture flux relative to the truth: F / F_true - 1.
struct FluxSample {
  std::size_t truth_row = 0;
  double snr = 0.0;
  double error_noisy = 0.0;
  double error_denoised = 0.0;
};

struct DenoiseEvaluation {
  double sigma_noisy = 0.0;  ///< noise RMS of the noisy image (robust)
  std::size_t background_pixels = 0;
  double rms_noisy = 0.0;  ///< RMS(noisy - truth) over background pixels
  double rms_denoised = 0.0;
  double noise_reduction = 0.0;
  double psnr_noisy_db = 0.0;
  double psnr_denoised_db = 0.0;
  double psnr_gain_db = 0.0;
  double ssim_noisy = 0.0;
  double ssim_denoised = 0.0;
  std::vector<FluxBiasBin> flux_bins;
  /// Every source that entered flux_bins (so several fields can be pooled into one median).
  std::vector<FluxSample> flux_samples;
  std::size_t stars_measured = 0;
  double star_fwhm_truth_pix = 0.0;  ///< median
  double star_fwhm_change = 0.0;     ///< median fraction, denoised vs truth
  double star_fwhm_change_noisy = 0.0;
  double max_seam_jump_sigma = 0.0;
  double max_control_jump_sigma = 0.0;  ///< same statistic away from the seams
  /// Largest |mean over a whole column or row of r[p] - r[p-1]| (r = denoised - truth, background
  /// pixels, lines >= 8 px inside the image), in sigma: a seam of any origin (network tiles, the
  /// pipeline's stitch lines) steps along a whole line; and the median over all lines, the
  /// statistic's noise floor.
  double max_line_step_sigma = 0.0;
  double median_line_step_sigma = 0.0;
};

[[nodiscard]] DenoiseEvaluation evaluate_denoise(const cv::Mat& noisy, const cv::Mat& denoised,
                                                 const cv::Mat& truth, const Catalog& truth_table,
                                                 const DenoiseEvalOptions& options = {});

/// Reads the three images (primary HDU) and the truth table (FITS or CSV), takes psf_fwhm_pix
/// from the noisy image's PSFFWHM card when present, and evaluates.
[[nodiscard]] DenoiseEvaluation evaluate_denoise_files(const std::string& noisy_path,
                                                       const std::string& denoised_path,
                                                       const std::string& truth_image_path,
                                                       const std::string& truth_table_path,
                                                       DenoiseEvalOptions options = {});

/// Human-readable report (what `astroflow evaluate denoise` prints).
[[nodiscard]] std::string format_denoise_report(const DenoiseEvaluation& e);

/// The same as JSON (`astroflow evaluate denoise --json`); non-finite numbers are null.
[[nodiscard]] std::string to_json(const DenoiseEvaluation& e);

}  // namespace astroflow
