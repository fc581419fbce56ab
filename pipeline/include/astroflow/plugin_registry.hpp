// PluginRegistry: finds, loads and checks plugins; owned by the pipeline (no global registry).
//
// Loading is two-phase (open and check, then create): dlopen(RTLD_NOW | RTLD_LOCAL), look up
// ASTROFLOW_ENTRY_SYMBOL, then check ABI major (must equal), ABI minor (must not be newer),
// toolchain tag (must equal) and name (must not duplicate an already loaded plugin). A refusal
// throws PluginLoadError whose message names the file and the field, e.g.
//   "libfoo.so: ABI major 2 differs from the host's 1 (plugin astroflow ABI 2.0, host 1.0)".
//
// Lifetime: a StageInstance runs code of its plugin's library, so every StageInstance must be
// destroyed before the PluginRegistry (which unloads the libraries) is.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "astroflow/error.hpp"
#include "astroflow/options.hpp"
#include "astroflow/plugin.hpp"
#include "astroflow/stage.hpp"

namespace astroflow {

class PluginLoadError : public FatalError {
 public:
  using FatalError::FatalError;
};

/// One comma-separated token of a plugin's `needs`. "a|b" lists alternatives (either will do).
/// Since ABI 1.1 a token may end in a condition on the stage's options: "TOKEN?OPTION" is
/// needed only when the bool OPTION is true, "TOKEN?OPTION=VALUE" only when OPTION has that
/// value (strings unquoted, numbers as to_string prints them), e.g. classify's
/// "plane:segmap?mask_neighbours" and "column:X_IMAGE?mode=sources".
struct Need {
  std::string text;                       ///< as declared, condition included
  std::vector<std::string> alternatives;  ///< at least one
  std::string option;                     ///< empty: always needed
  std::optional<std::string> value;       ///< unset (with option set): a bool option is true

  /// Whether the need holds for a stage with these (resolved) options; an option the stage
  /// lacks makes it not apply.
  [[nodiscard]] bool applies(const Options& options) const;
  /// The need without its condition, alternatives joined: "column:X_IMAGE|column:XWIN_IMAGE".
  [[nodiscard]] std::string token() const;
  /// The condition in words for messages, e.g. "mask_neighbours is true"; empty if none.
  [[nodiscard]] std::string condition_text() const;
};

/// Parses a needs string. Throws std::invalid_argument on an empty alternative or condition.
[[nodiscard]] std::vector<Need> parse_needs(std::string_view text);

/// Checks each need's condition against the plugin's schema: the option exists, a bare
/// "?OPTION" names a bool, and "=VALUE" is one of a string option's choices. Returns the first
/// problem in words, or an empty string.
[[nodiscard]] std::string check_needs(const std::vector<Need>& needs, const OptionSchema& schema);

/// One live stage instance of a loaded plugin. Calls are forwarded through the descriptor's
/// noexcept trampolines; a failure there is rethrown here as FatalError (configure/open/close)
/// or FrameError (process), with the stage and plugin file named.
class StageInstance {
 public:
  StageInstance(const AstroflowPluginDescriptor* d, void* instance, std::string stage_name,
                std::string plugin_path);
  StageInstance(const StageInstance&) = delete;
  StageInstance& operator=(const StageInstance&) = delete;
  ~StageInstance();

  void configure(const Options& options);
  void open(const StageContext& context);
  void process(Batch& batch);
  void close();
  [[nodiscard]] const std::string& stage_name() const { return stage_name_; }

 private:
  const AstroflowPluginDescriptor* d_;
  void* instance_;
  std::string stage_name_;
  std::string plugin_path_;
  bool closed_ = false;
  bool opened_ = false;  ///< the destructor closes an opened instance that was not closed
};

class LoadedPlugin {
 public:
  LoadedPlugin(const LoadedPlugin&) = delete;
  LoadedPlugin& operator=(const LoadedPlugin&) = delete;
  ~LoadedPlugin();

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string name() const { return d_->name; }
  [[nodiscard]] std::string version() const { return d_->version; }
  [[nodiscard]] std::string license() const { return d_->license; }
  [[nodiscard]] std::string summary() const { return d_->summary; }
  [[nodiscard]] std::uint32_t abi_major() const { return d_->abi_major; }
  [[nodiscard]] std::uint32_t abi_minor() const { return d_->abi_minor; }
  /// The needs tokens as declared, conditions included ("plane:segmap?mask_neighbours").
  [[nodiscard]] std::vector<std::string> needs() const;
  /// The same, parsed (conditions and alternatives apart).
  [[nodiscard]] std::vector<Need> need_list() const;
  /// The needs that hold for a stage with these options, conditions stripped: what an earlier
  /// stage or the reader must provide ("a|b" kept as one token).
  [[nodiscard]] std::vector<Need> needs_for(const Options& options) const;
  [[nodiscard]] std::vector<std::string> provides() const;
  [[nodiscard]] const OptionSchema& schema() const { return *d_->schema(); }
  [[nodiscard]] std::unique_ptr<StageInstance> create(const std::string& stage_name) const;
  [[nodiscard]] const AstroflowPluginDescriptor& descriptor() const { return *d_; }

 private:
  friend class PluginRegistry;
  LoadedPlugin(std::string path, void* handle, const AstroflowPluginDescriptor* d);
  std::string path_;
  void* handle_;
  const AstroflowPluginDescriptor* d_;
};

class PluginRegistry {
 public:
  PluginRegistry() = default;
  /// A host that claims another ABI version; lets tests check the minor-version rules against
  /// plugins built for older and newer minors than the host.
  PluginRegistry(std::uint32_t host_abi_major, std::uint32_t host_abi_minor)
      : host_abi_major_(host_abi_major), host_abi_minor_(host_abi_minor) {}
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;

  /// Loads one plugin file. Throws PluginLoadError on any refusal (see file comment). Loading
  /// a file that is already loaded (same canonical path) returns the plugin loaded before.
  const LoadedPlugin& load_file(const std::string& path);

  /// Loads every lib*.so in each directory, in order. Files that are refused are recorded in
  /// refusals() and skipped (a duplicate name found later in the path is refused, so earlier
  /// directories win). Missing directories are skipped.
  void scan(const std::vector<std::string>& directories);

  [[nodiscard]] const LoadedPlugin* find(const std::string& name) const;
  [[nodiscard]] std::vector<const LoadedPlugin*> plugins() const;
  [[nodiscard]] const std::vector<std::string>& refusals() const { return refusals_; }
  [[nodiscard]] std::uint32_t host_abi_major() const { return host_abi_major_; }
  [[nodiscard]] std::uint32_t host_abi_minor() const { return host_abi_minor_; }

  /// The search path: config plugin_paths (already resolved), then the entries of
  /// ASTROFLOW_PLUGIN_PATH (colon-separated), then the install dir
  /// (<exe>/../lib/astroflow/plugins).
  [[nodiscard]] static std::vector<std::string> search_path(
      const std::vector<std::string>& config_paths);

 private:
  std::vector<std::unique_ptr<LoadedPlugin>> plugins_;
  std::vector<std::string> refusals_;
  std::uint32_t host_abi_major_ = ASTROFLOW_ABI_MAJOR;
  std::uint32_t host_abi_minor_ = ASTROFLOW_ABI_MINOR;
};

}  // namespace astroflow
