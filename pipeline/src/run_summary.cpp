#include "astroflow/run_summary.hpp"

#include <nlohmann/json.hpp>

namespace astroflow {

std::string RunReport::to_json() const {
  // ordered_json keeps the documented key order, which makes the file easy to read and diff.
  nlohmann::ordered_json j;
  j["astroflow_version"] = astroflow_version;
  j["config_file"] = config_file;
  j["config_sha256"] = config_sha256;
  j["output_dir"] = output_dir;
  j["threads"] = threads;
  j["exit_status"] = static_cast<int>(exit_status);
  j["counts"] = {{"files", files},
                 {"files_failed", files_failed},
                 {"frames", frames},
                 {"sources", sources},
                 {"failures", failures.size()}};
  auto& f = j["failures"] = nlohmann::ordered_json::array();
  for (const FailureRecord& r : failures) {
    f.push_back({{"path", r.path}, {"hdu", r.hdu}, {"stage", r.stage}, {"reason", r.reason}});
  }
  auto& t = j["stage_timings"] = nlohmann::ordered_json::array();
  for (const StageTiming& s : stage_timings) {
    t.push_back(
        {{"stage", s.stage}, {"plugin", s.plugin}, {"calls", s.calls}, {"wall_s", s.wall_s}});
  }
  auto& p = j["plugins"] = nlohmann::ordered_json::array();
  for (const PluginInfo& pi : plugins) {
    p.push_back({{"name", pi.name}, {"version", pi.version}, {"path", pi.path}});
  }
  j["wall_s"] = wall_s;
  return j.dump(2) + "\n";
}

}  // namespace astroflow
