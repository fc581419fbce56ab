// The `detect` stage: a CenterNet-style CNN (models/detect) run on overlapping tiles of an image
// of any size, giving one catalog row per source. README.md in this folder lists the columns,
// the flags and the tile rule.
//
// Normalisation: t = (x - b) / rms with the `background` stage's planes (preprocess.hpp,
// normalise_by_planes), then the card's stretch (asinh(t / scale)). Blank pixels are 0.
// Decoding: the network gives, at 1/stride resolution, a heatmap per class (star, galaxy), the
// log half extents of the source's box and the sub-cell offset of its centre. Peaks are 3x3
// local maxima of max(heatmaps) above `threshold` (find_peaks). A peak is kept by the tile that
// owns its position (the shared band of two tiles is split at its middle), so a source in an
// overlap is reported once; a duplicate found by the other tile within merge_radius_pix sets
// the tile-merged flag. cv::dnn::NMSBoxes then removes boxes that overlap a stronger one by
// more than nms_iou (double peaks of one extended source).
// Crowded-star tier (crowded_star_score > 0): a peak from that score up to `threshold` stays,
// with FLAGS 1024, when the heatmaps call both it and the nearest peak at or above `threshold`
// within crowded_star_radius_pix stars (keep_crowded_stars).
// Isophotal rescue (rescue_snr > 0): a heatmap value below `threshold` is still evidence when the
// image itself holds a significant object there, and the network scores some rare sources low
// (large bright disks). Objects found on the isophotes as SExtractor does (Gaussian filter of
// FWHM 3 px, 1.5 rms, 5 px, multi-threshold deblending) with isophotal S/N s >= rescue_snr, no
// kept peak within rescue_radius_pix, and a heatmap maximum within 3 px (rescue_union, the
// default: of 1 - (1 - star)(1 - galaxy), as the network splits small galaxies between the
// classes) of at least rescue_score (rescue_bright_score from s >= rescue_bright_snr > 0 for an
// object the deblender left whole or with no kept peak within rescue_bright_far_pix, or for any
// with rescue_bright_whole off; rescue_compact_score
// for an object whose isophotal rms semi-major axis is below rescue_compact_a_pix;
// rescue_edge_score > 0 for one the frame's border cuts) are added with FLAGS 512 (DET_SCORE =
// that maximum).
// Centres (`centre`): the windowed centroid (XWIN_IMAGE, started from the footprint's
// barycentre; default), the barycentre of the source's footprint (SExtractor's X_IMAGE), the
// network's own, or (isophotal) the barycentre of the isophotal object holding it when it holds
// no other detection.
// Star/galaxy (class_locus, default on): CLASS_STAR = star / (star + galaxy) of the heatmaps,
// then updated by the row's light concentration against the stellar locus of its image, fitted
// over all the tiles of a tiled image (stellar_locus.hpp; process()). Saturated rows (FLAGS 4: a
// footprint pixel at or above saturation_level or the header's SATURATE, or next to a pixel with
// one of saturation_mask_bits in the input's mask) keep the network's.
// Measurements: a footprint per source (pixels above 1 rms inside its box, shared pixels to the
// nearer centre in box units), second moments (A, B, THETA) of the background-subtracted
// footprint around the centre (or, moments: isophotal, of the isophotal object holding only this
// detection), and Kron photometry (kron_aperture.hpp).
//
// One OnnxModel per instance (cv::dnn::Net is not thread-safe); the host gives each concurrent
// slot its own instance.
#include <algorithm>
#include <astroflow/deblend.hpp>
#include <astroflow/kron_aperture.hpp>
#include <astroflow/onnx_model.hpp>
#include <astroflow/plugin.hpp>
#include <astroflow/point_grid.hpp>
#include <astroflow/preprocess.hpp>
#include <astroflow/stellar_locus.hpp>
#include <astroflow/tile_blend.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

// FLAGS bits: SExtractor's meaning where one exists (1, 2, 4, 8, 16); 256, 512 and 1024 are
// detect's own.
constexpr std::int32_t kFlagCrowded = 1;       // another source's footprint in the AUTO aperture
constexpr std::int32_t kFlagBlended = 2;       // another detection's centre inside this box
constexpr std::int32_t kFlagSaturated = 4;     // a footprint pixel at or above the saturation level
constexpr std::int32_t kFlagEdge = 8;          // the box touches the image edge or blank pixels
constexpr std::int32_t kFlagApertureCut = 16;  // AUTO aperture runs off the image / blank pixels
constexpr std::int32_t kFlagTileMerged = 256;  // also found by a neighbouring network tile
constexpr std::int32_t kFlagRescued = 512;     // an isophotal object below the peak threshold
constexpr std::int32_t kFlagCrowdedStar = 1024;  // a star peak below threshold beside a star

// Footprint pixels are those above this many rms inside the box.
constexpr float kFootprintSigma = 1.0f;
constexpr double kNoMag = 99.0;

// The isophotal rescue's detection, SExtractor's defaults (bench/sextractor_run.sh): a Gaussian
// filter of FWHM 3 px, pixels above 1.5 rms of the unfiltered image, 8-connected components of
// at least 5 px, 32 deblending levels and a 0.005 contrast.
constexpr double kRescueFilterFwhm = 3.0;
constexpr double kRescueThreshold = 1.5;
constexpr int kRescueMinArea = 5;
// moments: isophotal takes the moments of isophotal objects from this S/N (the rescue's default
// rescue_snr, so that the default stage deblends no more components than before).
constexpr double kIsoMomentsMinSnr = 5.0;
constexpr int kRescueNthresh = 32;
constexpr double kRescueMincont = 0.005;
constexpr double kRescueSupportPix = 3.0;  // heatmap support: its maximum within this radius

// class_locus (stellar_locus.hpp): concentration F(r < 2 px) / F(r < 6 px) around the reported
// centre; the locus from rows with CLASS_STAR >= 0.9, FLUX_AUTO / FLUXERR_AUTO >= 30 and none of
// FLAGS 1, 2, 4, 8, 16, 512 (neighbours, clipped cores, edges and rescued rows bias c), at least 5
// of them, its scatter at least 10% of its centre (a handful of stars underestimates it, and the
// PSF varies by 5-10% across a real image). r_in = 2 px keeps c smooth in the centre's sub-pixel
// phase at the PSF FWHM of 2.5-4 px; 6 px holds most of the light of a point source while reaching
// few neighbours. In a tiled image a star in the overlap of two tiles may calibrate twice.
constexpr double kLocusInnerPix = 2.0;
constexpr double kLocusOuterPix = 6.0;
constexpr double kLocusCalibrationClass = 0.9;
constexpr double kLocusCalibrationSnr = 30.0;
constexpr std::size_t kLocusMinStars = 5;
constexpr double kLocusSigmaFloor = 0.10;

struct Candidate {
  double x = 0.0;  // 0-based, frame coordinates
  double y = 0.0;
  float score = 0.0f;
  float p_star = 0.0f;
  double hx = 1.0;  // half extents of the box, pixels
  double hy = 1.0;
  bool merged = false;
  bool rescued = false;      // an isophotal object (FLAGS 512)
  bool weak = false;         // a network peak below `threshold` (crowded_star_score tier)
  double iso_snr = 0.0;      // its isophotal S/N
  double iso_a = 0.0;        // its isophotal rms semi-major axis, pixels
  double iso_b = 0.0;        // its isophotal rms semi-minor axis, pixels
  double iso_theta = 0.0;    // its isophotal position angle, degrees
  bool iso_edge = false;     // its isophotal object touches the frame's border (cut by it)
  bool iso_whole = false;    // the deblender left its isophotal component whole
  bool iso_centred = false;  // centre = barycentre of the isophotal object holding it
  int component = 0;         // its connected isophotal component (IsophotalObjects::component)
};

// The objects found on the isophotes (isophotal_objects): the rescue's candidates, and for
// `centre: isophotal` or `moments: isophotal` each deblended object's barycentre, S/N and
// moments with a map of its pixels.
struct IsophotalObjects {
  std::vector<Candidate> rescue;  // S/N >= rescue_snr
  std::vector<Candidate> all;     // every deblended object; label l is all[l - 1]
  cv::Mat label;                  // CV_32S, 0 outside the objects
  // The connected components before deblending (with the rescue and rescue_peak_score on): CV_32S
  // labels, 0 outside, and per label its S/N (sum of t / sqrt(pixels)) and whether
  // rescue_peak_score kept a peak on it (keep_weak_peaks), in which case its deblended objects are
  // not rescued.
  cv::Mat component;
  std::vector<double> component_snr;
  std::vector<char> component_peak_kept;
};

