// Options and OptionSchema: what a stage accepts in YAML, and the validated values it receives.
//
// A plugin declares its schema (name, type, default, doc, range). The host checks a stage's
// YAML mapping against it before `open()`: unknown keys, wrong types, out-of-range values and
// missing required options are fatal config errors that name the YAML line and column.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace astroflow {

enum class OptionType { kBool, kInt, kDouble, kString, kPath };

[[nodiscard]] std::string_view to_string(OptionType t);

using OptionValue = std::variant<bool, std::int64_t, double, std::string>;

/// Renders a value as YAML would show it (true, 3, 0.5, "text").
[[nodiscard]] std::string to_string(const OptionValue& v);

struct OptionSpec {
  std::string name;
  OptionType type = OptionType::kString;
  std::optional<OptionValue> default_value;  ///< nullopt means required
  std::string doc;
  std::optional<double> min;  ///< inclusive, numeric types only
  std::optional<double> max;
  std::vector<std::string> choices;  ///< allowed strings, empty = any
};

/// Builder used by plugins:
///   OptionSchema().add_double("threshold", 1.5, "detection threshold in RMS units", 0.1, 100)
class OptionSchema {
 public:
  OptionSchema& add_bool(std::string name, bool def, std::string doc);
  OptionSchema& add_int(std::string name, std::int64_t def, std::string doc,
                        std::optional<double> min = {}, std::optional<double> max = {});
  OptionSchema& add_double(std::string name, double def, std::string doc,
                           std::optional<double> min = {}, std::optional<double> max = {});
  OptionSchema& add_string(std::string name, std::string def, std::string doc,
                           std::vector<std::string> choices = {});
  /// A file path resolved relative to the config file. `def` empty + required=true: must be set.
  OptionSchema& add_path(std::string name, std::optional<std::string> def, std::string doc);
  OptionSchema& add(OptionSpec spec);

  [[nodiscard]] const std::vector<OptionSpec>& specs() const { return specs_; }
  [[nodiscard]] const OptionSpec* find(std::string_view name) const;

 private:
  std::vector<OptionSpec> specs_;
};

/// Validated option values (defaults filled in). Reading an option that the schema does not
/// declare throws std::out_of_range naming it.
class Options {
 public:
  Options() = default;
  void set(std::string name, OptionValue v) { values_[std::move(name)] = std::move(v); }
  [[nodiscard]] bool has(std::string_view name) const;
  [[nodiscard]] bool get_bool(std::string_view name) const;
  [[nodiscard]] std::int64_t get_int(std::string_view name) const;
  [[nodiscard]] double get_double(std::string_view name) const;  ///< ints widen to double
  [[nodiscard]] const std::string& get_string(std::string_view name) const;
  [[nodiscard]] const std::map<std::string, OptionValue, std::less<>>& values() const {
    return values_;
  }

 private:
  const OptionValue& at(std::string_view name) const;
  std::map<std::string, OptionValue, std::less<>> values_;
};

}  // namespace astroflow
