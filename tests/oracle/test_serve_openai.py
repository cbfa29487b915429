"""`afd serve` through the official `openai` Python client, on loopback only.

Engine binary: $AFD_BINARY (default build/afd relative to the repo root). Nothing is skipped.

Each fixture starts `afd serve --model step3-tiny --tokenizer tests/data/tokenizer-small --port 0`
in its own process group (the server prints its URL on stdout) and kills the group on teardown.
The main fixture is the real AFD cluster: 2 attention + 2 FFN ranks, one process each, over UCX.

Oracles, independent of the server's code:
  - the prompt's token ids: HF `tokenizers` on tests/data/tokenizer-small, plus BOS as its
    tokenizer_config.json says (add_bos_token);
  - the completion: `afd generate --greedy` (the CPU reference engine) on those ids gives the
    token ids; HF `tokenizers` decodes them (special tokens skipped), cut after the first EOS.
Every wait is bounded; no timing thresholds are asserted.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import select
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
_bin = os.environ.get("AFD_BINARY", "build/afd")
BINARY = Path(_bin) if os.path.isabs(_bin) else REPO / _bin
TOKENIZER_DIR = REPO / "tests" / "data" / "tokenizer-small"
MODEL = "step3-tiny"
KV_TOKENS = 2048  # per attention rank; also the served context (min with the model's 4096)
# f32 activations between attention and FFN ranks: the tokens then equal the reference
# engine's exactly (fp8, the serving default, rounds them).
EXACT = ("--dispatch-dtype", "f32")
START_TIMEOUT = 120
REQUEST_TIMEOUT = 120

HF = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
_cfg = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
BOS = HF.token_to_id(_cfg["bos_token"])
EOS = HF.token_to_id(_cfg["eos_token"])


def hf_prompt_ids(text: str) -> list[int]:
    bos = [BOS] if _cfg.get("add_bos_token") else []
    return bos + HF.encode(text, add_special_tokens=False).ids


# ---- the server under test -----------------------------------------------------------------

class Server:
    """`afd serve` in its own process group; stop() kills the whole group (workers too)."""

    def __init__(self, *args: str, log_name: str = "serve", kv_tokens: int = KV_TOKENS):
        if not BINARY.is_file() or not os.access(BINARY, os.X_OK):
            pytest.fail(f"afd binary not found at {BINARY} (set AFD_BINARY or build it)")
        self.cmd = [str(BINARY), "serve", "--model", MODEL, "--tokenizer", str(TOKENIZER_DIR),
                    "--host", "127.0.0.1", "--port", "0", "--kv-tokens", str(kv_tokens), *args]
        tmp = Path(os.environ.get("TMPDIR", "/tmp"))
        self.stderr_path = tmp / f"afd-{log_name}-{os.getpid()}.log"
        self.stderr = open(self.stderr_path, "w+")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        self.url = self._wait_for_url()
        self.port = int(self.url.rsplit(":", 1)[1])

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        line = ""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                line = self.proc.stdout.readline()
                m = re.search(r"http://127\.0\.0\.1:\d+", line)
                if m:
                    return m.group(0)
            if self.proc.poll() is not None:
                break
        self.stop()
        pytest.fail(f"afd serve did not start ({' '.join(self.cmd)}): {line!r}\n{self.log()}")

    def log(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text()[-4000:]

    def client(self, **kw) -> openai.OpenAI:
        kw.setdefault("timeout", REQUEST_TIMEOUT)
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, **kw)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=REQUEST_TIMEOUT) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def raw(self, method: str, path: str, body: bytes | None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics: 'name{labels}' -> value."""
        status, text = self.get("/metrics")
        assert status == 200
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:  # whatever is left of the group (workers), and a server that ignored SIGTERM
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        self.proc.stdout.close()
        self.stderr.close()


