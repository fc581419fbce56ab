// sources: SExtractor-style source detection, deblending and measurement.
//
// Detection: the background-subtracted image is convolved with a normalised Gaussian of the
// PSF FWHM; pixels above threshold x RMS (RMS of the unfiltered image, like DETECT_THRESH)
// form 8-connected components of at least min_area pixels. Each component is deblended by
// SExtractor's multi-threshold tree, then measured on the unfiltered image. README.md in this
// folder lists the columns, the flags and the tile ownership rule for the stitcher.
#include <algorithm>
#include <array>
#include <astroflow/deblend.hpp>
#include <astroflow/kron_aperture.hpp>
#include <astroflow/plugin.hpp>
#include <astroflow/preprocess.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using astroflow::Frame;
using astroflow::FrameError;
using astroflow::Options;

// SExtractor FLAGS bits.
constexpr std::int32_t kFlagCrowded = 1;       // neighbours inside the AUTO aperture
constexpr std::int32_t kFlagBlended = 2;       // split from a blend by the deblender
constexpr std::int32_t kFlagSaturated = 4;     // a pixel at or above the saturation level
constexpr std::int32_t kFlagTruncated = 8;     // isophotal footprint touches the image edge
constexpr std::int32_t kFlagApertureCut = 16;  // AUTO aperture runs off the image / blank pixels

constexpr double kNoMag = 99.0;  // SExtractor's value for an undefined magnitude

struct Params {
  double threshold = 1.5;
  bool global_threshold = false;  // threshold_rms: global
  double filter_fwhm_pix = 3.0;
  bool filter = true;
  int min_area_pix = 5;
  int deblend_nthresh = 32;
  double deblend_mincont = 0.005;
  double mag_zeropoint = 25.0;
  double gain_e_per_adu = 0.0;
  astroflow::SaturationOptions saturation;  // FLAGS 4
  bool clean = true;
  double clean_param = 1.0;
};

// A set of pixels (0-based linear indices into the frame) forming one object.
struct Object {
  std::vector<int> pix;
  bool blended = false;
  // Pixels of fainter detections merged in by CLEAN: they belong to this object in the segmap,
  // ISOAREA, FLUX_ISO and the footprint box, but not in the barycentre and moments, which stay
  // those of the object's own pixels as in SExtractor's clean_merge().
  std::vector<int> cleaned;
};

// SExtractor's CLEAN zone: pairs farther apart than 10 x (A1 + A2) are never compared.
constexpr double kCleanZone = 10.0;

// What CLEAN needs of one object, all on the filtered (detection) image.
struct CleanModel {
  double flux = 0.0;  // sum of filtered values (SExtractor fdflux)
  double mx = 0.0;    // filtered-weighted barycentre, 0-based
  double my = 0.0;
  double a = 0.0;    // RMS along the major / minor axes
  double cxx = 0.0;  // ellipse coefficients: r^2 = cxx dx^2 + cyy dy^2 + cxy dx dy
  double cyy = 0.0;
  double cxy = 0.0;
  double amp = 0.0;      // peak amplitude of the Moffat model
  double alpha = 0.0;    // its radial scale: profile = amp (1 + alpha r^2)^-beta
  double mthresh = 0.0;  // excess over threshold of the min_area-th brightest pixel
};

