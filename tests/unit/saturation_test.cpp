// The saturation level of a frame (SExtractor's SATUR_LEVEL and SATUR_KEY) and the labels of a
// segmentation map that hold a saturated pixel (SExtractor's FLAGS 4), preprocess.hpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <opencv2/core.hpp>
#include <vector>

#include "astroflow/error.hpp"
#include "astroflow/frame.hpp"
#include "astroflow/preprocess.hpp"

namespace {

TEST(Saturation, TheLevelComesFromTheOptionElseTheHeaderKeyword) {
  astroflow::Header h;
  EXPECT_FALSE(astroflow::saturation_level(h, 0.0, "SATURATE").has_value());
  h.set("SATURATE", 60000.0, "full well");
  EXPECT_EQ(astroflow::saturation_level(h, 0.0, "SATURATE").value_or(0.0), 60000.0);
  EXPECT_EQ(astroflow::saturation_level(h, 1000.0, "SATURATE").value_or(0.0), 1000.0);
  EXPECT_FALSE(astroflow::saturation_level(h, 0.0, "SATLEVEL").has_value());
  EXPECT_FALSE(astroflow::saturation_level(h, 0.0, "").has_value());
  h.set("SATLEVEL", 0.0, "no level");
  EXPECT_FALSE(astroflow::saturation_level(h, 0.0, "SATLEVEL").has_value());
}

TEST(Saturation, ALabelIsSaturatedWhenOneOfItsPixelsAsReadReachesTheLevel) {
  // Three labels on a 6 x 4 frame whose background (10 counts) the background stage has
  // subtracted: label 1 has a pixel at 90 (100 as read), label 2 peaks at 89 (99 as read), label
  // 3 has a blank pixel and a pixel at 100 that lies outside it (label 0).
  astroflow::Frame f;
  f.science = cv::Mat(4, 6, CV_32F, cv::Scalar(0.0f));
  f.planes["background"] = cv::Mat(4, 6, CV_32F, cv::Scalar(10.0f));
  f.header.set("BKG_SUB", true, "subtracted");
  cv::Mat seg(4, 6, CV_32S, cv::Scalar(0));
  seg(cv::Rect(0, 0, 2, 2)).setTo(1);
  seg(cv::Rect(2, 0, 2, 2)).setTo(2);
  seg(cv::Rect(0, 2, 4, 2)).setTo(3);
  f.science.at<float>(1, 1) = 90.0f;
  f.science.at<float>(0, 3) = 89.0f;
  f.science.at<float>(2, 0) = std::numeric_limits<float>::quiet_NaN();
  f.science.at<float>(3, 5) = 100.0f;
  astroflow::SaturationOptions at100;
  at100.level = 100.0;
  std::vector<bool> sat = astroflow::saturated_labels(f, seg, 3, at100);
  ASSERT_EQ(sat.size(), 4U);
  EXPECT_TRUE(sat[1]);
  EXPECT_FALSE(sat[2]);
  EXPECT_FALSE(sat[3]);
  // Without BKG_SUB the science plane is the frame as read: label 1 peaks at 90.
  f.header.erase("BKG_SUB");
  sat = astroflow::saturated_labels(f, seg, 3, at100);
  EXPECT_FALSE(sat[1]);
  astroflow::SaturationOptions at89;
  at89.level = 89.0;
  EXPECT_TRUE(astroflow::saturated_labels(f, seg, 3, at89)[2]);
  // The header's SATURATE when the level is 0; no level at all: nothing is saturated.
  f.header.set("SATURATE", 89.0, "full well");
  EXPECT_TRUE(astroflow::saturated_labels(f, seg, 3, astroflow::SaturationOptions{})[2]);
  f.header.erase("SATURATE");
  EXPECT_EQ(astroflow::saturated_labels(f, seg, 3, astroflow::SaturationOptions{}),
            std::vector<bool>(4, false));
  // A segmap of another size is refused.
  EXPECT_THROW((void)astroflow::saturated_labels(f, cv::Mat(4, 5, CV_32S, cv::Scalar(0)), 3, at100),
               astroflow::FrameError);
}

TEST(Saturation, MaskBitsFlagTheLabelsOnOrNextToAMarkedPixel) {
  // A saturated core the mask blanked (NaN, DQ 256) inside a ring of label 1; label 2 touches it
  // diagonally; label 3 is two pixels away; a pixel with another DQ bit (32) lies in label 3.
  astroflow::Frame f;
  f.science = cv::Mat(7, 7, CV_32F, cv::Scalar(5.0f));
  f.mask = cv::Mat(7, 7, CV_32S, cv::Scalar(0));
  cv::Mat seg(7, 7, CV_32S, cv::Scalar(0));
  seg(cv::Rect(0, 0, 3, 3)).setTo(1);
  seg.at<int>(1, 1) = 0;
  f.science.at<float>(1, 1) = std::numeric_limits<float>::quiet_NaN();
  f.mask.at<std::int32_t>(1, 1) = 256;
  seg.at<int>(3, 3) = 2;
  seg(cv::Rect(4, 4, 3, 3)).setTo(3);
  f.mask.at<std::int32_t>(5, 5) = 32;
  astroflow::SaturationOptions dq;
  dq.key = "";
  dq.mask_bits = 256 + 2048;
  EXPECT_EQ(astroflow::saturated_labels(f, seg, 3, dq),
            std::vector<bool>({false, true, false, false}));
  f.mask.at<std::int32_t>(2, 2) = 2048;  // next to label 2
  EXPECT_EQ(astroflow::saturated_labels(f, seg, 3, dq),
            std::vector<bool>({false, true, true, false}));
  dq.mask_bits = 0;
  EXPECT_EQ(astroflow::saturated_labels(f, seg, 3, dq), std::vector<bool>(4, false));
  dq.mask_bits = 32;
  EXPECT_EQ(astroflow::saturated_labels(f, seg, 3, dq),
            std::vector<bool>({false, false, false, true}));
}

}  // namespace
