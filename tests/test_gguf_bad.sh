#!/usr/bin/env bash
# Bad GGUF files: each is refused by `qmesh logits -m FILE.gguf` with exit 1 and a message that
# says what is wrong (never a crash, a hang or a silent result). The files are made here by
# patching bytes of a valid GGUF that `qmesh quantize` writes from a tiny random model.
set -euo pipefail
: "${QMESH:?}" "${WORK:?}"
rm -rf "$WORK"; mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
"$QMESH" random-model --preset tiny --out "$WORK/tiny" > /dev/null 2>&1
"$QMESH" quantize -m "$WORK/tiny" --type q8_0 --out "$WORK/good.gguf" > /dev/null 2>&1
G="$WORK/good.gguf"
"$QMESH" logits -m "$G" --ids "1 2 3" --out "$WORK/ok.npy" || fail "the valid file is refused"

# little-endian patch of n bytes (4 or 8) at offset
patch() { # file offset nbytes value
  local v=$4 s="" i
  for ((i = 0; i < $3; i++)); do s+=$(printf '\\x%02x' $(( (v >> (8 * i)) & 255 ))); done
  printf "$s" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
u64_at() { od -An -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
name_at() { grep -obUa "$2" "$1" | head -1 | cut -d: -f1; } # byte offset of a string
pass=0
expect() { # label pattern file
  local out rc=0
  out=$("$QMESH" logits -m "$3" --ids "1 2 3" --out "$WORK/x.npy" 2>&1) || rc=$?
  [ "$rc" -eq 1 ] || fail "$1: exit $rc (expected 1): $out"
  grep -qiE "$2" <<< "$out" || fail "$1: message does not say '$2': $out"
  echo "ok $1: $out"
  pass=$((pass + 1))
}
bad() { cp "$G" "$WORK/$1.gguf"; echo "$WORK/$1.gguf"; }

f=$(bad truncated); head -c 5000 "$G" > "$f"; expect "truncated file" "truncat|past the end|end of" "$f"
f=$(bad magic); printf 'GGUX' | dd of="$f" bs=1 conv=notrunc status=none; expect "wrong magic" "magic|not a GGUF" "$f"
f=$(bad version); patch "$f" 4 4 99; expect "unknown version" "version" "$f"
f=$(bad string); patch "$f" 24 8 $((1 << 40)); expect "a key running past the end" "past the end|truncat|too long" "$f"
f=$(bad count); patch "$f" 8 8 $((0x7fffffffffffffff)); expect "tensor count that overflows" "count|overflow|too (many|large)" "$f"
f=$(bad short_data); head -c $(( $(stat -c %s "$G") - 64 )) "$G" > "$f"; expect "tensor past the end" "past the end|beyond|truncat" "$f"
# output_norm.weight: name, u32 n_dims, u64 ne0, u32 type, u64 offset
at=$(( $(name_at "$G" output_norm.weight) + 18 ))
f=$(bad misaligned); patch "$f" $((at + 12 + 4)) 8 $(( $(u64_at "$G" $((at + 16))) + 4 )); expect "misaligned tensor" "align" "$f"
f=$(bad type); patch "$f" $((at + 12)) 4 99; expect "unknown tensor type" "type" "$f"
f=$(bad dims); patch "$f" "$at" 4 5; expect "more than 4 dims" "dim" "$f"
# qwen2.feed_forward_length: key, u32 value type, u32 value -> disagrees with the tensors' shapes
at=$(( $(name_at "$G" qwen2.feed_forward_length) + 25 + 4 ))
f=$(bad shape); patch "$f" "$at" 4 128; expect "shape disagreeing with the config" "shape|expected" "$f"
f=$(bad arch); at=$(( $(name_at "$G" general.architecture) + 20 + 4 + 8 )); printf 'qwen3' | dd of="$f" bs=1 seek="$at" conv=notrunc status=none
expect "another architecture" "architecture.*qwen3|qwen3.*not supported" "$f"
echo "$pass passed, 0 failed"
