// ModelCard: the contract between a trained network (model.onnx) and the stage that runs it,
// parsed from models/<name>/model.yaml.
//
// The card states what the network expects (input shape, bands, pixel scale it was trained at,
// how pixels are normalised) and what it produces (output semantics, class names), plus the
// provenance needed to trust it (opset, sha256 of the ONNX file, training recipe, seeds,
// held-out test metrics). OnnxModel enforces the card at load time.
//
// Failure: every problem (file missing, YAML syntax, missing or mistyped field, impossible
// value) throws ModelCardError (a FatalError) whose message starts with
// "<card path>:<line>:<col>: <key path>: " so a person can fix the card directly.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "astroflow/error.hpp"

namespace astroflow {

class ModelCardError : public FatalError {
 public:
  using FatalError::FatalError;
};

/// How raw pixels become network input; applied in C++ (preprocess.hpp) and, identically, in the
/// training recipe (models/common/preprocess.py).
struct Normalisation {
  /// "asinh": y = asinh((x - background) / (scale * rms));
  /// "linear": y = (x - background) / (scale * rms);  "none": y = x.
  std::string method = "asinh";
  /// "median_clip": background and rms are the sigma-clipped median and standard deviation of
  /// the finite pixels of each stamp (see sigma_clipped_stats); "none": background 0, rms 1.
  std::string background = "median_clip";
  double scale = 3.0;       ///< softening in units of the clipped rms
  double clip_sigma = 3.0;  ///< clipping threshold in units of the clipped rms
  int clip_iterations = 5;
};

struct ModelCard {
  std::string card_path;   ///< the model.yaml read
  std::string model_path;  ///< the ONNX file, resolved relative to the card's folder

  std::string name;     ///< e.g. "classify"
  std::string task;     ///< "classification", "detection", "segmentation", "denoising"
  std::string version;  ///< card/model version string

  /// NCHW; the batch entry is -1 (dynamic) or a fixed batch size.
  std::vector<std::int64_t> input_shape;
  std::vector<std::string> bands;   ///< one per input channel, e.g. ["F814W"] or ["any"]
  double pixel_scale_arcsec = 0.0;  ///< scale of the training images
  /// PSF FWHM range of the training images in arcsec (input.psf_fwhm_arcsec: [min, max]; both
  /// 0: the card states none). A stage may bring a sharper image to min (classify's psf_match).
  double psf_fwhm_min_arcsec = 0.0;
  double psf_fwhm_max_arcsec = 0.0;
  /// 0: the network takes H x W of input.shape only. > 0: it is fully convolutional and takes
  /// any H and W that are multiples of this (input.shape gives the size it was trained and
  /// checked at); input.size_multiple in the card.
  int size_multiple = 0;
  Normalisation normalisation;

  /// "logits" (softmax applied by the stage), "probabilities", "heatmap", "image", "mask".
  std::string output_semantics;
  std::vector<std::string> class_names;  ///< in output order; required for classification
  double temperature = 1.0;  ///< calibration: probabilities = softmax(logits / temperature)
  /// Per-class offsets added after the temperature: softmax(logits / temperature + logit_bias),
  /// the decision rule chosen on the validation set (output.logit_bias; empty: none).
  std::vector<double> logit_bias;
  /// Heatmap models: the peak score a detection needs, chosen on the validation set
  /// (output.score_threshold, in (0, 1); 0: the card has none).
  double score_threshold = 0.0;
  /// Heatmap models: the heatmap value an isophotal object of the detect stage's rescue_snr
  /// needs (output.rescue_score, in (0, 1); 0: the card has none).
  double rescue_score = 0.0;

  int opset = 0;
  std::string sha256;  ///< hex sha256 of the ONNX file

  // Provenance (informative; not enforced beyond presence of the recipe).
  std::string training_recipe;  ///< the command that retrains the model from scratch
  std::vector<std::int64_t> seeds;
  double training_time_s = 0.0;
  std::map<std::string, double> test_metrics;  ///< e.g. accuracy, ece, recall_<class>

  [[nodiscard]] std::int64_t channels() const { return input_shape.at(1); }
  [[nodiscard]] std::int64_t height_pix() const { return input_shape.at(2); }
  [[nodiscard]] std::int64_t width_pix() const { return input_shape.at(3); }

  /// Parses and checks a card. Required: name, file, input.shape (4 entries, C/H/W > 0),
  /// input.bands (C entries), input.pixel_scale_arcsec (> 0), normalisation.{method,
  /// background, scale}, output.semantics, opset, sha256 (64 hex digits), training.recipe;
  /// output.class_names (non-empty, unique) when semantics is "logits"/"probabilities".
  static ModelCard load(const std::string& card_path);

  /// The card for a path given by a user: a .yaml/.yml path is the card itself; for an ONNX
  /// path, "model.yaml" in the same folder, else "<stem>.yaml" beside it. Throws ModelCardError
  /// naming the path(s) tried when none exists.
  static std::string card_path_for(const std::string& model_or_card_path);
};

}  // namespace astroflow
