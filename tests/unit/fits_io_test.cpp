// Reader and writers of fits_io.hpp. Inputs are written here straight with CFITSIO (raw values,
// keywords set by hand) and expected physical values are computed from the FITS definition
// physical = BZERO + BSCALE * raw, independently of the reader.
#include "astroflow/fits_io.hpp"

#include <fitsio.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <opencv2/core.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "astroflow/error.hpp"
#include "fits_fixtures.hpp"
#include "temp_dir.hpp"

namespace astroflow {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

struct FitsCloser {
  void operator()(fitsfile* f) const noexcept {
    int status = 0;
    fits_close_file(f, &status);
  }
};
using FitsPtr = std::unique_ptr<fitsfile, FitsCloser>;

std::string cfitsio_error(int status) {
  char text[FLEN_STATUS] = {};
  fits_get_errstatus(status, text);
  return "CFITSIO " + std::to_string(status) + " " + text;
}

#define CFITSIO_OK(call)                                              \
  do {                                                                \
    int status_ = 0;                                                  \
    int* status = &status_;                                           \
    (void)status;                                                     \
    call;                                                             \
    ASSERT_EQ(status_, 0) << #call << ": " << cfitsio_error(status_); \
  } while (0)

FitsPtr create(const std::string& path) {
  fitsfile* f = nullptr;
  int status = 0;
  fits_create_file(&f, path.c_str(), &status);
  EXPECT_EQ(status, 0) << path << ": " << cfitsio_error(status);
  return FitsPtr(f);
}

FitsPtr open_ro(const std::string& path) {
  fitsfile* f = nullptr;
  int status = 0;
  fits_open_file(&f, path.c_str(), READONLY, &status);
  EXPECT_EQ(status, 0) << path << ": " << cfitsio_error(status);
  return FitsPtr(f);
}

void key_str(fitsfile* f, const char* key, const std::string& value) {
  int status = 0;
  fits_update_key(f, TSTRING, key, const_cast<char*>(value.c_str()), nullptr, &status);
  ASSERT_EQ(status, 0) << key;
}
void key_dbl(fitsfile* f, const char* key, double value) {
  int status = 0;
  fits_update_key(f, TDOUBLE, key, &value, nullptr, &status);
  ASSERT_EQ(status, 0) << key;
}
void key_int(fitsfile* f, const char* key, long long value) {
  int status = 0;
  fits_update_key(f, TLONGLONG, key, &value, nullptr, &status);
  ASSERT_EQ(status, 0) << key;
}

void write_tan(fitsfile* f, double crpix1, double crpix2) {
  key_str(f, "CTYPE1", "RA---TAN");
  key_str(f, "CTYPE2", "DEC--TAN");
  key_dbl(f, "CRPIX1", crpix1);
  key_dbl(f, "CRPIX2", crpix2);
  key_dbl(f, "CRVAL1", 150.1);
  key_dbl(f, "CRVAL2", 2.2);
  key_dbl(f, "CD1_1", -0.1 / 3600);
  key_dbl(f, "CD1_2", 0.0);
  key_dbl(f, "CD2_1", 0.0);
  key_dbl(f, "CD2_2", 0.1 / 3600);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

/// Expects read_fits_frames to throw a FrameError starting with "path[" and containing `part`.
void expect_frame_error(const std::string& path, const FitsReadOptions& opt,
                        const std::string& part) {
  try {
    (void)read_fits_frames(path, opt);
    ADD_FAILURE() << "no FrameError for " << path;
  } catch (const FrameError& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(starts_with(msg, path + "[")) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << "missing '" << part << "' in: " << msg;
  }
}

// --- BITPIX / BSCALE / BZERO / BLANK ---------------------------------------------------------

struct BitpixCase {
  int bitpix;
  int datatype;
  double bscale;
  double bzero;
  long long blank;  // only for integer BITPIX
};

template <typename T>
void write_raw_image(const std::string& path, const BitpixCase& c, const std::vector<T>& raw,
                     long w, long h) {
  FitsPtr f = create(path);
  long naxes[2] = {w, h};
  CFITSIO_OK(fits_create_img(f.get(), c.bitpix, 2, naxes, status));
  // Raw values go in before BSCALE/BZERO exist, so CFITSIO stores them unscaled.
  CFITSIO_OK(fits_write_img(f.get(), c.datatype, 1, w * h, const_cast<T*>(raw.data()), status));
  key_dbl(f.get(), "BSCALE", c.bscale);
  key_dbl(f.get(), "BZERO", c.bzero);
  if (c.bitpix > 0) key_int(f.get(), "BLANK", c.blank);
  key_str(f.get(), "OBJECT", "bitpix test");
}

template <typename T>
void check_bitpix(const std::string& path, const BitpixCase& c, const std::vector<T>& raw) {
  const long w = 7;
  const long h = 5;
  ASSERT_EQ(raw.size(), static_cast<std::size_t>(w * h));
  write_raw_image(path, c, raw, w, h);
  const auto frames = read_fits_frames(path, FitsReadOptions{});
  ASSERT_EQ(frames.size(), 1u);
  const Frame& fr = frames[0];
  ASSERT_EQ(fr.science.type(), CV_32FC1);
  ASSERT_EQ(fr.science.cols, w);
  ASSERT_EQ(fr.science.rows, h);
  for (long i = 0; i < w * h; ++i) {
    const float got = fr.science.at<float>(static_cast<int>(i / w), static_cast<int>(i % w));
    const double r = static_cast<double>(raw[static_cast<std::size_t>(i)]);
    const bool blank =
        (c.bitpix > 0 && static_cast<long long>(raw[static_cast<std::size_t>(i)]) == c.blank) ||
        !std::isfinite(r);
    if (blank) {
      EXPECT_TRUE(std::isnan(got)) << "BITPIX " << c.bitpix << " pixel " << i;
    } else {
      EXPECT_FLOAT_EQ(got, static_cast<float>(c.bzero + c.bscale * r))
          << "BITPIX " << c.bitpix << " pixel " << i << " raw " << r;
    }
  }
  EXPECT_EQ(fr.header.get_string("OBJECT").value(), "bitpix test");
  EXPECT_FALSE(fr.header.contains("BSCALE"));
  EXPECT_FALSE(fr.header.contains("BLANK"));
  EXPECT_EQ(fr.hdu_index, 0);
  EXPECT_EQ(fr.hdu_name, "PRIMARY");
  EXPECT_EQ(fr.flags & kFrameAllBlank, 0u);
  EXPECT_EQ(fr.tile.full_width_pix, w);
  EXPECT_EQ(fr.tile.full_height_pix, h);
  EXPECT_EQ(fr.tile.count, 1);
}

TEST(FitsRead, AllBitpixWithScalingAndBlank) {
  TempDir dir("fits-bitpix");
  {
    std::vector<unsigned char> raw(35);
    for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<unsigned char>(i * 7);
    raw[3] = 255;
    check_bitpix(dir / "b8.fits", {BYTE_IMG, TBYTE, 0.5, 10.0, 255}, raw);
  }
  {
    std::vector<short> raw(35);
    for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<short>(-30000 + 1700 * i);
    raw[5] = -32768;
    check_bitpix(dir / "b16.fits", {SHORT_IMG, TSHORT, 2.0, 100.0, -32768}, raw);
  }
  {
    std::vector<int> raw(35);
    for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<int>(i) * 12345 - 200000;
    raw[0] = -999;
    check_bitpix(dir / "b32.fits", {LONG_IMG, TINT, 1e-3, -5.0, -999}, raw);
  }
  {
    std::vector<long long> raw(35);
    for (std::size_t i = 0; i < raw.size(); ++i)
      raw[i] = 5000000000LL + 3 * static_cast<long long>(i);
    raw[34] = -1;
    check_bitpix(dir / "b64.fits", {LONGLONG_IMG, TLONGLONG, 0.25, -1.25e9, -1}, raw);
  }
  {
    std::vector<float> raw(35);
    for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = 0.37f * static_cast<float>(i) - 3.0f;
    raw[2] = std::numeric_limits<float>::quiet_NaN();
    raw[9] = std::numeric_limits<float>::infinity();
    raw[10] = -std::numeric_limits<float>::infinity();
    check_bitpix(dir / "f32.fits", {FLOAT_IMG, TFLOAT, 2.0, 1.0, 0}, raw);
  }
  {
    std::vector<double> raw(35);
    for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = 1.0e5 + 0.125 * static_cast<double>(i);
    raw[7] = std::numeric_limits<double>::quiet_NaN();
    check_bitpix(dir / "f64.fits", {DOUBLE_IMG, TDOUBLE, 1.0, 0.0, 0}, raw);
  }
}

TEST(FitsRead, AllBlankImageIsFlaggedNotAnError) {
  TempDir dir("fits-blank");
  const std::string path = dir / "nan.fits";
  cv::Mat nan(4, 6, CV_32F, cv::Scalar(std::numeric_limits<float>::quiet_NaN()));
  test::write_image(path, nan);
  const auto frames = read_fits_frames(path, FitsReadOptions{});
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_NE(frames[0].flags & kFrameAllBlank, 0u);
  EXPECT_FALSE(frames[0].failed());
}

// --- HST-like multi-extension file -----------------------------------------------------------

void write_hst_like(const std::string& path) {
  FitsPtr f = create(path);
  CFITSIO_OK(fits_create_img(f.get(), SHORT_IMG, 0, nullptr, status));
  key_str(f.get(), "TELESCOP", "HST");
  key_str(f.get(), "INSTRUME", "ACS");
  key_str(f.get(), "FILTER1", "F814W");
  key_dbl(f.get(), "EXPTIME", 507.0);
  key_dbl(f.get(), "CRPIX1", 9999.0);  // a primary WCS card must not leak into the extensions
  const long w = 12;
  const long h = 8;
  long naxes[2] = {w, h};
  for (int ver = 1; ver <= 2; ++ver) {
    std::vector<float> sci(static_cast<std::size_t>(w * h));
    for (std::size_t i = 0; i < sci.size(); ++i) sci[i] = static_cast<float>(ver * 1000 + i);
    CFITSIO_OK(fits_create_img(f.get(), FLOAT_IMG, 2, naxes, status));
    CFITSIO_OK(fits_write_img(f.get(), TFLOAT, 1, w * h, sci.data(), status));
    key_str(f.get(), "EXTNAME", "SCI");
    key_int(f.get(), "EXTVER", ver);
    key_dbl(f.get(), "EXPTIME", 111.0);  // the extension's own value wins
    write_tan(f.get(), 6.0 + ver, 4.0);

    std::vector<float> err(sci.size(), 2.0f * static_cast<float>(ver));
    err[0] = 0.0f;  // unusable error -> weight 0
    CFITSIO_OK(fits_create_img(f.get(), FLOAT_IMG, 2, naxes, status));
    CFITSIO_OK(fits_write_img(f.get(), TFLOAT, 1, w * h, err.data(), status));
    key_str(f.get(), "EXTNAME", "ERR");
    key_int(f.get(), "EXTVER", ver);

    std::vector<short> dq(sci.size(), 0);
    dq[5] = static_cast<short>(16 * ver);
    dq[6] = 4096;
    CFITSIO_OK(fits_create_img(f.get(), SHORT_IMG, 2, naxes, status));
    CFITSIO_OK(fits_write_img(f.get(), TSHORT, 1, w * h, dq.data(), status));
    key_str(f.get(), "EXTNAME", "DQ");
    key_int(f.get(), "EXTVER", ver);
  }
}

TEST(FitsRead, AutoPicksSciExtensionsWithWeightAndMask) {
  TempDir dir("fits-hst");
  const std::string path = dir / "j8xi01abq_flt.fits";
  write_hst_like(path);
  FitsReadOptions opt;
  opt.weight_ext = "ERR";
  opt.mask_ext = "DQ";
  const auto frames = read_fits_frames(path, opt, 7);
  ASSERT_EQ(frames.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    const Frame& fr = frames[static_cast<std::size_t>(k)];
    const int ver = k + 1;
    EXPECT_EQ(fr.path, path);
    EXPECT_EQ(fr.hdu_name, "SCI");
    EXPECT_EQ(fr.hdu_version, ver);
    EXPECT_EQ(fr.hdu_index, 1 + 3 * k);
    EXPECT_EQ(fr.input_index, 7u);
    EXPECT_EQ(fr.label(), path + "[SCI," + std::to_string(ver) + "]");
    ASSERT_EQ(fr.science.cols, 12);
    ASSERT_EQ(fr.science.rows, 8);
    EXPECT_EQ(fr.science.at<float>(0, 3), static_cast<float>(ver * 1000 + 3));
    EXPECT_EQ(fr.science.at<float>(2, 1), static_cast<float>(ver * 1000 + 25));
    ASSERT_EQ(fr.weight.type(), CV_32FC1);
    const float e = 2.0f * static_cast<float>(ver);
    EXPECT_FLOAT_EQ(fr.weight.at<float>(1, 1), 1.0f / (e * e));
    EXPECT_EQ(fr.weight.at<float>(0, 0), 0.0f);
    ASSERT_EQ(fr.mask.type(), CV_32SC1);
    EXPECT_EQ(fr.mask.at<int>(0, 5), 16 * ver);
    EXPECT_EQ(fr.mask.at<int>(0, 6), 4096);
    EXPECT_EQ(fr.mask.at<int>(0, 7), 0);
    // Primary keywords are inherited, the extension's own win, and WCS stays per-HDU.
    EXPECT_EQ(fr.header.get_string("TELESCOP").value(), "HST");
    EXPECT_EQ(fr.header.get_string("FILTER1").value(), "F814W");
    EXPECT_DOUBLE_EQ(fr.header.get_double("EXPTIME").value(), 111.0);
    EXPECT_DOUBLE_EQ(fr.header.get_double("CRPIX1").value(), 6.0 + ver);
    ASSERT_TRUE(fr.wcs.has_value());
    EXPECT_NEAR(fr.pixel_scale_arcsec, 0.1, 1e-9);
    const SkyCoord c = fr.wcs->pixel_to_sky({6.0 + ver, 4.0});
    EXPECT_NEAR(c.ra_deg, 150.1, 1e-12);
    EXPECT_NEAR(c.dec_deg, 2.2, 1e-12);
  }
}

TEST(FitsRead, MaskBitsOutsideTheGoodOnesBlankTheSciencePixels) {
  // write_hst_like's DQ: 16 x EXTVER at (0, 5), 4096 at (0, 6), 0 elsewhere.
  TempDir dir("fits-dq");
  const std::string path = dir / "j8xi01abq_flt.fits";
  write_hst_like(path);
  auto nans = [](const cv::Mat& m) {
    int n = 0;
    for (int y = 0; y < m.rows; ++y)
      for (int x = 0; x < m.cols; ++x) n += std::isnan(m.at<float>(y, x)) ? 1 : 0;
    return n;
  };
  auto history = [](const Frame& fr) {
    std::string h;
    for (const std::string& c : fr.header.cards())
      if (c.rfind("HISTORY", 0) == 0) h += c + "\n";
    return h;
  };
  FitsReadOptions opt;
  const auto plain = read_fits_frames(path, opt);
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_EQ(nans(plain[0].science), 0);

  opt.mask_ext = "DQ";  // good bits 0: every flagged pixel is blank
  const auto all = read_fits_frames(path, opt);
  ASSERT_EQ(all.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    const Frame& fr = all[static_cast<std::size_t>(k)];
    EXPECT_TRUE(std::isnan(fr.science.at<float>(0, 5)));
    EXPECT_TRUE(std::isnan(fr.science.at<float>(0, 6)));
    EXPECT_EQ(fr.science.at<float>(0, 7), static_cast<float>((k + 1) * 1000 + 7));
    EXPECT_EQ(nans(fr.science), 2);
    EXPECT_EQ(fr.mask.at<int>(0, 5), 16 * (k + 1));  // the plane is kept as read
    EXPECT_NE(history(fr).find("mask DQ (good bits 0) blanked 2 of 96 pixels"), std::string::npos)
        << history(fr);
  }

  opt.mask_good_bits = 16 + 4096;  // EXTVER 1's 16 and the 4096 are good, EXTVER 2's 32 is not
  const auto some = read_fits_frames(path, opt);
  ASSERT_EQ(some.size(), 2u);
  EXPECT_EQ(some[0].science.at<float>(0, 5), 1005.0f);
  EXPECT_TRUE(std::isnan(some[1].science.at<float>(0, 5)));
  for (const Frame& fr : some) EXPECT_FALSE(std::isnan(fr.science.at<float>(0, 6)));
  EXPECT_NE(history(some[1]).find("mask DQ (good bits 4112) blanked 1 of 96 pixels"),
            std::string::npos);
}
TEST(FitsRead, SelectionByNameVersionAndIndex) {
  TempDir dir("fits-select");
  const std::string path = dir / "mef.fits";
  write_hst_like(path);
  FitsReadOptions opt;
  opt.hdu = "sci,2";
  auto frames = read_fits_frames(path, opt);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].hdu_index, 4);
  EXPECT_EQ(frames[0].hdu_version, 2);
  EXPECT_EQ(frames[0].science.at<float>(0, 0), 2000.0f);

