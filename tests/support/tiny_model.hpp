// Tiny seeded ONNX models and saved reference arrays for the inference tests, exported at test time
// by
//   /usr/bin/python3 models/common/make_tiny_model.py <dir> --size N --seed S
// (Debian's python3-torch). The model's saved torch outputs are the golden values.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

namespace astroflow::test {

/// Exports the tiny model into `out_dir`; its log goes to `log_file`. Returns false when the
/// export failed (e.g. python3-torch is missing), so callers can skip with the log's path.
bool make_tiny_model(const std::filesystem::path& out_dir, int size, int seed,
                     const std::filesystem::path& log_file);

/// A float32 array saved by the model scripts: raw little-endian floats in a file, with its
/// shape in a JSON entry {"file": ..., "shape": [...]} (reference.json of each model).
struct RawArray {
  std::vector<int> shape;
  std::vector<float> values;
};

/// Reads the array an entry of reference.json names, relative to `dir`. A short read is a
/// test failure (EXPECT), naming the entry.
RawArray read_raw(const std::filesystem::path& dir, const nlohmann::json& entry);

}  // namespace astroflow::test
