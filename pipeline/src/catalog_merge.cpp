#include "astroflow/catalog_merge.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "astroflow/atomic_file.hpp"
#include "astroflow/error.hpp"
#include "astroflow/fits_io.hpp"

namespace astroflow {
namespace fs = std::filesystem;

namespace {

Catalog with_file_and_hdu(const Catalog& frame_catalog, const std::string& file,
                          const std::string& hdu) {
  Catalog c;
  const std::size_t n = frame_catalog.rows();
  auto& files = c.add_column<std::string>("FILE", "", "input file, relative to the input folder");
  auto& hdus = c.add_column<std::string>("HDU", "", "input HDU (index, or EXTNAME,EXTVER)");
  files.assign(n, file);
  hdus.assign(n, hdu);
  c.resize(n);
  for (const Column& col : frame_catalog.columns()) {
    if (col.name == "FILE" || col.name == "HDU") continue;
    std::visit(
        [&](const auto& v) {
          using T = typename std::decay_t<decltype(v)>::value_type;
          c.add_column<T>(col.name, col.unit, col.description) = v;
        },
        col.values);
  }
  return c;
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FatalError(path + ": cannot open (is this an astroflow output folder?)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw FatalError(path + ": not valid JSON: " + e.what());
  }
}

}  // namespace

Header merged_catalog_header(const std::string& astroflow_version, const std::string& config_sha256,
                             const std::vector<PluginInfo>& plugins) {
  Header h;
  h.add_history("astroflow " + astroflow_version);
  h.add_history("astroflow config sha256 " + config_sha256);
  for (const PluginInfo& p : plugins) h.add_history("astroflow plugin " + p.name + " " + p.version);
  return h;
}

void sort_entries_by_path(std::vector<ManifestEntry>& entries) {
  std::stable_sort(entries.begin(), entries.end(),
                   [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
}

namespace {

Catalog merged_catalog_start() {
  Catalog merged;
  merged.add_column<std::string>("FILE", "", "input file, relative to the input folder");
  merged.add_column<std::string>("HDU", "", "input HDU (index, or EXTNAME,EXTVER)");
  return merged;
}

/// Calls use(catalog) for every frame's catalog of `entries` in order, with FILE and HDU first.
/// A frame's rows are its own <stem>.cat.fits, or a row range of a part catalog that several
/// consecutive frames share (read once). The files are read in parallel, a block at a time
/// (memory stays bounded by the block), and handed over in manifest order, so nothing depends
/// on the thread count.
template <typename Use>
void for_each_frame_catalog(const std::vector<ManifestEntry>& entries,
                            const std::vector<std::string>& output_dir_of_entry, Use&& use) {
  if (output_dir_of_entry.size() != entries.size())
    throw std::invalid_argument("merged catalog: one output folder per entry expected");
  struct Job {
    std::size_t entry;
    const ManifestFrame* frame;
  };
  struct FileJobs {  // consecutive frames whose rows are in one file
    std::string path;
    std::vector<Job> frames;
  };
  std::vector<FileJobs> files;
  for (std::size_t i = 0; i < entries.size(); ++i)
    for (const ManifestFrame& f : entries[i].frames) {
      if (f.failed || f.catalog.empty()) continue;
      std::string path = (fs::path(output_dir_of_entry[i]) / f.catalog).string();
      if (files.empty() || files.back().path != path) files.push_back({std::move(path), {}});
      files.back().frames.push_back({i, &f});
    }
  constexpr std::size_t kBlock = 256;
  std::vector<std::vector<Catalog>> block(kBlock);
  std::vector<std::string> errors(kBlock);
  for (std::size_t start = 0; start < files.size(); start += kBlock) {
    const std::size_t n = std::min(kBlock, files.size() - start);
    tbb::parallel_for(std::size_t{0}, n, [&](std::size_t k) {
      const FileJobs& file = files[start + k];
      try {
        const Catalog all = read_fits_catalog(file.path, 1);
        for (const Job& job : file.frames) {
          const ManifestFrame& f = *job.frame;
          // A frame's own catalog is the whole file; a part holds several frames' rows (also
          // rows of frames that a resumed run redid and that now live in a newer part).
          const bool whole = f.catalog_row == 0 && all.rows() == f.sources;
          block[k].push_back(with_file_and_hdu(whole ? all : all.slice(f.catalog_row, f.sources),
                                               entries[job.entry].path, f.hdu));
        }
      } catch (const std::exception& e) {
        errors[k] = file.path + ": cannot read catalog: " + e.what();
      }
    });
    for (std::size_t k = 0; k < n; ++k) {
      if (!errors[k].empty()) throw std::runtime_error(errors[k]);
      for (Catalog& c : block[k]) use(std::move(c));
      block[k].clear();
    }
  }
}

/// The columns of `c` without its rows.
Catalog columns_only(const Catalog& c) {
  Catalog s;
  for (const Column& col : c.columns())
    std::visit(
        [&](const auto& v) {
          using T = typename std::decay_t<decltype(v)>::value_type;
          (void)s.add_column<T>(col.name, col.unit, col.description);
        },
        col.values);
  return s;
}

/// Calls write(tmp) through write_atomically when `wanted`, else write("").
void maybe_atomically(bool wanted, const std::string& path,
                      const std::function<void(const std::string&)>& write) {
  if (wanted) {
    write_atomically(path, write);
  } else {
    write(std::string());
  }
}

}  // namespace

Catalog rebuild_merged_catalog(const std::vector<ManifestEntry>& entries,
                               const std::vector<std::string>& output_dir_of_entry) {
  Catalog merged = merged_catalog_start();
  for_each_frame_catalog(entries, output_dir_of_entry, [&](Catalog&& c) { merged.append(c); });
  return merged;
}

void stream_merged_catalog(const std::vector<ManifestEntry>& entries,
                           const std::vector<std::string>& output_dir_of_entry,
                           const std::string& dir, const std::vector<std::string>& formats,
                           const Header& header, CatalogStats* stats) {
  // Pass 1: the merged columns in order of first appearance (Catalog::append's union, type
  // clashes included), the longest string of each string column, the row count.
  Catalog schema = merged_catalog_start();
  std::map<std::string, std::size_t> widths;
  std::size_t rows = 0;
  for_each_frame_catalog(entries, output_dir_of_entry, [&](Catalog&& c) {
    schema.append(columns_only(c));
    for (const Column& col : c.columns()) {
      if (col.type() != ColumnType::kString) continue;
      std::size_t& w = widths[col.name];
      for (const std::string& v : std::get<std::vector<std::string>>(col.values))
        w = std::max(w, v.size());
    }
    rows += c.rows();
    if (stats != nullptr) stats->observe_range(c);
  });
  if (stats != nullptr) stats->settle(schema);

  // Pass 2: rows in chunks with every merged column (missing cells get Catalog's defaults).
  const bool fits = std::find(formats.begin(), formats.end(), "fits") != formats.end();
  const bool csv = std::find(formats.begin(), formats.end(), "csv") != formats.end();
  const fs::path out(dir);
  const std::string fits_path = (out / "catalog.fits").string();
  const std::string csv_path = (out / "catalog.csv").string();
  maybe_atomically(fits, fits_path, [&](const std::string& fits_tmp) {
    std::unique_ptr<FitsCatalogAppender> fits_out;
    if (fits)
      fits_out =
          std::make_unique<FitsCatalogAppender>(fits_tmp, fits_path, schema, widths, rows, header);
    maybe_atomically(csv, csv_path, [&](const std::string& csv_tmp) {
      std::ofstream csv_out;
      if (csv) {
        csv_out.open(csv_tmp, std::ios::binary | std::ios::trunc);
        if (!csv_out) throw std::runtime_error(csv_tmp + ": cannot open for writing");
        write_csv_header(csv_out, schema);
      }
      constexpr std::size_t kChunkRows = 2048;
      Catalog chunk = columns_only(schema);
      auto flush = [&] {
        if (fits_out) fits_out->append(chunk);
        if (csv) write_csv_rows(csv_out, chunk);
        if (stats != nullptr) stats->count(chunk);
        chunk = columns_only(schema);
      };
      for_each_frame_catalog(entries, output_dir_of_entry, [&](Catalog&& c) {
        chunk.append(c);
        if (chunk.rows() >= kChunkRows) flush();
      });
      flush();
      if (csv) {
        csv_out.flush();
        if (!csv_out) throw std::runtime_error(csv_tmp + ": write failed");
      }
    });
    if (fits_out) fits_out->close();
  });
}

MergedRowImages merged_row_images(const Catalog& merged,
                                  const std::vector<ManifestEntry>& entries) {
  MergedRowImages out;
  out.image_of_row = image_ids_from_columns(merged);
  std::map<std::pair<std::string, std::string>, std::pair<int, int>> sizes;
  for (const ManifestEntry& e : entries)
    for (const ManifestFrame& f : e.frames) sizes[{e.path, f.hdu}] = {f.width_pix, f.height_pix};
  const Column* file = merged.find("FILE");
  const Column* hdu = merged.find("HDU");
  const Column* x = merged.find("X_IMAGE");
  const Column* y = merged.find("Y_IMAGE");
  if (file == nullptr || hdu == nullptr || x == nullptr || y == nullptr) return out;
  std::vector<double> dist(merged.rows());
  for (std::size_t i = 0; i < merged.rows(); ++i) {
    const auto it = sizes.find({file->as_text(i), hdu->as_text(i)});
    if (it == sizes.end() || it->second.first <= 0 || it->second.second <= 0) return out;
    dist[i] =
        edge_distance_pix(x->as_double(i), y->as_double(i), it->second.first, it->second.second);
  }
  out.edge_distance_pix = std::move(dist);
  return out;
}

void write_merged_catalog(const std::string& dir, const Catalog& merged,
                          const std::vector<std::string>& formats, const Header& header) {
  const fs::path out(dir);
  for (const std::string& fmt : formats) {
    if (fmt == "fits") write_fits_catalog((out / "catalog.fits").string(), merged, header);
    if (fmt == "csv") write_csv_catalog((out / "catalog.csv").string(), merged);
  }
}

RunReport merge_shard_outputs(const MergeOptions& options) {
  if (options.shard_dirs.empty()) throw FatalError("merge: no shard output folders given");
  if (options.output_dir.empty()) throw FatalError("merge: no --output folder given");

  RunReport report;
  std::vector<ManifestEntry> entries;
  std::vector<std::string> dir_of_entry;
  std::map<std::string, std::string> shard_of_path;
  std::string first_dir;
  for (const std::string& dir : options.shard_dirs) {
    const nlohmann::json s = read_json_file((fs::path(dir) / "summary.json").string());
    const std::string config = s.value("config_sha256", std::string());
    if (first_dir.empty()) {
      first_dir = dir;
      report.astroflow_version = s.value("astroflow_version", std::string());
      report.config_file = s.value("config_file", std::string());
      report.config_sha256 = config;
      report.threads = s.value("threads", 0);
      for (const auto& p : s.value("plugins", nlohmann::json::array()))
        report.plugins.push_back(
            {p.value("name", ""), p.value("version", ""), p.value("path", "")});
    } else if (config != report.config_sha256) {
      throw FatalError("merge: " + dir + " was made with config sha256 " + config + ", but " +
                       first_dir + " with " + report.config_sha256 +
                       "; shards must share one config");
    }
    const auto& counts = s.value("counts", nlohmann::json::object());
    report.files += counts.value("files", std::size_t{0});
    report.frames += counts.value("frames", std::size_t{0});
    report.sources += counts.value("sources", std::size_t{0});
    report.files_failed += counts.value("files_failed", std::size_t{0});
    report.wall_s = std::max(report.wall_s, s.value("wall_s", 0.0));
    for (const auto& f : s.value("failures", nlohmann::json::array()))
      report.failures.push_back(
          {f.value("path", ""), f.value("hdu", ""), f.value("stage", ""), f.value("reason", "")});
    for (const auto& t : s.value("stage_timings", nlohmann::json::array())) {
      const std::string stage = t.value("stage", "");
      auto it = std::find_if(report.stage_timings.begin(), report.stage_timings.end(),
                             [&](const StageTiming& x) { return x.stage == stage; });
      if (it == report.stage_timings.end()) {
        report.stage_timings.push_back({stage, t.value("plugin", ""), 0, 0.0});
        it = std::prev(report.stage_timings.end());
      }
      it->calls += t.value("calls", std::size_t{0});
      it->wall_s += t.value("wall_s", 0.0);
    }

    const std::string manifest = (fs::path(dir) / "manifest.jsonl").string();
    if (!fs::exists(manifest)) throw FatalError("merge: " + manifest + " is missing");
    for (ManifestEntry& e : read_manifest(manifest)) {
      if (e.config_sha256 != report.config_sha256) continue;  // left over from an older config
      if (auto [it, fresh] = shard_of_path.emplace(e.path, dir); !fresh) {
        throw FatalError("merge: input '" + e.path + "' appears in both " + it->second + " and " +
                         dir + "; were the shards run with different --shard counts?");
      }
      entries.push_back(std::move(e));
      dir_of_entry.push_back(dir);
    }
  }

  // Sort entries and their folders together by input path, as one run over all files orders them.
  std::vector<std::size_t> order(entries.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return entries[a].path < entries[b].path; });
  std::vector<ManifestEntry> sorted;
  std::vector<std::string> sorted_dirs;
  for (std::size_t i : order) {
    sorted.push_back(std::move(entries[i]));
    sorted_dirs.push_back(dir_of_entry[i]);
  }

  std::stable_sort(report.failures.begin(), report.failures.end(),
                   [](const FailureRecord& a, const FailureRecord& b) { return a.path < b.path; });
  report.output_dir = options.output_dir;
  report.exit_status = report.failures.empty() ? ExitCode::kOk : ExitCode::kCompletedWithFailures;

  std::error_code ec;
  fs::create_directories(options.output_dir, ec);
  if (ec) throw FatalError("merge: cannot create " + options.output_dir + ": " + ec.message());
  const Header header =
      merged_catalog_header(report.astroflow_version, report.config_sha256, report.plugins);
  if (options.sky_match) {
    // Duplicate flagging needs every row at once.
    Catalog merged = rebuild_merged_catalog(sorted, sorted_dirs);
    const MergedRowImages rows = merged_row_images(merged, sorted);
    flag_sky_duplicates(merged, *options.sky_match, rows.image_of_row, rows.edge_distance_pix);
    write_merged_catalog(options.output_dir, merged, options.formats, header);
  } else {
    stream_merged_catalog(sorted, sorted_dirs, options.output_dir, options.formats, header);
  }
  write_file_atomically((fs::path(options.output_dir) / "summary.json").string(), report.to_json());
  return report;
}

}  // namespace astroflow
