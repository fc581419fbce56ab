// evaluate_segment: scores a segmentation map (and optionally a per-pixel class map) against
// the simulator's truth (`astroflow evaluate segment`).
//
// Inputs: the detection catalog (X_IMAGE, Y_IMAGE, NUMBER; without NUMBER, row k is NUMBER
// k + 1), its segmentation map (int32, 0 = background, value = NUMBER: astroflow's
// <stem>.segmap.fits or SExtractor's SEGMENTATION check image), the truth table and the truth
// segmentation of `astroflow simulate field` (<name>.truthseg.fits, value = truth ID). Optional:
// a class map and a truth class map (integer label images, same size; 0 = background).
//
// Per-object footprint IoU: detections are matched to truth rows as in evaluate_detect
// (match_positions, one-to-one, nearest first). For each matched pair whose truth footprint is
// not empty, IoU = |det footprint AND truth footprint| / |det footprint OR truth footprint|,
// the footprints being the pixels of the two maps holding the pair's NUMBER and ID. A matched
// detection with no pixel in the segmap has IoU 0. Reported: the count, median, quartiles,
// mean and the share with IoU >= 0.5.
//
// Per-pixel class accuracy (when both class maps are given): over all pixels where both maps
// are finite, and over the truth foreground (truth class != 0); plus the confusion matrix
// (rows truth label, columns predicted label) and per-truth-label recall.
//
// Failure: maps of different sizes, or a missing column or file, throw FatalError.
#pragma once

#include <cstddef>
#include <map>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "astroflow/catalog.hpp"
#include "astroflow/evaluate_detect.hpp"

namespace astroflow {

struct SegmentEvalOptions {
  double match_radius_pix = 2.0;
  std::string file;  ///< as DetectEvalOptions::file
  /// Names of the class-map labels 0, 1, ... (Morpheus' order, as the segment plugin writes).
  std::vector<std::string> class_names = {"background", "spheroid", "disk", "irregular",
                                          "point_source"};
};

struct SegmentEvaluation {
  SegmentEvalOptions options;
  std::size_t matched = 0;          ///< matched (truth, detection) pairs
  std::size_t objects = 0;          ///< of those, with a non-empty truth footprint
  std::size_t empty_detection = 0;  ///< of `objects`, detections with no segmap pixel
  double iou_median = 0.0;          ///< NaN when objects == 0
  double iou_q1 = 0.0;
  double iou_q3 = 0.0;
  double iou_mean = 0.0;
  double iou_above_half = 0.0;  ///< share with IoU >= 0.5
  std::vector<double> iou;      ///< per object, in truth order
  // per-pixel classes
  bool class_measured = false;
  std::string class_note;
  std::size_t class_pixels = 0;
  double pixel_accuracy = 0.0;
  std::size_t foreground_pixels = 0;
  double foreground_accuracy = 0.0;
  std::map<int, std::map<int, std::size_t>> confusion;  ///< [truth label][predicted label]
};

/// `classmap` and `truth_classmap` may be empty Mats (the class metric is then skipped with a
/// note). Maps are CV_32S or CV_32F holding integers.
[[nodiscard]] SegmentEvaluation evaluate_segment(const Catalog& detections, const cv::Mat& segmap,
                                                 const Catalog& truth, const cv::Mat& truthseg,
                                                 const cv::Mat& classmap,
                                                 const cv::Mat& truth_classmap,
                                                 const SegmentEvalOptions& options = {});

/// Reads the files (primary HDU of each map) and evaluates. An empty truthseg_path means the
/// <name>.truthseg.fits beside the truth table; an empty truth_classmap_path means
/// <name>.truthclass.fits beside it when that file exists.
[[nodiscard]] SegmentEvaluation evaluate_segment_files(
    const std::string& catalog_path, const std::string& segmap_path, const std::string& truth_path,
    std::string truthseg_path = {}, const std::string& classmap_path = {},
    std::string truth_classmap_path = {}, const SegmentEvalOptions& options = {});

[[nodiscard]] std::string to_text(const SegmentEvaluation& e);
[[nodiscard]] std::string to_json(const SegmentEvaluation& e);

}  // namespace astroflow
