#include "astroflow/header.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

namespace astroflow {
namespace {

std::string pad(std::string s) {  // a FITS record is 80 characters
  s.resize(80, ' ');
  return s;
}

TEST(Header, AddCardDropsStructuralKeywords) {
  Header h;
  h.add_card("SIMPLE  =                    T");
  h.add_card("BITPIX  =                  -32");
  h.add_card("NAXIS   =                    2");
  h.add_card("NAXIS1  =                  100");
  h.add_card("BZERO   =                32768");
  h.add_card("ZNAXIS1 =                  100");
  h.add_card("ZTILE1  =                  100");
  h.add_card("ZCMPTYPE= 'RICE_1  '");
  h.add_card("CHECKSUM= 'abc'");
  h.add_card("TTYPE1  = 'FLUX'");
  h.add_card("OBJECT  = 'NGC 1300'           / target");
  h.add_card("NAXISFOO= 3");  // not NAXISn: kept
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h.get_string("OBJECT").value(), "NGC 1300");
  EXPECT_TRUE(h.contains("NAXISFOO"));
  EXPECT_FALSE(h.contains("NAXIS1"));
  EXPECT_EQ(h.cards()[0].size(), 80u);
}

TEST(Header, IsStructural) {
  for (const char* k :
       {"SIMPLE", "XTENSION", "BITPIX",  "NAXIS",    "NAXIS3",   "PCOUNT",  "GCOUNT",
        "EXTEND", "BSCALE",   "BZERO",   "BLANK",    "CHECKSUM", "DATASUM", "END",
        "ZIMAGE", "ZBITPIX",  "ZNAXIS2", "ZQUANTIZ", "ZNAME1",   "ZVAL1"}) {
    EXPECT_TRUE(Header::is_structural(k)) << k;
  }
  for (const char* k : {"OBJECT", "CRPIX1", "EXPTIME", "NAXISX", "ZP", "EXTNAME", "HISTORY"}) {
    EXPECT_FALSE(Header::is_structural(k)) << k;
  }
}

TEST(Header, StringValuesAreQuotedAndUnquoted) {
  Header h;
  h.set("OBSERVER", std::string_view("O'Brien"), "who");
  ASSERT_EQ(h.size(), 1u);
  // FITS: quotes inside a string are doubled; the value starts in column 11.
  EXPECT_EQ(h.cards()[0].substr(0, 20), "OBSERVER= 'O''Brien'");
  EXPECT_NE(h.cards()[0].find("/ who"), std::string::npos);
  EXPECT_EQ(h.get_string("observer").value(), "O'Brien");
  h.set("SHORT", std::string_view("ab"));
  // Fixed-format strings are padded to 8 characters inside the quotes.
  EXPECT_EQ(h.cards()[1].substr(0, 20), "SHORT   = 'ab      '");
  EXPECT_EQ(h.get_string("SHORT").value(), "ab");
}

TEST(Header, DoublesRoundTripExactly) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> mant(-10.0, 10.0);
  std::uniform_int_distribution<int> expo(-30, 30);
  Header h;
  for (int i = 0; i < 200; ++i) {
    const double v = mant(rng) * std::pow(10.0, expo(rng));
    h.set("VAL", v);
    const auto back = h.get_double("VAL");
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, v) << h.cards()[0];
    // FITS requires an upper-case exponent letter.
    EXPECT_EQ(h.cards()[0].find('e'), std::string::npos) << h.cards()[0];
  }
  EXPECT_EQ(h.size(), 1u) << "set() must replace, not append";
  h.set("ONE", 1.0);
  // A real must be written with a decimal point or exponent, otherwise readers see an integer.
  EXPECT_NE(h.cards()[1].substr(10, 20).find_first_of(".E"), std::string::npos);
  // Fixed format: numbers end in column 30.
  EXPECT_NE(h.cards()[1][29], ' ');
  EXPECT_EQ(h.cards()[1][30], ' ');
}