def sum_metric(m: dict[str, float], name: str) -> float:
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def wait_until(pred, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster():
    s = Server("--attention-ranks", "2", "--ffn-ranks", "2", "--transport", "ucx", *EXACT,
               log_name="cluster")
    yield s
    s.stop()


_REF_CACHE: dict[tuple[tuple[int, ...], int], list[int]] = {}


def reference_tokens(prompt_ids: list[int], n: int) -> list[int]:
    """Greedy ids from `afd generate` (no EOS stop), cut after the first EOS as a server does."""
    key = (tuple(prompt_ids), n)
    if key not in _REF_CACHE:
        out = subprocess.run([str(BINARY), "generate", "--model", MODEL, "--greedy", "--json",
                              "--prompt-ids", ",".join(map(str, prompt_ids)),
                              "--max-new-tokens", str(n)],
                             capture_output=True, text=True, timeout=REQUEST_TIMEOUT)
        assert out.returncode == 0, out.stderr
        toks = json.loads(out.stdout)["tokens"]
        if EOS in toks:
            toks = toks[: toks.index(EOS) + 1]
        _REF_CACHE[key] = toks
    return _REF_CACHE[key]


def expected(prompt_ids: list[int], n: int) -> tuple[str, str, int]:
    """(text, finish_reason, completion_tokens) the server must give for a greedy request."""
    toks = reference_tokens(prompt_ids, n)
    finish = "stop" if toks and toks[-1] == EOS and len(toks) <= n else "length"
    return HF.decode(toks, skip_special_tokens=True), finish, len(toks)


PROMPTS = ["Hello world", "The quick brown fox jumps over the lazy dog.", "def f(x): return 42",
           "你好，世界！", "Numbers: 1 2 3 100 2024"]


# ---- endpoints ------------------------------------------------------------------------------

def test_models_health_and_metrics(cluster):
    models = cluster.client().models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert cluster.client().models.retrieve(MODEL).id == MODEL
    status, body = cluster.get("/health")
    assert status == 200, body
    health = json.loads(body)
    assert health["status"] == "ok"
    assert sorted(r["name"] for r in health["ranks"]) == [
        "attention 0", "attention 1", "ffn 0", "ffn 1"]
    m = cluster.metrics()
    for name in ["afd_time_to_first_token_seconds_count", "afd_time_per_output_token_seconds_count",
                 "afd_e2e_request_latency_seconds_count", "afd_transfer_latency_seconds_count",
                 "afd_frontend_requests_in_flight", "afd_prompt_tokens_total",
                 "afd_generation_tokens_total"]:
        assert name in m, name
    for rank in ["attention 0", "attention 1"]:
        for fam in ["afd_requests_running", "afd_requests_waiting", "afd_kv_cache_usage_ratio"]:
            assert f'{fam}{{rank="{rank}"}}' in m, (fam, rank)
    for rank in ["attention 0", "attention 1", "ffn 0", "ffn 1"]:
        for stage in ["compute", "wait", "comm"]:
            assert f'afd_rank_busy_seconds_total{{rank="{rank}",stage="{stage}"}}' in m
        assert m[f'afd_rank_up{{rank="{rank}"}}'] == 1


# ---- completions and chat -------------------------------------------------------------------

@pytest.mark.parametrize("prompt", PROMPTS)
def test_completion_matches_reference_engine_and_hf_tokenizer(cluster, prompt):
    ids = hf_prompt_ids(prompt)
    text, finish, n_out = expected(ids, 12)
    r = cluster.client().completions.create(model=MODEL, prompt=prompt, max_tokens=12,
                                            temperature=0)
    assert r.object == "text_completion"
    assert r.id.startswith("cmpl-")
    assert r.model == MODEL
    assert len(r.choices) == 1
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens == n_out
    assert r.usage.total_tokens == len(ids) + n_out
    assert r.choices[0].finish_reason == finish
    assert r.choices[0].text == text
    # The same prompt as token ids gives the same answer.
    r2 = cluster.client().completions.create(model=MODEL, prompt=ids, max_tokens=12,
                                             temperature=0)
    assert r2.choices[0].text == text
    assert r2.usage.prompt_tokens == len(ids)


@pytest.mark.parametrize("prompt", PROMPTS[:3])
def test_streaming_completion(cluster, prompt):
    ids = hf_prompt_ids(prompt)
    text, finish, n_out = expected(ids, 12)
    stream = cluster.client().completions.create(
        model=MODEL, prompt=prompt, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True})
    pieces, finishes, usage, ids_seen = [], [], None, set()
    for chunk in stream:
        ids_seen.add(chunk.id)
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
            continue
        assert len(chunk.choices) == 1
        pieces.append(chunk.choices[0].text)
        if chunk.choices[0].finish_reason is not None:
            finishes.append(chunk.choices[0].finish_reason)
    assert len(ids_seen) == 1
    assert "".join(pieces) == text
    assert finishes == [finish]
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (len(ids), n_out)


