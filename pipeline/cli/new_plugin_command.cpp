// `astroflow new-plugin`: thin CLI over plugin_skeleton.hpp (docs/plugins.md).
#include "new_plugin_command.hpp"

#include <iostream>
#include <vector>

#include "astroflow/plugin_skeleton.hpp"

namespace astroflow::cli {

CLI::App* add_new_plugin_command(CLI::App& app, NewPluginArgs& args) {
  auto* cmd =
      app.add_subcommand("new-plugin",
                         "write a plugin project (CMakeLists.txt, NAME.cpp, test, README) to build "
                         "out of tree against this installation");
  cmd->add_option("name", args.name, "plugin name: lower-case letters, digits, '_'")->required();
  cmd->add_option("--dir", args.dir, "folder to write into (created; default ./NAME)");
  return cmd;
}

int run_new_plugin(const NewPluginArgs& args) {
  const std::string dir = args.dir.empty() ? args.name : args.dir;
  const std::vector<std::string> files = write_plugin_skeleton(args.name, dir);
  for (const std::string& f : files) std::cout << "wrote " << f << "\n";
  std::cout << "next: cmake -S " << dir << " -B " << dir
            << "/build -DCMAKE_PREFIX_PATH=<astroflow prefix> && cmake --build " << dir
            << "/build && ctest --test-dir " << dir << "/build (see docs/plugins.md)\n";
  return 0;
}

}  // namespace astroflow::cli
