// validate, plugins and --help of the real CLI.
#include <gtest/gtest.h>

#include "cli_runner.hpp"
#include "temp_dir.hpp"

namespace astroflow::test {
namespace {

TEST(CliValidate, BadConfigExitsOneNamingFileLineColumn) {
  TempDir dir("validate");
  const std::string cfg = dir / "bad.yaml";
  // Line 4, column 25: a string where sources.threshold needs a number.
  write_text_file(cfg,
                  "run: {batch: 4}\n"
                  "stages:\n"
                  "  - {plugin: background}\n"
                  "  - {plugin: sources, threshold: high}\n");
  const CliResult r = run_cli({"validate", cfg});
  EXPECT_EQ(r.exit_code, 1) << r.all();
  EXPECT_EQ(r.err.rfind("astroflow: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(cfg + ":4:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("threshold"), std::string::npos) << r.err;
}

TEST(CliValidate, UnknownPluginNamesItsLine) {
  TempDir dir("validate2");
  const std::string cfg = dir / "bad.yaml";
  write_text_file(cfg, "stages:\n  - plugin: no_such_plugin\n");
  const CliResult r = run_cli({"validate", cfg});
  EXPECT_EQ(r.exit_code, 1) << r.all();
  EXPECT_NE(r.err.find(cfg + ":2:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no_such_plugin"), std::string::npos) << r.err;
}

TEST(CliValidate, GoodConfigPrintsOkAndStages) {
  TempDir dir("validate3");
  const std::string cfg = dir / "good.yaml";
  write_text_file(cfg, "stages:\n  - {plugin: background, back_size: 32}\n  - {plugin: sources}\n");
  const CliResult r = run_cli({"validate", cfg});
  EXPECT_EQ(r.exit_code, 0) << r.all();
  EXPECT_EQ(r.out.rfind("OK ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("background"), std::string::npos);
  EXPECT_NE(r.out.find("back_size = 32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sources"), std::string::npos);
}

TEST(CliPlugins, VerboseListsBuiltInPluginsWithTheirOptions) {
  const CliResult r = run_cli({"plugins", "--verbose"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  for (const char* s : {"background", "sources", "back_size", "threshold",
                        "needs:", "provides:", "plane:background", "MIT"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  }
  const CliResult brief = run_cli({"plugins"});
  ASSERT_EQ(brief.exit_code, 0);
  EXPECT_NE(brief.out.find("sources"), std::string::npos);
  EXPECT_EQ(brief.out.find("back_size"), std::string::npos) << brief.out;
}

TEST(CliHelp, DocumentsExitCodes) {
  const CliResult r = run_cli({"run", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("completed, but some files or frames failed"), std::string::npos) << r.out;
  const CliResult none = run_cli({});
  EXPECT_EQ(none.exit_code, 1);
}

}  // namespace
}  // namespace astroflow::test
