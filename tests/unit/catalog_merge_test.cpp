// Rebuilding the merged catalog from per-frame catalogs, and merging shard output folders:
// shard folders merged must give the same bytes as one folder holding every input.
#include "astroflow/catalog_merge.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "astroflow/atomic_file.hpp"
#include "astroflow/fits_io.hpp"
#include "astroflow/shard.hpp"
#include "cli_runner.hpp"
#include "temp_dir.hpp"

namespace astroflow {
namespace {

namespace fs = std::filesystem;

Catalog frame_catalog(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 100.0);
  const std::size_t n = 1 + seed % 4;
  std::vector<std::int32_t> number;
  std::vector<double> x, flux;
  for (std::size_t i = 0; i < n; ++i) {
    number.push_back(static_cast<std::int32_t>(i + 1));
    x.push_back(u(rng));
    flux.push_back(u(rng) * 10);
  }
  Catalog c;
  c.add_column<std::int32_t>("NUMBER") = number;
  c.add_column<double>("X_IMAGE", "pix") = x;
  c.add_column<double>("FLUX_AUTO", "count") = flux;
  c.resize(n);
  return c;
}

/// Writes the per-frame catalog of input `rel` into dir and appends its manifest entry.
void write_input(const std::string& dir, const std::string& rel, std::uint64_t seed,
                 RunReport& summary) {
  const std::string stem = rel.substr(0, rel.size() - 5);
  const std::string cat = stem + ".cat.fits";
  const Catalog c = frame_catalog(seed);
  write_fits_catalog((fs::path(dir) / cat).string(), c);
  ManifestEntry e;
  e.path = rel;
  e.config_sha256 = "cfg";
  e.frames = {{"0", cat, c.rows(), 100, 100, false}};
  e.outputs = {{cat, sha256_file((fs::path(dir) / cat).string())}};
  e.sources = c.rows();
  ManifestWriter((fs::path(dir) / "manifest.jsonl").string()).append(e);
  ++summary.files;
  ++summary.frames;
  summary.sources += c.rows();
}

TEST(CatalogMerge, ShardFoldersMergeToTheSingleRunBytes) {
  test::TempDir tmp("merge");
  std::vector<std::string> inputs;
  for (int i = 0; i < 30; ++i) {
    // Appending piecewise avoids GCC 12's false -Wrestrict on "literal" + std::string.
    std::string name = "n";
    name += std::to_string(i % 3);
    name += "/f";
    name += std::to_string(i);
    name += ".fits";
    inputs.push_back(std::move(name));
  }
  std::sort(inputs.begin(), inputs.end());
  const std::string single = tmp / "single";
  const std::string shard_dir[2] = {tmp / "s0", tmp / "s1"};
  RunReport one, part[2];
  for (RunReport* r : {&one, &part[0], &part[1]}) {
    r->config_sha256 = "cfg";
    r->astroflow_version = "9.9";
    r->plugins = {{"sources", "1.0", "/x/libastroflow-sources.so"}};
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    write_input(single, inputs[i], i, one);
    const int s = Shard{1, 2}.contains(inputs[i]) ? 1 : 0;
    write_input(shard_dir[s], inputs[i], i, part[s]);
  }
  ASSERT_GT(part[0].files, 0U);
  ASSERT_GT(part[1].files, 0U);
  for (int s = 0; s < 2; ++s)
    write_file_atomically(shard_dir[s] + "/summary.json", part[s].to_json());

  // The single folder's merged catalog, rebuilt from its own manifest in path order.
  std::vector<ManifestEntry> entries = read_manifest(single + "/manifest.jsonl");
  sort_entries_by_path(entries);
  const Catalog merged =
      rebuild_merged_catalog(entries, std::vector<std::string>(entries.size(), single));
  ASSERT_EQ(merged.rows(), one.sources);
  EXPECT_EQ(merged.columns()[0].name, "FILE");
  EXPECT_EQ(merged.columns()[1].name, "HDU");
  EXPECT_EQ(merged.get<std::string>("FILE").front(), inputs.front());
  write_merged_catalog(single, merged, {"fits", "csv"},
                       merged_catalog_header(one.astroflow_version, "cfg", one.plugins));

  MergeOptions opt;
  // Order of the folders on the command line must not matter.
  opt.shard_dirs = {shard_dir[1], shard_dir[0]};
  opt.output_dir = tmp / "merged";
  const RunReport r = merge_shard_outputs(opt);
  EXPECT_EQ(r.files, inputs.size());
  EXPECT_EQ(r.sources, one.sources);
  for (const char* f : {"catalog.fits", "catalog.csv"}) {
    EXPECT_EQ(test::read_text_file(single + "/" + f),
              test::read_text_file(opt.output_dir + "/" + f))
        << f;
  }
}

TEST(CatalogMerge, RefusesShardsOfDifferentConfigsOrOverlappingInputs) {
  test::TempDir tmp("merge");
  RunReport a, b;
  a.config_sha256 = "cfg";
  b.config_sha256 = "cfg";
  write_input(tmp / "a", "x.fits", 1, a);
  write_input(tmp / "b", "x.fits", 1, b);
  write_file_atomically(tmp / "a/summary.json", a.to_json());
  write_file_atomically(tmp / "b/summary.json", b.to_json());
  MergeOptions opt;
  opt.shard_dirs = {tmp / "a", tmp / "b"};
  opt.output_dir = tmp / "m";
  EXPECT_THROW((void)merge_shard_outputs(opt), FatalError);
  b.config_sha256 = "other";
  write_file_atomically(tmp / "b/summary.json", b.to_json());
  try {
    (void)merge_shard_outputs(opt);
    FAIL() << "different configs must be refused";
  } catch (const FatalError& e) {
    EXPECT_NE(std::string(e.what()).find("config sha256"), std::string::npos) << e.what();
  }
}

// The streamed merged catalog (no catalog held in memory) against the in-memory rebuild:
// frames with different column sets (an int column only in some, a string column of varying
// width, an empty frame), over several write chunks, give the same catalog.fits/csv bytes and
// the same report statistics.
TEST(CatalogMerge, StreamedCatalogEqualsTheInMemoryOneByteForByte) {
  test::TempDir tmp("merge-stream");
  const std::string dir = tmp / "run";
  fs::create_directories(dir);
  std::vector<ManifestEntry> entries;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 30.0);
  for (int i = 0; i < 700; ++i) {
    const std::size_t n = i == 3 ? 0 : 1 + static_cast<std::size_t>(i % 9);
    Catalog c;
    auto& number = c.add_column<std::int32_t>("NUMBER");
    auto& mag = c.add_column<float>("MAG_AUTO", "mag", "magnitude");
    number.resize(n);
    mag.resize(n);
    for (std::size_t k = 0; k < n; ++k) {
      number[k] = static_cast<std::int32_t>(k + 1);
      mag[k] = static_cast<float>(u(rng));
    }
    c.resize(n);
    if (i % 5 == 0) {
      auto& cls = c.add_column<std::string>("CLASS", "", "class name");
      for (std::size_t k = 0; k < n; ++k) cls[k] = std::string(1 + (k + i) % 7, 'a' + (k % 3));
    }
    if (i % 7 == 1) {
      auto& a = c.add_column<std::int32_t>("A_IMAGE", "pix");
      for (std::size_t k = 0; k < n; ++k) a[k] = static_cast<std::int32_t>(3 + k);
    }
    std::string rel = "f";
    rel += std::to_string(1000 + i);
    const std::string cat = rel + ".cat.fits";
    write_fits_catalog((fs::path(dir) / cat).string(), c);
    ManifestEntry e;
    e.path = rel + ".fits";
    e.frames = {{i % 2 == 0 ? "0" : "SCI,1", cat, c.rows(), 64, 64, false}};
    entries.push_back(std::move(e));
  }
  const std::vector<std::string> dirs(entries.size(), dir);
  const Header header = merged_catalog_header("9.9", "cfg", {});

