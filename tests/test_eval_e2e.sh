#!/usr/bin/env bash
# qmesh eval gsm8k end to end on a tiny random checkpoint:
#   - completions identical on meshes 1x1 (baseline), 2x4, 1x8, 8x4, 1x32, for batch sizes 1, 3, 8,
#     12, and without the prefix cache;
#   - a run killed with SIGKILL and resumed holds every index exactly once, with the completions of
#     an uninterrupted run; a truncated last line is repaired on --resume.
set -u
: "${QMESH:?QMESH (the qmesh program) is not set}" "${WORK:=$(mktemp -d)}" "${DATA:=$(dirname "$0")/../../shared/data}"
rm -rf "$WORK" && mkdir -p "$WORK"
export QMESH_DATA="$DATA"
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }

"$QMESH" random-model --preset tiny --out "$WORK/m" --seed 1 >/dev/null || { echo "FAIL random-model"; exit 1; }
TEST="$DATA/gsm8k/test.jsonl"
COMMON=(-m "$WORK/m" --data "$TEST" --shots 3 --max-new-tokens 24)

indices_once() { # file n: every index 0..n-1 exactly once
    local got want
    got=$(grep -o '"index":[0-9]*' "$1" | sort | uniq -c | awk '{print $1, $2}' | sort -t: -k2 -n | tr '\n' ' ')
    want=$(for ((i = 0; i < $2; i++)); do printf '1 "index":%d ' "$i"; done)
    [ "$got" = "$want" ]
}

t0=$SECONDS
if ! "$QMESH" eval gsm8k "${COMMON[@]}" --limit 4 --mesh 1x1 --batch 1 --out "$WORK/base.jsonl" > "$WORK/base.out"; then
    bad "baseline run 1x1 batch 1"; exit 1
fi
tail -1 "$WORK/base.out"
tail -1 "$WORK/base.out" | grep -q '"n": 4' && ok "baseline summary" || bad "baseline summary: $(tail -1 "$WORK/base.out")"
indices_once "$WORK/base.jsonl" 4 && ok "baseline indices" || bad "baseline indices"
# each line says why its completion ended; the summary counts those cut by the token limit
n_stop=$(grep -c '"stop":"\(eos\|stop\|length\)"' "$WORK/base.jsonl")
n_len=$(grep -c '"stop":"length"' "$WORK/base.jsonl")
[ "$n_stop" = 4 ] && tail -1 "$WORK/base.out" | grep -q "\"length_stops\": $n_len," &&
    ok "stop reasons ($n_len of 4 at the token limit)" || bad "stop reasons: $n_stop lines, summary $(tail -1 "$WORK/base.out")"

same_as() { # base limit name args...: the run's completions identical to base's
    local base=$1 limit=$2 name=$3; shift 3
    if ! "$QMESH" eval gsm8k "${COMMON[@]}" --limit "$limit" "$@" --out "$WORK/$name.jsonl" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
        bad "$name: run failed: $(tail -3 "$WORK/$name.err")"; return
    fi
    if "$QMESH" eval compare "$base" "$WORK/$name.jsonl" --require-identical > "$WORK/$name.cmp" 2>&1; then
        ok "$name: completions identical to 1x1 batch 1"
    else
        bad "$name: $(cat "$WORK/$name.cmp")"
    fi
}
same_as_base() { same_as "$WORK/base.jsonl" 4 "$@"; } # name args...
same_as_base mesh2x4 --mesh 2x4 --batch 1
same_as_base mesh1x8 --mesh 1x8 --batch 1
same_as_base mesh8x4 --mesh 8x4 --batch 1
same_as_base mesh1x32 --mesh 1x32 --batch 1
same_as_base batch3 --mesh 1x1 --batch 3
same_as_base batch8 --mesh 1x1 --batch 8
same_as_base batch3_2x4 --mesh 2x4 --batch 3
same_as_base noprefix --mesh 1x1 --batch 3 --no-prefix-cache

# 12 questions at batch 12: steps of 9 to 16 tokens (the AVX2 row-parallel layers run them side by
# side, matmul_avx2.c nodes_wide; their attention scores the shared prefix together,
# model/attention.c), against the same 12 at batch 1.
if "$QMESH" eval gsm8k "${COMMON[@]}" --limit 12 --mesh 1x1 --batch 1 --out "$WORK/base12.jsonl" > /dev/null 2>&1; then
    same_as "$WORK/base12.jsonl" 12 batch12 --mesh 1x1 --batch 12
    same_as "$WORK/base12.jsonl" 12 batch12_2x4 --mesh 2x4 --batch 12
    if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
        same_as "$WORK/base12.jsonl" 12 batch12_avx2 --mesh 1x1 --batch 12 --isa avx2
    else
        echo "skip batch12_avx2: the CPU has no AVX2"
    fi
