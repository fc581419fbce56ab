// Batch processing through the real CLI: a run killed with SIGKILL and resumed, shard runs
// merged with `astroflow merge`, and cross-image merging (output.merge_sky) of two overlapping
// images cut from one simulated scene. The reference is always an uninterrupted single run of
// the same config on the same inputs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "astroflow/fits_io.hpp"
#include "cli_runner.hpp"
#include "fits_fixtures.hpp"
#include "temp_dir.hpp"

namespace astroflow::test {
namespace {
namespace fs = std::filesystem;

constexpr int kFiles = 40;

std::string write_config(const TempDir& dir, const std::string& name, const std::string& output,
                         const std::string& back_size = "16", const std::string& batch = "1") {
  const std::string path = dir / name;
  write_text_file(path,
                  "input: {pattern: \"*.fits\"}\n"
                  "output: " +
                      output +
                      "\n"
                      // Group commits of exactly 4 inputs: a kill lands between commits,
                      // with outputs of uncommitted inputs on disk that --resume must redo.
                      "run: {batch: " +
                      batch +
                      ", max_in_flight: 1, commit_every: 4, "
                      "commit_interval_s: 600}\n"
                      "stages:\n"
                      "  - {plugin: background, back_size: " +
                      back_size +
                      "}\n"
                      "  - {plugin: sources}\n");
  return path;
}

/// kFiles 64x64 star fields with a TAN WCS, in a sub-folder too, each different.
std::string write_inputs(const TempDir& dir) {
  const std::string in = dir / "in";
  fs::create_directories(in + "/night2");
  for (int i = 0; i < kFiles; ++i) {
    const auto seed = static_cast<std::uint64_t>(100 + i);
    const auto stars = random_stars(3, 64, 64, 10, 12, 2000, 9000, seed);
    const std::string name =
        (i % 3 == 0 ? "night2/" : "") + std::string("img_") + std::to_string(1000 + i) + ".fits";
    write_image(in + "/" + name, star_field(64, 64, stars, 1.5, 100.0, 2.0, seed + 7),
                tan_wcs_keys(150.0 + 0.01 * i, 2.0, 32.5, 32.5, 0.2));
  }
  return in;
}

std::size_t count_lines(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return 0;
  const std::string text = read_text_file(path);
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

/// Hidden or temporary files below `dir` (atomic_file.hpp names them ".<name>.tmp.<pid>.<n>").
std::vector<std::string> leftovers(const std::string& dir) {
  std::vector<std::string> bad;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name[0] == '.' || name.find(".tmp") != std::string::npos) bad.push_back(e.path().string());
  }
  return bad;
}

void expect_same_catalogs(const std::string& a, const std::string& b) {
  for (const char* f : {"catalog.fits", "catalog.csv"}) {
    ASSERT_TRUE(fs::exists(a + "/" + f)) << a << "/" << f;
    ASSERT_TRUE(fs::exists(b + "/" + f)) << b << "/" << f;
    EXPECT_TRUE(read_text_file(a + "/" + f) == read_text_file(b + "/" + f))
        << f << " differs between " << a << " and " << b;
  }
}

/// Starts the CLI without waiting; output discarded.
pid_t spawn_cli(const std::vector<std::string>& args) {
  std::vector<std::string> all = {ASTROFLOW_CLI};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : all) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    setenv("ASTROFLOW_PLUGIN_PATH", ASTROFLOW_PLUGIN_DIR, 1);
    const int null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

/// Runs `config` uninterrupted into dir/ref, then into dir/out killed part-way and resumed: the
/// catalogs and counts must be the same, and finished inputs' catalogs must not be rewritten.
void kill_then_resume_equals_uninterrupted(const TempDir& dir, const std::string& config,
                                           const std::string& in) {
  const std::string ref = dir / "ref";
  const CliResult r0 =
      run_cli({"run", config, "--input", in, "--output", ref, "--threads", "1", "--quiet"});
  ASSERT_EQ(r0.exit_code, 0) << r0.all();
  ASSERT_EQ(count_lines(ref + "/manifest.jsonl"), static_cast<std::size_t>(kFiles));

  // Kill as soon as the manifest shows finished inputs: the run is then part-way.
  const std::string out = dir / "out";
  const std::string manifest = out + "/manifest.jsonl";
  const pid_t pid =
      spawn_cli({"run", config, "--input", in, "--output", out, "--threads", "1", "--quiet"});
  ASSERT_GT(pid, 0);
  int status = 0;
  bool exited = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (count_lines(manifest) >= 2) break;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_FALSE(exited) << "the run ended before it could be killed";
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  const std::size_t done_before = count_lines(manifest);
  ASSERT_GE(done_before, 2u);
  ASSERT_LT(done_before, static_cast<std::size_t>(kFiles)) << "killed too late to test resume";
  EXPECT_EQ(done_before % 4, 0u) << "manifest lines are committed in groups of run.commit_every";

  // The first finished input's catalog: a resumed run must not rewrite it.
  const nlohmann::json first = nlohmann::json::parse(
      read_text_file(manifest).substr(0, read_text_file(manifest).find('\n')));
  const std::string first_catalog = out + "/" + first["outputs"][0]["path"].get<std::string>();
  const auto first_mtime = fs::last_write_time(first_catalog);

  const CliResult r1 = run_cli({"run", config, "--input", in, "--output", out, "--threads", "1",
                                "--resume", "--log-level", "info"});
  ASSERT_EQ(r1.exit_code, 0) << r1.all();
  EXPECT_NE(r1.err.find("resume: " + std::to_string(done_before) + " of " + std::to_string(kFiles) +
                        " input(s) already done"),
            std::string::npos)
      << r1.err;
  EXPECT_EQ(fs::last_write_time(first_catalog), first_mtime);
  expect_same_catalogs(ref, out);
  EXPECT_EQ(leftovers(out), std::vector<std::string>{});
  const nlohmann::json s = nlohmann::json::parse(read_text_file(out + "/summary.json"));
  const nlohmann::json s_ref = nlohmann::json::parse(read_text_file(ref + "/summary.json"));
  EXPECT_EQ(s["counts"], s_ref["counts"]);

  // A resume with nothing left to do rewrites the same catalog.
  const CliResult r2 = run_cli({"run", config, "--input", in, "--output", out, "--threads", "1",
                                "--resume", "--log-level", "info"});
  ASSERT_EQ(r2.exit_code, 0) << r2.all();
  EXPECT_NE(r2.err.find("resume: " + std::to_string(kFiles) + " of "), std::string::npos) << r2.err;
  expect_same_catalogs(ref, out);
}

TEST(Resume, SigkillThenResumeEqualsUninterruptedRun) {
  TempDir dir("resume-kill");
  const std::string in = write_inputs(dir);
  kill_then_resume_equals_uninterrupted(
      dir, write_config(dir, "config.yaml", "{catalog: [fits, csv]}"), in);
}

// Without per-input catalogs the rows of each unit of 4 inputs go to one part catalog; a kill
// leaves parts of uncommitted units behind, which the resumed run replaces and removes.
TEST(Resume, SigkillThenResumeWithPartCatalogsEqualsUninterruptedRun) {
  TempDir dir("resume-parts");
  const std::string in = write_inputs(dir);
  const std::string config =
      write_config(dir, "config.yaml", "{catalog: [fits, csv], per_input_catalog: []}", "16", "4");
  kill_then_resume_equals_uninterrupted(dir, config, in);

  for (const std::string run : {"ref", "out"}) {
    const std::string out = dir / run;
    std::set<std::string> referenced;
    const std::string text = read_text_file(out + "/manifest.jsonl");
    std::size_t shared = 0;
    for (std::size_t a = 0, b; (b = text.find('\n', a)) != std::string::npos; a = b + 1) {
      const nlohmann::json e = nlohmann::json::parse(text.substr(a, b - a));
      const std::string part = e["frames"][0]["catalog"].get<std::string>();
      EXPECT_EQ(part.rfind("parts/", 0), 0u) << part;
      shared += referenced.contains(part) ? 1 : 0;
      referenced.insert(part);
    }
    EXPECT_GT(shared, 0u) << "no part catalog holds the rows of several inputs";
    std::set<std::string> on_disk;
    std::size_t per_input = 0;
    for (const auto& e : fs::recursive_directory_iterator(out)) {
      const std::string rel = fs::relative(e.path(), out).string();
      if (rel.rfind("parts/", 0) == 0)
        on_disk.insert(rel);
      else if (rel.ends_with(".cat.fits"))
        ++per_input;
    }
    EXPECT_EQ(per_input, 0u);
    EXPECT_EQ(on_disk, referenced) << run << ": part catalogs on disk and in the manifest differ";
    EXPECT_LE(on_disk.size(), static_cast<std::size_t>((kFiles + 3) / 4)) << run;
  }
}

TEST(Resume, ConfigChangeOrChangedInputIsRedone) {
  TempDir dir("resume-invalidate");
  const std::string in = write_inputs(dir);
  const std::string out = dir / "out";
  const std::string config = write_config(dir, "a.yaml", "{catalog: [fits]}");
  ASSERT_EQ(run_cli({"run", config, "--input", in, "--output", out, "--quiet"}).exit_code, 0);

  // A changed input (new mtime) is redone; the others are skipped.
  const std::string touched = in + "/img_1001.fits";
  fs::last_write_time(touched, fs::last_write_time(touched) + std::chrono::seconds(5));
  const CliResult r1 = run_cli({"run", config, "--input", in, "--output", out, "--resume"});
  ASSERT_EQ(r1.exit_code, 0) << r1.all();
  EXPECT_NE(r1.err.find("resume: " + std::to_string(kFiles - 1) + " of "), std::string::npos)
      << r1.err;
  EXPECT_EQ(count_lines(out + "/manifest.jsonl"), static_cast<std::size_t>(kFiles + 1));

  // A different stage option changes the config hash: every entry is stale and redone, and
  // the catalogs are those of a fresh run with the new config.
  const std::string changed = write_config(dir, "b.yaml", "{catalog: [fits]}", "32");
  const CliResult r2 = run_cli({"run", changed, "--input", in, "--output", out, "--resume"});
  ASSERT_EQ(r2.exit_code, 0) << r2.all();
  EXPECT_NE(r2.err.find("resume: 0 of " + std::to_string(kFiles)), std::string::npos) << r2.err;
  const std::string fresh = dir / "fresh";
  ASSERT_EQ(run_cli({"run", changed, "--input", in, "--output", fresh, "--quiet"}).exit_code, 0);
  EXPECT_TRUE(read_text_file(out + "/catalog.fits") == read_text_file(fresh + "/catalog.fits"));
  const nlohmann::json s = nlohmann::json::parse(read_text_file(out + "/summary.json"));
  std::size_t hash_lines = 0;
  const std::string text = read_text_file(out + "/manifest.jsonl");
  std::size_t pos = 0;
  while ((pos = text.find(s["config_sha256"].get<std::string>(), pos)) != std::string::npos) {
    ++hash_lines;
    ++pos;
  }
  EXPECT_EQ(hash_lines, static_cast<std::size_t>(kFiles));
}

TEST(Shards, TwoShardsMergedEqualSingleRun) {
  TempDir dir("shards");
  const std::string in = write_inputs(dir);
  const std::string config = write_config(dir, "config.yaml", "{catalog: [fits, csv]}");
  const std::string single = dir / "single";
  ASSERT_EQ(run_cli({"run", config, "--input", in, "--output", single, "--quiet"}).exit_code, 0);

  std::vector<std::string> shard_dirs;
  std::size_t total = 0;
  for (int i = 0; i < 2; ++i) {
    const std::string d = dir / ("shard" + std::to_string(i));
    const CliResult r = run_cli({"run", config, "--input", in, "--output", d, "--shard",
                                 std::to_string(i) + "/2", "--quiet"});
    ASSERT_EQ(r.exit_code, 0) << r.all();
    const std::size_t n = count_lines(d + "/manifest.jsonl");
    EXPECT_GT(n, 0u);
    EXPECT_LT(n, static_cast<std::size_t>(kFiles));
    total += n;
    shard_dirs.push_back(d);
  }
  EXPECT_EQ(total, static_cast<std::size_t>(kFiles));

  const std::string merged = dir / "merged";
  const CliResult m =
      run_cli({"merge", shard_dirs[0], shard_dirs[1], "--output", merged, "--config", config});
  ASSERT_EQ(m.exit_code, 0) << m.all();
  expect_same_catalogs(single, merged);
  const nlohmann::json s = nlohmann::json::parse(read_text_file(merged + "/summary.json"));
  const nlohmann::json s_ref = nlohmann::json::parse(read_text_file(single + "/summary.json"));
  EXPECT_EQ(s["counts"], s_ref["counts"]);

  // The same shard twice is refused: its inputs would be counted twice.
  const CliResult twice = run_cli({"merge", shard_dirs[0], shard_dirs[0], "--output", dir / "bad"});
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_NE(twice.err.find("appears in both"), std::string::npos) << twice.err;

  const CliResult bad_shard =
      run_cli({"run", config, "--input", in, "--output", dir / "x", "--shard", "2/2"});
  EXPECT_EQ(bad_shard.exit_code, 1);
}

/// Two 140x100 images cut from one 220x100 scene (columns 0..139 and 80..219), sharing a TAN
/// frame. Stars at scene x = 20, 45 (only in A), 92, 128 (in both), 175, 200 (only in B).
TEST(MergeSky, OverlappingImagesFlagDuplicatesAndKeepFarthestFromEdge) {
  TempDir dir("merge-sky");
  const std::string in = dir / "in";
  fs::create_directories(in);
  const std::vector<Star> scene_stars = {{20, 50, 8000},  {45, 30, 7000},  {92, 50, 9000},
                                         {128, 40, 8500}, {175, 60, 7500}, {200, 35, 8000}};
  const cv::Mat scene = star_field(220, 100, scene_stars, 1.5, 100.0, 2.0, 42);
  const double pixel_scale = 0.2;
  write_image(in + "/a.fits", scene(cv::Rect(0, 0, 140, 100)).clone(),
              tan_wcs_keys(150.0, 2.0, 110.5, 50.5, pixel_scale));
  write_image(in + "/b.fits", scene(cv::Rect(80, 0, 140, 100)).clone(),
              tan_wcs_keys(150.0, 2.0, 110.5 - 80, 50.5, pixel_scale));

  const std::string config =
      write_config(dir, "config.yaml",
                   "{catalog: [fits, csv], quicklook: true,\n"
                   "  merge_sky: {radius_arcsec: 0.5, keep: farthest_from_edge}}");
  const std::string out = dir / "out";
  const CliResult r = run_cli({"run", config, "--input", in, "--output", out, "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.all();

  const Catalog c = read_fits_catalog(out + "/catalog.fits", 1);
  ASSERT_EQ(c.rows(), 8u) << "expected 4 stars on each image";
  const Column* file = c.find("FILE");
  const Column* x = c.find("X_IMAGE");
  const Column* n_obs = c.find("N_OBS");
  const Column* dup = c.find("DUPLICATE_OF");
  ASSERT_TRUE(file && x && n_obs && dup);
  std::size_t duplicates = 0;
  for (std::size_t i = 0; i < c.rows(); ++i) {
    const bool in_a = file->as_text(i) == "a.fits";
    const double scene_x = x->as_double(i) - 1.0 + (in_a ? 0.0 : 80.0);
    const bool overlap = scene_x > 80.0 && scene_x < 140.0;
    EXPECT_EQ(n_obs->as_double(i), overlap ? 2.0 : 1.0) << "row " << i << " x " << scene_x;
    if (!overlap) {
      EXPECT_EQ(dup->as_double(i), 0.0);
      continue;
    }
    // Star at scene x = 92 is 47 px from A's right edge but 12 px from B's left edge: A's
    // measurement is kept; the star at 128 is 11 px from A's edge and 40 px (its y) in B.
    const bool kept_here = std::abs(scene_x - 92.0) < 3.0 ? in_a : !in_a;
    if (kept_here) {
      EXPECT_EQ(dup->as_double(i), 0.0) << "row " << i;
    } else {
      ++duplicates;
      const auto kept = static_cast<std::size_t>(dup->as_double(i)) - 1;
      ASSERT_LT(kept, c.rows());
      EXPECT_NE(file->as_text(kept), file->as_text(i));
      EXPECT_EQ(dup->as_double(kept), 0.0);
    }
  }
  EXPECT_EQ(duplicates, 2u);

  // The run's report links both quick-looks, which exist.
  const std::string html = read_text_file(out + "/report.html");
  for (const char* png : {"quicklook/a.png", "quicklook/b.png"}) {
    EXPECT_NE(html.find(png), std::string::npos) << png;
    EXPECT_GT(fs::file_size(out + "/" + png), 100u) << png;
  }

  // Without the section, no duplicate columns are added.
  const std::string plain = write_config(dir, "plain.yaml", "{catalog: [fits]}");
  ASSERT_EQ(run_cli({"run", plain, "--input", in, "--output", dir / "plain", "--quiet"}).exit_code,
            0);
  EXPECT_EQ(read_fits_catalog(dir / "plain" + "/catalog.fits", 1).find("N_OBS"), nullptr);
}

}  // namespace
}  // namespace astroflow::test
