#!/usr/bin/env bash
# The main job in one command: install dependencies, build, then evaluate a Qwen2.5 model on
# GSM8K (8-shot chain of thought) on a device mesh, and print the report.
#
#   scripts/quickstart.sh [MODEL_DIR] [MESH] [LIMIT]
#
# MODEL_DIR: a Hugging Face Qwen2/Qwen2.5 folder. Without one, a model with the real Qwen2.5-0.5B
# shapes and RANDOM weights is generated (models/qwen2.5-0.5b-random): it runs the whole pipeline
# at full size, but its answers are noise (accuracy ~0), since no real weights can be fetched here.
# MESH defaults to 2x4 (2 replicas x 4 tensor shards), LIMIT to 16 questions.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-}
mesh=${2:-2x4}
limit=${3:-16}
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
if [ -z "$model" ]; then
  model=models/qwen2.5-0.5b-random
  if [ ! -f "$model/config.json" ]; then
    echo "quickstart: no model given: generating $model (real Qwen2.5-0.5B shapes, random bf16 weights)"
    ./build/qmesh random-model --preset qwen2.5-0.5b --out "$model" --seed 1
  fi
fi
mkdir -p results
out="results/gsm8k_${mesh}.jsonl"
./build/qmesh eval gsm8k -m "$model" --data ../shared/data/gsm8k/test.jsonl --limit "$limit" \
  --mesh "$mesh" --batch 4 --out "$out" --force
./build/qmesh eval report "$out"
