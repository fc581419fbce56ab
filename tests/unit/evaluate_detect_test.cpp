// evaluate_detect / evaluate_segment on small hand-made catalogs and maps whose metrics were
// worked out by hand (the numbers in the comments), plus one run of the real CLI on a
// simulated field.
#include "astroflow/evaluate_detect.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "astroflow/error.hpp"
#include "astroflow/evaluate_classify.hpp"
#include "astroflow/evaluate_segment.hpp"
#include "cli_runner.hpp"
#include "temp_dir.hpp"

namespace astroflow {
namespace {

using test::TempDir;
using test::write_text_file;

// Eight truth objects:
//   ID  x    y    MAG   TYPE    SNR  R_EFF  matched by
//   1   10   10   20.2  galaxy  100  3      a (0.5 px)
//   2   14   10   20.7  galaxy   50  3      b (1.5 px; b is 2.5 px from 1)
//   3   50   50   21.3  star     40  nan    c (1.414 px; d at 1.5 px loses)
//   4   80   80   24.9  galaxy    5  2      -
//   5  100   20   21.1  star     15  nan    e (1 px)
//   6  120  120   22.0  galaxy   30  4      f (1 px)
//   7  126  120   22.2  galaxy   25  2      -
//   8   20   10   23.0  galaxy   12  2      -
// Close pairs (separation < 2 x the larger R_EFF, both S/N >= 10): 1-2 (4 < 6, resolved) and
// 6-7 (6 < 8, not resolved); 2-8 is 6 px apart = 2 x 3: not closer, not a pair.
const char* kTruthCsv =
    "ID,X_IMAGE,Y_IMAGE,MAG,TYPE,SNR,R_EFF\n"
    "1,10,10,20.2,galaxy,100,3\n"
    "2,14,10,20.7,galaxy,50,3\n"
    "3,50,50,21.3,star,40,nan\n"
    "4,80,80,24.9,galaxy,5,2\n"
    "5,100,20,21.1,star,15,nan\n"
    "6,120,120,22.0,galaxy,30,4\n"
    "7,126,120,22.2,galaxy,25,2\n"
    "8,20,10,23.0,galaxy,12,2\n";

// Seven detections; d and g are spurious, g lies on a cosmic ray and has a failed MAG_AUTO.
// Star/galaxy for truth S/N > 20: 1 ok (0.1), 2 wrong (0.9 says star), 3 ok (0.95), 6 ok (0.1);
// truth 5 (S/N 15) is left out: 3 of 4.
const char* kDetCsv =
    "NUMBER,X_IMAGE,Y_IMAGE,MAG_AUTO,CLASS_STAR\n"
    "1,10.5,10,20.3,0.1\n"     // a
    "2,12.5,10,20.8,0.9\n"     // b
    "3,51,51,21.2,0.95\n"      // c
    "4,51.5,50,23.1,0.2\n"     // d
    "5,100,21,21.4,0.3\n"      // e
    "6,121,120,22.1,0.1\n"     // f
    "7,200,200.5,99.0,0.5\n";  // g

const char* kArtifactsCsv =
    "ID,TYPE,X_IMAGE,Y_IMAGE,X_END,Y_END,FLUX\n"
    "1,cosmic_ray,195,200,205,200,10\n"
    "2,hot_pixel,300,300,300,300,5\n";

Catalog csv(const TempDir& dir, const std::string& name, const std::string& text) {
  write_text_file(dir / name, text);
  return read_catalog_file(dir / name);
}

TEST(EvaluateDetect, HandComputedMetrics) {
  TempDir dir("evaldet");
  const Catalog truth = csv(dir, "t.csv", kTruthCsv);
  const Catalog det = csv(dir, "d.csv", kDetCsv);
  const Catalog art = csv(dir, "a.csv", kArtifactsCsv);
  const DetectEvaluation e = evaluate_detect(det, truth, &art);
  EXPECT_EQ(e.truth_rows, 8U);
  EXPECT_EQ(e.detections, 7U);
  EXPECT_EQ(e.matched, 5U);
  EXPECT_EQ(e.spurious, 2U);
  EXPECT_TRUE(e.artifacts_given);
  EXPECT_EQ(e.spurious_on_artifacts, 1U);
  EXPECT_DOUBLE_EQ(e.purity, 5.0 / 7.0);
  EXPECT_DOUBLE_EQ(e.median_offset_pix, 1.0);  // 0.5 1 1 1.414 1.5

  // Bins: [20,20.5) 1/1 | 1 det ok; [20.5,21) 1/1 | 1 ok; [21,21.5) 2/2 | c, e ok;
  // [22,22.5) 1/2 | f ok; [23,23.5) 0/1 | d spurious; [24.5,25) 0/1 | none. g (99) unbinned.
  ASSERT_EQ(e.bins.size(), 6U);
  const double lo[] = {20.0, 20.5, 21.0, 22.0, 23.0, 24.5};
  const std::size_t nt[] = {1, 1, 2, 2, 1, 1};
  const std::size_t mt[] = {1, 1, 2, 1, 0, 0};
  const std::size_t nd[] = {1, 1, 2, 1, 1, 0};
  const std::size_t md[] = {1, 1, 2, 1, 0, 0};
  for (std::size_t b = 0; b < 6; ++b) {
    EXPECT_DOUBLE_EQ(e.bins[b].mag_min, lo[b]) << b;
    EXPECT_DOUBLE_EQ(e.bins[b].mag_max, lo[b] + 0.5) << b;
    EXPECT_EQ(e.bins[b].truth, nt[b]) << b;
    EXPECT_EQ(e.bins[b].truth_matched, mt[b]) << b;
    EXPECT_EQ(e.bins[b].detections, nd[b]) << b;
    EXPECT_EQ(e.bins[b].detections_matched, md[b]) << b;
  }
  EXPECT_DOUBLE_EQ(e.bins[3].completeness, 0.5);
  EXPECT_DOUBLE_EQ(e.bins[4].purity, 0.0);
  EXPECT_TRUE(std::isnan(e.bins[5].purity));

  // S/N bins (lower edges 0 3 5 10 20 50 100): 5-10: ID4 0/1; 10-20: ID5 (star) found, ID8
  // not: 1/2, stars 1/1; 20-50: ID3 (star), ID6 found, ID7 not: 2/3, stars 1/1; 50-100: ID2 1/1;
  // >= 100: ID1 1/1.
  ASSERT_EQ(e.snr_bins.size(), 7U);
  const std::size_t st[] = {0, 0, 1, 2, 3, 1, 1};
  const std::size_t sm[] = {0, 0, 0, 1, 2, 1, 1};
  const std::size_t ss[] = {0, 0, 0, 1, 1, 0, 0};
  const std::size_t ssm[] = {0, 0, 0, 1, 1, 0, 0};
  for (std::size_t b = 0; b < 7; ++b) {
    EXPECT_EQ(e.snr_bins[b].truth, st[b]) << b;
    EXPECT_EQ(e.snr_bins[b].truth_matched, sm[b]) << b;
    EXPECT_EQ(e.snr_bins[b].stars, ss[b]) << b;
    EXPECT_EQ(e.snr_bins[b].stars_matched, ssm[b]) << b;
  }
  EXPECT_DOUBLE_EQ(e.snr_bins[2].snr_min, 5.0);
  EXPECT_DOUBLE_EQ(e.snr_bins[2].snr_max, 10.0);
  EXPECT_TRUE(std::isinf(e.snr_bins[6].snr_max));
  EXPECT_DOUBLE_EQ(e.snr_bins[4].completeness, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(e.snr_bins[3].star_completeness, 1.0);
  EXPECT_TRUE(std::isnan(e.snr_bins[0].completeness));

  ASSERT_TRUE(e.class_measured);
  EXPECT_EQ(e.class_count, 4U);
  EXPECT_EQ(e.class_correct, 3U);
  EXPECT_DOUBLE_EQ(e.class_accuracy, 0.75);
  EXPECT_EQ(e.class_stars, 1U);
  EXPECT_EQ(e.class_stars_correct, 1U);
  EXPECT_EQ(e.class_galaxies, 3U);
  EXPECT_EQ(e.class_galaxies_correct, 2U);

  EXPECT_EQ(e.blend_pairs, 2U);
  EXPECT_EQ(e.blend_resolved, 1U);
  EXPECT_DOUBLE_EQ(e.blend_success, 0.5);

  const nlohmann::json j = nlohmann::json::parse(to_json(e));
  EXPECT_EQ(j["matched"], 5);
  EXPECT_EQ(j["spurious_on_artifacts"], 1);
  EXPECT_EQ(j["bins"].size(), 6U);
  EXPECT_TRUE(j["bins"][5]["purity"].is_null());
  EXPECT_DOUBLE_EQ(j["star_galaxy"]["accuracy"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(j["deblending"]["success"].get<double>(), 0.5);
  EXPECT_EQ(j["snr_bins"][4]["truth_matched"], 2);
  EXPECT_TRUE(j["snr_bins"][6]["snr_max"].is_null());
  EXPECT_NE(to_text(e).find("accuracy 75.00% of 4"), std::string::npos) << to_text(e);
}

TEST(EvaluateDetect, OptionsChangeTheAnswer) {
  TempDir dir("evaldet2");
  const Catalog truth = csv(dir, "t.csv", kTruthCsv);
  const Catalog det = csv(dir, "d.csv", kDetCsv);
  DetectEvalOptions o;
  o.match_radius_pix = 1.2;  // b (1.5), c (1.414) no longer match; d (1.5) neither
  o.class_threshold = 0.92;  // b (0.9) now says galaxy
  o.blend_snr_min = 60.0;    // no pair has both members at S/N >= 60
  const DetectEvaluation e = evaluate_detect(det, truth, nullptr, o);
  EXPECT_FALSE(e.artifacts_given);
  EXPECT_EQ(e.matched, 3U);      // a, e, f
  EXPECT_EQ(e.class_count, 2U);  // truth 1 and 6
  EXPECT_EQ(e.class_correct, 2U);
  EXPECT_EQ(e.blend_pairs, 0U);
  EXPECT_TRUE(std::isnan(e.blend_success));
}

TEST(EvaluateDetect, MatchingIsOneToOneNearestFirst) {
  // Detection 0 is 0.9 from truth 0 and 0.6 from truth 1; detection 1 is 0.1 from truth 1.
  // Nearest first: (d1, t1) 0.1, then d0 can only take t0 (0.9).
  const PositionMatch m = match_positions({0.0, 1.5}, {0.0, 0.0}, {0.9, 1.6}, {0.0, 0.0}, 2.0);
  EXPECT_EQ(m.det_to_truth, (std::vector<int>{0, 1}));
  EXPECT_EQ(m.truth_to_det, (std::vector<int>{0, 1}));
  // Two detections, one truth: the nearer wins, the other is unmatched.
  const PositionMatch n = match_positions({5.0}, {5.0}, {6.5, 5.2}, {5.0, 5.0}, 2.0);
  EXPECT_EQ(n.det_to_truth, (std::vector<int>{-1, 0}));
  EXPECT_TRUE(std::isnan(n.distance_pix[0]));
  EXPECT_NEAR(n.distance_pix[1], 0.2, 1e-12);
}

TEST(EvaluateDetect, NoClassColumnIsSkippedWithANote) {
  TempDir dir("evaldet3");
  const Catalog truth = csv(dir, "t.csv", kTruthCsv);
  const Catalog det = csv(dir, "d.csv", "X_IMAGE,Y_IMAGE\n10,10\n");
  const DetectEvaluation e = evaluate_detect(det, truth, nullptr);
  EXPECT_FALSE(e.class_measured);
  EXPECT_NE(e.class_note.find("CLASS_STAR"), std::string::npos);
  EXPECT_FALSE(e.has_det_mag);
  EXPECT_NE(to_text(e).find("star/galaxy: skipped"), std::string::npos);
  EXPECT_THROW((void)evaluate_detect(truth, csv(dir, "x.csv", "X,Y\n1,1\n"), nullptr), FatalError);
}

// A reference catalog (SExtractor's, say) with its segmentation map, each object a 15 x 15
// square of its ID around it:
//   ID  x    y    FLUX_AUTO  detections on its pixels (x, y, FLUX_AUTO)       split?
//   1   20   20   200        (17,20,100) (23,20,100): centre (20,20), sum 200   yes, 2
//   2   60   20   100        (57,20,90) (66,20,10): centre x 57.9, 2.1 px off   no
//   3   20   60   1000       (17,60,50) (23,60,50): sum 100, 0.1 of 1000        no (yes at x20)
//   4   60   60   50         (63,60,50): one detection                          no
//   5  100  100   30         (100.5,100,30): matched                            -
//   6   20  100   300        (17,100) (23,100) (20,103), 100 each: centre 1 px  yes, 3
const char* kSplitTruthCsv =
    "ID,X_IMAGE,Y_IMAGE,MAG,FLUX_AUTO\n"
    "1,20,20,19,200\n"
    "2,60,20,20,100\n"
    "3,20,60,17.5,1000\n"
    "4,60,60,20.7,50\n"
    "5,100,100,21.3,30\n"
    "6,20,100,18.8,300\n";
const char* kSplitDetCsv =
    "X_IMAGE,Y_IMAGE,FLUX_AUTO\n"
    "17,20,100\n23,20,100\n"
    "57,20,90\n66,20,10\n"
    "17,60,50\n23,60,50\n"
    "63,60,50\n"
    "100.5,100,30\n"
    "17,100,100\n23,100,100\n20,103,100\n";

cv::Mat split_segmap() {
  cv::Mat seg(128, 128, CV_32S, cv::Scalar(0));
  const std::vector<cv::Point> at = {{20, 20}, {60, 20}, {20, 60}, {60, 60}, {100, 100}, {20, 100}};
  for (std::size_t k = 0; k < at.size(); ++k) {
    // FITS pixel (x, y) is column x - 1, row y - 1.
    seg(cv::Rect(at[k].x - 1 - 7, at[k].y - 1 - 7, 15, 15)).setTo(static_cast<int>(k + 1));
  }
  return seg;
}

TEST(EvaluateDetect, SplitsAreCountedOnTheTruthSegmentationMap) {
  TempDir dir("evaldet5");
  const Catalog truth = csv(dir, "t.csv", kSplitTruthCsv);
  const Catalog det = csv(dir, "d.csv", kSplitDetCsv);
  const DetectEvaluation plain = evaluate_detect(det, truth, nullptr);
  EXPECT_FALSE(plain.split_measured);
  EXPECT_EQ(nlohmann::json::parse(to_json(plain))["split"], nullptr);

  const DetectEvaluation e = evaluate_detect(det, truth, nullptr, {}, split_segmap());
  EXPECT_EQ(e.matched, 1U);
  ASSERT_TRUE(e.split_measured);
  EXPECT_EQ(e.split_unmatched, 5U);
  EXPECT_EQ(e.split_resolved, 2U);
  EXPECT_EQ(e.split_components, (std::vector<std::size_t>{0, 0, 1, 1}));
  const nlohmann::json j = nlohmann::json::parse(to_json(e));
  EXPECT_EQ(j["split"]["matched_or_split"], 3);
  EXPECT_NE(to_text(e).find("2 of the 5 unmatched truth rows; matched or split: 3 of 6"),
            std::string::npos)
      << to_text(e);

  DetectEvalOptions wide;
  wide.split_flux_factor = 20.0;  // truth 3's 0.1 is now close enough
  EXPECT_EQ(evaluate_detect(det, truth, nullptr, wide, split_segmap()).split_resolved, 3U);
  // The same map as floats (a FITS map read back as BITPIX -32) gives the same answer.
  cv::Mat as_float;
  split_segmap().convertTo(as_float, CV_32F);
  EXPECT_EQ(evaluate_detect(det, truth, nullptr, {}, as_float).split_resolved, 2U);
  // A missing map names its path.
  write_text_file(dir / "t.csv", kSplitTruthCsv);
  write_text_file(dir / "d.csv", kSplitDetCsv);
  try {
    (void)evaluate_detect_files(dir / "d.csv", dir / "t.csv", {}, "none", dir / "nope.fits");
    FAIL() << "no error for a missing segmentation map";
  } catch (const FatalError& err) {
    EXPECT_NE(std::string(err.what()).find("nope.fits"), std::string::npos) << err.what();
  }
}

// Crowding: stars of S/N > 20 by the distance to their nearest truth neighbour of S/N >= 5.
//   1, 2  stars 2 px apart (bin 0-3); 1 matched, 2 not
//   3     star 6 px from galaxy 4 of S/N 8 (bin 5-7), matched
//   5     star 1 px from star 6 of S/N 3 (too faint to count), nothing else within 15 px:
//         the open bin, not matched
//   7     galaxy of S/N 50 (not a star); 8 star of S/N 12 (too faint to be scored)
const char* kCrowdTruthCsv =
    "ID,X_IMAGE,Y_IMAGE,MAG,TYPE,SNR,R_EFF\n"
    "1,10,10,20,star,50,nan\n"
    "2,12,10,20,star,40,nan\n"
    "3,50,50,21,star,30,nan\n"
    "4,56,50,24,galaxy,8,2\n"
    "5,100,100,21,star,25,nan\n"
    "6,101,100,26,star,3,nan\n"
    "7,200,200,20,galaxy,50,3\n"
    "8,150,150,23,star,12,nan\n";
const char* kCrowdDetCsv =
    "NUMBER,X_IMAGE,Y_IMAGE\n"
    "1,10,10.5\n"
    "2,50.5,50\n"
    "3,200,200\n";

TEST(EvaluateDetect, CrowdingBinsStarsByTheirNearestCountedNeighbour) {
  TempDir dir("evaldet6");
  const DetectEvaluation e =
      evaluate_detect(csv(dir, "d.csv", kCrowdDetCsv), csv(dir, "t.csv", kCrowdTruthCsv), nullptr);
  ASSERT_EQ(e.crowd_bins.size(), 6U);
  const std::vector<std::size_t> stars = {2, 0, 1, 0, 0, 1};
  const std::vector<std::size_t> matched = {1, 0, 1, 0, 0, 0};
  for (std::size_t b = 0; b < stars.size(); ++b) {
    EXPECT_EQ(e.crowd_bins[b].stars, stars[b]) << "bin " << b;
    EXPECT_EQ(e.crowd_bins[b].stars_matched, matched[b]) << "bin " << b;
  }
  EXPECT_DOUBLE_EQ(e.crowd_bins[0].completeness, 0.5);
  EXPECT_TRUE(std::isnan(e.crowd_bins[1].completeness));
  EXPECT_TRUE(std::isinf(e.crowd_bins[5].dist_max));
  const nlohmann::json j = nlohmann::json::parse(to_json(e));
  EXPECT_EQ(j["crowding"]["bins"][2]["stars_matched"], 1);
  EXPECT_NE(to_text(e).find("crowding: stars of truth S/N > 20"), std::string::npos) << to_text(e);

  // Star 6 counts as a neighbour from S/N 3 on: star 5 moves to the 0-3 bin.
  DetectEvalOptions faint;
  faint.crowd_neighbour_snr = 3.0;
  const DetectEvaluation f = evaluate_detect(csv(dir, "d.csv", kCrowdDetCsv),
                                             csv(dir, "t.csv", kCrowdTruthCsv), nullptr, faint);
  EXPECT_EQ(f.crowd_bins[0].stars, 3U);
  EXPECT_EQ(f.crowd_bins[5].stars, 0U);
  // Edges must start at 0 and increase.
  DetectEvalOptions bad;
  bad.crowd_edges_pix = {1.0, 2.0};
  EXPECT_THROW((void)evaluate_detect(csv(dir, "d.csv", kCrowdDetCsv),
                                     csv(dir, "t.csv", kCrowdTruthCsv), nullptr, bad),
               FatalError);
}

TEST(EvaluateDetect, MergedCatalogNeedsAFile) {
  TempDir dir("evaldet4");
  write_text_file(dir / "t.truth.csv", kTruthCsv);
  write_text_file(dir / "m.csv",
                  "FILE,X_IMAGE,Y_IMAGE\n/o/a.fits,10,10\n/o/b.fits,50,50\n/o/a.fits,14,10\n");
  EXPECT_THROW((void)evaluate_detect_files(dir / "m.csv", dir / "t.truth.csv"), FatalError);
  DetectEvalOptions o;
  o.file = "a.fits";
  const DetectEvaluation e = evaluate_detect_files(dir / "m.csv", dir / "t.truth.csv", o);
  EXPECT_EQ(e.detections, 2U);
  EXPECT_EQ(e.matched, 2U);
  o.file = "c.fits";
  EXPECT_THROW((void)evaluate_detect_files(dir / "m.csv", dir / "t.truth.csv", o), FatalError);
  EXPECT_EQ(truth_sibling("/x/f.truth.fits", ".truthseg.fits"), "/x/f.truthseg.fits");
  EXPECT_EQ(truth_sibling("/x/f.truth.csv", ".artifacts.fits"), "/x/f.artifacts.fits");
  EXPECT_EQ(truth_sibling("/x/f.csv", ".truthseg.fits"), "");
}

// 8x6 maps (rows y, columns x; 1-based FITS x = column + 1).
//   truth 1 at (2,2): rows 0-2, cols 0-2 (9 px)     detection 5: rows 0-2, cols 0-3 (12 px)
//                                                    -> IoU 9/12 = 0.75
//   truth 2 at (6,3): rows 1-3, cols 5-6 (6 px)     detection 7: rows 2-3, cols 5-6 (4 px)
//                                                    -> IoU 4/6
//   truth 3 at (1,6): row 5, col 0 (1 px)           detection 11: no pixel -> IoU 0
//   truth 4 at (8,6): no footprint                  detection 12: matched, not scored
//   detection 9 at (4,6): spurious
// IoU sorted {0, 2/3, 3/4}: median 2/3, q1 1/3, q3 17/24, mean 17/36, >= 0.5: 2/3.
TEST(EvaluateSegment, HandComputedFootprintIouAndPixelClasses) {
  TempDir dir("evalseg");
  const Catalog truth =
      csv(dir, "t.csv", "ID,X_IMAGE,Y_IMAGE,MAG\n1,2,2,20\n2,6,3,21\n3,1,6,22\n4,8,6,23\n");
  const Catalog det =
      csv(dir, "d.csv", "NUMBER,X_IMAGE,Y_IMAGE\n5,2.2,2\n7,6,3.5\n9,4,6\n11,1,6\n12,8,6\n");
  cv::Mat tseg(6, 8, CV_32S, cv::Scalar(0));
  tseg(cv::Rect(0, 0, 3, 3)).setTo(1);
  tseg(cv::Rect(5, 1, 2, 3)).setTo(2);
  tseg.at<int>(5, 0) = 3;
  cv::Mat seg(6, 8, CV_32F, cv::Scalar(0));  // float, as an image read through CFITSIO
  seg(cv::Rect(0, 0, 4, 3)).setTo(5);
  seg(cv::Rect(5, 2, 2, 2)).setTo(7);
  seg.at<float>(5, 3) = 9;

  // Class maps: truth 1 region = 1, truth 2 region = 4, rest 0. Predicted: three pixels of
  // region 1 say 2, two background pixels say 1. 48 px, 43 right; foreground 15, 12 right.
  cv::Mat tcls(6, 8, CV_32S, cv::Scalar(0));
  tcls(cv::Rect(0, 0, 3, 3)).setTo(1);
  tcls(cv::Rect(5, 1, 2, 3)).setTo(4);
  cv::Mat pcls = tcls.clone();
  pcls(cv::Rect(0, 0, 3, 1)).setTo(2);
  pcls.at<int>(5, 7) = 1;
  pcls.at<int>(4, 7) = 1;

  const SegmentEvaluation e = evaluate_segment(det, seg, truth, tseg, pcls, tcls);
  EXPECT_EQ(e.matched, 4U);
  EXPECT_EQ(e.objects, 3U);
  EXPECT_EQ(e.empty_detection, 1U);
  ASSERT_EQ(e.iou.size(), 3U);
  EXPECT_DOUBLE_EQ(e.iou[0], 0.75);
  EXPECT_DOUBLE_EQ(e.iou[1], 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(e.iou[2], 0.0);
  EXPECT_DOUBLE_EQ(e.iou_median, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(e.iou_q1, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(e.iou_q3, 17.0 / 24.0);
  EXPECT_DOUBLE_EQ(e.iou_mean, 17.0 / 36.0);
  EXPECT_DOUBLE_EQ(e.iou_above_half, 2.0 / 3.0);

  ASSERT_TRUE(e.class_measured);
  EXPECT_EQ(e.class_pixels, 48U);
  EXPECT_DOUBLE_EQ(e.pixel_accuracy, 43.0 / 48.0);
  EXPECT_EQ(e.foreground_pixels, 15U);
  EXPECT_DOUBLE_EQ(e.foreground_accuracy, 12.0 / 15.0);
  EXPECT_EQ(e.confusion.at(1).at(2), 3U);
  EXPECT_EQ(e.confusion.at(0).at(1), 2U);
  const nlohmann::json j = nlohmann::json::parse(to_json(e));
  EXPECT_EQ(j["pixel_classes"]["confusion"]["spheroid"]["disk"], 3);
  EXPECT_DOUBLE_EQ(j["iou"]["median"].get<double>(), 2.0 / 3.0);

  // Without class maps the metric is skipped; maps of another size are refused.
  const SegmentEvaluation no_cls = evaluate_segment(det, seg, truth, tseg, {}, {});
  EXPECT_FALSE(no_cls.class_measured);
  EXPECT_NE(to_text(no_cls).find("skipped"), std::string::npos);
  EXPECT_THROW((void)evaluate_segment(det, seg(cv::Rect(0, 0, 7, 6)), truth, tseg, {}, {}),
               FatalError);
}

// The real CLI on a simulated field: background + sources with a segmap, then evaluate
// detect and segment against the simulator's truth.
TEST(EvaluateDetect, CliScoresARunOnASimulatedField) {
  TempDir dir("evaldet-cli");
  const std::string sim = dir / "sim";
  const std::string in = dir / "in";
  ASSERT_EQ(test::run_cli({"simulate", "field", "--seed", "9103", "--size", "384", "--cosmics",
                           "20", "--hot-pixels", "0", "--output", sim})
                .exit_code,
            0);
  std::filesystem::create_directories(in);
  std::filesystem::copy_file(sim + "/field.fits", in + "/field.fits");
  write_text_file(dir / "c.yaml",
                  "output: {catalog: [fits], images: [segmap]}\n"
                  "stages:\n  - {plugin: background}\n  - {plugin: sources}\n");
  const test::CliResult run =
      test::run_cli({"run", dir / "c.yaml", "--input", in, "--output", dir / "out", "--quiet"});
  ASSERT_EQ(run.exit_code, 0) << run.all();

  const test::CliResult d =
      test::run_cli({"evaluate", "detect", "--catalog", dir / "out/field.cat.fits", "--truth",
                     sim + "/field.truth.fits", "--json", dir / "d.json"});
  ASSERT_EQ(d.exit_code, 0) << d.all();
  EXPECT_NE(d.out.find("completeness"), std::string::npos) << d.out;
  const nlohmann::json dj = nlohmann::json::parse(test::read_text_file(dir / "d.json"));
  EXPECT_GT(dj["matched"].get<int>(), 10) << dj.dump();
  // Cosmic rays are real detections of no truth object: the artifact table, found beside the
  // truth table, accounts for most spurious ones.
  ASSERT_FALSE(dj["spurious_on_artifacts"].is_null()) << dj.dump();
  const double on_artifacts = dj["spurious_on_artifacts"].get<double>();
  EXPECT_GE(on_artifacts, 1.0) << dj.dump();
  EXPECT_GT(dj["matched"].get<double>() / (dj["detections"].get<double>() - on_artifacts), 0.8)
      << dj.dump();
  EXPECT_FALSE(dj["star_galaxy"]["measured"].get<bool>());  // sources writes no CLASS_STAR

  const test::CliResult s =
      test::run_cli({"evaluate", "segment", "--catalog", dir / "out/field.cat.fits", "--segmap",
                     dir / "out/field.segmap.fits", "--truth", sim + "/field.truth.fits", "--json",
                     dir / "s.json"});
  ASSERT_EQ(s.exit_code, 0) << s.all();
  const nlohmann::json sj = nlohmann::json::parse(test::read_text_file(dir / "s.json"));
  EXPECT_GT(sj["objects"].get<int>(), 10) << sj.dump();
  EXPECT_GT(sj["iou"]["median"].get<double>(), 0.3) << sj.dump();
  EXPECT_LE(sj["iou"]["median"].get<double>(), 1.0);

  const test::CliResult bad =
      test::run_cli({"evaluate", "detect", "--catalog", dir / "out/nope.fits", "--truth",
                     sim + "/field.truth.fits"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("nope.fits"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace astroflow