else
    bad "12 questions at 1x1 batch 1"
fi
echo "meshes and batches: $((SECONDS - t0)) s"

# ---- kill -9 and --resume: the kill must land while the run is going (a file with some but not
# all results); the killed run is slow enough (40 questions, one thread, scalar kernels) for that.
# The uninterrupted run and the resume use the best ISA: every ISA gives the same bits, so the
# comparison also checks that, and the slow scalar run is cut short by the kill (this test's time
# under the sanitizers was most of the suite's).
K=(--limit 8 --mesh 1x1 --batch 1)
KL=(--limit 40 --mesh 1x1 --batch 1)
SLOW=(--threads 1 --isa scalar)
"$QMESH" eval gsm8k "${COMMON[@]}" "${K[@]}" --out "$WORK/full8.jsonl" > /dev/null 2>&1 || bad "uninterrupted --limit 8 run"
"$QMESH" eval gsm8k "${COMMON[@]}" "${KL[@]}" --out "$WORK/full40.jsonl" > /dev/null 2>&1 || bad "uninterrupted --limit 40 run"
"$QMESH" eval gsm8k "${COMMON[@]}" "${KL[@]}" "${SLOW[@]}" --out "$WORK/killed.jsonl" > /dev/null 2>&1 &
pid=$!
for ((i = 0; i < 1200; i++)); do
    [ -s "$WORK/killed.jsonl" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
done
if kill -9 $pid 2>/dev/null; then killed=1; else killed=0; fi
wait $pid 2>/dev/null
lines=$(wc -l < "$WORK/killed.jsonl" 2>/dev/null || echo 0)
[ $killed = 1 ] && [ "$lines" -ge 1 ] && [ "$lines" -lt 40 ] && ok "killed mid-run with $lines of 40 results written" ||
    bad "the kill did not land mid-run (killed=$killed, $lines lines)"
if "$QMESH" eval gsm8k "${COMMON[@]}" "${KL[@]}" --out "$WORK/killed.jsonl" --resume > /dev/null 2> "$WORK/resume.err"; then
    indices_once "$WORK/killed.jsonl" 40 && ok "killed+resumed: every index once" || bad "killed+resumed indices: $(grep -o '"index":[0-9]*' "$WORK/killed.jsonl" | tr '\n' ' ')"
    "$QMESH" eval compare "$WORK/full40.jsonl" "$WORK/killed.jsonl" --require-identical > "$WORK/kill.cmp" 2>&1 &&
        ok "killed+resumed: completions identical" || bad "killed+resumed: $(cat "$WORK/kill.cmp")"
else
    bad "resume failed: $(cat "$WORK/resume.err")"
fi

# a last line cut in the middle (as by a kill during the write) is dropped and redone
head -n 3 "$WORK/full8.jsonl" > "$WORK/cut.jsonl"
sed -n 4p "$WORK/full8.jsonl" | head -c 40 >> "$WORK/cut.jsonl"
if "$QMESH" eval gsm8k "${COMMON[@]}" "${K[@]}" --out "$WORK/cut.jsonl" --resume > /dev/null 2> "$WORK/cut.err"; then
    grep -q "truncated" "$WORK/cut.err" && ok "truncated line reported" || bad "truncated line not reported"
    indices_once "$WORK/cut.jsonl" 8 && ok "cut+resumed: every index once" || bad "cut+resumed indices"
    "$QMESH" eval compare "$WORK/full8.jsonl" "$WORK/cut.jsonl" --require-identical > "$WORK/cut.cmp" 2>&1 &&
        ok "cut+resumed: completions identical" || bad "cut+resumed: $(cat "$WORK/cut.cmp")"
else
    bad "resume of a cut file failed: $(cat "$WORK/cut.err")"
fi
# resuming a complete file does no work and keeps it as it is
sum=$(cksum < "$WORK/full8.jsonl")
"$QMESH" eval gsm8k "${COMMON[@]}" "${K[@]}" --out "$WORK/full8.jsonl" --resume > "$WORK/again.out" 2>/dev/null &&
    [ "$(cksum < "$WORK/full8.jsonl")" = "$sum" ] && tail -1 "$WORK/again.out" | grep -q '"n": 8' &&
    ok "resume of a complete file" || bad "resume of a complete file"
"$QMESH" eval report "$WORK/base.jsonl" "$WORK/mesh2x4.jsonl" "$WORK/batch8.jsonl" || bad "report"

echo "total: $((SECONDS - t0)) s"
if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all eval end-to-end checks passed"