// SExtractor's windowed centroid (XWIN_IMAGE): from (x, y), x <- x + 2 sum(w v (x_i - x)) /
// sum(w v) over the pixels within 4 sig of x, w = exp(-r^2 / (2 sig^2)), until the step is below
// 2e-4 px or after 16 steps. SExtractor takes sig = 2 / 2.35 of the half-light radius, which for
// a Gaussian profile is its rms width; here sig = sqrt(A B) of the footprint, at least 0.5 px.
// Pixels of other detections' footprints (segmap) and blank (NaN) pixels are left out, so a
// neighbour does not pull the window. Returns (x, y) unchanged when the weights vanish or the
// window runs more than 4 sig from its start.
std::pair<double, double> windowed_centre(const cv::Mat& image, const cv::Mat& segmap, int label,
                                          double x, double y, double sig) {
  const int w = image.cols;
  const int h = image.rows;
  const double reach = 4.0 * sig;
  const double inv2s2 = 1.0 / (2.0 * sig * sig);
  double cx = x;
  double cy = y;
  for (int it = 0; it < 16; ++it) {
    const int x0 = std::max(0, static_cast<int>(std::floor(cx - reach)));
    const int x1 = std::min(w - 1, static_cast<int>(std::ceil(cx + reach)));
    const int y0 = std::max(0, static_cast<int>(std::floor(cy - reach)));
    const int y1 = std::min(h - 1, static_cast<int>(std::ceil(cy + reach)));
    double sw = 0.0;
    double sx = 0.0;
    double sy = 0.0;
    for (int yy = y0; yy <= y1; ++yy) {
      const float* v = image.ptr<float>(yy);
      const int* sg = segmap.ptr<int>(yy);
      for (int xx = x0; xx <= x1; ++xx) {
        if (!std::isfinite(v[xx]) || (sg[xx] != 0 && sg[xx] != label)) continue;
        const double dx = xx - cx;
        const double dy = yy - cy;
        const double r2 = dx * dx + dy * dy;
        if (r2 > reach * reach) continue;
        const double wv = std::exp(-r2 * inv2s2) * v[xx];
        sw += wv;
        sx += wv * dx;
        sy += wv * dy;
      }
    }
    if (!(sw > 0.0)) return {x, y};
    const double stepx = 2.0 * sx / sw;
    const double stepy = 2.0 * sy / sw;
    cx += stepx;
    cy += stepy;
    if ((cx - x) * (cx - x) + (cy - y) * (cy - y) > reach * reach) return {x, y};
    if (stepx * stepx + stepy * stepy < 4e-8) break;
  }
  return {cx, cy};
}

// Owned interval [lo, hi) of each tile start along one axis: the band shared by two
// neighbouring tiles is split at its middle; outer sides extend to infinity.
std::vector<std::pair<double, double>> owned_ranges(const std::vector<int>& starts, int tile) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::pair<double, double>> r(starts.size(), {-inf, inf});
  for (std::size_t k = 0; k + 1 < starts.size(); ++k) {
    const double mid = 0.5 * (starts[k + 1] + starts[k] + tile);
    r[k].second = mid;
    r[k + 1].first = mid;
  }
  return r;
}

class DetectStage : public astroflow::Stage {
 public:
  void configure(const astroflow::Options& o) override {
    model_path_ = o.get_string("model");
    threshold_ = static_cast<float>(o.get_double("threshold"));
    tile_ = static_cast<int>(o.get_int("tile"));
    overlap_ = static_cast<int>(o.get_int("overlap"));
    batch_ = static_cast<int>(o.get_int("batch"));
    nms_iou_ = static_cast<float>(o.get_double("nms_iou"));
    merge_radius_pix_ = o.get_double("merge_radius_pix");
    rescue_snr_ = o.get_double("rescue_snr");
    rescue_score_ = static_cast<float>(o.get_double("rescue_score"));
    rescue_bright_snr_ = o.get_double("rescue_bright_snr");
    rescue_bright_score_ = static_cast<float>(o.get_double("rescue_bright_score"));
    rescue_bright_whole_ = o.get_bool("rescue_bright_whole");
    rescue_bright_far_pix_ = o.get_double("rescue_bright_far_pix");
    rescue_radius_pix_ = o.get_double("rescue_radius_pix");
    rescue_compact_score_ = static_cast<float>(o.get_double("rescue_compact_score"));
    rescue_compact_a_pix_ = o.get_double("rescue_compact_a_pix");
    rescue_edge_score_ = static_cast<float>(o.get_double("rescue_edge_score"));
    rescue_peak_score_ = static_cast<float>(o.get_double("rescue_peak_score"));
    rescue_peak_sep_pix_ = o.get_double("rescue_peak_sep_pix");
    const std::string centre = o.get_string("centre");
    barycentre_ = centre != "network";
    isophotal_centre_ = centre == "isophotal";
    windowed_centre_ = centre == "windowed";
    isophotal_moments_ = o.get_string("moments") == "isophotal";
    union_score_ = o.get_string("score") == "union";
    rescue_union_ = o.get_bool("rescue_union");
    class_locus_ = o.get_bool("class_locus");
    class_locus_crowded_ = o.get_bool("class_locus_crowded");
    class_locus_neighbour_pix_ = o.get_double("class_locus_neighbour_pix");
    class_locus_outlier_ = o.get_double("class_locus_outlier");
    crowded_star_score_ = static_cast<float>(o.get_double("crowded_star_score"));
    crowded_star_radius_pix_ = o.get_double("crowded_star_radius_pix");
    crowded_star_class_ = o.get_double("crowded_star_class");
    saturation_ = astroflow::saturation_options(o);
    iso_centre_snr_ = o.get_double("isophotal_centre_snr");
    gain_ = o.get_double("gain");
    zeropoint_ = o.get_double("mag_zeropoint");
  }

  void open(const astroflow::StageContext& ctx) override {
    Stage::open(ctx);
    std::filesystem::path p(model_path_);
    if (p.is_relative() && !ctx.config_dir.empty() && !std::filesystem::exists(p)) {
      p = std::filesystem::path(ctx.config_dir) / p;
    }
    // OnnxModelError / ModelCardError are FatalErrors naming the model file.
    resolved_model_path_ = p.string();
    model_.emplace(astroflow::OnnxModel::load(resolved_model_path_, {batch_, false, true}));
    const auto& card = model_->card();
    if (card.output_semantics != "heatmap" || card.class_names.size() != 2 ||
        card.channels() != 1 || card.height_pix() != card.width_pix()) {
      throw astroflow::FatalError(card.card_path +
                                  ": detect needs a 1-channel square input and output.semantics "
                                  "heatmap with two class names (star, galaxy)");
    }
    if (!(threshold_ > 0.0f)) {
      threshold_ = card.score_threshold > 0.0 ? static_cast<float>(card.score_threshold) : 0.5f;
    }
    if (!(rescue_score_ > 0.0f)) {
      rescue_score_ = card.rescue_score > 0.0 ? static_cast<float>(card.rescue_score) : threshold_;
    }
    if (card.normalisation.background != "none") {
      throw astroflow::FatalError(card.card_path +
                                  ": detect normalises with the background stage's planes; the "
                                  "card's normalisation.background must be none");
    }
    star_class_ = card.class_names[0] == "star" ? 0 : 1;
    tile_ = astroflow::checked_network_tile(card, ctx.stage_name, tile_, overlap_);
    size_multiple_ = card.size_multiple;
  }

  // Each frame as process_frame, then (class_locus) CLASS_STAR against the stellar locus of
  // each image: of all the tiles of a tiled batch together (one large image; a tile of 1/9 of a
  // 4096^2 field holds 0-4 calibration stars), else of each frame.
  void process(astroflow::Batch& batch) override {
    Stage::process(batch);
    if (!class_locus_) return;
    std::vector<astroflow::Frame*> image;
    for (astroflow::Frame& f : batch.frames) {
      if (f.failed() || !f.catalog.has("CONCENTRATION")) continue;
      image.push_back(&f);
      if (!batch.tiled) {
        apply_locus(image);
        image.clear();
      }
    }
    if (!image.empty()) apply_locus(image);
  }

 protected:
  void process_frame(astroflow::Frame& frame) override {
    cv::Mat blank;
    const cv::Mat t = astroflow::normalise_frame_by_planes(frame, "detect", blank);

    IsophotalObjects iso = isophotal_objects(t, blank);
    std::vector<Candidate> cands = run_network(t, blank, iso.rescue);
    cands = keep_weak_peaks(suppress(std::move(cands)), iso);
    add_rescued(cands, iso);
    centre_on_isophotes(cands, iso);
    measure(frame, t, blank, iso, cands);
    frame.header.add_history("astroflow detect: model sha256 " + model_->card().sha256);
    stamp(frame, model_->card().sha256);
  }

