#!/usr/bin/env bash
# Throughput of the classify stage: bare inference (OnnxModel on N simulated stamps already in
# memory, several batch sizes) against the end-to-end run read FITS -> classify -> write catalog
# (`astroflow run configs/morphology.yaml`) on the same number of stamp files, same threads.
# Prints one table; compare the ratios of one run only (the machine may be shared).
#   bench/classify_throughput.sh [BUILD=build] [N=2000] [THREADS=2]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
N=${N:-2000}
THREADS=${THREADS:-2}
WORK=${WORK:-$BUILD/bench-classify}
MODEL="$ROOT/models/classify/model.onnx"
mkdir -p "$WORK"

# Bare inference: compiled against the build tree (bench/CMakeLists.txt belongs to the other
# benchmarks; this keeps the classify bench self-contained).
g++ -O2 -std=c++20 -I"$ROOT/pipeline/include" -isystem /usr/include/opencv4 \
  "$ROOT/bench/classify_bench.cpp" -L"$BUILD/lib" -lastroflow -lopencv_core \
  -Wl,-rpath,"$BUILD/lib" -o "$WORK/classify_bench"
echo "== bare inference, $N stamps, $THREADS threads"
OPENCV_FOR_THREADS_NUM=$THREADS "$WORK/classify_bench" "$MODEL" "$N" "$THREADS" 1 16 64 256

echo "== end to end, $N stamp files, $THREADS threads"
if [ ! -f "$WORK/stamps/stamp_$(printf %06d $((N - 1))).fits" ]; then
  rm -rf "$WORK/stamps"
  "$BUILD/bin/astroflow" simulate cutouts --seed 777 --n "$N" --output "$WORK/stamps" || true
fi
for batch in 1 64; do
  rm -rf "$WORK/out"
  start=$(date +%s.%N)
  "$BUILD/bin/astroflow" run "$ROOT/configs/morphology.yaml" --input "$WORK/stamps" \
    --output "$WORK/out" --set run.threads="$THREADS" --set run.batch="$batch" \
    --set stages.classify.batch="$batch" > "$WORK/run.log" 2>&1 || true
  end=$(date +%s.%N)
  rows=$(($(wc -l < "$WORK/out/catalog.csv") - 1))
  printf "batch %-4s %6d rows  %8.0f stamps/s\n" "$batch" "$rows" \
    "$(echo "$rows / ($end - $start)" | bc -l)"
done
