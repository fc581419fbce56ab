#include "astroflow/fits_io.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <system_error>

#include "astroflow/atomic_file.hpp"
#include "astroflow/error.hpp"
#include "astroflow/wcs.hpp"
#include "fits_file.hpp"

namespace astroflow {
namespace {

namespace fs = std::filesystem;

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::string card_key(std::string_view card) {
  return upper(trim(card.substr(0, std::min<std::size_t>(8, card.size()))));
}

/// What the reader needs to know about one HDU to select it.
struct HduInfo {
  int index = 0;  ///< 0-based
  int type = IMAGE_HDU;
  int bitpix = 0;
  std::vector<long> naxes;  ///< trailing axes of length 1 beyond the second removed
  std::string extname;      ///< upper case, empty when absent
  int extver = 0;

  [[nodiscard]] bool is_image_2d_or_more() const {
    return type == IMAGE_HDU && naxes.size() >= 2 &&
           std::all_of(naxes.begin(), naxes.end(), [](long n) { return n > 0; });
  }
  [[nodiscard]] std::string name() const { return extname.empty() ? "PRIMARY" : extname; }
  /// The HDU part of "path[HDU]", as Frame::label() prints it.
  [[nodiscard]] std::string label() const {
    if (extname.empty() || extname == "PRIMARY") return std::to_string(index);
    return extver > 0 ? extname + "," + std::to_string(extver) : extname;
  }
  [[nodiscard]] std::string describe() const {
    std::string kind;
    if (type == BINARY_TBL) {
      kind = "binary table";
    } else if (type == ASCII_TBL) {
      kind = "ASCII table";
    } else if (naxes.empty()) {
      kind = "image with no data (NAXIS=0)";
    } else {
      kind = std::to_string(naxes.size()) + "-D image";
    }
    return label() + ": " + kind;
  }
};

/// Reads an optional keyword; false (and no CFITSIO error left behind) when it is absent.
bool read_optional_key(fitsfile* f, const char* key, int datatype, void* value) {
  int status = 0;
  fits_write_errmark();
  fits_read_key(f, datatype, key, value, nullptr, &status);
  if (status != 0) {
    fits_clear_errmark();
    return false;
  }
  return true;
}

HduInfo inspect_hdu(FitsFile& f, int index) {
  HduInfo info;
  info.index = index;
  info.type = f.move_to(index);
  char name[FLEN_VALUE] = {};
  if (read_optional_key(f.get(), "EXTNAME", TSTRING, name)) {
    info.extname = upper(trim(name));
    // CFITSIO names the table holding a compressed primary image this way; it is not a name
    // the user gave.
    if (info.extname == "COMPRESSED_IMAGE") info.extname.clear();
  }
  int extver = 0;
  if (read_optional_key(f.get(), "EXTVER", TINT, &extver)) info.extver = extver;
  f.set_hdu_label(info.label());
  if (info.type == IMAGE_HDU) {
    int status = 0;
    int bitpix = 0;
    int naxis = 0;
    long naxes[9] = {};
    fits_get_img_param(f.get(), 9, &bitpix, &naxis, naxes, &status);
    f.check(status, "cannot read the image dimensions");
    info.bitpix = bitpix;
    info.naxes.assign(naxes, naxes + std::min(naxis, 9));
    while (info.naxes.size() > 2 && info.naxes.back() == 1) info.naxes.pop_back();
  }
  return info;
}

std::vector<HduInfo> inspect_file(FitsFile& f) {
  int n = 0;
  int status = 0;
  fits_get_num_hdus(f.get(), &n, &status);
  f.check(status, "cannot count the HDUs (file damaged or truncated?)");
  std::vector<HduInfo> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out.push_back(inspect_hdu(f, i));
  return out;
}

std::string list_hdus(const std::vector<HduInfo>& hdus) {
  std::string out;
  for (const auto& h : hdus) {
    if (!out.empty()) out += "; ";
    out += h.describe();
  }
  return out;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0;
  });
}

