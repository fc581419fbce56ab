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

#include <map>
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

/// What the page shows of the merged catalog: class counts (CLASS) and histograms of
/// MAG_AUTO, DET_SCORE and A_IMAGE (each when the column exists). Built from a whole catalog
/// (of()), or without holding one, in two passes over its rows in chunks: observe_range() on
/// every chunk, settle(schema) with the merged catalog's columns, then count() on every chunk
/// (chunks with all the schema's columns). Both give make_histogram's bins exactly.
class CatalogStats {
 public:
  static constexpr int kBins = 30;
  [[nodiscard]] static CatalogStats of(const Catalog& merged);
  /// Pass 1, on chunks with any subset of the columns (a missing integer column reads as 0).
  void observe_range(const Catalog& chunk);
  void settle(const Catalog& schema);
  /// Pass 2, on chunks with the schema's columns.
  void count(const Catalog& chunk);

  bool has_class = false;
  std::map<std::string, std::size_t> class_counts;
  /// (column, label, histogram) in page order, for the columns the merged catalog has.
  struct Plot {
    std::string column;
    std::string label;
    Histogram histogram;
  };
  std::vector<Plot> plots;

 private:
  struct Range {
    bool any = false;
    double lo = 0.0;
    double hi = 0.0;
    bool rows_without_column = false;
  };
  std::map<std::string, Range> ranges_;
};

/// The whole page. `merged` may be empty.
[[nodiscard]] std::string render_report_html(const RunReport& report, const Catalog& merged,
                                             const std::vector<QuicklookEntry>& quicklooks);
[[nodiscard]] std::string render_report_html(const RunReport& report, const CatalogStats& stats,
                                             const std::vector<QuicklookEntry>& quicklooks);

/// HTML-escapes &, <, >, " and '.
[[nodiscard]] std::string html_escape(const std::string& text);

}  // namespace astroflow
