// Manifest: the resume log of a run, `manifest.jsonl` in the output folder.
//
// One JSON object per line, one line per input file finished (ok or failed). A line is appended
// (O_APPEND, one write(2), then fsync) only after every output of that input has been renamed
// into place and made durable, so after a crash the file holds whole lines for finished inputs
// and at most one incomplete last line, which read_manifest ignores. run_pipeline commits in
// groups: the outputs of several inputs are made durable together (one syncfs), then their lines
// are appended with one write and one fsync. A later line for the same input replaces an earlier
// one (a redone input appends a fresh line).
//
// --resume skips an input when its latest entry (is_entry_current):
//   * has status "ok",
//   * was made with the same config sha256 and the same model sha256s,
//   * describes the same input file (size and mtime in ns unchanged),
//   * and every recorded output still exists with the recorded sha256.
// Anything else is redone.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "astroflow/config.hpp"
#include "astroflow/run_summary.hpp"

namespace astroflow {

/// One output file of an input, path relative to the output folder.
struct ManifestOutput {
  std::string path;
  std::string sha256;
};

/// One frame (image HDU) of an input as written to the output folder.
struct ManifestFrame {
  std::string hdu;  ///< as in the merged catalog's HDU column ("0", "SCI,1")
  /// FITS catalog holding the frame's rows, relative to the output folder; empty if none. Either
  /// the frame's own <stem>.cat.fits, or a part catalog (parts/*.cat.fits) shared by the frames
  /// of one unit of work, whose rows [catalog_row, catalog_row + sources) are this frame's.
  std::string catalog;
  std::size_t sources = 0;
  int width_pix = 0;  ///< full image size (after stitching), for edge distances
  int height_pix = 0;
  bool failed = false;
  std::size_t catalog_row = 0;  ///< first row of the frame in `catalog` (0: its own file)
};

struct ManifestEntry {
  std::string path;  ///< input path relative to the input root (the merged FILE column)
  std::uint64_t size_bytes = 0;
  std::int64_t mtime_ns = 0;
  std::string sha256;  ///< of the input file; optional (empty when not computed)
  std::string config_sha256;
  std::map<std::string, std::string> model_sha256;  ///< "stage.option" -> sha256 of the file
  std::vector<ManifestOutput> outputs;
  std::vector<ManifestFrame> frames;
  std::vector<FailureRecord> failures;
  std::size_t sources = 0;
  std::string status = "ok";  ///< "ok" or "failed"

  [[nodiscard]] std::string to_json_line() const;  ///< one line, '\n' included
  /// Throws std::invalid_argument when the text is not a complete entry.
  [[nodiscard]] static ManifestEntry from_json_line(const std::string& line);
};

/// Size and modification time of an input, as recorded in the manifest.
struct FileStamp {
  std::uint64_t size_bytes = 0;
  std::int64_t mtime_ns = 0;
};
/// Throws std::runtime_error naming the file when it cannot be stat'ed.
[[nodiscard]] FileStamp stamp_of(const std::string& path);

/// sha256 of the file behind every kPath option of the resolved stages, keyed "stage.option".
/// Options left empty are skipped. Throws FatalError naming the file when it cannot be read.
[[nodiscard]] std::map<std::string, std::string> model_hashes(
    const std::vector<ResolvedStage>& stages);

/// Latest entry per input path (later lines win), in file order of first appearance. A missing
/// file gives an empty result; lines that do not parse (a torn last line) are skipped and
/// counted in *skipped_lines when given.
[[nodiscard]] std::vector<ManifestEntry> read_manifest(const std::string& path,
                                                       std::size_t* skipped_lines = nullptr);

/// Every complete line in file order (earlier lines for the same input included), without
/// holding them all: for 10,000-input manifests read at the end of a run.
void for_each_manifest_line(const std::string& path,
                            const std::function<void(ManifestEntry&&)>& visit,
                            std::size_t* skipped_lines = nullptr);

/// True when --resume may skip this input (see the file comment). `input_path` is the file to
/// stat; outputs are looked up under `output_dir`. `sha256_cache` (output path -> sha256), when
/// given, hashes an output shared by many entries (a part catalog) once.
[[nodiscard]] bool is_entry_current(const ManifestEntry& entry, const std::string& input_path,
                                    const std::string& output_dir, const std::string& config_sha256,
                                    const std::map<std::string, std::string>& model_sha256,
                                    std::map<std::string, std::string>* sha256_cache = nullptr);

/// Appends entries to manifest.jsonl. Opened with O_APPEND; a torn last line left by a crash is
/// closed with '\n' first so the next entry starts on its own line. Not thread-safe: one writer.
class ManifestWriter {
 public:
  explicit ManifestWriter(std::string path);
  ManifestWriter(const ManifestWriter&) = delete;
  ManifestWriter& operator=(const ManifestWriter&) = delete;
  ~ManifestWriter();

  /// One write(2) of the entry's line, then fsync. Throws std::runtime_error naming the file.
  void append(const ManifestEntry& entry);
  /// The entries' lines with one write(2) and one fsync: a group commit. A crash mid-way
  /// leaves whole lines for a prefix of the group and at most one torn last line.
  void append(const std::vector<ManifestEntry>& entries);
  /// Whole JSON lines (each ending in '\n', e.g. another rank's log) with one write(2) and one
  /// fsync.
  void append_lines(std::string_view lines);
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

/// Removes the temporary files (".<name>.tmp.<pid>.<n>", see atomic_file.hpp) that a killed
/// process left below `dir`, i.e. those whose pid is not a live process on this host. Returns
/// how many were removed. Output folders must not be shared by processes on several hosts.
std::size_t remove_stale_temporaries(const std::string& dir);

}  // namespace astroflow
