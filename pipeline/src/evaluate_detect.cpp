#include "astroflow/evaluate_detect.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "astroflow/error.hpp"
#include "astroflow/evaluate_classify.hpp"
#include "astroflow/point_grid.hpp"
#include "astroflow/robust_stats.hpp"
#include "geometry.hpp"
#include "json_number.hpp"
#include "label_map.hpp"

namespace astroflow {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const Column& need(const Catalog& c, const std::string& name, const std::string& what) {
  const Column* col = c.find(name);
  if (col == nullptr) throw FatalError(what + ": column " + name + " is missing");
  return *col;
}

// CSV catalogs come back as text columns (read_catalog_file); FITS ones as numbers.
double value_at(const Column& c, std::size_t row) {
  if (c.type() != ColumnType::kString) return c.as_double(row);
  const std::string& s = std::get<std::vector<std::string>>(c.values)[row];
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  return end == s.c_str() ? kNaN : v;
}

std::string trimmed_lower(std::string s) {
  std::string out;
  for (char ch : s) {
    if (std::isspace(static_cast<unsigned char>(ch)) == 0) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
  }
  return out;
}

double ratio(std::size_t num, std::size_t den) {
  return den == 0 ? kNaN : static_cast<double>(num) / static_cast<double>(den);
}

std::string pct(double v) {
  return std::isfinite(v) ? fmt::format("{:6.1f}%", 100.0 * v) : "     -";
}

// Truth rows matched within the radius or split (count_splits).
std::size_t matched_or_split(const DetectEvaluation& e) {
  return e.truth_rows - e.split_unmatched + e.split_resolved;
}

// The unmatched truth rows that >= 2 unmatched detections on their segmentation pixels add up
// to (evaluate_detect.hpp: "splits").
void count_splits(DetectEvaluation& e, const Catalog& detections, const Catalog& truth,
                  const cv::Mat& truth_segmap, const PositionMatch& m,
                  const std::vector<double>& tx, const std::vector<double>& ty,
                  const std::vector<double>& dx, const std::vector<double>& dy,
                  const DetectEvalOptions& o) {
  const cv::Mat seg = as_labels(truth_segmap, "truth segmentation map");
  const std::vector<double> ids =
      numeric_column(truth, truth.find("ID") != nullptr ? "ID" : "NUMBER", "truth");
  const std::vector<double> tflux =
      numeric_column(truth, truth.find("FLUX_AUTO") != nullptr ? "FLUX_AUTO" : "FLUX", "truth");
  const std::vector<double> dflux = numeric_column(detections, "FLUX_AUTO", "catalog");
  if (!(o.split_flux_factor >= 1.0)) {
    throw FatalError("evaluate detect: the split flux factor must be >= 1");
  }
  // Unmatched detections with positive flux, by the truth label under their centre.
  std::unordered_map<long long, std::vector<std::size_t>> on_label;
  for (std::size_t j = 0; j < dx.size(); ++j) {
    if (m.det_to_truth[j] >= 0 || !(dflux[j] > 0.0)) continue;
    if (!std::isfinite(dx[j]) || !std::isfinite(dy[j])) continue;
    const auto px = static_cast<int>(std::lround(dx[j] - 1.0));
    const auto py = static_cast<int>(std::lround(dy[j] - 1.0));
    if (px < 0 || py < 0 || px >= seg.cols || py >= seg.rows) continue;
    const int label = seg.at<int>(py, px);
    if (label > 0) on_label[label].push_back(j);
  }
  e.split_measured = true;
  for (std::size_t i = 0; i < tx.size(); ++i) {
    if (m.truth_to_det[i] >= 0) continue;
    ++e.split_unmatched;
    if (!std::isfinite(ids[i])) continue;
    const auto it = on_label.find(std::llround(ids[i]));
    if (it == on_label.end() || it->second.size() < 2) continue;
    double f = 0.0;
    double fx = 0.0;
    double fy = 0.0;
    for (std::size_t j : it->second) {
      f += dflux[j];
      fx += dflux[j] * dx[j];
      fy += dflux[j] * dy[j];
    }
    const double r = f / tflux[i];
    if (std::hypot(fx / f - tx[i], fy / f - ty[i]) > o.match_radius_pix ||
        !(r >= 1.0 / o.split_flux_factor && r <= o.split_flux_factor)) {
      continue;
    }
    ++e.split_resolved;
    const std::size_t n = it->second.size();
    if (e.split_components.size() <= n) e.split_components.resize(n + 1, 0);
    ++e.split_components[n];
  }
}

// Stars of truth SNR > class_snr_min by the distance to their nearest truth neighbour of SNR >=
// crowd_neighbour_snr (evaluate_detect.hpp: "crowding"). Neighbours beyond the last edge are
// not searched for: such a star falls in the last, open bin either way.
void count_crowding(DetectEvaluation& e, const Column& tsnr, const Column& ttype,
                    const PositionMatch& m, const std::vector<double>& tx,
                    const std::vector<double>& ty, const DetectEvalOptions& o) {
  const std::vector<double>& edges = o.crowd_edges_pix;
  if (edges.front() != 0.0 || !std::is_sorted(edges.begin(), edges.end()) ||
      std::adjacent_find(edges.begin(), edges.end()) != edges.end()) {
    throw FatalError("evaluate detect: the crowding bin edges must start at 0 and increase");
  }
  const double reach = edges.back();
  e.crowd_bins.resize(edges.size());
  for (std::size_t b = 0; b < edges.size(); ++b) {
    e.crowd_bins[b].dist_min = edges[b];
    e.crowd_bins[b].dist_max =
        b + 1 < edges.size() ? edges[b + 1] : std::numeric_limits<double>::infinity();
  }
  PointGrid grid(reach);
  for (std::size_t i = 0; reach > 0.0 && i < tx.size(); ++i) {
    if (value_at(tsnr, i) >= o.crowd_neighbour_snr && std::isfinite(tx[i]) &&
        std::isfinite(ty[i])) {
      grid.add(i, tx[i], ty[i]);
    }
  }
  for (std::size_t i = 0; i < tx.size(); ++i) {
    if (!(value_at(tsnr, i) > o.class_snr_min) || trimmed_lower(ttype.as_text(i)) != "star" ||
        !std::isfinite(tx[i]) || !std::isfinite(ty[i])) {
      continue;
    }
    double nearest = std::numeric_limits<double>::infinity();
    if (reach > 0.0) {
      grid.for_each_near(tx[i], ty[i], [&](std::size_t k) {
        if (k != i) nearest = std::min(nearest, std::hypot(tx[i] - tx[k], ty[i] - ty[k]));
      });
    }
    const auto b = static_cast<std::size_t>(std::upper_bound(edges.begin(), edges.end(), nearest) -
                                            edges.begin() - 1);
    ++e.crowd_bins[b].stars;
    e.crowd_bins[b].stars_matched += m.truth_to_det[i] >= 0 ? 1 : 0;
  }
  for (DetectCrowdBin& bin : e.crowd_bins) {
    bin.completeness = ratio(bin.stars_matched, bin.stars);
  }
}

}  // namespace

