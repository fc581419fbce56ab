// report.html: a self-contained, browsable page about one run.
//
// Self-contained: inline CSS, histograms as inline SVG, quick-look images as PNG files relative
// to the report (quicklook/<stem>.png), no script or font from the network. A small inline
// script sets <body data-images="ok"> once every <img> has loaded with a non-zero size, or
// "broken: N" otherwise, so a headless browser can check the page (docs/batch.md).
//
// Content: run summary (files, frames, sources, failures, wall time, threads, config sha256),
// per-stage timings, class counts (CLASS column), histograms of MAG_AUTO, DET_SCORE and A_IMAGE
// (each only when the column exists), the failures with their reasons, the quick-look gallery.
#pragma once

#include <string>
#include <vector>

#include "astroflow/catalog.hpp"
#include "astroflow/run_summary.hpp"

namespace astroflow {

struct QuicklookEntry {
  std::string title;  ///< e.g. "field_001.fits[0]"
  std::string href;   ///< PNG path relative to the report, e.g. "quicklook/field_001.png"
  std::size_t sources = 0;
};

/// Counts of `values` in `bins` equal bins over [lo, hi] (finite values only; NaN/inf skipped;
/// values outside go to the end bins). Exposed for tests.
struct Histogram {
  double lo = 0.0;
  double hi = 0.0;
  std::vector<std::size_t> counts;
};
[[nodiscard]] Histogram make_histogram(const std::vector<double>& values, int bins);

/// Inline SVG bar chart of a histogram with axis labels.
[[nodiscard]] std::string histogram_svg(const Histogram& h, const std::string& x_label);

/// The whole page. `merged` may be empty.
[[nodiscard]] std::string render_report_html(const RunReport& report, const Catalog& merged,
                                             const std::vector<QuicklookEntry>& quicklooks);

/// HTML-escapes &, <, >, " and '.
[[nodiscard]] std::string html_escape(const std::string& text);

}  // namespace astroflow
