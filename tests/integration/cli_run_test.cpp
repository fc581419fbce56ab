// End-to-end runs of the real CLI with the real background and sources plugins on generated
// FITS files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "astroflow/fits_io.hpp"
#include "cli_runner.hpp"
#include "fits_fixtures.hpp"
#include "temp_dir.hpp"

namespace astroflow::test {
namespace {
namespace fs = std::filesystem;

constexpr const char* kTwoStages =
    "  - {plugin: background, back_size: 32}\n"
    "  - {plugin: sources}\n";

std::string write_config(const TempDir& dir, const std::string& stages, const std::string& run,
                         const std::string& images = "[segmap]") {
  const std::string path = dir / "config.yaml";
  write_text_file(path,
                  "input: {pattern: \"*.fits*\"}\n"
                  "output: {catalog: [fits, csv], images: " +
                      images + "}\nrun: " + run + "\nstages:\n" + stages);
  return path;
}

/// A 64x64 field with two bright stars and a TAN WCS; different per seed.
void write_good_stamp(const std::string& path, std::uint64_t seed) {
  const auto stars = random_stars(2, 64, 64, 12, 15, 3000, 8000, seed);
  write_image(path, star_field(64, 64, stars, 1.5, 100.0, 2.0, seed + 1000),
              tan_wcs_keys(150.0 + 0.01 * static_cast<double>(seed), 2.0, 32.5, 32.5, 0.2));
}

nlohmann::json read_summary(const std::string& out_dir) {
  return nlohmann::json::parse(read_text_file(out_dir + "/summary.json"));
}

/// Any hidden or temporary file left below `dir`.
std::vector<std::string> leftovers(const std::string& dir) {
  std::vector<std::string> bad;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name[0] == '.' || name.find(".tmp") != std::string::npos) bad.push_back(e.path().string());
  }
  return bad;
}

TEST(CliRun, BadFilesAreListedAndEveryGoodFileIsProcessed) {
  TempDir dir("bad-inputs");
  const std::string in = dir / "in";
  fs::create_directories(in + "/sub");
  const std::vector<std::string> good = {"a_good.fits", "sub/b_good.fits", "z_good.fits"};
  for (std::size_t i = 0; i < good.size(); ++i) write_good_stamp(in + "/" + good[i], 11 + i);
  write_corrupt(in + "/corrupt.fits");
  write_truncated(in + "/truncated.fits", 200, 200, 0.4);
  write_text_file(in + "/empty.fits", "");
  write_text_file(in + "/notfits.fits", "this is a text file, not FITS\n");
  write_cube(in + "/cube.fits", 16, 16, 3, 5);
  write_image(in + "/allnan.fits", cv::Mat(32, 32, CV_32FC1, cv::Scalar(NAN)));
  write_table_only(in + "/table.fits");
  write_text_file(in + "/notes.txt", "not matched by the pattern\n");
  write_text_file(in + "/.hidden.fits", "hidden, skipped\n");
  const std::set<std::string> bad = {"corrupt.fits", "truncated.fits", "empty.fits", "notfits.fits",
                                     "cube.fits",    "allnan.fits",    "table.fits"};

  const std::string out = dir / "out";
  const CliResult r = run_cli({"run", write_config(dir, kTwoStages, "{batch: 3, max_in_flight: 2}"),
                               "--input", in, "--output", out, "--threads", "2"});
  ASSERT_EQ(r.exit_code, 2) << r.all();

  const nlohmann::json s = read_summary(out);
  EXPECT_EQ(s["exit_status"], 2);
  EXPECT_EQ(s["counts"]["files"], good.size() + bad.size());
  EXPECT_EQ(s["counts"]["files_failed"], bad.size());
  std::set<std::string> failed_names;
  for (const auto& f : s["failures"]) {
    failed_names.insert(fs::path(f["path"].get<std::string>()).filename().string());
    EXPECT_FALSE(f["reason"].get<std::string>().empty()) << f.dump();
    EXPECT_FALSE(f["stage"].get<std::string>().empty()) << f.dump();
    // Each failure is logged as one line naming the file.
    EXPECT_NE(r.err.find(f["path"].get<std::string>()), std::string::npos) << r.err;
  }
  EXPECT_EQ(failed_names, bad);
  EXPECT_EQ(s["failures"].size(), bad.size());

  for (const std::string& g : good) {
    const std::string stem = out + "/" + g.substr(0, g.size() - 5);
    EXPECT_TRUE(fs::exists(stem + ".cat.fits")) << stem;
    EXPECT_TRUE(fs::exists(stem + ".cat.csv")) << stem;
    EXPECT_TRUE(fs::exists(stem + ".segmap.fits")) << stem;
    const Catalog c = read_fits_catalog(stem + ".cat.fits");
    EXPECT_GE(c.rows(), 2u) << stem;
  }
  for (const std::string& b : bad) {
    EXPECT_FALSE(fs::exists(out + "/" + b.substr(0, b.size() - 5) + ".cat.fits")) << b;
  }
  EXPECT_TRUE(leftovers(out).empty()) << leftovers(out).front();

  const Catalog merged = read_fits_catalog(out + "/catalog.fits");
  ASSERT_GE(merged.columns().size(), 3u);
  EXPECT_EQ(merged.columns()[0].name, "FILE");
  EXPECT_EQ(merged.columns()[1].name, "HDU");
  std::set<std::string> files_in_catalog(merged.get<std::string>("FILE").begin(),
                                         merged.get<std::string>("FILE").end());
  EXPECT_EQ(files_in_catalog, std::set<std::string>(good.begin(), good.end()));
  EXPECT_EQ(s["counts"]["sources"], merged.rows());
  // Input order: rows sorted by FILE (the sorted input list).
  const auto& file_col = merged.get<std::string>("FILE");
  EXPECT_TRUE(std::is_sorted(file_col.begin(), file_col.end()));
}

