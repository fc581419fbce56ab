// Header: the FITS header cards of one HDU, kept verbatim (80-character records) so that
// outputs can carry the input's header and WCS unchanged.
//
// Structural keywords (SIMPLE, XTENSION, BITPIX, NAXISn, PCOUNT, GCOUNT, EXTEND, BSCALE, BZERO,
// BLANK, CHECKSUM, DATASUM, END, and the Z* keywords of tile compression) are never stored:
// the writer regenerates them for the data it writes.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace astroflow {

class Header {
 public:
  Header() = default;

  /// Appends one card. `card` is a raw FITS record (up to 80 characters); structural keywords
  /// are silently dropped (see above).
  void add_card(std::string card);

  /// Sets KEY = value / comment, replacing an existing card with the same key or appending.
  /// Strings are quoted for you; numbers are written with full precision.
  void set(std::string_view key, std::string_view value, std::string_view comment = {});
  void set(std::string_view key, double value, std::string_view comment = {});
  void set(std::string_view key, long long value, std::string_view comment = {});
  void set(std::string_view key, bool value, std::string_view comment = {});
  /// Without these two, a string literal would convert to bool and an int would be ambiguous.
  void set(std::string_view key, const char* value, std::string_view comment = {}) {
    set(key, std::string_view(value), comment);
  }
  void set(std::string_view key, int value, std::string_view comment = {}) {
    set(key, static_cast<long long>(value), comment);
  }

  void add_history(std::string_view text);
  void add_comment(std::string_view text);

  /// Value text of the first card with this key, string quotes removed and trimmed.
  [[nodiscard]] std::optional<std::string> get_string(std::string_view key) const;
  [[nodiscard]] std::optional<double> get_double(std::string_view key) const;
  [[nodiscard]] std::optional<long long> get_int(std::string_view key) const;
  [[nodiscard]] bool contains(std::string_view key) const;
  void erase(std::string_view key);

  [[nodiscard]] const std::vector<std::string>& cards() const { return cards_; }
  [[nodiscard]] std::size_t size() const { return cards_.size(); }

  /// All cards concatenated as 80-character records (no END), the form WCSLIB's wcspih reads.
  [[nodiscard]] std::string to_fits_string() const;

  /// True for keywords that describe the data layout and must not be copied to an output HDU.
  [[nodiscard]] static bool is_structural(std::string_view key);

 private:
  std::vector<std::string> cards_;
};

/// Electrons per data unit for the Poisson term of flux errors, taken from the header as
/// SExtractor's manual advises for its GAIN: the GAIN card when positive; else 1 when BUNIT says
/// the data are electrons (HST's `ELECTRONS`), EXPTIME when they are electrons per second
/// (`ELECTRONS/S`); else 0, no Poisson term. A plugin's `gain` option, when positive, wins.
[[nodiscard]] double poisson_gain(const Header& header);

}  // namespace astroflow
