// WorkSource: where run_pipeline's input node gets its units of inputs from.
//
// The default, ListWorkSource, walks the run's own sorted input list. Builds with
// -DASTROFLOW_WITH_MPI=ON add a dispatcher (pipeline/mpi/, used by the CLI under mpirun with
// more than one rank) in which rank 0 hands out units on request and every rank runs its own
// graph. The pipeline stays MPI-agnostic: it asks the source whether this process is the
// leader (the one that lists the inputs and writes the run-level outputs), which manifest file
// it appends to, and hands the source its part of the report at the end.
//
// Lifecycle (one run): begin() once, before the graph; next() from the graph's input node
// (serially, from any thread) until it returns an empty unit; end() once, after the graph.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "astroflow/pipeline.hpp"
#include "astroflow/run_summary.hpp"

namespace astroflow {

/// How inputs are grouped into one graph message.
struct UnitLimits {
  std::size_t max_files = 32;           ///< run.batch
  std::uintmax_t large_file_bytes = 0;  ///< a file larger than this travels alone (may be tiled)
};

/// The next unit from files[pos...]: up to max_files inputs, a large file alone. Advances pos;
/// empty when pos is at the end.
[[nodiscard]] std::vector<InputFile> take_unit(const std::vector<InputFile>& files,
                                               std::size_t& pos, const UnitLimits& limits);

/// The part of a run's report that each process of a distributed run collects on its own.
struct ReportPart {
  std::vector<FailureRecord> failures;
  std::set<std::string> failed_files;
  std::vector<StageTiming> stage_timings;
};

class WorkSource {
 public:
  virtual ~WorkSource() = default;
  /// True for the process that lists the inputs, checks --resume and writes catalog.fits/csv,
  /// summary.json and report.html. Others only process the units they are given.
  [[nodiscard]] virtual bool is_leader() const { return true; }
  /// How many processes share the run (MPI ranks); 1 for a run on its own.
  [[nodiscard]] virtual int processes() const { return 1; }
  /// The manifest log this process appends to, given the run's manifest.jsonl. Non-leaders
  /// write their own file (see fold_rank_manifests), so no two processes append to one file.
  [[nodiscard]] virtual std::string manifest_path(const std::string& run_manifest) const {
    return run_manifest;
  }
  /// Leader: `files` are the inputs to process now, in order; the list outlives the run (a
  /// source may keep a reference). Non-leaders get an empty list and may block here until the
  /// leader has prepared the output folder.
  virtual void begin(const std::vector<InputFile>& files, const UnitLimits& limits) = 0;
  /// The inputs of the next unit; empty once no work is left.
  [[nodiscard]] virtual std::vector<InputFile> next() = 0;
  /// After the graph. Non-leaders hand `part` over; the leader receives the others' parts and
  /// adds them to `part` (failures in input order). Default: nothing to exchange.
  virtual void end(ReportPart& part) { (void)part; }
};

/// The run's own list, grouped by take_unit.
class ListWorkSource final : public WorkSource {
 public:
  void begin(const std::vector<InputFile>& files, const UnitLimits& limits) override;
  [[nodiscard]] std::vector<InputFile> next() override;

 private:
  const std::vector<InputFile>* files_ = nullptr;  ///< the run's list, not copied
  std::size_t pos_ = 0;
  UnitLimits limits_;
};

/// Name of the manifest log of process `rank` (> 0) of a distributed run, next to
/// manifest.jsonl: "manifest.rank-<rank>.jsonl".
[[nodiscard]] std::string rank_manifest_path(const std::string& run_manifest, int rank);

/// Appends the complete lines of every manifest.rank-*.jsonl beside `run_manifest` to it (one
/// write and one fsync per file; a torn last line is dropped) and removes those files. With
/// keep = false the rank files are only removed (a fresh run). Returns the lines appended.
/// Throws std::runtime_error naming the file on an I/O error.
std::size_t fold_rank_manifests(const std::string& run_manifest, bool keep = true);

}  // namespace astroflow
