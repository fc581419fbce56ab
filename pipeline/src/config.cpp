// PipelineConfig::load: YAML -> a located tree -> --set overrides -> schema check -> canonical
// text. yaml-cpp nodes are converted once into a small tree of our own so that overrides can
// replace values without yaml-cpp's shared-reference semantics, and so that every value keeps
// the place it came from (file line/column, or the --set string that produced it).
#include "astroflow/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

#include "astroflow/atomic_file.hpp"
#include "astroflow/plugin_registry.hpp"

namespace astroflow {

namespace fs = std::filesystem;

std::string SourceLocation::str() const {
  std::string s = file;
  if (line > 0) {
    s += ":" + std::to_string(line);
    if (column > 0) s += ":" + std::to_string(column);
  }
  if (!key_path.empty()) s += (s.empty() ? "" : ": ") + key_path;
  return s;
}

ConfigError::ConfigError(const SourceLocation& where, const std::string& message)
    : FatalError(where.str().empty() ? message : where.str() + ": " + message), where_(where) {}

namespace {

enum class NumberParse { kOk, kNotANumber, kNotAnInteger, kOutOfRange };

NumberParse parse_double(std::string_view text, double& out);

// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("cvs" -> "csv"),
// the commonest typing slip.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  // A typo is at most two edits and never most of the word, so "seed" is not suggested for "x".
  const std::size_t limit = std::min<std::size_t>(2, std::max<std::size_t>(1, word.size() / 2));
  std::string best;
  std::size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    out += items[i];
  }
  return out;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  const std::string c = closest(word, candidates);
  return c.empty() ? std::string() : " (did you mean '" + c + "'?)";
}

bool parse_bool(std::string_view text, bool& out) {
  std::string t(text);
  std::transform(t.begin(), t.end(), t.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (t == "true" || t == "yes" || t == "on") {
    out = true;
    return true;
  }
  if (t == "false" || t == "no" || t == "off") {
    out = false;
    return true;
  }
  return false;
}

NumberParse parse_int(std::string_view text, std::int64_t& out) {
  std::string_view t = text;
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  if (t.empty()) return NumberParse::kNotANumber;
  const char* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, out);
  if (ec == std::errc::result_out_of_range) return NumberParse::kOutOfRange;
  if (ec == std::errc() && ptr == end) return NumberParse::kOk;
  double d = 0;
  if (parse_double(text, d) == NumberParse::kOk) return NumberParse::kNotAnInteger;
  return NumberParse::kNotANumber;
}

NumberParse parse_double(std::string_view text, double& out) {
  std::string_view t = text;
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  if (t.empty()) return NumberParse::kNotANumber;
  const char* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, out, std::chars_format::general);
  if (ec == std::errc::result_out_of_range) return NumberParse::kOutOfRange;
  if (ec != std::errc() || ptr != end) return NumberParse::kNotANumber;
  // from_chars accepts "inf"/"nan"; a non-finite threshold or size is never meant.
  if (!std::isfinite(out)) return NumberParse::kNotANumber;
  return NumberParse::kOk;
}

std::string format_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

std::string quote(std::string_view text) {
  return text.empty() ? std::string("nothing") : "'" + std::string(text) + "'";
}

// Where a value came from: a place in the YAML file, or the --set string that wrote it.
struct Loc {
  std::string file;
  int line = 0;
  int column = 0;
  std::string set_key;  // the key as typed after --set; empty for values read from the file
};

struct Entry;

struct Node {
  enum class Kind { kNull, kScalar, kSeq, kMap };
  Kind kind = Kind::kNull;
  std::string text;
  Loc loc;
  std::vector<Node> items;
  std::vector<Entry> entries;

  [[nodiscard]] Entry* find(std::string_view key);
  [[nodiscard]] const Entry* find(std::string_view key) const;
};

struct Entry {
  std::string key;
  Loc key_loc;
  Node value;
};

