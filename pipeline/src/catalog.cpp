#include "astroflow/catalog.hpp"

#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace astroflow {
namespace {

template <typename T>
T default_cell() {
  if constexpr (std::is_floating_point_v<T>) {
    return std::numeric_limits<T>::quiet_NaN();
  } else {
    return T{};
  }
}

void resize_column(Column& c, std::size_t n) {
  std::visit(
      [n](auto& v) {
        using T = typename std::decay_t<decltype(v)>::value_type;
        v.resize(n, default_cell<T>());
      },
      c.values);
}

Column make_column(std::string_view name, std::string_view unit, std::string_view description,
                   ColumnType type) {
  Column c;
  c.name = std::string(name);
  c.unit = std::string(unit);
  c.description = std::string(description);
  switch (type) {
    case ColumnType::kInt32:
      c.values = std::vector<std::int32_t>{};
      break;
    case ColumnType::kInt64:
      c.values = std::vector<std::int64_t>{};
      break;
    case ColumnType::kFloat32:
      c.values = std::vector<float>{};
      break;
    case ColumnType::kFloat64:
      c.values = std::vector<double>{};
      break;
    case ColumnType::kString:
      c.values = std::vector<std::string>{};
      break;
  }
  return c;
}

}  // namespace

std::string_view to_string(ColumnType t) {
  switch (t) {
    case ColumnType::kInt32:
      return "int32";
    case ColumnType::kInt64:
      return "int64";
    case ColumnType::kFloat32:
      return "float32";
    case ColumnType::kFloat64:
      return "float64";
    case ColumnType::kString:
      return "string";
  }
  return "unknown";
}

std::size_t Column::size() const {
  return std::visit([](const auto& v) { return v.size(); }, values);
}

double Column::as_double(std::size_t row) const {
  return std::visit(
      [row](const auto& v) -> double {
        using T = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (std::is_same_v<T, std::string>) {
          return std::numeric_limits<double>::quiet_NaN();
        } else {
          return static_cast<double>(v.at(row));
        }
      },
      values);
}

std::string Column::as_text(std::size_t row) const {
  return std::visit(
      [row](const auto& v) -> std::string {
        using T = typename std::decay_t<decltype(v)>::value_type;
        char buf[64];
        if constexpr (std::is_same_v<T, std::string>) {
          return v.at(row);
        } else if constexpr (std::is_same_v<T, float>) {
          std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v.at(row)));
          return buf;
        } else if constexpr (std::is_same_v<T, double>) {
          std::snprintf(buf, sizeof buf, "%.17g", v.at(row));
          return buf;
        } else {
          return std::to_string(v.at(row));
        }
      },
      values);
}

const Column* Catalog::find(std::string_view name) const {
  for (const auto& c : columns_) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Column* Catalog::find(std::string_view name) {
  for (auto& c : columns_) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Column& Catalog::add_column_impl(std::string_view name, std::string_view unit,
                                 std::string_view description, ColumnType type) {
  if (Column* existing = find(name)) {
    if (existing->type() != type) {
      throw std::invalid_argument("catalog column '" + std::string(name) + "' exists as " +
                                  std::string(to_string(existing->type())) + ", not " +
                                  std::string(to_string(type)));
    }
    if (existing->unit.empty()) existing->unit = std::string(unit);
    if (existing->description.empty()) existing->description = std::string(description);
    return *existing;
  }
  columns_.push_back(make_column(name, unit, description, type));
  resize_column(columns_.back(), rows_);
  return columns_.back();
}

Column& Catalog::require(std::string_view name, ColumnType type) {
  Column* c = find(name);
  if (c == nullptr) throw std::out_of_range("catalog has no column '" + std::string(name) + "'");
  if (c->type() != type) {
    throw std::out_of_range("catalog column '" + std::string(name) + "' is " +
                            std::string(to_string(c->type())) + ", not " +
                            std::string(to_string(type)));
  }
  return *c;
}

void Catalog::resize(std::size_t n) {
  for (auto& c : columns_) resize_column(c, n);
  rows_ = n;
}

std::size_t Catalog::append_row() {
  resize(rows_ + 1);
  return rows_ - 1;
}

void Catalog::append(const Catalog& other) {
  const std::size_t old_rows = rows_;
  const std::size_t new_rows = rows_ + other.rows_;
  for (const auto& oc : other.columns_) {
    Column& c = add_column_impl(oc.name, oc.unit, oc.description, oc.type());
    resize_column(c, old_rows);
    std::visit(
        [&oc](auto& dst) {
          using V = std::decay_t<decltype(dst)>;
          const auto& src = std::get<V>(oc.values);
          dst.insert(dst.end(), src.begin(), src.end());
        },
        c.values);
  }
  for (auto& c : columns_) resize_column(c, new_rows);
  rows_ = new_rows;
}

void Catalog::filter(const std::vector<bool>& keep) {
  if (keep.size() != rows_) {
    throw std::invalid_argument("Catalog::filter: mask has " + std::to_string(keep.size()) +
                                " entries for " + std::to_string(rows_) + " rows");
  }
  std::size_t kept = 0;
  for (auto& c : columns_) {
    std::visit(
        [&keep, &kept](auto& v) {
          std::size_t out = 0;
          for (std::size_t i = 0; i < v.size(); ++i) {
            if (keep[i]) {
              if (out != i) v[out] = std::move(v[i]);
              ++out;
            }
          }
          v.resize(out);
          kept = out;
        },
        c.values);
  }
  if (columns_.empty()) {
    for (bool k : keep) kept += k ? 1 : 0;
  }
  rows_ = kept;
}

Catalog Catalog::slice(std::size_t first, std::size_t count) const {
  if (first > rows_ || count > rows_ - first)
    throw std::out_of_range("Catalog::slice: rows " + std::to_string(first) + ".." +
                            std::to_string(first + count) + " of a catalog of " +
                            std::to_string(rows_));
  Catalog out;
  for (const Column& c : columns_) {
    Column& dst = out.add_column_impl(c.name, c.unit, c.description, c.type());
    std::visit(
        [&](auto& v) {
          using V = std::decay_t<decltype(v)>;
          const auto& src = std::get<V>(c.values);
          v.assign(src.begin() + static_cast<std::ptrdiff_t>(first),
                   src.begin() + static_cast<std::ptrdiff_t>(first + count));
        },
        dst.values);
  }
  out.rows_ = count;
  return out;
}

}  // namespace astroflow
