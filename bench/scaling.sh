#!/usr/bin/env bash
# Scale-out on one machine, in one run on the same simulated cutouts (issue 7, Throughput):
#   1 process x 1 thread (the base), 1 rank x 2 threads, 2 MPI ranks x 1 thread
#   (mpirun -n 2), 2 shards x 1 thread (--shard i/2 run side by side, then `astroflow merge`).
# Prints files/s, speed-up over the base and peak RSS per variant; not a test. Each variant's
# catalog.fits is compared with the base's (they must be the same bytes).
# Usage: bench/scaling.sh [BUILD_DIR] [N_FILES]     (defaults: build, 400)
# REPEATS=R (default 1) runs every variant R times, interleaved, and keeps each one's best wall
# time (on a shared machine the best run is the one least disturbed). TMPDIR picks the disk.
# The MPI row needs a build with -DASTROFLOW_WITH_MPI=ON and mpirun (scripts/install-deps.sh
# --mpi); with another build it prints "n/a". Peak RSS comes from /usr/bin/time when installed.
set -euo pipefail
build=${1:-build}
n=${2:-400}
cli="$build/bin/astroflow"
export ASTROFLOW_PLUGIN_PATH="$build/lib/astroflow/plugins"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! "$cli" run --help | grep -q -- '--shard'; then
  echo "scaling.sh: $cli has no --shard option (batch integration not built)" >&2
  exit 1
fi
"$cli" simulate cutouts --n "$n" --seed 1 --output "$work/in" >/dev/null
rm -f "$work/in"/labels.*  # the labels table is not an image: it would count as a failure

# configs/demo.yaml's pipeline, fixed here so that the numbers do not move when the demo does:
# catalogs fits+csv, segmap and background images per input.
config="$work/config.yaml"
cat >"$config" <<'YAML'
input: {pattern: "*.fits", recursive: true, hdu: auto}
output: {catalog: [fits, csv], images: [segmap, background], quicklook: false}
run: {threads: auto, batch: 32, max_in_flight: 8}
stages:
  - {plugin: background, back_size: 64, back_filtersize: 3}
  - {plugin: sources, threshold: 1.5, min_area: 5, deblend_nthresh: 32, deblend_mincont: 0.005}
YAML

timer() {  # timer TAG COMMAND... -> writes "wall_s peak_rss_KiB" to $work/TAG.time
  local tag=$1
  shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%e %M' -o "$work/$tag.time" "$@" >/dev/null 2>&1 || true
  else
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    echo "$(echo "$t1 - $t0" | bc) -" >"$work/$tag.time"
  fi
}
same_as_base() { cmp -s "$work/base/catalog.fits" "$1/catalog.fits" && echo yes || echo no; }

keep_best() {  # keep_best TAG: $work/TAG.best holds the faster of itself and $work/TAG.time
  if [ ! -f "$work/$1.best" ] ||
    [ "$(echo "$(cut -d' ' -f1 "$work/$1.time") < $(cut -d' ' -f1 "$work/$1.best")" | bc)" = 1 ]; then
    cp "$work/$1.time" "$work/$1.best"
  fi
}

mpi_line="n/a (no MPI in this build, or no mpirun)"
if command -v mpirun >/dev/null && ldd "$cli" | grep -q libmpi; then
  # Root in containers and CI: OpenMPI refuses root without these.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_btl_vader_single_copy_mechanism=none
  mpi_line=mpi
fi

for ((r = 1; r <= ${REPEATS:-1}; r++)); do
  rm -rf "$work/base" "$work/two" "$work/mpi" "$work/s0" "$work/s1" "$work/shards"
  timer base "$cli" run "$config" --input "$work/in" --output "$work/base" --threads 1 --quiet
  keep_best base
  timer two "$cli" run "$config" --input "$work/in" --output "$work/two" --threads 2 --quiet
  keep_best two
  if [ "$mpi_line" = mpi ]; then
    timer mpi mpirun --oversubscribe --bind-to none -n 2 "$cli" run "$config" \
      --input "$work/in" --output "$work/mpi" --threads 1 --quiet
    keep_best mpi
  fi
  t0=$(date +%s.%N)
  timer s0 "$cli" run "$config" --input "$work/in" --output "$work/s0" --threads 1 --quiet \
    --shard 0/2 &
  timer s1 "$cli" run "$config" --input "$work/in" --output "$work/s1" --threads 1 --quiet \
    --shard 1/2 &
  wait
  tm=$(date +%s.%N)
  "$cli" merge "$work/s0" "$work/s1" --output "$work/shards" >/dev/null 2>&1
  t1=$(date +%s.%N)
  # wall (shards + merge), peak RSS of each shard, the merge's own seconds
  echo "$(echo "$t1 - $t0" | bc) $(cut -d' ' -f2 "$work/s0.time")/$(cut -d' ' -f2 \
    "$work/s1.time") $(echo "$t1 - $tm" | bc)" >"$work/shards.time"
  keep_best shards
done

read -r base_s base_rss <"$work/base.best"
row() {  # row LABEL WALL_S RSS SAME
  printf '%-30s %8.2f %9.1f %8.2f %20s %5s\n' "$1" "$2" "$(echo "$n / $2" | bc -l)" \
    "$(echo "$base_s / $2" | bc -l)" "$3" "$4"
}
echo "$n inputs (64x64 cutouts), best of ${REPEATS:-1}, $(nproc) cores, outputs under" \
  "${TMPDIR:-/tmp}, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-30s %8s %9s %8s %20s %5s\n' variant wall_s files/s speedup peak_rss_KiB same
row "1 process x 1 thread (base)" "$base_s" "$base_rss" "-"
read -r two_s two_rss <"$work/two.best"
row "1 rank x 2 threads" "$two_s" "$two_rss" "$(same_as_base "$work/two")"
if [ "$mpi_line" = mpi ]; then
  read -r mpi_s mpi_rss <"$work/mpi.best"
  row "2 MPI ranks x 1 thread" "$mpi_s" "$mpi_rss (largest)" "$(same_as_base "$work/mpi")"
else
  printf '%-30s %s\n' "2 MPI ranks x 1 thread" "$mpi_line"
fi
read -r shards_s shards_rss merge_s <"$work/shards.best"
row "2 shards x 1 thread + merge" "$shards_s" "$shards_rss" "$(same_as_base "$work/shards")"
printf '  (of which astroflow merge: %.2f s)\n' "$merge_s"
