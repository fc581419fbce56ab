// The image simulator behind `astroflow simulate field|cutouts` (docs/simulator.md).
//
// Determinism: every random number comes from SimRng (std::mt19937_64 plus distributions
// written here, not the standard library's, whose algorithms differ between implementations).
// Work that runs in parallel (noise rows, stamps) draws from its own stream seeded from
// (seed, stream, index), so the bytes written depend only on the options, never on the number
// of threads.
//
// Conventions:
//  * Pixel coordinates inside this API are 0-based pixel centres (pixel i covers
//    [i - 0.5, i + 0.5]); the catalogs written to disk use FITS 1-based X_IMAGE/Y_IMAGE.
//  * Position angles (theta_deg, THETA) are counter-clockwise from the +x axis, as SExtractor's
//    THETA_IMAGE.
//  * Fluxes are in image counts: flux = 10^(-0.4 (mag - zero_point_mag)). GAIN is electrons per
//    count, so a count-rate image (e-/s) uses GAIN = EXPTIME, the SExtractor convention.
//  * Sérsic profiles are truncated at 8 effective radii (elliptical radius); `flux_counts` is the
//    flux of the truncated profile, computed analytically with the incomplete gamma function.
//  * The PSF is a circular Moffat profile truncated at `truncation_fwhm` FWHMs and renormalised
//    to unit flux inside that radius.
//
// Failure: invalid options throw FatalError naming the option; write errors from fits_io
// propagate.
#pragma once

#include <array>
#include <cstdint>
#include <opencv2/core/mat.hpp>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "astroflow/catalog.hpp"
#include "astroflow/header.hpp"

namespace astroflow {

// ---------------------------------------------------------------------------------------------
// Random numbers

/// Reproducible random numbers: std::mt19937_64 with hand-written distributions, so the same
/// seed gives the same sequence with any standard library.
class SimRng {
 public:
  explicit SimRng(std::uint64_t seed) : engine_(seed) {}
  /// An independent stream for parallel work, e.g. stream(seed, kNoise, row).
  [[nodiscard]] static SimRng stream(std::uint64_t seed, std::uint64_t stream_id,
                                     std::uint64_t index);

  std::uint64_t next_u64() { return engine_(); }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform();
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// exp(uniform(log lo, log hi)).
  double log_uniform(double lo, double hi);
  /// Unbiased integer in [0, n) (rejection sampling); n > 0.
  std::uint64_t below(std::uint64_t n);
  /// Standard normal deviate (Box-Muller, second value cached).
  double normal();
  /// Poisson deviate: multiplication method below mean 12, Hörmann's PTRS above.
  double poisson(double mean);

 private:
  std::mt19937_64 engine_;
  double cached_normal_ = 0.0;
  bool has_cached_normal_ = false;
};

// ---------------------------------------------------------------------------------------------
// Profiles and rendering primitives (exposed for tests and for other tools)

/// Regularised lower incomplete gamma function P(a, x).
[[nodiscard]] double regularized_gamma_p(double a, double x);
/// The Sérsic b_n with P(2n, b_n) = 1/2, i.e. r_eff encloses half the (untruncated) light.
[[nodiscard]] double sersic_b(double sersic_n);
/// Fraction of the untruncated Sérsic flux inside elliptical radius `radius_over_reff` r_eff.
[[nodiscard]] double sersic_enclosed_fraction(double sersic_n, double radius_over_reff);
/// Truncation radius of every Sérsic profile, in units of r_eff.
inline constexpr double kSersicTruncationReff = 8.0;

struct MoffatPsf {
  double fwhm_pix = 3.0;
  double beta = 3.0;
  /// The profile is zero beyond truncation_fwhm * fwhm_pix and normalised inside it.
  double truncation_fwhm = 5.0;

