// Cross-image merging: overlapping images that share one WCS frame, checked against the truth
// of which simulated source fell on which image, and against a brute-force pair search.
#include "astroflow/sky_match.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "astroflow/header.hpp"
#include "astroflow/wcs.hpp"
#include "fits_fixtures.hpp"

namespace astroflow {
namespace {

constexpr double kPixelScaleArcsec = 0.2;

Header scene_header(double crpix1) {
  Header h;
  for (const test::FitsKey& k : test::tan_wcs_keys(150.1, 2.2, crpix1, 150.0, kPixelScaleArcsec)) {
    std::visit([&](const auto& v) { h.set(k.key, v, k.comment); }, k.value);
  }
  return h;
}

struct Truth {
  double x_scene = 0.0;  ///< 1-based scene pixel
  double y_scene = 0.0;
  double flux = 0.0;
};

/// Two 260x300 images cut from one 400x300 scene at x offsets 0 and 140 (120 px overlap); each
/// source measured on every image that holds it, with position noise 0.03 arcsec and a
/// per-image noise level, so S/N differs between the two measurements.
struct TwoImages {
  Catalog catalog;
  std::vector<std::size_t> image;
  std::vector<double> edge;
  std::vector<int> truth_of_row;
  std::vector<Truth> truth;
};

TwoImages simulate_two_images(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> ux(5.0, 395.0), uy(5.0, 295.0), uf(100.0, 5000.0);
  std::normal_distribution<double> jitter(0.0, 0.03 / kPixelScaleArcsec);
  TwoImages t;
  // A regular grid (25 px apart, jittered by < 4 px) keeps true sources far apart compared with
  // the 0.3 arcsec (1.5 px) matching radius.
  for (int gx = 0; gx < 16; ++gx)
    for (int gy = 0; gy < 12; ++gy)
      t.truth.push_back({10.0 + 25.0 * gx + std::fmod(ux(rng), 4.0),
                         10.0 + 25.0 * gy + std::fmod(uy(rng), 4.0), uf(rng)});
  const int offsets[2] = {0, 140};
  const double noise[2] = {10.0, 25.0};
  // Plain vectors first: references returned by add_column die when the next column is added.
  std::vector<double> ra, dec, flux, err, xim;
  for (int img = 0; img < 2; ++img) {
    // Same sky frame: the second image's CRPIX is shifted by its offset.
    const auto wcs = Wcs::from_header(scene_header(200.0 - offsets[img]));
    for (std::size_t k = 0; k < t.truth.size(); ++k) {
      const double x = t.truth[k].x_scene - offsets[img];
      const double y = t.truth[k].y_scene;
      if (x < 1.0 || x > 260.0) continue;
      const SkyCoord s = wcs->pixel_to_sky({x + jitter(rng), y + jitter(rng)});
      ra.push_back(s.ra_deg);
      dec.push_back(s.dec_deg);
      flux.push_back(t.truth[k].flux);
      err.push_back(noise[img] * std::sqrt(1.0 + t.truth[k].flux / 1000.0));
      xim.push_back(x);
      t.image.push_back(static_cast<std::size_t>(img));
      t.edge.push_back(edge_distance_pix(x, y, 260, 300));
      t.truth_of_row.push_back(static_cast<int>(k));
    }
  }
  t.catalog.add_column<double>("ALPHA_J2000", "deg") = ra;
  t.catalog.add_column<double>("DELTA_J2000", "deg") = dec;
  t.catalog.add_column<double>("FLUX_AUTO", "count") = flux;
  t.catalog.add_column<double>("FLUXERR_AUTO", "count") = err;
  t.catalog.add_column<double>("X_IMAGE", "pix") = xim;
  t.catalog.resize(ra.size());
  return t;
}

TEST(SkyMatch, OverlapSourcesBecomeOneObjectKeepingBestSnr) {
  TwoImages t = simulate_two_images(7);
  const SkyMatchResult r = flag_sky_duplicates(t.catalog, {0.3, KeepRule::kBestSnr}, t.image);
  const auto& n_obs = t.catalog.get<std::int32_t>("N_OBS");
  const auto& dup = t.catalog.get<std::int64_t>("DUPLICATE_OF");
  std::size_t expected_dups = 0;
  for (std::size_t i = 0; i < t.catalog.rows(); ++i) {
    // Truth: scene x in [141, 260] lies on both images.
    const double xs = t.truth[static_cast<std::size_t>(t.truth_of_row[i])].x_scene;
    const bool both = xs >= 141.0 && xs <= 260.0;
    EXPECT_EQ(n_obs[i], both ? 2 : 1) << "row " << i << " scene x " << xs;
    if (!both) {
      EXPECT_EQ(dup[i], 0);
      continue;
    }
    // Image 0 has the lower noise, so its measurement must be the one kept.
    if (t.image[i] == 0) {
      EXPECT_EQ(dup[i], 0) << "row " << i;
    } else {
      ++expected_dups;
      ASSERT_GT(dup[i], 0);
      const auto kept = static_cast<std::size_t>(dup[i] - 1);
      EXPECT_EQ(t.image[kept], 0U);
      EXPECT_EQ(t.truth_of_row[kept], t.truth_of_row[i]);
    }
  }
  EXPECT_GT(expected_dups, 40U);  // about 5 grid columns x 12 rows overlap
  EXPECT_EQ(r.duplicates, expected_dups);
  EXPECT_EQ(r.objects + r.duplicates, t.catalog.rows());
  EXPECT_EQ(r.objects, t.truth.size());
}

TEST(SkyMatch, FarthestFromEdgeKeepsTheMoreCentralMeasurement) {
  TwoImages t = simulate_two_images(11);
  flag_sky_duplicates(t.catalog, {0.3, KeepRule::kFarthestFromEdge}, t.image, t.edge);
  const auto& dup = t.catalog.get<std::int64_t>("DUPLICATE_OF");
  std::size_t checked = 0;
  for (std::size_t i = 0; i < t.catalog.rows(); ++i) {
    if (dup[i] == 0) continue;
    const auto kept = static_cast<std::size_t>(dup[i] - 1);
    EXPECT_GE(t.edge[kept], t.edge[i]);
    ++checked;
  }
  EXPECT_GT(checked, 40U);
}

TEST(SkyMatch, SameImageNeighboursAreNeverMerged) {
  Catalog c;
  c.add_column<double>("ALPHA_J2000") = {10.0, 10.0 + 0.1 / 3600.0, 10.0 + 0.05 / 3600.0};
  c.add_column<double>("DELTA_J2000") = {0.0, 0.0, 0.0};
  c.add_column<double>("FLUX_AUTO") = {1.0, 2.0, 3.0};
  c.add_column<double>("FLUXERR_AUTO") = {1.0, 1.0, 1.0};
  c.resize(3);
  const SkyMatchResult r = flag_sky_duplicates(c, {}, {0, 0, 0});
  EXPECT_EQ(r.duplicates, 0U);
  EXPECT_EQ(c.get<std::int32_t>("N_OBS"), (std::vector<std::int32_t>{1, 1, 1}));
  // A third image links the same-image pair into one object, kept at the best S/N (row 3).
  const SkyMatchResult r2 = flag_sky_duplicates(c, {}, {0, 0, 1});
  EXPECT_EQ(r2.objects, 1U);
  EXPECT_EQ(c.get<std::int64_t>("DUPLICATE_OF"), (std::vector<std::int64_t>{3, 3, 0}));
  EXPECT_EQ(c.get<std::int32_t>("N_OBS"), (std::vector<std::int32_t>{2, 2, 2}));
}

TEST(SkyMatch, MatchesAcrossRaZeroAndNearThePole) {
  Catalog c;
  // 0.1 arcsec apart across RA = 0; and 0.2 arcsec apart at dec 89.9999 where RA differs by
  // degrees. The last row is 0.5 arcsec from its neighbour: outside a 0.3 arcsec radius.
  const double d_pole = 89.9999;
  const double dra_pole = 0.2 / 3600.0 / std::cos(d_pole * M_PI / 180.0);
  c.add_column<double>("ALPHA_J2000") = {
      359.99999, 0.1 / 3600.0 - 0.00001, 40.0, 40.0 + dra_pole, 120.0, 120.0};
  c.add_column<double>("DELTA_J2000") = {0.0, 0.0, d_pole, d_pole, 5.0, 5.0 + 0.5 / 3600.0};
  c.add_column<double>("FLUX_AUTO") = {1, 2, 3, 4, 5, 6};
  c.add_column<double>("FLUXERR_AUTO") = {1, 1, 1, 1, 1, 1};
  c.resize(6);
  flag_sky_duplicates(c, {0.3, KeepRule::kBestSnr}, {0, 1, 0, 1, 0, 1});
  EXPECT_EQ(c.get<std::int64_t>("DUPLICATE_OF"), (std::vector<std::int64_t>{2, 0, 4, 0, 0, 0}));
}

TEST(SkyMatch, AgreesWithBruteForceOnADenseRandomField) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> ura(359.98, 360.02), udec(-30.025, -29.975);
  std::uniform_int_distribution<int> uimg(0, 4);
  constexpr std::size_t kN = 3000;
  std::vector<double> ra, dec;
  std::vector<std::size_t> img;
  for (std::size_t i = 0; i < kN; ++i) {
    ra.push_back(std::fmod(ura(rng), 360.0));
    dec.push_back(udec(rng));
    img.push_back(static_cast<std::size_t>(uimg(rng)));
  }
  Catalog c;
  c.add_column<double>("ALPHA_J2000") = ra;
  c.add_column<double>("DELTA_J2000") = dec;
  // Equal S/N everywhere: the earliest row of each object must be kept.
  c.add_column<double>("FLUX_AUTO") = std::vector<double>(kN, 1.0);
  c.add_column<double>("FLUXERR_AUTO") = std::vector<double>(kN, 1.0);
  c.resize(kN);
  const double radius_arcsec = 1.0;
  flag_sky_duplicates(c, {radius_arcsec, KeepRule::kBestSnr}, img);
  const auto& dup = c.get<std::int64_t>("DUPLICATE_OF");

