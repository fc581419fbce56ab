// PipelineConfig: the YAML file that configures a run, schema-checked.
//
// Every error is a ConfigError naming the file, line, column (1-based) and key path, e.g.
//   "configs/demo.yaml:12:5: stages[1].threshold: expected a number, got 'high'".
// Loading (load) checks the fixed sections; validating (resolve_stages) checks each stage
// against its plugin's schema and needs/provides chain, and that path options exist.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "astroflow/error.hpp"
#include "astroflow/options.hpp"

namespace astroflow {

class PluginRegistry;
class LoadedPlugin;

struct SourceLocation {
  std::string file;
  int line = 0;                           ///< 1-based, 0 when unknown (e.g. a --set override)
  int column = 0;                         ///< 1-based
  std::string key_path;                   ///< e.g. "stages[1].threshold"
  [[nodiscard]] std::string str() const;  ///< "file:line:col: key_path"
};

class ConfigError : public FatalError {
 public:
  ConfigError(const SourceLocation& where, const std::string& message);
  [[nodiscard]] const SourceLocation& where() const { return where_; }

 private:
  SourceLocation where_;
};

/// A stage option as written in YAML, typed later against the plugin's schema.
struct RawOption {
  std::string text;  ///< scalar text
  bool is_scalar = true;
  SourceLocation where;
};

struct InputConfig {
  std::string path;  ///< may be empty when --input is given
  std::string pattern = "*.fits*";
  bool recursive = true;
  std::string hdu = "auto";
  std::string weight_ext;
  std::string mask_ext;
  /// With mask_ext: the mask bits that leave a pixel usable (AstroDrizzle's "bits"); a pixel
  /// with any other bit set is blank (NaN) for every stage.
  std::int64_t mask_good_bits = 0;
  int cube_plane = -1;
};

struct OutputConfig {
  std::string dir;  ///< may be empty when --output is given
  std::vector<std::string> catalog = {"fits", "csv"};
  /// output.per_input_catalog: formats of the per-input catalogs (<stem>.cat.fits/.cat.csv).
  /// Unset: the same as `catalog`. A folder of cutouts needs only [fits] (what --resume and
  /// --shard rebuild the merged catalog from) or [] (no per-input file; no --resume/--shard).
  std::vector<std::string> per_input_catalog = {"fits", "csv"};
  bool per_input_catalog_set = false;  ///< given in the YAML or by --set
  std::vector<std::string> images;     ///< plane names to write per input, e.g. "segmap"
  bool quicklook = false;
  /// output.merge_sky: {radius_arcsec, keep}: cross-image duplicate flagging of the merged
  /// catalog (sky_match.hpp: N_OBS, DUPLICATE_OF). Off unless the section is present.
  bool merge_sky = false;
  double merge_sky_radius_arcsec = 0.3;
  std::string merge_sky_keep = "best_snr";  ///< best_snr | farthest_from_edge
  /// Where each `images` entry was written (same order); resolve_stages checks that some stage
  /// (or the reader) provides each plane and points here when none does.
  std::vector<SourceLocation> images_where;
};

struct RunConfig {
  int threads = 0;        ///< 0 = all cores
  int batch = 32;         ///< frames per batch for cutouts
  int max_in_flight = 8;  ///< batches in flight (memory bound)
  int tile_size = 2048;   ///< images larger than this (either axis) are tiled
  int tile_overlap = 64;  ///< pixels shared by neighbouring tiles
  std::uint64_t seed = 0;
  /// Group commit of the manifest (docs/batch.md): finished inputs' outputs are made durable
  /// together (one syncfs) and their manifest lines appended with one write + fsync, once
  /// commit_every inputs are pending or commit_interval_s has passed since the oldest pending
  /// one, and at the end. Not part of the config hash: it changes no output byte.
  int commit_every = 256;
  double commit_interval_s = 2.0;
};

struct StageConfig {
  std::string name;  ///< "name:" or the plugin name; unique within the config
  std::string plugin;
  std::map<std::string, RawOption> options;  ///< everything except plugin/name
  SourceLocation where;                      ///< the stage's mapping
  SourceLocation plugin_where;  ///< the stage's "plugin:" key (unknown-plugin errors point here)
};

struct PipelineConfig {
  std::string file;                       ///< path as given
  std::string directory;                  ///< absolute folder of the file, for relative paths
  std::vector<std::string> plugin_paths;  ///< resolved against directory
  InputConfig input;
  OutputConfig output;
  RunConfig run;
  std::vector<StageConfig> stages;

  /// Parses and checks the fixed sections. `overrides` are "key.path=value" strings from
  /// --set; "stages.<name>.<option>=v" addresses a stage by name. Throws ConfigError.
  static PipelineConfig load(const std::string& path,
                             const std::vector<std::string>& overrides = {});

  /// sha256 of the canonical (override-applied) config, for the manifest and summary.
  [[nodiscard]] std::string hash() const;
  /// Canonical YAML dump after overrides (input of hash()): fixed key order, every fixed-section
  /// default written out, stage options sorted by name with their text as written (plugin
  /// defaults are not known at load time). Comments and layout do not change it; values do,
  /// except the scheduling settings run.threads, run.max_in_flight, run.commit_every and
  /// run.commit_interval_s, which change no output byte and are left out.
  std::string canonical_text;
};

/// A stage with its plugin found and its options typed and range-checked.
struct ResolvedStage {
  const StageConfig* config = nullptr;
  const LoadedPlugin* plugin = nullptr;
  Options options;
  /// One line per plane this stage provides that an earlier stage already provided, e.g.
  /// "stage 'segment' (stages[2]) replaces the plane 'segmap' of stage 'sources' (stages[1])":
  /// legitimate (a second background stage after denoising) but worth a warning, since later
  /// stages and the written outputs see only the last provider's plane.
  std::vector<std::string> replaced_planes;
};

/// Checks every stage against the registry: unknown plugin, unknown option, wrong type,
/// out-of-range value, missing required option, a path option whose file does not exist, a
/// need that no earlier stage (or the reader) provides, an output image that no stage provides
/// as "plane:<name>". Throws ConfigError.
/// Path options given in the YAML come back absolute (resolved against config.directory);
/// a needs token "a|b" is met by either. Unset options get the schema's default.
[[nodiscard]] std::vector<ResolvedStage> resolve_stages(const PipelineConfig& config,
                                                        const PluginRegistry& registry);

/// Typing of one option against its spec; used by resolve_stages and by plugin-check.
[[nodiscard]] OptionValue parse_option(const OptionSpec& spec, const RawOption& raw);

}  // namespace astroflow
