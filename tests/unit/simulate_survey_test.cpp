// `simulate field --tiles`: overlapping tiles cut from one simulated sky share the WCS frame,
// the pixels and the truth of the whole field.
#include "astroflow/simulate_survey.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "astroflow/error.hpp"
#include "astroflow/fits_io.hpp"
#include "astroflow/wcs.hpp"
#include "cli_runner.hpp"
#include "temp_dir.hpp"

namespace astroflow {
namespace {

TEST(SimulateSurvey, TilesCoverTheFieldWithTheRequestedOverlap) {
  SurveyTiling t = parse_survey_tiling("3x2", 40);
  const std::vector<SurveyTile> tiles = survey_tiles(300, 200, t);
  ASSERT_EQ(tiles.size(), 6U);
  // Width (300 + 2 x 40) / 3 = 126.67 -> 127; origins 0, 87, 173 (last one ends at 300).
  EXPECT_EQ(tiles[0].width_pix, 127);
  EXPECT_EQ(tiles[1].x0_pix, 87);
  EXPECT_EQ(tiles[2].x0_pix, 173);
  EXPECT_EQ(tiles[2].x0_pix + tiles[2].width_pix, 300);
  EXPECT_EQ(tiles[0].x0_pix + tiles[0].width_pix - tiles[1].x0_pix, 40);  // shared columns
  // Height (200 + 40) / 2 = 120; origins 0 and 80.
  EXPECT_EQ(tiles[3].y0_pix, 80);
  EXPECT_EQ(tiles[3].height_pix, 120);
  EXPECT_EQ(tiles[4].suffix, "_r1c1");
  EXPECT_THROW((void)parse_survey_tiling("3by2", 10), FatalError);
  // Tiles no wider than the overlap would not advance.
  EXPECT_THROW((void)survey_tiles(100, 100, parse_survey_tiling("2x1", 100)), FatalError);
}

TEST(SimulateSurvey, TilesShareSkyObjectsPixelsAndTheWcsFrame) {
  FieldOptions o;
  o.seed = 9201;
  o.width_pix = 320;
  o.height_pix = 200;
  o.galaxy_density_arcmin2 = 600.0;
  o.oversample = 1;
  const FieldSimulation field = simulate_field(o);
  const auto wcs_full = Wcs::from_header(field.header);
  ASSERT_TRUE(wcs_full.has_value());
  const std::vector<SurveyTile> tiles = survey_tiles(320, 200, parse_survey_tiling("2x1", 120));
  ASSERT_EQ(tiles.size(), 2U);
  ASSERT_EQ(tiles[1].x0_pix, 100);
  std::map<int, int> seen;  // truth ID -> number of tiles holding it
  for (const SurveyTile& t : tiles) {
    const FieldSimulation tile = cut_field(field, t);
    ASSERT_EQ(tile.image.cols, 220);
    EXPECT_EQ(tile.image.at<float>(17, 5), field.image.at<float>(17, 5 + t.x0_pix));
    EXPECT_EQ(tile.truthseg.at<int>(150, 200), field.truthseg.at<int>(150, 200 + t.x0_pix));
    const auto wcs = Wcs::from_header(tile.header);
    ASSERT_TRUE(wcs.has_value());
    const auto& id = tile.truth.get<std::int32_t>("ID");
    const auto& x = tile.truth.get<double>("X_IMAGE");
    const auto& y = tile.truth.get<double>("Y_IMAGE");
    const auto& ra = tile.truth.get<double>("ALPHA_J2000");
    const auto& dec = tile.truth.get<double>("DELTA_J2000");
    ASSERT_GT(id.size(), 10U);
    for (std::size_t i = 0; i < id.size(); ++i) {
      EXPECT_GE(x[i], 0.5);
      EXPECT_LT(x[i], 220.5);
      // The tile's WCS puts the object where the scene's truth says it is on the sky.
      const SkyCoord s = wcs->pixel_to_sky({x[i], y[i]});
      EXPECT_NEAR(s.ra_deg, ra[i], 1e-9);
      EXPECT_NEAR(s.dec_deg, dec[i], 1e-9);
      ++seen[id[i]];
    }
  }
  // Objects in the shared columns 100..219 are in both tiles; every object is in at least one.
  const auto& fid = field.truth.get<std::int32_t>("ID");
  const auto& fx = field.truth.get<double>("X_IMAGE");
  std::size_t both = 0;
  for (std::size_t i = 0; i < fid.size(); ++i) {
    const bool shared = fx[i] >= 100.5 && fx[i] < 220.5;
    EXPECT_EQ(seen[fid[i]], shared ? 2 : 1) << "ID " << fid[i] << " x " << fx[i];
    both += shared ? 1 : 0;
  }
  EXPECT_GT(both, 5U);
}

TEST(SimulateSurvey, CliWritesEveryTile) {
  test::TempDir dir("simsurvey");
  const test::CliResult r =
      test::run_cli({"simulate", "field", "--seed", "9202", "--size", "300x160", "--tiles", "2x1",
                     "--tile-overlap", "60", "--oversample", "1", "--output", dir / "s"});
  ASSERT_EQ(r.exit_code, 0) << r.all();
  for (const char* stem : {"field_r0c0", "field_r0c1"}) {
    for (const char* suffix : {".fits", ".truth.fits", ".truthseg.fits", ".artifacts.fits"}) {
      EXPECT_TRUE(std::filesystem::is_regular_file(dir / (std::string("s/") + stem + suffix)))
          << stem << suffix;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "s/field.fits"));
  const std::vector<Frame> f = read_fits_frames(dir / "s/field_r0c1.fits", {});
  ASSERT_EQ(f.size(), 1U);
  EXPECT_EQ(f[0].science.cols, 180);
  EXPECT_EQ(f[0].header.get_int("TILEX0").value_or(-1), 120);
}

}  // namespace
}  // namespace astroflow
