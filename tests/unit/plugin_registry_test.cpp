// Loader tests: the good test plugin and one deliberately broken plugin per refusal rule
// (tests/plugins/). Each broken plugin differs from the good one in one descriptor field.
#include "astroflow/plugin_registry.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>

namespace astroflow {
namespace {

namespace fs = std::filesystem;

// A message check that prints the whole message when it fails.
#define EXPECT_CONTAINS(haystack, needle)                                         \
  do {                                                                            \
    const std::string h_ = (haystack);                                            \
    const std::string n_ = (needle);                                              \
    EXPECT_NE(h_.find(n_), std::string::npos) << "'" << n_ << "' not in: " << h_; \
  } while (false)

std::string plugin_file(const std::string& test_case, const std::string& stem) {
  return std::string(ASTROFLOW_TEST_PLUGIN_ROOT) + "/" + test_case + "/libastroflow-" + stem +
         ".so";
}
std::string plugin_file(const std::string& test_case) {
  return plugin_file(test_case, test_case);
}
std::string case_dir(const std::string& test_case) {
  return std::string(ASTROFLOW_TEST_PLUGIN_ROOT) + "/" + test_case;
}

// The PluginLoadError message for `path`, or a marker when the file loaded.
std::string refusal(PluginRegistry& registry, const std::string& path) {
  try {
    (void)registry.load_file(path);
  } catch (const PluginLoadError& e) {
    return e.what();
  }
  return "<loaded>";
}

Options good_options(double factor, const std::string& mode) {
  Options o;
  o.set("factor", factor);
  o.set("mode", mode);
  o.set("min_finite", std::int64_t{1});
  o.set("verbose", false);
  return o;
}

// A 4x4 frame holding 1..16 row by row, with pixel 6 blanked: 15 finite pixels summing to 130.
Frame counting_frame() {
  Frame f;
  f.path = "counting.fits";
  f.science = cv::Mat(4, 4, CV_32FC1);
  for (int i = 0; i < 16; ++i) f.science.at<float>(i / 4, i % 4) = static_cast<float>(i + 1);
  f.science.at<float>(1, 1) = std::numeric_limits<float>::quiet_NaN();
  return f;
}

TEST(PluginRegistry, LoadsGoodPluginAndReadsItsDescriptor) {
  PluginRegistry registry;
  const LoadedPlugin& p = registry.load_file(plugin_file("good"));
  EXPECT_EQ(p.name(), "good");
  EXPECT_EQ(p.version(), "1.0.0");
  EXPECT_EQ(p.license(), "MIT");
  EXPECT_EQ(p.abi_major(), 1u);
  EXPECT_EQ(p.abi_minor(), static_cast<std::uint32_t>(ASTROFLOW_ABI_MINOR));
  EXPECT_EQ(p.path(), plugin_file("good"));
  EXPECT_EQ(p.needs(), std::vector<std::string>{"plane:science"});
  EXPECT_EQ(p.provides(), (std::vector<std::string>{"plane:scaled", "column:NUMBER"}));
  const OptionSpec* factor = p.schema().find("factor");
  ASSERT_NE(factor, nullptr);
  EXPECT_EQ(factor->type, OptionType::kDouble);
  EXPECT_EQ(std::get<double>(*factor->default_value), 2.0);
  EXPECT_EQ(registry.find("good"), &p);
  EXPECT_EQ(registry.find("other"), nullptr);
  ASSERT_EQ(registry.plugins().size(), 1u);
}

TEST(PluginRegistry, LoadingTheSameFileTwiceReturnsTheLoadedPlugin) {
  PluginRegistry registry;
  const LoadedPlugin& a = registry.load_file(plugin_file("good"));
  const std::string indirect = case_dir("good") + "/../good/libastroflow-good.so";
  const LoadedPlugin& b = registry.load_file(indirect);
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(registry.plugins().size(), 1u);
}

TEST(StageInstance, ForwardsTheLifecycleAndFlagsBadFrames) {
  PluginRegistry registry;
  auto stage = registry.load_file(plugin_file("good")).create("scale3");
  EXPECT_EQ(stage->stage_name(), "scale3");
  stage->configure(good_options(3.0, "sum"));
  StageContext ctx;
  ctx.stage_name = "scale3";
  stage->open(ctx);

  Batch batch;
  batch.frames.push_back(counting_frame());
  Frame blank = counting_frame();
  blank.science.setTo(std::numeric_limits<float>::quiet_NaN());
  batch.frames.push_back(blank);
  stage->process(batch);
  stage->close();
  stage->close();  // a second close is a no-op

  const Frame& f = batch.frames[0];
  ASSERT_FALSE(f.failed());
  ASSERT_EQ(f.catalog.rows(), 1u);
  EXPECT_EQ(f.catalog.get<double>("FLUX_SUM")[0], 3.0 * 130.0);
  EXPECT_EQ(f.catalog.get<std::int64_t>("NPIX_FINITE")[0], 15);
  ASSERT_EQ(f.planes.count("scaled"), 1u);
  EXPECT_EQ(f.planes.at("scaled").at<float>(3, 3), 48.0f);
  EXPECT_TRUE(std::isnan(f.planes.at("scaled").at<float>(1, 1)));
  ASSERT_EQ(f.provenance.size(), 1u);
  EXPECT_EQ(f.provenance[0].stage, "scale3");
  EXPECT_EQ(f.provenance[0].plugin, "good");
  EXPECT_EQ(f.provenance[0].plugin_version, "1.0.0");

  const Frame& b = batch.frames[1];
  EXPECT_TRUE(b.failed());
  ASSERT_EQ(b.issues.size(), 1u);
  EXPECT_EQ(b.issues[0].stage, "scale3");
  EXPECT_EQ(b.issues[0].reason, "no finite pixel");
}

TEST(PluginRegistry, RefusesAnotherAbiMajorNamingFileAndBothVersions) {
  PluginRegistry registry;
  const std::string path = plugin_file("abi_major");
  const std::string msg = refusal(registry, path);
  EXPECT_CONTAINS(msg, path + ": ABI major 2 differs from the host's 1");
  EXPECT_CONTAINS(msg, "plugin astroflow ABI 2.0, host 1." ASTROFLOW_STR(ASTROFLOW_ABI_MINOR));
  EXPECT_TRUE(registry.plugins().empty());
}

TEST(PluginRegistry, RefusesANewerMinorNamingBothVersions) {
  PluginRegistry registry;
  const std::string path = plugin_file("abi_minor3");
  EXPECT_CONTAINS(refusal(registry, path),
                  path +
                      ": ABI minor is newer than the host's: plugin built for astroflow "
                      "ABI 1.3, host supports up to 1." ASTROFLOW_STR(ASTROFLOW_ABI_MINOR));
  EXPECT_CONTAINS(refusal(registry, plugin_file("abi_minor2")),
                  "plugin built for astroflow ABI 1.2, host supports up to 1." ASTROFLOW_STR(
                      ASTROFLOW_ABI_MINOR));
}

TEST(PluginRegistry, APluginOfMinorZeroLoadsAndAMinorZeroHostRefusesConditionalNeeds) {
  PluginRegistry registry;
  EXPECT_EQ(registry.load_file(plugin_file("abi_minor0")).abi_minor(), 0u);
  // A 1.0 host cannot read "TOKEN?OPTION" needs, so it refuses the plugins that may use them.
  PluginRegistry old_host(1, 0);
  EXPECT_CONTAINS(refusal(old_host, plugin_file("conditional_needs")),
                  "plugin built for astroflow ABI 1.1, host supports up to 1.0");
}

TEST(PluginRegistry, HostAtMinor2LoadsOlderAndEqualMinorsAndRefusesNewer) {
  PluginRegistry registry(1, 2);
  EXPECT_EQ(registry.host_abi_minor(), 2u);
  EXPECT_EQ(registry.load_file(plugin_file("good")).abi_minor(),
            static_cast<std::uint32_t>(ASTROFLOW_ABI_MINOR));
  EXPECT_EQ(registry.load_file(plugin_file("abi_minor2")).abi_minor(), 2u);
  EXPECT_CONTAINS(refusal(registry, plugin_file("abi_minor3")),
                  "plugin built for astroflow ABI 1.3, host supports up to 1.2");
  EXPECT_EQ(registry.plugins().size(), 2u);
}

TEST(PluginRegistry, RefusesAnotherToolchainPrintingBothTags) {
  PluginRegistry registry;
  const std::string path = plugin_file("toolchain");
  const std::string msg = refusal(registry, path);
  EXPECT_CONTAINS(msg, path + ": toolchain tag 'clang-99/libc++-1/cxx-201703L'");
  EXPECT_CONTAINS(msg, std::string("host's '") + ASTROFLOW_TOOLCHAIN_TAG + "'");
}

TEST(PluginRegistry, RefusesASharedObjectWithoutEntrySymbol) {
  PluginRegistry registry;
  const std::string path = plugin_file("no_entry");
  const std::string msg = refusal(registry, path);
  EXPECT_CONTAINS(msg, path + ": missing entry symbol 'astroflow_plugin_entry'");
  EXPECT_CONTAINS(msg, "undefined symbol");  // dlerror's text
}

TEST(PluginRegistry, RefusesAnEntryThatReturnsNull) {
  PluginRegistry registry;
  const std::string path = plugin_file("entry_null");
  EXPECT_CONTAINS(refusal(registry, path), path + ": entry symbol");
  EXPECT_CONTAINS(refusal(registry, path), "null");
}

TEST(PluginRegistry, RefusesATextFileNamedLikeAPlugin) {
  PluginRegistry registry;
  const std::string path = plugin_file("fake");
  const std::string msg = refusal(registry, path);
  EXPECT_CONTAINS(msg, path + ": not a loadable shared object");
  EXPECT_CONTAINS(msg, "invalid ELF header");  // dlerror's text
}

TEST(PluginRegistry, RefusesEmptyAndInvalidNames) {
  PluginRegistry registry;
  EXPECT_CONTAINS(refusal(registry, plugin_file("empty_name")),
                  plugin_file("empty_name") + ": descriptor field 'name' is empty");
  EXPECT_CONTAINS(refusal(registry, plugin_file("invalid_name")),
                  plugin_file("invalid_name") + ": invalid name 'bad name!'");
}

TEST(PluginRegistry, RefusesADuplicateNameNamingBothFiles) {
  PluginRegistry registry;
  const std::string a = plugin_file("duplicate", "dup_a");
  const std::string b = plugin_file("duplicate", "dup_b");
  (void)registry.load_file(a);
  const std::string msg = refusal(registry, b);
  EXPECT_CONTAINS(msg, b + ": duplicate plugin name 'dup', already loaded from " + a);
  EXPECT_EQ(registry.find("dup")->path(), a);
}

TEST(PluginRegistry, ScanLoadsInSortedOrderAndRecordsRefusals) {
  PluginRegistry registry;
  registry.scan({case_dir("duplicate"), case_dir("fake"), case_dir("no-such-folder"),
                 case_dir("good"), case_dir("no_entry")});
  ASSERT_EQ(registry.plugins().size(), 2u);
  EXPECT_EQ(registry.plugins()[0]->path(), plugin_file("duplicate", "dup_a"));
  EXPECT_EQ(registry.plugins()[1]->name(), "good");
  ASSERT_EQ(registry.refusals().size(), 3u);
  EXPECT_CONTAINS(registry.refusals()[0], plugin_file("duplicate", "dup_b"));
  EXPECT_CONTAINS(registry.refusals()[0], "duplicate plugin name 'dup'");
  EXPECT_CONTAINS(registry.refusals()[1], plugin_file("fake"));
  EXPECT_CONTAINS(registry.refusals()[2], plugin_file("no_entry"));
}

TEST(PluginRegistry, ScanOfTheSameFolderTwiceAddsNothing) {
  PluginRegistry registry;
  registry.scan({case_dir("good"), case_dir("good")});
  EXPECT_EQ(registry.plugins().size(), 1u);
  EXPECT_TRUE(registry.refusals().empty());
}

TEST(StageInstance, ProcessThatThrowsBecomesFrameErrorNamingStageAndFile) {
  PluginRegistry registry;
  const std::string path = plugin_file("process_throws");
  auto stage = registry.load_file(path).create("infer");
  stage->configure(good_options(2.0, "sum"));
  stage->open(StageContext{});
  Batch batch;
  batch.frames.push_back(counting_frame());
  try {
    stage->process(batch);
    ADD_FAILURE() << "process did not throw";
  } catch (const FatalError& e) {
    ADD_FAILURE() << "a process failure must be a FrameError: " << e.what();
  } catch (const FrameError& e) {
    EXPECT_CONTAINS(std::string(e.what()), "stage 'infer' (" + path +
                                               "): process: inference failed on a batch "
                                               "of 1 frames");
  }
  // The instance survives the failure: the next batch and close still work.
  Batch empty;
  EXPECT_THROW(stage->process(empty), FrameError);
  EXPECT_NO_THROW(stage->close());
}

TEST(StageInstance, ConfigureThatThrowsFatalErrorBecomesFatalError) {
  PluginRegistry registry;
  const std::string path = plugin_file("configure_fatal");
  auto stage = registry.load_file(path).create("model_stage");
  try {
    stage->configure(good_options(2.0, "sum"));
    ADD_FAILURE() << "configure did not throw";
  } catch (const FatalError& e) {
    EXPECT_EQ(std::string(e.what()),
              "stage 'model_stage' (" + path + "): configure: model file 'missing.onnx' not found");
  }
}

TEST(PluginRegistry, SearchPathIsConfigThenEnvironmentThenInstallDir) {
  const char* old = std::getenv("ASTROFLOW_PLUGIN_PATH");
  const std::string saved = old != nullptr ? old : "";
  ASSERT_EQ(setenv("ASTROFLOW_PLUGIN_PATH", "/env/a::/env/b", 1), 0);
  const std::vector<std::string> path = PluginRegistry::search_path({"/cfg/1", "/cfg/2"});
  if (old != nullptr) {
    setenv("ASTROFLOW_PLUGIN_PATH", saved.c_str(), 1);
  } else {
    unsetenv("ASTROFLOW_PLUGIN_PATH");
  }
  ASSERT_GE(path.size(), 5u);
  EXPECT_EQ(path[0], "/cfg/1");
  EXPECT_EQ(path[1], "/cfg/2");
  EXPECT_EQ(path[2], "/env/a");
  EXPECT_EQ(path[3], "/env/b");
  // This test runs from <build>/bin, so the install-relative folder is the build's plugin dir.
  bool found = false;
  for (std::size_t i = 4; i < path.size(); ++i) {
    found = found || fs::weakly_canonical(path[i]) == fs::weakly_canonical(ASTROFLOW_PLUGIN_DIR);
  }
  EXPECT_TRUE(found) << "no entry equals " << ASTROFLOW_PLUGIN_DIR;
}

TEST(Needs, ConditionsSelectTheNeedsOfAStageByItsOptions) {
  const std::vector<Need> needs = parse_needs(
      "plane:science, plane:segmap?mask , column:X_IMAGE|column:XWIN_IMAGE?mode=sources");
  ASSERT_EQ(needs.size(), 3u);
  EXPECT_TRUE(needs[0].option.empty());
  EXPECT_EQ(needs[1].alternatives, std::vector<std::string>{"plane:segmap"});
  EXPECT_EQ(needs[1].option, "mask");
  EXPECT_FALSE(needs[1].value.has_value());
  EXPECT_EQ(needs[2].alternatives,
            (std::vector<std::string>{"column:X_IMAGE", "column:XWIN_IMAGE"}));
  EXPECT_EQ(needs[2].condition_text(), "mode is sources");
  EXPECT_EQ(needs[2].token(), "column:X_IMAGE|column:XWIN_IMAGE");

  Options o;
  o.set("mask", false);
  o.set("mode", std::string("cutout"));
  EXPECT_TRUE(needs[0].applies(o));
  EXPECT_FALSE(needs[1].applies(o));
  EXPECT_FALSE(needs[2].applies(o));
  o.set("mask", true);
  o.set("mode", std::string("sources"));
  EXPECT_TRUE(needs[1].applies(o));
  EXPECT_TRUE(needs[2].applies(o));
  // Numbers compare as to_string prints them.
  o.set("k", 0.5);
  EXPECT_TRUE(parse_needs("wcs?k=0.5")[0].applies(o));
  EXPECT_FALSE(parse_needs("wcs?k=0.50")[0].applies(o));
  EXPECT_FALSE(parse_needs("wcs?absent")[0].applies(o));

  EXPECT_THROW((void)parse_needs("plane:x?"), std::invalid_argument);
  EXPECT_THROW((void)parse_needs("plane:x?mode="), std::invalid_argument);
  EXPECT_THROW((void)parse_needs("?mode=a"), std::invalid_argument);
}

TEST(PluginRegistry, AConditionalNeedMustNameAnOptionOfTheSchema) {
  PluginRegistry registry;
  const LoadedPlugin& p = registry.load_file(plugin_file("conditional_needs"));
  Options o;
  o.set("verbose", false);
  o.set("mode", std::string("sum"));
  auto texts = [&](const Options& opts) {
    std::vector<std::string> out;
    for (const Need& n : p.needs_for(opts)) out.push_back(n.alternatives.back());
    return out;
  };
  EXPECT_EQ(texts(o), std::vector<std::string>{"plane:science"});
  o.set("verbose", true);
  o.set("mode", std::string("mean"));
  EXPECT_EQ(texts(o),
            (std::vector<std::string>{"plane:science", "plane:extra", "column:XWIN_IMAGE"}));

  const std::string unknown = plugin_file("need_unknown_option");
  EXPECT_CONTAINS(refusal(registry, unknown),
                  unknown +
                      ": need 'plane:segmap?mask' depends on the option 'mask', which the "
                      "plugin's schema lacks");
  EXPECT_CONTAINS(refusal(registry, plugin_file("need_bad_choice")),
                  "need 'plane:segmap?mode=median' compares 'mode' with 'median', which is not one "
                  "of its choices");
}

}  // namespace
}  // namespace astroflow
