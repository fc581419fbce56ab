// Manifest (resume log) and Shard (stable partition) tests.
#include "astroflow/manifest.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "astroflow/atomic_file.hpp"
#include "astroflow/error.hpp"
#include "astroflow/shard.hpp"
#include "cli_runner.hpp"
#include "temp_dir.hpp"

namespace astroflow {
namespace {

namespace fs = std::filesystem;
using test::read_text_file;
using test::TempDir;
using test::write_text_file;

ManifestEntry sample_entry(const std::string& path) {
  ManifestEntry e;
  e.path = path;
  e.size_bytes = 2880;
  e.mtime_ns = 1700000000123456789LL;
  e.config_sha256 = std::string(64, 'c');
  e.model_sha256 = {{"classify.model", std::string(64, 'm')}};
  e.outputs = {{"a.cat.fits", std::string(64, '1')}, {"a.segmap.fits", std::string(64, '2')}};
  e.frames = {{"0", "a.cat.fits", 3, 64, 48, false},
              {"1", "parts/t-000002.cat.fits", 2, 8, 8, false, 17}};
  e.failures = {{path, "1", "sources", "all pixels are NaN"}};
  e.sources = 3;
  e.status = "ok";
  return e;
}

TEST(Manifest, LineRoundTripsEveryField) {
  const ManifestEntry e = sample_entry("sub/a.fits");
  const std::string line = e.to_json_line();
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one entry must be exactly one line";
  const ManifestEntry r = ManifestEntry::from_json_line(line);
  EXPECT_EQ(r.path, e.path);
  EXPECT_EQ(r.size_bytes, e.size_bytes);
  EXPECT_EQ(r.mtime_ns, e.mtime_ns);
  EXPECT_EQ(r.config_sha256, e.config_sha256);
  EXPECT_EQ(r.model_sha256, e.model_sha256);
  ASSERT_EQ(r.outputs.size(), 2U);
  EXPECT_EQ(r.outputs[1].path, "a.segmap.fits");
  EXPECT_EQ(r.outputs[1].sha256, std::string(64, '2'));
  ASSERT_EQ(r.frames.size(), 2U);
  EXPECT_EQ(r.frames[0].catalog, "a.cat.fits");
  EXPECT_EQ(r.frames[0].catalog_row, 0U);
  EXPECT_EQ(r.frames[0].width_pix, 64);
  EXPECT_EQ(r.frames[0].height_pix, 48);
  EXPECT_EQ(r.frames[1].catalog, "parts/t-000002.cat.fits");
  EXPECT_EQ(r.frames[1].catalog_row, 17U);
  EXPECT_EQ(r.frames[1].sources, 2U);
  ASSERT_EQ(r.failures.size(), 1U);
  EXPECT_EQ(r.failures[0].reason, "all pixels are NaN");
  EXPECT_EQ(r.sources, 3U);
  EXPECT_EQ(r.to_json_line(), line);
}

TEST(Manifest, TornLastLineIsIgnoredAndLaterLinesWin) {
  TempDir dir("manifest");
  const std::string path = dir / "manifest.jsonl";
  ManifestEntry a = sample_entry("a.fits");
  ManifestEntry b = sample_entry("b.fits");
  ManifestEntry a2 = sample_entry("a.fits");
  a2.sources = 7;
  const std::string torn = sample_entry("c.fits").to_json_line().substr(0, 40);
  write_text_file(path, a.to_json_line() + b.to_json_line() + a2.to_json_line() + torn);
  std::size_t skipped = 0;
  const auto entries = read_manifest(path, &skipped);
  ASSERT_EQ(entries.size(), 2U);
  EXPECT_EQ(skipped, 1U);
  EXPECT_EQ(entries[0].path, "a.fits");
  EXPECT_EQ(entries[0].sources, 7U);
  EXPECT_EQ(entries[1].path, "b.fits");
}

TEST(Manifest, WriterAppendsAfterATornLineWithoutLosingTheNewEntry) {
  TempDir dir("manifest");
  const std::string path = dir / "manifest.jsonl";
  write_text_file(path, sample_entry("a.fits").to_json_line() + "{\"path\":\"b.fi");
  {
    ManifestWriter w(path);
    w.append(sample_entry("c.fits"));
  }
  {
    ManifestWriter w(path);  // reopening a clean file must not add blank lines
    w.append(sample_entry("d.fits"));
  }
  std::size_t skipped = 0;
  const auto entries = read_manifest(path, &skipped);
  ASSERT_EQ(entries.size(), 3U);
  EXPECT_EQ(entries[1].path, "c.fits");
  EXPECT_EQ(entries[2].path, "d.fits");
  EXPECT_EQ(skipped, 1U);
  const std::string text = read_text_file(path);
  EXPECT_EQ(text.find("\n\n"), std::string::npos);
}

TEST(Manifest, GroupAppendWritesEveryLineInOrder) {
  TempDir dir("manifest");
  const std::string path = dir / "manifest.jsonl";
  write_text_file(path, sample_entry("a.fits").to_json_line() + "{\"path\":\"torn");
  {
    ManifestWriter w(path);
    w.append(std::vector<ManifestEntry>{sample_entry("b.fits"), sample_entry("c.fits"),
                                        sample_entry("a.fits")});
    w.append(std::vector<ManifestEntry>{});  // an empty group writes nothing
  }
  std::size_t skipped = 0;
  const auto entries = read_manifest(path, &skipped);
  ASSERT_EQ(entries.size(), 3U);  // a.fits: the later line wins, in first-appearance order
  EXPECT_EQ(entries[0].path, "a.fits");
  EXPECT_EQ(entries[1].path, "b.fits");
  EXPECT_EQ(entries[2].path, "c.fits");
  EXPECT_EQ(skipped, 1U);
  const std::string text = read_text_file(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5);
  EXPECT_EQ(text.back(), '\n');
}

TEST(Manifest, MissingFileReadsAsEmpty) {
  TempDir dir("manifest");
  EXPECT_TRUE(read_manifest(dir / "none.jsonl").empty());
}

class ManifestCurrent : public ::testing::Test {
 protected:
  void SetUp() override {
    input = dir / "in.fits";
    write_text_file(input, std::string(2880, 'x'));
    fs::create_directories(dir / "out");
    write_text_file(dir / "out/in.cat.fits", "catalog bytes");
    entry.path = "in.fits";
    const FileStamp s = stamp_of(input);
    entry.size_bytes = s.size_bytes;
    entry.mtime_ns = s.mtime_ns;
    entry.config_sha256 = "cfg";
    entry.model_sha256 = {{"detect.model", "m1"}};
    entry.outputs = {{"in.cat.fits", sha256_hex("catalog bytes")}};
  }
  TempDir dir{"manifest"};
  std::string input;
  ManifestEntry entry;
  const std::map<std::string, std::string> models{{"detect.model", "m1"}};
};

TEST_F(ManifestCurrent, UnchangedInputConfigModelsAndOutputsAreCurrent) {
  EXPECT_TRUE(is_entry_current(entry, input, dir / "out", "cfg", models));
}

TEST_F(ManifestCurrent, ConfigOrModelChangeInvalidates) {
  EXPECT_FALSE(is_entry_current(entry, input, dir / "out", "cfg2", models));
  EXPECT_FALSE(is_entry_current(entry, input, dir / "out", "cfg", {{"detect.model", "m2"}}));
  EXPECT_FALSE(is_entry_current(entry, input, dir / "out", "cfg", {}));
}

TEST_F(ManifestCurrent, FailedStatusIsRedone) {
  entry.status = "failed";
  EXPECT_FALSE(is_entry_current(entry, input, dir / "out", "cfg", models));
}

TEST_F(ManifestCurrent, ChangedOrMissingOutputInvalidates) {
  write_text_file(dir / "out/in.cat.fits", "catalog bytez");
  EXPECT_FALSE(is_entry_current(entry, input, dir / "out", "cfg", models));
  fs::remove(dir / "out/in.cat.fits");
  EXPECT_FALSE(is_entry_current(entry, input, dir / "out", "cfg", models));
}

TEST_F(ManifestCurrent, ChangedInputInvalidates) {
  write_text_file(input, std::string(2881, 'x'));
  EXPECT_FALSE(is_entry_current(entry, input, dir / "out", "cfg", models));
  fs::remove(input);
  EXPECT_FALSE(is_entry_current(entry, input, dir / "out", "cfg", models));
}

TEST(Manifest, RemovesOnlyTemporariesOfDeadProcesses) {
  TempDir dir("manifest");
  fs::create_directories(dir / "sub");
  // pid 2^22 + 1 exceeds Linux's PID_MAX_LIMIT, so no live process can have it.
  const std::string dead = dir / "sub/.a.cat.fits.tmp.4194305.3";
  const std::string live = dir / (".b.cat.fits.tmp." + std::to_string(::getpid()) + ".0");
  const std::string normal = dir / "a.cat.fits";
  for (const auto& p : {dead, live, normal}) write_text_file(p, "x");
  EXPECT_EQ(remove_stale_temporaries(dir.path().string()), 1U);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(normal));
}

// --- Shard ------------------------------------------------------------------------------

TEST(Shard, Fnv1aMatchesPublishedVectors) {
  // Test vectors of the FNV reference (isthe.com/chongo/tech/comp/fnv): "" and "a".
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
}

TEST(Shard, ParsesAndRejects) {
  const Shard s = Shard::parse("3/8");
  EXPECT_EQ(s.index, 3U);
  EXPECT_EQ(s.count, 8U);
  EXPECT_EQ(s.str(), "3/8");
  for (const char* bad : {"", "3", "8/8", "1/0", "-1/4", "a/4", "1/4x", "1 /4"})
    EXPECT_THROW((void)Shard::parse(bad), FatalError) << bad;
}

TEST(Shard, PartitionIsCompleteAndDisjoint) {
  std::vector<std::string> paths;
  for (int i = 0; i < 500; ++i)
    paths.push_back("night" + std::to_string(i % 7) + "/img_" + std::to_string(i) + ".fits");
  constexpr int kN = 4;
  std::map<std::string, int> owner;
  std::vector<int> per_shard(kN, 0);
  for (int k = 0; k < kN; ++k) {
    const Shard s{static_cast<std::uint64_t>(k), kN};
    for (const auto& p : paths) {
      if (!s.contains(p)) continue;
      EXPECT_TRUE(owner.emplace(p, k).second) << p << " in two shards";
      ++per_shard[static_cast<std::size_t>(k)];
    }
  }
  EXPECT_EQ(owner.size(), paths.size());
  for (int n : per_shard) EXPECT_GT(n, 500 / kN / 2) << "shards should be roughly balanced";
  EXPECT_TRUE(Shard{}.contains("anything"));
}

}  // namespace
}  // namespace astroflow
