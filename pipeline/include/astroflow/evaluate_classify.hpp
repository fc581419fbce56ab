// evaluate_classify: scores a run's classification catalog against the simulator's labels
// (`astroflow evaluate classify`).
//
// Inputs: the run's catalog (FITS or CSV, columns FILE, CLASS and P_<CLASS> per class) and the
// labels table written by `astroflow simulate cutouts` (labels.csv or labels.fits, columns FILE,
// CLASS, CLASS_ID, SNR). Rows are matched on the file name of FILE (folders are ignored). A label
// with no catalog row, or a row with an empty CLASS (not classified), counts as wrong and is
// also reported as "unclassified".
//
// Metrics: accuracy, per-class recall and precision, the confusion matrix (rows true, columns
// predicted), accuracy in S/N bins, and the expected calibration error over 15 equal-width bins
// of the top probability: ECE = sum_b (n_b / N) |accuracy_b - mean confidence_b|
// (the same definition as models/common/metrics.py).
//
// Failure: a missing file or column throws FatalError naming the file and the column.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "astroflow/catalog.hpp"

namespace astroflow {

struct SnrBinAccuracy {
  double snr_min = 0.0;
  double snr_max = 0.0;  ///< +inf for the last bin
  std::size_t count = 0;
  double accuracy = 0.0;
};

struct ClassifyEvaluation {
  std::vector<std::string> class_names;  ///< in CLASS_ID order of the labels
  std::size_t labels = 0;                ///< rows in the label table
  std::size_t unclassified = 0;          ///< labels without a catalog row or without a CLASS
  double accuracy = 0.0;                 ///< over all labels
  std::vector<std::vector<std::size_t>> confusion;  ///< [true][predicted], classified only
  std::vector<double> recall;     ///< per true class, over all labels of that class
  std::vector<double> precision;  ///< per predicted class
  std::vector<SnrBinAccuracy> snr_bins;
  double ece = 0.0;  ///< over classified rows with probabilities
  int ece_bins = 15;
};

/// S/N bin edges used by default (the last bin is open-ended); same as models/common/metrics.py.
[[nodiscard]] std::vector<double> default_snr_edges();

[[nodiscard]] ClassifyEvaluation evaluate_classify(
    const Catalog& predictions, const Catalog& labels,
    const std::vector<double>& snr_edges = default_snr_edges(), int ece_bins = 15);

/// Reads a catalog from .csv (every column as text; numbers are parsed where needed) or from a
/// FITS table (read_fits_catalog). Throws FatalError naming the file.
[[nodiscard]] Catalog read_catalog_file(const std::string& path);

/// Convenience for the CLI: reads both files and evaluates.
[[nodiscard]] ClassifyEvaluation evaluate_classify_files(const std::string& catalog_path,
                                                         const std::string& labels_path);

/// Plain-text report (accuracy, recall table, confusion matrix, S/N bins, ECE).
[[nodiscard]] std::string to_text(const ClassifyEvaluation& e);
/// The same as a JSON document.
[[nodiscard]] std::string to_json(const ClassifyEvaluation& e);

}  // namespace astroflow
