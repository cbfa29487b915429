#!/usr/bin/env bash
# CPU decode throughput of the reference engine on step3-small (BF16 checkpoint, f32 compute),
# for 1 and 16 sequences, next to the machine's memory copy bandwidth measured in the same run.
# Decode at small batch streams the weights once per step, so bytes/step / copy bandwidth is
# the ceiling. Usage: bench/cpu_decode.sh [max_new_tokens]   (prints a markdown table last)
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=${1:-32}
[ -x build/afd ] || scripts/setup.sh
CKPT=checkpoints/step3-small-bf16
[ -f "$CKPT/config.json" ] || build/afd checkpoint init --preset step3-small --seed 0 "$CKPT"

# Copy bandwidth (bytes read + written) of a 1 GiB buffer, best of 5, with numpy if present.
COPY_GBS=$(python3 - <<'PY' 2>/dev/null || echo "nan"
import time, numpy as np
a = np.ones(1 << 28, dtype=np.float32); b = np.empty_like(a)
best = 1e9
for _ in range(5):
    t = time.perf_counter(); np.copyto(b, a); best = min(best, time.perf_counter() - t)
print(f"{2 * a.nbytes / best / 1e9:.2f}")
PY
)

run() {  # $1 = number of sequences
  local args=()
  for i in $(seq "$1"); do args+=(--prompt-ids "$i,20,300,4000,50000,6,70,800"); done
  build/afd generate --model "$CKPT" --greedy --max-new-tokens "$NEW" --json "${args[@]}" 2>/dev/null
}
R1=$(run 1); R16=$(run 16)
python3 - "$COPY_GBS" "$R1" "$R16" <<'PY'
import json, sys
copy = float(sys.argv[1])
# f32 bytes a decode step must read for one sequence: every non-expert weight (attention, dense
# MLPs, routers, shared experts, lm_head) plus 3 of 16 experts per MoE layer; the embedding is a
# row lookup. 16 sequences touch (nearly) all experts.
H, V, L, Q, QW, D = 768, 128815, 8, 384, 1024, 64
attn = Q*H + QW*Q + 2*D*H + H*QW
dense, expert, shared, router = 3*H*1536, 3*H*320, 3*H*320, 16*H
moe_layers, dense_layers = 5, 3
base = L*attn + dense_layers*dense + moe_layers*(shared + router) + V*H
rows = []
for n, r in ((1, sys.argv[2]), (16, sys.argv[3])):
    t = json.loads(r)["timings"]
    experts = 3 if n == 1 else 16
    bytes_step = 4 * (base + moe_layers * experts * expert)
    gbs = bytes_step / (t["tpot_ms"] / 1e3) / 1e9
    rows.append((n, t["decode_tokens_per_s"], t["tpot_ms"], bytes_step / 1e6, gbs))
print("| sequences | decode tokens/s | ms per step | weight MB per step | achieved GB/s | copy GB/s | fraction of copy |")
print("|---|---|---|---|---|---|---|")
for n, tps, ms, mb, gbs in rows:
    frac = gbs / copy if copy == copy else float("nan")
    print(f"| {n} | {tps:.1f} | {ms:.1f} | {mb:.0f} | {gbs:.2f} | {copy:.2f} | {frac:.2f} |")
PY
