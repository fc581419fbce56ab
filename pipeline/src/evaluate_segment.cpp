#include "astroflow/evaluate_segment.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "astroflow/error.hpp"
#include "astroflow/evaluate_classify.hpp"
#include "json_number.hpp"
#include "label_map.hpp"

namespace astroflow {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Linear interpolation between order statistics (numpy's default percentile).
double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

std::string label_name(const SegmentEvalOptions& o, int label) {
  return label >= 0 && static_cast<std::size_t>(label) < o.class_names.size()
             ? o.class_names[static_cast<std::size_t>(label)]
             : std::to_string(label);
}

}  // namespace

SegmentEvaluation evaluate_segment(const Catalog& detections, const cv::Mat& segmap,
                                   const Catalog& truth, const cv::Mat& truthseg,
                                   const cv::Mat& classmap, const cv::Mat& truth_classmap,
                                   const SegmentEvalOptions& o) {
  SegmentEvaluation e;
  e.options = o;
  if (segmap.size() != truthseg.size()) {
    throw FatalError(fmt::format("segmap is {}x{} but the truth segmentation is {}x{}", segmap.cols,
                                 segmap.rows, truthseg.cols, truthseg.rows));
  }
  const std::vector<double> tx = numeric_column(truth, "X_IMAGE", "truth");
  const std::vector<double> ty = numeric_column(truth, "Y_IMAGE", "truth");
  const std::vector<double> tid = numeric_column(truth, "ID", "truth");
  const std::vector<double> dx = numeric_column(detections, "X_IMAGE", "catalog");
  const std::vector<double> dy = numeric_column(detections, "Y_IMAGE", "catalog");
  std::vector<double> dnum(detections.rows());
  if (detections.has("NUMBER")) {
    dnum = numeric_column(detections, "NUMBER", "catalog");
  } else {
    for (std::size_t j = 0; j < dnum.size(); ++j) dnum[j] = static_cast<double>(j + 1);
  }
  const PositionMatch m = match_positions(tx, ty, dx, dy, o.match_radius_pix);

  const cv::Mat seg = as_labels(segmap, "segmap");
  const cv::Mat tseg = as_labels(truthseg, "truth segmentation");
  std::unordered_map<int, std::size_t> det_area;
  std::unordered_map<int, std::size_t> truth_area;
  std::unordered_map<std::uint64_t, std::size_t> inter;
  auto pair_key = [](int d, int t) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(d)) << 32) |
           static_cast<std::uint32_t>(t);
  };
  for (int y = 0; y < seg.rows; ++y) {
    const int* s = seg.ptr<int>(y);
    const int* t = tseg.ptr<int>(y);
    for (int x = 0; x < seg.cols; ++x) {
      if (s[x] > 0) ++det_area[s[x]];
      if (t[x] > 0) ++truth_area[t[x]];
      if (s[x] > 0 && t[x] > 0) ++inter[pair_key(s[x], t[x])];
    }
  }
  for (std::size_t i = 0; i < tx.size(); ++i) {
    const int j = m.truth_to_det[i];
    if (j < 0) continue;
    ++e.matched;
    const auto id = static_cast<int>(std::lround(tid[i]));
    const auto ta = truth_area.find(id);
    if (ta == truth_area.end()) continue;
    const auto num_d = static_cast<int>(std::lround(dnum[static_cast<std::size_t>(j)]));
    const auto da = det_area.find(num_d);
    ++e.objects;
    if (da == det_area.end()) {
      ++e.empty_detection;
      e.iou.push_back(0.0);
      continue;
    }
    const auto it = inter.find(pair_key(num_d, id));
    const double in = it == inter.end() ? 0.0 : static_cast<double>(it->second);
    e.iou.push_back(in / (static_cast<double>(ta->second + da->second) - in));
  }
  std::vector<double> sorted = e.iou;
  std::sort(sorted.begin(), sorted.end());
  e.iou_median = quantile(sorted, 0.5);
  e.iou_q1 = quantile(sorted, 0.25);
  e.iou_q3 = quantile(sorted, 0.75);
  double sum = 0.0;
  std::size_t half = 0;
  for (double v : sorted) {
    sum += v;
    half += v >= 0.5 ? 1 : 0;
  }
  e.iou_mean = sorted.empty() ? kNaN : sum / static_cast<double>(sorted.size());
  e.iou_above_half =
      sorted.empty() ? kNaN : static_cast<double>(half) / static_cast<double>(sorted.size());

  if (classmap.empty() || truth_classmap.empty()) {
    e.class_note = classmap.empty() ? "no class map given" : "no truth class map";
    return e;
  }
  if (classmap.size() != truth_classmap.size()) {
    throw FatalError(fmt::format("class map is {}x{} but the truth class map is {}x{}",
                                 classmap.cols, classmap.rows, truth_classmap.cols,
                                 truth_classmap.rows));
  }
  e.class_measured = true;
  const cv::Mat pc = as_labels(classmap, "class map");
  const cv::Mat tc = as_labels(truth_classmap, "truth class map");
  std::size_t ok = 0;
  std::size_t fg_ok = 0;
  for (int y = 0; y < pc.rows; ++y) {
    const int* p = pc.ptr<int>(y);
    const int* t = tc.ptr<int>(y);
    for (int x = 0; x < pc.cols; ++x) {
      if (p[x] < 0 || t[x] < 0) continue;
      ++e.class_pixels;
      ++e.confusion[t[x]][p[x]];
      ok += p[x] == t[x] ? 1 : 0;
      if (t[x] != 0) {
        ++e.foreground_pixels;
        fg_ok += p[x] == t[x] ? 1 : 0;
      }
    }
  }
  e.pixel_accuracy =
      e.class_pixels == 0 ? kNaN : static_cast<double>(ok) / static_cast<double>(e.class_pixels);
  e.foreground_accuracy = e.foreground_pixels == 0 ? kNaN
                                                   : static_cast<double>(fg_ok) /
                                                         static_cast<double>(e.foreground_pixels);
  return e;
}