 private:
  // class_locus: fits the locus to the calibration rows of `frames` (the tiles of one image) and
  // updates the rows' CLASS_STAR, those with FLAGS 1 or 2 only with class_locus_crowded (a
  // neighbour's light in the 6 px disk lowers c: on the HST ACS image, where the network calls
  // every row a star, 75-81% of the rows the locus turned into galaxies had FLAGS 1 or 2, against
  // 14-20% of the others); records the locus in each frame's header.
  // A row with another row within class_locus_neighbour_pix (the 6 px disk plus the reach of a
  // neighbour's core) is crowded too, flagged or not: it neither calibrates nor is updated.
  void apply_locus(const std::vector<astroflow::Frame*>& frames) const {
    constexpr std::int32_t kNotClean =
        kFlagCrowded | kFlagBlended | kFlagSaturated | kFlagEdge | kFlagApertureCut | kFlagRescued;
    const std::vector<bool> near = rows_with_a_neighbour(frames, class_locus_neighbour_pix_);
    std::vector<double> c;
    std::vector<bool> calibrate;
    for (const astroflow::Frame* f : frames) {
      const astroflow::Catalog& cat = f->catalog;
      const auto& conc = cat.get<double>("CONCENTRATION");
      const auto& p = cat.get<float>("CLASS_STAR");
      const auto& flux = cat.get<double>("FLUX_AUTO");
      const auto& err = cat.get<double>("FLUXERR_AUTO");
      const auto& flags = cat.get<std::int32_t>("FLAGS");
      for (std::size_t k = 0; k < cat.rows(); ++k) {
        const std::size_t row = c.size();  // over the rows of all frames, as `near`
        c.push_back(conc[k]);
        calibrate.push_back(p[k] >= kLocusCalibrationClass && err[k] > 0.0 &&
                            flux[k] / err[k] >= kLocusCalibrationSnr &&
                            (flags[k] & kNotClean) == 0 && !near[row]);
      }
    }
    const astroflow::StellarLocus locus =
        astroflow::fit_stellar_locus(c, calibrate, kLocusMinStars, kLocusSigmaFloor);
    std::size_t row = 0;
    for (astroflow::Frame* f : frames) {
      astroflow::Catalog& cat = f->catalog;
      const auto& conc = cat.get<double>("CONCENTRATION");
      const auto& err = cat.get<double>("CONCENTRATIONERR");
      const auto& flags = cat.get<std::int32_t>("FLAGS");
      auto& p = cat.get<float>("CLASS_STAR");
      for (std::size_t k = 0; k < cat.rows(); ++k, ++row) {
        // A clipped core is not concentrated: a saturated row keeps the network's class.
        if ((flags[k] & kFlagSaturated) != 0) continue;
        if (!class_locus_crowded_ &&
            ((flags[k] & (kFlagCrowded | kFlagBlended)) != 0 || near[row])) {
          continue;
        }
        p[k] = static_cast<float>(astroflow::locus_star_probability(p[k], {conc[k], err[k]}, locus,
                                                                    class_locus_outlier_));
      }
      f->header.set("DETLOCUS", locus.calibrated ? locus.centre : 0.0,
                    "detect: stellar-locus concentration, 0 = not calibrated");
      f->header.set("DETLOCSG", locus.calibrated ? locus.sigma : 0.0,
                    "detect: stellar-locus scatter");
      f->header.set("DETLOCN", static_cast<long long>(locus.stars),
                    "detect: calibration stars of the stellar locus");
    }
  }

  // Per row of `frames` (in order), whether another row's X_IMAGE, Y_IMAGE (full-image pixels,
  // so rows of neighbouring tiles count) lies within `radius` of its own; all false for 0.
  static std::vector<bool> rows_with_a_neighbour(const std::vector<astroflow::Frame*>& frames,
                                                 double radius) {
    std::vector<double> x;
    std::vector<double> y;
    for (const astroflow::Frame* f : frames) {
      const auto& fx = f->catalog.get<double>("X_IMAGE");
      const auto& fy = f->catalog.get<double>("Y_IMAGE");
      x.insert(x.end(), fx.begin(), fx.end());
      y.insert(y.end(), fy.begin(), fy.end());
    }
    std::vector<bool> near(x.size(), false);
    if (!(radius > 0.0)) return near;
    astroflow::PointGrid grid(radius);
    for (std::size_t i = 0; i < x.size(); ++i) grid.add(i, x[i], y[i]);
    for (std::size_t i = 0; i < x.size(); ++i) {
      grid.for_each_near(x[i], y[i], [&](std::size_t k) {
        if (k != i && std::hypot(x[k] - x[i], y[k] - y[i]) <= radius) near[i] = true;
      });
    }
    return near;
  }

  // A network for one concurrent batch: the stage's own first, then more loaded on demand
  // (cv::dnn::Net is not thread-safe). Returned with release_model.
  astroflow::OnnxModel* acquire_model() {
    {
      const std::lock_guard<std::mutex> lock(pool_mutex_);
      if (!model_in_use_) {
        model_in_use_ = true;
        return &*model_;
      }
      if (!idle_models_.empty()) {
        astroflow::OnnxModel* m = idle_models_.back();
        idle_models_.pop_back();
        return m;
      }
    }
    auto m = std::make_unique<astroflow::OnnxModel>(
        astroflow::OnnxModel::load(resolved_model_path_, {batch_, false, true}));
    const std::lock_guard<std::mutex> lock(pool_mutex_);
    extra_models_.push_back(std::move(m));
    return extra_models_.back().get();
  }
  void release_model(astroflow::OnnxModel* m) {
    const std::lock_guard<std::mutex> lock(pool_mutex_);
    if (m == &*model_) {
      model_in_use_ = false;
    } else {
      idle_models_.push_back(m);
    }
  }

  // Objects on the isophotes of t (rms units; blank pixels 0): the rescue's candidates, with
  // isophotal S/N (sum of t over the object / sqrt(pixels)) >= rescue_snr, whose score
  // run_network sets; for centre: isophotal (and moments: isophotal) also every object and a
  // map of its pixels. Only components whose own S/N reaches half the lowest S/N an object is
  // used at are deblended.
  [[nodiscard]] IsophotalObjects isophotal_objects(const cv::Mat& t, const cv::Mat& blank) const {
    IsophotalObjects out;
    const bool rescue = rescue_snr_ > 0.0;
    const bool keep_all = isophotal_centre_ || isophotal_moments_;
    if (!rescue && !keep_all) return out;
    // Components are deblended from half the lowest S/N an object is used at.
    double min_snr = std::numeric_limits<double>::infinity();
    if (rescue) min_snr = rescue_snr_;
    if (isophotal_centre_) min_snr = std::min(min_snr, iso_centre_snr_);
    if (isophotal_moments_) min_snr = std::min(min_snr, kIsoMomentsMinSnr);
    const int w = t.cols;
    const int h = t.rows;
    const cv::Mat k = astroflow::gaussian_kernel_1d(kRescueFilterFwhm);
    cv::Mat filt;
    cv::sepFilter2D(t, filt, CV_32F, k, k, cv::Point(-1, -1), 0.0, cv::BORDER_CONSTANT);
    cv::Mat mask;
    cv::compare(filt, kRescueThreshold, mask, cv::CMP_GT);
    mask.setTo(0, blank);
    cv::Mat labels;
    cv::Mat stats;
    cv::Mat centroids;
    const int n = cv::connectedComponentsWithStats(mask, labels, stats, centroids, 8, CV_32S);
    std::vector<double> sum(static_cast<std::size_t>(std::max(n, 1)), 0.0);
    for (int y = 0; y < h; ++y) {
      const int* l = labels.ptr<int>(y);
      const float* v = t.ptr<float>(y);
      for (int x = 0; x < w; ++x) {
        if (l[x] > 0) sum[static_cast<std::size_t>(l[x])] += v[x];
      }
    }
    std::vector<std::vector<int>> comps(sum.size());
    std::vector<char> wanted(sum.size(), 0);
    bool any = false;
    for (int l = 1; l < n; ++l) {
      const int area = stats.at<int>(l, cv::CC_STAT_AREA);
      const auto i = static_cast<std::size_t>(l);
      if (area >= kRescueMinArea && sum[i] >= 0.5 * min_snr * std::sqrt(area)) {
        comps[i].reserve(static_cast<std::size_t>(area));
        wanted[i] = 1;
        any = true;
      }
    }
    if (!any) return out;
    for (int y = 0; y < h; ++y) {
      const int* l = labels.ptr<int>(y);
      for (int x = 0; x < w; ++x) {
        const auto i = static_cast<std::size_t>(l[x]);
        if (wanted[i] != 0) comps[i].push_back(y * w + x);
      }
    }
    const astroflow::Deblender deblender(filt, kRescueMinArea, kRescueNthresh, kRescueMincont);
    if (keep_all) out.label = cv::Mat::zeros(h, w, CV_32S);
    if (rescue && rescue_peak_score_ > 0.0f) {  // only keep_weak_peaks reads them
      out.component = labels;
      out.component_snr.assign(sum.size(), 0.0);
      out.component_peak_kept.assign(sum.size(), 0);
      for (int l = 1; l < n; ++l) {
        const auto i = static_cast<std::size_t>(l);
        out.component_snr[i] = sum[i] / std::sqrt(stats.at<int>(l, cv::CC_STAT_AREA));
      }
    }
    const float* tv = t.ptr<float>();
    for (std::size_t ci = 0; ci < comps.size(); ++ci) {
      const std::vector<int>& comp = comps[ci];
      if (comp.empty()) continue;
      const std::vector<astroflow::DeblendedObject> objects = deblender.run(comp, kRescueThreshold);
      for (const astroflow::DeblendedObject& o : objects) {
        double s = 0.0;
        double sw = 0.0;
        double sx = 0.0;
        double sy = 0.0;
        double sxx = 0.0;
        double syy = 0.0;
        double sxy = 0.0;
        int x0 = w;
        int x1 = -1;
        int y0 = h;
        int y1 = -1;
        for (int p : o.pix) {
          const double v = tv[p];
          const int x = p % w;
          const int y = p / w;
          s += v;
          if (v > 0.0) {
            sw += v;
            sx += v * x;
            sy += v * y;
            sxx += v * x * x;
            syy += v * y * y;
            sxy += v * x * y;
          }
          x0 = std::min(x0, x);
          x1 = std::max(x1, x);
          y0 = std::min(y0, y);
          y1 = std::max(y1, y);
        }
        const auto npix = static_cast<double>(o.pix.size());
        if (static_cast<int>(o.pix.size()) < kRescueMinArea || sw <= 0.0) continue;
        Candidate c;
        c.x = sx / sw;
        c.y = sy / sw;
        c.hx = std::max(c.x - x0, x1 - c.x) + 1.0;
        c.hy = std::max(c.y - y0, y1 - c.y) + 1.0;
        c.rescued = true;
        c.iso_centred = true;
        c.iso_snr = s / std::sqrt(npix);
        // Second moments about the barycentre from raw sums: in double precision the
        // cancellation costs ~1e-8 px^2 at coordinates of 10^4 px.
        const astroflow::MomentAxes m = astroflow::moment_axes(
            sxx / sw - c.x * c.x, syy / sw - c.y * c.y, sxy / sw - c.x * c.y);
        c.iso_a = m.a;
        c.iso_b = m.b;
        c.iso_theta = m.theta_deg;
        c.iso_edge = x0 == 0 || y0 == 0 || x1 == w - 1 || y1 == h - 1;
        c.iso_whole = objects.size() == 1;
        c.component = static_cast<int>(ci);
        c.score = -1.0f;  // no owning tile yet
        if (keep_all) {
          out.all.push_back(c);
          const int l = static_cast<int>(out.all.size());
          int* lab = out.label.ptr<int>();
          for (int p : o.pix) lab[p] = l;
        }
        if (rescue && c.iso_snr >= rescue_snr_) out.rescue.push_back(c);
      }
    }
    return out;
  }

