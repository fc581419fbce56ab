// Catalog: a table of sources with typed, unit-carrying columns.
//
// Column names follow SExtractor where a meaning is shared (NUMBER, X_IMAGE, Y_IMAGE 1-based,
// ALPHA_J2000, DELTA_J2000, FLUX_AUTO, A_IMAGE, B_IMAGE, THETA_IMAGE, FLAGS); ML stages add
// CLASS, P_<class> and DET_SCORE. Every column always has exactly rows() values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace astroflow {

enum class ColumnType { kInt32, kInt64, kFloat32, kFloat64, kString };

[[nodiscard]] std::string_view to_string(ColumnType t);

struct Column {
  std::string name;
  std::string unit;  ///< FITS TUNIT, e.g. "pix", "deg", "count"; empty when dimensionless
  std::string description;
  std::variant<std::vector<std::int32_t>, std::vector<std::int64_t>, std::vector<float>,
               std::vector<double>, std::vector<std::string>>
      values;

  [[nodiscard]] ColumnType type() const { return static_cast<ColumnType>(values.index()); }
  [[nodiscard]] std::size_t size() const;
  /// Numeric value as double (NaN for strings).
  [[nodiscard]] double as_double(std::size_t row) const;
  /// Value as text, as the CSV writer prints it (%.9g for float, %.17g for double).
  [[nodiscard]] std::string as_text(std::size_t row) const;
};

template <typename T>
struct column_type_of;
template <>
struct column_type_of<std::int32_t> {
  static constexpr ColumnType value = ColumnType::kInt32;
};
template <>
struct column_type_of<std::int64_t> {
  static constexpr ColumnType value = ColumnType::kInt64;
};
template <>
struct column_type_of<float> {
  static constexpr ColumnType value = ColumnType::kFloat32;
};
template <>
struct column_type_of<double> {
  static constexpr ColumnType value = ColumnType::kFloat64;
};
template <>
struct column_type_of<std::string> {
  static constexpr ColumnType value = ColumnType::kString;
};

class Catalog {
 public:
  [[nodiscard]] std::size_t rows() const { return rows_; }
  [[nodiscard]] bool empty() const { return rows_ == 0; }
  [[nodiscard]] const std::deque<Column>& columns() const { return columns_; }

  /// Adds a column filled with `fill` for existing rows, or returns the existing one if a column
  /// of that name and type exists. Throws std::invalid_argument on a type clash.
  /// The returned reference stays valid when further columns are added, but not across
  /// resize()/append_row()/append()/filter(), which may reallocate the values.
  template <typename T>
  std::vector<T>& add_column(std::string_view name, std::string_view unit = {},
                             std::string_view description = {}, T fill = T{}) {
    const bool existed = find(name) != nullptr;
    Column& c = add_column_impl(name, unit, description, column_type_of<T>::value);
    auto& v = std::get<std::vector<T>>(c.values);
    if (!existed) std::fill(v.begin(), v.end(), fill);
    return v;
  }

  [[nodiscard]] bool has(std::string_view name) const { return find(name) != nullptr; }
  [[nodiscard]] const Column* find(std::string_view name) const;
  [[nodiscard]] Column* find(std::string_view name);
  /// Throws std::out_of_range naming the column when it is missing or of another type.
  template <typename T>
  [[nodiscard]] std::vector<T>& get(std::string_view name) {
    return std::get<std::vector<T>>(require(name, column_type_of<T>::value).values);
  }
  template <typename T>
  [[nodiscard]] const std::vector<T>& get(std::string_view name) const {
    return std::get<std::vector<T>>(
        const_cast<Catalog*>(this)->require(name, column_type_of<T>::value).values);
  }

  /// Grows or shrinks every column to n rows (new cells: 0, NaN for floats, "" for strings).
  void resize(std::size_t n);
  /// Appends one row with default cells and returns its index.
  std::size_t append_row();

  /// Appends all rows of `other`. Columns missing on one side are created and filled with
  /// defaults. Throws std::invalid_argument on a type clash.
  void append(const Catalog& other);

  /// Keeps only the rows for which keep[row] is true.
  void filter(const std::vector<bool>& keep);

  /// Rows [first, first + count) with every column (units, descriptions). Throws
  /// std::out_of_range when they run past the last row.
  [[nodiscard]] Catalog slice(std::size_t first, std::size_t count) const;

 private:
  Column& add_column_impl(std::string_view name, std::string_view unit,
                          std::string_view description, ColumnType type);
  Column& require(std::string_view name, ColumnType type);
  std::deque<Column> columns_;  ///< a deque, so adding a column keeps references to others valid
  std::size_t rows_ = 0;
};

}  // namespace astroflow