  opt.hdu = "DQ";
  frames = read_fits_frames(path, opt);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].hdu_index, 3);
  EXPECT_EQ(frames[0].science.at<float>(0, 6), 4096.0f);

  opt.hdu = "2";
  frames = read_fits_frames(path, opt);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].hdu_name, "ERR");
  EXPECT_EQ(frames[0].science.at<float>(0, 1), 2.0f);

  opt.hdu = "0";
  expect_frame_error(path, opt, "NAXIS=0");
  opt.hdu = "9";
  expect_frame_error(path, opt, "no such HDU");
  opt.hdu = "SCI,3";
  expect_frame_error(path, opt, "EXTNAME=SCI and EXTVER=3");

  // A companion that is missing for the chosen EXTVER is an error, not a silent omission.
  opt = FitsReadOptions{};
  opt.weight_ext = "WHT";
  expect_frame_error(path, opt, "EXTNAME=WHT");
}

// --- compression, cubes ----------------------------------------------------------------------

std::vector<short> ramp(long n) {
  std::vector<short> v(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i)
    v[static_cast<std::size_t>(i)] = static_cast<short>((i * 37) % 2000 - 500);
  return v;
}

TEST(FitsRead, TileCompressedFz) {
  TempDir dir("fits-fz");
  const std::string path = dir / "img.fits.fz";
  const long w = 40;
  const long h = 30;
  const auto raw = ramp(w * h);
  {
    // CFITSIO's extended file name: "[compress]" makes every image HDU tile-compressed (RICE).
    FitsPtr f = create(path + "[compress]");
    long naxes[2] = {w, h};
    CFITSIO_OK(fits_create_img(f.get(), SHORT_IMG, 2, naxes, status));
    CFITSIO_OK(fits_write_img(f.get(), TSHORT, 1, w * h, const_cast<short*>(raw.data()), status));
    key_str(f.get(), "OBJECT", "compressed");
  }
  {
    FitsPtr f = open_ro(path);
    int n = 0;
    CFITSIO_OK(fits_get_num_hdus(f.get(), &n, status));
    EXPECT_EQ(n, 2);  // empty primary + the compressed image table
    int type = 0;
    CFITSIO_OK(fits_movabs_hdu(f.get(), 2, &type, status));
    int st = 0;
    EXPECT_EQ(fits_is_compressed_image(f.get(), &st), 1);
  }
  const auto frames = read_fits_frames(path, FitsReadOptions{});
  ASSERT_EQ(frames.size(), 1u);
  const Frame& fr = frames[0];
  EXPECT_EQ(fr.hdu_index, 1);
  ASSERT_EQ(fr.science.cols, w);
  ASSERT_EQ(fr.science.rows, h);
  for (long i = 0; i < w * h; ++i) {
    ASSERT_EQ(fr.science.at<float>(static_cast<int>(i / w), static_cast<int>(i % w)),
              static_cast<float>(raw[static_cast<std::size_t>(i)]));
  }
  EXPECT_EQ(fr.header.get_string("OBJECT").value(), "compressed");
  EXPECT_FALSE(fr.header.contains("ZCMPTYPE"));
  EXPECT_FALSE(fr.header.contains("TTYPE1"));
  EXPECT_FALSE(fr.header.contains("ZIMAGE"));
}

