// MpiWorkSource: the work queue of `mpirun -n N astroflow run ...` (built only with
// -DASTROFLOW_WITH_MPI=ON; docs/batch.md "MPI").
//
// Rank 0 is the leader: it lists the inputs, applies --resume, and a dispatcher thread hands out
// units of inputs to the other ranks on request (smaller units towards the end, so the ranks
// finish together); rank 0 takes units from the same queue for its own graph. Every rank runs
// its own TBB graph and writes the per-input outputs into the shared output folder. Ranks > 0
// append their manifest lines to manifest.rank-<r>.jsonl; at the end they send their failures
// and stage timings to rank 0, which folds their manifests into manifest.jsonl and writes the
// merged catalog, summary.json and report.html exactly as a single process would.
//
// MPI is initialised with MPI_THREAD_SERIALIZED: rank 0's dispatcher thread is the only caller
// while the graph runs; on other ranks the graph's (serial) input node is. Waits that can be
// long (for the leader to prepare the folder, to merge at the end) poll with short sleeps, so
// waiting ranks leave the cores to the ones working.
//
// Failure: an exception that leaves the run before share_exit_status() makes the destructor
// call MPI_Abort, which stops every rank (a fatal error on one rank is fatal to the run).
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "astroflow/progress.hpp"
#include "astroflow/work_source.hpp"

namespace astroflow::mpi {

/// True when the environment says the process was started by mpirun or srun as one of several
/// ranks (OMPI_COMM_WORLD_SIZE, PMI_SIZE or SLURM_STEP_NUM_TASKS > 1). Without it the CLI does
/// not initialise MPI at all.
[[nodiscard]] bool launched_as_one_of_several_ranks();

class MpiWorkSource final : public WorkSource {
 public:
  /// MPI_Init_thread. Throws FatalError when MPI cannot give MPI_THREAD_SERIALIZED.
  MpiWorkSource();
  MpiWorkSource(const MpiWorkSource&) = delete;
  MpiWorkSource& operator=(const MpiWorkSource&) = delete;
  /// MPI_Finalize after share_exit_status(); MPI_Abort otherwise.
  ~MpiWorkSource() override;

  [[nodiscard]] int rank() const { return rank_; }
  [[nodiscard]] bool is_leader() const override { return rank_ == 0; }
  [[nodiscard]] int processes() const override { return size_; }
  [[nodiscard]] std::string manifest_path(const std::string& run_manifest) const override;
  void begin(const std::vector<InputFile>& files, const UnitLimits& limits) override;
  [[nodiscard]] std::vector<InputFile> next() override;
  void end(ReportPart& part) override;

  /// Ranks > 0: remembered and sent to the leader with the next request.
  void set_local_progress(const ProgressSnapshot& s);
  /// Leader: `own` plus what the other ranks reported so far (files_total is the leader's).
  [[nodiscard]] ProgressSnapshot with_remote_progress(const ProgressSnapshot& own) const;

  /// Leader, after end(): how many inputs each rank was given.
  [[nodiscard]] std::vector<std::size_t> inputs_per_rank() const { return given_; }

  /// Leader: sends its exit status to every rank and returns it; others wait for it (polling)
  /// and return it, so mpirun's exit status is the run's. Ends the MPI part of the run.
  int share_exit_status(int status);

 private:
  void dispatch();  ///< leader's dispatcher thread
  [[nodiscard]] std::vector<InputFile> take(int for_rank);

  int rank_ = 0;
  int size_ = 1;
  bool finished_ = false;
  // Leader: the queue, shared by the dispatcher thread and rank 0's own input node.
  std::mutex mutex_;
  std::vector<InputFile> files_;
  std::size_t pos_ = 0;
  UnitLimits limits_;
  std::map<std::string, std::size_t> index_of_path_;
  std::vector<std::size_t> given_;  ///< inputs handed to each rank
  std::thread dispatcher_;
  static constexpr int kProgressFields = 4;              ///< files, frames, sources, failures
  std::vector<std::atomic<unsigned long long>> remote_;  ///< leader: per rank x field
  std::atomic<unsigned long long> local_[kProgressFields] = {};  ///< ranks > 0
};

}  // namespace astroflow::mpi
