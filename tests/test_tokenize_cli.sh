#!/usr/bin/env bash
# qmesh tokenize / detokenize: ids of a few texts, --jsonl, round trips, and the error exits.
# Env: QMESH (the program), DATA (shared data folder), WORK (scratch folder).
set -euo pipefail
: "${QMESH:?QMESH must name the qmesh program}" "${DATA:?DATA must name the shared data folder}" "${WORK:?WORK must name a scratch folder}"
mkdir -p "$WORK"
TOK="$DATA/tokenizers/qwen2.5"
fails=0

check() { # name, expected, actual
    if [[ "$2" == "$3" ]]; then
        echo "ok   $1"
    else
        echo "FAIL $1: expected [$2], got [$3]"
        fails=$((fails + 1))
    fi
}

# Runs a command that must fail with the given exit code and a message containing a pattern.
expect_exit() { # name, code, pattern, command...
    local name=$1 code=$2 pattern=$3 rc=0
    shift 3
    "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    if [[ $rc -ne $code ]]; then
        echo "FAIL $name: exit $rc, expected $code"; cat "$WORK/err"; fails=$((fails + 1))
    elif ! grep -q -- "$pattern" "$WORK/err"; then
        echo "FAIL $name: stderr lacks '$pattern':"; cat "$WORK/err"; fails=$((fails + 1))
    else
        echo "ok   $name"
    fi
}

# Plain text -> ids (folder and file both accepted).
check "hello" "9707 11 1879 0" "$(printf 'Hello, world!' | "$QMESH" tokenize --tokenizer "$TOK")"
check "hello file" "9707 11 1879 0" "$(printf 'Hello, world!' | "$QMESH" tokenize --tokenizer="$TOK/tokenizer.json")"
check "crlf" "64 319 65" "$(printf 'a\r\nb' | "$QMESH" tokenize --tokenizer "$TOK")"
check "special" "151644 872 198" "$(printf '<|im_start|>user\n' | "$QMESH" tokenize --tokenizer "$TOK")"
check "empty" "" "$(printf '' | "$QMESH" tokenize --tokenizer "$TOK")"

# --no-special: special-token strings are plain text ("<" "|" "im" "_start" "|" ">"), as Hugging
# Face's split_special_tokens gives them; added tokens that are not special still match.
check "no-special" "27 91 318 4906 91 29 872 198" "$(printf '<|im_start|>user\n' | "$QMESH" tokenize --tokenizer "$TOK" --no-special)"
check "no-special tool_call" "151657 64 151658" "$(printf '<tool_call>a</tool_call>' | "$QMESH" tokenize --tokenizer "$TOK" --no-special)"
printf '{"text":"<|im_start|>user"}\n{"text":"<|endoftext|>"}\n' >"$WORK/special.jsonl"
check "jsonl default special" '{"ids":[151644,872]}' "$("$QMESH" tokenize --tokenizer "$TOK" --jsonl <"$WORK/special.jsonl" | head -n 1)"
"$QMESH" tokenize --tokenizer "$TOK" --jsonl --no-special <"$WORK/special.jsonl" >"$WORK/nospecial.jsonl"
check "jsonl no-special" '{"ids":[27,91,318,4906,91,29,872]}' "$(head -n 1 "$WORK/nospecial.jsonl")"
if grep -q '15164[3-9]\|1516[5-9][0-9]' "$WORK/nospecial.jsonl"; then
    echo "FAIL jsonl no-special: a control id came out"; fails=$((fails + 1))
else
    echo "ok   jsonl no-special: no control ids"
fi
printf 'x<|im_end|>\n<|endoftext|>' >"$WORK/sp.txt"
"$QMESH" tokenize --tokenizer "$TOK" --no-special <"$WORK/sp.txt" | "$QMESH" detokenize --tokenizer "$TOK" >"$WORK/sp.back"
if cmp -s "$WORK/sp.txt" "$WORK/sp.back"; then echo "ok   no-special round trip"; else echo "FAIL no-special round trip"; fails=$((fails + 1)); fi

# ids -> text, exactly (no newline added).
printf '9707 11 1879 0\n' | "$QMESH" detokenize --tokenizer "$TOK" >"$WORK/text"
check "detokenize" "Hello, world!" "$(cat "$WORK/text")"
check "detokenize bytes" "13" "$(wc -c <"$WORK/text" | tr -d ' ')"

