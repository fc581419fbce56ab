// Tiny seeded ONNX models for the inference tests, exported at test time by
//   /usr/bin/python3 models/common/make_tiny_model.py <dir> --size N --seed S
// (Debian's python3-torch). The model's saved torch outputs are the golden values.
#pragma once

#include <filesystem>

namespace astroflow::test {

/// Exports the tiny model into `out_dir`; its log goes to `log_file`. Returns false when the
/// export failed (e.g. python3-torch is missing), so callers can skip with the log's path.
bool make_tiny_model(const std::filesystem::path& out_dir, int size, int seed,
                     const std::filesystem::path& log_file);

}  // namespace astroflow::test
