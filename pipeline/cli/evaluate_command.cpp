// `astroflow evaluate classify|denoise|detect|segment`: thin CLI over evaluate_*.hpp.
#include "evaluate_command.hpp"

#include <iostream>

#include "astroflow/atomic_file.hpp"
#include "astroflow/evaluate_classify.hpp"
#include "astroflow/evaluate_denoise.hpp"
#include "astroflow/evaluate_detect.hpp"
#include "astroflow/evaluate_segment.hpp"

namespace astroflow::cli {

CLI::App* add_evaluate_command(CLI::App& app, EvaluateArgs& a) {
  auto* ev = app.add_subcommand("evaluate", "score a run's outputs against simulator truth");
  ev->require_subcommand(1);
  auto* cc = ev->add_subcommand(
      "classify", "accuracy, recall, confusion matrix, accuracy vs S/N and calibration (ECE)");
  cc->add_option("--catalog", a.catalog, "the run's catalog (catalog.csv or catalog.fits)")
      ->required();
  cc->add_option("--labels", a.labels, "labels.csv or labels.fits from simulate cutouts")
      ->required();
  cc->add_option("--json", a.json, "also write the report as JSON to this file");
  a.classify_cmd = cc;
  auto* dc = ev->add_subcommand(
      "denoise", "noise reduction, PSNR/SSIM gain, flux bias by S/N, star FWHM change, seams");
  dc->add_option("--noisy", a.noisy, "the noisy input image")->required();
  dc->add_option("--denoised", a.denoised, "the run's <stem>.denoised.fits")->required();
  dc->add_option("--truth", a.truth, "the noiseless image (simulate field's <name>.model.fits)")
      ->required();
  dc->add_option("--truth-table", a.truth_table, "simulate field's <name>.truth.fits or .csv")
      ->required();
  dc->add_option("--tile", a.tile_pix, "the denoise stage's tile size (0: skip the seam metric)");
  dc->add_option("--overlap", a.overlap_pix, "the denoise stage's tile overlap");
  dc->add_option("--json", a.json, "also write the report as JSON to this file");
  a.denoise_cmd = dc;
  auto* de = ev->add_subcommand(
      "detect", "completeness/purity per mag bin, star/galaxy accuracy, deblending of close pairs");
  de->add_option("--catalog", a.catalog,
                 "detections: <stem>.cat.fits/.csv, catalog.fits with --file, or a SExtractor "
                 "FITS_1.0 catalog")
      ->required();
  de->add_option("--truth", a.truth_table, "simulate field's <name>.truth.fits or .csv")
      ->required();
  de->add_option("--artifacts", a.artifacts,
                 "<name>.artifacts.fits (default: beside --truth when present; none: skip)");
  de->add_option("--file", a.file, "with a merged catalog: keep the rows of this FILE");
  de->add_option("--truth-segmap", a.truth_segmap,
                 "the truth's segmentation map (value = its ID or NUMBER, e.g. SExtractor's "
                 "SEGMENTATION check image): also count the unmatched truth rows the catalog "
                 "splits into >= 2 detections");
  de->add_option("--radius", a.match_radius_pix, "match radius, pixels")->capture_default_str();
  de->add_option("--mag-bin", a.mag_bin, "magnitude bin width")->capture_default_str();
  de->add_option("--class-column", a.class_column, "star probability column")
      ->capture_default_str();
  de->add_option("--class-threshold", a.class_threshold, "star when the column is above this")
      ->capture_default_str();
  de->add_option("--class-snr", a.class_snr_min, "star/galaxy accuracy for truth S/N above this")
      ->capture_default_str();
  de->add_option("--blend-snr", a.blend_snr_min, "close pairs: both members at least this S/N")
      ->capture_default_str();
  de->add_option("--json", a.json, "also write the report as JSON to this file");
  a.detect_cmd = de;
  auto* se = ev->add_subcommand(
      "segment", "per-object footprint IoU against the truth segmentation, per-pixel classes");
  se->add_option("--catalog", a.catalog, "detections with NUMBER (as for evaluate detect)")
      ->required();
  se->add_option("--segmap", a.segmap, "int32 segmentation map, value = NUMBER")->required();
  se->add_option("--truth", a.truth_table, "simulate field's <name>.truth.fits or .csv")
      ->required();
  se->add_option("--truth-segmap", a.truth_segmap,
                 "truth segmentation (default: <name>.truthseg.fits beside --truth)");
  se->add_option("--classmap", a.classmap, "per-pixel class map (integer labels)");
  se->add_option("--truth-classmap", a.truth_classmap,
                 "truth class map (default: <name>.truthclass.fits beside --truth when present)");
  se->add_option("--file", a.file, "with a merged catalog: keep the rows of this FILE");
  se->add_option("--radius", a.match_radius_pix, "match radius, pixels")->capture_default_str();
  se->add_option("--json", a.json, "also write the report as JSON to this file");
  a.segment_cmd = se;
  return ev;
}

int run_evaluate(EvaluateArgs& a) {
  if (a.denoise_cmd != nullptr && a.denoise_cmd->parsed()) {
    DenoiseEvalOptions o;
    o.tile_pix = a.tile_pix;
    o.overlap_pix = a.overlap_pix;
    const DenoiseEvaluation e =
        evaluate_denoise_files(a.noisy, a.denoised, a.truth, a.truth_table, o);
    std::cout << format_denoise_report(e);
    if (!a.json.empty()) write_file_atomically(a.json, to_json(e));
    return 0;
  }
  if (a.detect_cmd != nullptr && a.detect_cmd->parsed()) {
    DetectEvalOptions o;
    o.match_radius_pix = a.match_radius_pix;
    o.mag_bin = a.mag_bin;
    o.class_column = a.class_column;
    o.class_threshold = a.class_threshold;
    o.class_snr_min = a.class_snr_min;
    o.blend_snr_min = a.blend_snr_min;
    o.file = a.file;
    const DetectEvaluation e =
        evaluate_detect_files(a.catalog, a.truth_table, o, a.artifacts, a.truth_segmap);
    std::cout << to_text(e);
    if (!a.json.empty()) write_file_atomically(a.json, to_json(e));
    return 0;
  }
  if (a.segment_cmd != nullptr && a.segment_cmd->parsed()) {
    SegmentEvalOptions o;
    o.match_radius_pix = a.match_radius_pix;
    o.file = a.file;
    const SegmentEvaluation e = evaluate_segment_files(
        a.catalog, a.segmap, a.truth_table, a.truth_segmap, a.classmap, a.truth_classmap, o);
    std::cout << to_text(e);
    if (!a.json.empty()) write_file_atomically(a.json, to_json(e));
    return 0;
  }
  const ClassifyEvaluation e = evaluate_classify_files(a.catalog, a.labels);
  std::cout << to_text(e);
  if (!a.json.empty()) write_file_atomically(a.json, to_json(e));
  return 0;
}

}  // namespace astroflow::cli
