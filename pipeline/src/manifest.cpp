#include "astroflow/manifest.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <unordered_map>

#include "astroflow/atomic_file.hpp"
#include "astroflow/plugin_registry.hpp"

namespace astroflow {
namespace fs = std::filesystem;

namespace {

std::runtime_error errno_error(const std::string& path, const std::string& what) {
  return std::runtime_error(path + ": " + what + ": " + std::strerror(errno));
}

void write_all(int fd, std::string_view text, const std::string& path) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw errno_error(path, "write failed");
    }
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

std::string ManifestEntry::to_json_line() const {
  // ordered_json: a fixed key order keeps lines diffable between runs.
  nlohmann::ordered_json j;
  j["path"] = path;
  j["size"] = size_bytes;
  j["mtime_ns"] = mtime_ns;
  if (!sha256.empty()) j["sha256"] = sha256;
  j["config_sha256"] = config_sha256;
  j["model_sha256"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : model_sha256) j["model_sha256"][k] = v;
  auto& outs = j["outputs"] = nlohmann::ordered_json::array();
  for (const ManifestOutput& o : outputs) outs.push_back({{"path", o.path}, {"sha256", o.sha256}});
  auto& frs = j["frames"] = nlohmann::ordered_json::array();
  for (const ManifestFrame& f : frames) {
    nlohmann::ordered_json fr = {{"hdu", f.hdu}, {"catalog", f.catalog}};
    if (f.catalog_row != 0) fr["catalog_row"] = f.catalog_row;  // 0 for per-frame catalogs
    fr["sources"] = f.sources;
    fr["width"] = f.width_pix;
    fr["height"] = f.height_pix;
    fr["failed"] = f.failed;
    frs.push_back(std::move(fr));
  }
  auto& fails = j["failures"] = nlohmann::ordered_json::array();
  for (const FailureRecord& r : failures) {
    fails.push_back({{"path", r.path}, {"hdu", r.hdu}, {"stage", r.stage}, {"reason", r.reason}});
  }
  j["counts"] = {{"frames", frames.size()}, {"sources", sources}};
  j["status"] = status;
  return j.dump() + "\n";
}

ManifestEntry ManifestEntry::from_json_line(const std::string& line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(std::string("not a JSON line: ") + e.what());
  }
  try {
    ManifestEntry e;
    e.path = j.at("path").get<std::string>();
    e.size_bytes = j.at("size").get<std::uint64_t>();
    e.mtime_ns = j.at("mtime_ns").get<std::int64_t>();
    e.sha256 = j.value("sha256", std::string());
    e.config_sha256 = j.at("config_sha256").get<std::string>();
    for (const auto& [k, v] : j.at("model_sha256").items())
      e.model_sha256[k] = v.get<std::string>();
    for (const auto& o : j.at("outputs"))
      e.outputs.push_back({o.at("path").get<std::string>(), o.at("sha256").get<std::string>()});
    for (const auto& f : j.at("frames")) {
      ManifestFrame mf;
      mf.hdu = f.at("hdu").get<std::string>();
      mf.catalog = f.at("catalog").get<std::string>();
      mf.catalog_row = f.value("catalog_row", std::size_t{0});
      mf.sources = f.at("sources").get<std::size_t>();
      mf.width_pix = f.at("width").get<int>();
      mf.height_pix = f.at("height").get<int>();
      mf.failed = f.at("failed").get<bool>();
      e.frames.push_back(std::move(mf));
    }
    for (const auto& r : j.at("failures")) {
      e.failures.push_back({r.at("path").get<std::string>(), r.at("hdu").get<std::string>(),
                            r.at("stage").get<std::string>(), r.at("reason").get<std::string>()});
    }
    e.sources = j.at("counts").at("sources").get<std::size_t>();
    e.status = j.at("status").get<std::string>();
    if (e.status != "ok" && e.status != "failed")
      throw std::invalid_argument("status must be ok or failed, got '" + e.status + "'");
    return e;
  } catch (const nlohmann::json::exception& ex) {
    throw std::invalid_argument(std::string("incomplete manifest entry: ") + ex.what());
  }
}

FileStamp stamp_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw errno_error(path, "cannot stat");
  FileStamp s;
  s.size_bytes = static_cast<std::uint64_t>(st.st_size);
  s.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return s;
}

