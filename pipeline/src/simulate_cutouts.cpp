// `astroflow simulate cutouts`: labelled stamps of the five morphology classes, for training and
// testing the classify stage. Class definitions and distributions: docs/simulator.md.
#include <fitsio.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numbers>
#include <opencv2/core.hpp>
#include <string>

#include "astroflow/atomic_file.hpp"
#include "astroflow/error.hpp"
#include "astroflow/fits_io.hpp"
#include "astroflow/simulate.hpp"
#include "fits_file.hpp"
#include "geometry.hpp"

namespace astroflow {

namespace {

constexpr std::uint64_t kStreamStamp = 10;
constexpr std::uint64_t kStreamPlan = 11;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kTwoPi = 2.0 * std::numbers::pi;
// Cutout PSFs are truncated at 4 FWHM: the stamps are small and this keeps rendering cheap.
constexpr double kCutoutPsfTruncationFwhm = 4.0;
// Artifact footprint: pixels at or above this fraction of the artifact's peak in the stamp.
constexpr double kArtifactFootprint = 0.05;
// Stamps rendered and written per block with --single-file (bounds memory).
constexpr int kCubeBlock = 1024;

constexpr std::array<std::string_view, kCutoutClassCount> kClassNames = {
    "spheroid", "disk", "irregular", "point_source", "artifact"};

void require(bool ok, const char* option, const std::string& why) {
  if (!ok) throw FatalError(std::string("simulate cutouts: ") + option + ": " + why);
}

void validate(const CutoutOptions& o) {
  require(o.n >= 0, "--n", "must be >= 0");
  require(o.width_pix >= 16 && o.height_pix >= 16, "--size", "stamps must be at least 16x16");
  require(o.pixel_scale_arcsec > 0, "--pixel-scale", "must be > 0");
  require(o.gain_e_per_count > 0, "--gain", "must be > 0");
  require(o.sky_counts > 0, "--sky", "must be > 0");
  require(o.sky_jitter >= 0 && o.sky_jitter < 1, "--sky-jitter", "must be in [0, 1)");
  require(o.read_noise_e >= 0, "--read-noise", "must be >= 0");
  require(o.psf_fwhm_min_pix > 0 && o.psf_fwhm_max_pix >= o.psf_fwhm_min_pix, "--psf-fwhm-min",
          "need 0 < min <= max");
  require(o.psf_beta_min > 1.5 && o.psf_beta_max >= o.psf_beta_min, "--psf-beta-min",
          "need 1.5 < min <= max");
  require(o.r_eff_min_pix > 0 && o.r_eff_max_pix >= o.r_eff_min_pix, "--r-eff-min",
          "need 0 < min <= max");
  require(o.snr_min > 0 && o.snr_max >= o.snr_min, "--snr-min", "need 0 < min <= max");
  require(o.neighbour_fraction >= 0 && o.neighbour_fraction <= 1, "--neighbour-fraction",
          "must be in [0, 1]");
  require(o.stray_artifact_fraction >= 0 && o.stray_artifact_fraction <= 1, "--stray-artifacts",
          "must be in [0, 1]");
  require(o.centre_jitter_pix >= 0 && o.centre_jitter_pix <= 4, "--jitter", "must be in [0, 4]");
  require(o.oversample >= 1 && o.oversample <= 8, "--oversample", "must be in [1, 8]");
  require(!o.cube_name.empty(), "--cube-name", "must not be empty");
  require(o.shapes.disk_sersic_min >= 0.3 && o.shapes.disk_sersic_max >= o.shapes.disk_sersic_min &&
              o.shapes.disk_sersic_max <= 2.5,
          "--disk-sersic-min/max", "need 0.3 <= min <= max <= 2.5 (n >= 2.5 is a spheroid)");
  require(o.shapes.spheroid_axis_ratio_min >= 0.1 && o.shapes.spheroid_axis_ratio_min <= 1.0,
          "--spheroid-axis-ratio-min", "must be in [0.1, 1]");
}

double draw(SimRng& rng, double lo, double hi) {
  return hi > lo ? rng.uniform(lo, hi) : lo;
}

// A central object rendered at unit total flux, with the region over which its S/N is defined.
struct UnitObject {
  cv::Mat pixels;
  bool use_footprint = false;  // artifacts: pixels >= kArtifactFootprint of the peak
  double ap_x = 0.0, ap_y = 0.0, ap_radius = 0.0;  // otherwise: a circular aperture
};

SersicComponent sersic(double x, double y, double n, double re, double q, double theta,
                       double flux) {
  SersicComponent c;
  c.x_pix = x;
  c.y_pix = y;
  c.sersic_n = n;
  c.r_eff_pix = re;
  c.axis_ratio = q;
  c.theta_deg = theta;
  c.flux_counts = flux;
  return c;
}

}  // namespace

// Every random draw is its own statement. C++ leaves the order in which a call's arguments (or
// an operator's operands) are evaluated unspecified; g++ 12 evaluated the draws that once sat
// inside one call from the last argument to the first, and the named draws keep that order, so
// the stamp sets made before (and the shipped models' training data) come out byte-identical
// from any compiler.
std::vector<SersicComponent> morphology_components(CutoutClass cls, SimRng& rng, double cx,
                                                   double cy, double r_eff_min_pix,
                                                   double r_eff_max_pix, CutoutLabel& lab,
                                                   const MorphologyRanges& ranges) {
  std::vector<SersicComponent> comps;
  const double re = rng.log_uniform(r_eff_min_pix, r_eff_max_pix);
  const double theta = rng.uniform(0.0, 180.0);
  if (cls == CutoutClass::kSpheroid) {
    lab.subtype = "sersic";
    // One draw each, whatever the range, b/a before n (the order in which g++ evaluated the
    // arguments when both were drawn inside the call), so the default ranges give the same
    // stamps as stamp sets made before the ranges became options.
    const double q = rng.uniform(ranges.spheroid_axis_ratio_min, 1.0);
    const double n = rng.uniform(2.5, 6.0);
    comps.push_back(sersic(cx, cy, n, re, q, theta, 1.0));
  } else if (cls == CutoutClass::kDisk) {
    lab.subtype = "disk";
    const double q = rng.uniform(0.2, 1.0);  // b/a before n, as for the spheroid
    const double n = rng.uniform(ranges.disk_sersic_min, ranges.disk_sersic_max);
    SersicComponent disk = sersic(cx, cy, n, re, q, theta, 1.0);
    if (rng.uniform() < 0.5) {
      lab.bulge_fraction = rng.uniform(0.05, 0.29);
      disk.flux_counts = 1.0 - lab.bulge_fraction;
      const double bulge_dtheta = rng.uniform(-10.0, 10.0);
      const double bulge_q = rng.uniform(0.6, 1.0);
      const double bulge_re = std::max(0.7, re * rng.uniform(0.15, 0.4));
      const double bulge_n = rng.uniform(2.0, 4.0);
      comps.push_back(
          sersic(cx, cy, bulge_n, bulge_re, bulge_q, theta + bulge_dtheta, lab.bulge_fraction));
      lab.subtype = "disk+bulge";
    }
    if (rng.uniform() < 0.4) {
      disk.arm_amplitude = rng.uniform(0.2, 0.5);
      disk.arm_count = 2;
      disk.arm_pitch_deg = rng.uniform(12.0, 30.0);
      disk.arm_phase_deg = rng.uniform(0.0, 360.0);
      lab.spiral_arms = true;
    }
    comps.insert(comps.begin(), disk);
  } else {
    if (rng.uniform() < 0.5) {
      // Clumpy disk: 2-6 compact clumps off the centre carrying 25-50% of the flux.
      lab.subtype = "clumpy";
      lab.clump_fraction = rng.uniform(0.25, 0.5);
      lab.n_clumps = 2 + static_cast<int>(rng.below(5));
      const double q = rng.uniform(0.4, 1.0);
      comps.push_back(
          sersic(cx, cy, rng.uniform(0.7, 1.5), re, q, theta, 1.0 - lab.clump_fraction));
      std::vector<double> weights(static_cast<std::size_t>(lab.n_clumps));
      double wsum = 0.0;
      for (auto& wt : weights) wsum += (wt = rng.uniform(0.5, 1.5));
      for (double wt : weights) {
        const double r = rng.uniform(0.3, 1.5) * re;
        const double phi = rng.uniform(0.0, kTwoPi);
        // Clumps lie in the disk: place them on the ellipse of the disk.
        const double xp = r * std::cos(phi);
        const double yp = r * q * std::sin(phi);
        const double t = theta * std::numbers::pi / 180.0;
        const double clump_theta = rng.uniform(0.0, 180.0);
        const double clump_q = rng.uniform(0.6, 1.0);
        const double clump_re = rng.uniform(0.5, 1.5);
        comps.push_back(sersic(cx + xp * std::cos(t) - yp * std::sin(t),
                               cy + xp * std::sin(t) + yp * std::cos(t), 0.5, clump_re, clump_q,
                               clump_theta, lab.clump_fraction * wt / wsum));
      }
      // The catalogued position is the flux-weighted centre, as for mergers: disk and clumps
      // move together so that theirs is the stamp centre (the clumps alone would pull the light
      // centroid up to ~0.5 r_eff off it).
      double fs = 0.0;
      double fx = 0.0;
      double fy = 0.0;
      for (const SersicComponent& c : comps) {
        fs += c.flux_counts;
        fx += c.flux_counts * (c.x_pix - cx);
        fy += c.flux_counts * (c.y_pix - cy);
      }
      for (SersicComponent& c : comps) {
        c.x_pix -= fx / fs;
        c.y_pix -= fy / fs;
      }
    } else {
      // Merger: a second, smaller galaxy of similar flux within ~1.5 r_eff, both placed so that
      // their flux-weighted centre is the stamp centre.
      lab.subtype = "merger";
      lab.companion_flux_ratio = rng.uniform(0.4, 0.85);
      lab.companion_sep_pix = rng.uniform(0.7, 1.5) * re;
      const double phi = rng.uniform(0.0, kTwoPi);
      const double f1 = 1.0 / (1.0 + lab.companion_flux_ratio);
      const double f2 = 1.0 - f1;
      const double ux = std::cos(phi);
      const double uy = std::sin(phi);
      const double d1 = lab.companion_sep_pix * f2;
      const double d2 = lab.companion_sep_pix * f1;
      const double q1 = rng.uniform(0.4, 1.0);
      const double n1 = rng.uniform(0.7, 4.0);
      comps.push_back(sersic(cx - d1 * ux, cy - d1 * uy, n1, re, q1, theta, f1));
      const double theta2 = rng.uniform(0.0, 180.0);
      const double q2 = rng.uniform(0.4, 1.0);
      const double re2 = re * rng.uniform(0.5, 0.8);
      const double n2 = rng.uniform(0.7, 4.0);
      comps.push_back(sersic(cx + d2 * ux, cy + d2 * uy, n2, re2, q2, theta2, f2));
    }
  }
  const SersicComponent& main = comps.front();
  lab.r_eff_pix = main.r_eff_pix;
  lab.sersic_n = main.sersic_n;
  lab.axis_ratio = main.axis_ratio;
  lab.theta_deg = main.theta_deg;
  return comps;
}

namespace {

UnitObject make_galaxy_object(CutoutClass cls, SimRng& rng, const CutoutOptions& o,
                              const MoffatPsf& psf, double cx, double cy, CutoutLabel& lab) {
  const std::vector<SersicComponent> comps =
      morphology_components(cls, rng, cx, cy, o.r_eff_min_pix, o.r_eff_max_pix, lab, o.shapes);
  UnitObject obj;
  obj.pixels = render_galaxy(comps, psf, o.width_pix, o.height_pix, o.oversample);
  obj.ap_x = cx;
  obj.ap_y = cy;
  obj.ap_radius = 1.5 * lab.r_eff_pix;
  return obj;
}

UnitObject make_artifact(SimRng& rng, const CutoutOptions& o, const MoffatPsf& psf, double cx,
                         double cy, CutoutLabel& lab) {
  const int w = o.width_pix;
  const int h = o.height_pix;
  UnitObject obj;
  obj.use_footprint = true;
  obj.pixels = cv::Mat(h, w, CV_32F, cv::Scalar(0));
  const int kind = static_cast<int>(rng.below(5));
  const double phi = rng.uniform(0.0, kTwoPi);
  const double ux = std::cos(phi);
  const double uy = std::sin(phi);
  // A point within 2 px of the centre that the artifact passes through.
  const double px = cx + rng.uniform(-2.0, 2.0);
  const double py = cy + rng.uniform(-2.0, 2.0);
  if (kind == 0) {
    lab.subtype = "cosmic_ray";
    const double len = rng.uniform(4.0, 25.0);
    add_sharp_track(obj.pixels, px - 0.5 * len * ux, py - 0.5 * len * uy, px + 0.5 * len * ux,
                    py + 0.5 * len * uy, 1.0);
  } else if (kind == 1) {
    lab.subtype = "hot_pixels";
    int x = static_cast<int>(std::lround(px));
    int y = static_cast<int>(std::lround(py));
    const int count = 1 + static_cast<int>(rng.below(5));
    for (int i = 0; i < count; ++i) {
      x = std::clamp(x, 0, w - 1);
      y = std::clamp(y, 0, h - 1);
      obj.pixels.at<float>(y, x) += static_cast<float>(rng.uniform(0.3, 1.0));
      // Walk to a neighbouring pixel for the next hot pixel of the cluster.
      const int step = static_cast<int>(rng.below(4));
      x += step == 0 ? 1 : (step == 1 ? -1 : 0);
      y += step == 2 ? 1 : (step == 3 ? -1 : 0);
    }
    obj.pixels /= cv::sum(obj.pixels)[0];
  } else if (kind == 2) {
    lab.subtype = "satellite_trail";
    const double len = rng.uniform(30.0, 150.0);
    const double shift = rng.uniform(-len / 3.0, len / 3.0);
    const double mx = px + shift * ux;
    const double my = py + shift * uy;
    add_trail(obj.pixels, psf, mx - 0.5 * len * ux, my - 0.5 * len * uy, mx + 0.5 * len * ux,
              my + 0.5 * len * uy, 1.0);
  } else {
    // A bright star off the stamp: further than the half-diagonal, so its core is never on it.
    const double dist = rng.uniform(0.75, 1.25) * std::max(w, h);
    const double spike_angle = rng.uniform(0.0, 90.0);
    // Spike stamps: the star sits on one of its own spikes' axes through the centre.
    const double dir = kind == 3 ? (spike_angle + 90.0 * static_cast<double>(rng.below(4))) *
                                       std::numbers::pi / 180.0
                                 : phi;
    const double sx = px + dist * std::cos(dir);
    const double sy = py + dist * std::sin(dir);
    MoffatPsf halo = psf;
    halo.beta = 2.0;
    halo.truncation_fwhm = 3.0;
    if (kind == 3) {
      lab.subtype = "spike";
      halo.fwhm_pix = 8.0 * psf.fwhm_pix;
      const double len = dist + rng.uniform(10.0, 40.0);
      add_diffraction_spikes(obj.pixels, sx, sy, 0.03, spike_angle, len, 0.7);
      add_moffat(obj.pixels, halo, sx, sy, 0.07);
    } else {
      lab.subtype = "halo";
      // Wide enough that the halo reaches the stamp centre from `dist`.
      halo.fwhm_pix = std::max(8.0 * psf.fwhm_pix, dist / 2.0);
      add_moffat(obj.pixels, halo, sx, sy, 0.1);
    }
    add_moffat(obj.pixels, psf, sx, sy, 0.9);
  }
  return obj;
}

// Flux scale that gives the object the drawn S/N (see integrated_snr); the object is unit flux.
double scale_for_snr(const UnitObject& obj, double snr, double sky, const CutoutOptions& o) {
  double f = 0.0;
  int pixels = 0;
  if (obj.use_footprint) {
    double peak = 0.0;
    cv::minMaxLoc(obj.pixels, nullptr, &peak);
    const auto limit = static_cast<float>(kArtifactFootprint * peak);
    for (int y = 0; y < obj.pixels.rows; ++y) {
      const auto* row = obj.pixels.ptr<float>(y);
      for (int x = 0; x < obj.pixels.cols; ++x)
        if (row[x] >= limit && row[x] > 0.0F) {
          f += row[x];
          ++pixels;
        }
    }
  } else {
    const ApertureSum ap = aperture_sum(obj.pixels, obj.ap_x, obj.ap_y, obj.ap_radius);
    f = ap.flux;
    pixels = ap.pixels;
  }
  if (!(f > 0.0) || pixels == 0) return 0.0;
  return flux_for_snr(snr, pixels, sky, o.gain_e_per_count, o.read_noise_e) / f;
}

void add_neighbours(cv::Mat& model, SimRng& rng, const CutoutOptions& o, const MoffatPsf& psf,
                    double cx, double cy, double sky, CutoutLabel& lab) {
  if (rng.uniform() >= o.neighbour_fraction) return;
  lab.n_neighbours = 1 + static_cast<int>(rng.below(3));
  std::vector<SersicComponent> galaxies;
  const double reach = 0.6 * std::max(o.width_pix, o.height_pix);
  for (int i = 0; i < lab.n_neighbours; ++i) {
    const double r = rng.uniform(12.0, std::max(13.0, reach));
    const double phi = rng.uniform(0.0, kTwoPi);
    const double x = cx + r * std::cos(phi);
    const double y = cy + r * std::sin(phi);
    const double snr = rng.log_uniform(10.0, 300.0);
    if (rng.uniform() < 0.3) {
      // Flux from the analytic Moffat share inside the 1.5 FWHM aperture.
      const double ap = 1.5 * psf.fwhm_pix;
      const double a = psf.alpha_pix();
      const double frac = 1.0 - std::pow(1.0 + ap * ap / (a * a), 1.0 - psf.beta);
      const int pixels = static_cast<int>(std::lround(std::numbers::pi * ap * ap));
      add_moffat(model, psf, x, y,
                 flux_for_snr(snr, pixels, sky, o.gain_e_per_count, o.read_noise_e) / frac);
    } else {
      const double re = rng.log_uniform(1.5, 6.0);
      const double n = rng.log_uniform(0.5, 4.0);
      // Flux from the Sérsic share inside 1.5 r_eff, ignoring the PSF: neighbours need only
      // plausible, not exact, S/N.
      const double frac = sersic_enclosed_fraction(n, 1.5);
      const int pixels = static_cast<int>(std::lround(std::numbers::pi * 2.25 * re * re));
      const double theta = rng.uniform(0.0, 180.0);
      const double q = rng.uniform(0.3, 1.0);
      galaxies.push_back(sersic(
          x, y, n, re, q, theta,
          flux_for_snr(snr, std::max(1, pixels), sky, o.gain_e_per_count, o.read_noise_e) / frac));
    }
  }
  if (!galaxies.empty())
    model += render_galaxy(galaxies, psf, o.width_pix, o.height_pix, o.oversample);
}

// --stray-artifacts: 1-3 cosmic rays (70%, draw_cosmic_ray) or hot pixels (20-500 x the noise
// rms, as in `simulate field`) added to the noisy stamp, each kept at least kStrayClearancePix from
// the stamp's centre so the central object stays what its label says.
constexpr double kStrayClearancePix = 5.0;

void add_stray_artifacts(cv::Mat& image, SimRng& rng, const CutoutOptions& o, double cx, double cy,
                         double noise_rms, CutoutLabel& lab) {
  if (o.stray_artifact_fraction <= 0.0 || rng.uniform() >= o.stray_artifact_fraction) return;
  const int n = 1 + static_cast<int>(rng.below(3));
  const int w = o.width_pix;
  const int h = o.height_pix;
  for (int i = 0; i < n; ++i) {
    const double x0 = rng.uniform(-0.5, w - 0.5);
    const double y0 = rng.uniform(-0.5, h - 0.5);
    if (rng.uniform() < 0.7) {
      const CosmicRayTrack t = draw_cosmic_ray(rng, x0, y0, o.gain_e_per_count);
      if (detail::segment_distance(cx, cy, t.x0, t.y0, t.x1, t.y1) < kStrayClearancePix) continue;
      add_sharp_track(image, t.x0, t.y0, t.x1, t.y1, t.flux_counts);
    } else {
      const int x = std::clamp(static_cast<int>(std::lround(x0)), 0, w - 1);
      const int y = std::clamp(static_cast<int>(std::lround(y0)), 0, h - 1);
      const double flux = rng.log_uniform(20.0, 500.0) * noise_rms;
      if (std::hypot(x - cx, y - cy) < kStrayClearancePix) continue;
      image.at<float>(y, x) += static_cast<float>(flux);
    }
    ++lab.n_stray_artifacts;
  }
}

Header stamp_header(const CutoutOptions& o, const CutoutLabel& lab, double noise_rms) {
  Header hd;
  TanWcsParams wcs;
  wcs.crval1_deg = lab.ra_deg;
  wcs.crval2_deg = lab.dec_deg;
  wcs.crpix1 = 0.5 * (o.width_pix + 1);
  wcs.crpix2 = 0.5 * (o.height_pix + 1);
  wcs.pixel_scale_arcsec = o.pixel_scale_arcsec;
  write_tan_wcs(hd, wcs);
  hd.set("BUNIT", std::string_view("count"), "image unit; flux = 10^(-0.4 (mag - MAGZERO))");
  hd.set("GAIN", o.gain_e_per_count, "[e-/count]");
  hd.set("MAGZERO", o.zero_point_mag, "[mag] AB zero point of the counts");
  hd.set("EXPTIME", o.exptime_s, "[s]");
  hd.set("SKY", lab.sky_counts, "[count/pix] sky level (included in the pixels)");
  hd.set("RDNOISE", o.read_noise_e, "[e-] read noise");
  hd.set("SEEING", lab.psf_fwhm_pix * o.pixel_scale_arcsec, "[arcsec] PSF FWHM");
  hd.set("PSFFWHM", lab.psf_fwhm_pix, "[pix] Moffat FWHM");
  hd.set("PSFBETA", lab.psf_beta, "Moffat beta");
  hd.set("PIXSCALE", o.pixel_scale_arcsec, "[arcsec/pix]");
  hd.set("NOISERMS", noise_rms, "[count] sqrt(SKY GAIN + RDNOISE^2) / GAIN");
  hd.set("SIMSEED", static_cast<long long>(o.seed), "astroflow simulate cutouts --seed");
  hd.set("SIMINDEX", static_cast<long long>(lab.index), "stamp index");
  return hd;
}

std::string stamp_name(int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "stamp_%06d.fits", index);
  return buf;
}

}  // namespace

