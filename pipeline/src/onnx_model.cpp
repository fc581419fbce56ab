#include "astroflow/onnx_model.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <opencv2/dnn.hpp>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include "astroflow/atomic_file.hpp"

namespace astroflow {
namespace {

// ---------------------------------------------------------------------------------------------
// Minimal protobuf reader: enough of the wire format to read an ONNX ModelProto's opset and the
// declared shapes of the graph's inputs and outputs, so the card can be checked against the file
// without a second runtime. Field numbers are those of onnx/onnx.proto.
class ProtoReader {
 public:
  explicit ProtoReader(std::string_view data) : data_(data) {}

  struct Field {
    std::uint32_t number = 0;
    std::uint32_t wire = 0;
    std::uint64_t varint = 0;
    std::string_view bytes;
  };

  bool next(Field& f) {
    if (pos_ >= data_.size()) return false;
    const std::uint64_t key = read_varint();
    f.number = static_cast<std::uint32_t>(key >> 3);
    f.wire = static_cast<std::uint32_t>(key & 7);
    switch (f.wire) {
      case 0:
        f.varint = read_varint();
        break;
      case 1:
        skip(8);
        break;
      case 2: {
        const std::uint64_t len = read_varint();
        if (len > data_.size() - pos_) throw std::runtime_error("truncated field");
        f.bytes = data_.substr(pos_, static_cast<std::size_t>(len));
        pos_ += static_cast<std::size_t>(len);
        break;
      }
      case 5:
        skip(4);
        break;
      default:
        throw std::runtime_error("unsupported protobuf wire type " + std::to_string(f.wire));
    }
    return true;
  }

 private:
  std::uint64_t read_varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) throw std::runtime_error("truncated varint");
      const auto b = static_cast<unsigned char>(data_[pos_++]);
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    throw std::runtime_error("varint too long");
  }
  void skip(std::size_t n) {
    if (n > data_.size() - pos_) throw std::runtime_error("truncated field");
    pos_ += n;
  }
  std::string_view data_;
  std::size_t pos_ = 0;
};

struct ValueInfo {
  std::string name;
  std::vector<std::int64_t> shape;
};

ValueInfo parse_value_info(std::string_view bytes) {
  ValueInfo vi;
  ProtoReader r(bytes);
  ProtoReader::Field f;
  while (r.next(f)) {
    if (f.number == 1 && f.wire == 2) vi.name = std::string(f.bytes);
    if (f.number != 2 || f.wire != 2) continue;  // TypeProto
    ProtoReader type(f.bytes);
    ProtoReader::Field tf;
    while (type.next(tf)) {
      if (tf.number != 1 || tf.wire != 2) continue;  // tensor_type
      ProtoReader tensor(tf.bytes);
      ProtoReader::Field sf;
      while (tensor.next(sf)) {
        if (sf.number != 2 || sf.wire != 2) continue;  // shape
        ProtoReader shape(sf.bytes);
        ProtoReader::Field df;
        while (shape.next(df)) {
          if (df.number != 1 || df.wire != 2) continue;  // dim
          std::int64_t value = -1;                       // dim_param (symbolic) stays -1
          ProtoReader dim(df.bytes);
          ProtoReader::Field vf;
          while (dim.next(vf)) {
            if (vf.number == 1 && vf.wire == 0) value = static_cast<std::int64_t>(vf.varint);
          }
          vi.shape.push_back(value);
        }
      }
    }
  }
  return vi;
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string t = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i != 0) t += ", ";
    t += s[i] < 0 ? std::string("N") : std::to_string(s[i]);
  }
  return t + "]";
}

// ---------------------------------------------------------------------------------------------
class OpenCvBackend final : public InferenceBackend {
 public:
  explicit OpenCvBackend(const std::string& onnx_path) {
    try {
      net_ = cv::dnn::readNetFromONNX(onnx_path);
    } catch (const cv::Exception& e) {
      throw OnnxModelError(onnx_path + ": OpenCV dnn cannot import the model: " + e.what());
    }
    if (net_.empty()) throw OnnxModelError(onnx_path + ": OpenCV dnn returned an empty network");
    net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    output_names_ = net_.getUnconnectedOutLayersNames();
  }

  std::vector<cv::Mat> run(const cv::Mat& nchw_blob) override {
    net_.setInput(nchw_blob);
    std::vector<cv::Mat> outs;
    net_.forward(outs, output_names_);
    // The net reuses its buffers on the next call; callers keep results longer.
    for (cv::Mat& m : outs) m = m.clone();
    return outs;
  }

  [[nodiscard]] std::string name() const override { return "opencv-dnn-cpu"; }

 private:
  cv::dnn::Net net_;
  std::vector<std::string> output_names_;
};

std::size_t per_sample(const cv::Mat& blob) {
  std::size_t n = 1;
  for (int d = 1; d < blob.dims; ++d) n *= static_cast<std::size_t>(blob.size[d]);
  return n;
}

}  // namespace

