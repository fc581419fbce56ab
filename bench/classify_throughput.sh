#!/usr/bin/env bash
# Throughput of the classify stage: bare inference (OnnxModel on N simulated stamps already in
# memory, several batch sizes) against the end-to-end run read FITS -> classify -> write catalog
# (`astroflow run configs/morphology.yaml`) on the same number of stamp files, same threads.
# Prints one table; compare the ratios of one run only (the machine may be shared). Each end-to-end
# run is repeated REPEATS times and the fastest kept (the bare numbers are single passes).
#   bench/classify_throughput.sh [BUILD=build] [N=2000] [THREADS=2] [REPEATS=2]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
N=${N:-2000}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-2}
WORK=${WORK:-$BUILD/bench-classify}
MODEL="$ROOT/models/classify/model.onnx"
mkdir -p "$WORK"

# Bare inference: compiled against the build tree (bench/CMakeLists.txt belongs to the other
# benchmarks; this keeps the classify bench self-contained).
g++ -O2 -std=c++20 -I"$ROOT/pipeline/include" -isystem /usr/include/opencv4 \
  "$ROOT/bench/classify_bench.cpp" -L"$BUILD/lib" -lastroflow -lopencv_core \
  -Wl,-rpath,"$BUILD/lib" -o "$WORK/classify_bench"
echo "== bare inference, $N stamps, $THREADS threads"
OPENCV_FOR_THREADS_NUM=$THREADS "$WORK/classify_bench" "$MODEL" "$N" "$THREADS" 1 16 64 256 |
  tee "$WORK/bare.txt"

echo "== end to end, $N stamp files, $THREADS threads"
if [ ! -f "$WORK/stamps/stamp_$(printf %06d $((N - 1))).fits" ]; then
  rm -rf "$WORK/stamps"
  "$BUILD/bin/astroflow" simulate cutouts --seed 777 --n "$N" --output "$WORK/stamps" || true
fi
rm -f "$WORK/e2e.txt"
for batch in 1 64; do
  best=0
  for _ in $(seq "$REPEATS"); do
    rm -rf "$WORK/out"
    start=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$WORK/cpu.txt" \
      "$BUILD/bin/astroflow" run "$ROOT/configs/morphology.yaml" --input "$WORK/stamps" \
      --output "$WORK/out" --set run.threads="$THREADS" --set run.batch="$batch" \
      --set stages.classify.batch="$batch" > "$WORK/run.log" 2>&1 || true
    end=$(date +%s.%N)
    rows=$(($(wc -l < "$WORK/out/catalog.csv") - 1))
    rate=$(echo "$rows / ($end - $start)" | bc -l)
    cpu_ms=$(awk -v n="$rows" '{ printf "%.3f", 1000 * ($1 + $2) / n }' "$WORK/cpu.txt")
    printf "batch %-4s %6d rows  %8.0f stamps/s  %s cpu_ms/stamp\n" "$batch" "$rows" "$rate" \
      "$cpu_ms"
    if [ "$(echo "$rate > $best" | bc -l)" = 1 ]; then
      best=$rate
      best_cpu=$cpu_ms
    fi
  done
  echo "$batch $best $best_cpu" >> "$WORK/e2e.txt"
done

echo "== summary ($N stamps, $THREADS threads; end to end: best of $REPEATS)"
printf "%-6s %10s %16s %12s %12s %15s | %13s %9s %10s\n" batch forward/s normalise+fwd/s \
  end-to-end/s e2e/forward "e2e/(norm+fwd)" "cpu_ms (n+f)" "cpu_ms e2e" "cpu ratio"
while read -r batch e2e e2e_cpu; do
  read -r fwd nf nf_cpu < <(awk -v b="$batch" '$1 == b { print $2, $3, $4 }' "$WORK/bare.txt")
  printf "%-6s %10.0f %16.0f %12.0f %11.0f%% %14.0f%% | %13.3f %10.3f %9.0f%%\n" "$batch" "$fwd" \
    "$nf" "$e2e" "$(echo "100 * $e2e / $fwd" | bc -l)" "$(echo "100 * $e2e / $nf" | bc -l)" \
    "$nf_cpu" "$e2e_cpu" "$(echo "100 * $nf_cpu / $e2e_cpu" | bc -l)"
done < "$WORK/e2e.txt"