  // Brute force: haversine separations, union-find by repeated relabelling.
  std::vector<std::size_t> label(kN);
  for (std::size_t i = 0; i < kN; ++i) label[i] = i;
  auto sep_arcsec = [&](std::size_t i, std::size_t j) {
    const double d2r = M_PI / 180.0;
    const double s = std::pow(std::sin((dec[j] - dec[i]) * d2r / 2), 2) +
                     std::cos(dec[i] * d2r) * std::cos(dec[j] * d2r) *
                         std::pow(std::sin((ra[j] - ra[i]) * d2r / 2), 2);
    return 2 * std::asin(std::sqrt(s)) / d2r * 3600.0;
  };
  bool changed = true;
  while (changed) {
    changed = false;
    for (std::size_t i = 0; i < kN; ++i)
      for (std::size_t j = i + 1; j < kN; ++j) {
        if (img[i] == img[j] || label[i] == label[j] || sep_arcsec(i, j) > radius_arcsec) continue;
        const std::size_t lo = std::min(label[i], label[j]);
        label[i] = label[j] = lo;
        changed = true;
      }
  }
  // With equal S/N the earliest row of a group is kept, i.e. the group's smallest index.
  std::size_t linked = 0;
  for (std::size_t i = 0; i < kN; ++i) {
    const std::size_t expected_keep = label[i];
    EXPECT_EQ(dup[i], expected_keep == i ? 0 : static_cast<std::int64_t>(expected_keep) + 1)
        << "row " << i;
    if (expected_keep != i) ++linked;
  }
  EXPECT_GT(linked, 100U) << "the field should be dense enough to test linking";
}

TEST(SkyMatch, RejectsMissingInputs) {
  Catalog c;
  c.add_column<double>("ALPHA_J2000") = {1.0};
  c.resize(1);
  EXPECT_THROW(flag_sky_duplicates(c, {}, {0}), std::invalid_argument);
  c.add_column<double>("DELTA_J2000");
  EXPECT_THROW(flag_sky_duplicates(c, {}, {}), std::invalid_argument);
  EXPECT_THROW(flag_sky_duplicates(c, {0.3, KeepRule::kFarthestFromEdge}, {0}),
               std::invalid_argument);
  EXPECT_THROW((void)parse_keep_rule("brightest"), std::invalid_argument);
  EXPECT_EQ(parse_keep_rule("farthest_from_edge"), KeepRule::kFarthestFromEdge);
}

}  // namespace
}  // namespace astroflow