Entry* Node::find(std::string_view key) {
  for (auto& e : entries) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

const Entry* Node::find(std::string_view key) const {
  for (const auto& e : entries) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

SourceLocation located(const Loc& loc, const std::string& key_path) {
  return SourceLocation{loc.file, loc.line, loc.column,
                        loc.set_key.empty() ? key_path : loc.set_key};
}

[[noreturn]] void fail(const Loc& loc, const std::string& key_path, const std::string& message) {
  throw ConfigError(located(loc, key_path), message);
}

std::string child(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string describe(const Node& n) {
  switch (n.kind) {
    case Node::Kind::kNull:
      return "nothing";
    case Node::Kind::kScalar:
      return quote(n.text);
    case Node::Kind::kSeq:
      return "a list";
    case Node::Kind::kMap:
      return "a mapping";
  }
  return "something else";
}

Loc loc_of(const YAML::Mark& m, const std::string& file) {
  // yaml-cpp marks are 0-based; people and editors count from 1.
  if (m.is_null()) return Loc{file, 0, 0, {}};
  return Loc{file, m.line + 1, m.column + 1, {}};
}

Node convert(const YAML::Node& y, const std::string& file, const std::string& path) {
  Node n;
  n.loc = loc_of(y.Mark(), file);
  switch (y.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      n.kind = Node::Kind::kNull;
      break;
    case YAML::NodeType::Scalar:
      n.kind = Node::Kind::kScalar;
      n.text = y.Scalar();
      break;
    case YAML::NodeType::Sequence: {
      n.kind = Node::Kind::kSeq;
      std::size_t i = 0;
      for (const auto& item : y) {
        n.items.push_back(convert(item, file, indexed(path, i)));
        ++i;
      }
      break;
    }
    case YAML::NodeType::Map:
      n.kind = Node::Kind::kMap;
      for (const auto& kv : y) {
        const Loc key_loc = loc_of(kv.first.Mark(), file);
        if (!kv.first.IsScalar()) {
          fail(key_loc, path, "a key must be a plain name, not a list or mapping");
        }
        const std::string key = kv.first.Scalar();
        if (const Entry* first = n.find(key)) {
          fail(key_loc, child(path, key),
               "duplicate key '" + key + "' (first given at line " +
                   std::to_string(first->key_loc.line) + ")");
        }
        n.entries.push_back(Entry{key, key_loc, convert(kv.second, file, child(path, key))});
      }
      break;
  }
  return n;
}

void relocate(Node& n, const Loc& loc) {
  n.loc = loc;
  for (auto& item : n.items) relocate(item, loc);
  for (auto& e : n.entries) {
    e.key_loc = loc;
    relocate(e.value, loc);
  }
}

const std::vector<std::string> kTopKeys = {"plugin_paths", "input", "output", "run", "stages"};
const std::vector<std::string> kInputKeys = {
    "path",       "pattern",  "recursive",      "hdu",
    "weight_ext", "mask_ext", "mask_good_bits", "cube_plane"};
const std::vector<std::string> kOutputKeys = {"dir",    "catalog",   "per_input_catalog",
                                              "images", "quicklook", "merge_sky"};
const std::vector<std::string> kMergeSkyKeys = {"radius_arcsec", "keep"};
const std::vector<std::string> kKeepRules = {"best_snr", "farthest_from_edge"};
const std::vector<std::string> kRunKeys = {
    "threads",      "batch", "max_in_flight", "tile_size",
    "tile_overlap", "seed",  "commit_every",  "commit_interval_s"};
const std::vector<std::string> kCatalogFormats = {"fits", "csv"};

// ---------------------------------------------------------------------------------------------
// --set overrides

struct KeySegment {
  std::string name;  // empty for an index
  std::size_t index = 0;
  bool is_index = false;
};

std::vector<KeySegment> split_key(const std::string& key, const SourceLocation& where) {
  std::vector<KeySegment> out;
  std::size_t i = 0;
  while (i < key.size()) {
    if (key[i] == '[') {
      const std::size_t close = key.find(']', i);
      const std::string digits = close == std::string::npos ? "" : key.substr(i + 1, close - i - 1);
      if (digits.empty() || !std::all_of(digits.begin(), digits.end(),
                                         [](unsigned char c) { return std::isdigit(c) != 0; })) {
        throw ConfigError(where, "malformed index in override key; expected e.g. stages[2].option");
      }
      out.push_back(KeySegment{{}, std::stoul(digits), true});
      i = close + 1;
      if (i < key.size() && key[i] == '.') ++i;
      continue;
    }
    std::size_t end = key.find_first_of(".[", i);
    if (end == std::string::npos) end = key.size();
    if (end == i) throw ConfigError(where, "empty name in override key");
    out.push_back(KeySegment{key.substr(i, end - i), 0, false});
    i = end;
    if (i < key.size() && key[i] == '.') {
      ++i;
      if (i == key.size()) throw ConfigError(where, "override key ends with '.'");
    }
  }
  if (out.empty()) throw ConfigError(where, "empty override key; expected key.path=value");
  return out;
}

std::string stage_name_of(const Node& stage) {
  if (stage.kind != Node::Kind::kMap) return {};
  if (const Entry* n = stage.find("name"); n != nullptr && n->value.kind == Node::Kind::kScalar) {
    return n->value.text;
  }
  if (const Entry* p = stage.find("plugin"); p != nullptr && p->value.kind == Node::Kind::kScalar) {
    return p->value.text;
  }
  return {};
}

Node override_value(const std::string& value, const Loc& loc, const SourceLocation& where) {
  Node v;
  if (!value.empty() && (value.front() == '[' || value.front() == '{')) {
    // Lists and mappings are given in YAML flow style: output.catalog=[fits].
    try {
      v = convert(YAML::Load(value), "--set", where.key_path);
    } catch (const YAML::Exception& e) {
      throw ConfigError(where, "cannot parse value '" + value + "': " + e.msg);
    }
    relocate(v, loc);
  } else {
    // Taken verbatim (no YAML parsing) so that "input.pattern=*.fz" is not read as an alias.
    v.kind = Node::Kind::kScalar;
    v.text = value;
    v.loc = loc;
  }
  return v;
}

void apply_override(Node& root, const std::string& text) {
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError(SourceLocation{"--set", 0, 0, text},
                      "expected key.path=value, e.g. run.batch=16 or stages.sources.threshold=3");
  }
  const std::string key = text.substr(0, eq);
  const std::string value = text.substr(eq + 1);
  const SourceLocation where{"--set", 0, 0, key};
  const Loc loc{"--set", 0, 0, key};
  const std::vector<KeySegment> segs = split_key(key, where);

  if (segs.front().is_index ||
      std::find(kTopKeys.begin(), kTopKeys.end(), segs.front().name) == kTopKeys.end()) {
    const std::string first = segs.front().is_index ? "[...]" : segs.front().name;
    throw ConfigError(where, "unknown top-level key '" + first + "'; allowed keys: " +
                                 join(kTopKeys, ", ") + did_you_mean(first, kTopKeys));
  }

  Node* cur = &root;
  std::string walked;
  for (std::size_t s = 0; s < segs.size(); ++s) {
    const KeySegment& seg = segs[s];
    const bool last = s + 1 == segs.size();
    const bool in_stage_list = walked == "stages" && cur->kind == Node::Kind::kSeq;

    if (seg.is_index) {
      if (cur->kind != Node::Kind::kSeq) {
        throw ConfigError(where, "'" + walked + "' is not a list, so it cannot be indexed");
      }
      if (seg.index >= cur->items.size()) {
        throw ConfigError(where, "index " + std::to_string(seg.index) + " is out of range: '" +
                                     walked + "' has " + std::to_string(cur->items.size()) +
                                     " entries (indices start at 0)");
      }
      walked = indexed(walked, seg.index);
      if (last) {
        cur->items[seg.index] = override_value(value, loc, where);
        return;
      }
      cur = &cur->items[seg.index];
      continue;
    }

    if (in_stage_list) {
      // stages.<name>: the stage whose name (or, without one, plugin) matches.
      std::vector<std::string> names;
      Node* found = nullptr;
      for (auto& st : cur->items) {
        const std::string n = stage_name_of(st);
        names.push_back(n);
        if (n == seg.name && found == nullptr) found = &st;
      }
      if (found == nullptr) {
        throw ConfigError(where, "no stage named '" + seg.name + "'; stages are: " +
                                     join(names, ", ") + did_you_mean(seg.name, names));
      }
      if (last) {
        throw ConfigError(where,
                          "an override sets one option: stages." + seg.name + ".<option>=value");
      }
      walked = child(walked, seg.name);
      cur = found;
      continue;
    }

    if (cur->kind == Node::Kind::kNull) {
      cur->kind = Node::Kind::kMap;
      cur->loc = loc;
    }
    if (cur->kind != Node::Kind::kMap) {
      throw ConfigError(where, "'" + walked + "' is " + describe(*cur) +
                                   ", not a section with keys, so it has no '" + seg.name + "'");
    }
    Entry* e = cur->find(seg.name);
    if (last) {
      if (e == nullptr) {
        cur->entries.push_back(Entry{seg.name, loc, override_value(value, loc, where)});
      } else {
        e->key_loc = loc;
        e->value = override_value(value, loc, where);
      }
      return;
    }
    if (e == nullptr) {
      Node section;
      section.kind = segs[s + 1].is_index ? Node::Kind::kSeq : Node::Kind::kMap;
      section.loc = loc;
      cur->entries.push_back(Entry{seg.name, loc, std::move(section)});
      e = &cur->entries.back();
    }
    walked = child(walked, seg.name);
    cur = &e->value;
  }
}

// ---------------------------------------------------------------------------------------------
// Schema checks of the fixed sections

void only_keys(const Node& map, const std::string& path, const std::vector<std::string>& allowed) {
  for (const auto& e : map.entries) {
    if (std::find(allowed.begin(), allowed.end(), e.key) != allowed.end()) continue;
    const std::string where_text = path.empty() ? "at the top level" : "in '" + path + "'";
    fail(e.key_loc, child(path, e.key),
         "unknown key '" + e.key + "' " + where_text + "; allowed keys: " + join(allowed, ", ") +
             did_you_mean(e.key, allowed));
  }
}

const Node& as_map(const Entry& e, const std::string& path) {
  if (e.value.kind != Node::Kind::kMap) {
    fail(e.key_loc, path, "expected a mapping of keys, got " + describe(e.value));
  }
  return e.value;
}

std::string as_string(const Entry& e, const std::string& path, bool allow_empty = true) {
  if (e.value.kind != Node::Kind::kScalar) {
    fail(e.key_loc, path, "expected a string, got " + describe(e.value));
  }
  if (!allow_empty && e.value.text.empty()) fail(e.key_loc, path, "must not be empty");
  return e.value.text;
}

bool as_bool(const Entry& e, const std::string& path) {
  bool b = false;
  if (e.value.kind != Node::Kind::kScalar || !parse_bool(e.value.text, b)) {
    fail(e.key_loc, path, "expected true or false, got " + describe(e.value));
  }
  return b;
}

std::int64_t as_int(const Node& v, const Loc& loc, const std::string& path, std::int64_t min,
                    std::int64_t max) {
  std::int64_t i = 0;
  const NumberParse r =
      v.kind == Node::Kind::kScalar ? parse_int(v.text, i) : NumberParse::kNotANumber;
  if (r == NumberParse::kNotAnInteger) {
    fail(loc, path, "expected an integer, got " + describe(v));
  }
  if (r == NumberParse::kNotANumber) fail(loc, path, "expected an integer, got " + describe(v));
  if (r == NumberParse::kOutOfRange || i < min || i > max) {
    std::string range;
    if (max == std::numeric_limits<std::int64_t>::max()) {
      range = ">= " + std::to_string(min);
    } else {
      range = "in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    }
    fail(loc, path, "out of range: must be " + range + ", got " + describe(v));
  }
  return i;
}

int as_int(const Entry& e, const std::string& path, std::int64_t min,
           std::int64_t max = std::numeric_limits<int>::max()) {
  return static_cast<int>(as_int(e.value, e.key_loc, path, min, max));
}

std::vector<std::string> as_string_list(const Entry& e, const std::string& path) {
  std::vector<std::string> out;
  if (e.value.kind == Node::Kind::kScalar && !e.value.text.empty()) {
    out.push_back(e.value.text);  // "catalog: fits" is read as a one-item list
    return out;
  }
  if (e.value.kind != Node::Kind::kSeq) {
    fail(e.key_loc, path, "expected a list of strings, got " + describe(e.value));
  }
  for (std::size_t i = 0; i < e.value.items.size(); ++i) {
    const Node& item = e.value.items[i];
    if (item.kind != Node::Kind::kScalar || item.text.empty()) {
      fail(item.loc, indexed(path, i), "expected a non-empty string, got " + describe(item));
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (e.value.items[j].text == item.text) {
        fail(item.loc, indexed(path, i),
             "'" + item.text + "' is listed twice (also " + indexed(path, j) + ")");
      }
    }
    out.push_back(item.text);
  }
  return out;
}

std::string resolve_against(const std::string& directory, const std::string& p) {
  const fs::path path(p);
  if (path.is_absolute()) return path.lexically_normal().string();
  return (fs::path(directory) / path).lexically_normal().string();
}

void read_input(const Entry& section, InputConfig& in) {
  const Node& m = as_map(section, "input");
  only_keys(m, "input", kInputKeys);
  for (const auto& e : m.entries) {
    const std::string path = child("input", e.key);
    if (e.key == "path") {
      in.path = as_string(e, path);
    } else if (e.key == "pattern") {
      in.pattern = as_string(e, path, false);
    } else if (e.key == "recursive") {
      in.recursive = as_bool(e, path);
    } else if (e.key == "hdu") {
      in.hdu = as_string(e, path, false);
      std::int64_t index = 0;
      if (parse_int(in.hdu, index) == NumberParse::kOk && index < 0) {
        fail(e.key_loc, path, "an HDU index counts from 0 (primary), got " + in.hdu);
      }
    } else if (e.key == "weight_ext") {
      in.weight_ext = as_string(e, path);
    } else if (e.key == "mask_ext") {
      in.mask_ext = as_string(e, path);
    } else if (e.key == "mask_good_bits") {
      in.mask_good_bits = as_int(e, path, 0, std::numeric_limits<std::int32_t>::max());
    } else if (e.key == "cube_plane") {
      in.cube_plane = as_int(e, path, -1);
    }
  }
}

/// A list of catalog formats; an unknown one is reported at its list item.
std::vector<std::string> as_catalog_formats(const Entry& e, const std::string& path) {
  std::vector<std::string> formats = as_string_list(e, path);
  for (std::size_t i = 0; i < formats.size(); ++i) {
    const std::string& f = formats[i];
    if (std::find(kCatalogFormats.begin(), kCatalogFormats.end(), f) != kCatalogFormats.end()) {
      continue;
    }
    const Loc& loc = e.value.kind == Node::Kind::kSeq ? e.value.items[i].loc : e.key_loc;
    fail(loc, e.value.kind == Node::Kind::kSeq ? indexed(path, i) : path,
         "unknown catalog format '" + f + "'; allowed: " + join(kCatalogFormats, ", ") +
             did_you_mean(f, kCatalogFormats));
  }
  return formats;
}

void read_output(const Entry& section, OutputConfig& out) {
  const Node& m = as_map(section, "output");
  only_keys(m, "output", kOutputKeys);
  for (const auto& e : m.entries) {
    const std::string path = child("output", e.key);
    if (e.key == "dir") {
      out.dir = as_string(e, path);
    } else if (e.key == "catalog") {
      out.catalog = as_catalog_formats(e, path);
    } else if (e.key == "per_input_catalog") {
      out.per_input_catalog = as_catalog_formats(e, path);
      out.per_input_catalog_set = true;
    } else if (e.key == "images") {
      out.images = as_string_list(e, path);
      out.images_where.clear();
      for (std::size_t i = 0; i < out.images.size(); ++i) {
        out.images_where.push_back(e.value.kind == Node::Kind::kSeq
                                       ? located(e.value.items[i].loc, indexed(path, i))
                                       : located(e.key_loc, path));
      }
    } else if (e.key == "quicklook") {
      out.quicklook = as_bool(e, path);
    } else if (e.key == "merge_sky") {
      out.merge_sky = true;
      if (e.value.kind == Node::Kind::kNull) continue;  // "merge_sky:" alone: the defaults
      if (e.value.kind == Node::Kind::kScalar) {        // merge_sky: true|false
        out.merge_sky = as_bool(e, path);
        continue;
      }
      const Node& ms = as_map(e, path);
      only_keys(ms, path, kMergeSkyKeys);
      for (const auto& item : ms.entries) {
        const std::string mpath = child(path, item.key);
        if (item.key == "radius_arcsec") {
          double r = 0.0;
          if (item.value.kind != Node::Kind::kScalar ||
              parse_double(item.value.text, r) != NumberParse::kOk || !(r > 0.0) ||
              !std::isfinite(r)) {
            fail(item.key_loc, mpath,
                 "expected a positive number of arcsec, got " + describe(item.value));
          }
          out.merge_sky_radius_arcsec = r;
        } else if (item.key == "keep") {
          out.merge_sky_keep = as_string(item, mpath);
          if (std::find(kKeepRules.begin(), kKeepRules.end(), out.merge_sky_keep) ==
              kKeepRules.end()) {
            fail(item.key_loc, mpath,
                 "unknown rule '" + out.merge_sky_keep + "'; allowed: " + join(kKeepRules, ", ") +
                     did_you_mean(out.merge_sky_keep, kKeepRules));
          }
        }
      }
    }
  }
}

void read_run(const Entry& section, RunConfig& run) {
  const Node& m = as_map(section, "run");
  only_keys(m, "run", kRunKeys);
  const Entry* size_entry = nullptr;
  const Entry* overlap_entry = nullptr;
  for (const auto& e : m.entries) {
    const std::string path = child("run", e.key);
    if (e.key == "threads") {
      if (e.value.kind == Node::Kind::kScalar && e.value.text == "auto") {
        run.threads = 0;
      } else {
        std::int64_t i = 0;
        if (e.value.kind != Node::Kind::kScalar || parse_int(e.value.text, i) != NumberParse::kOk) {
          fail(e.key_loc, path, "expected 'auto' or a number of threads, got " + describe(e.value));
        }
        run.threads = as_int(e, path, 0, 4096);
      }
    } else if (e.key == "batch") {
      run.batch = as_int(e, path, 1, 1 << 20);
    } else if (e.key == "max_in_flight") {
      run.max_in_flight = as_int(e, path, 1, 1 << 16);
    } else if (e.key == "tile_size") {
      run.tile_size = as_int(e, path, 32, 1 << 20);
      size_entry = &e;
    } else if (e.key == "tile_overlap") {
      run.tile_overlap = as_int(e, path, 0);
      overlap_entry = &e;
    } else if (e.key == "seed") {
      std::uint64_t seed = 0;
      const std::string& t = e.value.text;
      const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), seed);
      if (e.value.kind != Node::Kind::kScalar || t.empty() || ec != std::errc() ||
          ptr != t.data() + t.size()) {
        fail(e.key_loc, path,
             "expected a non-negative integer below 2^64, got " + describe(e.value));
      }
      run.seed = seed;
    } else if (e.key == "commit_every") {
      run.commit_every = as_int(e, path, 1, 1 << 20);
    } else if (e.key == "commit_interval_s") {
      double s = 0.0;
      if (e.value.kind != Node::Kind::kScalar ||
          parse_double(e.value.text, s) != NumberParse::kOk || !(s >= 0.0) || !(s <= 86400.0)) {
        fail(e.key_loc, path,
             "expected a number of seconds in [0, 86400], got " + describe(e.value));
      }
      run.commit_interval_s = s;
    }
  }
  // Tiles overlap on both sides; at half the tile size or more, the stitcher has no pixel
  // that a single tile owns.
  if (2 * static_cast<std::int64_t>(run.tile_overlap) >= run.tile_size) {
    const Entry* blame = overlap_entry != nullptr ? overlap_entry : size_entry;
    fail(blame->key_loc, "run." + blame->key,
         "run.tile_overlap (" + std::to_string(run.tile_overlap) +
             ") must be less than half of run.tile_size (" + std::to_string(run.tile_size) + ")");
  }
}

bool valid_stage_name(const std::string& n) {
  // Names are addressed as stages.<name>.<option> on the command line.
  return !n.empty() && std::none_of(n.begin(), n.end(), [](unsigned char c) {
    return c == '.' || c == '[' || c == ']' || c == '=' || std::isspace(c) != 0;
  });
}

std::string flow_text(const Node& n);

void emit_node(YAML::Emitter& out, const Node& n) {
  switch (n.kind) {
    case Node::Kind::kNull:
      out << YAML::Null;
      break;
    case Node::Kind::kScalar:
      out << n.text;
      break;
    case Node::Kind::kSeq:
      out << YAML::Flow << YAML::BeginSeq;
      for (const auto& i : n.items) emit_node(out, i);
      out << YAML::EndSeq;
      break;
    case Node::Kind::kMap: {
      // Sorted so that reordering a nested option's keys does not change the hash.
      std::vector<const Entry*> sorted;
      for (const auto& e : n.entries) sorted.push_back(&e);
      std::sort(sorted.begin(), sorted.end(),
                [](const Entry* a, const Entry* b) { return a->key < b->key; });
      out << YAML::Flow << YAML::BeginMap;
      for (const Entry* e : sorted) {
        out << YAML::Key << e->key << YAML::Value;
        emit_node(out, e->value);
      }
      out << YAML::EndMap;
      break;
    }
  }
}

std::string flow_text(const Node& n) {
  YAML::Emitter out;
  emit_node(out, n);
  return out.c_str();
}

StageConfig read_stage(const Node& item, std::size_t index) {
  const std::string path = indexed("stages", index);
  if (item.kind != Node::Kind::kMap) {
    fail(item.loc, path,
         "expected a mapping with a 'plugin' key (e.g. {plugin: sources}), got " + describe(item));
  }
  StageConfig sc;
  sc.where = located(item.loc, path);
  const Entry* plugin = item.find("plugin");
  if (plugin == nullptr) {
    fail(item.loc, path, "missing required key 'plugin' (the plugin that runs this stage)");
  }
  sc.plugin = as_string(*plugin, child(path, "plugin"), false);
  sc.plugin_where = located(plugin->key_loc, child(path, "plugin"));
  sc.name = sc.plugin;
  if (const Entry* name = item.find("name")) {
    sc.name = as_string(*name, child(path, "name"), false);
    if (!valid_stage_name(sc.name)) {
      fail(name->key_loc, child(path, "name"),
           "stage name '" + sc.name + "' must not contain '.', '[', ']', '=' or spaces");
    }
  }
  for (const auto& e : item.entries) {
    if (e.key == "plugin" || e.key == "name") continue;
    RawOption raw;
    raw.where = located(e.key_loc, child(path, e.key));
    if (e.value.kind == Node::Kind::kScalar) {
      raw.text = e.value.text;
    } else if (e.value.kind == Node::Kind::kNull) {
      raw.text.clear();
    } else {
      raw.is_scalar = false;
      raw.text = flow_text(e.value);
    }
    sc.options.emplace(e.key, std::move(raw));
  }
  return sc;
}

void read_stages(const Entry& section, std::vector<StageConfig>& stages) {
  if (section.value.kind != Node::Kind::kSeq) {
    fail(section.key_loc, "stages",
         "expected a list of stages (each '- plugin: <name>'), got " + describe(section.value));
  }
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < section.value.items.size(); ++i) {
    StageConfig sc = read_stage(section.value.items[i], i);
    if (auto it = seen.find(sc.name); it != seen.end()) {
      const Node& item = section.value.items[i];
      const Entry* name = item.find("name");
      const Loc& loc = name != nullptr ? name->key_loc : item.find("plugin")->key_loc;
      const StageConfig& first = stages[it->second];
      fail(loc, indexed("stages", i) + (name != nullptr ? ".name" : ".plugin"),
           "duplicate stage name '" + sc.name + "' (also " + indexed("stages", it->second) +
               (first.where.line > 0 ? ", line " + std::to_string(first.where.line) : "") +
               "); give one of them a distinct 'name:'");
    }
    seen.emplace(sc.name, i);
    stages.push_back(std::move(sc));
  }
}

