// json_number: a double for the evaluate_* JSON reports (private to libastroflow). JSON has no
// NaN or infinity, so a non-finite value (an empty bin, an open-ended edge) becomes null.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>

namespace astroflow {

inline nlohmann::json json_number(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

}  // namespace astroflow
