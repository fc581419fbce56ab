// The astroflow command line: run, merge, validate, plugins, simulate, plugin-check, evaluate.
// Exit codes (README "Exit codes"): 0 all done, 1 fatal error before processing, 2 completed
// with per-file failures.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "astroflow/catalog_merge.hpp"
#include "astroflow/config.hpp"
#include "astroflow/error.hpp"
#include "astroflow/huge_pages.hpp"
#include "astroflow/pipeline.hpp"
#include "astroflow/plugin_check.hpp"
#include "astroflow/plugin_registry.hpp"
#include "cli_commands.hpp"
#include "evaluate_command.hpp"
#include "new_plugin_command.hpp"
#if ASTROFLOW_WITH_MPI
#include "mpi_work_source.hpp"
#endif

#ifndef ASTROFLOW_VERSION
#define ASTROFLOW_VERSION "0.0.0"
#endif

namespace astroflow::cli {
namespace {

constexpr const char* kExitCodes =
    "Exit codes:\n"
    "  0  every input processed\n"
    "  1  fatal error before processing (bad config, missing model or plugin, bad option)\n"
    "  2  completed, but some files or frames failed (listed in summary.json)\n";

std::shared_ptr<spdlog::logger> make_logger(const std::string& level, bool quiet) {
  auto logger = std::make_shared<spdlog::logger>("astroflow",
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("astroflow: %l: %v");
  spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (quiet) lvl = spdlog::level::err;
  logger->set_level(lvl);
  return logger;
}

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

struct RunArgs {
  std::string config;
  std::string input;
  std::string output;
  std::vector<std::string> sets;
  int threads = -1;
  std::string log_level = "info";
  bool quiet = false;
  double progress_interval_s = 10.0;
  bool resume = false;
  std::string shard;
};

struct MergeArgs {
  std::vector<std::string> dirs;
  std::string output;
  std::string config;
  std::vector<std::string> sets;
};

int cmd_run(const RunArgs& a) {
  int rank = 0;
#if ASTROFLOW_WITH_MPI
  // Under mpirun/srun with several ranks, rank 0 hands out the inputs (docs/batch.md "MPI").
  std::unique_ptr<mpi::MpiWorkSource> mpi_source;
  if (mpi::launched_as_one_of_several_ranks()) {
    mpi_source = std::make_unique<mpi::MpiWorkSource>();
    rank = mpi_source->rank();
  }
#endif
  auto logger = make_logger(a.log_level, a.quiet);
  if (rank > 0) logger->set_pattern("astroflow[rank " + std::to_string(rank) + "]: %l: %v");
  const PipelineConfig config = PipelineConfig::load(a.config, a.sets);
  PluginRegistry registry;
  registry.scan(PluginRegistry::search_path(config.plugin_paths));
  for (const std::string& r : registry.refusals()) logger->debug("plugin refused: {}", r);
  const std::vector<ResolvedStage> stages = resolve_stages(config, registry);
  for (const ResolvedStage& s : stages) {
    for (const std::string& w : s.replaced_planes) logger->warn("{}: {}", config.file, w);
  }

  ProgressReporter progress(stderr, isatty(fileno(stderr)) != 0, a.progress_interval_s);
  RunOptions options;
  options.input_override = a.input;
  options.output_override = a.output;
  options.threads = a.threads;
  options.resume = a.resume;
  if (!a.shard.empty()) options.shard = Shard::parse(a.shard);
  options.log = [logger](LogLevel level, std::string_view msg) {
    logger->log(to_spdlog(level), "{}", msg);
  };
  if (!a.quiet)
    options.on_progress = [&progress](const ProgressSnapshot& s) { progress.update(s); };
#if ASTROFLOW_WITH_MPI
  if (mpi::MpiWorkSource* src = mpi_source.get(); src != nullptr) {
    options.work_source = src;
    if (rank > 0)  // only rank 0 prints progress, for all ranks
      options.on_progress = [src](const ProgressSnapshot& s) { src->set_local_progress(s); };
    else if (!a.quiet)
      options.on_progress = [&progress, src](const ProgressSnapshot& s) {
        progress.update(src->with_remote_progress(s));
      };
  }
#endif
  ProgressSnapshot last;
  const RunReport report = run_pipeline(config, stages, options);
  int status = static_cast<int>(report.exit_status);
#if ASTROFLOW_WITH_MPI
  if (mpi_source) {
    status = mpi_source->share_exit_status(status);
    if (rank > 0) return status;
    std::string given;
    for (const std::size_t n : mpi_source->inputs_per_rank())
      given += (given.empty() ? "" : ", ") + std::to_string(n);
    logger->info("MPI: {} ranks; inputs given to rank 0..{}: {}", mpi_source->processes(),
                 mpi_source->processes() - 1, given);
  }
#endif
  if (!a.quiet) {
    last.files_done = report.files;
    last.files_total = report.files;
    last.frames_done = report.frames;
    last.sources = report.sources;
    last.failures = report.failures.size();
    last.elapsed_s = report.wall_s;
    progress.finish(last);
  }
  logger->info("{} files, {} frames, {} sources, {} failures ({} files) in {:.2f} s on {} threads",
               report.files, report.frames, report.sources, report.failures.size(),
               report.files_failed, report.wall_s, report.threads);
  logger->info("outputs in {} (catalog, summary.json, manifest.jsonl, report.html)",
               report.output_dir);
  return status;
}

int cmd_merge(const MergeArgs& a) {
  auto logger = make_logger("info", false);
  MergeOptions options;
  options.shard_dirs = a.dirs;
  options.output_dir = a.output;
  if (!a.config.empty()) {
    // The shards' config: catalog formats and output.merge_sky as a single run would apply them.
    const PipelineConfig config = PipelineConfig::load(a.config, a.sets);
    options.formats = config.output.catalog;
    if (config.output.merge_sky) {
      SkyMatchOptions sky;
      sky.radius_arcsec = config.output.merge_sky_radius_arcsec;
      sky.keep = parse_keep_rule(config.output.merge_sky_keep);
      options.sky_match = sky;
    }
  }
  const RunReport report = merge_shard_outputs(options);
  logger->info("merged {} folder(s): {} files, {} frames, {} sources, {} failures into {}",
               a.dirs.size(), report.files, report.frames, report.sources, report.failures.size(),
               report.output_dir);
  return static_cast<int>(report.exit_status);
}

int cmd_validate(const std::string& path, const std::vector<std::string>& sets) {
  const PipelineConfig config = PipelineConfig::load(path, sets);
  PluginRegistry registry;
  registry.scan(PluginRegistry::search_path(config.plugin_paths));
  const std::vector<ResolvedStage> stages = resolve_stages(config, registry);
  // Open one instance of each stage, as `run` would before reading any pixel: models load and
  // their cards are checked against the options, so a cluster job does not fail at its start.
  for (const ResolvedStage& s : stages) {
    StageContext ctx;
    ctx.stage_name = s.config->name;
    ctx.config_dir = config.directory;
    ctx.seed = config.run.seed;
    (void)open_stage(s, ctx);
  }
  std::cout << "OK " << config.file << " (config sha256 " << config.hash() << ")\n";
  for (const ResolvedStage& s : stages) {
    for (const std::string& w : s.replaced_planes) std::cout << "warning: " << w << "\n";
  }
  std::cout << stages.size() << " stage(s):\n";
  int i = 0;
  for (const ResolvedStage& s : stages) {
    std::cout << "  " << ++i << ". " << s.config->name << ": plugin " << s.plugin->name() << " "
              << s.plugin->version() << " (" << s.plugin->path() << ")\n";
    for (const auto& [k, v] : s.options.values())
      std::cout << "       " << k << " = " << to_string(v) << "\n";
  }
  return 0;
}

std::string range_text(const OptionSpec& s) {
  if (!s.choices.empty()) return join(s.choices, "|");
  if (!s.min && !s.max) return "";
  auto num = [](const std::optional<double>& v, const char* inf) {
    return v ? fmt::format("{}", *v) : std::string(inf);
  };
  return "[" + num(s.min, "-inf") + ", " + num(s.max, "inf") + "]";
}

int cmd_plugins(bool verbose, const std::vector<std::string>& extra_paths) {
  PluginRegistry registry;
  const std::vector<std::string> path = PluginRegistry::search_path(extra_paths);
  registry.scan(path);
  const auto plugins = registry.plugins();
  if (plugins.empty()) std::cout << "no plugins found in: " << join(path, ":") << "\n";
  for (const LoadedPlugin* p : plugins) {
    std::cout << fmt::format("{:<12} {:<8} {:<12} {}\n    {}\n", p->name(), p->version(),
                             p->license(), p->path(), p->summary());
    if (!verbose) continue;
    std::vector<std::string> needs;  // "column:X_IMAGE (when mode=sources)"
    for (const Need& n : p->need_list()) {
      needs.push_back(n.token() + (n.option.empty() ? std::string()
                                                    : " (when " + n.option +
                                                          (n.value ? "=" + *n.value : "") + ")"));
    }
    std::cout << "    needs:    " << join(needs, ", ") << "\n";
    std::cout << "    provides: " << join(p->provides(), ", ") << "\n";
    std::cout << fmt::format("    {:<20} {:<7} {:<14} {:<18} {}\n", "option", "type", "default",
                             "range/choices", "doc");
    for (const OptionSpec& s : p->schema().specs()) {
      const std::string def = s.default_value ? to_string(*s.default_value) : "(required)";
      std::cout << fmt::format("    {:<20} {:<7} {:<14} {:<18} {}\n", s.name, to_string(s.type),
                               def, range_text(s), s.doc);
    }
  }
  for (const std::string& r : registry.refusals()) std::cout << "refused: " << r << "\n";
  return 0;
}

}  // namespace

int main_impl(int argc, char** argv) {
  CLI::App app{"astroflow " ASTROFLOW_VERSION
               ": stream FITS images through a YAML-configured pipeline of plugins"};
  app.footer(kExitCodes);
  app.require_subcommand(1);
  app.set_version_flag("--version", ASTROFLOW_VERSION);

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "run a pipeline over a folder or file of FITS images");
  run_cmd->add_option("config", run.config, "pipeline YAML file")->required();
  run_cmd->add_option("--input", run.input, "folder (searched recursively) or one FITS file");
  run_cmd->add_option("--output", run.output, "output folder (created if missing)");
  run_cmd
      ->add_option("--set", run.sets,
                   "override one config value, e.g. run.batch=16 or "
                   "stages.sources.threshold=2")
      ->take_all();
  run_cmd->add_option("--threads", run.threads, "worker threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--log-level", run.log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  run_cmd->add_flag("--quiet", run.quiet, "errors only, no progress");
  run_cmd
      ->add_option("--progress-interval", run.progress_interval_s,
                   "seconds between progress lines when stderr is not a terminal")
      ->check(CLI::PositiveNumber);
  run_cmd->add_flag("--resume", run.resume,
                    "skip inputs already done under the same config and models "
                    "(output/manifest.jsonl)");
  run_cmd->add_option("--shard", run.shard,
                      "process only shard i of N (0-based), stable by path hash, e.g. "
                      "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT");
  run_cmd->footer(kExitCodes);

  MergeArgs merge;
  auto* merge_cmd = app.add_subcommand(
      "merge", "combine the output folders of shard runs into one catalog and summary");
  merge_cmd->add_option("dirs", merge.dirs, "output folders of the shard runs")->required();
  merge_cmd->add_option("--output", merge.output, "folder for the merged outputs")->required();
  merge_cmd->add_option("--config", merge.config,
                        "the shards' config: its output.catalog formats and output.merge_sky "
                        "apply (default: fits and csv, no sky merging)");
  merge_cmd->add_option("--set", merge.sets, "override one config value")->take_all();
  merge_cmd->footer(kExitCodes);

  std::string validate_config;
  std::vector<std::string> validate_sets;
  auto* validate_cmd = app.add_subcommand(
      "validate", "check a config, its plugins and their models without reading pixels");
  validate_cmd->add_option("config", validate_config, "pipeline YAML file")->required();
  validate_cmd->add_option("--set", validate_sets, "override one config value")->take_all();

  bool verbose = false;
  std::vector<std::string> plugin_paths;
  auto* plugins_cmd = app.add_subcommand("plugins", "list the plugins found on the search path");
  plugins_cmd->add_flag("--verbose,-v", verbose, "also needs/provides and the option schema");
  plugins_cmd->add_option("--plugin-path", plugin_paths, "extra folders searched first");

  std::string check_path;
  auto* check_cmd =
      app.add_subcommand("plugin-check", "run the conformance checks on one plugin file");
  check_cmd->add_option("path", check_path, "plugin shared library (.so)")->required();

  SimulateArgs sim;
  auto* sim_cmd = add_simulate_command(app, sim);

  NewPluginArgs new_plugin;
  auto* new_plugin_cmd = add_new_plugin_command(app, new_plugin);

  EvaluateArgs eval;
  auto* eval_cmd = add_evaluate_command(app, eval);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "astroflow: error: %s\n", e.what());
    return static_cast<int>(ExitCode::kFatal);
  }

