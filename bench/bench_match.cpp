// astroflow-bench-match: matches detection catalogs to a truth table and prints completeness
// per truth-magnitude bin and the purity of each catalog.
//
//   astroflow-bench-match --truth field.truth.csv --cat astroflow=af.csv --cat sextractor=sex.cat
//       [--time astroflow=12.3 --time sextractor=9.8 --mpix 16.78] [--radius 2] [--bin 0.5]
//
// Catalogs are CSV files with a header row (astroflow, the simulator's truth) or SExtractor
// ASCII_HEAD files ("#   1 NUMBER ..." column lines). Positions are X_IMAGE / Y_IMAGE (1-based);
// the truth magnitude column is MAG. Matching is nearest-unique: all (truth, detection) pairs
// closer than the radius are taken in order of increasing distance, each side used once.
// A detection with no truth partner is spurious and counts against purity. Purity uses every
// row of the truth table, however faint (the simulator's table goes to mag 28-29.5, far below
// the detection limit), so a detection of a real faint source is never counted as spurious;
// only the magnitude bins of the completeness table depend on MAG. All catalogs given in one
// call are matched by the same code with the same radius.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

struct Table {
  std::vector<std::string> names;
  std::vector<std::vector<double>> cols;
  [[nodiscard]] const std::vector<double>& col(const std::string& name,
                                               const std::string& path) const {
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return cols[i];
    }
    throw std::runtime_error(path + ": no column " + name);
  }
};

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.push_back(cur);
      cur.clear();
    } else if (c != '\r') {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

double to_number(const std::string& s) {
  try {
    std::size_t used = 0;
    const double v = std::stod(s, &used);
    return v;
  } catch (const std::exception&) {
    return std::nan("");
  }
}

Table read_table(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  Table t;
  std::string line;
  if (in.peek() == '#') {
    // SExtractor ASCII_HEAD: "#   3 X_IMAGE   Object position along x   [pixel]".
    std::map<int, std::string> by_index;
    while (in.peek() == '#' && std::getline(in, line)) {
      std::istringstream ls(line.substr(1));
      int index = 0;
      std::string name;
      if (ls >> index >> name) by_index[index] = name;
    }
    for (const auto& [index, name] : by_index) t.names.push_back(name);
    t.cols.resize(t.names.size());
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::vector<double> row;
      std::string tok;
      while (ls >> tok) row.push_back(to_number(tok));
      if (row.size() < t.names.size()) continue;
      for (std::size_t i = 0; i < t.names.size(); ++i) t.cols[i].push_back(row[i]);
    }
    return t;
  }
  if (!std::getline(in, line)) throw std::runtime_error(path + ": empty");
  t.names = split_csv(line);
  t.cols.resize(t.names.size());
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto cells = split_csv(line);
    for (std::size_t i = 0; i < t.names.size(); ++i) {
      t.cols[i].push_back(i < cells.size() ? to_number(cells[i]) : std::nan(""));
    }
  }
  return t;
}

// match[i] = index of the truth source matched to detection i, or -1.
std::vector<int> match(const std::vector<double>& tx, const std::vector<double>& ty,
                       const std::vector<double>& dx, const std::vector<double>& dy,
                       double radius) {
  // Grid hash of the truth positions with cells of the match radius.
  auto key = [&](double x, double y) {
    return (static_cast<long long>(std::floor(x / radius)) << 32) ^
           static_cast<long long>(static_cast<unsigned>(std::floor(y / radius)));
  };
  std::unordered_map<long long, std::vector<int>> grid;
  for (std::size_t i = 0; i < tx.size(); ++i)
    grid[key(tx[i], ty[i])].push_back(static_cast<int>(i));
  struct Pair {
    double d;
    int det;
    int tru;
  };
  std::vector<Pair> pairs;
  for (std::size_t j = 0; j < dx.size(); ++j) {
    if (!std::isfinite(dx[j]) || !std::isfinite(dy[j])) continue;
    for (int ox = -1; ox <= 1; ++ox) {
      for (int oy = -1; oy <= 1; ++oy) {
        const auto it = grid.find(key(dx[j] + ox * radius, dy[j] + oy * radius));
        if (it == grid.end()) continue;
        for (int i : it->second) {
          const double d = std::hypot(dx[j] - tx[static_cast<std::size_t>(i)],
                                      dy[j] - ty[static_cast<std::size_t>(i)]);
          if (d <= radius) pairs.push_back(Pair{d, static_cast<int>(j), i});
        }
      }
    }
  }
  std::sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) {
    if (a.d != b.d) return a.d < b.d;
    if (a.det != b.det) return a.det < b.det;
    return a.tru < b.tru;
  });
  std::vector<int> det_match(dx.size(), -1);
  std::vector<char> truth_used(tx.size(), 0);
  for (const Pair& p : pairs) {
    if (det_match[static_cast<std::size_t>(p.det)] >= 0 ||
        truth_used[static_cast<std::size_t>(p.tru)]) {
      continue;
    }
    det_match[static_cast<std::size_t>(p.det)] = p.tru;
    truth_used[static_cast<std::size_t>(p.tru)] = 1;
  }
  return det_match;
}