TEST(FitsRead, GzipCompressed) {
  TempDir dir("fits-gz");
  const std::string plain = dir / "img.fits";
  cv::Mat img(9, 11, CV_32F);
  for (int r = 0; r < img.rows; ++r) {
    for (int c = 0; c < img.cols; ++c) img.at<float>(r, c) = static_cast<float>(r * 100 + c) * 0.5f;
  }
  test::write_image(plain, img, {{"OBJECT", std::string("gzipped"), ""}});
  const std::string cmd = "gzip -f '" + plain + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string gz = plain + ".gz";
  ASSERT_TRUE(fs::exists(gz));
  ASSERT_FALSE(fs::exists(plain));
  const auto frames = read_fits_frames(gz, FitsReadOptions{});
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].path, gz);
  EXPECT_EQ(cv::norm(frames[0].science, img, cv::NORM_INF), 0.0);
  EXPECT_EQ(frames[0].header.get_string("OBJECT").value(), "gzipped");
}

TEST(FitsRead, CubeNeedsAPlane) {
  TempDir dir("fits-cube");
  const std::string path = dir / "cube.fits";
  const long w = 5;
  const long h = 4;
  const long d = 3;
  {
    FitsPtr f = create(path);
    long naxes[3] = {w, h, d};
    CFITSIO_OK(fits_create_img(f.get(), FLOAT_IMG, 3, naxes, status));
    std::vector<float> v(static_cast<std::size_t>(w * h * d));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
    CFITSIO_OK(fits_write_img(f.get(), TFLOAT, 1, w * h * d, v.data(), status));
  }
  FitsReadOptions opt;
  expect_frame_error(path, opt, "3-D cube (NAXIS3=3); set input.cube_plane");
  opt.cube_plane = 2;
  const auto frames = read_fits_frames(path, opt);
  ASSERT_EQ(frames.size(), 1u);
  ASSERT_EQ(frames[0].science.cols, w);
  ASSERT_EQ(frames[0].science.rows, h);
  // FITS order: x fastest, then y, then the plane.
  EXPECT_EQ(frames[0].science.at<float>(0, 0), static_cast<float>(2 * w * h));
  EXPECT_EQ(frames[0].science.at<float>(3, 4), static_cast<float>(2 * w * h + 3 * w + 4));
  opt.cube_plane = 3;
  expect_frame_error(path, opt, "outside the cube");
}

