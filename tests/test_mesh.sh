#!/usr/bin/env bash
# Tensor parallelism is exact: the same logits, byte for byte, on every mesh, batch, step size and
# kernel ISA; greedy generation gives the same text; malformed meshes are refused clearly.
set -euo pipefail
: "${QMESH:?}" "${SRC:?}" "${WORK:?}"
rm -rf "$WORK"; mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
pass=0

# 1. logits on every mesh, for 28/4 heads (Qwen2.5-7B's ratio) and 14/2 heads (0.5B's ratio)
for fx in h28kv4_bf16 h14kv2_f32_tied; do
  F="$SRC/tests/fixtures/$fx"
  ids=$(sed -n 4p "$F/ids.txt")
  "$QMESH" logits -m "$F" --ids "$ids" --out "$WORK/$fx.1x1.npy"
  for m in 1x2 2x2 2x4 1x3 1x7 1x8 8x4 1x32; do
    "$QMESH" logits -m "$F" --ids "$ids" --out "$WORK/$fx.$m.npy" --mesh "$m"
    cmp -s "$WORK/$fx.1x1.npy" "$WORK/$fx.$m.npy" || fail "$fx: logits on $m differ from 1x1"
    pass=$((pass + 1))
  done
  # the step size (prefill chunking) and the thread count change no bit either
  "$QMESH" logits -m "$F" --ids "$ids" --out "$WORK/$fx.step.npy" --mesh 1x3 --step-tokens 5 --threads 1
  cmp -s "$WORK/$fx.1x1.npy" "$WORK/$fx.step.npy" || fail "$fx: --step-tokens 5 differs"
  # one token a step: no prompt chunk's tokens scored together over the positions before them
  "$QMESH" logits -m "$F" --ids "$ids" --out "$WORK/$fx.step1.npy" --mesh 1x2 --step-tokens 1 --threads 2
  cmp -s "$WORK/$fx.1x1.npy" "$WORK/$fx.step1.npy" || fail "$fx: --step-tokens 1 differs"
  # nor does pinning the threads (--pin: each device's team one thread per CPU)
  "$QMESH" logits -m "$F" --ids "$ids" --out "$WORK/$fx.pin.npy" --mesh 1x3 --threads 6 --pin
  cmp -s "$WORK/$fx.1x1.npy" "$WORK/$fx.pin.npy" || fail "$fx: --pin differs"
  # nor where the weights live: copied into huge pages (auto: on 1xC where the kernel has THP) or
  # read in place from the mapping
  for hp in "1x3 off" "2x4 on" "1x1 on" "1x1 off"; do
    set -- $hp
    "$QMESH" logits -m "$F" --ids "$ids" --out "$WORK/$fx.hp.npy" --mesh "$1" --huge-pages "$2"
    cmp -s "$WORK/$fx.1x1.npy" "$WORK/$fx.hp.npy" || fail "$fx: --mesh $1 --huge-pages $2 differs"
  done
  # every kernel ISA this CPU runs gives the same bits (one canonical reduction order)
  for isa in scalar avx2 avx512 avx512vnni; do
    if "$QMESH" logits -m "$F" --ids "$ids" --out "$WORK/$fx.$isa.npy" --isa "$isa" 2>/dev/null; then
      cmp -s "$WORK/$fx.1x1.npy" "$WORK/$fx.$isa.npy" || fail "$fx: --isa $isa differs"
      pass=$((pass + 1))
    fi
  done
  # 2. a sequence alone and inside a batch of 7 different sequences
  { sed -n 1,4p "$F/ids.txt"; sed -n 2,3p "$F/ids.txt"; echo "$ids"; } > "$WORK/batch7.txt"
  for m in 1x1 1x8; do
    "$QMESH" logits -m "$F" --ids-file "$WORK/batch7.txt" --out "$WORK/$fx.b7.$m.npy" --mesh "$m"
    cmp -s "$WORK/$fx.1x1.npy" "$WORK/$fx.b7.$m.3.npy" || fail "$fx: sequence 3 of a batch of 7 differs ($m)"
    cmp -s "$WORK/$fx.1x1.npy" "$WORK/$fx.b7.$m.6.npy" || fail "$fx: sequence 6 of a batch of 7 differs ($m)"
    pass=$((pass + 1))
  done
  echo "ok $fx: logits identical on 1x1 1x2 2x2 2x4 1x3 1x7 1x8 8x4 1x32, every ISA, step size, --pin, --huge-pages, batch of 7"
