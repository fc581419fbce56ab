#include "astroflow/wcs.hpp"

#include <wcslib/wcs.h>
#include <wcslib/wcsfix.h>
#include <wcslib/wcshdr.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <limits>
#include <regex>
#include <set>

#include "astroflow/error.hpp"

namespace astroflow {
namespace {

std::string card_key(std::string_view card) {
  if (card.size() > 9 && card.substr(0, 9) == "HIERARCH ") return {};
  std::string_view k = card.substr(0, std::min<std::size_t>(8, card.size()));
  while (!k.empty() && k.back() == ' ') k.remove_suffix(1);
  std::string out(k);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

/// Owns the array that wcspih allocates.
class WcspihResult {
 public:
  WcspihResult() = default;
  WcspihResult(const WcspihResult&) = delete;
  WcspihResult& operator=(const WcspihResult&) = delete;
  ~WcspihResult() {
    if (wcs != nullptr) wcsvfree(&nwcs, &wcs);
  }
  int nwcs = 0;
  wcsprm* wcs = nullptr;
};

wcsprm* new_blank_wcsprm() {
  auto* p = new wcsprm{};
  // flag = -1 tells wcsini/wcssub that the struct holds no memory yet.
  p->flag = -1;
  return p;
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool is_distortion_record_key(const std::string& key) {
  static const std::regex kPattern("^((CPDIS|CQDIS|CPERR|CQERR|DVERR)[0-9]+[A-Z]?|(DP|DQ)[0-9]+)$");
  return std::regex_match(key, kPattern);
}

/// HST flt/flc headers combine SIP with CPDISj = 'Lookup' and DPj records that point to
/// WCSDVARR image extensions. WCSLIB 7.12 has no lookup-table distortions, and given SIP plus
/// CPDISj/DPj its wcssub overflows a heap buffer (measured with AddressSanitizer). Those cards
/// are therefore dropped when SIP is present or when the distortion is a lookup table; SIP alone
/// is the standard approximation astropy and DS9 also fall back to.
void drop_unusable_distortion_cards(Header& cards) {
  bool sip = false;
  bool lookup = false;
  for (const auto& c : cards.cards()) {
    const std::string key = card_key(c);
    if (key.rfind("CTYPE", 0) == 0 && c.find("-SIP") != std::string::npos) sip = true;
    if ((key.rfind("CPDIS", 0) == 0 || key.rfind("CQDIS", 0) == 0)) {
      std::string v = cards.get_string(key).value_or("");
      for (char& ch : v) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      if (v == "LOOKUP") lookup = true;
    }
  }
  if (!sip && !lookup) return;
  std::set<std::string> drop;
  for (const auto& c : cards.cards()) {
    std::string key = card_key(c);
    if (is_distortion_record_key(key)) drop.insert(std::move(key));
  }
  for (const auto& k : drop) cards.erase(k);
}

}  // namespace

void Wcs::Deleter::operator()(wcsprm* p) const noexcept {
  if (p == nullptr) return;
  wcsfree(p);
  delete p;
}

bool Wcs::is_wcs_keyword(std::string_view key) {
  // Matches exactly
  //   (CTYPE|CUNIT|CRVAL|CDELT|CRPIX|CROTA|CRDER|CSYER|CNAME|CPDIS|CQDIS|CPERR|CQERR|DVERR)[0-9]+[A-Z]?
  //   | (PC|CD|PV|PS)[0-9]+_[0-9]+[A-Z]? | (A|B|AP|BP)_[0-9]+_[0-9]+ | (A|B|AP|BP)_ORDER
  //   | A_DMAX | B_DMAX | (DP|DQ)[0-9]+
  //   | (WCSAXES|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|WCSNAME)[A-Z]?
  // by hand: it runs for every card of every input, and std::regex made it the largest
  // per-file cost of reading a cutout (wcs_test checks it against that regex).
  auto digits = [](std::string_view& s) {
    std::size_t n = 0;
    while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
    s.remove_prefix(n);
    return n > 0;
  };
  auto alternate_or_end = [](std::string_view s) {
    return s.empty() || (s.size() == 1 && s[0] >= 'A' && s[0] <= 'Z');
  };
  auto after = [key](std::string_view stem, std::string_view& rest) {
    if (key.substr(0, stem.size()) != stem) return false;
    rest = key.substr(stem.size());
    return true;
  };
  std::string_view rest;
  static constexpr std::array<std::string_view, 14> kIndexed = {
      "CTYPE", "CUNIT", "CRVAL", "CDELT", "CRPIX", "CROTA", "CRDER",
      "CSYER", "CNAME", "CPDIS", "CQDIS", "CPERR", "CQERR", "DVERR"};
  for (std::string_view stem : kIndexed)
    if (after(stem, rest) && digits(rest) && alternate_or_end(rest)) return true;
  for (std::string_view stem : {"PC", "CD", "PV", "PS"}) {
    if (after(stem, rest) && digits(rest) && !rest.empty() && rest[0] == '_') {
      rest.remove_prefix(1);
      if (digits(rest) && alternate_or_end(rest)) return true;
    }
  }
  for (std::string_view stem : {"A", "B", "AP", "BP"}) {
    if (!after(stem, rest)) continue;
    if (rest == "_ORDER") return true;
    if (rest.empty() || rest[0] != '_') continue;
    rest.remove_prefix(1);
    if (digits(rest) && !rest.empty() && rest[0] == '_') {
      rest.remove_prefix(1);
      if (digits(rest) && rest.empty()) return true;
    }
  }
  if (key == "A_DMAX" || key == "B_DMAX") return true;
  for (std::string_view stem : {"DP", "DQ"})
    if (after(stem, rest) && digits(rest) && rest.empty()) return true;
  static constexpr std::array<std::string_view, 8> kGlobal = {
      "WCSAXES", "LONPOLE", "LATPOLE", "RADESYS", "RADECSYS", "EQUINOX", "EPOCH", "WCSNAME"};
  for (std::string_view stem : kGlobal)
    if (after(stem, rest) && alternate_or_end(rest)) return true;
  return false;
}

Wcs::Wcs(std::unique_ptr<wcsprm, Deleter> prm, Header source_cards)
    : prm_(std::move(prm)),
      wcs_cards_(std::move(source_cards)),
      transform_mutex_(std::make_unique<std::mutex>()) {}

std::optional<Wcs> Wcs::from_header(const Header& header) {
  // Only the WCS cards are parsed, so that shifted() (which re-parses the kept cards) and the
  // original always describe the same transform.
  Header cards;
  for (const auto& c : header.cards()) {
    if (is_wcs_keyword(card_key(c))) cards.add_card(c);
  }
  if (cards.size() == 0) return std::nullopt;
  drop_unusable_distortion_cards(cards);

  std::string text = cards.to_fits_string();
  int nreject = 0;
  WcspihResult parsed;
  const int status = wcspih(text.data(), static_cast<int>(cards.size()), WCSHDR_all, 0, &nreject,
                            &parsed.nwcs, &parsed.wcs);
  if (status != 0) {
    throw FrameError(std::string("WCS header rejected by WCSLIB wcspih: ") + wcshdr_errmsg[status]);
  }

  // The primary description (alt == ' ') first, then the alternates in header order.
  std::vector<int> order;
  for (int i = 0; i < parsed.nwcs; ++i) {
    if (parsed.wcs[i].alt[0] == ' ' || parsed.wcs[i].alt[0] == '\0')
      order.insert(order.begin(), i);
    else
      order.push_back(i);
  }
  std::string first_error;
  for (int i : order) {
    wcsprm& src = parsed.wcs[i];
    int fix_status[NWCSFIX];
    // Repairs common non-standard forms (omitted CD diagonal, 'DEG' units, NCP/GLS, ...). A
    // fix that does not apply reports an error here and is harmless: wcsset decides validity.
    (void)wcsfix(0, nullptr, &src, fix_status);

    std::vector<int> axes(static_cast<std::size_t>(std::max(src.naxis, 2)), 0);
    axes[0] = WCSSUB_CELESTIAL;
    int nsub = 1;
    std::unique_ptr<wcsprm, Deleter> sub(new_blank_wcsprm());
    int s = wcssub(1, &src, &nsub, axes.data(), sub.get());
    if (s != 0) {
      if (first_error.empty()) first_error = std::string("wcssub: ") + wcs_errmsg[s];
      continue;
    }
    if (nsub != 2) continue;  // no celestial pair in this description
    s = wcsset(sub.get());
    if (s != 0) {
      if (first_error.empty()) first_error = std::string("wcsset: ") + wcs_errmsg[s];
      continue;
    }
    if (sub->lng < 0 || sub->lat < 0) continue;
    Wcs out(std::move(sub), std::move(cards));
    // WCSLIB 7.12 accepts a singular matrix at wcsset and fails only in sky-to-pixel; a WCS
    // without an area per pixel is useless, so reject it here with the reason.
    if (!(out.pixel_scale_arcsec() > 0.0)) {
      throw FrameError("WCS header rejected: the CD (or PC x CDELT) matrix is singular");
    }
    return out;
  }
  if (!first_error.empty()) {
    throw FrameError("WCS header rejected by WCSLIB " + first_error);
  }
  return std::nullopt;
}

Wcs::Wcs(const Wcs& other)
    : prm_(new_blank_wcsprm()),
      wcs_cards_(other.wcs_cards_),
      transform_mutex_(std::make_unique<std::mutex>()) {
  if (!other.prm_) {
    prm_.reset();
    return;
  }
  int s = 0;
  {
    // wcssub reads only the "given" part of the source, but the source may be mid-transform in
    // another thread; reading under its lock keeps the copy consistent.
    std::lock_guard lock(*other.transform_mutex_);
    s = wcssub(1, other.prm_.get(), nullptr, nullptr, prm_.get());
  }
  if (s == 0) s = wcsset(prm_.get());
  if (s != 0) throw FrameError(std::string("WCS copy failed in WCSLIB: ") + wcs_errmsg[s]);
}

Wcs& Wcs::operator=(const Wcs& other) {
  if (this != &other) {
    Wcs copy(other);
    *this = std::move(copy);
  }
  return *this;
}

Wcs::Wcs(Wcs&&) noexcept = default;
Wcs& Wcs::operator=(Wcs&&) noexcept = default;
Wcs::~Wcs() = default;

SkyCoord Wcs::pixel_to_sky(PixelCoord p) const {
  if (!prm_) return {kNaN, kNaN};
  double pix[2] = {p.x, p.y};
  double img[2];
  double phi = 0.0;
  double theta = 0.0;
  double world[2];
  int stat[1] = {0};
  int s = 0;
  {
    std::lock_guard lock(*transform_mutex_);
    s = wcsp2s(prm_.get(), 1, 2, pix, img, &phi, &theta, world, stat);
  }
  if (s != 0) return {kNaN, kNaN};
  return {world[prm_->lng], world[prm_->lat]};
}

PixelCoord Wcs::sky_to_pixel(SkyCoord sc) const {
  if (!prm_) return {kNaN, kNaN};
  double world[2];
  world[prm_->lng] = sc.ra_deg;
  world[prm_->lat] = sc.dec_deg;
  double phi = 0.0;
  double theta = 0.0;
  double img[2];
  double pix[2];
  int stat[1] = {0};
  int s = 0;
  {
    std::lock_guard lock(*transform_mutex_);
    s = wcss2p(prm_.get(), 1, 2, world, &phi, &theta, img, pix, stat);
  }
  if (s != 0) return {kNaN, kNaN};
  return {pix[0], pix[1]};
}

void Wcs::pixel_to_sky(const std::vector<PixelCoord>& in, std::vector<SkyCoord>& out) const {
  out.assign(in.size(), SkyCoord{kNaN, kNaN});
  if (!prm_ || in.empty()) return;
  const std::size_t n = in.size();
  std::vector<double> pix(2 * n), img(2 * n), world(2 * n), phi(n), theta(n);
  std::vector<int> stat(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    pix[2 * i] = in[i].x;
    pix[2 * i + 1] = in[i].y;
  }
  int s = 0;
  {
    std::lock_guard lock(*transform_mutex_);
    s = wcsp2s(prm_.get(), static_cast<int>(n), 2, pix.data(), img.data(), phi.data(), theta.data(),
               world.data(), stat.data());
  }
  // Status 8 (some pixels invalid) still fills the valid ones; stat[] marks the rest.
  if (s != 0 && s != WCSERR_BAD_PIX) return;
  for (std::size_t i = 0; i < n; ++i) {
    if (stat[i] != 0) continue;
    out[i] = {world[2 * i + static_cast<std::size_t>(prm_->lng)],
              world[2 * i + static_cast<std::size_t>(prm_->lat)]};
  }
}

Wcs Wcs::shifted(long x0, long y0) const {
  // Re-parsing the cards with CRPIX moved keeps every distortion consistent: SIP and the other
  // pixel-space polynomials are defined relative to CRPIX, and WCSLIB derives its internal
  // offsets from CRPIX when it parses them.
  Header cards = wcs_cards_;
  std::set<std::string> keys;
  for (const auto& c : cards.cards()) keys.insert(card_key(c));
  bool shifted_any = false;
  for (const auto& key : keys) {
    if (key.rfind("CRPIX", 0) != 0 || key.size() < 6) continue;
    const char axis = key[5];
    if ((axis != '1' && axis != '2') || (key.size() > 6 && !std::isupper(key[6])) ||
        key.size() > 7) {
      continue;
    }
    const double offset = static_cast<double>(axis == '1' ? x0 : y0);
    const double v = cards.get_double(key).value_or(0.0);
    cards.set(key, v - offset);
    shifted_any = true;
  }
  if (!shifted_any || !keys.contains("CRPIX1") || !keys.contains("CRPIX2")) {
    // An omitted CRPIXj defaults to 0 (WCS Paper I).
    if (!keys.contains("CRPIX1")) cards.set("CRPIX1", -static_cast<double>(x0));
    if (!keys.contains("CRPIX2")) cards.set("CRPIX2", -static_cast<double>(y0));
  }
  auto out = from_header(cards);
  if (!out) throw FrameError("WCS: shifted header lost its celestial WCS");
  return std::move(*out);
}

double Wcs::pixel_scale_arcsec() const {
  if (!prm_) return 0.0;
  // piximg = CDELT x PC (or CD), in degrees per pixel after wcsset.
  const double* m = prm_->lin.piximg;
  const int n = prm_->naxis;
  const int a = prm_->lng;
  const int b = prm_->lat;
  const double det = m[a * n + a] * m[b * n + b] - m[a * n + b] * m[b * n + a];
  return std::sqrt(std::fabs(det)) * 3600.0;
}

bool Wcs::has_distortion() const {
  return prm_ && (prm_->lin.dispre != nullptr || prm_->lin.disseq != nullptr);
}

void Wcs::write_to(Header& header) const {
  std::set<std::string> stale;
  for (const auto& c : header.cards()) {
    std::string k = card_key(c);
    if (is_wcs_keyword(k)) stale.insert(std::move(k));
  }
  for (const auto& k : stale) header.erase(k);
  for (const auto& c : wcs_cards_.cards()) header.add_card(c);
}

}  // namespace astroflow
