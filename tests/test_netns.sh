#!/usr/bin/env bash
# qmesh across "hosts" made of Linux network namespaces (tests/netns/rig.sh): 4 hosts on a bridge,
# Open MPI over TCP between them, started through tests/netns/agent.sh (ip netns exec in place of
# ssh). Checks: MPI 1x4, 2x2 (one rank per host) and 2x4 (two per host) give logits byte-identical
# to threads 1x1; every rank may run on every CPU (--bind-to none; the placement is printed); a
# host's ranks killed mid-run, and a host's link set down mid-run, make the job exit non-zero
# within seconds and leave no process behind (with Open MPI's default keepalive too, through the
# ranks' --comm-timeout); a hostfile host that does not answer fails the launch within seconds. The rig is removed at exit, also when the test is
# killed (INT/TERM/HUP; after a SIGKILL the next rig_up removes the stale one).
# Needs root, iproute2 and mpirun, else it skips (exit 77).
#   usage: QMESH=build/qmesh SRC=. WORK=/tmp/w QMESH_HAVE_MPI=ON bash tests/test_netns.sh
set -euo pipefail
if [ "${1:-}" = --help ]; then sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
: "${QMESH:?}" "${SRC:?}" "${WORK:?}"
if [ "${QMESH_HAVE_MPI:-OFF}" != "ON" ]; then echo "skipped: built without MPI"; exit 77; fi
# shellcheck source=netns/rig.sh
source "$SRC/tests/netns/rig.sh"
rig_prereq
rm -rf "$WORK"; mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
passed=0
ok() { echo "ok $*"; passed=$((passed + 1)); }
QMESH=$(readlink -f "$QMESH")

"$QMESH" random-model --preset tiny --out "$WORK/tiny" --seed 3 2> /dev/null
ids="151644 872 198 3838 374 220 17 10 17 30 151645 198 151644 77091 198"
"$QMESH" logits -m "$WORK/tiny" --ids "$ids" --out "$WORK/threads.npy" --threads 1

rig_up 4
# a watchdog: past 240 s the test stops itself with TERM (its trap removes the rig) before CTest's
# timeout would SIGKILL it and leave the rig behind (then the next rig_up removes it as stale)
( trap 'kill $sp 2> /dev/null; exit 0' TERM; sleep 240 & sp=$!; wait $sp
  echo "FAIL: test_netns still runs after 240 s, stopping it" >&2; kill -TERM $$ ) &
watchdog=$!
trap 'kill $watchdog 2> /dev/null || true; rig_down' EXIT
for spec in 1x4:1 2x2:1 2x4:2; do
  m=${spec%:*} per=${spec#*:}
  RIG_TIMEOUT=60 rig_mpirun 4 "$per" "$QMESH" logits -m "$WORK/tiny" --ids "$ids" --out "$WORK/mpi_$m.npy" --mesh "$m" \
    --backend mpi --threads 1 > "$WORK/mpi_$m.log" 2>&1 || fail "mpi $m over 4 hosts: $(tail -5 "$WORK/mpi_$m.log")"
  cmp -s "$WORK/threads.npy" "$WORK/mpi_$m.npy" || fail "mpi $m over 4 hosts: logits differ from threads 1x1"
  ok "mpi $m over 4 hosts ($per rank(s) per host): logits identical to threads 1x1"
done

# the pids of the qmesh processes in host I's namespace
qmesh_pids() {
  local p
  for p in $(ip netns pids "$(rig_ns "$1")" 2> /dev/null); do
    [ "$(cat "/proc/$p/comm" 2> /dev/null)" = qmesh ] && echo "$p"
  done
  return 0
}
n_qmesh() { local i n=0; for i in 0 1 2 3; do n=$((n + $(qmesh_pids "$i" | wc -l))); done; echo $n; }

# start a long 1x4 generation over the 4 hosts (NAME [qmesh flags]); returns when every rank is
# generating
start_long_run() {
  local name=$1; shift
  rig_mpirun 4 1 "$QMESH" generate -m "$WORK/tiny" -p "Count:" -n 30000 --ignore-eos --ctx 32768 \
    --mesh 1x4 --backend mpi --threads 1 "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  launcher=$!
  for _ in $(seq 600); do
    [ "$(n_qmesh)" = 4 ] && [ -s "$WORK/$name.out" ] && break
    kill -0 $launcher 2> /dev/null || fail "$name: the job ended early: $(tail -5 "$WORK/$name.err")"
    sleep 0.1
  done
  [ "$(n_qmesh)" = 4 ] && [ -s "$WORK/$name.out" ] ||
    fail "$name: not generating 60 s after the start ($(n_qmesh) ranks, $(wc -c < "$WORK/$name.out") bytes out): $(tail -5 "$WORK/$name.err")"
  sleep 1
}

# wait (at most LIMIT s) for the launcher to end; sets rc and elapsed (s since t0)
wait_launcher() {
  local limit=$1
  for _ in $(seq $((limit * 20))); do kill -0 $launcher 2> /dev/null || break; sleep 0.05; done
  elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
  if kill -0 $launcher 2> /dev/null; then
    kill $launcher 2> /dev/null || true
    wait $launcher 2> /dev/null || true
    rig_placement
    fail "$2: the job still runs $limit s later"
  fi
  set +e; wait $launcher; rc=$?; set -e
}

# the launcher ends (within LIMIT s) non-zero, and no qmesh process is left 10 s later (LIMIT WHAT)
job_failed_cleanly() {
  wait_launcher "$1" "$2"
  [ $rc != 0 ] || fail "$2: the job exited 0"
  for _ in $(seq 100); do [ "$(n_qmesh)" = 0 ] && break; sleep 0.1; done
  [ "$(n_qmesh)" = 0 ] || fail "$2: qmesh processes left 10 s after the job ended: $(rig_placement)"
}

# placement: each rank is free to run on every CPU (not all on core 0)
start_long_run kill
rig_placement | tee "$WORK/placement.txt"
all_cpus=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)
[ "$(grep -c "allowed CPUs $all_cpus," "$WORK/placement.txt")" = 4 ] ||
  fail "a rank is bound to fewer CPUs than the machine's $all_cpus"
