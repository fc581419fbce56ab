#include "astroflow/stage.hpp"

#include <exception>
#include <string>

namespace astroflow {

void StageLogger::log(LogLevel level, std::string_view msg) const {
  if (!sink_) return;
  if (prefix_.empty()) {
    sink_(level, msg);
    return;
  }
  std::string line;
  line.reserve(prefix_.size() + msg.size() + 4);
  line.append("[").append(prefix_).append("] ").append(msg);
  sink_(level, line);
}

void Stage::process(Batch& batch) {
  for (Frame& frame : batch.frames) {
    if (frame.failed()) continue;
    try {
      process_frame(frame);
    } catch (const std::exception& e) {
      frame.fail(context_.stage_name, e.what());
    } catch (...) {
      frame.fail(context_.stage_name, "unknown exception");
    }
  }
}

void Stage::stamp(Frame& frame, std::string model_sha256) const {
  frame.provenance.push_back(
      Provenance{context_.stage_name, plugin_name_, plugin_version_, std::move(model_sha256)});
}

}  // namespace astroflow
