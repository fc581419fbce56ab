#include "astroflow/progress.hpp"

#include <fmt/format.h>

#include <cmath>

namespace astroflow {

ProgressReporter::ProgressReporter(std::FILE* stream, bool is_tty, double interval_s)
    : stream_(stream), tty_(is_tty), interval_s_(tty_ ? 0.25 : interval_s) {}

std::string ProgressReporter::format(const ProgressSnapshot& s) {
  const double t = s.elapsed_s > 0 ? s.elapsed_s : 0.0;
  const double files_per_s = t > 0 ? static_cast<double>(s.files_done) / t : 0.0;
  const double sources_per_s = t > 0 ? static_cast<double>(s.sources) / t : 0.0;
  std::string eta = "?";
  if (s.files_done >= s.files_total) {
    eta = "0 s";
  } else if (files_per_s > 0) {
    eta = fmt::format("{:.0f} s", static_cast<double>(s.files_total - s.files_done) / files_per_s);
  }
  return fmt::format("{}/{} files | {:.1f} files/s | {:.0f} sources/s | ETA {} | {} failed",
                     s.files_done, s.files_total, files_per_s, sources_per_s, eta, s.failures);
}

void ProgressReporter::update(const ProgressSnapshot& s) {
  std::lock_guard lock(mutex_);
  if (stream_ == nullptr || s.elapsed_s - last_print_s_ < interval_s_) return;
  last_print_s_ = s.elapsed_s;
  if (tty_) {
    constexpr int kWidth = 24;
    const double frac =
        s.files_total == 0 ? 1.0
                           : static_cast<double>(s.files_done) / static_cast<double>(s.files_total);
    const int filled = static_cast<int>(std::lround(frac * kWidth));
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(kWidth - filled), '.');
    std::fprintf(stream_, "\r\033[K[%s] %s", bar.c_str(), format(s).c_str());
    printed_bar_ = true;
  } else {
    std::fprintf(stream_, "astroflow: progress: %s\n", format(s).c_str());
  }
  std::fflush(stream_);
}

void ProgressReporter::finish(const ProgressSnapshot& s) {
  if (stream_ == nullptr) return;
  {
    std::lock_guard lock(mutex_);
    last_print_s_ = -1e300;
  }
  update(s);
  std::lock_guard lock(mutex_);
  if (tty_ && printed_bar_) std::fprintf(stream_, "\n");
  std::fflush(stream_);
}

}  // namespace astroflow