int usage() {
  std::cerr << "usage: astroflow-bench-match --truth T.csv --cat NAME=PATH [--cat ...]\n"
               "       [--time NAME=SECONDS ...] [--mpix MPIX] [--radius PIX] [--bin MAG]\n"
               "       [--mag-col MAG]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string truth_path;
  std::vector<std::pair<std::string, std::string>> cats;
  std::map<std::string, double> times;
  double mpix = 0.0;
  double radius = 2.0;
  double bin = 0.5;
  std::string mag_col = "MAG";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
      return argv[++i];
    };
    auto split_eq = [](const std::string& s) {
      const auto eq = s.find('=');
      if (eq == std::string::npos) throw std::runtime_error("expected NAME=VALUE, got " + s);
      return std::make_pair(s.substr(0, eq), s.substr(eq + 1));
    };
    try {
      if (a == "--truth") {
        truth_path = next();
      } else if (a == "--cat") {
        cats.push_back(split_eq(next()));
      } else if (a == "--time") {
        const auto [name, value] = split_eq(next());
        times[name] = std::stod(value);
      } else if (a == "--mpix") {
        mpix = std::stod(next());
      } else if (a == "--radius") {
        radius = std::stod(next());
      } else if (a == "--bin") {
        bin = std::stod(next());
      } else if (a == "--mag-col") {
        mag_col = next();
      } else {
        return usage();
      }
    } catch (const std::exception& e) {
      std::cerr << "astroflow-bench-match: " << e.what() << "\n";
      return usage();
    }
  }
  if (truth_path.empty() || cats.empty()) return usage();

  try {
    const Table truth = read_table(truth_path);
    const auto& tx = truth.col("X_IMAGE", truth_path);
    const auto& ty = truth.col("Y_IMAGE", truth_path);
    const auto& tmag = truth.col(mag_col, truth_path);
    double mag_lo = 1e9;
    double mag_hi = -1e9;
    for (double m : tmag) {
      if (!std::isfinite(m)) continue;
      mag_lo = std::min(mag_lo, m);
      mag_hi = std::max(mag_hi, m);
    }
    const double first = std::floor(mag_lo / bin) * bin;
    const int nbins = static_cast<int>(std::floor((mag_hi - first) / bin)) + 1;
    std::vector<int> n_true(static_cast<std::size_t>(nbins), 0);
    for (double m : tmag) {
      if (std::isfinite(m)) ++n_true[static_cast<std::size_t>(std::floor((m - first) / bin))];
    }

    struct Result {
      std::string name;
      std::vector<int> found;
      std::size_t n_det = 0;
      std::size_t n_matched = 0;
    };
    std::vector<Result> results;
    for (const auto& [name, path] : cats) {
      const Table cat = read_table(path);
      const auto m = match(tx, ty, cat.col("X_IMAGE", path), cat.col("Y_IMAGE", path), radius);
      Result r;
      r.name = name;
      r.found.assign(static_cast<std::size_t>(nbins), 0);
      r.n_det = m.size();
      for (int t : m) {
        if (t < 0) continue;
        ++r.n_matched;
        const double mag = tmag[static_cast<std::size_t>(t)];
        if (std::isfinite(mag))
          ++r.found[static_cast<std::size_t>(std::floor((mag - first) / bin))];
      }
      results.push_back(std::move(r));
    }

    std::printf("truth: %s (%zu sources), match radius %.2f pix, nearest unique\n\n",
                truth_path.c_str(), tx.size(), radius);
    std::printf("%-13s %7s", "mag bin", "N_true");
    for (const auto& r : results) std::printf(" %12s", ("C_" + r.name).substr(0, 12).c_str());
    if (results.size() == 2) std::printf(" %9s", "diff_pp");
    std::printf("\n");
    double worst_shortfall = -1e9;
    for (int b = 0; b < nbins; ++b) {
      const int n = n_true[static_cast<std::size_t>(b)];
      if (n == 0) continue;
      const double lo = first + b * bin;
      std::printf("%5.1f-%-7.1f %7d", lo, lo + bin, n);
      std::vector<double> c;
      for (const auto& r : results) {
        c.push_back(100.0 * r.found[static_cast<std::size_t>(b)] / n);
        std::printf(" %11.1f%%", c.back());
      }
      if (results.size() == 2) {
        std::printf(" %+9.1f", c[0] - c[1]);
        worst_shortfall = std::max(worst_shortfall, c[1] - c[0]);
      }
      std::printf("\n");
    }
    std::printf("\n%-12s %8s %8s %8s %9s %10s\n", "catalog", "N_det", "matched", "spurious",
                "purity", "Mpix/s");
    for (const auto& r : results) {
      const double purity = r.n_det ? 100.0 * r.n_matched / r.n_det : 0.0;
      std::printf("%-12s %8zu %8zu %8zu %8.2f%%", r.name.c_str(), r.n_det, r.n_matched,
                  r.n_det - r.n_matched, purity);
      const auto t = times.find(r.name);
      if (t != times.end() && mpix > 0) {
        std::printf(" %10.2f   (%.2f s)", mpix / t->second, t->second);
      }
      std::printf("\n");
    }
    if (results.size() == 2) {
      const double p0 = results[0].n_det ? 1.0 * results[0].n_matched / results[0].n_det : 0.0;
      const double p1 = results[1].n_det ? 1.0 * results[1].n_matched / results[1].n_det : 0.0;
      std::printf(
          "\nlargest completeness shortfall of %s vs %s: %.1f pp (target <= 3.0); purity %s "
          "%s %s\n",
          results[0].name.c_str(), results[1].name.c_str(), worst_shortfall,
          results[0].name.c_str(), p0 >= p1 ? ">=" : "<", results[1].name.c_str());
    }
  } catch (const std::exception& e) {
    std::cerr << "astroflow-bench-match: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