std::unique_ptr<InferenceBackend> make_opencv_backend(const std::string& onnx_path) {
  return std::make_unique<OpenCvBackend>(onnx_path);
}

OnnxGraphInfo read_onnx_graph_info(const std::string& onnx_path) {
  std::ifstream in(onnx_path, std::ios::binary);
  if (!in) throw OnnxModelError(onnx_path + ": cannot open ONNX file");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();

  OnnxGraphInfo info;
  try {
    ProtoReader model(data);
    ProtoReader::Field f;
    std::string_view graph;
    while (model.next(f)) {
      if (f.number == 7 && f.wire == 2) graph = f.bytes;
      if (f.number == 8 && f.wire == 2) {  // opset_import
        ProtoReader op(f.bytes);
        ProtoReader::Field of;
        std::string domain;
        std::int64_t version = 0;
        while (op.next(of)) {
          if (of.number == 1 && of.wire == 2) domain = std::string(of.bytes);
          if (of.number == 2 && of.wire == 0) version = static_cast<std::int64_t>(of.varint);
        }
        if (domain.empty() || domain == "ai.onnx") info.opset = static_cast<int>(version);
      }
    }
    if (graph.empty()) throw std::runtime_error("no graph");

    std::vector<std::string> initializers;
    std::vector<ValueInfo> inputs;
    ProtoReader g(graph);
    while (g.next(f)) {
      if (f.wire != 2) continue;
      if (f.number == 5) {  // initializer: TensorProto, name = 8
        ProtoReader t(f.bytes);
        ProtoReader::Field tf;
        while (t.next(tf)) {
          if (tf.number == 8 && tf.wire == 2) initializers.emplace_back(tf.bytes);
        }
      } else if (f.number == 11) {
        inputs.push_back(parse_value_info(f.bytes));
      } else if (f.number == 12) {
        ValueInfo vi = parse_value_info(f.bytes);
        info.output_names.push_back(vi.name);
        info.output_shapes.push_back(vi.shape);
      }
    }
    // Older exporters list weights as graph inputs too; the data input is the one that is not.
    for (const ValueInfo& vi : inputs) {
      if (std::find(initializers.begin(), initializers.end(), vi.name) == initializers.end()) {
        info.input_name = vi.name;
        info.input_shape = vi.shape;
        break;
      }
    }
  } catch (const std::exception& e) {
    throw OnnxModelError(onnx_path + ": not a readable ONNX model (" + e.what() + ")");
  }
  if (info.input_name.empty()) throw OnnxModelError(onnx_path + ": the graph declares no input");
  return info;
}

OnnxModel::OnnxModel(ModelCard card, std::unique_ptr<InferenceBackend> backend,
                     OnnxModelOptions options)
    : card_(std::move(card)), options_(options), backend_(std::move(backend)) {
  if (!backend_) throw std::invalid_argument("OnnxModel: null backend");
  if (options_.batch_size < 1) throw std::invalid_argument("OnnxModel: batch_size must be >= 1");
  backend_name_ = backend_->name();
  graph_.input_shape = card_.input_shape;
}

OnnxModel OnnxModel::load(const std::string& model_or_card_path, OnnxModelOptions options) {
  const ModelCard card = ModelCard::load(ModelCard::card_path_for(model_or_card_path));
  const std::string& onnx = card.model_path;
  const std::string from = " (model card " + card.card_path + ")";
  if (!std::filesystem::is_regular_file(onnx)) {
    throw OnnxModelError(onnx + ": model file not found" + from);
  }
  if (options.verify_sha256) {
    const std::string sha = sha256_file(onnx);
    if (sha != card.sha256) {
      throw OnnxModelError(onnx + ": sha256 " + sha + " differs from the card's " + card.sha256 +
                           from + "; the file changed since the card was written");
    }
  }
  OnnxGraphInfo info = read_onnx_graph_info(onnx);
  if (info.input_shape.size() != 4) {
    throw OnnxModelError(onnx + ": graph input '" + info.input_name + "' has shape " +
                         shape_text(info.input_shape) + ", expected 4-D NCHW" + from);
  }
  for (std::size_t d = 1; d < 4; ++d) {
    if (info.input_shape[d] > 0 && info.input_shape[d] != card.input_shape[d]) {
      throw OnnxModelError(onnx + ": graph input shape " + shape_text(info.input_shape) +
                           " does not match the card's input.shape " +
                           shape_text(card.input_shape) + from);
    }
  }
  if (info.input_shape[0] > 0 && card.input_shape[0] != info.input_shape[0]) {
    throw OnnxModelError(onnx + ": graph batch dimension is fixed at " +
                         std::to_string(info.input_shape[0]) + " but the card's input.shape says " +
                         shape_text(card.input_shape) + from);
  }
  if (info.opset != 0 && info.opset != card.opset) {
    throw OnnxModelError(onnx + ": graph opset " + std::to_string(info.opset) +
                         " differs from the card's opset " + std::to_string(card.opset) + from);
  }
  if (card.input_shape[0] > 0) {
    // A fixed-batch graph can only run at that batch size.
    options.batch_size = static_cast<int>(card.input_shape[0]);
    options.pad_last_batch = true;
  }

  OnnxModel model(card, make_opencv_backend(onnx), options);
  model.graph_ = std::move(info);

  // Probe: one forward pass proves the graph runs at the card's shape and gives the output size.
  const int probe_n = card.input_shape[0] > 0 ? static_cast<int>(card.input_shape[0]) : 1;
  const int sizes[4] = {probe_n, static_cast<int>(card.channels()),
                        static_cast<int>(card.height_pix()), static_cast<int>(card.width_pix())};
  const cv::Mat probe(4, sizes, CV_32F, cv::Scalar(0));
  std::vector<cv::Mat> outs;
  try {
    outs = model.backend_->run(probe);
  } catch (const cv::Exception& e) {
    throw OnnxModelError(onnx + ": forward pass at the card's input shape " +
                         shape_text(card.input_shape) + " failed: " + e.what() + from);
  }
  if (outs.empty()) throw OnnxModelError(onnx + ": the network produced no output" + from);
  const bool classifier =
      card.output_semantics == "logits" || card.output_semantics == "probabilities";
  if (classifier && per_sample(outs[0]) != card.class_names.size()) {
    throw OnnxModelError(onnx + ": the network gives " + std::to_string(per_sample(outs[0])) +
                         " outputs per sample but the card names " +
                         std::to_string(card.class_names.size()) + " classes" + from);
  }
  return model;
}

