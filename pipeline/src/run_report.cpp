#include "astroflow/run_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace astroflow {

namespace {

constexpr const char* kStyle = R"(
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;font-size:.9em}th{background:#eee}td.num{text-align:right}
.hists{display:flex;flex-wrap:wrap;gap:1em}.hists figure{margin:0}
.gallery{display:flex;flex-wrap:wrap;gap:.8em}.gallery figure{margin:0;width:260px}
.gallery img{width:256px;height:auto;image-rendering:pixelated;border:1px solid #999;
background:#000}figcaption{font-size:.8em;word-break:break-all}
.ok{color:#070}.bad{color:#a00}
)";

// Runs once the page and its images have loaded: tells a headless checker whether every image
// resolved. No external resource is involved.
constexpr const char* kScript = R"(
window.addEventListener('load', function () {
  var imgs = document.getElementsByTagName('img'), bad = 0;
  for (var i = 0; i < imgs.length; ++i)
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) ++bad;
  document.body.setAttribute('data-images', bad === 0 ? 'ok' : 'broken: ' + bad);
});
)";

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

namespace {

// make_histogram in its two passes, shared with CatalogStats.
void extend_range(bool& any, double& lo, double& hi, double v) {
  if (!std::isfinite(v)) return;
  if (!any) {
    lo = hi = v;
    any = true;
  }
  lo = std::min(lo, v);
  hi = std::max(hi, v);
}

Histogram empty_histogram(bool any, double lo, double hi, int bins) {
  Histogram h;
  bins = std::max(1, bins);
  h.counts.assign(static_cast<std::size_t>(bins), 0);
  if (!any) return h;
  h.lo = lo;
  h.hi = hi == lo ? lo + 1.0 : hi;
  return h;
}

void add_to_histogram(Histogram& h, double v) {
  if (!std::isfinite(v) || h.hi <= h.lo) return;  // hi <= lo: no finite value was seen
  const auto bins = static_cast<long>(h.counts.size());
  const double width = (h.hi - h.lo) / static_cast<double>(bins);
  auto k = static_cast<long>(std::floor((v - h.lo) / width));
  k = std::clamp(k, 0L, bins - 1);
  ++h.counts[static_cast<std::size_t>(k)];
}

constexpr std::pair<const char*, const char*> kPlots[] = {
    {"MAG_AUTO", "MAG_AUTO (mag)"}, {"DET_SCORE", "DET_SCORE"}, {"A_IMAGE", "A_IMAGE (pix)"}};

}  // namespace

Histogram make_histogram(const std::vector<double>& values, int bins) {
  bool any = false;
  double lo = 0.0, hi = 0.0;
  for (const double v : values) extend_range(any, lo, hi, v);
  Histogram h = empty_histogram(any, lo, hi, bins);
  if (!any) return h;
  for (const double v : values) add_to_histogram(h, v);
  return h;
}

CatalogStats CatalogStats::of(const Catalog& merged) {
  CatalogStats s;
  s.observe_range(merged);
  s.settle(merged);
  s.count(merged);
  return s;
}

void CatalogStats::observe_range(const Catalog& chunk) {
  for (const auto& [name, label] : kPlots) {
    Range& r = ranges_[name];
    const Column* col = chunk.find(name);
    if (col == nullptr) {
      r.rows_without_column = r.rows_without_column || chunk.rows() > 0;
      continue;
    }
    for (std::size_t i = 0; i < col->size(); ++i)
      extend_range(r.any, r.lo, r.hi, col->as_double(i));
  }
}

void CatalogStats::settle(const Catalog& schema) {
  has_class = schema.has("CLASS");
  plots.clear();
  for (const auto& [name, label] : kPlots) {
    const Column* col = schema.find(name);
    if (col == nullptr) continue;
    Range r = ranges_[name];
    // Rows of catalogs without the column get the merged catalog's default cell: NaN for
    // floats (not counted), 0 for integers (counted).
    const bool integer = col->type() == ColumnType::kInt32 || col->type() == ColumnType::kInt64;
    if (integer && r.rows_without_column) extend_range(r.any, r.lo, r.hi, 0.0);
    plots.push_back(Plot{name, label, empty_histogram(r.any, r.lo, r.hi, kBins)});
  }
}

void CatalogStats::count(const Catalog& chunk) {
  if (has_class) {
    if (const Column* cls = chunk.find("CLASS"); cls != nullptr)
      for (std::size_t i = 0; i < cls->size(); ++i) ++class_counts[cls->as_text(i)];
  }
  for (Plot& p : plots) {
    const Column* col = chunk.find(p.column);
    if (col == nullptr) continue;
    for (std::size_t i = 0; i < col->size(); ++i) add_to_histogram(p.histogram, col->as_double(i));
  }
}

