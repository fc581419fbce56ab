#include "astroflow/frame.hpp"

namespace astroflow {

std::string Frame::label() const {
  std::string hdu;
  if (!hdu_name.empty() && hdu_name != "PRIMARY") {
    hdu = hdu_name;
    if (hdu_version > 0) {
      hdu += ',';
      hdu += std::to_string(hdu_version);
    }
  } else {
    hdu = std::to_string(hdu_index);
  }
  std::string out = path + "[" + hdu + "]";
  if (tile.count > 1)
    out += " tile " + std::to_string(tile.index + 1) + "/" + std::to_string(tile.count);
  return out;
}

void Frame::fail(std::string stage, std::string reason) {
  flags |= kFrameFailed;
  issues.push_back(FrameIssue{std::move(stage), std::move(reason)});
}

}  // namespace astroflow
