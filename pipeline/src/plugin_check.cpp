#include "astroflow/plugin_check.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <latch>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <variant>

#include "astroflow/plugin_registry.hpp"

namespace astroflow {
namespace {

constexpr const char* kAllChecks[] = {"load",        "schema",        "create", "configure",
                                      "empty batch", "all-NaN frame", "no WCS", "determinism"};
constexpr int kNanSide = 64;
constexpr int kNoWcsSide = 128;
constexpr int kDeterminismSide = 96;
constexpr int kDeterminismFrames = 3;
// Seeded noise around a sky level; the stated values also fill the planes a plugin needs.
constexpr double kSkyLevel = 100.0;
constexpr double kSkyRms = 5.0;

CheckResult pass(std::string name, std::string detail) {
  return CheckResult{std::move(name), true, std::move(detail), false};
}
CheckResult fail(std::string name, std::string detail) {
  return CheckResult{std::move(name), false, std::move(detail), false};
}
CheckResult skip(std::string name, std::string detail) {
  return CheckResult{std::move(name), true, std::move(detail), true};
}

// ---- option schema -------------------------------------------------------------------------

bool is_numeric(OptionType t) {
  return t == OptionType::kInt || t == OptionType::kDouble;
}

// Why a spec contradicts itself, or empty when it does not.
std::string schema_problem(const OptionSpec& spec) {
  const std::string where = "option '" + spec.name + "': ";
  if (spec.name.empty()) return "an option has an empty name";
  if (spec.doc.empty()) return where + "no doc string";
  if ((spec.min || spec.max) && !is_numeric(spec.type)) {
    return where + "min/max given for a " + std::string(to_string(spec.type)) + " option";
  }
  if (spec.min && spec.max && *spec.min > *spec.max) {
    return where + "min " + to_string(OptionValue{*spec.min}) + " > max " +
           to_string(OptionValue{*spec.max});
  }
  if (!spec.choices.empty() && spec.type != OptionType::kString) {
    return where + "choices given for a " + std::string(to_string(spec.type)) + " option";
  }
  if (!spec.default_value) return {};
  const OptionValue& v = *spec.default_value;
  const std::string shown = "default " + to_string(v);
  bool type_ok = false;
  switch (spec.type) {
    case OptionType::kBool:
      type_ok = std::holds_alternative<bool>(v);
      break;
    case OptionType::kInt:
      type_ok = std::holds_alternative<std::int64_t>(v);
      break;
    case OptionType::kDouble:  // an integer default is read as a double, as YAML "3" would be
      type_ok = std::holds_alternative<double>(v) || std::holds_alternative<std::int64_t>(v);
      break;
    case OptionType::kString:
    case OptionType::kPath:
      type_ok = std::holds_alternative<std::string>(v);
      break;
  }
  if (!type_ok) {
    return where + shown + " is not a " + std::string(to_string(spec.type));
  }
  if (is_numeric(spec.type)) {
    const double x = std::holds_alternative<double>(v)
                         ? std::get<double>(v)
                         : static_cast<double>(std::get<std::int64_t>(v));
    if (!std::isfinite(x)) return where + shown + " is not finite";
    // Written as !(x >= min) so that a NaN bound or value cannot pass silently.
    if (spec.min && !(x >= *spec.min)) {
      return where + shown + " is below its min " + to_string(OptionValue{*spec.min});
    }
    if (spec.max && !(x <= *spec.max)) {
      return where + shown + " is above its max " + to_string(OptionValue{*spec.max});
    }
  }
  if (!spec.choices.empty()) {
    const std::string& s = std::get<std::string>(v);
    if (std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end()) {
      std::string list;
      for (const std::string& c : spec.choices) list += (list.empty() ? "" : ", ") + c;
      return where + shown + " is not one of its choices (" + list + ")";
    }
  }
  return {};
}

// ---- synthetic frames ----------------------------------------------------------------------

Frame make_frame(std::string path, int side) {
  Frame f;
  f.path = std::move(path);
  f.hdu_name = "PRIMARY";
  f.science = cv::Mat(side, side, CV_32FC1, cv::Scalar(0.0));
  f.tile.full_width_pix = side;
  f.tile.full_height_pix = side;
  return f;
}

void fill_noise(cv::Mat& m, std::mt19937& rng) {
  std::normal_distribution<double> noise(kSkyLevel, kSkyRms);
  for (int y = 0; y < m.rows; ++y) {
    float* row = m.ptr<float>(y);
    for (int x = 0; x < m.cols; ++x) row[x] = static_cast<float>(noise(rng));
  }
}

void add_sources(cv::Mat& m, std::mt19937& rng, int count) {
  std::uniform_real_distribution<double> pos(8.0, m.cols - 8.0);
  constexpr double kPeak = 40.0 * kSkyRms;
  constexpr double kSigmaPix = 2.0;
  for (int s = 0; s < count; ++s) {
    const double cx = pos(rng);
    const double cy = pos(rng);
    for (int y = 0; y < m.rows; ++y) {
      float* row = m.ptr<float>(y);
      for (int x = 0; x < m.cols; ++x) {
        const double r2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
        row[x] += static_cast<float>(kPeak * std::exp(-0.5 * r2 / (kSigmaPix * kSigmaPix)));
      }
    }
  }
}

// Planes that the plugin declares as needs ("plane:background"), so that a stage meant to run
// after a background stage is not judged on missing input.
void add_needed_planes(Frame& f, const std::vector<std::string>& needs) {
  for (const std::string& need : needs) {
    if (!need.starts_with("plane:")) continue;
    const std::string plane = need.substr(6);
    if (plane == "science" || f.planes.count(plane) != 0) continue;
    double value = 0.0;
    if (plane.find("background") != std::string::npos) value = kSkyLevel;
    if (plane.find("rms") != std::string::npos) value = kSkyRms;
    f.planes[plane] = cv::Mat(f.science.size(), CV_32FC1, cv::Scalar(value));
  }
}

Batch deep_copy(const Batch& in) {
  Batch out = in;  // cv::Mat copies share pixels; clone them so threads never share a buffer
  for (Frame& f : out.frames) {
    f.science = f.science.clone();
    f.weight = f.weight.clone();
    f.mask = f.mask.clone();
    for (auto& [name, plane] : f.planes) plane = plane.clone();
  }
  return out;
}

// ---- bitwise comparison --------------------------------------------------------------------

bool mat_identical(const cv::Mat& a, const cv::Mat& b) {
  if (a.empty() && b.empty()) return true;
  if (a.type() != b.type() || a.rows != b.rows || a.cols != b.cols) return false;
  const std::size_t row_bytes = static_cast<std::size_t>(a.cols) * a.elemSize();
  for (int y = 0; y < a.rows; ++y) {
    if (std::memcmp(a.ptr(y), b.ptr(y), row_bytes) != 0) return false;
  }
  return true;
}

bool column_identical(const Column& a, const Column& b) {
  if (a.type() != b.type() || a.size() != b.size()) return false;
  return std::visit(
      [&](const auto& va) {
        using V = std::decay_t<decltype(va)>;
        const auto& vb = std::get<V>(b.values);
        if constexpr (std::is_same_v<typename V::value_type, std::string>) {
          return va == vb;
        } else {
          // Bit for bit, so that NaN equals NaN and -0.0 differs from 0.0.
          return va.empty() || std::memcmp(va.data(), vb.data(), va.size() * sizeof(va[0])) == 0;
        }
      },
      a.values);
}

// First difference between two frames, or empty when they are identical.
std::string frame_difference(const Frame& a, const Frame& b) {
  if (a.flags != b.flags) return "flags differ";
  if (a.issues.size() != b.issues.size()) return "number of issues differs";
  for (std::size_t i = 0; i < a.issues.size(); ++i) {
    if (a.issues[i].reason != b.issues[i].reason) return "issue reasons differ";
  }
  if (!mat_identical(a.science, b.science)) return "science plane differs";
  if (!mat_identical(a.weight, b.weight)) return "weight plane differs";
  if (!mat_identical(a.mask, b.mask)) return "mask plane differs";
  if (a.planes.size() != b.planes.size()) return "number of planes differs";
  for (const auto& [name, plane] : a.planes) {
    const auto it = b.planes.find(name);
    if (it == b.planes.end()) return "plane '" + name + "' only in one output";
    if (!mat_identical(plane, it->second)) return "plane '" + name + "' differs";
  }
  if (a.catalog.rows() != b.catalog.rows()) return "catalog row counts differ";
  const auto& ca = a.catalog.columns();
  const auto& cb = b.catalog.columns();
  if (ca.size() != cb.size()) return "catalog column counts differ";
  for (std::size_t i = 0; i < ca.size(); ++i) {
    if (ca[i].name != cb[i].name || ca[i].unit != cb[i].unit) {
      return "catalog column " + std::to_string(i) + " named differently";
    }
    if (!column_identical(ca[i], cb[i])) return "catalog column '" + ca[i].name + "' differs";
  }
  return {};
}

// ---- running a stage -----------------------------------------------------------------------

class Runner {
 public:
  Runner(const LoadedPlugin& plugin, Options options)
      : plugin_(plugin), options_(std::move(options)) {}

