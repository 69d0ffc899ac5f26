#!/usr/bin/env bash
# qmesh under mpirun (--backend mpi, one rank per device): byte-identical to the threads backend
# on 1x2, 2x2 and 1x8; output printed once; a wrong world size refused; a killed rank stops the job;
# a killed 2x2 eval has both rows' results on file and resumes to the uninterrupted run's completions;
# ranks with another binary, checkpoint or options refused; a silent (stopped) rank ends the job
# after --comm-timeout.
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
[ $rc != 0 ] && grep -q "needs 2 MPI ranks but 3" <<< "$out" || fail "wrong world size not refused: $out"
echo "ok wrong world size refused"
# the pid of the last qmesh rank whose command line matches PATTERN, waiting up to 10 s for one
last_rank() {
  local v=""
  for _ in $(seq 100); do
    v=$(pgrep -f "$1" | while read -r p; do [ "$(ps -o comm= -p "$p")" = qmesh ] && echo "$p"; done | tail -1 || true)
    [ -n "$v" ] && break
    sleep 0.1
  done
  echo "$v"
}
# a rank killed mid-run: the others stop within seconds
timeout 120 "${MPIRUN[@]}" -np 2 "$QMESH" generate -m "$WORK/tiny" -p "Count:" -n 30000 --ignore-eos \
  --mesh 1x2 --backend mpi > /dev/null 2>&1 &
launcher=$!
victim=$(last_rank "qmesh generate -m $WORK/tiny -p Count:")
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
# a 2x2 MPI eval killed mid-run: rows serve different questions (row 0 the even indices, row 1
# the odd ones) and every row's finished results reach rank 0's file within a pass, so the killed
# run's file already holds both rows' results; --resume completes it, every index once, the same
# completions as an uninterrupted run
L=24
EV=(eval gsm8k -m "$WORK/tiny" --data "$D" --limit $L --max-new-tokens 16 --shots 2)
"$QMESH" "${EV[@]}" --out "$WORK/ev24_threads.jsonl" > /dev/null 2>&1
timeout 300 "${MPIRUN[@]}" -np 4 "$QMESH" "${EV[@]}" --mesh 2x2 --batch 1 --threads 1 --isa scalar \
  --out "$WORK/ev_kill.jsonl" > /dev/null 2>&1 &
launcher=$!
has_both_rows() { grep -q '"index":[0-9]*[02468],' "$1" && grep -q '"index":[0-9]*[13579],' "$1"; }
for _ in $(seq 1200); do
  [ -s "$WORK/ev_kill.jsonl" ] && has_both_rows "$WORK/ev_kill.jsonl" && break
  kill -0 $launcher 2> /dev/null || break
  sleep 0.05
done
victim=$(pgrep -f "ev_kill.jsonl" | while read -r p; do [ "$(ps -o comm= -p "$p")" = qmesh ] && echo "$p"; done | head -1 || true)
[ -n "$victim" ] || fail "the MPI eval ended before it could be killed"
kill -9 "$victim"
set +e
wait $launcher
set -e
n_killed=$(grep -c '"index"' "$WORK/ev_kill.jsonl" || true)
[ "$n_killed" -lt $L ] || fail "the kill came too late: $n_killed of $L results"
has_both_rows "$WORK/ev_kill.jsonl" || fail "killed run's file lacks row 1's results: $(grep -o '"index":[0-9]*' "$WORK/ev_kill.jsonl" | tr '\n' ' ')"
echo "ok killed 2x2 MPI eval: $n_killed of $L results on file, from both rows"
timeout 300 "${MPIRUN[@]}" -np 4 "$QMESH" "${EV[@]}" --mesh 2x2 --batch 2 --out "$WORK/ev_kill.jsonl" --resume \
  > /dev/null 2> "$WORK/ev_resume.err" || fail "resume: $(tail -3 "$WORK/ev_resume.err")"
