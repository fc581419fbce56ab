// Crashes (SIGSEGV) on a frame without any finite pixel, the way an unchecked division or an
// out-of-range index does in a real stage. Used to test that plugin-check survives a crash.
#include <csignal>

#include "test_stage.hpp"

namespace {

class CrashingStage : public astroflow_test::ScaleStage {
 protected:
  void process_frame(astroflow::Frame& frame) override {
    bool any_finite = false;
    for (int y = 0; y < frame.science.rows && !any_finite; ++y) {
      for (int x = 0; x < frame.science.cols && !any_finite; ++x) {
        any_finite = std::isfinite(frame.science.at<float>(y, x));
      }
    }
    if (!any_finite) std::raise(SIGSEGV);
    ScaleStage::process_frame(frame);
  }
};

}  // namespace

ASTROFLOW_TEST_SCALE_PLUGIN(CrashingStage, "nan_crash", astroflow_test::scale_schema())
