#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "astroflow/error.hpp"
#include "astroflow/pipeline.hpp"

namespace astroflow {
namespace fs = std::filesystem;

namespace {

bool hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool same_dir(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec) && !ec;
}

}  // namespace

std::vector<InputFile> list_input_files(const std::string& root, const std::string& pattern,
                                        bool recursive, const std::string& exclude_dir) {
  std::error_code ec;
  const fs::path root_path(root);
  const auto status = fs::status(root_path, ec);
  if (ec || !fs::exists(status)) throw FatalError("input '" + root + "' does not exist");
  std::vector<InputFile> out;
  if (fs::is_regular_file(status)) {
    out.push_back(InputFile{root, root_path.filename().string(), 0});
    return out;
  }
  if (!fs::is_directory(status)) throw FatalError("input '" + root + "' is not a file or folder");

  const bool have_exclude = !exclude_dir.empty() && fs::exists(exclude_dir, ec);
  auto visit = [&](const fs::directory_entry& entry) -> bool {  // false: skip subtree
    if (hidden(entry.path())) return false;
    if (entry.is_directory(ec)) {
      if (have_exclude && same_dir(entry.path(), exclude_dir)) return false;
      return true;
    }
    if (!entry.is_regular_file(ec)) return true;
    const std::string name = entry.path().filename().string();
    if (fnmatch(pattern.c_str(), name.c_str(), 0) != 0) return true;
    out.push_back(InputFile{entry.path().string(),
                            entry.path().lexically_relative(root_path).generic_string(), 0});
    return true;
  };
  if (recursive) {
    fs::recursive_directory_iterator it(root_path, fs::directory_options::skip_permission_denied,
                                        ec);
    if (ec) throw FatalError("cannot list input '" + root + "': " + ec.message());
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) throw FatalError("cannot list input '" + root + "': " + ec.message());
      if (!visit(*it) && it->is_directory(ec)) it.disable_recursion_pending();
    }
  } else {
    for (const auto& entry : fs::directory_iterator(root_path, ec)) {
      if (!entry.is_directory(ec)) visit(entry);
    }
    if (ec) throw FatalError("cannot list input '" + root + "': " + ec.message());
  }
  std::sort(out.begin(), out.end(),
            [](const InputFile& a, const InputFile& b) { return a.relative < b.relative; });
  for (std::size_t i = 0; i < out.size(); ++i) out[i].index = i;
  return out;
}

std::string output_stem(const InputFile& file, const Frame& frame, bool several_frames) {
  std::string stem = file.relative;
  for (const char* comp : {".gz", ".fz", ".bz2"}) {
    const std::string c = comp;
    if (stem.size() > c.size() && stem.compare(stem.size() - c.size(), c.size(), c) == 0) {
      stem.resize(stem.size() - c.size());
      break;
    }
  }
  for (const char* ext : {".fits", ".fit", ".fts", ".FITS", ".FIT", ".FTS"}) {
    const std::string e = ext;
    if (stem.size() > e.size() && stem.compare(stem.size() - e.size(), e.size(), e) == 0) {
      stem.resize(stem.size() - e.size());
      break;
    }
  }
  if (several_frames || frame.hdu_index != 0) {
    if (!frame.hdu_name.empty() && frame.hdu_name != "PRIMARY") {
      stem += "." + frame.hdu_name;
      if (frame.hdu_version > 0) stem += std::to_string(frame.hdu_version);
    } else {
      stem += ".HDU" + std::to_string(frame.hdu_index);
    }
  }
  return stem;
}

}  // namespace astroflow
