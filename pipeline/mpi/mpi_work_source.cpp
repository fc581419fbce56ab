#include "mpi_work_source.hpp"

// The C API only: OpenMPI's deprecated C++ bindings are not needed (and not warning-clean).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "astroflow/error.hpp"

namespace astroflow::mpi {
namespace {

enum Tag : int { kReady = 1, kRequest = 2, kGrant = 3, kResult = 4, kExit = 5 };

// OpenMPI's blocking calls spin on a core; the waits below can last seconds (rank 0 merging the
// catalogs), so they poll with a sleep instead and leave the core to the ranks still working.
constexpr auto kPollSleep = std::chrono::microseconds(500);

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING] = {};
    int n = 0;
    MPI_Error_string(rc, text, &n);
    throw FatalError(std::string("MPI: ") + what + ": " + text);
  }
}

/// Waits (polling) for a message with `tag` from `source` and receives it as bytes.
std::string receive_text(int source, int tag, int* from = nullptr) {
  MPI_Status st{};
  for (int flag = 0;;) {
    check(MPI_Iprobe(source, tag, MPI_COMM_WORLD, &flag, &st), "MPI_Iprobe");
    if (flag != 0) break;
    std::this_thread::sleep_for(kPollSleep);
  }
  int n = 0;
  check(MPI_Get_count(&st, MPI_CHAR, &n), "MPI_Get_count");
  std::string text(static_cast<std::size_t>(n), '\0');
  check(MPI_Recv(text.data(), n, MPI_CHAR, st.MPI_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
        "MPI_Recv");
  if (from != nullptr) *from = st.MPI_SOURCE;
  return text;
}

void send_text(const std::string& text, int dest, int tag) {
  check(MPI_Send(text.data(), static_cast<int>(text.size()), MPI_CHAR, dest, tag, MPI_COMM_WORLD),
        "MPI_Send");
}

// A unit travels as lines: index, relative path, path (paths hold no newline in practice;
// such an input is refused by the leader rather than garbled).
std::string encode_unit(const std::vector<InputFile>& unit) {
  std::string s;
  for (const InputFile& f : unit)
    s += std::to_string(f.index) + "\n" + f.relative + "\n" + f.path + "\n";
  return s;
}

std::vector<InputFile> decode_unit(const std::string& s) {
  std::vector<InputFile> unit;
  std::istringstream in(s);
  std::string index;
  while (std::getline(in, index)) {
    InputFile f;
    f.index = std::stoull(index);
    std::getline(in, f.relative);
    std::getline(in, f.path);
    unit.push_back(std::move(f));
  }
  return unit;
}

std::string encode_part(const ReportPart& part) {
  nlohmann::json j;
  j["failures"] = nlohmann::json::array();
  for (const FailureRecord& f : part.failures)
    j["failures"].push_back({f.path, f.hdu, f.stage, f.reason});
  j["failed_files"] = part.failed_files;
  j["stage_timings"] = nlohmann::json::array();
  for (const StageTiming& t : part.stage_timings)
    j["stage_timings"].push_back({t.stage, t.plugin, t.calls, t.wall_s});
  return j.dump();
}

void add_part(ReportPart& into, const std::string& text) {
  const nlohmann::json j = nlohmann::json::parse(text);
  for (const auto& f : j.at("failures"))
    into.failures.push_back(FailureRecord{f.at(0).get<std::string>(), f.at(1).get<std::string>(),
                                          f.at(2).get<std::string>(), f.at(3).get<std::string>()});
  for (const auto& p : j.at("failed_files")) into.failed_files.insert(p.get<std::string>());
  for (const auto& t : j.at("stage_timings")) {
    const std::string stage = t.at(0).get<std::string>();
    auto it = std::find_if(into.stage_timings.begin(), into.stage_timings.end(),
                           [&](const StageTiming& x) { return x.stage == stage; });
    if (it == into.stage_timings.end()) {
      into.stage_timings.push_back(StageTiming{stage, t.at(1).get<std::string>(), 0, 0.0});
      it = std::prev(into.stage_timings.end());
    }
    it->calls += t.at(2).get<std::size_t>();
    it->wall_s += t.at(3).get<double>();
  }
}

long env_long(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? 0 : std::strtol(v, nullptr, 10);
}

}  // namespace

bool launched_as_one_of_several_ranks() {
  return env_long("OMPI_COMM_WORLD_SIZE") > 1 || env_long("PMI_SIZE") > 1 ||
         env_long("SLURM_STEP_NUM_TASKS") > 1;
}

MpiWorkSource::MpiWorkSource() {
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    throw FatalError("MPI: the library gives no MPI_THREAD_SERIALIZED support");
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  given_.assign(static_cast<std::size_t>(size_), 0);
  remote_ = std::vector<std::atomic<unsigned long long>>(static_cast<std::size_t>(size_) *
                                                         kProgressFields);
}

MpiWorkSource::~MpiWorkSource() {
  if (!finished_) {
    // A fatal error on this rank: the others would wait for it forever.
    MPI_Abort(MPI_COMM_WORLD, static_cast<int>(ExitCode::kFatal));
  }
  if (dispatcher_.joinable()) dispatcher_.join();
  MPI_Finalize();
}