std::vector<const HduInfo*> select_hdus(const std::string& path, const std::vector<HduInfo>& hdus,
                                        const FitsReadOptions& options) {
  const std::string sel = trim(options.hdu);
  std::vector<const HduInfo*> out;
  if (sel.empty() || upper(sel) == "AUTO") {
    const std::string weight = upper(trim(options.weight_ext));
    const std::string mask = upper(trim(options.mask_ext));
    for (const auto& h : hdus) {
      if (!h.is_image_2d_or_more()) continue;
      if (!h.extname.empty() && (h.extname == weight || h.extname == mask)) continue;
      out.push_back(&h);
    }
    // HST-style files: ERR/DQ/SAMP/TIME planes sit beside SCI; only SCI is science.
    if (std::any_of(out.begin(), out.end(), [](const HduInfo* h) { return h->extname == "SCI"; })) {
      std::erase_if(out, [](const HduInfo* h) { return h->extname != "SCI"; });
    }
    if (out.empty()) {
      throw FrameError(path + "[0]: no 2-D image HDU in the file (" + list_hdus(hdus) + ")");
    }
    return out;
  }
  if (all_digits(sel)) {
    const long idx = std::stol(sel);
    if (idx >= static_cast<long>(hdus.size())) {
      throw FrameError(path + "[" + sel + "]: no such HDU; the file has " +
                       std::to_string(hdus.size()) + " (" + list_hdus(hdus) + ")");
    }
    out.push_back(&hdus[static_cast<std::size_t>(idx)]);
    return out;
  }
  std::string name = sel;
  int extver = -1;
  if (const auto comma = sel.find(','); comma != std::string::npos) {
    name = trim(sel.substr(0, comma));
    const std::string ver = trim(sel.substr(comma + 1));
    if (!all_digits(ver)) {
      throw FrameError(path + "[" + sel + "]: EXTVER '" + ver + "' is not a number");
    }
    extver = std::stoi(ver);
  }
  name = upper(name);
  for (const auto& h : hdus) {
    if (h.name() == name && (extver < 0 || h.extver == extver)) {
      out.push_back(&h);
      return out;
    }
  }
  throw FrameError(path + "[" + sel + "]: no HDU with EXTNAME=" + name +
                   (extver >= 0 ? " and EXTVER=" + std::to_string(extver) : std::string()) + " (" +
                   list_hdus(hdus) + ")");
}

/// The current HDU's header cards, as the uncompressed image would have them.
Header read_header(FitsFile& f) {
  char* text = nullptr;
  int nkeys = 0;
  int status = 0;
  // fits_convert_hdr2str presents a tile-compressed image's header as the image header
  // (Z* keywords translated back), which is what a user expects to propagate.
  fits_convert_hdr2str(f.get(), 0, nullptr, 0, &text, &nkeys, &status);
  f.check(status, "cannot read the header");
  Header h;
  for (int i = 0; i < nkeys; ++i) {
    std::string card(text + static_cast<std::ptrdiff_t>(i) * 80, 80);
    const std::string key = card_key(card);
    if (key == "EXTNAME" && upper(card).find("'COMPRESSED_IMAGE'") != std::string::npos) continue;
    h.add_card(std::move(card));
  }
  int free_status = 0;
  fits_free_memory(text, &free_status);
  return h;
}

bool is_commentary_key(const std::string& key) {
  return key.empty() || key == "COMMENT" || key == "HISTORY";
}

/// Adds the primary header's keyed cards that `ext` lacks. WCS keywords are per-HDU and the
/// extension-identity keywords describe the primary itself, so neither is inherited.
void merge_primary(Header& ext, const Header& primary) {
  for (const auto& card : primary.cards()) {
    const std::string key = card_key(card);
    if (is_commentary_key(key) || key == "EXTNAME" || key == "EXTVER" || key == "INHERIT" ||
        key.rfind("HIERARCH", 0) == 0 || Wcs::is_wcs_keyword(key) || ext.contains(key)) {
      continue;
    }
    ext.add_card(card);
  }
}

