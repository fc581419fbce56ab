// Quick-look rendering and the report page (content only; the browser check is in
// tests/integration/report_test.cpp).
#include "astroflow/run_report.hpp"

#include <gtest/gtest.h>
#include <png.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "astroflow/quicklook.hpp"

namespace astroflow {
namespace {

bool is_red(const cv::Vec3b& bgr) {
  return bgr[2] > 150 && bgr[0] < 120 && bgr[1] < 120;
}

Catalog one_source(double x, double y, double a, double b, double theta) {
  Catalog c;
  c.add_column<double>("X_IMAGE") = {x};
  c.add_column<double>("Y_IMAGE") = {y};
  c.add_column<double>("A_IMAGE") = {a};
  c.add_column<double>("B_IMAGE") = {b};
  c.add_column<double>("THETA_IMAGE") = {theta};
  c.resize(1);
  return c;
}

// write_png goes through libpng; decoding its file with libpng's reader must give back every
// pixel, in OpenCV's BGR order for colour and as is for grey.
TEST(Quicklook, WritePngRoundTripsGreyAndBgrPixels) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "astroflow-png-test";
  std::filesystem::create_directories(dir);
  cv::Mat bgr(7, 5, CV_8UC3);
  cv::Mat grey(3, 9, CV_8UC1);
  for (int y = 0; y < bgr.rows; ++y)
    for (int x = 0; x < bgr.cols; ++x)
      bgr.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<unsigned char>(10 * x), static_cast<unsigned char>(30 * y), 200);
  for (int y = 0; y < grey.rows; ++y)
    for (int x = 0; x < grey.cols; ++x)
      grey.at<unsigned char>(y, x) = static_cast<unsigned char>(x * 29 + y);
  for (const cv::Mat* m : {&bgr, &grey}) {
    const std::string path = (dir / (m->channels() == 3 ? "bgr.png" : "grey.png")).string();
    astroflow::write_png(path, *m);
    std::ifstream in(path, std::ios::binary);
    const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                           std::istreambuf_iterator<char>());
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    ASSERT_NE(png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()), 0) << path;
    EXPECT_EQ(static_cast<int>(image.width), m->cols);
    EXPECT_EQ(static_cast<int>(image.height), m->rows);
    image.format = m->channels() == 3 ? PNG_FORMAT_BGR : PNG_FORMAT_GRAY;
    cv::Mat back(m->rows, m->cols, m->type());
    ASSERT_NE(png_image_finish_read(&image, nullptr, back.data,
                                    static_cast<png_int_32>(back.step[0]), nullptr),
              0)
        << image.message;
    EXPECT_EQ(cv::norm(back, *m, cv::NORM_INF), 0.0) << path;
  }
  EXPECT_THROW(astroflow::write_png((dir / "f.png").string(), cv::Mat(2, 2, CV_32F)),
               std::invalid_argument);
  std::filesystem::remove_all(dir);
}

TEST(Quicklook, EllipseIsDrawnAtTheSourceWithFitsRowOneAtTheBottom) {
  cv::Mat sci(80, 100, CV_32F, cv::Scalar(0));
  cv::randn(sci, 0.0, 1.0);
  const cv::Mat q = render_quicklook(sci, one_source(30, 20, 4, 2, 0), cv::Mat());
  ASSERT_EQ(q.type(), CV_8UC3);
  ASSERT_EQ(q.size(), sci.size());
  // FITS (30, 20) is array (29, 19); flipped, row 19 becomes row 80 - 1 - 19 = 60. The ellipse
  // (3 A = 12 px along x) passes through column 29 +- 12 on that row, and 3 B = 6 rows above
  // and below the centre on column 29.
  auto red_near = [&](int col, int row) {
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx)
        if (is_red(q.at<cv::Vec3b>(row + dy, col + dx))) return true;
    return false;
  };
  EXPECT_TRUE(red_near(41, 60));
  EXPECT_TRUE(red_near(17, 60));
  EXPECT_TRUE(red_near(29, 54));
  EXPECT_TRUE(red_near(29, 66));
  EXPECT_FALSE(red_near(29, 60)) << "the centre is not on the outline";
  EXPECT_FALSE(red_near(41, 19)) << "unflipped position must be empty";
}

TEST(Quicklook, SideBySideUsesTheLeftImagesStretchForBoth) {
  // Left: noise around 10 with a bright square in its bottom rows (FITS rows 1-10); right: the
  // same level without noise and without the square. Both panels share the left's stretch, so
  // the flat right panel is uniform and as grey as the left panel's median.
  cv::Mat left(80, 100, CV_32F);
  cv::randn(left, 10.0, 1.0);
  left(cv::Rect(40, 0, 10, 10)) += 100.0f;
  const cv::Mat right(80, 100, CV_32F, cv::Scalar(10.0f));
  const cv::Mat q = render_side_by_side(left, right, "", "");
  ASSERT_EQ(q.type(), CV_8UC3);
  EXPECT_EQ(q.cols, 204);
  EXPECT_EQ(q.rows, 80);
  cv::Mat gray;
  cv::cvtColor(q, gray, cv::COLOR_BGR2GRAY);
  const cv::Mat l = gray(cv::Rect(0, 0, 100, 80));
  const cv::Mat r = gray(cv::Rect(104, 0, 100, 80));
  double rmin = 0;
  double rmax = 0;
  cv::minMaxLoc(r, &rmin, &rmax);
  EXPECT_EQ(rmin, rmax);  // flat, and no label drawn
  // The square is white at the bottom of the left panel (row 1 at the bottom).
  EXPECT_EQ(l.at<unsigned char>(75, 45), 255);
  EXPECT_LT(l.at<unsigned char>(5, 45), 128);
  std::vector<unsigned char> lv(l.begin<unsigned char>(), l.end<unsigned char>());
  std::nth_element(lv.begin(), lv.begin() + lv.size() / 2, lv.end());
  EXPECT_NEAR(static_cast<double>(rmin), static_cast<double>(lv[lv.size() / 2]), 3.0);
  EXPECT_THROW((void)render_side_by_side(left, cv::Mat(10, 10, CV_32F), "a", "b"),
               std::invalid_argument);
}

