#!/usr/bin/env bash
# Builds, tests and benchmarks the MFA decode kernel on a Hopper GPU in one go:
#   1. nvcc (sm_90a) builds the differential test and the benchmark (no CMake, no project deps)
#   2. tests/gpu/test_mfa_decode          (exit status counts: a failing test fails the script)
#   3. bench/gpu/bench_mfa                (kernel time, GB/s, the copy ceiling of the same run)
#   4. bench/gpu/sdpa_baseline.py         (torch SDPA enable_gqa, same shapes) + the table
# Usage (repo root): bash bench/gpu/run.sh      Results: build-gpu/ (and $OUT when set).
set -uo pipefail
cd "$(dirname "$0")/../.."
B=build-gpu
mkdir -p "$B"
NVCC=${NVCC:-nvcc}
FLAGS=(-gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 -Isrc -lineinfo)
echo "== build ($($NVCC --version | tail -1))"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv,noheader || true
t0=$(date +%s)
$NVCC "${FLAGS[@]}" -c src/kernels/cuda/mfa_decode_plan.cu -o $B/mfa_decode_plan.o &
p0=$!
$NVCC "${FLAGS[@]}" -Xptxas -v -c src/kernels/cuda/mfa_decode.cu -o $B/mfa_decode.o \
  2> $B/ptxas.log || { cat $B/ptxas.log; exit 1; }
wait $p0 || { echo "build failed"; exit 1; }
grep -A2 "mfa_decode_kernel" $B/ptxas.log | grep -E "registers|spill" | sort | uniq -c || true
grep -E "C75[0-9][0-9]" $B/ptxas.log || true  # wgmma serialization warnings, if any
OBJS=($B/mfa_decode.o $B/mfa_decode_plan.o)
$NVCC "${FLAGS[@]}" tests/gpu/test_mfa_decode.cu "${OBJS[@]}" -o $B/test_mfa_decode &
p1=$!
$NVCC "${FLAGS[@]}" bench/gpu/bench_mfa.cu "${OBJS[@]}" -o $B/bench_mfa &
p2=$!
wait $p1 && wait $p2 || { echo "build failed"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"

echo "== test"
timeout 120 $B/test_mfa_decode "$@" | tee $B/test.log
test_rc=${PIPESTATUS[0]}

echo "== bench"
timeout 180 $B/bench_mfa --csv $B/mfa.csv | tee $B/bench.log
bench_rc=${PIPESTATUS[0]}

echo "== sdpa baseline"
PYTHONUNBUFFERED=1 timeout 180 python3 bench/gpu/sdpa_baseline.py --csv $B/sdpa.csv --mfa $B/mfa.csv \
  --table $B/table.md > $B/sdpa.log 2>&1
py_rc=$?
grep -v "^|" $B/sdpa.log | grep -v "^Copy ceiling" || true
if [ -n "${OUT:-}" ]; then cp $B/*.csv $B/table.md "$OUT"/ 2>/dev/null || true; fi

echo "== summary: test rc=$test_rc bench rc=$bench_rc sdpa rc=$py_rc; $(tail -1 $B/test.log)"
cat $B/table.md 2>/dev/null
[ $test_rc -eq 0 ] && [ $bench_rc -eq 0 ] && [ $py_rc -eq 0 ]