/// Reads plane `plane` (0-based) of the current image HDU as `datatype` into a new Mat.
cv::Mat read_plane(FitsFile& f, const HduInfo& info, long plane, int datatype, int cv_type,
                   const char* what) {
  const int width = static_cast<int>(info.naxes[0]);
  const int height = static_cast<int>(info.naxes[1]);
  cv::Mat out(height, width, cv_type);
  long first[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  if (info.naxes.size() >= 3) first[2] = plane + 1;
  const auto n = static_cast<LONGLONG>(width) * height;
  int anynul = 0;
  int status = 0;
  if (datatype == TFLOAT) {
    float nul = std::numeric_limits<float>::quiet_NaN();
    fits_read_pix(f.get(), TFLOAT, first, n, &nul, out.ptr<float>(), &anynul, &status);
  } else {
    int nul = 0;
    fits_read_pix(f.get(), TINT, first, n, &nul, out.ptr<int>(), &anynul, &status);
  }
  f.check(status, std::string("cannot read the ") + what + " pixels (file damaged or truncated?)");
  return out;
}

long checked_plane(const std::string& label, const HduInfo& info, int cube_plane) {
  if (info.naxes.size() == 2) return 0;
  if (info.naxes.size() > 3) {
    throw FrameError(label + ": " + std::to_string(info.naxes.size()) +
                     "-D image is not supported (only 2-D images and 3-D cubes)");
  }
  if (cube_plane < 0) {
    throw FrameError(label + ": 3-D cube (NAXIS3=" + std::to_string(info.naxes[2]) +
                     "); set input.cube_plane");
  }
  if (cube_plane >= info.naxes[2]) {
    throw FrameError(label + ": input.cube_plane=" + std::to_string(cube_plane) +
                     " is outside the cube (NAXIS3=" + std::to_string(info.naxes[2]) + ")");
  }
  return cube_plane;
}

/// Companion HDU (ERR, DQ, ...) for a science HDU: same EXTNAME as asked, same EXTVER; when the
/// science HDU has no EXTVER, the only companion of that name.
const HduInfo* find_companion(const std::vector<HduInfo>& hdus, const std::string& ext_name,
                              const HduInfo& sci) {
  const std::string name = upper(trim(ext_name));
  std::vector<const HduInfo*> named;
  for (const auto& h : hdus) {
    if (h.extname == name) named.push_back(&h);
  }
  for (const HduInfo* h : named) {
    if (h->extver == sci.extver) return h;
  }
  return named.size() == 1 && sci.extver == 0 ? named.front() : nullptr;
}

bool is_weight_name(const std::string& name) {
  return name == "WHT" || name == "WEIGHT" || name == "IVAR" || name == "INVVAR";
}

cv::Mat read_companion(FitsFile& f, const std::string& path, const std::vector<HduInfo>& hdus,
                       const std::string& ext_name, const HduInfo& sci, long plane, int datatype,
                       int cv_type, const char* what) {
  const std::string label = path + "[" + sci.label() + "]";
  const HduInfo* comp = find_companion(hdus, ext_name, sci);
  if (comp == nullptr) {
    throw FrameError(label + ": no " + what + " extension EXTNAME=" + upper(ext_name) +
                     " with EXTVER=" + std::to_string(sci.extver));
  }
  if (comp->type != IMAGE_HDU || comp->naxes.size() < 2 || comp->naxes[0] != sci.naxes[0] ||
      comp->naxes[1] != sci.naxes[1]) {
    throw FrameError(label + ": " + what + " extension " + comp->label() +
                     " does not have the science image's size");
  }
  f.move_to(comp->index);
  f.set_hdu_label(comp->label());
  return read_plane(f, *comp, comp->naxes.size() >= 3 ? plane : 0, datatype, cv_type, what);
}

// mask_good_bits: science pixels whose mask has a bit outside the good ones become NaN (blank
// for every stage), counted in a HISTORY card.
void blank_masked_pixels(Frame& frame, const FitsReadOptions& options) {
  const auto good = static_cast<std::int32_t>(options.mask_good_bits);
  std::size_t n = 0;
  for (int y = 0; y < frame.mask.rows; ++y) {
    const auto* m = frame.mask.ptr<std::int32_t>(y);
    auto* v = frame.science.ptr<float>(y);
    for (int x = 0; x < frame.mask.cols; ++x) {
      if ((m[x] & ~good) != 0) {
        v[x] = std::numeric_limits<float>::quiet_NaN();
        ++n;
      }
    }
  }
  frame.header.add_history("astroflow: mask " + upper(trim(options.mask_ext)) + " (good bits " +
                           std::to_string(good) + ") blanked " + std::to_string(n) + " of " +
                           std::to_string(frame.mask.total()) + " pixels");
}

Frame read_one(FitsFile& f, const std::string& path, const std::vector<HduInfo>& hdus,
               const HduInfo& info, const FitsReadOptions& options, std::size_t input_index) {
  const std::string label = path + "[" + info.label() + "]";
  if (info.type != IMAGE_HDU) {
    throw FrameError(label + ": HDU is a " + (info.type == BINARY_TBL ? "binary" : "ASCII") +
                     " table, not an image");
  }
  if (info.naxes.size() < 2) {
    throw FrameError(label + ": HDU has no 2-D image (NAXIS=" + std::to_string(info.naxes.size()) +
                     ")");
  }
  if (!info.is_image_2d_or_more()) throw FrameError(label + ": image has a zero-length axis");
  const long plane = checked_plane(label, info, options.cube_plane);

  Frame frame;
  frame.path = path;
  frame.hdu_index = info.index;
  frame.hdu_name = info.name();
  frame.hdu_version = info.extver;
  frame.input_index = input_index;

  f.move_to(info.index);
  f.set_hdu_label(info.label());
  frame.header = read_header(f);
  frame.science = read_plane(f, info, plane, TFLOAT, CV_32FC1, "science");

  bool any_finite = false;
  for (int r = 0; r < frame.science.rows; ++r) {
    auto* row = frame.science.ptr<float>(r);
    for (int c = 0; c < frame.science.cols; ++c) {
      if (std::isfinite(row[c])) {
        any_finite = true;
      } else {
        row[c] = std::numeric_limits<float>::quiet_NaN();
      }
    }
  }
  if (!any_finite) frame.flags |= kFrameAllBlank;

  if (info.index > 0) {
    f.move_to(0);
    f.set_hdu_label("0");
    merge_primary(frame.header, read_header(f));
  }

  if (!trim(options.weight_ext).empty()) {
    cv::Mat plane_in =
        read_companion(f, path, hdus, options.weight_ext, info, plane, TFLOAT, CV_32FC1, "weight");
    const bool already_weight = is_weight_name(upper(trim(options.weight_ext)));
    for (int r = 0; r < plane_in.rows; ++r) {
      auto* row = plane_in.ptr<float>(r);
      for (int c = 0; c < plane_in.cols; ++c) {
        float& v = row[c];
        if (already_weight) {
          // Already a weight map (inverse variance); only unusable values need cleaning.
          if (!std::isfinite(v) || v < 0.0f) v = 0.0f;
        } else {
          // An error (sigma) map: inverse variance, 0 where the error is unusable.
          v = (std::isfinite(v) && v > 0.0f) ? 1.0f / (v * v) : 0.0f;
          if (!std::isfinite(v)) v = 0.0f;
        }
      }
    }
    frame.weight = plane_in;
  }
  if (!trim(options.mask_ext).empty()) {
    frame.mask =
        read_companion(f, path, hdus, options.mask_ext, info, plane, TINT, CV_32SC1, "mask");
    blank_masked_pixels(frame, options);
  }

  try {
    frame.wcs = Wcs::from_header(frame.header);
  } catch (const FrameError& e) {
    // A broken WCS does not stop pixel-only stages; the issue is reported with the frame.
    frame.issues.push_back(FrameIssue{"reader", label + ": WCS ignored: " + e.what()});
  }
  if (frame.wcs) frame.pixel_scale_arcsec = frame.wcs->pixel_scale_arcsec();
  frame.tile = TileInfo{0, 0, frame.science.cols, frame.science.rows, 0, 1, 0};
  return frame;
}

/// Copies `header` into the current HDU, skipping cards CFITSIO already wrote identically
/// (its two standard primary-header COMMENT lines would otherwise double on every round trip).
void write_header_cards(FitsFile& f, const Header& header) {
  std::set<std::string> present;
  int nkeys = 0;
  int status = 0;
  fits_get_hdrspace(f.get(), &nkeys, nullptr, &status);
  f.check(status, "cannot read the new header");
  for (int i = 1; i <= nkeys; ++i) {
    char card[FLEN_CARD] = {};
    fits_read_record(f.get(), i, card, &status);
    f.check(status, "cannot read the new header");
    std::string c(card);
    c.resize(80, ' ');
    present.insert(c);
  }
  for (const auto& card : header.cards()) {
    std::string c = card;
    c.resize(80, ' ');
    if (present.contains(c)) continue;
    fits_write_record(f.get(), c.c_str(), &status);
    f.check(status, "cannot write header card '" + trim(c) + "'");
  }
}

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    out.push_back(c);
    if (c == '"') out.push_back('"');
  }
  out.push_back('"');
  return out;
}

