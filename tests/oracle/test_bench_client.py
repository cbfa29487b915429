"""Drive `afd bench` against a stand-alone fake OpenAI streaming server started in this test.

Engine binary: $AFD_BINARY (default build/afd relative to the repo root). Nothing is skipped.

The fake server (asyncio, HTTP/1.1 keep-alive, chunked SSE, written from the OpenAI streaming
format, not from afd's code) streams exactly max_tokens text chunks: the first after TTFT_S, the
others ITL_S apart, then a usage chunk ({"prompt_tokens": len(prompt), "completion_tokens":
max_tokens}) and `data: [DONE]`. Every SSE event is cut into two HTTP chunks sent 1 ms apart, so
the client sees events split at arbitrary byte boundaries. Text prompts containing a marker
misbehave: FAIL -> HTTP 500, DROP -> connection closed mid-stream, HANG -> no answer, ERRCHUNK ->
an {"error": ...} chunk mid-stream.

Timing assertions are lower bounds implied by the injected delays (a request cannot finish
before the server has slept) and consistency between metrics; no upper bounds, so a slow machine
cannot fail them. Counts are exact. CLI contract and JSON keys: docs/bench.md.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import random
import socket
import subprocess
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
_bin = os.environ.get("AFD_BINARY", "build/afd")
BINARY = Path(_bin) if os.path.isabs(_bin) else REPO / _bin
TIMEOUT = 120

TTFT_S = 0.05
ITL_S = 0.02
# The mean of a request's gaps is its send span (>= (n-1) * ITL_S, guaranteed by the server's
# sleeps) plus (delivery delay of its last chunk - that of its first), which a stall of the client
# or of a loaded machine can make negative by a few ms. 10% of 7 gaps is 14 ms per request.
JITTER = 0.9


class FakeServer:
    def __init__(self, vocab: int | None = 321, model: str = "fake-model",
                 ttft_s: float = TTFT_S, itl_s: float = ITL_S, split: bool = True,
                 close_after_stream: bool = False):
        self.vocab, self.model, self.ttft_s, self.itl_s, self.split = (
            vocab, model, ttft_s, itl_s, split)
        # Close each connection after its stream without saying so (no "Connection: close"),
        # as a server dropping idle keep-alive connections does: the client must retry.
        self.close_after_stream = close_after_stream
        self.requests: list[tuple[str, dict]] = []  # (path, body) of every POST, in order
        self.connections = 0
        self.inflight = 0
        self.max_inflight = 0
        self._rng = random.Random(1)
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self):
        return await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=8192)

    async def _stop(self) -> None:
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET" and path == "/v1/models":
                    entry = {"id": self.model, "object": "model", "max_model_len": 4096}
                    if self.vocab is not None:
                        entry["vocab_size"] = self.vocab
                    await self._send_json(writer, 200, {"object": "list", "data": [entry]})
                elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
                    if not await self._stream(path, json.loads(body), writer):
                        break
                else:
                    await self._send_json(writer, 404, {"error": {"message": "no such path"}})
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # client gone, or the test is over (_stop cancels what still runs)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _send_json(self, writer, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (status, len(data), data))
        await writer.drain()

    async def _event(self, writer, data: str) -> None:
        ev = f"data: {data}\n\n".encode()
        pieces = [ev]
        if self.split:
            cut = self._rng.randrange(1, len(ev))
            pieces = [ev[:cut], ev[cut:]]
        for i, p in enumerate(pieces):
            if i:
                await asyncio.sleep(0.001)
            writer.write(b"%x\r\n%s\r\n" % (len(p), p))
            await writer.drain()

    async def _stream(self, path: str, req: dict, writer) -> bool:
        """Streams one answer; False when the connection must be dropped."""
        self.requests.append((path, req))
        chat = path.endswith("chat/completions")
        prompt = req["messages"][0]["content"] if chat else req["prompt"]
        marker = prompt if isinstance(prompt, str) else ""
        if "FAIL" in marker:
            await self._send_json(writer, 500, {"error": {"message": "injected failure"}})
            return True
        if "HANG" in marker:
            await asyncio.sleep(3600)
        n = int(req["max_tokens"])
        prompt_tokens = len(prompt.split()) if isinstance(prompt, str) else len(prompt)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")

            def chunk(text: str) -> str:
                if chat:
                    return json.dumps({"object": "chat.completion.chunk",
                                       "choices": [{"index": 0, "delta": {"content": text}}]})
                return json.dumps({"object": "text_completion",
                                   "choices": [{"index": 0, "text": text}]})

            if chat:  # the role chunk comes at once and carries no text
                await self._event(writer, json.dumps({"choices": [{"index": 0, "delta": {
                    "role": "assistant", "content": ""}}]}))
            for k in range(n):
                await asyncio.sleep(self.ttft_s if k == 0 else self.itl_s)
                await self._event(writer, chunk(f" t{k}"))
                if "DROP" in marker:
                    return False
                if "ERRCHUNK" in marker:
                    await self._event(writer, json.dumps(
                        {"error": {"message": "rank 1 is down", "code": 503}}))
                    break
            await self._event(writer, json.dumps({"choices": [], "usage": {
                "prompt_tokens": prompt_tokens, "completion_tokens": n,
                "total_tokens": prompt_tokens + n}}))
            await self._event(writer, "[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return not self.close_after_stream
        finally:
            self.inflight -= 1


def bench(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(BINARY), "bench", "--url", url, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if check:
        assert p.returncode == 0, f"{cmd}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def bench_json(url: str, *args: str) -> dict:
    p = bench(url, "--json", "--no-progress", *args)
    return json.loads(p.stdout)


def write_dataset(path: Path, lines: list[dict]) -> str:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


METRICS = ("ttft", "tpot", "itl", "e2el")


def check_consistency(j: dict) -> None:
    """Relations that hold for any run, whatever the machine's speed."""
    for m in METRICS:
        if j[f"{m}_samples"] == 0:
            continue
        assert j[f"median_{m}_ms"] <= j[f"p90_{m}_ms"] <= j[f"p99_{m}_ms"], m
        assert j[f"std_{m}_ms"] >= 0, m
    # Per request TTFT <= E2EL, so every order statistic keeps the order too.
    for s in ("mean", "median", "p90", "p99"):
        assert j[f"{s}_ttft_ms"] <= j[f"{s}_e2el_ms"]
    d = j["duration"]
    assert d > 0
    assert math.isclose(j["request_throughput"] * d, j["completed"], rel_tol=1e-9)
    assert math.isclose(j["output_throughput"] * d, j["total_output_tokens"], rel_tol=1e-9)
    assert math.isclose(j["total_token_throughput"] * d,
                        j["total_input_tokens"] + j["total_output_tokens"], rel_tol=1e-9)
    # No request outlives the run.
    assert j["p99_e2el_ms"] <= d * 1e3 * (1 + 1e-9)


