// Plugins that fail at run time rather than at load time:
//   TP_PROCESS_THROWS   process() throws for the whole batch (not per frame)
//   TP_CONFIGURE_FATAL  configure() throws FatalError, e.g. a model file that does not exist
#include "test_stage.hpp"

namespace {

class ThrowingStage : public astroflow_test::ScaleStage {
 public:
  void configure(const astroflow::Options& options) override {
#ifdef TP_CONFIGURE_FATAL
    (void)options;
    throw astroflow::FatalError("model file 'missing.onnx' not found");
#else
    ScaleStage::configure(options);
#endif
  }
#ifdef TP_PROCESS_THROWS
  void process(astroflow::Batch& batch) override {
    throw std::runtime_error("inference failed on a batch of " +
                             std::to_string(batch.frames.size()) + " frames");
  }
#endif
};

}  // namespace

ASTROFLOW_TEST_SCALE_PLUGIN(ThrowingStage, TP_NAME, astroflow_test::scale_schema())