TEST(FitsRead, DegenerateThirdAxisIsAnImage) {
  TempDir dir("fits-naxis3");
  const std::string path = dir / "flat3.fits";
  {
    FitsPtr f = create(path);
    long naxes[3] = {3, 2, 1};
    CFITSIO_OK(fits_create_img(f.get(), FLOAT_IMG, 3, naxes, status));
    float v[6] = {1, 2, 3, 4, 5, 6};
    CFITSIO_OK(fits_write_img(f.get(), TFLOAT, 1, 6, v, status));
  }
  const auto frames = read_fits_frames(path, FitsReadOptions{});
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].science.at<float>(1, 2), 6.0f);
}

// --- broken inputs ---------------------------------------------------------------------------

TEST(FitsRead, BrokenFilesAreFrameErrorsNamingThePath) {
  TempDir dir("fits-broken");
  FitsReadOptions opt;

  const std::string truncated = dir / "truncated.fits";
  {
    cv::Mat img(64, 64, CV_32F, cv::Scalar(1.0f));
    test::write_image(truncated, img);
    const auto size = fs::file_size(truncated);
    fs::resize_file(truncated, size / 2);
  }
  expect_frame_error(truncated, opt, "CFITSIO status");

  const std::string empty = dir / "empty.fits";
  std::ofstream(empty).close();
  expect_frame_error(empty, opt, "empty file");

  const std::string text = dir / "notes.fits";
  std::ofstream(text) << "This is not a FITS file, just some text.\n";
  expect_frame_error(text, opt, "cannot open as a FITS file");

  const std::string table = dir / "table.fits";
  {
    FitsPtr f = create(table);
    CFITSIO_OK(fits_create_img(f.get(), BYTE_IMG, 0, nullptr, status));
    char* ttype[] = {const_cast<char*>("FLUX")};
    char* tform[] = {const_cast<char*>("1E")};
    char* tunit[] = {const_cast<char*>("count")};
    CFITSIO_OK(fits_create_tbl(f.get(), BINARY_TBL, 0, 1, ttype, tform, tunit, "OBJECTS", status));
  }
  expect_frame_error(table, opt, "no 2-D image HDU");

  expect_frame_error((dir / "missing.fits"), opt, "cannot open");
}

