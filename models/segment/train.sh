#!/usr/bin/env bash
# Retrains models/segment from scratch, on the CPU:
#   1. builds the astroflow CLI and the background plugin if $AF is missing,
#   2. simulates the 1024x1024 fields of fields.txt (train / validation / test: disjoint seeds
#      8401-8602; several depths, densities, star counts, blend fractions, PSFs and irregular
#      densities; stars with halos and spikes, cosmic rays and hot pixels come with every field),
#   3. runs the C++ `background` stage on every field (models/common/background.yaml: planes
#      background and rms, exactly what the segment stage normalises with at inference),
#   4. trains the U-Net (train.py; early stopping on the validation fields only), exports
#      model.onnx (opset 13, dynamic batch, H and W), writes model.yaml, metrics.json and the
#      reference pair; the test fields are read once, after the model is fixed.
# The stages of train.py can run apart (--stage prepare|fit|finish); all of them run on the CPU
# with Debian's python3-torch.
# Usage: models/segment/train.sh      (MAX_TRAIN_S bounds the training loop by wall time; the
#        shipped model: MAX_TRAIN_S=3000 THREADS=1, 12/24/48/96 channels, batches of 16 patches
#        of 128 px, about 1 s a step on one idle core of the 2-core development VM.)
# Environment: BUILD, AF (astroflow binary), DATA, THREADS, MAX_TRAIN_S, PATCH, BATCH, WIDTHS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
DATA=${DATA:-$BUILD/segment-data}
THREADS=${THREADS:-1}
MAX_TRAIN_S=${MAX_TRAIN_S:-3000}
PATCH=${PATCH:-128}
BATCH=${BATCH:-16}
WIDTHS=${WIDTHS:-12,24,48,96}
AF=${AF:-$BUILD/bin/astroflow}

if [ ! -x "$AF" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$BUILD" -j2 --target astroflow_cli astroflow_plugin_background
fi

mkdir -p "$DATA"
grep -v '^#' "$ROOT/models/segment/fields.txt" |
  while read -r split name seed size gain sky dens stars blend fwhm irr; do
    [ -f "$DATA/$split/$name.truthclass.fits" ] && continue
    "$AF" simulate field --seed "$seed" --size "$size" --gain "$gain" --sky "$sky" \
      --galaxy-density "$dens" --stars "$stars" --blend-fraction "$blend" --psf-fwhm "$fwhm" \
      --irregular-density "$irr" --output "$DATA/$split" --name "$name" > /dev/null
  done
for split in train val test; do
  [ -n "$(ls "$DATA/bkg/$split"/*.rms.fits 2>/dev/null)" ] && continue
  "$AF" run "$ROOT/models/common/background.yaml" --input "$DATA/$split" \
    --output "$DATA/bkg/$split" > /dev/null
done

# prepare (arrays from the FITS fields) -> fit (the training loop, on the CPU)
# -> finish (test metrics, ONNX export, reference pair, card, metrics.json).
nice -n 19 /usr/bin/python3 "$ROOT/models/segment/train.py" --stage all --data "$DATA" \
  --cache "$DATA/cache" --out "$ROOT/models/segment" --fields "$ROOT/models/segment/fields.txt" \
  --threads "$THREADS" --max-train-s "$MAX_TRAIN_S" --patch "$PATCH" --batch "$BATCH" \
  --widths "$WIDTHS" --recipe "models/segment/train.sh  (MAX_TRAIN_S=$MAX_TRAIN_S THREADS=$THREADS)"
