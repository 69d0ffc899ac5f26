#!/usr/bin/env bash
# Fuzzes every libFuzzer harness of tests/fuzz/ for SECONDS each (default 60) and prints, per harness,
# the executions, the coverage (cov: and ft: from libFuzzer's final stats) and the crashes; a crashing
# input is kept under <build>/tests/fuzz/long_<harness>/crashes/ (reproduce: <harness binary> <input>).
# usage: scripts/fuzz.sh [SECONDS]
# env: QMESH_FUZZ_BUILD, the build folder (default build-fuzz; configured here when new).
# Exit status: 0 when no harness found anything, 1 otherwise or when no harness could be built.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
build=${QMESH_FUZZ_BUILD:-$root/build-fuzz}
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
else
  cmake "$build" >/dev/null || exit 1 # picks up harnesses added since
fi
cmake --build "$build" --target fuzz || exit 1
list=$build/tests/fuzz/fuzz_targets.txt
if [ ! -s "$list" ]; then
  echo "fuzz: no harness was built: no clang with libFuzzer (scripts/setup.sh installs clang)"
  exit 1
fi
status=0
while read -r name exe seeds; do
  bash "$root/tests/fuzz/run_fuzz.sh" "$exe" "$seeds" "$build/tests/fuzz/long_$name" "$secs" </dev/null || status=1
done <"$list"
exit $status
