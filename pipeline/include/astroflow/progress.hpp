// Progress reporting for long runs: a one-line bar on a terminal, a plain log line otherwise.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <mutex>
#include <string>

namespace astroflow {

struct ProgressSnapshot {
  std::size_t files_done = 0;
  std::size_t files_total = 0;
  std::size_t frames_done = 0;
  std::size_t sources = 0;
  std::size_t failures = 0;
  double elapsed_s = 0.0;
};

/// Throttles and prints snapshots. On a TTY: a bar redrawn in place (at most 4 times a second);
/// otherwise one line every `interval_s`. finish() prints the final state once.
class ProgressReporter {
 public:
  ProgressReporter(std::FILE* stream, bool is_tty, double interval_s);
  void update(const ProgressSnapshot& s);
  void finish(const ProgressSnapshot& s);

  /// The text of one report line, e.g. "12/40 files | 3.1 files/s | 250 sources/s | ETA 9 s |
  /// 1 failed"; exposed for tests.
  [[nodiscard]] static std::string format(const ProgressSnapshot& s);

 private:
  std::FILE* stream_;
  bool tty_;
  double interval_s_;
  double last_print_s_ = -1e300;
  bool printed_bar_ = false;
  std::mutex mutex_;
};

}  // namespace astroflow
