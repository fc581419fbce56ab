#!/usr/bin/env bash
# Chooses the detect stage's default `threshold` and `rescue_score` (the card's
# output.score_threshold and output.rescue_score) on validation fields with the C++ stage
# itself: train.py picks a threshold from its python decoding (network centres, no NMS, no tile
# merging, no isophotal rescue), while the stage moves centres to the footprint barycentre,
# merges tiles and rescues isophotal objects, which changes what matches within 2 px.
# Validation fields: va3 and va4 of fields.txt (2048x2048, the bench's simulator defaults, read
# from DATA) and 4096x4096 fields of the seeds VAL_SEEDS (8203 8206 8207 8210-8221;
# docs/detect.md, seed table), the bench's simulator defaults. The held-out bench fields (9001-9999) and the test
# fields play no part.
# For each THRESHOLD t and each RESCUE_DELTA d the script runs background -> detect with
# threshold t and rescue_score t - d (its other options at their defaults) on the fields and
# scores them with `astroflow evaluate detect` (2 px). Of the pairs whose summed purity p stays
# >= PURITY after one binomial standard error (p - sqrt(p (1 - p) / detections), so that the
# choice holds on fields it was not made on), the one matching most truth objects of S/N >= 5
# is written to the card beside MODEL (default models/detect/model.onnx) unless WRITE=0.
# Usage: models/detect/tune_threshold.sh [BUILD]
#   (DATA default BUILD/detect-data, as train.sh; THRESHOLDS, RESCUE_DELTAS, PURITY, THREADS,
#   WORK, WRITE, MODEL, VAL_SEEDS)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
af="$build/bin/astroflow"
data=${DATA:-$build/detect-data}
thresholds=${THRESHOLDS:-"0.55 0.575 0.6 0.625 0.65"}
deltas=${RESCUE_DELTAS:-"0 0.05 0.075 0.1"}
purity=${PURITY:-0.97}
threads=${THREADS:-2}
work=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/af-dettune.XXXXXX")}
model=${MODEL:-$root/models/detect/model.onnx}
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
card="$(dirname "$model")/model.yaml"
val_seeds=${VAL_SEEDS:-"8203 8206 8207 8210 8211 8212 8213 8214 8215 8216 8217 8218 8219 8220 8221"}
for f in "$data/val/va3.fits" "$data/val/va4.fits"; do
  [ -f "$f" ] || { echo "tune_threshold: $f missing (run models/detect/train.sh first)" >&2; exit 2; }
done
data=$(cd "$data" && pwd)  # the inputs are symbolic links to it
mkdir -p "$work/in"
fields="va3 va4"
for seed in $val_seeds; do
  if [ ! -f "$work/sim/v$seed.truth.fits" ]; then  # WORK reused: simulated already
    "$af" simulate field --size 4096 --seed "$seed" --output "$work/sim" --name "v$seed" > /dev/null
  fi
  ln -sf "$work/sim/v$seed.fits" "$work/in/v$seed.fits"
  fields="$fields v$seed"
done
for n in va3 va4; do ln -sf "$data/val/$n.fits" "$work/in/$n.fits"; done
cat > "$work/detect.yaml" <<YAML
input: {pattern: "*.fits", hdu: auto}
output: {catalog: [fits], images: [], quicklook: false}
stages:
  - {plugin: background, back_size: 64, back_filtersize: 3}
  - {plugin: detect, model: $model}
YAML
truth_of() {
  case "$1" in
    va*) echo "$data/val/$1.truth.fits" ;;
    *) echo "$work/sim/$1.truth.fits" ;;
  esac
}
runs=""
for t in $thresholds; do
  for d in $deltas; do
    r=$(/usr/bin/python3 -c "print(round($t - $d, 4))")
    out="$work/t-$t-r-$r"
    runs="$runs $t:$r"
    [ -f "$out/done" ] && continue  # WORK reused: scored already
    "$af" run "$work/detect.yaml" --input "$work/in" --output "$out" --threads "$threads" \
      --set "stages[1].threshold=$t" --set "stages[1].rescue_score=$r" --quiet
    for n in $fields; do
      "$af" evaluate detect --catalog "$out/$n.cat.fits" --truth "$(truth_of $n)" \
        --json "$out/$n.json" > /dev/null
    done
    touch "$out/done"
  done
done
echo "# models/detect/tune_threshold.sh: validation fields $fields (v: 4096^2; va: 2048^2)"
/usr/bin/python3 - "$work" "$purity" "$card" "${WRITE:-1}" "$root" "$fields" $runs <<'PY'
import json, math, os, sys
work, target, card, write = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
root, fields, runs = sys.argv[5], sys.argv[6].split(), [r.split(":") for r in sys.argv[7:]]
print("| threshold | rescue_score | detections | matched (2 px) | purity | purity - 1 s.e. "
      "| matched truth S/N >= 5 |")
print("|---|---|---|---|---|---|---|")
chosen, best = None, -1.0
for t, r in runs:
    det = match = m5 = n5 = 0
    for n in fields:
        j = json.load(open(os.path.join(work, f"t-{t}-r-{r}", f"{n}.json")))
        det += j["detections"]
        match += j["matched"]
        for b in j["snr_bins"]:
            if b["snr_min"] >= 5:
                m5 += b["truth_matched"]
                n5 += b["truth"]
    p = match / max(1, det)
    low = p - math.sqrt(p * (1 - p) / max(1, det))
    c5 = m5 / max(1, n5)
    print(f"| {t} | {r} | {det} | {match} | {100 * p:.2f}% | {100 * low:.2f}% | {100 * c5:.2f}% |")
    if low >= target and c5 > best:
        chosen, best = (t, r), c5
if chosen is None:
    chosen = runs[-1]
    print(f"no pair reaches {100 * target:.0f}% purity after one standard error: the last tried")
print(f"chosen: threshold {chosen[0]}, rescue_score {chosen[1]}")
if write:
    import yaml
    sys.path.insert(0, os.path.join(root, "models"))
    from common.card import write_card
    c = yaml.safe_load(open(card))
    c["output"]["score_threshold"] = float(chosen[0])
    c["output"]["rescue_score"] = float(chosen[1])
    write_card(card, c)
    print(f"wrote output.score_threshold: {chosen[0]}, output.rescue_score: {chosen[1]} to {card}")
PY
