// ModelCard parsing: every field of the card, and errors that name file, line, column and key.
#include "astroflow/model_card.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using astroflow::ModelCard;
using astroflow::ModelCardError;

namespace {

const char* const kValidCard = R"(name: classify
task: classification
version: 1.2.0
file: model.onnx
sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
opset: 13
input:
  shape: [-1, 1, 64, 64]
  bands: [F814W]
  pixel_scale_arcsec: 0.06
normalisation: {method: asinh, background: median_clip, scale: 2.5}
output:
  semantics: logits
  class_names: [spheroid, disk, irregular, point_source, artifact]
  temperature: 1.37
training:
  recipe: models/classify/train.sh
  seeds: {train: 11, val: 22, test: 33}
  time_s: 321.5
test_metrics:
  accuracy: 0.97
  ece: 0.012
  confusion: [[1, 2], [3, 4]]
)";

class CardFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("astroflow-card-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& text, const std::string& name = "model.yaml") {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  // Replaces the first occurrence of `from` in the valid card.
  static std::string edit(const std::string& from, const std::string& to) {
    std::string s = kValidCard;
    const auto pos = s.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    s.replace(pos, from.size(), to);
    return s;
  }
  // The error message of loading `text`; fails the test when loading succeeds.
  std::string error_of(const std::string& text) {
    const std::string path = write(text);
    try {
      (void)ModelCard::load(path);
    } catch (const ModelCardError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(path, 0), 0u) << "message must start with the card path: " << msg;
      return msg;
    }
    ADD_FAILURE() << "card loaded but should not have:\n" << text;
    return {};
  }
  fs::path dir_;
};

TEST_F(CardFile, ParsesEveryField) {
  const ModelCard c = ModelCard::load(write(kValidCard));
  EXPECT_EQ(c.name, "classify");
  EXPECT_EQ(c.task, "classification");
  EXPECT_EQ(c.model_path, (dir_ / "model.onnx").string());
  EXPECT_EQ(c.input_shape, (std::vector<std::int64_t>{-1, 1, 64, 64}));
  EXPECT_EQ(c.channels(), 1);
  EXPECT_EQ(c.height_pix(), 64);
  EXPECT_EQ(c.bands, std::vector<std::string>{"F814W"});
  EXPECT_DOUBLE_EQ(c.pixel_scale_arcsec, 0.06);
  EXPECT_EQ(c.normalisation.method, "asinh");
  EXPECT_EQ(c.normalisation.background, "median_clip");
  EXPECT_DOUBLE_EQ(c.normalisation.scale, 2.5);
  EXPECT_DOUBLE_EQ(c.normalisation.clip_sigma, 3.0);  // default
  EXPECT_EQ(c.normalisation.clip_iterations, 5);
  EXPECT_EQ(c.output_semantics, "logits");
  ASSERT_EQ(c.class_names.size(), 5u);
  EXPECT_EQ(c.class_names[3], "point_source");
  EXPECT_DOUBLE_EQ(c.temperature, 1.37);
  EXPECT_TRUE(c.logit_bias.empty());  // optional
  EXPECT_EQ(ModelCard::load(write(edit("temperature: 1.37",
                                       "temperature: 1.37\n  logit_bias: [-0.4, 0.3, 0.25, 0, 0]")))
                .logit_bias,
            (std::vector<double>{-0.4, 0.3, 0.25, 0.0, 0.0}));
  EXPECT_DOUBLE_EQ(c.score_threshold, 0.0);  // optional
  EXPECT_DOUBLE_EQ(
      ModelCard::load(write(edit("temperature: 1.37", "temperature: 1.37\n  score_threshold: 0.6")))
          .score_threshold,
      0.6);
  EXPECT_DOUBLE_EQ(c.rescue_score, 0.0);  // optional
  EXPECT_DOUBLE_EQ(
      ModelCard::load(write(edit("temperature: 1.37", "temperature: 1.37\n  rescue_score: 0.45")))
          .rescue_score,
      0.45);
  EXPECT_EQ(c.opset, 13);
  EXPECT_EQ(c.sha256.substr(0, 4), "0123");
  EXPECT_EQ(c.training_recipe, "models/classify/train.sh");
  EXPECT_EQ(c.seeds, (std::vector<std::int64_t>{11, 22, 33}));
  EXPECT_DOUBLE_EQ(c.training_time_s, 321.5);
  EXPECT_DOUBLE_EQ(c.test_metrics.at("accuracy"), 0.97);
  EXPECT_EQ(c.test_metrics.count("confusion"), 0u);  // nested tables are informative only
}

TEST_F(CardFile, MissingShaNamesKeyAndEnclosingLine) {
  const std::string msg = error_of(
      edit("sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", ""));
  EXPECT_NE(msg.find("sha256: required field is missing"), std::string::npos) << msg;
}

TEST_F(CardFile, MissingNestedFieldNamesKeyPath) {
  const std::string msg = error_of(edit("  pixel_scale_arcsec: 0.06\n", ""));
  EXPECT_NE(msg.find("input.pixel_scale_arcsec"), std::string::npos) << msg;
}

TEST_F(CardFile, WrongTypeGivesLineAndColumn) {
  const std::string msg = error_of(edit("pixel_scale_arcsec: 0.06", "pixel_scale_arcsec: fine"));
  // Line 10, column 23 is where the value 'fine' starts.
  EXPECT_NE(msg.find(":10:23: input.pixel_scale_arcsec: expected a number, got 'fine'"),
            std::string::npos)
      << msg;
}