PositionMatch match_positions(const std::vector<double>& tx, const std::vector<double>& ty,
                              const std::vector<double>& dx, const std::vector<double>& dy,
                              double radius) {
  PositionMatch m;
  m.det_to_truth.assign(dx.size(), -1);
  m.truth_to_det.assign(tx.size(), -1);
  m.distance_pix.assign(dx.size(), kNaN);
  if (!(radius > 0.0)) return m;
  PointGrid grid(radius);  // the truth positions
  for (std::size_t i = 0; i < tx.size(); ++i) {
    if (std::isfinite(tx[i]) && std::isfinite(ty[i])) grid.add(i, tx[i], ty[i]);
  }
  struct Pair {
    double d;
    int det;
    int tru;
  };
  std::vector<Pair> pairs;
  for (std::size_t j = 0; j < dx.size(); ++j) {
    if (!std::isfinite(dx[j]) || !std::isfinite(dy[j])) continue;
    grid.for_each_near(dx[j], dy[j], [&](std::size_t u) {
      const double d = std::hypot(dx[j] - tx[u], dy[j] - ty[u]);
      if (d <= radius) pairs.push_back(Pair{d, static_cast<int>(j), static_cast<int>(u)});
    });
  }
  std::sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) {
    if (a.d != b.d) return a.d < b.d;
    if (a.det != b.det) return a.det < b.det;
    return a.tru < b.tru;
  });
  for (const Pair& p : pairs) {
    const auto j = static_cast<std::size_t>(p.det);
    const auto i = static_cast<std::size_t>(p.tru);
    if (m.det_to_truth[j] >= 0 || m.truth_to_det[i] >= 0) continue;
    m.det_to_truth[j] = p.tru;
    m.truth_to_det[i] = p.det;
    m.distance_pix[j] = p.d;
  }
  return m;
}

