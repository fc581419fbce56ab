// plugin-check on the good test plugin (every check passes) and on each broken one (the check
// that the defect breaks fails, naming the reason).
#include "astroflow/plugin_check.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "astroflow/plugin.hpp"

namespace astroflow {
namespace {

#define EXPECT_CONTAINS(haystack, needle)                                         \
  do {                                                                            \
    const std::string h_ = (haystack);                                            \
    const std::string n_ = (needle);                                              \
    EXPECT_NE(h_.find(n_), std::string::npos) << "'" << n_ << "' not in: " << h_; \
  } while (false)

const std::vector<std::string> kCheckNames = {"load",      "schema",      "create",
                                              "configure", "empty batch", "all-NaN frame",
                                              "no WCS",    "determinism"};

std::string plugin_file(const std::string& test_case) {
  return std::string(ASTROFLOW_TEST_PLUGIN_ROOT) + "/" + test_case + "/libastroflow-" + test_case +
         ".so";
}

const CheckResult& result(const std::vector<CheckResult>& results, const std::string& name) {
  for (const CheckResult& r : results) {
    if (r.name == name) return r;
  }
  throw std::out_of_range("no check named " + name);
}

std::string failed_names(const std::vector<CheckResult>& results) {
  std::string out;
  for (const CheckResult& r : results) {
    if (!r.passed) out += r.name + ";";
  }
  return out;
}

std::vector<std::string> names(const std::vector<CheckResult>& results) {
  std::vector<std::string> out;
  for (const CheckResult& r : results) out.push_back(r.name);
  return out;
}

TEST(PluginCheck, GoodPluginPassesEveryCheck) {
  const auto results = check_plugin(plugin_file("good"));
  ASSERT_EQ(names(results), kCheckNames);
  for (const CheckResult& r : results) {
    EXPECT_TRUE(r.passed) << r.name << ": " << r.detail;
    EXPECT_FALSE(r.skipped) << r.name << ": " << r.detail;
  }
  EXPECT_CONTAINS(result(results, "load").detail, ASTROFLOW_TOOLCHAIN_TAG);
  EXPECT_EQ(result(results, "schema").detail, "4 options, required: none");
  EXPECT_EQ(result(results, "all-NaN frame").detail, "flagged: no finite pixel");
  // The good stage writes one row per frame; the determinism batch has three frames.
  EXPECT_CONTAINS(result(results, "determinism").detail, "3 frames and 3 catalog rows identical");

  std::ostringstream out;
  EXPECT_EQ(print_plugin_check(plugin_file("good"), out), 0);
  EXPECT_CONTAINS(out.str(), "8 checks: 8 passed, 0 failed, 0 skipped");
  EXPECT_EQ(out.str().find("FAIL"), std::string::npos) << out.str();
}

TEST(PluginCheck, RequiredOptionWithoutDefaultSkipsTheRunChecksWithANote) {
  const auto results = check_plugin(plugin_file("required_model"));
  ASSERT_EQ(names(results), kCheckNames);
  EXPECT_EQ(failed_names(results), "");
  EXPECT_EQ(result(results, "schema").detail, "5 options, required: model");
  for (const char* name : {"configure", "empty batch", "all-NaN frame", "no WCS", "determinism"}) {
    EXPECT_TRUE(result(results, name).skipped) << name;
    EXPECT_EQ(result(results, name).detail, "required option without default: model");
  }
  std::ostringstream out;
  EXPECT_EQ(print_plugin_check(plugin_file("required_model"), out), 0);
  EXPECT_CONTAINS(out.str(), "8 checks: 3 passed, 0 failed, 5 skipped");
}

struct RefusedCase {
  const char* test_case;
  const char* reason;
};

std::string case_name(const ::testing::TestParamInfo<RefusedCase>& param_info) {
  return param_info.param.test_case;
}

class PluginCheckRefused : public ::testing::TestWithParam<RefusedCase> {};

TEST_P(PluginCheckRefused, FailsLoadNamingFileAndReasonAndSkipsTheRest) {
  const std::string path = plugin_file(GetParam().test_case);
  const auto results = check_plugin(path);
  ASSERT_EQ(names(results), kCheckNames);
  EXPECT_EQ(failed_names(results), "load;");
  EXPECT_CONTAINS(results[0].detail, path + ": ");
  EXPECT_CONTAINS(results[0].detail, GetParam().reason);
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_TRUE(results[i].skipped);

  std::ostringstream out;
  EXPECT_EQ(print_plugin_check(path, out), 1);
  EXPECT_CONTAINS(out.str(), "FAIL");
  EXPECT_CONTAINS(out.str(), "8 checks: 0 passed, 1 failed, 7 skipped");
}

INSTANTIATE_TEST_SUITE_P(
    BrokenPlugins, PluginCheckRefused,
    ::testing::Values(
        RefusedCase{"abi_major",
                    "plugin astroflow ABI 2.0, host 1." ASTROFLOW_STR(ASTROFLOW_ABI_MINOR)},
        RefusedCase{"abi_minor3",
                    "plugin built for astroflow ABI 1.3, host supports up to 1." ASTROFLOW_STR(
                        ASTROFLOW_ABI_MINOR)},
        RefusedCase{"toolchain", "'clang-99/libc++-1/cxx-201703L' differs"},
        RefusedCase{"no_entry", "missing entry symbol 'astroflow_plugin_entry'"},
        RefusedCase{"entry_null", "returned no descriptor"},
        RefusedCase{"fake", "not a loadable shared object"},
        RefusedCase{"empty_name", "'name' is empty"},
        RefusedCase{"invalid_name", "invalid name 'bad name!'"}),
    case_name);

TEST(PluginCheck, ProcessThatThrowsFailsTheRunChecks) {
  const auto results = check_plugin(plugin_file("process_throws"));
  EXPECT_EQ(failed_names(results), "empty batch;all-NaN frame;no WCS;determinism;");
  EXPECT_CONTAINS(result(results, "empty batch").detail, "inference failed on a batch of 0 frames");
  EXPECT_CONTAINS(result(results, "all-NaN frame").detail,
                  "process threw for the whole batch instead of flagging the frame");
}

TEST(PluginCheck, ConfigureThatThrowsFailsConfigureAndSkipsTheRest) {
  const auto results = check_plugin(plugin_file("configure_fatal"));
  EXPECT_EQ(failed_names(results), "configure;");
  EXPECT_CONTAINS(result(results, "configure").detail, "model file 'missing.onnx' not found");
  EXPECT_TRUE(result(results, "determinism").skipped);
}

TEST(PluginCheck, SharedStateBetweenInstancesFailsDeterminism) {
  const auto results = check_plugin(plugin_file("nondeterministic"));
  EXPECT_EQ(failed_names(results), "determinism;");
  EXPECT_CONTAINS(result(results, "determinism").detail, "catalog column 'FLUX_SUM' differs");
}

TEST(PluginCheck, SelfContradictingSchemaFailsSchema) {
  const auto results = check_plugin(plugin_file("bad_schema"));
  EXPECT_EQ(failed_names(results), "schema;");
  const std::string& detail = result(results, "schema").detail;
  EXPECT_CONTAINS(detail, "option 'factor': default 500 is above its max 100");
  EXPECT_CONTAINS(detail,
                  "option 'mode': default \"median\" is not one of its choices (sum, mean)");
}

TEST(PluginCheck, ACrashFailsTheCheckItHappenedInAndTheCallerGoesOn) {
  const auto results = check_plugin(plugin_file("nan_crash"));
  ASSERT_EQ(names(results), kCheckNames);
  EXPECT_EQ(failed_names(results), "all-NaN frame;");
  EXPECT_CONTAINS(result(results, "all-NaN frame").detail, "crashed with signal 11");
  EXPECT_FALSE(result(results, "empty batch").skipped);
  EXPECT_TRUE(result(results, "no WCS").skipped);
  EXPECT_TRUE(result(results, "determinism").skipped);
  // This process is still alive and can check another plugin.
  EXPECT_EQ(failed_names(check_plugin(plugin_file("good"))), "");
}

// The conformance suite over the built-in plugins of this build (lib/astroflow/plugins).
TEST(PluginCheck, EveryBuiltInPluginPassesOrSkips) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(ASTROFLOW_PLUGIN_DIR, ec)) {
    if (entry.path().extension() == ".so") files.push_back(entry.path().string());
  }
  if (files.empty()) GTEST_SKIP() << "no built-in plugin built in " << ASTROFLOW_PLUGIN_DIR;
  for (const std::string& file : files) {
    for (const CheckResult& r : check_plugin(file)) {
      EXPECT_TRUE(r.passed) << file << ": " << r.name << ": " << r.detail;
    }
  }
}

}  // namespace
}  // namespace astroflow
