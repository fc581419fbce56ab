#!/usr/bin/env bash
# configs/survey.yaml on real HST ACS images and on a simulated mini-survey of overlapping
# fields, with the run reports rendered in headless Chromium (issue 4 part 6, issue 7).
#
# Usage: bench/survey_real.sh [BUILD_DIR]        (default: build; needs astroflow_cli + plugins)
# Environment:
#   DATA     folder for the real images (default data/real; scripts/fetch-real-data.sh fills it)
#   OUT      output folder (default out/survey): OUT/hst, OUT/mini (runs), OUT/sex (SExtractor)
#   THREADS  (default 2)
#   SHOTS    folder for the screenshots (default docs): report-hst.png, report-survey.png
#   MINI_SEED, MINI_SIZE, MINI_TILES, MINI_OVERLAP  the mini-survey (default 9051, 3072x2048,
#            3x2, 256: six 1195x1152 tiles cut from one simulated sky, sharing its WCS frame)
#
# Steps:
#   1. scripts/fetch-real-data.sh DATA (Debian python-drizzle-testdata: j8bt06nyq_flt.fits,
#      input1.fits, input3.fits; ACS/HRC exposures of NGC 104, one 1024x1024 chip with
#      SCI/ERR/DQ, 0.0265"/pix).
#   2. astroflow run configs/survey.yaml on DATA, with the DQ plane: pixels flagged with a bit
#      outside 2920 = 8 + 32 + 64 + 256 + 512 + 2048 (aperture feature, CTE tail, warm pixel,
#      full-well and A-to-D saturation, flat-field reference) are blank, i.e. hot pixels, bad
#      detector pixels, fill, charge traps and flagged cosmic rays. Saturated star cores stay,
#      as in SExtractor's run (step 5), which has no mask; detect's rows on or next to them
#      (DQ 256 or 2048: saturation_mask_bits 2304) get FLAGS 4.
#   3. astroflow simulate field --tiles ... (one sky, overlapping tiles), then the same config.
#   4. report.html of each run -> PNG with headless Chromium.
#   5. SExtractor on j8bt06nyq_flt.fits[1] (the SCI extension, GAIN 1: the data are electrons),
#      and `astroflow evaluate detect` with SExtractor's catalog as the reference: how many
#      SExtractor sources with FLUX_AUTO/FLUXERR_AUTO > 20 the astroflow catalog recovers
#      within 2 px, and what each finds that the other does not. The same against SExtractor's
#      windowed positions (XWIN_IMAGE, YWIN_IMAGE: its more precise centroid; the isophotal
#      barycentre of an object deblended from diffuse light is pulled by that light), and by
#      kind of SExtractor source: on the image edge (FLAGS 8), sharp (FWHM_IMAGE < 1.5 px, below
#      the ~2.1 px ACS PSF: cosmic-ray like), diffuse (FWHM_IMAGE > 4 px: halo and cluster-light
#      fragments, large objects) and compact (the rest). Of those it misses, the ones it splits
#      (evaluate detect --truth-segmap: >= 2 astroflow rows on the source's pixels of
#      SExtractor's segmentation map add up to it in flux-weighted position and flux; in this
#      crowded field SExtractor often leaves two stars as one object centred between them).
#      Then the photometry of the recovered ones: median astroflow / SExtractor ratios of
#      FLUX_AUTO, FLUXERR_AUTO and their S/N.
#   6. The scale of step 5: how many of the same SExtractor sources SExtractor's algorithm finds
#      with a threshold that follows the local RMS (astroflow's sources stage, and SExtractor
#      itself with WEIGHT_TYPE BACKGROUND) and with SExtractor's default single global RMS
#      (sources with threshold_rms global).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
af="$build/bin/astroflow"
data=${DATA:-$repo/data/real}
out=${OUT:-$repo/out/survey}
threads=${THREADS:-2}
shots=${SHOTS:-$repo/docs}
mini_seed=${MINI_SEED:-9051}
mini_size=${MINI_SIZE:-3072x2048}
mini_tiles=${MINI_TILES:-3x2}
mini_overlap=${MINI_OVERLAP:-256}
[ -x "$af" ] || { echo "survey_real: $af not built" >&2; exit 2; }
# shellcheck source=bench/sextractor_run.sh
source "$here/sextractor_run.sh"

