// The installable SDK, end to end: runs the commands of docs/plugins.md as written (every ```sh
// block preceded by "<!-- tutorial -->"), which install this build to a prefix, generate a plugin
// with `astroflow new-plugin`, build it and plugins/examples/ out of tree against the prefix,
// plugin-check both and run configs that use them on simulated data. Then checks the outputs.
//
// Slow by design (two out-of-tree CMake builds): about 1-2 minutes on 2 cores. Needs the whole
// build tree built (the install step installs every built-in plugin).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "astroflow/error.hpp"
#include "astroflow/plugin_skeleton.hpp"

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The ```sh blocks that directly follow a "<!-- tutorial -->" line (blank lines allowed).
std::vector<std::string> tutorial_blocks(const std::string& markdown) {
  std::vector<std::string> blocks;
  std::istringstream in(markdown);
  std::string line;
  bool armed = false;
  bool inside = false;
  std::string current;
  while (std::getline(in, line)) {
    if (inside) {
      if (line.rfind("```", 0) == 0) {
        blocks.push_back(current);
        current.clear();
        inside = false;
      } else {
        current += line + "\n";
      }
    } else if (line == "<!-- tutorial -->") {
      armed = true;
    } else if (armed && line == "```sh") {
      inside = true;
      armed = false;
    } else if (!line.empty()) {
      armed = false;
    }
  }
  return blocks;
}

fs::path make_temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "astroflow-sdk-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream in(line);
  while (std::getline(in, cell, ',')) out.push_back(cell);
  return out;
}

}  // namespace

TEST(SdkInstall, TutorialHasTheStepsTheTestReliesOn) {
  const std::string md = read_text(fs::path(ASTROFLOW_SOURCE_DIR) / "docs" / "plugins.md");
  const std::vector<std::string> blocks = tutorial_blocks(md);
  ASSERT_GE(blocks.size(), 5u);
  std::string all;
  for (const std::string& b : blocks) all += b;
  for (const char* step : {"cmake --install", "astroflow new-plugin", "astroflow plugin-check",
                           "plugin_paths", "astroflow run", "plugins/examples"}) {
    EXPECT_NE(all.find(step), std::string::npos) << step;
  }
}

TEST(SdkInstall, SkeletonRefusesBadNamesAndExistingFiles) {
  const fs::path dir = make_temp_dir();
  EXPECT_FALSE(astroflow::is_valid_plugin_name("My-Plugin"));
  EXPECT_FALSE(astroflow::is_valid_plugin_name("9lives"));
  EXPECT_FALSE(astroflow::is_valid_plugin_name(""));
  EXPECT_TRUE(astroflow::is_valid_plugin_name("hst_cosmics2"));
  EXPECT_THROW(astroflow::write_plugin_skeleton("Bad Name", (dir / "a").string()),
               astroflow::FatalError);
  const std::vector<std::string> files =
      astroflow::write_plugin_skeleton("hst_cosmics2", (dir / "b").string());
  ASSERT_EQ(files.size(), 4u);
  const std::string cpp = read_text(dir / "b" / "hst_cosmics2.cpp");
  EXPECT_NE(cpp.find("class HstCosmics2Stage"), std::string::npos);
  EXPECT_NE(cpp.find("\"hst_cosmics2\""), std::string::npos);
  EXPECT_EQ(cpp.find('@'), std::string::npos);  // every placeholder replaced
  const std::string cmake = read_text(dir / "b" / "CMakeLists.txt");
  EXPECT_NE(cmake.find("find_package(astroflow 0."), std::string::npos);
  EXPECT_NE(cmake.find("astroflow_add_plugin(hst_cosmics2 SOURCES hst_cosmics2.cpp)"),
            std::string::npos);
  // A second run must not overwrite the author's edits.
  std::ofstream(dir / "b" / "hst_cosmics2.cpp") << "// edited\n";
  EXPECT_THROW(astroflow::write_plugin_skeleton("hst_cosmics2", (dir / "b").string()),
               astroflow::FatalError);
  EXPECT_EQ(read_text(dir / "b" / "hst_cosmics2.cpp"), "// edited\n");
  fs::remove_all(dir);
}