def test_chat_streaming_equals_non_streaming(cluster):
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Tell me about the fox."}]
    r = cluster.client().chat.completions.create(model=MODEL, messages=msgs, max_tokens=10,
                                                 temperature=0)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    msg = r.choices[0].message
    assert msg.role == "assistant"
    assert r.choices[0].finish_reason in ("length", "stop")
    # The rendered conversation is longer than its texts.
    content_tokens = sum(len(HF.encode(m["content"], add_special_tokens=False).ids) for m in msgs)
    assert r.usage.prompt_tokens > content_tokens
    assert 1 <= r.usage.completion_tokens <= 10

    stream = cluster.client().chat.completions.create(
        model=MODEL, messages=msgs, max_completion_tokens=10, temperature=0, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks
                if c.choices and c.choices[0].finish_reason]
    assert text == (msg.content or "")
    assert finishes == [r.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens


def test_stop_string_cuts_the_text_and_frees_the_request(cluster):
    ids = hf_prompt_ids(PROMPTS[1])
    full, _, _ = expected(ids, 24)
    # A stop string from the middle of the greedy text: the answer ends before its first
    # occurrence, without it.
    k = len(full) // 2
    stop = full[k:k + 2]
    assert len(stop) == 2 and stop.strip(), f"reference text too short or blank: {full!r}"
    want = full[: full.find(stop)]
    for stream in (False, True):
        kw = dict(model=MODEL, prompt=ids, max_tokens=24, temperature=0, stop=[stop, "\x00never"])
        if stream:
            chunks = list(cluster.client().completions.create(stream=True, **kw))
            got = "".join(c.choices[0].text for c in chunks)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason]
            assert finish == ["stop"]
        else:
            r = cluster.client().completions.create(**kw)
            got = r.choices[0].text
            assert r.choices[0].finish_reason == "stop"
        assert got == want
    # The request was cancelled in the engine: nothing keeps running.
    wait_until(lambda: sum_metric(cluster.metrics(), "afd_requests_running") == 0
               and cluster.metrics()["afd_frontend_requests_in_flight"] == 0,
               what="no running requests after a stop string")


def test_seeded_sampling_is_reproducible(cluster):
    kw = dict(model=MODEL, prompt="Once upon a time", max_tokens=10, temperature=1.0, top_p=0.9,
              seed=1234, extra_body={"top_k": 50})  # top_k is an extension, as in vLLM
    a = cluster.client().completions.create(**kw)
    b = cluster.client().completions.create(**kw)
    assert a.choices[0].text == b.choices[0].text
    assert a.usage.completion_tokens == b.usage.completion_tokens


# ---- errors -----------------------------------------------------------------------------------

def assert_error_shape(body: dict, status: int):
    assert set(body) >= {"error"}, body
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]


def test_errors(cluster):
    c = cluster.client()
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=MODEL, prompt="hi", n=2)
    assert e.value.status_code == 400
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model=MODEL, prompt="hi", temperature=5)
    with pytest.raises(openai.BadRequestError):  # id outside the model's vocabulary (1000)
        c.completions.create(model=MODEL, prompt=[5, 1000])
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="gpt-4o", prompt="hi")
    # Prompt longer than the context: 413.
    with pytest.raises(openai.APIStatusError) as e:
        c.completions.create(model=MODEL, prompt=[5] * (KV_TOKENS + 10), max_tokens=1)
    assert e.value.status_code == 413
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:  # prompt + max_tokens past the context
        c.completions.create(model=MODEL, prompt=[5] * 10, max_tokens=KV_TOKENS)
    assert e.value.body["param"] == "max_tokens"
    # Raw HTTP: bad JSON, unknown route, wrong method.
    status, body = cluster.raw("POST", "/v1/completions", b"{not json")
    assert status == 400
    assert_error_shape(body, 400)
    status, body = cluster.raw("POST", "/v1/chat/completions", json.dumps({"messages": 3}).encode())
    assert status == 400
    assert body["error"]["param"] == "messages"
    status, body = cluster.raw("GET", "/v1/nothing", None)
    assert status == 404
    assert_error_shape(body, 404)
    status, body = cluster.raw("GET", "/v1/completions", None)
    assert status == 405
    assert_error_shape(body, 405)
    # None of it reached the engine or broke the server.
    assert cluster.get("/health")[0] == 200


