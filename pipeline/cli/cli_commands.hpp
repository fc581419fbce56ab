// Subcommands of the astroflow CLI that live in their own source file.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "astroflow/simulate.hpp"

namespace astroflow::cli {

struct SimulateArgs {
  FieldOptions field;
  CutoutOptions cutouts;
  std::string field_size = "2048";
  std::string field_tiles;       ///< --tiles CxR: write overlapping tiles (simulate_survey.hpp)
  int field_tile_overlap = 256;  ///< --tile-overlap
  std::string cutout_size = "64";
  CLI::App* field_cmd = nullptr;
  CLI::App* cutouts_cmd = nullptr;
};

/// Adds `simulate field|cutouts` to `app`, bound to `args`. Returns the simulate subcommand.
CLI::App* add_simulate_command(CLI::App& app, SimulateArgs& args);

/// Runs the parsed simulate subcommand; returns the exit code.
int run_simulate(SimulateArgs& args);

int main_impl(int argc, char** argv);

}  // namespace astroflow::cli
