// A plugin whose option schema contradicts itself: a default outside its own range and a
// default missing from its own choices. Used to test plugin-check's schema check.
#include "test_stage.hpp"

ASTROFLOW_TEST_SCALE_PLUGIN(astroflow_test::ScaleStage, "bad_schema",
                            astroflow::OptionSchema()
                                .add_double("factor", 500.0, "multiplies the science plane", 0.0,
                                            100.0)
                                .add_string("mode", "median", "catalog statistic", {"sum", "mean"}))
