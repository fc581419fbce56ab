// Every ready pipeline in configs/*.yaml (found at run time, so a new file is tested without a
// change here) loads, resolves against the built-in plugins of this build tree, and asks only
// for output images that some stage (or the reader) provides.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "astroflow/config.hpp"
#include "astroflow/plugin_registry.hpp"

namespace astroflow {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> shipped_configs() {
  std::vector<std::string> out;
  const fs::path dir = fs::path(ASTROFLOW_SOURCE_DIR) / "configs";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
      out.push_back(entry.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = fs::path(info.param).stem().string();
  for (char& c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0) c = '_';
  }
  return name;
}

TEST(ShippedConfigs, TheFolderIsFound) {
  const std::vector<std::string> all = shipped_configs();
  const bool has_demo = std::any_of(all.begin(), all.end(), [](const std::string& p) {
    return fs::path(p).filename() == "demo.yaml";
  });
  EXPECT_TRUE(has_demo) << "configs/demo.yaml not found under " << ASTROFLOW_SOURCE_DIR;
}

class ShippedConfig : public ::testing::TestWithParam<std::string> {};

TEST_P(ShippedConfig, LoadsAndResolvesAgainstBuiltInPlugins) {
  const PipelineConfig config = PipelineConfig::load(GetParam());
  ASSERT_FALSE(config.stages.empty()) << GetParam() << " has no stages";

  PluginRegistry registry;
  std::vector<std::string> dirs = config.plugin_paths;
  dirs.emplace_back(ASTROFLOW_PLUGIN_DIR);
  registry.scan(dirs);
  std::vector<ResolvedStage> stages;
  try {
    stages = resolve_stages(config, registry);
  } catch (const ConfigError& e) {
    FAIL() << e.what();
  }
  ASSERT_EQ(stages.size(), config.stages.size());

  // Each output image must be a plane that the reader or a stage puts on the frame.
  std::vector<std::string> planes = {"science"};
  if (!config.input.weight_ext.empty()) planes.emplace_back("weight");
  if (!config.input.mask_ext.empty()) planes.emplace_back("mask");
  for (const auto& s : stages) {
    for (const auto& token : s.plugin->provides()) {
      if (token.rfind("plane:", 0) == 0) planes.push_back(token.substr(6));
    }
  }
  for (const auto& image : config.output.images) {
    EXPECT_NE(std::find(planes.begin(), planes.end(), image), planes.end())
        << GetParam() << ": output.images names '" << image
        << "', which no stage of this config provides as plane:" << image;
  }
}

TEST_P(ShippedConfig, CanonicalTextReloadsToTheSameHash) {
  const PipelineConfig config = PipelineConfig::load(GetParam());
  const fs::path copy = fs::path(::testing::TempDir()) /
                        ("astroflow_canonical_" + fs::path(GetParam()).filename().string());
  {
    std::ofstream out(copy);
    out << config.canonical_text;
  }
  const PipelineConfig again = PipelineConfig::load(copy.string());
  fs::remove(copy);
  EXPECT_EQ(again.canonical_text, config.canonical_text);
  EXPECT_EQ(again.hash(), config.hash());
}

INSTANTIATE_TEST_SUITE_P(Configs, ShippedConfig, ::testing::ValuesIn(shipped_configs()), test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ShippedConfig);

}  // namespace
}  // namespace astroflow