std::vector<double> numeric_column(const Catalog& c, const std::string& name,
                                   const std::string& what) {
  const Column& col = need(c, name, what);
  std::vector<double> out(c.rows());
  for (std::size_t r = 0; r < c.rows(); ++r) out[r] = value_at(col, r);
  return out;
}

Catalog select_image_rows(const Catalog& catalog, const std::string& file,
                          const std::string& what) {
  const Column* fcol = catalog.find("FILE");
  if (fcol == nullptr) return catalog;
  std::set<std::string> names;
  std::vector<bool> keep(catalog.rows(), false);
  std::size_t kept = 0;
  for (std::size_t r = 0; r < catalog.rows(); ++r) {
    std::string name = fcol->as_text(r);
    while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back())) != 0) {
      name.pop_back();
    }
    name = std::filesystem::path(name).filename().string();
    names.insert(name);
    keep[r] = file.empty() || name == std::filesystem::path(file).filename().string();
    kept += keep[r] ? 1 : 0;
  }
  if (file.empty()) {
    if (names.size() > 1) {
      throw FatalError(what + ": the FILE column names " + std::to_string(names.size()) +
                       " images; choose one with --file (e.g. " + *names.begin() + ")");
    }
    return catalog;
  }
  if (kept == 0) throw FatalError(what + ": no row has FILE " + file);
  Catalog out = catalog;
  out.filter(keep);
  return out;
}

std::string truth_sibling(const std::string& truth_path, const std::string& suffix) {
  for (const std::string ending : {".truth.fits", ".truth.csv"}) {
    if (truth_path.size() > ending.size() &&
        truth_path.compare(truth_path.size() - ending.size(), ending.size(), ending) == 0) {
      return truth_path.substr(0, truth_path.size() - ending.size()) + suffix;
    }
  }
  return {};
}

