// Building the run-level merged catalog from the per-input catalogs on disk.
//
// The merged catalog (catalog.fits / catalog.csv) is always rebuilt from the FITS catalogs that
// the manifest lists, in sorted input-path order: per-frame <stem>.cat.fits, or row ranges of
// part catalogs (parts/*.cat.fits, one per unit of work) when no per-input FITS catalog is
// written. A resumed run,
// a run split into shards and merged with `astroflow merge`, and an uninterrupted run therefore
// write the same bytes: none of them depends on what happened to be in memory.
//
// Each merged row gets FILE (input path relative to the input root) and HDU first, then the
// per-frame columns. Frames that failed contribute no rows.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "astroflow/catalog.hpp"
#include "astroflow/header.hpp"
#include "astroflow/manifest.hpp"
#include "astroflow/run_report.hpp"
#include "astroflow/run_summary.hpp"
#include "astroflow/sky_match.hpp"

namespace astroflow {

/// Primary-header HISTORY cards of the merged catalog: astroflow version, config sha256 and
/// plugin name/version, identical for a single run and a merge of its shards.
[[nodiscard]] Header merged_catalog_header(const std::string& astroflow_version,
                                           const std::string& config_sha256,
                                           const std::vector<PluginInfo>& plugins);

/// Entries sorted by input path (byte order, as list_input_files sorts).
void sort_entries_by_path(std::vector<ManifestEntry>& entries);

/// Concatenates the per-frame catalogs of `entries` (already in the wanted order), whose
/// catalog paths are relative to output_dir[i] for entry i. Throws std::runtime_error naming a
/// catalog that cannot be read.
[[nodiscard]] Catalog rebuild_merged_catalog(const std::vector<ManifestEntry>& entries,
                                             const std::vector<std::string>& output_dir_of_entry);

/// One image id per merged row (same FILE and HDU) and, when every frame recorded its size,
/// the distance of each row to its image edge (empty otherwise).
struct MergedRowImages {
  std::vector<std::size_t> image_of_row;
  std::vector<double> edge_distance_pix;
};
[[nodiscard]] MergedRowImages merged_row_images(const Catalog& merged,
                                                const std::vector<ManifestEntry>& entries);

/// The merged catalog of `entries` (as rebuild_merged_catalog) written as <dir>/catalog.fits
/// and/or catalog.csv without holding it: a first pass over the per-frame catalogs finds the
/// merged columns, string widths and row count, a second appends the rows in chunks. Same bytes
/// as write_merged_catalog(rebuild_merged_catalog(...)); memory stays bounded by a block of
/// per-frame catalogs whatever the number of inputs. Fills `stats` (report.html) when given.
/// Both files are written atomically.
void stream_merged_catalog(const std::vector<ManifestEntry>& entries,
                           const std::vector<std::string>& output_dir_of_entry,
                           const std::string& dir, const std::vector<std::string>& formats,
                           const Header& header, CatalogStats* stats = nullptr);

/// Writes `merged` as <dir>/catalog.fits and/or catalog.csv ("fits", "csv" in formats).
void write_merged_catalog(const std::string& dir, const Catalog& merged,
                          const std::vector<std::string>& formats, const Header& header);

struct MergeOptions {
  std::vector<std::string> shard_dirs;  ///< output folders of the shard runs
  std::string output_dir;
  std::vector<std::string> formats = {"fits", "csv"};
  std::optional<SkyMatchOptions> sky_match;  ///< cross-image duplicate flagging, if wanted
};

/// `astroflow merge`: reads each shard's manifest.jsonl and summary.json, checks that they were
/// made with one config (FatalError naming the folders otherwise) and that no input appears in
/// two shards, then writes catalog.fits/csv (inputs in sorted path order, as one run over all
/// files writes it) and summary.json (counts summed, failures in path order, stage timings
/// summed, wall_s the longest shard's) into output_dir. Returns that summary.
RunReport merge_shard_outputs(const MergeOptions& options);

}  // namespace astroflow
