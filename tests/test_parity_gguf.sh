#!/usr/bin/env bash
# Parity of the real GGUF models with transformers: tests/fixtures/gguf/<model>/ holds, for each
# line k of ids.txt, a subset of the logit columns (cols.npy) that transformers computed in float32
# on the GGUF's weights dequantized by gguf-py (scripts/make_gguf_fixtures.py), and each row's
# max |logit|. qmesh's exact mode must agree within PARITY_TOL (1e-5; the issue asks for 1e-4)
# relative to max |logit|, row by row. The fast mode (--activations q8) is measured and printed,
# not asserted. Skipped (77) when the models are absent (scripts/fetch_models.sh; QMESH_MODELS).
set -euo pipefail
: "${QMESH:?}" "${SRC:?}" "${WORK:?}" "${NPY_COMPARE:?}"
rm -rf "$WORK"; mkdir -p "$WORK"
TOL=${PARITY_TOL:-1e-5}
models="${QMESH_MODELS:-$SRC/models}"
ran=0
for F in "$SRC"/tests/fixtures/gguf/*/; do
  F=${F%/}
  name=$(basename "$F")
  M="$models/$name.gguf"
  [ -f "$M" ] || { echo "skip $name: $M is absent"; continue; }
  k=0
  while IFS= read -r ids || [ -n "$ids" ]; do
    "$QMESH" logits -m "$M" --ids "$ids" --out "$WORK/x.npy"
    echo -n "$name line $k, exact: "
    "$NPY_COMPARE" "$WORK/x.npy" "$F/logits_cols_$k.npy" --cols "$F/cols.npy" --scale "$F/max_abs_$k.npy" \
      --rel "$TOL" || { echo "FAIL: $name line $k differs from transformers beyond $TOL"; exit 1; }
    "$QMESH" logits -m "$M" --ids "$ids" --activations q8 --out "$WORK/q.npy"
    echo -n "$name line $k, fast mode (q8, not asserted): "
    "$NPY_COMPARE" "$WORK/q.npy" "$F/logits_cols_$k.npy" --cols "$F/cols.npy" --scale "$F/max_abs_$k.npy" \
      --rel 1 || true
    ran=$((ran + 1))
    k=$((k + 1))
  done < "$F/ids.txt"
done
if [ "$ran" -eq 0 ]; then
  echo "SKIP: no real GGUF model in $models (run scripts/fetch_models.sh, or set QMESH_MODELS)"
  exit 77
fi
echo "$ran passed, 0 failed"
