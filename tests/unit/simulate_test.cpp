// Tests of the simulator (pipeline/src/simulate_*.cpp). Golden values come from the literature
// (Sérsic b_n) or from independent computations written here (WCSLIB for the WCS, numerical
// integrals of the Moffat profile); tolerances are stated at each assertion.
#include "astroflow/simulate.hpp"

#include <fitsio.h>
#include <gtest/gtest.h>
#include <tbb/global_control.h>
#include <wcslib/wcs.h>
#include <wcslib/wcshdr.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "astroflow/atomic_file.hpp"
#include "astroflow/error.hpp"
#include "astroflow/fits_io.hpp"

namespace astroflow {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(ASTROFLOW_BINARY_DIR) / "test-tmp" / "simulate" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

bool same_pixels(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() &&
         std::equal(a.datastart, a.dataend, b.datastart);
}

// Sky coordinates of FITS pixel (x, y) computed by WCSLIB from the header cards.
std::vector<std::pair<double, double>> wcslib_pixel_to_sky(
    const Header& header, const std::vector<std::pair<double, double>>& pixels) {
  std::string cards = header.to_fits_string();
  int nreject = 0;
  int nwcs = 0;
  wcsprm* wcs = nullptr;
  const int status = wcspih(cards.data(), static_cast<int>(cards.size() / 80), WCSHDR_all, 0,
                            &nreject, &nwcs, &wcs);
  EXPECT_EQ(status, 0);
  EXPECT_GE(nwcs, 1);
  std::vector<std::pair<double, double>> out;
  if (status != 0 || nwcs < 1) return out;
  wcsset(wcs);
  for (const auto& [x, y] : pixels) {
    double pix[2] = {x, y};
    double img[2], phi = 0, theta = 0, world[2];
    int stat = 0;
    wcsp2s(wcs, 1, 2, pix, img, &phi, &theta, world, &stat);
    out.emplace_back(world[0], world[1]);
  }
  wcsvfree(&nwcs, &wcs);
  return out;
}

// Second moment <x^2> of a circular truncated Moffat inside radius r_max, by 1-D integration.
double moffat_moment(const MoffatPsf& psf, double r_max) {
  double num = 0.0;
  double den = 0.0;
  const int steps = 20000;
  for (int k = 0; k < steps; ++k) {
    const double r = (k + 0.5) * r_max / steps;
    const double i = psf.intensity(r) * r;
    num += i * r * r / 2.0;  // <x^2> = <r^2> / 2 for a circular profile
    den += i;
  }
  return num / den;
}

// Flux-weighted centroid, iterated so the window ends up centred on the source.
Moments centroid(const cv::Mat& image, double x, double y, double radius) {
  Moments m = measure_moments(image, x, y, radius);
  for (int i = 0; i < 10; ++i) m = measure_moments(image, m.x_pix, m.y_pix, radius);
  return m;
}

// Asymmetry sum |I - I_rot180| / sum |I| about (x, y) (bilinear rotation).
double asymmetry(const cv::Mat& img, double x, double y) {
  cv::Mat rot;
  const cv::Mat m = cv::getRotationMatrix2D(
      cv::Point2f(static_cast<float>(x), static_cast<float>(y)), 180.0, 1.0);
  cv::warpAffine(img, rot, m, img.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0);
  return cv::sum(cv::abs(img - rot))[0] / cv::sum(cv::abs(img))[0];
}

// ------------------------------------------------------------------------------------------
// Random numbers

TEST(SimRng, SameSeedSameSequenceAndStreamsDiffer) {
  SimRng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const auto va = a.next_u64();
    EXPECT_EQ(va, b.next_u64());
    differs |= va != c.next_u64();
  }
  EXPECT_TRUE(differs);
  SimRng s1 = SimRng::stream(1, 2, 3), s2 = SimRng::stream(1, 2, 4), s3 = SimRng::stream(1, 2, 3);
  const auto v1 = s1.next_u64();
  EXPECT_NE(v1, s2.next_u64());
  EXPECT_EQ(v1, s3.next_u64());
}

