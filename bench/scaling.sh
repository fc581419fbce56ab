#!/usr/bin/env bash
# Throughput of one process with 2 threads against 2 shards (--shard i/2) of 1 thread each,
# measured in one run on the same simulated cutouts. Prints a table (files/s); not a test.
# Usage: bench/scaling.sh [BUILD_DIR] [N_FILES]     (defaults: build, 400)
# Peak RSS of each variant comes from /usr/bin/time -v when it is installed.
set -euo pipefail
build=${1:-build}
n=${2:-400}
cli="$build/bin/astroflow"
export ASTROFLOW_PLUGIN_PATH="$build/lib/astroflow/plugins"
root=$(cd "$(dirname "$0")/.." && pwd)
config="$root/configs/demo.yaml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! "$cli" run --help | grep -q -- '--shard'; then
  echo "scaling.sh: $cli has no --shard option (batch integration not built)" >&2
  exit 1
fi
"$cli" simulate cutouts --n "$n" --seed 1 --output "$work/in" >/dev/null
rm -f "$work/in"/labels.*  # the labels table is not an image: it would count as a failure

timer() {  # prints wall seconds and peak RSS (KiB, or "-") of the command
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>&1
    cat "$work/time"
  else
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    echo "$(echo "$t1 - $t0" | bc) -"
  fi
}

read -r one_s one_rss < <(timer "$cli" run "$config" --input "$work/in" --output "$work/one" \
  --threads 2 --quiet)
t0=$(date +%s.%N)
timer "$cli" run "$config" --input "$work/in" --output "$work/s0" --threads 1 --quiet \
  --shard 0/2 >"$work/s0.time" &
timer "$cli" run "$config" --input "$work/in" --output "$work/s1" --threads 1 --quiet \
  --shard 1/2 >"$work/s1.time" &
wait
t1=$(date +%s.%N)
shards_s=$(echo "$t1 - $t0" | bc)
read -r _ s0_rss <"$work/s0.time"
read -r _ s1_rss <"$work/s1.time"
"$cli" merge "$work/s0" "$work/s1" --output "$work/merged" >/dev/null
same=no
cmp -s "$work/one/catalog.fits" "$work/merged/catalog.fits" && same=yes

printf '%-28s %8s %10s %14s\n' variant wall_s files/s peak_rss_KiB
printf '%-28s %8.2f %10.1f %14s\n' "1 process x 2 threads" "$one_s" \
  "$(echo "$n / $one_s" | bc -l)" "$one_rss"
printf '%-28s %8.2f %10.1f %14s\n' "2 shards x 1 thread" "$shards_s" \
  "$(echo "$n / $shards_s" | bc -l)" "$s0_rss/$s1_rss"
echo "merged shard catalog.fits identical to the single run: $same"