  // The heatmap value an isophotal object (S/N >= rescue_snr) needs: rescue_score, or
  // rescue_bright_score from S/N rescue_bright_snr on for an object the deblender left whole
  // (rescue_bright_whole: the large bright disks the network misses are whole, while the
  // spurious bright rescued rows were mostly deblended pieces of large irregulars; on seventeen
  // validation fields the whole-only tier added 14 rows, 13 real, where the tier for every
  // object added 35 rows, 10 real; docs/detect.md) or that is `isolated`: a deblended piece
  // with no kept peak within rescue_bright_far_pix is no clump of a detected irregular (the
  // bright spheroids and disks the network misses beside a brighter galaxy; docs/detect.md, "The
  // bright tier on isolated deblended pieces"), rescue_compact_score when
  // its isophotal rms semi-major axis is below rescue_compact_a_pix, or rescue_edge_score when the
  // frame's border cuts it (off by default: the network scores half objects low, and on the
  // validation fields most such objects centre outside the frame). The network scores small faint
  // galaxies low (r_eff 2-3 px, S/N 5-20: heatmap peaks of 0.4-0.6 where SExtractor finds them),
  // while the spurious isophotal objects at such values are mostly pieces of extended galaxies
  // (docs/detect.md).
  [[nodiscard]] float required_support(const Candidate& r, bool isolated) const {
    float need = rescue_bright_snr_ > 0.0 && r.iso_snr >= rescue_bright_snr_ &&
                         (r.iso_whole || !rescue_bright_whole_ || isolated)
                     ? std::min(rescue_bright_score_, rescue_score_)
                     : rescue_score_;
    if (rescue_compact_score_ > 0.0f && r.iso_a < rescue_compact_a_pix_) {
      need = std::min(need, rescue_compact_score_);
    }
    if (rescue_edge_score_ > 0.0f && r.iso_edge) need = std::min(need, rescue_edge_score_);
    return need;
  }

  // Keeps the isophotal objects with enough heatmap support (required_support) that no kept
  // peak lies within rescue_radius_pix of, except on a component where rescue_peak_score kept the
  // network's peaks; `cands` holds the kept network peaks only.
  void add_rescued(std::vector<Candidate>& cands, const IsophotalObjects& iso) const {
    std::vector<Candidate> add;
    for (const Candidate& r : iso.rescue) {
      if (!iso.component_peak_kept.empty() &&
          iso.component_peak_kept[static_cast<std::size_t>(r.component)] != 0) {
        continue;
      }
      double d2 = std::numeric_limits<double>::infinity();  // to the nearest kept peak
      for (const Candidate& c : cands) {
        d2 = std::min(d2, (c.x - r.x) * (c.x - r.x) + (c.y - r.y) * (c.y - r.y));
      }
      const bool isolated =
          rescue_bright_far_pix_ > 0.0 && d2 > rescue_bright_far_pix_ * rescue_bright_far_pix_;
      if (r.score >= required_support(r, isolated) &&
          d2 > rescue_radius_pix_ * rescue_radius_pix_) {
        add.push_back(r);
      }
    }
    cands.insert(cands.end(), add.begin(), add.end());
  }

  // For each candidate, the label (1-based in iso.all) of the isophotal object holding its
  // centre when it holds no other candidate's centre, else 0.
  [[nodiscard]] static std::vector<int> sole_owners(const std::vector<Candidate>& cands,
                                                    const IsophotalObjects& iso) {
    std::vector<int> owner(cands.size(), 0);
    if (iso.all.empty()) return owner;
    const int w = iso.label.cols;
    const int h = iso.label.rows;
    std::vector<int> count(iso.all.size() + 1, 0);
    for (std::size_t k = 0; k < cands.size(); ++k) {
      const int px = std::clamp(static_cast<int>(std::lround(cands[k].x)), 0, w - 1);
      const int py = std::clamp(static_cast<int>(std::lround(cands[k].y)), 0, h - 1);
      owner[k] = iso.label.at<int>(py, px);
      ++count[static_cast<std::size_t>(owner[k])];
    }
    for (int& l : owner) {
      if (l != 0 && count[static_cast<std::size_t>(l)] != 1) l = 0;
    }
    return owner;
  }

  // centre: isophotal. A network detection that is the only one inside an isophotal object
  // (deblended as SExtractor does, S/N >= isophotal_centre_snr) takes that object's barycentre,
  // SExtractor's X_IMAGE: the box's footprint of a bright or saturated object is cut by the
  // network's box and by neighbours' boxes. Rescued objects already sit at their barycentre.
  void centre_on_isophotes(std::vector<Candidate>& cands, const IsophotalObjects& iso) const {
    if (!isophotal_centre_ || iso.all.empty()) return;
    const std::vector<int> owner = sole_owners(cands, iso);
    for (std::size_t k = 0; k < cands.size(); ++k) {
      const int l = owner[k];
      if (l == 0 || cands[k].rescued) continue;
      const Candidate& o = iso.all[static_cast<std::size_t>(l - 1)];
      if (o.iso_snr < iso_centre_snr_) continue;
      cands[k].x = o.x;
      cands[k].y = o.y;
      cands[k].iso_centred = true;
    }
  }

