#!/bin/bash
# qmesh quantize: a tiny random Qwen2 checkpoint -> Q8_0 and Q4_0 GGUF files that qmesh runs on their
# own (tokenizer included): logits close to the safetensors model's (Q8_0 within QZ_TOL_Q8, Q4_0
# within QZ_TOL_Q4 of max|logit|), byte-identical on meshes 1x1, 1x2, 1x3; generate works from the
# GGUF alone; the same input gives the same bytes; --force; bad input exits 1, bad usage 2, with a
# message. When python3 has the gguf package: the file read by gguf-py's GGUFReader, and every
# quantized tensor equal, bit for bit, to gguf.quants.quantize of the source (the reference
# converter's quantization) and within the Q8_0 / Q4_0 error bound. When llama.cpp's llama-simple
# is found ($LLAMA_SIMPLE, else on PATH): it loads both files and generates.
# Env: QMESH, NPY_COMPARE, DATA (shared/data), WORK (scratch folder); optional QZ_TOL_Q8, QZ_TOL_Q4.
set -u
QMESH=${QMESH:?set QMESH to the qmesh program}
DATA=${DATA:?set DATA to shared/data}
WORK=${WORK:-$(mktemp -d)}
TOL8=${QZ_TOL_Q8:-0.03}   # measured 0.0074 on the tiny preset (seed 0)
TOL4=${QZ_TOL_Q4:-0.3}    # measured 0.115
TOK="$DATA/tokenizers/qwen2.5"
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
if [ -z "${NPY_COMPARE:-}" ] || [ ! -x "${NPY_COMPARE}" ]; then
    NPY_COMPARE="$WORK/npy_compare"
    ${CC:-cc} -std=c11 -O2 -o "$NPY_COMPARE" "${SRC:?set SRC or NPY_COMPARE}/tests/tools/npy_compare.c" -lm || exit 1
fi
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
# rel_err A B: the relative error npy_compare prints
rel_err() { "$NPY_COMPARE" "$1" "$2" --rel 1e9 2>&1 | sed -n 's/.*[^_]rel=\([^ ]*\).*/\1/p' | head -n 1; }

check "--help" bash -c "'$QMESH' quantize --help | grep -q -- '--type q8_0|q4_0'"
check "listed in qmesh --help" bash -c "'$QMESH' --help | grep -q quantize"
check "tiny model" "$QMESH" random-model --preset tiny --out "$WORK/tiny" --tokenizer "$TOK"

for t in q8_0 q4_0; do
    if "$QMESH" quantize -m "$WORK/tiny" --type $t --out "$WORK/$t.gguf" >"$WORK/$t.json" 2>"$WORK/$t.err"; then
        ok "quantize --type $t ($(tail -n 1 "$WORK/$t.err"))"
    else
        bad "quantize --type $t: $(cat "$WORK/$t.err")"
    fi
    check "$t: summary is one JSON line" python3 -c "
import json, sys
lines = open('$WORK/$t.json').read().splitlines()
d = json.loads(lines[-1])
assert d['tensors'] == 26 and d['quantized'] == 15 and d['type'] == '$t', d
assert d['bytes'] > 1000000 and d['seconds'] >= 0 and d['out'].endswith('$t.gguf'), d"
done
check "q4_0 is smaller than q8_0" test "$(stat -c %s "$WORK/q4_0.gguf")" -lt "$(stat -c %s "$WORK/q8_0.gguf")"
"$QMESH" quantize -m "$WORK/tiny" --type q8_0 --out "$WORK/again.gguf" >/dev/null 2>&1
check "same input, same bytes" cmp -s "$WORK/q8_0.gguf" "$WORK/again.gguf"
# shards + index: the same file (general.name is the folder's name, so the same name)
mkdir -p "$WORK/sharded"
"$QMESH" random-model --preset tiny --shards 3 --out "$WORK/sharded/tiny" --tokenizer "$TOK" 2>/dev/null
check "from 3 shards" bash -c "'$QMESH' quantize -m '$WORK/sharded/tiny' --type q8_0 --out '$WORK/sharded.gguf' >/dev/null"
check "from 3 shards, same bytes" cmp -s "$WORK/q8_0.gguf" "$WORK/sharded.gguf"

