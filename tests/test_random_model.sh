#!/bin/bash
# qmesh random-model: the tiny preset works, is deterministic, shards load, bad usage is refused.
# Env: QMESH (the program), DATA (shared/data), WORK (scratch folder).
set -u
QMESH=${QMESH:?set QMESH to the qmesh program}
DATA=${DATA:?set DATA to shared/data}
WORK=${WORK:-$(mktemp -d)}
TOK="$DATA/tokenizers/qwen2.5"
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
# expect_fail NAME CODE NEEDLE -- command...: exit status CODE and NEEDLE in stderr
expect_fail() {
    local name=$1 code=$2 needle=$3; shift 4
    "$@" >"$WORK/out.txt" 2>"$WORK/err.txt"; local rc=$?
    if [ "$rc" = "$code" ] && grep -q -- "$needle" "$WORK/err.txt"; then ok "$name"
    else bad "$name (exit $rc, want $code; stderr: $(head -c 300 "$WORK/err.txt"))"; fi
}

check "--help" bash -c "'$QMESH' random-model --help | grep -q -- --preset"

t0=$(date +%s.%N)
check "tiny seed 1" "$QMESH" random-model --preset tiny --out "$WORK/a" --seed 1 --tokenizer "$TOK"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "     tiny preset took %.2f s\n", b - a }'
check "tiny seed 1 again (tokenizer from QMESH_DATA)" env QMESH_DATA="$DATA" "$QMESH" random-model --preset tiny --out "$WORK/b" --seed 1
check "tiny seed 2" "$QMESH" random-model --preset tiny --out "$WORK/c" --seed 2 --tokenizer "$TOK"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
    check "a/$f exists" test -s "$WORK/a/$f"
done
check "same seed, same bytes" cmp -s "$WORK/a/model.safetensors" "$WORK/b/model.safetensors"
check "other seed, other bytes" bash -c "! cmp -s '$WORK/a/model.safetensors' '$WORK/c/model.safetensors'"
check "tokenizer copied" cmp -s "$WORK/a/tokenizer.json" "$TOK/tokenizer.json"
check "config is Qwen2" grep -q '"Qwen2ForCausalLM"' "$WORK/a/config.json"
check "config model_type" grep -q '"model_type":[[:space:]]*"qwen2"' "$WORK/a/config.json"
check "config no sliding window" grep -q '"use_sliding_window":[[:space:]]*false' "$WORK/a/config.json"
size=$(stat -c %s "$WORK/a/model.safetensors")
check "tiny is a few MB to ~20 MB ($size bytes)" test "$size" -gt 2000000 -a "$size" -lt 40000000

expect_fail "refuses a non-empty --out" 1 "--force" -- "$QMESH" random-model --preset tiny --out "$WORK/a" --tokenizer "$TOK"
check "--force overwrites" "$QMESH" random-model --preset tiny --out "$WORK/a" --seed 1 --force --tokenizer "$TOK"
check "--force result unchanged" cmp -s "$WORK/a/model.safetensors" "$WORK/b/model.safetensors"

# shards: same tensors, same bytes, and an index naming the right shard for each
check "tiny --shards 3" "$QMESH" random-model --preset tiny --out "$WORK/s3" --seed 1 --shards 3 --tokenizer "$TOK"
check "3 shard files" test -s "$WORK/s3/model-00001-of-00003.safetensors" -a -s "$WORK/s3/model-00002-of-00003.safetensors" -a -s "$WORK/s3/model-00003-of-00003.safetensors" -a -s "$WORK/s3/model.safetensors.index.json"
check "no single file beside the shards" test ! -e "$WORK/s3/model.safetensors"
if command -v python3 >/dev/null; then
    check "shards match the single file, index is right" python3 - "$WORK/a" "$WORK/s3" <<'PY'
import json, struct, sys, os
def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n)); body = f.read()
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items()}
single = read(os.path.join(sys.argv[1], "model.safetensors"))
idx = json.load(open(os.path.join(sys.argv[2], "model.safetensors.index.json")))
wm = idx["weight_map"]
assert set(wm) == set(single), "index names differ"
shards = {f: read(os.path.join(sys.argv[2], f)) for f in set(wm.values())}
assert len(shards) == 3
for name, f in wm.items():
    assert shards[f][name] == single[name], name
assert sum(len(t[2]) for t in single.values()) == idx["metadata"]["total_size"]
print("     %d tensors in 3 shards" % len(wm))
PY
fi
# moving from shards to one file with --force must not leave the shards behind
check "--force from shards to one file" "$QMESH" random-model --preset tiny --out "$WORK/s3" --seed 1 --force --tokenizer "$TOK"
check "old shards removed" test ! -e "$WORK/s3/model-00001-of-00003.safetensors" -a ! -e "$WORK/s3/model.safetensors.index.json"

# --config and --dtype f32
cat >"$WORK/small.json" <<'JSON'
{"vocab_size": 151936, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
 "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 1024,
 "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "eos_token_id": [151645, 151643]}
JSON
check "--config --dtype f32" "$QMESH" random-model --config "$WORK/small.json" --dtype f32 --out "$WORK/f" --tokenizer "$TOK"
check "f32 config says float32" grep -q '"torch_dtype":[[:space:]]*"float32"' "$WORK/f/config.json"
check "f32 file has lm_head" grep -q -a 'lm_head.weight' "$WORK/f/model.safetensors"

# refusals
sed 's/"rms_norm_eps"/"use_sliding_window": true, "rms_norm_eps"/' "$WORK/small.json" >"$WORK/sliding.json"
expect_fail "sliding window config" 1 "sliding window" -- "$QMESH" random-model --config "$WORK/sliding.json" --out "$WORK/x1" --tokenizer "$TOK"
expect_fail "missing config" 1 "nothere.json" -- "$QMESH" random-model --config "$WORK/nothere.json" --out "$WORK/x2" --tokenizer "$TOK"
expect_fail "no --out" 2 "--out" -- "$QMESH" random-model --preset tiny
expect_fail "unknown preset" 2 "huge" -- "$QMESH" random-model --preset huge --out "$WORK/x3"
expect_fail "both preset and config" 2 "exactly one" -- "$QMESH" random-model --preset tiny --config "$WORK/small.json" --out "$WORK/x4"
expect_fail "bad dtype" 2 "--dtype" -- "$QMESH" random-model --preset tiny --dtype f16 --out "$WORK/x5"
expect_fail "bad shards" 2 "--shards" -- "$QMESH" random-model --preset tiny --shards 0 --out "$WORK/x6"
expect_fail "unknown flag" 2 "--bogus" -- "$QMESH" random-model --bogus
expect_fail "missing tokenizer" 1 "tokenizer" -- "$QMESH" random-model --preset tiny --out "$WORK/x7" --tokenizer "$WORK/none"
check "nothing written on refusal" test ! -e "$WORK/x1" -a ! -e "$WORK/x7"

if [ "$fails" -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all random-model checks passed"
