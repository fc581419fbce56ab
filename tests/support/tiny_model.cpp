#include "tiny_model.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
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

RawArray read_raw(const std::filesystem::path& dir, const nlohmann::json& entry) {
  RawArray a;
  for (const auto& d : entry.at("shape")) a.shape.push_back(d.get<int>());
  std::size_t n = 1;
  for (int d : a.shape) n *= static_cast<std::size_t>(d);
  a.values.resize(n);
  std::ifstream in(dir / entry.at("file").get<std::string>(), std::ios::binary);
  in.read(reinterpret_cast<char*>(a.values.data()), static_cast<std::streamsize>(n * 4));
  EXPECT_TRUE(in.good()) << "short read of " << entry.dump() << " in " << dir;
  return a;
}

}  // namespace astroflow::test