  // Runs the network tile by tile; returns the owned peaks with the tile-merged flag set, and
  // sets the score (heatmap support) and p_star of each `rescue` object from its owning tile.
  std::vector<Candidate> run_network(const cv::Mat& t, const cv::Mat& blank,
                                     std::vector<Candidate>& rescue) {
    const int w = t.cols;
    const int h = t.rows;
    const auto& norm = model_->card().normalisation;
    cv::Mat input;
    t.convertTo(input, CV_32F, 1.0 / norm.scale);
    if (norm.method == "asinh") astroflow::asinh_in_place(input);
    // Window width and height: tile_ for a fixed-size network, else fitted to the frame.
    const int tw = astroflow::balanced_tile(w, tile_, overlap_, size_multiple_);
    const int th = astroflow::balanced_tile(h, tile_, overlap_, size_multiple_);
    const std::vector<int> xs = astroflow::tile_starts(w, tw, overlap_);
    const std::vector<int> ys = astroflow::tile_starts(h, th, overlap_);
    const auto own_x = owned_ranges(xs, tw);
    const auto own_y = owned_ranges(ys, th);
    struct TileRef {
      std::size_t ix, iy;
    };
    std::vector<TileRef> tiles;
    for (std::size_t iy = 0; iy < ys.size(); ++iy) {
      for (std::size_t ix = 0; ix < xs.size(); ++ix) {
        // A tile with no finite pixel (chip gaps, padding of mosaics) holds no source.
        const cv::Rect r(xs[ix], ys[iy], std::min(tw, w - xs[ix]), std::min(th, h - ys[iy]));
        if (cv::countNonZero(blank(r)) < r.area()) tiles.push_back({ix, iy});
      }
    }

    // Batches of tiles run concurrently (cv::parallel_for_), each on a network of its own from
    // a small pool: OpenCV runs the forward pass inside a parallel region on one thread, which
    // keeps both cores busy on many small tiles where one multi-threaded forward pass at a
    // time left a quarter of the CPU idle. Results are gathered per batch and concatenated in
    // batch order, so the output does not depend on the schedule.
    const std::size_t plane = static_cast<std::size_t>(tw) * th;
    // At most batch_ tiles per batch, a multiple of the thread count of batches, and the tiles
    // spread evenly over them, so no core waits for another's longer batch.
    const auto step = static_cast<std::size_t>(batch_);
    const auto threads = static_cast<std::size_t>(std::max(1, cv::getNumThreads()));
    std::size_t n_batches = (tiles.size() + step - 1) / step;
    n_batches = std::min(tiles.size(), (n_batches + threads - 1) / threads * threads);
    struct BatchOut {
      std::vector<Candidate> owned;
      std::vector<Candidate> others;
      std::string error;
    };
    std::vector<BatchOut> outs(n_batches);
    // Peaks from crowded_star_score or rescue_peak_score up when those tiers are on (kept by
    // keep_weak_peaks).
    float peak_floor = threshold_;
    if (crowded_star_score_ > 0.0f) peak_floor = std::min(peak_floor, crowded_star_score_);
    if (rescue_peak_score_ > 0.0f && rescue_snr_ > 0.0) {
      peak_floor = std::min(peak_floor, rescue_peak_score_);
    }
    auto run_batch = [&](std::size_t b) {
      std::vector<Candidate>& owned = outs[b].owned;
      std::vector<Candidate>& others = outs[b].others;
      const std::size_t first = b * tiles.size() / n_batches;
      const std::size_t last = (b + 1) * tiles.size() / n_batches;
      const int dims[4] = {static_cast<int>(last - first), 1, th, tw};
      cv::Mat blob(4, dims, CV_32F, cv::Scalar(0));
      for (std::size_t i = first; i < last; ++i) {
        const int x0 = xs[tiles[i].ix];
        const int y0 = ys[tiles[i].iy];
        const int cw = std::min(tw, w - x0);
        const int ch = std::min(th, h - y0);
        cv::Mat dst(th, tw, CV_32F, blob.ptr<float>() + (i - first) * plane);
        input(cv::Rect(x0, y0, cw, ch)).copyTo(dst(cv::Rect(0, 0, cw, ch)));
      }
      cv::Mat out;
      {
        struct Lease {
          DetectStage* stage;
          astroflow::OnnxModel* net;
          ~Lease() { stage->release_model(net); }
        } lease{this, acquire_model()};
        out = lease.net->run(blob).at(0);
      }
      if (out.dims != 4 || out.size[1] < 6) {
        throw astroflow::FrameError("detect: the network output is not N x 6 x H x W");
      }
      const int oh = out.size[2];
      const int ow = out.size[3];
      const double stride_x = static_cast<double>(tw) / ow;
      const double stride_y = static_cast<double>(th) / oh;
      const std::size_t oplane = static_cast<std::size_t>(oh) * ow;
      for (std::size_t i = first; i < last; ++i) {
        const float* o = out.ptr<float>() + (i - first) * 6 * oplane;
        const cv::Mat hs(oh, ow, CV_32F, const_cast<float*>(o + star_class_ * oplane));
        const cv::Mat hg(oh, ow, CV_32F, const_cast<float*>(o + (1 - star_class_) * oplane));
        // The detection score: the larger class heatmap, or (score: union) the probability
        // that either class is there, 1 - (1 - star)(1 - galaxy), so that a source the network
        // cannot place in one class is not scored low for it.
        const cv::Mat hunion =
            union_score_ || rescue_union_ ? cv::Mat(hs + hg - hs.mul(hg)) : cv::Mat();
        const cv::Mat hmax = union_score_ ? hunion : cv::Mat(cv::max(hs, hg));
        // The rescue's heatmap support: the score, or (rescue_union) the union whatever the score.
        const cv::Mat& hsupport = rescue_union_ ? hunion : hmax;
        const int x0 = xs[tiles[i].ix];
        const int y0 = ys[tiles[i].iy];
        const auto& ox = own_x[tiles[i].ix];
        const auto& oy = own_y[tiles[i].iy];
        auto owns = [&](double x, double y) {  // edge coordinates, as in the pipeline's tile rule
          return x + 0.5 >= ox.first && x + 0.5 < ox.second && y + 0.5 >= oy.first &&
                 y + 0.5 < oy.second;
        };
        // Each rescue object is owned by one tile, so batches write disjoint elements.
        const int reach_x = static_cast<int>(std::ceil(kRescueSupportPix / stride_x));
        const int reach_y = static_cast<int>(std::ceil(kRescueSupportPix / stride_y));
        for (Candidate& r : rescue) {
          if (!owns(r.x, r.y)) continue;
          const int cx = static_cast<int>(std::floor((r.x - x0 + 0.5) / stride_x));
          const int cy = static_cast<int>(std::floor((r.y - y0 + 0.5) / stride_y));
          for (int yy = std::max(0, cy - reach_y); yy <= std::min(oh - 1, cy + reach_y); ++yy) {
            for (int xx = std::max(0, cx - reach_x); xx <= std::min(ow - 1, cx + reach_x); ++xx) {
              const double ddx = stride_x * (xx + 0.5) - 0.5 + x0 - r.x;
              const double ddy = stride_y * (yy + 0.5) - 0.5 + y0 - r.y;
              if (ddx * ddx + ddy * ddy > kRescueSupportPix * kRescueSupportPix) continue;
              const float v = hsupport.at<float>(yy, xx);
              if (v > r.score) {
                r.score = v;
                const float s = hs.at<float>(yy, xx);
                const float g = hg.at<float>(yy, xx);
                r.p_star = s + g > 0.0f ? s / (s + g) : 0.5f;
              }
            }
          }
        }
        for (const astroflow::Peak& pk : astroflow::find_peaks(hmax, peak_floor, 1)) {
          const std::size_t k = static_cast<std::size_t>(pk.y_pix) * ow + pk.x_pix;
          Candidate c;
          c.x = x0 + stride_x * (pk.x_pix + o[4 * oplane + k]) - 0.5;
          c.y = y0 + stride_y * (pk.y_pix + o[5 * oplane + k]) - 0.5;
          const int px = static_cast<int>(std::lround(c.x));
          const int py = static_cast<int>(std::lround(c.y));
          // Peaks in the zero padding of an edge tile or on blank pixels are not sources.
          if (px < 0 || py < 0 || px >= w || py >= h || blank.at<unsigned char>(py, px) != 0) {
            continue;
          }
          c.score = pk.value;
          c.weak = pk.value < threshold_;
          const float s = hs.at<float>(pk.y_pix, pk.x_pix);
          const float g = hg.at<float>(pk.y_pix, pk.x_pix);
          c.p_star = s + g > 0.0f ? s / (s + g) : 0.5f;
          c.hx = std::exp(std::clamp(o[2 * oplane + k], -3.0f, 6.0f));
          c.hy = std::exp(std::clamp(o[3 * oplane + k], -3.0f, 6.0f));
          (owns(c.x, c.y) ? owned : others).push_back(c);
        }
      }
    };
    cv::parallel_for_(
        cv::Range(0, static_cast<int>(n_batches)),
        [&](const cv::Range& r) {
          for (int b = r.start; b < r.end; ++b) {
            try {
              run_batch(static_cast<std::size_t>(b));
            } catch (const std::exception& e) {
              outs[static_cast<std::size_t>(b)].error = e.what();
            }
          }
        },
        static_cast<double>(n_batches));
    std::vector<Candidate> owned;
    std::vector<Candidate> others;
    for (BatchOut& o : outs) {
      if (!o.error.empty()) throw astroflow::FrameError(o.error);
      owned.insert(owned.end(), o.owned.begin(), o.owned.end());
      others.insert(others.end(), o.others.begin(), o.others.end());
    }
    const double r2 = merge_radius_pix_ * merge_radius_pix_;
    for (Candidate& c : owned) {
      for (const Candidate& d : others) {
        // A peak at or above the threshold is tile-merged by another such peak only, as without
        // the crowded-star tier.
        if (d.weak && !c.weak) continue;
        if ((c.x - d.x) * (c.x - d.x) + (c.y - d.y) * (c.y - d.y) <= r2) {
          c.merged = true;
          break;
        }
      }
    }
    return owned;
  }