// Builds the Moffat model SExtractor extrapolates from an isophotal detection: amplitude from
// the flux and the (truncation-corrected) moments, scale chosen so that the profile falls to the
// detection threshold at the isophotal area.
CleanModel clean_model(const Object& o, const cv::Mat& filt, const cv::Mat& thresh, int min_area,
                       double beta) {
  CleanModel m;
  const int w = filt.cols;
  const float* f = filt.ptr<float>();
  const float* t = thresh.ptr<float>();
  double s = 0.0;
  double sx = 0.0;
  double sy = 0.0;
  double tsum = 0.0;
  double peak = -std::numeric_limits<double>::infinity();
  for (int p : o.pix) {
    const double v = f[p];
    s += v;
    sx += v * (p % w);
    sy += v * (p / w);
    tsum += t[p];
    peak = std::max(peak, v);
  }
  const auto npix = static_cast<double>(o.pix.size());
  m.flux = s;
  if (o.pix.empty() || s <= 0.0) return m;  // amp stays 0: it can neither clean nor survive it
  m.mx = sx / s;
  m.my = sy / s;
  double xx = 0.0;
  double yy = 0.0;
  double xy = 0.0;
  for (int p : o.pix) {
    const double v = f[p];
    const double dx = p % w - m.mx;
    const double dy = p / w - m.my;
    xx += v * dx * dx;
    yy += v * dy * dy;
    xy += v * dx * dy;
  }
  xx /= s;
  yy /= s;
  xy /= s;
  if (xx * yy - xy * xy < 1.0 / 144.0) {
    xx += 1.0 / 12.0;
    yy += 1.0 / 12.0;
  }
  const double det = xx * yy - xy * xy;
  const auto [a_rms, b_rms] = astroflow::rms_axes(xx, yy, xy);
  m.a = a_rms;
  const double b = std::max(b_rms, 1e-6);
  m.cxx = yy / det;
  m.cyy = xx / det;
  m.cxy = -2.0 * xy / det;
  const double dthresh = tsum / npix;
  // Moments of a profile cut at the threshold underestimate A and B. For a Gaussian the area
  // between the threshold t and t2 = (t + peak) / 2 is 2 pi A B ln(t2 / t); the ratio of the
  // measured area to that corrects the amplitude (SExtractor's abcor, at most 1).
  double abcor = 1.0;
  const double thresh2 = 0.5 * (dthresh + peak);
  if (dthresh > 0.0 && thresh2 > 0.0) {
    int area2 = 0;
    for (int p : o.pix) area2 += f[p] > thresh2 ? 1 : 0;
    const double darea = area2 - npix;
    const double t1t2 = std::min(dthresh / thresh2, 0.99);
    abcor = std::min(1.0, (darea < 0.0 ? darea : -1.0) / (2.0 * CV_PI * std::log(t1t2) * m.a * b));
  }
  const double unit_area = CV_PI * m.a * b;
  m.amp = s / (2.0 * unit_area * abcor);
  m.alpha = dthresh > 0.0 ? (std::pow(m.amp / dthresh, 1.0 / beta) - 1.0) * unit_area / npix : 0.0;
  if (static_cast<int>(o.pix.size()) >= min_area) {
    std::vector<float> excess;
    excess.reserve(o.pix.size());
    for (int p : o.pix) excess.push_back(f[p] - t[p]);
    const auto k = static_cast<std::ptrdiff_t>(min_area - 1);
    std::nth_element(excess.begin(), excess.begin() + k, excess.end(), std::greater<>());
    m.mthresh = excess[static_cast<std::size_t>(k)];
  }
  return m;
}

// SExtractor's CLEAN: a detection is merged into a brighter one (larger filtered flux) when the
// brighter one's extrapolated Moffat profile, evaluated at the fainter one's barycentre, is
// above the fainter one's `mthresh`, i.e. the fainter detection is no more significant than the
// wing it sits on. Objects are visited from the brightest down, so a detection is only compared
// with those that survived; it joins the one whose profile is highest at its position.
std::vector<Object> clean_objects(std::vector<Object> objects, const cv::Mat& filt,
                                  const cv::Mat& thresh, int min_area, double beta) {
  const std::size_t n = objects.size();
  std::vector<CleanModel> models(n);
  double a_max = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    models[i] = clean_model(objects[i], filt, thresh, min_area, beta);
    a_max = std::max(a_max, models[i].a);
  }
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return models[a].flux > models[b].flux; });
  std::multimap<double, std::size_t> kept;  // survivors by barycentre x, for the zone search
  std::vector<int> eaten_by(n, -1);
  for (std::size_t j : order) {
    const CleanModel& mj = models[j];
    const double reach = kCleanZone * (mj.a + a_max);
    int best = -1;
    double best_value = -std::numeric_limits<double>::infinity();
    for (auto it = kept.lower_bound(mj.mx - reach); it != kept.end() && it->first <= mj.mx + reach;
         ++it) {
      const std::size_t i = it->second;
      const CleanModel& mi = models[i];
      if (!(mi.flux > mj.flux) || mi.amp <= 0.0) continue;
      const double dx = mj.mx - mi.mx;
      const double dy = mj.my - mi.my;
      const double zone = kCleanZone * (mi.a + mj.a);
      if (dx * dx + dy * dy >= zone * zone) continue;
      const double val = 1.0 + mi.alpha * (mi.cxx * dx * dx + mi.cyy * dy * dy + mi.cxy * dx * dy);
      if (!(val > 1.0) || val >= 1e10) continue;
      const double profile = mi.amp * std::pow(val, -beta);
      if (profile > mj.mthresh && profile > best_value) {
        best_value = profile;
        best = static_cast<int>(i);
      }
    }
    if (best >= 0) {
      eaten_by[j] = best;
    } else {
      kept.emplace(mj.mx, j);
    }
  }
  std::vector<Object> out;
  std::vector<int> index(n, -1);
  for (std::size_t i = 0; i < n; ++i) {
    if (eaten_by[i] >= 0) continue;
    index[i] = static_cast<int>(out.size());
    out.push_back(std::move(objects[i]));
  }
  for (std::size_t j = 0; j < n; ++j) {
    if (eaten_by[j] < 0) continue;
    Object& eater = out[static_cast<std::size_t>(index[static_cast<std::size_t>(eaten_by[j])])];
    eater.cleaned.insert(eater.cleaned.end(), objects[j].pix.begin(), objects[j].pix.end());
    eater.blended = eater.blended || objects[j].blended;
  }
  return out;
}

