// OnnxModel: a network described by a ModelCard, loaded and checked, that runs batched NCHW
// float32 inference through an InferenceBackend (today: OpenCV dnn on the CPU).
//
// Lifecycle: OnnxModel::load() reads the card, checks the ONNX file's sha256 against it, reads
// the ONNX graph's declared input shape and opset and checks them against the card, builds the
// backend, and runs one probe forward pass to check the output shape. Every problem there is an
// OnnxModelError (a FatalError) whose message names the model file.
//
// Thread contract: an OnnxModel is not thread-safe (cv::dnn::Net is not; sharing one gave wrong
// outputs without a crash). A stage owns one OnnxModel per concurrent slot.
//
// Batching: run() splits its input into chunks of at most batch_size along N. The last, shorter
// chunk is run at its own size unless pad_last_batch is set (then it is padded with zeros to
// batch_size and the padding rows are dropped). docs/models.md gives the measured trade-off.
#pragma once

#include <memory>
#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "astroflow/error.hpp"
#include "astroflow/model_card.hpp"

namespace astroflow {

class OnnxModelError : public FatalError {
 public:
  using FatalError::FatalError;
};

/// The seam for other runtimes (ONNX Runtime, a GPU). Implementations own their runtime state;
/// one instance serves one thread at a time.
class InferenceBackend {
 public:
  virtual ~InferenceBackend() = default;
  /// Runs one forward pass on a contiguous CV_32F blob of shape N x C x H x W and returns the
  /// network outputs in graph order, each a CV_32F blob whose first dimension is N.
  virtual std::vector<cv::Mat> run(const cv::Mat& nchw_blob) = 0;
  [[nodiscard]] virtual std::string name() const = 0;
};

/// OpenCV dnn backend: readNetFromONNX, DNN_BACKEND_OPENCV, DNN_TARGET_CPU. `threads` > 0 is
/// not applied here (OpenCV's thread count is process-wide); the caller owns that choice.
/// Throws OnnxModelError naming the file when OpenCV cannot import it.
[[nodiscard]] std::unique_ptr<InferenceBackend> make_opencv_backend(const std::string& onnx_path);

/// What the ONNX file itself declares, read from its protobuf without any runtime.
struct OnnxGraphInfo {
  std::string input_name;
  std::vector<std::int64_t> input_shape;  ///< -1 for a symbolic (dynamic) dimension
  std::vector<std::string> output_names;
  std::vector<std::vector<std::int64_t>> output_shapes;
  int opset = 0;  ///< default-domain opset
};

/// Parses the graph's first non-initializer input, its outputs and the opset. Throws
/// OnnxModelError naming the file when it is not an ONNX model.
[[nodiscard]] OnnxGraphInfo read_onnx_graph_info(const std::string& onnx_path);

struct OnnxModelOptions {
  int batch_size = 32;          ///< largest N per forward pass
  bool pad_last_batch = false;  ///< see the file comment
  bool verify_sha256 = true;    ///< only tests that build deliberately broken models turn it off
};

class OnnxModel {
 public:
  /// `model_or_card_path`: the ONNX file or its model.yaml (see ModelCard::card_path_for).
  static OnnxModel load(const std::string& model_or_card_path, OnnxModelOptions options = {});

  /// Wraps an already-built backend (tests, other runtimes). The card is trusted as given.
  OnnxModel(ModelCard card, std::unique_ptr<InferenceBackend> backend, OnnxModelOptions options);

  OnnxModel(OnnxModel&&) noexcept = default;
  OnnxModel& operator=(OnnxModel&&) noexcept = default;

  [[nodiscard]] const ModelCard& card() const { return card_; }
  [[nodiscard]] const OnnxGraphInfo& graph() const { return graph_; }
  [[nodiscard]] const OnnxModelOptions& options() const { return options_; }
  [[nodiscard]] const std::string& backend_name() const { return backend_name_; }

  /// Runs the network on an N x C x H x W CV_32F blob (C, H, W as in the card). Returns each
  /// output as a blob with first dimension N. Throws std::invalid_argument on a wrong shape.
  [[nodiscard]] std::vector<cv::Mat> run(const cv::Mat& nchw_blob);

  /// Convenience for single-output models: the first output reshaped to N rows (CV_32F).
  [[nodiscard]] cv::Mat run_rows(const cv::Mat& nchw_blob);

 private:
  ModelCard card_;
  OnnxGraphInfo graph_;
  OnnxModelOptions options_;
  std::unique_ptr<InferenceBackend> backend_;
  std::string backend_name_;
};

}  // namespace astroflow