# logits: close to the safetensors model's, identical on every mesh
IDS="9707 11 1879 0 151644 872 198 5501 750 15801 1445 982 262 470"
"$QMESH" logits -m "$WORK/tiny" --ids "$IDS" --out "$WORK/ref.npy" 2>/dev/null || bad "logits of the safetensors model"
for t in q8_0 q4_0; do
    tol=$TOL8; [ $t = q4_0 ] && tol=$TOL4
    for m in 1x1 1x2 1x3; do
        "$QMESH" logits -m "$WORK/$t.gguf" --ids "$IDS" --mesh $m --out "$WORK/$t.$m.npy" 2>"$WORK/logits.err" ||
            bad "$t logits on $m: $(tail -n 3 "$WORK/logits.err")"
    done
    rel=$(rel_err "$WORK/$t.1x1.npy" "$WORK/ref.npy")
    check "$t logits within $tol of the bf16 model's (rel $rel)" "$NPY_COMPARE" "$WORK/$t.1x1.npy" "$WORK/ref.npy" --rel "$tol" --quiet
    check "$t logits differ from the bf16 model's (they are quantized)" test "$(awk -v r="$rel" 'BEGIN { print (r > 1e-6) }')" = 1
    for m in 1x2 1x3; do
        check "$t logits on $m identical to 1x1" "$NPY_COMPARE" "$WORK/$t.$m.npy" "$WORK/$t.1x1.npy" --exact --quiet
    done
done
# unquantized types: bf16 (the checkpoint's own bits) and f32 (the same values widened) give the
# folder's logits byte for byte; f16 rounds, so it is only close
for t in bf16 f32 f16; do
    if "$QMESH" quantize -m "$WORK/tiny" --type $t --out "$WORK/$t.gguf" >"$WORK/$t.json" 2>"$WORK/$t.err" &&
        "$QMESH" logits -m "$WORK/$t.gguf" --ids "$IDS" --mesh 1x3 --out "$WORK/$t.npy" 2>"$WORK/$t.err"; then
        ok "quantize --type $t, logits on 1x3"
    else
        bad "quantize --type $t: $(tail -n 3 "$WORK/$t.err")"
    fi
done
check "bf16 GGUF: logits identical to the folder's" "$NPY_COMPARE" "$WORK/bf16.npy" "$WORK/ref.npy" --exact --quiet
check "f32 GGUF: logits identical to the folder's" "$NPY_COMPARE" "$WORK/f32.npy" "$WORK/ref.npy" --exact --quiet
check "f16 GGUF: logits within 1e-2 of the folder's" "$NPY_COMPARE" "$WORK/f16.npy" "$WORK/ref.npy" --rel 1e-2 --quiet

# --repack on: the Q4_0 matrices held as Q8_0 blocks of the same values, so the same logits, on
# every ISA and mesh (auto repacks only in the exact mode with AVX2 kernels); bench counts the bytes
for spec in "1x1 on auto" "1x2 on auto" "1x3 on scalar" "1x2 on avx2" "1x2 off avx2" "1x1 auto avx2"; do
    set -- $spec
    if "$QMESH" logits -m "$WORK/q4_0.gguf" --ids "$IDS" --mesh $1 --repack $2 --isa $3 --out "$WORK/rp.npy" 2>"$WORK/rp.err"; then
        check "q4_0 --repack $2 --isa $3 on $1: logits identical to 1x1's" "$NPY_COMPARE" "$WORK/rp.npy" "$WORK/q4_0.1x1.npy" --exact --quiet
    else
        grep -q "not supported by this CPU" "$WORK/rp.err" && ok "q4_0 --isa $3: not on this CPU" ||
            bad "q4_0 --repack $2 --isa $3 on $1: $(tail -n 3 "$WORK/rp.err")"
    fi
done
json=$("$QMESH" bench -m "$WORK/q4_0.gguf" --prompt 4 --gen 2 --repack on 2>/dev/null | tail -n 1)
rb=$(sed -n 's/.*"device_repack_bytes_max":\([0-9]*\).*/\1/p' <<< "$json")
check "bench --repack on: repack_q8 true, bytes added ($rb)" bash -c "grep -q '\"repack_q8\":true' <<< '$json' && [ '${rb:-0}' -gt 0 ]"
json=$("$QMESH" bench -m "$WORK/q4_0.gguf" --prompt 4 --gen 2 --repack off 2>/dev/null | tail -n 1)
check "bench --repack off: none" grep -q '"repack_q8":false,"device_repack_bytes_max":0' <<< "$json"
# the fast mode (head_dim a multiple of 32: a wider tiny model, 9 heads of 32, 3 KV heads): auto holds
# the column-parallel Q4_0 matrices interleaved by 8 rows (kernels/rows8.h) where the kernels take
# them (AVX2, AVX-512), off as in the file: the same logits on every mesh and ISA, in a batch, a token
# a step or several
sed -e 's/"hidden_size":[^,]*/"hidden_size": 288/' -e 's/"intermediate_size":[^,]*/"intermediate_size": 320/' \
    -e 's/"num_attention_heads":[^,]*/"num_attention_heads": 9/' -e 's/"num_key_value_heads":[^,]*/"num_key_value_heads": 3/' \
    "$WORK/tiny/config.json" > "$WORK/wide.json"
