#!/usr/bin/env bash
# A multi-host rig on one machine: N "hosts" as Linux network namespaces joined by veth pairs to a
# bridge, and Open MPI launched across them over TCP. Sourced by tests/test_netns.sh and
# scripts/netns_bench.sh; run directly it only lists or removes rigs (see --help below).
#
#   host i = namespace ${RIG_PREFIX}-h$i, interface eth0 with address 10.213.0.(10+i)/24, whose peer
#            ${RIG_PREFIX}-v$i is a port of the bridge ${RIG_PREFIX}-br (in the root namespace,
#            no address: the rig's subnet exists only inside its namespaces)
#   mpirun runs in host 0's namespace; it starts an orted on every other host through
#            tests/netns/agent.sh (--mca plm_rsh_agent: "ip netns exec" in place of ssh); MPI uses
#            the TCP BTL only (pml ob1, btl tcp,self), out-of-band and BTL traffic both restricted to
#            the rig's subnet, --bind-to none
#   links  rig_shape RATE puts a tbf qdisc on both ends of every host's veth pair (the host's
#            transmit and its receive): each host has a RATE full-duplex link to the switch
#
# RIG_PREFIX is "qn" + 5 random hex digits, unique per rig; the rig's state lives in
# $RIG_STATE_ROOT/$RIG_PREFIX (default /run/qmesh-netns), with the owner's pid in "owner". A rig
# whose owner is gone (a killed run) is stale: rig_cleanup_stale removes it (rig_up does so first).
#
# The functions (all return non-zero on failure with a message on stderr):
#   rig_prereq                  exit 77 with a message when not root, no iproute2/tc, no mpirun,
#                               or namespaces cannot be made
#   rig_up N                    make N hosts; sets RIG_PREFIX, RIG_DIR, RIG_HOSTS; installs a trap
#                               (EXIT, INT, TERM, HUP) that tears the rig down
#   rig_shape RATE|none         shape every link (tc tbf; RATE as tc writes it: 1gbit, 10gbit)
#   rig_mpirun HOSTS PER_HOST CMD...   mpirun CMD with HOSTS*PER_HOST ranks, PER_HOST per host on
#                               hosts 0..HOSTS-1 (rank k on host k / PER_HOST); mpirun is stopped
#                               (TERM, then KILL 5 s later) after RIG_TIMEOUT s (default 3600)
#   rig_ns I                    the namespace name of host I
#   rig_tx_bytes I              bytes host I has sent (its eth0 tx_bytes counter)
#   rig_link I up|down          set host I's link (its eth0) up or down
#   rig_placement               one line per qmesh process in the rig: host, pid, allowed CPUs,
#                               the CPU it last ran on
#   rig_down                    kill every process in the rig's namespaces, delete them and the bridge
#   rig_cleanup_stale           remove every rig whose owner is gone
RIG_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RIG_AGENT="$RIG_LIB_DIR/agent.sh"
RIG_STATE_ROOT=${RIG_STATE_ROOT:-/run/qmesh-netns}
RIG_SUBNET=10.213.0.0/24
RIG_PREFIX=""
RIG_DIR=""
RIG_HOSTS=0

rig_log() { echo "rig: $*" >&2; }

rig_prereq() {
  local why=""
  if [ "$(id -u)" != 0 ]; then why="needs root (network namespaces, veth, tc)"
  elif ! command -v ip > /dev/null; then why="needs iproute2 (ip)"
  elif ! command -v tc > /dev/null; then why="needs tc (iproute2)"
  elif ! command -v mpirun > /dev/null; then why="needs Open MPI's mpirun"
  else
    local probe="qnprobe$$"
    if ! ip netns add "$probe" 2> /dev/null; then why="cannot create network namespaces here"
    else
      ip netns del "$probe" 2> /dev/null || true
      if ! ip link add "${probe:0:12}b" type bridge 2> /dev/null; then why="cannot create a bridge here"
      else ip link del "${probe:0:12}b" 2> /dev/null || true; fi
    fi
  fi
  if [ -n "$why" ]; then
    echo "skipped: the network-namespace rig $why"
    exit 77
  fi
}

rig_ns() { echo "${RIG_PREFIX}-h$1"; }
rig_addr() { echo "10.213.0.$((10 + $1))"; }

