// `astroflow evaluate classify|denoise|detect|segment`: scores a run's outputs against simulator
// truth (evaluate_classify.hpp, evaluate_denoise.hpp, evaluate_detect.hpp, evaluate_segment.hpp).
// Wired in main.cpp like the other subcommands:
//   EvaluateArgs eval;  auto* eval_cmd = add_evaluate_command(app, eval);
//   ...  if (eval_cmd->parsed()) return run_evaluate(eval);
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace astroflow::cli {

struct EvaluateArgs {
  std::string catalog;  ///< the run's catalog (.csv or FITS)
  std::string labels;   ///< labels.csv or labels.fits from `astroflow simulate cutouts`
  std::string json;     ///< optional: also write the report as JSON here
  CLI::App* classify_cmd = nullptr;
  // evaluate denoise
  std::string noisy;        ///< the noisy input image
  std::string denoised;     ///< <stem>.denoised.fits of the run
  std::string truth;        ///< the simulator's noiseless <name>.model.fits
  std::string truth_table;  ///< the simulator's <name>.truth.fits or .csv
  int tile_pix = 256;
  int overlap_pix = 32;
  CLI::App* denoise_cmd = nullptr;
  // evaluate detect / segment (catalog, truth_table and json are shared with the above)
  std::string file;       ///< one image of a merged catalog (its FILE)
  std::string artifacts;  ///< the simulator's <name>.artifacts.fits ("none": skip)
  double match_radius_pix = 2.0;
  double mag_bin = 0.5;
  std::string class_column = "CLASS_STAR";
  double class_threshold = 0.5;
  double class_snr_min = 20.0;
  double blend_snr_min = 10.0;
  std::string segmap;          ///< the run's <stem>.segmap.fits or SExtractor's check image
  std::string truth_segmap;    ///< segment: default <name>.truthseg.fits beside the truth table;
                               ///< detect: optional (split count)
  std::string classmap;        ///< optional per-pixel class map
  std::string truth_classmap;  ///< default: <name>.truthclass.fits beside the truth table
  CLI::App* detect_cmd = nullptr;
  CLI::App* segment_cmd = nullptr;
};

/// Adds `evaluate classify|denoise|detect|segment` to `app`, bound to `args`. Returns the evaluate
/// subcommand.
CLI::App* add_evaluate_command(CLI::App& app, EvaluateArgs& args);

/// Runs the parsed evaluate subcommand; prints the report; returns the exit code (0). Errors
/// (missing file or column) throw FatalError for main's handler.
int run_evaluate(EvaluateArgs& args);

}  // namespace astroflow::cli
