#!/usr/bin/env bash
# Issue 5 acceptance on held-out simulated fields, in one run:
#   * `astroflow evaluate denoise` (noise reduction, PSNR/SSIM, aperture-flux bias per S/N bin,
#     star FWHM change, tile seams) on fields large enough for a few hundred sources per bin;
#   * the science payoff: `sources` (matched filter) and `detect` (CNN) on the raw and on the
#     denoised image, each swept over its detection threshold and scored by
#     `astroflow evaluate detect` against the truth; the table compares faint-end completeness
#     at equal purity (the best completeness any swept threshold reaches at or above a purity);
#   * the share of stars with S/N > 5 still detected on the denoised image.
#
# Usage: bench/denoise_payoff.sh [BUILD_DIR]      (default: build)
# Environment:
#   FIELDS   seed:gain pairs (default "9401:2000 9402:700": the depths of the denoise test
#            fields te1/te2). Seeds 9401-9499 are reserved for this bench; no model trains on
#            them (docs/denoise.md).
#   SIZE     field side in pixels (default 4096)
#   THREADS  (default 2)
#   FLUX_RESTORE  the denoise stage's flux_restore_sigma (default 1, as configs/denoise.yaml)
#   SRC_THRESHOLDS  sources thresholds, in units of the image's own background rms
#   DET_THRESHOLDS  detect heatmap-score thresholds
#   KEEP=1   keep the work folder;  OUT=DIR  also copy every JSON report there
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
af="$build/bin/astroflow"
fields=${FIELDS:-"9401:2000 9402:700"}
size=${SIZE:-4096}
threads=${THREADS:-2}
flux_restore=${FLUX_RESTORE:-1}
src_thresholds=${SRC_THRESHOLDS:-"1.0 1.25 1.5 2 2.5 3 4 5 7"}
det_thresholds=${DET_THRESHOLDS:-"0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8"}
[ -x "$af" ] || { echo "denoise_payoff: $af not built" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/af-denpay.XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; else echo "keeping $work" >&2; fi

# The denoise pass writes <stem>.denoised.fits (input header and WCS); the detection passes
# read raw and denoised images alike, each with its own background and rms maps.
cat > "$work/denoise.yaml" <<YAML
input: {pattern: "*.fits", hdu: auto}
output: {catalog: [fits], images: [denoised]}
stages:
  - {plugin: background, back_size: 64, back_filtersize: 3}
  - {plugin: denoise, model: $root/models/denoise/model.onnx, overlap: 32, batch: 8,
     flux_restore_sigma: $flux_restore}
YAML
cat > "$work/sources.yaml" <<'YAML'
input: {pattern: "*.fits", hdu: auto}
output: {catalog: [fits]}
stages:
  - {plugin: background, back_size: 64, back_filtersize: 3}
  - {plugin: sources, threshold: 1.5, min_area: 5}
YAML
cat > "$work/detect.yaml" <<YAML
input: {pattern: "*.fits", hdu: auto}
output: {catalog: [fits]}
run: {tile_size: 2048, tile_overlap: 64}
stages:
  - {plugin: background, back_size: 64, back_filtersize: 3}
  - {plugin: detect, model: $root/models/detect/model.onnx, threshold: 0.5}
YAML

for pair in $fields; do
  seed=${pair%%:*}
  gain=${pair##*:}
  d=$work/$seed
  mkdir -p "$d/raw" "$d/den"
  # Stars, cosmic rays and hot pixels scale with the area (the simulator's defaults are for
  # 2048 x 2048).
  scale=$(( size * size / (2048 * 2048) )); [ "$scale" -ge 1 ] || scale=1
  "$af" simulate field --size "$size" --seed "$seed" --gain "$gain" --stars $((40 * scale)) \
    --cosmics $((100 * scale)) --hot-pixels $((20 * scale)) --output "$d/sim" \
    --name field >/dev/null
  ln -s "$d/sim/field.fits" "$d/raw/field.fits"
  /usr/bin/time -f "%e %M" -o "$d/denoise.time" "$af" run "$work/denoise.yaml" \
    --input "$d/raw" --output "$d/denoised" --threads "$threads" --quiet
  ln -s "$d/denoised/field.denoised.fits" "$d/den/field.fits"
  "$af" evaluate denoise --noisy "$d/sim/field.fits" --denoised "$d/denoised/field.denoised.fits" \
    --truth "$d/sim/field.model.fits" --truth-table "$d/sim/field.truth.fits" \
    --json "$d/denoise.json" > "$d/denoise.txt"
  for img in raw den; do
    for tool in sources detect; do
      thresholds=$src_thresholds
      [ "$tool" = detect ] && thresholds=$det_thresholds
      for t in $thresholds; do
        o=$d/out-$img-$tool-$t
        "$af" run "$work/$tool.yaml" --input "$d/$img" --output "$o" --threads "$threads" \
          --set stages[1].threshold="$t" --quiet
        "$af" evaluate detect --catalog "$o/field.cat.fits" --truth "$d/sim/field.truth.fits" \
          --json "$d/$img.$tool.$t.json" > /dev/null
        rm -rf "$o"
      done
    done
  done
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/$seed"
    cp "$d"/*.json "$d"/denoise.txt "$d"/denoise.time "$OUT/$seed/"
  fi
done

echo "# bench/denoise_payoff.sh: SIZE=$size FIELDS=\"$fields\" THREADS=$threads FLUX_RESTORE=$flux_restore"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$work" "$size" "$src_thresholds" "$det_thresholds" $fields <<'PY'
import json, os, sys
work, size, src_t, det_t, fields = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5:]
seeds = [f.split(":")[0] for f in fields]
def load(seed, name):
    return json.load(open(os.path.join(work, seed, name)))
def pct(v): return "-" if v is None else f"{100 * v:.1f}%"

print("\n## Denoising against the noiseless truth (evaluate denoise)\n")
print("| seed:gain | noise reduction | PSNR gain | SSIM noisy → denoised | star FWHM change (stars) | seam jump (control) | whole-line step (median) | denoise Mpix/s | peak RSS |")
print("|---|---|---|---|---|---|---|---|---|")
for f in fields:
    seed = f.split(":")[0]
    j = load(seed, "denoise.json")
    wall, rss = open(os.path.join(work, seed, "denoise.time")).read().split()[-2:]
    print(f"| {f} | {j['noise_reduction']:.2f}x | {j['psnr_gain_db']:+.2f} dB | {j['ssim_noisy']:.3f} → {j['ssim_denoised']:.3f} | "
          f"{100 * j['star_fwhm_change']:+.2f}% ({j['stars_measured']}) | {j['max_seam_jump_sigma']:.3f}σ ({j['max_control_jump_sigma']:.3f}σ) | "
          f"{j['max_line_step_sigma']:.3f}σ ({j['median_line_step_sigma']:.3f}σ) | "
          f"{size * size / 1e6 / float(wall):.2f} (whole run, background included) | {int(rss) / 1024:.0f} MB |")
print("\n## Aperture-flux bias against the truth, per truth S/N bin (median of F/F_true - 1; scatter 1.4826 MAD)\n")
print("| seed | S/N bin | N | bias noisy | bias denoised | scatter noisy | scatter denoised |")
print("|---|---|---|---|---|---|---|")
for seed in seeds:
    for b in load(seed, "denoise.json")["flux_bins"]:
        hi = "∞" if b["snr_max"] is None else f"{b['snr_max']:g}"
        print(f"| {seed} | {b['snr_min']:g}–{hi} | {b['count']} | {100 * b['median_bias_noisy']:+.2f}% | "
              f"{100 * b['median_bias_denoised']:+.2f}% | {100 * b['scatter_noisy']:.2f}% | {100 * b['scatter_denoised']:.2f}% |")

# Pooled over the fields: the median of every source's fractional error in the bin (one
# field's few hundred sources leave its median uncertain by about 1.25 x scatter / sqrt(N)).
print("\n## Aperture-flux bias, all fields pooled\n")
print("| S/N bin | N | bias noisy | bias denoised | ~standard error |")
print("|---|---|---|---|---|")
samples = [s for seed in seeds for s in load(seed, "denoise.json")["flux_samples"]]
edges = [b["snr_min"] for b in load(seeds[0], "denoise.json")["flux_bins"]]
def median(v):
    v = sorted(v)
    return None if not v else (v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2]))
for k, lo in enumerate(edges):
    hi = edges[k + 1] if k + 1 < len(edges) else float("inf")
    en = [s[2] for s in samples if lo <= s[1] < hi and s[2] is not None]
    ed = [s[3] for s in samples if lo <= s[1] < hi and s[3] is not None]
    if not ed:
        continue
    m = median(ed)
    mad = 1.4826 * median([abs(v - m) for v in ed])
    print(f"| {lo:g}–{'∞' if hi == float('inf') else f'{hi:g}'} | {len(ed)} | {100 * median(en):+.2f}% | "
          f"{100 * m:+.2f}% | {100 * 1.25 * mad / len(ed) ** 0.5:.2f}% |")

def summary(seed, img, tool, t):
    j = load(seed, f"{img}.{tool}.{t}.json")
    bins = {b["snr_min"]: b for b in j["snr_bins"]}
    def comp(lo, hi=None, stars=False):
        k, m = ("stars", "stars_matched") if stars else ("truth", "truth_matched")
        sel = [b for s, b in bins.items() if s >= lo and (hi is None or s < hi)]
        n = sum(b[k] for b in sel)
        return (sum(b[m] for b in sel) / n) if n else None, n
    # Cosmic rays and hot pixels are in the image but not in the truth: the same on raw and
    # denoised images, they cap the plain purity. "purity_noise" leaves out detections sitting on
    # one (the simulator's artifact table), so it counts only false detections of noise.
    real = j["detections"] - (j["spurious_on_artifacts"] or 0)
    return {"purity": j["purity"], "purity_noise": j["matched"] / real if real else None,
            "on_artifacts": j["spurious_on_artifacts"], "det": j["detections"], "c3_5": comp(3, 5), "c5_10": comp(5, 10),
            "c3_10": comp(3, 10), "stars5": comp(5, None, True)}

for tool, ts in (("sources", src_t), ("detect", det_t)):
    print(f"\n## `{tool}` on raw and denoised images: threshold sweep\n")
    print("| seed | image | threshold | N_det | on CR / hot pixel | purity | purity without those | completeness S/N 3–5 | S/N 5–10 | stars S/N > 5 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in seeds:
        for img in ("raw", "den"):
            for t in ts:
                s = summary(seed, img, tool, t)
                print(f"| {seed} | {'raw' if img == 'raw' else 'denoised'} | {t} | {s['det']} | {s['on_artifacts']} | "
                      f"{pct(s['purity'])} | {pct(s['purity_noise'])} | "
                      f"{pct(s['c3_5'][0])} of {s['c3_5'][1]} | {pct(s['c5_10'][0])} of {s['c5_10'][1]} | "
                      f"{pct(s['stars5'][0])} of {s['stars5'][1]} |")
    for key, what in (("purity", "purity"), ("purity_noise", "purity without detections on cosmic rays and hot pixels")):
        print(f"\n### `{tool}`: faint-end completeness (truth S/N 3–10) at equal {what}\n")
        print("The best completeness any swept threshold reaches with the purity at or above the target.\n")
        print("| seed | purity ≥ | raw: completeness (threshold) | denoised: completeness (threshold) | change (pp) |")
        print("|---|---|---|---|---|")
        for seed in seeds:
            for target in (0.90, 0.95, 0.97):
                best = {}
                for img in ("raw", "den"):
                    rows = [(summary(seed, img, tool, t), t) for t in ts]
                    ok = [(s["c3_10"][0] or 0.0, t) for s, t in rows if s[key] is not None and s[key] >= target]
                    best[img] = max(ok) if ok else None
                r, d = best["raw"], best["den"]
                cell = lambda b: "not reached" if b is None else f"{100 * b[0]:.1f}% ({b[1]})"
                diff = "-" if r is None or d is None else f"{100 * (d[0] - r[0]):+.1f}"
                print(f"| {seed} | {100 * target:.0f}% | {cell(r)} | {cell(d)} | {diff} |")
PY