def test_counts_and_timings_at_fixed_concurrency():
    n, c, in_len, out_len = 12, 3, 16, 8
    with FakeServer() as s:
        j = bench_json(s.url, "--max-concurrency", str(c), "--num-prompts", str(n),
                       "--input-len", str(in_len), "--output-len", str(out_len), "--seed", "1")
        posts = list(s.requests)
        connections, max_inflight = s.connections, s.max_inflight
    assert j["completed"] == n and j["failed"] == 0 and j["errors"] == []
    assert j["total_output_tokens"] == n * out_len
    assert j["total_input_tokens"] == n * in_len
    assert j["max_concurrency"] == c and j["request_rate"] == "inf"
    assert j["model"] == "fake-model"  # taken from /v1/models
    assert j["max_in_flight"] == c
    assert max_inflight <= c
    # Idle keep-alive connections are reused: one per concurrent slot, plus the /v1/models GET.
    assert connections == c + 1
    assert len(posts) == n
    for path, req in posts:
        assert path == "/v1/completions"
        assert req["model"] == "fake-model"
        assert req["stream"] is True and req["stream_options"] == {"include_usage": True}
        assert req["max_tokens"] == out_len
        assert len(req["prompt"]) == in_len
        assert all(isinstance(t, int) and 0 <= t < 321 for t in req["prompt"])  # vocab_size
    assert j["ttft_samples"] == n and j["tpot_samples"] == n and j["e2el_samples"] == n
    assert j["itl_samples"] == n * (out_len - 1)
    check_consistency(j)
    min_e2e_ms = (TTFT_S + (out_len - 1) * ITL_S) * 1e3
    for s_ in ("mean", "median", "p90", "p99"):
        assert j[f"{s_}_ttft_ms"] >= TTFT_S * 1e3
        assert j[f"{s_}_e2el_ms"] >= min_e2e_ms
    assert j["mean_itl_ms"] >= JITTER * ITL_S * 1e3
    assert j["mean_tpot_ms"] >= JITTER * ITL_S * 1e3
    # At most c requests at once, each lasting at least min_e2e: the run cannot be shorter.
    assert j["duration"] >= n * min_e2e_ms / 1e3 / c


