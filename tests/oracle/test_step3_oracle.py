"""Drive `afd generate` on tiny random Step-3 checkpoints and compare with the numpy oracle.

Engine binary: $AFD_BINARY (default build/afd relative to the repo root). Nothing is skipped:
a missing binary is a test failure.

CLI contract assumed (single prompt):
  afd generate --model DIR --prompt-ids 5,17,2,99,42,7,3 --max-new-tokens 6 --greedy --json \
      --dump-logits OUT.bin
  stdout: one JSON object {"prompt_ids": [...], "tokens": [...generated only...], "timings": {...}}
  OUT.bin: float32 little-endian [steps, vocab]; row i = logits from which tokens[i] was chosen.
Batched: repeated --prompt-ids, stdout {"sequences": [{"prompt_ids", "tokens"}, ...], "timings": {...}}.
Errors (missing tensor, wrong shape, prompt id >= vocab): non-zero exit, tensor name on stderr.

Tolerance: $AFD_ORACLE_RTOL (default 1e-3), relative to max|ref| of each logits row.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy as stnp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_checkpoint as MC  # noqa: E402
import step3_ref as R  # noqa: E402

REPO = HERE.parents[1]
_bin = os.environ.get("AFD_BINARY", "build/afd")
BINARY = Path(_bin) if os.path.isabs(_bin) else REPO / _bin
RTOL = float(os.environ.get("AFD_ORACLE_RTOL", "1e-3"))
TIMEOUT = 120

PROMPT = [5, 17, 2, 99, 42, 7, 3]
NEW_TOKENS = 6

CASES = {
    # defaults: hidden 200, 3 heads x 72, share_q 136, inter 300, 5 experts top-2,
    # moe_inter 150, share_expert 130, vocab 333, 3 layers, MoE layer "1"
    "bf16_flat_1shard": dict(dtype="bf16", shards=1, seed=11),
    "bf16_nested_prefix_vision_3shards": dict(dtype="bf16", shards=3, nested=True, prefix=True,
                                              vision=True, seed=12),
    "fp8_1shard": dict(dtype="fp8", shards=1, seed=13),
    # hidden 260 / inter 300 -> 3 blocks with a partial last one; top-3 of 4; MoE in 2 layers
    "fp8_2shards": dict(dtype="fp8", shards=2, hidden=260, experts=4, top_k=3,
                        moe_layers="1,2", nested=True, seed=14),
    "norm_expert_weight": dict(dtype="bf16", shards=1, experts=4, top_k=3, moe_layers="1,2",
                               norm_expert_weight=True, seed=15),
}

_CACHE = {}


@pytest.fixture(scope="session")
def afd():
    if not BINARY.is_file() or not os.access(BINARY, os.X_OK):
        pytest.fail(f"afd engine binary not found or not executable at {BINARY} "
                    f"(set AFD_BINARY or build it: cmake --build build --target afd)")
    return str(BINARY)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    def get(name):
        if name not in _CACHE:
            d = tmp_path_factory.mktemp(name)
            MC.make_checkpoint(str(d), **CASES[name])
            cfg, W = R.load_checkpoint(str(d))
            _CACHE[name] = (str(d), cfg, W)
        return _CACHE[name]
    return get


def run_afd(afd, args, timeout=TIMEOUT):
    try:
        return subprocess.run([afd] + [str(a) for a in args], capture_output=True, text=True,
                              timeout=timeout, cwd=str(REPO))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"afd {' '.join(map(str, args))} timed out after {timeout}s: {e}")


def parse_json(r):
    assert r.returncode == 0, f"afd exited {r.returncode}\nstderr:\n{r.stderr[-4000:]}"
    try:
        return json.loads(r.stdout.strip())
    except json.JSONDecodeError as e:
        pytest.fail(f"stdout is not one JSON object ({e}):\n{r.stdout[:2000]}")


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


def compare_rows(case, eng, ref):
    """eng, ref [steps, vocab]. Returns the worst relative error; asserts the tolerance."""
    worst = 0.0
    for i in range(ref.shape[0]):
        scale = float(np.abs(ref[i]).max())
        err = float(np.abs(eng[i] - ref[i]).max())
        rel = err / scale
        worst = max(worst, rel)
        j = int(np.argmax(np.abs(eng[i] - ref[i])))
        assert rel <= RTOL, (f"[{case}] row {i}: max|engine-ref| = {err:.3e} = {rel:.3e} x max|ref| "
                             f"(> {RTOL}); worst at vocab {j}: engine {eng[i, j]:.6f} ref {ref[i, j]:.6f}")
        assert np.allclose(eng[i], ref[i], rtol=RTOL, atol=RTOL * scale), f"[{case}] row {i} not allclose"
    return worst


@pytest.mark.parametrize("case", list(CASES))
def test_generate_matches_reference(afd, checkpoint, tmp_path, case):
    d, cfg, W = checkpoint(case)
    V = cfg["vocab_size"]
    out = tmp_path / "logits.bin"
    r = run_afd(afd, ["generate", "--model", d, "--prompt-ids", ids_arg(PROMPT),
                      "--max-new-tokens", NEW_TOKENS, "--greedy", "--json", "--dump-logits", out])
    js = parse_json(r)
    assert isinstance(js, dict), js
    assert js.get("prompt_ids") == PROMPT, js
    assert isinstance(js.get("timings"), dict), f"missing timings object: {js}"
    tokens = js.get("tokens")
    assert isinstance(tokens, list) and all(isinstance(t, int) for t in tokens), js
    assert len(tokens) == NEW_TOKENS, f"expected {NEW_TOKENS} generated tokens, got {tokens}"
    assert all(0 <= t < V for t in tokens), tokens

    assert out.is_file(), "--dump-logits file not written"
    raw = np.fromfile(out, dtype="<f4")
    assert raw.size == NEW_TOKENS * V, f"dump has {raw.size} floats, expected {NEW_TOKENS}x{V}"
    eng = raw.reshape(NEW_TOKENS, V).astype(np.float64)
    assert np.all(np.isfinite(eng)), "non-finite logits in dump"

    # (a) greedy tokens are the argmax of the dumped rows
    for i, t in enumerate(tokens):
        assert t == int(np.argmax(eng[i])), f"[{case}] token {i} = {t} but argmax(row {i}) = {np.argmax(eng[i])}"

    # (b) teacher-forced reference logits
    stats = {}
    full = R.forward(cfg, W, PROMPT + tokens[:-1], stats)
    ref = full[len(PROMPT) - 1:]
    assert ref.shape == eng.shape
    gap = stats.get("min_router_gap", float("nan"))
    worst = compare_rows(case, eng, ref)
    print(f"[{case}] worst relative logits error {worst:.3e} (tol {RTOL}); "
          f"tokens {tokens}; min router top-k gap {gap:.2e}")


BATCH_PROMPTS = [[7], [5, 17, 2, 99], [300, 1, 2, 3, 4, 5, 6, 7, 8]]
BATCH_NEW = 5


@pytest.mark.parametrize("case", ["bf16_flat_1shard", "fp8_2shards"])
def test_batched_greedy(afd, checkpoint, case):
    d, cfg, W = checkpoint(case)
    args = ["generate", "--model", d]
    for p in BATCH_PROMPTS:
        args += ["--prompt-ids", ids_arg(p)]
    args += ["--max-new-tokens", BATCH_NEW, "--greedy", "--json"]
    js = parse_json(run_afd(afd, args))
    assert isinstance(js.get("timings"), dict), f"missing timings object: {js}"
    seqs = js.get("sequences")
    assert isinstance(seqs, list) and len(seqs) == len(BATCH_PROMPTS), js
    for b, (p, s) in enumerate(zip(BATCH_PROMPTS, seqs)):
        assert s.get("prompt_ids") == p, f"sequence {b}: {s}"
        toks = s.get("tokens")
        assert isinstance(toks, list) and len(toks) == BATCH_NEW, f"sequence {b}: {s}"
        ref_toks, margins = R.greedy(cfg, W, p, BATCH_NEW)
        # compare up to the first step whose reference top-1 margin is within the tolerance
        # band (a flip there would be legitimate: each logit may move by RTOL*max|ref|)
        n = 0
        while n < BATCH_NEW and margins[n] > 2 * RTOL:
            n += 1
        assert toks[:n] == ref_toks[:n], (f"[{case}] sequence {b} prompt {p}: engine {toks} "
                                          f"ref {ref_toks} (compared {n} steps, margins {margins})")
        print(f"[{case}] seq {b}: engine {toks} ref {ref_toks} compared {n}/{BATCH_NEW}")


# ---------------------------------------------------------------------------- error cases

def _rewrite_single(d, edit):
    path = os.path.join(d, "model.safetensors")
    tensors = {k: np.ascontiguousarray(v) for k, v in R.read_safetensors(path).items()}
    edit(tensors)
    stnp.save_file(tensors, path, metadata={"format": "pt"})


def _fresh_checkpoint(tmp_path):
    d = str(tmp_path / "ckpt")
    MC.make_checkpoint(d, dtype="bf16", shards=1, seed=21)
    return d


def test_missing_tensor_is_an_error(afd, tmp_path):
    d = _fresh_checkpoint(tmp_path)
    name = "model.layers.2.self_attn.k_proj.weight"
    _rewrite_single(d, lambda t: t.pop(name))
    r = run_afd(afd, ["generate", "--model", d, "--prompt-ids", ids_arg(PROMPT),
                      "--max-new-tokens", 2, "--greedy", "--json"])
    assert r.returncode != 0, f"afd accepted a checkpoint without {name}; stdout {r.stdout[:500]}"
    assert name in r.stderr, f"stderr does not name the missing tensor {name}:\n{r.stderr[-2000:]}"


def test_wrong_shape_is_an_error(afd, tmp_path):
    d = _fresh_checkpoint(tmp_path)
    name = "model.layers.0.self_attn.wq.weight"  # [216, 136] stored transposed: same numel

    def edit(t):
        t[name] = np.ascontiguousarray(t[name].T)
    _rewrite_single(d, edit)
    r = run_afd(afd, ["generate", "--model", d, "--prompt-ids", ids_arg(PROMPT),
                      "--max-new-tokens", 2, "--greedy", "--json"])
    assert r.returncode != 0, f"afd accepted {name} with a wrong shape; stdout {r.stdout[:500]}"
    assert name in r.stderr, f"stderr does not name the bad tensor {name}:\n{r.stderr[-2000:]}"


def test_prompt_id_out_of_vocab_is_an_error(afd, checkpoint):
    d, cfg, _ = checkpoint("bf16_flat_1shard")
    V = cfg["vocab_size"]
    r = run_afd(afd, ["generate", "--model", d, "--prompt-ids", ids_arg([5, V, 3]),
                      "--max-new-tokens", 2, "--greedy", "--json"])
    assert r.returncode != 0, f"afd accepted prompt id {V} >= vocab {V}; stdout {r.stdout[:500]}"