# ---- cancellation -------------------------------------------------------------------------

def test_client_closing_a_stream_cancels_the_request(cluster):
    before = cluster.metrics().get('afd_requests_finished_total{reason="abort"}', 0)
    stream = cluster.client().completions.create(model=MODEL, prompt="Tell a long story",
                                                 max_tokens=1500, temperature=0, stream=True)
    seen = 0
    for _ in stream:
        seen += 1
        if seen == 3:
            break
    assert sum_metric(cluster.metrics(), "afd_requests_running") >= 1
    stream.close()  # closes the connection mid-stream
    m = wait_until(lambda: (lambda m: m if sum_metric(m, "afd_requests_running") == 0
                            and m["afd_frontend_requests_in_flight"] == 0 else None)(
        cluster.metrics()), what="the closed stream to be cancelled")
    assert m['afd_requests_finished_total{reason="abort"}'] == before + 1
    # Its KV blocks were freed.
    wait_until(lambda: sum_metric(cluster.metrics(), "afd_kv_cache_usage_ratio") == 0,
               what="KV cache to be empty")


# ---- 4,096 concurrent streams on one frontend ---------------------------------------------

N_STREAMS = 4096
STORM_TOKENS = 4
STORM_PROMPTS = [[BOS, 10 + i, 20 + 3 * i, 7] for i in range(8)]


def _dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[eol + 2: eol + 2 + size]
        pos = eol + 2 + size + 2


async def _one_stream(port: int, prompt: list[int], go: asyncio.Event,
                      connected: list[int]) -> tuple[int, str, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connected[0] += 1
    try:
        await go.wait()  # every connection is open before any request is sent
        body = json.dumps({"model": MODEL, "prompt": prompt, "max_tokens": STORM_TOKENS,
                           "temperature": 0, "stream": True,
                           "stream_options": {"include_usage": True}}).encode()
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        raw = await reader.read()  # until the server closes (Connection: close)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = _dechunk(payload)
    events = [e[len("data: "):] for e in payload.decode().split("\n\n") if e.startswith("data: ")]
    text, finishes, usage, ids = "", [], None, set()
    assert events and events[-1] == "[DONE]", (status, events[-3:])
    for e in events[:-1]:
        j = json.loads(e)
        ids.add(j["id"])
        if j.get("usage"):
            usage = j["usage"]
            continue
        text += j["choices"][0]["text"]
        if j["choices"][0]["finish_reason"]:
            finishes.append(j["choices"][0]["finish_reason"])
    assert len(ids) == 1 and len(finishes) == 1, events
    return status, text, {"finish": finishes[0], "usage": usage, "id": ids.pop()}


async def _storm(port: int) -> tuple[list, int]:
    go, connected = asyncio.Event(), [0]
    tasks = [asyncio.create_task(
        _one_stream(port, STORM_PROMPTS[i % len(STORM_PROMPTS)], go, connected))
        for i in range(N_STREAMS)]
    for _ in range(1200):  # bounded: at most 60 s for the connects
        if connected[0] == N_STREAMS or any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.05)
    open_together = connected[0]
    go.set()
    return await asyncio.wait_for(asyncio.gather(*tasks), timeout=900), open_together