struct Measurement {
  double x = 0, y = 0;  // 0-based, tile-local
  double x2 = 0, y2 = 0, xy = 0;
  double a = 0, b = 0, theta_deg = 0;
  double flux_iso = 0, fluxerr_iso = 0;
  double kron_radius = 0, flux_auto = 0, fluxerr_auto = 0;
  int xmin = 0, xmax = 0, ymin = 0, ymax = 0;
  int area = 0;
  std::int32_t flags = 0;
};

// Sigma-clipped (3 sigma, to convergence) median and standard deviation of the finite pixels.
bool global_background(const cv::Mat& science, double& level, double& sigma) {
  std::vector<float> v;
  v.reserve(science.total());
  for (int y = 0; y < science.rows; ++y) {
    const float* row = science.ptr<float>(y);
    for (int x = 0; x < science.cols; ++x) {
      if (std::isfinite(row[x])) v.push_back(row[x]);
    }
  }
  if (v.empty()) return false;
  auto n = static_cast<std::ptrdiff_t>(v.size());
  for (int it = 0; it < 100; ++it) {
    std::nth_element(v.begin(), v.begin() + n / 2, v.begin() + n);
    level = v[static_cast<std::size_t>(n / 2)];
    double s2 = 0.0;
    double s1 = 0.0;
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      s1 += v[static_cast<std::size_t>(i)];
      s2 += static_cast<double>(v[static_cast<std::size_t>(i)]) * v[static_cast<std::size_t>(i)];
    }
    const double mean = s1 / static_cast<double>(n);
    sigma = std::sqrt(std::max(0.0, s2 / static_cast<double>(n) - mean * mean));
    auto end = std::partition(v.begin(), v.begin() + n,
                              [&](float x) { return std::fabs(x - level) <= 3.0 * sigma; });
    if (end - v.begin() == n || end - v.begin() < 3) break;
    n = end - v.begin();
  }
  return true;
}

class SourcesStage final : public astroflow::Stage {
 public:
  void configure(const Options& options) override {
    p_.threshold = options.get_double("threshold");
    p_.global_threshold = options.get_string("threshold_rms") == "global";
    p_.filter = options.get_bool("filter");
    p_.filter_fwhm_pix = options.get_double("filter_fwhm_pix");
    p_.min_area_pix = static_cast<int>(options.get_int("min_area"));
    p_.deblend_nthresh = static_cast<int>(options.get_int("deblend_nthresh"));
    p_.deblend_mincont = options.get_double("deblend_mincont");
    p_.mag_zeropoint = options.get_double("mag_zeropoint");
    p_.gain_e_per_adu = options.get_double("gain");
    p_.saturation = astroflow::saturation_options(options);
    p_.clean = options.get_bool("clean");
    p_.clean_param = options.get_double("clean_param");
    if (p_.filter) kernel_ = astroflow::gaussian_kernel_1d(p_.filter_fwhm_pix);
  }

