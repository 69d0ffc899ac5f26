#!/usr/bin/env bash
# The README's usage section says what each subcommand takes: hold it to that.
# 1. Every flag of the shared-flags paragraph is accepted by logits, generate, bench and eval gsm8k:
#    with a model that does not exist the run fails at run time (exit 1), never as bad usage (2).
# 2. Every --flag on a `qmesh SUB ...` line of the usage block is listed by `qmesh SUB --help`.
set -uo pipefail
: "${QMESH:?}" "${SRC:?}" "${WORK:?}"
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
readme="$SRC/README.md"
fails=0
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

# the usage section: from "## Usage" to the next "## " heading
usage=$(awk '/^## Usage/{on=1; next} on && /^## /{exit} on' "$readme")
[ -n "$usage" ] || { echo "FAIL no '## Usage' section in $readme"; exit 1; }

# 1. shared flags, each with a valid value
shared=$(printf '%s\n' "$usage" | awk '/^Flags shared by/{on=1} on{print} on && /^$/{exit}')
declare -A value=([-m]=/nonexistent/qmesh-model [--mesh]=1x1 [--backend]=threads [--threads]=1 [--isa]=scalar
                  [--ctx]=64 [--batch]=1 [--step-tokens]=16 [--activations]=f32 [--chat-format]=chatml
                  [--pin]= [--full-head]= [--comm-timeout]=5 [--huge-pages]=off
                  [--repack]=off)   # empty: a switch, no value
flags=$(printf '%s\n' "$shared" | grep -o -- '`-[-a-z]*' | tr -d '`' | sort -u)
[ "$(printf '%s\n' "$flags" | wc -l)" -ge 8 ] || bad "too few shared flags found: $flags"
declare -A needs=([logits]="--ids 1 --out $WORK/x.npy" [generate]="-p x" [bench]=""
                  ["eval gsm8k"]="--data $WORK/none.jsonl --out $WORK/r.jsonl")
for sub in logits generate bench "eval gsm8k"; do
  for f in $flags; do
    [ -n "${value[$f]+set}" ] || { bad "no test value for shared flag $f (add one to this test)"; continue; }
    v=${value[$f]}
    args=("$f"); [ -z "$v" ] || args+=("$v")
    # shellcheck disable=SC2086
    $QMESH $sub -m /nonexistent/qmesh-model ${needs[$sub]} "${args[@]}" > "$WORK/out" 2> "$WORK/err"
    rc=$?
    [ $rc = 1 ] || bad "qmesh $sub $f $v: exit $rc (want 1: the missing model), $(head -c 200 "$WORK/err")"
  done
done
echo "ok shared flags checked on 4 subcommands: $(echo $flags)"

# 2. every --flag of a usage line is in that subcommand's --help
n=0
while IFS= read -r line; do
  sub=$(printf '%s\n' "$line" | sed -E 's/^(mpirun .* )?qmesh +//' | awk '{ if ($1 == "eval") print $1 " " $2; else print $1 }')
  case "$sub" in eval\ ...|"") continue ;; esac
  # shellcheck disable=SC2086
  help=$($QMESH $sub --help 2>&1)
  for f in $(printf '%s\n' "$line" | grep -o -- ' --[a-z][-a-z0-9]*' | sort -u); do
    n=$((n + 1))
    grep -q -- "$f\b" <<< "$help" || bad "README lists 'qmesh $sub ... $f' but 'qmesh $sub --help' does not"
  done
done < <(printf '%s\n' "$usage" | grep -E '^(mpirun .* )?qmesh ')
[ $n -ge 20 ] || bad "only $n flags found on usage lines"
echo "ok $n flags of the usage lines are in their subcommand's --help"
[ $fails = 0 ] || exit 1
