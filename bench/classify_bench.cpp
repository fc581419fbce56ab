// Bare inference throughput of a classifier card (bench/classify_throughput.sh builds and runs
// this). Prints one table row per batch size: stamps/s for the forward pass alone, and for
// normalisation + forward pass, on the same N simulated stamps, and the CPU time (all threads)
// per stamp of the latter: a rate that a shared machine's load disturbs less than wall time.
//   classify_bench MODEL.onnx N THREADS BATCH...
#include <astroflow/onnx_model.hpp>
#include <astroflow/preprocess.hpp>
#include <astroflow/simulate.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL N THREADS BATCH...\n", argv[0]);
    return 2;
  }
  const std::string model_path = argv[1];
  const int n = std::stoi(argv[2]);
  cv::setNumThreads(std::stoi(argv[3]));
  astroflow::CutoutOptions o;
  o.seed = 777;
  o.n = n;
  const auto plan = astroflow::cutout_class_plan(o);
  std::vector<cv::Mat> stamps;
  for (int i = 0; i < n; ++i) {
    stamps.push_back(astroflow::render_cutout(o, i, plan[static_cast<std::size_t>(i)]).image);
  }
  using clock = std::chrono::steady_clock;
  auto cpu_s = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  std::printf("%-6s %14s %20s %18s\n", "batch", "forward/s", "normalise+forward/s",
              "cpu_ms/stamp(n+f)");
  for (int a = 4; a < argc; ++a) {
    const int batch = std::stoi(argv[a]);
    auto model = astroflow::OnnxModel::load(model_path, {batch, false, true});
    const auto& card = model.card();
    const int h = static_cast<int>(card.height_pix());
    const int w = static_cast<int>(card.width_pix());
    const int sizes[4] = {n, 1, h, w};
    cv::Mat blob(4, sizes, CV_32F);
    auto fill = [&] {
      for (int i = 0; i < n; ++i) {
        cv::Mat dst(h, w, CV_32F, blob.ptr<float>() + static_cast<std::size_t>(i) * h * w);
        cv::Mat norm;
        (void)astroflow::normalise_stamp(stamps[static_cast<std::size_t>(i)], card.normalisation,
                                         norm);
        norm.copyTo(dst);
      }
    };
    fill();
    (void)model.run(blob);  // warm-up: first call allocates
    auto t0 = clock::now();
    (void)model.run(blob);
    const double fwd = std::chrono::duration<double>(clock::now() - t0).count();
    t0 = clock::now();
    const double c0 = cpu_s();
    fill();
    (void)model.run(blob);
    const double all = std::chrono::duration<double>(clock::now() - t0).count();
    const double cpu_ms = 1e3 * (cpu_s() - c0) / n;
    std::printf("%-6d %14.0f %20.0f %18.3f\n", batch, n / fwd, n / all, cpu_ms);
  }
  return 0;
}
