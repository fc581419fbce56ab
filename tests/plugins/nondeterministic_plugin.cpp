// Breaks the rule that instances of one stage give identical results for identical input: a
// counter shared by every instance leaks into the catalog, so two instances running in
// parallel produce different values. Used to test plugin-check's determinism check.
#include <atomic>

#include "test_stage.hpp"

namespace {

// Deliberately global and mutable: this is the defect under test.
std::atomic<int> g_calls{0};

class CountingStage : public astroflow_test::ScaleStage {
 protected:
  double extra(const astroflow::Frame& frame) override {
    (void)frame;
    return static_cast<double>(g_calls.fetch_add(1));
  }
};

}  // namespace

ASTROFLOW_TEST_SCALE_PLUGIN(CountingStage, "nondeterministic", astroflow_test::scale_schema())