  [[nodiscard]] std::unique_ptr<StageInstance> start(int slot, int slot_count) const {
    auto stage = plugin_.create(plugin_.name());
    stage->configure(options_);
    StageContext ctx;
    ctx.stage_name = plugin_.name();
    std::error_code ec;
    ctx.config_dir = std::filesystem::current_path(ec).string();
    ctx.slot = slot;
    ctx.slot_count = slot_count;
    stage->open(ctx);
    return stage;
  }

  /// Runs one batch through a fresh instance; returns the exception message or empty.
  [[nodiscard]] std::string run(Batch& batch) const {
    try {
      auto stage = start(0, 1);
      stage->process(batch);
      stage->close();
    } catch (const std::exception& e) {
      return e.what();
    }
    return {};
  }

 private:
  const LoadedPlugin& plugin_;
  Options options_;
};

CheckResult check_load(const LoadedPlugin& p) {
  const auto& d = p.descriptor();
  for (const auto& [field, value] : {std::pair<const char*, const char*>{"version", d.version},
                                     {"license", d.license},
                                     {"summary", d.summary}}) {
    if (value[0] == '\0')
      return fail("load", std::string("descriptor field '") + field + "' is empty");
  }
  return pass("load", p.name() + " " + p.version() + " (" + p.license() + "), ABI " +
                          std::to_string(d.abi_major) + "." + std::to_string(d.abi_minor) + ", " +
                          d.toolchain);
}

CheckResult check_schema(const LoadedPlugin& p, std::vector<std::string>& required) {
  const OptionSchema& schema = p.schema();
  std::string problems;
  for (const OptionSpec& spec : schema.specs()) {
    const std::string problem = schema_problem(spec);
    if (!problem.empty()) problems += (problems.empty() ? "" : "; ") + problem;
    if (!spec.default_value) required.push_back(spec.name);
  }
  if (!problems.empty()) return fail("schema", problems);
  std::string detail = std::to_string(schema.specs().size()) + " options, required: ";
  if (required.empty()) detail += "none";
  for (std::size_t i = 0; i < required.size(); ++i) detail += (i ? ", " : "") + required[i];
  return pass("schema", detail);
}

CheckResult check_create(const LoadedPlugin& p) {
  try {
    // Two live at once, as parallel slots have them, then one more after both are gone.
    auto a = p.create(p.name());
    auto b = p.create(p.name());
    a.reset();
    b.reset();
    auto c = p.create(p.name());
  } catch (const std::exception& e) {
    return fail("create", e.what());
  }
  return pass("create", "3 instances created and destroyed");
}

CheckResult check_configure(const Runner& runner) {
  try {
    auto stage = runner.start(0, 1);
    stage->close();
  } catch (const std::exception& e) {
    return fail("configure", e.what());
  }
  return pass("configure", "configure, open and close with the defaults");
}

CheckResult check_empty_batch(const Runner& runner) {
  Batch batch;
  const std::string err = runner.run(batch);
  if (!err.empty()) return fail("empty batch", err);
  if (!batch.frames.empty()) return fail("empty batch", "frames appeared in an empty batch");
  return pass("empty batch", "returned, batch still empty");
}

CheckResult check_all_nan(const Runner& runner, const std::vector<std::string>& needs) {
  Batch batch;
  batch.frames.push_back(make_frame("plugin-check/all-nan.fits", kNanSide));
  batch.frames[0].science.setTo(std::numeric_limits<float>::quiet_NaN());
  batch.frames[0].flags |= kFrameAllBlank;
  add_needed_planes(batch.frames[0], needs);
  const std::string err = runner.run(batch);
  if (!err.empty()) {
    return fail("all-NaN frame",
                "process threw for the whole batch instead of flagging the frame: " + err);
  }
  if (batch.frames.size() != 1) return fail("all-NaN frame", "the batch lost or gained frames");
  const Frame& f = batch.frames[0];
  if (f.science.rows != kNanSide || f.science.cols != kNanSide) {
    return fail("all-NaN frame", "the science plane changed size");
  }
  if (f.failed()) {
    return pass("all-NaN frame", "flagged: " + (f.issues.empty() ? std::string("(no reason)")
                                                                 : f.issues.back().reason));
  }
  return pass("all-NaN frame", "left unflagged");
}

CheckResult check_no_wcs(const Runner& runner, const std::vector<std::string>& needs) {
  std::mt19937 rng(20240611u);
  Batch batch;
  batch.frames.push_back(make_frame("plugin-check/no-wcs.fits", kNoWcsSide));
  fill_noise(batch.frames[0].science, rng);
  add_needed_planes(batch.frames[0], needs);
  const std::string err = runner.run(batch);
  if (!err.empty()) return fail("no WCS", "process threw for the whole batch: " + err);
  if (batch.frames.size() != 1) return fail("no WCS", "the batch lost or gained frames");
  const Frame& f = batch.frames[0];
  if (f.failed()) {
    const std::string reason = f.issues.empty() ? "(no reason)" : f.issues.back().reason;
    if (std::find(needs.begin(), needs.end(), "wcs") != needs.end()) {
      return pass("no WCS", "flagged (plugin needs wcs): " + reason);
    }
    return fail("no WCS", "flagged a frame without WCS although it does not need 'wcs': " + reason);
  }
  return pass("no WCS", "processed, " + std::to_string(f.catalog.rows()) + " catalog rows, " +
                            std::to_string(f.planes.size()) + " planes");
}

CheckResult check_determinism(const Runner& runner, const std::vector<std::string>& needs) {
  std::mt19937 rng(7u);
  Batch input;
  for (int i = 0; i < kDeterminismFrames; ++i) {
    Frame f =
        make_frame("plugin-check/determinism-" + std::to_string(i) + ".fits", kDeterminismSide);
    f.input_index = static_cast<std::size_t>(i);
    fill_noise(f.science, rng);
    add_sources(f.science, rng, 3);
    add_needed_planes(f, needs);
    input.frames.push_back(std::move(f));
  }
  Batch out[2] = {deep_copy(input), deep_copy(input)};
  std::string errors[2];
  {
    std::latch ready(2);  // both instances process at the same time, as parallel slots do
    std::thread threads[2];
    for (int slot = 0; slot < 2; ++slot) {
      threads[slot] = std::thread([&, slot] {
        bool arrived = false;
        try {
          auto stage = runner.start(slot, 2);
          arrived = true;
          ready.arrive_and_wait();
          stage->process(out[slot]);
          stage->close();
        } catch (const std::exception& e) {
          errors[slot] = e.what();
          if (!arrived) ready.count_down();  // do not leave the other thread waiting
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  for (const std::string& err : errors) {
    if (!err.empty()) return fail("determinism", err);
  }
  if (out[0].frames.size() != out[1].frames.size()) {
    return fail("determinism", "the two instances returned different numbers of frames");
  }
  std::size_t rows = 0;
  for (std::size_t i = 0; i < out[0].frames.size(); ++i) {
    const std::string diff = frame_difference(out[0].frames[i], out[1].frames[i]);
    if (!diff.empty()) {
      return fail("determinism", "frame " + std::to_string(i) + ": " + diff);
    }
    rows += out[0].frames[i].catalog.rows();
  }
  return pass("determinism", "2 instances in parallel, " + std::to_string(out[0].frames.size()) +
                                 " frames and " + std::to_string(rows) + " catalog rows identical");
}

// Runs the checks in order and hands each result to `emit` as soon as it is known, so that a
// crash later on still leaves the results before it.
void run_checks(const std::string& so_path, const std::function<void(CheckResult)>& emit) {
  std::size_t done = 0;
  const auto put = [&](CheckResult r) {
    ++done;
    emit(std::move(r));
  };
  // Lists the checks not reached, so that every report has the same rows.
  const auto skip_rest = [&](const std::string& why) {
    for (std::size_t i = done; i < std::size(kAllChecks); ++i) put(skip(kAllChecks[i], why));
  };
  PluginRegistry registry;
  const LoadedPlugin* plugin = nullptr;
  try {
    plugin = &registry.load_file(so_path);
  } catch (const std::exception& e) {
    put(fail("load", e.what()));
    skip_rest("the plugin did not load");
    return;
  }
  put(check_load(*plugin));

  std::vector<std::string> required;
  try {
    put(check_schema(*plugin, required));
  } catch (const std::exception& e) {
    put(fail("schema", e.what()));
  }
  put(check_create(*plugin));

  if (!required.empty()) {
    std::string list;
    for (const std::string& r : required) list += (list.empty() ? "" : ", ") + r;
    skip_rest("required option without default: " + list);
    return;
  }

  Options defaults;
  for (const OptionSpec& spec : plugin->schema().specs()) {
    OptionValue v = *spec.default_value;
    if (spec.type == OptionType::kDouble && std::holds_alternative<std::int64_t>(v)) {
      v = static_cast<double>(std::get<std::int64_t>(v));
    }
    defaults.set(spec.name, std::move(v));
  }
  // The needs that hold with the defaults, conditions stripped ("a|b" kept whole).
  std::vector<std::string> needs;
  for (const Need& n : plugin->needs_for(defaults)) needs.push_back(n.token());
  const Runner runner(*plugin, std::move(defaults));
  CheckResult configured = check_configure(runner);
  const bool configure_ok = configured.passed;
  put(std::move(configured));
  if (!configure_ok) {
    skip_rest("configure failed");
    return;
  }
  put(check_empty_batch(runner));
  put(check_all_nan(runner, needs));
  put(check_no_wcs(runner, needs));
  put(check_determinism(runner, needs));
}

// ---- crash isolation -----------------------------------------------------------------------
// The checks run in a forked child that streams one record per result through a pipe, so a
// plugin that crashes fails the check it crashed in instead of ending the caller.

constexpr char kFieldSep = '\x1f';

std::string encode(const CheckResult& r) {
  std::string detail = r.detail;
  std::replace(detail.begin(), detail.end(), '\n', ' ');
  std::replace(detail.begin(), detail.end(), kFieldSep, ' ');
  return r.name + kFieldSep + (r.passed ? "1" : "0") + kFieldSep + (r.skipped ? "1" : "0") +
         kFieldSep + detail + "\n";
}

std::optional<CheckResult> decode(const std::string& line) {
  std::vector<std::string> f;
  std::size_t pos = 0;
  for (int i = 0; i < 3; ++i) {
    const std::size_t next = line.find(kFieldSep, pos);
    if (next == std::string::npos) return std::nullopt;
    f.push_back(line.substr(pos, next - pos));
    pos = next + 1;
  }
  return CheckResult{f[0], f[1] == "1", line.substr(pos), f[2] == "1"};
}

void write_all(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::vector<CheckResult> check_in_process(const std::string& so_path) {
  std::vector<CheckResult> results;
  run_checks(so_path, [&](CheckResult r) { results.push_back(std::move(r)); });
  return results;
}

}  // namespace

std::vector<CheckResult> check_plugin(const std::string& so_path) {
  int fds[2];
  if (::pipe(fds) != 0) return check_in_process(so_path);
  std::cout.flush();  // the child must not repeat output buffered before the fork
  std::cerr.flush();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return check_in_process(so_path);
  }
  if (pid == 0) {
    ::close(fds[0]);
    int code = 0;
    try {
      run_checks(so_path, [&](const CheckResult& r) { write_all(fds[1], encode(r)); });
    } catch (...) {
      code = 3;
    }
    ::close(fds[1]);
    ::_exit(code);  // no atexit handlers or static destructors of the parent's copy
  }
  ::close(fds[1]);
  const std::string stream = read_all(fds[0]);
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  std::vector<CheckResult> results;
  std::size_t pos = 0;
  while (pos < stream.size()) {
    const std::size_t end = stream.find('\n', pos);
    if (end == std::string::npos) break;  // a record cut short by a crash
    if (auto r = decode(stream.substr(pos, end - pos))) results.push_back(std::move(*r));
    pos = end + 1;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return results;

  const std::string why =
      WIFSIGNALED(status)
          ? "crashed with signal " + std::to_string(WTERMSIG(status)) + " (" +
                strsignal(WTERMSIG(status)) + ")"
          : "the check process exited with status " + std::to_string(WEXITSTATUS(status));
  if (results.size() < std::size(kAllChecks)) {
    results.push_back(fail(kAllChecks[results.size()], "the plugin " + why));
    for (std::size_t i = results.size(); i < std::size(kAllChecks); ++i) {
      results.push_back(skip(kAllChecks[i], "not run: the plugin crashed"));
    }
  } else {
    results.push_back(fail("unload", "after the last check the plugin " + why));
  }
  return results;
}

int print_plugin_check(const std::string& path, std::ostream& out) {
  const std::vector<CheckResult> results = check_plugin(path);
  std::size_t width = 5;
  for (const CheckResult& r : results) width = std::max(width, r.name.size());
  int passed = 0;
  int failed = 0;
  int skipped = 0;
  out << "plugin-check " << path << "\n";
  for (const CheckResult& r : results) {
    const char* verdict = r.skipped ? "SKIP" : (r.passed ? "PASS" : "FAIL");
    (r.skipped ? skipped : (r.passed ? passed : failed)) += 1;
    out << "  " << std::left << std::setw(static_cast<int>(width)) << r.name << "  " << verdict
        << "  " << r.detail << "\n";
  }
  out << results.size() << " checks: " << passed << " passed, " << failed << " failed, " << skipped
      << " skipped\n";
  return failed == 0 ? 0 : 1;
}

}  // namespace astroflow