done

# 3. greedy generation: same text on every mesh, for random checkpoints with 28/4 and 14/2 heads
for shape in "28 4 112" "14 2 56"; do
  set -- $shape
  cat > "$WORK/cfg_$1.json" <<JSON
{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":151936,"hidden_size":$3,
 "intermediate_size":160,"num_hidden_layers":2,"num_attention_heads":$1,"num_key_value_heads":$2,
 "max_position_embeddings":4096,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"tie_word_embeddings":false,
 "hidden_act":"silu","use_sliding_window":false,"rope_scaling":null,"bos_token_id":151643,
 "eos_token_id":151643,"torch_dtype":"bfloat16"}
JSON
  M="$WORK/m$1"
  "$QMESH" random-model --config "$WORK/cfg_$1.json" --out "$M" --seed 7 2>/dev/null
  "$QMESH" generate -m "$M" -p "The capital of France is" -n 24 > "$WORK/gen_$1.1x1.txt" 2>/dev/null
  [ -s "$WORK/gen_$1.1x1.txt" ] || fail "no text generated"
  for m in 1x2 2x2 2x4 1x3 1x7 1x8 8x4 1x32; do
    "$QMESH" generate -m "$M" -p "The capital of France is" -n 24 --mesh "$m" > "$WORK/gen_$1.$m.txt" 2>/dev/null
    cmp -s "$WORK/gen_$1.1x1.txt" "$WORK/gen_$1.$m.txt" || fail "heads $1/$2: greedy text on $m differs"
    pass=$((pass + 1))
  done
  # sampling with a seed picks the same tokens across shards too
  "$QMESH" generate -m "$M" -p "Once upon a time" -n 16 --temp 0.9 --top-k 50 --top-p 0.9 --seed 5 > "$WORK/s1.txt" 2>/dev/null
  "$QMESH" generate -m "$M" -p "Once upon a time" -n 16 --temp 0.9 --top-k 50 --top-p 0.9 --seed 5 --mesh 1x7 > "$WORK/s7.txt" 2>/dev/null
  cmp -s "$WORK/s1.txt" "$WORK/s7.txt" || fail "heads $1/$2: seeded sampling differs on 1x7"
  echo "ok heads $1/$2: greedy text identical on 1x1 1x2 2x2 2x4 1x3 1x7 1x8 8x4 1x32; seeded sampling identical"
done