std::string_view to_string(CutoutClass c) {
  return kClassNames.at(static_cast<std::size_t>(c));
}

const std::array<std::string_view, kCutoutClassCount>& cutout_class_names() {
  return kClassNames;
}

std::vector<CutoutClass> cutout_class_plan(const CutoutOptions& options) {
  std::vector<CutoutClass> plan(static_cast<std::size_t>(std::max(0, options.n)));
  for (std::size_t i = 0; i < plan.size(); ++i)
    plan[i] = static_cast<CutoutClass>(static_cast<int>(i % kCutoutClassCount));
  SimRng rng = SimRng::stream(options.seed, kStreamPlan, 0);
  for (std::size_t i = plan.size(); i > 1; --i) std::swap(plan[i - 1], plan[rng.below(i)]);
  return plan;
}

CutoutStamp render_cutout(const CutoutOptions& o, int index, CutoutClass cls) {
  validate(o);
  SimRng rng = SimRng::stream(o.seed, kStreamStamp, static_cast<std::uint64_t>(index));
  CutoutStamp out;
  CutoutLabel& lab = out.label;
  lab.index = index;
  lab.cls = cls;
  lab.file = stamp_name(index);
  MoffatPsf psf;
  psf.fwhm_pix = draw(rng, o.psf_fwhm_min_pix, o.psf_fwhm_max_pix);
  psf.beta = draw(rng, o.psf_beta_min, o.psf_beta_max);
  psf.truncation_fwhm = kCutoutPsfTruncationFwhm;
  lab.psf_fwhm_pix = psf.fwhm_pix;
  lab.psf_beta = psf.beta;
  lab.sky_counts = o.sky_counts * draw(rng, 1.0 - o.sky_jitter, 1.0 + o.sky_jitter);
  const double dec = std::clamp(o.dec_deg + rng.uniform(-1.0, 1.0), -89.0, 89.0);
  lab.dec_deg = dec;
  lab.ra_deg = std::fmod(
      o.ra_deg + rng.uniform(-1.0, 1.0) / std::cos(dec * std::numbers::pi / 180.0) + 360.0, 360.0);
  const double cx = 0.5 * (o.width_pix - 1) + rng.uniform(-1.0, 1.0) * o.centre_jitter_pix;
  const double cy = 0.5 * (o.height_pix - 1) + rng.uniform(-1.0, 1.0) * o.centre_jitter_pix;
  lab.x_pix = cx;
  lab.y_pix = cy;
  lab.snr = rng.log_uniform(o.snr_min, o.snr_max);

  UnitObject obj;
  switch (cls) {
    case CutoutClass::kSpheroid:
    case CutoutClass::kDisk:
    case CutoutClass::kIrregular:
      obj = make_galaxy_object(cls, rng, o, psf, cx, cy, lab);
      break;
    case CutoutClass::kPointSource:
      lab.subtype = "star";
      obj.pixels = cv::Mat(o.height_pix, o.width_pix, CV_32F, cv::Scalar(0));
      add_moffat(obj.pixels, psf, cx, cy, 1.0);
      obj.ap_x = cx;
      obj.ap_y = cy;
      obj.ap_radius = 1.5 * psf.fwhm_pix;
      break;
    case CutoutClass::kArtifact:
      obj = make_artifact(rng, o, psf, cx, cy, lab);
      break;
  }
  if (cls == CutoutClass::kPointSource || cls == CutoutClass::kArtifact) {
    lab.r_eff_pix = kNaN;
    lab.sersic_n = kNaN;
    lab.axis_ratio = kNaN;
    lab.theta_deg = kNaN;
  }
  const double scale = scale_for_snr(obj, lab.snr, lab.sky_counts, o);
  lab.flux_counts = scale;
  lab.mag = scale > 0.0 ? o.zero_point_mag - 2.5 * std::log10(scale) : kNaN;
  out.source_model = obj.pixels * scale;
  out.model = out.source_model.clone();
  add_neighbours(out.model, rng, o, psf, cx, cy, lab.sky_counts, lab);
  out.image = out.model.clone();
  add_noise(out.image, lab.sky_counts, o.gain_e_per_count, o.read_noise_e, rng);
  const double noise_rms =
      std::sqrt(lab.sky_counts * o.gain_e_per_count + o.read_noise_e * o.read_noise_e) /
      o.gain_e_per_count;
  // After the noise, as in a field: the model planes hold no artifact.
  add_stray_artifacts(out.image, rng, o, cx, cy, noise_rms, lab);
  out.header = stamp_header(o, lab, noise_rms);
  return out;
}