std::string MpiWorkSource::manifest_path(const std::string& run_manifest) const {
  return rank_ == 0 ? run_manifest : rank_manifest_path(run_manifest, rank_);
}

void MpiWorkSource::begin(const std::vector<InputFile>& files, const UnitLimits& limits) {
  limits_ = limits;
  if (rank_ == 0) {
    for (const InputFile& f : files) {
      if (f.path.find('\n') != std::string::npos || f.relative.find('\n') != std::string::npos)
        throw FatalError("MPI: input path with a newline cannot be dispatched: " + f.path);
      index_of_path_[f.path] = f.index;
    }
    files_ = files;
    pos_ = 0;
    // The folder is ready (stale temporaries and rank manifests removed): the others may start.
    for (int r = 1; r < size_; ++r) send_text("ready", r, kReady);
    dispatcher_ = std::thread([this] { dispatch(); });
  } else {
    (void)receive_text(0, kReady);
  }
}

std::vector<InputFile> MpiWorkSource::take(int for_rank) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Guided: units shrink as the queue empties (about two per rank remain in the last rounds),
  // so no rank is left with a full batch while the others are idle.
  const std::size_t remaining = files_.size() - pos_;
  UnitLimits l = limits_;
  l.max_files = std::clamp<std::size_t>(remaining / (2 * static_cast<std::size_t>(size_)), 1,
                                        std::max<std::size_t>(1, limits_.max_files));
  std::vector<InputFile> unit = take_unit(files_, pos_, l);
  given_[static_cast<std::size_t>(for_rank)] += unit.size();
  return unit;
}

void MpiWorkSource::dispatch() {
  int active = size_ - 1;
  while (active > 0) {
    MPI_Status st{};
    int flag = 0;
    MPI_Iprobe(MPI_ANY_SOURCE, kRequest, MPI_COMM_WORLD, &flag, &st);
    if (flag == 0) {
      std::this_thread::sleep_for(kPollSleep);
      continue;
    }
    unsigned long long progress[kProgressFields] = {};
    MPI_Recv(progress, kProgressFields, MPI_UNSIGNED_LONG_LONG, st.MPI_SOURCE, kRequest,
             MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    for (int k = 0; k < kProgressFields; ++k)
      remote_[static_cast<std::size_t>(st.MPI_SOURCE * kProgressFields + k)] = progress[k];
    const std::vector<InputFile> unit = take(st.MPI_SOURCE);
    send_text(encode_unit(unit), st.MPI_SOURCE, kGrant);
    if (unit.empty()) --active;  // that rank stops asking
  }
}

std::vector<InputFile> MpiWorkSource::next() {
  if (rank_ == 0) return take(0);
  unsigned long long progress[kProgressFields];
  for (int k = 0; k < kProgressFields; ++k) progress[k] = local_[k].load();
  check(MPI_Send(progress, kProgressFields, MPI_UNSIGNED_LONG_LONG, 0, kRequest, MPI_COMM_WORLD),
        "MPI_Send");
  return decode_unit(receive_text(0, kGrant));
}

void MpiWorkSource::end(ReportPart& part) {
  if (rank_ != 0) {
    send_text(encode_part(part), 0, kResult);
    return;
  }
  if (dispatcher_.joinable()) dispatcher_.join();
  for (int received = 1; received < size_; ++received)
    add_part(part, receive_text(MPI_ANY_SOURCE, kResult));
  // Failures in input order, as one process lists them (a stable sort keeps a file's own order).
  auto index_of = [&](const FailureRecord& f) {
    const auto it = index_of_path_.find(f.path);
    return it == index_of_path_.end() ? std::numeric_limits<std::size_t>::max() : it->second;
  };
  std::stable_sort(
      part.failures.begin(), part.failures.end(),
      [&](const FailureRecord& a, const FailureRecord& b) { return index_of(a) < index_of(b); });
}

void MpiWorkSource::set_local_progress(const ProgressSnapshot& s) {
  local_[0] = s.files_done;
  local_[1] = s.frames_done;
  local_[2] = s.sources;
  local_[3] = s.failures;
}

ProgressSnapshot MpiWorkSource::with_remote_progress(const ProgressSnapshot& own) const {
  ProgressSnapshot s = own;
  for (int r = 1; r < size_; ++r) {
    const auto at = [&](int k) {
      return static_cast<std::size_t>(remote_[static_cast<std::size_t>(r * kProgressFields + k)]);
    };
    s.files_done += at(0);
    s.frames_done += at(1);
    s.sources += at(2);
    s.failures += at(3);
  }
  return s;
}

int MpiWorkSource::share_exit_status(int status) {
  if (rank_ == 0) {
    for (int r = 1; r < size_; ++r) send_text(std::to_string(status), r, kExit);
  } else {
    status = std::stoi(receive_text(0, kExit));
  }
  finished_ = true;
  return status;
}

}  // namespace astroflow::mpi
