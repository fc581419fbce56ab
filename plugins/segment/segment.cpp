// The `segment` stage: a U-Net (models/segment) run on overlapping tiles of an image of any size,
// blended with a raised-cosine window (astroflow/tile_blend.hpp), giving
//  * plane "classmap" (CV_8U): the most probable class per pixel, Morpheus-style (0 background,
//    1 spheroid, 2 disk, 3 irregular, 4 point_source);
//  * plane "segmap" (CV_32S, SExtractor-compatible): the catalog's NUMBER on each source's
//    footprint, from a watershed on the network's inner-distance map seeded at the catalog
//    positions and restricted to the network's foreground, so blended neighbours are split;
//  * catalog columns ISOAREA_IMAGE, FLUX_SEGMENT, FLUXERR_SEGMENT and CLASS_SEGMENT.
//
// Normalisation: x = (image - b) / rms with the `background` stage's planes (b = 0 when that
// stage already subtracted it, BKG_SUB = T; normalise_frame_by_planes), then the card's stretch
// (asinh(x / scale); the card's background estimator must be "none"). Blank pixels are 0 for
// inference and 0 in both maps.
//
// One OnnxModel per instance (cv::dnn::Net is not thread-safe); the host gives each concurrent
// slot its own instance.
#include <array>
#include <astroflow/onnx_model.hpp>
#include <astroflow/plugin.hpp>
#include <astroflow/preprocess.hpp>
#include <astroflow/tile_blend.hpp>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "segment_core.hpp"

namespace {

namespace seg = astroflow::segment;

class SegmentStage : public astroflow::Stage {
 public:
  void configure(const astroflow::Options& o) override {
    model_path_ = o.get_string("model");
    tile_ = static_cast<int>(o.get_int("tile"));
    overlap_ = static_cast<int>(o.get_int("overlap"));
    batch_ = static_cast<int>(o.get_int("batch"));
    fg_threshold_ = static_cast<float>(o.get_double("foreground_threshold"));
  }

  void open(const astroflow::StageContext& ctx) override {
    Stage::open(ctx);
    // The host resolved the path against the config's folder. OnnxModelError /
    // ModelCardError are FatalErrors naming the model file.
    model_.emplace(astroflow::OnnxModel::load(model_path_, {batch_, false, true}));
    const auto& card = model_->card();
    const std::string where = "stage '" + ctx.stage_name + "': " + card.card_path;
    if (card.channels() != 1 || card.height_pix() != card.width_pix()) {
      throw astroflow::FatalError(
          where + ": segment needs a 1-channel square input, the card says " +
          std::to_string(card.channels()) + "x" + std::to_string(card.height_pix()) + "x" +
          std::to_string(card.width_pix()));
    }
    if (card.class_names.size() != static_cast<std::size_t>(seg::kClassCount) ||
        card.class_names.front() != "background") {
      throw astroflow::FatalError(where +
                                  ": segment needs output.class_names = [background, spheroid, "
                                  "disk, irregular, point_source]");
    }
    if (card.normalisation.background != "none") {
      throw astroflow::FatalError(where +
                                  ": normalisation.background must be 'none' (the stage "
                                  "normalises with the background stage's planes)");
    }
    tile_ = astroflow::checked_network_tile(card, ctx.stage_name, tile_, overlap_);
    size_multiple_ = card.size_multiple;
  }

