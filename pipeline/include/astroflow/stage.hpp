// Stage: the base class of every pipeline stage, built-in or custom.
//
// Lifecycle (driven by the host):  configure(options) -> open(context) -> process(batch)* ->
// close(). configure() receives options already validated against the plugin's schema.
//
// Thread contract: an instance is never called from two threads at once. A stage that the
// config runs in parallel gets one instance per concurrent slot, so a stage may keep
// per-instance scratch state (e.g. one cv::dnn::Net) without locks. Instances of one stage must
// give identical results for identical input.
//
// Failures: throw FrameError (or any std::exception) from process_frame() to flag one frame;
// the default process() catches it, marks that frame failed and goes on with the batch.
// Throw FatalError from configure()/open() for a problem that must stop the run.
// Exceptions never cross the plugin boundary: the entry macro wraps every call.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "astroflow/error.hpp"
#include "astroflow/frame.hpp"
#include "astroflow/options.hpp"

namespace astroflow {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };

/// Host-provided logger; every line is prefixed with the stage's name.
class StageLogger {
 public:
  using Sink = std::function<void(LogLevel, std::string_view)>;
  StageLogger() = default;
  StageLogger(std::string prefix, Sink sink) : prefix_(std::move(prefix)), sink_(std::move(sink)) {}
  void log(LogLevel level, std::string_view msg) const;
  void debug(std::string_view msg) const { log(LogLevel::kDebug, msg); }
  void info(std::string_view msg) const { log(LogLevel::kInfo, msg); }
  void warn(std::string_view msg) const { log(LogLevel::kWarn, msg); }
  void error(std::string_view msg) const { log(LogLevel::kError, msg); }

 private:
  std::string prefix_;
  Sink sink_;
};

/// What the host tells a stage when it opens.
struct StageContext {
  std::string stage_name;   ///< name in the config (defaults to the plugin name)
  std::string config_dir;   ///< directory of the YAML file; relative paths resolve here
  int slot = 0;             ///< which concurrent slot this instance serves
  int slot_count = 1;
  std::uint64_t seed = 0;   ///< run seed, for stages that need randomness
  StageLogger logger;
};

class Stage {
 public:
  virtual ~Stage() = default;
  virtual void configure(const Options& options) { (void)options; }
  virtual void open(const StageContext& context) { context_ = context; }
  /// Default: process_frame() on every frame not already failed; an exception flags that frame.
  virtual void process(Batch& batch);
  virtual void close() {}

 protected:
  virtual void process_frame(Frame& frame) { (void)frame; }
  [[nodiscard]] const StageContext& context() const { return context_; }
  [[nodiscard]] const StageLogger& log() const { return context_.logger; }
  /// Records this stage on the frame's provenance.
  void stamp(Frame& frame, std::string model_sha256 = {}) const;

  StageContext context_;
  std::string plugin_name_;
  std::string plugin_version_;
  friend struct StageAccess;
};

/// Host-side helper to set the identity fields (used by the plugin entry macro).
struct StageAccess {
  static void set_identity(Stage& s, std::string plugin, std::string version) {
    s.plugin_name_ = std::move(plugin);
    s.plugin_version_ = std::move(version);
  }
};

}  // namespace astroflow