DetectEvaluation evaluate_detect(const Catalog& detections, const Catalog& truth,
                                 const Catalog* artifacts, const DetectEvalOptions& o,
                                 const cv::Mat& truth_segmap) {
  DetectEvaluation e;
  e.options = o;
  const std::vector<double> tx = numeric_column(truth, "X_IMAGE", "truth");
  const std::vector<double> ty = numeric_column(truth, "Y_IMAGE", "truth");
  const std::vector<double> tmag = numeric_column(truth, "MAG", "truth");
  const std::vector<double> dx = numeric_column(detections, "X_IMAGE", "catalog");
  const std::vector<double> dy = numeric_column(detections, "Y_IMAGE", "catalog");
  const PositionMatch m = match_positions(tx, ty, dx, dy, o.match_radius_pix);

  e.truth_rows = truth.rows();
  e.detections = detections.rows();
  std::vector<double> offsets;
  for (std::size_t j = 0; j < dx.size(); ++j) {
    if (m.det_to_truth[j] >= 0) offsets.push_back(m.distance_pix[j]);
  }
  e.matched = offsets.size();
  e.spurious = e.detections - e.matched;
  e.purity = ratio(e.matched, e.detections);
  e.median_offset_pix = median_of(offsets);

  if (artifacts != nullptr) {
    e.artifacts_given = true;
    const std::vector<double> ax = numeric_column(*artifacts, "X_IMAGE", "artifacts");
    const std::vector<double> ay = numeric_column(*artifacts, "Y_IMAGE", "artifacts");
    const Column* xe = artifacts->find("X_END");
    const Column* ye = artifacts->find("Y_END");
    for (std::size_t j = 0; j < dx.size(); ++j) {
      if (m.det_to_truth[j] >= 0) continue;
      for (std::size_t a = 0; a < ax.size(); ++a) {
        const double bx = xe != nullptr ? value_at(*xe, a) : ax[a];
        const double by = ye != nullptr ? value_at(*ye, a) : ay[a];
        const double d =
            detail::segment_distance(dx[j], dy[j], ax[a], ay[a], std::isfinite(bx) ? bx : ax[a],
                                     std::isfinite(by) ? by : ay[a]);
        if (d <= o.match_radius_pix) {
          ++e.spurious_on_artifacts;
          break;
        }
      }
    }
  }

  // Magnitude bins: edges at multiples of mag_bin, spanning the truth magnitudes and the
  // detections' finite magnitudes (SExtractor writes 99 for a failed MAG_AUTO: left out).
  std::vector<double> dmag(dx.size(), kNaN);
  if (const Column* mc = detections.find(o.det_mag_column)) {
    e.has_det_mag = true;
    for (std::size_t j = 0; j < dx.size(); ++j) {
      const double v = value_at(*mc, j);
      dmag[j] = std::isfinite(v) && std::abs(v) < 50.0 ? v : kNaN;
    }
  }
  if (!(o.mag_bin > 0.0)) throw FatalError("evaluate detect: the magnitude bin must be > 0");
  std::map<long long, DetectMagBin> bins;
  auto bin_of = [&](double mag) -> DetectMagBin& {
    const auto k = static_cast<long long>(std::floor(mag / o.mag_bin));
    DetectMagBin& b = bins[k];
    b.mag_min = static_cast<double>(k) * o.mag_bin;
    b.mag_max = b.mag_min + o.mag_bin;
    return b;
  };
  for (std::size_t i = 0; i < tx.size(); ++i) {
    if (!std::isfinite(tmag[i])) continue;
    DetectMagBin& b = bin_of(tmag[i]);
    ++b.truth;
    b.truth_matched += m.truth_to_det[i] >= 0 ? 1 : 0;
  }
  for (std::size_t j = 0; j < dx.size(); ++j) {
    if (!std::isfinite(dmag[j])) continue;
    DetectMagBin& b = bin_of(dmag[j]);
    ++b.detections;
    b.detections_matched += m.det_to_truth[j] >= 0 ? 1 : 0;
  }
  for (auto& [k, b] : bins) {
    b.completeness = ratio(b.truth_matched, b.truth);
    b.purity = ratio(b.detections_matched, b.detections);
    e.bins.push_back(b);
  }

  const Column* cls = detections.find(o.class_column);
  const Column* ttype = truth.find("TYPE");
  const Column* tsnr = truth.find("SNR");

  // Completeness per truth-SNR bin, all rows and stars.
  if (tsnr != nullptr && !o.snr_edges.empty()) {
    if (!std::is_sorted(o.snr_edges.begin(), o.snr_edges.end()) ||
        std::adjacent_find(o.snr_edges.begin(), o.snr_edges.end()) != o.snr_edges.end()) {
      throw FatalError("evaluate detect: the S/N bin edges must increase");
    }
    e.snr_bins.resize(o.snr_edges.size());
    for (std::size_t b = 0; b < o.snr_edges.size(); ++b) {
      e.snr_bins[b].snr_min = o.snr_edges[b];
      e.snr_bins[b].snr_max =
          b + 1 < o.snr_edges.size() ? o.snr_edges[b + 1] : std::numeric_limits<double>::infinity();
    }
    for (std::size_t i = 0; i < tx.size(); ++i) {
      const double snr = value_at(*tsnr, i);
      if (!std::isfinite(snr) || snr < o.snr_edges.front()) continue;
      const auto b = static_cast<std::size_t>(
          std::upper_bound(o.snr_edges.begin(), o.snr_edges.end(), snr) - o.snr_edges.begin() - 1);
      DetectSnrBin& bin = e.snr_bins[b];
      const bool found = m.truth_to_det[i] >= 0;
      ++bin.truth;
      bin.truth_matched += found ? 1 : 0;
      if (ttype != nullptr && trimmed_lower(ttype->as_text(i)) == "star") {
        ++bin.stars;
        bin.stars_matched += found ? 1 : 0;
      }
    }
    for (DetectSnrBin& bin : e.snr_bins) {
      bin.completeness = ratio(bin.truth_matched, bin.truth);
      bin.star_completeness = ratio(bin.stars_matched, bin.stars);
    }
  }

  if (tsnr != nullptr && ttype != nullptr && !o.crowd_edges_pix.empty()) {
    count_crowding(e, *tsnr, *ttype, m, tx, ty, o);
  }

  // Star/galaxy accuracy.
  if (cls == nullptr) {
    e.class_note = "catalog has no " + o.class_column + " column";
  } else if (ttype == nullptr || tsnr == nullptr) {
    e.class_note = "truth has no TYPE or SNR column";
  } else {
    e.class_measured = true;
    for (std::size_t i = 0; i < tx.size(); ++i) {
      const int j = m.truth_to_det[i];
      if (j < 0 || !(value_at(*tsnr, i) > o.class_snr_min)) continue;
      const bool is_star = trimmed_lower(ttype->as_text(i)) == "star";
      const double p = value_at(*cls, static_cast<std::size_t>(j));
      const bool said_star = p > o.class_threshold;
      const bool ok = is_star == said_star;
      ++e.class_count;
      e.class_correct += ok ? 1 : 0;
      (is_star ? e.class_stars : e.class_galaxies) += 1;
      (is_star ? e.class_stars_correct : e.class_galaxies_correct) += ok ? 1 : 0;
    }
    e.class_accuracy = ratio(e.class_correct, e.class_count);
  }

  // Deblending: close truth pairs, both bright enough to be found alone.
  if (tsnr != nullptr) {
    const Column* treff = truth.find("R_EFF");
    std::vector<std::size_t> idx;
    std::vector<double> reff(tx.size(), 0.0);
    for (std::size_t i = 0; i < tx.size(); ++i) {
      if (treff != nullptr) {
        const double r = value_at(*treff, i);
        reff[i] = std::isfinite(r) ? r : 0.0;
      }
      if (value_at(*tsnr, i) >= o.blend_snr_min && std::isfinite(tx[i]) && std::isfinite(ty[i])) {
        idx.push_back(i);
      }
    }
    double max_reff = 0.0;
    for (std::size_t i : idx) max_reff = std::max(max_reff, reff[i]);
    const double reach = o.blend_reff_factor * max_reff;
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return tx[a] < tx[b]; });
    for (std::size_t a = 0; a < idx.size(); ++a) {
      for (std::size_t b = a + 1; b < idx.size() && tx[idx[b]] - tx[idx[a]] < reach; ++b) {
        const std::size_t i = idx[a];
        const std::size_t k = idx[b];
        const double sep = std::hypot(tx[i] - tx[k], ty[i] - ty[k]);
        if (sep >= o.blend_reff_factor * std::max(reff[i], reff[k])) continue;
        ++e.blend_pairs;
        e.blend_resolved += m.truth_to_det[i] >= 0 && m.truth_to_det[k] >= 0 ? 1 : 0;
      }
    }
  }
  e.blend_success = ratio(e.blend_resolved, e.blend_pairs);
  if (!truth_segmap.empty()) count_splits(e, detections, truth, truth_segmap, m, tx, ty, dx, dy, o);
  return e;
}

