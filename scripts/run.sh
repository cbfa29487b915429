#!/usr/bin/env bash
# The main job: set up, build, create the built-in step3-small checkpoint on first run
# (random BF16 weights in the real Hugging Face format), then run it with Attention-FFN
# Disaggregation: 2 attention ranks and 2 FFN ranks as separate processes over UCX, 3
# micro-batches in flight, FP8 activations out and BF16 partials back. Prints the generated
# tokens, throughput and per-rank statistics, and writes a Perfetto trace.
# Extra arguments go to `afd launch` (e.g. --requests 16 --max-new-tokens 64).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
CKPT=checkpoints/step3-small-bf16
if [ ! -f "$CKPT/config.json" ]; then
  echo "== creating $CKPT (first run)"
  build/afd checkpoint init --preset step3-small --dtype bf16 --seed 0 "$CKPT"
fi
echo "== afd launch: $CKPT, 2 attention + 2 FFN ranks over UCX, 3 micro-batches"
build/afd launch --model "$CKPT" --attention-ranks 2 --ffn-ranks 2 --micro-batches 3 \
  --transport ucx --requests 12 --prompt-len 24 --max-new-tokens 24 --greedy \
  --trace build/afd-trace.json "$@"