def test_stale_keep_alive_connections_are_retried():
    with FakeServer(close_after_stream=True, ttft_s=0.005, itl_s=0.005) as s:
        j = bench_json(s.url, "--max-concurrency", "2", "--num-prompts", "10", "--input-len",
                       "4", "--output-len", "2")
        posts, connections = len(s.requests), s.connections
    assert j["completed"] == 10 and j["failed"] == 0, j["errors"]
    assert posts == 10  # a retry happens only when the server never saw the request
    assert connections == 11  # every stream on a fresh connection, plus the /v1/models GET


def test_request_rate_and_warmup():
    with FakeServer() as s:
        j = bench_json(s.url, "--request-rate", "40", "--warmup", "2", "--num-prompts", "10",
                       "--input-len", "8", "--output-len", "3", "--seed", "4")
        posts = list(s.requests)
    assert len(posts) == 12  # warm-up requests reach the server
    assert j["completed"] == 10 and j["failed"] == 0
    assert j["total_output_tokens"] == 30  # but not the report
    assert j["request_rate"] == 40 and j["max_concurrency"] is None and j["warmup"] == 2
    check_consistency(j)


def test_all_at_once_opens_every_stream_together():
    n = 2000
    with FakeServer(ttft_s=0.3, itl_s=0.01, split=False) as s:
        j = bench_json(s.url, "--num-prompts", str(n), "--input-len", "4", "--output-len", "3",
                       "--timeout-s", "100")
    assert j["completed"] == n and j["failed"] == 0, j["errors"]
    assert j["max_in_flight"] == n
    assert j["total_output_tokens"] == 3 * n
    check_consistency(j)


def test_seeded_random_lengths():
    def run(seed: str) -> tuple[dict, list]:
        with FakeServer(ttft_s=0.001, itl_s=0.001, vocab=None) as s:
            j = bench_json(s.url, "--max-concurrency", "1", "--num-prompts", "20",
                           "--input-len", "16", "--output-len", "4", "--range-ratio", "0.5",
                           "--seed", seed)
            return j, [req for _, req in s.requests]

    j, reqs = run("5")
    j2, reqs2 = run("5")
    _, reqs3 = run("6")
    assert reqs == reqs2  # concurrency 1 keeps the order, so this compares request by request
    assert reqs != reqs3
    assert {len(r["prompt"]) for r in reqs} <= set(range(8, 25))
    assert {r["max_tokens"] for r in reqs} <= set(range(2, 7))
    assert len({len(r["prompt"]) for r in reqs}) > 1
    assert all(0 <= t < 1000 for r in reqs for t in r["prompt"])  # no vocab_size: 1000
    assert j["total_output_tokens"] == sum(r["max_tokens"] for r in reqs)
    assert j["total_input_tokens"] == sum(len(r["prompt"]) for r in reqs)
    for k in ("completed", "total_input_tokens", "total_output_tokens", "ttft_samples",
              "itl_samples", "tpot_samples"):
        assert j[k] == j2[k], k


def test_failures_are_counted_and_bounded(tmp_path):
    ok = {"prompt": "hello world", "max_tokens": 2}
    lines = [ok, {"prompt": "FAIL"}, ok, {"prompt": "DROP this"}, {"prompt": "HANG"},
             {"prompt": "ERRCHUNK now", "max_tokens": 3}, ok]
    ds = write_dataset(tmp_path / "d.jsonl", lines)
    with FakeServer() as s:
        p = bench(s.url, "--json", "--no-progress", "--dataset", ds, "--num-prompts", "7",
                  "--timeout-s", "1.5", "--output-len", "5")
    j = json.loads(p.stdout)
    assert j["completed"] == 3 and j["failed"] == 4
    assert j["total_output_tokens"] == 6
    assert j["total_input_tokens"] == 6  # the server counts words
    errors = " | ".join(j["errors"])
    assert len(j["errors"]) == 4
    assert "HTTP 500" in errors and "injected failure" in errors
    assert "timed out" in errors
    assert "closed by the server" in errors
    assert "rank 1 is down" in errors
    # The first three failures are printed as they happen, then only counted.
    assert p.stderr.count("failed:") == 3
    assert "further failures are counted" in p.stderr
    check_consistency(j)