 protected:
  void process_frame(Frame& frame) override {
    const int w = frame.width();
    const int h = frame.height();
    if (frame.science.empty() || frame.science.type() != CV_32FC1) {
      throw FrameError("sources: science plane is empty or not CV_32FC1");
    }
    cv::Mat image;
    cv::Mat rms;
    const auto bkg_it = frame.planes.find("background");
    const auto rms_it = frame.planes.find("rms");
    if (bkg_it != frame.planes.end() && rms_it != frame.planes.end()) {
      rms = rms_it->second;
      if (rms.size() != frame.science.size() || bkg_it->second.size() != frame.science.size()) {
        throw FrameError("sources: background/rms planes do not match the science plane size");
      }
      // The background stage records in BKG_SUB whether it already subtracted.
      const auto bkg_sub = frame.header.get_string("BKG_SUB");
      if (bkg_sub && (*bkg_sub == "T" || *bkg_sub == "1")) {
        image = frame.science;
      } else {
        cv::subtract(frame.science, bkg_it->second, image);
      }
    } else {
      // Run without the background stage (e.g. by plugin-check): a flat, sigma-clipped
      // background is better than refusing the frame.
      double level = 0.0;
      double sigma = 0.0;
      if (!global_background(frame.science, level, sigma)) {
        frame.flags |= astroflow::kFrameAllBlank;
        throw FrameError("sources: no finite pixel");
      }
      log().warn(frame.label() + ": no background/rms planes, using a flat background " +
                 std::to_string(level) + " +- " + std::to_string(sigma));
      cv::subtract(frame.science, cv::Scalar(level), image);
      rms = cv::Mat(frame.science.size(), CV_32F, cv::Scalar(sigma));
    }
    cv::Mat valid;
    cv::compare(image, image, valid, cv::CMP_EQ);  // false for NaN only
    cv::Mat clean = image.clone();
    cv::patchNaNs(clean, 0.0);

    cv::Mat filt;
    if (p_.filter) {
      cv::sepFilter2D(clean, filt, CV_32F, kernel_, kernel_, cv::Point(-1, -1), 0.0,
                      cv::BORDER_CONSTANT);
    } else {
      filt = clean;
    }
    // threshold_rms global: one threshold for the frame, the mean RMS over its valid pixels,
    // as SExtractor without a weight map (its "Threshold" line); local follows the rms plane,
    // as SExtractor with WEIGHT_TYPE BACKGROUND.
    const cv::Mat thresh =
        p_.global_threshold
            ? cv::Mat(rms.size(), CV_32F, cv::Scalar(cv::mean(rms, valid)[0] * p_.threshold))
            : cv::Mat(rms * p_.threshold);
    cv::Mat mask;
    cv::compare(filt, thresh, mask, cv::CMP_GT);
    mask &= valid;

    cv::Mat labels;
    cv::Mat stats;
    cv::Mat centroids;
    const int n_comp = cv::connectedComponentsWithStats(mask, labels, stats, centroids, 8, CV_32S);
    std::vector<std::vector<int>> comps(static_cast<std::size_t>(std::max(n_comp, 1)));
    for (int l = 1; l < n_comp; ++l) {
      if (stats.at<int>(l, cv::CC_STAT_AREA) >= p_.min_area_pix) {
        comps[static_cast<std::size_t>(l)].reserve(
            static_cast<std::size_t>(stats.at<int>(l, cv::CC_STAT_AREA)));
      }
    }
    for (int y = 0; y < h; ++y) {
      const int* row = labels.ptr<int>(y);
      for (int x = 0; x < w; ++x) {
        const int l = row[x];
        if (l > 0 && stats.at<int>(l, cv::CC_STAT_AREA) >= p_.min_area_pix) {
          comps[static_cast<std::size_t>(l)].push_back(y * w + x);
        }
      }
    }

    const astroflow::Deblender deblender(filt, p_.min_area_pix, p_.deblend_nthresh,
                                         p_.deblend_mincont);
    std::vector<Object> objects;
    for (auto& comp : comps) {
      if (comp.empty()) continue;
      double t_sum = 0.0;
      for (int p : comp) t_sum += thresh.ptr<float>()[p];
      auto parts = deblender.run(comp, t_sum / static_cast<double>(comp.size()));
      for (auto& o : parts) objects.push_back(Object{std::move(o.pix), o.blended, {}});
    }
    if (p_.clean) {
      objects = clean_objects(std::move(objects), filt, thresh, p_.min_area_pix, p_.clean_param);
    }

    // Barycentres and footprints first: they fix the numbering and the segmap, which the
    // AUTO photometry needs to mask neighbours.
    std::vector<Measurement> meas(objects.size());
    for (std::size_t i = 0; i < objects.size(); ++i) {
      measure_isophotal(objects[i], image, filt, rms, w, h, meas[i]);
    }
    std::vector<std::size_t> order(objects.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      if (meas[a].y != meas[b].y) return meas[a].y < meas[b].y;
      return meas[a].x < meas[b].x;
    });
    cv::Mat segmap(h, w, CV_32S, cv::Scalar(0));
    for (std::size_t n = 0; n < order.size(); ++n) {
      for (int p : objects[order[n]].pix) segmap.ptr<int>()[p] = static_cast<int>(n + 1);
      for (int p : objects[order[n]].cleaned) segmap.ptr<int>()[p] = static_cast<int>(n + 1);
    }

