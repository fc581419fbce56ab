#include "astroflow/pipeline.hpp"

#include <oneapi/tbb/concurrent_queue.h>
#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <opencv2/core.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "astroflow/atomic_file.hpp"
#include "astroflow/catalog_merge.hpp"
#include "astroflow/fits_io.hpp"
#include "astroflow/manifest.hpp"
#include "astroflow/plugin_registry.hpp"
#include "astroflow/quicklook.hpp"
#include "astroflow/run_report.hpp"
#include "astroflow/sky_match.hpp"
#include "astroflow/stitcher.hpp"
#include "astroflow/tiler.hpp"
#include "astroflow/work_source.hpp"

#ifndef ASTROFLOW_VERSION
#define ASTROFLOW_VERSION "0.0.0"
#endif

namespace astroflow {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

/// Quick-looks are drawn for the frames of the first inputs (by position in the whole sorted
/// list, so shards and resumed runs pick the same ones): a gallery, not one PNG per input of a
/// 10,000-file survey.
constexpr std::size_t kQuicklookFiles = 24;

/// Per-input outputs up to this size are built in memory, written with one write(2) and hashed
/// without reading them back; larger images go through the on-disk FITS writer.
constexpr std::size_t kInMemoryOutputBytes = std::size_t{8} << 20;

/// What the finisher wrote for one frame, for the manifest.
struct FrameWritten {
  std::vector<ManifestOutput> outputs;  ///< relative to the output folder, with sha256
  std::string catalog;          ///< FITS catalog with the frame's rows, relative; empty if none
  std::size_t catalog_row = 0;  ///< first row of the frame in `catalog` (a part catalog)
  std::size_t sources = 0;
  int width_pix = 0;
  int height_pix = 0;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// A large image waiting for its tiles.
struct TiledParent {
  Frame shell;  ///< identity, header and WCS; no pixels
  std::unique_ptr<TileGrid> grid;
};

/// What one graph message carries: up to run.batch small files, or one large file.
struct Unit {
  std::size_t sequence = 0;
  std::vector<InputFile> files;
  std::map<std::size_t, std::size_t> frames_per_file;  ///< input index -> frames read
  std::vector<Batch> batches;
  std::vector<TiledParent> parents;
  std::vector<FailureRecord> read_failures;
  std::vector<Frame> results;          ///< after stitching: every frame, in input order
  std::vector<FrameWritten> written;   ///< parallel to results
  std::vector<ManifestEntry> entries;  ///< one per file, appended by the writer
};
using UnitPtr = std::shared_ptr<Unit>;

/// The instances of one stage, one per concurrent slot. The node's concurrency equals the pool
/// size, so a pop always finds a free instance; the retry loop only guards that invariant.
class InstancePool {
 public:
  void add(std::unique_ptr<StageInstance> inst) {
    free_.push(inst.get());
    owned_.push_back(std::move(inst));
  }
  StageInstance* acquire() {
    StageInstance* p = nullptr;
    while (!free_.try_pop(p)) std::this_thread::yield();
    return p;
  }
  void release(StageInstance* p) { free_.push(p); }
  void close_all() {
    for (auto& inst : owned_) inst->close();
  }