"$repo/scripts/fetch-real-data.sh" "$data"
rm -rf "$out/hst" "$out/mini" "$out/sex" "$out/mini-sim" "$out/sources-local" "$out/sources-global" \
  "$out/sex-local"
mkdir -p "$out" "$shots"

echo "== 1. configs/survey.yaml on the HST ACS images in $data"
/usr/bin/time -f "%e s wall, %M KB peak RSS" -o "$out/hst.time" \
  "$af" run "$repo/configs/survey.yaml" --input "$data" --output "$out/hst" \
  --set input.mask_ext=DQ --set input.mask_good_bits=2920 --set stages[1].saturation_mask_bits=2304 \
  --threads "$threads" --quiet || echo "exit code $? (2: some frames failed)"
cat "$out/hst.time"

echo "== 2. mini-survey: one simulated sky ($mini_size, seed $mini_seed) cut into $mini_tiles tiles, overlap $mini_overlap px"
"$af" simulate field --seed "$mini_seed" --size "$mini_size" --tiles "$mini_tiles" \
  --tile-overlap "$mini_overlap" --output "$out/mini-sim" >/dev/null
mkdir -p "$out/mini-sim/images"
for f in "$out"/mini-sim/field_r*c*.fits; do
  case "$f" in *.model.fits | *.truth*.fits | *.artifacts.fits) continue ;; esac
  ln -sf "$f" "$out/mini-sim/images/$(basename "$f")"
done
/usr/bin/time -f "%e s wall, %M KB peak RSS" -o "$out/mini.time" \
  "$af" run "$repo/configs/survey.yaml" --input "$out/mini-sim/images" --output "$out/mini" \
  --threads "$threads" --quiet || echo "exit code $? (2: some frames failed)"
cat "$out/mini.time"

echo "== 3. report screenshots"
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
  echo "chromium not installed (scripts/install-deps.sh): no screenshots"
else
  for run in hst:report-hst.png mini:report-survey.png; do
    profile=$(mktemp -d "${TMPDIR:-/tmp}/af-chromium.XXXXXX")
    "$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
      --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
      --virtual-time-budget=5000 --window-size=1200,2000 \
      --screenshot="$shots/${run#*:}" "file://$out/${run%%:*}/report.html" >/dev/null 2>&1 || true
    rm -rf "$profile"
    ls -l "$shots/${run#*:}"
  done
fi

echo "== 4. cross-image merging of the mini-survey, checked against the truth"
# Each row of the merged catalog is matched (2 px, nearest) to its tile's truth table; a
# duplicate (DUPLICATE_OF > 0) is right when it and the row it points to are the same truth ID.
/usr/bin/python3 - "$out/mini/catalog.csv" "$out/mini-sim" <<'PY'
import collections, csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
truth = {}
def truth_id(r):
    stem = r["FILE"].strip().rsplit("/", 1)[-1][:-len(".fits")]
    if stem not in truth:
        truth[stem] = [(float(t["X_IMAGE"]), float(t["Y_IMAGE"]), t["ID"])
                       for t in csv.DictReader(open(f"{sys.argv[2]}/{stem}.truth.csv"))]
    x, y = float(r["X_IMAGE"]), float(r["Y_IMAGE"])
    best = min(truth[stem], key=lambda t: (t[0] - x) ** 2 + (t[1] - y) ** 2)
    return best[2] if math.hypot(best[0] - x, best[1] - y) <= 2 else None
ids = [truth_id(r) for r in rows]
dup = [i for i, r in enumerate(rows) if r["DUPLICATE_OF"].strip() not in ("", "0")]
pairs = [(ids[i], ids[int(rows[i]["DUPLICATE_OF"]) - 1]) for i in dup]
right = sum(1 for a, b in pairs if a is not None and a == b)
no_truth = sum(1 for a, b in pairs if a is None and b is None)  # cosmic rays are in both tiles too
kept = [i for i, r in enumerate(rows) if r["DUPLICATE_OF"].strip() in ("", "0")]
kept_ids = collections.Counter(ids[i] for i in kept if ids[i] is not None)
print(f"rows {len(rows)}, N_OBS {dict(sorted(collections.Counter(r['N_OBS'] for r in rows).items()))}")
print(f"duplicates flagged {len(dup)}: same truth object as the kept row {right}, neither on a "
      f"truth object (artifacts, spurious) {no_truth}, other {len(dup) - right - no_truth}")
