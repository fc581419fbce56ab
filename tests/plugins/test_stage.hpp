// A small, well-behaved stage shared by the loader's test plugins. The broken plugins reuse it
// so that each of them differs from a good plugin in exactly one defect.
//
// Behaviour (deterministic, no model): per frame it counts the finite science pixels, flags the
// frame when there is none, writes a plane "scaled" = science * factor and one catalog row
// with NUMBER, FLUX_<mode> and NPIX_FINITE.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "astroflow/plugin.hpp"

namespace astroflow_test {

class ScaleStage : public astroflow::Stage {
 public:
  void configure(const astroflow::Options& options) override {
    factor_ = options.get_double("factor");
    mode_ = options.get_string("mode");
  }

 protected:
  void process_frame(astroflow::Frame& frame) override {
    double sum = 0.0;
    std::int64_t finite = 0;
    for (int y = 0; y < frame.science.rows; ++y) {
      const float* row = frame.science.ptr<float>(y);
      for (int x = 0; x < frame.science.cols; ++x) {
        if (std::isfinite(row[x])) {
          sum += row[x];
          ++finite;
        }
      }
    }
    if (finite == 0) throw astroflow::FrameError("no finite pixel");
    frame.planes["scaled"] = frame.science * factor_;
    const std::size_t row = frame.catalog.append_row();
    frame.catalog.add_column<std::int32_t>("NUMBER")[row] = static_cast<std::int32_t>(row + 1);
    const double value = mode_ == "mean" ? sum / static_cast<double>(finite) : sum;
    frame.catalog.add_column<double>(mode_ == "mean" ? "FLUX_MEAN" : "FLUX_SUM", "count")[row] =
        value * factor_ + extra(frame);
    frame.catalog.add_column<std::int64_t>("NPIX_FINITE", "pix")[row] = finite;
    stamp(frame);
  }

  /// Hook for the nondeterministic test plugin; 0 for a good stage.
  virtual double extra(const astroflow::Frame& frame) {
    (void)frame;
    return 0.0;
  }

 private:
  double factor_ = 1.0;
  std::string mode_ = "sum";
};

inline astroflow::OptionSchema scale_schema() {
  return astroflow::OptionSchema()
      .add_double("factor", 2.0, "multiplies the science plane", 0.0, 100.0)
      .add_string("mode", "sum", "catalog statistic of the finite pixels", {"sum", "mean"})
      .add_int("min_finite", 1, "unused; exercises int options", 0, 1000000)
      .add_bool("verbose", false, "unused; exercises bool options");
}

}  // namespace astroflow_test

#define ASTROFLOW_TEST_SCALE_PLUGIN(StageClass, NAME, SCHEMA)                                \
  ASTROFLOW_PLUGIN(StageClass, NAME, "1.0.0", "MIT", "test stage: scales the science plane", \
                   "plane:science", "plane:scaled,column:NUMBER", SCHEMA)