Catalog cutout_labels_catalog(const std::vector<CutoutLabel>& labels) {
  Catalog cat;
  cat.resize(labels.size());
  // Each column is added and filled before the next: references into a Catalog's columns are
  // invalidated when another column is added.
  const auto num = [&](std::string_view name, std::string_view unit, std::string_view doc,
                       auto get) {
    auto& v = cat.add_column<double>(name, unit, doc);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = get(labels[i]);
  };
  const auto integer = [&](std::string_view name, std::string_view doc, auto get) {
    auto& v = cat.add_column<std::int32_t>(name, "", doc);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int32_t>(get(labels[i]));
  };
  const auto text = [&](std::string_view name, std::string_view doc, auto get) {
    auto& v = cat.add_column<std::string>(name, "", doc);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::string(get(labels[i]));
  };
  using L = const CutoutLabel&;
  text("FILE", "stamp file (or cube file)", [](L l) { return l.file; });
  integer("PLANE", "0-based stamp index (cube plane)", [](L l) { return l.index; });
  text("CLASS", "morphology class name", [](L l) { return to_string(l.cls); });
  integer("CLASS_ID", "0 spheroid, 1 disk, 2 irregular, 3 point_source, 4 artifact",
          [](L l) { return static_cast<int>(l.cls); });
  text("SUBTYPE", "variant within the class", [](L l) { return l.subtype; });
  num("SNR", "", "integrated S/N (docs/simulator.md)", [](L l) { return l.snr; });
  num("FLUX", "count", "total flux of the central object", [](L l) { return l.flux_counts; });
  num("MAG", "mag", "MAGZERO - 2.5 log10(FLUX)", [](L l) { return l.mag; });
  num("R_EFF", "pix", "main component half-light radius", [](L l) { return l.r_eff_pix; });
  num("N", "", "main component Sersic index", [](L l) { return l.sersic_n; });
  num("AXIS_RATIO", "", "main component b/a", [](L l) { return l.axis_ratio; });
  num("THETA", "deg", "main component angle, CCW from +x", [](L l) { return l.theta_deg; });
  num("BULGE_FRAC", "", "disk: bulge share of the flux", [](L l) { return l.bulge_fraction; });
  num("CLUMP_FRAC", "", "clumpy irregular: clump share", [](L l) { return l.clump_fraction; });
  integer("N_CLUMPS", "clumpy irregular: clumps", [](L l) { return l.n_clumps; });
  integer("SPIRAL_ARMS", "disk: 1 with spiral arms", [](L l) { return l.spiral_arms ? 1 : 0; });
  num("COMP_FLUX_RATIO", "", "merger: secondary/primary flux",
      [](L l) { return l.companion_flux_ratio; });
  num("COMP_SEP", "pix", "merger: nucleus separation", [](L l) { return l.companion_sep_pix; });
  num("PSF_FWHM", "pix", "Moffat FWHM", [](L l) { return l.psf_fwhm_pix; });
  num("PSF_BETA", "", "Moffat beta", [](L l) { return l.psf_beta; });
  num("SKY", "count", "sky level per pixel", [](L l) { return l.sky_counts; });
  num("X_IMAGE", "pix", "object centre, FITS 1-based", [](L l) { return l.x_pix + 1.0; });
  num("Y_IMAGE", "pix", "object centre, FITS 1-based", [](L l) { return l.y_pix + 1.0; });
  num("ALPHA_J2000", "deg", "stamp centre RA (CRVAL1)", [](L l) { return l.ra_deg; });
  num("DELTA_J2000", "deg", "stamp centre Dec (CRVAL2)", [](L l) { return l.dec_deg; });
  integer("N_NEIGHBOURS", "other sources in the stamp", [](L l) { return l.n_neighbours; });
  integer("N_STRAY", "cosmic rays and hot pixels off the centre (--stray-artifacts)",
          [](L l) { return l.n_stray_artifacts; });
  return cat;
}