TEST(SimRng, DistributionsHaveTheRightMoments) {
  SimRng rng(7);
  const int n = 200000;
  for (double mean : {0.7, 3.5, 11.9, 12.0, 150.0, 5000.0}) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
      const double k = rng.poisson(mean);
      ASSERT_EQ(k, std::floor(k));
      ASSERT_GE(k, 0.0);
      s += k;
      s2 += k * k;
    }
    const double m = s / n;
    const double v = s2 / n - m * m;
    // 5 standard errors of the mean; the variance to 3% (its standard error here is < 1%).
    EXPECT_NEAR(m, mean, 5.0 * std::sqrt(mean / n)) << "mean " << mean;
    EXPECT_NEAR(v / mean, 1.0, 0.03) << "mean " << mean;
  }
  double s = 0, s2 = 0, s4 = 0;
  for (int i = 0; i < n; ++i) {
    const double z = rng.normal();
    s += z;
    s2 += z * z;
    s4 += z * z * z * z;
  }
  EXPECT_NEAR(s / n, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(s2 / n, 1.0, 0.015);
  EXPECT_NEAR(s4 / n, 3.0, 0.1);  // Gaussian kurtosis
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[rng.below(7)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
}

// ------------------------------------------------------------------------------------------
// Profiles

TEST(SimProfiles, SersicBMatchesPublishedValues) {
  // b_n from Ciotti & Bertin (1999), Graham & Driver (2005): b_1 = 1.678347, b_4 = 7.669249;
  // b_0.5 = ln 2 exactly (Gaussian).
  EXPECT_NEAR(sersic_b(0.5), std::log(2.0), 1e-9);
  EXPECT_NEAR(sersic_b(1.0), 1.678347, 1e-6);
  EXPECT_NEAR(sersic_b(4.0), 7.669249, 1e-6);
  for (double n : {0.5, 0.8, 1.3, 2.5, 4.0, 6.0})
    EXPECT_NEAR(sersic_enclosed_fraction(n, 1.0), 0.5, 1e-10) << n;
  // P(1, x) = 1 - exp(-x).
  for (double x : {0.1, 1.0, 3.0, 30.0})
    EXPECT_NEAR(regularized_gamma_p(1.0, x), 1.0 - std::exp(-x), 1e-12);
}

TEST(SimRender, GalaxyFluxAndCentreAreExact) {
  MoffatPsf psf{3.0, 3.0, 5.0};
  for (double n : {0.5, 1.0, 2.5, 4.0, 6.0})
    for (double re : {2.0, 6.0})
      for (double q : {1.0, 0.25}) {
        SersicComponent c;
        c.flux_counts = 1000.0;
        c.sersic_n = n;
        c.r_eff_pix = re;
        c.axis_ratio = q;
        c.theta_deg = 35.0;
        const int size = static_cast<int>(2 * (8 * re + 16));
        c.x_pix = size / 2 + 0.3;
        c.y_pix = size / 2 - 0.4;
        for (int os : {1, 3}) {
          const cv::Mat img = render_galaxy({c}, psf, size, size, os);
          const double sum = cv::sum(img)[0];
          // Sub-pixel integration keeps the flux of the truncated profile to 0.6% even for
          // n = 6, r_eff = 2 px, b/a = 0.25 (measured 0.45% at os = 1).
          EXPECT_NEAR(sum / c.flux_counts, 1.0, 0.006)
              << "n=" << n << " re=" << re << " q=" << q << " os=" << os;
          const Moments m = measure_moments(img, c.x_pix, c.y_pix, 1e9);
          // os = 3 centres to 0.01 px; os = 1 aliases the cusp of n >= 4 by up to 0.05 px.
          const double tol = os == 3 ? 0.01 : 0.06;
          EXPECT_NEAR(m.x_pix, c.x_pix, tol) << "n=" << n << " re=" << re << " os=" << os;
          EXPECT_NEAR(m.y_pix, c.y_pix, tol) << "n=" << n << " re=" << re << " os=" << os;
        }
      }
}

TEST(SimRender, CoarseGridsAgreeWithAFineGrid) {
  // The cost/accuracy trade-off of --oversample, for the smallest, cuspiest galaxies on the
  // narrowest PSF: measured max |difference| / peak against oversample 7 was 0.5% (n = 1),
  // 4.8% (n = 4), 6.9% (n = 6) at oversample 1 and below 1.6% for all at oversample 2.
  MoffatPsf psf{2.5, 3.0, 4.0};
  for (double n : {1.0, 4.0, 6.0}) {
    SersicComponent c;
    c.sersic_n = n;
    c.r_eff_pix = 2.0;
    c.axis_ratio = 0.6;
    c.x_pix = 31.2;
    c.y_pix = 32.4;
    const cv::Mat fine = render_galaxy({c}, psf, 64, 64, 7);
    double peak = 0.0;
    cv::minMaxLoc(fine, nullptr, &peak);
    EXPECT_LT(cv::norm(render_galaxy({c}, psf, 64, 64, 2), fine, cv::NORM_INF) / peak, 0.02)
        << "n=" << n;
    EXPECT_LT(cv::norm(render_galaxy({c}, psf, 64, 64, 1), fine, cv::NORM_INF) / peak, 0.08)
        << "n=" << n;
  }
}

TEST(SimRender, MoffatFluxAndSecondMoments) {
  for (double fwhm : {2.5, 4.0})
    for (double beta : {2.5, 4.5}) {
      const MoffatPsf psf{fwhm, beta, 4.0};
      cv::Mat img(81, 81, CV_32F, cv::Scalar(0));
      add_moffat(img, psf, 40.3, 39.8, 500.0);
      EXPECT_NEAR(cv::sum(img)[0] / 500.0, 1.0, 0.003);
      const double r = 2.0 * fwhm;
      const Moments m = measure_moments(img, 40.3, 39.8, r);
      const double expected = moffat_moment(psf, r);
      // Pixelisation adds 1/12 pix^2 to a second moment.
      EXPECT_NEAR(m.ixx / (expected + 1.0 / 12.0), 1.0, 0.03) << fwhm << " " << beta;
      EXPECT_NEAR(m.iyy / (expected + 1.0 / 12.0), 1.0, 0.03) << fwhm << " " << beta;
      EXPECT_NEAR(m.ixy, 0.0, 0.01);
    }
}

TEST(SimRender, TrailSpikesAndTracksConserveFlux) {
  const MoffatPsf psf{3.0, 3.0, 4.0};
  cv::Mat img(200, 200, CV_32F, cv::Scalar(0));
  add_trail(img, psf, 50.0, 60.0, 140.0, 130.0, 1000.0);
  EXPECT_NEAR(cv::sum(img)[0], 1000.0, 10.0);
  img.setTo(0);
  add_diffraction_spikes(img, 100.0, 100.0, 1000.0, 20.0, 60.0, 0.7);
  EXPECT_NEAR(cv::sum(img)[0], 1000.0, 20.0);
  img.setTo(0);
  add_sharp_track(img, 10.2, 10.7, 30.5, 18.1, 100.0);
  EXPECT_NEAR(cv::sum(img)[0], 100.0, 1e-3);
  double peak = 0;
  cv::minMaxLoc(img, nullptr, &peak);
  EXPECT_GT(peak, 100.0 / 25.0);  // sharp: a ~22 px track puts > 1/25 of its flux in a pixel
}

TEST(SimRender, SnrAndFluxForSnrAreInverse) {
  for (double snr : {15.0, 100.0, 500.0})
    for (int pixels : {10, 300}) {
      const double f = flux_for_snr(snr, pixels, 0.05, 2000.0, 5.0);
      EXPECT_NEAR(integrated_snr(f, pixels, 0.05, 2000.0, 5.0), snr, 1e-9 * snr);
    }
  // Background-limited: S/N = F / (sqrt(N) sigma).
  const double sigma = std::sqrt(0.05 * 2000.0 + 25.0) / 2000.0;
  EXPECT_NEAR(integrated_snr(1e-9, 100, 0.05, 2000.0, 5.0), 1e-9 / (10.0 * sigma), 1e-12);
}

TEST(SimWcs, TanProjectionMatchesWcslib) {
  for (double pa : {0.0, 30.0})
    for (double dec : {2.2, -75.0}) {
      TanWcsParams p;
      p.crval1_deg = 150.1;
      p.crval2_deg = dec;
      p.crpix1 = 1024.5;
      p.crpix2 = 1024.5;
      p.position_angle_deg = pa;
      Header h;
      write_tan_wcs(h, p);
      const std::vector<std::pair<double, double>> pix = {
          {1.0, 1.0}, {1024.5, 1024.5}, {2048.0, 1.0}, {300.3, 1900.7}};
      const auto sky = wcslib_pixel_to_sky(h, pix);
      ASSERT_EQ(sky.size(), pix.size());
      for (std::size_t i = 0; i < pix.size(); ++i) {
        const auto [ra, de] = tan_pixel_to_sky(p, pix[i].first, pix[i].second);
        EXPECT_NEAR(ra, sky[i].first, 1e-9) << pa << " " << dec << " " << i;
        EXPECT_NEAR(de, sky[i].second, 1e-9) << pa << " " << dec << " " << i;
      }
    }
  // East is left at PA 0: RA grows towards smaller x.
  TanWcsParams p;
  p.crpix1 = 10;
  p.crpix2 = 10;
  EXPECT_GT(tan_pixel_to_sky(p, 5, 10).first, tan_pixel_to_sky(p, 15, 10).first);
}

TEST(SimOptions, ParseImageSize) {
  EXPECT_EQ(parse_image_size("2048"), std::make_pair(2048, 2048));
  EXPECT_EQ(parse_image_size("4096x1024"), std::make_pair(4096, 1024));
  EXPECT_THROW((void)parse_image_size("12x"), FatalError);
  EXPECT_THROW((void)parse_image_size("-3"), FatalError);
  FieldOptions bad;
  bad.gain_e_per_count = 0;
  try {
    (void)simulate_field(bad);
    FAIL() << "expected FatalError";
  } catch (const FatalError& e) {
    EXPECT_NE(std::string(e.what()).find("--gain"), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------------------------------
// Field

FieldOptions small_field(std::uint64_t seed) {
  FieldOptions o;
  o.seed = seed;
  o.width_pix = 400;
  o.height_pix = 360;
  o.galaxy_density_arcmin2 = 120.0;  // ~17 galaxies
  o.galaxy_mag_faint = 27.0;
  o.n_stars = 8;
  o.star_mag_bright = 18.0;
  o.star_mag_faint = 22.0;
  o.blend_fraction = 0.2;
  o.n_cosmic_rays = 10;
  o.n_hot_pixels = 5;
  return o;
}

// Few sources on a larger image, so that most are isolated: for the centroid and flux tests.
FieldOptions sparse_field(std::uint64_t seed) {
  FieldOptions o = small_field(seed);
  o.width_pix = 800;
  o.height_pix = 800;
  o.galaxy_density_arcmin2 = 12.0;  // ~8 galaxies
  o.galaxy_mag_bright = 19.0;
  o.galaxy_mag_faint = 23.0;
  o.n_stars = 5;
  o.spike_mag = 15.0;
  o.blend_fraction = 0.0;
  // Single-Sérsic sources only: clumps and merger nuclei move the light centroid off the
  // catalogued (flux-weighted) centre by design, and the centroid/flux tests are about Sérsic
  // rendering. Irregulars are tested in TruthClassMapFollowsSegmentationAndMorphology.
  o.irregular_density_arcmin2 = 0.0;
  return o;
}

class SimField : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    field_ = new FieldSimulation(simulate_field(small_field(11)));
    sparse_ = new FieldSimulation(simulate_field(sparse_field(5)));
  }
  static void TearDownTestSuite() {
    delete field_;
    field_ = nullptr;
    delete sparse_;
    sparse_ = nullptr;
  }
  static FieldSimulation* field_;
  static FieldSimulation* sparse_;
};
FieldSimulation* SimField::field_ = nullptr;
FieldSimulation* SimField::sparse_ = nullptr;

// Sources whose light does not reach within `margin` px of source i's window.
std::vector<std::size_t> isolated(const FieldSimulation& f, double window_of_reff, double min_snr) {
  std::vector<std::size_t> out;
  const double psf_r = f.psf.truncation_radius_pix();
  const auto reach = [&](const TruthSource& s) {
    return s.is_star ? (s.mag < 19.5 ? 210.0 : psf_r) : 8.0 * s.r_eff_pix + psf_r;
  };
  for (std::size_t i = 0; i < f.sources.size(); ++i) {
    const TruthSource& s = f.sources[i];
    if (s.snr < min_snr || (s.is_star && s.mag < 19.5)) continue;
    const double window = s.is_star ? 3.0 * f.psf.fwhm_pix : window_of_reff * s.r_eff_pix + psf_r;
    if (s.x_pix - window < 0 || s.y_pix - window < 0 || s.x_pix + window > f.image.cols - 1 ||
        s.y_pix + window > f.image.rows - 1)
      continue;
    bool alone = true;
    for (std::size_t j = 0; j < f.sources.size() && alone; ++j) {
      if (j == i) continue;
      const TruthSource& o = f.sources[j];
      const double d = std::hypot(o.x_pix - s.x_pix, o.y_pix - s.y_pix);
      if (d < window + reach(o)) alone = false;
    }
    if (alone) out.push_back(i);
  }
  return out;
}

TEST_F(SimField, SameSeedSameBytesOtherSeedDiffers) {
  const FieldSimulation again = simulate_field(small_field(11));
  EXPECT_TRUE(same_pixels(field_->image, again.image));
  EXPECT_TRUE(same_pixels(field_->model, again.model));
  EXPECT_TRUE(same_pixels(field_->truthseg, again.truthseg));
  FieldSimulation serial;
  {
    // The thread count must not change a byte.
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    serial = simulate_field(small_field(11));
  }
  EXPECT_TRUE(same_pixels(field_->image, serial.image));
  const FieldSimulation other = simulate_field(small_field(12));
  EXPECT_FALSE(same_pixels(field_->image, other.image));
}

TEST_F(SimField, FilesAreByteIdenticalAcrossRuns) {
  FieldOptions o = small_field(11);
  o.output_dir = fresh_dir("field-a").string();
  const auto paths_a = write_field(*field_, o);
  FieldOptions o2 = o;
  o2.output_dir = fresh_dir("field-b").string();
  const auto paths_b = write_field(simulate_field(o2), o2);
  ASSERT_EQ(paths_a.size(), 8U);
  ASSERT_EQ(paths_a.size(), paths_b.size());
  for (std::size_t i = 0; i < paths_a.size(); ++i)
    EXPECT_EQ(sha256_file(paths_a[i]), sha256_file(paths_b[i])) << paths_a[i];
  const Catalog truth = read_fits_catalog(o.output_dir + "/field.truth.fits");
  EXPECT_EQ(truth.rows(), field_->sources.size());
  for (const char* col :
       {"ID", "X_IMAGE", "Y_IMAGE", "ALPHA_J2000", "DELTA_J2000", "FLUX", "MAG", "TYPE", "SERSIC_N",
        "R_EFF", "AXIS_RATIO", "THETA", "SNR", "MORPH", "MORPH_ID"})
    EXPECT_TRUE(truth.has(col)) << col;
  std::ifstream csv(o.output_dir + "/field.truth.csv");
  std::string header_line;
  std::getline(csv, header_line);
  EXPECT_EQ(header_line.rfind("ID,X_IMAGE,Y_IMAGE,ALPHA_J2000", 0), 0U) << header_line;
}

TEST_F(SimField, ContentsLookLikeTheOptionsAsked) {
  const FieldSimulation& f = *field_;
  int stars = 0, blends = 0;
  for (const auto& s : f.sources) {
    stars += s.is_star ? 1 : 0;
    blends += s.blend_parent > 0 ? 1 : 0;
    if (!s.is_star) {
      EXPECT_GE(s.sersic_n, 0.5);
      EXPECT_LE(s.sersic_n, 6.0);
      EXPECT_GE(s.r_eff_pix, 2.0);
      EXPECT_LE(s.r_eff_pix, 15.0);
      EXPECT_GE(s.axis_ratio, 0.2);
    }
    EXPECT_NEAR(s.mag, 25.0 - 2.5 * std::log10(s.flux_counts), 1e-9);
  }
  EXPECT_EQ(stars, 8);
  EXPECT_GE(blends, 1);
  EXPECT_GE(f.psf.fwhm_pix, 2.5);
  EXPECT_LE(f.psf.fwhm_pix, 4.0);
  for (const char* key : {"GAIN", "MAGZERO", "EXPTIME", "SKY", "RDNOISE", "SEEING"})
    EXPECT_TRUE(f.header.contains(key)) << key;
  EXPECT_NEAR(*f.header.get_double("SEEING"), f.psf.fwhm_pix * 0.06, 1e-9);
  // Cosmic rays and hot pixels are in the image but not in the model.
  EXPECT_GT(cv::countNonZero(f.artifact_mask), 10);
  EXPECT_EQ(f.artifacts.rows(), 15U);
}

TEST_F(SimField, TruthPositionsMatchModelCentroids) {
  const FieldSimulation& f = *sparse_;
  const auto chosen = isolated(f, 2.0, 30.0);
  ASSERT_GE(chosen.size(), 2U) << "too few isolated bright sources to test";
  for (std::size_t i : chosen) {
    const TruthSource& s = f.sources[i];
    // Start from the nearest pixel, not the truth, and iterate the window onto the source.
    const double radius =
        s.is_star ? 3.0 * f.psf.fwhm_pix : 2.0 * s.r_eff_pix + 2.0 * f.psf.fwhm_pix;
    const Moments m = centroid(f.model, std::round(s.x_pix), std::round(s.y_pix), radius);
    EXPECT_NEAR(m.x_pix, s.x_pix, 0.1) << "id " << s.id;
    EXPECT_NEAR(m.y_pix, s.y_pix, 0.1) << "id " << s.id;
  }
}

TEST_F(SimField, IsolatedGalaxyModelFluxMatchesTruthFlux) {
  const FieldSimulation& f = *sparse_;
  int tested = 0;
  for (std::size_t i : isolated(f, 8.0, 0.0)) {
    const TruthSource& s = f.sources[i];
    if (s.is_star) continue;
    const double radius = 8.0 * s.r_eff_pix + f.psf.truncation_radius_pix() + 1.0;
    const ApertureSum ap = aperture_sum(f.model, s.x_pix, s.y_pix, radius);
    EXPECT_NEAR(ap.flux / s.flux_counts, 1.0, 0.02) << "id " << s.id << " n " << s.sersic_n;
    ++tested;
  }
  EXPECT_GE(tested, 2);
}

TEST_F(SimField, NoiseRmsMatchesSkyAndReadNoise) {
  const FieldSimulation& f = *field_;
  const double gain = *f.header.get_double("GAIN");
  const double rn = *f.header.get_double("RDNOISE");
  const auto thr = static_cast<float>(1e-3 * f.noise_rms_counts);
  double s = 0, s2 = 0, expected_var = 0;
  long n = 0;
  for (int y = 0; y < f.image.rows; ++y)
    for (int x = 0; x < f.image.cols; ++x) {
      if (f.model.at<float>(y, x) > thr || f.artifact_mask.at<std::uint8_t>(y, x) != 0) continue;
      const double sky = f.sky.at<float>(y, x);
      const double r = f.image.at<float>(y, x) - sky;
      s += r;
      s2 += r * r;
      expected_var += (sky * gain + rn * rn) / (gain * gain);
      ++n;
    }
  ASSERT_GT(n, 10000);
  const double mean = s / n;
  const double rms = std::sqrt(s2 / n - mean * mean);
  EXPECT_NEAR(rms / std::sqrt(expected_var / n), 1.0, 0.03);
  EXPECT_NEAR(mean, 0.0, 5.0 * rms / std::sqrt(static_cast<double>(n)));
}

TEST_F(SimField, HeaderWcsMapsTruthPixelsToTruthSky) {
  const FieldSimulation& f = *field_;
  std::vector<std::pair<double, double>> pix;
  for (const auto& s : f.sources) pix.emplace_back(s.x_pix + 1.0, s.y_pix + 1.0);
  const auto sky = wcslib_pixel_to_sky(f.header, pix);
  ASSERT_EQ(sky.size(), f.sources.size());
  for (std::size_t i = 0; i < sky.size(); ++i) {
    EXPECT_NEAR(sky[i].first, f.sources[i].ra_deg, 1e-9);
    EXPECT_NEAR(sky[i].second, f.sources[i].dec_deg, 1e-9);
  }
  const auto& ra = f.truth.get<double>("ALPHA_J2000");
  ASSERT_FALSE(ra.empty());
  EXPECT_EQ(ra.front(), f.sources.front().ra_deg);
}

TEST_F(SimField, TruthSegmentationFollowsTheModel) {
  const FieldSimulation& f = *field_;
  const auto thr = static_cast<float>(0.5 * f.noise_rms_counts);
  int max_id = static_cast<int>(f.sources.size());
  long labelled = 0;
  for (int y = 0; y < f.model.rows; ++y)
    for (int x = 0; x < f.model.cols; ++x) {
      const int id = f.truthseg.at<std::int32_t>(y, x);
      ASSERT_GE(id, 0);
      ASSERT_LE(id, max_id);
      // A label needs one source above the threshold, so the summed model is above it too.
      if (f.model.at<float>(y, x) <= thr) {
        ASSERT_EQ(id, 0) << x << "," << y;
      }
      labelled += id > 0 ? 1 : 0;
    }
  EXPECT_GT(labelled, 100);
  for (std::size_t i : isolated(f, 2.0, 30.0)) {
    const TruthSource& s = f.sources[i];
    EXPECT_EQ(f.truthseg.at<std::int32_t>(static_cast<int>(std::lround(s.y_pix)),
                                          static_cast<int>(std::lround(s.x_pix))),
              s.id);
  }
}

TEST_F(SimField, TruthClassMapFollowsSegmentationAndMorphology) {
  FieldOptions o = small_field(11);
  o.irregular_density_arcmin2 = 40.0;  // a few irregulars on this small field
  const FieldSimulation f = simulate_field(o);
  std::map<int, int> per_class;
  for (const TruthSource& s : f.sources) {
    ++per_class[s.morph];
    if (s.is_star) {
      EXPECT_EQ(s.morph, kMorphPointSource);
    } else if (s.morph != kMorphIrregular) {
      EXPECT_EQ(s.morph, s.sersic_n >= 2.5 ? kMorphSpheroid : kMorphDisk) << s.id;
    }
  }
  EXPECT_GE(per_class[kMorphIrregular], 2);
  EXPECT_GE(per_class[kMorphSpheroid], 1);
  EXPECT_GE(per_class[kMorphDisk], 1);
  ASSERT_EQ(f.truthclass.type(), CV_8U);
  for (int y = 0; y < f.truthseg.rows; ++y)
    for (int x = 0; x < f.truthseg.cols; ++x) {
      const int id = f.truthseg.at<std::int32_t>(y, x);
      const int expected =
          id == 0 ? kMorphBackground : f.sources[static_cast<std::size_t>(id - 1)].morph;
      ASSERT_EQ(f.truthclass.at<std::uint8_t>(y, x), expected) << x << "," << y;
    }
  // The irregulars come from their own stream: the other sources are unchanged.
  std::size_t others = 0;
  for (const TruthSource& s : field_->sources) {
    if (s.morph == kMorphIrregular) continue;
    ASSERT_LT(others, f.sources.size());
    EXPECT_EQ(s.x_pix, f.sources[others].x_pix);
    EXPECT_EQ(s.mag, f.sources[others].mag);
    ++others;
  }
  EXPECT_EQ(field_morph_names()[kMorphIrregular], "irregular");
  EXPECT_EQ(field_morph_names()[kMorphPointSource], "point_source");
}

TEST(SimFieldSaturation, ClipsAtTheFullWellAndBleedsTheChargeAlongColumns) {
  FieldOptions o = small_field(11);
  o.star_mag_bright = 14.0;  // two stars whose cores hold far more than the full well
  o.star_mag_faint = 15.0;
  o.n_stars = 2;
  const FieldSimulation plain = simulate_field(o);
  const float level = 50.0F;
  o.saturation_counts = level;
  const FieldSimulation sat = simulate_field(o);
  EXPECT_EQ(sat.header.get_double("SATURATE").value_or(0.0), level);
  EXPECT_FALSE(plain.header.get_double("SATURATE").has_value());
  double max_value = 0.0;
  cv::minMaxLoc(sat.image, nullptr, &max_value);
  EXPECT_EQ(max_value, level);
  int over = 0;
  int at_level = 0;
  int columns = 0;
  for (int x = 0; x < o.width_pix; ++x) {
    double sum_plain = 0.0;
    double sum_sat = 0.0;
    bool touched = false;
    for (int y = 0; y < o.height_pix; ++y) {
      const float p = plain.image.at<float>(y, x);
      const float q = sat.image.at<float>(y, x);
      sum_plain += p;
      sum_sat += q;
      if (p > level) {
        ++over;
        EXPECT_EQ(q, level) << x << "," << y;
      }
      at_level += q == level ? 1 : 0;
      touched = touched || p != q;
    }
    if (!touched) continue;
    ++columns;
    // The charge stays in its column (none reaches the image edges here).
    EXPECT_NEAR(sum_sat, sum_plain, 1e-4 * sum_plain) << "column " << x;
  }
  ASSERT_GT(over, 0);
  EXPECT_GT(at_level, 2 * over);  // trails: more full pixels than the clipped cores
  EXPECT_GE(columns, 2);
  EXPECT_EQ(sat.truth.rows(), plain.truth.rows());  // the truth is the sky, not the detector
}

// ------------------------------------------------------------------------------------------
// Cutouts

TEST(SimCutouts, PlanIsBalancedShuffledAndSeeded) {
  CutoutOptions o;
  o.n = 103;
  const auto plan = cutout_class_plan(o);
  std::map<CutoutClass, int> counts;
  for (auto c : plan) ++counts[c];
  EXPECT_EQ(counts[CutoutClass::kSpheroid], 21);
  EXPECT_EQ(counts[CutoutClass::kDisk], 21);
  EXPECT_EQ(counts[CutoutClass::kIrregular], 21);
  EXPECT_EQ(counts[CutoutClass::kPointSource], 20);
  EXPECT_EQ(counts[CutoutClass::kArtifact], 20);
  int in_order = 0;
  for (std::size_t i = 0; i < plan.size(); ++i) in_order += static_cast<int>(plan[i]) == int(i % 5);
  EXPECT_LT(in_order, 50);
  EXPECT_EQ(plan, cutout_class_plan(o));
  o.seed = 2;
  EXPECT_NE(plan, cutout_class_plan(o));
}

class SimCutoutClasses : public ::testing::Test {
 protected:
  static constexpr int kPerClass = 40;
  static void SetUpTestSuite() {
    stamps_ = new std::vector<CutoutStamp>();
    CutoutOptions o;
    for (int c = 0; c < kCutoutClassCount; ++c)
      for (int k = 0; k < kPerClass; ++k)
        stamps_->push_back(render_cutout(o, c * kPerClass + k, static_cast<CutoutClass>(c)));
  }
  static void TearDownTestSuite() {
    delete stamps_;
    stamps_ = nullptr;
  }
  static std::vector<const CutoutStamp*> of(CutoutClass c) {
    std::vector<const CutoutStamp*> out;
    for (const auto& s : *stamps_)
      if (s.label.cls == c) out.push_back(&s);
    return out;
  }
  static std::vector<CutoutStamp>* stamps_;
};
std::vector<CutoutStamp>* SimCutoutClasses::stamps_ = nullptr;

// A centred, PSF-like source: the brightest pixel within 2 px of the centre, and second
// moments within 25% of the PSF's, with ellipticity below 0.15.
bool has_centred_psf_like_source(const CutoutStamp& s) {
  const cv::Mat& img = s.source_model;
  const double cx = 0.5 * (img.cols - 1);
  const double cy = 0.5 * (img.rows - 1);
  cv::Point peak;
  cv::minMaxLoc(img, nullptr, nullptr, nullptr, &peak);
  if (std::hypot(peak.x - cx, peak.y - cy) > 2.5) return false;
  const MoffatPsf psf{s.label.psf_fwhm_pix, s.label.psf_beta, 4.0};
  const double r = 2.0 * psf.fwhm_pix;
  const Moments m = measure_moments(img, peak.x, peak.y, r);
  const double expected = moffat_moment(psf, r) + 1.0 / 12.0;
  const double e = std::hypot(m.ixx - m.iyy, 2.0 * m.ixy) / (m.ixx + m.iyy);
  return std::abs(m.ixx / expected - 1.0) < 0.25 && std::abs(m.iyy / expected - 1.0) < 0.25 &&
         e < 0.15;
}

TEST_F(SimCutoutClasses, LabelsObeyTheClassDefinitions) {
  for (const CutoutStamp* s : of(CutoutClass::kSpheroid)) {
    EXPECT_GE(s->label.sersic_n, 2.5);
    EXPECT_LE(s->label.sersic_n, 6.0);
    EXPECT_GE(s->label.axis_ratio, 0.5);
    EXPECT_LE(s->label.axis_ratio, 1.0);
  }
  int bulges = 0, arms = 0;
  for (const CutoutStamp* s : of(CutoutClass::kDisk)) {
    EXPECT_GE(s->label.sersic_n, 0.7);
    EXPECT_LE(s->label.sersic_n, 1.5);
    EXPECT_GE(s->label.axis_ratio, 0.2);
    EXPECT_LT(s->label.bulge_fraction, 0.3);
    bulges += s->label.bulge_fraction > 0 ? 1 : 0;
    arms += s->label.spiral_arms ? 1 : 0;
  }
  EXPECT_GT(bulges, 5);
  EXPECT_GT(arms, 5);
  int clumpy = 0, mergers = 0;
  for (const CutoutStamp* s : of(CutoutClass::kIrregular)) {
    if (s->label.subtype == "clumpy") {
      ++clumpy;
      EXPECT_GE(s->label.clump_fraction, 0.25);
      EXPECT_GE(s->label.n_clumps, 2);
      EXPECT_LE(s->label.n_clumps, 6);
    } else {
      ASSERT_EQ(s->label.subtype, "merger");
      ++mergers;
      EXPECT_GE(s->label.companion_flux_ratio, 0.4);
      EXPECT_LE(s->label.companion_sep_pix, 1.5 * s->label.r_eff_pix + 1e-9);
    }
  }
  EXPECT_GT(clumpy, 5);
  EXPECT_GT(mergers, 5);
  for (const auto& s : *stamps_) {
    EXPECT_GE(s.label.snr, 15.0);
    EXPECT_LE(s.label.snr, 500.0);
    EXPECT_GE(s.label.psf_fwhm_pix, 2.5);
    EXPECT_LE(s.label.psf_fwhm_pix, 4.0);
    EXPECT_EQ(s.image.rows, 64);
    EXPECT_EQ(s.image.cols, 64);
    EXPECT_TRUE(s.header.contains("CD1_1"));
    EXPECT_TRUE(s.header.contains("MAGZERO"));
  }
}

TEST_F(SimCutoutClasses, IrregularsAreAsymmetricSpheroidsAreNot) {
  std::vector<double> irr, sph;
  for (const CutoutStamp* s : of(CutoutClass::kIrregular))
    irr.push_back(asymmetry(s->source_model, s->label.x_pix, s->label.y_pix));
  for (const CutoutStamp* s : of(CutoutClass::kSpheroid))
    sph.push_back(asymmetry(s->source_model, s->label.x_pix, s->label.y_pix));
  std::sort(irr.begin(), irr.end());
  std::sort(sph.begin(), sph.end());
  // Irregulars are more asymmetric than the most asymmetric spheroid (whose residual comes from
  // the stamp edge and bilinear rotation only), all but 1 in 20: a clumpy disk whose few clumps
  // sit evenly around its flux-weighted centre (the stamp centre) is nearly symmetric about it.
  // Of the 40 irregulars here (CutoutOptions' default seed), 1 is: 0.038 against 0.051.
  std::size_t below = 0;
  for (double a : irr) below += a <= sph.back() ? 1 : 0;
  EXPECT_LE(below, irr.size() / 20);
  EXPECT_GT(irr[irr.size() / 2], 0.15);
}

TEST_F(SimCutoutClasses, IrregularsSitAtTheirFluxWeightedCentre) {
  // The catalogued position of an irregular is its flux-weighted centre: the clumps of a clumpy
  // disk move with the disk so that they do not pull the light centroid off it (mergers are
  // placed so by construction). Measured on the noise-free source over the whole 64 x 64 stamp,
  // which cuts the wings of the largest ones: median offset 0.004 px, largest 0.42 px (before
  // the clumps moved with the disk: median 0.3 px, largest 4.4 px).
  std::vector<double> off;
  for (const CutoutStamp* s : of(CutoutClass::kIrregular)) {
    const cv::Moments m = cv::moments(s->source_model, false);
    off.push_back(std::hypot(m.m10 / m.m00 - s->label.x_pix, m.m01 / m.m00 - s->label.y_pix));
  }
  ASSERT_FALSE(off.empty());
  std::sort(off.begin(), off.end());
  EXPECT_LT(off[off.size() / 2], 0.05);
  EXPECT_LT(off.back(), 0.5);
}

TEST_F(SimCutoutClasses, PointSourcesArePsfLikeArtifactsAreNot) {
  for (const CutoutStamp* s : of(CutoutClass::kPointSource)) {
    EXPECT_TRUE(has_centred_psf_like_source(*s)) << s->label.index;
    const MoffatPsf psf{s->label.psf_fwhm_pix, s->label.psf_beta, 4.0};
    const double r = 2.0 * psf.fwhm_pix;
    const Moments m = measure_moments(s->source_model, s->label.x_pix, s->label.y_pix, r);
    EXPECT_NEAR(m.ixx / (moffat_moment(psf, r) + 1.0 / 12.0), 1.0, 0.03);
    EXPECT_NEAR(m.iyy / (moffat_moment(psf, r) + 1.0 / 12.0), 1.0, 0.03);
  }
  std::map<std::string, int> kinds;
  for (const CutoutStamp* s : of(CutoutClass::kArtifact)) {
    EXPECT_FALSE(has_centred_psf_like_source(*s)) << s->label.index << " " << s->label.subtype;
    ++kinds[s->label.subtype];
  }
  EXPECT_EQ(kinds.size(), 5U);
}

TEST_F(SimCutoutClasses, SnrIsTheDrawnValue) {
  // Recompute the S/N of galaxies and stars from the noiseless model and the documented
  // aperture (1.5 r_eff or 1.5 FWHM).
  for (const auto& s : *stamps_) {
    if (s.label.cls == CutoutClass::kArtifact) continue;
    const double radius = s.label.cls == CutoutClass::kPointSource ? 1.5 * s.label.psf_fwhm_pix
                                                                   : 1.5 * s.label.r_eff_pix;
    const ApertureSum ap = aperture_sum(s.source_model, s.label.x_pix, s.label.y_pix, radius);
    EXPECT_NEAR(integrated_snr(ap.flux, ap.pixels, s.label.sky_counts, 2000.0, 5.0) / s.label.snr,
                1.0, 1e-4);
  }
}

TEST(SimCutouts, ShapeRangesWidenToTheFieldsGalaxies) {
  // The field calls every galaxy of n < 2.5 a disk and draws b/a in [0.2, 1]; these options let
  // the cutouts cover the same shapes (models/classify/train.sh).
  CutoutOptions o;
  o.shapes.disk_sersic_min = 0.5;
  o.shapes.disk_sersic_max = 2.5;
  o.shapes.spheroid_axis_ratio_min = 0.2;
  int low_n = 0, high_n = 0, flat = 0;
  for (int k = 0; k < 120; ++k) {
    const CutoutLabel d = render_cutout(o, k, CutoutClass::kDisk).label;
    EXPECT_GE(d.sersic_n, 0.5);
    EXPECT_LE(d.sersic_n, 2.5);
    low_n += d.sersic_n < 0.7 ? 1 : 0;
    high_n += d.sersic_n > 1.5 ? 1 : 0;
    const CutoutLabel s = render_cutout(o, k, CutoutClass::kSpheroid).label;
    EXPECT_GE(s.axis_ratio, 0.2);
    EXPECT_GE(s.sersic_n, 2.5);
    flat += s.axis_ratio < 0.5 ? 1 : 0;
  }
  // Uniform draws: about 12, 60 and 45 of 120 fall outside the default ranges.
  EXPECT_GT(low_n, 3);
  EXPECT_GT(high_n, 30);
  EXPECT_GT(flat, 25);
  // Only the ranges differ: the same stamp index draws the same size, PSF and S/N.
  const CutoutLabel wide = render_cutout(o, 7, CutoutClass::kDisk).label;
  const CutoutLabel narrow = render_cutout(CutoutOptions{}, 7, CutoutClass::kDisk).label;
  EXPECT_EQ(wide.r_eff_pix, narrow.r_eff_pix);
  EXPECT_EQ(wide.axis_ratio, narrow.axis_ratio);
  EXPECT_EQ(wide.psf_fwhm_pix, narrow.psf_fwhm_pix);
  EXPECT_NE(wide.sersic_n, narrow.sersic_n);

  o.shapes.disk_sersic_max = 3.0;  // n >= 2.5 is a spheroid
  EXPECT_THROW((void)render_cutout(o, 0, CutoutClass::kDisk), FatalError);
}

TEST(SimCutouts, StrayArtifactsAddOnlyOffCentreHitsToTheNoisyStamp) {
  // --stray-artifacts 1: every stamp gets 1-3 cosmic rays or hot pixels, added after the noise
  // and at least 5 px from the centre; the models and the noise are those of --stray-artifacts 0.
  CutoutOptions plain;
  CutoutOptions stray = plain;
  stray.stray_artifact_fraction = 1.0;
  int with_hits = 0;
  for (int i = 0; i < 50; ++i) {
    const auto cls = static_cast<CutoutClass>(i % kCutoutClassCount);
    const CutoutStamp a = render_cutout(plain, i, cls);
    const CutoutStamp b = render_cutout(stray, i, cls);
    EXPECT_EQ(a.label.n_stray_artifacts, 0);
    EXPECT_EQ(cv::norm(a.model, b.model, cv::NORM_INF), 0.0);
    EXPECT_EQ(cv::norm(a.source_model, b.source_model, cv::NORM_INF), 0.0);
    const cv::Mat diff = b.image - a.image;
    double lo = 0.0;
    cv::minMaxLoc(diff, &lo);
    EXPECT_GE(lo, 0.0) << i;
    double near_centre = 0.0;
    int hit_pixels = 0;
    for (int y = 0; y < diff.rows; ++y) {
      for (int x = 0; x < diff.cols; ++x) {
        const float v = diff.at<float>(y, x);
        if (v <= 0.0f) continue;
        ++hit_pixels;
        // Bilinear deposits reach one pixel beyond the track.
        if (std::hypot(x - b.label.x_pix, y - b.label.y_pix) < 5.0 - 1.5) near_centre += v;
      }
    }
    EXPECT_EQ(near_centre, 0.0) << i;
    // A hit that would come near the centre is dropped, so 0-3 are kept.
    EXPECT_LE(b.label.n_stray_artifacts, 3);
    EXPECT_EQ(hit_pixels > 0, b.label.n_stray_artifacts > 0) << i;
    with_hits += b.label.n_stray_artifacts > 0;
  }
  EXPECT_GE(with_hits, 40);
  stray.stray_artifact_fraction = 1.5;
  EXPECT_THROW((void)render_cutout(stray, 0, CutoutClass::kDisk), FatalError);
}

TEST(SimCutoutFiles, SeededFilesCubeAndLabels) {
  CutoutOptions o;
  o.n = 12;
  o.output_dir = fresh_dir("cut-a").string();
  const auto a = write_cutouts(o);
  CutoutOptions ob = o;
  ob.output_dir = fresh_dir("cut-b").string();
  CutoutRunResult b;
  {
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    b = write_cutouts(ob);
  }
  ASSERT_EQ(a.paths.size(), 14U);  // 12 stamps + labels.fits + labels.csv
  for (std::size_t i = 0; i < a.paths.size(); ++i)
    EXPECT_EQ(sha256_file(a.paths[i]), sha256_file(b.paths[i])) << a.paths[i];
  CutoutOptions oc = o;
  oc.seed = 99;
  oc.output_dir = fresh_dir("cut-c").string();
  const auto c = write_cutouts(oc);
  EXPECT_NE(sha256_file(a.paths[0]), sha256_file(c.paths[0]));

  const Catalog labels = read_fits_catalog(o.output_dir + "/labels.fits");
  ASSERT_EQ(labels.rows(), 12U);
  const auto& ids = labels.get<std::int32_t>("CLASS_ID");
  std::vector<int> per(5, 0);
  for (auto id : ids) ++per[static_cast<std::size_t>(id)];
  // 12 = 5 x 2 + 2: the first two classes get the extra stamps.
  EXPECT_EQ(per, (std::vector<int>{3, 3, 2, 2, 2}));

  // The cube holds the same pixels as the stamp files.
  CutoutOptions od = o;
  od.single_file = true;
  od.output_dir = fresh_dir("cut-cube").string();
  const auto d = write_cutouts(od);
  fitsfile* f = nullptr;
  int status = 0;
  const std::string cube = od.output_dir + "/cutouts.fits";
  fits_open_file(&f, cube.c_str(), READONLY, &status);
  ASSERT_EQ(status, 0);
  int naxis = 0;
  long naxes[3] = {0, 0, 0};
  fits_get_img_dim(f, &naxis, &status);
  fits_get_img_size(f, 3, naxes, &status);
  EXPECT_EQ(naxis, 3);
  EXPECT_EQ(naxes[2], 12);
  std::vector<float> plane(64 * 64);
  for (int k : {0, 7, 11}) {
    long first[3] = {1, 1, k + 1};
    int anynul = 0;
    fits_read_pix(f, TFLOAT, first, 64 * 64, nullptr, plane.data(), &anynul, &status);
    ASSERT_EQ(status, 0);
    const auto frames = read_fits_frames(a.paths[static_cast<std::size_t>(k)], FitsReadOptions{});
    ASSERT_EQ(frames.size(), 1U);
    EXPECT_TRUE(std::equal(plane.begin(), plane.end(), frames[0].science.ptr<float>(0)));
  }
  int hdus = 0;
  fits_get_num_hdus(f, &hdus, &status);
  EXPECT_EQ(hdus, 2);
  fits_close_file(f, &status);
}

}  // namespace
}  // namespace astroflow
