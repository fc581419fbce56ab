// Small FITS writers for tests, written straight with CFITSIO (independent of fits_io), and
// seeded synthetic star fields. Also writers of deliberately broken inputs.
#pragma once

#include <cstdint>
#include <opencv2/core/mat.hpp>
#include <string>
#include <variant>
#include <vector>

namespace astroflow::test {

struct FitsKey {
  std::string key;
  std::variant<double, long long, std::string> value;
  std::string comment;
};

/// A simple TAN WCS (CD matrix, north up, east left), CRVAL in degrees, CRPIX 1-based.
std::vector<FitsKey> tan_wcs_keys(double crval1_deg, double crval2_deg, double crpix1,
                                  double crpix2, double pixel_scale_arcsec);

/// Primary-HDU float image (BITPIX -32) from a CV_32F matrix, with the given keys.
void write_image(const std::string& path, const cv::Mat& pixels,
                 const std::vector<FitsKey>& keys = {});

struct ImageHdu {
  std::string extname;
  int extver = 0;  ///< 0: no EXTVER card
  cv::Mat pixels;  ///< CV_32F
  std::vector<FitsKey> keys;
};
/// Empty primary HDU followed by one image extension per entry.
void write_mef(const std::string& path, const std::vector<ImageHdu>& extensions);

/// A 3-D float cube (NAXIS3 = depth) of seeded noise in the primary HDU.
void write_cube(const std::string& path, int width, int height, int depth, std::uint64_t seed);
/// An empty primary HDU plus one BINTABLE: no image anywhere.
void write_table_only(const std::string& path);
/// A primary header with NAXIS = 0: a FITS file without any data.
void write_header_only(const std::string& path);
/// A good image, then cut to `keep_fraction` of its bytes (data missing).
void write_truncated(const std::string& path, int width, int height, double keep_fraction);
/// A valid first card followed by garbage: CFITSIO refuses the header.
void write_corrupt(const std::string& path);

struct Star {
  double x = 0.0;  ///< FITS 1-based
  double y = 0.0;
  double flux = 0.0;  ///< total counts
};

/// `n` stars at least `margin` pixels from the edges and `min_separation` pixels apart,
/// fluxes log-uniform in [flux_min, flux_max]. Deterministic in the seed.
std::vector<Star> random_stars(int n, int width, int height, double margin, double min_separation,
                               double flux_min, double flux_max, std::uint64_t seed);

/// Gaussian PSF (sigma in pixels) stars, pixel-integrated, on a flat sky plus Gaussian noise
/// of rms `noise` (seeded). CV_32F.
cv::Mat star_field(int width, int height, const std::vector<Star>& stars, double sigma_pix,
                   double sky, double noise, std::uint64_t seed);

}  // namespace astroflow::test
