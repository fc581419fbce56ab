// `astroflow simulate field`: a survey-like image with truth table and truth segmentation.
// What is drawn from which distribution is documented in docs/simulator.md.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <opencv2/core.hpp>
#include <string>

#include "astroflow/error.hpp"
#include "astroflow/fits_io.hpp"
#include "astroflow/simulate.hpp"

namespace astroflow {

namespace {

// Independent random streams of one field (see SimRng::stream).
constexpr std::uint64_t kStreamParams = 1;
constexpr std::uint64_t kStreamNoise = 2;
constexpr std::uint64_t kStreamArtifacts = 3;
constexpr std::uint64_t kStreamIrregular = 4;

// Irregular galaxies: faintest magnitude and r_eff range of the main component (resolved enough
// for the clumps or the second nucleus to be seen).
constexpr double kIrregularMagFaint = 24.5;
constexpr double kIrregularReffMinPix = 3.0;
constexpr double kIrregularReffMaxPix = 12.0;
// Single-Sérsic field galaxies are spheroids from this index up (the classify definition).
constexpr double kSpheroidMinSersicN = 2.5;

constexpr std::array<std::string_view, kFieldMorphCount> kMorphNames = {
    "background", "spheroid", "disk", "irregular", "point_source"};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Bright stars: share of the flux in the extended halo and in the spikes.
constexpr double kHaloFraction = 0.07;
constexpr double kSpikeFraction = 0.03;
// Field PSF truncation, in FWHM.
constexpr double kFieldPsfTruncationFwhm = 5.0;

void require(bool ok, const char* option, const std::string& why) {
  if (!ok) throw FatalError(std::string("simulate field: ") + option + ": " + why);
}

void validate(const FieldOptions& o) {
  require(o.width_pix > 0 && o.height_pix > 0, "--size", "must be positive");
  require(o.pixel_scale_arcsec > 0, "--pixel-scale", "must be > 0");
  require(o.gain_e_per_count > 0, "--gain", "must be > 0");
  require(o.sky_counts > 0, "--sky", "must be > 0");
  require(o.sky_gradient >= 0 && o.sky_gradient < 2, "--sky-gradient", "must be in [0, 2)");
  require(o.read_noise_e >= 0, "--read-noise", "must be >= 0");
  require(o.exptime_s > 0, "--exptime", "must be > 0");
  require(o.psf_fwhm_pix >= 0, "--psf-fwhm", "must be >= 0 (0 = random)");
  require(o.psf_beta == 0 || o.psf_beta > 1.5, "--psf-beta", "must be > 1.5 (0 = random)");
  require(o.galaxy_density_arcmin2 >= 0, "--galaxy-density", "must be >= 0");
  require(o.galaxy_mag_faint > o.galaxy_mag_bright, "--mag-faint", "must exceed --mag-bright");
  require(o.star_mag_faint > o.star_mag_bright, "--star-mag-faint",
          "must exceed --star-mag-bright");
  require(o.n_stars >= 0, "--stars", "must be >= 0");
  require(o.blend_fraction >= 0 && o.blend_fraction <= 1, "--blend-fraction", "must be in [0, 1]");
  require(o.irregular_density_arcmin2 >= 0, "--irregular-density", "must be >= 0");
  require(o.n_cosmic_rays >= 0, "--cosmics", "must be >= 0");
  require(o.n_hot_pixels >= 0, "--hot-pixels", "must be >= 0");
  require(o.saturation_counts >= 0, "--saturation", "must be >= 0");
  require(o.oversample >= 1 && o.oversample <= 8, "--oversample", "must be in [1, 8]");
  require(!o.name.empty(), "--name", "must not be empty");
}

// Magnitude with dN/dm ~ 10^(slope m) on [lo, hi], by inverting the cumulative distribution.
double draw_power_law_mag(SimRng& rng, double lo, double hi, double slope) {
  if (slope == 0.0) return rng.uniform(lo, hi);
  const double a = std::pow(10.0, slope * lo);
  const double b = std::pow(10.0, slope * hi);
  return std::log10(a + rng.uniform() * (b - a)) / slope;
}

struct Source {
  TruthSource truth;
  std::vector<SersicComponent> components;  // galaxies only; the main component first
};

// One rendered source: its pixels and where its first pixel sits in the field.
struct Stamp {
  cv::Mat pixels;
  int x0 = 0;
  int y0 = 0;
};

Source make_galaxy(SimRng& rng, const FieldOptions& o, double x, double y, double mag) {
  Source s;
  // Faint galaxies are smaller: median r_eff falls from ~12 px at m = 19 towards 2 px, with a
  // log-normal scatter of 0.25, kept inside the simulated range [2, 15] px.
  const double median = 2.0 + 10.0 * std::pow(10.0, -0.2 * (mag - 19.0));
  const double r_eff = std::clamp(median * std::exp(0.25 * rng.normal()), 2.0, 15.0);
  SersicComponent c;
  c.x_pix = x;
  c.y_pix = y;
  c.sersic_n = rng.log_uniform(0.5, 6.0);
  c.r_eff_pix = r_eff;
  c.axis_ratio = rng.uniform(0.2, 1.0);
  c.theta_deg = rng.uniform(0.0, 180.0);
  c.flux_counts = std::pow(10.0, -0.4 * (mag - o.zero_point_mag));
  TruthSource& t = s.truth;
  t.is_star = false;
  t.x_pix = x;
  t.y_pix = y;
  t.mag = mag;
  t.flux_counts = c.flux_counts;
  t.sersic_n = c.sersic_n;
  t.r_eff_pix = c.r_eff_pix;
  t.axis_ratio = c.axis_ratio;
  t.theta_deg = c.theta_deg;
  t.morph = c.sersic_n >= kSpheroidMinSersicN ? kMorphSpheroid : kMorphDisk;
  s.components.push_back(c);
  return s;
}

// An irregular galaxy (clumpy disk or merger) from the cutout generator's definitions, centred
// (flux-weighted) at (x, y).
Source make_irregular(SimRng& rng, const FieldOptions& o, double x, double y, double mag) {
  Source s;
  CutoutLabel lab;
  s.components = morphology_components(CutoutClass::kIrregular, rng, x, y, kIrregularReffMinPix,
                                       kIrregularReffMaxPix, lab);
  TruthSource& t = s.truth;
  t.x_pix = x;
  t.y_pix = y;
  t.mag = mag;
  t.flux_counts = std::pow(10.0, -0.4 * (mag - o.zero_point_mag));
  for (SersicComponent& c : s.components) c.flux_counts *= t.flux_counts;
  t.sersic_n = lab.sersic_n;
  t.r_eff_pix = lab.r_eff_pix;
  t.axis_ratio = lab.axis_ratio;
  t.theta_deg = lab.theta_deg;
  t.morph = kMorphIrregular;
  return s;
}

Stamp render_source(const Source& s, const MoffatPsf& psf, const FieldOptions& o,
                    double spike_angle_deg) {
  Stamp st;
  const double x = s.truth.x_pix;
  const double y = s.truth.y_pix;
  const auto place = [&](int half) {
    st.x0 = static_cast<int>(std::floor(x)) - half;
    st.y0 = static_cast<int>(std::floor(y)) - half;
    return 2 * half + 2;
  };
  if (!s.truth.is_star) {
    double reach = 0.0;
    for (const SersicComponent& c : s.components) {
      reach = std::max(reach,
                       std::hypot(c.x_pix - x, c.y_pix - y) + kSersicTruncationReff * c.r_eff_pix);
    }
    const int half = static_cast<int>(std::ceil(reach + psf.truncation_radius_pix())) + 1;
    const int size = place(half);
    std::vector<SersicComponent> comps = s.components;
    for (SersicComponent& c : comps) {
      c.x_pix -= st.x0;
      c.y_pix -= st.y0;
    }
    st.pixels = render_galaxy(comps, psf, size, size, o.oversample);
    return st;
  }
  const bool bright = s.truth.mag < o.spike_mag;
  if (!bright) {
    const int size = place(static_cast<int>(std::ceil(psf.truncation_radius_pix())) + 1);
    st.pixels = cv::Mat(size, size, CV_32F, cv::Scalar(0));
    add_moffat(st.pixels, psf, x - st.x0, y - st.y0, s.truth.flux_counts);
    return st;
  }
  // Bright star: core + a wide Moffat halo + four diffraction spikes whose length grows with
  // brightness (20 px at spike_mag, x10 per 5 mag, at most 200 px).
  MoffatPsf halo = psf;
  halo.fwhm_pix = 8.0 * psf.fwhm_pix;
  halo.beta = 2.0;
  halo.truncation_fwhm = 3.0;
  const double spike_len =
      std::min(200.0, 20.0 * std::pow(10.0, -0.2 * (s.truth.mag - o.spike_mag)));
  const int half =
      static_cast<int>(std::ceil(
          std::max({halo.truncation_radius_pix(), spike_len + 3.0, psf.truncation_radius_pix()}))) +
      1;
  const int size = place(half);
  st.pixels = cv::Mat(size, size, CV_32F, cv::Scalar(0));
  const double f = s.truth.flux_counts;
  const double cx = x - st.x0;
  const double cy = y - st.y0;
  add_moffat(st.pixels, psf, cx, cy, f * (1.0 - kHaloFraction - kSpikeFraction));
  add_moffat(st.pixels, halo, cx, cy, f * kHaloFraction);
  add_diffraction_spikes(st.pixels, cx, cy, f * kSpikeFraction, spike_angle_deg, spike_len, 0.7);
  return st;
}

// Adds a column and fills it at once: Catalog keeps columns in a vector, so a reference to one
// column is only valid until the next column is added.
template <typename T, typename Get>
void fill_column(Catalog& cat, std::string_view name, std::string_view unit,
                 std::string_view description, const Get& get) {
  auto& values = cat.add_column<T>(name, unit, description);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = get(i);
}

Catalog truth_catalog(const std::vector<TruthSource>& src) {
  Catalog cat;
  cat.resize(src.size());
  fill_column<std::int32_t>(cat, "ID", "", "truth id = value in the truth segmentation",
                            [&](std::size_t i) { return src[i].id; });
  fill_column<double>(cat, "X_IMAGE", "pix", "centre, FITS 1-based",
                      [&](std::size_t i) { return src[i].x_pix + 1.0; });
  fill_column<double>(cat, "Y_IMAGE", "pix", "centre, FITS 1-based",
                      [&](std::size_t i) { return src[i].y_pix + 1.0; });
  fill_column<double>(cat, "ALPHA_J2000", "deg", "right ascension (ICRS) from the WCS",
                      [&](std::size_t i) { return src[i].ra_deg; });
  fill_column<double>(cat, "DELTA_J2000", "deg", "declination (ICRS) from the WCS",
                      [&](std::size_t i) { return src[i].dec_deg; });
  fill_column<double>(cat, "FLUX", "count", "total model flux",
                      [&](std::size_t i) { return src[i].flux_counts; });
  fill_column<double>(cat, "MAG", "mag", "MAGZERO - 2.5 log10(FLUX)",
                      [&](std::size_t i) { return src[i].mag; });
  fill_column<std::string>(cat, "TYPE", "", "galaxy or star", [&](std::size_t i) {
    return std::string(src[i].is_star ? "star" : "galaxy");
  });
  fill_column<double>(cat, "SERSIC_N", "", "Sersic index (NaN for stars)",
                      [&](std::size_t i) { return src[i].sersic_n; });
  fill_column<double>(cat, "R_EFF", "pix", "semi-major half-light radius (NaN for stars)",
                      [&](std::size_t i) { return src[i].r_eff_pix; });
  fill_column<double>(cat, "AXIS_RATIO", "", "b/a",
                      [&](std::size_t i) { return src[i].axis_ratio; });
  fill_column<double>(cat, "THETA", "deg", "position angle, CCW from +x",
                      [&](std::size_t i) { return src[i].theta_deg; });
  fill_column<double>(cat, "SNR", "", "integrated S/N in 1.5 R_EFF (stars 1.5 FWHM)",
                      [&](std::size_t i) { return src[i].snr; });
  fill_column<std::int32_t>(cat, "BLEND_PARENT", "", "ID of the galaxy this one was placed next to",
                            [&](std::size_t i) { return src[i].blend_parent; });
  fill_column<std::string>(
      cat, "MORPH", "", "spheroid, disk, irregular or point_source", [&](std::size_t i) {
        return std::string(kMorphNames[static_cast<std::size_t>(src[i].morph)]);
      });
  fill_column<std::int32_t>(cat, "MORPH_ID", "",
                            "1 spheroid, 2 disk, 3 irregular, 4 point_source (truthclass value)",
                            [&](std::size_t i) { return src[i].morph; });
  return cat;
}

struct ArtifactRow {
  std::string type;
  double x0, y0, x1, y1, flux;  // 0-based
};

Catalog artifact_catalog(const std::vector<ArtifactRow>& rows) {
  Catalog cat;
  cat.resize(rows.size());
  fill_column<std::int32_t>(cat, "ID", "", "artifact number",
                            [&](std::size_t i) { return static_cast<std::int32_t>(i + 1); });
  fill_column<std::string>(cat, "TYPE", "", "cosmic_ray or hot_pixel",
                           [&](std::size_t i) { return rows[i].type; });
  fill_column<double>(cat, "X_IMAGE", "pix", "track start / pixel, FITS 1-based",
                      [&](std::size_t i) { return rows[i].x0 + 1.0; });
  fill_column<double>(cat, "Y_IMAGE", "pix", "track start / pixel, FITS 1-based",
                      [&](std::size_t i) { return rows[i].y0 + 1.0; });
  fill_column<double>(cat, "X_END", "pix", "track end, FITS 1-based",
                      [&](std::size_t i) { return rows[i].x1 + 1.0; });
  fill_column<double>(cat, "Y_END", "pix", "track end, FITS 1-based",
                      [&](std::size_t i) { return rows[i].y1 + 1.0; });
  fill_column<double>(cat, "FLUX", "count", "counts deposited",
                      [&](std::size_t i) { return rows[i].flux; });
  return cat;
}

// A CCD's full well: each run of pixels above `level` along a column is clipped to it, and its
// excess charge fills the pixels beyond the run's two ends up to `level`, alternately one up and
// one down, until it is spent or reaches the column's ends (where it is lost, as off the chip).
void saturate_and_bleed(cv::Mat& image, float level) {
  const int h = image.rows;
  for (int x = 0; x < image.cols; ++x) {
    int y = 0;
    while (y < h) {
      if (!(image.at<float>(y, x) > level)) {
        ++y;
        continue;
      }
      int end = y;
      double excess = 0.0;
      while (end < h && image.at<float>(end, x) > level) {
        excess += image.at<float>(end, x) - level;
        image.at<float>(end, x) = level;
        ++end;
      }
      int up = y - 1;
      int down = end;
      bool take_down = true;
      while (excess > 0.0 && (up >= 0 || down < h)) {
        int& at = (take_down && down < h) || up < 0 ? down : up;
        float& v = image.at<float>(at, x);
        const double room = std::max(0.0, static_cast<double>(level - v));
        const double put = std::min(room, excess);
        v = static_cast<float>(v + put);
        excess -= put;
        at += &at == &down ? 1 : -1;
        take_down = !take_down;
      }
      y = end;  // a later run that the bleed passed is clipped in its turn
    }
  }
}

}  // namespace

const std::array<std::string_view, kFieldMorphCount>& field_morph_names() {
  return kMorphNames;
}

FieldSimulation simulate_field(const FieldOptions& o) {
  validate(o);
  FieldSimulation out;
  SimRng rng = SimRng::stream(o.seed, kStreamParams, 0);
  const int w = o.width_pix;
  const int h = o.height_pix;

  out.psf.fwhm_pix = o.psf_fwhm_pix > 0 ? o.psf_fwhm_pix : rng.uniform(2.5, 4.0);
  out.psf.beta = o.psf_beta > 0 ? o.psf_beta : rng.uniform(2.5, 4.5);
  out.psf.truncation_fwhm = kFieldPsfTruncationFwhm;
  const MoffatPsf& psf = out.psf;
  const double spike_angle = rng.uniform(0.0, 90.0);
  const double gradient_angle = rng.uniform(0.0, 2.0 * 3.14159265358979323846);

  out.wcs.crval1_deg = o.ra_deg;
  out.wcs.crval2_deg = o.dec_deg;
  out.wcs.crpix1 = 0.5 * (w + 1);
  out.wcs.crpix2 = 0.5 * (h + 1);
  out.wcs.pixel_scale_arcsec = o.pixel_scale_arcsec;
  out.wcs.position_angle_deg = o.position_angle_deg;
  out.noise_rms_counts =
      std::sqrt(o.sky_counts * o.gain_e_per_count + o.read_noise_e * o.read_noise_e) /
      o.gain_e_per_count;

  // --- Sources (drawn serially from one stream: cheap, and fixes the order of ids).
  std::vector<Source> sources;
  const double area_arcmin2 = static_cast<double>(w) * h * std::pow(o.pixel_scale_arcsec / 60.0, 2);
  const auto n_galaxies =
      static_cast<std::size_t>(rng.poisson(o.galaxy_density_arcmin2 * area_arcmin2));
  for (std::size_t i = 0; i < n_galaxies; ++i) {
    const double x = rng.uniform(-0.5, w - 0.5);
    const double y = rng.uniform(-0.5, h - 0.5);
    const double mag =
        draw_power_law_mag(rng, o.galaxy_mag_bright, o.galaxy_mag_faint, o.count_slope);
    sources.push_back(make_galaxy(rng, o, x, y, mag));
    sources.back().truth.id = static_cast<int>(sources.size());
    if (rng.uniform() < o.blend_fraction) {
      // A close companion 1-2 r_eff away, up to 1.5 mag fainter: a deliberate blend.
      const Source& parent = sources.back();
      const double sep = rng.uniform(1.0, 2.0) * parent.truth.r_eff_pix;
      const double phi = rng.uniform(0.0, 2.0 * 3.14159265358979323846);
      const double cx = x + sep * std::cos(phi);
      const double cy = y + sep * std::sin(phi);
      const double cmag = mag + rng.uniform(0.0, 1.5);
      Source companion = make_galaxy(rng, o, cx, cy, cmag);
      if (cx >= -0.5 && cx < w - 0.5 && cy >= -0.5 && cy < h - 0.5) {
        companion.truth.blend_parent = parent.truth.id;
        sources.push_back(companion);
        sources.back().truth.id = static_cast<int>(sources.size());
      }
    }
  }
  for (int i = 0; i < o.n_stars; ++i) {
    Source s;
    s.truth.is_star = true;
    s.truth.x_pix = rng.uniform(-0.5, w - 0.5);
    s.truth.y_pix = rng.uniform(-0.5, h - 0.5);
    // Star counts at high latitude rise slowly with magnitude.
    s.truth.mag = draw_power_law_mag(rng, o.star_mag_bright, o.star_mag_faint, 0.15);
    s.truth.flux_counts = std::pow(10.0, -0.4 * (s.truth.mag - o.zero_point_mag));
    s.truth.sersic_n = kNaN;
    s.truth.r_eff_pix = kNaN;
    s.truth.axis_ratio = 1.0;
    s.truth.theta_deg = 0.0;
    s.truth.morph = kMorphPointSource;
    sources.push_back(s);
    sources.back().truth.id = static_cast<int>(sources.size());
  }
  // Irregulars come last, from their own stream: the ids and draws above do not depend on them.
  SimRng irr = SimRng::stream(o.seed, kStreamIrregular, 0);
  const double irr_faint = std::min(o.galaxy_mag_faint, kIrregularMagFaint);
  const auto n_irregular =
      irr_faint > o.galaxy_mag_bright
          ? static_cast<std::size_t>(irr.poisson(o.irregular_density_arcmin2 * area_arcmin2))
          : std::size_t{0};
  for (std::size_t i = 0; i < n_irregular; ++i) {
    const double x = irr.uniform(-0.5, w - 0.5);
    const double y = irr.uniform(-0.5, h - 0.5);
    const double mag = draw_power_law_mag(irr, o.galaxy_mag_bright, irr_faint, o.count_slope);
    sources.push_back(make_irregular(irr, o, x, y, mag));
    sources.back().truth.id = static_cast<int>(sources.size());
  }

  // --- Render every source on its own stamp, in parallel (rendering draws no random numbers).
  std::vector<Stamp> stamps(sources.size());
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, sources.size(), 1),
                    [&](const tbb::blocked_range<std::size_t>& r) {
                      for (std::size_t i = r.begin(); i != r.end(); ++i)
                        stamps[i] = render_source(sources[i], psf, o, spike_angle);
                    });

  // --- Accumulate in id order (fixed summation order = identical bytes) and build the truth
  // segmentation: the source contributing most flux, where that flux > 0.5 noise rms.
  out.model = cv::Mat(h, w, CV_32F, cv::Scalar(0));
  out.truthseg = cv::Mat(h, w, CV_32S, cv::Scalar(0));
  out.truthclass = cv::Mat(h, w, CV_8U, cv::Scalar(0));
  cv::Mat best(h, w, CV_32F, cv::Scalar(0));
  const auto seg_threshold = static_cast<float>(0.5 * out.noise_rms_counts);
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const Stamp& st = stamps[i];
    TruthSource& t = sources[i].truth;
    const double radius = t.is_star ? 1.5 * psf.fwhm_pix : 1.5 * t.r_eff_pix;
    const ApertureSum ap = aperture_sum(st.pixels, t.x_pix - st.x0, t.y_pix - st.y0, radius);
    t.snr = integrated_snr(ap.flux, ap.pixels, o.sky_counts, o.gain_e_per_count, o.read_noise_e);
    const int xa = std::max(0, st.x0);
    const int ya = std::max(0, st.y0);
    const int xb = std::min(w, st.x0 + st.pixels.cols);
    const int yb = std::min(h, st.y0 + st.pixels.rows);
    for (int y = ya; y < yb; ++y) {
      const float* src = st.pixels.ptr<float>(y - st.y0) - st.x0;
      auto* dst = out.model.ptr<float>(y);
      auto* seg = out.truthseg.ptr<std::int32_t>(y);
      auto* cls = out.truthclass.ptr<std::uint8_t>(y);
      auto* b = best.ptr<float>(y);
      for (int x = xa; x < xb; ++x) {
        dst[x] += src[x];
        if (src[x] > seg_threshold && src[x] > b[x]) {
          b[x] = src[x];
          seg[x] = t.id;
          cls[x] = static_cast<std::uint8_t>(t.morph);
        }
      }
    }
    const auto [ra, dec] = tan_pixel_to_sky(out.wcs, t.x_pix + 1.0, t.y_pix + 1.0);
    t.ra_deg = ra;
    t.dec_deg = dec;
  }
  stamps.clear();

  // --- Sky with a gentle linear gradient, then photon + read noise.
  out.sky = cv::Mat(h, w, CV_32F);
  const double gx = std::cos(gradient_angle);
  const double gy = std::sin(gradient_angle);
  for (int y = 0; y < h; ++y) {
    auto* row = out.sky.ptr<float>(y);
    const double v = h > 1 ? static_cast<double>(y) / (h - 1) - 0.5 : 0.0;
    for (int x = 0; x < w; ++x) {
      const double u = w > 1 ? static_cast<double>(x) / (w - 1) - 0.5 : 0.0;
      // u gx + v gy spans at most [-0.71, 0.71]; scaled so the extremes differ by sky_gradient.
      row[x] = static_cast<float>(o.sky_counts *
                                  (1.0 + o.sky_gradient * (u * gx + v * gy) / std::sqrt(2.0)));
    }
  }
  out.image = out.model.clone();
  add_noise(out.image, out.sky, o.sky_counts, o.gain_e_per_count, o.read_noise_e,
            o.noise_seed != 0 ? o.noise_seed : o.seed, kStreamNoise);

  // --- Cosmic rays (sharp, after the optics: not PSF-convolved) and hot pixels.
  SimRng art = SimRng::stream(o.seed, kStreamArtifacts, 0);
  cv::Mat hits(h, w, CV_32F, cv::Scalar(0));
  std::vector<ArtifactRow> arts;
  for (int i = 0; i < o.n_cosmic_rays; ++i) {
    const double x0 = art.uniform(-0.5, w - 0.5);
    const double y0 = art.uniform(-0.5, h - 0.5);
    const CosmicRayTrack t = draw_cosmic_ray(art, x0, y0, o.gain_e_per_count);
    add_sharp_track(hits, t.x0, t.y0, t.x1, t.y1, t.flux_counts);
    arts.push_back({"cosmic_ray", t.x0, t.y0, t.x1, t.y1, t.flux_counts});
  }
  for (int i = 0; i < o.n_hot_pixels; ++i) {
    const int x = static_cast<int>(art.below(static_cast<std::uint64_t>(w)));
    const int y = static_cast<int>(art.below(static_cast<std::uint64_t>(h)));
    const double flux = art.log_uniform(20.0, 500.0) * out.noise_rms_counts;
    hits.at<float>(y, x) += static_cast<float>(flux);
    arts.push_back({"hot_pixel", double(x), double(y), double(x), double(y), flux});
  }
  out.artifacts = artifact_catalog(arts);
  out.image += hits;
  out.artifact_mask = hits > 0.0F;
  out.artifact_mask /= 255;
  if (o.saturation_counts > 0.0)
    saturate_and_bleed(out.image, static_cast<float>(o.saturation_counts));

  // --- Header.
  Header& hd = out.header;
  write_tan_wcs(hd, out.wcs);
  hd.set("BUNIT", std::string_view("count"), "image unit; flux = 10^(-0.4 (mag - MAGZERO))");
  hd.set("GAIN", o.gain_e_per_count, "[e-/count]");
  hd.set("MAGZERO", o.zero_point_mag, "[mag] AB zero point of the counts");
  hd.set("EXPTIME", o.exptime_s, "[s]");
  hd.set("SKY", o.sky_counts, "[count/pix] mean sky level");
  hd.set("SKYGRAD", o.sky_gradient, "sky change across the image, fraction of SKY");
  hd.set("RDNOISE", o.read_noise_e, "[e-] read noise");
  hd.set("SEEING", psf.fwhm_pix * o.pixel_scale_arcsec, "[arcsec] PSF FWHM");
  hd.set("PSFFWHM", psf.fwhm_pix, "[pix] Moffat FWHM");
  hd.set("PSFBETA", psf.beta, "Moffat beta");
  hd.set("PIXSCALE", o.pixel_scale_arcsec, "[arcsec/pix]");
  hd.set("NOISERMS", out.noise_rms_counts, "[count] sqrt(SKY GAIN + RDNOISE^2) / GAIN");
  if (o.saturation_counts > 0.0) {
    hd.set("SATURATE", o.saturation_counts, "[count] full well; excess bled along columns");
  }
  hd.set("SIMSEED", static_cast<long long>(o.seed), "astroflow simulate field --seed");
  if (o.noise_seed != 0) {
    hd.set("NOISSEED", static_cast<long long>(o.noise_seed), "astroflow simulate --noise-seed");
  }
  hd.set("ORIGIN", std::string_view("astroflow simulate field"), "");

  for (auto& s : sources) out.sources.push_back(s.truth);
  out.truth = truth_catalog(out.sources);
  return out;
}

