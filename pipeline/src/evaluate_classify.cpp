#include "astroflow/evaluate_classify.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "astroflow/error.hpp"
#include "astroflow/fits_io.hpp"

namespace astroflow {
namespace {

// Splits one CSV record; quotes ("a,b" and "" inside) as write_csv_catalog and Python write them.
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (c != '\r') {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

const Column& need(const Catalog& c, const std::string& name, const std::string& what) {
  const Column* col = c.find(name);
  if (col == nullptr) throw FatalError(what + ": column " + name + " is missing");
  return *col;
}

double number(const Column& c, std::size_t row) {
  if (c.type() != ColumnType::kString) return c.as_double(row);
  const std::string& s = std::get<std::vector<std::string>>(c.values)[row];
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  return end == s.c_str() ? std::numeric_limits<double>::quiet_NaN() : v;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])) != 0) ++i;
  return s.substr(i);
}

std::string key_of(const std::string& file) {
  return std::filesystem::path(trim(file)).filename().string();
}

std::string upper(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

}  // namespace

std::vector<double> default_snr_edges() {
  return {0.0, 20.0, 30.0, 50.0, 100.0, 200.0, std::numeric_limits<double>::infinity()};
}

Catalog read_catalog_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw FatalError(path + ": file not found");
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext != ".csv") {
    try {
      return read_fits_catalog(path);
    } catch (const FatalError&) {
      throw;
    } catch (const std::exception& e) {
      throw FatalError(path + ": cannot read catalog: " + e.what());
    }
  }
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) throw FatalError(path + ": empty CSV file");
  const std::vector<std::string> names = split_csv(line);
  std::vector<std::vector<std::string>> cols(names.size());
  std::size_t lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (trim(line).empty()) continue;
    std::vector<std::string> cells = split_csv(line);
    if (cells.size() != names.size()) {
      throw FatalError(path + ":" + std::to_string(lineno) + ": " + std::to_string(cells.size()) +
                       " fields, the header has " + std::to_string(names.size()));
    }
    for (std::size_t k = 0; k < cells.size(); ++k) cols[k].push_back(std::move(cells[k]));
  }
  Catalog c;
  for (std::size_t k = 0; k < names.size(); ++k) {
    c.add_column<std::string>(trim(names[k])) = cols[k];
  }
  c.resize(cols.empty() ? 0 : cols[0].size());
  return c;
}

ClassifyEvaluation evaluate_classify(const Catalog& predictions, const Catalog& labels,
                                     const std::vector<double>& snr_edges, int ece_bins) {
  const Column& lfile = need(labels, "FILE", "labels");
  const Column& lclass = need(labels, "CLASS", "labels");
  const Column& lid = need(labels, "CLASS_ID", "labels");
  const Column* lsnr = labels.find("SNR");
  const Column& pfile = need(predictions, "FILE", "catalog");
  const Column& pclass = need(predictions, "CLASS", "catalog");

  ClassifyEvaluation e;
  e.ece_bins = ece_bins;
  // Class names in CLASS_ID order, as the labels define them.
  std::map<int, std::string> id_to_name;
  for (std::size_t r = 0; r < labels.rows(); ++r) {
    id_to_name[static_cast<int>(number(lid, r))] = trim(lclass.as_text(r));
  }
  for (const auto& [id, name] : id_to_name) {
    if (id != static_cast<int>(e.class_names.size())) {
      throw FatalError("labels: CLASS_ID values are not 0..K-1");
    }
    e.class_names.push_back(name);
  }
  const std::size_t k = e.class_names.size();
  std::vector<const Column*> pcols;
  for (const auto& name : e.class_names) pcols.push_back(predictions.find("P_" + upper(name)));
  const bool have_probs =
      std::all_of(pcols.begin(), pcols.end(), [](const Column* c) { return c != nullptr; });

  std::map<std::string, std::size_t> row_of;
  for (std::size_t r = 0; r < predictions.rows(); ++r) row_of[key_of(pfile.as_text(r))] = r;

  e.labels = labels.rows();
  e.confusion.assign(k, std::vector<std::size_t>(k, 0));
  std::vector<std::size_t> per_class(k, 0);
  const std::size_t nbins = snr_edges.size() < 2 ? 0 : snr_edges.size() - 1;
  std::vector<std::size_t> bin_n(nbins, 0);
  std::vector<std::size_t> bin_ok(nbins, 0);
  std::vector<double> ece_conf(static_cast<std::size_t>(ece_bins), 0.0);
  std::vector<double> ece_ok(static_cast<std::size_t>(ece_bins), 0.0);
  std::vector<std::size_t> ece_n(static_cast<std::size_t>(ece_bins), 0);
  std::size_t correct = 0;
  std::size_t with_probs = 0;
  for (std::size_t r = 0; r < labels.rows(); ++r) {
    const auto truth = static_cast<std::size_t>(number(lid, r));
    ++per_class[truth];
    bool ok = false;
    const auto it = row_of.find(key_of(lfile.as_text(r)));
    const std::string pred_name = it == row_of.end() ? "" : trim(pclass.as_text(it->second));
    const auto pred_it = std::find(e.class_names.begin(), e.class_names.end(), pred_name);
    if (pred_it == e.class_names.end()) {
      ++e.unclassified;
    } else {
      const auto pred = static_cast<std::size_t>(pred_it - e.class_names.begin());
      ++e.confusion[truth][pred];
      ok = pred == truth;
      if (have_probs) {
        double conf = -1.0;
        std::size_t arg = 0;
        for (std::size_t c = 0; c < k; ++c) {
          const double p = number(*pcols[c], it->second);
          if (p > conf) {
            conf = p;
            arg = c;
          }
        }
        if (conf >= 0.0) {
          const auto b = std::min(static_cast<std::size_t>(conf * ece_bins),
                                  static_cast<std::size_t>(ece_bins - 1));
          ++ece_n[b];
          ece_conf[b] += conf;
          ece_ok[b] += arg == truth ? 1.0 : 0.0;
          ++with_probs;
        }
      }
    }
    correct += ok ? 1 : 0;
    if (lsnr != nullptr) {
      const double snr = number(*lsnr, r);
      for (std::size_t b = 0; b < nbins; ++b) {
        if (snr >= snr_edges[b] && snr < snr_edges[b + 1]) {
          ++bin_n[b];
          bin_ok[b] += ok ? 1 : 0;
        }
      }
    }
  }
  e.accuracy = e.labels == 0 ? 0.0 : static_cast<double>(correct) / static_cast<double>(e.labels);
  for (std::size_t c = 0; c < k; ++c) {
    std::size_t col_sum = 0;
    for (std::size_t t = 0; t < k; ++t) col_sum += e.confusion[t][c];
    e.recall.push_back(per_class[c] == 0 ? 0.0
                                         : static_cast<double>(e.confusion[c][c]) /
                                               static_cast<double>(per_class[c]));
    e.precision.push_back(
        col_sum == 0 ? 0.0 : static_cast<double>(e.confusion[c][c]) / static_cast<double>(col_sum));
  }
  for (std::size_t b = 0; b < nbins; ++b) {
    if (bin_n[b] == 0) continue;
    e.snr_bins.push_back({snr_edges[b], snr_edges[b + 1], bin_n[b],
                          static_cast<double>(bin_ok[b]) / static_cast<double>(bin_n[b])});
  }
  for (std::size_t b = 0; b < ece_n.size(); ++b) {
    if (ece_n[b] == 0) continue;
    const double n = static_cast<double>(ece_n[b]);
    e.ece += n / static_cast<double>(with_probs) * std::abs(ece_ok[b] / n - ece_conf[b] / n);
  }
  return e;
}

