// evaluate_classify on small hand-made catalogs whose accuracy, confusion matrix, recall,
// precision, S/N-bin accuracy and ECE were worked out by hand (the numbers in the comments).
#include "astroflow/evaluate_classify.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "astroflow/catalog.hpp"
#include "astroflow/error.hpp"
#include "cli_runner.hpp"
#include "temp_dir.hpp"

namespace astroflow {
namespace {

using test::TempDir;
using test::write_text_file;

// Six labels of three classes; one (i1) has a catalog row without a CLASS.
//   file  truth      S/N  predicted  P(sph, disk, irr)      correct  top-p ECE bin (x15)
//   s0    spheroid    10  spheroid   0.90 0.05 0.05         yes      13.5  -> 13
//   s1    spheroid    25  disk       0.30 0.62 0.08         no        9.3  ->  9
//   d0    disk        40  disk       0.06 0.88 0.06         yes      13.2  -> 13
//   d1    disk       150  irregular  0.20 0.35 0.45         no        6.75 ->  6
//   i0    irregular  300  irregular  0.00 0.05 0.95         yes      14.25 -> 14
//   i1    irregular   15  (none)     -                      no       -
const char* kLabelsCsv =
    "FILE,CLASS,CLASS_ID,SNR\n"
    "s0.fits,spheroid,0,10\n"
    "s1.fits,spheroid,0,25\n"
    "d0.fits,disk,1,40\n"
    "d1.fits,disk,1,150\n"
    "i0.fits,irregular,2,300\n"
    "i1.fits,irregular,2,15\n";

// Rows in another order, with folders in FILE (matching uses the file name), one extra row that
// has no label, and a quoted field.
const char* kCatalogCsv =
    "FILE,CLASS,CLASS_ID,P_SPHEROID,P_DISK,P_IRREGULAR\n"
    "/run/out/d1.fits,irregular,2,0.20,0.35,0.45\n"
    "/run/out/s0.fits,spheroid,0,0.90,0.05,0.05\n"
    "\"/run/out,x/extra.fits\",disk,1,0.1,0.8,0.1\n"
    "/run/out/i0.fits,irregular,2,0.00,0.05,0.95\n"
    "/run/out/s1.fits,disk,1,0.30,0.62,0.08\n"
    "/run/out/i1.fits,,-1,nan,nan,nan\n"
    "/run/out/d0.fits,disk,1,0.06,0.88,0.06\n";

ClassifyEvaluation evaluate_texts(const std::string& catalog, const std::string& labels) {
  TempDir dir("evalcls");
  write_text_file(dir / "catalog.csv", catalog);
  write_text_file(dir / "labels.csv", labels);
  return evaluate_classify_files(dir / "catalog.csv", dir / "labels.csv");
}

TEST(EvaluateClassify, HandComputedMetrics) {
  const ClassifyEvaluation e = evaluate_texts(kCatalogCsv, kLabelsCsv);
  ASSERT_EQ(e.class_names, (std::vector<std::string>{"spheroid", "disk", "irregular"}));
  EXPECT_EQ(e.labels, 6U);
  EXPECT_EQ(e.unclassified, 1U);
  EXPECT_DOUBLE_EQ(e.accuracy, 3.0 / 6.0);
  const std::vector<std::vector<std::size_t>> confusion = {{1, 1, 0}, {0, 1, 1}, {0, 0, 1}};
  EXPECT_EQ(e.confusion, confusion);
  // Recall over all labels of the class (i1, unclassified, counts against irregular).
  ASSERT_EQ(e.recall.size(), 3U);
  EXPECT_DOUBLE_EQ(e.recall[0], 0.5);
  EXPECT_DOUBLE_EQ(e.recall[1], 0.5);
  EXPECT_DOUBLE_EQ(e.recall[2], 0.5);
  // Precision per predicted column: spheroid 1/1, disk 1/2, irregular 1/2.
  ASSERT_EQ(e.precision.size(), 3U);
  EXPECT_DOUBLE_EQ(e.precision[0], 1.0);
  EXPECT_DOUBLE_EQ(e.precision[1], 0.5);
  EXPECT_DOUBLE_EQ(e.precision[2], 0.5);
  // S/N bins [0,20) {s0 ok, i1 wrong}, [20,30) {s1 wrong}, [30,50) {d0 ok}, [50,100) empty and
  // left out, [100,200) {d1 wrong}, [200,inf) {i0 ok}.
  ASSERT_EQ(e.snr_bins.size(), 5U);
  const double lo[] = {0, 20, 30, 100, 200};
  const std::size_t n[] = {2, 1, 1, 1, 1};
  const double acc[] = {0.5, 0.0, 1.0, 0.0, 1.0};
  for (std::size_t b = 0; b < 5; ++b) {
    EXPECT_DOUBLE_EQ(e.snr_bins[b].snr_min, lo[b]) << b;
    EXPECT_EQ(e.snr_bins[b].count, n[b]) << b;
    EXPECT_DOUBLE_EQ(e.snr_bins[b].accuracy, acc[b]) << b;
  }
  EXPECT_TRUE(std::isinf(e.snr_bins.back().snr_max));
  // ECE over the 5 rows with probabilities: bin 13 {0.90 ok, 0.88 ok} -> |1 - 0.89| = 0.11,
  // bin 9 {0.62 wrong} 0.62, bin 6 {0.45 wrong} 0.45, bin 14 {0.95 ok} 0.05:
  // (2 * 0.11 + 0.62 + 0.45 + 0.05) / 5 = 0.268.
  EXPECT_EQ(e.ece_bins, 15);
  EXPECT_NEAR(e.ece, 0.268, 1e-12);
}

TEST(EvaluateClassify, PerfectAndCalibratedGivesZeroEce) {
  // Every prediction right with top probability 1: accuracy 1, ECE 0, no unclassified.
  const ClassifyEvaluation e =
      evaluate_texts("FILE,CLASS,P_A,P_B\na.fits,a,1,0\nb.fits,b,0,1\n",
                     "FILE,CLASS,CLASS_ID,SNR\na.fits,a,0,50\nb.fits,b,1,50\n");
  EXPECT_DOUBLE_EQ(e.accuracy, 1.0);
  EXPECT_EQ(e.unclassified, 0U);
  EXPECT_DOUBLE_EQ(e.ece, 0.0);
  ASSERT_EQ(e.snr_bins.size(), 1U);
  EXPECT_EQ(e.snr_bins[0].count, 2U);
}

TEST(EvaluateClassify, MissingRowCountsAsWrongAndUnclassified) {
  const ClassifyEvaluation e =
      evaluate_texts("FILE,CLASS,P_A,P_B\na.fits,a,0.7,0.3\n",
                     "FILE,CLASS,CLASS_ID,SNR\na.fits,a,0,5\nb.fits,b,1,5\n");
  EXPECT_EQ(e.unclassified, 1U);
  EXPECT_DOUBLE_EQ(e.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(e.recall[0], 1.0);
  EXPECT_DOUBLE_EQ(e.recall[1], 0.0);
  // One row with probabilities: confidence 0.7, correct -> ECE |1 - 0.7| = 0.3.
  EXPECT_NEAR(e.ece, 0.3, 1e-12);
}

TEST(EvaluateClassify, WithoutProbabilityColumnsEceIsZeroButAccuracyCounts) {
  const ClassifyEvaluation e = evaluate_texts("FILE,CLASS\na.fits,b\nb.fits,b\n",
                                              "FILE,CLASS,CLASS_ID\na.fits,a,0\nb.fits,b,1\n");
  EXPECT_DOUBLE_EQ(e.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(e.ece, 0.0);
  EXPECT_TRUE(e.snr_bins.empty());  // no SNR column in the labels
}

TEST(EvaluateClassify, MissingColumnIsFatalAndNamed) {
  try {
    (void)evaluate_texts("FILE,P_A\na.fits,1\n", "FILE,CLASS,CLASS_ID\na.fits,a,0\n");
    FAIL() << "expected FatalError";
  } catch (const FatalError& err) {
    EXPECT_NE(std::string(err.what()).find("CLASS"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("catalog.csv"), std::string::npos) << err.what();
  }
  EXPECT_THROW((void)evaluate_texts("FILE,CLASS\na.fits,a\n", "FILE,CLASS\na.fits,a\n"),
               FatalError);
}

TEST(EvaluateClassify, ClassIdsMustBeZeroToKMinusOne) {
  EXPECT_THROW((void)evaluate_texts("FILE,CLASS\na.fits,a\n",
                                    "FILE,CLASS,CLASS_ID\na.fits,a,1\nb.fits,b,2\n"),
               FatalError);
}

TEST(EvaluateClassify, MissingFileIsFatalAndNamed) {
  TempDir dir("evalcls");
  write_text_file(dir / "labels.csv", kLabelsCsv);
  try {
    (void)evaluate_classify_files(dir / "nope.csv", dir / "labels.csv");
    FAIL() << "expected FatalError";
  } catch (const FatalError& err) {
    EXPECT_NE(std::string(err.what()).find("nope.csv"), std::string::npos) << err.what();
  }
}

TEST(EvaluateClassify, CsvRowWithWrongFieldCountIsFatalWithLine) {
  TempDir dir("evalcls");
  write_text_file(dir / "bad.csv", "FILE,CLASS\na.fits,a\nb.fits\n");
  try {
    (void)read_catalog_file(dir / "bad.csv");
    FAIL() << "expected FatalError";
  } catch (const FatalError& err) {
    EXPECT_NE(std::string(err.what()).find("bad.csv:3"), std::string::npos) << err.what();
  }
}

TEST(EvaluateClassify, JsonReportCarriesTheNumbers) {
  const ClassifyEvaluation e = evaluate_texts(kCatalogCsv, kLabelsCsv);
  const nlohmann::json j = nlohmann::json::parse(to_json(e));
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), 0.5);
  EXPECT_EQ(j["unclassified"].get<int>(), 1);
  EXPECT_DOUBLE_EQ(j["recall"]["disk"].get<double>(), 0.5);
  EXPECT_EQ(j["confusion"][1][2].get<int>(), 1);
  EXPECT_TRUE(j["accuracy_vs_snr"].back()["snr_max"].is_null());
  const std::string text = to_text(e);
  EXPECT_NE(text.find("accuracy 0.5000"), std::string::npos) << text;
  EXPECT_NE(text.find("irregular"), std::string::npos);
}

}  // namespace
}  // namespace astroflow
