// The reference good plugin, built with the real ASTROFLOW_PLUGIN macro. Compiled several
// times: as "good", twice under one name (TP_NAME) to make a duplicate-name pair, and with a
// required option (TP_REQUIRED_MODEL).
#include "test_stage.hpp"

#ifndef TP_NAME
#define TP_NAME "good"
#endif

#ifdef TP_REQUIRED_MODEL
// A required path option without default, as model-based plugins declare their model.
ASTROFLOW_TEST_SCALE_PLUGIN(astroflow_test::ScaleStage, TP_NAME,
                            astroflow_test::scale_schema().add_path("model", std::nullopt,
                                                                    "ONNX model file"))
#else
ASTROFLOW_TEST_SCALE_PLUGIN(astroflow_test::ScaleStage, TP_NAME, astroflow_test::scale_schema())
#endif