# remove the rig named PREFIX (state folder, namespaces with their processes, bridge)
rig_remove_prefix() {
  local p=$1 ns pids
  for ns in $(ip netns list 2> /dev/null | awk '{print $1}' | grep "^${p}-h" || true); do
    pids=$(ip netns pids "$ns" 2> /dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -9 $pids 2> /dev/null || true
  done
  for ns in $(ip netns list 2> /dev/null | awk '{print $1}' | grep "^${p}-h" || true); do
    ip netns del "$ns" 2> /dev/null || rig_log "could not delete namespace $ns"
  done
  ip link del "${p}-br" 2> /dev/null || true
  local l
  for l in $(ip -o link show 2> /dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^${p}-" || true); do
    ip link del "$l" 2> /dev/null || true
  done
  rm -rf "${RIG_STATE_ROOT:?}/$p"
}

rig_cleanup_stale() {
  local d p owner
  for d in "$RIG_STATE_ROOT"/qn?????; do
    [ -d "$d" ] || continue
    p=$(basename "$d")
    owner=$(cat "$d/owner" 2> /dev/null || echo "")
    if [ -n "$owner" ] && kill -0 "$owner" 2> /dev/null; then continue; fi
    rig_log "removing stale rig $p (owner ${owner:-unknown} is gone)"
    rig_remove_prefix "$p"
  done
  # namespaces or links of a rig without a state folder (the folder is made first, so these are stale)
  for p in $( (ip netns list 2> /dev/null | awk '{print $1}'; ip -o link show 2> /dev/null | awk -F': ' '{print $2}') |
              grep -oE '^qn[0-9a-f]{5}-' | sed 's/-$//' | sort -u); do
    [ -d "$RIG_STATE_ROOT/$p" ] && continue
    rig_log "removing stale rig $p (no state folder)"
    rig_remove_prefix "$p"
  done
}

rig_down() {
  [ -n "$RIG_PREFIX" ] || return 0
  rig_remove_prefix "$RIG_PREFIX"
  rig_log "removed rig $RIG_PREFIX"
  RIG_PREFIX=""
}

rig_trap() {
  trap 'rig_down' EXIT
  trap 'rig_down; trap - EXIT; exit 130' INT
  trap 'rig_down; trap - EXIT; exit 143' TERM
  trap 'rig_down; trap - EXIT; exit 129' HUP
}

rig_up() {
  local n=$1 i ns
  [ "$n" -ge 1 ] && [ "$n" -le 200 ] || { rig_log "rig_up: 1..200 hosts, not $n"; return 1; }
  mkdir -p "$RIG_STATE_ROOT"
  rig_cleanup_stale
  for _ in $(seq 20); do
    RIG_PREFIX=$(printf 'qn%05x' $(( (RANDOM << 15 | RANDOM) & 0xfffff )))
    mkdir "$RIG_STATE_ROOT/$RIG_PREFIX" 2> /dev/null && break
    RIG_PREFIX=""
  done
  [ -n "$RIG_PREFIX" ] || { rig_log "no free rig name under $RIG_STATE_ROOT"; return 1; }
  RIG_DIR="$RIG_STATE_ROOT/$RIG_PREFIX"
  echo $$ > "$RIG_DIR/owner"
  # mpirun executes the agent itself: a copy that is surely executable
  install -m 755 "$RIG_LIB_DIR/agent.sh" "$RIG_DIR/agent.sh"
  RIG_AGENT="$RIG_DIR/agent.sh"
  rig_trap
  RIG_HOSTS=$n
  ip link add "${RIG_PREFIX}-br" type bridge
  ip link set "${RIG_PREFIX}-br" up
  : > "$RIG_DIR/hosts"
  for i in $(seq 0 $((n - 1))); do
    ns=$(rig_ns "$i")
    ip netns add "$ns"
    ip link add "${RIG_PREFIX}-v$i" type veth peer name "${RIG_PREFIX}-p$i"
    ip link set "${RIG_PREFIX}-p$i" netns "$ns"
    ip -n "$ns" link set "${RIG_PREFIX}-p$i" name eth0
    ip -n "$ns" addr add "$(rig_addr "$i")/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip link set "${RIG_PREFIX}-v$i" master "${RIG_PREFIX}-br" up
    echo "$(rig_addr "$i") $ns" >> "$RIG_DIR/hosts"
  done
  # wait until host 0 reaches every host (bridge ports forwarding, ARP)
  for i in $(seq 1 $((n - 1))); do
    local ok=0
    for _ in $(seq 50); do
      # a closed port answers with a reset ("refused") once the path works (no ping needed)
      local out
      out=$(ip netns exec "$(rig_ns 0)" timeout 1 bash -c "echo > /dev/tcp/$(rig_addr "$i")/9" 2>&1 || true)
      case $out in *refused*) ok=1; break;; esac
      sleep 0.1
    done
    [ $ok = 1 ] || { rig_log "host 0 cannot reach host $i ($(rig_addr "$i"))"; return 1; }
  done
  rig_log "up: $RIG_PREFIX, $n hosts $(awk '{printf "%s=%s ", $2, $1}' "$RIG_DIR/hosts")on bridge ${RIG_PREFIX}-br"
}

rig_shape() {
  local rate=$1 i burst
  for i in $(seq 0 $((RIG_HOSTS - 1))); do
    tc -n "$(rig_ns "$i")" qdisc del dev eth0 root 2> /dev/null || true
    tc qdisc del dev "${RIG_PREFIX}-v$i" root 2> /dev/null || true
  done
  [ "$rate" = none ] && return 0
  # tbf's bucket must hold the largest packet (veth sends 64 kB GSO packets) and about a ms of
  # traffic at the rate
  case $rate in
    *gbit) burst=$(( ${rate%gbit} * 125000 * 2 ));;
    *mbit) burst=$(( ${rate%mbit} * 125 * 2 ));;
    *) rig_log "rig_shape: give the rate as Nmbit or Ngbit, not $rate"; return 1;;
  esac
  [ $burst -ge 262144 ] || burst=262144
  for i in $(seq 0 $((RIG_HOSTS - 1))); do
    tc -n "$(rig_ns "$i")" qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 100ms
    tc qdisc add dev "${RIG_PREFIX}-v$i" root tbf rate "$rate" burst "$burst" latency 100ms
  done
}

