#include "astroflow/header.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

namespace astroflow {
namespace {

constexpr std::size_t kCardLength = 80;
// Column 11 is where a FITS fixed-format value starts; column 30 is where fixed-format
// numbers and logicals end (FITS 4.0, section 4.2).
constexpr std::size_t kValueStart = 10;
constexpr std::size_t kFixedValueEnd = 30;

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool starts_with_hierarch(std::string_view card) {
  return card.size() > 9 && upper(card.substr(0, 9)) == "HIERARCH ";
}

/// Keyword of a card: columns 1-8, or the ESO HIERARCH name up to the '='.
std::string card_key(std::string_view card) {
  if (starts_with_hierarch(card)) {
    const auto eq = card.find('=');
    return upper(trim(card.substr(9, eq == std::string_view::npos ? card.npos : eq - 9)));
  }
  return upper(trim(card.substr(0, std::min<std::size_t>(8, card.size()))));
}

/// The value field of a card, or nullopt for commentary cards (no "= " value indicator).
std::optional<std::string_view> value_field(std::string_view card) {
  if (starts_with_hierarch(card)) {
    const auto eq = card.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    return card.substr(eq + 1);
  }
  if (card.size() < kValueStart || card.substr(8, 2) != "= ") return std::nullopt;
  return card.substr(kValueStart);
}

/// Parses a value field: quoted strings are unquoted ('' -> '), others end at the '/' comment.
std::optional<std::string> parse_value(std::string_view field) {
  const std::string_view t = trim(field);
  if (!t.empty() && t.front() == '\'') {
    std::string out;
    for (std::size_t i = 1; i < t.size(); ++i) {
      if (t[i] == '\'') {
        if (i + 1 < t.size() && t[i + 1] == '\'') {
          out.push_back('\'');
          ++i;
          continue;
        }
        break;
      }
      out.push_back(t[i]);
    }
    return std::string(trim(out));
  }
  const auto slash = field.find('/');
  return std::string(trim(field.substr(0, slash)));
}

std::string pad_card(std::string card) {
  if (card.size() > kCardLength) card.resize(kCardLength);
  card.resize(kCardLength, ' ');
  return card;
}

/// "KEY     = " or "HIERARCH KEY = " for keys that do not fit the 8-character field.
std::string key_prefix(std::string_view key) {
  std::string k = upper(trim(key));
  if (k.size() <= 8) {
    k.resize(8, ' ');
    return k + "= ";
  }
  return "HIERARCH " + k + " = ";
}

std::string with_comment(std::string card, std::string_view comment) {
  if (!comment.empty()) card += " / " + std::string(comment);
  return card;
}

/// Right-justifies a fixed-format value so that it ends in column 30.
std::string fixed_value(std::string prefix, std::string_view value) {
  if (prefix.size() == kValueStart && value.size() < kFixedValueEnd - kValueStart) {
    prefix.append(kFixedValueEnd - kValueStart - value.size(), ' ');
  }
  return prefix + std::string(value);
}

bool is_indexed(std::string_view key, std::string_view stem) {
  if (key.size() <= stem.size() || key.substr(0, stem.size()) != stem) return false;
  return std::all_of(key.begin() + static_cast<std::ptrdiff_t>(stem.size()), key.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
}

bool is_commentary(std::string_view key) {
  return key.empty() || key == "COMMENT" || key == "HISTORY";
}

void add_commentary(std::vector<std::string>& cards, std::string_view key, std::string_view text) {
  // Commentary text occupies columns 9-80; longer text continues on further cards.
  constexpr std::size_t kTextWidth = kCardLength - 8;
  std::string k(key);
  k.resize(8, ' ');
  do {
    const std::string_view piece = text.substr(0, std::min(kTextWidth, text.size()));
    cards.push_back(pad_card(k + std::string(piece)));
    text.remove_prefix(piece.size());
  } while (!text.empty());
}

}  // namespace

bool Header::is_structural(std::string_view key_in) {
  const std::string key = upper(trim(key_in));
  static constexpr std::array<std::string_view, 30> kExact = {
      "SIMPLE",   "XTENSION", "BITPIX",   "NAXIS",    "PCOUNT",   "GCOUNT",  "EXTEND",   "BSCALE",
      "BZERO",    "BLANK",    "CHECKSUM", "DATASUM",  "END",      "ZIMAGE",  "ZCMPTYPE", "ZBITPIX",
      "ZNAXIS",   "ZSIMPLE",  "ZTENSION", "ZEXTEND",  "ZBLOCKED", "ZPCOUNT", "ZGCOUNT",  "ZHECKSUM",
      "ZDATASUM", "ZQUANTIZ", "ZDITHER0", "ZMASKCMP", "TFIELDS",  "THEAP"};
  if (std::find(kExact.begin(), kExact.end(), key) != kExact.end()) return true;
  // Indexed layout keywords; the T* ones describe a table's columns, which never carry over to
  // an image written from this header.
  static constexpr std::array<std::string_view, 15> kIndexed = {
      "NAXIS", "ZNAXIS", "ZTILE", "ZNAME", "ZVAL",  "TTYPE", "TFORM", "TBCOL",
      "TDIM",  "TNULL",  "TSCAL", "TZERO", "TUNIT", "TDISP", "ZFORM"};
  return std::any_of(kIndexed.begin(), kIndexed.end(),
                     [&key](std::string_view stem) { return is_indexed(key, stem); }) ||
         key == "ZBLANK" || key == "ZSCALE" || key == "ZZERO";
}

void Header::add_card(std::string card) {
  const auto nl = card.find_first_of("\r\n");
  if (nl != std::string::npos) card.resize(nl);
  if (is_structural(card_key(card))) return;
  cards_.push_back(pad_card(std::move(card)));
}

void Header::set(std::string_view key, std::string_view value, std::string_view comment) {
  std::string quoted = "'";
  for (char c : value) {
    quoted.push_back(c);
    if (c == '\'') quoted.push_back('\'');
  }
  // Fixed-format strings are at least 8 characters between the quotes (FITS 4.0, 4.2.1).
  if (quoted.size() < 9) quoted.resize(9, ' ');
  quoted.push_back('\'');
  const std::string card = with_comment(key_prefix(key) + quoted, comment);
  const std::string k = upper(trim(key));
  if (is_structural(k)) return;
  for (auto& c : cards_) {
    if (card_key(c) == k) {
      c = pad_card(card);
      return;
    }
  }
  cards_.push_back(pad_card(card));
}

void Header::set(std::string_view key, double value, std::string_view comment) {
  std::string text;
  if (!std::isfinite(value)) {
    // FITS has no representation of NaN/Inf; an undefined value is an empty value field.
    text = "";
  } else {
    // Shortest text that reads back to the same double.
    std::array<char, 64> buf{};
    const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), value);
    text.assign(buf.data(), res.ptr);
    for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (text.find_first_of(".E") == std::string::npos) text += ".0";
  }
  const std::string k = upper(trim(key));
  if (is_structural(k)) return;
  const std::string card = with_comment(fixed_value(key_prefix(key), text), comment);
  for (auto& c : cards_) {
    if (card_key(c) == k) {
      c = pad_card(card);
      return;
    }
  }
  cards_.push_back(pad_card(card));
}

