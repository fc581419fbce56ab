// plugin-check: a conformance suite run against one plugin file, behind
// `astroflow plugin-check PATH.so`.
//
// The checks, in order (a later check is skipped when the plugin could not get that far):
//   load          the host's loader accepts it (ABI, toolchain, name) and version, license and
//                 summary are non-empty
//   schema        every default has its option's type, lies inside its own min/max and its own
//                 choices; the required options (no default) are listed
//   create        instances can be created and destroyed
//   configure     configure() + open() + close() with the defaults; skipped, with a note, when
//                 an option is required and has no default (e.g. a model path)
//   empty batch   process() of a batch without frames
//   all-NaN frame a 64x64 frame of NaN pixels: process() returns, the frame flagged or left
//   no WCS        a 128x128 frame of seeded noise without header or WCS: process() returns and
//                 does not flag it, unless the plugin declares the need "wcs"
//   determinism   two instances on two threads at once, same input: identical frames (flags,
//                 catalog columns and values, planes bit for bit)
//
// Isolation: the checks run in a forked child process, so a plugin that crashes (e.g. SIGSEGV)
// fails the check it crashed in, the later checks are skipped, and the caller goes on. A crash
// after the last check (e.g. in a destructor at unload) adds a failed "unload" row. Call it
// while the process has a single thread (as the CLI does), since only the calling thread is
// forked. Where fork() fails, the checks run in this process.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace astroflow {

struct CheckResult {
  std::string name;
  bool passed = false;
  std::string detail;    ///< why it failed, or what was seen when it passed
  bool skipped = false;  ///< not run (passed is true); detail says why
};

/// Runs every check on the plugin file. Never throws for a problem of the plugin: a refusal or
/// an exception becomes a failed check with the message as its detail.
[[nodiscard]] std::vector<CheckResult> check_plugin(const std::string& so_path);

/// Runs check_plugin() and prints a PASS/FAIL/SKIP table to `out`. Returns the exit code of
/// `astroflow plugin-check`: 0 when no check failed, 1 otherwise.
int print_plugin_check(const std::string& path, std::ostream& out);

}  // namespace astroflow
