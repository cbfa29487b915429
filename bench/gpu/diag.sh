#!/usr/bin/env bash
# Diagnostics for the MFA decode kernel (not part of the results): builds the benchmark with
# MFA_DIAG = 0 (normal), 1 (producer only), 2 (consumer only), 3 (fp8 without the K/V conversion),
# times a few shapes with each, and profiles the normal kernel with Nsight Compute.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=build-gpu
mkdir -p $B
FLAGS=(-gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 -Isrc -lineinfo)
nvcc "${FLAGS[@]}" -c src/kernels/cuda/mfa_decode_plan.cu -o $B/mfa_plan_diag.o
for d in 0 1 2 3; do
  (nvcc "${FLAGS[@]}" -DMFA_DIAG=$d -c src/kernels/cuda/mfa_decode.cu -o $B/mfa_d$d.o &&
   nvcc "${FLAGS[@]}" bench/gpu/bench_mfa.cu $B/mfa_d$d.o $B/mfa_plan_diag.o -o $B/bench_d$d) &
done
wait
ONLY=${ONLY:-fp8:128:8192,bf16:128:8192,fp8:64:4096,bf16:64:4096,fp8:256:4096,fp8:16:4096}
for d in 0 1 2 3; do
  echo "== MFA_DIAG=$d"
  timeout 60 $B/bench_d$d --only "$ONLY" --reps 15 | grep -v "^kv "
done
for cfg in fp8:128:8192 bf16:128:8192; do
  echo "== ncu $cfg"
  f=$B/ncu_${cfg//:/_}.txt
  timeout 90 ncu --clock-control none -k regex:mfa_decode_kernel -s 3 -c 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
    --section SchedulerStats $B/bench_d0 --only $cfg --reps 5 > $f 2>&1
  grep -E "Throughput|Duration|Busy|Stall|Cycles Per|Issued Warp|Eligible|Hit Rate|Elapsed|Frequency" $f |
    sed 's/  */ /g' | head -40
done
[ -n "${OUT:-}" ] && cp $B/ncu_*.txt "$OUT"/ 2>/dev/null
true
