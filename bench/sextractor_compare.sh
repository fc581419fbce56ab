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
gain=$(python3 - "$image" <<'EOF' 2>/dev/null || true
import sys
with open(sys.argv[1], 'rb') as f:
    head = f.read(2880 * 20).decode('ascii', 'replace')
for i in range(0, len(head), 80):
    card = head[i:i + 80]
    if card.startswith('GAIN    ='):
        print(card[10:].split('/')[0].strip())
        break
EOF
)
gain=${gain:-0}

# Minimal SExtractor configuration written here so the comparison does not depend on the
# package's defaults. Settings mirror astroflow's: 1.5 sigma, 5 px, 64 px meshes, 3x3 filter
# of the mesh grid, Gaussian FWHM 3 px on 5x5, Kron 2.5 / 3.5.
cat > "$work/default.param" <<'EOF'
NUMBER
X_IMAGE
Y_IMAGE
FLUX_AUTO
FLUXERR_AUTO
MAG_AUTO
A_IMAGE
B_IMAGE
THETA_IMAGE
FLAGS
EOF
# SExtractor's own gauss_3.0_5x5 filter, shipped by the Debian package.
cp /usr/share/source-extractor/gauss_3.0_5x5.conv "$work/default.conv"
cat > "$work/default.sex" <<EOF
CATALOG_NAME     $work/sex.cat
CATALOG_TYPE     ASCII_HEAD
PARAMETERS_NAME  $work/default.param
DETECT_TYPE      CCD
DETECT_MINAREA   5
DETECT_THRESH    1.5
ANALYSIS_THRESH  1.5
FILTER           Y
FILTER_NAME      $work/default.conv
DEBLEND_NTHRESH  32
DEBLEND_MINCONT  0.005
CLEAN            Y
CLEAN_PARAM      1.0
MASK_TYPE        CORRECT
PHOT_AUTOPARAMS  2.5, 3.5
SATUR_LEVEL      1e29
MAG_ZEROPOINT    25.0
GAIN             $gain
BACK_SIZE        64
BACK_FILTERSIZE  3
BACKPHOTO_TYPE   GLOBAL
CHECKIMAGE_TYPE  SEGMENTATION
CHECKIMAGE_NAME  $work/sex.seg.fits
VERBOSE_TYPE     QUIET
NTHREADS         1
EOF

t0=$(now)
source-extractor "$image" -c "$work/default.sex"
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