TEST(CliRun, MergedCatalogsAreByteIdenticalAcrossThreadCountsAndRuns) {
  TempDir dir("determinism");
  const std::string in = dir / "in";
  fs::create_directories(in);
  for (int i = 0; i < 24; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "stamp_%03d.fits", i);
    write_good_stamp(in + "/" + name, 100 + static_cast<std::uint64_t>(i));
  }
  const std::string config = write_config(dir, kTwoStages, "{batch: 2, max_in_flight: 4}", "[]");
  std::vector<std::string> outs;
  for (const char* threads : {"1", "2", "2"}) {
    const std::string out = dir / ("out" + std::to_string(outs.size()));
    const CliResult r =
        run_cli({"run", config, "--input", in, "--output", out, "--threads", threads, "--quiet"});
    ASSERT_EQ(r.exit_code, 0) << r.all();
    outs.push_back(out);
  }
  for (const char* file : {"/catalog.fits", "/catalog.csv", "/stamp_017.cat.fits"}) {
    const std::string ref = read_text_file(outs[0] + file);
    EXPECT_GT(ref.size(), 2880u);
    EXPECT_EQ(read_text_file(outs[1] + file), ref) << file << ": threads 1 vs 2";
    EXPECT_EQ(read_text_file(outs[2] + file), ref) << file << ": two runs with 2 threads";
  }
  const nlohmann::json s1 = read_summary(outs[0]);
  const nlohmann::json s2 = read_summary(outs[1]);
  EXPECT_EQ(s1["threads"], 1);
  EXPECT_EQ(s2["threads"], 2);
  EXPECT_EQ(s1["counts"]["frames"], 24);
  EXPECT_GE(s1["counts"]["sources"].get<int>(), 48);
}