    double gain = p_.gain_e_per_adu;
    if (gain <= 0.0) gain = astroflow::poisson_gain(frame.header);
    const double zp = frame.header.get_double("MAGZERO").value_or(p_.mag_zeropoint);

    const std::size_t n_obj = order.size();
    const std::vector<bool> saturated =
        astroflow::saturated_labels(frame, segmap, static_cast<int>(n_obj), p_.saturation);
    std::vector<std::int32_t> number(n_obj), flags(n_obj), area(n_obj), xmin(n_obj), xmax(n_obj),
        ymin(n_obj), ymax(n_obj), owned(n_obj);
    std::vector<double> xim(n_obj), yim(n_obj), ra(n_obj), dec(n_obj), x2(n_obj), y2(n_obj),
        xy(n_obj), a(n_obj), b(n_obj), theta(n_obj), flux_iso(n_obj), fluxerr_iso(n_obj),
        kron(n_obj), flux_auto(n_obj), fluxerr_auto(n_obj), mag_auto(n_obj), magerr_auto(n_obj),
        snr(n_obj), edge_dist(n_obj);
    const auto& tile = frame.tile;
    const bool tiled = tile.count > 1 && tile.full_width_pix > 0 && tile.full_height_pix > 0;
    for (std::size_t n = 0; n < n_obj; ++n) {
      Measurement& m = meas[order[n]];
      measure_auto(m, static_cast<int>(n + 1), image, rms, segmap, gain);
      number[n] = static_cast<std::int32_t>(n + 1);
      flags[n] = m.flags | (objects[order[n]].blended ? kFlagBlended : 0) |
                 (saturated[n + 1] ? kFlagSaturated : 0);
      area[n] = m.area;
      xmin[n] = m.xmin + 1 + tile.x0_pix;
      xmax[n] = m.xmax + 1 + tile.x0_pix;
      ymin[n] = m.ymin + 1 + tile.y0_pix;
      ymax[n] = m.ymax + 1 + tile.y0_pix;
      xim[n] = m.x + 1.0 + tile.x0_pix;
      yim[n] = m.y + 1.0 + tile.y0_pix;
      x2[n] = m.x2;
      y2[n] = m.y2;
      xy[n] = m.xy;
      a[n] = m.a;
      b[n] = m.b;
      theta[n] = m.theta_deg;
      flux_iso[n] = m.flux_iso;
      fluxerr_iso[n] = m.fluxerr_iso;
      kron[n] = m.kron_radius;
      flux_auto[n] = m.flux_auto;
      fluxerr_auto[n] = m.fluxerr_auto;
      if (m.flux_auto > 0.0) {
        mag_auto[n] = zp - 2.5 * std::log10(m.flux_auto);
        magerr_auto[n] = 2.5 / std::log(10.0) * m.fluxerr_auto / m.flux_auto;
      } else {
        mag_auto[n] = kNoMag;
        magerr_auto[n] = kNoMag;
      }
      snr[n] = m.fluxerr_auto > 0.0 ? m.flux_auto / m.fluxerr_auto : 0.0;
      ra[n] = std::numeric_limits<double>::quiet_NaN();
      dec[n] = std::numeric_limits<double>::quiet_NaN();
      if (frame.wcs) {
        // frame.wcs is already shifted to the tile origin: it takes tile-local coordinates.
        const astroflow::SkyCoord s = frame.wcs->pixel_to_sky({m.x + 1.0, m.y + 1.0});
        ra[n] = s.ra_deg;
        dec[n] = s.dec_deg;
      }
      ownership(m.x, m.y, w, h, tiled, tile, owned[n], edge_dist[n]);
    }

