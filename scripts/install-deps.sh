#!/usr/bin/env bash
# Installs every Debian 12 package astroflow needs to build, test and benchmark.
# Usage: scripts/install-deps.sh [--train] [--mpi]
#   --train  accepted for compatibility (python3-torch is always installed: the tests use it)
#   --mpi    also install OpenMPI (only needed for -DASTROFLOW_WITH_MPI=ON)
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git
  libcfitsio-dev wcslib-dev libtbb-dev libyaml-cpp-dev
  libopencv-dnn-dev libopencv-imgproc-dev libpng-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libssl-dev
  libgtest-dev libgmock-dev
  source-extractor
  fitsverify  # tests/integration/cli_run_test.cpp checks every FITS file a run writes with it
  time
  chromium  # tests/integration/report_test.cpp renders report.html headless
  # The ONNX tests export a tiny seeded model with torch at test time (models/common/make_tiny_model.py)
  python3-torch python3-numpy python3-yaml
)
for arg in "$@"; do
  case "$arg" in
    --train) ;;  # kept for old instructions: training needs nothing beyond the test set now
    --mpi) pkgs+=(libopenmpi-dev openmpi-bin) ;;
    *) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages already installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
