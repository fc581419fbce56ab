#include "astroflow/model_card.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>

namespace astroflow {
namespace {

namespace fs = std::filesystem;

// Every message starts with "file:line:col: key: " so the card can be fixed without guessing.
class CardReader {
 public:
  CardReader(std::string path, YAML::Node root) : path_(std::move(path)), root_(std::move(root)) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& key,
                         const std::string& what) const {
    std::string where = path_;
    if (at.IsDefined() && at.Mark().line >= 0) {
      where +=
          ":" + std::to_string(at.Mark().line + 1) + ":" + std::to_string(at.Mark().column + 1);
    }
    throw ModelCardError(where + ": " + key + ": " + what);
  }

  // Walks "a.b" from the root; returns an undefined node when a part is absent.
  [[nodiscard]] YAML::Node node(const std::string& key) const {
    YAML::Node cur;
    cur.reset(root_);
    std::size_t start = 0;
    while (true) {
      const std::size_t dot = key.find('.', start);
      const std::string part = key.substr(start, dot == std::string::npos ? dot : dot - start);
      if (!cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
      const YAML::Node& view = cur;  // const access never inserts keys
      YAML::Node next = view[part];
      if (!next.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
      cur.reset(next);
      if (dot == std::string::npos) return cur;
      start = dot + 1;
    }
  }

  // The deepest existing ancestor, so "missing" errors point at the enclosing mapping.
  [[nodiscard]] YAML::Node parent_of(const std::string& key) const {
    const std::size_t dot = key.rfind('.');
    if (dot == std::string::npos) return root_;
    YAML::Node p = node(key.substr(0, dot));
    return p.IsDefined() ? p : parent_of(key.substr(0, dot));
  }

  [[nodiscard]] YAML::Node required(const std::string& key) const {
    YAML::Node n = node(key);
    if (!n.IsDefined() || n.IsNull()) fail(parent_of(key), key, "required field is missing");
    return n;
  }

  template <typename T>
  [[nodiscard]] T scalar(const YAML::Node& n, const std::string& key, const char* type) const {
    if (!n.IsScalar()) fail(n, key, std::string("expected a ") + type);
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      fail(n, key, std::string("expected a ") + type + ", got '" + n.Scalar() + "'");
    }
  }

  template <typename T>
  [[nodiscard]] T get(const std::string& key, const char* type) const {
    return scalar<T>(required(key), key, type);
  }

  template <typename T>
  [[nodiscard]] T get_or(const std::string& key, T def, const char* type) const {
    YAML::Node n = node(key);
    if (!n.IsDefined() || n.IsNull()) return def;
    return scalar<T>(n, key, type);
  }

  template <typename T>
  [[nodiscard]] std::vector<T> list(const std::string& key, const char* type,
                                    bool required_field) const {
    YAML::Node n = required_field ? required(key) : node(key);
    std::vector<T> out;
    if (!n.IsDefined() || n.IsNull()) return out;
    if (!n.IsSequence()) fail(n, key, std::string("expected a list of ") + type);
    for (std::size_t i = 0; i < n.size(); ++i) {
      out.push_back(scalar<T>(n[i], key + "[" + std::to_string(i) + "]", type));
    }
    return out;
  }

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
  YAML::Node root_;
};

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](unsigned char c) {
           return std::isxdigit(c) != 0 && (std::isdigit(c) != 0 || std::islower(c) != 0);
         });
}

}  // namespace

std::string ModelCard::card_path_for(const std::string& model_or_card_path) {
  const fs::path p(model_or_card_path);
  const std::string ext = p.extension().string();
  if (ext == ".yaml" || ext == ".yml") {
    if (!fs::exists(p)) throw ModelCardError(model_or_card_path + ": model card not found");
    return model_or_card_path;
  }
  const fs::path sibling = p.parent_path() / "model.yaml";
  if (fs::exists(sibling)) return sibling.string();
  fs::path stem = p;
  stem.replace_extension(".yaml");
  if (fs::exists(stem)) return stem.string();
  throw ModelCardError(model_or_card_path + ": no model card found (tried " + sibling.string() +
                       " and " + stem.string() + ")");
}