# 4. each device holds only its slices: at most 1/C of the weights plus the replicated norms and
#    one unit of each split (a query head, a KV head pair, an o_proj head, an MLP block, a vocab row)
d=112; hd=4; L=2; es=2
for m in 1x8 1x32 1x7; do
  C=${m#*x}
  json=$("$QMESH" bench -m "$WORK/m28" --mesh "$m" --prompt 4 --gen 2 2>/dev/null | tail -1)
  total=$(echo "$json" | sed 's/.*"weight_bytes_total":\([0-9]*\).*/\1/')
  dmax=$(echo "$json" | sed 's/.*"device_weight_bytes_max":\([0-9]*\).*/\1/')
  norms=$(( (2 * L + 1) * d * es ))
  rem=$(( L * ((hd * d + hd) + 2 * (hd * d + hd) + d * hd + 3 * 64 * d) * es + d * es ))
  bound=$(( total / C + norms + rem ))
  [ "$dmax" -le "$bound" ] || fail "$m: device holds $dmax weight bytes > bound $bound (total $total)"
  echo "ok $m: largest device holds $dmax of $total weight bytes (1/C = $((total / C)), bound $bound)"
  pass=$((pass + 1))
done

# 4b. bench's FLOP figures: one token's matmuls of m28 (d 112, 28 x 4 query and 4 x 4 KV columns,
#     f 160, 2 layers, lm_head 151936 x 112) are 2 x 17,181,696 = 0.0344 GFLOP; --peak measures
#     the threads' FMA peak
json=$("$QMESH" bench -m "$WORK/m28" --prompt 4 --gen 2 --peak 2>/dev/null | tail -1)
grep -q '"matmul_gflop_per_token":0.0344,' <<< "$json" || fail "bench: matmul_gflop_per_token wrong: $json"
for key in prefill_gflops fma_peak_gflops prefill_peak_ratio; do
  v=$(echo "$json" | sed -n "s/.*\"$key\":\([0-9.]*\).*/\1/p")
  awk -v v="${v:-0}" 'BEGIN { exit !(v > 0) }' || fail "bench --peak: $key missing or 0: $json"
done
# prefill_ms: the prefill run's time by part, every part named, the matmuls' parts not all 0
pre=$(echo "$json" | sed -n 's/.*"prefill_ms":{\([^}]*\)}.*/\1/p')
for part in norm qkv rope_kv attention o_proj gate_up down lm_head comm sample; do
  grep -q "\"$part\":[0-9.]*" <<< "$pre" || fail "bench: prefill_ms has no $part: $json"
done
echo "$pre" | tr ',' '\n' | awk -F: '$1 ~ /qkv|gate_up|down/ { s += $2 } END { exit !(s > 0) }' ||
  fail "bench: prefill_ms's matmul parts are all 0: $json"
echo "ok bench: matmul_gflop_per_token 0.0344, prefill_gflops, fma_peak_gflops and their ratio, prefill_ms reported"
pass=$((pass + 1))

# 4c. --huge-pages: on copies every device's weights (bench says how many bytes), off none; a bad
#     value is a usage error
json=$("$QMESH" bench -m "$WORK/m28" --mesh 1x2 --prompt 4 --gen 2 --huge-pages on 2>/dev/null | tail -1)
hb=$(echo "$json" | sed -n 's/.*"device_huge_bytes_max":\([0-9]*\).*/\1/p')
dw=$(echo "$json" | sed -n 's/.*"device_weight_bytes_max":\([0-9]*\).*/\1/p')
grep -q '"huge_pages":true' <<< "$json" || fail "--huge-pages on: bench says huge_pages is not true: $json"
[ "${hb:-0}" -gt $(( ${dw:-0} / 2 )) ] || fail "--huge-pages on: $hb bytes copied of a device's $dw"
json=$("$QMESH" bench -m "$WORK/m28" --prompt 4 --gen 2 --huge-pages off 2>/dev/null | tail -1)
grep -q '"huge_pages":false,"device_huge_bytes_max":0' <<< "$json" || fail "--huge-pages off copied: $json"
set +e
out=$("$QMESH" bench -m "$WORK/m28" --huge-pages maybe 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && grep -q "huge-pages" <<< "$out" || fail "--huge-pages maybe: exit $rc, $out"
echo "ok --huge-pages: on copies the weights ($hb of a device's $dw bytes), off none, a bad value refused"
pass=$((pass + 1))

# 5. bad meshes are refused before any work, with a message
for bad in 0x2 2x 3 1x0 axb 1x2x3 -1x2; do
  set +e
  out=$("$QMESH" logits -m "$SRC/tests/fixtures/h28kv4_bf16" --ids "1 2" --out "$WORK/bad.npy" --mesh "$bad" 2>&1)
  rc=$?
  set -e
  [ "$rc" = 2 ] || fail "--mesh $bad: exit $rc, expected 2"
  grep -q "mesh" <<< "$out" || fail "--mesh $bad: no message"
  [ ! -e "$WORK/bad.npy" ] || fail "--mesh $bad wrote output"
done
# a mesh whose KV cache cannot fit in memory is refused up front
set +e
out=$("$QMESH" generate -m "$WORK/m28" -p hi --mesh 8x32 --batch 4096 --ctx 4096 2>&1); rc=$?
set -e
[ "$rc" = 1 ] && grep -q "GB" <<< "$out" || fail "an oversized mesh was not refused clearly: $out"
echo "ok bad meshes refused"
echo "$pass passed, 0 failed"
