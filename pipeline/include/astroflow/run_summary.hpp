// RunReport: what a run did, written as summary.json in the output folder.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "astroflow/error.hpp"

namespace astroflow {

/// One per-file or per-frame failure (the run went on).
struct FailureRecord {
  std::string path;   ///< input file as found
  std::string hdu;    ///< e.g. "0", "SCI,2"; empty when the file could not be opened
  std::string stage;  ///< "reader", "writer" or the stage name
  std::string reason;
};

struct StageTiming {
  std::string stage;
  std::string plugin;
  std::size_t calls = 0;  ///< process() calls (one per batch)
  double wall_s = 0.0;    ///< wall seconds summed over calls (exceeds run time when parallel)
};

struct PluginInfo {
  std::string name;
  std::string version;
  std::string path;
};

struct RunReport {
  std::string astroflow_version;
  std::string config_file;
  std::string config_sha256;
  std::string output_dir;
  int threads = 0;
  std::size_t files = 0;         ///< input files found
  std::size_t files_failed = 0;  ///< files with at least one failure
  std::size_t frames = 0;        ///< image HDUs processed (after stitching)
  std::size_t sources = 0;       ///< catalog rows over all frames
  std::vector<FailureRecord> failures;
  std::vector<StageTiming> stage_timings;
  std::vector<PluginInfo> plugins;
  double wall_s = 0.0;
  ExitCode exit_status = ExitCode::kOk;

  /// JSON text of summary.json (stable key order, 2-space indent).
  [[nodiscard]] std::string to_json() const;
};

}  // namespace astroflow
