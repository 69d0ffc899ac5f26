#!/usr/bin/env bash
# Parity with Hugging Face transformers: for every fixture folder in tests/fixtures/ (made by
# scripts/make_fixtures.py) and every line k of its ids.txt, run
#   $QMESH logits -m <fixture> --ids "<ids>" --out $WORK/x.npy
# and compare with logits_<k>.npy: max|qmesh - ref| / max|ref| must be <= PARITY_TOL (1e-5: the issue asks for 1e-4 "or tighter where reached"; we reach ~1.5e-6).
#
# Environment (set by CTest): QMESH, SRC, WORK, NPY_COMPARE. Optional:
#   PARITY_TOL=1e-5             relative tolerance
#   PARITY_MESHES="1x1 1x3 2x2" also run each case with --mesh M (default: no --mesh flag)
#   PARITY_ARGS="..."           extra arguments for qmesh logits
#   PARITY_FIXTURES="a b"       only these fixtures
set -u
: "${SRC:?SRC (repo root) not set}"
: "${QMESH:?QMESH (the qmesh program) not set}"
WORK=${WORK:-$(mktemp -d)}
TOL=${PARITY_TOL:-1e-5}
FIXDIR="$SRC/tests/fixtures"
mkdir -p "$WORK"

if [ -z "${NPY_COMPARE:-}" ] || [ ! -x "${NPY_COMPARE}" ]; then
    # Run by hand without CTest: build the compare tool on the spot.
    NPY_COMPARE="$WORK/npy_compare"
    ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -o "$NPY_COMPARE" "$SRC/tests/tools/npy_compare.c" -lm || {
        echo "FAIL: cannot build npy_compare"; exit 1; }
fi
[ -x "$QMESH" ] || { echo "FAIL: QMESH=$QMESH is not an executable"; exit 1; }

meshes=("")
if [ -n "${PARITY_MESHES:-}" ]; then
    read -r -a meshes <<< "$PARITY_MESHES"
fi

nfail=0
ncase=0
summary=()
for dir in "$FIXDIR"/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    [ -f "$dir/ids.txt" ] || continue
    if [ -n "${PARITY_FIXTURES:-}" ] && [[ " $PARITY_FIXTURES " != *" $name "* ]]; then continue; fi
    for mesh in "${meshes[@]}"; do
        meshargs=()
        label=$name
        if [ -n "$mesh" ]; then meshargs=(--mesh "$mesh"); label="$name mesh $mesh"; fi
        worst=0
        k=0
        while IFS= read -r ids || [ -n "$ids" ]; do
            [ -n "$ids" ] || { k=$((k + 1)); continue; }
            ref="$dir/logits_$k.npy"
            out="$WORK/x.npy"
            rm -f "$out"
            ncase=$((ncase + 1))
            # shellcheck disable=SC2086
            if ! "$QMESH" logits -m "$dir" --ids "$ids" --out "$out" "${meshargs[@]}" ${PARITY_ARGS:-} \
                    > "$WORK/qmesh.log" 2>&1; then
                echo "FAIL parity $label line $k: qmesh logits exited with an error:"
                tail -n 20 "$WORK/qmesh.log" | sed 's/^/    /'
                nfail=$((nfail + 1))
                k=$((k + 1))
                continue
            fi
            res=$("$NPY_COMPARE" "$out" "$ref" --rel "$TOL" 2>&1)
            rc=$?
            abs=$(sed -n 's/.*max_abs_err=\([^ ]*\).*/\1/p' <<< "$res" | head -n 1)
            rel=$(sed -n 's/.*[^_]rel=\([^ ]*\).*/\1/p' <<< "$res" | head -n 1)
            if [ $rc -eq 0 ]; then
                echo "parity $label line $k: max_abs_err=$abs rel=$rel ok"
                worst=$(awk -v a="$worst" -v b="$rel" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
            else
                echo "FAIL parity $label line $k (ids: $ids): tolerance $TOL"
                sed 's/^/    /' <<< "$res"
                nfail=$((nfail + 1))
                worst=inf
            fi
            k=$((k + 1))
        done < "$dir/ids.txt"
        summary+=("parity $label: largest rel err over $k lines = $worst")
    done
done

echo "----"
for s in "${summary[@]}"; do echo "$s"; done
if [ $ncase -eq 0 ]; then
    echo "FAIL: no fixtures found under $FIXDIR"
    exit 1
fi
if [ $nfail -ne 0 ]; then
    echo "FAIL: $nfail of $ncase parity cases"
    exit 1
fi
echo "all $ncase parity cases within rel $TOL"