 protected:
  void process_frame(astroflow::Frame& frame) override {
    astroflow::Catalog& cat = frame.catalog;
    const auto* xc = cat.find("X_IMAGE");
    const auto* yc = cat.find("Y_IMAGE");
    const auto* nc = cat.find("NUMBER");
    if (cat.rows() > 0 && (xc == nullptr || yc == nullptr || nc == nullptr)) {
      throw astroflow::FrameError(
          "segment needs the catalog columns X_IMAGE, Y_IMAGE and NUMBER from an earlier stage");
    }
    cv::Mat blank;
    const cv::Mat norm = astroflow::normalise_frame_by_planes(frame, "segment", blank);
    // The network is not resampled to the frame: a pixel scale off the card's by more than 10%
    // is run as it is, with a warning (the footprints scale with the pixels, the classes less
    // reliably).
    const double card_scale = model_->card().pixel_scale_arcsec;
    if (frame.pixel_scale_arcsec > 0.0 &&
        std::abs(frame.pixel_scale_arcsec / card_scale - 1.0) > 0.1) {
      log().warn(frame.label() + ": pixel scale " + std::to_string(frame.pixel_scale_arcsec) +
                 " arcsec/pix differs from the model's " + std::to_string(card_scale) +
                 "; segmented at the frame's own scale");
    }
    cv::Mat stretched;
    (void)astroflow::normalise_stamp(norm, model_->card().normalisation, stretched);

    // Windows fitted to the frame for a fully convolutional card, else the card's size.
    const int tw = astroflow::balanced_tile(stretched.cols, tile_, overlap_, size_multiple_);
    const int th = astroflow::balanced_tile(stretched.rows, tile_, overlap_, size_multiple_);
    const cv::Mat channels = astroflow::blend_tiles(
        stretched, tw, th, overlap_, batch_, [this, tw, th](const std::vector<cv::Mat>& tiles) {
          const int dims[4] = {static_cast<int>(tiles.size()), 1, th, tw};
          cv::Mat blob(4, dims, CV_32F);
          const std::size_t plane = static_cast<std::size_t>(tw) * th;
          for (std::size_t i = 0; i < tiles.size(); ++i) {
            std::copy(tiles[i].ptr<float>(), tiles[i].ptr<float>() + plane,
                      blob.ptr<float>() + i * plane);
          }
          const cv::Mat result = model_->run(blob).at(0);
          if (result.dims != 4 || result.size[1] != seg::kChannelCount) {
            throw astroflow::FrameError("the segment network gave " +
                                        std::to_string(result.dims > 1 ? result.size[1] : 0) +
                                        " output channels, expected 6");
          }
          std::vector<cv::Mat> outs;
          for (std::size_t i = 0; i < tiles.size(); ++i) {
            outs.push_back(seg::to_pixel_channels(
                result.ptr<float>() + i * plane * seg::kChannelCount, th, tw));
          }
          return outs;
        });

    // Catalog positions are FITS 1-based in the full image, also when this frame is a tile of a
    // larger one (tiler.hpp); the markers are 0-based pixels of this frame.
    std::vector<seg::Marker> markers;
    for (std::size_t r = 0; r < cat.rows(); ++r) {
      const double x = xc->as_double(r) - 1.0 - frame.tile.x0_pix;
      const double y = yc->as_double(r) - 1.0 - frame.tile.y0_pix;
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      markers.push_back({static_cast<int>(std::lround(x)), static_cast<int>(std::lround(y)),
                         static_cast<std::int32_t>(nc->as_double(r))});
    }
    cv::Mat classmap = seg::class_map(channels, blank);
    cv::Mat segmap = seg::marker_watershed(channels, blank, markers, fg_threshold_);
    add_columns(frame, segmap, classmap, norm, frame.planes.at("rms"), blank);
    frame.planes["classmap"] = std::move(classmap);
    frame.planes["segmap"] = std::move(segmap);
    frame.header.add_history("astroflow segment: model sha256 " + model_->card().sha256);
    stamp(frame, model_->card().sha256);
  }