  [[nodiscard]] double alpha_pix() const;
  [[nodiscard]] double truncation_radius_pix() const { return truncation_fwhm * fwhm_pix; }
  /// Surface brightness (per pix^2) at radius r of a unit-flux truncated profile.
  [[nodiscard]] double intensity(double r_pix) const;
};

/// The PSF sampled at the centres of an `oversample`-times finer grid, odd size, centred,
/// normalised to sum 1 (a convolution kernel for a grid of that resolution). CV_32F.
[[nodiscard]] cv::Mat psf_kernel(const MoffatPsf& psf, int oversample);

/// One elliptical Sérsic component, optionally with logarithmic spiral arms (a flux-neutral
/// modulation 1 + A cos(m (phi - ln(r / r_eff) / tan(pitch)) - phase) in the disk plane).
struct SersicComponent {
  double flux_counts = 1.0;  ///< flux of the profile truncated at kSersicTruncationReff
  double x_pix = 0.0;        ///< centre, 0-based pixel coordinates of the target image
  double y_pix = 0.0;
  double sersic_n = 1.0;
  double r_eff_pix = 3.0;   ///< semi-major-axis half-light radius of the untruncated profile
  double axis_ratio = 1.0;  ///< b/a
  double theta_deg = 0.0;
  double arm_amplitude = 0.0;  ///< 0 = no arms
  int arm_count = 2;
  double arm_pitch_deg = 20.0;
  double arm_phase_deg = 0.0;
};

/// Renders components convolved with `psf` into a width x height image (CV_32F, counts per
/// pixel). Each component is integrated over sub-pixels (adaptive sub-sampling where the profile
/// is steep, so a 2 px r_eff with n = 6 keeps its flux) on a grid `oversample` times finer than
/// the pixels, convolved with psf_kernel() by cv::filter2D, then binned. The grid is padded by
/// the PSF radius so light from outside the image scatters in correctly.
[[nodiscard]] cv::Mat render_galaxy(const std::vector<SersicComponent>& components,
                                    const MoffatPsf& psf, int width, int height, int oversample);

/// Adds a pixel-integrated (5x5 samples per pixel) truncated Moffat of total `flux_counts`
/// centred at (x, y) into `image` (CV_32F). Parts outside the image are dropped.
void add_moffat(cv::Mat& image, const MoffatPsf& psf, double x_pix, double y_pix,
                double flux_counts);

/// Adds four diffraction spikes (at theta_deg + k * 90 deg) of total flux `flux_counts`:
/// brightness ~ (1 + t / 2 px)^-2 along each spike of length `length_pix`, Gaussian across
/// with sigma `width_pix`. Normalised analytically, so a star off the image adds only the part
/// that falls on it.
void add_diffraction_spikes(cv::Mat& image, double x_pix, double y_pix, double flux_counts,
                            double theta_deg, double length_pix, double width_pix);

/// Adds a sharp (not PSF-convolved) track from (x0, y0) to (x1, y1) carrying `flux_counts`
/// spread evenly along it, deposited with bilinear weights: a cosmic-ray hit.
void add_sharp_track(cv::Mat& image, double x0, double y0, double x1, double y1,
                     double flux_counts);

/// A cosmic-ray hit from (x0, y0), as `simulate field` and `simulate cutouts --stray-artifacts`
/// draw them: length 1 + 24 u^2 px (mostly short, a few long grazing hits), a uniform
/// direction, 300-3000 electrons per pixel of track (in counts at `gain_e_per_count`).
struct CosmicRayTrack {
  double x0 = 0.0, y0 = 0.0, x1 = 0.0, y1 = 0.0;
  double flux_counts = 0.0;
};
[[nodiscard]] CosmicRayTrack draw_cosmic_ray(SimRng& rng, double x0, double y0,
                                             double gain_e_per_count);

/// Adds a PSF-convolved line segment (a satellite trail) of total `flux_counts`: the Moffat
/// line-spread function across, with the same profile around the end points. Normalised
/// analytically over the whole segment; only the part on the image is added.
void add_trail(cv::Mat& image, const MoffatPsf& psf, double x0, double y0, double x1, double y1,
               double flux_counts);

/// Flux-weighted second moments (Ixx, Iyy, Ixy in pix^2) and centroid of `image` inside a
/// circle of radius `radius_pix` around (x, y). Used by tests and by the cutout generator.
struct Moments {
  double x_pix = 0.0;
  double y_pix = 0.0;
  double ixx = 0.0;
  double iyy = 0.0;
  double ixy = 0.0;
  double flux = 0.0;
};
[[nodiscard]] Moments measure_moments(const cv::Mat& image, double x_pix, double y_pix,
                                      double radius_pix);

/// Aperture used for the S/N of a source: pixels whose centre lies within radius_pix of (x, y).
struct ApertureSum {
  double flux = 0.0;
  int pixels = 0;
};
[[nodiscard]] ApertureSum aperture_sum(const cv::Mat& image, double x_pix, double y_pix,
                                       double radius_pix);

/// Integrated S/N of flux F (counts) spread over N pixels: F / sqrt(F / gain + N sigma_sky^2),
/// with sigma_sky^2 = (sky * gain + read_noise_e^2) / gain^2 per pixel.
[[nodiscard]] double integrated_snr(double flux_counts, int pixels, double sky_counts,
                                    double gain_e_per_count, double read_noise_e);
/// Inverse of integrated_snr: the flux F that gives `snr` over N pixels.
[[nodiscard]] double flux_for_snr(double snr, int pixels, double sky_counts,
                                  double gain_e_per_count, double read_noise_e);

/// Photon (Poisson, in electrons) plus Gaussian read noise, in place, on image + sky. The sky
/// stays in the result. Rows use independent streams (seed, stream_id, row): parallel and
/// deterministic. `sky` is either empty (use sky_counts) or a CV_32F plane of the image size.
void add_noise(cv::Mat& image, const cv::Mat& sky, double sky_counts, double gain_e_per_count,
               double read_noise_e, std::uint64_t seed, std::uint64_t stream_id);
/// Serial form drawing from one stream (for small stamps, which are parallel already).
void add_noise(cv::Mat& image, double sky_counts, double gain_e_per_count, double read_noise_e,
               SimRng& rng);

/// A TAN (gnomonic) WCS: CRPIX at the image centre, CD for `pixel_scale_arcsec` rotated by
/// `position_angle_deg` (north through east), north up and east left at 0.
struct TanWcsParams {
  double crval1_deg = 150.1;
  double crval2_deg = 2.2;
  double crpix1 = 1.0;  ///< FITS 1-based
  double crpix2 = 1.0;
  double pixel_scale_arcsec = 0.06;
  double position_angle_deg = 0.0;
};
/// Writes CTYPE/CRVAL/CRPIX/CD/CUNIT/RADESYS cards.
void write_tan_wcs(Header& header, const TanWcsParams& wcs);
/// Inverse gnomonic projection for FITS 1-based pixel (x, y): {RA, Dec} in degrees. Written
/// here from the standard formulae so truth coordinates do not depend on the WCS reader.
[[nodiscard]] std::pair<double, double> tan_pixel_to_sky(const TanWcsParams& wcs, double x,
                                                         double y);

/// Parses "W" or "WxH" (e.g. "2048", "4096x2048"); throws FatalError naming `option`.
[[nodiscard]] std::pair<int, int> parse_image_size(std::string_view text,
                                                   std::string_view option = "--size");

// ---------------------------------------------------------------------------------------------
// `astroflow simulate field`

/// Options of `astroflow simulate field`. The CLI flag of each field is given in brackets.
struct FieldOptions {
  std::uint64_t seed = 1;            ///< [--seed]
  int width_pix = 2048;              ///< [--size W[xH]]
  int height_pix = 2048;             ///< [--size W[xH]]
  std::string output_dir = ".";      ///< [--output] folder, created if missing
  std::string name = "field";        ///< [--name] file stem of every output
  double pixel_scale_arcsec = 0.06;  ///< [--pixel-scale]
  double ra_deg = 150.1;             ///< [--ra] CRVAL1, at the image centre
  double dec_deg = 2.2;              ///< [--dec] CRVAL2
  double position_angle_deg = 0.0;   ///< [--pa] rotation of the CD matrix
  double zero_point_mag = 25.0;      ///< [--zp] MAGZERO: flux = 10^(-0.4 (m - zp)) counts
  double exptime_s = 2000.0;         ///< [--exptime] written as EXPTIME
  double gain_e_per_count = 2000.0;  ///< [--gain] electrons per count (GAIN)
  double sky_counts = 0.05;          ///< [--sky] mean sky per pixel (SKY)
  double sky_gradient = 0.1;         ///< [--sky-gradient] fractional sky change corner to corner
  double read_noise_e = 5.0;         ///< [--read-noise] electrons (RDNOISE)
  double psf_fwhm_pix = 0.0;         ///< [--psf-fwhm] 0: drawn in [2.5, 4]
  double psf_beta = 0.0;             ///< [--psf-beta] 0: drawn in [2.5, 4.5]
  double galaxy_density_arcmin2 = 150.0;  ///< [--galaxy-density] galaxies/arcmin^2 to mag_faint
  double galaxy_mag_bright = 18.0;        ///< [--mag-bright]
  double galaxy_mag_faint = 28.0;         ///< [--mag-faint] below the detection limit on purpose
  double count_slope = 0.3;               ///< [--count-slope] dN/dm ~ 10^(slope m)
  int n_stars = 40;                       ///< [--stars]
  double star_mag_bright = 16.0;          ///< [--star-mag-bright]
  double star_mag_faint = 27.0;           ///< [--star-mag-faint]
  double spike_mag = 19.5;                ///< [--spike-mag] stars brighter get spikes and a halo
  double blend_fraction = 0.05;           ///< [--blend-fraction] galaxies given a close companion
  /// [--irregular-density] irregular galaxies (clumpy disks and mergers, from the cutout
  /// generator's definitions) per arcmin^2, magnitudes in [mag_bright, min(mag_faint, 24.5)];
  /// drawn from their own random stream, so the other sources do not change with it.
  double irregular_density_arcmin2 = 3.0;
  int n_cosmic_rays = 100;  ///< [--cosmics]
  int n_hot_pixels = 20;    ///< [--hot-pixels]
  /// [--saturation] full-well level in counts (sky included); 0: none. Pixels above it are
  /// clipped to it and the excess charge bleeds along the column into the neighbouring pixels,
  /// as in a CCD (the bleed trails of bright stars); written as SATURATE.
  double saturation_counts = 0.0;
  int oversample = 3;  ///< [--oversample] galaxy rendering grid factor
  /// [--noise-seed] seed of the photon/read noise only; 0: use `seed`. A second value gives a
  /// second noise realisation of the same scene (Noise2Noise training); cosmic rays and hot
  /// pixels still follow `seed`.
  std::uint64_t noise_seed = 0;
};

/// One truth source (galaxy or star); cosmic rays and hot pixels are in `artifacts` instead.
struct TruthSource {
  int id = 0;  ///< 1-based, = value in the truth segmentation
  bool is_star = false;
  double x_pix = 0.0;  ///< 0-based
  double y_pix = 0.0;
  double ra_deg = 0.0;
  double dec_deg = 0.0;
  double flux_counts = 0.0;
  double mag = 0.0;
  double sersic_n = 0.0;   ///< NaN for stars
  double r_eff_pix = 0.0;  ///< NaN for stars
  double axis_ratio = 1.0;
  double theta_deg = 0.0;
  double snr = 0.0;
  int blend_parent = 0;  ///< id of the galaxy this one was placed next to, 0 if none
  int morph = 0;         ///< truth morphology, a FieldMorph value (the truthclass pixel value)
};

/// Truth morphology of a field source, as in the classify classes: the value of the truth class
/// map (<name>.truthclass.fits) and of the truth column MORPH_ID. Single-Sérsic galaxies are
/// spheroids when n >= 2.5 and disks otherwise; irregulars are drawn as such; stars are point
/// sources.
enum FieldMorph : int {
  kMorphBackground = 0,
  kMorphSpheroid = 1,
  kMorphDisk = 2,
  kMorphIrregular = 3,
  kMorphPointSource = 4
};
inline constexpr int kFieldMorphCount = 5;
/// "background", "spheroid", "disk", "irregular", "point_source" (index = FieldMorph value).
[[nodiscard]] const std::array<std::string_view, kFieldMorphCount>& field_morph_names();

struct FieldSimulation {
  cv::Mat image;          ///< CV_32F noisy image: model + sky + noise + cosmic rays + hot pixels
  cv::Mat model;          ///< CV_32F noiseless sources only (no sky, no artifacts)
  cv::Mat sky;            ///< CV_32F sky plane (mean sky_counts, with the gradient)
  cv::Mat truthseg;       ///< CV_32S truth segmentation (see docs/simulator.md)
  cv::Mat truthclass;     ///< CV_8U truth class map: the FieldMorph of the truthseg source
  cv::Mat artifact_mask;  ///< CV_8U, 1 where a cosmic ray or hot pixel added counts
  Header header;          ///< WCS + GAIN, MAGZERO, EXPTIME, SKY, RDNOISE, SEEING, ...
  TanWcsParams wcs;
  MoffatPsf psf;
  double noise_rms_counts = 0.0;  ///< sqrt(sky gain + rn^2) / gain at the mean sky
  std::vector<TruthSource> sources;
  Catalog truth;      ///< the truth table as written
  Catalog artifacts;  ///< cosmic rays and hot pixels
};

/// Generates the field in memory. Deterministic in `options`.
[[nodiscard]] FieldSimulation simulate_field(const FieldOptions& options);

/// Writes <name>.fits, <name>.model.fits, <name>.truthseg.fits, <name>.truthclass.fits,
/// <name>.truth.fits, <name>.truth.csv, <name>.artifacts.fits and <name>.artifacts.csv into
/// options.output_dir. Returns the paths written.
std::vector<std::string> write_field(const FieldSimulation& field, const FieldOptions& options);

// ---------------------------------------------------------------------------------------------
// `astroflow simulate cutouts`

/// The five morphology classes, in CLASS_ID order.
enum class CutoutClass : int {
  kSpheroid = 0,
  kDisk = 1,
  kIrregular = 2,
  kPointSource = 3,
  kArtifact = 4
};
inline constexpr int kCutoutClassCount = 5;
[[nodiscard]] std::string_view to_string(CutoutClass c);
[[nodiscard]] const std::array<std::string_view, kCutoutClassCount>& cutout_class_names();

/// Options of `astroflow simulate cutouts`. The CLI flag of each field is given in brackets.
/// The galaxy shapes of the cutout classes that a caller may widen; the defaults are the cutout
/// generator's own. `simulate field` calls every galaxy of n < 2.5 a disk and draws b/a in
/// [0.2, 1], so disks of n 0.5-2.5 and spheroids of b/a 0.2-1 cover its galaxies
/// (models/classify-survey, models/classify/train.sh).
struct MorphologyRanges {
  double disk_sersic_min = 0.7;          ///< the disk's Sérsic n, uniform in [min, max]
  double disk_sersic_max = 1.5;          ///< at most 2.5 (n >= 2.5 is a spheroid)
  double spheroid_axis_ratio_min = 0.5;  ///< the spheroid's b/a, uniform in [this, 1]
};

struct CutoutOptions {
  std::uint64_t seed = 1;                  ///< [--seed]
  int n = 1000;                            ///< [--n] number of stamps, classes balanced (N/5 each)
  int width_pix = 64;                      ///< [--size W[xH]]
  int height_pix = 64;                     ///< [--size W[xH]]
  std::string output_dir = ".";            ///< [--output]
  bool single_file = false;                ///< [--single-file] one cube FITS instead of N files
  std::string cube_name = "cutouts.fits";  ///< [--cube-name] file name with --single-file
  double pixel_scale_arcsec = 0.06;        ///< [--pixel-scale]
  double ra_deg = 150.1;                   ///< [--ra] stamps are spread within 1 deg of this
  double dec_deg = 2.2;                    ///< [--dec]
  double zero_point_mag = 25.0;            ///< [--zp]
  double exptime_s = 2000.0;               ///< [--exptime]
  double gain_e_per_count = 2000.0;        ///< [--gain]
  double sky_counts = 0.05;                ///< [--sky] mean sky per pixel
  double sky_jitter = 0.3;          ///< [--sky-jitter] each stamp's sky is sky * U(1 -+ jitter)
  double read_noise_e = 5.0;        ///< [--read-noise]
  double psf_fwhm_min_pix = 2.5;    ///< [--psf-fwhm-min]
  double psf_fwhm_max_pix = 4.0;    ///< [--psf-fwhm-max]
  double psf_beta_min = 2.5;        ///< [--psf-beta-min]
  double psf_beta_max = 4.5;        ///< [--psf-beta-max]
  double r_eff_min_pix = 2.0;       ///< [--r-eff-min]
  double r_eff_max_pix = 15.0;      ///< [--r-eff-max]
  double snr_min = 15.0;            ///< [--snr-min] integrated S/N, log-uniform
  double snr_max = 500.0;           ///< [--snr-max]
  double neighbour_fraction = 0.3;  ///< [--neighbour-fraction] stamps with random neighbours
  /// [--stray-artifacts] share of stamps (every class) that get 1-3 cosmic rays or hot pixels
  /// away from their centre, as stamps cut from a field do; 0 draws nothing (the default, so
  /// earlier stamp sets are unchanged)
  double stray_artifact_fraction = 0.0;
  double centre_jitter_pix = 0.5;  ///< [--jitter] centre offset, uniform in +-jitter
  int oversample = 1;              ///< [--oversample] galaxy grid factor (1 is accurate, see docs)
  MorphologyRanges shapes;         ///< [--disk-sersic-min/max, --spheroid-axis-ratio-min]
};

/// Ground truth of one stamp (one row of labels.csv / labels.fits).
struct CutoutLabel {
  int index = 0;
  std::string file;  ///< stamp_000123.fits, or "<cube_name>[123]" with --single-file
  CutoutClass cls = CutoutClass::kSpheroid;
  std::string subtype;  ///< e.g. "clumpy", "merger", "cosmic_ray", "satellite_trail"
  double snr = 0.0;
  double flux_counts = 0.0;
  double mag = 0.0;
  double r_eff_pix = 0.0;   ///< main component; NaN for point sources and artifacts
  double sersic_n = 0.0;    ///< main component; NaN for point sources and artifacts
  double axis_ratio = 1.0;  ///< NaN for point sources and artifacts
  double theta_deg = 0.0;
  double bulge_fraction = 0.0;        ///< disks: flux fraction of the bulge
  double clump_fraction = 0.0;        ///< irregular "clumpy": flux fraction in clumps
  double companion_flux_ratio = 0.0;  ///< irregular "merger": secondary / primary flux
  double companion_sep_pix = 0.0;     ///< irregular "merger": separation of the two nuclei
  int n_clumps = 0;
  bool spiral_arms = false;
  double psf_fwhm_pix = 0.0;
  double psf_beta = 0.0;
  double sky_counts = 0.0;
  double x_pix = 0.0;  ///< 0-based centre of the object (artifacts: the stamp centre)
  double y_pix = 0.0;
  double ra_deg = 0.0;  ///< CRVAL of the stamp
  double dec_deg = 0.0;
  int n_neighbours = 0;
  int n_stray_artifacts = 0;  ///< cosmic rays and hot pixels off the centre (--stray-artifacts)
};

/// The unit-flux Sérsic components of one galaxy of class `cls` (spheroid, disk or irregular;
/// docs/simulator.md gives the definitions) centred at (x, y), the main component first, its
/// r_eff log-uniform in [r_eff_min_pix, r_eff_max_pix]. Fills the morphology fields of `label`
/// (subtype, r_eff, Sérsic n, axis ratio, bulge/clump/companion parameters). Shared by the
/// cutout generator and the field generator's irregular galaxies.
[[nodiscard]] std::vector<SersicComponent> morphology_components(
    CutoutClass cls, SimRng& rng, double x_pix, double y_pix, double r_eff_min_pix,
    double r_eff_max_pix, CutoutLabel& label, const MorphologyRanges& ranges = {});

struct CutoutStamp {
  cv::Mat image;         ///< CV_32F noisy stamp (sky included)
  cv::Mat model;         ///< CV_32F noiseless, central object + neighbours, no sky
  cv::Mat source_model;  ///< CV_32F noiseless, central object only
  Header header;
  CutoutLabel label;
};

/// The class of every stamp: N/5 of each (the first N mod 5 classes get one more), shuffled.
[[nodiscard]] std::vector<CutoutClass> cutout_class_plan(const CutoutOptions& options);

/// Renders stamp `index` of class `cls` (normally cutout_class_plan(options)[index]).
/// Deterministic in (options, index, cls); safe to call concurrently.
[[nodiscard]] CutoutStamp render_cutout(const CutoutOptions& options, int index, CutoutClass cls);

/// The labels table (FILE, CLASS, CLASS_ID, SNR, ...).
[[nodiscard]] Catalog cutout_labels_catalog(const std::vector<CutoutLabel>& labels);

struct CutoutRunResult {
  std::vector<CutoutLabel> labels;
  std::vector<std::string> paths;  ///< files written (stamps or cube, labels.csv, labels.fits)
};

/// Renders all stamps in parallel (TBB) and writes them: stamp_NNNNNN.fits + labels.csv +
/// labels.fits, or with single_file one cube (primary HDU NAXIS3 = N, extension LABELS) plus
/// labels.csv and labels.fits.
CutoutRunResult write_cutouts(const CutoutOptions& options);

}  // namespace astroflow
