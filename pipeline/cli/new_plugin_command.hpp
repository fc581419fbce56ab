// `astroflow new-plugin NAME [--dir D]`: writes a plugin project skeleton (plugin_skeleton.hpp).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace astroflow::cli {

struct NewPluginArgs {
  std::string name;
  std::string dir;  ///< empty: ./NAME
};

/// Adds `new-plugin` to `app`, bound to `args`. Returns the subcommand.
CLI::App* add_new_plugin_command(CLI::App& app, NewPluginArgs& args);

/// Runs the parsed new-plugin subcommand; returns the exit code. Throws FatalError on an
/// invalid name or an existing file (main_impl prints it and returns 1).
int run_new_plugin(const NewPluginArgs& args);

}  // namespace astroflow::cli