  const std::string mem = tmp / "mem";
  const std::string streamed = tmp / "streamed";
  fs::create_directories(mem);
  fs::create_directories(streamed);
  const Catalog merged = rebuild_merged_catalog(entries, dirs);
  ASSERT_GT(merged.rows(), 2048u);  // more than one write chunk
  write_merged_catalog(mem, merged, {"fits", "csv"}, header);
  CatalogStats stats;
  stream_merged_catalog(entries, dirs, streamed, {"fits", "csv"}, header, &stats);
  for (const char* f : {"catalog.fits", "catalog.csv"})
    EXPECT_TRUE(test::read_text_file(mem + "/" + f) == test::read_text_file(streamed + "/" + f))
        << f;

  const CatalogStats ref = CatalogStats::of(merged);
  EXPECT_TRUE(stats.has_class);
  EXPECT_EQ(stats.class_counts, ref.class_counts);
  ASSERT_EQ(stats.plots.size(), 2u);  // MAG_AUTO, A_IMAGE
  ASSERT_EQ(ref.plots.size(), 2u);
  for (std::size_t i = 0; i < ref.plots.size(); ++i) {
    EXPECT_EQ(stats.plots[i].column, ref.plots[i].column);
    EXPECT_EQ(stats.plots[i].histogram.lo, ref.plots[i].histogram.lo);
    EXPECT_EQ(stats.plots[i].histogram.hi, ref.plots[i].histogram.hi);
    EXPECT_EQ(stats.plots[i].histogram.counts, ref.plots[i].histogram.counts);
  }
  // A_IMAGE is an int column missing from most frames: those rows count as 0.
  EXPECT_EQ(stats.plots[1].histogram.lo, 0.0);

  // Only one format: only that file.
  const std::string csv_only = tmp / "csv_only";
  fs::create_directories(csv_only);
  stream_merged_catalog(entries, dirs, csv_only, {"csv"}, header);
  EXPECT_FALSE(fs::exists(csv_only + "/catalog.fits"));
  EXPECT_TRUE(test::read_text_file(mem + "/catalog.csv") ==
              test::read_text_file(csv_only + "/catalog.csv"));
}

}  // namespace
}  // namespace astroflow
