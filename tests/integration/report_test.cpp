// report.html in a real browser: headless Chromium (Debian package `chromium`) loads the page
// from disk with networking off, the page's own script marks whether every <img> decoded, and
// the browser log must hold no console error.
//
// Screenshot for docs/batch.md: ASTROFLOW_REPORT_SCREENSHOT=$PWD/docs/report-screenshot.png
//   build/bin/report_test --gtest_filter=Report.RendersInHeadlessChromium
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <opencv2/imgproc.hpp>
#include <random>

#include "astroflow/quicklook.hpp"
#include "astroflow/run_report.hpp"
#include "cli_runner.hpp"
#include "fits_fixtures.hpp"
#include "temp_dir.hpp"

namespace astroflow {
namespace {

namespace fs = std::filesystem;

std::string find_chromium() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"})
    if (fs::exists(p)) return p;
  return {};
}

std::vector<std::string> chromium_args(const std::string& profile) {
  return {"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run",
          "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0",
          // The page's load handler must have run before the DOM is dumped.
          "--virtual-time-budget=5000"};
}

std::string class_of(int i) {
  return i % 2 == 0 ? "star" : "galaxy";
}

/// Writes a report with `n` quick-looks of seeded star fields (detections = the true stars)
/// into dir; returns the report path.
std::string write_sample_report(const test::TempDir& dir, int n, bool drop_one_png) {
  std::vector<QuicklookEntry> gallery;
  Catalog merged;
  RunReport report;
  for (int i = 0; i < n; ++i) {
    const auto stars = test::random_stars(12, 200, 150, 10, 12, 300, 30000, 100 + i);
    const cv::Mat sci = test::star_field(200, 150, stars, 1.5, 100.0, 5.0, 200 + i);
    Catalog c;
    std::vector<double> x, y, a, b, t, mag;
    for (const auto& s : stars) {
      x.push_back(s.x);
      y.push_back(s.y);
      a.push_back(1.5 + 0.5 * std::fmod(s.flux, 3.0));
      b.push_back(1.5);
      t.push_back(std::fmod(s.flux, 180.0));
      mag.push_back(25.0 - 2.5 * std::log10(s.flux));
    }
    c.add_column<double>("X_IMAGE") = x;
    c.add_column<double>("Y_IMAGE") = y;
    c.add_column<double>("A_IMAGE") = a;
    c.add_column<double>("B_IMAGE") = b;
    c.add_column<double>("THETA_IMAGE") = t;
    c.add_column<double>("MAG_AUTO") = mag;
    c.add_column<std::string>("CLASS") = std::vector<std::string>(stars.size(), class_of(i));
    c.resize(stars.size());
    cv::Mat seg(sci.size(), CV_32S, cv::Scalar(0));
    for (std::size_t k = 0; k < stars.size(); ++k)
      cv::circle(seg, cv::Point(static_cast<int>(stars[k].x - 1), static_cast<int>(stars[k].y - 1)),
                 4, cv::Scalar(static_cast<int>(k) + 1), cv::FILLED);
    const std::string name = "field_" + std::to_string(i);
    if (!(drop_one_png && i == 0))
      write_png(dir / ("quicklook/" + name + ".png"), render_quicklook(sci, c, seg));
    gallery.push_back({name + ".fits[0]", "quicklook/" + name + ".png", c.rows()});
    merged.append(c);
  }
  report.astroflow_version = "test";
  report.files = static_cast<std::size_t>(n) + 1;
  report.files_failed = 1;
  report.frames = static_cast<std::size_t>(n);
  report.sources = merged.rows();
  report.wall_s = 1.25;
  report.threads = 2;
  report.failures.push_back({"corrupt.fits", "", "reader", "CFITSIO: not a FITS file"});
  report.stage_timings.push_back({"background", "background", 3, 0.42});
  report.stage_timings.push_back({"sources", "sources", 3, 0.87});
  const std::string path = dir / "report.html";
  test::write_text_file(path, render_report_html(report, merged, gallery));
  return path;
}

TEST(Report, RendersInHeadlessChromium) {
  const std::string chromium = find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium not installed (scripts/install-deps.sh)";
  test::TempDir dir("report");
  const std::string html = write_sample_report(dir, 4, false);

  test::TempDir profile("chromium-profile");
  auto args = chromium_args(profile.path().string());
  args.push_back("--dump-dom");
  args.push_back("file://" + html);
  const test::CliResult dom = test::run_program(chromium, args);
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  EXPECT_NE(dom.out.find("data-images=\"ok\""), std::string::npos) << dom.out.substr(0, 2000);
  EXPECT_EQ(dom.err.find("CONSOLE"), std::string::npos) << dom.err;
  EXPECT_EQ(dom.err.find("Uncaught"), std::string::npos) << dom.err;
  EXPECT_EQ(dom.err.find("ERR_FILE_NOT_FOUND"), std::string::npos) << dom.err;

  const std::string shot = dir / "shot.png";
  test::TempDir profile2("chromium-profile");
  auto shot_args = chromium_args(profile2.path().string());
  shot_args.push_back("--screenshot=" + shot);
  shot_args.push_back("--window-size=1200,2000");
  shot_args.push_back("file://" + html);
  const test::CliResult sr = test::run_program(chromium, shot_args);
  ASSERT_EQ(sr.exit_code, 0) << sr.err;
  ASSERT_TRUE(fs::exists(shot)) << sr.err;
  EXPECT_GT(fs::file_size(shot), 10000U);
  if (const char* keep = std::getenv("ASTROFLOW_REPORT_SCREENSHOT"); keep != nullptr)
    fs::copy_file(shot, keep, fs::copy_options::overwrite_existing);
}

TEST(Report, BrokenImageIsDetectedByThePageScript) {
  const std::string chromium = find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium not installed (scripts/install-deps.sh)";
  test::TempDir dir("report");
  const std::string html = write_sample_report(dir, 2, true);
  test::TempDir profile("chromium-profile");
  auto args = chromium_args(profile.path().string());
  args.push_back("--dump-dom");
  args.push_back("file://" + html);
  const test::CliResult dom = test::run_program(chromium, args);
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  EXPECT_NE(dom.out.find("data-images=\"broken: 1\""), std::string::npos)
      << dom.out.substr(0, 2000);
}

}  // namespace
}  // namespace astroflow
