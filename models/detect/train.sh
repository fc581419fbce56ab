#!/usr/bin/env bash
# Retrains models/detect from scratch, on the CPU:
#   1. builds the astroflow CLI if $BUILD/bin/astroflow is missing,
#   2. simulates the fields of fields.txt (train / validation / test: disjoint seeds, several
#      depths, densities, star counts, blend fractions and PSFs; stars with halos and spikes,
#      cosmic rays and hot pixels come with every field),
#   3. runs the C++ `background` stage on every field (models/common/background.yaml: planes background and
#      rms, exactly what the detect stage normalises with at inference),
#   4. trains the CenterNet (train.py; checkpoint choice on the validation fields only), exports
#      model.onnx (opset 13, dynamic batch), writes model.yaml, metrics.json and the reference
#      pair; the test fields are read once, after the model is fixed,
#   5. chooses the stage's default threshold (output.score_threshold) with the C++ stage on the
#      validation fields (tune_threshold.sh).
# Usage: models/detect/train.sh        (MAX_TRAIN_S bounds the training loop: the cores are shared)
# Environment: BUILD, AF (astroflow binary), DATA, THREADS, MAX_TRAIN_S, CHANNELS (the widths at
# 1/2, 1/4, 1/8, 1/16 resolution), OUT (where the model and its card go; default models/detect),
# TUNE (0: skip step 5, e.g. for a scratch OUT that tune_threshold.sh is then run on with MODEL).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
DATA=${DATA:-$BUILD/detect-data}
THREADS=${THREADS:-2}
MAX_TRAIN_S=${MAX_TRAIN_S:-2400}
AF=${AF:-$BUILD/bin/astroflow}
CHANNELS=${CHANNELS:-12,24,48,64}
OUT=${OUT:-$ROOT/models/detect}
TUNE=${TUNE:-1}

if [ ! -x "$AF" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$BUILD" -j"$THREADS" --target astroflow_cli astroflow_plugin_background \
    astroflow_plugin_detect
fi

mkdir -p "$DATA"
grep -v '^#' "$ROOT/models/detect/fields.txt" |
while read -r split name seed size gain sky dens stars blend fwhm irr magb slope starb sat; do
  [ -f "$DATA/$split/$name.fits" ] && continue
  "$AF" simulate field --seed "$seed" --size "$size" --gain "$gain" --sky "$sky" \
    --galaxy-density "$dens" --stars "$stars" --blend-fraction "$blend" --psf-fwhm "$fwhm" \
    --irregular-density "$irr" --mag-bright "${magb:-18}" --count-slope "${slope:-0.3}" \
    --star-mag-bright "${starb:-16}" --saturation "${sat:-0}" \
    --output "$DATA/$split" --name "$name" > /dev/null
done
grep -v '^#' "$ROOT/models/detect/fields.txt" | while read -r split name _; do
  [ -f "$DATA/bkg/$split/$name.rms.fits" ] && continue
  "$AF" run "$ROOT/models/common/background.yaml" --input "$DATA/$split/$name.fits" \
    --output "$DATA/bkg/$split" > /dev/null
done

nice -n 19 /usr/bin/python3 "$ROOT/models/detect/train.py" --data "$DATA" --out "$OUT" \
  --fields "$ROOT/models/detect/fields.txt" --threads "$THREADS" --max-train-s "$MAX_TRAIN_S" \
  --channels "$CHANNELS" --recipe "models/detect/train.sh  (MAX_TRAIN_S=$MAX_TRAIN_S CHANNELS=$CHANNELS)"
# The stage's default threshold, chosen with the C++ stage on the validation fields.
[ "$TUNE" = 0 ] && exit 0
AF="$AF" DATA="$DATA" THREADS="$THREADS" "$ROOT/models/detect/tune_threshold.sh" "$(dirname "$(dirname "$AF")")"
