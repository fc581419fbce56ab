// Opens one built-in plugin from the build tree as the host would: schema defaults, then the
// test's overrides, then configure() and open(). Used by the plugins' own tests.
#pragma once

#include <astroflow/options.hpp>
#include <astroflow/plugin_registry.hpp>
#include <map>
#include <memory>
#include <string>

namespace astroflow::test {

/// Loads ASTROFLOW_PLUGIN_DIR/libastroflow-<name>.so into `registry` (once) and returns an
/// opened instance named `name`. Throws what the registry or the stage throws.
std::unique_ptr<StageInstance> open_builtin_stage(
    PluginRegistry& registry, const std::string& name,
    const std::map<std::string, OptionValue>& overrides = {});

/// Runs an opened stage on one 64 x 64 frame with a science plane only (no background/rms
/// planes, no catalog) and returns the reason the stage flagged it with; "" when the frame came
/// back unflagged. For the image-level CNN stages' "needs the background planes" tests.
std::string reason_for_bare_frame(StageInstance& stage);

}  // namespace astroflow::test
