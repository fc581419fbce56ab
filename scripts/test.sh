#!/usr/bin/env bash
# Installs dependencies, configures a fresh build-test/ folder, builds with all cores and runs
# every test.   scripts/test.sh
# The test build has MPI on (the Mpi.* test runs mpirun -n 3); scripts/demo.sh keeps the default
# build without it, so both configurations are built.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --mpi
rm -rf build-test
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Release -DASTROFLOW_WITH_MPI=ON
cmake --build build-test -j"$(nproc)"
cd build-test
ctest --output-on-failure -j"$(nproc)"
