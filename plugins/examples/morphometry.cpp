// morphometry: non-parametric morphology (CAS, Gini, M20) for every catalogued source.
//
// An example of an out-of-tree plugin: built against an installed astroflow with
// find_package(astroflow) + astroflow_add_plugin() (see CMakeLists.txt and README.md).
// The math lives in morphometry_core.hpp so that it is unit-tested without the pipeline.
#include <algorithm>
#include <astroflow/plugin.hpp>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "morphometry_core.hpp"

namespace {

using astroflow::Frame;
using astroflow::FrameError;

/// MORPH_FLAGS bits.
enum MorphFlag : std::int32_t {
  kNoPetrosian = 1,     ///< eta never fell to 0.2 inside the cutout: C, A, S are NaN
  kEmptyFootprint = 2,  ///< no positive flux in the footprint: Gini, M20 are NaN
  kCutByEdge = 4,       ///< the cutout runs off the image; outside pixels counted as 0
  kNoSegmapLabel = 8,   ///< segmap present but no label at the source: aperture used
};

class MorphometryStage : public astroflow::Stage {
 public:
  void configure(const astroflow::Options& options) override {
    use_segmap_ = options.get_bool("use_segmap");
    aperture_radius_pix_ = options.get_double("aperture_radius_pix");
    max_cutout_half_pix_ = static_cast<int>(options.get_int("max_cutout_half_pix"));
  }

 protected:
  void process_frame(Frame& frame) override {
    astroflow::Catalog& cat = frame.catalog;
    const astroflow::Column* xcol = cat.find("X_IMAGE");
    const astroflow::Column* ycol = cat.find("Y_IMAGE");
    const std::size_t n = cat.rows();
    if (n > 0 && (xcol == nullptr || ycol == nullptr)) {
      throw FrameError("morphometry: catalog has no X_IMAGE/Y_IMAGE (run the sources stage first)");
    }
    std::vector<double> c(n), a(n), s(n), g(n), m20(n), rp(n);
    std::vector<std::int32_t> flags(n, 0);

    const cv::Mat image = background_subtracted(frame);
    cv::Mat segmap;
    if (use_segmap_) {
      auto it = frame.planes.find("segmap");
      if (it != frame.planes.end() && it->second.type() == CV_32S &&
          it->second.size() == image.size())
        segmap = it->second;
    }
    const astroflow::Column* numcol = cat.find("NUMBER");

    for (std::size_t row = 0; row < n; ++row) {
      // FITS 1-based full-image positions -> 0-based pixels of this frame (a tile of a large
      // image starts at tile.x0_pix, tile.y0_pix; 0 otherwise).
      const double x = xcol->as_double(row) - 1.0 - frame.tile.x0_pix;
      const double y = ycol->as_double(row) - 1.0 - frame.tile.y0_pix;
      std::int32_t label = 0;
      if (!segmap.empty()) {
        label = numcol != nullptr ? static_cast<std::int32_t>(numcol->as_double(row))
                                  : label_at(segmap, x, y);
        if (label <= 0) flags[row] |= kNoSegmapLabel;
      }
      const morphometry::Morphology m = measure_one(image, segmap, label, x, y, flags[row]);
      c[row] = m.concentration;
      a[row] = m.asymmetry;
      s[row] = m.smoothness;
      g[row] = m.gini;
      m20[row] = m.m20;
      rp[row] = m.r_petro_pix;
      if (std::isnan(m.r_petro_pix)) flags[row] |= kNoPetrosian;
      if (std::isnan(m.gini)) flags[row] |= kEmptyFootprint;
    }
    cat.add_column<double>("CONCENTRATION", "", "5 log10(r80/r20) within 1.5 r_petro") = c;
    cat.add_column<double>("ASYMMETRY", "",
                           "180-degree rotational asymmetry, background-corrected") = a;
    cat.add_column<double>("SMOOTHNESS", "", "clumpiness, boxcar of 0.25 r_petro") = s;
    cat.add_column<double>("GINI", "", "Gini coefficient of the footprint pixels") = g;
    cat.add_column<double>("M20", "", "log10 second moment of the brightest 20% of the flux") = m20;
    cat.add_column<double>("R_PETRO", "pix", "circular Petrosian radius (eta = 0.2)") = rp;
    cat.add_column<std::int32_t>("MORPH_FLAGS", "", "1 no r_petro, 2 empty, 4 edge, 8 no label") =
        flags;
    stamp(frame);
  }

