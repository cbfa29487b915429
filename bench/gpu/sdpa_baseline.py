#!/usr/bin/env python3
"""PyTorch SDPA baseline for MFA decode, and the merged table (bench/gpu/run.sh).

Same shapes as bench_mfa: one query token per sequence, 64 query heads sharing one K/V head of
256, bf16, contiguous KV [batch, 1, ctx, 256], torch.nn.functional.scaled_dot_product_attention
with enable_gqa=True. Time: CUDA events, 3 warm-ups, median of 20. Bytes = K + V + q + out.

Usage: sdpa_baseline.py --csv OUT.csv [--mfa MFA.csv --table TABLE.md]
"""
import argparse
import csv
import statistics

BATCHES = [1, 16, 64, 128, 256]
CTXS = [1024, 4096, 8192, 32768]
HEADS, D = 64, 256


def time_sdpa(torch, F, batch, ctx, reps=20):
    q = torch.randn(batch, HEADS, 1, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, 1, ctx, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(batch, 1, ctx, D, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    ms = statistics.median(times)
    nbytes = 2 * k.numel() * 2 + 2 * q.numel() * 2
    del q, k, v
    torch.cuda.empty_cache()
    return ms * 1e3, nbytes / (ms * 1e-3) / 1e9


def measure(path):
    import torch
    import torch.nn.functional as F

    rows = []
    print(f"sdpa_baseline: torch {torch.__version__}, {torch.cuda.get_device_name()}")
    for batch in BATCHES:
        for ctx in CTXS:
            try:
                us, gbps = time_sdpa(torch, F, batch, ctx)
                status = "ok"
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                us, gbps, status = float("nan"), float("nan"), "oom"
            except RuntimeError as e:  # a backend refusing the shape
                torch.cuda.empty_cache()
                us, gbps, status = float("nan"), float("nan"), "error: " + str(e)[:60]
            rows.append({"batch": batch, "ctx": ctx, "us": us, "gbps": gbps, "status": status})
            print(f"sdpa bf16 batch {batch:4d} ctx {ctx:6d}: {us:10.1f} us {gbps:7.0f} GB/s {status}",
                  flush=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["batch", "ctx", "us", "gbps", "status"])
        w.writeheader()
        w.writerows(rows)
    return rows


def table(mfa_path, sdpa_rows, out_path):
    sdpa = {(int(r["batch"]), int(r["ctx"])): r for r in sdpa_rows}
    lines = [
        "| KV | batch | ctx | MFA us | MFA GB/s | % of copy | SDPA bf16 us | SDPA GB/s | speed-up vs SDPA |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    copy = None
    with open(mfa_path) as f:
        for r in csv.DictReader(f):
            b, c = int(r["batch"]), int(r["ctx"])
            copy = float(r["copy_gbps"])
            s = sdpa.get((b, c))
            s_us = float(s["us"]) if s and s["status"] == "ok" else float("nan")
            s_gb = float(s["gbps"]) if s and s["status"] == "ok" else float("nan")
            us = float(r["us"])
            lines.append(
                f"| {r['kv']} | {b} | {c} | {us:.1f} | {float(r['gbps']):.0f} | "
                f"{100 * float(r['frac_copy']):.0f}% | {s_us:.1f} | {s_gb:.0f} | {s_us / us:.1f}x |")
    text = "\n".join(lines) + "\n"
    if copy is not None:
        text += f"\nCopy ceiling (D2D, read + write), same run: {copy:.0f} GB/s\n"
    if out_path:
        with open(out_path, "w") as f:
            f.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--mfa")
    ap.add_argument("--table")
    args = ap.parse_args()
    rows = measure(args.csv)
    if args.mfa:
        table(args.mfa, rows, args.table)


if __name__ == "__main__":
    main()