ok "placement: 4 ranks, one per host, each allowed on CPUs $all_cpus (--bind-to none)"

# a host's ranks killed mid-run (SIGKILL): the other hosts' ranks stop, the job exits non-zero
victims=$(qmesh_pids 2)
t0=$(date +%s.%N)
# shellcheck disable=SC2086
kill -9 $victims
wait_launcher 20 "host 2's rank killed"
[ $rc != 0 ] || fail "host 2's rank killed: the job exited 0"
sleep 0.5
[ "$(n_qmesh)" = 0 ] || fail "host 2's rank killed: qmesh processes left: $(rig_placement)"
ok "host 2's rank killed (pid $victims): job exit $rc after ${elapsed} s, no rank left"

# a host's link down mid-run: its peers block in a collective until mpirun's out-of-band keepalive
# declares the host lost and ends the job (its own orted loses mpirun and kills its rank)
start_long_run linkdown
t0=$(date +%s.%N)
rig_link 3 down
job_failed_cleanly 30 "host 3's link down"
ok "host 3's link down: job exit $rc after ${elapsed} s, no rank left"
rig_link 3 up

# the same with Open MPI's default keepalive (minutes before mpirun declares a host lost): the
# ranks' own deadline (--comm-timeout) ends every rank that can still be reached, with a message;
# mpirun itself waits for the lost host's daemon until the link is back, then ends the job
n_reachable() { local i n=0; for i in 0 1 2; do n=$((n + $(qmesh_pids "$i" | wc -l))); done; echo $n; }
RIG_KEEPALIVE=default start_long_run linkdown_default --comm-timeout 4
t0=$(date +%s.%N)
rig_link 3 down
for _ in $(seq 400); do [ "$(n_reachable)" = 0 ] && break; sleep 0.05; done
elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
[ "$(n_reachable)" = 0 ] || fail "host 3's link down, default keepalive: ranks of hosts 0-2 still run 20 s later"
grep -q "no answer from its peers for 4 s" "$WORK/linkdown_default.err" ||
  fail "host 3's link down, default keepalive: no timeout message: $(tail -3 "$WORK/linkdown_default.err")"
rig_link 3 up
job_failed_cleanly 60 "host 3's link down, default keepalive, link back"
ok "host 3's link down, Open MPI's default keepalive: hosts 0-2's ranks ended by --comm-timeout 4 after ${elapsed} s; the job exit $rc once the link was back"

# a host of the hostfile that does not answer (its link down before the launch): its daemon never
# calls back, and the launch fails within the startup timeout instead of hanging
rig_link 3 down
t0=$(date +%s.%N)
set +e
RIG_STARTUP_TIMEOUT=8 RIG_TIMEOUT=60 rig_mpirun 4 1 "$QMESH" logits -m "$WORK/tiny" --ids "$ids" \
  --out "$WORK/noanswer.npy" --mesh 1x4 --backend mpi --threads 1 > "$WORK/noanswer.log" 2>&1
rc=$?
set -e
elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
rig_link 3 up
[ $rc != 0 ] && [ $rc != 124 ] || fail "a host that does not answer: launch exit $rc after $elapsed s: $(tail -5 "$WORK/noanswer.log")"
[ ! -e "$WORK/noanswer.npy" ] || fail "a host that does not answer: logits were written"
for _ in $(seq 100); do [ "$(n_qmesh)" = 0 ] && break; sleep 0.1; done
[ "$(n_qmesh)" = 0 ] || fail "a host that does not answer: qmesh processes left: $(rig_placement)"
ok "a host that does not answer (link down at launch): launch failed (exit $rc) after ${elapsed} s"

prefix=$RIG_PREFIX
kill $watchdog 2> /dev/null || true
rig_down
trap - EXIT INT TERM HUP
if grep -q "^$prefix-" <<< "$(ip netns list)" || grep -q "$prefix-" <<< "$(ip link show)"; then fail "rig $prefix left behind"; fi
ok "rig $prefix removed"
echo "$passed passed, 0 failed"
