#!/usr/bin/env bash
# Peak RSS of `astroflow run` on a small and a large folder of simulated cutouts, same config
# (issue 7, Memory: the large run stays within 20% of the small one). Prints a table; not a test.
#
#   bench/memory.sh [BUILD_DIR] [SMALL] [LARGE]        (defaults: build 500 10000)
#
# Inputs: `astroflow simulate cutouts --n LARGE --seed 1` (64x64 stamps); the small run uses the
# first SMALL of them. Config: configs/demo.yaml's pipeline as of this script (background +
# sources; catalogs fits+csv, segmap and background images per input), 2 threads.
# OUT_ROOT (default: a fresh folder under ${TMPDIR:-/tmp}) holds inputs and outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SMALL=${2:-500}
LARGE=${3:-10000}
AF="$BUILD/bin/astroflow"
[ -x "$AF" ] || { echo "memory.sh: $AF not found; build first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "memory.sh: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
export ASTROFLOW_PLUGIN_PATH="$BUILD/lib/astroflow/plugins"
ROOT=${OUT_ROOT:-$(mktemp -d "${TMPDIR:-/tmp}/astroflow-memory.XXXXXX")}
mkdir -p "$ROOT"
trap 'rm -rf "$ROOT/out_small" "$ROOT/out_large"' EXIT

if [ ! -f "$ROOT/in_large/.done" ]; then
  rm -rf "$ROOT/in_large" "$ROOT/in_small"
  "$AF" simulate cutouts --n "$LARGE" --seed 1 --output "$ROOT/in_large" >/dev/null
  touch "$ROOT/in_large/.done"
fi
if [ ! -f "$ROOT/in_small/.done" ]; then
  rm -rf "$ROOT/in_small"
  mkdir -p "$ROOT/in_small"
  stamps=("$ROOT"/in_large/stamp_*.fits)  # sorted by the glob
  for f in "${stamps[@]:0:$SMALL}"; do ln "$f" "$ROOT/in_small/"; done
  touch "$ROOT/in_small/.done"
fi

cat >"$ROOT/config.yaml" <<'YAML'
input: {pattern: "stamp_*.fits", recursive: true, hdu: auto}
output: {catalog: [fits, csv], images: [segmap, background], quicklook: false}
run: {threads: auto, batch: 32, max_in_flight: 8}
stages:
  - {plugin: background, back_size: 64, back_filtersize: 3}
  - {plugin: sources, threshold: 1.5, min_area: 5, deblend_nthresh: 32, deblend_mincont: 0.005}
YAML

measure() {  # measure NAME INPUT -> "wall_s max_rss_KiB sources"
  /usr/bin/time -f '%e %M' -o "$ROOT/time.$1" "$AF" run "$ROOT/config.yaml" --input "$2" \
    --output "$ROOT/out_$1" --threads 2 --quiet || [ $? -eq 2 ]
  local sources
  sources=$(grep -o '"sources": [0-9]*' "$ROOT/out_$1/summary.json" | head -n1 | grep -o '[0-9]*$')
  echo "$(cat "$ROOT/time.$1") $sources"
}
read -r s_wall s_rss s_src < <(measure small "$ROOT/in_small")
read -r l_wall l_rss l_src < <(measure large "$ROOT/in_large")

printf '%-8s %8s %9s %16s\n' inputs sources wall_s max_rss_KiB
printf '%-8s %8s %9s %16s\n' "$SMALL" "$s_src" "$s_wall" "$s_rss"
printf '%-8s %8s %9s %16s\n' "$LARGE" "$l_src" "$l_wall" "$l_rss"
echo "large/small peak RSS: $(echo "scale=3; $l_rss / $s_rss" | bc) (acceptance: <= 1.200)"