print(f"kept rows {len(kept)}; truth objects kept more than once {sum(1 for n in kept_ids.values() if n > 1)}")
PY

echo "== 5. SExtractor on j8bt06nyq_flt.fits[1] vs astroflow's catalog"
SEX_GAIN=1 SEX_SEEING=0.1 SEX_PARAMS_EXTRA="XWIN_IMAGE YWIN_IMAGE FWHM_IMAGE" \
  sex_run "$data/j8bt06nyq_flt.fits[1]" "$out/sex" ASCII_HEAD 1
# SExtractor ASCII_HEAD -> CSV reference tables: every source, and FLUX_AUTO/FLUXERR_AUTO > 20.
/usr/bin/python3 - "$out/sex/sex.cat" "$out/sex" <<'PY'
import sys
path, outdir = sys.argv[1], sys.argv[2]
names, rows = {}, []
for line in open(path):
    if line.startswith('#'):
        p = line[1:].split()
        names[int(p[0]) - 1] = p[1]
    elif line.strip():
        rows.append(line.split())
col = {n: i for i, n in names.items()}
def kind(r):
    fwhm = float(r[col["FWHM_IMAGE"]])
    if int(r[col["FLAGS"]]) & 8:
        return "edge"
    return "sharp" if fwhm < 1.5 else ("diffuse" if fwhm > 4.0 else "compact")
def write(name, keep, unblended_only=False, pos=("X_IMAGE", "Y_IMAGE"), only=None):
    with open(f"{outdir}/{name}", "w") as f:
        f.write("ID,X_IMAGE,Y_IMAGE,MAG,SNR,FLUX_AUTO,FLUXERR_AUTO,CLASS_STAR\n")
        for r in rows:
            flux, err = float(r[col["FLUX_AUTO"]]), float(r[col["FLUXERR_AUTO"]])
            snr = flux / err if err > 0 else 0.0
            # FLAGS bit 2: the object was deblended from a larger detection (in this crowded
            # field mostly stars in the halos of bright, saturated stars).
            if not keep(snr) or (unblended_only and int(r[col["FLAGS"]]) & 2):
                continue
            if only is not None and kind(r) != only:
                continue
            f.write(",".join([r[col["NUMBER"]], r[col[pos[0]]], r[col[pos[1]]],
                              r[col["MAG_AUTO"]], f"{snr:.3f}", r[col["FLUX_AUTO"]],
                              r[col["FLUXERR_AUTO"]], r[col["CLASS_STAR"]]]) + "\n")
write("sex_all.csv", lambda s: True)
write("sex_snr20.csv", lambda s: s > 20)
write("sex_snr20_unblended.csv", lambda s: s > 20, unblended_only=True)
write("sex_snr20_win.csv", lambda s: s > 20, pos=("XWIN_IMAGE", "YWIN_IMAGE"))
for k in ("edge", "sharp", "diffuse", "compact"):
    write(f"sex_snr20_{k}.csv", lambda s: s > 20, only=k)
print(f"SExtractor: {len(rows)} sources")
PY
afcat=$(ls "$out"/hst/j8bt06nyq_flt*.cat.fits | head -n 1)
echo "astroflow catalog: $afcat"
"$af" evaluate detect --catalog "$afcat" --truth "$out/sex/sex_snr20.csv" --artifacts none \
  --truth-segmap "$out/sex/sex.seg.fits" --json "$out/sex/recovered_snr20.json" \
  > "$out/sex/recovered_snr20.txt"
"$af" evaluate detect --catalog "$afcat" --truth "$out/sex/sex_snr20_unblended.csv" \
  --artifacts none --json "$out/sex/recovered_snr20_unblended.json" > /dev/null
for ref in win edge sharp diffuse compact; do
  "$af" evaluate detect --catalog "$afcat" --truth "$out/sex/sex_snr20_$ref.csv" --artifacts none \
    --json "$out/sex/recovered_snr20_$ref.json" > /dev/null
done
"$af" evaluate detect --catalog "$afcat" --truth "$out/sex/sex_all.csv" --artifacts none \
  --json "$out/sex/vs_all.json" > "$out/sex/vs_all.txt"
