// classify: galaxy morphology from a CNN (models/classify), one row per cutout or per source.
//
// Each stamp is brought to the model card's pixel scale and size, normalised as the card says
// (preprocess.hpp), and the whole Batch goes through the network as one tensor. Probabilities
// are softmax(logits / T + b) with the card's temperature T (fitted on the validation set) and
// its logit_bias b (the decision rule chosen on the validation set; none when absent).
// `exclude_classes` conditions them on "not one of these classes": set to 0, the rest
// renormalised (configs/survey.yaml: `detect` already rejects cosmic rays and hot pixels).
// Behaviour on bad input is listed in README.md in this folder.
#include <algorithm>
#include <astroflow/onnx_model.hpp>
#include <astroflow/plugin.hpp>
#include <astroflow/preprocess.hpp>
#include <astroflow/psf.hpp>
#include <astroflow/shard.hpp>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <string>
#include <vector>

namespace {

using astroflow::Frame;
using astroflow::FrameError;

// Per-row CLASS_FLAGS bits.
constexpr std::int32_t kFlagNanFilled = 1;    // some stamp pixels were blank and were filled
constexpr std::int32_t kFlagResampled = 2;    // pixel scale or size differed from the card
constexpr std::int32_t kFlagFailed = 4;       // no class: stamp blank, too small or off the image
constexpr std::int32_t kFlagExcluded = 8;     // the network's first choice was an excluded class
constexpr std::int32_t kFlagMasked = 16;      // other sources' pixels were replaced by sky noise
constexpr std::int32_t kFlagPsfMatched = 32;  // stamp smoothed to the card's PSF
constexpr std::int32_t kFlagPsfBroad = 64;    // the frame's PSF is broader than the card's range

// A frame's PSF within this fraction of the card's range counts as inside it: a measured FWHM
// scatters by a few per cent (docs/models.md, "PSF matching").
constexpr double kPsfTolerance = 0.1;

// A stamp that covers less than this fraction of the card's side (after rescaling to the card's
// pixel scale) carries too little of the object to classify.
constexpr double kMinCoverage = 0.25;

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string fmt_scale(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

class ClassifyStage final : public astroflow::Stage {
 public:
  void configure(const astroflow::Options& o) override {
    model_path_ = o.get_string("model");
    mode_ = o.get_string("mode");
    batch_ = static_cast<int>(o.get_int("batch"));
    refuse_mismatch_ = o.get_string("on_mismatch") == "refuse";
    scale_tolerance_ = o.get_double("pixel_scale_tolerance");
    exclude_spec_ = o.get_string("exclude_classes");
    mask_neighbours_ = o.get_bool("mask_neighbours");
    psf_match_ = o.get_string("psf_match") == "auto";
    psf_fwhm_arcsec_ = o.get_double("psf_fwhm_arcsec");
    if (mask_neighbours_ && mode_ != "sources") {
      throw astroflow::FatalError(
          "mask_neighbours applies to mode 'sources' (a stamp per catalog row); a cutout frame "
          "is one source's stamp");
    }
  }

  void open(const astroflow::StageContext& ctx) override {
    Stage::open(ctx);
    std::filesystem::path p(model_path_);
    if (p.is_relative() && !ctx.config_dir.empty() && !std::filesystem::exists(p)) {
      p = std::filesystem::path(ctx.config_dir) / p;
    }
    // OnnxModelError / ModelCardError are FatalErrors naming the model file.
    model_.emplace(astroflow::OnnxModel::load(p.string(), {batch_, false, true}));
    const auto& card = model_->card();
    if (card.output_semantics != "logits" && card.output_semantics != "probabilities") {
      throw astroflow::FatalError(card.card_path + ": output.semantics is '" +
                                  card.output_semantics + "', classify needs logits");
    }
    if (card.channels() != 1) {
      throw astroflow::FatalError(card.card_path +
                                  ": classify supports single-band models, the "
                                  "card has " +
                                  std::to_string(card.channels()) + " channels");
    }
    for (const auto& name : card.class_names) p_columns_.push_back("P_" + upper(name));
    excluded_ = parse_excluded(exclude_spec_, card);
  }

  void process(astroflow::Batch& batch) override {
    const auto& card = model_->card();
    const int h = static_cast<int>(card.height_pix());
    const int w = static_cast<int>(card.width_pix());

    // Gather every stamp of the batch, then run one tensor.
    std::vector<Job> jobs;
    for (std::size_t fi = 0; fi < batch.frames.size(); ++fi) {
      Frame& f = batch.frames[fi];
      if (f.failed()) continue;
      try {
        gather(f, fi, jobs, w, h);
      } catch (const std::exception& e) {
        f.fail(context().stage_name, e.what());
      }
    }
    std::vector<std::size_t> ok;
    for (std::size_t j = 0; j < jobs.size(); ++j) {
      if (jobs[j].error.empty()) ok.push_back(j);
    }
    cv::Mat probs;
    if (!ok.empty()) {
      const int sizes[4] = {static_cast<int>(ok.size()), 1, h, w};
      cv::Mat blob(4, sizes, CV_32F);
      for (std::size_t k = 0; k < ok.size(); ++k) {
        cv::Mat dst(h, w, CV_32F, blob.ptr<float>() + k * static_cast<std::size_t>(h * w));
        jobs[ok[k]].input.copyTo(dst);
      }
      probs = model_->run_rows(blob);
      if (card.output_semantics == "logits")
        astroflow::softmax_rows(probs, card.temperature, card.logit_bias);
    }
    std::vector<std::uint8_t> first_excluded(static_cast<std::size_t>(probs.rows), 0);
    if (!excluded_.empty()) {
      for (int r = 0; r < probs.rows; ++r)
        first_excluded[static_cast<std::size_t>(r)] = condition_row(probs.ptr<float>(r));
    }
    std::vector<int> prob_row(jobs.size(), -1);
    for (std::size_t k = 0; k < ok.size(); ++k) prob_row[ok[k]] = static_cast<int>(k);

    for (std::size_t j = 0; j < jobs.size(); ++j) {
      Job& job = jobs[j];
      Frame& f = batch.frames[job.frame];
      if (f.failed()) continue;
      const int pr = prob_row[j];
      write_row(f, job, pr < 0 ? nullptr : probs.ptr<float>(pr),
                pr >= 0 && first_excluded[static_cast<std::size_t>(pr)] != 0);
    }
    for (Frame& f : batch.frames) {
      if (!f.failed()) stamp(f, card.sha256);
    }
  }

 private:
  struct Job {
    std::size_t frame = 0;
    std::size_t row = 0;
    std::size_t row_end = 0;  // rows [row, row_end) receive this stamp's class
    cv::Mat input;            // normalised h x w
    double nan_fraction = 0.0;
    bool resampled = false;
    bool masked = false;  // other sources' pixels replaced by sky noise
    bool psf_matched = false;
    bool psf_broad = false;
    std::uint64_t seed = 0;  // of the noise psf_match adds back: the file, HDU, tile and row
    std::string error;       // non-empty: this row gets no class
  };

  // Rescales `src` from frame_scale to the card's pixel scale (INTER_AREA when shrinking,
  // INTER_LINEAR when enlarging). `src` has no blank pixel: resize would spread NaN over their
  // neighbours (the caller fills them first and blanks them again after).
  static cv::Mat rescale(const cv::Mat& src, double factor) {
    const int nw = std::max(1, static_cast<int>(std::lround(src.cols * factor)));
    const int nh = std::max(1, static_cast<int>(std::lround(src.rows * factor)));
    cv::Mat out;
    cv::resize(src, out, cv::Size(nw, nh), 0, 0, factor < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
    return out;
  }

  // The card's scale over the frame's (1 when the frame's scale is unknown).
  [[nodiscard]] double scale_factor(const Frame& f) const {
    const double card_scale = model_->card().pixel_scale_arcsec;
    if (!(f.pixel_scale_arcsec > 0.0)) return 1.0;
    const double factor = f.pixel_scale_arcsec / card_scale;
    return std::abs(factor - 1.0) <= scale_tolerance_ ? 1.0 : factor;
  }

  // FNV-1a (shard.hpp) of the file's name (not its folder, so a moved survey draws the same
  // noise), then the HDU, the tile's origin and the row as 8 little-endian bytes each.
  static std::uint64_t noise_seed(const Frame& f, std::size_t row) {
    std::string key = std::filesystem::path(f.path).filename().string();
    for (const auto v :
         {static_cast<std::uint64_t>(f.hdu_index), static_cast<std::uint64_t>(f.tile.x0_pix),
          static_cast<std::uint64_t>(f.tile.y0_pix), static_cast<std::uint64_t>(row)})
      for (int i = 0; i < 8; ++i) key.push_back(static_cast<char>((v >> (8 * i)) & 0xffU));
    return astroflow::fnv1a64(key);
  }

  struct PsfPlan {
    double sigma_pix = 0.0;  // Gaussian that brings the frame to the card's PSF; 0: none
    double fwhm_pix = 0.0;   // the frame's PSF, in its pixels
    bool broad = false;      // the frame's PSF is broader than the card's range
  };

  // The frame's PSF FWHM (psf_fwhm_arcsec, else SEEING, else measured in sources mode) against
  // the card's input.psf_fwhm_arcsec range. Logged once per frame when it acts.
  [[nodiscard]] PsfPlan psf_plan(const Frame& f) const {
    const auto& card = model_->card();
    if (!psf_match_ || !(card.psf_fwhm_min_arcsec > 0.0)) return {};
    const double scale =
        f.pixel_scale_arcsec > 0.0 ? f.pixel_scale_arcsec : card.pixel_scale_arcsec;
    double fwhm = psf_fwhm_arcsec_;
    std::string from = "psf_fwhm_arcsec";
    bool measured = false;
    if (!(fwhm > 0.0)) {
      if (const auto seeing = f.header.get_double("SEEING"); seeing && *seeing > 0.0) {
        fwhm = *seeing;
        from = "SEEING";
      } else if (mode_ == "sources") {
        const astroflow::PsfEstimate e = astroflow::estimate_psf_fwhm(f);
        fwhm = e.fwhm_pix * scale;
        from = "measured on " + std::to_string(e.stars) + " point-like rows";
        measured = true;
      }
    }
    if (!(fwhm > 0.0)) return {};
    PsfPlan plan;
    plan.fwhm_pix = fwhm / scale;
    // A frame sharper than the range goes to its centre, the middle of the training PSFs.
    const double target = 0.5 * (card.psf_fwhm_min_arcsec + card.psf_fwhm_max_arcsec);
    plan.sigma_pix = fwhm < card.psf_fwhm_min_arcsec * (1.0 - kPsfTolerance)
                         ? astroflow::psf_match_sigma_pix(fwhm, target, scale)
                         : 0.0;
    // Only a stated PSF is called broad: the measured one reads high on a Moffat's wings.
    plan.broad = !measured && fwhm > card.psf_fwhm_max_arcsec * (1.0 + kPsfTolerance);
    const std::string what = f.label() + ": PSF FWHM " + fmt_scale(fwhm) + " arcsec (" + from +
                             "), model " + fmt_scale(card.psf_fwhm_min_arcsec) + "-" +
                             fmt_scale(card.psf_fwhm_max_arcsec) + " arcsec";
    // Sources mode logs every frame (a survey image); cutout mode the first frame of this
    // instance (one per worker thread).
    if (mode_ == "cutout" && psf_logged_.exchange(true)) return plan;
    if (plan.sigma_pix > 0.0) {
      log().info(what + ": stamps smoothed by a Gaussian of FWHM " +
                 fmt_scale(plan.sigma_pix * astroflow::kFwhmPerSigma * scale) +
                 " arcsec (CLASS_FLAGS 32)");
    } else if (plan.broad) {
      log().warn(what +
                 ": broader than the model was trained on; classes flagged (CLASS_FLAGS 64)");
    }
    return plan;
  }

  void gather(Frame& f, std::size_t fi, std::vector<Job>& jobs, int w, int h) {
    if (f.science.empty()) throw FrameError("no science plane");
    const double factor = scale_factor(f);
    const double card_scale = model_->card().pixel_scale_arcsec;
    const PsfPlan psf = psf_plan(f);
    if (mode_ == "cutout") {
      Job job;
      job.frame = fi;
      if (f.catalog.empty()) {
        // The row of this cutout: its centre, in pixels and (with a WCS) on the sky, so the
        // merged catalog of a folder of cutouts can be matched to other catalogs.
        f.catalog.append_row();
        const double xc = (f.width() + 1) / 2.0;  // FITS 1-based centre of the stamp
        const double yc = (f.height() + 1) / 2.0;
        f.catalog.add_column<double>("X_IMAGE", "pix", "cutout centre x, 1-based") = {xc};
        f.catalog.add_column<double>("Y_IMAGE", "pix", "cutout centre y, 1-based") = {yc};
        double ra = std::numeric_limits<double>::quiet_NaN();
        double dec = ra;
        if (f.wcs) {
          try {
            const astroflow::SkyCoord sky = f.wcs->pixel_to_sky({xc, yc});
            ra = sky.ra_deg;
            dec = sky.dec_deg;
          } catch (const std::exception& e) {
            log().warn(f.label() + ": no sky position for the cutout centre: " + e.what());
          }
        }
        f.catalog.add_column<double>("ALPHA_J2000", "deg", "right ascension of the centre") = {ra};
        f.catalog.add_column<double>("DELTA_J2000", "deg", "declination of the centre") = {dec};
      }
      // A cutout is one object: its class goes to every row already there (usually none).
      job.row = 0;
      job.row_end = f.catalog.rows();
      job.psf_matched = psf.sigma_pix > 0.0;
      job.psf_broad = psf.broad;
      job.seed = noise_seed(f, 0);
      const bool size_differs = f.width() != w || f.height() != h;
      if (factor != 1.0 || size_differs) {
        const std::string what =
            "cutout " + std::to_string(f.width()) + "x" + std::to_string(f.height()) + " at " +
            fmt_scale(f.pixel_scale_arcsec) + " arcsec/pix, model " + std::to_string(w) + "x" +
            std::to_string(h) + " at " + fmt_scale(card_scale) + " arcsec/pix";
        if (refuse_mismatch_) throw FrameError(what + " (on_mismatch: refuse)");
        const double covered_w = f.width() * factor;
        const double covered_h = f.height() * factor;
        if (covered_w < kMinCoverage * w || covered_h < kMinCoverage * h) {
          throw FrameError(what + ": too small to classify (needs at least " +
                           std::to_string(static_cast<int>(kMinCoverage * w)) + "x" +
                           std::to_string(static_cast<int>(kMinCoverage * h)) +
                           " pixels at the model's scale)");
        }
        f.flags |= astroflow::kFrameResampled;
        log().warn(f.label() + ": " + what + "; rescaled and centre-cropped/padded");
        job.resampled = true;
      }
      prepare(f.science, (f.width() - 1) / 2.0, (f.height() - 1) / 2.0, factor, psf.sigma_pix,
              psf.fwhm_pix, w, h, job, Neighbours{});
      if (!job.error.empty()) {
        if (std::isnan(job.nan_fraction)) f.flags |= astroflow::kFrameAllBlank;
        throw FrameError(job.error);
      }
      jobs.push_back(std::move(job));
      return;
    }

    // sources mode: one stamp per catalog row, centred on (X_IMAGE, Y_IMAGE) (1-based).
    const auto* xc = f.catalog.find("X_IMAGE");
    const auto* yc = f.catalog.find("Y_IMAGE");
    if (xc == nullptr || yc == nullptr) {
      throw FrameError("mode 'sources' needs X_IMAGE and Y_IMAGE from an earlier stage");
    }
    if (refuse_mismatch_ && factor != 1.0) {
      throw FrameError("pixel scale " + fmt_scale(f.pixel_scale_arcsec) +
                       " arcsec/pix differs from the model's " + fmt_scale(card_scale) +
                       " (on_mismatch: refuse)");
    }
    if (factor != 1.0) f.flags |= astroflow::kFrameResampled;
    // mask_neighbours: the segmap's labels as floats (exact below 2^24) for extract_stamp.
    cv::Mat labels;
    const astroflow::Column* number = nullptr;
    if (mask_neighbours_) {
      const auto seg = f.planes.find("segmap");
      number = f.catalog.find("NUMBER");
      if (seg == f.planes.end() || number == nullptr) {
        throw FrameError(
            "mask_neighbours needs the segmap plane and the NUMBER column (of the "
            "segment or sources stage)");
      }
      seg->second.convertTo(labels, CV_32F);
    }
    for (std::size_t r = 0; r < f.catalog.rows(); ++r) {
      Job job;
      job.frame = fi;
      job.row = r;
      job.row_end = r + 1;
      job.resampled = factor != 1.0;
      job.psf_matched = psf.sigma_pix > 0.0;
      job.psf_broad = psf.broad;
      job.seed = noise_seed(f, r);
      // X_IMAGE/Y_IMAGE are full-image positions, also on a tile of a large image (tiler.hpp):
      // the tile's own pixels start at (tile.x0_pix, tile.y0_pix).
      const Neighbours nb{labels.empty() ? nullptr : &labels,
                          number == nullptr ? 0.0 : number->as_double(r), r};
      prepare(f.science, xc->as_double(r) - 1.0 - f.tile.x0_pix,
              yc->as_double(r) - 1.0 - f.tile.y0_pix, factor, psf.sigma_pix, psf.fwhm_pix, w, h,
              job, nb);
      jobs.push_back(std::move(job));
    }
  }

  // mask_neighbours: the frame's segmap labels (CV_32F; null = no masking), the row's own
  // label and its index (the seed of its sky noise, so a run is reproducible).
  struct Neighbours {
    const cv::Mat* labels = nullptr;
    double own = 0.0;
    std::size_t row = 0;
  };

  // Replaces the stamp's pixels that carry another source's label by noise drawn from the
  // sigma-clipped statistics of its unlabelled (sky) pixels, as SExtractor-style cleaning does:
  // in crowded fields a stamp holds many neighbours, where the training stamps hold at most
  // three. Returns whether a pixel was replaced.
  static bool mask_stamp(cv::Mat& stamp, const cv::Mat& seg, const Neighbours& nb) {
    cv::Mat sky(stamp.size(), CV_32F, cv::Scalar(std::numeric_limits<float>::quiet_NaN()));
    bool any = false;
    for (int y = 0; y < stamp.rows; ++y) {
      const float* l = seg.ptr<float>(y);
      const float* v = stamp.ptr<float>(y);
      float* s = sky.ptr<float>(y);
      for (int x = 0; x < stamp.cols; ++x) {
        if (l[x] == 0.0f) s[x] = v[x];
        any = any || (std::isfinite(l[x]) && l[x] != 0.0f && l[x] != nb.own);
      }
    }
    if (!any) return false;
    const astroflow::ClippedStats st = astroflow::sigma_clipped_stats(sky);
    if (st.n_finite == 0) return false;  // no sky pixel to draw from
    cv::RNG rng(0x9e3779b97f4a7c15ULL ^ static_cast<std::uint64_t>(nb.row + 1));
    const double sd = std::max(st.stddev, 0.0);
    for (int y = 0; y < stamp.rows; ++y) {
      const float* l = seg.ptr<float>(y);
      float* v = stamp.ptr<float>(y);
      for (int x = 0; x < stamp.cols; ++x) {
        if (std::isfinite(l[x]) && l[x] != 0.0f && l[x] != nb.own && std::isfinite(v[x])) {
          v[x] = static_cast<float>(st.median + rng.gaussian(sd));
        }
      }
    }
    return true;
  }

  // Cuts the model-sized stamp (in the frame's pixels: w / factor) around (x0, y0), masks its
  // neighbours (nb.labels), brings it to w x h and normalises it. Problems are recorded in
  // job.error, not thrown, so one bad source does not cost the frame.
  void prepare(const cv::Mat& image, double x0, double y0, double factor, double psf_sigma_pix,
               double psf_fwhm_pix, int w, int h, Job& job, const Neighbours& nb) const {
    const int src_w = std::max(1, static_cast<int>(std::lround(w / factor)));
    const int src_h = std::max(1, static_cast<int>(std::lround(h / factor)));
    // PSF matching smooths a stamp cut 3 sigma wider on each side, so its edge is the image's.
    const int margin = psf_sigma_pix > 0.0 ? static_cast<int>(std::ceil(3.0 * psf_sigma_pix)) : 0;
    auto cut = [&](const cv::Mat& from) {
      const int side = std::max(src_w, src_h) + 2 * margin;
      cv::Mat st = astroflow::extract_stamp(from, x0, y0, side);
      const int cw = src_w + 2 * margin;
      const int ch = src_h + 2 * margin;
      if (cw != side || ch != side) {
        st = st(cv::Rect((side - cw) / 2, (side - ch) / 2, cw, ch)).clone();
      }
      return st;
    };
    cv::Mat stamp = cut(image);
    if (nb.labels != nullptr) job.masked = mask_stamp(stamp, cut(*nb.labels), nb);
    if (margin > 0) {
      astroflow::psf_match_stamp(stamp, psf_sigma_pix, job.seed, psf_fwhm_pix);
      stamp = stamp(cv::Rect(margin, margin, src_w, src_h)).clone();
    }
    const int finite = cv::countNonZero(stamp == stamp);  // NaN != NaN
    if (finite == 0) {
      job.error = "no finite pixel in the stamp";
      job.nan_fraction = std::numeric_limits<double>::quiet_NaN();
      return;
    }
    if (src_w != w || src_h != h) {
      // Blank area outside the image stays blank after rescaling, so the fill accounts for it.
      const cv::Mat blank = astroflow::fill_blanks_with_median(stamp);
      stamp = rescale(stamp, factor);
      cv::Mat blank_scaled;
      cv::resize(blank, blank_scaled, stamp.size(), 0, 0, cv::INTER_NEAREST);
      stamp.setTo(std::numeric_limits<float>::quiet_NaN(), blank_scaled);
      if (stamp.cols != w || stamp.rows != h) {
        cv::Mat fitted(h, w, CV_32F, cv::Scalar(std::numeric_limits<float>::quiet_NaN()));
        const int cw = std::min(w, stamp.cols);
        const int ch = std::min(h, stamp.rows);
        stamp(cv::Rect((stamp.cols - cw) / 2, (stamp.rows - ch) / 2, cw, ch))
            .copyTo(fitted(cv::Rect((w - cw) / 2, (h - ch) / 2, cw, ch)));
        stamp = fitted;
      }
    }
    try {
      const auto n = astroflow::normalise_stamp(stamp, model_->card().normalisation, job.input);
      job.nan_fraction = n.nan_fraction;
    } catch (const std::exception& e) {
      job.error = e.what();
    }
  }

  // The names of `spec` (comma-separated) as indices into the card's classes; at least one class
  // must remain.
  static std::vector<std::size_t> parse_excluded(const std::string& spec,
                                                 const astroflow::ModelCard& card) {
    std::vector<std::size_t> out;
    std::size_t start = 0;
    while (start <= spec.size()) {
      const std::size_t comma = std::min(spec.find(',', start), spec.size());
      std::string name = spec.substr(start, comma - start);
      name.erase(0, name.find_first_not_of(" \t"));
      name.erase(name.find_last_not_of(" \t") + 1);
      start = comma + 1;
      if (name.empty()) continue;
      const auto it = std::find(card.class_names.begin(), card.class_names.end(), name);
      if (it == card.class_names.end()) {
        std::string known;
        for (const auto& c : card.class_names) known += (known.empty() ? "" : ", ") + c;
        throw astroflow::FatalError("exclude_classes: '" + name + "' is not a class of " +
                                    card.card_path + " (" + known + ")");
      }
      const auto k = static_cast<std::size_t>(it - card.class_names.begin());
      if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
    }
    if (!out.empty() && out.size() >= card.class_names.size()) {
      throw astroflow::FatalError("exclude_classes: '" + spec + "' leaves no class of " +
                                  card.card_path);
    }
    return out;
  }

  // P(class | not excluded): the excluded probabilities become 0 and the rest are renormalised.
  // Returns whether the unconditioned most probable class was an excluded one.
  bool condition_row(float* p) const {
    const std::size_t n = model_->card().class_names.size();
    const auto best = static_cast<std::size_t>(std::max_element(p, p + n) - p);
    bool first = false;
    for (const std::size_t k : excluded_) {
      first = first || k == best;
      p[k] = 0.0f;
    }
    double kept = 0.0;
    for (std::size_t k = 0; k < n; ++k) kept += p[k];
    if (kept > 0.0) {
      for (std::size_t k = 0; k < n; ++k) p[k] = static_cast<float>(p[k] / kept);
    } else {  // every kept class underflowed: uniform over the kept classes
      const float u = 1.0f / static_cast<float>(n - excluded_.size());
      for (std::size_t k = 0; k < n; ++k)
        p[k] = std::find(excluded_.begin(), excluded_.end(), k) == excluded_.end() ? u : 0.0f;
    }
    return first;
  }

  void write_row(Frame& f, const Job& job, const float* p, bool first_excluded) const {
    auto& cat = f.catalog;
    const auto& names = model_->card().class_names;
    auto& cls = cat.add_column<std::string>("CLASS", "", "most probable morphology class");
    auto& id = cat.add_column<std::int32_t>("CLASS_ID", "",
                                            "index of CLASS in the model card, -1: none", -1);
    auto& flags = cat.add_column<std::int32_t>(
        "CLASS_FLAGS", "",
        "1: blank pixels filled, 2: rescaled, 4: not classified, 8: first choice excluded, "
        "16: neighbours masked, 32: smoothed to the model's PSF, 64: PSF broader than the "
        "model's");
    auto& fill = cat.add_column<float>("CLASS_FILL_FRAC", "",
                                       "fraction of stamp pixels that were blank and filled",
                                       std::numeric_limits<float>::quiet_NaN());
    std::vector<std::vector<float>*> pcols;
    for (std::size_t k = 0; k < names.size(); ++k) {
      pcols.push_back(&cat.add_column<float>(p_columns_[k], "",
                                             "calibrated probability of class " + names[k],
                                             std::numeric_limits<float>::quiet_NaN()));
    }
    for (std::size_t r = job.row; r < job.row_end; ++r)
      fill_row(job, p, first_excluded, r, cls, id, flags, fill, pcols);
  }

  void fill_row(const Job& job, const float* p, bool first_excluded, std::size_t r,
                std::vector<std::string>& cls, std::vector<std::int32_t>& id,
                std::vector<std::int32_t>& flags, std::vector<float>& fill,
                const std::vector<std::vector<float>*>& pcols) const {
    const auto& names = model_->card().class_names;
    std::int32_t fl = (job.resampled ? kFlagResampled : 0) |
                      (job.nan_fraction > 0.0 ? kFlagNanFilled : 0) |
                      (first_excluded ? kFlagExcluded : 0) | (job.masked ? kFlagMasked : 0) |
                      (job.psf_matched ? kFlagPsfMatched : 0) | (job.psf_broad ? kFlagPsfBroad : 0);
    fill[r] = static_cast<float>(job.nan_fraction);
    if (p == nullptr) {
      cls[r].clear();
      id[r] = -1;
      flags[r] = fl | kFlagFailed;
      for (auto* c : pcols) (*c)[r] = std::numeric_limits<float>::quiet_NaN();
      return;
    }
    const auto best = static_cast<std::size_t>(std::max_element(p, p + names.size()) - p);
    cls[r] = names[best];
    id[r] = static_cast<std::int32_t>(best);
    flags[r] = fl;
    for (std::size_t k = 0; k < names.size(); ++k) (*pcols[k])[r] = p[k];
  }

  std::string model_path_;
  std::string mode_ = "cutout";
  int batch_ = 64;
  bool refuse_mismatch_ = false;
  double scale_tolerance_ = 0.02;
  std::string exclude_spec_;
  bool mask_neighbours_ = false;
  bool psf_match_ = true;
  double psf_fwhm_arcsec_ = 0.0;
  mutable std::atomic<bool> psf_logged_{false};
  std::vector<std::size_t> excluded_;  // card class indices conditioned away
  std::optional<astroflow::OnnxModel> model_;
  std::vector<std::string> p_columns_;
};

}  // namespace

ASTROFLOW_PLUGIN(
    ClassifyStage, "classify", "1.0.0", "MIT",
    "galaxy morphology CNN: CLASS, CLASS_ID and calibrated P_<class> per cutout or source",
    // Since ABI 1.1 a need may depend on an option, so `astroflow validate` catches a sources
    // stamp without positions or a mask without a segmap before any pixel is read.
    /*needs=*/
    "plane:science,column:X_IMAGE?mode=sources,column:Y_IMAGE?mode=sources,"
    "plane:segmap?mask_neighbours,column:NUMBER?mask_neighbours",
    /*provides=*/
    "column:CLASS,column:CLASS_ID,column:CLASS_FLAGS,column:CLASS_FILL_FRAC,column:P_SPHEROID,"
    "column:P_DISK,column:P_IRREGULAR,column:P_POINT_SOURCE,column:P_ARTIFACT",
    astroflow::OptionSchema()
        .add_path("model", std::nullopt, "model.onnx (its model.yaml card beside it) or the card")
        .add_string("mode", "cutout",
                    "cutout: each frame is one stamp; sources: a stamp per X_IMAGE/Y_IMAGE row",
                    {"cutout", "sources"})
        .add_int("batch", 64, "stamps per forward pass", 1, 4096)
        .add_string("on_mismatch", "resample",
                    "pixel scale or size unlike the card: resample (flag) or refuse (frame fails)",
                    {"resample", "refuse"})
        .add_double("pixel_scale_tolerance", 0.02,
                    "relative pixel-scale difference accepted as equal", 0.0, 1.0)
        .add_string("exclude_classes", "",
                    "comma-separated card classes an earlier stage rules out (e.g. artifact "
                    "after detect): P set to 0, the rest renormalised, CLASS_FLAGS 8 when the "
                    "network's first choice was one")
        .add_bool("mask_neighbours", false,
                  "sources mode: pixels of other sources in the segmap plane (segment or "
                  "sources stage) become noise drawn from the stamp's sky (CLASS_FLAGS 16)")
        .add_string("psf_match", "auto",
                    "auto: a frame whose PSF is sharper than the card's input.psf_fwhm_arcsec "
                    "range is smoothed to the range's centre, with noise added back to its sky "
                    "rms (CLASS_FLAGS 32); a broader stated one (option or SEEING) is flagged "
                    "(64); off: stamps as they are",
                    {"auto", "off"})
        .add_double("psf_fwhm_arcsec", 0.0,
                    "the frames' PSF FWHM; 0: the header's SEEING (arcsec), else in sources mode "
                    "measured on the frame's point-like rows",
                    0.0, 100.0))
