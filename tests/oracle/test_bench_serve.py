"""Smoke test: `afd bench` against a real `afd serve --model step3-tiny --colocated`.

Engine binary: $AFD_BINARY (default build/afd relative to the repo root). Nothing is skipped.
The server prints its URL on stdout when ready (`--port 0` picks a free port). The model may stop
at EOS before max_tokens, so output counts are bounded, not exact; every request must succeed.
"""
from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
_bin = os.environ.get("AFD_BINARY", "build/afd")
BINARY = Path(_bin) if os.path.isabs(_bin) else REPO / _bin
START_TIMEOUT = 180
BENCH_TIMEOUT = 300


@pytest.fixture(scope="module")
def server_url():
    proc = subprocess.Popen([str(BINARY), "serve", "--model", "step3-tiny", "--colocated",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=REPO)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=1):
                m = re.search(r"http://[\w.\-\[\]:]+", proc.stdout.readline())
                url = m.group(0) if m else None
        assert url, f"afd serve did not print its URL (exit code {proc.poll()})"
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_bench_against_afd_serve(server_url):
    n, c, in_len, out_len = 32, 8, 24, 12
    p = subprocess.run([str(BINARY), "bench", "--url", server_url, "--json", "--no-progress",
                        "--num-prompts", str(n), "--max-concurrency", str(c), "--warmup", "2",
                        "--input-len", str(in_len), "--output-len", str(out_len),
                        "--tpot-slo-ms", "1e6"],
                       capture_output=True, text=True, timeout=BENCH_TIMEOUT)
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["completed"] == n and j["failed"] == 0, j["errors"]
    assert j["model"] == "step3-tiny"  # from /v1/models
    # Token-id prompts are counted as sent (one more if the server adds a BOS).
    assert n * in_len <= j["total_input_tokens"] <= n * (in_len + 1)
    assert 0 < j["total_output_tokens"] <= n * out_len
    assert j["good_requests"] == n
    assert 1 <= j["max_in_flight"] <= c
    # Every request has an end-to-end time. A request whose first sampled token is the
    # tokenizer's EOS (step3-tiny's random weights sample it now and then) ends with no content
    # chunk and so, as in vLLM's bench, has no TTFT; all the others have one.
    assert j["e2el_samples"] == n
    assert n - 4 <= j["ttft_samples"] <= n
    for s in ("mean", "median", "p90", "p99"):
        assert 0 < j[f"{s}_ttft_ms"] <= j[f"{s}_e2el_ms"]


def test_text_report_against_afd_serve(server_url):
    p = subprocess.run([str(BINARY), "bench", "--url", server_url, "--num-prompts", "8",
                        "--request-rate", "50", "--input-len", "8", "--output-len", "4"],
                       capture_output=True, text=True, timeout=BENCH_TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert "Serving Benchmark Result" in p.stdout
    assert re.search(r"^Successful requests:\s+8$", p.stdout, re.M), p.stdout
    assert re.search(r"^Failed requests:\s+0$", p.stdout, re.M), p.stdout