TEST(Quicklook, ThetaRotatesCounterClockwiseOnTheSky) {
  cv::Mat sci(101, 101, CV_32F, cv::Scalar(0));
  // THETA = 90: major axis along +y. On the displayed (north-up) PNG the ellipse is tall.
  const cv::Mat q = render_quicklook(sci, one_source(51, 51, 6, 2, 90), cv::Mat());
  int min_row = 1000, max_row = -1, min_col = 1000, max_col = -1;
  for (int r = 0; r < q.rows; ++r)
    for (int c = 0; c < q.cols; ++c)
      if (is_red(q.at<cv::Vec3b>(r, c))) {
        min_row = std::min(min_row, r);
        max_row = std::max(max_row, r);
        min_col = std::min(min_col, c);
        max_col = std::max(max_col, c);
      }
  EXPECT_NEAR(max_row - min_row, 36, 2);
  EXPECT_NEAR(max_col - min_col, 12, 2);
}

TEST(Quicklook, BrightPixelsAreWhiteNanIsBlackAndLargeImagesShrink) {
  cv::Mat sci(1500, 3000, CV_32F, cv::Scalar(10));
  cv::Mat noise(sci.size(), CV_32F);
  cv::randn(noise, 0.0, 1.0);
  sci += noise;
  sci(cv::Rect(1000, 500, 300, 300)).setTo(1e4);
  sci(cv::Rect(0, 0, 300, 300)).setTo(std::nanf(""));
  cv::Mat seg(sci.size(), CV_32S, cv::Scalar(0));
  seg(cv::Rect(1000, 500, 300, 300)).setTo(1);
  const cv::Mat q = render_quicklook(sci, Catalog(), seg);
  EXPECT_EQ(q.cols, 1024);
  EXPECT_EQ(q.rows, 512);
  // Bright square: array rows 500..800 -> flipped and scaled rows (1500-800..1500-500)*512/1500.
  const cv::Vec3b inside =
      q.at<cv::Vec3b>(static_cast<int>(850 * 512 / 1500.0), static_cast<int>(1150 * 1024 / 3000.0));
  EXPECT_EQ(inside, cv::Vec3b(255, 255, 255));
  const cv::Vec3b nan_px = q.at<cv::Vec3b>(511 - 20, 20);
  EXPECT_EQ(nan_px, cv::Vec3b(0, 0, 0));
  // Segmentation outline: green pixels along the square's left edge (column 1000 -> ~341).
  int green = 0;
  for (int r = 0; r < q.rows; ++r)
    for (int c = 330; c < 352; ++c) {
      const cv::Vec3b p = q.at<cv::Vec3b>(r, c);
      if (p[1] > 150 && p[0] < 120 && p[2] < 120) ++green;
    }
  EXPECT_GT(green, 50);
}

TEST(RunReport, HistogramCountsEveryFiniteValue) {
  const Histogram h = make_histogram({1.0, 2.0, 2.5, 3.0, NAN, INFINITY, 4.0}, 3);
  EXPECT_DOUBLE_EQ(h.lo, 1.0);
  EXPECT_DOUBLE_EQ(h.hi, 4.0);
  // Bins [1,2) [2,3) [3,4]: 1 | 2, 2.5 | 3, 4.
  EXPECT_EQ(h.counts, (std::vector<std::size_t>{1, 2, 2}));
  EXPECT_EQ(make_histogram({}, 4).counts, (std::vector<std::size_t>{0, 0, 0, 0}));
}

TEST(RunReport, PageHoldsSummaryClassesHistogramsFailuresAndGallery) {
  RunReport r;
  r.files = 12;
  r.sources = 3;
  r.failures.push_back({"bad<1>.fits", "", "reader", "not a FITS file & broken"});
  r.stage_timings.push_back({"sources", "sources", 4, 0.5});
  Catalog c;
  c.add_column<std::string>("CLASS") = {"spiral", "elliptical", "spiral"};
  c.add_column<double>("MAG_AUTO") = {20.0, 21.0, 22.0};
  c.add_column<double>("A_IMAGE") = {1.0, 2.0, 3.0};
  c.resize(3);
  const std::string html = render_report_html(r, c, {{"a.fits[0]", "quicklook/a.png", 3}});
  EXPECT_NE(html.find("<td class=\"num\">2</td>"), std::string::npos) << "spiral count";
  EXPECT_NE(html.find("aria-label=\"histogram of MAG_AUTO (mag)\""), std::string::npos);
  EXPECT_NE(html.find("aria-label=\"histogram of A_IMAGE (pix)\""), std::string::npos);
  EXPECT_EQ(html.find("DET_SCORE"), std::string::npos) << "no column, no histogram";
  EXPECT_NE(html.find("bad&lt;1&gt;.fits"), std::string::npos);
  EXPECT_NE(html.find("not a FITS file &amp; broken"), std::string::npos);
  EXPECT_NE(html.find("<img src=\"quicklook/a.png\""), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"))
      << "only the SVG namespace may name a URL";
  EXPECT_EQ(html.find("https://"), std::string::npos);
}

}  // namespace
}  // namespace astroflow
