#!/usr/bin/env bash
# Decode speed and network traffic of qmesh over MPI across "hosts" made of network namespaces
# (tests/netns/rig.sh): for each mesh 1xC (C hosts, one rank per host), batch and link rate, runs
# `qmesh bench` under mpirun in the rig and prints a table of
#   decode tok/s           bench's decode_tok_s, the median of --reps runs
#   bytes/dev/token        what a host's network interface sent per decoded token: the tx_bytes of
#                          every host in the mesh after a --gen 2G run minus after a --gen G run
#                          (start-up, loading and prefill cancel), divided by C and by the G x batch
#                          extra tokens; median over the runs (headers included: TCP/IP, MPI)
#   comm ms/token          bench's comm_ms_per_token (time in the row's ordered sums), median
# and first, per link rate, the MPI latency (8 B one way) and bandwidth (4 MiB) between two hosts.
# Needs root, iproute2 and mpirun; removes the rig at the end, also when interrupted.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat << EOF
usage: scripts/netns_bench.sh -m MODEL [options]

Builds a rig of network namespaces (one "host" per rank, a bridge, Open MPI over TCP), runs
qmesh bench (decode) over MPI on every mesh x batch x link rate, prints a table and removes the rig.

  -m, --model PATH      GGUF file or Hugging Face folder (required)
  --qmesh PATH          the qmesh program (default: \$QMESH, else build/qmesh)
  --meshes "M..."       meshes 1xC, one host per rank (default "1x2 1x4")
  --batches "B..."      sequences per row (default "1 16")
  --rates "R..."        link rates as tc writes them, or none = unshaped (default "1gbit 10gbit none")
  --reps K              runs per point, the median is reported (default 3)
  --prompt N            prompt tokens per sequence (default 16)
  --gen G               the bytes come from runs of G and 2G generated tokens (default 8)
  --threads N           kernel threads per rank (default 1; the machine's cores are shared by all ranks)
  --activations A       f32 (default) or q8, as qmesh bench
  --label TEXT          model name in the table (default: the file name)
  --out FILE            also write the table as tab-separated values to FILE
  -h, --help            this text
EOF
}

MODEL="" QM="${QMESH:-$ROOT/build/qmesh}" MESHES="1x2 1x4" BATCHES="1 16" RATES="1gbit 10gbit none"
REPS=3 PROMPT=16 GEN=8 THREADS=1 ACT=f32 LABEL="" OUT=""
while [ $# -gt 0 ]; do
  case $1 in
    -m|--model) MODEL=$2; shift 2;;
    --qmesh) QM=$2; shift 2;;
    --meshes) MESHES=$2; shift 2;;
    --batches) BATCHES=$2; shift 2;;
    --rates) RATES=$2; shift 2;;
    --reps) REPS=$2; shift 2;;
    --prompt) PROMPT=$2; shift 2;;
    --gen) GEN=$2; shift 2;;
    --threads) THREADS=$2; shift 2;;
    --activations) ACT=$2; shift 2;;
    --label) LABEL=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) usage; exit 0;;
    *) echo "netns_bench: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