DetectEvaluation evaluate_detect_files(const std::string& catalog_path,
                                       const std::string& truth_path,
                                       const DetectEvalOptions& options,
                                       const std::string& artifacts_path,
                                       const std::string& truth_segmap_path) {
  const Catalog det =
      select_image_rows(read_catalog_file(catalog_path), options.file, catalog_path);
  const Catalog truth = read_catalog_file(truth_path);
  std::string art = artifacts_path;
  if (art.empty()) {
    art = truth_sibling(truth_path, ".artifacts.fits");
    if (!art.empty() && !std::filesystem::is_regular_file(art)) art.clear();
  } else if (art == "none") {
    art.clear();
  }
  Catalog artifacts;
  if (!art.empty()) artifacts = read_catalog_file(art);
  cv::Mat truth_segmap;
  if (!truth_segmap_path.empty()) truth_segmap = read_label_map(truth_segmap_path);
  try {
    return evaluate_detect(det, truth, art.empty() ? nullptr : &artifacts, options, truth_segmap);
  } catch (const FatalError& err) {
    throw FatalError(catalog_path + " / " + truth_path +
                     (truth_segmap_path.empty() ? "" : " / " + truth_segmap_path) + ": " +
                     err.what());
  }
}

std::string to_text(const DetectEvaluation& e) {
  std::string s;
  s += fmt::format("truth rows {}, detections {}, matched {} (radius {:g} px), spurious {}",
                   e.truth_rows, e.detections, e.matched, e.options.match_radius_pix, e.spurious);
  if (e.artifacts_given)
    s += fmt::format(" ({} on cosmic rays / hot pixels)", e.spurious_on_artifacts);
  s += fmt::format("\npurity {:.2f}%   median match offset {:.3f} px\n", 100.0 * e.purity,
                   e.median_offset_pix);
  s += fmt::format("\nmag bin        N_true  completeness   N_det  purity ({})\n",
                   e.has_det_mag ? e.options.det_mag_column : "no magnitude column");
  for (const DetectMagBin& b : e.bins) {
    s += fmt::format("{:5.1f}-{:<5.1f}  {:7d}  {:>12}  {:6d}  {:>7}\n", b.mag_min, b.mag_max,
                     b.truth, pct(b.completeness), b.detections, pct(b.purity));
  }
  if (!e.snr_bins.empty()) {
    s += "\ntruth S/N      N_true  completeness   N_stars  star completeness\n";
    for (const DetectSnrBin& b : e.snr_bins) {
      const std::string range = std::isfinite(b.snr_max)
                                    ? fmt::format("{:g}-{:g}", b.snr_min, b.snr_max)
                                    : fmt::format(">= {:g}", b.snr_min);
      s += fmt::format("{:<12}  {:7d}  {:>12}  {:8d}  {:>17}\n", range, b.truth,
                       pct(b.completeness), b.stars, pct(b.star_completeness));
    }
  }
  if (!e.crowd_bins.empty()) {
    s += fmt::format(
        "\ncrowding: stars of truth S/N > {:g} by the distance to the nearest truth object of "
        "S/N >= {:g}\ndistance (px)  N_stars  completeness\n",
        e.options.class_snr_min, e.options.crowd_neighbour_snr);
    for (const DetectCrowdBin& b : e.crowd_bins) {
      const std::string range = std::isfinite(b.dist_max)
                                    ? fmt::format("{:g}-{:g}", b.dist_min, b.dist_max)
                                    : fmt::format(">= {:g}", b.dist_min);
      s += fmt::format("{:<12}  {:7d}  {:>12}\n", range, b.stars, pct(b.completeness));
    }
  }
  if (e.class_measured) {
    s += fmt::format(
        "\nstar/galaxy ({} > {:g}, truth S/N > {:g}): accuracy {:.2f}% of {} "
        "(stars {}/{}, galaxies {}/{})\n",
        e.options.class_column, e.options.class_threshold, e.options.class_snr_min,
        100.0 * e.class_accuracy, e.class_count, e.class_stars_correct, e.class_stars,
        e.class_galaxies_correct, e.class_galaxies);
  } else {
    s += "\nstar/galaxy: skipped (" + e.class_note + ")\n";
  }
  s += fmt::format(
      "deblending (pairs closer than {:g} r_eff, both S/N >= {:g}): {} of {} resolved, {}\n",
      e.options.blend_reff_factor, e.options.blend_snr_min, e.blend_resolved, e.blend_pairs,
      pct(e.blend_success));
  if (e.split_measured) {
    s += fmt::format(
        "split (>= 2 unmatched detections on the truth row's segmentation pixels, flux-weighted "
        "centre within {:g} px, summed FLUX_AUTO within x{:g} of the truth's flux): {} of the {} "
        "unmatched truth "
        "rows; matched or split: {} of {}, {}\n",
        e.options.match_radius_pix, e.options.split_flux_factor, e.split_resolved,
        e.split_unmatched, matched_or_split(e), e.truth_rows,
        pct(ratio(matched_or_split(e), e.truth_rows)));
  }
  return s;
}

