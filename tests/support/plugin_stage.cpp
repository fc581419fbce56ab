#include "plugin_stage.hpp"

#include <astroflow/frame.hpp>
#include <opencv2/core.hpp>
#include <utility>

namespace astroflow::test {

std::unique_ptr<StageInstance> open_builtin_stage(
    PluginRegistry& registry, const std::string& name,
    const std::map<std::string, OptionValue>& overrides) {
  const LoadedPlugin* plugin = registry.find(name);
  if (plugin == nullptr) {
    plugin =
        &registry.load_file(std::string(ASTROFLOW_PLUGIN_DIR) + "/libastroflow-" + name + ".so");
  }
  Options options;
  for (const auto& spec : plugin->schema().specs()) {
    if (spec.default_value) options.set(spec.name, *spec.default_value);
  }
  for (const auto& [key, value] : overrides) options.set(key, value);
  auto stage = plugin->create(name);
  stage->configure(options);
  StageContext context;
  context.stage_name = name;
  stage->open(context);
  return stage;
}

std::string reason_for_bare_frame(StageInstance& stage) {
  Batch batch;
  Frame f;
  f.path = "bare.fits";
  f.science = cv::Mat(64, 64, CV_32F, cv::Scalar(1));
  batch.frames.push_back(std::move(f));
  stage.process(batch);
  const Frame& out = batch.frames[0];
  if (!out.failed()) return {};
  return out.issues.empty() ? std::string("(flagged without a reason)") : out.issues[0].reason;
}

}  // namespace astroflow::test