 private:
  // Footprint measurements from the segmap; rows whose NUMBER has no pixel get 0 area and NaN
  // fluxes. FLUX_SEGMENT is the background-subtracted flux inside the footprint (like FLUX_ISO
  // on the CNN footprint); FLUXERR_SEGMENT adds the background rms in quadrature and, when the
  // header has GAIN, the Poisson term flux / GAIN. CLASS_SEGMENT is the class holding most of
  // the footprint's pixels.
  void add_columns(astroflow::Frame& frame, const cv::Mat& segmap, const cv::Mat& classmap,
                   const cv::Mat& norm, const cv::Mat& rms, const cv::Mat& blank) const {
    astroflow::Catalog& cat = frame.catalog;
    if (cat.rows() == 0) return;
    const auto* nc = cat.find("NUMBER");
    std::int32_t max_label = 0;
    for (std::size_t r = 0; r < cat.rows(); ++r) {
      max_label = std::max(max_label, static_cast<std::int32_t>(nc->as_double(r)));
    }
    const auto n = static_cast<std::size_t>(std::max(0, max_label)) + 1;
    std::vector<std::int64_t> area(n, 0);
    std::vector<double> flux(n, 0.0);
    std::vector<double> var(n, 0.0);
    std::vector<std::array<std::int64_t, seg::kClassCount>> votes(n);
    for (auto& v : votes) v.fill(0);
    for (int y = 0; y < segmap.rows; ++y) {
      const auto* s = segmap.ptr<std::int32_t>(y);
      const auto* c = classmap.ptr<std::uint8_t>(y);
      const float* t = norm.ptr<float>(y);
      const float* r = rms.ptr<float>(y);
      const auto* b = blank.ptr<std::uint8_t>(y);
      for (int x = 0; x < segmap.cols; ++x) {
        if (s[x] <= 0 || s[x] > max_label) continue;
        const auto k = static_cast<std::size_t>(s[x]);
        ++area[k];
        ++votes[k][c[x]];
        if (b[x] != 0) continue;
        // norm is (image - background) / rms, so the counts are norm * rms.
        flux[k] += static_cast<double>(t[x]) * r[x];
        var[k] += static_cast<double>(r[x]) * r[x];
      }
    }
    const double gain = astroflow::poisson_gain(frame.header);
    static const char* kNames[seg::kClassCount] = {"background", "spheroid", "disk", "irregular",
                                                   "point_source"};
    auto& iso = cat.add_column<std::int32_t>("ISOAREA_IMAGE", "pix2",
                                             "footprint area (segment: pixels of the segmap)");
    auto& fcol =
        cat.add_column<double>("FLUX_SEGMENT", "count", "background-subtracted flux in the segmap");
    auto& ecol = cat.add_column<double>("FLUXERR_SEGMENT", "count", "RMS error of FLUX_SEGMENT");
    auto& ccol = cat.add_column<std::string>("CLASS_SEGMENT", "",
                                             "classmap class of most of the footprint's pixels");
    for (std::size_t r = 0; r < cat.rows(); ++r) {
      const auto label = static_cast<std::int32_t>(nc->as_double(r));
      if (label <= 0 || label > max_label || area[static_cast<std::size_t>(label)] == 0) {
        iso[r] = 0;
        fcol[r] = std::nan("");
        ecol[r] = std::nan("");
        ccol[r] = "";
        continue;
      }
      const auto k = static_cast<std::size_t>(label);
      iso[r] = static_cast<std::int32_t>(area[k]);
      fcol[r] = flux[k];
      ecol[r] = std::sqrt(var[k] + (gain > 0.0 ? std::max(0.0, flux[k]) / gain : 0.0));
      // Background votes count only when the footprint has no source pixel at all.
      const auto& v = votes[k];
      const auto best = std::max_element(v.begin() + 1, v.end());
      ccol[r] = kNames[*best > 0 ? best - v.begin() : 0];
    }
  }

  std::string model_path_;
  int tile_ = 0;
  int overlap_ = 32;
  int batch_ = 1;
  int size_multiple_ = 0;
  float fg_threshold_ = 0.9f;
  std::optional<astroflow::OnnxModel> model_;
};

}  // namespace

ASTROFLOW_PLUGIN(
    SegmentStage, "segment", "1.0.0", "MIT",
    "U-Net segmentation on overlapping, blended tiles: per-pixel morphology (classmap) and a "
    "watershed-split instance map (segmap) labelled with the catalog's NUMBER",
    "plane:background,plane:rms,column:X_IMAGE,column:Y_IMAGE,column:NUMBER",
    "plane:segmap,plane:classmap,column:ISOAREA_IMAGE,column:FLUX_SEGMENT,column:FLUXERR_SEGMENT,"
    "column:CLASS_SEGMENT",
    astroflow::add_network_window_options(
        astroflow::OptionSchema().add_path(
            "model", std::nullopt,
            "model.onnx (its model.yaml card beside it) or the card; relative to the config"))
        .add_double("foreground_threshold", 0.9,
                    "a pixel is foreground when 1 - P(background) reaches this (0.9: the best "
                    "median footprint IoU on the model's validation fields)",
                    0.01, 0.99))