    if (!frame.catalog.empty()) {
      log().warn(frame.label() + ": replacing a catalog of " +
                 std::to_string(frame.catalog.rows()) + " rows with the detected sources");
    }
    astroflow::Catalog& cat = frame.catalog;
    cat = astroflow::Catalog{};
    cat.resize(n_obj);
    cat.add_column<std::int32_t>("NUMBER", "", "running object number (segmap value)") = number;
    cat.add_column<double>("X_IMAGE", "pix", "barycentre x, 1-based, full image") = xim;
    cat.add_column<double>("Y_IMAGE", "pix", "barycentre y, 1-based, full image") = yim;
    cat.add_column<double>("ALPHA_J2000", "deg", "right ascension of the barycentre") = ra;
    cat.add_column<double>("DELTA_J2000", "deg", "declination of the barycentre") = dec;
    cat.add_column<double>("X2_IMAGE", "pix2", "variance along x") = x2;
    cat.add_column<double>("Y2_IMAGE", "pix2", "variance along y") = y2;
    cat.add_column<double>("XY_IMAGE", "pix2", "covariance between x and y") = xy;
    cat.add_column<double>("A_IMAGE", "pix", "profile RMS along the major axis") = a;
    cat.add_column<double>("B_IMAGE", "pix", "profile RMS along the minor axis") = b;
    cat.add_column<double>("THETA_IMAGE", "deg", "position angle, CCW from +x") = theta;
    cat.add_column<std::int32_t>("XMIN_IMAGE", "pix", "minimum x of the footprint") = xmin;
    cat.add_column<std::int32_t>("XMAX_IMAGE", "pix", "maximum x of the footprint") = xmax;
    cat.add_column<std::int32_t>("YMIN_IMAGE", "pix", "minimum y of the footprint") = ymin;
    cat.add_column<std::int32_t>("YMAX_IMAGE", "pix", "maximum y of the footprint") = ymax;
    cat.add_column<std::int32_t>("ISOAREA_IMAGE", "pix2", "isophotal area") = area;
    cat.add_column<double>("FLUX_ISO", "count", "isophotal flux") = flux_iso;
    cat.add_column<double>("FLUXERR_ISO", "count", "RMS error of FLUX_ISO") = fluxerr_iso;
    cat.add_column<double>("KRON_RADIUS", "", "Kron radius in units of A_IMAGE, B_IMAGE") = kron;
    cat.add_column<double>("FLUX_AUTO", "count", "flux in the Kron aperture") = flux_auto;
    cat.add_column<double>("FLUXERR_AUTO", "count", "RMS error of FLUX_AUTO") = fluxerr_auto;
    cat.add_column<double>("MAG_AUTO", "mag", "Kron magnitude") = mag_auto;
    cat.add_column<double>("MAGERR_AUTO", "mag", "RMS error of MAG_AUTO") = magerr_auto;
    cat.add_column<double>("SNR_AUTO", "", "FLUX_AUTO / FLUXERR_AUTO") = snr;
    cat.add_column<std::int32_t>("FLAGS", "", "SExtractor flags (1,2,4,8,16)") = flags;
    cat.add_column<double>("TILE_EDGE_DIST", "pix",
                           "distance to the nearest tile edge shared with a neighbour tile, -1 "
                           "when untiled") = edge_dist;
    cat.add_column<std::int32_t>(
        "TILE_OWNED", "", "1 when this tile owns the barycentre (half-overlap rule)") = owned;
    frame.planes["segmap"] = std::move(segmap);
    stamp(frame);
  }

 private:
  // Footprint, isophotal flux, barycentre and second moments, all on the unfiltered image.
  static void measure_isophotal(const Object& o, const cv::Mat& image, const cv::Mat& filtered,
                                const cv::Mat& rms, int w, int h, Measurement& m) {
    const float* img = image.ptr<float>();
    const float* sig = rms.ptr<float>();
    m.xmin = w;
    m.ymin = h;
    m.xmax = -1;
    m.ymax = -1;
    double s = 0.0;
    double sw = 0.0;
    double var = 0.0;
    double sx = 0.0;
    double sy = 0.0;
    for (int p : o.pix) {
      const int x = p % w;
      const int y = p / w;
      m.xmin = std::min(m.xmin, x);
      m.xmax = std::max(m.xmax, x);
      m.ymin = std::min(m.ymin, y);
      m.ymax = std::max(m.ymax, y);
      const double v = img[p];
      s += v;
      var += static_cast<double>(sig[p]) * sig[p];
      // Negative pixels would pull the barycentre of a faint object anywhere; clip them.
      const double wv = std::max(0.0, v);
      sw += wv;
      sx += wv * x;
      sy += wv * y;
    }
    m.area = static_cast<int>(o.pix.size());
    m.flux_iso = s;
    m.fluxerr_iso = std::sqrt(var);
    if (sw <= 0.0) {
      sw = static_cast<double>(o.pix.size());
      sx = 0.0;
      sy = 0.0;
      for (int p : o.pix) {
        sx += p % w;
        sy += p / w;
      }
    }
    m.x = sx / sw;
    m.y = sy / sw;
    double xx = 0.0;
    double yy = 0.0;
    double xy = 0.0;
    const bool uniform = s <= 0.0;
    for (int p : o.pix) {
      const double wv = uniform ? 1.0 : std::max(0.0, static_cast<double>(img[p]));
      const double dx = p % w - m.x;
      const double dy = p / w - m.y;
      xx += wv * dx * dx;
      yy += wv * dy * dy;
      xy += wv * dx * dy;
    }
    xx /= sw;
    yy /= sw;
    xy /= sw;
    // SExtractor's guard against a singular (e.g. one-pixel-wide) footprint.
    if (xx * yy - xy * xy < 1.0 / 144.0) {
      xx += 1.0 / 12.0;
      yy += 1.0 / 12.0;
    }
    m.x2 = xx;
    m.y2 = yy;
    m.xy = xy;
    std::tie(m.a, m.b) = astroflow::rms_axes(xx, yy, xy);
    m.theta_deg = 0.5 * std::atan2(2.0 * xy, xx - yy) * 180.0 / CV_PI;
    // X_IMAGE / Y_IMAGE: SExtractor takes the barycentre of the isophotal pixels on the filtered
    // (detection) image; the filter averages the noise of faint sources. All those pixels are
    // above a positive threshold there, so no clipping is needed.
    {
      const float* fv = filtered.ptr<float>();
      double fs = 0.0;
      double fx = 0.0;
      double fy = 0.0;
      for (int p : o.pix) {
        fs += fv[p];
        fx += static_cast<double>(fv[p]) * (p % w);
        fy += static_cast<double>(fv[p]) * (p / w);
      }
      if (fs > 0.0) {
        m.x = fx / fs;
        m.y = fy / fs;
      }
    }
    // Pixels merged in by CLEAN add to the footprint and the isophotal flux only.
    double var_cleaned = 0.0;
    for (int p : o.cleaned) {
      m.xmin = std::min(m.xmin, p % w);
      m.xmax = std::max(m.xmax, p % w);
      m.ymin = std::min(m.ymin, p / w);
      m.ymax = std::max(m.ymax, p / w);
      m.flux_iso += img[p];
      var_cleaned += static_cast<double>(sig[p]) * sig[p];
    }
    m.area += static_cast<int>(o.cleaned.size());
    m.fluxerr_iso = std::sqrt(m.fluxerr_iso * m.fluxerr_iso + var_cleaned);
    if (o.pix.empty()) return;
    if (m.xmin == 0 || m.ymin == 0 || m.xmax == w - 1 || m.ymax == h - 1) {
      m.flags |= kFlagTruncated;
    }
  }

  // Kron radius and AUTO flux (astroflow/kron_aperture.hpp, shared with the detect stage).
  static void measure_auto(Measurement& m, int number, const cv::Mat& image, const cv::Mat& rms,
                           const cv::Mat& segmap, double gain) {
    const astroflow::KronResult k = astroflow::kron_photometry({m.x, m.y, m.a, m.b, m.theta_deg},
                                                               number, image, rms, segmap, gain);
    m.kron_radius = k.kron_radius;
    m.flux_auto = k.flux;
    m.fluxerr_auto = k.flux_err;
    if (k.crowded) m.flags |= kFlagCrowded;
    if (k.cut) m.flags |= kFlagApertureCut;
  }

  // The stitcher keeps a source from the tile that owns its barycentre. Tiles overlap by
  // overlap_pix; the shared band is split at its middle. In edge coordinates (pixel i spans
  // [i, i+1)), a tile owns u in [O/2, w - O/2) along each axis, where a side without a neighbour
  // tile extends to the image edge. See README.md.
  static void ownership(double x0b, double y0b, int w, int h, bool tiled,
                        const astroflow::TileInfo& tile, std::int32_t& owned, double& dist) {
    if (!tiled) {
      owned = 1;
      dist = -1.0;
      return;
    }
    const double half = 0.5 * tile.overlap_pix;
    const double u = x0b + 0.5;  // edge coordinate inside the tile
    const double v = y0b + 0.5;
    const bool left = tile.x0_pix > 0;
    const bool right = tile.x0_pix + w < tile.full_width_pix;
    const bool bottom = tile.y0_pix > 0;
    const bool top = tile.y0_pix + h < tile.full_height_pix;
    bool keep = true;
    dist = std::numeric_limits<double>::infinity();
    if (left) {
      keep = keep && u >= half;
      dist = std::min(dist, u);
    }
    if (right) {
      keep = keep && u < w - half;
      dist = std::min(dist, w - u);
    }
    if (bottom) {
      keep = keep && v >= half;
      dist = std::min(dist, v);
    }
    if (top) {
      keep = keep && v < h - half;
      dist = std::min(dist, h - v);
    }
    if (!std::isfinite(dist)) dist = -1.0;
    owned = keep ? 1 : 0;
  }

  Params p_;
  cv::Mat kernel_;
};

}  // namespace

