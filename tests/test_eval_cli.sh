#!/usr/bin/env bash
# qmesh eval: extract on stdin, report and compare on hand-made results files, and bad input
# refused with a clear message before any work (no model needed).
set -u
: "${QMESH:?QMESH (the qmesh program) is not set}" "${WORK:=$(mktemp -d)}" "${DATA:=$(dirname "$0")/../../shared/data}"
rm -rf "$WORK" && mkdir -p "$WORK"
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got [$2], expected [$3]"; fi; }

# ---- --help everywhere
for sub in gsm8k extract compare report; do
    if "$QMESH" eval $sub --help | grep -q "usage: qmesh eval $sub"; then ok "eval $sub --help"; else bad "eval $sub --help"; fi
done

# ---- extract
got=$(printf '%s\n' \
    '{"completion": "So 9 * 2 = 18. The answer is 18."}' \
    '{"completion": "The answer is: $1,234."}' \
    '{"completion": "Step 1,234 then 5.\n#### 72"}' \
    '{"completion": "It fell to -0.25 degrees, then rose 50%."}' \
    '{"completion": "He has 007 cars. It weighs 18.00kg."}' \
    '{"completion": "no number"}' \
    '' \
    '{"completion": "The answer is therefore 9."}' | "$QMESH" eval extract)
want='{"strict": "18", "flex": "18"}
{"strict": "1234", "flex": "1234"}
{"strict": "72", "flex": "72"}
{"strict": null, "flex": "50"}
{"strict": null, "flex": "18"}
{"strict": null, "flex": null}
{"strict": null, "flex": "9"}'
check "extract" "$got" "$want"
if echo 'not json' | "$QMESH" eval extract 2>"$WORK/err" >/dev/null; then bad "extract bad input accepted"
elif grep -q "stdin:1" "$WORK/err"; then ok "extract bad input"; else bad "extract bad input message: $(cat "$WORK/err")"; fi

# ---- hand-made results files
line() { # index completion strict_correct flex_correct gen_tokens run t_ms mesh batch
    printf '{"index":%d,"question":"q%d","gold":"1","completion":"%s","strict":"1","flex":"1","strict_correct":%s,"flex_correct":%s,"prompt_tokens":10,"gen_tokens":%d,"ms":5,"mesh":"%s","batch":%d,"run":%d,"t_ms":%d}\n' \
        "$1" "$1" "$2" "$3" "$4" "$5" "$8" "$9" "$6" "$7"
}
{ line 0 "a" true true 10 1 1000 1x1 1; line 1 "b" false true 10 1 2000 1x1 1
  line 2 "c" true true 10 1 3000 1x1 1; line 3 "d" false false 10 1 4000 1x1 1; } > "$WORK/A.jsonl"
{ line 3 "d" false false 20 1 500 2x4 8; line 1 "b" false true 20 1 1000 2x4 8
  line 0 "a" true true 20 1 1500 2x4 8; line 2 "X" true true 20 1 2000 2x4 8; } > "$WORK/B.jsonl"
cp "$WORK/A.jsonl" "$WORK/A2.jsonl"

out=$("$QMESH" eval compare "$WORK/A.jsonl" "$WORK/B.jsonl")
last=$(echo "$out" | tail -1)
case "$last" in *'"common": 4, "identical": 3'*'"first_diff": 2'*'"a_strict_acc": 0.500000, "a_flex_acc": 0.750000'*) ok "compare counts";;
    *) bad "compare: $out";; esac
if "$QMESH" eval compare "$WORK/A.jsonl" "$WORK/B.jsonl" --require-identical >/dev/null 2>&1; then bad "compare --require-identical passed on different files"; else ok "compare --require-identical fails"; fi
if "$QMESH" eval compare "$WORK/A.jsonl" "$WORK/A2.jsonl" --require-identical >/dev/null; then ok "compare identical"; else bad "compare identical"; fi

rep=$("$QMESH" eval report "$WORK/A.jsonl" "$WORK/B.jsonl")
echo "$rep"
echo "$rep" | grep "A.jsonl" | grep -q "1x1 .* 4  0.5000 \[0.1500, 0.8500\] *0.7500 \[0.3006, 0.9544\] *10.00 *4.00$" && ok "report A" || bad "report A"
echo "$rep" | grep "B.jsonl" | grep -q "2x4 *8 *4  0.5000 .* 0.7500 .* 40.00 *2.00$" && ok "report B" || bad "report B"
if command -v gnuplot >/dev/null; then
    if "$QMESH" eval report "$WORK/A.jsonl" "$WORK/B.jsonl" --png "$WORK/r.png" >/dev/null && [ -s "$WORK/r.png" ] &&
        head -c 4 "$WORK/r.png" | grep -q PNG; then ok "report --png"; else bad "report --png"; fi
else
    echo "skip report --png: gnuplot not installed"
