// evaluate_detect: scores a detection catalog against the simulator's truth table
// (`astroflow evaluate detect`).
//
// Inputs: a detection catalog with X_IMAGE / Y_IMAGE (1-based FITS pixels): astroflow's
// per-input <stem>.cat.fits / .cat.csv, a merged catalog.fits restricted to one image with
// `file`, or a SExtractor FITS_1.0 catalog (the same column names). The truth table of
// `astroflow simulate field` (<name>.truth.fits or .csv: ID, X_IMAGE, Y_IMAGE, MAG, TYPE, SNR,
// R_EFF), and optionally its artifact table (<name>.artifacts.fits: X_IMAGE, Y_IMAGE, X_END,
// Y_END), used only to say how many spurious detections sit on a cosmic ray or hot pixel.
//
// Matching (match_positions): every (truth, detection) pair closer than the match radius is
// taken in order of increasing distance, each side used at most once (one-to-one, nearest
// first); ties break on the lower detection, then truth index. This is the rule of
// bench/bench_match.cpp. Every truth row takes part, however faint, so a detection of a real
// source below the completeness limit is never counted as spurious.
//
// Metrics:
//  * completeness per truth-MAG bin (`mag_bin` wide, edges at multiples of it): matched truth
//    rows / truth rows;
//  * purity: matched detections / detections, in total and per bin of the detection's own
//    magnitude (`det_mag_column`, MAG_AUTO; NaN per bin when the column is missing);
//  * star/galaxy accuracy over matched truth rows with SNR > class_snr_min: a detection is a
//    star when class_column > class_threshold (SExtractor's CLASS_STAR > 0.5 by default);
//    skipped, with a note, when the catalog has no such column;
//  * completeness per truth-SNR bin (edges snr_edges; the last bin is open), for all truth rows
//    and for stars alone (TYPE star): e.g. the share of stars with S/N > 5 still found on a
//    denoised image; empty when the truth has no SNR column;
//  * crowding: completeness of the stars of truth SNR > class_snr_min, binned by the distance to
//    the nearest other truth row of SNR >= crowd_neighbour_snr (edges crowd_edges_pix; the last
//    bin is open and also holds stars with no such neighbour). Crowded star fields (the cores of
//    clusters on HST images) are where a network trained on sparse fields loses stars it finds
//    alone (docs/detect.md, "Crowded star fields in training"); empty without SNR and TYPE;
//  * deblending success over truth pairs closer than blend_reff_factor x the larger R_EFF of
//    the two (stars have R_EFF NaN, taken as 0), both with SNR >= blend_snr_min: the share of
//    pairs whose two members are both matched (to distinct detections, by construction);
//  * with the truth's segmentation map (value = its ID, or NUMBER: a SExtractor
//    CHECKIMAGE_TYPE SEGMENTATION map with SExtractor's catalog as the truth): the unmatched
//    truth rows the catalog splits. Such a row is split when at least two detections matched to
//    no truth row lie on its pixels, their flux-weighted mean position (weights: the catalog's
//    FLUX_AUTO, positive ones only) is within the match radius of it, and their summed flux is
//    within a factor split_flux_factor of its own (FLUX_AUTO, else the simulator's FLUX). A
//    reference catalog that leaves two stars as one object centred between them counts a miss
//    at 2 px against a catalog that finds both; this counts it apart (bench/survey_real.sh).
//
// Failure: a missing file or column throws FatalError naming the file and the column.
#pragma once

#include <cstddef>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "astroflow/catalog.hpp"