# the mpirun flags of the rig (without -np and the hostfile)
rig_mpirun_flags() {
  RIG_MPIRUN_FLAGS=(
    --mca plm_rsh_agent "$RIG_AGENT" --mca plm_rsh_no_tree_spawn 1
    --mca pml ob1 --mca btl tcp,self --mca osc '^ucx'
    --mca btl_tcp_if_include "$RIG_SUBNET" --mca oob_tcp_if_include "$RIG_SUBNET"
    --bind-to none --mca mpi_yield_when_idle 1
    # a daemon that never calls back (its host does not answer) fails the job, not hangs it
    --mca orte_startup_timeout "${RIG_STARTUP_TIMEOUT:-30}"
    -x QMESH_RIG_DIR="$RIG_DIR" -x ASAN_OPTIONS=detect_leaks=0
  )
  # a host that drops off the network (link down) is noticed only by the out-of-band keepalive
  # between mpirun and the orteds: idle 1 s, then 3 probes 1 s apart. Open MPI's defaults (300 s,
  # 20 s, 9 probes) leave the job hanging for minutes. RIG_KEEPALIVE=default keeps them.
  if [ "${RIG_KEEPALIVE:-fast}" != default ]; then
    RIG_MPIRUN_FLAGS+=(--mca oob_tcp_keepalive_time 1 --mca oob_tcp_keepalive_intvl 1
                       --mca oob_tcp_keepalive_probes 3)
  fi
  [ "$(id -u)" = 0 ] && RIG_MPIRUN_FLAGS+=(--allow-run-as-root)
  return 0
}

rig_mpirun() {
  local hosts=$1 per=$2; shift 2
  [ "$hosts" -le "$RIG_HOSTS" ] || { rig_log "rig_mpirun: $hosts hosts but the rig has $RIG_HOSTS"; return 1; }
  local hf="$RIG_DIR/hostfile.$hosts.$per"
  head -n "$hosts" "$RIG_DIR/hosts" | awk -v s="$per" '{print $1 " slots=" s}' > "$hf"
  rig_mpirun_flags
  mkdir -p "$RIG_DIR/tmp/$(rig_ns 0)"
  QMESH_RIG_DIR="$RIG_DIR" QMESH_RIG_HOST0="$(rig_ns 0)" OMPI_MCA_orte_tmpdir_base="$RIG_DIR/tmp/$(rig_ns 0)" ip netns exec "$(rig_ns 0)" timeout -k 5 "${RIG_TIMEOUT:-3600}" \
    mpirun "${RIG_MPIRUN_FLAGS[@]}" --hostfile "$hf" -np $((hosts * per)) --map-by slot "$@"
}

rig_tx_bytes() { ip netns exec "$(rig_ns "$1")" cat /sys/class/net/eth0/statistics/tx_bytes; }
rig_rx_bytes() { ip netns exec "$(rig_ns "$1")" cat /sys/class/net/eth0/statistics/rx_bytes; }

rig_link() { ip -n "$(rig_ns "$1")" link set eth0 "$2"; }

rig_placement() {
  local i ns pid
  for i in $(seq 0 $((RIG_HOSTS - 1))); do
    ns=$(rig_ns "$i")
    for pid in $(ip netns pids "$ns" 2> /dev/null); do
      [ "$(cat "/proc/$pid/comm" 2> /dev/null)" = qmesh ] || continue
      printf 'host %d (%s): qmesh pid %s, allowed CPUs %s, last ran on CPU %s\n' "$i" "$ns" "$pid" \
        "$(awk '/^Cpus_allowed_list/ {print $2}' "/proc/$pid/status" 2> /dev/null)" \
        "$(ps -o psr= -p "$pid" 2> /dev/null | tr -d ' ')"
    done
  done
}

# run directly: list or clean up rigs
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:---help}" in
    --list)
      ip netns list | grep -E '^qn[0-9a-f]{5}-' || echo "no rig namespaces"
      ls "$RIG_STATE_ROOT" 2> /dev/null || true;;
    --cleanup-stale) rig_cleanup_stale;;
    --remove) [ -n "${2:-}" ] || { echo "usage: rig.sh --remove PREFIX" >&2; exit 2; }; rig_remove_prefix "$2";;
    *) echo "usage: tests/netns/rig.sh --list | --cleanup-stale | --remove PREFIX"
       echo "  the network-namespace rig's library (sourced by tests/test_netns.sh and scripts/netns_bench.sh);"
       echo "  run directly it lists rigs (names qnXXXXX-*), removes those whose owner process is gone,"
       echo "  or removes one by name"
       [ "${1:---help}" = --help ] || exit 2;;
  esac
fi