TEST(CliRun, TiledImageGivesTheSameSourcesAsUntiledWithoutDuplicates) {
  TempDir dir("tiling");
  const std::string in = dir / "in";
  fs::create_directories(in);
  constexpr int kW = 600;
  constexpr int kH = 420;
  const auto stars = random_stars(60, kW, kH, 8, 14, 2000, 20000, 7);
  write_image(in + "/field.fits", star_field(kW, kH, stars, 1.5, 50.0, 2.0, 8),
              tan_wcs_keys(30.0, -20.0, kW / 2.0, kH / 2.0, 0.3));
  const std::string stages =
      "  - {plugin: background, back_size: 32}\n"
      "  - {plugin: sources}\n";
  const std::string untiled_cfg = dir / "untiled.yaml";
  const std::string tiled_cfg = dir / "tiled.yaml";
  write_text_file(untiled_cfg,
                  "output: {images: [segmap]}\nrun: {tile_size: 4096}\nstages:\n" + stages);
  write_text_file(tiled_cfg,
                  "output: {images: [segmap]}\nrun: {tile_size: 160, tile_overlap: 32, batch: 4}\n"
                  "stages:\n" +
                      stages);
  const CliResult ru = run_cli({"run", untiled_cfg, "--input", in, "--output", dir / "untiled"});
  ASSERT_EQ(ru.exit_code, 0) << ru.all();
  const CliResult rt = run_cli({"run", tiled_cfg, "--input", in, "--output", dir / "tiled"});
  ASSERT_EQ(rt.exit_code, 0) << rt.all();

  const Catalog untiled = read_fits_catalog(dir / "untiled/field.cat.fits");
  const Catalog tiled = read_fits_catalog(dir / "tiled/field.cat.fits");
  // Every injected star is found exactly once in each catalog.
  for (const Catalog* c : {&untiled, &tiled}) {
    const auto& x = c->get<double>("X_IMAGE");
    const auto& y = c->get<double>("Y_IMAGE");
    for (const Star& s : stars) {
      int matches = 0;
      for (std::size_t r = 0; r < x.size(); ++r)
        matches += std::hypot(x[r] - s.x, y[r] - s.y) < 1.5 ? 1 : 0;
      EXPECT_EQ(matches, 1) << (c == &tiled ? "tiled" : "untiled") << " star at " << s.x << ","
                            << s.y;
    }
    // No two rows at the same place (a duplicate from an overlap).
    for (std::size_t a = 0; a < x.size(); ++a)
      for (std::size_t b = a + 1; b < x.size(); ++b)
        EXPECT_GT(std::hypot(x[a] - x[b], y[a] - y[b]), 1.5) << a << " " << b;
  }
  EXPECT_EQ(tiled.rows(), untiled.rows());
  // Same positions and fluxes within tolerance (the background meshes differ between tiles).
  const auto& ux = untiled.get<double>("X_IMAGE");
  const auto& uy = untiled.get<double>("Y_IMAGE");
  const auto& uf = untiled.get<double>("FLUX_AUTO");
  const auto& tx = tiled.get<double>("X_IMAGE");
  const auto& ty = tiled.get<double>("Y_IMAGE");
  const auto& tf = tiled.get<double>("FLUX_AUTO");
  const auto& ua = untiled.get<double>("ALPHA_J2000");
  const auto& ud = untiled.get<double>("DELTA_J2000");
  const auto& ta = tiled.get<double>("ALPHA_J2000");
  const auto& td = tiled.get<double>("DELTA_J2000");
  for (std::size_t r = 0; r < ux.size(); ++r) {
    std::size_t best = 0;
    double best_d = 1e9;
    for (std::size_t q = 0; q < tx.size(); ++q) {
      const double d = std::hypot(ux[r] - tx[q], uy[r] - ty[q]);
      if (d < best_d) best_d = d, best = q;
    }
    EXPECT_LT(best_d, 0.05) << "untiled row " << r;
    // The stitched catalog keeps the input WCS: sky positions agree with the untiled run
    // (5e-6 deg is the 0.05 px position tolerance at 0.3 arcsec/px).
    EXPECT_NEAR(ta[best], ua[r], 5e-6) << "untiled row " << r;
    EXPECT_NEAR(td[best], ud[r], 5e-6) << "untiled row " << r;
    EXPECT_NEAR(tf[best], uf[r], 0.02 * std::abs(uf[r]) + 20.0) << "untiled row " << r;
  }
  // The stitched segmap has full size and its labels are exactly the catalog's NUMBERs.
  const std::vector<Frame> seg = read_fits_frames(dir / "tiled/field.segmap.fits", {});
  ASSERT_EQ(seg.size(), 1u);
  ASSERT_EQ(seg[0].width(), kW);
  ASSERT_EQ(seg[0].height(), kH);
  std::set<int> labels;
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x) {
      const float v = seg[0].science.at<float>(y, x);
      if (v != 0) labels.insert(static_cast<int>(v));
    }
  const auto& numbers = tiled.get<std::int32_t>("NUMBER");
  EXPECT_EQ(labels, std::set<int>(numbers.begin(), numbers.end()));
  for (std::size_t r = 0; r < numbers.size(); ++r) {
    EXPECT_EQ(numbers[r], static_cast<int>(r + 1));
    const int cx = static_cast<int>(std::lround(tx[r] - 1));
    const int cy = static_cast<int>(std::lround(ty[r] - 1));
    EXPECT_EQ(static_cast<int>(seg[0].science.at<float>(cy, cx)), numbers[r]) << r;
  }
}