std::string histogram_svg(const Histogram& h, const std::string& x_label) {
  constexpr int kW = 320, kH = 180, kLeft = 40, kBottom = 30, kTop = 10, kRight = 10;
  const std::size_t peak =
      h.counts.empty() ? 0 : *std::max_element(h.counts.begin(), h.counts.end());
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" "
      "aria-label=\"histogram of {}\">",
      kW, kH, html_escape(x_label));
  s += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>", kW, kH);
  const double plot_w = kW - kLeft - kRight;
  const double plot_h = kH - kTop - kBottom;
  const double bw = h.counts.empty() ? 0 : plot_w / static_cast<double>(h.counts.size());
  for (std::size_t i = 0; i < h.counts.size(); ++i) {
    const double bh = peak == 0 ? 0 : plot_h * static_cast<double>(h.counts[i]) / peak;
    s += fmt::format(
        "<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
        "fill=\"#4a78b0\"><title>{}</title></rect>",
        kLeft + bw * i, kTop + plot_h - bh, std::max(bw - 1.0, 0.5), bh, h.counts[i]);
  }
  s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>", kLeft,
                   kTop + plot_h, kW - kRight, kTop + plot_h);
  s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>", kLeft, kTop,
                   kLeft, kTop + plot_h);
  s += fmt::format(
      "<text x=\"{}\" y=\"{}\" font-size=\"10\">{:.3g}</text>"
      "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{:.3g}</text>",
      kLeft, kH - 16, h.lo, kW - kRight, kH - 16, h.hi);
  s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
                   kLeft + plot_w / 2, kH - 3, html_escape(x_label));
  s += fmt::format("<text x=\"2\" y=\"{}\" font-size=\"10\">{}</text>", kTop + 8, peak);
  s += "</svg>";
  return s;
}

std::string render_report_html(const RunReport& r, const Catalog& merged,
                               const std::vector<QuicklookEntry>& quicklooks) {
  return render_report_html(r, CatalogStats::of(merged), quicklooks);
}

std::string render_report_html(const RunReport& r, const CatalogStats& stats,
                               const std::vector<QuicklookEntry>& quicklooks) {
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
  h += "<title>astroflow run report</title><style>";
  h += kStyle;
  h += "</style><script>";
  h += kScript;
  h += "</script></head><body>\n";
  h += "<h1>astroflow run report</h1>\n";

  h += "<h2>Summary</h2><table>";
  auto row = [&](const std::string& k, const std::string& v) {
    h += "<tr><th>" + html_escape(k) + "</th><td>" + html_escape(v) + "</td></tr>";
  };
  row("astroflow", r.astroflow_version);
  row("config", r.config_file);
  row("config sha256", r.config_sha256);
  row("output folder", r.output_dir);
  row("threads", std::to_string(r.threads));
  row("files", std::to_string(r.files));
  row("files failed", std::to_string(r.files_failed));
  row("frames", std::to_string(r.frames));
  row("sources", std::to_string(r.sources));
  row("wall time", fmt::format("{:.2f} s", r.wall_s));
  row("files/s", r.wall_s > 0 ? fmt::format("{:.2f}", static_cast<double>(r.files) / r.wall_s)
                              : std::string("-"));
  row("exit status", std::to_string(static_cast<int>(r.exit_status)));
  h += "</table>\n";

  h += "<h2>Stage timings</h2><table><tr><th>stage</th><th>plugin</th><th>calls</th>"
       "<th>wall s (summed over threads)</th><th>ms per call</th></tr>";
  for (const StageTiming& t : r.stage_timings) {
    h += fmt::format(
        "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3f}</td>"
        "<td class=\"num\">{:.2f}</td></tr>",
        html_escape(t.stage), html_escape(t.plugin), t.calls, t.wall_s,
        t.calls > 0 ? 1000.0 * t.wall_s / static_cast<double>(t.calls) : 0.0);
  }
  h += "</table>\n";

  if (stats.has_class) {
    h += "<h2>Classes</h2><table><tr><th>CLASS</th><th>sources</th></tr>";
    for (const auto& [k, n] : stats.class_counts)
      h += fmt::format("<tr><td>{}</td><td class=\"num\">{}</td></tr>", html_escape(k), n);
    h += "</table>\n";
  }

  std::string hists;
  for (const CatalogStats::Plot& p : stats.plots)
    hists += "<figure>" + histogram_svg(p.histogram, p.label) + "</figure>";
  if (!hists.empty()) h += "<h2>Distributions</h2><div class=\"hists\">" + hists + "</div>\n";

  h += fmt::format("<h2>Failures ({})</h2>", r.failures.size());
  if (r.failures.empty()) {
    h += "<p class=\"ok\">none</p>\n";
  } else {
    h += "<table><tr><th>file</th><th>HDU</th><th>stage</th><th>reason</th></tr>";
    for (const FailureRecord& f : r.failures) {
      h += "<tr><td>" + html_escape(f.path) + "</td><td>" + html_escape(f.hdu) + "</td><td>" +
           html_escape(f.stage) + "</td><td class=\"bad\">" + html_escape(f.reason) + "</td></tr>";
    }
    h += "</table>\n";
  }

  if (!quicklooks.empty()) {
    h += fmt::format(
        "<h2>Quick-looks ({})</h2><p>asinh stretch, north up (FITS row 1 at the bottom); red: "
        "detection ellipses (3 A, 3 B, THETA), green: segmentation outlines.</p>"
        "<div class=\"gallery\">",
        quicklooks.size());
    for (const QuicklookEntry& q : quicklooks) {
      h += "<figure><a href=\"" + html_escape(q.href) + "\"><img src=\"" + html_escape(q.href) +
           "\" alt=\"" + html_escape(q.title) + "\" loading=\"eager\"></a><figcaption>" +
           html_escape(q.title) + fmt::format(" &middot; {} sources", q.sources) +
           "</figcaption></figure>";
    }
    h += "</div>\n";
  }
  h += "</body></html>\n";
  return h;
}

}  // namespace astroflow