/// TFORM of a binary-table column; strings are `width` characters wide.
std::string binary_tform(ColumnType type, std::size_t width) {
  switch (type) {
    case ColumnType::kInt32:
      return "1J";
    case ColumnType::kInt64:
      return "1K";
    case ColumnType::kFloat32:
      return "1E";
    case ColumnType::kFloat64:
      return "1D";
    case ColumnType::kString:
      break;
  }
  return std::to_string(width) + "A";
}

/// char* views of strings, for CFITSIO's char** parameters (the strings must outlive them).
std::vector<char*> ptrs(std::vector<std::string>& v) {
  std::vector<char*> p;
  for (auto& x : v) p.push_back(x.data());
  return p;
}

}  // namespace

std::vector<Frame> read_fits_frames(const std::string& path, const FitsReadOptions& options,
                                    std::size_t input_index) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) throw FrameError(path + "[0]: cannot open: " + ec.message());
  if (size == 0) throw FrameError(path + "[0]: empty file (0 bytes), not a FITS file");

  FitsFile f = FitsFile::open_read(path);
  const std::vector<HduInfo> hdus = inspect_file(f);
  std::vector<Frame> frames;
  for (const HduInfo* h : select_hdus(path, hdus, options)) {
    frames.push_back(read_one(f, path, hdus, *h, options, input_index));
  }
  return frames;
}

