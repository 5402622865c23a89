#!/usr/bin/env bash
# LoRA training on one GPU, fedfm against Python transformers + peft, side by
# side in one session: the same random-initialised Llama-3.2-1B-shaped model
# (bf16 safetensors, HF layout), the same batch, rank and targets (all seven
# projections), bf16 autocast, AdamW, random tokens. Prints a JSON summary
# with tokens/s and peak GPU memory of both and their ratios (goal: fedfm
# tokens/s >= 1.3x Python's).
#
#   bench/gpu_lora_compare.sh [OUT_DIR]        (from the repository root)
#
# Environment:
#   FEDFM_BIN  a fedfm binary built against a CUDA LibTorch (default
#              build-gpu/fedfm). When it is missing the script configures and
#              builds one with CMAKE_PREFIX_PATH = python's torch, which needs
#              the project's other dependencies (Abseil, protobuf, OpenSSL,
#              SQLite, CLI11, toml++, spdlog, nlohmann_json) on that machine.
#   BATCH=8 SEQ_LEN=512 RANK=16 STEPS=20 WARMUP=3
set -euo pipefail
OUT=${1:-${OUT:-/tmp/gpu_lora_compare}}
BATCH=${BATCH:-8}
SEQ_LEN=${SEQ_LEN:-512}
RANK=${RANK:-16}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-3}
FEDFM_BIN=${FEDFM_BIN:-build-gpu/fedfm}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [ ! -x "$FEDFM_BIN" ]; then
  echo "building $FEDFM_BIN against python's CUDA LibTorch" >&2
  TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  cmake -S . -B "$(dirname "$FEDFM_BIN")" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DFEDFM_GRPC=OFF -DFEDFM_TESTS=OFF -DFEDFM_BENCH=OFF >&2 \
    || { echo "cannot configure fedfm here: give a CUDA build with FEDFM_BIN=..." >&2; exit 2; }
  cmake --build "$(dirname "$FEDFM_BIN")" --target fedfm >&2
fi

MODEL="$OUT/llama1b"
[ -f "$MODEL/config.json" ] || python3 bench/gpu_lora_compare.py make-model --out "$MODEL" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true

python3 bench/gpu_lora_compare.py train --model "$MODEL" --batch "$BATCH" --seq-len "$SEQ_LEN" \
  --rank "$RANK" --steps "$STEPS" --warmup "$WARMUP" | tee "$OUT/python.json"
"$FEDFM_BIN" bench train --model "$MODEL" --device cuda --dtype bf16 --batch "$BATCH" --seq-len "$SEQ_LEN" \
  --rank "$RANK" --steps "$STEPS" --warmup "$WARMUP" | tee "$OUT/fedfm.json"
python3 bench/gpu_lora_compare.py compare "$OUT/python.json" "$OUT/fedfm.json" | tee "$OUT/summary.json"
