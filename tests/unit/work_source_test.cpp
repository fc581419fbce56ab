// WorkSource pieces that do not need MPI: grouping inputs into units, and folding the manifest
// logs of other ranks (manifest.rank-<r>.jsonl) into manifest.jsonl.
#include "astroflow/work_source.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "astroflow/manifest.hpp"
#include "cli_runner.hpp"
#include "temp_dir.hpp"

namespace astroflow {
namespace {
namespace fs = std::filesystem;

std::vector<InputFile> inputs(const test::TempDir& dir, const std::vector<std::size_t>& bytes) {
  std::vector<InputFile> files;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    InputFile f;
    // Appended piecewise: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.
    f.relative = "f";
    f.relative += std::to_string(i);
    f.relative += ".fits";
    f.path = dir / f.relative;
    f.index = i;
    test::write_text_file(f.path, std::string(bytes[i], 'x'));
    files.push_back(std::move(f));
  }
  return files;
}

TEST(WorkSource, UnitsHoldUpToBatchFilesAndLargeFilesTravelAlone) {
  test::TempDir dir("work-units");
  const auto files = inputs(dir, {10, 10, 10, 500, 10, 10, 10, 10, 500, 500});
  ListWorkSource source;
  source.begin(files, UnitLimits{3, 100});
  std::vector<std::vector<std::size_t>> units;
  for (auto u = source.next(); !u.empty(); u = source.next()) {
    units.emplace_back();
    for (const InputFile& f : u) units.back().push_back(f.index);
  }
  const std::vector<std::vector<std::size_t>> expected = {{0, 1, 2}, {3}, {4, 5, 6}, {7}, {8}, {9}};
  EXPECT_EQ(units, expected);
  EXPECT_TRUE(source.next().empty());
}

ManifestEntry entry(const std::string& path) {
  ManifestEntry e;
  e.path = path;
  e.config_sha256 = "cfg";
  return e;
}

TEST(WorkSource, RankManifestsAreFoldedIntoTheRunManifestAndRemoved) {
  test::TempDir dir("work-fold");
  const std::string run = dir / "manifest.jsonl";
  ManifestWriter(run).append(entry("a.fits"));
  ManifestWriter(rank_manifest_path(run, 1)).append(entry("b.fits"));
  ManifestWriter(rank_manifest_path(run, 2)).append(entry("c.fits"));
  // A rank killed mid-write leaves a torn last line: it is dropped.
  test::write_text_file(rank_manifest_path(run, 2),
                        test::read_text_file(rank_manifest_path(run, 2)) + "{\"path\": \"d.fi");
  EXPECT_EQ(rank_manifest_path(run, 2), dir / "manifest.rank-2.jsonl");

  EXPECT_EQ(fold_rank_manifests(run), 2u);
  EXPECT_FALSE(fs::exists(rank_manifest_path(run, 1)));
  EXPECT_FALSE(fs::exists(rank_manifest_path(run, 2)));
  std::vector<std::string> paths;
  for (const ManifestEntry& e : read_manifest(run)) paths.push_back(e.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"a.fits", "b.fits", "c.fits"}));

  // A fresh run only removes them.
  ManifestWriter(rank_manifest_path(run, 1)).append(entry("e.fits"));
  EXPECT_EQ(fold_rank_manifests(run, false), 0u);
  EXPECT_FALSE(fs::exists(rank_manifest_path(run, 1)));
  EXPECT_EQ(read_manifest(run).size(), 3u);
}

}  // namespace
}  // namespace astroflow
