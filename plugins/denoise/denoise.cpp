// The `denoise` stage: a U-Net autoencoder (models/denoise) run on overlapping tiles of an image
// of any size, blended with a raised-cosine window (astroflow/tile_blend.hpp), giving the plane
// "denoised" in the units of the science plane as it reached this stage.
//
// Normalisation: y = (x - b) / rms with the `background` stage's planes, where b is the
// "background" plane, or 0 when that stage already subtracted it (header BKG_SUB = T). NaN
// pixels (and pixels with a non-finite or non-positive rms) are filled with 0 (= background)
// for inference and are NaN again in the output. The output is rms * y_out + b.
//
// One OnnxModel per instance (cv::dnn::Net is not thread-safe); the host gives each concurrent
// slot its own instance.
#include <astroflow/onnx_model.hpp>
#include <astroflow/plugin.hpp>
#include <astroflow/preprocess.hpp>
#include <astroflow/tile_blend.hpp>
#include <cmath>
#include <filesystem>
#include <limits>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

class DenoiseStage : public astroflow::Stage {
 public:
  void configure(const astroflow::Options& o) override {
    model_path_ = o.get_string("model");
    tile_ = static_cast<int>(o.get_int("tile"));
    overlap_ = static_cast<int>(o.get_int("overlap"));
    batch_ = static_cast<int>(o.get_int("batch"));
    replace_science_ = o.get_bool("replace_science");
    flux_restore_sigma_ = o.get_double("flux_restore_sigma");
    flux_restore_clip_ = o.get_double("flux_restore_clip");
  }

  void open(const astroflow::StageContext& ctx) override {
    Stage::open(ctx);
    const std::string path = resolve(model_path_, ctx.config_dir);
    // OnnxModelError / ModelCardError are FatalErrors naming the model file.
    model_.emplace(astroflow::OnnxModel::load(path, {batch_, false, true}));
    const auto& card = model_->card();
    if (card.channels() != 1 || card.height_pix() != card.width_pix()) {
      throw astroflow::FatalError(
          card.card_path + ": denoise needs a 1-channel square input, the card says " +
          std::to_string(card.channels()) + "x" + std::to_string(card.height_pix()) + "x" +
          std::to_string(card.width_pix()));
    }
    tile_ = astroflow::checked_network_tile(card, ctx.stage_name, tile_, overlap_);
  }

 protected:
  void process_frame(astroflow::Frame& frame) override {
    const cv::Mat& sci = frame.science;
    cv::Mat blank;
    const cv::Mat norm = astroflow::normalise_frame_by_planes(frame, "denoise", blank);
    const cv::Mat& bkg = frame.planes.at("background");
    const cv::Mat& rms = frame.planes.at("rms");
    const bool subtracted = frame.header.get_string("BKG_SUB").value_or("") == "T";

    cv::Mat out_norm = astroflow::blend_tiles(
        norm, tile_, overlap_, batch_, [this](const std::vector<cv::Mat>& tiles) {
          const int dims[4] = {static_cast<int>(tiles.size()), 1, tile_, tile_};
          cv::Mat blob(4, dims, CV_32F);
          const std::size_t plane = static_cast<std::size_t>(tile_) * tile_;
          for (std::size_t i = 0; i < tiles.size(); ++i) {
            std::copy(tiles[i].ptr<float>(), tiles[i].ptr<float>() + plane,
                      blob.ptr<float>() + i * plane);
          }
          cv::Mat result = model_->run(blob).at(0);
          std::vector<cv::Mat> outs;
          for (std::size_t i = 0; i < tiles.size(); ++i) {
            outs.push_back(cv::Mat(tile_, tile_, CV_32F, result.ptr<float>() + i * plane).clone());
          }
          return outs;
        });

    if (flux_restore_sigma_ > 0.0) restore_local_flux(norm, blank, out_norm);

    cv::Mat denoised(sci.size(), CV_32F);
    constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
    for (int y = 0; y < sci.rows; ++y) {
      const float* o = out_norm.ptr<float>(y);
      const float* b = bkg.ptr<float>(y);
      const float* r = rms.ptr<float>(y);
      const unsigned char* m = blank.ptr<unsigned char>(y);
      float* d = denoised.ptr<float>(y);
      for (int x = 0; x < sci.cols; ++x) {
        d[x] = m[x] != 0 ? kNaN : o[x] * r[x] + (subtracted ? 0.0f : b[x]);
      }
    }
    frame.planes["denoised"] = denoised;
    if (replace_science_) {
      // The raw pixels stay as the plane "science_raw" (for the run's raw | denoised quick-look).
      frame.planes["science_raw"] = frame.science;
      frame.science = denoised.clone();
      frame.header.set("DENOISED", true, "astroflow denoise replaced the science plane");
    }
    frame.header.add_history("astroflow denoise: model sha256 " + model_->card().sha256);
    stamp(frame, model_->card().sha256);
  }

