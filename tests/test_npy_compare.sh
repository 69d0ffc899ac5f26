#!/usr/bin/env bash
# Self-test of tests/tools/npy_compare (the tool test_parity.sh relies on), on the fixture logits.
set -u
: "${SRC:?}"
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
if [ -z "${NPY_COMPARE:-}" ] || [ ! -x "${NPY_COMPARE}" ]; then
    NPY_COMPARE="$WORK/npy_compare"
    ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -o "$NPY_COMPARE" "$SRC/tests/tools/npy_compare.c" -lm || exit 1
fi
N=$NPY_COMPARE
fail=0
expect() { # expect RC description command...
    local want=$1 what=$2
    shift 2
    "$@" > "$WORK/out.txt" 2>&1
    local got=$?
    if [ $got -ne "$want" ]; then
        echo "FAIL: $what: exit $got, expected $want"
        sed 's/^/    /' "$WORK/out.txt"
        fail=1
    else
        echo "ok: $what (exit $got)"
    fi
}
# Overwrite one byte at offset $2 of file $1 with value $3 (octal).
# shellcheck disable=SC2059
poke() { printf "\\$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

refs=("$SRC"/tests/fixtures/*/logits_2.npy)
others=("$SRC"/tests/fixtures/*/logits_1.npy)
ref=${refs[0]}
other=${others[0]}
[ -f "$ref" ] || { echo "FAIL: no fixtures"; exit 1; }
size=$(stat -c %s "$ref")

expect 0 "identical files, --exact" "$N" "$ref" "$ref" --exact
expect 0 "identical files, --rel 0" "$N" "$ref" "$ref" --rel 0
expect 2 "different shapes" "$N" "$other" "$ref"
expect 2 "missing file" "$N" "$WORK/missing.npy" "$ref"
expect 2 "no arguments" "$N"
head -c 64 "$ref" > "$WORK/trunc.npy"
expect 2 "truncated file" "$N" "$WORK/trunc.npy" "$ref"
printf 'not a numpy file at all' > "$WORK/junk.npy"
expect 2 "not an npy file" "$N" "$WORK/junk.npy" "$ref"

# The last float: its lowest mantissa byte changes the value by ~1 ulp, its top byte by a lot.
cp "$ref" "$WORK/ulp.npy"
lo=$(od -An -tu1 -j $((size - 4)) -N1 "$ref" | tr -d ' ')
poke "$WORK/ulp.npy" $((size - 4)) "$(printf '%03o' $(((lo + 1) % 256)))"
expect 0 "1-ulp change within --rel 1e-4" "$N" "$WORK/ulp.npy" "$ref"
expect 1 "1-ulp change fails --exact" "$N" "$WORK/ulp.npy" "$ref" --exact
cp "$ref" "$WORK/big.npy"
hi=$(od -An -tu1 -j $((size - 1)) -N1 "$ref" | tr -d ' ')
poke "$WORK/big.npy" $((size - 1)) "$(printf '%03o' $((hi ^ 0x20)))"
expect 1 "large change fails --rel 1e-4" "$N" "$WORK/big.npy" "$ref"
cp "$ref" "$WORK/nan.npy"
poke "$WORK/nan.npy" $((size - 1)) 377; poke "$WORK/nan.npy" $((size - 2)) 377
expect 1 "NaN in result fails" "$N" "$WORK/nan.npy" "$ref"
[ $fail -eq 0 ] && echo "npy_compare self-test passed"
exit $fail
