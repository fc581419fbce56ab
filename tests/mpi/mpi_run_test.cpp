// `mpirun -n 3 astroflow run ...` against a single-process run of the same config and inputs
// (built and registered only with -DASTROFLOW_WITH_MPI=ON). 30 inputs, 3 of them bad: the MPI
// run must report them like the single run does, and write the same merged catalog bytes and
// summary counts, with one manifest.jsonl and no per-rank leftovers.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "cli_runner.hpp"
#include "fits_fixtures.hpp"
#include "temp_dir.hpp"

namespace astroflow::test {
namespace {
namespace fs = std::filesystem;

constexpr int kGood = 27;

std::string write_inputs(const TempDir& dir) {
  const std::string in = dir / "in";
  fs::create_directories(in + "/b");
  for (int i = 0; i < kGood; ++i) {
    const auto seed = static_cast<std::uint64_t>(500 + i);
    const auto stars = random_stars(3, 64, 64, 10, 12, 2000, 9000, seed);
    const std::string name =
        (i % 4 == 0 ? "b/" : "") + std::string("img_") + std::to_string(100 + i) + ".fits";
    write_image(in + "/" + name, star_field(64, 64, stars, 1.5, 100.0, 2.0, seed + 7),
                tan_wcs_keys(150.0 + 0.01 * i, 2.0, 32.5, 32.5, 0.2));
  }
  write_corrupt(in + "/img_110x.fits");
  write_truncated(in + "/b/img_120x.fits", 64, 64, 0.3);
  write_image(in + "/img_130x.fits", cv::Mat(32, 32, CV_32FC1, cv::Scalar(NAN)));
  return in;
}

std::string write_config(const TempDir& dir) {
  const std::string path = dir / "config.yaml";
  write_text_file(path,
                  "input: {pattern: \"*.fits\"}\n"
                  "output: {catalog: [fits, csv], images: [segmap]}\n"
                  "run: {batch: 8, max_in_flight: 2}\n"
                  "stages:\n"
                  "  - {plugin: background, back_size: 16}\n"
                  "  - {plugin: sources}\n");
  return path;
}

nlohmann::json summary_of(const std::string& out) {
  return nlohmann::json::parse(read_text_file(out + "/summary.json"));
}

// path|hdu|stage|reason, the reason cut after "CFITSIO status N (text)": the CFITSIO error
// messages that follow come from the library's one process-wide message stack, which reader
// threads share, so which of its lines a failure collects can differ from run to run (one run
// of this test listed "Error reading elements 1 thru 4096 from image (ffgcle)." and the next
// did not).
std::multiset<std::string> failures_of(const nlohmann::json& s) {
  std::multiset<std::string> f;
  for (const auto& r : s.at("failures")) {
    std::string reason = r.value("reason", "");
    static const std::regex status(R"(CFITSIO status \d+ \([^)]*\))");
    std::smatch m;
    if (std::regex_search(reason, m, status))
      reason = reason.substr(0, static_cast<std::size_t>(m.position(0) + m.length(0)));
    f.insert(r.value("path", "") + "|" + r.value("hdu", "") + "|" + r.value("stage", "") + "|" +
             reason);
  }
  return f;
}

TEST(Mpi, ThreeRanksEqualSingleProcessRun) {
  TempDir dir("mpi-run");
  const std::string in = write_inputs(dir);
  const std::string config = write_config(dir);

  const std::string ref = dir / "ref";
  const CliResult r0 =
      run_cli({"run", config, "--input", in, "--output", ref, "--threads", "2", "--quiet"});
  ASSERT_EQ(r0.exit_code, 2) << r0.all();  // completed with failures

  const std::string out = dir / "mpi";
  // CI runs as root; vader's single-copy mechanism needs ptrace rights containers often lack.
  const std::vector<std::pair<std::string, std::string>> env = {
      {"OMPI_ALLOW_RUN_AS_ROOT", "1"},
      {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"},
      {"OMPI_MCA_btl_vader_single_copy_mechanism", "none"},
      {"ASTROFLOW_PLUGIN_PATH", ASTROFLOW_PLUGIN_DIR}};
  const CliResult r1 =
      run_program(ASTROFLOW_MPIEXEC,
                  {"--oversubscribe", "--allow-run-as-root", "-n", "3", ASTROFLOW_CLI, "run",
                   config, "--input", in, "--output", out, "--threads", "1"},
                  env);
  ASSERT_EQ(r1.exit_code, 2) << r1.all();

  for (const char* f : {"catalog.fits", "catalog.csv"}) {
    ASSERT_TRUE(fs::exists(out + "/" + f)) << f << "\n" << r1.all();
    EXPECT_TRUE(read_text_file(ref + "/" + f) == read_text_file(out + "/" + f))
        << f << " differs from the single-process run";
  }
  // Per-input outputs too (every rank wrote some of them).
  EXPECT_TRUE(read_text_file(ref + "/b/img_100.cat.fits") ==
              read_text_file(out + "/b/img_100.cat.fits"));

  const nlohmann::json s0 = summary_of(ref);
  const nlohmann::json s1 = summary_of(out);
  EXPECT_EQ(s0.at("counts"), s1.at("counts"));
  EXPECT_EQ(s1.at("counts").value("files", 0), kGood + 3);
  EXPECT_EQ(s1.at("counts").value("files_failed", 0), 3);
  EXPECT_EQ(failures_of(s0), failures_of(s1));
  EXPECT_EQ(s1.at("exit_status"), s0.at("exit_status"));

  // One manifest with a line per input; the ranks' own logs were folded into it.
  const std::string manifest = read_text_file(out + "/manifest.jsonl");
  EXPECT_EQ(std::count(manifest.begin(), manifest.end(), '\n'), kGood + 3);
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().rfind("manifest.rank-", 0), std::string::npos)
        << e.path();

  // The work was shared: rank 0 logs how many inputs each rank got.
  std::smatch m;
  const std::string log = r1.all();
  ASSERT_TRUE(
      std::regex_search(log, m, std::regex(R"(inputs given to rank 0\.\.2: (\d+), (\d+), (\d+))")))
      << log;
  const int a = std::stoi(m[1]), b = std::stoi(m[2]), c = std::stoi(m[3]);
  EXPECT_EQ(a + b + c, kGood + 3);
  EXPECT_GE((a > 0) + (b > 0) + (c > 0), 2) << log;

  // --resume under MPI: nothing left to do, the same catalog again.
  const CliResult r2 =
      run_program(ASTROFLOW_MPIEXEC,
                  {"--oversubscribe", "--allow-run-as-root", "-n", "3", ASTROFLOW_CLI, "run",
                   config, "--input", in, "--output", out, "--threads", "1", "--resume"},
                  env);
  EXPECT_EQ(r2.exit_code, 2) << r2.all();  // the bad inputs are redone, and fail again
  EXPECT_NE(r2.all().find("27 of 30 input(s) already done"), std::string::npos) << r2.all();
  EXPECT_TRUE(read_text_file(ref + "/catalog.fits") == read_text_file(out + "/catalog.fits"));
  EXPECT_EQ(summary_of(out).at("counts"), s0.at("counts"));
}

}  // namespace
}  // namespace astroflow::test
