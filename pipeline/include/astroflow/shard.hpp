// Shard: a stable partition of the input files for job arrays (`--shard i/N`).
//
// A file belongs to shard (FNV-1a 64 of its path relative to the input root) mod N. The choice
// depends only on that path, never on the file's position in the list, so adding or removing
// files never moves another file to a different shard, and N jobs that each take one shard
// together process every file exactly once.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace astroflow {

/// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
[[nodiscard]] std::uint64_t fnv1a64(std::string_view bytes);

struct Shard {
  std::uint64_t index = 0;  ///< 0-based
  std::uint64_t count = 1;

  /// Parses "i/N" with 0 <= i < N (e.g. Slurm's "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT").
  /// Throws FatalError naming the text when it is malformed or out of range.
  [[nodiscard]] static Shard parse(std::string_view text);

  /// True when the file with this path (relative to the input root, '/' separators) is ours.
  [[nodiscard]] bool contains(std::string_view relative_path) const {
    return count <= 1 || fnv1a64(relative_path) % count == index;
  }
  [[nodiscard]] std::string str() const;
};

}  // namespace astroflow