// --- writers ---------------------------------------------------------------------------------

std::vector<std::string> folder_entries(const fs::path& p) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(p)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(FitsWrite, ImageRoundTripKeepsHeaderWcsAndAddsHistory) {
  TempDir dir("fits-write");
  const std::string in_path = dir / "in.fits";
  {
    FitsPtr f = create(in_path);
    long naxes[2] = {16, 12};
    CFITSIO_OK(fits_create_img(f.get(), FLOAT_IMG, 2, naxes, status));
    std::vector<float> v(16 * 12);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.25f;
    v[17] = std::numeric_limits<float>::quiet_NaN();
    CFITSIO_OK(fits_write_img(f.get(), TFLOAT, 1, 16 * 12, v.data(), status));
    key_str(f.get(), "OBJECT", "M 51");
    key_dbl(f.get(), "EXPTIME", 120.5);
    write_tan(f.get(), 8.5, 6.5);
  }
  const Frame in = read_fits_frames(in_path, FitsReadOptions{}).at(0);
  const std::string out_path = dir / "out/denoised.fits";
  write_fits_image(out_path, in.science, in.header, {"astroflow denoise 0.1.0", "model sha256 ab"});
  EXPECT_EQ(folder_entries(dir.path() / "out"), std::vector<std::string>{"denoised.fits"});

  // Check with CFITSIO directly.
  {
    FitsPtr f = open_ro(out_path);
    int bitpix = 0;
    CFITSIO_OK(fits_get_img_type(f.get(), &bitpix, status));
    EXPECT_EQ(bitpix, FLOAT_IMG);
    char value[FLEN_VALUE] = {};
    CFITSIO_OK(fits_read_key(f.get(), TSTRING, "OBJECT", value, nullptr, status));
    EXPECT_STREQ(value, "M 51");
  }
  const Frame out = read_fits_frames(out_path, FitsReadOptions{}).at(0);
  ASSERT_EQ(out.science.size(), in.science.size());
  for (int r = 0; r < in.science.rows; ++r) {
    for (int c = 0; c < in.science.cols; ++c) {
      const float a = in.science.at<float>(r, c);
      const float b = out.science.at<float>(r, c);
      if (std::isnan(a)) {
        EXPECT_TRUE(std::isnan(b));
      } else {
        EXPECT_EQ(a, b);
      }
    }
  }
  EXPECT_EQ(out.header.get_string("OBJECT").value(), "M 51");
  EXPECT_DOUBLE_EQ(out.header.get_double("EXPTIME").value(), 120.5);
  int history = 0;
  int standard_comments = 0;
  for (const auto& card : out.header.cards()) {
    if (card.rfind("HISTORY astroflow denoise 0.1.0", 0) == 0) ++history;
    if (card.rfind("HISTORY model sha256 ab", 0) == 0) ++history;
    if (card.find("FITS (Flexible Image Transport System)") != std::string::npos) {
      ++standard_comments;
    }
  }
  EXPECT_EQ(history, 2);
  EXPECT_LE(standard_comments, 1) << "CFITSIO's standard comment was duplicated";
  ASSERT_TRUE(out.wcs.has_value());
  for (const PixelCoord p : {PixelCoord{1, 1}, PixelCoord{16, 12}, PixelCoord{3.5, 9.25}}) {
    EXPECT_EQ(out.wcs->pixel_to_sky(p).ra_deg, in.wcs->pixel_to_sky(p).ra_deg);
    EXPECT_EQ(out.wcs->pixel_to_sky(p).dec_deg, in.wcs->pixel_to_sky(p).dec_deg);
  }

  // Rewriting replaces the file (the atomic rename onto an existing name).
  cv::Mat zeros(3, 2, CV_32F, cv::Scalar(0));
  write_fits_image(out_path, zeros, Header{});
  EXPECT_EQ(read_fits_frames(out_path, FitsReadOptions{}).at(0).science.cols, 2);
  EXPECT_EQ(folder_entries(dir.path() / "out"), std::vector<std::string>{"denoised.fits"});
}