std::string to_json(const DetectEvaluation& e) {
  nlohmann::json j;
  j["match_radius_pix"] = e.options.match_radius_pix;
  j["truth_rows"] = e.truth_rows;
  j["detections"] = e.detections;
  j["matched"] = e.matched;
  j["spurious"] = e.spurious;
  j["spurious_on_artifacts"] =
      e.artifacts_given ? nlohmann::json(e.spurious_on_artifacts) : nlohmann::json();
  j["purity"] = json_number(e.purity);
  j["median_offset_pix"] = json_number(e.median_offset_pix);
  j["det_mag_column"] = e.has_det_mag ? nlohmann::json(e.options.det_mag_column) : nlohmann::json();
  j["bins"] = nlohmann::json::array();
  for (const DetectMagBin& b : e.bins) {
    j["bins"].push_back({{"mag_min", b.mag_min},
                         {"mag_max", b.mag_max},
                         {"truth", b.truth},
                         {"truth_matched", b.truth_matched},
                         {"completeness", json_number(b.completeness)},
                         {"detections", b.detections},
                         {"detections_matched", b.detections_matched},
                         {"purity", json_number(b.purity)}});
  }
  j["snr_bins"] = nlohmann::json::array();
  for (const DetectSnrBin& b : e.snr_bins) {
    j["snr_bins"].push_back({{"snr_min", b.snr_min},
                             {"snr_max", json_number(b.snr_max)},
                             {"truth", b.truth},
                             {"truth_matched", b.truth_matched},
                             {"completeness", json_number(b.completeness)},
                             {"stars", b.stars},
                             {"stars_matched", b.stars_matched},
                             {"star_completeness", json_number(b.star_completeness)}});
  }
  nlohmann::json crowd = nlohmann::json::array();
  for (const DetectCrowdBin& b : e.crowd_bins) {
    crowd.push_back({{"dist_min_pix", b.dist_min},
                     {"dist_max_pix", json_number(b.dist_max)},
                     {"stars", b.stars},
                     {"stars_matched", b.stars_matched},
                     {"completeness", json_number(b.completeness)}});
  }
  j["crowding"] = {{"snr_min", e.options.class_snr_min},
                   {"neighbour_snr_min", e.options.crowd_neighbour_snr},
                   {"bins", crowd}};
  nlohmann::json c;
  c["measured"] = e.class_measured;
  c["column"] = e.options.class_column;
  c["threshold"] = e.options.class_threshold;
  c["snr_min"] = e.options.class_snr_min;
  if (e.class_measured) {
    c["count"] = e.class_count;
    c["accuracy"] = json_number(e.class_accuracy);
    c["stars"] = e.class_stars;
    c["stars_correct"] = e.class_stars_correct;
    c["galaxies"] = e.class_galaxies;
    c["galaxies_correct"] = e.class_galaxies_correct;
  } else {
    c["note"] = e.class_note;
  }
  j["star_galaxy"] = c;
  j["deblending"] = {{"reff_factor", e.options.blend_reff_factor},
                     {"snr_min", e.options.blend_snr_min},
                     {"pairs", e.blend_pairs},
                     {"resolved", e.blend_resolved},
                     {"success", json_number(e.blend_success)}};
  if (e.split_measured) {
    j["split"] = {{"flux_factor", e.options.split_flux_factor},
                  {"unmatched", e.split_unmatched},
                  {"resolved", e.split_resolved},
                  {"matched_or_split", matched_or_split(e)},
                  {"components", e.split_components}};
  } else {
    j["split"] = nullptr;
  }
  return j.dump(2) + "\n";
}

}  // namespace astroflow