  // Peaks below `threshold` (weak) stay in two tiers; the others are dropped.
  // The crowded-star tier (crowded_star_score > 0): a weak peak is kept when the heatmaps call it
  // a star (p_star >= crowded_star_class) and the nearest peak at or above `threshold` within
  // crowded_star_radius_pix is a star too. In crowded star fields the network scores stars beside
  // stars low (HST ACS: 0.39-0.57), while on sparse fields the weak peaks beside a kept row are
  // pieces of galaxies beside galaxies.
  // The bright-component peak tier (rescue_peak_score > 0, off by default): the weak peaks from
  // rescue_peak_score up on an isophotal component of S/N >= rescue_bright_snr that holds no peak
  // at or above `threshold` are kept, as rescued rows (FLAGS 512), when there are two or more and
  // no two lie closer than rescue_peak_sep_pix (closer ones are clumps of one irregular). The
  // network scores some blends of two large bright galaxies below the threshold at both centres,
  // where the rescue puts one row at the blend's barycentre or none; the component's deblended
  // objects are then not rescued (add_rescued), so the network's peaks stand in for them.
  [[nodiscard]] std::vector<Candidate> keep_weak_peaks(std::vector<Candidate> cands,
                                                       IsophotalObjects& iso) const {
    std::vector<Candidate> strong;
    std::vector<Candidate> weak;
    for (Candidate& c : cands) (c.weak ? weak : strong).push_back(c);
    if (weak.empty()) return strong;
    const std::size_t n_strong = strong.size();
    // Components (of rescue_bright_snr) holding a strong peak.
    const bool bright_tier = rescue_peak_score_ > 0.0f && !iso.component.empty();
    auto component_at = [&](const Candidate& c) {
      const int px = std::clamp(static_cast<int>(std::lround(c.x)), 0, iso.component.cols - 1);
      const int py = std::clamp(static_cast<int>(std::lround(c.y)), 0, iso.component.rows - 1);
      return static_cast<std::size_t>(iso.component.at<int>(py, px));
    };
    std::vector<char> has_strong;
    if (bright_tier) {
      has_strong.assign(iso.component_snr.size(), 0);
      for (const Candidate& c : strong) has_strong[component_at(c)] = 1;
    }
    std::vector<Candidate> on_bright;  // weak peaks on such components without a strong one
    const double r = crowded_star_radius_pix_;
    astroflow::PointGrid grid(r > 0.0 ? r : 1.0);
    for (std::size_t i = 0; i < n_strong; ++i) grid.add(i, strong[i].x, strong[i].y);
    for (Candidate& c : weak) {
      if (crowded_star_score_ > 0.0f && c.score >= crowded_star_score_ && r > 0.0 &&
          c.p_star >= crowded_star_class_) {
        double best = r;
        std::size_t nearest = n_strong;
        grid.for_each_near(c.x, c.y, [&](std::size_t i) {
          const double d = std::hypot(strong[i].x - c.x, strong[i].y - c.y);
          if (d < best || (d == best && i < nearest)) {
            best = d;
            nearest = i;
          }
        });
        if (nearest < n_strong && strong[nearest].p_star >= crowded_star_class_) {
          strong.push_back(c);
          continue;
        }
      }
      if (bright_tier && c.score >= rescue_peak_score_) {
        const std::size_t l = component_at(c);
        if (l != 0 && has_strong[l] == 0 && iso.component_snr[l] >= rescue_bright_snr_) {
          c.component = static_cast<int>(l);
          on_bright.push_back(c);
        }
      }
    }
    // Per component: its weak peaks stay when there are at least two and no two lie closer
    // than rescue_peak_sep_pix (two galaxies, not the clumps of one irregular).
    std::stable_sort(
        on_bright.begin(), on_bright.end(),
        [](const Candidate& a, const Candidate& b) { return a.component < b.component; });
    const double sep2 = rescue_peak_sep_pix_ * rescue_peak_sep_pix_;
    for (std::size_t i = 0; i < on_bright.size();) {
      std::size_t j = i;
      bool apart = true;
      for (; j < on_bright.size() && on_bright[j].component == on_bright[i].component; ++j) {
        for (std::size_t k = i; k < j; ++k) {
          const double dx = on_bright[j].x - on_bright[k].x;
          const double dy = on_bright[j].y - on_bright[k].y;
          if (dx * dx + dy * dy < sep2) apart = false;
        }
      }
      if (j - i >= 2 && apart) {
        iso.component_peak_kept[static_cast<std::size_t>(on_bright[i].component)] = 1;
        for (std::size_t k = i; k < j; ++k) {
          Candidate c = on_bright[k];
          c.weak = false;
          c.rescued = true;
          strong.push_back(c);
        }
      }
      i = j;
    }
    return strong;
  }

  // OpenCV's NMS on the boxes: removes a box overlapping a stronger one by more than nms_iou.
  std::vector<Candidate> suppress(std::vector<Candidate> cands) const {
    if (cands.size() < 2) return cands;
    std::vector<cv::Rect2d> boxes;
    std::vector<float> scores;
    for (const Candidate& c : cands) {
      boxes.emplace_back(c.x - c.hx, c.y - c.hy, 2.0 * c.hx, 2.0 * c.hy);
      scores.push_back(c.score);
    }
    std::vector<int> keep;
    cv::dnn::NMSBoxes(boxes, scores, 0.0f, nms_iou_, keep);
    std::sort(keep.begin(), keep.end());
    std::vector<Candidate> out;
    out.reserve(keep.size());
    for (int k : keep) out.push_back(cands[static_cast<std::size_t>(k)]);
    return out;
  }

