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

std::vector<double> column_doubles(const Catalog& c, const char* name) {
  std::vector<double> v;
  const Column* col = c.find(name);
  if (col == nullptr) return v;
  v.reserve(col->size());
  for (std::size_t i = 0; i < col->size(); ++i) v.push_back(col->as_double(i));
  return v;
}

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

Histogram make_histogram(const std::vector<double>& values, int bins) {
  Histogram h;
  bins = std::max(1, bins);
  h.counts.assign(static_cast<std::size_t>(bins), 0);
  bool any = false;
  for (const double v : values) {
    if (!std::isfinite(v)) continue;
    if (!any) {
      h.lo = h.hi = v;
      any = true;
    }
    h.lo = std::min(h.lo, v);
    h.hi = std::max(h.hi, v);
  }
  if (!any) return h;
  if (h.hi == h.lo) h.hi = h.lo + 1.0;
  const double width = (h.hi - h.lo) / bins;
  for (const double v : values) {
    if (!std::isfinite(v)) continue;
    auto k = static_cast<long>(std::floor((v - h.lo) / width));
    k = std::clamp(k, 0L, static_cast<long>(bins - 1));
    ++h.counts[static_cast<std::size_t>(k)];
  }
  return h;
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

  if (const Column* cls = merged.find("CLASS"); cls != nullptr) {
    std::map<std::string, std::size_t> counts;
    for (std::size_t i = 0; i < cls->size(); ++i) ++counts[cls->as_text(i)];
    h += "<h2>Classes</h2><table><tr><th>CLASS</th><th>sources</th></tr>";
    for (const auto& [k, n] : counts)
      h += fmt::format("<tr><td>{}</td><td class=\"num\">{}</td></tr>", html_escape(k), n);
    h += "</table>\n";
  }

  std::string hists;
  for (const auto& [col, label] :
       {std::pair{"MAG_AUTO", "MAG_AUTO (mag)"}, std::pair{"DET_SCORE", "DET_SCORE"},
        std::pair{"A_IMAGE", "A_IMAGE (pix)"}}) {
    if (!merged.has(col)) continue;
    hists += "<figure>" + histogram_svg(make_histogram(column_doubles(merged, col), 30), label) +
             "</figure>";
  }
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
