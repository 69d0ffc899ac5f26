#!/usr/bin/env bash
# qmesh generate: stop strings cut the text (and streaming never shows them), --chat, sampling is
# reproducible from --seed, bad flags are refused, -n 0 generates nothing, all-NaN logits are an error;
# the statistics line names why the generation stopped.
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
# the statistics line says why the generation ended
why() { "$QMESH" generate -m "$M" -p "Numbers:" --ignore-eos "$@" 2>&1 >/dev/null | tail -1; }
why -n 40 | grep -q "stopped: -n 40 tokens;" || fail "-n 40: $(why -n 40)"
why -n 40 --stop "$stop" | grep -q "stopped: stop string;" || fail "stop string: $(why -n 40 --stop "$stop")"
why -n 40 --ctx 8 | grep -q "stopped: context full (8 positions; --ctx);" || fail "--ctx 8: $(why -n 40 --ctx 8)"
echo "ok the stop reason: -n, stop string, context full"
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
# -n 0 generates nothing (and computes nothing)
"$QMESH" generate -m "$M" -p "Numbers:" -n 0 > "$WORK/n0.out" 2> "$WORK/n0.err"
[ -z "$(tr -d '\n' < "$WORK/n0.out")" ] && grep -q " 0 generated" "$WORK/n0.err" || fail "-n 0: $(cat "$WORK/n0.out" "$WORK/n0.err")"
echo "ok -n 0 generates nothing"
# every logit NaN (model.norm.weight overwritten with NaN): exit 1 with a message naming the request,
# not a pick of some token
"$QMESH" random-model --preset tiny --out "$WORK/nan" --seed 11 --dtype f32 2>/dev/null
f="$WORK/nan/model.safetensors"
hlen=$(od -An -tu8 -N8 "$f" | tr -d ' ')
ent=$(head -c $((8 + hlen)) "$f" | tail -c "$hlen" | grep -o '"model.norm.weight":{[^}]*}')
b=$(echo "$ent" | sed 's/.*"data_offsets":\[\([0-9]*\),\([0-9]*\)\].*/\1/')
e=$(echo "$ent" | sed 's/.*"data_offsets":\[\([0-9]*\),\([0-9]*\)\].*/\2/')
[ -n "$b" ] && [ -n "$e" ] && [ "$e" -gt "$b" ] || fail "cannot find model.norm.weight in $f"
for _ in $(seq 1 $(((e - b) / 4))); do printf '\000\000\300\177'; done |
  dd of="$f" bs=1 seek=$((8 + hlen + b)) conv=notrunc status=none
set +e
timeout 120 "$QMESH" generate -m "$WORK/nan" -p "x" -n 4 --mesh 1x2 > "$WORK/nan.out" 2> "$WORK/nan.err"
rc=$?
set -e
[ $rc = 1 ] && grep -q "request 0, generated token 1 .*every logit is -inf or NaN" "$WORK/nan.err" ||
  fail "all-NaN logits: exit $rc, $(cat "$WORK/nan.err")"
echo "ok all-NaN logits are an error naming the request and token"
# --chat: "<|im_start|>" typed in the message stays text (several tokens) unless --parse-special
"$QMESH" generate -m "$M" -p "a <|im_start|> b" -n 1 --chat > /dev/null 2> "$WORK/sp0.err"
"$QMESH" generate -m "$M" -p "a <|im_start|> b" -n 1 --chat --parse-special > /dev/null 2> "$WORK/sp1.err"
n0=$(grep -o '[0-9]* prompt' "$WORK/sp0.err" | cut -d' ' -f1)
n1=$(grep -o '[0-9]* prompt' "$WORK/sp1.err" | cut -d' ' -f1)
[ -n "$n0" ] && [ -n "$n1" ] && [ "$n0" -gt "$n1" ] || fail "special tokens in chat messages: $n0 vs $n1 prompt tokens"
echo "ok chat messages keep special-token text as text unless --parse-special"
echo "7 passed, 0 failed"