TEST_F(CardFile, RejectsInconsistentOrImpossibleValues) {
  EXPECT_NE(error_of(edit("[-1, 1, 64, 64]", "[-1, 1, 64]")).find("4 entries"), std::string::npos);
  EXPECT_NE(error_of(edit("[-1, 1, 64, 64]", "[-1, 2, 64, 64]")).find("input.bands"),
            std::string::npos);
  EXPECT_NE(error_of(edit("[-1, 1, 64, 64]", "[0, 1, 64, 64]")).find("batch entry"),
            std::string::npos);
  EXPECT_NE(error_of(edit("0.06", "-0.06")).find("must be > 0"), std::string::npos);
  EXPECT_NE(error_of(edit("method: asinh", "method: log")).find("unknown method 'log'"),
            std::string::npos);
  EXPECT_NE(error_of(edit("semantics: logits", "semantics: vibes")).find("output.semantics"),
            std::string::npos);
  EXPECT_NE(error_of(edit("irregular, point_source", "disk, point_source")).find("unique"),
            std::string::npos);
  EXPECT_NE(error_of(edit("temperature: 1.37", "temperature: 0")).find("output.temperature"),
            std::string::npos);
  EXPECT_NE(error_of(edit("0123456789abcdef0123", "0123456789ABCDEF0123")).find("hex"),
            std::string::npos);
  EXPECT_NE(error_of(edit("  recipe: models/classify/train.sh\n", "")).find("training.recipe"),
            std::string::npos);
  EXPECT_NE(error_of(edit("temperature: 1.37", "temperature: 1.37\n  logit_bias: [0.1, 0.2]"))
                .find("output.logit_bias"),
            std::string::npos);
  for (const char* bad : {"0", "1", "-0.2", "1.5"}) {
    EXPECT_NE(error_of(edit("temperature: 1.37",
                            std::string("temperature: 1.37\n  score_threshold: ") + bad))
                  .find("output.score_threshold: must be in (0, 1)"),
              std::string::npos)
        << bad;
    EXPECT_NE(error_of(edit("temperature: 1.37",
                            std::string("temperature: 1.37\n  rescue_score: ") + bad))
                  .find("output.rescue_score: must be in (0, 1)"),
              std::string::npos)
        << bad;
  }
  // size_multiple must divide the H and W the network was checked at.
  EXPECT_NE(
      error_of(edit("pixel_scale_arcsec: 0.06", "pixel_scale_arcsec: 0.06\n  size_multiple: 5"))
          .find("input.size_multiple"),
      std::string::npos);
  EXPECT_NE(
      error_of(edit("pixel_scale_arcsec: 0.06", "pixel_scale_arcsec: 0.06\n  size_multiple: -8"))
          .find("input.size_multiple"),
      std::string::npos);
}

TEST_F(CardFile, SizeMultipleIsOptionalAndParsed) {
  EXPECT_EQ(ModelCard::load(write(kValidCard)).size_multiple, 0);
  EXPECT_EQ(ModelCard::load(write(edit("pixel_scale_arcsec: 0.06",
                                       "pixel_scale_arcsec: 0.06\n  size_multiple: 16")))
                .size_multiple,
            16);
}

TEST_F(CardFile, PsfRangeIsOptionalAndChecked) {
  const ModelCard none = ModelCard::load(write(kValidCard));
  EXPECT_EQ(none.psf_fwhm_min_arcsec, 0.0);
  EXPECT_EQ(none.psf_fwhm_max_arcsec, 0.0);
  auto with = [&](const std::string& range) {
    return edit("pixel_scale_arcsec: 0.06",
                "pixel_scale_arcsec: 0.06\n  psf_fwhm_arcsec: " + range);
  };
  const ModelCard c = ModelCard::load(write(with("[0.15, 0.24]")));
  EXPECT_DOUBLE_EQ(c.psf_fwhm_min_arcsec, 0.15);
  EXPECT_DOUBLE_EQ(c.psf_fwhm_max_arcsec, 0.24);
  for (const char* bad : {"[0.24, 0.15]", "[0, 0.2]", "[0.2]", "[0.1, 0.2, 0.3]"}) {
    const std::string msg = error_of(with(bad));
    EXPECT_NE(msg.find("input.psf_fwhm_arcsec"), std::string::npos) << bad << ": " << msg;
  }
}

TEST_F(CardFile, ClassNamesRequiredOnlyForClassifiers) {
  const std::string no_classes =
      edit("  class_names: [spheroid, disk, irregular, point_source, artifact]\n", "");
  EXPECT_NE(error_of(no_classes).find("output.class_names"), std::string::npos);
  std::string heatmap = no_classes;
  heatmap.replace(heatmap.find("semantics: logits"), 17, "semantics: heatmap");
  const ModelCard c = ModelCard::load(write(heatmap));
  EXPECT_TRUE(c.class_names.empty());
}

TEST_F(CardFile, YamlSyntaxErrorNamesLine) {
  const std::string msg = error_of("name: x\ninput: [unclosed\n");
  EXPECT_NE(msg.find("YAML syntax"), std::string::npos) << msg;
}

TEST_F(CardFile, CardPathForOnnxPrefersModelYamlThenStem) {
  const std::string onnx = (dir_ / "net.onnx").string();
  EXPECT_THROW((void)ModelCard::card_path_for(onnx), ModelCardError);
  write(kValidCard, "net.yaml");
  EXPECT_EQ(ModelCard::card_path_for(onnx), (dir_ / "net.yaml").string());
  write(kValidCard, "model.yaml");
  EXPECT_EQ(ModelCard::card_path_for(onnx), (dir_ / "model.yaml").string());
  EXPECT_EQ(ModelCard::card_path_for((dir_ / "net.yaml").string()), (dir_ / "net.yaml").string());
  EXPECT_THROW((void)ModelCard::card_path_for((dir_ / "other.yaml").string()), ModelCardError);
}

}  // namespace
