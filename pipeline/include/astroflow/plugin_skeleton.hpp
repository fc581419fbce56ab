// Plugin skeleton generator, behind `astroflow new-plugin NAME [--dir D]`.
//
// Writes a plugin project that builds out of tree against an installed astroflow and passes
// `astroflow plugin-check` as generated:
//   CMakeLists.txt   find_package(astroflow <major.minor> REQUIRED) + astroflow_add_plugin(NAME)
//                    and two CTest tests: plugin-check on the built module, and NAME_test when
//                    GoogleTest is installed
//   NAME.cpp         a Stage that adds the plane NAME = science x `scale` (a template to edit)
//   NAME_test.cpp    GoogleTest of that stage, driven without the pipeline
//   README.md        build, install, check and use in a config
// See docs/plugins.md for the walk-through.
#pragma once

#include <string>
#include <vector>

namespace astroflow {

/// True when `name` can name a plugin: [a-z][a-z0-9_]* and at most 64 characters (it becomes a
/// file name, a CMake target suffix, a C++ identifier part and a YAML value).
[[nodiscard]] bool is_valid_plugin_name(const std::string& name);

/// Writes the skeleton files into `dir` (created if missing) and returns their paths.
/// Throws FatalError when the name is invalid or when any of the files already exists (nothing
/// is written then); each file is written atomically.
std::vector<std::string> write_plugin_skeleton(const std::string& name, const std::string& dir);

}  // namespace astroflow
