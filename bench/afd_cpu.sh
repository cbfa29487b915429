#!/usr/bin/env bash
# AFD on the CPU with step3-small: colocated vs disaggregated (1A1F, 2A1F, 2A2F over UCX),
# 1 vs 3 micro-batches. Prints tokens/s, TPOT, the FFN ranks' idle fraction, and the A<->F
# bytes and time per layer; writes one trace per run under build/bench-traces/.
# Usage: bench/afd_cpu.sh [requests] [max_new_tokens]     (a markdown table last)
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=${1:-12}
NEW=${2:-16}
[ -x build/afd ] || scripts/setup.sh
CKPT=checkpoints/step3-small-bf16
[ -f "$CKPT/config.json" ] || build/afd checkpoint init --preset step3-small --seed 0 "$CKPT"
mkdir -p build/bench-traces
OUT=$(mktemp -d)
run() {  # name, then launch flags
  local name=$1; shift
  build/afd launch --model "$CKPT" --requests "$REQ" --prompt-len 32 --max-new-tokens "$NEW" \
    --greedy --json --trace "build/bench-traces/$name.json" "$@" > "$OUT/$name.json" 2>/dev/null
}
# One BLAS thread, like each rank of the disaggregated runs (OpenBLAS threads slow small GEMMs).
OPENBLAS_NUM_THREADS=1 run colocated --colocated
run 1A1F-mb1 --attention-ranks 1 --ffn-ranks 1 --micro-batches 1
run 1A1F-mb3 --attention-ranks 1 --ffn-ranks 1 --micro-batches 3
run 2A1F-mb1 --attention-ranks 2 --ffn-ranks 1 --micro-batches 1
run 2A1F-mb3 --attention-ranks 2 --ffn-ranks 1 --micro-batches 3
run 2A2F-mb3 --attention-ranks 2 --ffn-ranks 2 --micro-batches 3
# Prefill-heavy: 48 prompts of 64 tokens in one step, where compute (not weight streaming)
# dominates and the pipeline has something to overlap.
runp() {
  local name=$1; shift
  build/afd launch --model "$CKPT" --requests 48 --prompt-len 64 --max-new-tokens 4 \
    --max-batch-tokens 4096 --greedy --json --trace "build/bench-traces/$name.json" "$@" \
    > "$OUT/$name.json" 2>/dev/null
}
runp prefill-1A1F-mb1 --attention-ranks 1 --ffn-ranks 1 --micro-batches 1
runp prefill-1A1F-mb3 --attention-ranks 1 --ffn-ranks 1 --micro-batches 3
python3 - "$OUT" <<'PY'
import json, os, sys
d = sys.argv[1]
L = 8  # step3-small layers
print("| run | tokens/s | TPOT p50 ms | FFN idle | FFN busy s | A->F MB | F->A MB | A->F+F->A per layer per step KB | attention wait s |")
print("|---|---|---|---|---|---|---|---|---|")
for name in ["colocated", "1A1F-mb1", "1A1F-mb3", "2A1F-mb1", "2A1F-mb3", "2A2F-mb3",
             "prefill-1A1F-mb1", "prefill-1A1F-mb3"]:
    s = json.load(open(os.path.join(d, name + ".json")))["stats"]
    ffn = [r for r in s["ranks"] if r["name"].startswith("ffn")]
    att = [r for r in s["ranks"] if r["name"].startswith("attention")]
    idle = sum(r["idle_fraction"] for r in ffn) / len(ffn) if ffn else float("nan")
    busy = sum(r["compute_s"] for r in ffn) / len(ffn) if ffn else float("nan")
    steps = max(r["steps"] for r in att) or 1
    a2f, f2a = s["bytes_attention_to_ffn"], s["bytes_ffn_to_attention"]
    per_layer = (a2f + f2a) / 1e3 / steps / L
    wait = sum(r["wait_s"] for r in att) / len(att)
    print(f"| {name} | {s['tokens_per_s']:.1f} | {s['tpot_ms_p50']:.1f} | "
          + (f"{idle:.2f} | {busy:.2f}" if ffn else "- | -")
          + f" | {a2f/1e6:.1f} | {f2a/1e6:.1f} | {per_layer:.0f} | {wait:.2f} |")
PY
rm -rf "$OUT"