[ -n "$MODEL" ] || { echo "netns_bench: -m MODEL is required (see --help)" >&2; exit 2; }
[ -e "$MODEL" ] || { echo "netns_bench: no model at $MODEL" >&2; exit 2; }
[ -x "$QM" ] || { echo "netns_bench: no qmesh program at $QM (build it, or give --qmesh)" >&2; exit 2; }
command -v jq > /dev/null || { echo "netns_bench: needs jq" >&2; exit 2; }
MODEL=$(readlink -f "$MODEL") QM=$(readlink -f "$QM")
[ -n "$LABEL" ] || LABEL=$(basename "$MODEL")
max_hosts=0
for m in $MESHES; do
  case $m in 1x[0-9]*) ;; *) echo "netns_bench: meshes are 1xC (one row), not $m" >&2; exit 2;; esac
  [ "${m#1x}" -gt $max_hosts ] && max_hosts=${m#1x}
done

# shellcheck source=../tests/netns/rig.sh
source "$ROOT/tests/netns/rig.sh"
rig_prereq
rig_up "$max_hosts"
LOG="$RIG_DIR/bench.log"
echo "qmesh $QM, model $MODEL, prompt $PROMPT, gen $GEN/$((2 * GEN)), $THREADS thread(s) per rank," \
  "activations $ACT, $REPS reps, $(nproc) CPUs on this machine; log $LOG (removed with the rig)" >&2

tx_sum() { local i s=0; for i in $(seq 0 $(($1 - 1))); do s=$((s + $(rig_tx_bytes "$i"))); done; echo $s; }

# one bench run on mesh 1xC: prints "tx_bytes json"
bench_run() {
  local c=$1 batch=$2 gen=$3 before after json
  before=$(tx_sum "$c")
  if ! json=$(RIG_TIMEOUT=1800 rig_mpirun "$c" 1 "$QM" bench -m "$MODEL" --mesh "1x$c" --backend mpi \
       --threads "$THREADS" --prompt "$PROMPT" --gen "$gen" --batch "$batch" --activations "$ACT" 2>> "$LOG" |
       tail -n 1); then
    echo "netns_bench: qmesh bench failed on 1x$c, batch $batch; the end of the log:" >&2
    tail -20 "$LOG" >&2
    exit 1
  fi
  after=$(tx_sum "$c")
  echo "$((after - before)) $json"
}

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
  else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# the links themselves: MPI ping-pong between hosts 0 and 1 at every rate (tests/netns/pingpong.c,
# built with mpicc when there is one)
PP="$RIG_DIR/pingpong"
if command -v mpicc > /dev/null && mpicc -O2 -o "$PP" "$ROOT/tests/netns/pingpong.c" 2>> "$LOG"; then
  for r in $RATES; do
    rig_shape "$r"
    printf 'link %-7s %s\n' "$r" "$(RIG_TIMEOUT=120 rig_mpirun 2 1 "$PP" 2>> "$LOG" | grep pingpong || echo "pingpong failed (see the log)")"
  done
else
  echo "(no mpicc: link latency and bandwidth not measured)"
fi

rows=()
hdr=$(printf '%-28s %-5s %5s %5s %7s %12s %16s %13s' model mesh hosts batch rate "decode tok/s" "bytes/dev/token" "comm ms/tok")
echo "$hdr"
for m in $MESHES; do
  c=${m#1x}
  for b in $BATCHES; do
    rig_shape none
    base=$(bench_run "$c" "$b" "$GEN"); base_tx=${base%% *}
    for r in $RATES; do
      rig_shape "$r"
      : > "$RIG_DIR/pts"
      for _ in $(seq "$REPS"); do
        res=$(bench_run "$c" "$b" $((2 * GEN)))
        tx=${res%% *} json=${res#* }
        echo "$(echo "$json" | jq -r '.decode_tok_s') $(echo "($tx - $base_tx) / $c / ($GEN * $b)" | bc -l) $(echo "$json" | jq -r '.comm_ms_per_token')" >> "$RIG_DIR/pts"
      done
      tps=$(awk '{print $1}' "$RIG_DIR/pts" | median)
      bpt=$(awk '{print $2}' "$RIG_DIR/pts" | median)
      cms=$(awk '{print $3}' "$RIG_DIR/pts" | median)
      line=$(printf '%-28s %-5s %5d %5d %7s %12.2f %16.0f %13.3f' "$LABEL" "$m" "$c" "$b" "$r" "$tps" "$bpt" "$cms")
      echo "$line"
      rows+=("$(printf '%s\t%s\t%d\t%d\t%s\t%.3f\t%.0f\t%.3f' "$LABEL" "$m" "$c" "$b" "$r" "$tps" "$bpt" "$cms")")
    done
  done
done
rig_shape none
if [ -n "$OUT" ]; then
  { printf 'model\tmesh\thosts\tbatch\trate\tdecode_tok_s\tbytes_per_device_per_token\tcomm_ms_per_token\n'
    printf '%s\n' "${rows[@]}"; } > "$OUT"
  echo "table written to $OUT" >&2
fi
