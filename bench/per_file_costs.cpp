// CPU time per input file of the steps the pipeline's reader and per-input writer take for a
// cutout, one step at a time over N stamps (single thread): read_fits_frames (of which WCS
// parsing and the header copy), the per-input catalog's FITS bytes (fits_catalog_bytes, the
// classify columns, the input header plus four HISTORY cards), sha256 of those bytes, the
// deferred atomic write (temp + rename, no fsync), and reading the catalog back as the merged
// catalog does. Prints one line of microseconds per file.
//   g++ -O2 -std=c++20 -Ipipeline/include -isystem /usr/include/opencv4
//     -isystem /usr/include/wcslib bench/per_file_costs.cpp -Lbuild/lib -lastroflow
//     -lopencv_core -Wl,-rpath,$PWD/build/lib -o per_file_costs    (one command line)
//   ./per_file_costs STAMP_DIR N OUT_DIR     # STAMP_DIR from astroflow simulate cutouts
#include <astroflow/atomic_file.hpp>
#include <astroflow/fits_io.hpp>
#include <astroflow/wcs.hpp>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

namespace {

double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace astroflow;
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s STAMP_DIR N OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int n = std::stoi(argv[2]);
  const std::string out = argv[3];
  std::filesystem::create_directories(out);
  std::vector<std::string> paths;
  for (int i = 0; i < n; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "/stamp_%06d.fits", i);
    paths.push_back(dir + name);
  }
  std::vector<Frame> frames;
  double t = cpu_s();
  for (const std::string& p : paths) frames.push_back(std::move(read_fits_frames(p, {})[0]));
  const double read = cpu_s() - t;
  t = cpu_s();
  for (const Frame& f : frames) (void)Wcs::from_header(f.header);
  const double wcs = cpu_s() - t;
  t = cpu_s();
  for (const Frame& f : frames) {
    const Header copy = f.header;
    (void)copy;
  }
  const double header_copy = cpu_s() - t;

  Catalog cat;
  cat.resize(1);
  for (const char* c : {"NUMBER", "CLASS_ID", "CLASS_FLAGS"})
    cat.add_column<std::int32_t>(c, "", "an integer column");
  cat.add_column<std::string>("CLASS", "", "most probable morphology class");
  for (const char* c :
       {"CLASS_FILL_FRAC", "P_SPHEROID", "P_DISK", "P_IRREGULAR", "P_POINT_SOURCE", "P_ARTIFACT"})
    cat.add_column<float>(c, "", "calibrated probability");
  cat.get<std::string>("CLASS")[0] = "disk";
  std::vector<std::string> bytes;
  t = cpu_s();
  for (const Frame& f : frames) {
    Header h = f.header;
    for (int k = 0; k < 4; ++k) h.add_history("astroflow stage classify: plugin classify 1.0.0");
    bytes.push_back(fits_catalog_bytes(cat, h, "CATALOG", "catalog"));
  }
  const double encode = cpu_s() - t;
  t = cpu_s();
  for (const std::string& b : bytes) (void)sha256_hex(b);
  const double sha = cpu_s() - t;
  t = cpu_s();
  for (int i = 0; i < n; ++i) {
    write_file_atomically(out + "/c" + std::to_string(i) + ".cat.fits",
                          bytes[static_cast<std::size_t>(i)], Durability::kDeferred);
  }
  const double write = cpu_s() - t;
  t = cpu_s();
  for (int i = 0; i < n; ++i) (void)read_fits_catalog(out + "/c" + std::to_string(i) + ".cat.fits");
  const double read_back = cpu_s() - t;
  const double us = 1e6 / n;
  std::printf(
      "us/file: read_fits_frames %.1f (WCS %.1f, header copy %.1f) | catalog bytes %.1f (%zu B) | "
      "sha256 %.1f | write + rename %.1f | read catalog back %.1f\n",
      read * us, wcs * us, header_copy * us, encode * us, bytes.front().size(), sha * us,
      write * us, read_back * us);
  return 0;
}
