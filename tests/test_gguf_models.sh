#!/usr/bin/env bash
# The real GGUF models (scripts/fetch_models.sh puts them in models/): the same logits, byte for
# byte, on every mesh, inside a batch and on every ISA, in the exact mode (f32 activations on
# exactly dequantized weights) and in the fast mode (--activations q8). Skipped (exit 77) when
# the models are absent; QMESH_MODELS names another folder that holds them.
set -euo pipefail
: "${QMESH:?}" "${SRC:?}" "${WORK:?}"
rm -rf "$WORK"; mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
dir="${QMESH_MODELS:-$SRC/models}"
models=()
for f in qwen2.5-coder-0.5b-instruct-q4_k_m.gguf qwen2.5-coder-1.5b-instruct-q4_k_m.gguf; do
  [ -f "$dir/$f" ] && models+=("$dir/$f")
done
if [ ${#models[@]} -eq 0 ]; then
  echo "SKIP: no real GGUF model in $dir (run scripts/fetch_models.sh, or set QMESH_MODELS)"
  exit 77
fi
# Under the sanitizers the larger meshes take minutes: fewer of them there.
meshes="1x2 2x2 2x4 1x3 1x7 1x8 8x4 1x32"
dm="1x2 1x4"
[ -n "${QMESH_SANITIZE_BUILD:-}" ] && meshes="1x2 1x3" && dm="1x2"
# "def fib(n):\n    return" and two other short sequences (a batch of three)
ids="750 15801 1445 982 262 470"
printf '%s\n' "9707 11 1879 0" "$ids" "151644 872 198 5501" > "$WORK/batch.txt"
pass=0
for M in "${models[@]}"; do
  name=$(basename "$M" .gguf)
  # the 1.5B model on every mesh too (6-7 s a run on 2 cores), but not on the scalar ISA (slow)
  mm="$meshes"; isas="scalar avx2 avx512 avx512vnni"
  case "$name" in *1.5b*) isas="avx2 avx512 avx512vnni"; [ -n "${QMESH_SANITIZE_BUILD:-}" ] && mm="1x3";; esac
  for act in f32 q8; do
    base="$WORK/$name.$act"
    "$QMESH" logits -m "$M" --ids "$ids" --activations $act --out "$base.1x1.npy"
    for m in $mm; do
      "$QMESH" logits -m "$M" --ids "$ids" --activations $act --mesh "$m" --out "$base.$m.npy"
      cmp -s "$base.1x1.npy" "$base.$m.npy" || fail "$name ($act): logits on $m differ from 1x1"
      pass=$((pass + 1))
    done
    for m in 1x1 1x3; do
      "$QMESH" logits -m "$M" --ids-file "$WORK/batch.txt" --activations $act --mesh "$m" --out "$base.b3.$m.npy"
      cmp -s "$base.1x1.npy" "$base.b3.$m.1.npy" || fail "$name ($act): sequence 1 of a batch of 3 differs ($m)"
      pass=$((pass + 1))
    done
    # the batch's 14-token step with AVX2 (its kernels for 9 to 16 tokens), where the CPU has it
    if "$QMESH" logits -m "$M" --ids-file "$WORK/batch.txt" --activations $act --isa avx2 --out "$base.b3.avx2.npy" \
      2>/dev/null; then
      cmp -s "$base.1x1.npy" "$base.b3.avx2.1.npy" || fail "$name ($act): sequence 1 of a batch of 3 differs (avx2)"
      pass=$((pass + 1))
    fi
    "$QMESH" logits -m "$M" --ids "$ids" --activations $act --step-tokens 4 --threads 1 --out "$base.step.npy"
    cmp -s "$base.1x1.npy" "$base.step.npy" || fail "$name ($act): --step-tokens 4 --threads 1 differs"
    # one token a step (the decode kernels) on shards that start inside a superblock (1x2: half of
    # the 1.5B's 35 down_proj superblocks each; 1x4: quarters), with AVX2 too where the CPU has it;
    # the Q5_0 matrices (0.5B) repacked to Q8_0 or not (auto: repacked with AVX2 in the exact mode)
    for spec in "auto auto" "avx2 auto" "avx2 off" "auto on"; do
      set -- $spec
      isa=$1 rp=$2
      for m in $dm; do
        "$QMESH" logits -m "$M" --ids "$ids" --activations $act --step-tokens 1 --isa $isa --repack $rp --mesh "$m" \
          --out "$base.dec.$isa.$m.npy" 2>/dev/null || continue
        cmp -s "$base.1x1.npy" "$base.dec.$isa.$m.npy" ||
          fail "$name ($act): --step-tokens 1 --isa $isa --repack $rp on $m differs"
        pass=$((pass + 1))
      done
    done
    for isa in $isas; do
      if "$QMESH" logits -m "$M" --ids "$ids" --activations $act --isa $isa --out "$base.$isa.npy" 2>/dev/null; then
        cmp -s "$base.1x1.npy" "$base.$isa.npy" || fail "$name ($act): --isa $isa differs"
        pass=$((pass + 1))
      fi
    done
    echo "ok $name ($act): identical on 1x1 $mm, in a batch of 3 (also with avx2), at step 4, a token a step on $dm (repacked and not), on ISAs $isas"
  done
done
echo "$pass passed, 0 failed"
