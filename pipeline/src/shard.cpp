#include "astroflow/shard.hpp"

#include <charconv>

#include "astroflow/error.hpp"

namespace astroflow {

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

Shard Shard::parse(std::string_view text) {
  const auto bad = [&](const std::string& why) {
    return FatalError("--shard '" + std::string(text) + "': " + why +
                      " (expected i/N with 0 <= i < N, e.g. 0/4)");
  };
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) throw bad("no '/'");
  Shard s;
  const auto parse_u64 = [&](std::string_view part, std::uint64_t& out) {
    const char* end = part.data() + part.size();
    const auto [ptr, ec] = std::from_chars(part.data(), end, out);
    return !part.empty() && ec == std::errc() && ptr == end;
  };
  if (!parse_u64(text.substr(0, slash), s.index)) throw bad("the index is not a whole number");
  if (!parse_u64(text.substr(slash + 1), s.count)) throw bad("the count is not a whole number");
  if (s.count == 0) throw bad("the count must be at least 1");
  if (s.index >= s.count) throw bad("the index must be smaller than the count");
  return s;
}

std::string Shard::str() const {
  return std::to_string(index) + "/" + std::to_string(count);
}

}  // namespace astroflow