  void measure(astroflow::Frame& frame, const cv::Mat& t, const cv::Mat& blank,
               const IsophotalObjects& iso, std::vector<Candidate>& cands) const {
    const int w = t.cols;
    const int h = t.rows;
    // Catalog order: by y, then x (as the sources stage numbers its rows).
    std::sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) {
      return a.y != b.y ? a.y < b.y : a.x < b.x;
    });
    const std::size_t n = cands.size();
    const cv::Mat& rms = frame.planes.at("rms");
    const bool subtracted = frame.header.get_string("BKG_SUB").value_or("") == "T";

    // Background-subtracted pixels in counts, NaN where blank.
    cv::Mat image(t.size(), CV_32F);
    {
      const cv::Mat& bkg = frame.planes.at("background");
      for (int y = 0; y < h; ++y) {
        const float* s = frame.science.ptr<float>(y);
        const float* b = bkg.ptr<float>(y);
        const unsigned char* m = blank.ptr<unsigned char>(y);
        float* d = image.ptr<float>(y);
        for (int x = 0; x < w; ++x) {
          d[x] = m[x] != 0 ? std::numeric_limits<float>::quiet_NaN()
                           : s[x] - (subtracted ? 0.0f : b[x]);
        }
      }
    }

    // Footprints: each pixel above kFootprintSigma inside a box goes to the source whose box
    // centre is nearest in box units.
    cv::Mat segmap(h, w, CV_32S);
    cv::Mat best(h, w, CV_32F);
    auto box_of = [&](const Candidate& c) {
      const int x0 = std::max(0, static_cast<int>(std::floor(c.x - c.hx)));
      const int x1 = std::min(w - 1, static_cast<int>(std::ceil(c.x + c.hx)));
      const int y0 = std::max(0, static_cast<int>(std::floor(c.y - c.hy)));
      const int y1 = std::min(h - 1, static_cast<int>(std::ceil(c.y + c.hy)));
      return cv::Rect(x0, y0, std::max(0, x1 - x0 + 1), std::max(0, y1 - y0 + 1));
    };
    auto assign_footprints = [&] {
      segmap.setTo(0);
      best.setTo(std::numeric_limits<float>::infinity());
      for (std::size_t k = 0; k < n; ++k) {
        const Candidate& c = cands[k];
        const cv::Rect r = box_of(c);
        for (int y = r.y; y < r.y + r.height; ++y) {
          const float* tv = t.ptr<float>(y);
          int* sg = segmap.ptr<int>(y);
          float* bd = best.ptr<float>(y);
          for (int x = r.x; x < r.x + r.width; ++x) {
            if (tv[x] <= kFootprintSigma) continue;
            const double dx = (x - c.x) / c.hx;
            const double dy = (y - c.y) / c.hy;
            const auto d2 = static_cast<float>(dx * dx + dy * dy);
            if (d2 <= 1.0f && d2 < bd[x]) {
              bd[x] = d2;
              sg[x] = static_cast<int>(k + 1);
            }
          }
        }
      }
    };
    if (barycentre_) {
      // The network's centre of an irregular galaxy often sits on a bright clump: each centre
      // moves to the barycentre of its footprint (positive pixels), as SExtractor's X_IMAGE,
      // and the footprints are then reassigned around the moved centres. On validation field
      // 8203 (4096², docs/detect.md) this matched 805 of 843 detections to the truth within
      // 2 px against 798 at the network's centres; more passes (804) or footprints in boxes
      // scaled by 2 (736) or 3 (614) were worse.
      assign_footprints();
      for (std::size_t k = 0; k < n; ++k) {
        Candidate& c = cands[k];
        if (isophotal_centre_ && c.iso_centred) continue;
        const cv::Rect r = box_of(c);
        const int label = static_cast<int>(k + 1);
        double sw = 0.0;
        double sx = 0.0;
        double sy = 0.0;
        int npix = 0;
        for (int y = r.y; y < r.y + r.height; ++y) {
          const int* sg = segmap.ptr<int>(y);
          const float* v = image.ptr<float>(y);
          for (int x = r.x; x < r.x + r.width; ++x) {
            if (sg[x] != label || !std::isfinite(v[x]) || v[x] <= 0.0f) continue;
            sw += v[x];
            sx += v[x] * x;
            sy += v[x] * y;
            ++npix;
          }
        }
        if (npix < 3 || sw <= 0.0) continue;
        c.x = std::clamp(sx / sw, c.x - c.hx, c.x + c.hx);  // within the network's box
        c.y = std::clamp(sy / sw, c.y - c.hy, c.y + c.hy);
      }
    }
    assign_footprints();

    // moments: isophotal. The isophotal object (deblended as SExtractor does) that holds exactly
    // one detection's centre gives that detection its second moments, as SExtractor's A_IMAGE,
    // B_IMAGE and THETA_IMAGE, and so its Kron ellipse; the others keep their footprint's. The
    // footprint is cut by the network's box (about twice the profile radius), which on bright
    // stars leaves out the wings.
    const std::vector<int> iso_owner =
        isophotal_moments_ ? sole_owners(cands, iso) : std::vector<int>(n, 0);

    // FLAGS 4: a footprint pixel at or above the saturation level, as SExtractor's, or on or next
    // to a pixel the mask marks saturated.
    const std::vector<bool> saturated =
        astroflow::saturated_labels(frame, segmap, static_cast<int>(n), saturation_);

    double gain = gain_;
    if (gain <= 0.0) gain = astroflow::poisson_gain(frame.header);
    const double zp = frame.header.get_double("MAGZERO").value_or(zeropoint_);
    const auto& tile = frame.tile;
    std::vector<std::int32_t> number(n), flags(n), xmin(n), xmax(n), ymin(n), ymax(n);
    std::vector<double> xim(n), yim(n), xwin(n), ywin(n), ra(n), dec(n), rawin(n), decwin(n), a(n),
        b(n), theta(n), kron(n), flux(n), fluxerr(n), mag(n);
    std::vector<float> score(n), class_star(n);
    for (std::size_t k = 0; k < n; ++k) {
      const Candidate& c = cands[k];
      const int label = static_cast<int>(k + 1);
      const cv::Rect r = box_of(c);
      std::int32_t f = (c.merged ? kFlagTileMerged : 0) | (c.rescued ? kFlagRescued : 0) |
                       (c.weak ? kFlagCrowdedStar : 0) | (saturated[k + 1] ? kFlagSaturated : 0);
      // Second moments of the footprint around the centre.
      double sw = 0.0;
      double xx = 0.0;
      double yy = 0.0;
      double xy = 0.0;
      int npix = 0;
      bool touches_blank = false;
      for (int y = r.y; y < r.y + r.height; ++y) {
        const int* sg = segmap.ptr<int>(y);
        const float* v = image.ptr<float>(y);
        for (int x = r.x; x < r.x + r.width; ++x) {
          if (!std::isfinite(v[x])) touches_blank = true;
          if (sg[x] != label) continue;
          const double wv = std::max(0.0, static_cast<double>(v[x]));
          const double dx = x - c.x;
          const double dy = y - c.y;
          sw += wv;
          xx += wv * dx * dx;
          yy += wv * dy * dy;
          xy += wv * dx * dy;
          ++npix;
        }
      }
      double ak = c.hx / 2.0;
      double bk = c.hy / 2.0;
      double th = 0.0;
      if (ak < bk) {
        std::swap(ak, bk);
        th = 90.0;
      }
      if (npix >= 3 && sw > 0.0) {
        const astroflow::MomentAxes m = astroflow::moment_axes(xx / sw, yy / sw, xy / sw);
        ak = m.a;
        bk = m.b;
        th = m.theta_deg;
      }
      // The windowed centroid's window stays on the footprint's moments with either `moments`.
      const double window = std::max(0.5, std::sqrt(ak * bk));
      if (iso_owner[k] != 0) {
        const Candidate& o = iso.all[static_cast<std::size_t>(iso_owner[k] - 1)];
        ak = o.iso_a;
        bk = o.iso_b;
        th = o.iso_theta;
      }
      const astroflow::KronResult kr =
          astroflow::kron_photometry({c.x, c.y, ak, bk, th}, label, image, rms, segmap, gain);
      if (kr.crowded) f |= kFlagCrowded;
      if (kr.cut) f |= kFlagApertureCut;
      if (touches_blank || c.x - c.hx < 0.0 || c.y - c.hy < 0.0 || c.x + c.hx > w - 1 ||
          c.y + c.hy > h - 1) {
        f |= kFlagEdge;
      }
      for (std::size_t j = 0; j < n; ++j) {
        if (j != k && std::abs(cands[j].x - c.x) <= c.hx && std::abs(cands[j].y - c.y) <= c.hy) {
          f |= kFlagBlended;
          break;
        }
      }
      number[k] = label;
      flags[k] = f;
      const auto [wx, wy] = windowed_centre(image, segmap, label, c.x, c.y, window);
      xwin[k] = wx + 1.0 + tile.x0_pix;
      ywin[k] = wy + 1.0 + tile.y0_pix;
      // centre: windowed reports the windowed centroid as the position; the box, footprint and
      // AUTO aperture stay on the barycentre, as SExtractor's.
      xim[k] = windowed_centre_ ? xwin[k] : c.x + 1.0 + tile.x0_pix;
      yim[k] = windowed_centre_ ? ywin[k] : c.y + 1.0 + tile.y0_pix;
      xmin[k] = r.x + 1 + tile.x0_pix;
      xmax[k] = r.x + r.width + tile.x0_pix;
      ymin[k] = r.y + 1 + tile.y0_pix;
      ymax[k] = r.y + r.height + tile.y0_pix;
      a[k] = ak;
      b[k] = bk;
      theta[k] = th;
      kron[k] = kr.kron_radius;
      flux[k] = kr.flux;
      fluxerr[k] = kr.flux_err;
      mag[k] = kr.flux > 0.0 ? zp - 2.5 * std::log10(kr.flux) : kNoMag;
      score[k] = c.score;
      class_star[k] = c.p_star;
      ra[k] = std::numeric_limits<double>::quiet_NaN();
      dec[k] = std::numeric_limits<double>::quiet_NaN();
      rawin[k] = ra[k];
      decwin[k] = dec[k];
      if (frame.wcs) {
        // frame.wcs is already shifted to the tile origin: it takes tile-local coordinates.
        const astroflow::SkyCoord sky_win = frame.wcs->pixel_to_sky({wx + 1.0, wy + 1.0});
        rawin[k] = sky_win.ra_deg;
        decwin[k] = sky_win.dec_deg;
        const astroflow::SkyCoord s =
            windowed_centre_ ? sky_win : frame.wcs->pixel_to_sky({c.x + 1.0, c.y + 1.0});
        ra[k] = s.ra_deg;
        dec[k] = s.dec_deg;
      }
    }

    // Light concentration for class_locus (applied per image in process(), as the locus
    // needs the stars of all its tiles).
    std::vector<double> conc(n), conc_err(n);
    for (std::size_t k = 0; k < n; ++k) {
      const astroflow::Concentration cc = astroflow::aperture_concentration(
          image, rms, xim[k] - 1.0 - tile.x0_pix, yim[k] - 1.0 - tile.y0_pix, kLocusInnerPix,
          kLocusOuterPix);
      conc[k] = cc.c;
      conc_err[k] = cc.sigma;
    }

    if (!frame.catalog.empty()) {
      log().warn(frame.label() + ": replacing a catalog of " +
                 std::to_string(frame.catalog.rows()) + " rows with the detections");
    }
    astroflow::Catalog& cat = frame.catalog;
    cat = astroflow::Catalog{};
    cat.resize(n);
    cat.add_column<std::int32_t>("NUMBER", "", "running object number") = number;
    const char* centre = isophotal_centre_  ? "isophotal or footprint barycentre"
                         : windowed_centre_ ? "windowed centroid"
                         : barycentre_      ? "footprint barycentre"
                                            : "network centre";
    cat.add_column<double>("X_IMAGE", "pix", std::string(centre) + " x, 1-based, full image") = xim;
    cat.add_column<double>("Y_IMAGE", "pix", std::string(centre) + " y, 1-based, full image") = yim;
    cat.add_column<double>("XWIN_IMAGE", "pix",
                           "windowed centroid x (SExtractor's), 1-based, full image") = xwin;
    cat.add_column<double>("YWIN_IMAGE", "pix",
                           "windowed centroid y (SExtractor's), 1-based, full image") = ywin;
    cat.add_column<double>("ALPHA_J2000", "deg", "right ascension of the centre") = ra;
    cat.add_column<double>("DELTA_J2000", "deg", "declination of the centre") = dec;
    cat.add_column<double>("ALPHAWIN_J2000", "deg", "right ascension of the windowed centroid") =
        rawin;
    cat.add_column<double>("DELTAWIN_J2000", "deg", "declination of the windowed centroid") =
        decwin;
    cat.add_column<std::int32_t>("XMIN_IMAGE", "pix", "minimum x of the box") = xmin;
    cat.add_column<std::int32_t>("XMAX_IMAGE", "pix", "maximum x of the box") = xmax;
    cat.add_column<std::int32_t>("YMIN_IMAGE", "pix", "minimum y of the box") = ymin;
    cat.add_column<std::int32_t>("YMAX_IMAGE", "pix", "maximum y of the box") = ymax;
    cat.add_column<double>("A_IMAGE", "pix", "profile RMS along the major axis") = a;
    cat.add_column<double>("B_IMAGE", "pix", "profile RMS along the minor axis") = b;
    cat.add_column<double>("THETA_IMAGE", "deg", "position angle, CCW from +x") = theta;
    cat.add_column<float>("DET_SCORE", "", "heatmap peak value (0-1)") = score;
    cat.add_column<float>("CLASS_STAR", "",
                          "probability of a star: star / (star + galaxy) of the heatmaps, then "
                          "(class_locus) updated by CONCENTRATION against the stellar locus") =
        class_star;
    cat.add_column<double>("CONCENTRATION", "", "F(r < 2 px) / F(r < 6 px) around the centre") =
        conc;
    cat.add_column<double>("CONCENTRATIONERR", "", "RMS error of CONCENTRATION") = conc_err;
    cat.add_column<double>("KRON_RADIUS", "", "Kron radius in units of A_IMAGE, B_IMAGE") = kron;
    cat.add_column<double>("FLUX_AUTO", "count", "flux in the Kron aperture") = flux;
    cat.add_column<double>("FLUXERR_AUTO", "count", "RMS error of FLUX_AUTO") = fluxerr;
    cat.add_column<double>("MAG_AUTO", "mag", "Kron magnitude") = mag;
    cat.add_column<std::int32_t>("FLAGS", "",
                                 "1 crowded, 2 blended, 4 saturated, 8 edge, 16 aperture cut, "
                                 "256 tile-merged, 512 isophotal rescue, 1024 crowded-star tier") =
        flags;
  }

  std::string model_path_;
  float threshold_ = 0.5f;
  int tile_ = 0;  // window size (fixed network) or largest window (size_multiple_ > 0)
  int size_multiple_ = 0;
  int overlap_ = 32;
  int batch_ = 1;
  float nms_iou_ = 0.7f;
  double merge_radius_pix_ = 2.0;
  double rescue_snr_ = 5.0;
  float rescue_score_ = 0.0f;  // 0: the card's output.rescue_score, else threshold_
  double rescue_bright_snr_ = 100.0;
  float rescue_bright_score_ = 0.3f;
  bool rescue_bright_whole_ = true;
  double rescue_bright_far_pix_ = 20.0;
  double rescue_radius_pix_ = 6.0;
  float rescue_compact_score_ = 0.45f;
  double rescue_compact_a_pix_ = 1.5;
  float rescue_edge_score_ = 0.0f;
  float rescue_peak_score_ = 0.0f;  // weak peaks on bright components without a strong peak
  double rescue_peak_sep_pix_ = 12.0;
  bool barycentre_ = true;
  bool isophotal_centre_ = false;
  bool windowed_centre_ = false;            // centre: windowed
  bool isophotal_moments_ = false;          // moments: isophotal
  bool union_score_ = false;                // score: union
  bool class_locus_ = true;                 // CLASS_STAR updated against the frame's stellar locus
  bool class_locus_crowded_ = false;        // ... also for rows with FLAGS 1 or 2
  double class_locus_neighbour_pix_ = 8.0;  // ... or with another row this close
  double class_locus_outlier_ = 0.25;       // share of stars whose concentration is corrupted
  float crowded_star_score_ = 0.4f;         // weak star peaks beside stars from this; 0 = off
  double crowded_star_radius_pix_ = 10.0;
  double crowded_star_class_ = 0.8;
  astroflow::SaturationOptions saturation_;  // FLAGS 4
  bool rescue_union_ = true;  // the rescue's support is the union of the class heatmaps
  double iso_centre_snr_ = 20.0;
  double gain_ = 0.0;
  double zeropoint_ = 25.0;
  int star_class_ = 0;
  std::optional<astroflow::OnnxModel> model_;
  std::string resolved_model_path_;
  std::mutex pool_mutex_;
  bool model_in_use_ = false;
  std::vector<astroflow::OnnxModel*> idle_models_;
  std::vector<std::unique_ptr<astroflow::OnnxModel>> extra_models_;
};

}  // namespace

