// `astroflow evaluate classify`: thin CLI over evaluate_classify.hpp.
#include "evaluate_command.hpp"

#include <iostream>

#include "astroflow/atomic_file.hpp"
#include "astroflow/evaluate_classify.hpp"
#include "astroflow/evaluate_denoise.hpp"

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
  a.denoise_cmd = dc;
  return ev;
}

int run_evaluate(EvaluateArgs& a) {
  if (a.denoise_cmd != nullptr && a.denoise_cmd->parsed()) {
    DenoiseEvalOptions o;
    o.tile_pix = a.tile_pix;
    o.overlap_pix = a.overlap_pix;
    std::cout << format_denoise_report(
        evaluate_denoise_files(a.noisy, a.denoised, a.truth, a.truth_table, o));
    return 0;
  }
  const ClassifyEvaluation e = evaluate_classify_files(a.catalog, a.labels);
  std::cout << to_text(e);
  if (!a.json.empty()) write_file_atomically(a.json, to_json(e));
  return 0;
}

}  // namespace astroflow::cli
