#include "astroflow/catalog.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace astroflow {
namespace {

TEST(Catalog, ColumnsStayTheSameLengthAsRowsGrow) {
  Catalog c;
  auto& x = c.add_column<double>("X_IMAGE", "pix");
  EXPECT_EQ(x.size(), 0u);
  c.resize(3);
  c.get<double>("X_IMAGE")[1] = 4.5;
  auto& flags = c.add_column<std::int32_t>("FLAGS");
  EXPECT_EQ(flags.size(), 3u);
  EXPECT_EQ(c.append_row(), 3u);
  EXPECT_EQ(c.get<double>("X_IMAGE").size(), 4u);
  EXPECT_TRUE(std::isnan(c.get<double>("X_IMAGE")[3]));
  EXPECT_EQ(c.get<std::int32_t>("FLAGS")[3], 0);
  EXPECT_EQ(c.find("X_IMAGE")->unit, "pix");
}

TEST(Catalog, NewColumnOnExistingRowsTakesTheFillValue) {
  Catalog c;
  c.resize(2);
  auto& flags = c.add_column<std::int32_t>("FLAGS", "", "", 8);
  EXPECT_EQ(flags, (std::vector<std::int32_t>{8, 8}));
  flags[0] = 1;
  // Asking again returns the existing column untouched.
  EXPECT_EQ(c.add_column<std::int32_t>("FLAGS", "", "", 3), (std::vector<std::int32_t>{1, 8}));
}

TEST(Catalog, TypeClashIsRejectedWithTheColumnName) {
  Catalog c;
  c.add_column<float>("FLUX_AUTO", "count");
  try {
    c.add_column<std::int32_t>("FLUX_AUTO");
    FAIL() << "expected a type clash";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("FLUX_AUTO"), std::string::npos);
  }
  EXPECT_THROW((void)c.get<double>("FLUX_AUTO"), std::out_of_range);
  EXPECT_THROW((void)c.get<float>("MISSING"), std::out_of_range);
}

TEST(Catalog, AppendUnionsColumnsAndFillsDefaults) {
  Catalog a;
  a.add_column<std::int32_t>("NUMBER");
  a.resize(2);
  a.get<std::int32_t>("NUMBER") = {1, 2};
  Catalog b;
  b.add_column<std::int32_t>("NUMBER");
  b.add_column<std::string>("CLASS");
  b.resize(1);
  b.get<std::int32_t>("NUMBER")[0] = 7;
  b.get<std::string>("CLASS")[0] = "disk";
  a.append(b);
  ASSERT_EQ(a.rows(), 3u);
  EXPECT_EQ(a.get<std::int32_t>("NUMBER"), (std::vector<std::int32_t>{1, 2, 7}));
  EXPECT_EQ(a.get<std::string>("CLASS"), (std::vector<std::string>{"", "", "disk"}));
}

TEST(Catalog, FilterKeepsSelectedRowsInOrder) {
  Catalog c;
  c.add_column<std::int32_t>("NUMBER");
  c.add_column<std::string>("NAME");
  c.resize(4);
  c.get<std::int32_t>("NUMBER") = {1, 2, 3, 4};
  c.get<std::string>("NAME") = {"a", "b", "c", "d"};
  c.filter({true, false, false, true});
  EXPECT_EQ(c.rows(), 2u);
  EXPECT_EQ(c.get<std::int32_t>("NUMBER"), (std::vector<std::int32_t>{1, 4}));
  EXPECT_EQ(c.get<std::string>("NAME"), (std::vector<std::string>{"a", "d"}));
  EXPECT_THROW(c.filter({true}), std::invalid_argument);
}

TEST(Catalog, SliceKeepsColumnsUnitsAndTheRowRange) {
  Catalog c;
  c.add_column<std::int32_t>("NUMBER");
  c.add_column<double>("FLUX_AUTO", "count", "flux");
  c.add_column<std::string>("CLASS");
  c.resize(5);
  c.get<std::int32_t>("NUMBER") = {1, 2, 3, 4, 5};
  c.get<double>("FLUX_AUTO") = {1.5, 2.5, 3.5, 4.5, 5.5};
  c.get<std::string>("CLASS") = {"a", "b", "c", "d", "e"};
  const Catalog s = c.slice(1, 3);
  ASSERT_EQ(s.rows(), 3u);
  EXPECT_EQ(s.get<std::int32_t>("NUMBER"), (std::vector<std::int32_t>{2, 3, 4}));
  EXPECT_EQ(s.get<double>("FLUX_AUTO"), (std::vector<double>{2.5, 3.5, 4.5}));
  EXPECT_EQ(s.get<std::string>("CLASS"), (std::vector<std::string>{"b", "c", "d"}));
  EXPECT_EQ(s.find("FLUX_AUTO")->unit, "count");
  EXPECT_EQ(s.find("FLUX_AUTO")->description, "flux");
  EXPECT_EQ(c.slice(5, 0).rows(), 0u);
  EXPECT_EQ(c.slice(5, 0).columns().size(), 3u);
  EXPECT_THROW((void)c.slice(4, 2), std::out_of_range);
  EXPECT_THROW((void)c.slice(6, 0), std::out_of_range);
}

TEST(Catalog, TextFormsRoundTripFloatPrecision) {
  Catalog c;
  c.add_column<float>("F");
  c.add_column<double>("D");
  c.resize(1);
  c.get<float>("F")[0] = 0.1f;
  c.get<double>("D")[0] = 0.1;
  EXPECT_EQ(std::stof(c.find("F")->as_text(0)), 0.1f);
  EXPECT_EQ(std::stod(c.find("D")->as_text(0)), 0.1);
  EXPECT_DOUBLE_EQ(c.find("F")->as_double(0), static_cast<double>(0.1f));
}

}  // namespace
}  // namespace astroflow