  try {
    if (run_cmd->parsed()) return cmd_run(run);
    if (merge_cmd->parsed()) return cmd_merge(merge);
    if (validate_cmd->parsed()) return cmd_validate(validate_config, validate_sets);
    if (plugins_cmd->parsed()) return cmd_plugins(verbose, plugin_paths);
    if (check_cmd->parsed()) return print_plugin_check(check_path, std::cout);
    if (sim_cmd->parsed()) return run_simulate(sim);
    if (new_plugin_cmd->parsed()) return run_new_plugin(new_plugin);
    if (eval_cmd->parsed()) return run_evaluate(eval);
  } catch (const std::exception& e) {
    // ConfigError's message already starts with file:line:col: key.path.
    std::fprintf(stderr, "astroflow: error: %s\n", e.what());
    return static_cast<int>(ExitCode::kFatal);
  }
  return static_cast<int>(ExitCode::kFatal);
}

}  // namespace astroflow::cli

int main(int argc, char** argv) {
  // Large image planes on transparent huge pages (astroflow/huge_pages.hpp): on the 2-core VM a
  // 4096^2 background -> detect run spent a third of its time faulting in 4 KiB pages.
  const char* huge = std::getenv("ASTROFLOW_HUGE_PAGES");
  if (huge == nullptr || std::string_view(huge) != "0") astroflow::use_huge_page_allocator();
  return astroflow::cli::main_impl(argc, argv);
}