std::map<std::string, std::string> model_hashes(const std::vector<ResolvedStage>& stages) {
  std::map<std::string, std::string> out;
  for (const ResolvedStage& rs : stages) {
    if (rs.plugin == nullptr || rs.config == nullptr) continue;
    for (const OptionSpec& spec : rs.plugin->schema().specs()) {
      if (spec.type != OptionType::kPath || !rs.options.has(spec.name)) continue;
      const std::string& file = rs.options.get_string(spec.name);
      if (file.empty()) continue;
      try {
        out[rs.config->name + "." + spec.name] = sha256_file(file);
      } catch (const std::exception& e) {
        throw FatalError("stage " + rs.config->name + ", option " + spec.name + ": " + e.what());
      }
    }
  }
  return out;
}

void for_each_manifest_line(const std::string& path,
                            const std::function<void(ManifestEntry&&)>& visit,
                            std::size_t* skipped_lines) {
  if (skipped_lines != nullptr) *skipped_lines = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ManifestEntry e;
    try {
      e = ManifestEntry::from_json_line(line);
    } catch (const std::invalid_argument&) {
      if (skipped_lines != nullptr) ++*skipped_lines;
      continue;
    }
    visit(std::move(e));
  }
}

std::vector<ManifestEntry> read_manifest(const std::string& path, std::size_t* skipped_lines) {
  std::vector<ManifestEntry> out;
  std::unordered_map<std::string, std::size_t> where;
  for_each_manifest_line(
      path,
      [&](ManifestEntry&& e) {
        if (auto it = where.find(e.path); it != where.end()) {
          out[it->second] = std::move(e);
        } else {
          where.emplace(e.path, out.size());
          out.push_back(std::move(e));
        }
      },
      skipped_lines);
  return out;
}

bool is_entry_current(const ManifestEntry& entry, const std::string& input_path,
                      const std::string& output_dir, const std::string& config_sha256,
                      const std::map<std::string, std::string>& model_sha256,
                      std::map<std::string, std::string>* sha256_cache) {
  if (entry.status != "ok" || entry.config_sha256 != config_sha256 ||
      entry.model_sha256 != model_sha256)
    return false;
  try {
    const FileStamp s = stamp_of(input_path);
    if (s.size_bytes != entry.size_bytes || s.mtime_ns != entry.mtime_ns) return false;
    for (const ManifestOutput& o : entry.outputs) {
      const std::string p = (fs::path(output_dir) / o.path).string();
      if (!fs::is_regular_file(p)) return false;
      if (sha256_cache == nullptr) {
        if (sha256_file(p) != o.sha256) return false;
        continue;
      }
      auto it = sha256_cache->find(p);
      if (it == sha256_cache->end()) it = sha256_cache->emplace(p, sha256_file(p)).first;
      if (it->second != o.sha256) return false;
    }
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

ManifestWriter::ManifestWriter(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw errno_error(path_, "cannot open manifest for appending");
  // A crash can leave a torn last line; without a newline the next entry would be glued to it
  // and both would be lost on reading.
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && st.st_size > 0) {
    const int rd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    char last = '\n';
    if (rd >= 0) {
      if (::pread(rd, &last, 1, st.st_size - 1) != 1) last = '\n';
      ::close(rd);
    }
    if (last != '\n') {
      try {
        write_all(fd_, "\n", path_);
      } catch (...) {
        ::close(fd_);
        throw;
      }
    }
  }
}

ManifestWriter::~ManifestWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void ManifestWriter::append(const ManifestEntry& entry) {
  // One write(2) per line: with O_APPEND the line lands whole at the end, or (on a crash mid-way)
  // as a torn last line that readers skip.
  write_all(fd_, entry.to_json_line(), path_);
  if (::fsync(fd_) != 0) throw errno_error(path_, "fsync failed");
}

void ManifestWriter::append(const std::vector<ManifestEntry>& entries) {
  if (entries.empty()) return;
  std::string lines;
  for (const ManifestEntry& e : entries) lines += e.to_json_line();
  append_lines(lines);
}

void ManifestWriter::append_lines(std::string_view lines) {
  if (lines.empty()) return;
  write_all(fd_, lines, path_);
  if (::fsync(fd_) != 0) throw errno_error(path_, "fsync failed");
}

std::size_t remove_stale_temporaries(const std::string& dir) {
  static const std::regex kTemp(R"(^\..+\.tmp\.([0-9]+)\.[0-9]+$)");
  std::size_t removed = 0;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  std::vector<fs::path> doomed;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] != '.') continue;  // cheap test first: outputs are many
    std::smatch m;
    if (!std::regex_match(name, m, kTemp)) continue;
    const long pid = std::stol(m[1].str());
    // kill(pid, 0) fails with ESRCH only when no such process exists.
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      doomed.push_back(it->path());
  }
  for (const fs::path& p : doomed) {
    std::error_code rm_ec;
    if (fs::remove(p, rm_ec)) ++removed;
  }
  return removed;
}

}  // namespace astroflow
