// Error types shared by the core library and plugins.
//
// Two kinds of failure exist (see DESIGN.md "Errors"):
//  * FatalError: a configuration, model or plugin problem found before any pixel is read.
//    The message names the file and, for YAML, the line, column and key path.
//  * FrameError: a per-file / per-frame problem (corrupt file, all-NaN image, failed model on
//    one tile). It becomes a flag plus a reason on the frame and the run goes on.
#pragma once

#include <stdexcept>
#include <string>

namespace astroflow {

/// Stops the run before data is touched. Maps to exit code 1.
class FatalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A problem with one input file, HDU or frame. Caught per frame; maps to exit code 2.
class FrameError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Exit codes of the astroflow CLI, documented in the README.
enum class ExitCode : int { kOk = 0, kFatal = 1, kCompletedWithFailures = 2 };

}  // namespace astroflow