namespace {

void fill_fits_image(FitsFile& f, const cv::Mat& pixels, const Header& header,
                     const std::vector<std::string>& history) {
  if (pixels.channels() != 1 || pixels.dims != 2) {
    throw FrameError(f.path() + "[0]: cannot write an image with " +
                     std::to_string(pixels.channels()) + " channels / " +
                     std::to_string(pixels.dims) + " dimensions (need one 2-D plane)");
  }
  int bitpix = 0;
  int datatype = 0;
  switch (pixels.depth()) {
    case CV_8U:
      bitpix = BYTE_IMG;
      datatype = TBYTE;
      break;
    case CV_16S:
      bitpix = SHORT_IMG;
      datatype = TSHORT;
      break;
    case CV_16U:
      bitpix = USHORT_IMG;  // BITPIX 16 with BZERO 32768, the FITS unsigned convention
      datatype = TUSHORT;
      break;
    case CV_32S:
      bitpix = LONG_IMG;  // plain int32, no BZERO: what SExtractor writes for segmentation maps
      datatype = TINT;
      break;
    case CV_32F:
      bitpix = FLOAT_IMG;
      datatype = TFLOAT;
      break;
    case CV_64F:
      bitpix = DOUBLE_IMG;
      datatype = TDOUBLE;
      break;
    default:
      throw FrameError(f.path() + "[0]: cannot write OpenCV depth " +
                       std::to_string(pixels.depth()) + " as FITS");
  }
  const cv::Mat data = pixels.isContinuous() ? pixels : pixels.clone();
  int status = 0;
  long naxes[2] = {data.cols, data.rows};
  fits_create_img(f.get(), bitpix, 2, naxes, &status);
  f.check(status, "cannot create the image HDU");
  write_header_cards(f, header);
  for (const auto& line : history) {
    fits_write_history(f.get(), line.c_str(), &status);
    f.check(status, "cannot write a HISTORY card");
  }
  if (!data.empty()) {
    fits_write_img(f.get(), datatype, 1, static_cast<LONGLONG>(data.total()),
                   const_cast<uchar*>(data.data), &status);
    f.check(status, "cannot write the pixels");
  }
}

void fill_fits_catalog(FitsFile& f, const Catalog& catalog, const Header& primary_header,
                       const std::string& extname) {
  int status = 0;
  fits_create_img(f.get(), BYTE_IMG, 0, nullptr, &status);
  f.check(status, "cannot create the primary HDU");
  write_header_cards(f, primary_header);

  const auto& cols = catalog.columns();
  std::vector<std::string> ttype, tform, tunit;
  for (const auto& c : cols) {
    ttype.push_back(c.name);
    tunit.push_back(c.unit);
    std::size_t width = 1;
    if (c.type() == ColumnType::kString)
      for (const auto& s : std::get<std::vector<std::string>>(c.values))
        width = std::max(width, s.size());
    tform.push_back(binary_tform(c.type(), width));
  }
  auto ttype_p = ptrs(ttype);
  auto tform_p = ptrs(tform);
  auto tunit_p = ptrs(tunit);
  std::string ext = extname;
  f.set_hdu_label(extname);
  fits_create_tbl(f.get(), BINARY_TBL, static_cast<LONGLONG>(catalog.rows()),
                  static_cast<int>(cols.size()), ttype_p.data(), tform_p.data(), tunit_p.data(),
                  ext.data(), &status);
  f.check(status, "cannot create the catalog table");

  const auto nrows = static_cast<LONGLONG>(catalog.rows());
  for (std::size_t i = 0; i < cols.size(); ++i) {
    const Column& c = cols[i];
    const int colnum = static_cast<int>(i) + 1;
    if (!c.description.empty()) {
      // SExtractor's convention: the column description is the TTYPEn comment. 47
      // characters is what fits after a short fixed-format name on an 80-character card.
      const std::string key = "TTYPE" + std::to_string(colnum);
      fits_modify_comment(f.get(), key.c_str(), c.description.substr(0, 47).c_str(), &status);
      f.check(status, "cannot write the description of column " + c.name);
    }
    if (nrows == 0) continue;
    std::visit(
        [&](const auto& v) {
          using T = typename std::decay_t<decltype(v)>::value_type;
          if constexpr (std::is_same_v<T, std::string>) {
            std::vector<std::string> copy = v;
            std::vector<char*> p;
            for (auto& s : copy) p.push_back(s.data());
            fits_write_col(f.get(), TSTRING, colnum, 1, 1, nrows, p.data(), &status);
          } else {
            constexpr int kType = std::is_same_v<T, std::int32_t>   ? TINT
                                  : std::is_same_v<T, std::int64_t> ? TLONGLONG
                                  : std::is_same_v<T, float>        ? TFLOAT
                                                                    : TDOUBLE;
            static_assert(sizeof(T) == (kType == TINT        ? sizeof(int)
                                        : kType == TLONGLONG ? sizeof(long long)
                                        : kType == TFLOAT    ? sizeof(float)
                                                             : sizeof(double)));
            fits_write_col(f.get(), kType, colnum, 1, 1, nrows, const_cast<T*>(v.data()), &status);
          }
        },
        c.values);
    f.check(status, "cannot write column " + c.name);
  }
}

/// The bytes of the FITS file that `fill` writes, built in memory (a CFITSIO mem file) instead of
/// under a temporary name: one write(2) of the result, and a hash without reading it back.
std::string fits_bytes(const std::string& label_path, const std::function<void(FitsFile&)>& fill) {
  struct Buffer {
    void* data = nullptr;
    std::size_t size = 0;
    ~Buffer() { std::free(data); }
  } buffer;
  LONGLONG end = 0;
  {
    FitsFile f = FitsFile::create_in_memory(&buffer.data, &buffer.size, label_path);
    fill(f);
    // A FITS file is its HDUs back to back: it ends where the last (current) one does.
    int status = 0;
    LONGLONG head = 0;
    LONGLONG data = 0;
    fits_get_hduaddrll(f.get(), &head, &data, &end, &status);
    f.check(status, "cannot find the end of the in-memory file");
    f.close();
  }
  if (end < 0 || static_cast<std::size_t>(end) > buffer.size) {
    throw FrameError(label_path + "[0]: in-memory FITS file of " + std::to_string(end) +
                     " bytes does not fit its " + std::to_string(buffer.size) + "-byte buffer");
  }
  return std::string(static_cast<const char*>(buffer.data), static_cast<std::size_t>(end));
}

}  // namespace

