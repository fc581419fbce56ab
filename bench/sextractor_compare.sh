#!/usr/bin/env bash
# Compares astroflow's background + sources stages with SExtractor (Debian's source-extractor)
# on one simulated field, against the simulator's truth table.
#
# Usage: bench/sextractor_compare.sh [BUILD_DIR] [SIZE] [SEED]
#   BUILD_DIR  a configured and built tree (default: build); needs the targets astroflow_cli,
#              astroflow-bench-detect, astroflow-bench-match and the two plugins
#   SIZE       image side in pixels (default 4096)
#   SEED       simulator seed (default 1)
# Environment: KEEP=1 keeps the temporary folder; AF_SET="sources.threshold=1.4 ..." passes
# option overrides to astroflow.
#
# Prints the completeness table per 0.5 mag bin of truth magnitude, the purity of each catalog
# and the wall time / Mpix/s of each (both single process, both reading the same FITS file).
set -euo pipefail

build=${1:-build}
size=${2:-4096}
seed=${3:-1}
build=$(cd "$build" && pwd)
astroflow="$build/bin/astroflow"
detect="$build/bin/astroflow-bench-detect"
matcher="$build/bin/astroflow-bench-match"
for tool in "$astroflow" "$detect" "$matcher"; do
  [ -x "$tool" ] || { echo "sextractor_compare: $tool not built" >&2; exit 2; }
done
command -v source-extractor >/dev/null || { echo "sextractor_compare: source-extractor missing (scripts/install-deps.sh)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/af-sexcmp.XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; else echo "keeping $work"; fi

now() { date +%s.%N; }

"$astroflow" simulate field --size "$size" --seed "$seed" --output "$work" --name field >/dev/null
image="$work/field.fits"
truth="$work/field.truth.csv"
# The shared SExtractor configuration (GAIN from the image header).
# shellcheck source=bench/sextractor_run.sh
source "$(dirname "$0")/sextractor_run.sh"
gain=$(sex_header_value "$image" GAIN)
gain=${gain:-0}

t0=$(now)
sex_run "$image" "$work" ASCII_HEAD 1
t1=$(now)
sex_s=$(echo "$t1 - $t0" | bc -l)

set_args=()
for kv in ${AF_SET:-}; do set_args+=(--set "$kv"); done
t0=$(now)
"$detect" "$image" "$work/astroflow.csv" --segmap "$work/astroflow.seg.fits" "${set_args[@]}" > "$work/detect.log"
t1=$(now)
af_s=$(echo "$t1 - $t0" | bc -l)

mpix=$(echo "$size * $size / 1000000" | bc -l)
echo "field: astroflow simulate field --size $size --seed $seed (GAIN $gain)"
echo "machine: $(nproc) cores; wall times include reading the FITS file and writing catalog + segmap"
[ -n "${AF_SET:-}" ] && echo "astroflow overrides: $AF_SET"
"$matcher" --truth "$truth" --cat astroflow="$work/astroflow.csv" --cat sextractor="$work/sex.cat" \
  --time astroflow="$af_s" --time sextractor="$sex_s" --mpix "$mpix" --radius 2 --bin 0.5