ASTROFLOW_PLUGIN(
    DetectStage, "detect", "1.0.0", "MIT",
    "CenterNet detection on overlapping tiles: positions, boxes, shapes, class and Kron flux",
    "plane:background,plane:rms",
    "column:NUMBER,column:X_IMAGE,column:Y_IMAGE,column:ALPHA_J2000,column:DELTA_J2000,"
    "column:XMIN_IMAGE,column:XMAX_IMAGE,column:YMIN_IMAGE,column:YMAX_IMAGE,column:A_IMAGE,"
    "column:B_IMAGE,column:THETA_IMAGE,column:DET_SCORE,column:CLASS_STAR,column:KRON_RADIUS,"
    "column:FLUX_AUTO,column:FLUXERR_AUTO,column:MAG_AUTO,column:FLAGS",
    astroflow::add_saturation_options(
        astroflow::add_network_window_options(
            astroflow::OptionSchema()
                .add_path("model", std::nullopt,
                          "model.onnx (its model.yaml card beside it) or the card; relative to the "
                          "config")
                .add_double("threshold", 0.0,
                            "minimum heatmap peak value (DET_SCORE) of a detection; 0 = the card's "
                            "output.score_threshold (chosen on validation), 0.5 if it has none",
                            0.0, 1.0))
            .add_double("nms_iou", 0.7,
                        "boxes overlapping a stronger one by more are dropped (NMS)", 0.05, 1.0)
            .add_double("merge_radius_pix", 2.0,
                        "a peak of a neighbouring tile this close marks the row tile-merged", 0.0,
                        50.0)
            .add_double("rescue_snr", 5.0,
                        "isophotal S/N from which an object no network peak found is kept when the "
                        "heatmap near it reaches rescue_score (FLAGS 512); 0 = off",
                        0.0, 1e9)
            .add_double("rescue_score", 0.0,
                        "heatmap value an isophotal object of rescue_snr needs; 0 = the card's "
                        "output.rescue_score (chosen on validation), else threshold",
                        0.0, 1.0)
            .add_double("rescue_bright_snr", 100.0,
                        "isophotal S/N from which rescue_bright_score applies; 0 = no bright tier",
                        0.0, 1e9)
            .add_double("rescue_bright_score", 0.3,
                        "heatmap value an isophotal object of rescue_bright_snr or more needs", 0.0,
                        1.0)
            .add_bool("rescue_bright_whole", true,
                      "the bright tier applies only to isophotal objects the deblender left whole "
                      "(not to pieces of a deblended component)")
            .add_double("rescue_bright_far_pix", 20.0,
                        "with rescue_bright_whole, the bright tier also applies to a deblended "
                        "piece with no network peak this close; 0 = never",
                        0.0, 1e9)
            .add_double("rescue_radius_pix", 6.0,
                        "an isophotal object with a kept network peak this close is not rescued",
                        0.0, 100.0)
            .add_double("rescue_compact_score", 0.45,
                        "heatmap value a compact isophotal object (rms semi-major axis below "
                        "rescue_compact_a_pix) needs; 0 = no compact tier",
                        0.0, 1.0)
            .add_double("rescue_compact_a_pix", 1.5,
                        "isophotal rms semi-major axis below which rescue_compact_score applies, "
                        "pixels",
                        0.0, 100.0)
            .add_double("rescue_edge_score", 0.0,
                        "heatmap value an isophotal object cut by the frame's border needs; 0 = no "
                        "edge tier",
                        0.0, 1.0)
            .add_double("rescue_peak_score", 0.0,
                        "heatmap peak value from which a peak below threshold is kept (FLAGS 512) "
                        "on an isophotal component of S/N >= rescue_bright_snr that holds no peak "
                        "at or above threshold, in place of the component's rescued objects, when "
                        "it holds two or more such peaks rescue_peak_sep_pix apart; 0 = off",
                        0.0, 1.0)
            .add_double("rescue_peak_sep_pix", 12.0,
                        "rescue_peak_score: the least distance between the weak peaks kept on one "
                        "component (px; closer ones are clumps of one galaxy)",
                        0.0, 1e3)
            .add_string(
                "centre", "windowed",
                "X_IMAGE/Y_IMAGE: barycentre of the footprint (as SExtractor), the "
                "network's peak + offset, or isophotal: the barycentre of the isophotal "
                "object holding only this detection (else the footprint's), or windowed: "
                "the windowed centroid (XWIN_IMAGE) started from the footprint's barycentre",
                {"barycentre", "network", "isophotal", "windowed"})
            .add_string(
                "moments", "footprint",
                "A_IMAGE/B_IMAGE/THETA_IMAGE and the Kron ellipse: the footprint's (pixels "
                "above 1 rms in the network's box) or isophotal: those of the isophotal "
                "object holding only this detection (as SExtractor's), else the footprint's",
                {"footprint", "isophotal"})
            .add_string("score", "max",
                        "DET_SCORE from the two class heatmaps: max, the larger, or union, "
                        "1 - (1 - star)(1 - galaxy)",
                        {"max", "union"})
            .add_bool(
                "rescue_union", true,
                "the rescue's heatmap support is 1 - (1 - star)(1 - galaxy) whatever score is")
            .add_bool("class_locus", true,
                      "update CLASS_STAR by the light concentration against the frame's stellar "
                      "locus (F(r < 2 px) / F(r < 6 px) of the confident stars)")
            .add_bool("class_locus_crowded", false,
                      "class_locus also updates rows with FLAGS 1 or 2, or with another row within "
                      "class_locus_neighbour_pix, whose neighbours lower their concentration")
            .add_double("class_locus_neighbour_pix", 8.0,
                        "class_locus: a row with another row this close (px) is crowded too: it "
                        "neither calibrates the locus nor is updated; 0 = off",
                        0.0, 1e6)
            .add_double("crowded_star_score", 0.4,
                        "heatmap peak value from which a peak below threshold is kept when the "
                        "network calls it a star and the nearest row within "
                        "crowded_star_radius_pix is a star (FLAGS 1024); 0 = off",
                        0.0, 1.0)
            .add_double("crowded_star_radius_pix", 10.0,
                        "crowded_star_score: how near the star beside it must be (px)", 0.0, 1e3)
            .add_double("crowded_star_class", 0.8,
                        "crowded_star_score: the heatmaps' star probability both peaks need", 0.0,
                        1.0)
            .add_double(
                "class_locus_outlier", 0.25,
                "class_locus: the share of stars whose concentration something the stage "
                "does not see (an undetected neighbour, a cosmic ray) lowers; the star "
                "likelihood is (1 - e) exp(-z^2 / 2) + e, so a row the network calls a star "
                "with CLASS_STAR >= 1 / (1 + e) stays one; 0 = a Gaussian likelihood",
                0.0, 1.0)
            .add_double(
                "isophotal_centre_snr", 20.0,
                "centre isophotal: the S/N an isophotal object needs to give its barycentre", 0.0,
                1e9)
            .add_double("gain", 0.0,
                        "e-/count for the Poisson term of FLUXERR_AUTO; 0 = from the header: GAIN, "
                        "else 1 for BUNIT electrons, EXPTIME for electrons/s, else none",
                        0.0, 1e9)
            .add_double("mag_zeropoint", 25.0, "zero point used when the header has no MAGZERO",
                        -100.0, 100.0)))
