#!/usr/bin/env bash
# Chooses the denoise stage's `flux_restore_sigma` (plugins/denoise/README.md) on validation
# fields: two 4096x4096 fields at the depths of the validation fields va1/va2 (gain 2000 and
# 1000), seeds 6101 and 6102, which no training, validation or test field of any model uses
# (docs/detect.md lists the seeds). The held-out fields of bench/denoise_payoff.sh (9401-9499)
# play no part in the choice. For each sigma the script runs background -> denoise and
# `astroflow evaluate denoise`, and prints the aperture-flux bias per S/N bin and the noise
# reduction; the rule applied to the table is written in models/denoise/README.md.
# Usage: models/denoise/tune_flux_restore.sh [BUILD]   (SIGMAS="0 1 1.5 2 3 4", SIZE, THREADS)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
af="$build/bin/astroflow"
sigmas=${SIGMAS:-"0 1 1.5 2 3 4"}
size=${SIZE:-4096}
threads=${THREADS:-2}
work=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/af-fluxtune.XXXXXX")}
mkdir -p "$work"
cat > "$work/denoise.yaml" <<YAML
input: {pattern: "*.fits", hdu: auto}
output: {catalog: [fits], images: [denoised]}
stages:
  - {plugin: background, back_size: 64, back_filtersize: 3}
  - {plugin: denoise, model: $root/models/denoise/model.onnx, overlap: 32, batch: 8}
YAML
scale=$(( size * size / (2048 * 2048) )); [ "$scale" -ge 1 ] || scale=1
for pair in 6101:2000 6102:1000; do
  seed=${pair%%:*}
  gain=${pair##*:}
  d=$work/$seed
  if [ ! -f "$d/sim/field.truth.fits" ]; then
    "$af" simulate field --size "$size" --seed "$seed" --gain "$gain" --stars $((40 * scale)) \
      --cosmics $((100 * scale)) --hot-pixels $((20 * scale)) --output "$d/sim" \
      --name field > /dev/null
  fi
  mkdir -p "$d/in"
  ln -sf "$d/sim/field.fits" "$d/in/field.fits"
  for s in $sigmas; do
    [ -f "$d/sigma-$s.json" ] && continue  # WORK reused: evaluated already
    "$af" run "$work/denoise.yaml" --input "$d/in" --output "$d/out-$s" --threads "$threads" \
      --set "stages[1].flux_restore_sigma=$s" --quiet
    "$af" evaluate denoise --noisy "$d/sim/field.fits" --denoised "$d/out-$s/field.denoised.fits" \
      --truth "$d/sim/field.model.fits" --truth-table "$d/sim/field.truth.fits" \
      --json "$d/sigma-$s.json" > /dev/null
    rm -rf "$d/out-$s"
  done
done
echo "# models/denoise/tune_flux_restore.sh: SIZE=$size, validation seeds 6101 (gain 2000), 6102 (gain 1000)"
/usr/bin/python3 - "$work" $sigmas <<'PY'
import json, os, sys
work, sigmas = sys.argv[1], sys.argv[2:]
print("| flux_restore_sigma | seed | noise reduction | star FWHM change | bias S/N 5–10 | 10–20 | 20–50 | 50–100 | ≥100 | max abs bias S/N > 10 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s in sigmas:
    for seed in ("6101", "6102"):
        j = json.load(open(os.path.join(work, seed, f"sigma-{s}.json")))
        b = [x["median_bias_denoised"] for x in j["flux_bins"]]
        worst = max(abs(v) for x, v in zip(j["flux_bins"], b) if x["snr_min"] >= 10)
        print(f"| {s} | {seed} | {j['noise_reduction']:.2f}x | {100 * j['star_fwhm_change']:+.2f}% | "
              + " | ".join(f"{100 * v:+.2f}%" for v in b) + f" | {100 * worst:.2f}% |")
PY
