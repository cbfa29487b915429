#!/usr/bin/env bash
# The main job: set up, build, create the built-in step3-small checkpoint on first run
# (random BF16 weights in the real Hugging Face format), and generate from it on the CPU.
# Extra arguments go to `afd generate` (e.g. --max-new-tokens 64).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
CKPT=checkpoints/step3-small-bf16
if [ ! -f "$CKPT/config.json" ]; then
  echo "== creating $CKPT (first run)"
  build/afd checkpoint init --preset step3-small --dtype bf16 --seed 0 "$CKPT"
fi
echo "== afd generate on $CKPT: 4 prompts of different lengths, decoded together"
build/afd generate --model "$CKPT" --greedy --max-new-tokens 32 \
  --prompt-ids 100,2000,30000,400,5 \
  --prompt-ids 7,77,777,7777,77777,8,88,888 \
  --prompt-ids 128000 \
  --prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 "$@"
