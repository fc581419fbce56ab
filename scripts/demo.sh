#!/usr/bin/env bash
# The astroflow demo: install dependencies, build, simulate a field and cutouts, run the demo
# pipeline on them (background, sources, then the morphology CNN on each source).
#   scripts/demo.sh
# Writes: build/ (the build), sample/ (input images), out/truth/ (truth tables of the
# simulations), out/demo/ (pipeline outputs).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
AF=build/bin/astroflow

# Simulated images go to sample/; their truth tables (FITS tables, which the pipeline would
# report as "no image") go to out/truth/.
rm -rf sample out/truth out/demo
mkdir -p sample/cutouts out/truth
"$AF" simulate field --seed 42 --size 2048 --output out/truth --name field > /dev/null
mv out/truth/field.fits sample/field.fits
"$AF" simulate cutouts --seed 7 --n 200 --size 64 --output out/truth/cutouts > /dev/null
mv out/truth/cutouts/stamp_*.fits sample/cutouts/

"$AF" run configs/demo.yaml --input sample/ --output out/demo

rm -rf out/denoise
"$AF" run configs/denoise.yaml --input sample/field.fits --output out/denoise

# The survey pipeline (configs/survey.yaml) on a mini-survey: one simulated sky cut into 2x2
# overlapping tiles that share its WCS frame; the merged catalog flags cross-image duplicates.
rm -rf out/survey-sim out/survey
"$AF" simulate field --seed 43 --size 2048 --tiles 2x2 --tile-overlap 256 \
  --output out/survey-sim > /dev/null
mkdir -p sample/survey
for f in out/survey-sim/field_r?c?.fits; do mv "$f" sample/survey/; done
"$AF" run configs/survey.yaml --input sample/survey --output out/survey

cat <<TXT

Demo done.
  inputs:          sample/field.fits (2048x2048), sample/cutouts/ (200 stamps)
  truth tables:    out/truth/field.truth.csv, out/truth/cutouts/labels.csv
  merged catalog:  out/demo/catalog.fits, out/demo/catalog.csv
                   (CLASS, CLASS_ID, P_<CLASS>: morphology of each source, models/classify)
  per image:       out/demo/field.cat.fits, field.segmap.fits, field.background.fits, ...
  run summary:     out/demo/summary.json
  denoising:       out/denoise/field.denoised.fits (configs/denoise.yaml; sources ran on it),
                   out/denoise/quicklook/field.denoised.png (raw | denoised), report.html
  survey run:      out/survey/report.html (configs/survey.yaml on sample/survey/, 4 overlapping
                   tiles; truth in out/survey-sim/); real HST data: bench/survey_real.sh
Open out/demo/field.segmap.fits next to sample/field.fits in DS9, or read the catalog with
astropy.table.Table.read("out/demo/catalog.fits").
TXT
