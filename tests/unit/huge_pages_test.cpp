// The huge-page cv::Mat allocator (huge_pages.hpp): where buffers live, and that Mats behave.
#include <gtest/gtest.h>

#include <astroflow/huge_pages.hpp>
#include <cstdint>
#include <opencv2/core.hpp>
#include <vector>

namespace {

bool huge_aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % astroflow::kHugePageBytes == 0;
}

}  // namespace

TEST(HugePages, LargeImagePlanesStartOnAHugePageAndSmallOnesDoNot) {
  ASSERT_TRUE(astroflow::use_huge_page_allocator());
  EXPECT_NE(cv::Mat::getDefaultAllocator(), cv::Mat::getStdAllocator());
  EXPECT_TRUE(astroflow::use_huge_page_allocator());  // a second call changes nothing
  for (int side : {1100, 2048, 4096}) {
    SCOPED_TRACE(side);
    cv::Mat big(side, side, CV_32F);
    ASSERT_GE(big.total() * big.elemSize(), astroflow::kHugePageMinBytes);
    EXPECT_TRUE(huge_aligned(big.data));
  }
  // Below the threshold OpenCV's own allocation (64-byte aligned, inside a malloc chunk).
  cv::Mat small(64, 64, CV_32F);
  EXPECT_FALSE(huge_aligned(small.data));
}

TEST(HugePages, MatsOnHugePagesKeepTheirValuesThroughCopiesAndConversions) {
  ASSERT_TRUE(astroflow::use_huge_page_allocator());
  cv::Mat a(1500, 1700, CV_32F);
  cv::randu(a, cv::Scalar(-5.0), cv::Scalar(5.0));
  const cv::Mat b = a.clone();
  EXPECT_TRUE(huge_aligned(b.data));
  EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0.0);
  cv::Mat d;
  a.convertTo(d, CV_64F, 2.0);  // 20 MB, a different size class
  EXPECT_TRUE(huge_aligned(d.data));
  EXPECT_DOUBLE_EQ(d.at<double>(700, 900), 2.0 * a.at<float>(700, 900));
  // A Mat over caller-owned memory is left alone.
  std::vector<float> mine(2000 * 2000, 1.5f);
  cv::Mat wrap(2000, 2000, CV_32F, mine.data());
  EXPECT_EQ(wrap.data, reinterpret_cast<uchar*>(mine.data()));
  EXPECT_EQ(cv::sum(wrap)[0], 1.5 * 2000 * 2000);
  // Many large buffers allocated and released in turn.
  for (int i = 0; i < 50; ++i) {
    cv::Mat m(2048, 2048, CV_32F, cv::Scalar(i));
    EXPECT_EQ(m.at<float>(2047, 2047), static_cast<float>(i));
  }
}
