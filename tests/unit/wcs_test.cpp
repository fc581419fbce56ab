// Sky coordinates from astroflow::Wcs (WCSLIB) against the gnomonic (TAN) projection computed
// here from the textbook formulas of Calabretta & Greisen (2002, A&A 395, 1077, "Paper II"):
// intermediate world coordinates from the CD matrix, native spherical coordinates of the TAN
// projection (eqs. 12, 54), then the spherical rotation to celestial coordinates (eq. 2) with
// the native pole at LONPOLE = 180 deg (the default for a zenithal projection with
// delta_0 < 90 deg). SIP (Shupe et al. 2005) is applied to the pixel offsets before the CD matrix.
#include "astroflow/wcs.hpp"

#include <gtest/gtest.h>
#include <wcslib/wcs.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "astroflow/error.hpp"

namespace astroflow {
namespace {

constexpr double kDeg = std::numbers::pi / 180.0;
constexpr double kMasPerRad = 180.0 / std::numbers::pi * 3600.0e3;

struct TanParams {
  double crpix1, crpix2, crval1, crval2;
  double cd11, cd12, cd21, cd22;
  std::map<std::pair<int, int>, double> a, b;  // SIP A_p_q, B_p_q
};

Header make_header(const TanParams& p) {
  Header h;
  h.set("OBJECT", std::string_view("test field"));
  const bool sip = !p.a.empty() || !p.b.empty();
  h.set("CTYPE1", std::string_view(sip ? "RA---TAN-SIP" : "RA---TAN"));
  h.set("CTYPE2", std::string_view(sip ? "DEC--TAN-SIP" : "DEC--TAN"));
  h.set("CUNIT1", std::string_view("deg"));
  h.set("CUNIT2", std::string_view("deg"));
  h.set("CRPIX1", p.crpix1);
  h.set("CRPIX2", p.crpix2);
  h.set("CRVAL1", p.crval1);
  h.set("CRVAL2", p.crval2);
  h.set("CD1_1", p.cd11);
  h.set("CD1_2", p.cd12);
  h.set("CD2_1", p.cd21);
  h.set("CD2_2", p.cd22);
  h.set("RADESYS", std::string_view("ICRS"));
  if (sip) {
    h.set("A_ORDER", 2LL);
    h.set("B_ORDER", 2LL);
    for (const auto& [pq, v] : p.a) {
      h.set("A_" + std::to_string(pq.first) + "_" + std::to_string(pq.second), v);
    }
    for (const auto& [pq, v] : p.b) {
      h.set("B_" + std::to_string(pq.first) + "_" + std::to_string(pq.second), v);
    }
  }
  h.set("EXPTIME", 300.0);
  return h;
}

SkyCoord expected_sky(const TanParams& p, double px, double py) {
  double u = px - p.crpix1;
  double v = py - p.crpix2;
  double du = 0.0;
  double dv = 0.0;
  for (const auto& [pq, c] : p.a) du += c * std::pow(u, pq.first) * std::pow(v, pq.second);
  for (const auto& [pq, c] : p.b) dv += c * std::pow(u, pq.first) * std::pow(v, pq.second);
  u += du;
  v += dv;
  // Intermediate world coordinates (degrees).
  const double x = p.cd11 * u + p.cd12 * v;
  const double y = p.cd21 * u + p.cd22 * v;
  // TAN: phi = arg(-y, x), R_theta = (180/pi) cot(theta).
  const double phi = std::atan2(x, -y);
  const double r_deg = std::hypot(x, y);
  const double theta = std::atan2(180.0 / std::numbers::pi, r_deg);
  const double phi_p = std::numbers::pi;  // LONPOLE = 180
  const double ra_p = p.crval1 * kDeg;
  const double dec_p = p.crval2 * kDeg;
  const double ra =
      ra_p + std::atan2(-std::cos(theta) * std::sin(phi - phi_p),
                        std::sin(theta) * std::cos(dec_p) -
                            std::cos(theta) * std::sin(dec_p) * std::cos(phi - phi_p));
  const double dec = std::asin(std::sin(theta) * std::sin(dec_p) +
                               std::cos(theta) * std::cos(dec_p) * std::cos(phi - phi_p));
  double ra_deg = std::fmod(ra / kDeg, 360.0);
  if (ra_deg < 0) ra_deg += 360.0;
  return {ra_deg, dec / kDeg};
}

double separation_mas(SkyCoord a, SkyCoord b) {
  const double a1 = a.ra_deg * kDeg, d1 = a.dec_deg * kDeg;
  const double a2 = b.ra_deg * kDeg, d2 = b.dec_deg * kDeg;
  const double x1 = std::cos(d1) * std::cos(a1), y1 = std::cos(d1) * std::sin(a1),
               z1 = std::sin(d1);
  const double x2 = std::cos(d2) * std::cos(a2), y2 = std::cos(d2) * std::sin(a2),
               z2 = std::sin(d2);
  const double cx = y1 * z2 - z1 * y2, cy = z1 * x2 - x1 * z2, cz = x1 * y2 - y1 * x2;
  return std::atan2(std::sqrt(cx * cx + cy * cy + cz * cz), x1 * x2 + y1 * y2 + z1 * z2) *
         kMasPerRad;
}

// A rotated, slightly skewed, RA-flipped CD matrix (non-symmetric, so a transposed matrix would
// show) at 1 arcsec/pixel so that pixels far from CRPIX are degrees away.
TanParams field(double ra, double dec) {
  TanParams p{};
  p.crpix1 = 1024.5;
  p.crpix2 = 2048.25;
  p.crval1 = ra;
  p.crval2 = dec;
  const double s = 1.0 / 3600.0;
  const double rho = 30.0 * kDeg;
  p.cd11 = -s * std::cos(rho);
  p.cd12 = s * std::sin(rho) * 1.05;
  p.cd21 = s * std::sin(rho) * 0.97;
  p.cd22 = s * std::cos(rho);
  return p;
}

const std::vector<PixelCoord> kPixels = {{1, 1},         {1024.5, 2048.25}, {4096, 4096},
                                         {-2000, 3000},  {10000, -5000},    {300.7, 7000.3},
                                         {12000, 12000}, {1500, 1800}};

TEST(Wcs, TanMatchesTextbookProjectionToUnderOneMilliarcsec) {
  for (const auto& [ra, dec] : std::vector<std::pair<double, double>>{
           {150.1, 2.2}, {10.0, 85.0}, {359.9, -30.0}, {270.0, -89.0}}) {
    const TanParams p = field(ra, dec);
    const auto wcs = Wcs::from_header(make_header(p));
    ASSERT_TRUE(wcs.has_value());
    EXPECT_FALSE(wcs->has_distortion());
    for (const auto& px : kPixels) {
      const SkyCoord got = wcs->pixel_to_sky(px);
      const SkyCoord want = expected_sky(p, px.x, px.y);
      EXPECT_LT(separation_mas(got, want), 1.0)
          << "CRVAL (" << ra << ", " << dec << ") pixel (" << px.x << ", " << px.y << "): got "
          << got.ra_deg << ", " << got.dec_deg << " want " << want.ra_deg << ", " << want.dec_deg;
      const PixelCoord back = wcs->sky_to_pixel(got);
      EXPECT_NEAR(back.x, px.x, 1e-6);
      EXPECT_NEAR(back.y, px.y, 1e-6);
    }
  }
}

TEST(Wcs, ReferencePixelMapsToCrval) {
  const TanParams p = field(150.1, 2.2);
  const auto wcs = Wcs::from_header(make_header(p));
  ASSERT_TRUE(wcs.has_value());
  const SkyCoord c = wcs->pixel_to_sky({p.crpix1, p.crpix2});
  EXPECT_NEAR(c.ra_deg, 150.1, 1e-12);
  EXPECT_NEAR(c.dec_deg, 2.2, 1e-12);
}

TEST(Wcs, PixelScaleFromCdDeterminant) {
  const TanParams p = field(150.1, 2.2);
  const auto wcs = Wcs::from_header(make_header(p));
  ASSERT_TRUE(wcs.has_value());
  const double want = std::sqrt(std::fabs(p.cd11 * p.cd22 - p.cd12 * p.cd21)) * 3600.0;
  EXPECT_NEAR(wcs->pixel_scale_arcsec(), want, 1e-12);

  // CDELT + PC form: 0.05"/pix, 15 degree rotation.
  Header h;
  h.set("CTYPE1", std::string_view("RA---TAN"));
  h.set("CTYPE2", std::string_view("DEC--TAN"));
  h.set("CRVAL1", 53.1);
  h.set("CRVAL2", -27.8);
  h.set("CDELT1", -0.05 / 3600.0);
  h.set("CDELT2", 0.05 / 3600.0);
  h.set("PC1_1", std::cos(15 * kDeg));
  h.set("PC1_2", -std::sin(15 * kDeg));
  h.set("PC2_1", std::sin(15 * kDeg));
  h.set("PC2_2", std::cos(15 * kDeg));
  const auto w2 = Wcs::from_header(h);
  ASSERT_TRUE(w2.has_value());
  EXPECT_NEAR(w2->pixel_scale_arcsec(), 0.05, 1e-12);
}

TanParams sip_field() {
  TanParams p = field(150.1, 2.2);
  p.a = {{{2, 0}, 2.0e-6}, {{1, 1}, -1.0e-6}, {{0, 2}, 3.0e-6}};
  p.b = {{{2, 0}, -2.0e-6}, {{1, 1}, 4.0e-6}, {{0, 2}, 1.5e-6}};
  return p;
}

TEST(Wcs, SipPolynomialIsApplied) {
  const TanParams p = sip_field();
  const auto wcs = Wcs::from_header(make_header(p));
  ASSERT_TRUE(wcs.has_value());
  EXPECT_TRUE(wcs->has_distortion());
  ASSERT_NE(wcs->raw()->lin.dispre, nullptr) << "wcspih did not parse the SIP keywords";
  TanParams no_sip = p;
  no_sip.a.clear();
  no_sip.b.clear();
  for (const auto& px : kPixels) {
    const SkyCoord got = wcs->pixel_to_sky(px);
    EXPECT_LT(separation_mas(got, expected_sky(p, px.x, px.y)), 1.0)
        << "pixel (" << px.x << ", " << px.y << ")";
    const double du = px.x - p.crpix1;
    const double dv = px.y - p.crpix2;
    if (std::hypot(du, dv) > 1000) {
      // The distortion is several pixels here: make sure it is not silently ignored.
      EXPECT_GT(separation_mas(got, expected_sky(no_sip, px.x, px.y)), 1000.0);
    }
  }
}

TEST(Wcs, HstStyleLookupTableCardsAreIgnoredAndSipStillApplies) {
  // HST flt headers: SIP plus CPDISj = 'Lookup' and DPj records naming WCSDVARR extensions.
  const TanParams p = sip_field();
  Header h = make_header(p);
  h.set("CPDIS1", "Lookup");
  h.set("CPDIS2", "Lookup");
  for (const char* card : {"DP1     = 'EXTVER: 1'", "DP1     = 'NAXES: 2'", "DP1     = 'AXIS.1: 1'",
                           "DP1     = 'AXIS.2: 2'", "DP2     = 'EXTVER: 2'", "DP2     = 'NAXES: 2'",
                           "DP2     = 'AXIS.1: 1'", "DP2     = 'AXIS.2: 2'"}) {
    h.add_card(card);
  }
  const auto wcs = Wcs::from_header(h);
  ASSERT_TRUE(wcs.has_value());
  EXPECT_TRUE(wcs->has_distortion());
  EXPECT_FALSE(wcs->cards().contains("CPDIS1"));
  for (const auto& px : kPixels) {
    EXPECT_LT(separation_mas(wcs->pixel_to_sky(px), expected_sky(p, px.x, px.y)), 1.0);
  }
}

TEST(Wcs, SipRoundTripsThroughSkyToPixel) {
  const auto wcs = Wcs::from_header(make_header(sip_field()));
  ASSERT_TRUE(wcs.has_value());
  for (const auto& px : std::vector<PixelCoord>{{1, 1}, {1500, 1800}, {3000, 100}, {2048, 4096}}) {
    const PixelCoord back = wcs->sky_to_pixel(wcs->pixel_to_sky(px));
    EXPECT_NEAR(back.x, px.x, 1e-6);
    EXPECT_NEAR(back.y, px.y, 1e-6);
  }
}

TEST(Wcs, ShiftedKeepsSkyOfTheSamePhysicalPixel) {
  for (const TanParams& p : {field(150.1, 2.2), sip_field()}) {
    const auto wcs = Wcs::from_header(make_header(p));
    ASSERT_TRUE(wcs.has_value());
    const long x0 = 700;
    const long y0 = 1250;
    const Wcs tile = wcs->shifted(x0, y0);
    EXPECT_EQ(tile.has_distortion(), wcs->has_distortion());
    for (const auto& px : kPixels) {
      const SkyCoord full = wcs->pixel_to_sky(px);
      const SkyCoord cut = tile.pixel_to_sky({px.x - x0, px.y - y0});
      EXPECT_NEAR(cut.ra_deg, full.ra_deg, 1e-9);
      EXPECT_NEAR(cut.dec_deg, full.dec_deg, 1e-9);
    }
    EXPECT_DOUBLE_EQ(tile.cards().get_double("CRPIX1").value(), p.crpix1 - x0);
    EXPECT_DOUBLE_EQ(tile.cards().get_double("CRPIX2").value(), p.crpix2 - y0);
  }
}

TEST(Wcs, CopiesAreDeepAndEquivalent) {
  const auto wcs = Wcs::from_header(make_header(sip_field()));
  ASSERT_TRUE(wcs.has_value());
  Wcs copy = *wcs;
  EXPECT_NE(copy.raw(), wcs->raw());
  EXPECT_TRUE(copy.has_distortion());
  Wcs assigned = wcs->shifted(10, 10);
  assigned = copy;
  for (const auto& px : kPixels) {
    const SkyCoord a = wcs->pixel_to_sky(px);
    const SkyCoord b = copy.pixel_to_sky(px);
    const SkyCoord c = assigned.pixel_to_sky(px);
    EXPECT_EQ(a.ra_deg, b.ra_deg);
    EXPECT_EQ(a.dec_deg, b.dec_deg);
    EXPECT_EQ(a.ra_deg, c.ra_deg);
    EXPECT_EQ(a.dec_deg, c.dec_deg);
  }
  Wcs moved = std::move(copy);
  EXPECT_EQ(moved.pixel_to_sky({5, 5}).ra_deg, wcs->pixel_to_sky({5, 5}).ra_deg);
}

TEST(Wcs, VectorisedMatchesScalar) {
  const auto wcs = Wcs::from_header(make_header(sip_field()));
  ASSERT_TRUE(wcs.has_value());
  std::vector<SkyCoord> out;
  wcs->pixel_to_sky(kPixels, out);
  ASSERT_EQ(out.size(), kPixels.size());
  for (std::size_t i = 0; i < kPixels.size(); ++i) {
    const SkyCoord s = wcs->pixel_to_sky(kPixels[i]);
    EXPECT_EQ(out[i].ra_deg, s.ra_deg);
    EXPECT_EQ(out[i].dec_deg, s.dec_deg);
  }
}

TEST(Wcs, ConcurrentTransformsAgreeWithSerial) {
  const auto wcs = Wcs::from_header(make_header(sip_field()));
  ASSERT_TRUE(wcs.has_value());
  std::vector<PixelCoord> pixels;
  for (int i = 0; i < 2000; ++i) pixels.push_back({1.0 + i * 1.7, 4000.0 - i * 0.9});
  std::vector<SkyCoord> serial;
  for (const auto& p : pixels) serial.push_back(wcs->pixel_to_sky(p));
  std::vector<std::vector<SkyCoord>> results(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      for (const auto& p : pixels) results[t].push_back(wcs->pixel_to_sky(p));
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& r : results) {
    for (std::size_t i = 0; i < pixels.size(); ++i) {
      ASSERT_EQ(r[i].ra_deg, serial[i].ra_deg);
      ASSERT_EQ(r[i].dec_deg, serial[i].dec_deg);
    }
  }
}

TEST(Wcs, WriteToReplacesWcsCardsAndKeepsSipVerbatim) {
  const TanParams p = sip_field();
  const Header src = make_header(p);
  const auto wcs = Wcs::from_header(src);
  ASSERT_TRUE(wcs.has_value());
  const Wcs tile = wcs->shifted(100, 200);

  Header out;
  out.set("OBJECT", std::string_view("kept"));
  out.set("CRPIX1", 1.0);
  out.set("CTYPE1", std::string_view("GLON-CAR"));
  tile.write_to(out);
  EXPECT_EQ(out.get_string("OBJECT").value(), "kept");
  EXPECT_EQ(out.get_string("CTYPE1").value(), "RA---TAN-SIP");
  EXPECT_DOUBLE_EQ(out.get_double("CRPIX1").value(), p.crpix1 - 100);
  EXPECT_FALSE(out.contains("EXPTIME"));  // not a WCS card
  // The SIP cards are copied as written in the source header.
  for (const auto& card : src.cards()) {
    if (card.rfind("A_", 0) == 0 || card.rfind("B_", 0) == 0) {
      EXPECT_NE(std::find(out.cards().begin(), out.cards().end(), card), out.cards().end()) << card;
    }
  }
  int crpix1_cards = 0;
  for (const auto& card : out.cards()) crpix1_cards += card.rfind("CRPIX1 ", 0) == 0 ? 1 : 0;
  EXPECT_EQ(crpix1_cards, 1);
  const auto reparsed = Wcs::from_header(out);
  ASSERT_TRUE(reparsed.has_value());
  const SkyCoord a = reparsed->pixel_to_sky({50, 60});
  const SkyCoord b = wcs->pixel_to_sky({150, 260});
  EXPECT_NEAR(a.ra_deg, b.ra_deg, 1e-9);
  EXPECT_NEAR(a.dec_deg, b.dec_deg, 1e-9);
}

TEST(Wcs, NoCelestialWcsGivesNullopt) {
  Header empty;
  empty.set("OBJECT", std::string_view("no wcs"));
  EXPECT_FALSE(Wcs::from_header(empty).has_value());
  Header linear;
  linear.set("CTYPE1", std::string_view("LINEAR"));
  linear.set("CTYPE2", std::string_view("LINEAR"));
  linear.set("CRPIX1", 1.0);
  EXPECT_FALSE(Wcs::from_header(linear).has_value());
}

TEST(Wcs, RejectedWcsIsAFrameError) {
  TanParams p = field(150.1, 2.2);
  Header h = make_header(p);
  // A singular CD matrix (rows proportional, none omitted) cannot be inverted.
  h.set("CD1_1", 0.25);
  h.set("CD1_2", 0.5);
  h.set("CD2_1", 0.125);
  h.set("CD2_2", 0.25);
  EXPECT_THROW((void)Wcs::from_header(h), FrameError);
  // Two different projections on the celestial axes.
  Header mixed = make_header(p);
  mixed.set("CTYPE2", std::string_view("DEC--SIN"));
  EXPECT_THROW((void)Wcs::from_header(mixed), FrameError);
}

TEST(Wcs, IsWcsKeyword) {
  for (const char* k : {"CTYPE1", "CRPIX2", "CRVAL1A", "CD1_2", "PC2_1", "PV2_1", "A_ORDER",
                        "A_2_0", "BP_0_3", "RADESYS", "EQUINOX", "LONPOLE", "CDELT1", "DP1"}) {
    EXPECT_TRUE(Wcs::is_wcs_keyword(k)) << k;
  }
  for (const char* k : {"OBJECT", "EXPTIME", "A", "CRPIX", "CD", "FILTER", "DATE-OBS"}) {
    EXPECT_FALSE(Wcs::is_wcs_keyword(k)) << k;
  }
}

TEST(Wcs, IsWcsKeywordAgreesWithTheRegexItReplaced) {
  // The definition is_wcs_keyword implements by hand (a std::regex was too slow per card).
  const std::regex reference(
      "^((CTYPE|CUNIT|CRVAL|CDELT|CRPIX|CROTA|CRDER|CSYER|CNAME|CPDIS|CQDIS|CPERR|CQERR|DVERR)[0-9]"
      "+[A-Z]?"
      "|(PC|CD|PV|PS)[0-9]+_[0-9]+[A-Z]?"
      "|(A|B|AP|BP)_[0-9]+_[0-9]+"
      "|(A|B|AP|BP)_ORDER|A_DMAX|B_DMAX"
      "|(DP|DQ)[0-9]+"
      "|(WCSAXES|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|WCSNAME)[A-Z]?)$");
  const std::vector<std::string> stems = {
      "CTYPE",   "CUNIT",   "CRVAL",   "CDELT",   "CRPIX",    "CROTA",   "CRDER", "CSYER",
      "CNAME",   "CPDIS",   "CQDIS",   "CPERR",   "CQERR",    "DVERR",   "PC",    "CD",
      "PV",      "PS",      "A",       "B",       "AP",       "BP",      "DP",    "DQ",
      "WCSAXES", "LONPOLE", "LATPOLE", "RADESYS", "RADECSYS", "EQUINOX", "EPOCH", "WCSNAME",
      "C",       "CR",      "CRPI",    "D",       "W",        "OBJECT",  ""};
  const std::vector<std::string> tails = {
      "",      "1",      "12",     "1A",    "1a",      "1AB",   "A",    "_",
      "1_",    "1_2",    "1_2A",   "1_2_",  "_1",      "_1_",   "_1_2", "_12_3",
      "_1_2A", "_ORDER", "_DMAX",  "ORDER", "_ORDERX", "1_2_3", "X",    "-1",
      " ",     "1 ",     "_1_2_3", "9Z",    "0_0",     "AB",    "1_A"};
  std::size_t checked = 0;
  for (const std::string& s : stems) {
    for (const std::string& t : tails) {
      const std::string key = s + t;
      EXPECT_EQ(Wcs::is_wcs_keyword(key), std::regex_match(key, reference)) << "'" << key << "'";
      ++checked;
    }
  }
  // Random keys over the characters that matter.
  std::mt19937 rng(12345);
  const std::string alphabet = "ABCDPQRSTVWXY_0129";
  for (int i = 0; i < 20000; ++i) {
    std::string key;
    const int len = 1 + static_cast<int>(rng() % 8);
    for (int j = 0; j < len; ++j) key.push_back(alphabet[rng() % alphabet.size()]);
    EXPECT_EQ(Wcs::is_wcs_keyword(key), std::regex_match(key, reference)) << "'" << key << "'";
    ++checked;
  }
  EXPECT_GT(checked, 20000u);
}

}  // namespace
}  // namespace astroflow