TEST(Header, IntegersBoolsAndFortranExponents) {
  Header h;
  h.set("NCOMBINE", 12LL, "frames");
  h.set("DITHERED", true);
  h.add_card("GAIN    =              1.5D+00 / e-/ADU");
  h.add_card("EXPTIME =                300.0");
  h.add_card("BAD     = 'not a number'");
  EXPECT_EQ(h.get_int("NCOMBINE").value(), 12);
  EXPECT_EQ(h.cards()[0].substr(0, 30), "NCOMBINE=                   12");
  EXPECT_EQ(h.get_string("DITHERED").value(), "T");
  EXPECT_EQ(h.cards()[1].substr(0, 30), "DITHERED=                    T");
  EXPECT_DOUBLE_EQ(h.get_double("GAIN").value(), 1.5);
  EXPECT_EQ(h.get_int("EXPTIME").value(), 300);
  EXPECT_FALSE(h.get_double("BAD").has_value());
  EXPECT_FALSE(h.get_int("BAD").has_value());
  EXPECT_FALSE(h.get_double("MISSING").has_value());
}

TEST(Header, PoissonGainComesFromGainElseFromBunit) {
  // HST ACS/WFC3 FLT images carry BUNIT = 'ELECTRONS' and no GAIN card; drizzled ones
  // 'ELECTRONS/S' with the exposure time in EXPTIME. SExtractor's manual asks for GAIN 1 and
  // GAIN = EXPTIME there.
  Header h;
  EXPECT_EQ(poisson_gain(h), 0.0);
  h.set("BUNIT", "ELECTRONS");
  EXPECT_EQ(poisson_gain(h), 1.0);
  h.set("BUNIT", "electrons / s");
  EXPECT_EQ(poisson_gain(h), 0.0);  // a rate without EXPTIME: no Poisson term
  h.set("EXPTIME", 507.0);
  EXPECT_EQ(poisson_gain(h), 507.0);
  h.set("BUNIT", "e-/s");
  EXPECT_EQ(poisson_gain(h), 507.0);
  h.set("BUNIT", "COUNTS");
  EXPECT_EQ(poisson_gain(h), 0.0);
  h.set("BUNIT", "ELECTRONS/PIX");  // not a unit the rule knows
  EXPECT_EQ(poisson_gain(h), 0.0);
  h.set("BUNIT", "ELECTRONS");
  h.set("GAIN", 2.5);  // the GAIN card wins
  EXPECT_EQ(poisson_gain(h), 2.5);
  h.set("GAIN", 0.0);  // GAIN 0 means none in SExtractor: fall back to BUNIT
  EXPECT_EQ(poisson_gain(h), 1.0);
}

TEST(Header, LiteralsAndPlainIntsPickTheRightOverload) {
  Header h;
  h.set("FILTER", "F814W");  // must not become the logical T
  h.set("NEXP", 3);
  EXPECT_EQ(h.get_string("FILTER").value(), "F814W");
  EXPECT_EQ(h.cards()[0].substr(0, 20), "FILTER  = 'F814W   '");
  EXPECT_EQ(h.get_int("NEXP").value(), 3);
}

TEST(Header, HistoryAndCommentWrapAt72Characters) {
  Header h;
  const std::string text(150, 'x');
  h.add_history(text);
  ASSERT_EQ(h.size(), 3u);
  std::string joined;
  for (const auto& c : h.cards()) {
    EXPECT_EQ(c.substr(0, 8), "HISTORY ");
    joined += c.substr(8);
  }
  EXPECT_EQ(joined.substr(0, 150), text);
  h.add_comment("short note");
  EXPECT_EQ(h.cards().back(), pad("COMMENT short note"));
}

TEST(Header, EraseContainsAndFitsString) {
  Header h;
  h.set("A", 1LL);
  h.set("B", 2LL);
  h.add_card("A       =                    3");
  EXPECT_TRUE(h.contains("a"));
  h.erase("A");
  EXPECT_FALSE(h.contains("A"));
  EXPECT_EQ(h.size(), 1u);
  const std::string s = h.to_fits_string();
  EXPECT_EQ(s.size(), 80u);
  EXPECT_EQ(s.substr(0, 1), "B");
}

TEST(Header, HierarchKeywords) {
  Header h;
  h.set("ESO DET CHIP NAME", std::string_view("CCD-44"));
  EXPECT_EQ(h.cards()[0].substr(0, 9), "HIERARCH ");
  EXPECT_EQ(h.get_string("ESO DET CHIP NAME").value(), "CCD-44");
  h.add_card("HIERARCH ESO TEL AIRM START = 1.25 / airmass");
  EXPECT_DOUBLE_EQ(h.get_double("ESO TEL AIRM START").value(), 1.25);
}

}  // namespace
}  // namespace astroflow