if "$QMESH" random-model --config "$WORK/wide.json" --out "$WORK/wide" --tokenizer "$TOK" >/dev/null 2>&1 &&
    "$QMESH" quantize -m "$WORK/wide" --type q4_0 --out "$WORK/wide.gguf" >/dev/null 2>&1 &&
    "$QMESH" logits -m "$WORK/wide.gguf" --ids "$IDS" --activations q8 --repack off --isa scalar --out "$WORK/fq.npy" 2>/dev/null; then
    for spec in "1x1 auto auto 64" "1x2 auto auto 64" "1x3 auto avx2 1" "1x2 off avx2 1" "1x1 auto avx512vnni 1" \
        "1x2 auto avx512vnni 5" "1x3 auto scalar 64"; do
        set -- $spec
        if "$QMESH" logits -m "$WORK/wide.gguf" --ids "$IDS" --activations q8 --mesh $1 --repack $2 --isa $3 --step-tokens $4 \
            --out "$WORK/rp.npy" 2>"$WORK/rp.err"; then
            check "q4_0 fast --repack $2 --isa $3 --step-tokens $4 on $1: logits identical to the scalar ISA's" "$NPY_COMPARE" "$WORK/rp.npy" "$WORK/fq.npy" --exact --quiet
        else
            grep -q "not supported by this CPU" "$WORK/rp.err" && ok "q4_0 fast --isa $3: not on this CPU" ||
                bad "q4_0 fast --repack $2 --isa $3 on $1: $(tail -n 3 "$WORK/rp.err")"
        fi
    done
    printf '%s\n' "9707 11 1879 0" "$IDS" "151644 872 198 5501" > "$WORK/batch.txt"
    for spec in "auto 1" "off 1" "auto 64" "off 64"; do
        set -- $spec
        "$QMESH" logits -m "$WORK/wide.gguf" --ids-file "$WORK/batch.txt" --activations q8 --repack $1 --step-tokens $2 \
            --out "$WORK/fb.$1.$2.npy" 2>/dev/null || bad "q4_0 fast batch --repack $1 --step-tokens $2"
    done
    check "q4_0 fast batch of 3: interleaved or not, a token a step or all, the same logits" bash -c \
        "cmp -s '$WORK/fb.auto.1.1.npy' '$WORK/fb.off.1.1.npy' && cmp -s '$WORK/fb.auto.64.1.npy' '$WORK/fb.off.1.1.npy' &&
         cmp -s '$WORK/fb.off.64.1.npy' '$WORK/fb.off.1.1.npy' && cmp -s '$WORK/fb.auto.1.1.npy' '$WORK/fq.npy'"
    if "$QMESH" logits -m "$WORK/wide.gguf" --ids "$IDS" --activations q8 --isa avx2 --out "$WORK/x.npy" 2>/dev/null; then
        json=$("$QMESH" bench -m "$WORK/wide.gguf" --prompt 4 --gen 2 --activations q8 2>/dev/null | tail -n 1)
        ib=$(sed -n 's/.*"device_rows8_bytes_max":\([0-9]*\).*/\1/p' <<< "$json")
        check "bench fast: interleaved bytes ($ib), nothing added" bash -c \
            "[ '${ib:-0}' -gt 0 ] && grep -q '\"repack_q8\":false,\"device_repack_bytes_max\":0' <<< '$json'"
        json=$("$QMESH" bench -m "$WORK/wide.gguf" --prompt 4 --gen 2 --activations q8 --repack off 2>/dev/null | tail -n 1)
        check "bench fast --repack off: none interleaved" grep -q '"device_rows8_bytes_max":0' <<< "$json"
    fi
else
    bad "a wider tiny model for the fast mode (random-model --config, quantize, logits)"
fi
expect_fail "--repack maybe is bad usage" 2 "repack" -- "$QMESH" logits -m "$WORK/q4_0.gguf" --ids "$IDS" --repack maybe --out "$WORK/x.npy"

r8=$(rel_err "$WORK/q8_0.1x1.npy" "$WORK/ref.npy"); r4=$(rel_err "$WORK/q4_0.1x1.npy" "$WORK/ref.npy")
check "q4_0 error ($r4) above q8_0's ($r8)" test "$(awk -v a="$r4" -v b="$r8" 'BEGIN { print (a > b) }')" = 1