namespace astroflow {

struct DetectEvalOptions {
  double match_radius_pix = 2.0;
  double mag_bin = 0.5;
  std::string det_mag_column = "MAG_AUTO";
  std::string class_column = "CLASS_STAR";
  double class_threshold = 0.5;  ///< class_column > threshold: star
  double class_snr_min = 20.0;   ///< truth SNR above which star/galaxy accuracy is measured
  double blend_reff_factor = 2.0;
  double blend_snr_min = 10.0;  ///< both members of a close pair at least this truth SNR
  /// Lower edges of the truth-SNR completeness bins, increasing; the last bin has no top.
  std::vector<double> snr_edges = {0.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0};
  /// Crowding: lower edges (px, increasing, from 0) of the nearest-neighbour distance bins.
  std::vector<double> crowd_edges_pix = {0.0, 3.0, 5.0, 7.0, 10.0, 15.0};
  double crowd_neighbour_snr = 5.0;  ///< truth rows at least this SNR count as neighbours
  /// Splits: the detections' summed flux within this factor of the truth row's (either way).
  double split_flux_factor = 2.0;
  /// When the catalog has a FILE column (a merged catalog): keep only rows whose FILE has this
  /// file name (folders ignored). Empty: every row (the catalog must then describe one image).
  std::string file;
};

/// One-to-one nearest-first matching within `radius_pix`. det_to_truth[j] is the truth index
/// matched to detection j, or -1; truth_to_det the reverse. Non-finite positions never match.
struct PositionMatch {
  std::vector<int> det_to_truth;
  std::vector<int> truth_to_det;
  std::vector<double> distance_pix;  ///< per detection, NaN when unmatched
};
[[nodiscard]] PositionMatch match_positions(const std::vector<double>& truth_x,
                                            const std::vector<double>& truth_y,
                                            const std::vector<double>& det_x,
                                            const std::vector<double>& det_y, double radius_pix);

struct DetectMagBin {
  double mag_min = 0.0;
  double mag_max = 0.0;
  std::size_t truth = 0;  ///< truth rows with MAG in the bin
  std::size_t truth_matched = 0;
  double completeness = 0.0;   ///< NaN when truth == 0
  std::size_t detections = 0;  ///< detections with det_mag_column in the bin
  std::size_t detections_matched = 0;
  double purity = 0.0;  ///< NaN when detections == 0
};

struct DetectSnrBin {
  double snr_min = 0.0;
  double snr_max = 0.0;  ///< infinity for the last bin
  std::size_t truth = 0;
  std::size_t truth_matched = 0;
  double completeness = 0.0;  ///< NaN when truth == 0
  std::size_t stars = 0;      ///< truth rows of TYPE star in the bin
  std::size_t stars_matched = 0;
  double star_completeness = 0.0;  ///< NaN when stars == 0
};

struct DetectCrowdBin {
  double dist_min = 0.0;
  double dist_max = 0.0;  ///< infinity for the last bin
  std::size_t stars = 0;  ///< stars of truth SNR > class_snr_min with the nearest neighbour here
  std::size_t stars_matched = 0;
  double completeness = 0.0;  ///< NaN when stars == 0
};

struct DetectEvaluation {
  DetectEvalOptions options;
  std::size_t truth_rows = 0;
  std::size_t detections = 0;
  std::size_t matched = 0;
  std::size_t spurious = 0;
  bool artifacts_given = false;
  std::size_t spurious_on_artifacts = 0;  ///< spurious within the radius of an artifact
  double purity = 0.0;
  double median_offset_pix = 0.0;  ///< over matched detections
  std::vector<DetectMagBin> bins;
  bool has_det_mag = false;
  std::vector<DetectSnrBin> snr_bins;      ///< empty when the truth has no SNR column
  std::vector<DetectCrowdBin> crowd_bins;  ///< empty when the truth has no SNR or TYPE column
  // star/galaxy
  bool class_measured = false;
  std::string class_note;  ///< why it was skipped
  std::size_t class_count = 0;
  std::size_t class_correct = 0;
  double class_accuracy = 0.0;
  std::size_t class_stars = 0;
  std::size_t class_stars_correct = 0;
  std::size_t class_galaxies = 0;
  std::size_t class_galaxies_correct = 0;
  // deblending
  std::size_t blend_pairs = 0;
  std::size_t blend_resolved = 0;
  double blend_success = 0.0;  ///< NaN when no pair
  // splits (only with a truth segmentation map)
  bool split_measured = false;
  std::size_t split_unmatched = 0;  ///< truth rows matched to no detection
  std::size_t split_resolved = 0;   ///< of them, split into >= 2 detections
  /// split_components[n]: truth rows split into n detections (n >= 2)
  std::vector<std::size_t> split_components;
};

/// `artifacts` may be null; `truth_segmap` (any numeric type, value = truth ID; empty: no
/// split count) is on the image's pixel grid (detections outside it take no part). Throws
/// FatalError on a missing column.
[[nodiscard]] DetectEvaluation evaluate_detect(const Catalog& detections, const Catalog& truth,
                                               const Catalog* artifacts,
                                               const DetectEvalOptions& options = {},
                                               const cv::Mat& truth_segmap = {});

/// Reads the catalog, the truth table and, when `artifacts_path` is empty, the
/// <name>.artifacts.fits next to a <name>.truth.fits/.csv if it exists ("none": never), and the
/// truth segmentation map at `truth_segmap_path` when given (primary HDU).
[[nodiscard]] DetectEvaluation evaluate_detect_files(const std::string& catalog_path,
                                                     const std::string& truth_path,
                                                     const DetectEvalOptions& options = {},
                                                     const std::string& artifacts_path = {},
                                                     const std::string& truth_segmap_path = {});

/// Rows of `catalog` whose FILE has file name `file` (all rows when `file` is empty or there is
/// no FILE column). Throws FatalError when a FILE column names several images and `file` is
/// empty, or when no row is left.
[[nodiscard]] Catalog select_image_rows(const Catalog& catalog, const std::string& file,
                                        const std::string& what);

/// The column `name` as numbers (CSV catalogs from read_catalog_file hold text: parsed, NaN when
/// not a number). Throws FatalError "<what>: column <name> is missing".
[[nodiscard]] std::vector<double> numeric_column(const Catalog& catalog, const std::string& name,
                                                 const std::string& what);

/// Truth-table path -> sibling path with another suffix: ".../f.truth.fits" + ".truthseg.fits"
/// gives ".../f.truthseg.fits". Empty when the path does not end in .truth.fits/.truth.csv.
[[nodiscard]] std::string truth_sibling(const std::string& truth_path, const std::string& suffix);

[[nodiscard]] std::string to_text(const DetectEvaluation& e);
[[nodiscard]] std::string to_json(const DetectEvaluation& e);

}  // namespace astroflow