std::vector<cv::Mat> OnnxModel::run(const cv::Mat& nchw_blob) {
  // H x W: the card's, or any multiple of input.size_multiple (a fully convolutional network).
  const int m = card_.size_multiple;
  const bool size_ok =
      nchw_blob.dims == 4 &&
      (m > 0 ? nchw_blob.size[2] > 0 && nchw_blob.size[3] > 0 && nchw_blob.size[2] % m == 0 &&
                   nchw_blob.size[3] % m == 0
             : nchw_blob.size[2] == card_.height_pix() && nchw_blob.size[3] == card_.width_pix());
  if (nchw_blob.dims != 4 || nchw_blob.type() != CV_32F || !nchw_blob.isContinuous() ||
      nchw_blob.size[1] != card_.channels() || !size_ok) {
    throw std::invalid_argument(
        "OnnxModel::run: expected a continuous CV_32F blob N x " +
        std::to_string(card_.channels()) + " x " +
        (m > 0 ? "H x W with H and W multiples of " + std::to_string(m)
               : std::to_string(card_.height_pix()) + " x " + std::to_string(card_.width_pix())));
  }
  const int n = nchw_blob.size[0];
  const std::size_t sample_floats = per_sample(nchw_blob);
  const int bs = options_.batch_size;
  std::vector<cv::Mat> result;
  for (int start = 0; start < n; start += bs) {
    const int count = std::min(bs, n - start);
    const int run_n = options_.pad_last_batch ? bs : count;
    const int sizes[4] = {run_n, nchw_blob.size[1], nchw_blob.size[2], nchw_blob.size[3]};
    cv::Mat chunk;
    const float* src = nchw_blob.ptr<float>() + static_cast<std::size_t>(start) * sample_floats;
    if (run_n == count) {
      // A header over the caller's memory; the backend only reads it.
      chunk = cv::Mat(4, sizes, CV_32F, const_cast<float*>(src));
    } else {
      chunk = cv::Mat(4, sizes, CV_32F, cv::Scalar(0));
      std::memcpy(chunk.ptr<float>(), src, static_cast<std::size_t>(count) * sample_floats * 4);
    }
    std::vector<cv::Mat> outs = backend_->run(chunk);
    if (result.empty()) {
      for (const cv::Mat& o : outs) {
        std::vector<int> osz(o.size.p, o.size.p + o.dims);
        osz[0] = n;
        result.emplace_back(static_cast<int>(osz.size()), osz.data(), CV_32F);
      }
    }
    for (std::size_t k = 0; k < outs.size() && k < result.size(); ++k) {
      const std::size_t per = per_sample(outs[k]);
      std::memcpy(result[k].ptr<float>() + static_cast<std::size_t>(start) * per,
                  outs[k].ptr<float>(), static_cast<std::size_t>(count) * per * sizeof(float));
    }
  }
  return result;
}

cv::Mat OnnxModel::run_rows(const cv::Mat& nchw_blob) {
  std::vector<cv::Mat> outs = run(nchw_blob);
  if (outs.empty()) return {};
  const int n = nchw_blob.size[0];
  return outs[0].reshape(1, n);
}

}  // namespace astroflow
