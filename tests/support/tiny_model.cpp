#include "tiny_model.hpp"

#include <cstdlib>
#include <string>

namespace astroflow::test {

bool make_tiny_model(const std::filesystem::path& out_dir, int size, int seed,
                     const std::filesystem::path& log_file) {
  const std::string cmd = "/usr/bin/python3 " ASTROFLOW_SOURCE_DIR
                          "/models/common/make_tiny_model.py " +
                          out_dir.string() + " --size " + std::to_string(size) + " --seed " +
                          std::to_string(seed) + " > " + log_file.string() + " 2>&1";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace astroflow::test
