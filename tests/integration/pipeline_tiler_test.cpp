// TileGrid, stitch_tiles and renumber_sources on synthetic frames with known answers.
#include <gtest/gtest.h>

#include <set>

#include "astroflow/error.hpp"
#include "astroflow/stitcher.hpp"
#include "astroflow/tiler.hpp"

namespace astroflow {
namespace {

TEST(TileGrid, SmallImageIsOneTile) {
  const TileGrid g(300, 200, 512, 32);
  EXPECT_FALSE(g.needs_tiling());
  EXPECT_EQ(g.count(), 1);
  EXPECT_TRUE(g.owns(0, 0.5, 0.5));
  EXPECT_TRUE(g.owns(0, 300.49, 200.49));
}

TEST(TileGrid, RejectsOverlapNotSmallerThanTile) {
  EXPECT_THROW(TileGrid(100, 100, 32, 32), FatalError);
  EXPECT_THROW(TileGrid(100, 100, 0, 0), FatalError);
}

TEST(TileGrid, NeighboursShareExactlyTheOverlapAndCoverTheImage) {
  for (int full : {257, 300, 511, 512, 1000}) {
    for (int overlap : {0, 7, 32}) {
      const auto spans = TileGrid::split_axis(full, 128, overlap);
      ASSERT_FALSE(spans.empty());
      EXPECT_EQ(spans.front().start_pix, 0);
      EXPECT_EQ(spans.back().start_pix + spans.back().length_pix, full);
      for (std::size_t i = 1; i < spans.size(); ++i) {
        const int shared = spans[i - 1].start_pix + spans[i - 1].length_pix - spans[i].start_pix;
        EXPECT_EQ(shared, overlap) << "full " << full << " tile " << i;
        EXPECT_EQ(spans[i - 1].owned_end_pix, spans[i].owned_begin_pix);
        EXPECT_GT(spans[i].length_pix, overlap);
      }
      // Every pixel is owned by exactly one tile along the axis.
      std::vector<int> owners(static_cast<std::size_t>(full), 0);
      for (const TileSpan& s : spans)
        for (int p = s.owned_begin_pix; p < s.owned_end_pix; ++p)
          ++owners[static_cast<std::size_t>(p)];
      for (int p = 0; p < full; ++p) EXPECT_EQ(owners[static_cast<std::size_t>(p)], 1) << p;
    }
  }
}

TEST(TileGrid, EveryPositionHasExactlyOneOwner) {
  const TileGrid g(700, 450, 256, 40);
  // x starts 0, 216, 432, 648 (step 256 - 40); y starts 0, 216.
  ASSERT_EQ(g.count(), 4 * 2);
  for (double y = 0.6; y < 450.5; y += 3.7) {
    for (double x = 0.6; x < 700.5; x += 2.9) {
      int owners = 0;
      for (int t = 0; t < g.count(); ++t) owners += g.owns(t, x, y) ? 1 : 0;
      ASSERT_EQ(owners, 1) << x << "," << y;
    }
  }
  // The boundary sits in the middle of the 40-pixel overlap: tile 1 starts at 216, so the
  // boundary is at edge coordinate 236, FITS x = 236.5.
  EXPECT_TRUE(g.owns(0, 236.49, 10));
  EXPECT_TRUE(g.owns(1, 236.5, 10));
}

TEST(TileGrid, CutCopiesPixelsAndSetsTileInfo) {
  Frame full;
  full.science = cv::Mat(300, 400, CV_32FC1);
  for (int y = 0; y < 300; ++y)
    for (int x = 0; x < 400; ++x) full.science.at<float>(y, x) = static_cast<float>(1000 * y + x);
  const TileGrid g(400, 300, 160, 20);
  const Frame t = g.cut(full, 4);  // second row, second column
  EXPECT_EQ(t.tile.index, 4);
  EXPECT_EQ(t.tile.count, g.count());
  EXPECT_EQ(t.tile.x0_pix, 140);
  EXPECT_EQ(t.tile.y0_pix, 140);
  EXPECT_EQ(t.tile.overlap_pix, 20);
  EXPECT_EQ(t.science.at<float>(0, 0), 140000.0f + 140.0f);
  EXPECT_EQ(t.width(), 160);
  EXPECT_EQ(t.height(), 160);
  // Deep copy: changing the tile leaves the image alone.
  cv::Mat s = t.science;
  s.at<float>(0, 0) = -1;
  EXPECT_EQ(full.science.at<float>(140, 140), 140140.0f);
}

/// Tiles of a 500x300 image whose "stage" lists every point of `points` that falls inside the
/// tile (full-image FITS coordinates) and paints a 3x3 segmap square with its tile label.
std::vector<Frame> fake_processed_tiles(const TileGrid& g,
                                        const std::vector<std::pair<double, double>>& points) {
  Frame full;
  full.science = cv::Mat(g.full_height_pix(), g.full_width_pix(), CV_32FC1, cv::Scalar(0));
  std::vector<Frame> tiles;
  for (int i = 0; i < g.count(); ++i) {
    Frame t = g.cut(full, i);
    cv::Mat seg(t.height(), t.width(), CV_32SC1, cv::Scalar(0));
    auto& number = t.catalog.add_column<std::int32_t>("NUMBER");
    (void)number;
    for (const auto& [x, y] : points) {
      const double lx = x - 1 - t.tile.x0_pix;  // 0-based inside the tile
      const double ly = y - 1 - t.tile.y0_pix;
      if (lx < 1 || ly < 1 || lx >= t.width() - 1 || ly >= t.height() - 1) continue;
      const std::size_t row = t.catalog.append_row();
      // Labels deliberately not 1..n, as a stage with its own numbering may give them.
      const auto label = static_cast<std::int32_t>(100 + 2 * row);
      t.catalog.get<std::int32_t>("NUMBER")[row] = label;
      t.catalog.add_column<double>("X_IMAGE")[row] = x;
      t.catalog.add_column<double>("Y_IMAGE")[row] = y;
      const int cx = static_cast<int>(lx + 0.5);
      const int cy = static_cast<int>(ly + 0.5);
      seg(cv::Rect(cx - 1, cy - 1, 3, 3)).setTo(label);
    }
    t.planes["segmap"] = seg;
    t.planes["background"] = cv::Mat(t.height(), t.width(), CV_32FC1, cv::Scalar(i + 1));
    tiles.push_back(std::move(t));
  }
  return tiles;
}

TEST(Stitcher, KeepsEverySourceOnceAndRelabelsTheSegmap) {
  const TileGrid g(500, 300, 200, 40);
  // Points in tile interiors, in overlaps, and right at the ownership boundaries (x boundary
  // between tiles 0 and 1 is edge coordinate 180, FITS 180.5).
  const std::vector<std::pair<double, double>> points = {
      {50, 50},   {175, 60},    {180.4, 100}, {180.5, 120}, {185, 140}, {250, 150},
      {330, 170}, {345.2, 200}, {480, 280},   {100, 170},   {101, 181}, {400, 190}};
  Frame shell;
  shell.path = "x.fits";
  Frame out = stitch_tiles(shell, fake_processed_tiles(g, points), g);
  ASSERT_EQ(out.catalog.rows(), points.size());
  std::multiset<std::pair<double, double>> got, want(points.begin(), points.end());
  const auto& xs = out.catalog.get<double>("X_IMAGE");
  const auto& ys = out.catalog.get<double>("Y_IMAGE");
  for (std::size_t r = 0; r < xs.size(); ++r) got.insert({xs[r], ys[r]});
  EXPECT_EQ(got, want);

  // NUMBER is 1..n and the segmap square around each source carries its NUMBER.
  const auto& numbers = out.catalog.get<std::int32_t>("NUMBER");
  const cv::Mat& seg = out.planes.at("segmap");
  ASSERT_EQ(seg.cols, 500);
  ASSERT_EQ(seg.rows, 300);
  std::set<std::int32_t> labels_in_map;
  for (int y = 0; y < seg.rows; ++y)
    for (int x = 0; x < seg.cols; ++x)
      if (seg.at<std::int32_t>(y, x) != 0) labels_in_map.insert(seg.at<std::int32_t>(y, x));
  for (std::size_t r = 0; r < numbers.size(); ++r) {
    EXPECT_EQ(numbers[r], static_cast<std::int32_t>(r + 1));
    const int cx = static_cast<int>(xs[r] - 1 + 0.5);
    const int cy = static_cast<int>(ys[r] - 1 + 0.5);
    EXPECT_EQ(seg.at<std::int32_t>(cy, cx), numbers[r]) << xs[r] << "," << ys[r];
  }
  EXPECT_EQ(labels_in_map.size(), points.size());
  EXPECT_EQ(*labels_in_map.rbegin(), static_cast<std::int32_t>(points.size()));

  // Planes are pasted by owned region: pixel (x=179, y=10) belongs to tile 0, (180, 10) to 1.
  const cv::Mat& bg = out.planes.at("background");
  EXPECT_EQ(bg.at<float>(10, 179), 1.0f);
  EXPECT_EQ(bg.at<float>(10, 180), 2.0f);
  EXPECT_EQ(out.science.cols, 500);
}

TEST(Stitcher, MergesTileFailures) {
  const TileGrid g(300, 100, 200, 20);
  auto tiles = fake_processed_tiles(g, {});
  tiles[1].fail("sources", "model exploded");
  Frame out = stitch_tiles(Frame{}, std::move(tiles), g);
  EXPECT_TRUE(out.failed());
  ASSERT_EQ(out.issues.size(), 1u);
  EXPECT_EQ(out.issues[0].stage, "sources");
  EXPECT_NE(out.issues[0].reason.find("tile 2/2"), std::string::npos);
}

TEST(Renumber, NumbersRowsAndRewritesSegmap) {
  Frame f;
  auto& n = f.catalog.add_column<std::int64_t>("NUMBER");
  (void)n;
  f.catalog.resize(3);
  f.catalog.get<std::int64_t>("NUMBER") = {7, 3, 12};
  cv::Mat seg(4, 4, CV_32SC1, cv::Scalar(0));
  seg.at<std::int32_t>(0, 0) = 7;
  seg.at<std::int32_t>(1, 1) = 3;
  seg.at<std::int32_t>(2, 2) = 12;
  seg.at<std::int32_t>(3, 3) = 99;  // belongs to no row
  f.planes["segmap"] = seg;
  renumber_sources(f);
  EXPECT_EQ(f.catalog.get<std::int64_t>("NUMBER"), (std::vector<std::int64_t>{1, 2, 3}));
  const cv::Mat& s = f.planes.at("segmap");
  EXPECT_EQ(s.at<std::int32_t>(0, 0), 1);
  EXPECT_EQ(s.at<std::int32_t>(1, 1), 2);
  EXPECT_EQ(s.at<std::int32_t>(2, 2), 3);
  EXPECT_EQ(s.at<std::int32_t>(3, 3), 0);
}

}  // namespace
}  // namespace astroflow
