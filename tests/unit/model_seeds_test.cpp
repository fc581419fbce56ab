// The simulator seeds of every model's training, validation and test fields
// (models/*/fields.txt) are pairwise distinct, also across models, and none falls in the range
// kept for held-out benchmark and test fields (9001-9999): a field used to fit or select one
// model is never used to score it or another model it runs beside.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace {

TEST(ModelSeeds, FieldSeedsAreDisjointAcrossSplitsAndModelsAndOutsideTheBenchRange) {
  const std::filesystem::path models = std::filesystem::path(ASTROFLOW_SOURCE_DIR) / "models";
  std::map<long, std::string> owner;  // seed -> "model/split/name"
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(models)) {
    const auto fields = entry.path() / "fields.txt";
    if (!std::filesystem::is_regular_file(fields)) continue;
    ++files;
    std::ifstream in(fields);
    std::string line;
    int rows = 0;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream ss(line);
      std::string split;
      std::string name;
      long seed = 0;
      ASSERT_TRUE(ss >> split >> name >> seed) << fields << ": " << line;
      ASSERT_TRUE(split == "train" || split == "val" || split == "test") << fields << ": " << line;
      ++rows;
      const std::string who = entry.path().filename().string() + "/" + split + "/" + name;
      EXPECT_FALSE(seed >= 9001 && seed <= 9999) << who << " uses bench/test seed " << seed;
      const auto [it, fresh] = owner.emplace(seed, who);
      EXPECT_TRUE(fresh) << "seed " << seed << " of " << who << " is also " << it->second;
    }
    EXPECT_GE(rows, 3) << fields;
  }
  EXPECT_GE(files, 3);  // denoise, detect, segment
}

}  // namespace
