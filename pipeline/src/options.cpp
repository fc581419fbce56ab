#include "astroflow/options.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace astroflow {

std::string_view to_string(OptionType t) {
  switch (t) {
    case OptionType::kBool:
      return "bool";
    case OptionType::kInt:
      return "int";
    case OptionType::kDouble:
      return "double";
    case OptionType::kString:
      return "string";
    case OptionType::kPath:
      return "path";
  }
  return "unknown";
}

std::string to_string(const OptionValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          return std::to_string(x);
        } else if constexpr (std::is_same_v<T, double>) {
          // The shortest text that reads back as the same double: 0.7, not 0.69999999999999996.
          return fmt::format("{}", x);
        } else {
          return "\"" + x + "\"";
        }
      },
      v);
}

OptionSchema& OptionSchema::add(OptionSpec spec) {
  if (find(spec.name) != nullptr) {
    throw std::invalid_argument("option '" + spec.name + "' declared twice in the schema");
  }
  specs_.push_back(std::move(spec));
  return *this;
}

OptionSchema& OptionSchema::add_bool(std::string name, bool def, std::string doc) {
  return add({std::move(name), OptionType::kBool, OptionValue{def}, std::move(doc), {}, {}, {}});
}

OptionSchema& OptionSchema::add_int(std::string name, std::int64_t def, std::string doc,
                                    std::optional<double> min, std::optional<double> max) {
  return add({std::move(name), OptionType::kInt, OptionValue{def}, std::move(doc), min, max, {}});
}

OptionSchema& OptionSchema::add_double(std::string name, double def, std::string doc,
                                       std::optional<double> min, std::optional<double> max) {
  return add(
      {std::move(name), OptionType::kDouble, OptionValue{def}, std::move(doc), min, max, {}});
}

OptionSchema& OptionSchema::add_string(std::string name, std::string def, std::string doc,
                                       std::vector<std::string> choices) {
  return add({std::move(name),
              OptionType::kString,
              OptionValue{std::move(def)},
              std::move(doc),
              {},
              {},
              std::move(choices)});
}

OptionSchema& OptionSchema::add_path(std::string name, std::optional<std::string> def,
                                     std::string doc) {
  std::optional<OptionValue> d;
  if (def) d = OptionValue{*def};
  return add({std::move(name), OptionType::kPath, std::move(d), std::move(doc), {}, {}, {}});
}

const OptionSpec* OptionSchema::find(std::string_view name) const {
  for (const auto& s : specs_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

bool Options::has(std::string_view name) const {
  return values_.find(name) != values_.end();
}

const OptionValue& Options::at(std::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw std::out_of_range("option '" + std::string(name) + "' is not set");
  return it->second;
}

bool Options::get_bool(std::string_view name) const {
  const auto& v = at(name);
  if (const bool* b = std::get_if<bool>(&v)) return *b;
  throw std::out_of_range("option '" + std::string(name) + "' is not a bool");
}

std::int64_t Options::get_int(std::string_view name) const {
  const auto& v = at(name);
  if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
  throw std::out_of_range("option '" + std::string(name) + "' is not an integer");
}

double Options::get_double(std::string_view name) const {
  const auto& v = at(name);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  throw std::out_of_range("option '" + std::string(name) + "' is not a number");
}

const std::string& Options::get_string(std::string_view name) const {
  const auto& v = at(name);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  throw std::out_of_range("option '" + std::string(name) + "' is not a string");
}

}  // namespace astroflow