void Header::set(std::string_view key, long long value, std::string_view comment) {
  const std::string k = upper(trim(key));
  if (is_structural(k)) return;
  const std::string card =
      with_comment(fixed_value(key_prefix(key), std::to_string(value)), comment);
  for (auto& c : cards_) {
    if (card_key(c) == k) {
      c = pad_card(card);
      return;
    }
  }
  cards_.push_back(pad_card(card));
}

void Header::set(std::string_view key, bool value, std::string_view comment) {
  const std::string k = upper(trim(key));
  if (is_structural(k)) return;
  const std::string card = with_comment(fixed_value(key_prefix(key), value ? "T" : "F"), comment);
  for (auto& c : cards_) {
    if (card_key(c) == k) {
      c = pad_card(card);
      return;
    }
  }
  cards_.push_back(pad_card(card));
}

void Header::add_history(std::string_view text) {
  add_commentary(cards_, "HISTORY", text);
}

void Header::add_comment(std::string_view text) {
  add_commentary(cards_, "COMMENT", text);
}

std::optional<std::string> Header::get_string(std::string_view key) const {
  const std::string k = upper(trim(key));
  for (const auto& c : cards_) {
    if (card_key(c) != k) continue;
    if (is_commentary(k)) return std::string(trim(std::string_view(c).substr(8)));
    const auto field = value_field(c);
    if (!field) return std::nullopt;
    return parse_value(*field);
  }
  return std::nullopt;
}

std::optional<double> Header::get_double(std::string_view key) const {
  auto text = get_string(key);
  if (!text || text->empty()) return std::nullopt;
  // Fortran-style exponents (1.0D+03) are legal FITS.
  std::replace_if(
      text->begin(), text->end(), [](char c) { return c == 'D' || c == 'd'; }, 'E');
  const char* begin = text->c_str();
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin || *end != '\0') return std::nullopt;
  return v;
}

std::optional<long long> Header::get_int(std::string_view key) const {
  const auto text = get_string(key);
  if (!text || text->empty()) return std::nullopt;
  long long v = 0;
  const char* first = text->data();
  if (*first == '+') ++first;
  const char* last = text->data() + text->size();
  const auto res = std::from_chars(first, last, v);
  if (res.ec == std::errc{} && res.ptr == last) return v;
  // Accept integral reals such as "300.0", which some writers use for counts.
  const auto d = get_double(key);
  if (d && std::isfinite(*d) && std::floor(*d) == *d && std::fabs(*d) < 9.2e18) {
    return static_cast<long long>(*d);
  }
  return std::nullopt;
}

bool Header::contains(std::string_view key) const {
  const std::string k = upper(trim(key));
  return std::any_of(cards_.begin(), cards_.end(),
                     [&k](const std::string& c) { return card_key(c) == k; });
}

void Header::erase(std::string_view key) {
  const std::string k = upper(trim(key));
  std::erase_if(cards_, [&k](const std::string& c) { return card_key(c) == k; });
}

double poisson_gain(const Header& header) {
  if (const auto g = header.get_double("GAIN"); g && std::isfinite(*g) && *g > 0.0) return *g;
  const auto bunit = header.get_string("BUNIT");
  if (!bunit) return 0.0;
  std::string u;
  for (const char c : upper(*bunit)) {
    if (c != ' ') u += c;
  }
  static constexpr std::string_view kElectrons[] = {"ELECTRONS", "ELECTRON", "E-"};
  for (const std::string_view e : kElectrons) {
    if (u == e) return 1.0;
    for (const std::string_view per_s : {"/S", "/SEC", "/SECOND"}) {
      if (u == std::string(e) + std::string(per_s)) {
        const auto t = header.get_double("EXPTIME");
        return t && std::isfinite(*t) && *t > 0.0 ? *t : 0.0;
      }
    }
  }
  return 0.0;
}

std::string Header::to_fits_string() const {
  std::string out;
  out.reserve(cards_.size() * kCardLength);
  for (const auto& c : cards_) out += pad_card(c);
  return out;
}

}  // namespace astroflow