TEST(CliRun, WithoutStagesWritesEmptyCatalogsAndKeepsHeaders) {
  TempDir dir("nostages");
  const std::string in = dir / "in";
  fs::create_directories(in);
  write_good_stamp(in + "/one.fits", 3);
  write_mef(
      in + "/mef.fits",
      {{"SCI", 1, cv::Mat(20, 30, CV_32FC1, cv::Scalar(1)), {{"OBSERVER", std::string("X"), ""}}},
       {"SCI", 2, cv::Mat(20, 30, CV_32FC1, cv::Scalar(2)), {}}});
  const std::string cfg = dir / "c.yaml";
  write_text_file(cfg, "output: {images: [science]}\nstages: []\n");
  const CliResult r = run_cli({"run", cfg, "--input", in, "--output", dir / "out"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  const nlohmann::json s = read_summary(dir / "out");
  EXPECT_EQ(s["counts"]["files"], 2);
  EXPECT_EQ(s["counts"]["frames"], 3);
  EXPECT_EQ(s["counts"]["sources"], 0);
  EXPECT_TRUE(fs::exists(dir / "out/mef.SCI1.cat.fits"));
  EXPECT_TRUE(fs::exists(dir / "out/mef.SCI2.cat.fits"));
  EXPECT_TRUE(fs::exists(dir / "out/one.cat.csv"));
  // The written science plane keeps the input header and gains provenance.
  const std::vector<Frame> back = read_fits_frames(dir / "out/mef.SCI1.science.fits", {});
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].header.get_string("OBSERVER").value_or(""), "X");
  EXPECT_EQ(back[0].science.at<float>(5, 5), 1.0f);
  bool has_history = false;
  for (const std::string& card : back[0].header.cards())
    has_history = has_history || card.rfind("HISTORY astroflow", 0) == 0;
  EXPECT_TRUE(has_history);
  const std::vector<Frame> wcs_back = read_fits_frames(dir / "out/one.science.fits", {});
  ASSERT_EQ(wcs_back.size(), 1u);
  ASSERT_TRUE(wcs_back[0].wcs.has_value());
  const SkyCoord c = wcs_back[0].wcs->pixel_to_sky({32.5, 32.5});
  EXPECT_NEAR(c.ra_deg, 150.03, 1e-9);
  EXPECT_NEAR(c.dec_deg, 2.0, 1e-9);
}