 private:
  static cv::Mat background_subtracted(const Frame& frame) {
    cv::Mat image;
    const auto bkg = frame.planes.find("background");
    const auto bkg_sub = frame.header.get_string("BKG_SUB");
    const bool already = bkg_sub && (*bkg_sub == "T" || *bkg_sub == "1");
    if (bkg != frame.planes.end() && !already && bkg->second.size() == frame.science.size()) {
      cv::subtract(frame.science, bkg->second, image, cv::noArray(), CV_32F);
    } else {
      frame.science.convertTo(image, CV_32F);
    }
    cv::patchNaNs(image, 0.0);
    return image;
  }

  static std::int32_t label_at(const cv::Mat& segmap, double x, double y) {
    const int xi = static_cast<int>(std::lround(x));
    const int yi = static_cast<int>(std::lround(y));
    if (xi < 0 || yi < 0 || xi >= segmap.cols || yi >= segmap.rows) return 0;
    return segmap.at<std::int32_t>(yi, xi);
  }

  morphometry::Morphology measure_one(const cv::Mat& image, const cv::Mat& segmap,
                                      std::int32_t label, double x, double y,
                                      std::int32_t& flags) const {
    // Extent of the footprint around the source, which sets the cutout size: the Petrosian
    // search needs 1.25 r_p and the asymmetry 1.5 r_p, so take 2.5x the footprint's reach.
    const int xi = static_cast<int>(std::lround(x));
    const int yi = static_cast<int>(std::lround(y));
    double reach = aperture_radius_pix_;
    if (label > 0) {
      reach = 1.0;
      const int window = max_cutout_half_pix_;
      for (int yy = std::max(0, yi - window); yy <= std::min(image.rows - 1, yi + window); ++yy)
        for (int xx = std::max(0, xi - window); xx <= std::min(image.cols - 1, xi + window); ++xx)
          if (segmap.at<std::int32_t>(yy, xx) == label)
            reach = std::max(reach, std::hypot(xx - x, yy - y));
    }
    const int half =
        std::clamp(static_cast<int>(std::ceil(2.5 * reach)) + 4, 8, max_cutout_half_pix_);
    const int size = 2 * half + 1;
    cv::Mat cut(size, size, CV_32F, cv::Scalar(0));
    cv::Mat footprint(size, size, CV_8U, cv::Scalar(0));
    cv::Mat background;
    if (label > 0) background = cv::Mat(size, size, CV_8U, cv::Scalar(0));
    const int ox = xi - half;  // image column of cutout column 0
    const int oy = yi - half;
    if (ox < 0 || oy < 0 || ox + size > image.cols || oy + size > image.rows) flags |= kCutByEdge;
    for (int v = 0; v < size; ++v) {
      const int iy = oy + v;
      if (iy < 0 || iy >= image.rows) continue;
      for (int u = 0; u < size; ++u) {
        const int ix = ox + u;
        if (ix < 0 || ix >= image.cols) continue;
        const float value = image.at<float>(iy, ix);
        if (label > 0) {
          const std::int32_t owner = segmap.at<std::int32_t>(iy, ix);
          if (owner != 0 && owner != label) continue;  // other sources are masked to 0
          if (owner == label) footprint.at<std::uint8_t>(v, u) = 1;
          if (owner == 0) background.at<std::uint8_t>(v, u) = 1;
        } else if (std::hypot(ix - x, iy - y) <= aperture_radius_pix_) {
          footprint.at<std::uint8_t>(v, u) = 1;
        }
        cut.at<float>(v, u) = value;
      }
    }
    return morphometry::measure(cut, footprint, background, {x - ox, y - oy});
  }

  bool use_segmap_ = true;
  double aperture_radius_pix_ = 10.0;
  int max_cutout_half_pix_ = 256;
};

}  // namespace

ASTROFLOW_PLUGIN(
    MorphometryStage, "morphometry", "0.1.0", "MIT",
    "non-parametric morphology per source: concentration, asymmetry, smoothness, Gini, M20",
    /*needs=*/"column:X_IMAGE,column:Y_IMAGE",
    /*provides=*/
    "column:CONCENTRATION,column:ASYMMETRY,column:SMOOTHNESS,column:GINI,column:M20,"
    "column:R_PETRO,column:MORPH_FLAGS",
    astroflow::OptionSchema()
        .add_bool("use_segmap", true,
                  "use the 'segmap' plane (from the sources stage) as each source's footprint "
                  "and its background pixels for the A/S background terms; without it, a "
                  "circular aperture of aperture_radius_pix is used")
        .add_double("aperture_radius_pix", 10.0, "footprint radius when no segmap is available",
                    1.0, 1000.0)
        .add_int("max_cutout_half_pix", 256, "largest half-size of the cutout around a source", 16,
                 4096))
