#!/usr/bin/env bash
# Throughput and memory benchmark of `astroflow run` (not a test: it prints a table).
#
#   bench/throughput.sh [BUILD_DIR]        (default: build)
#
# Measures, on seeded 64x64 cutouts from `astroflow simulate cutouts`:
#   * files/s and Mpix/s of reader->writer alone (no stages) and of background+sources,
#     at --threads 1 and 2, on N_FILES files (default 500);
#   * peak RSS (/usr/bin/time -v) of background+sources on 100 vs 2000 files.
# Acceptance (printed at the end): RSS(2000) within 20% of RSS(100); 2 threads >= 1.7x 1 thread
# on background+sources.
#
# Environment: OUT_ROOT (default: a fresh folder under ${TMPDIR:-/tmp}) is where inputs and
# outputs go. Every output file is fsynced, so the disk under OUT_ROOT matters: run once with
# OUT_ROOT on a disk and once with OUT_ROOT=/dev/shm/... to separate CPU from I/O.
# N_FILES (default 500), REPEATS (default 1: best of REPEATS runs).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
AF="$BUILD/bin/astroflow"
[ -x "$AF" ] || { echo "throughput: $AF not found; build first (cmake --build $BUILD)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "throughput: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
N_FILES=${N_FILES:-500}
REPEATS=${REPEATS:-1}
ROOT=${OUT_ROOT:-$(mktemp -d "${TMPDIR:-/tmp}/astroflow-bench.XXXXXX")}
mkdir -p "$ROOT"
trap 'rm -rf "$ROOT/out"' EXIT

echo "# generating 2000 seeded 64x64 cutouts in $ROOT/in2000"
if [ ! -f "$ROOT/in2000/.done" ]; then
  rm -rf "$ROOT/in2000" "$ROOT/truth"
  "$AF" simulate cutouts --seed 11 --n 2000 --size 64 --output "$ROOT/truth" > /dev/null
  mkdir -p "$ROOT/in2000"
  mv "$ROOT"/truth/stamp_*.fits "$ROOT/in2000/"
  touch "$ROOT/in2000/.done"
fi
subset() {  # subset N -> folder with the first N stamps (hard links, no copy)
  local n=$1 d="$ROOT/in$1"
  if [ ! -d "$d" ]; then
    mkdir -p "$d"
    ls "$ROOT/in2000" | grep '^stamp_' | sort | head -n "$n" | while read -r f; do
      ln "$ROOT/in2000/$f" "$d/$f"
    done
  fi
  echo "$d"
}

cat > "$ROOT/none.yaml" <<'YAML'
output: {catalog: [fits, csv]}
run: {batch: 32, max_in_flight: 8}
stages: []
YAML
cat > "$ROOT/bgsrc.yaml" <<'YAML'
output: {catalog: [fits, csv]}
run: {batch: 32, max_in_flight: 8}
stages:
  - {plugin: background, back_size: 32}
  - {plugin: sources}
YAML

# run CONFIG INPUT THREADS -> prints "wall_s rss_kb" (best wall of REPEATS; RSS of that run)
run() {
  local best="" rss=""
  for _ in $(seq "$REPEATS"); do
    rm -rf "$ROOT/out"
    /usr/bin/time -v -o "$ROOT/time.txt" "$AF" run "$1" --input "$2" --output "$ROOT/out" \
      --threads "$3" --quiet
    local w r
    w=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["wall_s"])' "$ROOT/out/summary.json")
    r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$ROOT/time.txt")
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $w < $best else 1)"; then
      best=$w; rss=$r
    fi
  done
  echo "$best $rss"
}

IN_N=$(subset "$N_FILES")
PIX=$((64 * 64))
printf '\n%-22s %7s %7s %9s %9s %10s\n' "pipeline" "threads" "files" "files/s" "Mpix/s" "peakRSS_MB"
declare -A RATE
for cfg in none bgsrc; do
  for t in 1 2; do
    read -r wall rss < <(run "$ROOT/$cfg.yaml" "$IN_N" "$t")
    rate=$(python3 -c "print(f'{$N_FILES/$wall:.1f}')")
    mpix=$(python3 -c "print(f'{$N_FILES*$PIX/$wall/1e6:.2f}')")
    RATE[$cfg$t]=$rate
    label=$([ "$cfg" = none ] && echo "reader->writer" || echo "background+sources")
    printf '%-22s %7s %7s %9s %9s %10s\n' "$label" "$t" "$N_FILES" "$rate" "$mpix" \
      "$(python3 -c "print(f'{$rss/1024:.1f}')")"
  done
done

echo
printf '%-22s %7s %7s %10s\n' "memory" "threads" "files" "peakRSS_MB"
declare -A RSS
for n in 100 2000; do
  read -r _ rss < <(run "$ROOT/bgsrc.yaml" "$(subset "$n")" 2)
  RSS[$n]=$rss
  printf '%-22s %7s %7s %10s\n' "background+sources" 2 "$n" "$(python3 -c "print(f'{$rss/1024:.1f}')")"
done

echo
python3 - "${RATE[bgsrc1]}" "${RATE[bgsrc2]}" "${RSS[100]}" "${RSS[2000]}" "${RATE[none1]}" "${RATE[none2]}" <<'PY'
import sys
b1, b2, r100, r2000, n1, n2 = map(float, sys.argv[1:])
speed = b2 / b1
growth = r2000 / r100 - 1
print(f"speed-up 2 vs 1 thread, background+sources: {speed:.2f}x  (target >= 1.7x: {'PASS' if speed >= 1.7 else 'FAIL'})")
print(f"speed-up 2 vs 1 thread, reader->writer:     {n2 / n1:.2f}x")
print(f"peak RSS 2000 vs 100 files: {growth * 100:+.1f}%  (target within 20%: {'PASS' if abs(growth) <= 0.2 else 'FAIL'})")
PY
echo "outputs and inputs under $ROOT (inputs kept for re-runs)"