SegmentEvaluation evaluate_segment_files(const std::string& catalog_path,
                                         const std::string& segmap_path,
                                         const std::string& truth_path, std::string truthseg_path,
                                         const std::string& classmap_path,
                                         std::string truth_classmap_path,
                                         const SegmentEvalOptions& options) {
  if (truthseg_path.empty()) truthseg_path = truth_sibling(truth_path, ".truthseg.fits");
  if (truthseg_path.empty()) {
    throw FatalError(truth_path +
                     ": cannot derive the truth segmentation path; give --truth-segmap");
  }
  if (truth_classmap_path.empty()) {
    truth_classmap_path = truth_sibling(truth_path, ".truthclass.fits");
    if (!std::filesystem::is_regular_file(truth_classmap_path)) truth_classmap_path.clear();
  }
  const Catalog det =
      select_image_rows(read_catalog_file(catalog_path), options.file, catalog_path);
  const Catalog truth = read_catalog_file(truth_path);
  const cv::Mat seg = read_label_map(segmap_path);
  const cv::Mat tseg = read_label_map(truthseg_path);
  cv::Mat cm;
  cv::Mat tcm;
  if (!classmap_path.empty()) cm = read_label_map(classmap_path);
  if (!truth_classmap_path.empty()) tcm = read_label_map(truth_classmap_path);
  try {
    SegmentEvaluation e = evaluate_segment(det, seg, truth, tseg, cm, tcm, options);
    if (!e.class_measured && !classmap_path.empty() && truth_classmap_path.empty()) {
      e.class_note = "no truth class map (" + truth_sibling(truth_path, ".truthclass.fits") +
                     " not found; give --truth-classmap)";
    }
    return e;
  } catch (const FatalError& err) {
    throw FatalError(segmap_path + " / " + truthseg_path + ": " + err.what());
  }
}

std::string to_text(const SegmentEvaluation& e) {
  std::string s;
  s += fmt::format(
      "matched objects {} (radius {:g} px), with a truth footprint {}, of them with "
      "an empty detection footprint {}\n",
      e.matched, e.options.match_radius_pix, e.objects, e.empty_detection);
  s += fmt::format(
      "footprint IoU: median {:.4f}  quartiles {:.4f} {:.4f}  mean {:.4f}  "
      "IoU >= 0.5: {:.2f}%\n",
      e.iou_median, e.iou_q1, e.iou_q3, e.iou_mean, 100.0 * e.iou_above_half);
  if (!e.class_measured) {
    s += "per-pixel class accuracy: skipped (" + e.class_note + ")\n";
    return s;
  }
  s += fmt::format(
      "per-pixel class accuracy: {:.4f} over {} pixels, {:.4f} over {} truth "
      "foreground pixels\n",
      e.pixel_accuracy, e.class_pixels, e.foreground_accuracy, e.foreground_pixels);
  s += "truth label      pixels    recall\n";
  for (const auto& [t, row] : e.confusion) {
    std::size_t n = 0;
    for (const auto& [p, c] : row) n += c;
    const auto hit = row.find(t);
    const double rec =
        hit == row.end() ? 0.0 : static_cast<double>(hit->second) / static_cast<double>(n);
    s += fmt::format("{:<14} {:9d}  {:8.4f}\n", label_name(e.options, t), n, rec);
  }
  return s;
}

std::string to_json(const SegmentEvaluation& e) {
  nlohmann::json j;
  j["match_radius_pix"] = e.options.match_radius_pix;
  j["matched"] = e.matched;
  j["objects"] = e.objects;
  j["empty_detection"] = e.empty_detection;
  j["iou"] = {{"median", json_number(e.iou_median)},
              {"q1", json_number(e.iou_q1)},
              {"q3", json_number(e.iou_q3)},
              {"mean", json_number(e.iou_mean)},
              {"above_half", json_number(e.iou_above_half)}};
  nlohmann::json c;
  c["measured"] = e.class_measured;
  if (e.class_measured) {
    c["pixels"] = e.class_pixels;
    c["pixel_accuracy"] = json_number(e.pixel_accuracy);
    c["foreground_pixels"] = e.foreground_pixels;
    c["foreground_accuracy"] = json_number(e.foreground_accuracy);
    nlohmann::json conf = nlohmann::json::object();
    for (const auto& [t, row] : e.confusion) {
      for (const auto& [p, n] : row) conf[label_name(e.options, t)][label_name(e.options, p)] = n;
    }
    c["confusion"] = conf;
  } else {
    c["note"] = e.class_note;
  }
  j["pixel_classes"] = c;
  return j.dump(2) + "\n";
}

}  // namespace astroflow
