// A simulated mini-survey: overlapping images cut from one simulated sky, so that the same
// objects appear in several images that share one WCS frame (cross-image merging, run reports).
// `astroflow simulate field --tiles CxR --tile-overlap N` (docs/simulator.md).
//
// The whole field is simulated once (simulate_field); each tile is a sub-image of it with every
// plane cut at the same place, CRPIX1/CRPIX2 shifted by the tile origin (so sky coordinates are
// unchanged), and its own truth and artifact tables holding the rows whose position falls on
// the tile, in the tile's pixel coordinates (ALPHA_J2000/DELTA_J2000 unchanged, so one sky
// object has the same truth ID and sky position in every tile that holds it).
//
// Failure: a tiling that does not fit the field throws FatalError naming the option.
#pragma once

#include <string>
#include <vector>

#include "astroflow/simulate.hpp"

namespace astroflow {

struct SurveyTiling {
  int columns = 2;
  int rows = 1;
  int overlap_pix = 256;  ///< pixels shared by neighbouring tiles
};

struct SurveyTile {
  std::string suffix;  ///< "_r<row>c<col>", appended to the field name
  int x0_pix = 0;      ///< 0-based origin in the field
  int y0_pix = 0;
  int width_pix = 0;
  int height_pix = 0;
};

/// Parses "CxR" (e.g. "2x2"); throws FatalError naming `option`.
[[nodiscard]] SurveyTiling parse_survey_tiling(const std::string& text, int overlap_pix,
                                               const std::string& option = "--tiles");

/// Equal tiles covering width x height, neighbours sharing overlap_pix (the last tile of a row
/// or column is moved in so that it ends at the field's edge).
[[nodiscard]] std::vector<SurveyTile> survey_tiles(int width_pix, int height_pix,
                                                   const SurveyTiling& tiling);

/// One tile of `field`, as described above.
[[nodiscard]] FieldSimulation cut_field(const FieldSimulation& field, const SurveyTile& tile);

/// Writes every tile as write_field does, each under options.name + tile.suffix. Returns the
/// paths written.
std::vector<std::string> write_survey(const FieldSimulation& field, const FieldOptions& options,
                                      const SurveyTiling& tiling);

}  // namespace astroflow
