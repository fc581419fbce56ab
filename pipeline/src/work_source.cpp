#include "astroflow/work_source.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>

#include "astroflow/manifest.hpp"

namespace astroflow {
namespace fs = std::filesystem;

std::vector<InputFile> take_unit(const std::vector<InputFile>& files, std::size_t& pos,
                                 const UnitLimits& limits) {
  std::vector<InputFile> unit;
  const std::size_t max_files = std::max<std::size_t>(1, limits.max_files);
  while (pos < files.size() && unit.size() < max_files) {
    const InputFile& f = files[pos];
    std::error_code ec;
    const std::uintmax_t bytes = fs::file_size(f.path, ec);
    const bool large = !ec && bytes > limits.large_file_bytes;
    if (large && !unit.empty()) break;
    unit.push_back(f);
    ++pos;
    if (large) break;
  }
  return unit;
}

void ListWorkSource::begin(const std::vector<InputFile>& files, const UnitLimits& limits) {
  files_ = &files;
  pos_ = 0;
  limits_ = limits;
}

std::vector<InputFile> ListWorkSource::next() {
  return files_ == nullptr ? std::vector<InputFile>{} : take_unit(*files_, pos_, limits_);
}

std::string rank_manifest_path(const std::string& run_manifest, int rank) {
  const fs::path p(run_manifest);
  return (p.parent_path() / ("manifest.rank-" + std::to_string(rank) + ".jsonl")).string();
}

std::size_t fold_rank_manifests(const std::string& run_manifest, bool keep) {
  const fs::path dir = fs::path(run_manifest).parent_path();
  std::vector<fs::path> ranks;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir.empty() ? fs::path(".") : dir, ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("manifest.rank-", 0) == 0 && name.size() > 20 &&
        name.compare(name.size() - 6, 6, ".jsonl") == 0)
      ranks.push_back(it->path());
  }
  std::sort(ranks.begin(), ranks.end());
  std::size_t lines = 0;
  std::optional<ManifestWriter> writer;  // opened at the first line to fold
  for (const fs::path& rank : ranks) {
    if (keep) {
      std::ifstream in(rank, std::ios::binary);
      if (!in) throw std::runtime_error(rank.string() + ": cannot open for reading");
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      text.erase(text.find_last_of('\n') == std::string::npos ? 0 : text.find_last_of('\n') + 1);
      if (!text.empty()) {
        // The writer closes a torn last line of the main log first, so the first folded
        // line starts on its own line.
        if (!writer) writer.emplace(run_manifest);
        writer->append_lines(text);
        lines += static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
      }
    }
    // Removed only once its lines are durable in the main log: a crash in between leaves
    // duplicate lines, which readers resolve (the latest line per input wins, and they agree).
    if (!fs::remove(rank, ec) && ec) throw std::runtime_error(rank.string() + ": " + ec.message());
  }
  return lines;
}

}  // namespace astroflow
