#include "fits_fixtures.hpp"

#include <fitsio.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>

namespace astroflow::test {
namespace {

struct FitsCloser {
  void operator()(fitsfile* f) const noexcept {
    int status = 0;
    fits_close_file(f, &status);
  }
};
using FitsPtr = std::unique_ptr<fitsfile, FitsCloser>;

void check(int status, const std::string& what) {
  if (status == 0) return;
  char msg[FLEN_STATUS];
  fits_get_errstatus(status, msg);
  throw std::runtime_error(what + ": " + msg);
}

FitsPtr create(const std::string& path) {
  std::filesystem::remove(path);
  fitsfile* f = nullptr;
  int status = 0;
  fits_create_file(&f, path.c_str(), &status);
  check(status, "create " + path);
  return FitsPtr(f);
}

void write_keys(fitsfile* f, const std::vector<FitsKey>& keys) {
  int status = 0;
  for (const FitsKey& k : keys) {
    const char* comment = k.comment.empty() ? nullptr : k.comment.c_str();
    if (const auto* d = std::get_if<double>(&k.value)) {
      double v = *d;
      fits_update_key(f, TDOUBLE, k.key.c_str(), &v, comment, &status);
    } else if (const auto* i = std::get_if<long long>(&k.value)) {
      LONGLONG v = *i;
      fits_update_key(f, TLONGLONG, k.key.c_str(), &v, comment, &status);
    } else {
      const std::string& s = std::get<std::string>(k.value);
      fits_update_key(f, TSTRING, k.key.c_str(), const_cast<char*>(s.c_str()), comment, &status);
    }
    check(status, "write key " + k.key);
  }
}

void write_pixels_hdu(fitsfile* f, const cv::Mat& pixels) {
  if (pixels.type() != CV_32FC1) throw std::invalid_argument("test image must be CV_32FC1");
  cv::Mat c = pixels.isContinuous() ? pixels : pixels.clone();
  long naxes[2] = {c.cols, c.rows};
  int status = 0;
  fits_create_img(f, FLOAT_IMG, 2, naxes, &status);
  long first[2] = {1, 1};
  fits_write_pix(f, TFLOAT, first, static_cast<LONGLONG>(c.total()), c.ptr<float>(), &status);
  check(status, "write image");
}

}  // namespace

std::vector<FitsKey> tan_wcs_keys(double crval1_deg, double crval2_deg, double crpix1,
                                  double crpix2, double pixel_scale_arcsec) {
  const double s = pixel_scale_arcsec / 3600.0;
  return {{"CTYPE1", std::string("RA---TAN"), ""},
          {"CTYPE2", std::string("DEC--TAN"), ""},
          {"CRVAL1", crval1_deg, ""},
          {"CRVAL2", crval2_deg, ""},
          {"CRPIX1", crpix1, ""},
          {"CRPIX2", crpix2, ""},
          {"CD1_1", -s, ""},
          {"CD1_2", 0.0, ""},
          {"CD2_1", 0.0, ""},
          {"CD2_2", s, ""},
          {"CUNIT1", std::string("deg"), ""},
          {"CUNIT2", std::string("deg"), ""},
          {"RADESYS", std::string("ICRS"), ""}};
}

void write_image(const std::string& path, const cv::Mat& pixels, const std::vector<FitsKey>& keys) {
  FitsPtr f = create(path);
  write_pixels_hdu(f.get(), pixels);
  write_keys(f.get(), keys);
}

void write_mef(const std::string& path, const std::vector<ImageHdu>& extensions) {
  FitsPtr f = create(path);
  int status = 0;
  fits_create_img(f.get(), FLOAT_IMG, 0, nullptr, &status);
  check(status, "primary of " + path);
  for (const ImageHdu& e : extensions) {
    write_pixels_hdu(f.get(), e.pixels);
    std::vector<FitsKey> keys = {{"EXTNAME", e.extname, ""}};
    if (e.extver > 0) keys.push_back({"EXTVER", static_cast<long long>(e.extver), ""});
    keys.insert(keys.end(), e.keys.begin(), e.keys.end());
    write_keys(f.get(), keys);
  }
}

void write_cube(const std::string& path, int width, int height, int depth, std::uint64_t seed) {
  FitsPtr f = create(path);
  long naxes[3] = {width, height, depth};
  int status = 0;
  fits_create_img(f.get(), FLOAT_IMG, 3, naxes, &status);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> pix(static_cast<std::size_t>(width) * height * depth);
  for (float& p : pix) p = normal(rng);
  long first[3] = {1, 1, 1};
  fits_write_pix(f.get(), TFLOAT, first, static_cast<LONGLONG>(pix.size()), pix.data(), &status);
  check(status, "write cube " + path);
}

void write_table_only(const std::string& path) {
  FitsPtr f = create(path);
  int status = 0;
  fits_create_img(f.get(), FLOAT_IMG, 0, nullptr, &status);
  char ttype[] = "FLUX";
  char tform[] = "1E";
  char tunit[] = "count";
  char* ttypes[] = {ttype};
  char* tforms[] = {tform};
  char* tunits[] = {tunit};
  fits_create_tbl(f.get(), BINARY_TBL, 3, 1, ttypes, tforms, tunits, "SOURCES", &status);
  float v[3] = {1.0f, 2.0f, 3.0f};
  fits_write_col(f.get(), TFLOAT, 1, 1, 1, 3, v, &status);
  check(status, "write table " + path);
}

void write_header_only(const std::string& path) {
  FitsPtr f = create(path);
  int status = 0;
  fits_create_img(f.get(), FLOAT_IMG, 0, nullptr, &status);
  check(status, "write header " + path);
}

void write_truncated(const std::string& path, int width, int height, double keep_fraction) {
  write_image(path, cv::Mat(height, width, CV_32FC1, cv::Scalar(1.0f)));
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(
      path, static_cast<std::uintmax_t>(static_cast<double>(size) * keep_fraction));
}

void write_corrupt(const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::string block =
      "SIMPLE  =                    T / conforming FITS                              ";
  block.resize(80, ' ');
  for (int i = 0; i < 35; ++i) block += std::string(80, static_cast<char>('#' + i % 20));
  out << block;
}

std::vector<Star> random_stars(int n, int width, int height, double margin, double min_separation,
                               double flux_min, double flux_max, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> ux(margin, width - margin);
  std::uniform_real_distribution<double> uy(margin, height - margin);
  std::uniform_real_distribution<double> ulog(std::log(flux_min), std::log(flux_max));
  std::vector<Star> stars;
  int attempts = 0;
  while (static_cast<int>(stars.size()) < n && attempts++ < n * 1000) {
    Star s{ux(rng) + 1.0, uy(rng) + 1.0, std::exp(ulog(rng))};
    bool ok = true;
    for (const Star& o : stars) ok = ok && std::hypot(o.x - s.x, o.y - s.y) >= min_separation;
    if (ok) stars.push_back(s);
  }
  return stars;
}

cv::Mat star_field(int width, int height, const std::vector<Star>& stars, double sigma_pix,
                   double sky, double noise, std::uint64_t seed) {
  cv::Mat img(height, width, CV_32FC1, cv::Scalar(static_cast<float>(sky)));
  const int r = static_cast<int>(std::ceil(6 * sigma_pix));
  const double k = 1.0 / (std::sqrt(2.0) * sigma_pix);
  for (const Star& s : stars) {
    const double cx = s.x - 1.0;  // 0-based centre
    const double cy = s.y - 1.0;
    const int x0 = std::max(0, static_cast<int>(cx) - r);
    const int x1 = std::min(width - 1, static_cast<int>(cx) + r);
    const int y0 = std::max(0, static_cast<int>(cy) - r);
    const int y1 = std::min(height - 1, static_cast<int>(cy) + r);
    for (int y = y0; y <= y1; ++y) {
      // Pixel-integrated Gaussian: product of erf differences over the pixel's extent.
      const double fy = 0.5 * (std::erf((y + 0.5 - cy) * k) - std::erf((y - 0.5 - cy) * k));
      for (int x = x0; x <= x1; ++x) {
        const double fx = 0.5 * (std::erf((x + 0.5 - cx) * k) - std::erf((x - 0.5 - cx) * k));
        img.at<float>(y, x) += static_cast<float>(s.flux * fx * fy);
      }
    }
  }
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, noise);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) img.at<float>(y, x) += static_cast<float>(normal(rng));
  return img;
}

}  // namespace astroflow::test