# the GGUF on its own: the HF folder moved away
mv "$WORK/tiny" "$WORK/tiny.away"
for t in q8_0 q4_0; do
    if "$QMESH" generate -m "$WORK/$t.gguf" -p "Hi" -n 4 >"$WORK/gen.txt" 2>"$WORK/gen.err" && [ -s "$WORK/gen.txt" ]; then
        ok "$t generate from the GGUF alone: $(head -c 80 "$WORK/gen.txt" | tr '\n' ' ')"
    else
        bad "$t generate from the GGUF alone: $(tail -n 3 "$WORK/gen.err")"
    fi
done
"$QMESH" generate -m "$WORK/q8_0.gguf" -p "Hello, world!" -n 6 >"$WORK/gen.1x1.txt" 2>/dev/null
"$QMESH" generate -m "$WORK/q8_0.gguf" -p "Hello, world!" -n 6 --mesh 1x3 >"$WORK/gen.1x3.txt" 2>/dev/null
check "generate from the GGUF: the same text on 1x1 and 1x3" cmp -s "$WORK/gen.1x1.txt" "$WORK/gen.1x3.txt"
mv "$WORK/tiny.away" "$WORK/tiny"

# an existing output
expect_fail "existing --out needs --force" 1 "--force" -- "$QMESH" quantize -m "$WORK/tiny" --type q4_0 --out "$WORK/q8_0.gguf"
check "refused file unchanged" cmp -s "$WORK/q8_0.gguf" "$WORK/again.gguf"
check "--force replaces it" "$QMESH" quantize -m "$WORK/tiny" --type q4_0 --out "$WORK/again.gguf" --force
check "--force result" cmp -s "$WORK/q4_0.gguf" "$WORK/again.gguf"

# bad input: exit 1
mkdir -p "$WORK/noconfig" "$WORK/ro"
cp "$WORK/tiny/model.safetensors" "$WORK/noconfig/"
expect_fail "missing folder" 1 "nothere" -- "$QMESH" quantize -m "$WORK/nothere" --type q8_0 --out "$WORK/x.gguf"
expect_fail "no config.json" 1 "config.json" -- "$QMESH" quantize -m "$WORK/noconfig" --type q8_0 --out "$WORK/x.gguf"
expect_fail "a file, not a folder" 1 "not a folder" -- "$QMESH" quantize -m "$WORK/q8_0.gguf" --type q8_0 --out "$WORK/x.gguf"
expect_fail "unwritable --out" 1 "nodir/x.gguf" -- "$QMESH" quantize -m "$WORK/tiny" --type q8_0 --out "$WORK/nodir/x.gguf"
expect_fail "--out is a folder" 1 "ro" -- "$QMESH" quantize -m "$WORK/tiny" --type q8_0 --out "$WORK/ro" --force
printf '{"hidden_size": 64}' >"$WORK/noconfig/config.json"
expect_fail "incomplete config" 1 "config.json" -- "$QMESH" quantize -m "$WORK/noconfig" --type q8_0 --out "$WORK/x.gguf"
check "nothing written on refusal" bash -c "! ls '$WORK' | grep -q '^x\.gguf'"
# bad usage: exit 2
expect_fail "no -m" 2 "-m" -- "$QMESH" quantize --type q8_0 --out "$WORK/x.gguf"
expect_fail "no --type" 2 "--type" -- "$QMESH" quantize -m "$WORK/tiny" --out "$WORK/x.gguf"
expect_fail "bad --type" 2 "q5_k" -- "$QMESH" quantize -m "$WORK/tiny" --type q5_k --out "$WORK/x.gguf"
expect_fail "no --out" 2 "--out" -- "$QMESH" quantize -m "$WORK/tiny" --type q8_0
expect_fail "--out without a value" 2 "--out" -- "$QMESH" quantize -m "$WORK/tiny" --type q8_0 --out
expect_fail "unknown flag" 2 "--bogus" -- "$QMESH" quantize --bogus

# the reference's view (gguf-py): metadata, and every block equal to gguf.quants.quantize's
if python3 -c "import gguf, numpy" 2>/dev/null; then
    check "gguf-py reads both files; blocks are gguf.quants.quantize's, within the error bound" \
        python3 - "$WORK/tiny" "$WORK/q8_0.gguf" "$WORK/q4_0.gguf" <<'PY'
import json, struct, sys
import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T
from gguf.quants import quantize, dequantize