TEST(SdkInstall, TutorialRunsAsWritten) {
  const fs::path root = make_temp_dir();
  const fs::path prefix = root / "prefix";
  const fs::path work = root / "work";
  fs::create_directories(work);

  const std::string md = read_text(fs::path(ASTROFLOW_SOURCE_DIR) / "docs" / "plugins.md");
  std::ofstream script(root / "tutorial.sh");
  script << "set -euo pipefail\nset -x\n"
         << "export ASTROFLOW_SRC='" << ASTROFLOW_SOURCE_DIR << "'\n"
         << "export ASTROFLOW_BUILD='" << ASTROFLOW_BINARY_DIR << "'\n"
         << "export PREFIX='" << prefix.string() << "'\n"
         << "export WORK='" << work.string() << "'\n"
         << "unset ASTROFLOW_PLUGIN_PATH\n"
         << "cd \"$WORK\"\n";
  for (const std::string& block : tutorial_blocks(md)) script << block << "\n";
  script.close();

  const fs::path log = root / "tutorial.log";
  const std::string cmd =
      "bash '" + (root / "tutorial.sh").string() + "' > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "tutorial failed; log:\n" << read_text(log);

  // The installed SDK: CMake package with both version files, headers, CLI, built-in plugins.
  const fs::path cmake_dir = prefix / "lib" / "cmake" / "astroflow";
  EXPECT_TRUE(fs::exists(cmake_dir / "astroflowConfig.cmake"));
  EXPECT_TRUE(fs::exists(cmake_dir / "astroflowConfigVersion.cmake"));
  EXPECT_TRUE(fs::exists(cmake_dir / "AstroflowPlugin.cmake"));
  EXPECT_TRUE(fs::exists(prefix / "include" / "astroflow" / "plugin.hpp"));
  EXPECT_TRUE(fs::exists(prefix / "bin" / "astroflow"));
  EXPECT_TRUE(fs::exists(prefix / "lib" / "astroflow" / "plugins" / "libastroflow-sources.so"));
  EXPECT_TRUE(fs::exists(prefix / "share" / "astroflow" / "configs"));

  // The generated plugin's plane was written.
  bool plane_written = false;
  for (const auto& e : fs::directory_iterator(work / "out-myplugin"))
    if (e.path().filename().string().ends_with(".myplugin.fits")) plane_written = true;
  EXPECT_TRUE(plane_written);

  // The example plugin's columns are in the catalog, with values in their defined ranges for
  // the sources that have a Petrosian radius: 0 <= Gini <= 1, M20 < 0, C > 0.
  const std::string csv = read_text(work / "out-morphometry" / "field.cat.csv");
  std::istringstream lines(csv);
  std::string header;
  ASSERT_TRUE(std::getline(lines, header)) << "empty catalog";
  const std::vector<std::string> names = split_csv_line(header);
  auto index_of = [&](const std::string& n) {
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] == n) return static_cast<int>(i);
    return -1;
  };
  const int ic = index_of("CONCENTRATION");
  const int ig = index_of("GINI");
  const int im = index_of("M20");
  ASSERT_GE(ic, 0) << header;
  ASSERT_GE(ig, 0) << header;
  ASSERT_GE(im, 0) << header;
  ASSERT_GE(index_of("ASYMMETRY"), 0) << header;
  ASSERT_GE(index_of("SMOOTHNESS"), 0) << header;
  int measured = 0;
  for (std::string line; std::getline(lines, line);) {
    const std::vector<std::string> cells = split_csv_line(line);
    if (static_cast<int>(cells.size()) != static_cast<int>(names.size())) continue;
    const double c = std::strtod(cells[ic].c_str(), nullptr);
    const double g = std::strtod(cells[ig].c_str(), nullptr);
    const double m = std::strtod(cells[im].c_str(), nullptr);
    if (std::isnan(c) || std::isnan(g) || std::isnan(m)) continue;
    ++measured;
    EXPECT_GT(c, 0.0);
    EXPECT_GE(g, 0.0);
    EXPECT_LE(g, 1.0);
    EXPECT_LT(m, 0.0);
  }
  EXPECT_GT(measured, 0) << csv;
  fs::remove_all(root);
}