ClassifyEvaluation evaluate_classify_files(const std::string& catalog_path,
                                           const std::string& labels_path) {
  const Catalog preds = read_catalog_file(catalog_path);
  const Catalog labels = read_catalog_file(labels_path);
  try {
    return evaluate_classify(preds, labels);
  } catch (const FatalError& err) {
    throw FatalError(catalog_path + " / " + labels_path + ": " + err.what());
  }
}

std::string to_text(const ClassifyEvaluation& e) {
  std::ostringstream os;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "labels %zu, unclassified %zu\naccuracy %.4f   ECE(%d bins) %.4f\n", e.labels,
                e.unclassified, e.accuracy, e.ece_bins, e.ece);
  os << buf << "\nclass            recall  precision\n";
  for (std::size_t c = 0; c < e.class_names.size(); ++c) {
    std::snprintf(buf, sizeof buf, "%-15s %7.4f %10.4f\n", e.class_names[c].c_str(), e.recall[c],
                  e.precision[c]);
    os << buf;
  }
  os << "\nconfusion (rows true, columns predicted)\n" << std::string(15, ' ');
  for (const auto& n : e.class_names) {
    std::snprintf(buf, sizeof buf, " %12.12s", n.c_str());
    os << buf;
  }
  os << "\n";
  for (std::size_t t = 0; t < e.class_names.size(); ++t) {
    std::snprintf(buf, sizeof buf, "%-15s", e.class_names[t].c_str());
    os << buf;
    for (std::size_t p = 0; p < e.class_names.size(); ++p) {
      std::snprintf(buf, sizeof buf, " %12zu", e.confusion[t][p]);
      os << buf;
    }
    os << "\n";
  }
  os << "\nS/N bin        count  accuracy\n";
  for (const auto& b : e.snr_bins) {
    std::snprintf(
        buf, sizeof buf, "[%4.0f, %4s) %7zu %9.4f\n", b.snr_min,
        std::isinf(b.snr_max) ? "inf" : std::to_string(static_cast<int>(b.snr_max)).c_str(),
        b.count, b.accuracy);
    os << buf;
  }
  return os.str();
}

std::string to_json(const ClassifyEvaluation& e) {
  nlohmann::json j;
  j["labels"] = e.labels;
  j["unclassified"] = e.unclassified;
  j["accuracy"] = e.accuracy;
  j["ece"] = e.ece;
  j["ece_bins"] = e.ece_bins;
  j["class_names"] = e.class_names;
  j["confusion"] = e.confusion;
  for (std::size_t c = 0; c < e.class_names.size(); ++c) {
    j["recall"][e.class_names[c]] = e.recall[c];
    j["precision"][e.class_names[c]] = e.precision[c];
  }
  j["accuracy_vs_snr"] = nlohmann::json::array();
  for (const auto& b : e.snr_bins) {
    j["accuracy_vs_snr"].push_back(
        {{"snr_min", b.snr_min},
         {"snr_max", std::isinf(b.snr_max) ? nlohmann::json(nullptr) : nlohmann::json(b.snr_max)},
         {"count", b.count},
         {"accuracy", b.accuracy}});
  }
  return j.dump(2) + "\n";
}

}  // namespace astroflow