def test_chat_endpoint_skips_the_role_chunk(tmp_path):
    ds = write_dataset(tmp_path / "chat.jsonl",
                       [{"prompt": "one two three", "max_tokens": 3},
                        {"prompt": "four five", "max_tokens": 2}])
    with FakeServer() as s:
        j = bench_json(s.url, "--endpoint", "/v1/chat/completions", "--dataset", ds,
                       "--num-prompts", "4", "--max-concurrency", "2", "--model", "mine")
        posts = list(s.requests)
    assert j["completed"] == 4 and j["failed"] == 0
    assert j["total_output_tokens"] == 10 and j["total_input_tokens"] == 10
    assert j["model"] == "mine" and j["endpoint"] == "/v1/chat/completions"
    assert all(p == "/v1/chat/completions" and r["model"] == "mine" for p, r in posts)
    assert posts[0][1]["messages"] == [{"role": "user", "content": "one two three"}]
    # The role chunk arrives at once; the first text only after TTFT_S.
    assert j["median_ttft_ms"] >= TTFT_S * 1e3
    check_consistency(j)


def test_goodput():
    args = ["--max-concurrency", "4", "--num-prompts", "8", "--input-len", "4",
            "--output-len", "3"]
    with FakeServer() as s:
        loose = bench_json(s.url, *args, "--tpot-slo-ms", "1e6")
        tight = bench_json(s.url, *args, "--tpot-slo-ms", "1")  # below the injected ITL
    assert loose["good_requests"] == 8 and loose["tpot_slo_ms"] == 1e6
    assert math.isclose(loose["request_goodput"] * loose["duration"], 8, rel_tol=1e-9)
    assert tight["good_requests"] == 0 and tight["request_goodput"] == 0


def test_text_report_and_progress_lines():
    with FakeServer() as s:
        p = bench(s.url, "--num-prompts", "5", "--input-len", "4", "--output-len", "2",
                  "--tpot-slo-ms", "500")
    out = p.stdout
    assert "Serving Benchmark Result" in out
    assert any(l.startswith("Successful requests:") and l.split()[-1] == "5"
               for l in out.splitlines())
    for needle in ("Failed requests:", "Request throughput (req/s):",
                   "Request goodput, TPOT <= 500 ms (req/s):", "Mean TTFT (ms):",
                   "P99 TPOT (ms):", "Median ITL (ms):", "P90 E2EL (ms):"):
        assert needle in out, needle
    # stderr is not a terminal here: progress comes as lines, the last one complete.
    assert "bench: 5/5 done (100%)" in p.stderr


def test_unreachable_server_is_one_line_error():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = bench(f"http://127.0.0.1:{port}", "--num-prompts", "2", check=False)
    assert p.returncode != 0 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("afd: error: cannot reach the server"), p.stderr


def test_all_failed_prints_report_and_exits_nonzero(tmp_path):
    ds = write_dataset(tmp_path / "f.jsonl", [{"prompt": "FAIL"}])
    with FakeServer() as s:
        p = bench(s.url, "--json", "--no-progress", "--dataset", ds, "--num-prompts", "3",
                  check=False)
    assert p.returncode == 1
    j = json.loads(p.stdout)
    assert j["completed"] == 0 and j["failed"] == 3 and j["mean_ttft_ms"] is None
    assert p.stderr.strip().splitlines()[-1].startswith("afd: error: all 3 requests failed")


@pytest.mark.parametrize("args, needle", [
    (["--request-rate", "0"], "--request-rate"),
    (["--endpoint", "/v1/chat/completions"], "--dataset"),
    (["--extra-body", "[1]"], "--extra-body"),
])
def test_bad_arguments(args, needle):
    with FakeServer() as s:
        p = bench(s.url, "--num-prompts", "1", *args, check=False)
    assert p.returncode != 0 and p.stdout == ""
    assert needle in p.stderr