TEST(CliRun, MissingInputIsFatalWithOneLine) {
  TempDir dir("missing");
  const std::string cfg = dir / "c.yaml";
  write_text_file(cfg, "stages: []\n");
  const CliResult r = run_cli({"run", cfg, "--input", dir / "nope", "--output", dir / "out"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("astroflow: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;
}

TEST(CliRun, OptionAStageRefusesAtOpenNamesTheStagesYamlLine) {
  // exclude_classes is checked against the model card only when the stage opens, after the
  // config's own checks: the error must still point at the stage in the YAML file.
  TempDir dir("refused-at-open");
  const std::string in = dir / "in";
  fs::create_directories(in);
  write_good_stamp(in + "/a.fits", 5);
  const std::string model = std::string(ASTROFLOW_SOURCE_DIR) + "/models/classify/model.onnx";
  const std::string cfg = write_config(
      dir,
      "  - {plugin: background, back_size: 32}\n  - {plugin: classify, model: " + model +
          ", exclude_classes: spiral}\n",
      "{threads: 1}", "[]");
  const CliResult r = run_cli({"run", cfg, "--input", in, "--output", dir / "out"});
  EXPECT_EQ(r.exit_code, 1) << r.all();
  EXPECT_EQ(r.err.rfind("astroflow: error: " + cfg + ":6:", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("'spiral' is not a class"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(fs::path(dir / "out") / "a.cat.fits"));
}

// Every FITS file the survey chain and the denoiser write, checked by HEASARC's fitsverify
// (Debian package fitsverify): the per-image catalogs, the merged catalog of two overlapping
// tiles, segmap, classmap and the denoised images, each keeping the input's header and WCS.
TEST(CliRun, EveryFitsFileOfASurveyAndADenoiseRunPassesFitsverify) {
  const std::string fitsverify = "/usr/bin/fitsverify";
  ASSERT_TRUE(fs::exists(fitsverify)) << "fitsverify missing; scripts/install-deps.sh installs it";
  TempDir dir("fitsverify");
  const std::string sim = dir / "sim";
  const CliResult simulated = run_cli({"simulate", "field", "--seed", "9215", "--size", "640x384",
                                       "--tiles", "2x1", "--tile-overlap", "64", "--output", sim});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.all();
  // Only the images: the simulator writes truth tables and noiseless models beside them.
  const std::string in = dir / "in";
  fs::create_directories(in);
  for (const char* tile : {"field_r0c0.fits", "field_r0c1.fits"}) {
    fs::copy_file(sim + "/" + tile, in + "/" + tile);
  }
  const std::string configs = std::string(ASTROFLOW_SOURCE_DIR) + "/configs/";
  std::vector<std::string> written;
  for (const char* config : {"survey.yaml", "denoise.yaml"}) {
    const std::string out = dir / (std::string("out-") + config);
    const CliResult r = run_cli(
        {"run", configs + config, "--input", in, "--output", out, "--threads", "2", "--quiet"});
    ASSERT_EQ(r.exit_code, 0) << config << ": " << r.all();
    for (const auto& e : fs::recursive_directory_iterator(out)) {
      if (e.path().extension() == ".fits") written.push_back(e.path().string());
    }
  }
  std::sort(written.begin(), written.end());
  // survey: 2 catalogs, 2 segmaps, 2 classmaps and the merged catalog; denoise: 2 catalogs,
  // 2 denoised images and the merged catalog.
  ASSERT_EQ(written.size(), 12u) << ::testing::PrintToString(written);
  for (const std::string& f : written) {
    const CliResult v = run_program(fitsverify, {"-q", f});
    EXPECT_EQ(v.exit_code, 0) << v.all();
    EXPECT_NE(v.out.find("verification OK"), std::string::npos) << v.all();
    EXPECT_EQ(v.out.find("warning"), std::string::npos) << v.all();
  }
}

}  // namespace
}  // namespace astroflow::test
