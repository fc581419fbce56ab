// run_pipeline: streams the input files through the stages and writes every output.
//
// Graph (oneTBB flow graph):
//   input_node (file list, grouped into units by a WorkSource: work_source.hpp; under MPI, rank
//   0 hands units out) -> limiter_node (run.max_in_flight)
//   -> reader (parallel: reads pixels, cuts large images into tiles, forms batches of run.batch)
//   -> one function_node per stage (concurrency = threads, one StageInstance per slot)
//   -> finisher (parallel: stitches tiles, renumbers sources, writes the per-input outputs)
//   -> sequencer_node (input order) -> writer (serial: manifest lines, failure lines, progress)
//   -> limiter.
// Per-input outputs are written in parallel because every file is fsynced (atomic_file.hpp);
// a serial writer made those waits add up (measured: 200 cutouts, 22 files/s with a serial
// writer on 2 threads).
// A unit is either up to run.batch small files or one large file, so memory is bounded by
// max_in_flight units whatever the number of files.
//
// Failures: a file that cannot be read and a frame that a stage flags become FailureRecords,
// logged as one line each, and the run goes on (exit status 2). FatalError (a stage that fails
// to open, an unwritable output folder) stops the run and propagates.
//
// Determinism: outputs are written in input order by one thread, so the merged catalogs are
// byte-identical whatever the thread count, as long as the stages are deterministic.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "astroflow/config.hpp"
#include "astroflow/plugin_registry.hpp"
#include "astroflow/progress.hpp"
#include "astroflow/run_summary.hpp"
#include "astroflow/shard.hpp"
#include "astroflow/stage.hpp"

namespace astroflow {

class WorkSource;

struct RunOptions {
  std::string input_override;   ///< --input: a folder or one file; empty = config input.path
  std::string output_override;  ///< --output; empty = config output.dir
  int threads = -1;             ///< --threads; -1 = config run.threads; 0 = all cores
  /// Called by the writer thread after each unit (cheap; throttle in the callback).
  std::function<void(const ProgressSnapshot&)> on_progress;
  /// Receives stage log lines and per-failure lines; null = silent.
  std::function<void(LogLevel, std::string_view)> log;
  /// --resume: skip the inputs whose manifest.jsonl entry is current (manifest.hpp). Without
  /// it a run starts a fresh manifest.
  bool resume = false;
  /// --shard i/N: process only the inputs of this shard (shard.hpp); default: all.
  Shard shard;
  /// Where the graph's units come from (work_source.hpp); null = this run's own input list.
  /// A distributed source (MPI) makes only its leader write the run-level outputs.
  WorkSource* work_source = nullptr;
};

/// One input file found by the scan.
struct InputFile {
  std::string path;       ///< path to open
  std::string relative;   ///< path relative to the input root (file name for a single file)
  std::size_t index = 0;  ///< position in the sorted list
};

/// Lists the input files: `root` itself if it is a file, else every regular file below it whose
/// name matches `pattern` (fnmatch), descending into sub-folders when `recursive`, skipping
/// hidden files and folders (names starting with '.', e.g. temporary outputs) and the folder
/// `exclude_dir` (the output folder when it lies inside the input). Sorted by relative path.
/// Throws FatalError when root does not exist.
[[nodiscard]] std::vector<InputFile> list_input_files(const std::string& root,
                                                      const std::string& pattern, bool recursive,
                                                      const std::string& exclude_dir = {});

/// Output file stem for one frame: the input's relative path without its FITS extension
/// (.fits, .fit, .fts, optionally .gz/.fz), plus ".<EXTNAME><EXTVER>" (or ".HDU<n>") when the
/// file gave several frames or the frame is not the primary HDU.
[[nodiscard]] std::string output_stem(const InputFile& file, const Frame& frame,
                                      bool several_frames);

/// Runs the whole pipeline. Instances of every stage are created, configured and opened first
/// (FatalError there stops before any pixel is read), closed at the end.
/// Writes the per-input outputs, appends one manifest.jsonl line per input once its outputs are
/// in place and durable (group commit: run.commit_every, run.commit_interval_s), then
/// <output>/catalog.fits, catalog.csv (as configured, rebuilt from the per-input <stem>.cat.fits in
/// input order, so a resumed or sharded run writes the same bytes; with output.merge_sky,
/// duplicates flagged), summary.json and report.html (with a gallery of quick-looks under
/// quicklook/ when output.quicklook is set). Returns the report that summary.json holds. --resume
/// and --shard need "fits" in output.per_input_catalog (FatalError).
RunReport run_pipeline(const PipelineConfig& config, const std::vector<ResolvedStage>& stages,
                       const RunOptions& options);

/// Creates, configures and opens one instance of a resolved stage (what `run` does for every
/// thread slot, and `validate` once per stage). A FatalError raised there (an option or model the
/// plugin refuses) is rethrown as a ConfigError at the stage's place in the YAML file.
std::unique_ptr<StageInstance> open_stage(const ResolvedStage& stage, const StageContext& context);

}  // namespace astroflow