std::string canonical(const PipelineConfig& c, const std::vector<std::string>& plugin_paths) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "plugin_paths" << YAML::Value << YAML::Flow << plugin_paths;
  out << YAML::Key << "input" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "path" << YAML::Value << c.input.path;
  out << YAML::Key << "pattern" << YAML::Value << c.input.pattern;
  out << YAML::Key << "recursive" << YAML::Value << c.input.recursive;
  out << YAML::Key << "hdu" << YAML::Value << c.input.hdu;
  out << YAML::Key << "weight_ext" << YAML::Value << c.input.weight_ext;
  out << YAML::Key << "mask_ext" << YAML::Value << c.input.mask_ext;
  out << YAML::Key << "mask_good_bits" << YAML::Value << c.input.mask_good_bits;
  out << YAML::Key << "cube_plane" << YAML::Value << c.input.cube_plane;
  out << YAML::EndMap;
  out << YAML::Key << "output" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dir" << YAML::Value << c.output.dir;
  out << YAML::Key << "catalog" << YAML::Value << YAML::Flow << c.output.catalog;
  if (c.output.per_input_catalog_set)  // only when set, so older configs keep their hash
    out << YAML::Key << "per_input_catalog" << YAML::Value << YAML::Flow
        << c.output.per_input_catalog;
  out << YAML::Key << "images" << YAML::Value << YAML::Flow << c.output.images;
  out << YAML::Key << "quicklook" << YAML::Value << c.output.quicklook;
  if (c.output.merge_sky) {  // only when set, so the hash of older configs does not change
    out << YAML::Key << "merge_sky" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "radius_arcsec" << YAML::Value << c.output.merge_sky_radius_arcsec;
    out << YAML::Key << "keep" << YAML::Value << c.output.merge_sky_keep;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  // Scheduling (threads, max_in_flight, commit_every, commit_interval_s) changes no output byte,
  // so it is left out: a run resumed on a machine with other cores skips what is done.
  out << YAML::Key << "run" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "batch" << YAML::Value << c.run.batch;
  out << YAML::Key << "tile_size" << YAML::Value << c.run.tile_size;
  out << YAML::Key << "tile_overlap" << YAML::Value << c.run.tile_overlap;
  out << YAML::Key << "seed" << YAML::Value << std::to_string(c.run.seed);
  out << YAML::EndMap;
  out << YAML::Key << "stages" << YAML::Value << YAML::BeginSeq;
  for (const auto& s : c.stages) {
    out << YAML::BeginMap;
    out << YAML::Key << "plugin" << YAML::Value << s.plugin;
    out << YAML::Key << "name" << YAML::Value << s.name;
    for (const auto& [key, raw] : s.options) {  // std::map: sorted by option name
      out << YAML::Key << key << YAML::Value;
      if (raw.is_scalar) {
        out << raw.text;
      } else {
        out << YAML::Flow << YAML::Load(raw.text);
      }
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace

PipelineConfig PipelineConfig::load(const std::string& path,
                                    const std::vector<std::string>& overrides) {
  PipelineConfig cfg;
  cfg.file = path;
  std::error_code ec;
  // Absolute so that a plugin given a resolved path needs no knowledge of the working folder.
  cfg.directory = fs::absolute(fs::path(path), ec).parent_path().lexically_normal().string();

  if (fs::is_directory(path, ec)) {
    throw ConfigError(SourceLocation{path, 0, 0, {}}, "is a folder, not a YAML config file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ConfigError(SourceLocation{path, 0, 0, {}},
                      std::string("cannot open config file: ") + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  YAML::Node doc;
  try {
    doc = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    const Loc l = loc_of(e.mark, path);
    std::string hint;
    // yaml-cpp reports a tab in the indentation as e.g. "illegal block entry"; say why.
    std::istringstream lines(text.str());
    std::string line;
    for (int n = 1; std::getline(lines, line); ++n) {
      if (n != l.line) continue;
      const std::string indent = line.substr(0, line.find_first_not_of(" \t"));
      if (indent.find('\t') != std::string::npos)
        hint = " (YAML indentation must use spaces, not tabs)";
      break;
    }
    throw ConfigError(SourceLocation{path, l.line, l.column, {}},
                      "YAML syntax error: " + e.msg + hint);
  }

  Node root = convert(doc, path, "");
  if (root.kind == Node::Kind::kNull) {
    throw ConfigError(SourceLocation{path, 1, 1, {}},
                      "the config is empty; expected at least a 'stages:' list");
  }
  if (root.kind != Node::Kind::kMap) {
    fail(root.loc, "",
         "expected a mapping with the keys " + join(kTopKeys, ", ") + ", got " + describe(root));
  }
  for (const auto& o : overrides) apply_override(root, o);

  only_keys(root, "", kTopKeys);
  std::vector<std::string> raw_plugin_paths;
  const Entry* stages = nullptr;
  for (const auto& e : root.entries) {
    if (e.key == "plugin_paths") {
      raw_plugin_paths = as_string_list(e, "plugin_paths");
    } else if (e.key == "input") {
      if (e.value.kind != Node::Kind::kNull) read_input(e, cfg.input);
    } else if (e.key == "output") {
      if (e.value.kind != Node::Kind::kNull) read_output(e, cfg.output);
    } else if (e.key == "run") {
      if (e.value.kind != Node::Kind::kNull) read_run(e, cfg.run);
    } else if (e.key == "stages") {
      stages = &e;
    }
  }
  if (!cfg.output.per_input_catalog_set) cfg.output.per_input_catalog = cfg.output.catalog;
  if (stages == nullptr) {
    fail(root.loc, "stages", "missing required key 'stages' (the list of pipeline stages)");
  }
  read_stages(*stages, cfg.stages);
  for (const auto& p : raw_plugin_paths) {
    cfg.plugin_paths.push_back(resolve_against(cfg.directory, p));
  }
  cfg.canonical_text = canonical(cfg, raw_plugin_paths);
  return cfg;
}

std::string PipelineConfig::hash() const {
  return sha256_hex(canonical_text);
}

namespace {

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

std::vector<std::string> split_tokens(const std::vector<std::string>& raw, char sep) {
  std::vector<std::string> out;
  for (const auto& r : raw) {
    std::size_t start = 0;
    while (start <= r.size()) {
      std::size_t end = r.find(sep, start);
      if (end == std::string::npos) end = r.size();
      if (std::string t = trim(std::string_view(r).substr(start, end - start)); !t.empty()) {
        out.push_back(std::move(t));
      }
      start = end + 1;
    }
  }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

std::string expected_word(OptionType t) {
  switch (t) {
    case OptionType::kBool:
      return "true or false";
    case OptionType::kInt:
      return "an integer";
    case OptionType::kDouble:
      return "a number";
    case OptionType::kString:
      return "a string";
    case OptionType::kPath:
      return "a file path";
  }
  return "a value";
}

void check_range(const OptionSpec& spec, double v, const RawOption& raw) {
  const bool low = spec.min.has_value() && v < *spec.min;
  const bool high = spec.max.has_value() && v > *spec.max;
  if (!low && !high) return;
  std::string range;
  if (spec.min && spec.max) {
    range = "in [" + format_number(*spec.min) + ", " + format_number(*spec.max) + "]";
  } else if (spec.min) {
    range = ">= " + format_number(*spec.min);
  } else {
    range = "<= " + format_number(*spec.max);
  }
  throw ConfigError(raw.where, "out of range: must be " + range + ", got " + raw.text);
}

}  // namespace

OptionValue parse_option(const OptionSpec& spec, const RawOption& raw) {
  if (!raw.is_scalar) {
    const bool list = !raw.text.empty() && raw.text.front() == '[';
    throw ConfigError(raw.where, "expected " + expected_word(spec.type) + ", got " +
                                     (list ? "a list " : "a mapping ") + raw.text);
  }
  switch (spec.type) {
    case OptionType::kBool: {
      bool b = false;
      if (!parse_bool(raw.text, b)) {
        throw ConfigError(raw.where,
                          "expected true or false (or yes/no, on/off), got " + quote(raw.text));
      }
      return b;
    }
    case OptionType::kInt: {
      std::int64_t i = 0;
      const NumberParse r = parse_int(raw.text, i);
      if (r == NumberParse::kOutOfRange) {
        throw ConfigError(raw.where, "out of range for a 64-bit integer: " + raw.text);
      }
      if (r != NumberParse::kOk) {
        throw ConfigError(raw.where, "expected an integer, got " + quote(raw.text));
      }
      check_range(spec, static_cast<double>(i), raw);
      return i;
    }
    case OptionType::kDouble: {
      double d = 0;
      const NumberParse r = parse_double(raw.text, d);
      if (r == NumberParse::kOutOfRange) {
        throw ConfigError(raw.where, "out of range for a double: " + raw.text);
      }
      if (r != NumberParse::kOk) {
        throw ConfigError(raw.where, "expected a number, got " + quote(raw.text));
      }
      check_range(spec, d, raw);
      return d;
    }
    case OptionType::kString:
      if (!spec.choices.empty() && !contains(spec.choices, raw.text)) {
        throw ConfigError(raw.where, quote(raw.text) +
                                         " is not one of: " + join(spec.choices, ", ") +
                                         did_you_mean(raw.text, spec.choices));
      }
      return raw.text;
    case OptionType::kPath:
      if (raw.text.empty()) throw ConfigError(raw.where, "expected a file path, got nothing");
      return raw.text;
  }
  throw ConfigError(raw.where, "option type not supported");
}

std::vector<ResolvedStage> resolve_stages(const PipelineConfig& config,
                                          const PluginRegistry& registry) {
  // What the reader puts on every frame before the first stage runs.
  std::vector<std::string> provided = {"plane:science", "header", "wcs"};
  if (!config.input.weight_ext.empty()) provided.emplace_back("plane:weight");
  if (!config.input.mask_ext.empty()) provided.emplace_back("plane:mask");

  std::vector<std::string> plugin_names;
  for (const LoadedPlugin* p : registry.plugins()) plugin_names.push_back(p->name());
  std::map<std::string, std::string> plane_provider;  // plane token -> the stage that provides it

  std::vector<ResolvedStage> out;
  out.reserve(config.stages.size());
  for (std::size_t i = 0; i < config.stages.size(); ++i) {
    const StageConfig& stage = config.stages[i];
    const LoadedPlugin* plugin = registry.find(stage.plugin);
    if (plugin == nullptr) {
      std::string msg = "unknown plugin '" + stage.plugin + "'; ";
      if (plugin_names.empty()) {
        msg += "no plugins were found (check plugin_paths and ASTROFLOW_PLUGIN_PATH)";
      } else {
        msg +=
            "plugins found: " + join(plugin_names, ", ") + did_you_mean(stage.plugin, plugin_names);
      }
      if (!registry.refusals().empty()) msg += "; refused: " + join(registry.refusals(), "; ");
      throw ConfigError(stage.plugin_where.file.empty() ? stage.where : stage.plugin_where, msg);
    }

    const OptionSchema& schema = plugin->schema();
    ResolvedStage rs;
    rs.config = &stage;
    rs.plugin = plugin;
    for (const auto& [key, raw] : stage.options) {
      const OptionSpec* spec = schema.find(key);
      if (spec == nullptr) {
        std::vector<std::string> names;
        for (const auto& s : schema.specs()) names.push_back(s.name);
        throw ConfigError(raw.where, "unknown option '" + key + "' for plugin '" + stage.plugin +
                                         "'; " +
                                         (names.empty() ? std::string("it takes no options")
                                                        : "its options are: " + join(names, ", ") +
                                                              did_you_mean(key, names)));
      }
      OptionValue v = parse_option(*spec, raw);
      if (spec->type == OptionType::kPath) {
        const std::string resolved = resolve_against(config.directory, std::get<std::string>(v));
        std::error_code ec;
        if (!fs::is_regular_file(resolved, ec)) {
          throw ConfigError(raw.where, "missing " + spec->name + " file '" + resolved +
                                           "' (given as '" + raw.text + "', relative to " +
                                           config.directory + ")");
        }
        v = resolved;
      }
      rs.options.set(key, std::move(v));
    }
    for (const auto& spec : schema.specs()) {
      if (rs.options.has(spec.name)) continue;
      if (!spec.default_value) {
        SourceLocation where = stage.where;
        where.key_path = stage.where.key_path + "." + spec.name;
        throw ConfigError(where, "missing required option '" + spec.name + "' of plugin '" +
                                     stage.plugin + "' (" + std::string(to_string(spec.type)) +
                                     ": " + spec.doc + ")");
      }
      rs.options.set(spec.name, *spec.default_value);
    }

    // "a|b" in needs means either token will do (e.g. sources or whole cutouts); "a?opt" is
    // needed only when this stage's option says so.
    for (const Need& need_spec : plugin->needs_for(rs.options)) {
      const std::vector<std::string>& alternatives = need_spec.alternatives;
      const std::string need = need_spec.token();
      const bool met = std::any_of(alternatives.begin(), alternatives.end(),
                                   [&](const std::string& a) { return contains(provided, a); });
      if (met) continue;
      auto provides_need = [&](const LoadedPlugin& p) {
        const std::vector<std::string> prov = split_tokens(p.provides(), ',');
        return std::any_of(alternatives.begin(), alternatives.end(),
                           [&](const std::string& a) { return contains(prov, a); });
      };
      std::vector<std::string> later;
      for (std::size_t j = i + 1; j < config.stages.size(); ++j) {
        const LoadedPlugin* p = registry.find(config.stages[j].plugin);
        if (p != nullptr && provides_need(*p)) {
          later.push_back("'" + config.stages[j].name + "' (stages[" + std::to_string(j) + "])");
        }
      }
      std::vector<std::string> providers;
      for (const LoadedPlugin* p : registry.plugins()) {
        if (provides_need(*p)) providers.push_back(p->name());
      }
      std::string msg =
          "stage '" + stage.name + "' (plugin " + stage.plugin + ") needs '" + need + "'" +
          (need_spec.option.empty() ? std::string() : " (as " + need_spec.condition_text() + ")") +
          ", which neither the reader nor an earlier stage provides";
      if (!later.empty()) {
        msg += "; it is provided by the later stage " + join(later, ", ") +
               ", so place this stage after it";
      } else if (!providers.empty()) {
        msg +=
            "; add a stage of a plugin that provides it before this one: " + join(providers, ", ");
      } else {
        msg += "; no loaded plugin provides it";
      }
      // A need that an option switched on points at that option's line, if the YAML sets it.
      const auto set_here = stage.options.find(need_spec.option);
      throw ConfigError(need_spec.option.empty() || set_here == stage.options.end()
                            ? stage.where
                            : set_here->second.where,
                        msg);
    }
    const std::string who = "stage '" + stage.name + "' (stages[" + std::to_string(i) + "])";
    for (auto& p : split_tokens(plugin->provides(), ',')) {
      if (p.rfind("plane:", 0) == 0) {
        auto [it, fresh] = plane_provider.emplace(p, who);
        if (!fresh) {
          rs.replaced_planes.push_back(who + " replaces the plane '" + p.substr(6) + "' of " +
                                       it->second);
          it->second = who;
        }
      }
      provided.push_back(std::move(p));
    }
    out.push_back(std::move(rs));
  }

  // An image the writer is asked for must be a plane that is on the frame by then.
  std::vector<std::string> planes;
  for (const auto& p : provided) {
    if (p.rfind("plane:", 0) == 0) planes.push_back(p.substr(6));
  }
  for (std::size_t i = 0; i < config.output.images.size(); ++i) {
    const std::string& image = config.output.images[i];
    if (contains(planes, image)) continue;
    SourceLocation where{config.file, 0, 0, "output.images[" + std::to_string(i) + "]"};
    if (i < config.output.images_where.size()) where = config.output.images_where[i];
    throw ConfigError(where, "no stage provides the plane '" + image + "'; planes available: " +
                                 join(planes, ", ") + did_you_mean(image, planes));
  }
  return out;
}

}  // namespace astroflow
