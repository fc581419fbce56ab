#!/usr/bin/env bash
# Retrains models/classify-survey from scratch: models/classify's recipe (models/classify/train.sh)
# with the galaxy shapes of `astroflow simulate field` (disks of Sersic n 0.5-2.5, spheroids of
# b/a 0.2-1). Every other variable of that script (BUILD, DATA, THREADS, ...) passes through.
# Usage: models/classify-survey/train.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export MORPH="--disk-sersic-min 0.5 --disk-sersic-max 2.5 --spheroid-axis-ratio-min 0.2"
export VERSION=1.1.0
export OUT=models/classify-survey
exec models/classify/train.sh