void write_fits_image(const std::string& path, const cv::Mat& pixels, const Header& header,
                      const std::vector<std::string>& history) {
  write_atomically(path, [&](const std::string& tmp) {
    FitsFile f = FitsFile::create(tmp, path);
    fill_fits_image(f, pixels, header, history);
    f.close();
  });
}

std::string fits_image_bytes(const cv::Mat& pixels, const Header& header,
                             const std::vector<std::string>& history,
                             const std::string& label_path) {
  return fits_bytes(label_path, [&](FitsFile& f) { fill_fits_image(f, pixels, header, history); });
}

void write_fits_catalog(const std::string& path, const Catalog& catalog,
                        const Header& primary_header, const std::string& extname) {
  write_atomically(path, [&](const std::string& tmp) {
    FitsFile f = FitsFile::create(tmp, path);
    fill_fits_catalog(f, catalog, primary_header, extname);
    f.close();
  });
}

std::string fits_catalog_bytes(const Catalog& catalog, const Header& primary_header,
                               const std::string& extname, const std::string& label_path) {
  return fits_bytes(label_path,
                    [&](FitsFile& f) { fill_fits_catalog(f, catalog, primary_header, extname); });
}

Catalog read_fits_catalog(const std::string& path, int hdu) {
  FitsFile f = FitsFile::open_read(path);
  int nhdu = 0;
  int status = 0;
  fits_get_num_hdus(f.get(), &nhdu, &status);
  f.check(status, "cannot count the HDUs");
  int target = -1;
  if (hdu >= 0) {
    if (hdu >= nhdu) {
      throw FrameError(path + "[" + std::to_string(hdu) + "]: no such HDU; the file has " +
                       std::to_string(nhdu));
    }
    const int type = f.move_to(hdu);
    if (type == IMAGE_HDU) {
      throw FrameError(path + "[" + std::to_string(hdu) + "]: HDU is an image, not a table");
    }
    target = hdu;
  } else {
    for (int i = 1; i < nhdu && target < 0; ++i) {
      const int type = f.move_to(i);
      if (type == IMAGE_HDU) continue;
      char name[FLEN_VALUE] = {};
      // FITS_LDAC catalogs put the image header in a table before the objects.
      if (read_optional_key(f.get(), "EXTNAME", TSTRING, name) &&
          upper(trim(name)) == "LDAC_IMHEAD") {
        continue;
      }
      target = i;
    }
    if (target < 0) throw FrameError(path + "[0]: no table HDU in the file");
    f.move_to(target);
  }
  f.set_hdu_label(std::to_string(target));

  LONGLONG nrows = 0;
  int ncols = 0;
  fits_get_num_rowsll(f.get(), &nrows, &status);
  fits_get_num_cols(f.get(), &ncols, &status);
  f.check(status, "cannot read the table size");

  Catalog cat;
  cat.resize(static_cast<std::size_t>(nrows));
  const auto n = static_cast<std::size_t>(nrows);
  for (int col = 1; col <= ncols; ++col) {
    int typecode = 0;
    LONGLONG repeat = 0;
    LONGLONG width = 0;
    fits_get_eqcoltypell(f.get(), col, &typecode, &repeat, &width, &status);
    f.check(status, "cannot read the type of column " + std::to_string(col));
    char name[FLEN_VALUE] = {};
    char comment[FLEN_COMMENT] = {};
    const std::string ttype_key = "TTYPE" + std::to_string(col);
    fits_write_errmark();
    fits_read_key(f.get(), TSTRING, ttype_key.c_str(), name, comment, &status);
    if (status != 0) {
      fits_clear_errmark();
      status = 0;
      std::snprintf(name, sizeof name, "COL%d", col);
      comment[0] = '\0';
    }
    char unit[FLEN_VALUE] = {};
    const std::string tunit_key = "TUNIT" + std::to_string(col);
    read_optional_key(f.get(), tunit_key.c_str(), TSTRING, unit);
    const std::string base = trim(name);
    const std::string desc = trim(comment);
    const std::string unit_s = trim(unit);
    if (repeat <= 0) continue;  // zero-width column: nothing to read

    if (std::abs(typecode) == TSTRING) {
      std::vector<std::vector<char>> bufs(n,
                                          std::vector<char>(static_cast<std::size_t>(repeat) + 1));
      std::vector<char*> p;
      for (auto& b : bufs) p.push_back(b.data());
      int anynul = 0;
      char nul[] = "";
      if (n > 0) {
        fits_read_col(f.get(), TSTRING, col, 1, 1, nrows, nul, p.data(), &anynul, &status);
        f.check(status, "cannot read column " + base);
      }
      auto& out = cat.add_column<std::string>(base, unit_s, desc);
      for (std::size_t r = 0; r < n; ++r) {
        std::string s(bufs[r].data());
        while (!s.empty() && s.back() == ' ') s.pop_back();
        out[r] = std::move(s);
      }
      continue;
    }

    const auto rep = static_cast<std::size_t>(repeat);
    auto column_name = [&](std::size_t k) {
      return rep == 1 ? base : base + "_" + std::to_string(k + 1);
    };
    auto read_numeric = [&](auto tag, int datatype) {
      using T = decltype(tag);
      std::vector<T> buf(n * rep);
      int anynul = 0;
      T nul{};
      if constexpr (std::is_floating_point_v<T>) nul = std::numeric_limits<T>::quiet_NaN();
      if (n > 0) {
        fits_read_col(f.get(), datatype, col, 1, 1, static_cast<LONGLONG>(n * rep), &nul,
                      buf.data(), &anynul, &status);
        f.check(status, "cannot read column " + base);
      }
      return buf;
    };
    auto store = [&](auto buf, auto out_tag) {
      using O = decltype(out_tag);
      for (std::size_t k = 0; k < rep; ++k) {
        auto& out = cat.add_column<O>(column_name(k), unit_s, desc);
        for (std::size_t r = 0; r < n; ++r) out[r] = static_cast<O>(buf[r * rep + k]);
      }
    };
    switch (std::abs(typecode)) {
      case TLOGICAL: {
        auto buf = read_numeric(char{}, TLOGICAL);
        store(buf, std::int32_t{});
        break;
      }
      case TBYTE:
      case TSBYTE:
      case TSHORT:
      case TUSHORT:
      case TINT:
      case TLONG:
        store(read_numeric(int{}, TINT), std::int32_t{});
        break;
      case TUINT:
      case TULONG:
      case TLONGLONG:
      case TULONGLONG:
        store(read_numeric(static_cast<long long>(0), TLONGLONG), std::int64_t{});
        break;
      case TFLOAT:
        store(read_numeric(float{}, TFLOAT), float{});
        break;
      case TDOUBLE:
        store(read_numeric(double{}, TDOUBLE), double{});
        break;
      default:
        throw FrameError(f.label() + ": column " + base + " has CFITSIO type " +
                         std::to_string(typecode) + ", which a Catalog cannot hold");
    }
  }
  return cat;
}