TEST(FitsWrite, SegmentationMapIsPlainInt32) {
  TempDir dir("fits-seg");
  const std::string path = dir / "segmap.fits";
  cv::Mat seg(5, 4, CV_32S, cv::Scalar(0));
  seg.at<int>(1, 1) = 1;
  seg.at<int>(3, 2) = 2;
  seg.at<int>(4, 3) = 2147483647;
  write_fits_image(path, seg, Header{});
  FitsPtr f = open_ro(path);
  int bitpix = 0;
  CFITSIO_OK(fits_get_img_type(f.get(), &bitpix, status));
  EXPECT_EQ(bitpix, LONG_IMG);
  int key_status = 0;
  double bzero = 0;
  fits_read_key(f.get(), TDOUBLE, "BZERO", &bzero, nullptr, &key_status);
  EXPECT_EQ(key_status, KEY_NO_EXIST) << "a segmentation map must not carry BZERO";
  std::vector<int> v(20);
  int anynul = 0;
  CFITSIO_OK(fits_read_img(f.get(), TINT, 1, 20, nullptr, v.data(), &anynul, status));
  EXPECT_EQ(v[1 * 4 + 1], 1);
  EXPECT_EQ(v[3 * 4 + 2], 2);
  EXPECT_EQ(v[4 * 4 + 3], 2147483647);
  EXPECT_EQ(v[0], 0);
}

TEST(FitsWrite, BitpixFollowsMatDepth) {
  TempDir dir("fits-depth");
  const std::vector<std::pair<int, int>> cases = {
      {CV_8U, BYTE_IMG}, {CV_16S, SHORT_IMG}, {CV_32F, FLOAT_IMG}, {CV_64F, DOUBLE_IMG}};
  for (const auto& [depth, bitpix_want] : cases) {
    std::string name = "depth";
    name += std::to_string(depth);  // (not "d" + ...: g++ 12 warns falsely on that, -Wrestrict)
    name += ".fits";
    const std::string path = dir / name;
    cv::Mat m(3, 4, depth);
    m.setTo(cv::Scalar(7));
    m.row(1).setTo(cv::Scalar(100));
    write_fits_image(path, m, Header{});
    FitsPtr f = open_ro(path);
    int bitpix = 0;
    CFITSIO_OK(fits_get_img_type(f.get(), &bitpix, status));
    EXPECT_EQ(bitpix, bitpix_want);
    const Frame fr = read_fits_frames(path, FitsReadOptions{}).at(0);
    EXPECT_EQ(fr.science.at<float>(0, 0), 7.0f);
    EXPECT_EQ(fr.science.at<float>(1, 3), 100.0f);
  }
  cv::Mat rgb(2, 2, CV_8UC3);
  EXPECT_THROW(write_fits_image(dir / "rgb.fits", rgb, Header{}), FrameError);
  EXPECT_TRUE(folder_entries(dir.path()).size() == cases.size());
}

