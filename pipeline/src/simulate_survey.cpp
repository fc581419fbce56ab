#include "astroflow/simulate_survey.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "astroflow/error.hpp"

namespace astroflow {
namespace {

cv::Mat cut(const cv::Mat& m, const cv::Rect& r) {
  return m.empty() ? m : m(r).clone();
}

// Keeps the rows whose (x, y) or (x_end, y_end) (1-based) falls on the tile and moves them
// into the tile's pixel frame.
Catalog cut_table(const Catalog& table, const SurveyTile& t, const char* x_end, const char* y_end) {
  Catalog out = table;
  const Column* xc = table.find("X_IMAGE");
  const Column* yc = table.find("Y_IMAGE");
  if (xc == nullptr || yc == nullptr) return out;
  const Column* xe = table.find(x_end);
  const Column* ye = table.find(y_end);
  auto on_tile = [&](double x, double y) {  // 1-based centre; pixel i covers [i - 0.5, i + 0.5)
    return x >= t.x0_pix + 0.5 && x < t.x0_pix + t.width_pix + 0.5 && y >= t.y0_pix + 0.5 &&
           y < t.y0_pix + t.height_pix + 0.5;
  };
  std::vector<bool> keep(table.rows(), false);
  for (std::size_t r = 0; r < table.rows(); ++r) {
    keep[r] = on_tile(xc->as_double(r), yc->as_double(r)) ||
              (xe != nullptr && ye != nullptr && on_tile(xe->as_double(r), ye->as_double(r)));
  }
  out.filter(keep);
  for (const auto& [name, shift] : {std::pair<const char*, int>{"X_IMAGE", t.x0_pix},
                                    {"Y_IMAGE", t.y0_pix},
                                    {x_end, t.x0_pix},
                                    {y_end, t.y0_pix}}) {
    if (Column* c = out.find(name); c != nullptr && c->type() == ColumnType::kFloat64) {
      for (double& v : std::get<std::vector<double>>(c->values)) v -= shift;
    }
  }
  return out;
}

}  // namespace

SurveyTiling parse_survey_tiling(const std::string& text, int overlap_pix,
                                 const std::string& option) {
  SurveyTiling t;
  t.overlap_pix = overlap_pix;
  char x = 0;
  char extra = 0;
  if (std::sscanf(text.c_str(), "%d%c%d%c", &t.columns, &x, &t.rows, &extra) != 3 ||
      (x != 'x' && x != 'X') || t.columns < 1 || t.rows < 1) {
    throw FatalError(option + ": expected CxR (e.g. 2x2), got '" + text + "'");
  }
  if (overlap_pix < 0) throw FatalError("--tile-overlap must be >= 0");
  return t;
}

std::vector<SurveyTile> survey_tiles(int width_pix, int height_pix, const SurveyTiling& tiling) {
  const auto axis = [&](int full, int n, const char* what) {
    const int len = (full + (n - 1) * tiling.overlap_pix + n - 1) / n;
    if (n > 1 && len <= tiling.overlap_pix) {
      throw FatalError(fmt::format("--tiles: {} tiles with overlap {} do not fit {} {} pixels", n,
                                   tiling.overlap_pix, full, what));
    }
    std::vector<std::pair<int, int>> spans;
    for (int i = 0; i < n; ++i) {
      spans.emplace_back(std::min(i * (len - tiling.overlap_pix), full - len), len);
    }
    return spans;
  };
  const auto xs = axis(width_pix, tiling.columns, "wide");
  const auto ys = axis(height_pix, tiling.rows, "high");
  std::vector<SurveyTile> out;
  for (int r = 0; r < tiling.rows; ++r) {
    for (int c = 0; c < tiling.columns; ++c) {
      const auto ru = static_cast<std::size_t>(r);
      const auto cu = static_cast<std::size_t>(c);
      out.push_back(
          {fmt::format("_r{}c{}", r, c), xs[cu].first, ys[ru].first, xs[cu].second, ys[ru].second});
    }
  }
  return out;
}

FieldSimulation cut_field(const FieldSimulation& field, const SurveyTile& t) {
  const cv::Rect r(t.x0_pix, t.y0_pix, t.width_pix, t.height_pix);
  FieldSimulation out;
  out.image = cut(field.image, r);
  out.model = cut(field.model, r);
  out.sky = cut(field.sky, r);
  out.truthseg = cut(field.truthseg, r);
  out.truthclass = cut(field.truthclass, r);
  out.artifact_mask = cut(field.artifact_mask, r);
  out.header = field.header;
  // The same sky frame: the reference pixel moves with the origin.
  out.wcs = field.wcs;
  out.wcs.crpix1 -= t.x0_pix;
  out.wcs.crpix2 -= t.y0_pix;
  out.header.set("CRPIX1", out.wcs.crpix1);
  out.header.set("CRPIX2", out.wcs.crpix2);
  out.header.set("TILEX0", t.x0_pix, "[pix] 0-based x origin in the simulated sky");
  out.header.set("TILEY0", t.y0_pix, "[pix] 0-based y origin in the simulated sky");
  out.psf = field.psf;
  out.noise_rms_counts = field.noise_rms_counts;
  for (TruthSource s : field.sources) {
    s.x_pix -= t.x0_pix;
    s.y_pix -= t.y0_pix;
    if (s.x_pix >= -0.5 && s.x_pix < t.width_pix - 0.5 && s.y_pix >= -0.5 &&
        s.y_pix < t.height_pix - 0.5) {
      out.sources.push_back(s);
    }
  }
  out.truth = cut_table(field.truth, t, "", "");
  out.artifacts = cut_table(field.artifacts, t, "X_END", "Y_END");
  return out;
}

std::vector<std::string> write_survey(const FieldSimulation& field, const FieldOptions& options,
                                      const SurveyTiling& tiling) {
  std::vector<std::string> paths;
  for (const SurveyTile& t : survey_tiles(field.image.cols, field.image.rows, tiling)) {
    FieldOptions o = options;
    o.name = options.name + t.suffix;
    for (std::string& p : write_field(cut_field(field, t), o)) paths.push_back(std::move(p));
  }
  return paths;
}

}  // namespace astroflow
