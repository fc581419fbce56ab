// Pre- and post-processing shared by the CNN stages: stamp extraction with NaN padding,
// sigma-clipped background statistics, the asinh stretch of a ModelCard's normalisation,
// temperature-scaled softmax and heatmap peak decoding.
//
// These run in C++ rather than in the ONNX graph because OpenCV 4.6 cannot import asinh or
// TopK (see ONNX-NOTES.md). models/common/preprocess.py implements the same arithmetic for
// training; tests/unit/model_reference_test.cpp checks that the two agree.
#pragma once

#include <cstdint>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <string>
#include <vector>

#include "astroflow/frame.hpp"
#include "astroflow/model_card.hpp"
#include "astroflow/options.hpp"

namespace astroflow {

struct ClippedStats {
  double median = 0.0;
  double mean = 0.0;         ///< mean of the kept pixels
  double stddev = 0.0;       ///< population standard deviation of the kept pixels
  std::size_t n_used = 0;    ///< finite pixels kept after clipping (0: no finite pixel)
  std::size_t n_finite = 0;  ///< finite pixels before clipping
};

/// Iterative sigma clipping over the finite pixels of a CV_32F image (any ROI): start from all
/// finite pixels; each iteration computes the median (mean of the two middle values for an even
/// count), mean and population standard deviation of the kept pixels, then keeps
/// |x - median| <= nsigma * stddev; it stops after `iterations`, when nothing changes, or when
/// fewer than `min_kept` pixels would be left (the statistics are then those of the last set).
[[nodiscard]] ClippedStats sigma_clipped_stats(const cv::Mat& image, double nsigma = 3.0,
                                               int iterations = 5, std::size_t min_kept = 1);

/// In-place asinh of every pixel of a CV_32F image (finite values; within 5e-7 of std::asinh
/// for |t| < 1e4).
void asinh_in_place(cv::Mat& t);

/// CV_8U mask of a CV_32F image's blank (non-finite) pixels: 255 there, 0 elsewhere. Not
/// `image != image`: OpenCV 4.6's vectorised compare gives 0 for NaN != NaN (only the scalar
/// tail of a row gets it right), so that idiom misses most NaN pixels.
[[nodiscard]] cv::Mat blank_mask(const cv::Mat& image);

/// Fills the blank pixels of a CV_32F image in place with the sigma-clipped median of its
/// finite ones (0 when none), so that resizing or smoothing does not spread NaN, and returns
/// their blank_mask for the caller to blank them again.
cv::Mat fill_blanks_with_median(cv::Mat& image);

/// A size x size CV_32F stamp whose centre pixel (size/2, size/2), 0-based, is at the 0-based
/// image position (round(x0_pix), round(y0_pix)). Pixels outside the image are NaN.
[[nodiscard]] cv::Mat extract_stamp(const cv::Mat& image, double x0_pix, double y0_pix, int size);

struct NormalisedStamp {
  double background = 0.0;
  double rms = 0.0;
  double nan_fraction = 0.0;  ///< share of pixels that were NaN and were filled
};

/// Applies a card's normalisation to one CV_32F stamp, writing `out` (same size, CV_32F).
/// NaN pixels are filled with the background (so they become 0 after subtraction). A stamp with
/// no finite pixel throws FrameError. A zero or non-finite rms falls back to 1.
NormalisedStamp normalise_stamp(const cv::Mat& stamp, const Normalisation& norm, cv::Mat& out);

/// In-place softmax of each row of a CV_32F matrix of logits divided by `temperature`, plus
/// `bias` per column when given (one entry per column).
void softmax_rows(cv::Mat& logits, double temperature = 1.0, const std::vector<double>& bias = {});

struct Peak {
  int x_pix = 0;  ///< 0-based
  int y_pix = 0;
  float value = 0.0f;
};

/// Local maxima of a CV_32F heatmap that are >= threshold and the largest value in their
/// (2 * radius + 1)^2 neighbourhood, strongest first; ties resolve to the first in raster order.
[[nodiscard]] std::vector<Peak> find_peaks(const cv::Mat& heatmap, float threshold, int radius = 1);

/// The image-level normalisation of the CNN stages that tile whole frames (denoise, detect):
/// t = (science - background) / rms with the `background` stage's planes; `subtracted` (header
/// BKG_SUB = T) means the science plane already had the background removed, so b = 0. Pixels
/// where the science, background or rms value is not finite, or rms <= 0, become 0 (= the
/// background) and are marked 1 in `blank` (CV_8U). Throws FrameError when the planes do not
/// match the science plane in size or type (CV_32F).
[[nodiscard]] cv::Mat normalise_by_planes(const cv::Mat& science, const cv::Mat& background,
                                          const cv::Mat& rms, bool subtracted, cv::Mat& blank);

/// normalise_by_planes on a frame's "background" and "rms" planes (`subtracted` from its header
/// card BKG_SUB = T). Throws FrameError naming `stage` when a plane is missing.
[[nodiscard]] cv::Mat normalise_frame_by_planes(const Frame& frame, const std::string& stage,
                                                cv::Mat& blank);

/// SExtractor's saturation level (SATUR_LEVEL, SATUR_KEY) of a frame, in the units of its pixels
/// as read (sky included): `level` when > 0, otherwise the header keyword `key` (e.g. SATURATE)
/// when it is present and > 0; nullopt when neither gives one.
[[nodiscard]] std::optional<double> saturation_level(const Header& header, double level,
                                                     const std::string& key);

/// How a stage finds saturated pixels: by value (SExtractor's SATUR_LEVEL and SATUR_KEY) and by
/// the frame's mask plane (e.g. HST's DQ, where 256 and 2048 mark full-well and A-to-D
/// saturation).
struct SaturationOptions {
  double level = 0.0;            ///< saturation_level; 0: from the header keyword `key`
  std::string key = "SATURATE";  ///< saturation_key; empty: none
  std::int64_t mask_bits = 0;    ///< saturation_mask_bits; 0: the mask is not read
};

/// Adds the options saturation_level, saturation_key and saturation_mask_bits to a stage's
/// schema (the `detect` and `sources` stages' FLAGS 4).
OptionSchema& add_saturation_options(OptionSchema& schema);

/// Adds the options tile, overlap and batch of a stage that runs a fully convolutional network on
/// windows fitted to each frame (balanced_tile, tile_blend.hpp): the `detect` and `segment`
/// stages.
OptionSchema& add_network_window_options(OptionSchema& schema);

/// The SaturationOptions of a stage's options (add_saturation_options).
[[nodiscard]] SaturationOptions saturation_options(const Options& options);

/// SExtractor's FLAGS 4 per label: entry l (1..n_labels) is true when a pixel of label l in
/// `segmap` (CV_32S, the frame's size) is at or above the saturation level in the frame's
/// science plane as read, i.e. with the "background" plane added back when the background stage
/// subtracted it (BKG_SUB = T); or when a pixel whose mask has one of `mask_bits` lies in label l
/// or next to it (8-connected: a saturated core the mask blanked is in no footprint, its rim is).
/// Entry 0 is unused. Blank (NaN) pixels never reach the level.
[[nodiscard]] std::vector<bool> saturated_labels(const Frame& frame, const cv::Mat& segmap,
                                                 int n_labels, const SaturationOptions& options);

/// The tile size at which a stage runs a card's network over whole images (for a card with
/// input.size_multiple: the largest window, see balanced_tile): `tile` 0 means the card's input
/// height, or kFittedWindowMax (tile_blend.hpp) when the card has input.size_multiple; another
/// value must equal the card's height, or be a multiple of input.size_multiple. `overlap` may be at
/// most half the tile. Throws FatalError naming the stage, the option and the card otherwise.
[[nodiscard]] int checked_network_tile(const ModelCard& card, const std::string& stage_name,
                                       int tile, int overlap);

}  // namespace astroflow
