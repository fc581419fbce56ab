// astroflow-bench-detect: runs the background and sources plugins on one FITS image, the way a
// pipeline run would (PluginRegistry, read_fits_frames), and writes the catalog as CSV.
//
//   astroflow-bench-detect IMAGE.fits OUT.csv [--plugin-dir DIR] [--segmap OUT.fits]
//                          [--set stage.option=value ...]
//
// Prints "seconds_total <t>" (read + both stages) and "seconds_stages <t>" on stdout, for the
// comparison table of bench/sextractor_compare.sh.
#include <astroflow/fits_io.hpp>
#include <astroflow/plugin_registry.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

astroflow::OptionValue parse_value(const astroflow::OptionSpec& spec, const std::string& text) {
  switch (spec.type) {
    case astroflow::OptionType::kBool:
      return text == "true" || text == "1" || text == "yes";
    case astroflow::OptionType::kInt:
      return static_cast<std::int64_t>(std::stoll(text));
    case astroflow::OptionType::kDouble:
      return std::stod(text);
    default:
      return text;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: astroflow-bench-detect IMAGE.fits OUT.csv [--plugin-dir DIR] "
                 "[--segmap OUT.fits] [--set stage.option=value ...]\n";
    return 2;
  }
  const std::string image = argv[1];
  const std::string out_csv = argv[2];
  std::filesystem::path exe = std::filesystem::canonical("/proc/self/exe");
  std::string plugin_dir = (exe.parent_path().parent_path() / "lib/astroflow/plugins").string();
  std::string segmap_path;
  std::map<std::string, std::map<std::string, std::string>> sets;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--plugin-dir" && i + 1 < argc) {
      plugin_dir = argv[++i];
    } else if (a == "--segmap" && i + 1 < argc) {
      segmap_path = argv[++i];
    } else if (a == "--set" && i + 1 < argc) {
      const std::string kv = argv[++i];
      const auto dot = kv.find('.');
      const auto eq = kv.find('=');
      if (dot == std::string::npos || eq == std::string::npos || eq < dot) {
        std::cerr << "--set expects stage.option=value, got " << kv << "\n";
        return 2;
      }
      sets[kv.substr(0, dot)][kv.substr(dot + 1, eq - dot - 1)] = kv.substr(eq + 1);
    } else {
      std::cerr << "unknown argument " << a << "\n";
      return 2;
    }
  }
  try {
    astroflow::PluginRegistry registry;
    std::vector<std::unique_ptr<astroflow::StageInstance>> stages;
    for (const std::string name : {"background", "sources"}) {
      const auto& plugin = registry.load_file(plugin_dir + "/libastroflow-" + name + ".so");
      astroflow::Options options;
      for (const auto& spec : plugin.schema().specs()) {
        if (spec.default_value) options.set(spec.name, *spec.default_value);
      }
      for (const auto& [key, value] : sets[name]) {
        const astroflow::OptionSpec* spec = plugin.schema().find(key);
        if (spec == nullptr) {
          std::cerr << name << ": unknown option " << key << "\n";
          return 2;
        }
        options.set(key, parse_value(*spec, value));
      }
      auto stage = plugin.create(name);
      stage->configure(options);
      astroflow::StageContext context;
      context.stage_name = name;
      stage->open(context);
      stages.push_back(std::move(stage));
    }
    const auto t0 = std::chrono::steady_clock::now();
    astroflow::Batch batch;
    batch.frames = astroflow::read_fits_frames(image, astroflow::FitsReadOptions{});
    const auto t1 = std::chrono::steady_clock::now();
    for (auto& s : stages) s->process(batch);
    const auto t2 = std::chrono::steady_clock::now();
    if (batch.frames.empty() || batch.frames[0].failed()) {
      std::cerr << image << ": "
                << (batch.frames.empty() || batch.frames[0].issues.empty()
                        ? "no frame"
                        : batch.frames[0].issues.back().reason)
                << "\n";
      return 1;
    }
    const astroflow::Frame& f = batch.frames[0];
    astroflow::write_csv_catalog(out_csv, f.catalog);
    if (!segmap_path.empty()) write_fits_image(segmap_path, f.planes.at("segmap"), f.header);
    for (auto& s : stages) s->close();
    std::printf("sources %zu\n", f.catalog.rows());
    std::printf("seconds_total %.3f\n", std::chrono::duration<double>(t2 - t0).count());
    std::printf("seconds_stages %.3f\n", std::chrono::duration<double>(t2 - t1).count());
  } catch (const std::exception& e) {
    std::cerr << "astroflow-bench-detect: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