Catalog sample_catalog() {
  Catalog cat;
  cat.resize(3);
  // Columns first, values after: add_column may move the columns added before.
  cat.add_column<std::int32_t>("NUMBER", "", "Running object number");
  cat.add_column<std::int64_t>("SOURCE_ID", "", "");
  cat.add_column<float>("FLUX_AUTO", "count", "Flux within a Kron-like aperture");
  cat.add_column<double>("ALPHA_J2000", "deg", "Right ascension (J2000)");
  cat.add_column<std::string>("CLASS", "", "");
  cat.get<std::int32_t>("NUMBER") = {1, 2, 3};
  cat.get<std::int64_t>("SOURCE_ID") = {9000000000123LL, -5, 0};
  cat.get<float>("FLUX_AUTO") = {12.5f, std::numeric_limits<float>::quiet_NaN(), 3.0e-8f};
  cat.get<double>("ALPHA_J2000") = {150.123456789012345, 0.0, 359.999999999999};
  cat.get<std::string>("CLASS") = {"spiral", "elliptical", ""};
  return cat;
}

TEST(FitsWrite, CatalogRoundTrip) {
  TempDir dir("fits-cat");
  const std::string path = dir / "cat.fits";
  const Catalog cat = sample_catalog();
  Header primary;
  primary.set("ORIGIN", std::string_view("astroflow"));
  write_fits_catalog(path, cat, primary);
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"cat.fits"});

  {
    FitsPtr f = open_ro(path);
    char value[FLEN_VALUE] = {};
    CFITSIO_OK(fits_read_key(f.get(), TSTRING, "ORIGIN", value, nullptr, status));
    EXPECT_STREQ(value, "astroflow");
    int type = 0;
    CFITSIO_OK(fits_movabs_hdu(f.get(), 2, &type, status));
    EXPECT_EQ(type, BINARY_TBL);
    CFITSIO_OK(fits_read_key(f.get(), TSTRING, "EXTNAME", value, nullptr, status));
    EXPECT_STREQ(value, "CATALOG");
    const std::vector<std::pair<const char*, const char*>> tforms = {
        {"TFORM1", "1J"}, {"TFORM2", "1K"}, {"TFORM3", "1E"}, {"TFORM4", "1D"}, {"TFORM5", "10A"}};
    for (const auto& [key, want] : tforms) {
      CFITSIO_OK(fits_read_key(f.get(), TSTRING, key, value, nullptr, status));
      EXPECT_STREQ(value, want) << key;
    }
    CFITSIO_OK(fits_read_key(f.get(), TSTRING, "TUNIT3", value, nullptr, status));
    EXPECT_STREQ(value, "count");
  }

  const Catalog back = read_fits_catalog(path);
  ASSERT_EQ(back.rows(), 3u);
  ASSERT_EQ(back.columns().size(), 5u);
  EXPECT_EQ(back.get<std::int32_t>("NUMBER"), cat.get<std::int32_t>("NUMBER"));
  EXPECT_EQ(back.get<std::int64_t>("SOURCE_ID"), cat.get<std::int64_t>("SOURCE_ID"));
  EXPECT_EQ(back.get<double>("ALPHA_J2000"), cat.get<double>("ALPHA_J2000"));
  EXPECT_EQ(back.get<std::string>("CLASS"), cat.get<std::string>("CLASS"));
  const auto& flux = back.get<float>("FLUX_AUTO");
  EXPECT_EQ(flux[0], 12.5f);
  EXPECT_TRUE(std::isnan(flux[1]));
  EXPECT_EQ(flux[2], 3.0e-8f);
  EXPECT_EQ(back.find("FLUX_AUTO")->unit, "count");
  EXPECT_EQ(back.find("ALPHA_J2000")->unit, "deg");
  EXPECT_EQ(back.find("ALPHA_J2000")->description, "Right ascension (J2000)");
  EXPECT_EQ(read_fits_catalog(path, 1).rows(), 3u);
  EXPECT_THROW((void)read_fits_catalog(path, 0), FrameError);
}

