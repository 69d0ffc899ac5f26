#!/usr/bin/env bash
# Builds qmesh and runs the whole test suite twice: optimised, then under AddressSanitizer and
# UndefinedBehaviorSanitizer. Usage: scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
t0=$(date +%s)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$jobs"
(cd build && ctest -j "$jobs" --output-on-failure)
if [ "${1:-}" != "--no-sanitize" ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQMESH_SANITIZE=ON > /dev/null
  cmake --build build-asan -j "$jobs"
  # (MPI tests turn leak checks off inside mpirun: Open MPI plugins leak by design.)
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -j "$jobs" --output-on-failure)
fi
echo "test suite wall time: $(( $(date +%s) - t0 )) s"
