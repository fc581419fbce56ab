// Runs the real astroflow executable (ASTROFLOW_CLI) and captures its exit code and output.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace astroflow::test {

struct CliResult {
  int exit_code = -1;  ///< the process's exit status, or 128 + signal when killed by one
  std::string out;     ///< stdout
  std::string err;     ///< stderr
  [[nodiscard]] std::string all() const { return out + err; }
};

/// Runs `ASTROFLOW_CLI args...` with ASTROFLOW_PLUGIN_PATH set to ASTROFLOW_PLUGIN_DIR (unless
/// `env` sets it) plus the given extra environment variables. Blocks until it exits.
CliResult run_cli(const std::vector<std::string>& args,
                  const std::vector<std::pair<std::string, std::string>>& env = {});

/// Same, for any executable.
CliResult run_program(const std::string& exe, const std::vector<std::string>& args,
                      const std::vector<std::pair<std::string, std::string>>& env = {});

/// Whole file as a string; throws std::runtime_error when it cannot be read.
std::string read_text_file(const std::string& path);
/// Writes (replaces) a text file; throws std::runtime_error on failure.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace astroflow::test