fi
echo "$rep" | grep -q "token limit" && bad "report: a token-limit note without length stops" || ok "report: no length stops, no note"
# lines that stopped at the token limit ("stop": "length") are counted in a note under the table
{ printf '{"index":0,"completion":"a","strict_correct":true,"flex_correct":true,"stop":"length"}\n'
  printf '{"index":1,"completion":"b","strict_correct":true,"flex_correct":true,"stop":"eos"}\n'
  printf '{"index":2,"completion":"c","strict_correct":false,"flex_correct":false,"stop":"length"}\n'; } > "$WORK/cut.jsonl"
"$QMESH" eval report "$WORK/cut.jsonl" | grep -q "cut.jsonl: 2 of 3 completions stopped at the token limit" &&
    ok "report: length stops noted" || bad "report: length stops: $("$QMESH" eval report "$WORK/cut.jsonl")"
printf '{"index":0,"completion":"a","strict_correct":true,"flex_correct":true,"stop":5}\n' > "$WORK/badstop.jsonl"
if "$QMESH" eval report "$WORK/badstop.jsonl" 2>/dev/null >/dev/null; then bad "report accepted a stop that is not a string"
else ok "report: a stop that is not a string is a bad line"; fi
printf '{"index":0,"completion":"a","strict_correct":true,"flex_correct":true}\nnot json\n' > "$WORK/bad.jsonl"
if "$QMESH" eval report "$WORK/bad.jsonl" 2>"$WORK/err" >/dev/null; then bad "report accepted a bad file"
elif grep -q "bad.jsonl:2" "$WORK/err"; then ok "report bad file"; else bad "report bad file message: $(cat "$WORK/err")"; fi

# ---- bad input for eval gsm8k: refused before any work, with a clear message
mkdir -p "$WORK/model"   # no config.json: unreadable
printf '{"question": "What is 1+1?", "answer": "#### 2"}\n' > "$WORK/good.jsonl"
printf 'question,answer\nwhat,2\n' > "$WORK/notjsonl.csv"
printf '{"question": "ok?", "answer": "#### 1"}\n{"answer": "#### 2"}\n' > "$WORK/noq.jsonl"
expect_fail() { # name pattern args...
    local name=$1 pat=$2; shift 2
    "$QMESH" eval gsm8k "$@" >"$WORK/out" 2>"$WORK/err"
    local rc=$?
    if [ $rc -ne 0 ] && grep -q -- "$pat" "$WORK/err"; then ok "$name"
    else bad "$name (rc $rc): $(cat "$WORK/err")"; fi
}
G=(--exemplars "$DATA/gsm8k/cot8_exemplars.jsonl")
expect_fail "data not JSONL" "notjsonl.csv:1: not a JSON object" -m "$WORK/model" --data "$WORK/notjsonl.csv" --out "$WORK/o1.jsonl" "${G[@]}"
expect_fail "line without question" 'noq.jsonl:2: no "question"' -m "$WORK/model" --data "$WORK/noq.jsonl" --out "$WORK/o1.jsonl" "${G[@]}"
expect_fail "missing data file" "cannot read data file" -m "$WORK/model" --data "$WORK/none.jsonl" --out "$WORK/o1.jsonl" "${G[@]}"
expect_fail "unwritable --out" "cannot be created" -m "$WORK/model" --data "$WORK/good.jsonl" --out "$WORK/no/such/dir/o.jsonl" "${G[@]}"
expect_fail "unreadable model" "cannot read model" -m "$WORK/model" --data "$WORK/good.jsonl" --out "$WORK/o1.jsonl" "${G[@]}"
[ -e "$WORK/o1.jsonl" ] && bad "a failed run created --out" || ok "no --out created by failed runs"
expect_fail "missing -m" "required" --data "$WORK/good.jsonl" --out "$WORK/o1.jsonl"
expect_fail "bad --shots" "shots" -m "$WORK/model" --data "$WORK/good.jsonl" --out "$WORK/o1.jsonl" --shots 9
expect_fail "bad --mesh" "mesh" -m "$WORK/model" --data "$WORK/good.jsonl" --out "$WORK/o1.jsonl" --mesh 0x4
expect_fail "--resume with --force" "exclude" -m "$WORK/model" --data "$WORK/good.jsonl" --out "$WORK/o1.jsonl" --resume --force
expect_fail "bad exemplars" "no \"rationale\"" -m "$WORK/model" --data "$WORK/good.jsonl" --out "$WORK/o1.jsonl" --exemplars "$WORK/good.jsonl"

cp "$WORK/A.jsonl" "$WORK/exists.jsonl"
sum_before=$(cksum < "$WORK/exists.jsonl")
expect_fail "existing --out refused" "already exists: pass --resume" -m "$WORK/model" --data "$WORK/good.jsonl" --out "$WORK/exists.jsonl" "${G[@]}"
check "existing --out untouched" "$(cksum < "$WORK/exists.jsonl")" "$sum_before"
# --resume on a file from another data file is refused too (index 0 holds another question)
expect_fail "resume with other data" "another question" -m "$WORK/model" --data "$WORK/good.jsonl" --out "$WORK/exists.jsonl" --resume "${G[@]}"
check "resumed-and-refused --out untouched" "$(cksum < "$WORK/exists.jsonl")" "$sum_before"

if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all eval CLI checks passed"
