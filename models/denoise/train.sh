#!/usr/bin/env bash
# Retrains models/denoise from scratch, on the CPU:
#   1. builds the astroflow CLI if $BUILD/bin/astroflow is missing,
#   2. simulates the 1024x1024 fields of fields.txt (train / validation / test: disjoint seeds,
#      several depths, densities and PSFs) and, for the Noise2Noise variant, second noise
#      realisations of the train fields (--noise-seed = seed + 100000),
#   3. trains the U-Net (train.py; early stopping on the validation fields only), exports
#      model.onnx (opset 13), writes model.yaml and the reference pair,
#   4. reports the noise reduction on the test fields (never used for a choice).
# The C++ metrics of the card (metrics.json) come from the plugin test with the data folder:
#   DENOISE_EVAL_DIR=$DATA build/bin/denoise_test --gtest_filter=DenoiseEval.*
# Usage: models/denoise/train.sh           (at most MAX_MINUTES of training, default 18)
#        TARGET=n2n models/denoise/train.sh  (Noise2Noise variant; does not export)
# Environment: BUILD, DATA, THREADS, MAX_MINUTES, TARGET (truth | n2n).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
DATA=${DATA:-$BUILD/denoise-data}
THREADS=${THREADS:-2}
MAX_MINUTES=${MAX_MINUTES:-18}
TARGET=${TARGET:-truth}

if [ ! -x "$BUILD/bin/astroflow" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$BUILD" -j"$THREADS" --target astroflow_cli
fi
AF="$BUILD/bin/astroflow"

grep -v '^#' "$ROOT/models/denoise/fields.txt" | while read -r split name seed gain dens fwhm; do
  args=(--seed "$seed" --size 1024 --gain "$gain" --galaxy-density "$dens" --psf-fwhm "$fwhm")
  [ -f "$DATA/clean/$split/$name.fits" ] ||
    "$AF" simulate field "${args[@]}" --output "$DATA/clean/$split" --name "$name" > /dev/null
  if [ "$split" = train ] && [ ! -f "$DATA/n2n/$split/$name.fits" ]; then
    "$AF" simulate field "${args[@]}" --noise-seed $((seed + 100000)) \
      --output "$DATA/n2n/$split" --name "$name" > /dev/null
  fi
done

EXPORT=()
[ "$TARGET" = truth ] && EXPORT=(--export)
/usr/bin/python3 "$ROOT/models/denoise/train.py" --data "$DATA/clean" --n2n-data "$DATA/n2n" \
  --target "$TARGET" --out "$ROOT/models/denoise" --threads "$THREADS" \
  --max-minutes "$MAX_MINUTES" "${EXPORT[@]}" --recipe "models/denoise/train.sh  (TARGET=$TARGET MAX_MINUTES=$MAX_MINUTES)"