std::vector<std::string> write_field(const FieldSimulation& field, const FieldOptions& options) {
  std::filesystem::create_directories(options.output_dir);
  const std::string stem = (std::filesystem::path(options.output_dir) / options.name).string();
  std::vector<std::string> paths;
  const auto image = [&](const std::string& suffix, const cv::Mat& pixels,
                         const std::string& what) {
    Header h = field.header;
    h.add_history(what);
    paths.push_back(stem + suffix);
    write_fits_image(paths.back(), pixels, h);
  };
  image(".fits", field.image, "simulated image: model + sky + noise + cosmic rays + hot pixels");
  image(".model.fits", field.model, "noiseless model: sources only, no sky, no artifacts");
  Header seg = field.header;
  seg.erase("BUNIT");
  seg.set("SEGTHR", 0.5 * field.noise_rms_counts, "[count] truth segmentation threshold");
  seg.add_history("truth segmentation: id of the source with most model flux, where > SEGTHR");
  paths.push_back(stem + ".truthseg.fits");
  write_fits_image(paths.back(), field.truthseg, seg);
  Header cls = seg;
  cls.set("CLASS0", std::string_view("background"), "truth class map value 0");
  for (int k = 1; k < kFieldMorphCount; ++k) {
    cls.set("CLASS" + std::to_string(k), std::string_view(kMorphNames[static_cast<std::size_t>(k)]),
            "truth class map value " + std::to_string(k));
  }
  cls.add_history("truth class map: MORPH_ID of the truth segmentation's source at each pixel");
  paths.push_back(stem + ".truthclass.fits");
  write_fits_image(paths.back(), field.truthclass, cls);
  paths.push_back(stem + ".truth.fits");
  write_fits_catalog(paths.back(), field.truth, field.header, "TRUTH");
  paths.push_back(stem + ".truth.csv");
  write_csv_catalog(paths.back(), field.truth);
  paths.push_back(stem + ".artifacts.fits");
  write_fits_catalog(paths.back(), field.artifacts, field.header, "ARTIFACTS");
  paths.push_back(stem + ".artifacts.csv");
  write_csv_catalog(paths.back(), field.artifacts);
  return paths;
}

}  // namespace astroflow