 private:
  // Adds back the low-pass part of the residual (input - output, in normalised units), a
  // Gaussian of flux_restore_sigma_ pixels, normalised over the pixels that take part. A network
  // trained for the mean squared error pulls ambiguous faint flux towards its prior, which
  // biases aperture fluxes; the residual's low-pass carries that flux back (and some of the
  // noise: a Gaussian of sigma s keeps 1 / (2 sqrt(pi) s) of white noise). Residual pixels
  // beyond flux_restore_clip_ (noise units) and their 8 neighbours take no part: there the
  // network removed a cosmic ray or hot pixel, which must not come back as a blob, or erred on
  // a bright core, whose flux bias is small anyway. Blank pixels take no part either.
  void restore_local_flux(const cv::Mat& input, const cv::Mat& blank, cv::Mat& output) const {
    cv::Mat residual;
    cv::subtract(input, output, residual);
    cv::Mat excluded = cv::abs(residual) > flux_restore_clip_;
    cv::dilate(excluded, excluded, cv::Mat::ones(3, 3, CV_8U));
    cv::bitwise_or(excluded, blank != 0, excluded);
    residual.setTo(0.0f, excluded);
    const int k = 2 * static_cast<int>(std::ceil(4.0 * flux_restore_sigma_)) + 1;
    const cv::Size ksize(k, k);
    cv::GaussianBlur(residual, residual, ksize, flux_restore_sigma_, flux_restore_sigma_,
                     cv::BORDER_REFLECT);
    if (cv::countNonZero(excluded) > 0) {
      cv::Mat weight(blank.size(), CV_32F, cv::Scalar(1.0f));
      weight.setTo(0.0f, excluded);
      cv::GaussianBlur(weight, weight, ksize, flux_restore_sigma_, flux_restore_sigma_,
                       cv::BORDER_REFLECT);
      cv::max(weight, 1e-3f, weight);
      cv::divide(residual, weight, residual);
    }
    output += residual;
  }

  static std::string resolve(const std::string& p, const std::string& config_dir) {
    const fs::path path(p);
    if (path.is_absolute() || config_dir.empty()) return p;
    // Relative to the config file first, then to its parent (configs/ sits beside models/),
    // then to the working directory.
    for (const fs::path& c : {fs::path(config_dir) / path, fs::path(config_dir) / ".." / path}) {
      if (fs::exists(c)) return c.lexically_normal().string();
    }
    return p;
  }

  std::string model_path_;
  int tile_ = 0;
  int overlap_ = 32;
  int batch_ = 8;
  bool replace_science_ = false;
  double flux_restore_sigma_ = 0.0;
  double flux_restore_clip_ = 5.0;
  std::optional<astroflow::OnnxModel> model_;
};

}  // namespace

ASTROFLOW_PLUGIN(
    DenoiseStage, "denoise", "1.0.0", "MIT",
    "U-Net denoising on overlapping, blended tiles; adds the plane 'denoised'",
    "plane:background,plane:rms", "plane:denoised",
    astroflow::OptionSchema()
        .add_path("model", std::nullopt,
                  "model.onnx (its model.yaml card beside it) or the card; relative to the config")
        .add_int("tile", 0, "tile size in pixels; 0 = the card's input size", 0, 4096)
        .add_int("overlap", 32, "overlap of neighbouring tiles in pixels", 0, 2048)
        .add_int("batch", 8, "tiles per forward pass", 1, 1024)
        .add_bool("replace_science", false,
                  "also replace the science plane by the denoised image (later stages see it)")
        .add_double("flux_restore_sigma", 0.0,
                    "add back the residual's Gaussian low-pass of this sigma (pixels; 0 = off), "
                    "which restores aperture fluxes at some cost in noise",
                    0.0, 64.0)
        .add_double("flux_restore_clip", 5.0,
                    "residual pixels beyond this many noise sigmas (cosmic rays, hot pixels) and "
                    "their neighbours are left out of flux_restore_sigma's low-pass",
                    0.5, 1e6))