def load_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n)); body = f.read()
    h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        raw = np.frombuffer(body[v["data_offsets"][0]:v["data_offsets"][1]], dtype=np.uint16 if v["dtype"] == "BF16" else np.float32)
        x = (raw.astype(np.uint32) << 16).view(np.float32) if v["dtype"] == "BF16" else raw
        out[k] = x.reshape(v["shape"])
    return out

hf = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
layer = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
         "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
def hf_name(n):
    parts = n.split(".")
    if parts[0] == "blk":
        return "model.layers.%s.%s.%s" % (parts[1], layer[parts[2]], parts[3])
    return hf[parts[0]] + "." + parts[1]

src = load_st(sys.argv[1] + "/model.safetensors")
cfg = json.load(open(sys.argv[1] + "/config.json"))
for path, qt, ftype in ((sys.argv[2], T.Q8_0, 7), (sys.argv[3], T.Q4_0, 2)):
    r = GGUFReader(path)
    f = r.fields
    val = lambda k: f[k].contents()
    assert val("general.architecture") == "qwen2"
    assert val("general.file_type") == ftype and val("general.quantization_version") == 2
    assert val("qwen2.block_count") == cfg["num_hidden_layers"]
    assert val("qwen2.embedding_length") == cfg["hidden_size"]
    assert val("qwen2.feed_forward_length") == cfg["intermediate_size"]
    assert val("qwen2.attention.head_count") == cfg["num_attention_heads"]
    assert val("qwen2.attention.head_count_kv") == cfg["num_key_value_heads"]
    assert val("qwen2.context_length") == cfg["max_position_embeddings"]
    assert abs(val("qwen2.rope.freq_base") - cfg["rope_theta"]) < 1e-3 * cfg["rope_theta"]
    assert val("tokenizer.ggml.model") == "gpt2" and val("tokenizer.ggml.pre") == "qwen2"
    assert len(f["tokenizer.ggml.tokens"].data) == cfg["vocab_size"]
    assert "output.weight" not in [t.name for t in r.tensors]  # tied
    worst = 0.0
    for t in r.tensors:
        x = src[hf_name(t.name)]
        if x.ndim == 1:
            assert t.tensor_type == T.F32 and np.array_equal(np.asarray(t.data).reshape(x.shape), x), t.name
            continue
        assert t.tensor_type == qt, (t.name, t.tensor_type)
        assert list(t.shape) == [x.shape[1], x.shape[0]], (t.name, t.shape)   # ne[0] = columns
        got = np.asarray(t.data).reshape(-1)
        ref = quantize(x, qt).reshape(-1)
        assert np.array_equal(got, ref), t.name + ": blocks differ from gguf.quants.quantize"
        y = dequantize(got.reshape(x.shape[0], -1), qt).reshape(x.shape)
        xb, yb = x.reshape(-1, 32), y.reshape(-1, 32)
        if qt == T.Q8_0:
            bound = np.abs(xb).max(axis=1) / 127 * (0.5 + 127 / 2048)
        else:
            bound = np.abs(xb).max(axis=1) / 8 * (1 + 8 / 2048)
        ratio = (np.abs(xb - yb).max(axis=1) / np.maximum(bound, 1e-30)).max()
        assert ratio <= 1 + 1e-6, (t.name, ratio)
        worst = max(worst, ratio)
    print("     %s: %d tensors, blocks match gguf.quants, worst error %.3f of the bound" % (qt.name, len(r.tensors), worst))
PY
else
    echo "skip gguf-py cross-check: python3 has no gguf/numpy package (pip install gguf)"
fi

# llama.cpp loads the files (optional: $LLAMA_SIMPLE or llama-simple on PATH)
LLAMA_SIMPLE=${LLAMA_SIMPLE:-$(command -v llama-simple || true)}
if [ -n "$LLAMA_SIMPLE" ] && [ -x "$LLAMA_SIMPLE" ]; then
    for t in q8_0 q4_0; do
        if "$LLAMA_SIMPLE" -m "$WORK/$t.gguf" -n 8 "Hello" >"$WORK/llama.out" 2>&1 && grep -q "decoded 8 tokens" "$WORK/llama.out"; then
            ok "llama.cpp ($LLAMA_SIMPLE) loads $t.gguf and decodes 8 tokens: $(grep -o 'type \+[a-z0-9_]*: \+[0-9]* tensors' "$WORK/llama.out" | tr -s ' ' | paste -sd, -)"
        else
            bad "llama.cpp on $t.gguf: $(grep -i 'error\|fail' "$WORK/llama.out" | head -n 3)"
        fi
    done
else
    echo "skip llama.cpp check: no llama-simple (set LLAMA_SIMPLE=/path/to/llama-simple)"
fi

if [ "$fails" -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all quantize checks passed"