void write_csv_catalog(const std::string& path, const Catalog& catalog) {
  // Streamed row by row: a survey's merged catalog can be millions of rows, and building the
  // whole text in memory first made peak RSS grow with the catalog size.
  write_atomically(path, [&catalog](const std::string& tmp_path) {
    std::ofstream os(tmp_path, std::ios::binary | std::ios::trunc);
    if (!os) throw std::runtime_error(tmp_path + ": cannot open for writing");
    const auto& cols = catalog.columns();
    std::string line;
    for (std::size_t i = 0; i < cols.size(); ++i) {
      if (i > 0) line.push_back(',');
      line += csv_field(cols[i].name);
    }
    line.push_back('\n');
    os << line;
    for (std::size_t r = 0; r < catalog.rows(); ++r) {
      line.clear();
      for (std::size_t i = 0; i < cols.size(); ++i) {
        if (i > 0) line.push_back(',');
        line += csv_field(cols[i].as_text(r));
      }
      line.push_back('\n');
      os << line;
    }
    os.flush();
    if (!os) throw std::runtime_error(tmp_path + ": write failed");
  });
}

std::string csv_catalog_text(const Catalog& catalog) {
  std::ostringstream os;
  write_csv_header(os, catalog);
  write_csv_rows(os, catalog);
  return std::move(os).str();
}

void write_csv_header(std::ostream& os, const Catalog& schema) {
  const auto& cols = schema.columns();
  std::string line;
  for (std::size_t i = 0; i < cols.size(); ++i) {
    if (i > 0) line.push_back(',');
    line += csv_field(cols[i].name);
  }
  line.push_back('\n');
  os << line;
}

void write_csv_rows(std::ostream& os, const Catalog& chunk) {
  const auto& cols = chunk.columns();
  std::string line;
  for (std::size_t r = 0; r < chunk.rows(); ++r) {
    line.clear();
    for (std::size_t i = 0; i < cols.size(); ++i) {
      if (i > 0) line.push_back(',');
      line += csv_field(cols[i].as_text(r));
    }
    line.push_back('\n');
    os << line;
  }
}