ASTROFLOW_PLUGIN(
    SourcesStage, "sources", "1.0.0", "MIT",
    "SExtractor-style detection, deblending and photometry (catalog + segmap)",
    /*needs=*/"plane:background,plane:rms",
    /*provides=*/
    "column:NUMBER,column:X_IMAGE,column:Y_IMAGE,column:ALPHA_J2000,column:DELTA_J2000,"
    "column:X2_IMAGE,column:Y2_IMAGE,column:XY_IMAGE,column:A_IMAGE,column:B_IMAGE,"
    "column:THETA_IMAGE,column:XMIN_IMAGE,column:XMAX_IMAGE,column:YMIN_IMAGE,column:YMAX_IMAGE,"
    "column:ISOAREA_IMAGE,column:FLUX_ISO,column:FLUXERR_ISO,column:KRON_RADIUS,column:FLUX_AUTO,"
    "column:FLUXERR_AUTO,column:MAG_AUTO,column:MAGERR_AUTO,column:SNR_AUTO,column:FLAGS,"
    "column:TILE_EDGE_DIST,column:TILE_OWNED,plane:segmap",
    astroflow::add_saturation_options(
        astroflow::OptionSchema()
            .add_double("threshold", 1.5,
                        "detection threshold in units of the unfiltered background RMS "
                        "(DETECT_THRESH)",
                        0.01, 1e6)
            .add_string("threshold_rms", "local",
                        "RMS the threshold multiplies: local (the rms plane, as SExtractor with "
                        "WEIGHT_TYPE BACKGROUND) or global (its mean over the frame, SExtractor's "
                        "default without a weight map)",
                        {"local", "global"})
            .add_bool("filter", true, "convolve with a Gaussian before thresholding (FILTER)")
            .add_double("filter_fwhm_pix", 3.0, "FWHM of the Gaussian detection filter", 0.5, 50.0)
            .add_int("min_area", 5, "minimum number of pixels above threshold (DETECT_MINAREA)", 1,
                     100000)
            .add_int("deblend_nthresh", 32, "number of deblending sub-thresholds (DEBLEND_NTHRESH)",
                     1, 256)
            .add_double("deblend_mincont", 0.005,
                        "minimum flux fraction of a branch to be split off (DEBLEND_MINCONT)", 0.0,
                        1.0)
            .add_double("mag_zeropoint", 25.0,
                        "zero point used when the header has no MAGZERO (MAG_ZEROPOINT)", -100.0,
                        100.0)
            .add_double(
                "gain", 0.0,
                "e-/count for the Poisson term of FLUXERR; 0 = from the header: GAIN, else 1 "
                "for BUNIT electrons, EXPTIME for electrons/s, else none",
                0.0, 1e9)
            .add_bool("clean", true,
                      "merge detections explained by the Moffat wings of a brighter one (CLEAN)")
            .add_double("clean_param", 1.0, "Moffat beta of the CLEAN model (CLEAN_PARAM)", 0.1,
                        10.0)))
