// `astroflow evaluate classify`: thin CLI over evaluate_classify.hpp.
#include "evaluate_command.hpp"

#include <iostream>

#include "astroflow/atomic_file.hpp"
#include "astroflow/evaluate_classify.hpp"

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
  return ev;
}

int run_evaluate(EvaluateArgs& a) {
  const ClassifyEvaluation e = evaluate_classify_files(a.catalog, a.labels);
  std::cout << to_text(e);
  if (!a.json.empty()) write_file_atomically(a.json, to_json(e));
  return 0;
}

}  // namespace astroflow::cli
