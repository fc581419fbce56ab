#!/usr/bin/env bash
# Chooses the detect stage's default `threshold` (the card's output.score_threshold) on
# validation fields with the C++ stage itself: train.py picks a threshold from its python
# decoding (network centres, no NMS, no tile merging), while the stage moves centres to the
# footprint barycentre and merges tiles, which changes what matches within 2 px.
# Validation fields: va3 and va4 of fields.txt (2048x2048, the bench's simulator defaults, read
# from DATA) and the 4096x4096 field of seed 8203 (docs/detect.md, seed table). The held-out
# bench fields (9001-9999) and the test fields play no part.
# For each THRESHOLD the script runs background -> detect on the three fields and scores them with
# `astroflow evaluate detect` (2 px); the lowest threshold whose summed purity is >= PURITY is
# written to models/detect/model.yaml (output.score_threshold) unless WRITE=0.
# Usage: models/detect/tune_threshold.sh [BUILD]
#   (DATA default BUILD/detect-data, as train.sh; THRESHOLDS, PURITY, THREADS, WORK, WRITE)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
af="$build/bin/astroflow"
data=${DATA:-$build/detect-data}
thresholds=${THRESHOLDS:-"0.45 0.475 0.5 0.525 0.55 0.575 0.6 0.625 0.65 0.675 0.7"}
purity=${PURITY:-0.97}
threads=${THREADS:-2}
work=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/af-dettune.XXXXXX")}
card="$root/models/detect/model.yaml"
for f in "$data/val/va3.fits" "$data/val/va4.fits"; do
  [ -f "$f" ] || { echo "tune_threshold: $f missing (run models/detect/train.sh first)" >&2; exit 2; }
done
data=$(cd "$data" && pwd)  # the inputs are symbolic links to it
mkdir -p "$work/in"
if [ ! -f "$work/sim/v8203.truth.fits" ]; then  # WORK reused: simulated already
  "$af" simulate field --size 4096 --seed 8203 --output "$work/sim" --name v8203 > /dev/null
fi
ln -sf "$work/sim/v8203.fits" "$work/in/v8203.fits"
for n in va3 va4; do ln -sf "$data/val/$n.fits" "$work/in/$n.fits"; done
cat > "$work/detect.yaml" <<YAML
input: {pattern: "*.fits", hdu: auto}
output: {catalog: [fits], images: [], quicklook: false}
stages:
  - {plugin: background, back_size: 64, back_filtersize: 3}
  - {plugin: detect, model: $root/models/detect/model.onnx}
YAML
truth_of() {
  case "$1" in
    v8203) echo "$work/sim/v8203.truth.fits" ;;
    *) echo "$data/val/$1.truth.fits" ;;
  esac
}
for t in $thresholds; do
  out="$work/t-$t"
  "$af" run "$work/detect.yaml" --input "$work/in" --output "$out" --threads "$threads" \
    --set "stages[1].threshold=$t" --quiet
  for n in v8203 va3 va4; do
    "$af" evaluate detect --catalog "$out/$n.cat.fits" --truth "$(truth_of $n)" \
      --json "$out/$n.json" > /dev/null
  done
done
echo "# models/detect/tune_threshold.sh: validation fields v8203 (4096^2), va3, va4 (2048^2)"
/usr/bin/python3 - "$work" "$purity" "$card" "${WRITE:-1}" $thresholds <<'PY'
import json, os, sys
work, target, card, write, thresholds = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5:]
print("| threshold | detections | matched (2 px) | purity | matched truth S/N >= 5 |")
print("|---|---|---|---|---|")
chosen = None
for t in thresholds:
    det = match = m5 = n5 = 0
    for n in ("v8203", "va3", "va4"):
        j = json.load(open(os.path.join(work, f"t-{t}", f"{n}.json")))
        det += j["detections"]
        match += j["matched"]
        for b in j["snr_bins"]:
            if b["snr_min"] >= 5:
                m5 += b["truth_matched"]
                n5 += b["truth"]
    p = match / max(1, det)
    print(f"| {t} | {det} | {match} | {100 * p:.2f}% | {100 * m5 / max(1, n5):.2f}% |")
    if chosen is None and p >= target:
        chosen = t
if chosen is None:
    chosen = thresholds[-1]
print(f"chosen: {chosen} (the lowest with purity >= {100 * target:.0f}%, else the highest tried)")
if write:
    import yaml
    sys.path.insert(0, os.path.join(os.path.dirname(card), ".."))
    from common.card import write_card
    c = yaml.safe_load(open(card))
    c["output"]["score_threshold"] = float(chosen)
    write_card(card, c)
    print(f"wrote output.score_threshold: {chosen} to {card}")
PY