def test_4096_concurrent_streams_all_complete_and_correct():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= N_STREAMS + 256, \
        "the fd limit is too low for 4096 connections"
    s = Server("--attention-ranks", "2", "--ffn-ranks", "2", "--transport", "ucx", *EXACT,
               "--max-batch", "512", "--max-batch-tokens", "2048", log_name="storm")
    try:
        refs = {}
        for p in STORM_PROMPTS:  # reference answers, one at a time, from the same server
            r = s.client().completions.create(model=MODEL, prompt=p, max_tokens=STORM_TOKENS,
                                              temperature=0)
            refs[tuple(p)] = (r.choices[0].text, r.choices[0].finish_reason,
                              r.usage.completion_tokens)
            assert (r.choices[0].text, r.choices[0].finish_reason,
                    r.usage.completion_tokens) == expected(p, STORM_TOKENS)
        t0 = time.monotonic()
        results, open_together = asyncio.run(_storm(s.port))
        print(f"{N_STREAMS} streams in {time.monotonic() - t0:.1f} s")
        assert open_together == N_STREAMS  # all connections were open at once
        assert len(results) == N_STREAMS
        bad = []
        for i, (status, text, meta) in enumerate(results):
            want = refs[tuple(STORM_PROMPTS[i % len(STORM_PROMPTS)])]
            got = (text, meta["finish"], meta["usage"]["completion_tokens"])
            if status != 200 or got != want:
                bad.append((i, status, got, want))
        assert not bad, f"{len(bad)} of {N_STREAMS} streams wrong, e.g. {bad[:3]}"
        assert len({meta["id"] for _, _, meta in results}) == N_STREAMS
        m = s.metrics()
        assert m["afd_frontend_requests_in_flight"] == 0
        assert m['afd_http_responses_total{route="/v1/completions",status="200"}'] >= N_STREAMS
    finally:
        s.stop()


# ---- a rank killed under load ---------------------------------------------------------------

def _worker_pid(server_pid: int, role: str, index: int) -> int:
    """The `afd worker --role ROLE --index I` child of the server, from /proc."""
    seen = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            args = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid != server_pid:
            continue
        argv = [a.decode() for a in args if a]
        seen.append(" ".join(argv))
        flag = {k: v for k, v in zip(argv, argv[1:]) if k.startswith("--")}
        if "worker" in argv and flag.get("--role") == role and flag.get("--index") == str(index):
            return int(d.name)
    pytest.fail(f"no {role} {index} worker under {server_pid}: {seen}")


@pytest.mark.parametrize("role,index", [("attention", 1), ("ffn", 0)])
def test_rank_killed_under_load_fails_requests_and_is_reported(role, index):
    s = Server("--attention-ranks", "2", "--ffn-ranks", "2", "--transport", "ucx", *EXACT,
               "--peer-timeout-ms", "3000", log_name="kill", kv_tokens=32768)
    try:
        n = 16
        started = threading.Barrier(n + 1, timeout=REQUEST_TIMEOUT)
        outcomes: list = [None] * n

        def run(i: int):
            t0 = time.monotonic()
            first = True
            try:
                stream = s.client(timeout=60).completions.create(
                    model=MODEL, prompt=[BOS, 5 + i, 9], max_tokens=1000, temperature=0,
                    stream=True)
                for _ in stream:
                    if first:
                        first = False
                        started.wait()
                outcomes[i] = ("completed", time.monotonic() - t0)
            except openai.APIError as e:  # an SSE error event, a 503, or a dropped connection
                outcomes[i] = (f"error {type(e).__name__}: {e}", time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001 - reported below as a test failure
                outcomes[i] = (f"unexpected {type(e).__name__}: {e}", time.monotonic() - t0)
            finally:
                if first:
                    try:
                        started.wait()
                    except threading.BrokenBarrierError:
                        pass

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        started.wait()  # every stream has produced a token: the ranks are busy
        os.kill(_worker_pid(s.proc.pid, role, index), signal.SIGKILL)
        for t in threads:
            t.join(timeout=180)  # a bound: no connection may hang
        assert not any(t.is_alive() for t in threads), "a request hung after a rank died"
        assert all(o is not None for o in outcomes)
        assert not [o for o in outcomes if o[0].startswith("unexpected")], outcomes
        # The KV cache holds all 16 at once and none can finish 1000 tokens before the kill
        # (EOS aside), so the failure reaches requests in flight.
        errors = [o for o in outcomes if o[0].startswith("error")]
        assert errors, f"no request saw the failure: {outcomes}"
        # /health names the dead rank.
        status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(s.get("/health")),
                                  timeout=60, what="/health to report the dead rank")
        down = [d["name"] for d in json.loads(body)["down"]]
        assert f"{role} {index}" in down, body
        assert s.metrics()[f'afd_rank_up{{rank="{role} {index}"}}'] == 0
        # New requests are refused with 503, not hung.
        with pytest.raises(openai.APIStatusError) as e:
            s.client(timeout=60).completions.create(model=MODEL, prompt=[BOS, 5], max_tokens=4)
        assert e.value.status_code == 503
        assert s.metrics()["afd_frontend_requests_in_flight"] == 0
    finally:
        s.stop()