got=$(grep -o '"index":[0-9]*' "$WORK/ev_kill.jsonl" | sort | uniq -c | awk '$1 != 1' | wc -l)
[ "$(grep -c '"index"' "$WORK/ev_kill.jsonl")" = $L ] && [ "$got" = 0 ] || fail "resumed file: not every index exactly once"
"$QMESH" eval compare "$WORK/ev24_threads.jsonl" "$WORK/ev_kill.jsonl" --require-identical > /dev/null ||
  fail "killed+resumed MPI completions differ from an uninterrupted run"
echo "ok killed+resumed 2x2 MPI eval: every index once, completions identical"
# ranks that do not run the same program, model or options are refused, naming the rank (MPMD
# launches: "mpirun -np 1 A : -np 1 B")
"$QMESH" random-model --preset tiny --out "$WORK/tiny2" --seed 4 2>/dev/null
cp "$QMESH" "$WORK/qmesh_other"; echo "another build" >> "$WORK/qmesh_other"
G=(generate -p "hi" -n 4 --mesh 1x2 --backend mpi)
refused() { # WHAT EXPECTED_TEXT RANK0_ARGS... -- RANK1_CMD...
  local what=$1 want=$2; shift 2
  local a=() b=()
  while [ "$1" != -- ]; do a+=("$1"); shift; done; shift; b=("$@")
  set +e
  out=$(timeout 60 "${MPIRUN[@]}" -np 1 "${a[@]}" : -np 1 "${b[@]}" 2>&1)
  rc=$?
  set -e
  [ $rc != 0 ] && [ $rc != 124 ] && grep -q "MPI rank 1 runs $want" <<< "$out" || fail "$what not refused (exit $rc): $out"
  echo "ok $what refused, naming rank 1"
}
refused "another checkpoint" "a different model" "$QMESH" "${G[@]}" -m "$WORK/tiny" -- "$QMESH" "${G[@]}" -m "$WORK/tiny2"
refused "another binary" "a different qmesh program" "$QMESH" "${G[@]}" -m "$WORK/tiny" -- "$WORK/qmesh_other" "${G[@]}" -m "$WORK/tiny"
refused "other options" "different options" "$QMESH" "${G[@]}" -m "$WORK/tiny" -- "$QMESH" "${G[@]}" -m "$WORK/tiny" --batch 2
# a silent peer (stopped: its TCP connections stay up, so MPI alone would wait for ever): the
# others give up after --comm-timeout with an error naming the collective, and the job ends
timeout 120 "${MPIRUN[@]}" -np 2 "$QMESH" generate -m "$WORK/tiny" -p "Silent:" -n 30000 --ignore-eos \
  --mesh 1x2 --backend mpi --threads 1 --comm-timeout 3 > "$WORK/silent.out" 2> "$WORK/silent.err" &
launcher=$!
victim=$(last_rank "qmesh generate -m $WORK/tiny -p Silent:")
[ -n "$victim" ] || fail "no rank to stop"
# the deadline is armed once every rank has loaded: stop the rank only when text comes out
for _ in $(seq 600); do [ -s "$WORK/silent.out" ] && break; sleep 0.1; done
[ -s "$WORK/silent.out" ] || fail "silent peer: no text 60 s after the start"
sleep 1
t0=$(date +%s.%N)
kill -STOP "$victim"
set +e
wait $launcher
rc=$?
set -e
elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
kill -9 "$victim" 2> /dev/null || true
[ $rc != 0 ] && [ $rc != 124 ] || fail "silent peer: job exit $rc"
grep -q "no answer from its peers for 3 s" "$WORK/silent.err" || fail "silent peer: no timeout message: $(tail -3 "$WORK/silent.err")"
[ "$(echo "$elapsed < 15" | bc)" = 1 ] || fail "silent peer: the job took $elapsed s to stop"
echo "ok silent peer (SIGSTOP): job stopped in ${elapsed} s with exit $rc, the timeout named"
echo "12 passed, 0 failed"