CutoutRunResult write_cutouts(const CutoutOptions& o) {
  validate(o);
  namespace fs = std::filesystem;
  fs::create_directories(o.output_dir);
  const fs::path dir(o.output_dir);
  const std::vector<CutoutClass> plan = cutout_class_plan(o);
  CutoutRunResult result;
  result.labels.resize(plan.size());
  const auto n = static_cast<int>(plan.size());

  if (!o.single_file) {
    tbb::parallel_for(tbb::blocked_range<int>(0, n, 16), [&](const tbb::blocked_range<int>& r) {
      for (int i = r.begin(); i != r.end(); ++i) {
        CutoutStamp s = render_cutout(o, i, plan[static_cast<std::size_t>(i)]);
        write_fits_image((dir / s.label.file).string(), s.image, s.header);
        result.labels[static_cast<std::size_t>(i)] = std::move(s.label);
      }
    });
    for (const auto& l : result.labels) result.paths.push_back((dir / l.file).string());
  }

  const std::string labels_fits = (dir / "labels.fits").string();
  const std::string cube_path = (dir / o.cube_name).string();
  if (o.single_file) {
    // Render block by block (bounded memory) straight into one cube HDU; the label table is
    // appended once all stamps are known.
    const auto npix =
        static_cast<std::size_t>(o.width_pix) * static_cast<std::size_t>(o.height_pix);
    write_atomically(cube_path, [&](const std::string& tmp) {
      FitsFile f = FitsFile::create(tmp, cube_path);
      int status = 0;
      long naxes[3] = {o.width_pix, o.height_pix, n};
      fits_create_img(f.get(), FLOAT_IMG, 3, naxes, &status);
      f.check(status, "cannot create the stamp cube");
      // Keys shared by every stamp; per-stamp SKY, PSF and position are in the LABELS table.
      CutoutLabel common;
      common.sky_counts = o.sky_counts;
      Header hd = stamp_header(
          o, common,
          std::sqrt(o.sky_counts * o.gain_e_per_count + o.read_noise_e * o.read_noise_e) /
              o.gain_e_per_count);
      for (const char* key : {"WCSAXES", "CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2",
                              "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CUNIT1", "CUNIT2", "RADESYS",
                              "SEEING", "PSFFWHM", "PSFBETA", "SIMINDEX", "NOISERMS"})
        hd.erase(key);
      hd.set("SKY", o.sky_counts, "[count/pix] mean sky; per stamp: LABELS.SKY");
      hd.set("NSTAMPS", static_cast<long long>(n), "stamps (NAXIS3), labels in extension LABELS");
      for (const auto& card : hd.cards()) {
        std::string c = card;
        c.resize(80, ' ');
        fits_write_record(f.get(), c.c_str(), &status);
        f.check(status, "cannot write a header card");
      }
      std::vector<float> block;
      for (int start = 0; start < n; start += kCubeBlock) {
        const int count = std::min(kCubeBlock, n - start);
        block.assign(static_cast<std::size_t>(count) * npix, 0.0F);
        tbb::parallel_for(
            tbb::blocked_range<int>(0, count, 16), [&](const tbb::blocked_range<int>& r) {
              for (int k = r.begin(); k != r.end(); ++k) {
                const int i = start + k;
                CutoutStamp s = render_cutout(o, i, plan[static_cast<std::size_t>(i)]);
                std::copy_n(s.image.ptr<float>(0), npix,
                            block.data() + static_cast<std::size_t>(k) * npix);
                s.label.file = o.cube_name;
                result.labels[static_cast<std::size_t>(i)] = std::move(s.label);
              }
            });
        fits_write_img(f.get(), TFLOAT,
                       static_cast<LONGLONG>(start) * static_cast<LONGLONG>(npix) + 1,
                       static_cast<LONGLONG>(block.size()), block.data(), &status);
        f.check(status, "cannot write stamps to the cube");
      }
      // The label table: written by write_fits_catalog, then copied in as extension LABELS.
      write_fits_catalog(labels_fits, cutout_labels_catalog(result.labels), {}, "LABELS");
      FitsFile labels = FitsFile::open_read(labels_fits);
      labels.move_to(1);
      fits_copy_hdu(labels.get(), f.get(), 0, &status);
      f.check(status, "cannot append the LABELS table");
      f.close();
    });
    result.paths.push_back(cube_path);
  } else {
    write_fits_catalog(labels_fits, cutout_labels_catalog(result.labels), {}, "LABELS");
  }
  result.paths.push_back(labels_fits);
  const std::string labels_csv = (dir / "labels.csv").string();
  write_csv_catalog(labels_csv, cutout_labels_catalog(result.labels));
  result.paths.push_back(labels_csv);
  return result;
}

}  // namespace astroflow
