#!/usr/bin/env bash
# The mpi comm backend under mpirun: every collective checked on 1x2, 2x2, 1x3, 1x7 and 1x8, the
# row_tree_sum outputs compared bit for bit with the scalar reference (in comm_selftest) and with
# the threads backend (checksums, and the bytes each device counted as sent and received), a wrong
# world size refused, and a rank killed with -9 stopping the job within seconds (no hang).
# Needs COMM_SELFTEST (set by tests/CMakeLists.txt); exits 77 (skipped) without MPI.
set -u
if [ "${QMESH_HAVE_MPI:-OFF}" != "ON" ] || [ -z "${COMM_SELFTEST:-}" ]; then
  echo "skipped: built without MPI"; exit 77
fi
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
MPIRUN=(${MPIEXEC:-mpirun} --oversubscribe -x ASAN_OPTIONS=detect_leaks=0)  # Open MPI plugins leak by design
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
fail=0

for mesh in 1x2 2x2 1x3 1x7 1x8; do
  n=$(( ${mesh%x*} * ${mesh#*x} ))
  timeout 120 "${MPIRUN[@]}" -np $n "$COMM_SELFTEST" --backend mpi --mesh $mesh > "$WORK/mpi_$mesh.txt" 2>&1
  rc_mpi=$?
  timeout 120 "$COMM_SELFTEST" --backend threads --mesh $mesh > "$WORK/thr_$mesh.txt" 2>&1
  rc_thr=$?
  grep '^rank ' "$WORK/mpi_$mesh.txt"
  if [ $rc_mpi != 0 ] || [ $rc_thr != 0 ]; then
    echo "FAIL $mesh: mpi exit $rc_mpi, threads exit $rc_thr"; cat "$WORK/mpi_$mesh.txt" "$WORK/thr_$mesh.txt"; fail=1; continue
  fi
  if [ "$(grep -c '^rank .*: ok sums=' "$WORK/mpi_$mesh.txt")" != $n ]; then
    echo "FAIL $mesh: not every rank reported ok"; fail=1; continue
  fi
  if ! diff <(grep '^rank ' "$WORK/mpi_$mesh.txt" | sort) <(grep '^rank ' "$WORK/thr_$mesh.txt" | sort); then
    echo "FAIL $mesh: mpi and threads differ"; fail=1; continue
  fi
  echo "ok $mesh: mpi equals threads bit for bit"
  if [ "$(grep -c '^second comm: rank .* ok' "$WORK/mpi_$mesh.txt")" != $n ]; then
    echo "FAIL $mesh: a second comm in the same process (MPI finalised by the first?)"; fail=1; continue
  fi
  echo "ok $mesh: a second comm in the same process works"
  # with a deadline the tree sums go point to point and the rest non-blocking: the same lines
  timeout 120 "${MPIRUN[@]}" -np $n "$COMM_SELFTEST" --backend mpi --mesh $mesh --deadline 30 > "$WORK/mpid_$mesh.txt" 2>&1 ||
    { echo "FAIL $mesh --deadline: exit $?"; cat "$WORK/mpid_$mesh.txt"; fail=1; continue; }
  if ! diff <(grep '^rank ' "$WORK/mpid_$mesh.txt" | sort) <(grep '^rank ' "$WORK/thr_$mesh.txt" | sort); then
    echo "FAIL $mesh --deadline: mpi and threads differ"; fail=1; continue
  fi
  echo "ok $mesh --deadline 30 (polled paths): mpi equals threads bit for bit"
done

# timing, 1x2
timeout 120 "${MPIRUN[@]}" -np 2 "$COMM_SELFTEST" --backend mpi --mesh 1x2 --time 2>&1 | grep '^timing'

# a wrong world size is refused with both numbers
out=$(timeout 60 "${MPIRUN[@]}" -np 2 "$COMM_SELFTEST" --backend mpi --mesh 1x3 2>&1)
if echo "$out" | grep -q 'mesh 1x3 needs 3 MPI ranks.*world has 2'; then
  echo "ok: wrong world size refused"
else
  echo "FAIL: wrong world size: $out"; fail=1
fi

# kill -9 of one rank in a running 1x4 job: the job must stop within seconds
log="$WORK/kill.txt"
timeout 120 "${MPIRUN[@]}" -np 4 "$COMM_SELFTEST" --backend mpi --mesh 1x4 --sleep-in-loop > "$log" 2>&1 &
job=$!
for _ in $(seq 100); do
  [ "$(grep -c '^pid ' "$log")" = 4 ] && break
  sleep 0.1
done
victim=$(awk '$1 == "pid" && $2 == 2 {print $3}' "$log")
if [ -z "$victim" ]; then
  echo "FAIL: the loop did not start"; cat "$log"; kill $job; fail=1
else
  sleep 1
  t0=$(date +%s.%N)
  kill -9 "$victim"
  wait $job
  rc=$?
  t1=$(date +%s.%N)
  stop=$(echo "$t1 - $t0" | bc)
  echo "kill -9 of rank 2 (pid $victim): mpirun exited with $rc after $stop s"
  grep -E '^rank [0-9]+: |exited on signal|killed|terminated' "$log" | head -8
  if [ $rc = 124 ] || [ $rc = 0 ] || [ "$(echo "$stop > 30" | bc)" = 1 ]; then
    echo "FAIL: the job did not stop promptly after a rank died"; fail=1
  fi
fi
exit $fail
