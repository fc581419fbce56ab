#include "plugin_stage.hpp"

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

}  // namespace astroflow::test
