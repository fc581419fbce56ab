# Runs SExtractor (Debian's source-extractor) with settings that mirror astroflow's
# background + sources defaults. Sourced by bench/sextractor_compare.sh, bench/detect_compare.sh
# and bench/survey_real.sh, so every comparison uses the same SExtractor configuration.
#
#   source bench/sextractor_run.sh
#   sex_run IMAGE OUTDIR [CATALOG_TYPE] [NTHREADS]
#     IMAGE         a FITS file; "file.fits[1]" selects one extension (SExtractor's syntax)
#     CATALOG_TYPE  ASCII_HEAD (default; OUTDIR/sex.cat) or FITS_1.0 (OUTDIR/sex.cat.fits)
#     NTHREADS      SExtractor threads (default 1)
#   Writes OUTDIR/sex.seg.fits (SEGMENTATION check image, value = NUMBER) and the catalog.
#   GAIN and SEEING_FWHM come from the image's GAIN and SEEING cards when present
#   (SEX_GAIN / SEX_SEEING override; GAIN 0 = infinite, SEEING only matters for CLASS_STAR).
#   SEX_EXTRA="-DETECT_THRESH 3 ..." appends command-line overrides; SEX_PARAMS_EXTRA="XWIN_IMAGE
#   YWIN_IMAGE" appends catalog columns (not in the speed comparisons: they cost time).

# Prints the value of header card $2 of the first HDU of FITS file $1 that has it, or nothing.
sex_header_value() {
  /usr/bin/python3 - "$1" "$2" <<'PY' 2>/dev/null || true
import sys
path, key = sys.argv[1].split('[')[0], sys.argv[2]
with open(path, 'rb') as f:
    head = f.read(2880 * 200).decode('ascii', 'replace')
for i in range(0, len(head), 80):
    card = head[i:i + 80]
    if card[:8].rstrip() == key and card[8:10] == '= ':
        print(card[10:].split('/')[0].strip().strip("'").strip())
        break
PY
}

sex_run() {
  local image=$1 out=$2 cattype=${3:-ASCII_HEAD} nthreads=${4:-1}
  local gain=${SEX_GAIN:-$(sex_header_value "$image" GAIN)}
  local seeing=${SEX_SEEING:-$(sex_header_value "$image" SEEING)}
  local catname=$out/sex.cat
  [ "$cattype" = ASCII_HEAD ] || catname=$out/sex.cat.fits
  mkdir -p "$out"
  cat > "$out/sex.param" <<'PARAMS'
NUMBER
X_IMAGE
Y_IMAGE
ALPHA_J2000
DELTA_J2000
FLUX_AUTO
FLUXERR_AUTO
MAG_AUTO
A_IMAGE
B_IMAGE
THETA_IMAGE
ISOAREA_IMAGE
FLAGS
CLASS_STAR
PARAMS
  local p
  for p in ${SEX_PARAMS_EXTRA:-}; do echo "$p" >> "$out/sex.param"; done
  # 1.5 sigma, 5 px, 64 px meshes, 3x3 mesh filter, SExtractor's own gauss_3.0_5x5 filter,
  # Kron 2.5 / 3.5, as astroflow's sources defaults (docs/sources.md).
  cat > "$out/sex.conf" <<CONF
CATALOG_NAME     $catname
CATALOG_TYPE     $cattype
PARAMETERS_NAME  $out/sex.param
DETECT_TYPE      CCD
DETECT_MINAREA   5
DETECT_THRESH    1.5
ANALYSIS_THRESH  1.5
FILTER           Y
FILTER_NAME      /usr/share/source-extractor/gauss_3.0_5x5.conv
DEBLEND_NTHRESH  32
DEBLEND_MINCONT  0.005
CLEAN            Y
CLEAN_PARAM      1.0
MASK_TYPE        CORRECT
PHOT_AUTOPARAMS  2.5, 3.5
SATUR_LEVEL      1e29
MAG_ZEROPOINT    25.0
GAIN             ${gain:-0}
PIXEL_SCALE      0
SEEING_FWHM      ${seeing:-0.2}
STARNNW_NAME     /usr/share/source-extractor/default.nnw
BACK_SIZE        64
BACK_FILTERSIZE  3
BACKPHOTO_TYPE   GLOBAL
CHECKIMAGE_TYPE  SEGMENTATION
CHECKIMAGE_NAME  $out/sex.seg.fits
VERBOSE_TYPE     QUIET
NTHREADS         $nthreads
CONF
  # shellcheck disable=SC2086
  source-extractor "$image" -c "$out/sex.conf" ${SEX_EXTRA:-}
}