# Round trip of a multi-line, multi-script text, byte for byte.
printf 'line one\n\n  emoji 🤖 and 👍🏽\tcafé 中文 $1,234.56\n<|im_end|>\n' >"$WORK/in.txt"
"$QMESH" tokenize --tokenizer "$TOK" <"$WORK/in.txt" >"$WORK/ids.txt"
"$QMESH" detokenize --tokenizer "$TOK" <"$WORK/ids.txt" >"$WORK/back.txt"
if cmp -s "$WORK/in.txt" "$WORK/back.txt"; then echo "ok   round trip"; else echo "FAIL round trip"; fails=$((fails + 1)); fi

# --jsonl: the first reference cases, in order.
head -n 20 "$TOK/encode_cases.jsonl" >"$WORK/cases.jsonl"
"$QMESH" tokenize --tokenizer "$TOK" --jsonl <"$WORK/cases.jsonl" >"$WORK/got.jsonl"
ids_of() { sed 's/.*"ids": *\(\[[^]]*\]\)}$/\1/; s/ //g' "$1"; }
if [[ "$(wc -l <"$WORK/got.jsonl")" -eq 20 && "$(ids_of "$WORK/cases.jsonl")" == "$(ids_of "$WORK/got.jsonl")" ]]; then
    echo "ok   jsonl"
else
    echo "FAIL jsonl"; fails=$((fails + 1))
fi

# Errors: bad JSONL line (with its number), bad ids, bad UTF-8, bad tokenizer path, usage.
expect_exit "jsonl bad line" 1 "line 2" bash -c "printf '{\"text\":\"a\"}\nnot json\n' | \"\$0\" tokenize --tokenizer \"\$1\" --jsonl" "$QMESH" "$TOK"
expect_exit "jsonl no text" 1 "line 1" bash -c "printf '{\"txt\":\"a\"}\n' | \"\$0\" tokenize --tokenizer \"\$1\" --jsonl" "$QMESH" "$TOK"
expect_exit "non-integer id" 1 "not an integer" bash -c "echo '1 2 x3' | \"\$0\" detokenize --tokenizer \"\$1\"" "$QMESH" "$TOK"
expect_exit "id out of range" 1 "out of range" bash -c "echo '1 151665' | \"\$0\" detokenize --tokenizer \"\$1\"" "$QMESH" "$TOK"
expect_exit "negative id" 1 "out of range" bash -c "echo '-1' | \"\$0\" detokenize --tokenizer \"\$1\"" "$QMESH" "$TOK"
expect_exit "huge id" 1 "out of range" bash -c "echo '5 99999999999999999999999' | \"\$0\" detokenize --tokenizer \"\$1\"" "$QMESH" "$TOK"
expect_exit "int-max id" 1 "ids 0..151664" bash -c "echo '2147483647' | \"\$0\" detokenize --tokenizer \"\$1\"" "$QMESH" "$TOK"
expect_exit "no-special detok" 2 "unknown option" "$QMESH" detokenize --tokenizer "$TOK" --no-special
expect_exit "invalid utf-8" 1 "UTF-8" bash -c "printf 'ab\\xff' | \"\$0\" tokenize --tokenizer \"\$1\"" "$QMESH" "$TOK"
expect_exit "missing tokenizer" 1 "cannot open" bash -c "\"\$0\" tokenize --tokenizer /nonexistent </dev/null" "$QMESH"
expect_exit "unknown flag" 2 "unknown option" "$QMESH" tokenize --tokenizer "$TOK" --bogus
expect_exit "unknown flag detok" 2 "unknown option" "$QMESH" detokenize --tokenizer "$TOK" --jsonl
expect_exit "no tokenizer" 2 "required" "$QMESH" tokenize

"$QMESH" tokenize --help >"$WORK/help" && grep -q "usage: qmesh tokenize" "$WORK/help" && grep -q -- "--no-special" "$WORK/help" &&
    grep -q "By default special tokens" "$WORK/help" && echo "ok   tokenize --help" ||
    { echo "FAIL tokenize --help"; fails=$((fails + 1)); }
"$QMESH" detokenize --help >"$WORK/help" && grep -q "usage: qmesh detokenize" "$WORK/help" && echo "ok   detokenize --help" ||
    { echo "FAIL detokenize --help"; fails=$((fails + 1)); }

if [[ $fails -ne 0 ]]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all tokenize CLI checks passed"