ModelCard ModelCard::load(const std::string& card_path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(card_path);
  } catch (const YAML::BadFile&) {
    throw ModelCardError(card_path + ": cannot open model card");
  } catch (const YAML::Exception& e) {
    throw ModelCardError(card_path + ":" + std::to_string(e.mark.line + 1) + ":" +
                         std::to_string(e.mark.column + 1) + ": YAML syntax: " + e.msg);
  }
  if (!root.IsMap()) throw ModelCardError(card_path + ": a model card must be a YAML mapping");
  const CardReader r(card_path, root);

  ModelCard c;
  c.card_path = card_path;
  c.name = r.get<std::string>("name", "string");
  c.task = r.get_or<std::string>("task", "", "string");
  c.version = r.get_or<std::string>("version", "", "string");
  const auto file = r.get<std::string>("file", "string");
  c.model_path = (fs::path(card_path).parent_path() / file).lexically_normal().string();
  if (c.model_path.empty()) c.model_path = file;

  c.input_shape = r.list<std::int64_t>("input.shape", "integer", true);
  if (c.input_shape.size() != 4) {
    r.fail(r.node("input.shape"), "input.shape",
           "expected 4 entries [N, C, H, W], got " + std::to_string(c.input_shape.size()));
  }
  if (c.input_shape[0] == 0 || c.input_shape[0] < -1) {
    r.fail(r.node("input.shape"), "input.shape", "batch entry must be -1 (dynamic) or > 0");
  }
  for (int i = 1; i < 4; ++i) {
    if (c.input_shape[static_cast<std::size_t>(i)] <= 0) {
      r.fail(r.node("input.shape"), "input.shape", "C, H and W must be > 0");
    }
  }
  c.bands = r.list<std::string>("input.bands", "string", true);
  if (static_cast<std::int64_t>(c.bands.size()) != c.input_shape[1]) {
    r.fail(r.node("input.bands"), "input.bands",
           std::to_string(c.bands.size()) + " bands for " + std::to_string(c.input_shape[1]) +
               " input channels");
  }
  c.pixel_scale_arcsec = r.get<double>("input.pixel_scale_arcsec", "number");
  if (!(c.pixel_scale_arcsec > 0.0)) {
    r.fail(r.node("input.pixel_scale_arcsec"), "input.pixel_scale_arcsec", "must be > 0");
  }

  const auto psf = r.list<double>("input.psf_fwhm_arcsec", "number", false);
  if (!psf.empty()) {
    if (psf.size() != 2 || !(psf[0] > 0.0) || !(psf[1] >= psf[0])) {
      r.fail(r.node("input.psf_fwhm_arcsec"), "input.psf_fwhm_arcsec",
             "expected [min, max] with 0 < min <= max (arcsec)");
    }
    c.psf_fwhm_min_arcsec = psf[0];
    c.psf_fwhm_max_arcsec = psf[1];
  }

  c.size_multiple = r.get_or<int>("input.size_multiple", 0, "integer");
  if (c.size_multiple < 0 || (c.size_multiple > 0 && (c.input_shape[2] % c.size_multiple != 0 ||
                                                      c.input_shape[3] % c.size_multiple != 0))) {
    r.fail(r.node("input.size_multiple"), "input.size_multiple",
           "must be 0 (fixed H x W) or divide the H and W of input.shape");
  }

  Normalisation& n = c.normalisation;
  n.method = r.get<std::string>("normalisation.method", "string");
  if (n.method != "asinh" && n.method != "linear" && n.method != "none") {
    r.fail(r.node("normalisation.method"), "normalisation.method",
           "unknown method '" + n.method + "' (asinh, linear, none)");
  }
  n.background = r.get<std::string>("normalisation.background", "string");
  if (n.background != "median_clip" && n.background != "none") {
    r.fail(r.node("normalisation.background"), "normalisation.background",
           "unknown background '" + n.background + "' (median_clip, none)");
  }
  n.scale = n.method == "none" ? r.get_or<double>("normalisation.scale", 1.0, "number")
                               : r.get<double>("normalisation.scale", "number");
  if (!(n.scale > 0.0)) r.fail(r.node("normalisation.scale"), "normalisation.scale", "must be > 0");
  n.clip_sigma = r.get_or<double>("normalisation.clip_sigma", 3.0, "number");
  n.clip_iterations = r.get_or<int>("normalisation.clip_iterations", 5, "integer");
  if (!(n.clip_sigma > 0.0) || n.clip_iterations < 1) {
    r.fail(r.node("normalisation"), "normalisation",
           "clip_sigma must be > 0, clip_iterations >= 1");
  }

  c.output_semantics = r.get<std::string>("output.semantics", "string");
  static const std::set<std::string> kSemantics = {"logits", "probabilities", "heatmap", "image",
                                                   "mask"};
  if (kSemantics.count(c.output_semantics) == 0) {
    r.fail(r.node("output.semantics"), "output.semantics",
           "unknown semantics '" + c.output_semantics +
               "' (logits, probabilities, heatmap, image, mask)");
  }
  const bool classifier = c.output_semantics == "logits" || c.output_semantics == "probabilities";
  c.class_names = r.list<std::string>("output.class_names", "string", classifier);
  if (classifier && c.class_names.empty()) {
    r.fail(r.node("output.class_names"), "output.class_names", "must not be empty");
  }
  if (std::set<std::string>(c.class_names.begin(), c.class_names.end()).size() !=
      c.class_names.size()) {
    r.fail(r.node("output.class_names"), "output.class_names", "names must be unique");
  }
  c.temperature = r.get_or<double>("output.temperature", 1.0, "number");
  if (!(c.temperature > 0.0)) {
    r.fail(r.node("output.temperature"), "output.temperature", "must be > 0");
  }
  c.logit_bias = r.list<double>("output.logit_bias", "number", false);
  if (!c.logit_bias.empty() && (c.logit_bias.size() != c.class_names.size() ||
                                !std::all_of(c.logit_bias.begin(), c.logit_bias.end(),
                                             [](double v) { return std::isfinite(v); }))) {
    r.fail(r.node("output.logit_bias"), "output.logit_bias",
           "needs one finite number per class name (" + std::to_string(c.class_names.size()) + ")");
  }
  c.score_threshold = r.get_or<double>("output.score_threshold", 0.0, "number");
  if (r.node("output.score_threshold").IsDefined() &&
      !(c.score_threshold > 0.0 && c.score_threshold < 1.0)) {
    r.fail(r.node("output.score_threshold"), "output.score_threshold", "must be in (0, 1)");
  }
  c.rescue_score = r.get_or<double>("output.rescue_score", 0.0, "number");
  if (r.node("output.rescue_score").IsDefined() &&
      !(c.rescue_score > 0.0 && c.rescue_score < 1.0)) {
    r.fail(r.node("output.rescue_score"), "output.rescue_score", "must be in (0, 1)");
  }

  c.opset = r.get<int>("opset", "integer");
  c.sha256 = r.get<std::string>("sha256", "string");
  if (!is_hex64(c.sha256)) {
    r.fail(r.node("sha256"), "sha256", "expected 64 lower-case hex digits");
  }

  c.training_recipe = r.get<std::string>("training.recipe", "string");
  const YAML::Node seeds = r.node("training.seeds");
  if (seeds.IsMap()) {
    for (const auto& kv : seeds) {
      c.seeds.push_back(
          r.scalar<std::int64_t>(kv.second, "training.seeds." + kv.first.Scalar(), "integer"));
    }
  } else {
    c.seeds = r.list<std::int64_t>("training.seeds", "integer", false);
  }
  c.training_time_s = r.get_or<double>("training.time_s", 0.0, "number");

  const YAML::Node metrics = r.node("test_metrics");
  if (metrics.IsDefined() && metrics.IsMap()) {
    for (const auto& kv : metrics) {
      if (!kv.second.IsScalar()) continue;  // nested tables (confusion matrix) are informative
      c.test_metrics[kv.first.Scalar()] =
          r.scalar<double>(kv.second, "test_metrics." + kv.first.Scalar(), "number");
    }
  }
  return c;
}

}  // namespace astroflow