 private:
  tbb::concurrent_queue<StageInstance*> free_;
  std::vector<std::unique_ptr<StageInstance>> owned_;
};

struct StageRuntime {
  std::string name;
  std::string plugin;
  InstancePool pool;
  std::atomic<std::int64_t> wall_ns{0};
  std::atomic<std::size_t> calls{0};
};

std::string hdu_text(const Frame& f) {
  if (!f.hdu_name.empty() && f.hdu_name != "PRIMARY") {
    return f.hdu_version > 0 ? f.hdu_name + "," + std::to_string(f.hdu_version) : f.hdu_name;
  }
  return std::to_string(f.hdu_index);
}

bool all_blank(const cv::Mat& science) {
  if (science.empty()) return true;
  cv::Mat finite;
  cv::Mat diff = science - science;  // 0 for finite values, NaN for NaN and +-inf
  cv::compare(diff, diff, finite, cv::CMP_EQ);
  return cv::countNonZero(finite) == 0;
}

/// 16 hex digits from std::random_device: names this process's part catalogs.
std::string random_token() {
  std::random_device rd;
  const std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::vector<std::string> history_lines(const Frame& f, const std::string& config_hash) {
  std::vector<std::string> h;
  h.push_back(std::string("astroflow ") + ASTROFLOW_VERSION);
  h.push_back("astroflow config sha256 " + config_hash);
  for (const Provenance& p : f.provenance) {
    std::string line =
        "astroflow stage " + p.stage + ": plugin " + p.plugin + " " + p.plugin_version;
    if (!p.model_sha256.empty()) line += " model sha256 " + p.model_sha256;
    h.push_back(std::move(line));
  }
  return h;
}

}  // namespace

std::unique_ptr<StageInstance> open_stage(const ResolvedStage& stage, const StageContext& context) {
  auto inst = stage.plugin->create(context.stage_name);
  try {
    inst->configure(stage.options);
    inst->open(context);
  } catch (const ConfigError&) {
    throw;
  } catch (const FatalError& e) {
    throw ConfigError(stage.config->where, e.what());
  }
  return inst;
}

RunReport run_pipeline(const PipelineConfig& config, const std::vector<ResolvedStage>& stages,
                       const RunOptions& options) {
  const auto t_start = Clock::now();
  auto log = [&](LogLevel level, const std::string& msg) {
    if (options.log) options.log(level, msg);
  };

  // --- settings -------------------------------------------------------------------------
  const std::string input_root =
      options.input_override.empty() ? config.input.path : options.input_override;
  const std::string output_dir =
      options.output_override.empty() ? config.output.dir : options.output_override;
  if (input_root.empty()) throw FatalError("no input: set input.path in the config or --input");
  if (output_dir.empty()) throw FatalError("no output folder: set output.dir or --output");
  int threads = options.threads >= 0 ? options.threads : config.run.threads;
  if (threads <= 0) threads = tbb::info::default_concurrency();
  const auto batch_size = static_cast<std::size_t>(std::max(1, config.run.batch));
  const int max_in_flight = std::max(1, config.run.max_in_flight);
  // Validates tile_size/overlap before any pixel is read.
  (void)TileGrid(1, 1, config.run.tile_size, config.run.tile_overlap);
  // A file larger than this may need tiling, so it travels alone (bounds memory per unit).
  const auto large_file_bytes = static_cast<std::uintmax_t>(config.run.tile_size) *
                                static_cast<std::uintmax_t>(config.run.tile_size);

  std::error_code ec;
  fs::create_directories(output_dir, ec);
  if (ec || !fs::is_directory(output_dir))
    throw FatalError("cannot create output folder '" + output_dir + "': " + ec.message());

  ListWorkSource own_list;
  WorkSource& source = options.work_source != nullptr ? *options.work_source : own_list;
  const bool leader = source.is_leader();
  // The merged catalog is rebuilt from FITS catalogs on disk that the manifest points to, so a
  // resumed, sharded or distributed run writes what one uninterrupted run writes: the per-input
  // <stem>.cat.fits when output.per_input_catalog has "fits", else one part catalog per unit of
  // work (parts/<run token>-<unit>.cat.fits, up to run.batch inputs each): a folder of a
  // million cutouts then gets thousands of small files, not a million.
  const std::vector<std::string>& per_input_formats = config.output.per_input_catalog;
  const bool fits_catalogs = std::find(per_input_formats.begin(), per_input_formats.end(),
                                       "fits") != per_input_formats.end();
  const std::string config_hash = config.hash();
  const std::map<std::string, std::string> models = model_hashes(stages);
  const fs::path out(output_dir);
  const std::string manifest_path = (out / "manifest.jsonl").string();
  // Only the leader prepares the folder and decides what to do; in a distributed run the
  // others wait in source.begin() until it has, then get their inputs from source.next().
  if (leader) {
    if (const std::size_t n = remove_stale_temporaries(output_dir); n > 0)
      log(LogLevel::kInfo, "removed " + std::to_string(n) + " temporary file(s) of a killed run");
    // Manifest logs of the other ranks of a killed MPI run: their lines count on --resume.
    if (const std::size_t n = fold_rank_manifests(manifest_path, options.resume); n > 0)
      log(LogLevel::kInfo, "manifest: folded " + std::to_string(n) + " line(s) of other ranks");
  }

  // Every input of this shard, in sorted order; `index` keeps the position in the whole list.
  std::vector<InputFile> all_files;
  if (leader)
    for (InputFile& f :
         list_input_files(input_root, config.input.pattern, config.input.recursive, output_dir))
      if (options.shard.contains(f.relative)) all_files.push_back(std::move(f));

  std::vector<InputFile> files;  // those to process now
  if (!leader) {
    // Units come from the leader.
  } else if (options.resume) {
    std::size_t torn = 0;
    std::map<std::string, ManifestEntry> done;
    std::map<std::string, std::string> output_sha256;  // a part is hashed once, not per input
    for (ManifestEntry& e : read_manifest(manifest_path, &torn)) done[e.path] = std::move(e);
    if (torn > 0)
      log(LogLevel::kInfo, "manifest: ignored " + std::to_string(torn) + " incomplete line(s)");
    for (const InputFile& f : all_files) {
      const auto it = done.find(f.relative);
      if (it == done.end() ||
          !is_entry_current(it->second, f.path, output_dir, config_hash, models, &output_sha256))
        files.push_back(f);
    }
    log(LogLevel::kInfo, "resume: " + std::to_string(all_files.size() - files.size()) + " of " +
                             std::to_string(all_files.size()) + " input(s) already done, skipped");
  } else {
    files = all_files;
    write_file_atomically(manifest_path, "");  // a fresh run starts a fresh manifest
  }
  source.begin(files, UnitLimits{batch_size, large_file_bytes});
  ManifestWriter manifest(source.manifest_path(manifest_path));

  RunReport report;
  report.astroflow_version = ASTROFLOW_VERSION;
  report.config_file = config.file;
  report.config_sha256 = config_hash;
  report.output_dir = output_dir;
  report.threads = threads;
  report.files = all_files.size();

  // --- stage instances: created and opened before any pixel is read --------------------
  std::vector<std::unique_ptr<StageRuntime>> runtimes;
  for (const ResolvedStage& rs : stages) {
    auto rt = std::make_unique<StageRuntime>();
    rt->name = rs.config->name;
    rt->plugin = rs.plugin->name();
    for (int slot = 0; slot < threads; ++slot) {
      StageContext ctx;
      ctx.stage_name = rt->name;
      ctx.config_dir = config.directory;
      ctx.slot = slot;
      ctx.slot_count = threads;
      ctx.seed = config.run.seed;
      if (options.log) ctx.logger = StageLogger(rt->name, options.log);
      rt->pool.add(open_stage(rs, ctx));
    }
    bool seen = false;
    for (const PluginInfo& p : report.plugins) seen = seen || p.path == rs.plugin->path();
    if (!seen)
      report.plugins.push_back(
          PluginInfo{rs.plugin->name(), rs.plugin->version(), rs.plugin->path()});
    runtimes.push_back(std::move(rt));
  }

  FitsReadOptions read_options;
  read_options.hdu = config.input.hdu;
  read_options.weight_ext = config.input.weight_ext;
  read_options.mask_ext = config.input.mask_ext;
  read_options.mask_good_bits = config.input.mask_good_bits;
  read_options.cube_plane = config.input.cube_plane;

  // Part catalogs: named by a token of this process (ranks and resumed runs never collide),
  // headed like the merged catalog.
  const std::string part_token = random_token();
  const Header part_header = [&] {
    Header h = merged_catalog_header(ASTROFLOW_VERSION, config_hash, report.plugins);
    h.add_history("astroflow part catalog: rows of several inputs; manifest.jsonl maps them");
    return h;
  }();

  // Writer state: touched only by the serial writer node.
  std::set<std::string> failed_files;
  ProgressSnapshot progress;
  progress.files_total = files.size();

  auto record_failure = [&](FailureRecord r) {
    log(LogLevel::kError,
        r.path + (r.hdu.empty() ? "" : "[" + r.hdu + "]") + ": " + r.stage + ": " + r.reason);
    failed_files.insert(r.path);
    report.failures.push_back(std::move(r));
  };

  // --- graph bodies --------------------------------------------------------------------
  auto read_unit = [&](UnitPtr u) -> UnitPtr {
    std::vector<Frame> small;
    for (const InputFile& file : u->files) {
      std::vector<Frame> frames;
      try {
        frames = read_fits_frames(file.path, read_options, file.index);
        if (frames.empty()) throw FrameError("no image HDU selected");
      } catch (const std::exception& e) {
        u->read_failures.push_back(FailureRecord{file.path, "", "reader", e.what()});
        continue;
      }
      u->frames_per_file[file.index] = frames.size();
      for (Frame& f : frames) {
        f.input_index = file.index;
        if (all_blank(f.science)) {
          f.flags |= kFrameAllBlank;
          f.fail("reader", "no finite pixel (all blank or NaN)");
        }
        if (f.failed()) {
          u->results.push_back(std::move(f));
          continue;
        }
        auto grid = std::make_unique<TileGrid>(f.width(), f.height(), config.run.tile_size,
                                               config.run.tile_overlap);
        if (!grid->needs_tiling()) {
          small.push_back(std::move(f));
          continue;
        }
        Batch tiles;
        tiles.sequence = u->sequence;
        tiles.tiled = true;
        for (int i = 0; i < grid->count(); ++i) {
          tiles.frames.push_back(grid->cut(f, i));
          if (tiles.frames.size() == batch_size) {
            u->batches.push_back(std::move(tiles));
            tiles = Batch{};
            tiles.sequence = u->sequence;
            tiles.tiled = true;
          }
        }
        if (!tiles.frames.empty()) u->batches.push_back(std::move(tiles));
        // The tiles hold the pixels now; the shell keeps identity, header and WCS.
        f.science.release();
        f.weight.release();
        f.mask.release();
        f.planes.clear();
        u->parents.push_back(TiledParent{std::move(f), std::move(grid)});
      }
    }
    for (std::size_t i = 0; i < small.size(); i += batch_size) {
      Batch b;
      b.sequence = u->sequence;
      for (std::size_t j = i; j < std::min(small.size(), i + batch_size); ++j)
        b.frames.push_back(std::move(small[j]));
      u->batches.push_back(std::move(b));
    }
    return u;
  };

  auto run_stage = [](StageRuntime& rt, UnitPtr u) -> UnitPtr {
    StageInstance* inst = rt.pool.acquire();
    struct Release {
      StageRuntime& rt;
      StageInstance* inst;
      ~Release() { rt.pool.release(inst); }
    } release{rt, inst};
    for (Batch& b : u->batches) {
      const bool any_live =
          std::any_of(b.frames.begin(), b.frames.end(), [](const Frame& f) { return !f.failed(); });
      if (!any_live) continue;
      const auto t0 = Clock::now();
      try {
        inst->process(b);
      } catch (const std::exception& e) {
        // A failure of the whole batch call flags each of its frames; the run goes on.
        for (Frame& f : b.frames)
          if (!f.failed()) f.fail(rt.name, e.what());
      }
      rt.wall_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
      ++rt.calls;
    }
    return u;
  };

  // Planes the writer still reads after the stages: the requested images, the segmap (quick-look
  // outlines) and a denoising stage's planes (side-by-side quick-look). A tiled image's other
  // planes (background, rms, ...) are dropped before stitching, so they are never allocated
  // at full size.
  std::vector<std::string> kept_planes = config.output.images;
  kept_planes.emplace_back("segmap");
  if (config.output.quicklook) {
    kept_planes.emplace_back("denoised");
    kept_planes.emplace_back("science_raw");
  }
  auto stitch_unit = [&kept_planes](UnitPtr u) -> UnitPtr {
    for (Batch& b : u->batches) {
      if (b.tiled) continue;
      for (Frame& f : b.frames) u->results.push_back(std::move(f));
    }
    for (TiledParent& p : u->parents) {
      std::vector<Frame> tiles;
      for (Batch& b : u->batches) {
        if (!b.tiled) continue;
        for (Frame& f : b.frames) {
          if (f.input_index == p.shell.input_index && f.hdu_index == p.shell.hdu_index) {
            std::erase_if(f.planes, [&](const auto& kv) {
              return std::find(kept_planes.begin(), kept_planes.end(), kv.first) ==
                     kept_planes.end();
            });
            tiles.push_back(std::move(f));
          }
        }
      }
      u->results.push_back(stitch_tiles(std::move(p.shell), std::move(tiles), *p.grid));
    }
    u->batches.clear();
    u->parents.clear();
    std::stable_sort(u->results.begin(), u->results.end(), [](const Frame& a, const Frame& b) {
      return a.input_index != b.input_index ? a.input_index < b.input_index
                                            : a.hdu_index < b.hdu_index;
    });
    return u;
  };

  // Per-input outputs are written here, in parallel, under a temporary name and renamed, but
  // not fsynced: the writer makes a whole group of inputs durable at once before their manifest
  // lines commit them (see write_unit). Small outputs are built in memory, so each is one
  // write(2) and its sha256 needs no second read.
  auto write_frame_outputs = [&](Unit& u, Frame& f) -> FrameWritten {
    FrameWritten w;
    auto put = [&](const std::string& rel, const std::string& bytes) {
      write_file_atomically((out / rel).string(), bytes, Durability::kDeferred);
      w.outputs.push_back(ManifestOutput{rel, sha256_hex(bytes)});
    };
    const InputFile& file = *std::find_if(u.files.begin(), u.files.end(), [&](const InputFile& i) {
      return i.index == f.input_index;
    });
    w.width_pix = f.width();
    w.height_pix = f.height();
    if (f.failed()) return w;
    try {
      renumber_sources(f);
      const bool several = u.frames_per_file[f.input_index] > 1;
      const std::string rel_stem = output_stem(file, f, several);
      const std::string stem = (out / rel_stem).string();
      const std::vector<std::string> history = history_lines(f, config_hash);
      Header cat_header = f.header;
      for (const std::string& h : history) cat_header.add_history(h);
      cat_header.add_history("input " + file.relative + "[" + hdu_text(f) + "]");
      for (const std::string& fmt : per_input_formats) {
        if (fmt == "fits") {
          w.catalog = rel_stem + ".cat.fits";
          put(w.catalog, fits_catalog_bytes(f.catalog, cat_header, "CATALOG", stem + ".cat.fits"));
        }
        if (fmt == "csv") put(rel_stem + ".cat.csv", csv_catalog_text(f.catalog));
      }
      for (const std::string& plane : config.output.images) {
        const cv::Mat* pix = nullptr;
        if (auto it = f.planes.find(plane); it != f.planes.end()) pix = &it->second;
        if (plane == "science") pix = &f.science;
        if (pix == nullptr || pix->empty()) continue;
        const std::string rel = rel_stem + "." + plane + ".fits";
        if (pix->total() * pix->elemSize() <= kInMemoryOutputBytes) {
          put(rel, fits_image_bytes(*pix, f.header, history, (out / rel).string()));
        } else {
          // Not held twice in memory; fsynced at once (a large image's own cost dwarfs it).
          write_fits_image((out / rel).string(), *pix, f.header, history);
          w.outputs.push_back(ManifestOutput{rel, sha256_file((out / rel).string())});
        }
      }
      if (config.output.quicklook && file.index < kQuicklookFiles && f.science.type() == CV_32FC1) {
        cv::Mat segmap;
        if (auto it = f.planes.find("segmap"); it != f.planes.end() && it->second.type() == CV_32S)
          segmap = it->second;
        const std::string png = "quicklook/" + rel_stem + ".png";
        write_png((out / png).string(), render_quicklook(f.science, f.catalog, segmap));
        w.outputs.push_back(ManifestOutput{png, sha256_file((out / png).string())});
        // A denoising stage's result beside its input, in the input's stretch. The raw pixels
        // are the science plane, or "science_raw" when the stage replaced the science plane.
        if (auto den = f.planes.find("denoised"); den != f.planes.end()) {
          auto raw_it = f.planes.find("science_raw");
          const cv::Mat& raw = raw_it != f.planes.end() ? raw_it->second : f.science;
          if (raw.size() == den->second.size() && raw.type() == CV_32FC1 &&
              den->second.type() == CV_32FC1) {
            const std::string side = "quicklook/" + rel_stem + ".denoised.png";
            QuicklookOptions qo;
            qo.softening_sigma = 1.0;  // shows the sky noise the denoiser removed
            qo.black_sigma = 2.0;
            write_png((out / side).string(),
                      render_side_by_side(raw, den->second, "raw", "denoised", qo));
            w.outputs.push_back(ManifestOutput{side, sha256_file((out / side).string())});
          }
        }
      }
      w.sources = f.catalog.rows();
    } catch (const std::exception& e) {
      f.fail("writer", e.what());
    }
    // Pixels are no longer needed; free them before the unit waits in the sequencer.
    f.science.release();
    f.weight.release();
    f.mask.release();
    f.planes.clear();
    return w;
  };

  // The manifest line of each file of the unit: written only after all its outputs are in place.
  auto make_entries = [&](Unit& u) {
    for (const InputFile& file : u.files) {
      ManifestEntry e;
      e.path = file.relative;
      e.config_sha256 = config_hash;
      e.model_sha256 = models;
      try {
        const FileStamp st = stamp_of(file.path);
        e.size_bytes = st.size_bytes;
        e.mtime_ns = st.mtime_ns;
      } catch (const std::exception&) {
        // Left at 0: the entry never counts as current, so the input is redone on --resume.
      }
      for (const FailureRecord& r : u.read_failures)
        if (r.path == file.path) e.failures.push_back(r);
      for (std::size_t i = 0; i < u.results.size(); ++i) {
        Frame& f = u.results[i];
        if (f.input_index != file.index) continue;
        const FrameWritten& w = u.written[i];
        for (const ManifestOutput& o : w.outputs)  // a part catalog is listed once per input
          if (std::none_of(e.outputs.begin(), e.outputs.end(),
                           [&](const ManifestOutput& x) { return x.path == o.path; }))
            e.outputs.push_back(o);
        e.frames.push_back(ManifestFrame{hdu_text(f), f.failed() ? std::string() : w.catalog,
                                         f.failed() ? 0 : w.sources, w.width_pix, w.height_pix,
                                         f.failed(), f.failed() ? 0 : w.catalog_row});
        if (!f.failed()) e.sources += w.sources;
        for (const FrameIssue& issue : f.issues)
          e.failures.push_back(FailureRecord{f.path, hdu_text(f), issue.stage, issue.reason});
      }
      e.status = e.failures.empty() ? "ok" : "failed";
      u.entries.push_back(std::move(e));
    }
  };

  // Without per-input FITS catalogs, the rows of the unit's frames go into one part catalog,
  // written like the other outputs (temporary name, rename; durable with the group commit).
  auto write_part_catalog = [&](Unit& u) {
    Catalog part;
    std::vector<std::size_t> in_part;
    for (std::size_t i = 0; i < u.results.size(); ++i) {
      if (u.results[i].failed()) continue;
      u.written[i].catalog_row = part.rows();
      part.append(u.results[i].catalog);
      in_part.push_back(i);
    }
    if (in_part.empty()) return;
    char name[32];
    std::snprintf(name, sizeof name, "-%06zu.cat.fits", u.sequence);
    const std::string rel = "parts/" + part_token + name;
    const std::string path = (out / rel).string();
    try {
      const std::string bytes = fits_catalog_bytes(part, part_header, "CATALOG", path);
      write_file_atomically(path, bytes, Durability::kDeferred);
      const ManifestOutput o{rel, sha256_hex(bytes)};
      for (std::size_t i : in_part) {
        u.written[i].catalog = rel;
        u.written[i].outputs.push_back(o);
      }
    } catch (const std::exception& e) {
      for (std::size_t i : in_part) u.results[i].fail("writer", e.what());
    }
  };

  auto finish_unit = [&](UnitPtr u) -> UnitPtr {
    u = stitch_unit(std::move(u));
    for (Frame& f : u->results) u->written.push_back(write_frame_outputs(*u, f));
    if (!fits_catalogs) write_part_catalog(*u);
    make_entries(*u);
    return u;
  };

  // Group commit of the manifest: finished inputs wait in `pending` until run.commit_every of
  // them have gathered or the oldest has waited run.commit_interval_s (and at the end of the
  // graph). Then one syncfs makes all their outputs durable, and only after it one write + one
  // fsync appends their lines. An input whose line is missing after a crash is redone by
  // --resume; its outputs on disk were renamed into place, so none is ever half-written.
  std::vector<ManifestEntry> pending;
  Clock::time_point pending_since;
  auto commit = [&] {
    if (pending.empty()) return;
    sync_filesystem(output_dir);
    manifest.append(pending);
    pending.clear();
  };

  // Serial, in input order: the merged catalog, failure lines and counts.
  auto write_unit = [&](UnitPtr u) {
    for (FailureRecord& r : u->read_failures) record_failure(std::move(r));
    for (Frame& f : u->results) {
      ++report.frames;
      if (!f.failed()) report.sources += f.catalog.rows();
      for (const FrameIssue& issue : f.issues)
        record_failure(FailureRecord{f.path, hdu_text(f), issue.stage, issue.reason});
    }
    if (pending.empty()) pending_since = Clock::now();
    for (ManifestEntry& e : u->entries) pending.push_back(std::move(e));
    if (pending.size() >= static_cast<std::size_t>(std::max(1, config.run.commit_every)) ||
        seconds_since(pending_since) >= config.run.commit_interval_s)
      commit();
    progress.files_done += u->files.size();
    progress.frames_done = report.frames;
    progress.sources = report.sources;
    progress.failures = report.failures.size();
    progress.elapsed_s = seconds_since(t_start);
    if (options.on_progress) options.on_progress(progress);
  };

  // --- the graph -----------------------------------------------------------------------
  // global_control caps every TBB user in the process (OpenCV's parallel_for included), so the
  // stages' own parallelism does not oversubscribe the cores given by --threads.
  tbb::global_control parallelism(tbb::global_control::max_allowed_parallelism,
                                  static_cast<std::size_t>(threads));
  tbb::task_arena arena(threads);
  arena.execute([&] {
    namespace flow = tbb::flow;
    flow::graph g;
    std::size_t next_sequence = 0;
    flow::input_node<UnitPtr> input(g, [&](tbb::flow_control& fc) -> UnitPtr {
      std::vector<InputFile> unit_files = source.next();
      if (unit_files.empty()) {
        fc.stop();
        return {};
      }
      auto u = std::make_shared<Unit>();
      u->sequence = next_sequence++;
      u->files = std::move(unit_files);
      return u;
    });
    flow::limiter_node<UnitPtr> limiter(g, static_cast<std::size_t>(max_in_flight));
    flow::function_node<UnitPtr, UnitPtr> reader(g, static_cast<std::size_t>(threads), read_unit);
    std::vector<std::unique_ptr<flow::function_node<UnitPtr, UnitPtr>>> stage_nodes;
    for (auto& rt : runtimes) {
      StageRuntime* r = rt.get();
      stage_nodes.push_back(std::make_unique<flow::function_node<UnitPtr, UnitPtr>>(
          g, static_cast<std::size_t>(threads),
          [r, &run_stage](UnitPtr u) { return run_stage(*r, std::move(u)); }));
    }
    flow::function_node<UnitPtr, UnitPtr> stitcher(g, static_cast<std::size_t>(threads),
                                                   finish_unit);
    flow::sequencer_node<UnitPtr> sequencer(g, [](const UnitPtr& u) { return u->sequence; });
    flow::function_node<UnitPtr, flow::continue_msg> writer(g, flow::serial, [&](UnitPtr u) {
      write_unit(u);
      return flow::continue_msg();
    });

    flow::make_edge(input, limiter);
    flow::make_edge(limiter, reader);
    flow::sender<UnitPtr>* last = &reader;
    for (auto& node : stage_nodes) {
      flow::make_edge(*last, *node);
      last = node.get();
    }
    flow::make_edge(*last, stitcher);
    flow::make_edge(stitcher, sequencer);
    flow::make_edge(sequencer, writer);
    flow::make_edge(writer, limiter.decrementer());
    input.activate();
    g.wait_for_all();
  });
  commit();

  for (auto& rt : runtimes) {
    rt->pool.close_all();
    report.stage_timings.push_back(StageTiming{rt->name, rt->plugin, rt->calls.load(),
                                               static_cast<double>(rt->wall_ns.load()) * 1e-9});
  }
  // A distributed run: the leader collects the others' failures and timings (their manifest
  // lines are folded into manifest.jsonl below); the others are done here.
  {
    ReportPart part{std::move(report.failures), std::move(failed_files),
                    std::move(report.stage_timings)};
    source.end(part);
    report.failures = std::move(part.failures);
    failed_files = std::move(part.failed_files);
    report.stage_timings = std::move(part.stage_timings);
  }
  if (!leader) {
    report.wall_s = seconds_since(t_start);
    return report;
  }
  if (source.processes() > 1) (void)fold_rank_manifests(manifest_path);

  // --- run-level outputs ---------------------------------------------------------------
  // The latest manifest entry of every input of this run (done now or by an earlier run that
  // --resume skipped), in input order: the merged catalog and the counts come from these, so
  // an interrupted-and-resumed run writes what an uninterrupted one writes.
  // Only what the merged catalog, the counts and the gallery need is kept per entry: the peak
  // memory of a 10,000-input run should not grow with the manifest's size.
  // Entries are stored in place by input position (no second copy), trimmed to capacity.
  std::vector<ManifestEntry> entries(all_files.size());
  std::set<std::string> referenced_parts;  // by any manifest line, of this run's inputs or not
  {
    std::unordered_map<std::string_view, std::size_t> position;
    position.reserve(all_files.size());
    for (std::size_t i = 0; i < all_files.size(); ++i) position.emplace(all_files[i].relative, i);
    std::vector<bool> present(all_files.size(), false);
    for_each_manifest_line(manifest_path, [&](ManifestEntry&& e) {
      for (const ManifestFrame& f : e.frames)
        if (f.catalog.rfind("parts/", 0) == 0) referenced_parts.insert(f.catalog);
      const auto it = position.find(e.path);
      if (it == position.end()) return;  // not an input of this run
      // A later line replaces an earlier one, also when it is stale.
      present[it->second] = e.config_sha256 == config_hash;
      if (!present[it->second]) return;
      std::erase_if(e.outputs,
                    [](const ManifestOutput& o) { return o.path.rfind("quicklook/", 0) != 0; });
      e.outputs.shrink_to_fit();
      e.frames.shrink_to_fit();
      e.failures = {};
      e.model_sha256 = {};
      e.config_sha256 = {};
      e.sha256 = {};
      entries[it->second] = std::move(e);
    });
    std::size_t kept = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (!present[i]) continue;
      if (kept != i) entries[kept] = std::move(entries[i]);  // never a self-move
      ++kept;
    }
    entries.resize(kept);
  }
  report.frames = 0;
  report.sources = 0;
  for (const ManifestEntry& e : entries) {
    report.frames += e.frames.size();
    report.sources += e.sources;
  }
  // Part catalogs that no manifest line points to (a killed run's last units, or units whose
  // inputs a resumed run redid) are removed.
  if (const fs::path parts = out / "parts"; fs::is_directory(parts, ec)) {
    for (const fs::directory_entry& d : fs::directory_iterator(parts, ec)) {
      const std::string rel = "parts/" + d.path().filename().string();
      if (d.is_regular_file(ec) && rel.ends_with(".cat.fits") && !referenced_parts.contains(rel))
        fs::remove(d.path(), ec);
    }
  }
  const Header merged_header =
      merged_catalog_header(ASTROFLOW_VERSION, config_hash, report.plugins);
  CatalogStats merged_stats;  // what report.html shows of the merged catalog
  if (!config.output.merge_sky) {
    // Streamed from the catalogs on disk: peak memory does not grow with the catalog.
    stream_merged_catalog(entries, std::vector<std::string>(entries.size(), output_dir), output_dir,
                          config.output.catalog, merged_header, &merged_stats);
  } else {
    // merge_sky needs every row at once.
    Catalog merged =
        rebuild_merged_catalog(entries, std::vector<std::string>(entries.size(), output_dir));
    SkyMatchOptions sky;
    sky.radius_arcsec = config.output.merge_sky_radius_arcsec;
    sky.keep = parse_keep_rule(config.output.merge_sky_keep);
    const MergedRowImages rows = merged_row_images(merged, entries);
    try {
      const SkyMatchResult r =
          flag_sky_duplicates(merged, sky, rows.image_of_row, rows.edge_distance_pix);
      log(LogLevel::kInfo, "merge_sky: " + std::to_string(r.objects) + " object(s), " +
                               std::to_string(r.duplicates) + " duplicate row(s) flagged");
    } catch (const std::invalid_argument& e) {
      // E.g. no ALPHA_J2000 (no WCS): the catalog is still worth writing, unflagged.
      log(LogLevel::kError, std::string("output.merge_sky: not applied: ") + e.what());
    }
    write_merged_catalog(output_dir, merged, config.output.catalog, merged_header);
    merged_stats = CatalogStats::of(merged);
  }
  report.files_failed = failed_files.size();
  report.exit_status = report.failures.empty() ? ExitCode::kOk : ExitCode::kCompletedWithFailures;
  report.wall_s = seconds_since(t_start);
  write_file_atomically((out / "summary.json").string(), report.to_json());

  // report.html: always (its cost is one pass over the merged catalog); the gallery lists the
  // quick-looks of this run's inputs that exist, at most kQuicklookFiles inputs' worth.
  std::vector<QuicklookEntry> gallery;
  for (const ManifestEntry& e : entries) {
    for (const ManifestOutput& o : e.outputs) {
      if (o.path.rfind("quicklook/", 0) != 0) continue;
      const std::string stem = o.path.substr(10, o.path.size() - 10 - 4);  // quicklook/<stem>.png
      std::string title = e.path;
      std::size_t n = 0;
      for (const ManifestFrame& fr : e.frames) {
        if (fr.catalog != stem + ".cat.fits" && e.frames.size() > 1) continue;
        title = e.path + "[" + fr.hdu + "]";
        n = fr.sources;
      }
      gallery.push_back(QuicklookEntry{title, o.path, n});
    }
  }
  write_file_atomically((out / "report.html").string(),
                        render_report_html(report, merged_stats, gallery));
  return report;
}

}  // namespace astroflow