struct FitsCatalogAppender::Impl {
  FitsFile file;
  std::vector<std::pair<std::string, ColumnType>> columns;
  std::size_t rows = 0;
  std::size_t written = 0;
};

FitsCatalogAppender::FitsCatalogAppender(const std::string& tmp_path, const std::string& final_path,
                                         const Catalog& schema,
                                         const std::map<std::string, std::size_t>& string_widths,
                                         std::size_t rows, const Header& primary_header,
                                         const std::string& extname)
    : impl_(std::make_unique<Impl>(Impl{FitsFile::create(tmp_path, final_path), {}, rows, 0})) {
  // The same calls as write_fits_catalog, so the header bytes are the same.
  FitsFile& f = impl_->file;
  int status = 0;
  fits_create_img(f.get(), BYTE_IMG, 0, nullptr, &status);
  f.check(status, "cannot create the primary HDU");
  write_header_cards(f, primary_header);

  const auto& cols = schema.columns();
  std::vector<std::string> ttype, tform, tunit;
  for (const auto& c : cols) {
    impl_->columns.emplace_back(c.name, c.type());
    ttype.push_back(c.name);
    tunit.push_back(c.unit);
    const auto it = string_widths.find(c.name);
    tform.push_back(binary_tform(
        c.type(), std::max<std::size_t>(1, it == string_widths.end() ? 1 : it->second)));
  }
  auto ttype_p = ptrs(ttype);
  auto tform_p = ptrs(tform);
  auto tunit_p = ptrs(tunit);
  std::string ext = extname;
  f.set_hdu_label(extname);
  fits_create_tbl(f.get(), BINARY_TBL, static_cast<LONGLONG>(rows), static_cast<int>(cols.size()),
                  ttype_p.data(), tform_p.data(), tunit_p.data(), ext.data(), &status);
  f.check(status, "cannot create the catalog table");
  for (std::size_t i = 0; i < cols.size(); ++i) {
    if (cols[i].description.empty()) continue;
    const std::string key = "TTYPE" + std::to_string(i + 1);
    fits_modify_comment(f.get(), key.c_str(), cols[i].description.substr(0, 47).c_str(), &status);
    f.check(status, "cannot write the description of column " + cols[i].name);
  }
}

FitsCatalogAppender::~FitsCatalogAppender() = default;

void FitsCatalogAppender::append(const Catalog& chunk) {
  const auto& cols = chunk.columns();
  if (cols.size() != impl_->columns.size())
    throw std::invalid_argument("FitsCatalogAppender: chunk has " + std::to_string(cols.size()) +
                                " columns, the table " + std::to_string(impl_->columns.size()));
  const auto n = static_cast<LONGLONG>(chunk.rows());
  if (n == 0) return;
  if (impl_->written + chunk.rows() > impl_->rows)
    throw std::invalid_argument("FitsCatalogAppender: more rows than the table was made for");
  FitsFile& f = impl_->file;
  const auto first = static_cast<LONGLONG>(impl_->written) + 1;
  int status = 0;
  for (std::size_t i = 0; i < cols.size(); ++i) {
    const Column& c = cols[i];
    if (c.name != impl_->columns[i].first || c.type() != impl_->columns[i].second)
      throw std::invalid_argument("FitsCatalogAppender: chunk column " + std::to_string(i + 1) +
                                  " is " + c.name + ", the table's " + impl_->columns[i].first);
    const int colnum = static_cast<int>(i) + 1;
    std::visit(
        [&](const auto& v) {
          using T = typename std::decay_t<decltype(v)>::value_type;
          if constexpr (std::is_same_v<T, std::string>) {
            std::vector<std::string> copy = v;
            std::vector<char*> p;
            for (auto& s : copy) p.push_back(s.data());
            fits_write_col(f.get(), TSTRING, colnum, first, 1, n, p.data(), &status);
          } else {
            constexpr int kType = std::is_same_v<T, std::int32_t>   ? TINT
                                  : std::is_same_v<T, std::int64_t> ? TLONGLONG
                                  : std::is_same_v<T, float>        ? TFLOAT
                                                                    : TDOUBLE;
            fits_write_col(f.get(), kType, colnum, first, 1, n, const_cast<T*>(v.data()), &status);
          }
        },
        c.values);
    f.check(status, "cannot write column " + c.name);
  }
  impl_->written += chunk.rows();
}

void FitsCatalogAppender::close() {
  if (impl_->written != impl_->rows)
    throw std::logic_error("FitsCatalogAppender: " + std::to_string(impl_->written) + " of " +
                           std::to_string(impl_->rows) + " rows appended");
  impl_->file.close();
}

}  // namespace astroflow
