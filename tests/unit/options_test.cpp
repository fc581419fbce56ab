#include "astroflow/options.hpp"

#include <gtest/gtest.h>

#include <string>

namespace astroflow {
namespace {

TEST(OptionSchema, BuilderRecordsTypesDefaultsAndRanges) {
  OptionSchema s;
  s.add_double("threshold", 1.5, "detection threshold", 0.1, 100.0)
      .add_int("min_area", 5, "pixels", 1)
      .add_string("mode", "cutout", "input mode", {"cutout", "sources"})
      .add_path("model", std::nullopt, "ONNX file");
  ASSERT_EQ(s.specs().size(), 4u);
  const OptionSpec* t = s.find("threshold");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->type, OptionType::kDouble);
  EXPECT_EQ(std::get<double>(*t->default_value), 1.5);
  EXPECT_EQ(*t->min, 0.1);
  EXPECT_FALSE(s.find("model")->default_value.has_value());
  EXPECT_EQ(s.find("mode")->choices.size(), 2u);
  EXPECT_EQ(s.find("nope"), nullptr);
  EXPECT_THROW(s.add_bool("threshold", true, "dup"), std::invalid_argument);
}

TEST(Options, TypedAccessWidensIntsAndNamesMissingOptions) {
  Options o;
  o.set("n", std::int64_t{3});
  o.set("k", 0.25);
  o.set("on", true);
  o.set("name", std::string("x"));
  EXPECT_EQ(o.get_int("n"), 3);
  EXPECT_EQ(o.get_double("n"), 3.0);
  EXPECT_EQ(o.get_double("k"), 0.25);
  EXPECT_TRUE(o.get_bool("on"));
  EXPECT_EQ(o.get_string("name"), "x");
  EXPECT_THROW((void)o.get_int("k"), std::out_of_range);
  try {
    (void)o.get_double("absent");
    FAIL();
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("absent"), std::string::npos);
  }
  EXPECT_EQ(to_string(OptionValue{std::int64_t{7}}), "7");
  EXPECT_EQ(to_string(OptionValue{std::string("a")}), "\"a\"");
}

TEST(Options, DoublesPrintAsTheShortestTextThatReadsBackExactly) {
  EXPECT_EQ(to_string(OptionValue{0.7}), "0.7");
  EXPECT_EQ(to_string(OptionValue{0.9}), "0.9");
  EXPECT_EQ(to_string(OptionValue{64.0}), "64");
  for (double v : {0.7, 0.1 + 0.2, 1.0 / 3.0, 2.5e-7, 1e300, -0.575}) {
    EXPECT_EQ(std::stod(to_string(OptionValue{v})), v) << to_string(OptionValue{v});
  }
}

}  // namespace
}  // namespace astroflow
