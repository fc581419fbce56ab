// Wcs: a WCSLIB world coordinate system parsed from a FITS header, owned by RAII.
//
// Pixel coordinates in this API are FITS 1-based pixel coordinates (the centre of the first
// pixel is (1, 1)), the convention of SExtractor's X_IMAGE/Y_IMAGE. Sky coordinates are
// degrees in the frame the header declares (ICRS/FK5 J2000 for the surveys we target).
//
// Distortions: SIP (A_/B_ keywords, as in HST flt files) and TPV/TPD are applied when WCSLIB
// supports them for the header given.
//
// Thread safety: the object is fully set up (wcsset) at construction; const methods may be
// called concurrently. Copies are deep (wcssub).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "astroflow/header.hpp"

struct wcsprm;

namespace astroflow {

struct SkyCoord {
  double ra_deg = 0.0;
  double dec_deg = 0.0;
};

struct PixelCoord {
  double x = 0.0;  ///< FITS 1-based
  double y = 0.0;  ///< FITS 1-based
};

class Wcs {
 public:
  /// Parses the first celestial WCS in the header. Returns nullopt when the header has none.
  /// Throws FrameError when a WCS is present but WCSLIB rejects it (the message says why).
  static std::optional<Wcs> from_header(const Header& header);

  Wcs(const Wcs& other);
  Wcs& operator=(const Wcs& other);
  Wcs(Wcs&&) noexcept;
  Wcs& operator=(Wcs&&) noexcept;
  ~Wcs();

  [[nodiscard]] SkyCoord pixel_to_sky(PixelCoord p) const;
  [[nodiscard]] PixelCoord sky_to_pixel(SkyCoord s) const;
  /// Vectorised forms; inputs and outputs have the same length.
  void pixel_to_sky(const std::vector<PixelCoord>& in, std::vector<SkyCoord>& out) const;

  /// The WCS of a sub-image whose first pixel is pixel (x0 + 1, y0 + 1) of this image,
  /// i.e. with x0/y0 the 0-based offsets of the cut. CRPIX is shifted; distortions stay valid.
  [[nodiscard]] Wcs shifted(long x0, long y0) const;

  /// Mean pixel scale at the reference point, arcsec per pixel.
  [[nodiscard]] double pixel_scale_arcsec() const;

  /// Writes this WCS's cards into `header`, replacing any WCS cards there.
  void write_to(Header& header) const;

  [[nodiscard]] const wcsprm* raw() const { return prm_.get(); }

  /// True when the header carries a distortion (SIP, TPV, ...) that WCSLIB applies.
  [[nodiscard]] bool has_distortion() const;

  /// The WCS cards this object was parsed from (CRPIX already shifted for a shifted() copy).
  [[nodiscard]] const Header& cards() const { return wcs_cards_; }

  /// True for keywords that belong to a celestial WCS description (CTYPEn, CRPIXn, CDi_j, PCi_j,
  /// PVi_m, SIP A_p_q/B_p_q, RADESYS, ... with or without an alternate-WCS letter). These are
  /// per-HDU: they are never inherited from a primary header into an extension.
  [[nodiscard]] static bool is_wcs_keyword(std::string_view key);

 private:
  struct Deleter {
    void operator()(wcsprm* p) const noexcept;
  };
  explicit Wcs(std::unique_ptr<wcsprm, Deleter> prm, Header source_cards);
  std::unique_ptr<wcsprm, Deleter> prm_;
  Header wcs_cards_;  ///< the WCS cards as parsed, used by write_to and shifted
  /// WCSLIB keeps scratch buffers inside the struct (linprm::tmpcrd, the disprm work arrays), so
  /// the "const" transforms write to it; this serialises them. A pointer keeps Wcs movable.
  std::unique_ptr<std::mutex> transform_mutex_;
};

}  // namespace astroflow
