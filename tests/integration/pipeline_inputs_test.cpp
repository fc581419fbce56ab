// Input listing, output naming and progress lines of the pipeline.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "astroflow/error.hpp"
#include "astroflow/pipeline.hpp"
#include "astroflow/progress.hpp"
#include "cli_runner.hpp"
#include "temp_dir.hpp"

namespace astroflow {
namespace {
namespace fs = std::filesystem;

TEST(ListInputFiles, SortedRecursiveMatchingAndSkipsHiddenAndOutput) {
  test::TempDir dir("inputs");
  const fs::path root = dir.path() / "in";
  for (const char* d : {"b", "a/deep", ".hidden_dir", "out"}) fs::create_directories(root / d);
  for (const char* f : {"z.fits", "b/y.fits.gz", "a/deep/x.fits", "a/w.fit", "notes.txt",
                        ".tmp.fits", ".hidden_dir/v.fits", "out/old.cat.fits", "c.fits.fz"}) {
    test::write_text_file((root / f).string(), "x");
  }
  const auto files = list_input_files(root.string(), "*.fits*", true, (root / "out").string());
  std::vector<std::string> rel;
  for (const InputFile& f : files) rel.push_back(f.relative);
  EXPECT_EQ(rel, (std::vector<std::string>{"a/deep/x.fits", "b/y.fits.gz", "c.fits.fz", "z.fits"}));
  for (std::size_t i = 0; i < files.size(); ++i) EXPECT_EQ(files[i].index, i);
  EXPECT_EQ(files[1].path, (root / "b/y.fits.gz").string());

  const auto flat = list_input_files(root.string(), "*.fit*", false);
  std::vector<std::string> flat_rel;
  for (const InputFile& f : flat) flat_rel.push_back(f.relative);
  EXPECT_EQ(flat_rel, (std::vector<std::string>{"c.fits.fz", "z.fits"}));

  const auto single = list_input_files((root / "z.fits").string(), "*.nomatch", true);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].relative, "z.fits");

  EXPECT_THROW((void)list_input_files((root / "missing").string(), "*", true), FatalError);
}

TEST(OutputStem, StripsFitsExtensionsAndAddsHdu) {
  Frame primary;
  Frame sci2;
  sci2.hdu_index = 2;
  sci2.hdu_name = "SCI";
  sci2.hdu_version = 2;
  Frame unnamed;
  unnamed.hdu_index = 3;
  EXPECT_EQ(output_stem({"/d/a/img.fits", "a/img.fits", 0}, primary, false), "a/img");
  EXPECT_EQ(output_stem({"x.fits.gz", "x.fits.gz", 0}, primary, false), "x");
  EXPECT_EQ(output_stem({"x.fits.fz", "x.fits.fz", 0}, primary, false), "x");
  EXPECT_EQ(output_stem({"x.fit", "x.fit", 0}, primary, false), "x");
  EXPECT_EQ(output_stem({"hst.fits", "hst.fits", 0}, sci2, true), "hst.SCI2");
  EXPECT_EQ(output_stem({"m.fits", "m.fits", 0}, unnamed, true), "m.HDU3");
  EXPECT_EQ(output_stem({"m.fits", "m.fits", 0}, primary, true), "m.HDU0");
}

TEST(Progress, FormatsRatesAndEta) {
  ProgressSnapshot s;
  s.files_done = 10;
  s.files_total = 40;
  s.sources = 100;
  s.failures = 1;
  s.elapsed_s = 5.0;
  // 10 files / 5 s = 2 files/s; 100 sources / 5 s = 20/s; 30 files left at 2/s = 15 s.
  EXPECT_EQ(ProgressReporter::format(s),
            "10/40 files | 2.0 files/s | 20 sources/s | ETA 15 s | 1 failed");
}

TEST(Progress, PlainLinesAreThrottledToTheInterval) {
  char* buf = nullptr;
  std::size_t len = 0;
  std::FILE* mem = open_memstream(&buf, &len);
  ASSERT_NE(mem, nullptr);
  {
    ProgressReporter p(mem, false, 10.0);
    ProgressSnapshot s;
    s.files_total = 100;
    for (double t : {0.0, 3.0, 9.9, 10.5, 12.0, 25.0}) {
      s.elapsed_s = t;
      s.files_done += 1;
      p.update(s);
    }
    s.files_done = 100;
    s.elapsed_s = 26.0;
    p.finish(s);  // always printed
  }
  std::fclose(mem);
  const std::string out(buf, len);
  std::free(buf);
  std::size_t lines = 0;
  for (char c : out) lines += c == '\n' ? 1 : 0;
  EXPECT_EQ(lines, 4u) << out;  // t = 0, 10.5, 25 and the final line
  EXPECT_NE(out.find("astroflow: progress: 100/100 files"), std::string::npos) << out;
}

}  // namespace
}  // namespace astroflow
