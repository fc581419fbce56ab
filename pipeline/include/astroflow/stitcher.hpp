// Stitching: puts the tiles of one large image back together after the stages ran.
//
//  * Catalog: X_IMAGE/Y_IMAGE are full-image coordinates (stage convention, see tiler.hpp); a
//    row is kept only if its tile owns its centroid (TileGrid::owns), so overlaps give no
//    duplicates. Rows keep the order tile by tile, then the stage's order inside a tile.
//  * Planes (same size as the tile): each tile's owned rectangle is pasted into a full-size
//    plane of the same type. The science plane is pasted the same way.
//  * "segmap" (CV_32S): labels are rewritten to the stitched NUMBER (1..n in row order). Pixels
//    of a source dropped as a duplicate take the label of the kept source nearest to its
//    centroid (within 3 pixels), or 0 when there is none.
//  * Flags and issues of every tile are merged into the result; provenance is the first tile's.
#pragma once

#include <vector>

#include "astroflow/frame.hpp"
#include "astroflow/tiler.hpp"

namespace astroflow {

/// `shell` carries the parent's identity, header and WCS (its pixels are ignored). `tiles` are
/// the processed tiles of that image, in any order. Returns the full frame.
[[nodiscard]] Frame stitch_tiles(Frame shell, std::vector<Frame> tiles, const TileGrid& grid);

/// Rewrites NUMBER to 1..n in row order and the "segmap" plane to match (labels that belong to
/// no row become 0). Adds NUMBER (int32) when missing.
void renumber_sources(Frame& frame);

}  // namespace astroflow