/usr/bin/python3 - "$out/sex" <<'PY'
import json, sys
d = sys.argv[1]
a = json.load(open(f"{d}/recovered_snr20.json"))
b = json.load(open(f"{d}/vs_all.json"))
print("| quantity | value |")
print("|---|---|")
print(f"| SExtractor sources with FLUX_AUTO/FLUXERR_AUTO > 20 | {a['truth_rows']} |")
print(f"| of them recovered by astroflow within 2 px | {a['matched']} ({100 * a['matched'] / max(1, a['truth_rows']):.1f}%) |")
s = a["split"]
print(f"| of the others, split by astroflow: >= 2 rows on the source's pixels of SExtractor's segmentation map, their FLUX_AUTO-weighted centre within 2 px and summed FLUX_AUTO within x2 of SExtractor's | {s['resolved']} of {s['unmatched']} (components: {', '.join(f'{n}: {c}' for n, c in enumerate(s['components']) if c)}) |")
print(f"| recovered within 2 px or split | {s['matched_or_split']} ({100 * s['matched_or_split'] / max(1, a['truth_rows']):.1f}%) |")
u = json.load(open(f"{d}/recovered_snr20_unblended.json"))
print(f"| of them not deblended by SExtractor (FLAGS bit 2 clear) | {u['truth_rows']} |")
print(f"| of those recovered by astroflow within 2 px | {u['matched']} ({100 * u['matched'] / max(1, u['truth_rows']):.1f}%) |")
w = json.load(open(f"{d}/recovered_snr20_win.json"))
print(f"| S/N > 20 recovered within 2 px of SExtractor's XWIN/YWIN_IMAGE | {w['matched']} ({100 * w['matched'] / max(1, w['truth_rows']):.1f}%) |")
for k, what in (("compact", "compact (FWHM_IMAGE 1.5-4 px)"), ("diffuse", "diffuse (FWHM_IMAGE > 4 px)"),
                ("sharp", "sharp (FWHM_IMAGE < 1.5 px)"), ("edge", "on the image edge (FLAGS 8)")):
    e = json.load(open(f"{d}/recovered_snr20_{k}.json"))
    print(f"| S/N > 20, {what}: recovered | {e['matched']} of {e['truth_rows']} ({100 * e['matched'] / max(1, e['truth_rows']):.1f}%) |")
