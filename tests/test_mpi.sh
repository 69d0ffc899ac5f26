#!/usr/bin/env bash
# qmesh under mpirun (--backend mpi, one rank per device): byte-identical to the threads backend
# on 1x2, 2x2 and 1x8; output printed once; a wrong world size refused; a killed rank stops the job.
set -euo pipefail
: "${QMESH:?}" "${SRC:?}" "${WORK:?}"
if [ "${QMESH_HAVE_MPI:-OFF}" != "ON" ]; then echo "skipped: built without MPI"; exit 77; fi
rm -rf "$WORK"; mkdir -p "$WORK"
MPIRUN=(mpirun --oversubscribe -x ASAN_OPTIONS=detect_leaks=0)  # Open MPI plugins leak by design
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
fail() { echo "FAIL: $*"; exit 1; }
F="$SRC/tests/fixtures/h28kv4_bf16"
ids=$(sed -n 3p "$F/ids.txt")
"$QMESH" logits -m "$F" --ids "$ids" --out "$WORK/threads.npy"
for m in 1x2 2x2 1x8; do
  n=$(( ${m%x*} * ${m#*x} ))
  timeout 120 "${MPIRUN[@]}" -np $n "$QMESH" logits -m "$F" --ids "$ids" --out "$WORK/mpi_$m.npy" --mesh $m --backend mpi
  cmp -s "$WORK/threads.npy" "$WORK/mpi_$m.npy" || fail "mpi $m logits differ from threads"
  echo "ok mpi $m logits identical to threads"
done
"$QMESH" random-model --preset tiny --out "$WORK/tiny" --seed 3 2>/dev/null
"$QMESH" generate -m "$WORK/tiny" -p "One, two, three," -n 16 > "$WORK/gen_threads.txt" 2>/dev/null
timeout 120 "${MPIRUN[@]}" -np 4 "$QMESH" generate -m "$WORK/tiny" -p "One, two, three," -n 16 --mesh 2x2 \
  --backend mpi > "$WORK/gen_mpi.txt" 2>/dev/null
cmp -s "$WORK/gen_threads.txt" "$WORK/gen_mpi.txt" || fail "mpi 2x2 generate differs (or printed more than once)"
echo "ok mpi 2x2 generate identical to threads, printed once"
# GSM8K over MPI: rows serve different questions; results reach rank 0; same completions as threads
D="${DATA:-$SRC/../shared/data}/gsm8k/test.jsonl"
"$QMESH" eval gsm8k -m "$WORK/tiny" --data "$D" --limit 6 --max-new-tokens 16 --out "$WORK/ev_threads.jsonl" \
  > /dev/null 2>&1
timeout 120 "${MPIRUN[@]}" -np 4 "$QMESH" eval gsm8k -m "$WORK/tiny" --data "$D" --limit 6 --max-new-tokens 16 \
  --mesh 2x2 --batch 2 --out "$WORK/ev_mpi.jsonl" > /dev/null 2>&1   # no --backend: mpi under mpirun
"$QMESH" eval compare "$WORK/ev_threads.jsonl" "$WORK/ev_mpi.jsonl" --require-identical > /dev/null \
  || fail "mpi 2x2 eval completions differ from threads"
[ "$(wc -l < "$WORK/ev_mpi.jsonl")" = 6 ] || fail "mpi eval did not write 6 lines"
echo "ok mpi 2x2 eval gsm8k identical to threads"
# the world size must match the mesh
set +e
out=$(timeout 60 "${MPIRUN[@]}" -np 3 "$QMESH" logits -m "$F" --ids "1 2" --out "$WORK/x.npy" --mesh 1x2 --backend mpi 2>&1)
rc=$?
set -e
[ $rc != 0 ] && echo "$out" | grep -q "needs 2 MPI ranks but 3" || fail "wrong world size not refused: $out"
echo "ok wrong world size refused"
# a rank killed mid-run: the others stop within seconds
timeout 120 "${MPIRUN[@]}" -np 2 "$QMESH" generate -m "$WORK/tiny" -p "Count:" -n 30000 --ignore-eos \
  --mesh 1x2 --backend mpi > /dev/null 2>&1 &
launcher=$!
victim=""
for _ in $(seq 100); do
  victim=$(pgrep -f "qmesh generate -m $WORK/tiny -p Count:" | while read -r p; do
    [ "$(ps -o comm= -p "$p")" = qmesh ] && echo "$p"; done | tail -1 || true)
  [ -n "$victim" ] && break
  sleep 0.1
done
[ -n "$victim" ] || fail "no rank to kill"
sleep 1
ps -o pid,comm,args -p "$victim" | tail -1
t0=$(date +%s.%N)
kill -9 "$victim"
set +e
wait $launcher
rc=$?
set -e
t1=$(date +%s.%N)
elapsed=$(echo "$t1 - $t0" | bc)
[ $rc != 0 ] || fail "job exited 0 after a rank was killed"
[ "$(echo "$elapsed < 20" | bc)" = 1 ] || fail "job took $elapsed s to stop"
echo "ok killed rank: job stopped in ${elapsed} s with exit $rc"
echo "6 passed, 0 failed"
