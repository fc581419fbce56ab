// Frame and Batch: the units that flow through the graph.
//
// A Frame is one image HDU of one input file, or one tile of it. Pixels are float32 with NaN
// for blank pixels. Stages read the science plane and add named planes (e.g. "background",
// "rms", "segmap" as CV_32S, "denoised"), catalog columns and provenance.
//
// A Batch is what one graph message carries: several small frames (cutouts) or the tiles of
// one large image. Stages process whole batches so CNN stages can run batched inference.
#pragma once

#include <cstdint>
#include <map>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <string>
#include <vector>

#include "astroflow/catalog.hpp"
#include "astroflow/header.hpp"
#include "astroflow/wcs.hpp"

namespace astroflow {

/// Per-frame flag bits (the FRAME_FLAGS of summary.json).
enum FrameFlag : std::uint32_t {
  kFrameFailed = 1u << 0,    ///< a stage or the reader failed; later stages skip the frame
  kFrameAllBlank = 1u << 1,  ///< no finite pixel
  kFrameResampled = 1u << 2,
  kFrameTruncated = 1u << 3,
};

struct Provenance {
  std::string stage;   ///< stage instance name in the config
  std::string plugin;  ///< plugin name
  std::string plugin_version;
  std::string model_sha256;  ///< empty for classical stages
};

struct FrameIssue {
  std::string stage;  ///< "reader", "writer" or the stage name
  std::string reason;
};

/// Where a tile sits in its parent image. For an untiled frame x0 = y0 = 0, count = 1.
struct TileInfo {
  int x0_pix = 0;  ///< 0-based offset of the tile's first pixel in the full image
  int y0_pix = 0;
  int full_width_pix = 0;
  int full_height_pix = 0;
  int index = 0;
  int count = 1;
  int overlap_pix = 0;
};

struct Frame {
  Frame() = default;
  Frame(const Frame&) = default;
  Frame& operator=(const Frame&) = default;
  // noexcept, so that a growing std::vector<Frame> moves its frames instead of copying them (a
  // copy duplicates the header and the WCS, through wcssub). cv::Mat and Catalog's deque do not
  // declare their moves noexcept; neither throws short of running out of memory.
  Frame(Frame&&) noexcept = default;
  Frame& operator=(Frame&&) noexcept = default;
  ~Frame() = default;

  // Identity
  std::string path;             ///< input file as given
  int hdu_index = 0;            ///< 0 = primary HDU (astropy convention)
  std::string hdu_name;         ///< EXTNAME or "PRIMARY"
  int hdu_version = 0;          ///< EXTVER, 0 when absent
  std::size_t input_index = 0;  ///< position of the file in the sorted input list

  // Pixels
  cv::Mat science;  ///< CV_32FC1, NaN for blank pixels
  cv::Mat weight;   ///< optional, CV_32FC1 (e.g. from an ERR extension: inverse variance)
  cv::Mat mask;     ///< optional, CV_32SC1 bit mask (e.g. an HST DQ extension)
  std::map<std::string, cv::Mat> planes;  ///< named output/intermediate planes

  Header header;                    ///< cards to propagate to outputs (non-structural)
  std::optional<Wcs> wcs;           ///< for a tile: already shifted to the tile origin
  double pixel_scale_arcsec = 0.0;  ///< from the WCS, or 0 when unknown

  Catalog catalog;
  TileInfo tile;

  std::vector<Provenance> provenance;
  std::uint32_t flags = 0;
  std::vector<FrameIssue> issues;

  [[nodiscard]] bool failed() const { return (flags & kFrameFailed) != 0; }
  [[nodiscard]] int width() const { return science.cols; }
  [[nodiscard]] int height() const { return science.rows; }
  /// "path[HDU]" as used in every log line about this frame, e.g. "a.fits[SCI,1]".
  [[nodiscard]] std::string label() const;
  /// Marks the frame failed and records why.
  void fail(std::string stage, std::string reason);
};

struct Batch {
  std::size_t sequence = 0;  ///< order of emission by the reader; the sequencer uses it
  std::vector<Frame> frames;
  /// Set when a large image was tiled: the tiles of one parent image, to be stitched.
  bool tiled = false;
};

}  // namespace astroflow