print(f"| astroflow sources | {b['detections']} |")
print(f"| SExtractor sources (all) | {b['truth_rows']} |")
print(f"| matched within 2 px (one-to-one) | {b['matched']} |")
print(f"| found by astroflow only | {b['spurious']} |")
print(f"| found by SExtractor only | {b['truth_rows'] - b['matched']} |")
print(f"| median offset of matches | {b['median_offset_pix']:.3f} px |")
PY
# Photometry of the same sources: FLUX_AUTO, FLUXERR_AUTO and their ratio, astroflow's nearest
# row within 2 px against SExtractor's (GAIN 1 on both sides: astroflow reads BUNIT ELECTRONS).
/usr/bin/python3 - "${afcat%.fits}.csv" "$out/sex/sex_snr20.csv" <<'PY'
import csv, math, sys
af_path, sex_path = sys.argv[1], sys.argv[2]
af = list(csv.DictReader(open(af_path)))
sx = list(csv.DictReader(open(sex_path)))
cell = {}
for i, r in enumerate(af):
    x, y = float(r["X_IMAGE"]), float(r["Y_IMAGE"])
    cell.setdefault((int(x // 4), int(y // 4)), []).append((x, y, i))
fr, er, sr = [], [], []
for s in sx:
    x, y = float(s["X_IMAGE"]), float(s["Y_IMAGE"])
    best, bd = None, 2.0
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for (ax, ay, i) in cell.get((int(x // 4) + dx, int(y // 4) + dy), []):
                d = math.hypot(ax - x, ay - y)
                if d < bd:
                    best, bd = i, d
    if best is None:
        continue
    a = af[best]
    f, e = float(a["FLUX_AUTO"]), float(a["FLUXERR_AUTO"])
    sf, se = float(s["FLUX_AUTO"]), float(s["FLUXERR_AUTO"])
    if e > 0 and se > 0 and sf > 0:
        fr.append(f / sf); er.append(e / se); sr.append((f / e) / (sf / se))
def med(v):
    v = sorted(v); return v[len(v) // 2] if v else float("nan")
print(f"| matched S/N > 20 sources: median FLUX_AUTO astroflow / SExtractor | {med(fr):.3f} (of {len(fr)}) |")
print(f"| matched S/N > 20 sources: median FLUXERR_AUTO astroflow / SExtractor | {med(er):.3f} |")
print(f"| matched S/N > 20 sources: median S/N (FLUX_AUTO / FLUXERR_AUTO) astroflow / SExtractor | {med(sr):.3f} |")
PY
echo "astroflow's recovery of the SExtractor S/N > 20 sources per SExtractor MAG_AUTO bin (zero point 25, counts in electrons):"
sed -n '/mag bin/,/^$/p' "$out/sex/recovered_snr20.txt"

echo "== 6. how well SExtractor's algorithm agrees with SExtractor here (the scale of step 5)"
# SExtractor without a weight map thresholds at DETECT_THRESH x one global RMS; astroflow's
# background -> sources follows the rms plane (threshold_rms local, as SExtractor's WEIGHT_TYPE
# BACKGROUND) unless told threshold_rms global. Each catalog is scored like detect in step 5:
# the SExtractor sources with FLUX_AUTO/FLUXERR_AUTO > 20 it has within 2 px.
cat > "$out/sources.yaml" <<'YAML'
input: {pattern: "j8bt06nyq_flt.fits", hdu: auto}
output: {catalog: [fits]}
stages:
  - {plugin: background, back_size: 64, back_filtersize: 3}
  - {plugin: sources, threshold: 1.5, min_area: 5, deblend_nthresh: 32, deblend_mincont: 0.005}
YAML
for mode in local global; do
  "$af" run "$out/sources.yaml" --input "$data" --output "$out/sources-$mode" --quiet \
    --set "stages[1].threshold_rms=$mode" --threads "$threads"
done
SEX_GAIN=1 SEX_SEEING=0.1 SEX_EXTRA="-WEIGHT_TYPE BACKGROUND" \
  sex_run "$data/j8bt06nyq_flt.fits[1]" "$out/sex-local" ASCII_HEAD 1
/usr/bin/python3 - "$out/sex-local/sex.cat" "$out/sex-local/sex.csv" <<'PY'
import sys
names, rows = {}, []
for line in open(sys.argv[1]):
    if line.startswith('#'):
        p = line[1:].split()
        names[p[1]] = int(p[0]) - 1
    elif line.strip():
        rows.append(line.split())
with open(sys.argv[2], "w") as f:
    f.write("NUMBER,X_IMAGE,Y_IMAGE,FLUX_AUTO\n")
    for r in rows:
        f.write(",".join(r[names[c]] for c in ("NUMBER", "X_IMAGE", "Y_IMAGE", "FLUX_AUTO")) + "\n")
PY
echo "| catalog | S/N > 20 SExtractor sources within 2 px | within 2 px or split (step 5) | compact | diffuse | rows |"
echo "|---|---|---|---|---|---|"
for entry in "detect (configs/survey.yaml, step 5):$afcat" \
  "astroflow sources, threshold_rms local:$(ls "$out"/sources-local/*.cat.fits | head -n 1)" \
  "astroflow sources, threshold_rms global:$(ls "$out"/sources-global/*.cat.fits | head -n 1)" \
  "SExtractor, WEIGHT_TYPE BACKGROUND:$out/sex-local/sex.csv"; do
  name=${entry%%:*}
  cat=${entry#*:}
  for ref in snr20 snr20_compact snr20_diffuse; do
    "$af" evaluate detect --catalog "$cat" --truth "$out/sex/sex_$ref.csv" --artifacts none \
      --truth-segmap "$out/sex/sex.seg.fits" --json "$out/sex/agree_$ref.json" > /dev/null
  done
  /usr/bin/python3 - "$out/sex" "$name" <<'PY'
import json, sys
d, name = sys.argv[1], sys.argv[2]
a = [json.load(open(f"{d}/agree_{r}.json")) for r in ("snr20", "snr20_compact", "snr20_diffuse")]
cells = [f"{x['matched']} of {x['truth_rows']} ({100 * x['matched'] / max(1, x['truth_rows']):.1f}%)" for x in a]
ms = a[0]["split"]["matched_or_split"]
split = f"{ms} ({100 * ms / max(1, a[0]['truth_rows']):.1f}%)"
print(f"| {name} | {cells[0]} | {split} | {cells[1]} | {cells[2]} | {a[0]['detections']} |")
PY
done
