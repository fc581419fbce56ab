// TempDir: a fresh folder under $TMPDIR (or /tmp), removed with everything in it on destruction.
#pragma once

#include <filesystem>
#include <string>

namespace astroflow::test {

class TempDir {
 public:
  /// `tag` becomes part of the folder name, to tell leftovers apart.
  explicit TempDir(const std::string& tag = "test");
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  /// path() / relative, as a string.
  [[nodiscard]] std::string operator/(const std::string& relative) const;

 private:
  std::filesystem::path path_;
};

}  // namespace astroflow::test
