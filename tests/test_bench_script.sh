#!/usr/bin/env bash
# scripts/bench_vs_llamacpp.sh's usage and bad flags: --help exits 0 and documents --rounds; a
# count that is not a positive integer, or a model that is not there, is refused with exit 2 and
# a message naming it, before anything is built, downloaded or run (and before Python is needed).
set -euo pipefail
: "${SRC:?}" "${WORK:?}"
rm -rf "$WORK"; mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
S="$SRC/scripts/bench_vs_llamacpp.sh"
out=$(bash "$S" --help) || fail "--help exits $?"
grep -q -- '--rounds N' <<< "$out" || fail "--help does not document --rounds"
expect() { # label pattern args...
  local label=$1 pat=$2 rc=0 msg
  shift 2
  msg=$(bash "$S" "$@" 2>&1) || rc=$?
  [ "$rc" -eq 2 ] || fail "$label: exit $rc (expected 2): $msg"
  grep -qE -e "$pat" <<< "$msg" || fail "$label: message does not say '$pat': $msg"
  echo "ok $label: $msg"
}
expect "rounds 0" "--rounds needs a positive integer, not '0'" --rounds 0
expect "rounds text" "--rounds needs a positive integer, not 'many'" --rounds many
expect "rounds missing" "--rounds needs a value" --rounds
expect "reps negative" "--reps needs a positive integer, not '-1'" --reps -1
expect "no model" "no model at $WORK/none.gguf" --model "$WORK/none.gguf"
[ -z "$(ls -A "$WORK")" ] || fail "the refused runs left files in $WORK"
echo "PASS"