TEST(FitsWrite, EmptyCatalogKeepsItsColumns) {
  TempDir dir("fits-cat-empty");
  const std::string path = dir / "none.fits";
  Catalog cat;
  cat.add_column<std::int32_t>("NUMBER");
  cat.add_column<std::string>("CLASS");
  write_fits_catalog(path, cat);
  {
    FitsPtr f = open_ro(path);
    int type = 0;
    CFITSIO_OK(fits_movabs_hdu(f.get(), 2, &type, status));
    char value[FLEN_VALUE] = {};
    CFITSIO_OK(fits_read_key(f.get(), TSTRING, "TFORM2", value, nullptr, status));
    EXPECT_STREQ(value, "1A");
  }
  const Catalog back = read_fits_catalog(path);
  EXPECT_EQ(back.rows(), 0u);
  ASSERT_EQ(back.columns().size(), 2u);
  EXPECT_EQ(back.columns()[1].type(), ColumnType::kString);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The pipeline writes per-input outputs from memory (one write, hashed without reading back):
// the bytes must be those of the on-disk writers.
TEST(FitsWrite, InMemoryBytesEqualTheFileWriters) {
  TempDir dir("fits-mem");
  Header header;
  header.set("ORIGIN", std::string_view("astroflow"));
  header.set("EXPTIME", 2000.0, "[s]");
  for (int i = 0; i < 60; ++i) header.add_history("line " + std::to_string(i));
  Catalog big;  // several FITS blocks: the in-memory buffer has to grow
  big.add_column<std::int32_t>("NUMBER");
  big.add_column<std::string>("CLASS");
  big.resize(5000);
  for (std::size_t r = 0; r < big.rows(); ++r) {
    big.get<std::int32_t>("NUMBER")[r] = static_cast<std::int32_t>(r + 1);
    big.get<std::string>("CLASS")[r] = r % 3 == 0 ? "disk" : "point_source";
  }
  Catalog empty;
  empty.add_column<std::int32_t>("NUMBER");
  const std::vector<std::pair<std::string, Catalog>> catalogs = {
      {"sample", sample_catalog()}, {"big", big}, {"empty", empty}};
  for (const auto& [name, cat] : catalogs) {
    const std::string path = dir / (name + ".fits");
    write_fits_catalog(path, cat, header);
    EXPECT_TRUE(fits_catalog_bytes(cat, header, "CATALOG", path) == file_bytes(path)) << name;
    write_csv_catalog(path + ".csv", cat);
    EXPECT_EQ(csv_catalog_text(cat), file_bytes(path + ".csv")) << name;
  }
  cv::Mat img(300, 200, CV_32F);
  cv::randu(img, -1.0f, 1.0f);
  cv::Mat seg(40, 30, CV_32S, cv::Scalar(7));
  for (const auto& [name, pix] : std::vector<std::pair<std::string, cv::Mat>>{
           {"img", img}, {"seg", seg}, {"roi", img(cv::Rect(3, 5, 17, 11))}}) {
    const std::string path = dir / (name + ".fits");
    write_fits_image(path, pix, header, {"astroflow test"});
    EXPECT_TRUE(fits_image_bytes(pix, header, {"astroflow test"}, path) == file_bytes(path))
        << name;
  }
  cv::Mat rgb(2, 2, CV_8UC3);
  EXPECT_THROW((void)fits_image_bytes(rgb, Header{}, {}, "rgb.fits"), FrameError);
}

TEST(FitsRead, SextractorStyleVectorAndShortColumns) {
  TempDir dir("fits-sex");
  const std::string path = dir / "sex.cat";
  {
    FitsPtr f = create(path);
    CFITSIO_OK(fits_create_img(f.get(), BYTE_IMG, 0, nullptr, status));
    char* ttype[] = {const_cast<char*>("FLAGS"), const_cast<char*>("FLUX_APER")};
    char* tform[] = {const_cast<char*>("1I"), const_cast<char*>("3E")};
    char* tunit[] = {const_cast<char*>(""), const_cast<char*>("count")};
    CFITSIO_OK(
        fits_create_tbl(f.get(), BINARY_TBL, 2, 2, ttype, tform, tunit, "LDAC_OBJECTS", status));
    short flags[2] = {3, 16};
    float aper[6] = {1, 2, 3, 4, 5, 6};
    CFITSIO_OK(fits_write_col(f.get(), TSHORT, 1, 1, 1, 2, flags, status));
    CFITSIO_OK(fits_write_col(f.get(), TFLOAT, 2, 1, 1, 6, aper, status));
  }
  const Catalog cat = read_fits_catalog(path);
  ASSERT_EQ(cat.rows(), 2u);
  EXPECT_EQ(cat.get<std::int32_t>("FLAGS"), (std::vector<std::int32_t>{3, 16}));
  EXPECT_EQ(cat.get<float>("FLUX_APER_1"), (std::vector<float>{1, 4}));
  EXPECT_EQ(cat.get<float>("FLUX_APER_3"), (std::vector<float>{3, 6}));
  EXPECT_EQ(cat.find("FLUX_APER_2")->unit, "count");
}

TEST(FitsWrite, CsvFollowsRfc4180) {
  TempDir dir("csv");
  const std::string path = dir / "cat.csv";
  Catalog cat;
  cat.resize(2);
  cat.add_column<std::int32_t>("NUMBER");
  cat.add_column<float>("FLUX");
  cat.add_column<double>("RA");
  cat.add_column<std::string>("NOTE");
  cat.get<std::int32_t>("NUMBER") = {1, 2};
  cat.get<float>("FLUX") = {0.5f, 0.1f};
  cat.get<double>("RA") = {0.1, 150.25};
  cat.get<std::string>("NOTE") = {"a,b", "say \"hi\""};
  write_csv_catalog(path, cat);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  // 0.1f printed with 9 significant digits is 0.100000001; 0.1 with 17 is 0.10000000000000001.
  EXPECT_EQ(ss.str(),
            "NUMBER,FLUX,RA,NOTE\n"
            "1,0.5,0.10000000000000001,\"a,b\"\n"
            "2,0.100000001,150.25,\"say \"\"hi\"\"\"\n");
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"cat.csv"});
}

}  // namespace
}  // namespace astroflow
