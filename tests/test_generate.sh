#!/usr/bin/env bash
# qmesh generate: stop strings cut the text (and streaming never shows them), --chat, sampling is
# reproducible from --seed, bad flags are refused.
set -euo pipefail
: "${QMESH:?}" "${WORK:?}"
rm -rf "$WORK"; mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
M="$WORK/tiny"
"$QMESH" random-model --preset tiny --out "$M" --seed 11 2>/dev/null
"$QMESH" generate -m "$M" -p "Numbers:" -n 40 --ignore-eos > "$WORK/full.txt" 2>/dev/null
full=$(cat "$WORK/full.txt")
[ ${#full} -gt 20 ] || fail "too little text: '$full'"
# a stop string from the middle of the text: the output is exactly the text before it
stop=${full:12:4}
"$QMESH" generate -m "$M" -p "Numbers:" -n 40 --ignore-eos --stop "$stop" > "$WORK/cut.txt" 2>/dev/null
want="${full%%"$stop"*}"
got=$(cat "$WORK/cut.txt")
[ "$got" = "$want" ] || fail "stop '$stop': got '$got', want '$want'"
echo "ok stop string cuts the completion before it"
# sampling: same seed, same text; another seed, (almost surely) another text
"$QMESH" generate -m "$M" -p "Once" -n 24 --temp 1.0 --seed 1 > "$WORK/s1.txt" 2>/dev/null
"$QMESH" generate -m "$M" -p "Once" -n 24 --temp 1.0 --seed 1 > "$WORK/s1b.txt" 2>/dev/null
"$QMESH" generate -m "$M" -p "Once" -n 24 --temp 1.0 --seed 2 > "$WORK/s2.txt" 2>/dev/null
cmp -s "$WORK/s1.txt" "$WORK/s1b.txt" || fail "same seed, different text"
cmp -s "$WORK/s1.txt" "$WORK/s2.txt" && fail "seeds 1 and 2 gave the same text"
echo "ok seeded sampling is reproducible"
# --chat wraps the prompt in ChatML (the prompt gets longer by the template's tokens)
"$QMESH" generate -m "$M" -p "Hi" -n 4 --chat > /dev/null 2> "$WORK/chat.err"
grep -q "3[0-9] prompt" "$WORK/chat.err" || fail "--chat prompt length: $(cat "$WORK/chat.err")"
echo "ok --chat"
# bad flags: exit 2 and a message, no output
for args in "-n -1" "--temp -1" "--top-p 0" "--top-p 1.5" "--mesh 0x1" "--frobnicate"; do
  set +e
  # shellcheck disable=SC2086
  "$QMESH" generate -m "$M" -p "x" $args > "$WORK/bad.out" 2> "$WORK/bad.err"
  rc=$?
  set -e
  [ $rc = 2 ] || fail "'$args': exit $rc"
  [ -s "$WORK/bad.err" ] && [ ! -s "$WORK/bad.out" ] || fail "'$args': no message or unexpected output"
done
echo "ok bad flags refused"
echo "4 passed, 0 failed"
